/**
 * Backups and restores on the real stack: real PostgreSQL 15 (a source instance with WAL
 * archiving, created for the test), pg_basebackup / pg_dump / pg_restore, the real worker (one
 * in-process, one as a separate process for the SIGKILL test), real Docker for volumes.
 * Every instance, store folder and volume the test makes is removed in `after`.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import { BackupStore, createBackupActivities, type BackupHealth } from '../../src/activities/backup';
import { pgPaths, PgInstances } from '../../src/activities/pg-instances';
import { InvalidInputError, startRunbook, validateInput } from '../../src/runbooks/registry';
import type { DatabaseRef } from '../../src/schemas/database';
import type { BackupDatabaseResult } from '../../src/workflows/backup-database';
import type { RestoreDatabaseResult, RestoreStatus } from '../../src/workflows/restore-database';
import { docker, DEMO_IMAGE } from '../helpers/docker';
import { config, connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';
import { spawnWorker } from '../helpers/worker-process';

const paths = pgPaths(config);
const instances = new PgInstances(paths);
const store = new BackupStore(paths);
const password = readFileSync(paths.adminPasswordFile, 'utf8').trim();
const suffix = uniqueName('x').slice(2);
const id = (name: string) => `backup-test-${name}-${suffix}`;

let client: Client;
let worker: RunningWorker;
let source: DatabaseRef;
const created = new Set<string>();
const volumes: string[] = [];

async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(ref: { port: number; database?: string }, text: string): Promise<T[]> {
  const c = new pg.Client({ host: '127.0.0.1', port: ref.port, database: ref.database ?? 'app', user: config.DURABLE_OPS_PG_ADMIN_USER, password, connectionTimeoutMillis: 5_000 });
  await c.connect();
  try {
    return (await c.query<T>(text)).rows;
  } finally {
    await c.end();
  }
}

/** Row count and an order-independent content checksum of the test table. */
async function fingerprint(ref: { port: number }): Promise<{ n: number; sum: string }> {
  const [row] = await sql<{ n: number; sum: string }>(ref, "SELECT count(*)::int AS n, md5(string_agg(id || ':' || v, ',' ORDER BY id)) AS sum FROM items");
  return row!;
}

async function insert(from: number, to: number): Promise<void> {
  await sql(source, `INSERT INTO items SELECT g, md5('row' || g) FROM generate_series(${from}, ${to}) g`);
}

/** Close the current WAL segment and wait until the archiver has it (what archive_timeout does within 60 s). */
async function switchAndArchive(): Promise<void> {
  const [{ f }] = (await sql<{ f: string }>(source, 'SELECT pg_walfile_name(pg_switch_wal()) AS f')) as [{ f: string }];
  await waitUntil(`WAL ${f} archived`, async () => {
    const [r] = await sql<{ w: string | null }>(source, 'SELECT last_archived_wal AS w FROM pg_stat_archiver');
    return r?.w !== null && r!.w !== undefined && r!.w.slice(8) >= f.slice(8);
  }, 30_000, 100);
}

async function backup(kind: 'physical' | 'logical', keep?: number): Promise<BackupDatabaseResult> {
  const handle = await startRunbook(client, 'backupDatabase', { database: source, kind, ...(keep ? { keep } : {}) }, { taskQueue: worker.taskQueue, workflowId: uniqueName(`backup-test-${kind}`) });
  return handle.result();
}

async function restore(input: Record<string, unknown>, taskQueue = worker.taskQueue, workflowId = uniqueName('backup-test-restore')) {
  created.add(String(input.instanceId));
  return startRunbook(client, 'restoreDatabase', { source, ...input }, { taskQueue, workflowId });
}

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('backup-test') });
  const srcId = id('src');
  created.add(srcId);
  const rec = await instances.create(srcId, true);
  source = instances.ref(rec);
  await sql(source, 'CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)');
  await insert(1, 1000);
});

