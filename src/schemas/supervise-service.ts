/** Input of the superviseService runbook (one long-running supervisor per service). */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { containerName, durationMs, httpUrl } from './common';

export const restartPolicySchema = z
  .strictObject({
    /** Restarts tried before giving up and escalating to a human. */
    maxAttempts: z.number().int().min(1, 'must be >= 1').max(100, 'must be <= 100').default(seed.RESTART_MAX_ATTEMPTS),
    /** Base of the exponential backoff (the delay cap for the first attempt). */
    initialDelayMs: durationMs.default(seed.RESTART_SEC_MS),
    multiplier: z.number().min(1, 'must be >= 1').max(10, 'must be <= 10').default(seed.RESTART_BACKOFF_MULTIPLIER),
    /** Cap of the backoff. */
    maxDelayMs: durationMs.default(seed.RESTART_BACKOFF_MAX_MS),
    /** A restart counts as a success (attempts reset) only after this long healthy. */
    resetAfterMs: durationMs.default(seed.RESTART_RESET_AFTER_MS),
    /** How long to wait for the service to be healthy after a restart. */
    healthTimeoutMs: durationMs.min(1, 'must be > 0').default(seed.HEALTHCHECK_START_PERIOD_MS),
    /** Graceful stop time before Docker kills the container. */
    stopTimeoutSec: z.number().int().min(0, 'must be >= 0').max(600, 'must be <= 600').default(seed.RESTART_STOP_TIMEOUT_SEC),
  })
  .refine((r) => r.maxDelayMs >= r.initialDelayMs, { path: ['maxDelayMs'], message: 'must be >= initialDelayMs (the cap cannot be below the first delay)' });

export type RestartPolicy = z.output<typeof restartPolicySchema>;

export const dependencySchema = z.strictObject({
  name: z.string().min(1, 'must not be empty'),
  healthUrl: httpUrl,
});

export const superviseServiceInputSchema = z.strictObject({
  /** Container name. */
  service: containerName,
  /** HTTP endpoint probed periodically as a safety net for missed events (200 = healthy). */
  healthUrl: httpUrl,
  probeIntervalMs: durationMs.min(100, 'must be >= 100').default(seed.HEALTHCHECK_INTERVAL_MS),
  probeTimeoutMs: durationMs.min(1, 'must be > 0').default(seed.HEALTHCHECK_TIMEOUT_MS),
  /** Consecutive failed probes of a running container that count as a failure. */
  unhealthyThreshold: z.number().int().min(1, 'must be >= 1').max(100, 'must be <= 100').default(seed.HEALTHCHECK_RETRIES),
  restart: restartPolicySchema.prefault({}),
  /** Services this one needs; probed before a restart so a down dependency does not burn attempts. */
  dependencies: z.array(dependencySchema).max(20, 'at most 20 dependencies').default([]),
  dependencyRecheckMs: durationMs.min(100, 'must be >= 100').default(seed.HEALTHCHECK_INTERVAL_MS),
  /** Continue as new (carrying the state) once the history holds this many events. */
  continueAsNewAfterEvents: z.number().int().min(100, 'must be >= 100').max(40_000, 'must be <= 40000').default(2_000),
});

export type SuperviseServiceInput = z.input<typeof superviseServiceInputSchema>;
export type SuperviseServiceParams = z.output<typeof superviseServiceInputSchema>;

/** A failure the supervisor learns of, from the Docker event bridge, an alert receiver or an operator. */
export const failureSignalSchema = z.strictObject({
  kind: z.enum(['die', 'unhealthy', 'oom', 'probe', 'operator', 'alert']),
  /** When it happened (ms since the epoch), as the source saw it. */
  at: z.number().int().min(0),
  exitCode: z.number().int().optional(),
  source: z.string().max(100).default('unknown'),
  detail: z.string().max(500).optional(),
});

export type FailureSignal = z.input<typeof failureSignalSchema>;

/** The restart-policy defaults an operator configured for the worker (DURABLE_OPS_RESTART_*). */
export interface ConfiguredRestartDefaults {
  maxAttempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

/**
 * Fill the configured defaults in where a raw superviseService input leaves them out (whatever the
 * input says wins; anything malformed is left for the schema to report). Applied by the worker (the
 * supervisor reads them first thing), so a supervisor started from the UI, the CLI or the bridge
 * gets the same ones.
 */
export function withConfiguredDefaults(raw: unknown, d: ConfiguredRestartDefaults): unknown {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(raw) || (raw.restart !== undefined && !isObject(raw.restart))) return raw;
  return { ...raw, restart: { ...d, ...((raw.restart as Record<string, unknown> | undefined) ?? {}) } };
}
