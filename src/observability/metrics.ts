/**
 * The runbooks' KPIs as Prometheus metrics (prom-client), in one registry the worker serves on
 * http://127.0.0.1:${DURABLE_OPS_METRICS_PORT:-9464}/metrics together with the Temporal SDK's own
 * metrics (src/observability/server.ts). Every name starts with `durable_ops_`.
 *
 * Other modules import the metric objects and update them where the facts are:
 *   restartsTotal / timeToRecover   the recordRecovery activity (src/activities/metrics.ts),
 *                                   called by the supervisor after a verified restart
 *   alertsTotal                     alert delivery (email, the alert receiver; more channels later)
 *   deadLetters, breakerState       alert dead letters and circuit breakers (later issues)
 *   credentialRotationAge, backupNewestAge, drillRto/Rpo   rotation, backups, drills (later issues)
 * Workflows never import this module (Node-only); they call the activity.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const METRIC_PREFIX = 'durable_ops_';

export const registry = new Registry();
// The worker process itself (CPU, memory, event loop): standard names (process_*, nodejs_*).
collectDefaultMetrics({ register: registry });

export const RESTART_OUTCOMES = ['healthy', 'unhealthy'] as const;
export type RestartOutcome = (typeof RESTART_OUTCOMES)[number];

export const restartsTotal = new Counter({
  name: 'durable_ops_restarts_total',
  help: 'Restarts done by the supervisor, by service and outcome (healthy = verified healthy after the restart, unhealthy = not healthy within healthTimeoutMs).',
  labelNames: ['service', 'outcome'] as const,
  registers: [registry],
});

export const timeToRecover = new Histogram({
  name: 'durable_ops_time_to_recover_seconds',
  help: 'Time from a failure (as its source saw it) to the service verified healthy again, in seconds (MTTR = sum / count).',
  labelNames: ['service'] as const,
  buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800],
  registers: [registry],
});

export const ALERT_OUTCOMES = ['sent', 'deduplicated', 'failed'] as const;
export type AlertOutcome = (typeof ALERT_OUTCOMES)[number];

export const alertsTotal = new Counter({
  name: 'durable_ops_alerts_total',
  help: 'Alerts by delivery channel (email, ...) and outcome (sent, deduplicated, failed).',
  labelNames: ['channel', 'outcome'] as const,
  registers: [registry],
});

export const deadLetters = new Gauge({
  name: 'durable_ops_dead_letters',
  help: 'Alerts that could not be delivered on any channel and wait in the dead-letter store.',
  registers: [registry],
});

export const BREAKER_STATES = { closed: 0, 'half-open': 1, open: 2 } as const;

export const breakerState = new Gauge({
  name: 'durable_ops_breaker_state',
  help: 'Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.',
  labelNames: ['dependency'] as const,
  registers: [registry],
});

export const breakerTransitions = new Counter({
  name: 'durable_ops_breaker_transitions_total',
  help: 'Circuit breaker state changes per dependency and new state (open, half-open, closed).',
  labelNames: ['dependency', 'state'] as const,
  registers: [registry],
});

export const credentialRotationAge = new Gauge({
  name: 'durable_ops_credential_rotation_age_seconds',
  help: 'Seconds since each credential was last rotated (rotation period: ROTATION_PERIOD_DAYS). Fed by the rotation runbook.',
  labelNames: ['credential'] as const,
  registers: [registry],
});

export const backupNewestAge = new Gauge({
  name: 'durable_ops_backup_newest_age_seconds',
  help: 'Age of the newest good backup in seconds (must stay below the RPO). Fed by the backup runbook.',
  labelNames: ['target'] as const,
  registers: [registry],
});

export const drillRto = new Gauge({
  name: 'durable_ops_drill_rto_seconds',
  help: 'Recovery time measured by the last restore drill, in seconds (target: RTO_TARGET_MS). Fed by the drill runbook.',
  labelNames: ['target'] as const,
  registers: [registry],
});

export const drillRpo = new Gauge({
  name: 'durable_ops_drill_rpo_seconds',
  help: 'Data loss window measured by the last restore drill, in seconds (target: RPO_TARGET_MS). Fed by the drill runbook.',
  labelNames: ['target'] as const,
  registers: [registry],
});

/** Every metric family name the registry exposes (for dashboards and tests). */
export async function metricNames(): Promise<string[]> {
  return (await registry.getMetricsAsJSON()).map((m) => m.name);
}