after(async () => {
  for (const i of created) await instances.drop(i).catch((err: unknown) => console.error(`drop ${i}: ${String(err)}`));
  for (const i of created) await rm(path.join(paths.backupDir, i), { recursive: true, force: true });
  for (const v of volumes) {
    await docker.getVolume(v).remove({ force: true }).catch(() => undefined);
    await rm(store.kindDir(v, 'volume'), { recursive: true, force: true });
  }
  await worker?.stop();
  await client?.connection.close();
});

test('bad input: non-retryable InvalidInput naming the field, nothing created', async () => {
  assert.throws(() => validateInput('restoreDatabase', { source: { id: 'main', port: 5433 }, instanceId: 'Bad_Id' }), (err: unknown) => err instanceof InvalidInputError && err.problems.some((p) => p.startsWith('instanceId:')));
  const cases: Array<[string, unknown, string]> = [
    ['backupDatabase', { database: source, kind: 'incremental' }, 'kind'],
    ['backupDatabase', { database: { ...source, host: '10.0.0.1' }, kind: 'physical' }, 'database.host'],
    ['restoreDatabase', { source, instanceId: id('bad'), pointInTime: 'yesterday' }, 'pointInTime'],
    ['restoreDatabase', { source, instanceId: id('bad'), colour: 'blue' }, 'colour'],
    ['verifyBackups', { database: source, rpoMs: 5 }, 'rpoMs'],
  ];
  for (const [runbook, input, field] of cases) {
    // Straight to the workflow (past the starter's own check): the workflow validates first thing.
    const handle = await client.workflow.start(runbook, { taskQueue: worker.taskQueue, workflowId: uniqueName('backup-test-bad'), args: [input] });
    await assert.rejects(handle.result(), (err: unknown) => {
      const cause = (err as WorkflowFailedError).cause;
      assert.ok(cause instanceof ApplicationFailure, `${runbook}: ${String(cause)}`);
      assert.equal(cause.type, 'InvalidInput');
      assert.equal(cause.nonRetryable, true);
      assert.match(cause.message, new RegExp(`${field.replace('.', '\\.')}: `), `${runbook} names ${field}: ${cause.message}`);
      return true;
    });
  }
  assert.equal(existsSync(instances.dir(id('bad'))), false, 'no instance folder');
  assert.equal(existsSync(store.kindDir(source.id, 'physical')), false, 'no backup folder');
});

test('physical backup + WAL archive: restore to the latest point and to a point in time', async () => {
  const b = await backup('physical');
  assert.match(b.backupId, /^\d{8}T\d{6}Z-[0-9a-f]{8}$/);
  const manifest = JSON.parse(readFileSync(b.manifestPath, 'utf8')) as { files: Array<{ path: string; sha256: string }>; startWal: string };
  assert.ok(manifest.files.some((f) => f.path === 'base.tar' && /^[0-9a-f]{64}$/.test(f.sha256)));
  const atBackup = await fingerprint(source);

  // Rows committed after the base backup: only the WAL archive has them.
  await insert(1001, 1500);
  await switchAndArchive();
  const [{ t }] = (await sql<{ t: Date }>(source, 'SELECT clock_timestamp() AS t')) as [{ t: Date }];
  await new Promise((r) => setTimeout(r, 1_100));
  await insert(1501, 1700);
  await switchAndArchive();
  const latest = await fingerprint(source);
  assert.equal(latest.n, 1700);

  const started = Date.now();
  const r1: RestoreDatabaseResult = await (await restore({ kind: 'physical', instanceId: id('pitr-latest') })).result();
  console.log(`  physical restore (latest): ${Date.now() - started} ms, ${r1.recoveryTarget}`);
  assert.equal(r1.backupId, b.backupId);
  assert.deepEqual(r1.skipped, []);
  assert.notEqual(r1.instance.port, source.port);
  assert.deepEqual(await fingerprint(r1.instance), latest, 'the restored instance holds every archived row');
  const [{ rec }] = (await sql<{ rec: boolean }>(r1.instance, 'SELECT pg_is_in_recovery() AS rec')) as [{ rec: boolean }];
  assert.equal(rec, false, 'promoted');

  const r2: RestoreDatabaseResult = await (await restore({ kind: 'physical', instanceId: id('pitr-time'), pointInTime: t.toISOString() })).result();
  const atT = await fingerprint(r2.instance);
  assert.equal(atT.n, 1500, 'the rows up to the target time, not the ones after it');
  assert.ok(atT.n > atBackup.n);
  await instances.drop(r2.instance.id);
});

