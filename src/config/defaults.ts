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

/** Vertical scaling (resizeService): sampling window, headroom over the observed peak, bounds, reservations. */
export const RESIZE_SAMPLE_WINDOW_MS = 60 * SECOND;
export const RESIZE_SAMPLE_INTERVAL_MS = 2 * SECOND;
export const RESIZE_HEADROOM_PERCENT = 30;
/** Reservations are this fraction of the limits. */
export const RESIZE_RESERVATION_FRACTION = 0.5;
export const RESIZE_CPU_MIN = 0.1;
export const RESIZE_CPU_MAX = 4;
/** Docker refuses memory limits under 6 MB. */
export const RESIZE_MEMORY_MB_MIN = 32;
export const RESIZE_MEMORY_MB_MAX = 4_096;
/** After applying, the service must stay healthy this long (a too-tight limit shows up under load). */
export const RESIZE_VERIFY_STABLE_MS = 30 * SECOND;

/** Autoscaler (autoscaleService), after the Kubernetes HPA: sync period, tolerance, stabilization windows. */
export const AUTOSCALE_INTERVAL_MS = 15 * SECOND;
export const AUTOSCALE_SAMPLE_WINDOW_MS = 5 * SECOND;
export const AUTOSCALE_TARGET_CPU_PERCENT = 60;
export const AUTOSCALE_TOLERANCE = 0.1;
export const AUTOSCALE_UP_STABILIZATION_MS = 0;
export const AUTOSCALE_DOWN_STABILIZATION_MS = 5 * MINUTE;
export const AUTOSCALE_COOLDOWN_MS = 60 * SECOND;
export const AUTOSCALE_MIN_REPLICAS = 1;
export const AUTOSCALE_MAX_REPLICAS = 10;
export const ALERT_SERVICE_DOWN_FOR_MS = 30 * SECOND;
export const ALERT_SEVERITIES = ['warning', 'critical'] as const;

/** Recovery targets. */
export const RTO_TARGET_MS = 15 * MINUTE;
export const RPO_TARGET_MS = 5 * MINUTE;

/**
 * Backups (issue #6). WAL is archived at least every WAL_ARCHIVE_TIMEOUT_S (postgres.sh's
 * archive_timeout), which bounds the RPO well below RPO_TARGET_MS; base backups hourly, dumps
 * daily, verification every 15 min. Retention keeps the newest N backups of each kind (and the
 * WAL the oldest kept base backup needs).
 */
export const WAL_ARCHIVE_TIMEOUT_S = 60;
export const BACKUP_PHYSICAL_EVERY_MS = 60 * MINUTE;
export const BACKUP_LOGICAL_EVERY_MS = DAY;
export const BACKUP_VERIFY_EVERY_MS = 15 * MINUTE;
export const BACKUP_KEEP_PHYSICAL = 24;
export const BACKUP_KEEP_LOGICAL = 7;
/** verifyBackups: a warning once the data at risk is older than this share of the RPO target, critical past it. */
export const BACKUP_RPO_WARNING_RATIO = 0.8;
/** Retention removes a backup folder without a manifest (an abandoned attempt) only once it is this old. */
export const BACKUP_INCOMPLETE_GRACE_MS = 60 * MINUTE;
/** Instances we create (restores, drill copies) take a free 127.0.0.1 port in this range. */
export const PG_INSTANCE_PORT_MIN = 18800;
export const PG_INSTANCE_PORT_MAX = 18899;
/** How long a restored instance may take to replay WAL and promote, and a created one to start. */
export const PG_RESTORE_TIMEOUT_MS = RTO_TARGET_MS;
export const PG_START_TIMEOUT_MS = 2 * MINUTE;

/** Recovery drills: heartbeat writer period (makes the RPO observable), seeded rows, weekly schedule. */
export const DRILL_HEARTBEAT_INTERVAL_MS = 200;
export const DRILL_SEED_ROWS = 1_000;
export const DRILL_STOP_TIMEOUT_SEC = 5;
export const DRILL_SCHEDULE_EVERY = '7 days';
/** Docker volume backups (backupVolume) kept per volume; files the delete-volume-data drill seeds; where its demo container mounts the volume. */
export const VOLUME_BACKUP_KEEP = 7;
/** Restores (database and volume) heartbeat every 2 s; a restore whose worker died is retried on another after this. */
export const RESTORE_HEARTBEAT_TIMEOUT_MS = 10_000;
/** How often a volume listed in config/backups.json is backed up (backupVolume on a Schedule). */
export const VOLUME_BACKUP_EVERY_MS = DAY;
export const DRILL_VOLUME_FILES = 20;
export const DRILL_VOLUME_DATA_PATH = '/data';

