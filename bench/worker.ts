/**
 * The in-process worker every bench runs on its own task queue: the real activities from the
 * configured clients, the prebuilt workflow bundle when there is one. `stop()` shuts it down and
 * closes both connections.
 */
import type { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { Logger } from 'pino';
import type { Config } from '../src/config/env';
import { activityDeps, connectClient } from '../src/workers/clients';
import { createWorker } from '../src/workers/worker';

export interface BenchWorker {
  client: Client;
  stop(): Promise<void>;
}

let runtimeInstalled = false;

export async function startBenchWorker(config: Config, log: Logger, taskQueue: string): Promise<BenchWorker> {
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runtimeInstalled = true;
  }
  const client = await connectClient(config);
  const connection = await NativeConnection.connect({ address: config.DURABLE_OPS_TEMPORAL_ADDRESS });
  const worker = await createWorker({ connection, namespace: config.DURABLE_OPS_NAMESPACE, taskQueue, deps: activityDeps(config, log, { client, taskQueue }), bundlePath: config.DURABLE_OPS_WORKFLOW_BUNDLE });
  const running = worker.run();
  return {
    client,
    async stop() {
      worker.shutdown();
      await running;
      await connection.close();
      await client.connection.close();
    },
  };
}