test('logical backup -> restore into a fresh instance: same rows and checksum', async () => {
  const expected = await fingerprint(source);
  const b = await backup('logical');
  const r: RestoreDatabaseResult = await (await restore({ kind: 'logical', instanceId: id('logical') })).result();
  assert.equal(r.kind, 'logical');
  assert.equal(r.backupId, b.backupId);
  assert.deepEqual(await fingerprint(r.instance), expected);
  // The roles came along (the app's grants restore with them).
  const [{ n }] = (await sql<{ n: number }>({ port: r.instance.port, database: 'postgres' }, 'SELECT count(*)::int AS n FROM pg_roles WHERE rolname = current_user')) as [{ n: number }];
  assert.equal(n, 1);
  await instances.drop(r.instance.id);
});

test('a corrupted backup is detected by its checksum; the restore uses the previous good one and says so', async () => {
  const good = await backup('physical');
  await insert(1701, 1800);
  const bad = await backup('physical');
  // Flip bytes in the middle of the newest base.tar (same size: only the checksum can tell).
  const tar = path.join(store.backupDir(source.id, 'physical', bad.backupId), 'base.tar');
  const fh = await open(tar, 'r+');
  await fh.write(Buffer.from('corrupted by the backup test'), 0, 28, 4096 * 10);
  await fh.close();
  await insert(1801, 1850);
  await switchAndArchive();
  const expected = await fingerprint(source);

  const health: BackupHealth = await (await startRunbook(client, 'verifyBackups', { database: source, alert: false }, { taskQueue: worker.taskQueue, workflowId: uniqueName('backup-test-verify') })).result();
  assert.equal(health.status, 'warning');
  assert.ok(health.problems.some((p) => p.includes(bad.backupId) && p.includes('SHA-256 mismatch')), health.problems.join('; '));
  assert.equal(health.kinds.find((k) => k.kind === 'physical')!.newestGood, good.backupId);

  const r: RestoreDatabaseResult = await (await restore({ kind: 'physical', instanceId: id('after-corruption') })).result();
  assert.equal(r.backupId, good.backupId, 'the previous good backup');
  assert.equal(r.skipped.length, 1);
  assert.equal(r.skipped[0]!.backupId, bad.backupId);
  assert.match(r.skipped[0]!.reason, /base\.tar: SHA-256 mismatch/);
  assert.deepEqual(await fingerprint(r.instance), expected, 'older base backup + WAL replay: nothing lost');
  await instances.drop(r.instance.id);
});

test('retention keeps N backups of a kind, and the WAL the oldest kept base backup needs', async () => {
  const results: BackupDatabaseResult[] = [];
  for (let i = 0; i < 3; i++) results.push(await backup('logical', 2));
  const kept = (await store.scan(source.id, 'logical')).manifests.map((m) => m.backupId);
  assert.equal(kept.length, 2);
  assert.deepEqual(new Set(kept), new Set([results[1]!.backupId, results[2]!.backupId]));
  assert.ok(results[2]!.removed.includes(results[0]!.backupId));

  const walBefore = await store.walFiles(source.id);
  const p = await backup('physical', 1);
  const physical = (await store.scan(source.id, 'physical')).manifests;
  assert.equal(physical.length, 1);
  assert.equal(physical[0]!.backupId, p.backupId);
  const startWal = physical[0]!.startWal!;
  const walAfter = await store.walFiles(source.id);
  assert.ok(p.removedWal > 0 && walAfter.length < walBefore.length, `WAL removed: ${p.removedWal}`);
  assert.ok(walAfter.filter((f) => /^[0-9A-F]{24}$/.test(f)).every((f) => f.slice(8) >= startWal.slice(8)), 'no segment older than the kept backup start');
  assert.ok(walAfter.includes(startWal), 'the kept backup start segment stays');
});

