/** Input of the resizeService runbook (vertical scaling: CPU and memory limits and reservations). */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { approvalFields } from './approval';
import { leaseFields } from './lease';
import { containerName, durationMs, httpUrl } from './common';

const cpus = z.number().min(0.01, 'must be >= 0.01 CPU').max(256, 'must be <= 256 CPUs');
const memoryMb = z.number().int('must be a whole number of MiB').min(6, 'must be >= 6 MiB (Docker refuses less)').max(1_048_576, 'must be <= 1 TiB');

const minMax = <T extends { min: number; max: number }>(r: T) => r.min <= r.max;
const cpuRange = z
  .strictObject({ min: cpus.default(seed.RESIZE_CPU_MIN), max: cpus.default(seed.RESIZE_CPU_MAX) })
  .refine(minMax, { path: ['min'], message: 'must be <= max' });
const memoryRange = z
  .strictObject({ min: memoryMb.default(seed.RESIZE_MEMORY_MB_MIN), max: memoryMb.default(seed.RESIZE_MEMORY_MB_MAX) })
  .refine(minMax, { path: ['min'], message: 'must be <= max' });

export const resizeServiceInputSchema = z.strictObject({
  /** Containers mode: the container `<service>` or the replicas `<service>-<n>`. Swarm mode: the service name. */
  service: containerName,
  mode: z.enum(['containers', 'swarm'], { error: 'must be "containers" or "swarm"' }).default('containers'),
  /** How long `docker stats` is sampled before recommending. */
  windowMs: durationMs.min(1_000, 'must be >= 1000').max(3_600_000, 'must be <= 1 hour').default(seed.RESIZE_SAMPLE_WINDOW_MS),
  sampleIntervalMs: durationMs.min(1_000, 'must be >= 1000').max(60_000, 'must be <= 60000').default(seed.RESIZE_SAMPLE_INTERVAL_MS),
  /** Limits the recommendation stays within. */
  bounds: z
    .strictObject({
      cpu: cpuRange.prefault({}),
      memoryMb: memoryRange.prefault({}),
    })
    .prefault({}),
  /** Headroom over the observed peak, in percent. */
  headroomPercent: z.number().min(0, 'must be >= 0').max(400, 'must be <= 400').default(seed.RESIZE_HEADROOM_PERCENT),
  /** Reservations as a fraction of the limits. */
  reservationFraction: z.number().min(0, 'must be >= 0').max(1, 'must be <= 1').default(seed.RESIZE_RESERVATION_FRACTION),
  /** Explicit limits: override the recommendation (still checked against the observed usage floor). */
  limits: z.strictObject({ cpu: cpus.optional(), memoryMb: memoryMb.optional() }).optional(),
  /** HTTP endpoint that must answer 2xx after the change; Docker's health status of every replica decides too. */
  healthUrl: httpUrl.optional(),
  healthTimeoutMs: durationMs.min(1, 'must be > 0').default(seed.HEALTHCHECK_START_PERIOD_MS),
  /** The service must stay healthy this long after the change, or the old limits come back. */
  verifyStableMs: durationMs.max(3_600_000, 'must be <= 1 hour').default(seed.RESIZE_VERIFY_STABLE_MS),
  verifyIntervalMs: durationMs.min(100, 'must be >= 100').default(1_000),
  /** Swarm rolling update delay between tasks (seed update_config delay). */
  updateDelayMs: durationMs.max(600_000, 'must be <= 600000').default(seed.SWARM_UPDATE_DELAY_MS),
  ...approvalFields,
  ...leaseFields,
});

export type ResizeServiceInput = z.input<typeof resizeServiceInputSchema>;
export type ResizeServiceParams = z.output<typeof resizeServiceInputSchema>;
