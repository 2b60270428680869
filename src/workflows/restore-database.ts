/**
 * restoreDatabase: restore a backup into a new instance (never over the source). Physical:
 * base backup + WAL archive replay to a point in time (or the archive's end), then promotion;
 * logical: a fresh instance + pg_restore. The newest backup whose checksums (and, physical, WAL)
 * verify is used (sizes and WAL checked first, the big file hashed while it is restored); a
 * corrupt one is skipped and reported in `skipped`, and the next older one is restored. On failure the
 * half-restored instance is dropped before the workflow fails: no half-restored instance is left.
 */
import { ActivityCancellationType, ApplicationFailure, CancellationScope, CancelledFailure, defineQuery, isCancellation, proxyActivities, proxyLocalActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import * as seed from '../config/defaults';
import { restoreDatabaseInputSchema, type BackupKind, type DatabaseRef } from '../schemas/database';
import { now } from './shared/deterministic';
import { activityFailedWith, rootMessage } from './shared/errors';
import { beginRunbook, iso, showDetails } from './shared/runbook';
import { holdingLease, undoing } from './shared/harness';

export const RUNBOOK = 'restoreDatabase';

export interface RestoreDatabaseResult {
  instance: DatabaseRef;
  backupId: string;
  kind: BackupKind;
  skipped: Array<{ backupId: string; reason: string }>;
  restoredAt: string;
  recoveryTarget: string;
  /** Workflow time from start to the restored instance answering (ms). */
  durationMs: number;
}

export type RestorePhase = 'choosing' | 'restoring' | 'done' | 'dropping' | 'failed';
export interface RestoreStatus {
  phase: RestorePhase;
  backupId?: string;
  skipped: Array<{ backupId: string; reason: string }>;
  error?: string;
}
export const restoreStatusQuery = defineQuery<RestoreStatus>('status');

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
});
/** Listing and the quick check (sizes, small files, WAL present) take milliseconds: local activities, no round trips. */
const local = proxyLocalActivities<Activities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
});
const restore = proxyActivities<Activities>({
  // A cancel waits for a running step to end before the undo runs (a step deaf to the cancel could land after its undo).
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  startToCloseTimeout: seed.PG_RESTORE_TIMEOUT_MS + 60 * 60_000,
  heartbeatTimeout: seed.RESTORE_HEARTBEAT_TIMEOUT_MS,
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes: ['InvalidInput', 'BackupNotFound', 'BackupCorrupt'] },
});

export async function restoreDatabase(rawInput: unknown): Promise<RestoreDatabaseResult> {
  const input = beginRunbook(RUNBOOK, restoreDatabaseInputSchema, rawInput, (i) => `postgres/${i.source.id}`);
  const startedAt = now();
  const status: RestoreStatus = { phase: 'choosing', skipped: [] };
  setHandler(restoreStatusQuery, () => status);
  const show = () =>
    showDetails(`restore ${input.source.id} -> ${input.instanceId}: ${status.phase}`, {
      kind: input.kind,
      'point in time': input.pointInTime,
      backup: status.backupId,
      skipped: status.skipped.map((s) => `${s.backupId} (${s.reason})`).join('; '),
      started: iso(startedAt),
      error: status.error,
    });
  show();

  // The new instance is what this run changes: it holds the instance's lease (a second restore into
  // the same instance id is refused, or waits), so no drill, start or drop touches it half-restored.
  return holdingLease({ service: `postgres/${input.instanceId}`, runbook: RUNBOOK, waitForLease: input.waitForLease, leaseWaitTimeoutMs: input.leaseWaitTimeoutMs }, async () => {
    // Candidates, newest first: the one asked for, or every backup old enough for the target time.
    const all = await local.listBackups({ databaseId: input.source.id, kind: input.kind });
    const targetMs = input.pointInTime === 'latest' ? undefined : Date.parse(input.pointInTime);
    const candidates = input.backupId ? all.filter((m) => m.backupId === input.backupId) : all.filter((m) => targetMs === undefined || Date.parse(m.consistentUntil) <= targetMs);
    if (candidates.length === 0) {
      const why = input.backupId ? `no ${input.kind} backup ${input.backupId} of ${input.source.id}` : `no ${input.kind} backup of ${input.source.id}${targetMs !== undefined ? ` consistent before ${input.pointInTime}` : ''}`;
      throw ApplicationFailure.create({ type: 'NoUsableBackup', nonRetryable: true, message: why });
    }
    // Each candidate, newest first: a quick check (sizes, small files, the WAL it needs), then the
    // restore, which hashes the big file in the same read it restores from. A corrupt backup
    // (BackupCorrupt) is skipped: its instance is dropped and the next older backup is tried.
    for (const m of candidates) {
      const check = await local.verifyBackup({ databaseId: input.source.id, kind: input.kind, backupId: m.backupId, full: false });
      if (!check.ok) {
        status.skipped.push({ backupId: m.backupId, reason: check.reason ?? 'verification failed' });
        show();
        continue;
      }
      status.phase = 'restoring';
      status.backupId = m.backupId;
      show();
      try {
        const r =
          input.kind === 'physical'
            ? await restore.restorePhysical({ source: input.source, backupId: m.backupId, pointInTime: input.pointInTime, instanceId: input.instanceId })
            : await restore.restoreLogical({ source: input.source, backupId: m.backupId, instanceId: input.instanceId });
        // Cancelled while the restore ran (it waited for it to end): the new instance goes, as on any failure.
        if (CancellationScope.current().consideredCancelled) throw new CancelledFailure('cancelled while restoring');
        status.phase = 'done';
        show();
        return { instance: r.instance, backupId: r.backupId, kind: r.kind, skipped: status.skipped, restoredAt: r.restoredAt, recoveryTarget: r.recoveryTarget, durationMs: now() - startedAt };
      } catch (err) {
        // No half-restored instance stays behind (nor can anything be switched to it).
        // Cancelled too (non-cancellable): the drop still runs.
        status.phase = 'dropping';
        status.error = isCancellation(err) ? 'cancelled' : rootMessage(err);
        show();
        await undoing(() => quick.dropInstance(input.instanceId));
        if (activityFailedWith(err, 'BackupCorrupt')) {
          status.skipped.push({ backupId: m.backupId, reason: err.cause.message });
          status.phase = 'choosing';
          status.error = undefined;
          show();
          continue;
        }
        status.phase = 'failed';
        show();
        throw err;
      }
    }
    status.phase = 'failed';
    show();
    throw ApplicationFailure.create({ type: 'NoUsableBackup', nonRetryable: true, message: `no ${input.kind} backup of ${input.source.id} verifies: ${status.skipped.map((s) => `${s.backupId}: ${s.reason}`).join('; ')}`, details: [status.skipped] });
  });
}