test('the worker SIGKILLed during a restore: the restore completes, one instance, nothing half-restored', async () => {
  await backup('physical');
  await insert(1851, 1900);
  await switchAndArchive();
  const expected = await fingerprint(source);
  const queue = uniqueName('backup-test-kill');
  const instanceId = id('killed');
  let w = await spawnWorker(queue);
  try {
    const handle = await restore({ kind: 'physical', instanceId }, queue);
    // Kill it once the restore is under way (the instance folder is being filled).
    await waitUntil('the restore to start', async () => {
      const rec = await instances.read(instanceId);
      return rec?.state === 'restoring';
    }, 60_000, 10);
    await w.kill('SIGKILL');
    const killedAt = Date.now();
    w = await spawnWorker(queue);
    const r: RestoreDatabaseResult = await handle.result();
    console.log(`  restore finished ${Date.now() - killedAt} ms after the SIGKILL (heartbeat timeout + redo)`);
    const status = await handle.query<RestoreStatus>('status');
    assert.equal(status.phase, 'done');
    assert.deepEqual(await fingerprint(r.instance), expected);
    const mine = readdirSync(paths.instancesDir).filter((n) => n.includes(instanceId));
    assert.deepEqual(mine, [instanceId], 'exactly one instance folder, no leftovers');
    const rec = await instances.read(instanceId);
    assert.equal(rec?.state, 'ready');
    assert.equal(existsSync(instances.pidFile(instanceId)), false, 'no orphan child recorded');
    const histories = await handle.fetchHistory();
    const retried = histories.events?.some((e) => e.activityTaskStartedEventAttributes && Number(e.activityTaskStartedEventAttributes.attempt) > 1);
    assert.ok(retried, 'the restore activity ran again after the crash');
  } finally {
    await w.kill('SIGTERM');
  }
  await instances.drop(instanceId);
});

test('Docker volume backup and restore round trip (busybox tar in a short-lived container)', async () => {
  const vol = id('vol');
  volumes.push(vol, `${vol}-copy`);
  await docker.createVolume({ Name: vol, Labels: { 'durable-ops.test': 'true' } });
  const sh = async (volume: string, script: string): Promise<string> => {
    const c = await docker.createContainer({ Image: DEMO_IMAGE, Entrypoint: [], Cmd: ['sh', '-c', script], HostConfig: { NetworkMode: 'none', Binds: [`${volume}:/v`] } });
    try {
      await c.start();
      await c.wait();
      // Docker multiplexes stdout/stderr without a TTY: 8-byte frame headers (stream, size).
      const raw = await c.logs({ stdout: true, stderr: true });
      let text = '';
      for (let i = 0; i + 8 <= raw.length; ) {
        const size = raw.readUInt32BE(i + 4);
        text += raw.subarray(i + 8, i + 8 + size).toString('utf8');
        i += 8 + size;
      }
      return text.trim();
    } finally {
      await c.remove({ force: true });
    }
  };
  await sh(vol, 'echo hello > /v/a.txt && mkdir -p /v/sub && seq 1 500 > /v/sub/n.txt');
  const before = await sh(vol, 'cd /v && find . -type f | sort | xargs md5sum');
  const acts = createBackupActivities({ docker });
  const b = await acts.backupVolume({ volume: vol, backupId: 'test-1' });
  assert.equal(b.manifest.files[0]!.path, 'volume.tar');
  assert.equal((await acts.backupVolume({ volume: vol, backupId: 'test-1' })).alreadyDone, true, 'a retry finds it done');
  await sh(vol, 'rm -rf /v/* && echo damaged > /v/a.txt');
  await acts.restoreVolume({ volume: vol, backupId: 'test-1' });
  assert.equal(await sh(vol, 'cd /v && find . -type f | sort | xargs md5sum'), before);
  await acts.restoreVolume({ volume: vol, backupId: 'test-1', intoVolume: `${vol}-copy` });
  assert.equal(await sh(`${vol}-copy`, 'cd /v && find . -type f | sort | xargs md5sum'), before);
});
