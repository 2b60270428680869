/**
 * The worker's observability endpoints, on 127.0.0.1: /metrics (durable_ops_ KPIs + the SDK's
 * metrics) and the Alertmanager webhook receiver. Either one is skipped (with a warning) when
 * its port is taken, e.g. by another engine process on the same machine.
 */
import type { Logger } from 'pino';
import type { BreakerRegistry } from '../activities/breaker';
import type { Config } from '../config/env';
import { startMetricsServer } from '../observability/server';
import { startAlertReceiver } from './alert-receiver';
import { connectClient, createDocker } from './clients';

export async function startObservability(config: Config, log: Logger, sdkMetricsPort: number, breakers?: BreakerRegistry): Promise<{ close(): Promise<void> }> {
  const metrics = await startMetricsServer({
    port: config.DURABLE_OPS_METRICS_PORT,
    sdkMetricsUrl: `http://127.0.0.1:${sdkMetricsPort}/metrics`,
    log: log.child({ component: 'metrics' }),
    ...(breakers ? { breakers: () => breakers.snapshot() } : {}),
  });
  const client = await connectClient(config);
  const receiver = await startAlertReceiver({
    port: config.DURABLE_OPS_RECEIVER_PORT,
    client,
    docker: createDocker(config),
    taskQueue: config.DURABLE_OPS_TASK_QUEUE,
    log: log.child({ component: 'alert-receiver' }),
  });
  return {
    async close() {
      await Promise.all([metrics?.close(), receiver?.close()]);
      await client.connection.close();
    },
  };
}
