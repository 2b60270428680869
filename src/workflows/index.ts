/** Every runbook the worker registers. */
export { superviseService } from './supervise-service';
export { restartService } from './restart-service';
export { alertGroup } from './alert-group';
export { deliverAlert } from './deliver-alert';
export { deadLetters } from './dead-letters';
export { rotateCredential } from './rotate-credential';
export { backupDatabase } from './backup-database';
export { restoreDatabase } from './restore-database';
export { verifyBackups } from './verify-backups';
export { scaleService } from './scale-service';
export { resizeService } from './resize-service';
export { autoscaleService } from './autoscale-service';
export { recoveryDrill } from './recovery-drill';
export { startDatabase } from './start-database';
export { backupVolume } from './backup-volume';
export { restoreVolume } from './restore-volume';
export { serviceLease } from './service-lease';
