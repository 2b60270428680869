/**
 * backupVolume and restoreVolume on the real stack: a demo container (host network,
 * 127.0.0.1:18950) with a named volume at /data; backup -> change -> restore (the container
 * stopped and started, /health checked) -> the same content; a corrupted newest backup skipped
 * for the previous good one; quiesce pauses the container for the tar and unpauses it; retention;
 * bad input fails at once naming the field, with nothing touched. Everything the test makes
 * (containers, volumes, backups) is removed in `after`.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { BackupStore } from '../../src/activities/backup';
import { demuxDockerLog } from '../../src/activities/docker';
import { pgPaths } from '../../src/activities/pg-instances';
import { startRunbook } from '../../src/runbooks/registry';
import type { BackupVolumeInput, RestoreVolumeInput } from '../../src/schemas/volume';
import type { BackupVolumeResult } from '../../src/workflows/backup-volume';
import type { RestoreVolumeResult } from '../../src/workflows/restore-volume';
import { containerEvents, DEMO_IMAGE, docker, httpStatus, inspect, runDemo, type DemoContainer } from '../helpers/docker';
import { recordHistory } from '../helpers/histories';
import { config, connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process';

const store = new BackupStore(pgPaths(config));
const PORT = 18950;

let client: Client;
let worker: RunningWorker;
const containers: string[] = [];
const demos: DemoContainer[] = [];
const volumes: string[] = [];

const vol = uniqueName('dvol-data');
const svc = uniqueName('dvol-web');
const healthUrl = `http://127.0.0.1:${PORT}/health`;

/** A command in the running service container; its stdout (stream headers stripped). */
async function exec(container: string, script: string): Promise<string> {
  const e = await docker.getContainer(container).exec({ Cmd: ['sh', '-c', script], AttachStdout: true, AttachStderr: true });
  const stream = await e.start({});
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return demuxDockerLog(Buffer.concat(chunks)).trim();
}

/** Every file of the volume with its SHA-256, as the service sees it. */
const fingerprint = () => exec(svc, 'cd /data && find . -type f | sort | xargs sha256sum');

async function backupVolume(input: BackupVolumeInput): Promise<BackupVolumeResult> {
  const h = await startRunbook(client, 'backupVolume', input, { taskQueue: worker.taskQueue, workflowId: uniqueName('dvol-backup') });
  return h.result();
}

async function restoreVolume(input: RestoreVolumeInput, record?: string): Promise<RestoreVolumeResult> {
  const h = await startRunbook(client, 'restoreVolume', input, { taskQueue: worker.taskQueue, workflowId: uniqueName('dvol-restore') });
  const r: RestoreVolumeResult = await h.result();
  if (record) await recordHistory(client, h.workflowId, record);
  return r;
}

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('volume-test') });
  volumes.push(vol);
  await docker.createVolume({ Name: vol, Labels: { 'durable-ops.test': 'true' } });
  containers.push(svc);
  demos.push(await runDemo({ name: svc, port: PORT, volume: vol }));
  await waitUntil(`${svc} to serve`, async () => (await httpStatus(healthUrl)) === 200, 20_000);
  await exec(svc, 'mkdir -p /data/sub && echo hello >/data/a.txt && seq 1 5000 >/data/sub/n.txt');
});

after(async () => {
  for (const c of containers) await docker.getContainer(c).remove({ force: true }).catch(() => undefined);
  await Promise.all(demos.map((d) => d.remove()));
  for (const v of volumes) {
    await docker.getVolume(v).remove({ force: true }).catch(() => undefined);
    await rm(store.kindDir(v, 'volume'), { recursive: true, force: true });
  }
  await worker?.stop();
  await client?.connection.close();
});