/**
 * Schedules' catch-up windows (npm run schedules): when the Temporal server was down at a run's
 * time, the run is still taken on its return if it is at most this late (overlap SKIP makes
 * several missed runs one). A missed rotation or backup is still wanted late; a missed drill is
 * not (a fault injected into a stack that is just coming back would test the outage, not the
 * drill): it waits for its next slot. Temporal's minimum is 10 s.
 */
/** Rotations (every 90 days, so at most one is missed): an outage of up to a week still rotates on return; past that, credential_rotation_overdue tells. */
export const ROTATION_CATCHUP_WINDOW_MS = 7 * DAY;
/** Database and volume backups and their verification (every 15 min to daily): an outage of up to a day takes one backup on return instead of waiting for the next slot. */
export const BACKUP_CATCHUP_WINDOW_MS = DAY;
/** Recovery drills (weekly): only a run delayed by a blip is taken; a missed one is skipped, never piled up after an outage. */
export const DRILL_CATCHUP_WINDOW_MS = MINUTE;

/** Service KPIs. */
export const KPI_P95_LATENCY_MS = 200;
export const KPI_ERROR_RATE_PERCENT = 0.1;

/** Engine wiring. */
export const DEFAULT_TASK_QUEUE = 'durable-ops';
export const DEFAULT_NAMESPACE = 'default';

/** Plan -> approval -> apply: how long a plan waits for an operator's decision. */
export const APPROVAL_TIMEOUT_MS = 60 * MINUTE;

/** Horizontal scaling (scaleService): the seed's update_config (parallelism 1, delay 10 s), bounds and timeouts. */
export const SCALE_MAX_REPLICAS = 20;
export const SCALE_STEP = SWARM_UPDATE_PARALLELISM;
export const SCALE_STEP_DELAY_MS = SWARM_UPDATE_DELAY_MS;
/** A new replica must be healthy (Docker + HTTP probe + HAProxy UP) within this long. */
export const SCALE_HEALTH_TIMEOUT_MS = HEALTHCHECK_START_PERIOD_MS + HEALTHCHECK_RETRIES * HEALTHCHECK_INTERVAL_MS;
/** A drained replica's sessions must reach 0 within this long (then: alert, and force or roll back). */
export const SCALE_DRAIN_TIMEOUT_MS = 30 * SECOND;
/** Load balancing: HAProxy `balance roundrobin` + `option httpchk GET /health`; Nginx `least_conn`, weight per replica. */
export const LB_SERVER_WEIGHT = 1;
export const LB_CHECK_INTER_MS = 2 * SECOND;
export const LB_HEALTH_PATH = '/health';

/**
 * Service leases (src/workflows/service-lease.ts): at most one state-changing runbook per service.
 * The lease workflow checks that its holder still runs this often, and frees a lease held longer
 * than the holder's bound (or this cap), so a dead, terminated or forgetful holder never pauses
 * supervision for long. An idle lease workflow ends after LEASE_IDLE_END_MS.
 */
export const LEASE_LIVENESS_CHECK_MS = 15 * SECOND;
/** The longest a runbook may hold a lease: the longest approval wait (7 days) plus a day to apply. */
export const LEASE_MAX_HOLD_MS = 8 * DAY;
/** What a runbook holds its lease for at most when it asks for nothing else: its approval timeout plus this. */
export const LEASE_APPLY_BUDGET_MS = 2 * 60 * MINUTE;
export const LEASE_IDLE_END_MS = 10 * MINUTE;
/** A runbook asked to wait in line (`waitForLease`) waits at most this long by default, and at most LEASE_MAX_WAIT_MS. */
export const LEASE_WAIT_TIMEOUT_MS = 10 * MINUTE;
export const LEASE_MAX_WAIT_MS = 6 * 60 * MINUTE;
/** A supervisor deferring to a lease holder re-reads the lease this often (besides the release notice). */
export const LEASE_SUPERVISOR_RECHECK_MS = 15 * SECOND;

/** reconcile (src/workflows/reconcile.ts): how often `npm run schedules` has it compare what the engine believes with what is there. */
export const RECONCILE_EVERY_MS = 15 * MINUTE;
