/** The real clients the worker and the bridge inject: Docker, SMTP, Temporal. */
import { Connection, Client } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import { NativeConnection } from '@temporalio/worker';
import Docker from 'dockerode';
import nodemailer from 'nodemailer';
import type { Logger } from 'pino';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { ActivityDeps } from '../activities';
import { pgSettings, pgTargetFor } from '../activities/postgres';
import { kvStoreFor, vaultSettings, VaultSession } from '../activities/vault';
import { loadAlerting } from '../config/alerting';
import type { Config } from '../config/env';
import { clientInterceptors, type Tracing } from '../observability/tracing';
import { codecFor } from '../codec/codec';

export function createDocker(config: Config): Docker {
  return new Docker({ socketPath: config.DURABLE_OPS_DOCKER_SOCKET });
}

export function createMailer(config: Config) {
  return nodemailer.createTransport({
    host: config.DURABLE_OPS_SMTP_HOST,
    port: config.DURABLE_OPS_SMTP_PORT,
    secure: false,
    ignoreTLS: config.DURABLE_OPS_SMTP_HOST === '127.0.0.1' || config.DURABLE_OPS_SMTP_HOST === 'localhost',
    connectionTimeout: 5_000,
    greetingTimeout: 5_000,
    socketTimeout: 10_000,
  });
}

/** Real clients for the activities; `client` and `taskQueue` let alerts reach their workflows. */
export function activityDeps(config: Config, log: Logger, temporal: { client: Client; taskQueue: string }): ActivityDeps {
  return {
    docker: createDocker(config),
    mailer: createMailer(config),
    alertFrom: config.DURABLE_OPS_ALERT_FROM,
    alertTo: config.DURABLE_OPS_ALERT_TO.split(',').map((a) => a.trim()),
    alerting: loadAlerting(config.DURABLE_OPS_ALERTING_CONFIG),
    client: temporal.client,
    taskQueue: temporal.taskQueue,
    log,
    ...rotationTargets(config, log),
  };
}

/** Vault KV (AppRole) and the PostgreSQL rotator, when the stack has set them up. */
function rotationTargets(config: Config, log: Logger): Pick<ActivityDeps, 'kv' | 'pg'> {
  const vault = vaultSettings(config);
  const rotatorFile = config.DURABLE_OPS_PG_ROTATOR_PASSWORD_FILE ?? path.join(config.DURABLE_OPS_DATA, 'postgres', 'rotator.password');
  return {
    ...(existsSync(vault.roleIdFile) && existsSync(vault.secretIdFile) ? { kv: kvStoreFor(new VaultSession(vault, log.child({ component: 'vault' }))) } : {}),
    ...(existsSync(rotatorFile) ? { pg: pgTargetFor(pgSettings(config), { user: config.DURABLE_OPS_PG_ROTATOR_USER, passwordFile: rotatorFile }) } : {}),
  };
}

export async function connectWorker(config: Config): Promise<NativeConnection> {
  return NativeConnection.connect({ address: config.DURABLE_OPS_TEMPORAL_ADDRESS });
}

/**
 * A client whose calls are traced (the start span begins a runbook's trace) with `tracing`, and
 * whose payloads are encrypted (src/codec/codec.ts; `codec: false` only for tests that need plain payloads).
 */
export async function connectClient(config: Config, tracing?: Tracing, opts: { codec?: PayloadCodec | false } = {}): Promise<Client> {
  const codec = opts.codec === false ? undefined : (opts.codec ?? codecFor(config));
  const connection = await Connection.connect({ address: config.DURABLE_OPS_TEMPORAL_ADDRESS });
  return new Client({ connection, namespace: config.DURABLE_OPS_NAMESPACE, interceptors: clientInterceptors(tracing), ...(codec ? { dataConverter: { payloadCodecs: [codec] } } : {}) });
}