test('bad input: non-retryable InvalidInput naming the field, nothing touched', async () => {
  const other = uniqueName('dvol-other');
  containers.push(other);
  await docker.createContainer({ name: other, Image: DEMO_IMAGE, Env: ['PORT=18951'], HostConfig: { NetworkMode: 'none' } });
  const cases: Array<[string, unknown, RegExp]> = [
    ['backupVolume', { volume: 'no/such volume' }, /volume: must be a Docker volume name/],
    ['backupVolume', { volume: vol, keep: 0, colour: 'red' }, /keep: must be >= 1.*colour: unknown field|colour: unknown field.*keep: must be >= 1/],
    ['backupVolume', { volume: vol, quiesce: { service: 'bad name!' } }, /quiesce\.service: must be a Docker container name/],
    ['restoreVolume', { volume: vol, intoVolume: '-x' }, /intoVolume: must be a Docker volume name/],
    ['restoreVolume', { volume: vol, healthUrl: 'ftp://127.0.0.1/health' }, /healthUrl: must be an http/],
    ['restoreVolume', { volume: vol, keep: 3 }, /keep: unknown field/],
    // Only the engine can tell: no such container, or a container that does not mount the volume.
    ['backupVolume', { volume: vol, quiesce: { service: uniqueName('dvol-missing') } }, /quiesce\.service: no container named/],
    ['restoreVolume', { volume: vol, service: other }, /service: container "dvol-other-[0-9a-f]+" does not mount the volume/],
  ];
  const before = await fingerprint();
  for (const [runbook, input, pattern] of cases) {
    // Straight to the workflow (past the starter's own check): the workflow validates first thing.
    const handle = await client.workflow.start(runbook, { taskQueue: worker.taskQueue, workflowId: uniqueName('dvol-bad'), args: [input] });
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError, String(err));
      const cause = err.cause instanceof ActivityFailure ? err.cause.cause : err.cause;
      assert.ok(cause instanceof ApplicationFailure, `${runbook}: ${String(cause)}`);
      assert.equal(cause.type, 'InvalidInput');
      assert.equal(cause.nonRetryable, true);
      assert.match(cause.message, pattern);
      return true;
    });
    const history = await handle.fetchHistory();
    const scheduled = (history.events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes?.activityType?.name ? [e.activityTaskScheduledEventAttributes.activityType.name] : []));
    assert.ok(scheduled.every((a) => a === 'checkVolumeMount'), `${runbook}: only the read-only check ran: ${scheduled.join(', ')}`);
  }
  assert.equal(existsSync(store.kindDir(vol, 'volume')), false, 'no backup folder was made');
  assert.equal((await inspect(svc)).State.Running, true, 'the service was not stopped');
  assert.equal((await inspect(svc)).State.Paused, false, 'the service was not paused');
  assert.equal(await fingerprint(), before, 'the volume is unchanged');
});

let first: BackupVolumeResult;

test('backup (quiesced: paused during the tar, unpaused after) -> change -> restoreVolume: same content, service stopped, started, healthy', async () => {
  const original = await fingerprint();
  const t0 = Date.now();
  first = await backupVolume({ volume: vol, quiesce: { service: svc } });
  // The manifest, written last, holds the tar's SHA-256.
  const manifest = JSON.parse(readFileSync(first.manifestPath, 'utf8')) as { files: Array<{ path: string; sha256: string; bytes: number }>; kind: string; volume: string };
  assert.equal(manifest.kind, 'volume');
  assert.equal(manifest.volume, vol);
  assert.equal(manifest.files[0]!.path, 'volume.tar');
  assert.equal(first.sizeBytes, manifest.files[0]!.bytes);
  assert.equal(first.quiesced, svc);
  assert.equal(first.alreadyDone, false);
  // Quiesce: the engine saw a pause and then an unpause of the service, and it runs unpaused.
  const events = (await containerEvents(svc, t0 - 1_000)).map((e) => e.Action);
  const pauseAt = events.indexOf('pause');
  assert.ok(pauseAt >= 0 && events.indexOf('unpause', pauseAt) > pauseAt, `pause then unpause: ${events.join(', ')}`);
  assert.equal((await inspect(svc)).State.Paused, false);
  assert.equal(await httpStatus(healthUrl), 200);

  // Damage the data, then restore.
  await exec(svc, 'rm -rf /data/sub && echo damaged >/data/a.txt && echo extra >/data/extra.txt');
  assert.notEqual(await fingerprint(), original);
  const startedBefore = Date.parse((await inspect(svc)).State.StartedAt);
  const r = await restoreVolume({ volume: vol, service: svc, healthUrl, healthTimeoutMs: 20_000, stopTimeoutSec: 1 });
  assert.equal(r.backupId, first.backupId);
  assert.deepEqual(r.skipped, []);
  assert.equal(r.volume, vol);
  assert.equal(r.files, 2, 'a.txt and sub/n.txt (extra.txt is gone)');
  assert.equal(r.healthy, true);
  assert.ok(r.durationMs > 0);
  const info = await inspect(svc);
  assert.equal(info.State.Running, true);
  assert.ok(Date.parse(info.State.StartedAt) > startedBefore, 'the service was stopped and started again');
  assert.equal(await httpStatus(healthUrl), 200);
  assert.equal(await fingerprint(), original, 'the volume holds the backed-up content again');
  process.stdout.write(`# restoreVolume: ${r.durationMs} ms (stop, restore ${r.files} files, start, healthy)\n`);
});

