/**
 * Docker volume runbooks and the delete-volume-data drill, without Docker: the pure pieces
 * (checksum lists, heartbeat lines), the input schemas, and the workflows' compensations with
 * stubbed activities on the real Temporal server (the quiesced container is unpaused when the
 * tar fails; the service is started again when the restore fails after the stop; a backup found
 * corrupt during the restore is skipped for the previous one, with one stop).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import type { Activities } from '../../src/activities';
import type { VolumeManifest } from '../../src/activities/backup';
import { compareFiles, digestOf, newestHeartbeatIn, parseSha256sum } from '../../src/activities/drill';
import { LEASE_WAIT_TIMEOUT_MS, VOLUME_BACKUP_KEEP } from '../../src/config/defaults';
import { recoveryDrillInputSchema } from '../../src/schemas/recovery-drill';
import { backupVolumeInputSchema, restoreVolumeInputSchema } from '../../src/schemas/volume';
import type { RestoreVolumeResult } from '../../src/workflows/restore-volume';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

test('sha256sum output parses into sorted (path, sum) pairs; the digest ignores order', () => {
  const files = parseSha256sum(`${B}  item-2.txt\n${A}  item-10.txt\nnot a line\n${A} *item-1.txt\n`);
  assert.deepEqual(files.map((f) => f.path), ['item-1.txt', 'item-10.txt', 'item-2.txt']);
  assert.equal(digestOf(files), digestOf([...files].reverse()));
  assert.notEqual(digestOf(files), digestOf(files.slice(1)));
});

test('compareFiles counts matches and names the first difference', () => {
  const expected = [
    { path: 'item-1.txt', sha256: A },
    { path: 'item-2.txt', sha256: B },
  ];
  assert.deepEqual(compareFiles(expected, expected), { ok: true, matching: 2 });
  assert.deepEqual(compareFiles(expected, [{ path: 'item-1.txt', sha256: A }]), { ok: false, matching: 1, problem: 'item-2.txt is missing' });
  assert.deepEqual(compareFiles(expected, [{ path: 'item-1.txt', sha256: B }, { path: 'item-2.txt', sha256: B }]), { ok: false, matching: 1, problem: 'item-1.txt: SHA-256 differs' });
});

test('newest heartbeat at or before the fault, from a heartbeat file (partial or junk lines ignored)', () => {
  const text = '1796033900100\n1796033900300\n17960339\n1796033900500\n\n1796033905000\n';
  assert.deepEqual(newestHeartbeatIn(text, 1796033900400), { newest: 1796033900300, rows: 2 });
  assert.deepEqual(newestHeartbeatIn(text, 1796033900500), { newest: 1796033900500, rows: 3 });
  assert.deepEqual(newestHeartbeatIn(text, 1), { rows: 0 });
  assert.deepEqual(newestHeartbeatIn('', 1796033900500), { rows: 0 });
});

test('schemas: seed defaults, Docker volume names, unknown fields', () => {
  assert.deepEqual(backupVolumeInputSchema.parse({ volume: 'web-data' }), { volume: 'web-data', keep: VOLUME_BACKUP_KEEP, waitForLease: false, leaseWaitTimeoutMs: LEASE_WAIT_TIMEOUT_MS });
  for (const bad of [{ volume: '-x' }, { volume: 'a/b' }, { volume: 'ok', keep: 0 }, { volume: 'ok', quiesce: {} }, { volume: 'ok', extra: 1 }]) {
    assert.equal(backupVolumeInputSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
  const r = restoreVolumeInputSchema.parse({ volume: 'web-data', service: 'web' });
  assert.equal(r.healthTimeoutMs, 40_000);
  assert.equal(r.stopTimeoutSec, 10);
  for (const bad of [{ volume: 'ok', backupId: '../x' }, { volume: 'ok', healthUrl: 'ftp://x' }, { volume: 'ok', intoVolume: 'a b' }, { volume: 'ok', keep: 2 }]) {
    assert.equal(restoreVolumeInputSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
  const d = recoveryDrillInputSchema.parse({ scenario: 'delete-volume-data', target: { service: 'w', demoPort: 18960, volume: 'v' } });
  assert.equal(d.scenario === 'delete-volume-data' && d.target.files, 20);
  assert.equal(recoveryDrillInputSchema.safeParse({ scenario: 'delete-volume-data', target: { service: 'w', volume: 'v' } }).success, false, 'demoPort is required');
});

// ---- workflows with stubbed activities -------------------------------------------------------

const manifest = (backupId: string): VolumeManifest => ({ backupId, kind: 'volume', volume: 'v', startedAt: '2026-11-30T10:00:00Z', finishedAt: '2026-11-30T10:00:01Z', consistentUntil: `2026-11-30T10:00:0${backupId.slice(-1)}Z`, sizeBytes: 10, files: [] });

class FakeDocker {
  calls: string[] = [];
  paused = false;
  failTar = false;
  failRestore: 'corrupt-newest' | 'error' | undefined;

  activities(): Partial<Activities> {
    const call = (n: string) => this.calls.push(n);
    return {
      checkVolumeMount: async () => {
        call('checkVolumeMount');
        return { destination: '/data', running: true, paused: this.paused };
      },
      pauseContainer: async () => {
        call('pauseContainer');
        return { paused: true, detail: 'paused' };
      },
      unpauseContainer: async () => {
        call('unpauseContainer');
        return { unpaused: true, detail: 'unpaused' };
      },
      backupVolume: async ({ volume, backupId }) => {
        call('backupVolume');
        if (this.failTar) throw ApplicationFailure.nonRetryable('tar exited with 1', 'TarFailed');
        return { manifest: { ...manifest(backupId), volume }, manifestPath: `/store/volumes/${volume}/${backupId}/manifest.json`, alreadyDone: false };
      },
      applyVolumeRetention: async () => {
        call('applyVolumeRetention');
        return { removed: [], removedWal: 0, kept: [] };
      },
      listVolumeBackups: async () => {
        call('listVolumeBackups');
        return [manifest('b2'), manifest('b1')];
      },
      verifyVolumeBackup: async ({ backupId }) => {
        call(`verifyVolumeBackup:${backupId}`);
        return { backupId, ok: true };
      },
      stopContainer: async () => {
        call('stopContainer');
        return { wasRunning: true };
      },
      startContainer: async () => {
        call('startContainer');
        return { startedAt: Date.now() };
      },
      restoreVolume: async ({ volume, backupId }) => {
        call(`restoreVolume:${backupId}`);
        if (this.failRestore === 'error') throw ApplicationFailure.nonRetryable('no space left on device', 'TarFailed');
        if (this.failRestore === 'corrupt-newest' && backupId === 'b2') throw ApplicationFailure.nonRetryable('volume.tar: SHA-256 mismatch', 'BackupCorrupt');
        return { volume, backupId, files: 1, restoredFiles: 3 };
      },
      waitHealthy: async () => {
        call('waitHealthy');
        return { healthy: true, waitedMs: 1, probes: 1, last: { ok: true, status: 200, latencyMs: 1 } };
      },
    };
  }
}

let client: Client;
const workers: RunningWorker[] = [];
before(async () => {
  client = await connectClient();
});
after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await client.connection.close();
});

async function run(fake: FakeDocker, runbook: 'backupVolume' | 'restoreVolume', input: object) {
  const w = await startWorker({ taskQueue: uniqueName('volume-test-unit'), activities: fake.activities() });
  workers.push(w);
  return client.workflow.start(runbook, { taskQueue: w.taskQueue, workflowId: uniqueName(`volume-unit-${runbook}`), args: [input], workflowExecutionTimeout: '1 minute' });
}

test('backupVolume with quiesce: paused for the tar, unpaused after; the tar failing still unpauses', async () => {
  const ok = new FakeDocker();
  await (await run(ok, 'backupVolume', { volume: 'v', quiesce: { service: 'web' } })).result();
  assert.deepEqual(ok.calls, ['checkVolumeMount', 'pauseContainer', 'backupVolume', 'unpauseContainer', 'applyVolumeRetention']);

  const failing = new FakeDocker();
  failing.failTar = true;
  await assert.rejects((await run(failing, 'backupVolume', { volume: 'v', quiesce: { service: 'web' } })).result(), WorkflowFailedError);
  assert.deepEqual(failing.calls, ['checkVolumeMount', 'pauseContainer', 'backupVolume', 'unpauseContainer']);

  // A container an operator paused already is left as it is.
  const paused = new FakeDocker();
  paused.paused = true;
  await (await run(paused, 'backupVolume', { volume: 'v', quiesce: { service: 'web' } })).result();
  assert.deepEqual(paused.calls, ['checkVolumeMount', 'backupVolume', 'applyVolumeRetention']);
});

test('restoreVolume: a failure after the stop starts the service again, then fails', async () => {
  const fake = new FakeDocker();
  fake.failRestore = 'error';
  await assert.rejects((await run(fake, 'restoreVolume', { volume: 'v', service: 'web', healthUrl: 'http://127.0.0.1:18952/health' })).result(), (err: unknown) => {
    const cause = (err as WorkflowFailedError).cause;
    assert.ok(cause instanceof ActivityFailure && cause.cause instanceof ApplicationFailure, String(cause));
    assert.match(cause.cause.message, /no space left/);
    return true;
  });
  assert.deepEqual(fake.calls, ['checkVolumeMount', 'listVolumeBackups', 'verifyVolumeBackup:b2', 'stopContainer', 'restoreVolume:b2', 'startContainer']);
});

test('restoreVolume: a backup found corrupt while restoring is skipped for the previous one, with a single stop and start', async () => {
  const fake = new FakeDocker();
  fake.failRestore = 'corrupt-newest';
  const r: RestoreVolumeResult = await (await run(fake, 'restoreVolume', { volume: 'v', service: 'web', healthUrl: 'http://127.0.0.1:18952/health' })).result();
  assert.equal(r.backupId, 'b1');
  assert.deepEqual(r.skipped.map((s) => s.backupId), ['b2']);
  assert.equal(r.files, 3);
  assert.deepEqual(fake.calls, ['checkVolumeMount', 'listVolumeBackups', 'verifyVolumeBackup:b2', 'stopContainer', 'restoreVolume:b2', 'verifyVolumeBackup:b1', 'restoreVolume:b1', 'startContainer', 'waitHealthy']);
});
