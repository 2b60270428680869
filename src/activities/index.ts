/**
 * The activity factory: every activity the worker registers, built from injected clients.
 * Workflows import this module as a type only.
 */
import type { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import type { Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import type { AlertingConfig } from '../config/alerting';
import { alertsTotal, breakerState, BREAKER_STATES, breakerTransitions, deadLetters } from '../observability/metrics';
import { createAlertActivities, type AlertMetrics } from './alerts';
import { BreakerRegistry } from './breaker';
import { createCredentialActivities, type KvStore, type PgTarget } from './credentials';
import { createSwarmActivities } from './swarm';
import { createDockerActivities } from './docker';
import { createDrillActivities } from './drill';
import { createBackupActivities } from './backup';
import { createPgInstanceActivities } from './pg-instances';
import { createMainClusterActivities } from './main-cluster';
import { createHealthActivities } from './health';
import { createLeaseActivities } from './leases';
import { createMetricsActivities } from './metrics';
import { createHaproxyActivities } from './haproxy';
import { createNginxActivities } from './nginx';
import { createReplicaActivities } from './replicas';
import { createResourceActivities } from './resources';
import { createReconcileActivities } from './reconcile';

export interface ActivityDeps {
  docker: Docker;
  mailer: Transporter;
  alertFrom: string;
  alertTo: string[];
  alerting: AlertingConfig;
  /** Temporal client + task queue: alerts reach their group and dead-letter workflows. */
  client: Client;
  taskQueue: string;
  log: Logger;
  breakers?: BreakerRegistry;
  fetch?: typeof fetch;
  env?: NodeJS.ProcessEnv;
  /** Vault KV (the worker's AppRole) and the PostgreSQL target, for credential rotation. */
  kv?: KvStore;
  pg?: PgTarget;
}

/** A worker without Vault configured still registers the rotation activities; they fail clearly. */
const noVault: KvStore = new Proxy({} as KvStore, {
  get: () => async () => {
    throw ApplicationFailure.nonRetryable('Vault is not configured for this worker (DURABLE_OPS_VAULT_ADDR and the AppRole files)', 'TargetUnavailable');
  },
});

/** Alert and breaker facts as Prometheus metrics. */
const promAlertMetrics: AlertMetrics = {
  delivered(channel, deduplicated) {
    alertsTotal.inc({ channel, outcome: 'sent' });
    if (deduplicated > 0) alertsTotal.inc({ channel, outcome: 'deduplicated' }, deduplicated);
  },
  failed(channel) {
    alertsTotal.inc({ channel, outcome: 'failed' });
  },
  deadLetterDepth(depth) {
    deadLetters.set(depth);
  },
};

export function createActivities(deps: ActivityDeps) {
  const breakers = deps.breakers ?? new BreakerRegistry(deps.log);
  breakers.onStateChange((dependency, state) => {
    breakerState.set({ dependency }, BREAKER_STATES[state]);
    breakerTransitions.inc({ dependency, state });
  });
  return {
    ...createDockerActivities({ docker: deps.docker, log: deps.log, breakers }),
    ...createHealthActivities({ docker: deps.docker, fetch: deps.fetch }),
    ...createDrillActivities({ docker: deps.docker, log: deps.log, env: deps.env }),
    ...createPgInstanceActivities({ log: deps.log, env: deps.env }),
    ...createMainClusterActivities({ log: deps.log, env: deps.env }),
    ...createBackupActivities({ log: deps.log, env: deps.env, docker: deps.docker }),
    ...createMetricsActivities({ log: deps.log, ...(deps.env ? { env: deps.env } : {}) }),
    // Horizontal scaling: replicas (Docker/Swarm) and the load balancers (folder from DURABLE_OPS_LB_DIR).
    ...createReplicaActivities({ docker: deps.docker, log: deps.log, breakers, ...(deps.fetch ? { fetch: deps.fetch } : {}) }),
    ...createHaproxyActivities({ lbDir: () => (deps.env ?? process.env).DURABLE_OPS_LB_DIR || undefined, log: deps.log }),
    ...createNginxActivities({ lbDir: () => (deps.env ?? process.env).DURABLE_OPS_LB_DIR || undefined, log: deps.log }),
    ...createResourceActivities({ docker: deps.docker, log: deps.log, fetch: deps.fetch }),
    ...createCredentialActivities({ kv: deps.kv ?? noVault, ...(deps.pg ? { pg: deps.pg } : {}), log: deps.log }),
    ...createSwarmActivities({
      docker: deps.docker,
      log: deps.log,
      readSecretValue: async (vaultPath, version) => {
        const data = await (deps.kv ?? noVault).readVersion(vaultPath, version);
        if (!data?.value) throw ApplicationFailure.nonRetryable(`secret/${vaultPath} version ${version} has no value`, 'VersionMissing');
        return data.value;
      },
    }),
    // Service leases (one change per service at a time). DURABLE_OPS_LEASE_LIVENESS_MS / _IDLE_END_MS shorten the holder check and the idle end (tests).
    ...createLeaseActivities({
      client: deps.client,
      taskQueue: deps.taskQueue,
      log: deps.log,
      livenessCheckMs: Number((deps.env ?? process.env).DURABLE_OPS_LEASE_LIVENESS_MS) || undefined,
      idleEndMs: Number((deps.env ?? process.env).DURABLE_OPS_LEASE_IDLE_END_MS) || undefined,
    }),
    ...createReconcileActivities({ docker: deps.docker, client: deps.client, taskQueue: deps.taskQueue, log: deps.log, ...(deps.env ? { env: deps.env } : {}), ...(deps.kv ? { kv: deps.kv } : {}), ...(deps.fetch ? { fetch: deps.fetch } : {}) }),
    ...createAlertActivities({
      mailer: deps.mailer,
      from: deps.alertFrom,
      to: deps.alertTo,
      log: deps.log,
      alerting: deps.alerting,
      breakers,
      client: deps.client,
      taskQueue: deps.taskQueue,
      fetch: deps.fetch,
      env: deps.env,
      metrics: promAlertMetrics,
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
