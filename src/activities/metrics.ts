/**
 * Metrics the supervisor knows of (workflows cannot touch prom-client): a local activity the
 * supervisor calls after each verified restart. Recording is a side effect of the activity,
 * so a replayed workflow never counts a restart twice.
 */
import type { Logger } from 'pino';
import { loadConfig } from '../config/env';
import type { ConfiguredRestartDefaults } from '../schemas/supervise-service';
import { restartsTotal, timeToRecover, type RestartOutcome } from '../observability/metrics';

export interface RecoveryRecord {
  service: string;
  /** healthy: verified healthy after the restart; unhealthy: not healthy within healthTimeoutMs. */
  outcome: RestartOutcome;
  /** Whether a restart was done (false: it recovered by itself before the restart). */
  restarted: boolean;
  /** The failure that started the recovery (ms since the epoch, as its source saw it). */
  failedAt: number;
  /** When the service was verified healthy (workflow time, ms), for outcome healthy. */
  healthyAt?: number;
}

export function createMetricsActivities({ log, env = process.env }: { log: Logger; env?: NodeJS.ProcessEnv }) {
  return {
    /** The worker's configured restart defaults (DURABLE_OPS_RESTART_*; the seed's where unset). A local activity of the supervisor. */
    async configuredRestartDefaults(): Promise<ConfiguredRestartDefaults> {
      const c = loadConfig(env);
      return { maxAttempts: c.DURABLE_OPS_RESTART_MAX_ATTEMPTS, initialDelayMs: c.DURABLE_OPS_RESTART_SEC_MS, maxDelayMs: c.DURABLE_OPS_RESTART_BACKOFF_MAX_MS };
    },
    async recordRecovery(r: RecoveryRecord): Promise<void> {
      if (r.restarted) restartsTotal.inc({ service: r.service, outcome: r.outcome });
      if (r.outcome === 'healthy' && r.healthyAt !== undefined && r.failedAt > 0) {
        const seconds = Math.max(0, (r.healthyAt - r.failedAt) / 1000);
        timeToRecover.observe({ service: r.service }, seconds);
        log.debug({ service: r.service, seconds }, 'recovery recorded');
      }
    },
  };
}
