/**
 * restoreVolume: replace a Docker volume's content with one of its backups (backupVolume), with
 * the container that uses it stopped around the swap and verified healthy after.
 *
 *   choose (the newest backup whose checksum verifies, or the one asked for; a corrupt one is
 *   skipped and listed) -> stop the service (if given) -> empty the volume and untar the backup
 *   into it (a short-lived helper container) -> start the service -> wait for its health URL.
 *
 * Saga: the "start the service again" undo is registered before the stop, so a restore that
 * fails after the stop leaves the service running (on whatever the volume holds) rather than
 * down. Every step is idempotent (stop/start 304, the volume emptied and refilled on each try),
 * so a retry after a worker crash simply finishes the same restore.
 */
import { ActivityCancellationType, ApplicationFailure, defineQuery, proxyActivities, proxyLocalActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import * as seed from '../config/defaults';
import { restoreVolumeInputSchema } from '../schemas/volume';
import { now } from './shared/deterministic';
import { activityFailedWith, rootMessage } from './shared/errors';
import { beginRunbook, iso, showDetails } from './shared/runbook';
import { leaseKeyOf } from '../schemas/lease';
import { holdingLease } from './shared/harness';
import { Saga } from './shared/saga';

export const RUNBOOK = 'restoreVolume';

export interface RestoreVolumeResult {
  /** The volume restored into (intoVolume, or the volume itself). */
  volume: string;
  backupId: string;
  skipped: Array<{ backupId: string; reason: string }>;
  /** Regular files in the volume after the restore. */
  files: number;
  /** The service stopped and started around the restore, if any. */
  service?: string;
  healthy?: boolean;
  /** Workflow time from start to restored (and healthy, with healthUrl), in ms. */
  durationMs: number;
}

export type RestoreVolumePhase = 'choosing' | 'stopping' | 'restoring' | 'starting' | 'verifying' | 'done' | 'compensating' | 'failed';
export interface RestoreVolumeStatus {
  phase: RestoreVolumePhase;
  backupId?: string;
  skipped: Array<{ backupId: string; reason: string }>;
  error?: string;
}
export const restoreVolumeStatusQuery = defineQuery<RestoreVolumeStatus>('status');

const quick = proxyActivities<Activities>({
  // A cancel waits for a running step to end before the undo runs (a step deaf to the cancel could land after its undo).
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  startToCloseTimeout: '1m',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10, nonRetryableErrorTypes: ['InvalidInput'] },
});
/** Listing takes milliseconds: a local activity. */
const local = proxyLocalActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
});
/** The checksum of a big tar takes a while (no heartbeat inside the hash): a generous timeout. */
const verify = proxyActivities<Activities>({
  startToCloseTimeout: '30m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
});
const restore = proxyActivities<Activities>({
  // A cancel waits for a running step to end before the undo runs (a step deaf to the cancel could land after its undo).
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  startToCloseTimeout: '3h',
  heartbeatTimeout: seed.RESTORE_HEARTBEAT_TIMEOUT_MS,
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes: ['InvalidInput', 'BackupNotFound', 'BackupCorrupt', 'TargetUnavailable'] },
});

