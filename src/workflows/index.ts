/** Every runbook the worker registers. */
export { superviseService } from './supervise-service';
export { restartService } from './restart-service';
