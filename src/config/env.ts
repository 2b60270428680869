/**
 * Runtime configuration: the seed defaults, overridable by environment variables,
 * validated once at start-up with a message that names the variable and the problem.
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import * as seed from './defaults';

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
/** user@host; a TLD is not required (oncall@localhost is a fine address for local SMTP). */
const EMAIL = /^[^@\s,]+@[^@\s,]+$/;
const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[a-zA-Z0-9.-]+):\d{1,5}$/, 'must be host:port (e.g. 127.0.0.1:7233)');

/** Every variable the engine reads, with its default. */
const envSchema = z.object({
  DURABLE_OPS_TEMPORAL_ADDRESS: hostPort.default('127.0.0.1:7233'),
  DURABLE_OPS_NAMESPACE: z.string().min(1).default(seed.DEFAULT_NAMESPACE),
  DURABLE_OPS_TASK_QUEUE: z.string().min(1).default(seed.DEFAULT_TASK_QUEUE),
  DURABLE_OPS_DOCKER_SOCKET: z.string().min(1).default('/var/run/docker.sock'),
  DURABLE_OPS_SMTP_HOST: z.string().min(1).default('127.0.0.1'),
  DURABLE_OPS_SMTP_PORT: int(1, 65535).default(1025),
  DURABLE_OPS_ALERT_FROM: z.string().regex(EMAIL, 'must be an email address').default('durable-ops@localhost'),
  DURABLE_OPS_ALERT_TO: z
    .string()
    .default('oncall@localhost')
    .refine((v) => v.split(',').every((a) => EMAIL.test(a.trim())), 'must be a comma-separated list of email addresses'),
  DURABLE_OPS_MAILPIT_API: z.string().url().default('http://127.0.0.1:8025'),
  DURABLE_OPS_TEMPORAL_UI: z.string().url().default('http://127.0.0.1:8233'),
  DURABLE_OPS_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** OTLP/HTTP endpoint for traces (Jaeger in the stack); spans go to <endpoint>/v1/traces. */
  DURABLE_OPS_OTLP_ENDPOINT: z
    .string()
    .url()
    .refine((v) => /^https?:\/\//.test(v), 'must be an http(s) URL (OTLP/HTTP, e.g. http://127.0.0.1:4318)')
    .default('http://127.0.0.1:4318'),
  DURABLE_OPS_WORKFLOW_BUNDLE: z.string().optional(),
  /** Fault injection for crash tests: SIGKILL the worker right after these activities' side effects, before they report. */
  DURABLE_OPS_FAULT_CRASH_AFTER: z
    .string()
    .regex(/^[A-Za-z]+(,[A-Za-z]+)*$/, 'must be a comma-separated list of activity names')
    .optional(),
  /** Alert channels and routing (JSON file, see src/config/alerting.ts); email only when unset. */
  DURABLE_OPS_ALERTING_CONFIG: z.string().optional(),
  DURABLE_OPS_DATA: z.string().default(path.join(process.cwd(), '.data')),
  DURABLE_OPS_CACHE: z.string().default(path.join(os.homedir(), '.cache', 'durable-ops')),
  /** The worker's /metrics (durable_ops_ KPIs + the SDK's metrics) on 127.0.0.1; 0 = any free port. */
  DURABLE_OPS_METRICS_PORT: int(0, 65535).default(9464),
  /** The Temporal SDK's own Prometheus exporter (loopback, read through /metrics); 0 = any free port. */
  DURABLE_OPS_SDK_METRICS_PORT: int(0, 65535).default(0),
  /** The Alertmanager webhook receiver (POST /alertmanager) on 127.0.0.1; 0 = any free port. */
  DURABLE_OPS_RECEIVER_PORT: int(0, 65535).default(9466),
  /** Payload encryption (src/codec): keys file (0600 JSON; default $DURABLE_OPS_DATA/codec/keys.json, created on first use). */
  DURABLE_OPS_CODEC_KEYS_FILE: z.string().optional(),
  /** One AES-256 key (base64 of 32 bytes, key id "env") instead of the keys file. */
  DURABLE_OPS_CODEC_KEY: z
    .string()
    .refine((v) => /^[A-Za-z0-9+/]+={0,2}$/.test(v.trim()) && Buffer.from(v.trim(), 'base64').length === 32, 'must be 32 bytes, base64-encoded (e.g. `head -c 32 /dev/urandom | base64`)')
    .optional(),
  /** The codec server for the Temporal UI (POST /encode, /decode) on 127.0.0.1; 0 = any free port. */
  DURABLE_OPS_CODEC_PORT: int(0, 65535).default(8888),
  /** Its bearer token (0600 file; default $DURABLE_OPS_DATA/codec/token, created on first use). */
  DURABLE_OPS_CODEC_TOKEN_FILE: z.string().optional(),
  /** Origins allowed by its CORS (the Temporal UI), comma-separated. */
  DURABLE_OPS_CODEC_CORS_ORIGINS: z
    .string()
    .default('http://127.0.0.1:8233,http://localhost:8233')
    .refine((v) => v.split(',').every((o) => /^https?:\/\/[^/\s]+$/.test(o.trim())), 'must be a comma-separated list of origins (scheme://host:port, no path)'),
  /** Vault (server mode, loopback; src/stack/services/vault.sh). The worker logs in with AppRole. */
  DURABLE_OPS_VAULT_ADDR: z
    .string()
    .url()
    .refine((v) => /^https?:\/\//.test(v), 'must be an http(s) URL (e.g. http://127.0.0.1:8200)')
    .default('http://127.0.0.1:8200'),
  /** Files holding the worker's AppRole role_id and secret_id; default $DURABLE_OPS_DATA/vault/role-id, secret-id. */
  DURABLE_OPS_VAULT_ROLE_ID_FILE: z.string().optional(),
  DURABLE_OPS_VAULT_SECRET_ID_FILE: z.string().optional(),
  /** Vault's file audit log; default $DURABLE_OPS_DATA/vault/audit.log (read by the tests). */
  DURABLE_OPS_VAULT_AUDIT_LOG: z.string().optional(),
  DURABLE_OPS_VAULT_KV_MOUNT: z.string().regex(/^[a-zA-Z0-9_-]+$/, 'must be a mount name (e.g. secret)').default('secret'),
  DURABLE_OPS_VAULT_DB_MOUNT: z.string().regex(/^[a-zA-Z0-9_-]+$/, 'must be a mount name (e.g. database)').default('database'),
  /** The project PostgreSQL cluster (src/stack/services/postgres.sh); app logins come from Vault. */
  DURABLE_OPS_PG_HOST: z.string().min(1).default('127.0.0.1'),
  DURABLE_OPS_PG_PORT: int(1, 65535).default(5433),
  DURABLE_OPS_PG_DATABASE: z.string().min(1).default('app'),
  /** Its superuser (for the stack and the tests, not the worker); password file default $DURABLE_OPS_DATA/postgres/admin.password. */
  DURABLE_OPS_PG_ADMIN_USER: z.string().min(1).default('durable_ops_admin'),
  DURABLE_OPS_PG_ADMIN_PASSWORD_FILE: z.string().optional(),
  /** The worker's rotator role (CREATEROLE, not superuser): sets passwords and LOGIN of app roles. Password file default $DURABLE_OPS_DATA/postgres/rotator.password. */
  DURABLE_OPS_PG_ROTATOR_USER: z.string().min(1).default('durable_ops_rotator'),
  DURABLE_OPS_PG_ROTATOR_PASSWORD_FILE: z.string().optional(),
  /** PostgreSQL 15 binaries (pg_basebackup, pg_dump, initdb...), for backups and the instances we create. */
  DURABLE_OPS_PG_BIN: z.string().min(1).default('/usr/lib/postgresql/15/bin'),
  /** The project cluster's unix socket folder (postgres.sh exports it; default $DURABLE_OPS_DATA/postgres/run). */
  DURABLE_OPS_PG_SOCKET_DIR: z.string().optional(),
  /** The backup store (<store>/<database id>/{physical,logical,wal}); default $DURABLE_OPS_DATA/postgres/backups. */
  DURABLE_OPS_BACKUP_DIR: z.string().optional(),
  /** PostgreSQL instances we create (restores, drill copies), one folder each; default $DURABLE_OPS_DATA/postgres/instances. */
  DURABLE_OPS_PG_INSTANCES_DIR: z.string().optional(),
  /** Seed overrides for runbook defaults (applied by the starters when a field is absent). */
  DURABLE_OPS_RESTART_MAX_ATTEMPTS: int(1, 100).default(seed.RESTART_MAX_ATTEMPTS),
  DURABLE_OPS_RESTART_BACKOFF_MAX_MS: int(0).default(seed.RESTART_BACKOFF_MAX_MS),
  DURABLE_OPS_RESTART_SEC_MS: int(0).default(seed.RESTART_SEC_MS),
});

export type Config = z.infer<typeof envSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parse the environment; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const picked = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('DURABLE_OPS_') && v !== ''));
  const parsed = envSchema.safeParse(picked);
  if (!parsed.success) {
    // Never echo a secret's value (DURABLE_OPS_CODEC_KEY and the like) into an error or a log.
    const shown = (name: string) => (/_(KEY|TOKEN|SECRET|PASSWORD)$/.test(name) ? '[hidden]' : JSON.stringify(picked[name]));
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message} (got ${shown(String(i.path[0]))})`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
