/** Input of the restartService runbook (one operator-requested restart with health verification). */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { containerName, durationMs, httpUrl } from './common';
import { leaseFields } from './lease';

export const restartServiceInputSchema = z.strictObject({
  service: containerName,
  reason: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters').default('operator request'),
  /** HTTP endpoint that must answer 200 after the restart; without it, Docker's health status (or running state) decides. */
  healthUrl: httpUrl.optional(),
  healthTimeoutMs: durationMs.min(1, 'must be > 0').default(seed.HEALTHCHECK_START_PERIOD_MS),
  stopTimeoutSec: z.number().int().min(0, 'must be >= 0').max(600, 'must be <= 600').default(seed.RESTART_STOP_TIMEOUT_SEC),
  ...leaseFields,
});

export type RestartServiceInput = z.input<typeof restartServiceInputSchema>;
export type RestartServiceParams = z.output<typeof restartServiceInputSchema>;