export async function restoreVolume(rawInput: unknown): Promise<RestoreVolumeResult> {
  const input = beginRunbook(RUNBOOK, restoreVolumeInputSchema, rawInput, (i) => `volume/${i.intoVolume ?? i.volume}`);
  const startedAt = now();
  const target = input.intoVolume ?? input.volume;
  const status: RestoreVolumeStatus = { phase: 'choosing', skipped: [] };
  setHandler(restoreVolumeStatusQuery, () => status);
  const show = () =>
    showDetails(`restore volume ${input.volume}${target !== input.volume ? ` -> ${target}` : ''}: ${status.phase}`, {
      backup: status.backupId,
      service: input.service,
      skipped: status.skipped.map((s) => `${s.backupId} (${s.reason})`).join('; '),
      started: iso(startedAt),
      error: status.error,
    });
  show();

  const { waitHealthy } = proxyActivities<Activities>({
    startToCloseTimeout: input.healthTimeoutMs + 30_000,
    heartbeatTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
  });
  const { stopContainer } = proxyActivities<Activities>({
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    startToCloseTimeout: `${input.stopTimeoutSec + 60}s`,
    heartbeatTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10, nonRetryableErrorTypes: ['ServiceNotFound'] },
  });

  // Bad input that only the engine can judge (no such container, or it does not use the volume): nothing touched.
  if (input.service) await quick.checkVolumeMount({ service: input.service, volume: target, field: 'service' });

  // The restore stops and starts the service: it holds the service's lease (or the volume's, with no service).
  const leaseKey = input.service ? leaseKeyOf(input.service) : `volume/${target}`;
  return holdingLease({ service: leaseKey, runbook: RUNBOOK, waitForLease: input.waitForLease, leaseWaitTimeoutMs: input.leaseWaitTimeoutMs }, async () => {
    const all = await local.listVolumeBackups({ volume: input.volume });
    const candidates = input.backupId ? all.filter((m) => m.backupId === input.backupId) : all;
    if (candidates.length === 0) {
      throw ApplicationFailure.create({ type: 'NoUsableBackup', nonRetryable: true, message: input.backupId ? `backupId: no backup ${input.backupId} of volume ${input.volume}` : `no backup of volume ${input.volume}` });
    }

    const saga = new Saga();
    let stopped = false;
    try {
      for (const m of candidates) {
        // Verify before the service goes down: a corrupt backup costs no downtime.
        const check = await verify.verifyVolumeBackup({ volume: input.volume, backupId: m.backupId });
        if (!check.ok) {
          status.skipped.push({ backupId: m.backupId, reason: check.reason ?? 'verification failed' });
          show();
          continue;
        }
        status.backupId = m.backupId;
        if (input.service && !stopped) {
          const service = input.service;
          saga.add(`start ${service} again`, () => quick.startContainer(service));
          status.phase = 'stopping';
          show();
          await stopContainer({ service, stopTimeoutSec: input.stopTimeoutSec });
          stopped = true;
        }
        status.phase = 'restoring';
        show();
        let restored: Awaited<ReturnType<Activities['restoreVolume']>>;
        try {
          restored = await restore.restoreVolume({ volume: input.volume, backupId: m.backupId, ...(input.intoVolume ? { intoVolume: input.intoVolume } : {}) });
        } catch (err) {
          // Damaged between the check and the restore: the next older one (the volume is refilled from scratch).
          if (!activityFailedWith(err, 'BackupCorrupt')) throw err;
          status.skipped.push({ backupId: m.backupId, reason: rootMessage(err) });
          status.phase = 'choosing';
          show();
          continue;
        }

        let healthy: boolean | undefined;
        if (input.service) {
          status.phase = 'starting';
          show();
          await quick.startContainer(input.service);
        }
        if (input.healthUrl) {
          status.phase = 'verifying';
          show();
          const h = await waitHealthy({ service: input.service ?? target, url: input.healthUrl, timeoutMs: input.healthTimeoutMs, intervalMs: 250, probeTimeoutMs: 2_000 });
          healthy = h.healthy;
          if (!h.healthy) {
            throw ApplicationFailure.create({ type: 'Unhealthy', nonRetryable: true, message: `${input.healthUrl} not healthy within ${input.healthTimeoutMs} ms after the restore of ${m.backupId}: ${h.last.error ?? `HTTP ${h.last.status}`}` });
          }
        }
        status.phase = 'done';
        show();
        return {
          volume: restored.volume,
          backupId: restored.backupId,
          skipped: status.skipped,
          files: restored.restoredFiles,
          ...(input.service ? { service: input.service } : {}),
          ...(healthy !== undefined ? { healthy } : {}),
          durationMs: now() - startedAt,
        };
      }
      throw ApplicationFailure.create({
        type: 'NoUsableBackup',
        nonRetryable: true,
        message: `no backup of volume ${input.volume} verifies: ${status.skipped.map((s) => `${s.backupId}: ${s.reason}`).join('; ')}`,
        details: [status.skipped],
      });
    } catch (err) {
      status.error = rootMessage(err);
      if (saga.size > 0) {
        status.phase = 'compensating';
        show();
        await saga.compensate();
      }
      status.phase = 'failed';
      show();
      throw err;
    }
  });
}
