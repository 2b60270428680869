/**
 * backupDatabase: one backup of a database (physical: pg_basebackup against the WAL archive;
 * logical: pg_dump -Fc) into the backup store, then retention (keep N of the kind, and the WAL
 * the oldest kept base backup needs). Started by its Schedules (config/backups.json), by an
 * operator, or as a child of a drill.
 *
 * The backup id is derived from the workflow (start time + a hash of workflow id and run id), so
 * an activity retry after a worker crash finishes or redoes the same folder, never a second backup.
 */
import { proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { backupDatabaseInputSchema, keepFor, type BackupKind } from '../schemas/database';
import { beginRunbook, showDetails } from './shared/runbook';

export const RUNBOOK = 'backupDatabase';

export interface BackupDatabaseResult {
  backupId: string;
  kind: BackupKind;
  consistentUntil: string;
  sizeBytes: number;
  manifestPath: string;
  /** Backup ids removed by retention. */
  removed: string[];
  /** WAL archive files removed by retention (physical). */
  removedWal: number;
  /** True when a retry found the backup already complete. */
  alreadyDone: boolean;
}

/** FNV-1a, 32 bits, as 8 hex digits: a short deterministic hash. */
export function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** `<UTC start, compact>-<hash>`: sorts by time, unique per workflow run, stable across retries. */
export function backupIdFor(startTime: Date, workflowId: string, runId: string): string {
  const t = startTime.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${t}-${fnv1a(`${workflowId}/${runId}`)}`;
}

const backups = proxyActivities<Activities>({
  startToCloseTimeout: '3h',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 5, nonRetryableErrorTypes: ['InvalidInput', 'TargetUnavailable'] },
});
/** Retention is a few deletions: a local activity (no extra round trip through the server). */
const local = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
});

export async function backupDatabase(rawInput: unknown): Promise<BackupDatabaseResult> {
  const input = beginRunbook(RUNBOOK, backupDatabaseInputSchema, rawInput, (i) => `postgres/${i.database.id}`);
  const info = workflowInfo();
  const backupId = backupIdFor(info.startTime, info.workflowId, info.runId);
  const keep = keepFor(input.kind, input.keep);
  showDetails(`${input.kind} backup of ${input.database.id}: running`, { backup: backupId, database: `${input.database.id} (127.0.0.1:${input.database.port}/${input.database.database})`, keep });

  const done = input.kind === 'physical' ? await backups.backupPhysical({ database: input.database, backupId }) : await backups.backupLogical({ database: input.database, backupId });
  const retention = await local.applyRetention({ databaseId: input.database.id, kind: input.kind, keep, current: backupId });

  const result: BackupDatabaseResult = {
    backupId,
    kind: input.kind,
    consistentUntil: done.manifest.consistentUntil,
    sizeBytes: done.manifest.sizeBytes,
    manifestPath: done.manifestPath,
    removed: retention.removed,
    removedWal: retention.removedWal,
    alreadyDone: done.alreadyDone,
  };
  showDetails(`${input.kind} backup of ${input.database.id}: done`, {
    backup: backupId,
    'consistent until': result.consistentUntil,
    bytes: result.sizeBytes,
    manifest: result.manifestPath,
    'removed by retention': retention.removed.join(', ') || 'none',
    'WAL files removed': retention.removedWal,
  });
  return result;
}
