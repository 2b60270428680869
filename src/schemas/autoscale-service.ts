/** Input of the autoscaleService runbook (one long-running autoscaler per service, after the Kubernetes HPA). */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { containerName, durationMs } from './common';
import { backendName } from './scale-service';

export const autoscaleServiceInputSchema = z
  .strictObject({
    service: containerName,
    mode: z.enum(['swarm', 'containers'], { error: 'must be "swarm" or "containers"' }).default('swarm'),
    /** HAProxy backend (request rate and latency); default: the service name. */
    backend: backendName.optional(),
    /** Replica n listens on 127.0.0.1:basePort+n (passed to scaleService). */
    basePort: z.number().int('must be a whole number').min(1024, 'must be >= 1024').max(65_000, 'must be <= 65000'),
    /** How often to decide (HPA sync period). */
    intervalMs: durationMs.min(1_000, 'must be >= 1000').max(3_600_000, 'must be <= 1 hour').default(seed.AUTOSCALE_INTERVAL_MS),
    /** `docker stats` window per decision (CPU is averaged over it). */
    sampleWindowMs: durationMs.min(1_000, 'must be >= 1000').max(600_000, 'must be <= 600000').default(seed.AUTOSCALE_SAMPLE_WINDOW_MS),
    sampleIntervalMs: durationMs.min(1_000, 'must be >= 1000').max(60_000, 'must be <= 60000').default(1_000),
    minReplicas: z.number().int('must be a whole number').min(1, 'must be >= 1').max(seed.SCALE_MAX_REPLICAS, `must be <= ${seed.SCALE_MAX_REPLICAS}`).default(seed.AUTOSCALE_MIN_REPLICAS),
    maxReplicas: z.number().int('must be a whole number').min(1, 'must be >= 1').max(seed.SCALE_MAX_REPLICAS, `must be <= ${seed.SCALE_MAX_REPLICAS}`).default(seed.AUTOSCALE_MAX_REPLICAS),
    /** Target CPU utilisation per replica (% of its CPU limit; of the host's CPUs when unlimited). */
    targetCpuPercent: z.number().min(1, 'must be >= 1').max(1_000, 'must be <= 1000').default(seed.AUTOSCALE_TARGET_CPU_PERCENT),
    /** Optional: target requests (sessions) per second per replica, from HAProxy. */
    targetRequestRate: z.number().min(0.1, 'must be >= 0.1').optional(),
    /** Optional: target average response time (ms), from HAProxy. */
    targetLatencyMs: z.number().min(1, 'must be >= 1').optional(),
    tolerance: z.number().min(0, 'must be >= 0').max(1, 'must be <= 1').default(seed.AUTOSCALE_TOLERANCE),
    upStabilizationMs: durationMs.max(3_600_000, 'must be <= 1 hour').default(seed.AUTOSCALE_UP_STABILIZATION_MS),
    downStabilizationMs: durationMs.max(3_600_000, 'must be <= 1 hour').default(seed.AUTOSCALE_DOWN_STABILIZATION_MS),
    /** No new scale within this long of the previous one. */
    cooldownMs: durationMs.max(3_600_000, 'must be <= 1 hour').default(seed.AUTOSCALE_COOLDOWN_MS),
    /** The seed's high_cpu alert: CPU above `percent` for `forMs` sends a warning (resolved when it clears). */
    highCpu: z
      .strictObject({
        percent: z.number().min(1, 'must be >= 1').max(1_000, 'must be <= 1000').default(seed.ALERT_HIGH_CPU_PERCENT),
        forMs: durationMs.default(seed.ALERT_HIGH_CPU_FOR_MS),
      })
      .prefault({}),
    /** Passed to each scaleService child; its seed defaults otherwise. */
    scale: z
      .strictObject({
        step: z.number().int().min(1, 'must be >= 1').max(seed.SCALE_MAX_REPLICAS).optional(),
        stepDelayMs: durationMs.max(3_600_000).optional(),
        healthTimeoutMs: durationMs.min(1_000, 'must be >= 1000').max(3_600_000).optional(),
        drainTimeoutMs: durationMs.max(3_600_000).optional(),
      })
      .default({}),
    /** Decisions kept for the status query. */
    historySize: z.number().int().min(1, 'must be >= 1').max(200, 'must be <= 200').default(20),
    /** Continue as new (carrying the state) once the history holds this many events. */
    continueAsNewAfterEvents: z.number().int().min(100, 'must be >= 100').max(40_000, 'must be <= 40000').default(2_000),
  })
  .refine((i) => i.minReplicas <= i.maxReplicas, { path: ['minReplicas'], message: 'must be <= maxReplicas' });

export type AutoscaleServiceInput = z.input<typeof autoscaleServiceInputSchema>;
export type AutoscaleServiceParams = z.output<typeof autoscaleServiceInputSchema>;
