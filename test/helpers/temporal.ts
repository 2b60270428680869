/** The test's view of Temporal: the stack's dev server, a client, and workers on private task queues. */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import type { Logger } from 'pino';
import { DEFAULT_ALERTING, parseAlerting, type AlertingConfig } from '../../src/config/alerting';
import type Docker from 'dockerode';
import type { BreakerRegistry } from '../../src/activities/breaker';
import { loadConfig } from '../../src/config/env';
import { createLogger } from '../../src/config/logger';
import type { Tracing } from '../../src/observability/tracing';
import type { PayloadCodec } from '@temporalio/common';
import { codecFor, type AesGcmCodec } from '../../src/codec/codec';
import { activityDeps } from '../../src/workers/clients';
import { createLeaseActivities } from '../../src/activities/leases';
import { createMetricsActivities } from '../../src/activities/metrics';
import { createWorker } from '../../src/workers/worker';

export const config = loadConfig();
export const testLog = createLogger(process.env.DURABLE_OPS_LOG_LEVEL ?? 'warn', { component: 'test' });

let runtimeInstalled = false;
function quietRuntime() {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger('ERROR') });
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** The payload codec every test client and worker uses (src/codec/codec.ts), unless given `codec: false`. */
export function testCodec(): AesGcmCodec {
  return codecFor(config);
}

export async function connectClient(opts: { codec?: PayloadCodec | false } = {}): Promise<Client> {
  const codec = opts.codec === false ? undefined : (opts.codec ?? testCodec());
  const connection = await Connection.connect({ address: config.DURABLE_OPS_TEMPORAL_ADDRESS });
  return new Client({ connection, namespace: config.DURABLE_OPS_NAMESPACE, ...(codec ? { dataConverter: { payloadCodecs: [codec] } } : {}) });
}

export interface RunningWorker {
  worker: Worker;
  taskQueue: string;
  stop(): Promise<void>;
}

/** A worker in this process on its own task queue, with real activities unless stubs are given. */
/** Alert grouping short enough for a test to see the email within seconds. */
export const TEST_ALERTING: AlertingConfig = parseAlerting({ ...DEFAULT_ALERTING, grouping: { groupWaitMs: 200, groupIntervalMs: 1_000, repeatIntervalMs: 3_600_000 } });

export async function startWorker(opts: { taskQueue?: string; activities?: object; alerting?: AlertingConfig; fetch?: typeof fetch; tracing?: Tracing; log?: Logger; env?: NodeJS.ProcessEnv; docker?: Docker; breakers?: BreakerRegistry; codec?: PayloadCodec | false } = {}): Promise<RunningWorker> {
  quietRuntime();
  const taskQueue = opts.taskQueue ?? uniqueName('test');
  const connection = await NativeConnection.connect({ address: config.DURABLE_OPS_TEMPORAL_ADDRESS });
  const client = await connectClient({ codec: opts.codec });
  const deps = { ...activityDeps(config, opts.log ?? testLog, { client, taskQueue }), alerting: opts.alerting ?? TEST_ALERTING, ...(opts.fetch ? { fetch: opts.fetch } : {}), ...(opts.env ? { env: opts.env } : {}), ...(opts.docker ? { docker: opts.docker } : {}), ...(opts.breakers ? { breakers: opts.breakers } : {}) };
  const worker = await createWorker({
    connection,
    namespace: config.DURABLE_OPS_NAMESPACE,
    taskQueue,
    deps,
    // Stubbed activities still get the real service leases (they need Temporal only): every change holds one.
    // So do the worker's own configured defaults (the supervisor reads them first).
    activities: opts.activities ? { ...createMetricsActivities({ log: opts.log ?? testLog, env: opts.env ?? process.env }), ...createLeaseActivities({ client, taskQueue, log: opts.log ?? testLog, livenessCheckMs: 500, idleEndMs: 5_000 }), ...opts.activities } : undefined,
    bundlePath: config.DURABLE_OPS_WORKFLOW_BUNDLE,
    tracing: opts.tracing,
    codec: opts.codec === false ? false : (opts.codec ?? testCodec()),
  });
  const running = worker.run();
  return {
    worker,
    taskQueue,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
      await client.connection.close();
    },
  };
}
