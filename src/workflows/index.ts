/** Every runbook the worker registers. */
export { superviseService } from './supervise-service';
export { restartService } from './restart-service';
export { alertGroup } from './alert-group';
export { deliverAlert } from './deliver-alert';
export { deadLetters } from './dead-letters';
export { rotateCredential } from './rotate-credential';
