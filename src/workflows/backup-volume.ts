/**
 * backupVolume: one backup of a named Docker volume (a tar taken through a short-lived container
 * of the demo image, no network) into `<store>/volumes/<volume>/<backupId>/`, its manifest (size
 * and SHA-256 of the tar) written last, then retention (keep the newest N).
 *
 * With `quiesce`, the container using the volume is paused (docker pause) for the tar and
 * unpaused after, always (the unpause is set up before the pause, and runs even on failure or
 * cancellation), so the copy is consistent as of the pause.
 *
 * The backup id is derived from the workflow (as backupDatabase), so an activity retry after a
 * worker crash finishes or redoes the same folder, never a second backup.
 */
import { CancellationScope, proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { backupVolumeInputSchema } from '../schemas/volume';
import { backupIdFor } from './backup-database';
import { beginRunbook, showDetails } from './shared/runbook';
import { leaseKeyOf } from '../schemas/lease';
import { holdingLease } from './shared/harness';

export const RUNBOOK = 'backupVolume';

export interface BackupVolumeResult {
  backupId: string;
  volume: string;
  /** When the copy was taken (the pause, with quiesce). */
  consistentUntil: string;
  sizeBytes: number;
  manifestPath: string;
  /** The container paused during the tar, if any. */
  quiesced?: string;
  /** Backup ids removed by retention. */
  removed: string[];
  /** True when a retry found the backup already complete. */
  alreadyDone: boolean;
}

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10, nonRetryableErrorTypes: ['InvalidInput'] },
});
const tar = proxyActivities<Activities>({
  startToCloseTimeout: '3h',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 5, nonRetryableErrorTypes: ['InvalidInput', 'VolumeNotFound', 'TargetUnavailable'] },
});
const local = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
});

export async function backupVolume(rawInput: unknown): Promise<BackupVolumeResult> {
  const input = beginRunbook(RUNBOOK, backupVolumeInputSchema, rawInput, (i) => `volume/${i.volume}`);
  const info = workflowInfo();
  const backupId = backupIdFor(info.startTime, info.workflowId, info.runId);
  const service = input.quiesce?.service;
  showDetails(`backup of volume ${input.volume}: running`, { backup: backupId, keep: input.keep, quiesce: service });

  // A quiesce target that does not mount the volume is bad input: nothing is paused. One that an
  // operator paused already is quiet as it is: we neither pause nor unpause it.
  const mount = service ? await quick.checkVolumeMount({ service, volume: input.volume, field: 'quiesce.service' }) : undefined;
  const pausing = service !== undefined && mount !== undefined && !mount.paused ? service : undefined;

  // Pausing the service is a change: it holds the service's lease (the supervisor does not restart a paused container meanwhile).
  type Done = Awaited<ReturnType<Activities['backupVolume']>>;
  const tarIt = async (): Promise<Done> => {
    try {
      if (pausing) {
        const p = await quick.pauseContainer(pausing);
        showDetails(`backup of volume ${input.volume}: running`, { backup: backupId, keep: input.keep, quiesce: `${pausing}: ${p.detail}` });
      }
      return await tar.backupVolume({ volume: input.volume, backupId });
    } finally {
      // Always, even when the pause or the tar failed or the run is cancelled (unpause is idempotent).
      if (pausing) await CancellationScope.nonCancellable(() => quick.unpauseContainer(pausing));
    }
  };
  const done = pausing ? await holdingLease({ service: leaseKeyOf(pausing), runbook: RUNBOOK, waitForLease: input.waitForLease, leaseWaitTimeoutMs: input.leaseWaitTimeoutMs }, tarIt) : await tarIt();
  const retention = await local.applyVolumeRetention({ volume: input.volume, keep: input.keep, current: backupId });

  const result: BackupVolumeResult = {
    backupId,
    volume: input.volume,
    consistentUntil: done.manifest.consistentUntil,
    sizeBytes: done.manifest.sizeBytes,
    manifestPath: done.manifestPath,
    ...(service ? { quiesced: service } : {}),
    removed: retention.removed,
    alreadyDone: done.alreadyDone,
  };
  showDetails(`backup of volume ${input.volume}: done`, {
    backup: backupId,
    'consistent until': result.consistentUntil,
    bytes: result.sizeBytes,
    manifest: result.manifestPath,
    quiesced: service,
    'removed by retention': retention.removed.join(', ') || 'none',
  });
  return result;
}
