/**
 * dropInstance and the instance's WAL archive in the backup store, on real PostgreSQL 15
 * instances with archiving (127.0.0.1:18870-18879, this file's range): no base backup left ->
 * the archive (and the then-empty store folder) goes; a base backup left -> the archive and the
 * backup stay; 'main' is refused. Through the real activities, as the worker runs them.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { BackupStore, createBackupActivities } from '../../src/activities/backup';
import { createPgInstanceActivities, pgPaths } from '../../src/activities/pg-instances';
import type { DatabaseRef } from '../../src/schemas/database';
import { RangeInstances } from '../helpers/pg-range';
import { config, testLog, uniqueName } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

/** This file's loopback range (other suites use the rest of 18800-18899). */
const PORT_MIN = 18870;
const PORT_MAX = 18879;

const paths = pgPaths(config);
const instances = new RangeInstances(paths, PORT_MIN, PORT_MAX);
const store = new BackupStore(paths);
const acts = createPgInstanceActivities({ log: testLog });
const backups = createBackupActivities({ log: testLog });
const password = readFileSync(paths.adminPasswordFile, 'utf8').trim();
const suffix = uniqueName('x').slice(2);
const created: string[] = [];

async function archivedInstance(name: string): Promise<DatabaseRef> {
  const id = `drop-test-${name}-${suffix}`;
  created.push(id);
  const ref = instances.ref(await instances.create(id, true));
  assert.ok(ref.port >= PORT_MIN && ref.port <= PORT_MAX, `port ${ref.port} in this file's range`);
  // Some WAL in the archive: a table, then the segment closed and archived.
  const c = new pg.Client({ host: '127.0.0.1', port: ref.port, database: ref.database, user: paths.adminUser, password, connectionTimeoutMillis: 5_000 });
  await c.connect();
  try {
    await c.query('CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g');
    const f = (await c.query<{ f: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS f')).rows[0]!.f;
    await waitUntil(`WAL ${f} archived`, async () => (await store.walFiles(id)).includes(f), 30_000, 100);
  } finally {
    await c.end();
  }
  return ref;
}

after(async () => {
  for (const id of created) {
    await instances.drop(id).catch((err: unknown) => console.error(`drop ${id}: ${String(err)}`));
    await rm(path.join(paths.backupDir, id), { recursive: true, force: true });
  }
});

test('no backup left: dropInstance removes the WAL archive and the empty store folder; a retry is a no-op', async () => {
  const db = await archivedInstance('nobackup');
  const walDir = store.walDir(db.id);
  const segments = readdirSync(walDir).filter((f) => /^[0-9A-F]{24}$/.test(f)).length;
  assert.ok(segments >= 1, `${segments} archived segment(s) before the drop`);

  const r = await acts.dropInstance(db.id);
  assert.equal(r.dropped, true);
  assert.equal(r.walArchive.state, 'removed');
  assert.ok(r.walArchive.state === 'removed' && r.walArchive.files >= segments && r.walArchive.storeFolderRemoved);
  assert.equal(existsSync(walDir), false, 'WAL archive gone');
  assert.equal(existsSync(path.join(paths.backupDir, db.id)), false, 'store folder gone');
  assert.equal(existsSync(instances.dir(db.id)), false, 'instance folder gone');

  assert.deepEqual(await acts.dropInstance(db.id), { dropped: false, walArchive: { state: 'none' } }, 'idempotent');
});

test('a base backup left: dropInstance keeps the WAL archive and the backup, says so, and the backup still verifies', async () => {
  const db = await archivedInstance('withbackup');
  const b = await backups.backupPhysical({ database: db, backupId: `drop-test-${suffix}` });
  const walBefore = await store.walFiles(db.id);

  const r = await acts.dropInstance(db.id);
  assert.equal(r.dropped, true);
  assert.deepEqual(r.walArchive, { state: 'kept', dir: store.walDir(db.id), files: walBefore.length, backups: [b.manifest.backupId] });
  assert.equal(existsSync(instances.dir(db.id)), false, 'instance folder gone');
  assert.deepEqual(await store.walFiles(db.id), walBefore, 'every WAL file kept');
  assert.ok(existsSync(b.manifestPath), 'the backup kept');
  assert.deepEqual(await backups.verifyBackup({ databaseId: db.id, kind: 'physical', backupId: b.manifest.backupId }), { backupId: b.manifest.backupId, ok: true }, 'checksums and the WAL it needs');

  const again = await acts.dropInstance(db.id);
  assert.equal(again.dropped, false);
  assert.equal(again.walArchive.state, 'kept', 'a retry keeps it too');
});

test('only logical backups left: the WAL archive goes (no base backup to replay it onto), the dumps stay', async () => {
  const db = await archivedInstance('logical');
  const b = await backups.backupLogical({ database: db, backupId: `drop-test-${suffix}` });

  const r = await acts.dropInstance(db.id);
  assert.equal(r.dropped, true);
  assert.equal(r.walArchive.state, 'removed');
  assert.ok(r.walArchive.state === 'removed' && !r.walArchive.storeFolderRemoved, 'the store folder stays: it holds the dump');
  assert.equal(existsSync(store.walDir(db.id)), false);
  assert.ok(existsSync(b.manifestPath), 'the dump kept');
  assert.equal((await backups.verifyBackup({ databaseId: db.id, kind: 'logical', backupId: b.manifest.backupId })).ok, true);
});

test("'main' is refused: non-retryable InvalidInput, its WAL archive untouched", async () => {
  const mainWal = store.walDir('main');
  const before = existsSync(mainWal) ? readdirSync(mainWal).length : undefined;
  await assert.rejects(acts.dropInstance('main'), (err: unknown) => err instanceof ApplicationFailure && err.type === 'InvalidInput' && err.nonRetryable === true);
  assert.equal(existsSync(mainWal), before !== undefined, "main's archive as it was");
  if (before !== undefined) assert.ok(readdirSync(mainWal).length >= before, "none of main's WAL removed");
});