test('a corrupted newest backup is skipped for the previous good one; retention keeps the newest N', async () => {
  assert.ok(first, 'the first backup was taken');
  const original = await fingerprint();
  await exec(svc, 'echo second >/data/second.txt');
  const second = await backupVolume({ volume: vol });
  assert.notEqual(second.backupId, first.backupId);
  // Flip bytes in the middle of the newest tar.
  const tar = path.join(path.dirname(second.manifestPath), 'volume.tar');
  const fh = await open(tar, 'r+');
  try {
    const buf = Buffer.alloc(32, 0xaa);
    await fh.write(buf, 0, buf.length, Math.floor(second.sizeBytes / 2));
  } finally {
    await fh.close();
  }
  await exec(svc, 'rm -rf /data/*');
  const r = await restoreVolume({ volume: vol, service: svc, healthUrl, healthTimeoutMs: 20_000, stopTimeoutSec: 1 }, 'restore-volume-skip-corrupt');
  assert.equal(r.backupId, first.backupId, 'the previous good backup was used');
  assert.equal(r.skipped.length, 1, JSON.stringify(r.skipped));
  assert.equal(r.skipped[0]!.backupId, second.backupId);
  assert.match(r.skipped[0]!.reason, /SHA-256 mismatch/);
  assert.equal(await fingerprint(), original, 'the content of the first backup');
  assert.equal(await httpStatus(healthUrl), 200);

  // Asking for the corrupt one by id: it is not restored, and the service keeps running.
  const h = await startRunbook(client, 'restoreVolume', { volume: vol, backupId: second.backupId, service: svc, stopTimeoutSec: 1 }, { taskQueue: worker.taskQueue, workflowId: uniqueName('dvol-restore') });
  await assert.rejects(h.result(), (err: unknown) => {
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    assert.equal(cause.type, 'NoUsableBackup');
    assert.match(cause.message, /SHA-256 mismatch/);
    return true;
  });
  assert.equal((await inspect(svc)).State.Running, true, 'a corrupt backup costs no downtime: checked before the stop');

  // Retention: keep 2 -> the oldest of three goes.
  const third = await backupVolume({ volume: vol, keep: 2 });
  assert.deepEqual(third.removed, [first.backupId]);
  assert.equal(existsSync(path.dirname(first.manifestPath)), false);
  assert.equal(existsSync(path.dirname(second.manifestPath)), true);
});

test('restore into another volume (no service): created and filled from the newest good backup', async () => {
  const copy = uniqueName('dvol-copy');
  volumes.push(copy);
  const r = await restoreVolume({ volume: vol, intoVolume: copy });
  assert.equal(r.volume, copy);
  assert.ok(r.files >= 2);
  const c = await docker.createContainer({ Image: DEMO_IMAGE, Entrypoint: [], Cmd: ['sh', '-c', 'cd /v && find . -type f | sort | xargs sha256sum'], HostConfig: { NetworkMode: 'none', Binds: [`${copy}:/v:ro`] } });
  try {
    await c.start();
    await c.wait();
    const out = demuxDockerLog((await c.logs({ stdout: true, stderr: true })) as unknown as Buffer).trim();
    assert.equal(out, await fingerprint());
  } finally {
    await c.remove({ force: true });
  }
});

test('worker SIGKILLed right after the untar, before it reported: a new worker redoes it (emptied and refilled), the restore finishes once, healthy', async () => {
  const taskQueue = uniqueName('volume-test-crash');
  const original = await fingerprint();
  await exec(svc, 'rm -rf /data/sub && echo crash >/data/crash.txt');
  const first = await spawnWorker(taskQueue, { env: { DURABLE_OPS_FAULT_CRASH_AFTER: 'restoreVolume' } });
  let second: WorkerProcess | undefined;
  try {
    const h = await startRunbook(client, 'restoreVolume', { volume: vol, service: svc, healthUrl, healthTimeoutMs: 20_000, stopTimeoutSec: 1 }, { taskQueue, workflowId: uniqueName('dvol-restore-crash') });
    await Promise.race([first.exited, new Promise((_, reject) => setTimeout(() => reject(new Error(`the worker did not crash:\n${first.output()}`)), 60_000))]);
    assert.match(first.output(), /fault injection: SIGKILL after restoreVolume/);
    second = await spawnWorker(taskQueue);
    const r: RestoreVolumeResult = await h.result();
    assert.equal(r.healthy, true);
    assert.deepEqual(r.skipped, []);
    const history = await h.fetchHistory();
    const attempts = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes && e.activityTaskStartedEventAttributes.attempt! > 1).length;
    assert.ok(attempts >= 1, 'an activity was retried on the new worker');
    assert.equal((history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'stopContainer').length, 1, 'one stop');
    assert.equal(await fingerprint(), original, 'the content of the backup, once (crash.txt gone)');
    assert.equal(await httpStatus(healthUrl), 200);
  } finally {
    await first.kill('SIGKILL');
    await second?.kill('SIGTERM');
  }
});
