/** The test's view of Temporal: the stack's dev server, a client, and workers on private task queues. */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import { loadConfig } from '../../src/config/env';
import { createLogger } from '../../src/config/logger';
import { activityDeps } from '../../src/workers/clients';
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

export async function connectClient(): Promise<Client> {
  const connection = await Connection.connect({ address: config.DURABLE_OPS_TEMPORAL_ADDRESS });
  return new Client({ connection, namespace: config.DURABLE_OPS_NAMESPACE });
}

export interface RunningWorker {
  worker: Worker;
  taskQueue: string;
  stop(): Promise<void>;
}

/** A worker in this process on its own task queue, with real activities unless stubs are given. */
export async function startWorker(opts: { taskQueue?: string; activities?: object } = {}): Promise<RunningWorker> {
  quietRuntime();
  const taskQueue = opts.taskQueue ?? uniqueName('test');
  const connection = await NativeConnection.connect({ address: config.DURABLE_OPS_TEMPORAL_ADDRESS });
  const worker = await createWorker({
    connection,
    namespace: config.DURABLE_OPS_NAMESPACE,
    taskQueue,
    deps: activityDeps(config, testLog),
    activities: opts.activities,
    bundlePath: config.DURABLE_OPS_WORKFLOW_BUNDLE,
  });
  const running = worker.run();
  return {
    worker,
    taskQueue,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}
