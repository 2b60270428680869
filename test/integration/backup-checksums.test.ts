/**
 * The checksums the backup activities record, against coreutils `sha256sum` of the files on disk,
 * on real PostgreSQL 15: base.tar hashed while pg_basebackup writes it (sha256Following), the
 * dump hashed after pg_dump wrote it. And a corrupted dump: the logical restore fails it as
 * BackupCorrupt (non-retryable) without trusting its data. The activities are called directly
 * (the runbooks around them are covered by backup-restore.test.ts). Everything created (instances,
 * store folders) is removed in `after`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { BackupStore, createBackupActivities } from '../../src/activities/backup';
import { pgPaths, PgInstances } from '../../src/activities/pg-instances';
import type { DatabaseRef } from '../../src/schemas/database';
import { config, uniqueName } from '../helpers/temporal';

const paths = pgPaths(config);
const instances = new PgInstances(paths);
const store = new BackupStore(paths);
const acts = createBackupActivities({});
const suffix = uniqueName('x').slice(2);
const id = (name: string) => `checksum-test-${name}-${suffix}`;
const created = new Set<string>();
let source: DatabaseRef;

async function sql(ref: { port: number }, text: string): Promise<pg.QueryResultRow[]> {
  const c = new pg.Client({ host: '127.0.0.1', port: ref.port, database: 'app', user: config.DURABLE_OPS_PG_ADMIN_USER, password: readFileSync(paths.adminPasswordFile, 'utf8').trim(), connectionTimeoutMillis: 5_000 });
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

async function sha256sum(file: string): Promise<string> {
  const { stdout } = await promisify(execFile)('sha256sum', [file]);
  return stdout.split(' ')[0]!;
}

before(async () => {
  const srcId = id('src');
  created.add(srcId);
  source = instances.ref(await instances.create(srcId, true));
  // About 30 MB of table: base.tar is written over a while, not in one go.
  await sql(source, "CREATE TABLE items AS SELECT g AS id, md5(g::text) || repeat('x', 200) AS v FROM generate_series(1, 120000) g");
});

after(async () => {
  for (const i of created) await instances.drop(i).catch((err: unknown) => console.error(`drop ${i}: ${String(err)}`));
  for (const i of created) await rm(path.join(paths.backupDir, i), { recursive: true, force: true });
});

test('physical: the checksum taken while pg_basebackup writes base.tar is sha256sum of the finished file; a retry finds it done', async () => {
  const r = await acts.backupPhysical({ database: source, backupId: 'phys-1' });
  const tar = path.join(store.backupDir(source.id, 'physical', 'phys-1'), 'base.tar');
  const f = r.manifest.files.find((x) => x.path === 'base.tar')!;
  assert.ok(f.bytes > 20 * 2 ** 20, `base.tar is ${f.bytes} bytes`);
  assert.equal(f.sha256, await sha256sum(tar));
  assert.equal((await acts.verifyBackup({ databaseId: source.id, kind: 'physical', backupId: 'phys-1' })).ok, true);
  const again = await acts.backupPhysical({ database: source, backupId: 'phys-1' });
  assert.equal(again.alreadyDone, true);
  assert.deepEqual(again.manifest.files, r.manifest.files);
});

test('logical: dump and roles checksums are sha256sum of the files; a corrupted dump fails the restore as BackupCorrupt', async () => {
  const r = await acts.backupLogical({ database: source, backupId: 'log-1' });
  const dir = store.backupDir(source.id, 'logical', 'log-1');
  assert.deepEqual(r.manifest.files.map((f) => f.path), ['app.dump', 'roles.sql']);
  for (const f of r.manifest.files) assert.equal(f.sha256, await sha256sum(path.join(dir, f.path)), f.path);

  // Same size, different bytes: only the checksum can tell.
  const fh = await open(path.join(dir, 'app.dump'), 'r+');
  await fh.write(Buffer.from('corrupted by the checksum test'), 0, 30, 4096);
  await fh.close();
  const instanceId = id('restore');
  created.add(instanceId);
  await assert.rejects(acts.restoreLogical({ source, backupId: 'log-1', instanceId }), (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, String(err));
    assert.equal(err.type, 'BackupCorrupt');
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, /app\.dump: SHA-256 mismatch/);
    return true;
  });
  assert.notEqual((await instances.read(instanceId))?.state, 'ready', 'the instance is not marked restored');
});
