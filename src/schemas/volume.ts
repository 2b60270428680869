/**
 * Docker volume backups (issue #6): the inputs of the backupVolume and restoreVolume runbooks.
 * A volume backup is a tar of the volume taken through a short-lived container of the demo image,
 * in `<store>/volumes/<volume>/<backupId>/` with a checksummed manifest written last.
 * Pure: imported by workflows, starters and tests alike.
 */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { containerName, durationMs, httpUrl } from './common';
import { backupId, volumeName } from './database';
import { leaseFields } from './lease';

export const backupVolumeInputSchema = z.strictObject({
  /** The named Docker volume to back up. */
  volume: volumeName,
  /** Volume backups kept after this one (newest first). */
  keep: z.number().int('must be a whole number').min(1, 'must be >= 1').max(1000, 'must be <= 1000').default(seed.VOLUME_BACKUP_KEEP),
  /** Pause the container that uses the volume (docker pause) during the tar, for a consistent copy; unpaused after, always. */
  quiesce: z.strictObject({ service: containerName }).optional(),
  ...leaseFields,
});
export type BackupVolumeInput = z.input<typeof backupVolumeInputSchema>;
export type BackupVolumeParams = z.output<typeof backupVolumeInputSchema>;

export const restoreVolumeInputSchema = z.strictObject({
  /** The volume whose backups are restored (the backup store's folder). */
  volume: volumeName,
  /** Default: the newest backup whose checksum verifies (corrupt ones are skipped and listed). */
  backupId: backupId.optional(),
  /** Restore into this volume instead (created if absent); default: the volume itself. */
  intoVolume: volumeName.optional(),
  /** The container that uses the restored volume: stopped before the content is replaced, started after. */
  service: containerName.optional(),
  /** Wait until this answers 2xx after the restore. */
  healthUrl: httpUrl.optional(),
  healthTimeoutMs: durationMs.min(1, 'must be > 0').max(600_000, 'must be <= 600000').default(seed.HEALTHCHECK_START_PERIOD_MS),
  /** Grace period of the service's stop. */
  stopTimeoutSec: z.number().int('must be a whole number').min(0, 'must be >= 0').max(600, 'must be <= 600').default(seed.RESTART_STOP_TIMEOUT_SEC),
  ...leaseFields,
});
export type RestoreVolumeInput = z.input<typeof restoreVolumeInputSchema>;
export type RestoreVolumeParams = z.output<typeof restoreVolumeInputSchema>;
