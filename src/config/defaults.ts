/**
 * The seed's defaults, as named constants, in one place.
 *
 * Pure data: this module is imported by workflows (through the schemas), so it must stay
 * free of Node APIs. Environment overrides live in ./env.ts.
 */

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const DAY = 24 * 60 * MINUTE;

/** Credential rotation period. */
export const ROTATION_PERIOD_DAYS = 90;
export const ROTATION_PERIOD_MS = ROTATION_PERIOD_DAYS * DAY;

/** Auto-restart: at most 3 attempts; backoff capped at 60 s; first delay = systemd RestartSec (10 s). */
export const RESTART_MAX_ATTEMPTS = 3;
export const RESTART_BACKOFF_MAX_MS = 60 * SECOND;
export const RESTART_SEC_MS = 10 * SECOND;
export const RESTART_BACKOFF_MULTIPLIER = 2;
/** A restart counts as a success only once the service has stayed healthy this long. */
export const RESTART_RESET_AFTER_MS = 60 * SECOND;
/** How long Docker waits for a graceful stop before it kills the container (docker stop -t). */
export const RESTART_STOP_TIMEOUT_SEC = 10;

/** Swarm rolling updates: one task at a time, 10 s apart. */
export const SWARM_UPDATE_PARALLELISM = 1;
export const SWARM_UPDATE_DELAY_MS = 10 * SECOND;

/** Circuit breaker (opossum): timeout / errorThresholdPercentage / resetTimeout. */
export const BREAKER_TIMEOUT_MS = 3_000;
export const BREAKER_ERROR_THRESHOLD_PERCENT = 50;
export const BREAKER_RESET_TIMEOUT_MS = 30_000;

/** Docker HEALTHCHECK: interval / timeout / retries / start period. */
export const HEALTHCHECK_INTERVAL_MS = 30 * SECOND;
export const HEALTHCHECK_TIMEOUT_MS = 10 * SECOND;
export const HEALTHCHECK_RETRIES = 3;
export const HEALTHCHECK_START_PERIOD_MS = 40 * SECOND;

/** Alert thresholds. */
export const ALERT_HIGH_CPU_PERCENT = 80;
export const ALERT_HIGH_CPU_FOR_MS = 5 * MINUTE;
export const ALERT_SERVICE_DOWN_FOR_MS = 30 * SECOND;
export const ALERT_SEVERITIES = ['warning', 'critical'] as const;

/** Recovery targets. */
export const RTO_TARGET_MS = 15 * MINUTE;
export const RPO_TARGET_MS = 5 * MINUTE;

/** Service KPIs. */
export const KPI_P95_LATENCY_MS = 200;
export const KPI_ERROR_RATE_PERCENT = 0.1;

/** Engine wiring. */
export const DEFAULT_TASK_QUEUE = 'durable-ops';
export const DEFAULT_NAMESPACE = 'default';

/** Plan -> approval -> apply: how long a plan waits for an operator's decision. */
export const APPROVAL_TIMEOUT_MS = 60 * MINUTE;
