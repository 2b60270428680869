/**
 * verifyBackups (scheduled every 15 min): checksums of the newest backups, freshness against the
 * RPO (newest consistent-until point and the WAL archive's age), and a warning (RPO at risk, a
 * corrupt newest backup) or critical (RPO broken, no verified backup) alert; resolved when ok.
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { BackupHealth } from '../activities/backup';
import { verifyBackupsInputSchema } from '../schemas/database';
import { beginRunbook, showDetails } from './shared/runbook';

export const RUNBOOK = 'verifyBackups';

const check = proxyActivities<Activities>({
  startToCloseTimeout: '1h',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
});
const quick = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 },
});

export const backupAlertKey = (databaseId: string) => `postgres/${databaseId}/backups`;

export async function verifyBackups(rawInput: unknown): Promise<BackupHealth> {
  const input = beginRunbook(RUNBOOK, verifyBackupsInputSchema, rawInput, (i) => `postgres/${i.database.id}`);
  const health = await check.checkBackups({ database: input.database, rpoMs: input.rpoMs });
  showDetails(`backups of ${input.database.id}: ${health.status}`, {
    'RPO exposure s': health.exposureMs === undefined ? 'unknown' : Math.round(health.exposureMs / 1000),
    'RPO target s': Math.round(input.rpoMs / 1000),
    ...Object.fromEntries(health.kinds.map((k) => [`newest ${k.kind}`, k.newestBackupId ? `${k.newestBackupId} (${k.consistentUntil})` : 'none'])),
    'WAL age s': health.wal.ageMs === undefined ? undefined : Math.round(health.wal.ageMs / 1000),
    problems: health.problems.join('; '),
  });
  if (input.alert) {
    const dedupKey = backupAlertKey(input.database.id);
    if (health.status === 'ok') await quick.resolveAlert({ dedupKey });
    else
      await quick.sendAlert({
        severity: health.status,
        service: `postgres/${input.database.id}`,
        summary: health.status === 'critical' ? 'backups: RPO broken or no verified backup' : 'backups: RPO at risk',
        details: {
          problems: health.problems.join('\n'),
          'RPO exposure s': health.exposureMs === undefined ? 'unknown' : Math.round(health.exposureMs / 1000),
          'RPO target s': Math.round(input.rpoMs / 1000),
        },
        runbook: RUNBOOK,
        workflowId: workflowInfo().workflowId,
        dedupKey,
      });
  }
  return health;
}
