/**
 * Cancel leaves things as they were: restoreDatabase cancelled while restoring drops the
 * half-restored instance; restoreVolume cancelled once the service was stopped starts it again.
 * Real PostgreSQL 15 (pg_dump / pg_restore), real Docker (a demo container on 127.0.0.1:19466).
 */
import { leaseKeyOf } from '../../src/schemas/lease';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { BackupStore } from '../../src/activities/backup';
import { pgPaths, PgInstances, withAdminClient } from '../../src/activities/pg-instances';
import { startRunbook } from '../../src/runbooks/registry';
import type { DatabaseRef } from '../../src/schemas/database';
import type { RestoreStatus } from '../../src/workflows/restore-database';
import type { RestoreVolumeStatus } from '../../src/workflows/restore-volume';
import { activitiesAfterCancel, cancelAndExpectCancelled, waitForRunningActivity, waitLeaseFree } from '../helpers/cancel';
import { docker, httpStatus, inspect, runDemo, type DemoContainer } from '../helpers/docker';
import { config, connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';
import { recordHistory } from '../helpers/histories';

const paths = pgPaths(config);
const instances = new PgInstances(paths);
const store = new BackupStore(paths);
const PORT = 19466;

let client: Client;
let worker: RunningWorker;
const made: string[] = [];
const containers: string[] = [];
const demos: DemoContainer[] = [];
const volumes: string[] = [];

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('cancel-restore') });
});

after(async () => {
  for (const i of made) await instances.drop(i).catch((err: unknown) => console.error(`drop ${i}: ${String(err)}`));
  for (const i of made) await rm(path.join(paths.backupDir, i), { recursive: true, force: true });
  for (const c of containers) await docker.getContainer(c).remove({ force: true }).catch(() => undefined);
  await Promise.all(demos.map((d) => d.remove()));
  for (const v of volumes) {
    await docker.getVolume(v).remove({ force: true }).catch(() => undefined);
    await rm(store.kindDir(v, 'volume'), { recursive: true, force: true });
  }
  await worker?.stop();
  await client?.connection.close();
});

/** No activity of this test's worker still runs (an undo must not be overtaken by the step it undoes). */
const workerIdle = () => waitUntil('the worker to have no activity in flight', () => worker.worker.getStatus().numInFlightActivities === 0, 60_000, 100);

test('restoreDatabase cancelled while restoring: the half-restored instance is dropped; CANCELED, lease free', async () => {
  const srcId = `cancel-restore-src-${uniqueName('x').slice(2)}`;
  made.push(srcId);
  const source: DatabaseRef = instances.ref(await instances.create(srcId, false));
  await withAdminClient(paths, { port: source.port, database: source.database }, (c) => c.query("CREATE TABLE items AS SELECT g AS id, md5('row' || g) AS v FROM generate_series(1, 200000) g"));
  await (await startRunbook(client, 'backupDatabase', { database: source, kind: 'logical' }, { taskQueue: worker.taskQueue, workflowId: uniqueName('cancel-restore-backup') })).result();

  const instanceId = `cancel-restore-new-${uniqueName('x').slice(2)}`;
  made.push(instanceId);
  const t0 = Date.now();
  const handle = await startRunbook(client, 'restoreDatabase', { source, kind: 'logical', instanceId }, { taskQueue: worker.taskQueue, workflowId: uniqueName('cancel-restore-db') });
  await waitUntil('the restore under way (the new instance exists)', async () => (await handle.query<RestoreStatus>('status')).phase === 'restoring' && (await instances.read(instanceId)) !== undefined, 60_000, 20);
  await waitForRunningActivity(handle, 'restoreLogical');
  await cancelAndExpectCancelled(handle);
  console.log(`  restoreDatabase cancelled while restoring: ${Date.now() - t0} ms from start to CANCELED`);
  await recordHistory(client, handle.workflowId, 'restore-database-cancelled');
  const status = await handle.query<RestoreStatus>('status');
  assert.equal(status.error, 'cancelled');
  assert.ok((await activitiesAfterCancel(handle)).includes('dropInstance'), 'the drop ran after the cancel request');
  await waitLeaseFree(client, `postgres/${instanceId}`, worker.taskQueue);
  await workerIdle();
  assert.equal(await instances.read(instanceId), undefined, 'no registry entry for the new instance');
  assert.equal(existsSync(instances.dir(instanceId)), false, 'no folder of the new instance');
});

test('restoreVolume cancelled after the service was stopped: the service runs again and is healthy; CANCELED, lease free', async () => {
  const vol = uniqueName('cancel-vol');
  const svc = uniqueName('cancel-vol-web');
  const healthUrl = `http://127.0.0.1:${PORT}/health`;
  volumes.push(vol);
  containers.push(svc);
  await docker.createVolume({ Name: vol, Labels: { 'durable-ops.test': 'true' } });
  demos.push(await runDemo({ name: svc, port: PORT, volume: vol }));
  await waitUntil(`${svc} to serve`, async () => (await httpStatus(healthUrl)) === 200, 20_000);
  await (await startRunbook(client, 'backupVolume', { volume: vol }, { taskQueue: worker.taskQueue, workflowId: uniqueName('cancel-vol-backup') })).result();

  const t0 = Date.now();
  const handle = await startRunbook(client, 'restoreVolume', { volume: vol, service: svc, healthUrl, healthTimeoutMs: 20_000, stopTimeoutSec: 1 }, { taskQueue: worker.taskQueue, workflowId: uniqueName('cancel-vol-restore') });
  await waitUntil('the service stopped and the restore under way', async () => (await handle.query<RestoreVolumeStatus>('status')).phase === 'restoring', 60_000, 20);
  assert.equal((await inspect(svc)).State.Running, false, 'stopped for the restore');
  await cancelAndExpectCancelled(handle);
  console.log(`  restoreVolume cancelled while restoring: ${Date.now() - t0} ms from start to CANCELED`);
  await recordHistory(client, handle.workflowId, 'restore-volume-cancelled');
  const undo = await activitiesAfterCancel(handle);
  assert.ok(undo.includes('startContainer'), `the start ran after the cancel request: ${undo.join(', ')}`);
  await waitLeaseFree(client, leaseKeyOf(svc), worker.taskQueue);
  await workerIdle();
  assert.equal((await inspect(svc)).State.Running, true, 'the service runs again');
  await waitUntil(`${svc} healthy again`, async () => (await httpStatus(healthUrl)) === 200 && (await inspect(svc)).State.Health?.Status === 'healthy', 20_000, 100);
});
