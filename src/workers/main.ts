/**
 * The engine process: the Temporal worker (every runbook) and the Docker event bridge.
 *   tsx src/workers/main.ts [--no-bridge]
 * Configuration comes from DURABLE_OPS_* variables (src/config/env.ts), validated first.
 */
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { BreakerRegistry } from '../activities/breaker';
import { AlertingConfigError, loadAlerting } from '../config/alerting';
import { ConfigError, loadConfig } from '../config/env';
import { codecFor } from '../codec/codec';
import { createLogger } from '../config/logger';
import { activityDeps, connectClient, connectWorker, createDocker } from './clients';
import { runDockerEventBridge } from './docker-events';
import { createWorker } from './worker';
import { createTracing, WORKER_SERVICE_NAME } from '../observability/tracing';
import { freeLoopbackPort } from '../observability/server';
import { startObservability } from './observability';
import { startRotationAgeRefresher } from '../observability/rotation-age';
import { DEFAULT_ROTATIONS_FILE, loadRotations } from '../runbooks/config-files';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
    codecFor(config); // payload encryption keys, validated (CodecKeyError is a ConfigError) and created on first use
    loadAlerting(config.DURABLE_OPS_ALERTING_CONFIG); // channels and routes, before connecting to anything
  } catch (err) {
    if (err instanceof ConfigError || err instanceof AlertingConfigError) {
      console.error(`durable-ops: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.DURABLE_OPS_LOG_LEVEL, { component: 'worker', taskQueue: config.DURABLE_OPS_TASK_QUEUE });
  const sdkLog = log.child({ component: 'temporal-sdk' });
  const level = config.DURABLE_OPS_LOG_LEVEL === 'silent' ? 'ERROR' : (config.DURABLE_OPS_LOG_LEVEL.toUpperCase() as LogLevel);
  const sdkMetricsPort = config.DURABLE_OPS_SDK_METRICS_PORT || (await freeLoopbackPort());
  Runtime.install({
    telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${sdkMetricsPort}` } } },
    logger: new DefaultLogger(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'].includes(level) ? level : 'INFO', (entry) => {
      const method = entry.level === 'TRACE' ? 'trace' : entry.level === 'DEBUG' ? 'debug' : entry.level === 'WARN' ? 'warn' : entry.level === 'ERROR' ? 'error' : 'info';
      sdkLog[method]({ ...entry.meta }, entry.message);
    }),
  });

  const withBridge = !process.argv.includes('--no-bridge');
  const tracing = createTracing({ serviceName: WORKER_SERVICE_NAME, endpoint: config.DURABLE_OPS_OTLP_ENDPOINT, log: log.child({ component: 'tracing' }) });
  const connection = await connectWorker(config);
  const client = await connectClient(config, tracing);
  const breakers = new BreakerRegistry(log.child({ component: 'breaker' }));
  let deps;
  try {
    deps = { ...activityDeps(config, log.child({ component: 'activity' }), { client, taskQueue: config.DURABLE_OPS_TASK_QUEUE }), breakers };
  } catch (err) {
    if (err instanceof AlertingConfigError) {
      console.error(`durable-ops: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const worker = await createWorker({
    connection,
    namespace: config.DURABLE_OPS_NAMESPACE,
    taskQueue: config.DURABLE_OPS_TASK_QUEUE,
    deps,
    bundlePath: config.DURABLE_OPS_WORKFLOW_BUNDLE,
    tracing,
    codec: codecFor(config),
    ...(config.DURABLE_OPS_FAULT_CRASH_AFTER ? { crashAfter: config.DURABLE_OPS_FAULT_CRASH_AFTER.split(',') } : {}),
  });
  if (config.DURABLE_OPS_FAULT_CRASH_AFTER) log.warn({ crashAfter: config.DURABLE_OPS_FAULT_CRASH_AFTER }, 'fault injection on: this worker SIGKILLs itself after these activities');

  const abort = new AbortController();
  const bridge = withBridge
    ? connectClient(config, tracing).then((client) =>
        runDockerEventBridge({ docker: createDocker(config), client, taskQueue: config.DURABLE_OPS_TASK_QUEUE, log: log.child({ component: 'docker-events' }), signal: abort.signal }),
      )
    : Promise.resolve();
  const observability = await startObservability(config, log, sdkMetricsPort, breakers);
  const stopRotationAges = deps.kv
    ? startRotationAgeRefresher({ kv: deps.kv, rotations: loadRotations(process.env.DURABLE_OPS_ROTATIONS_CONFIG ?? DEFAULT_ROTATIONS_FILE), log: log.child({ component: 'rotation-age' }) })
    : () => undefined;
  log.info({ temporal: config.DURABLE_OPS_TEMPORAL_ADDRESS, bridge: withBridge }, 'worker started');
  try {
    await worker.run();
  } finally {
    abort.abort();
    await bridge.catch((err) => log.error({ error: (err as Error).message }, 'bridge ended with an error'));
    stopRotationAges();
    await observability.close();
    await connection.close();
    await tracing.shutdown();
    log.info('worker stopped');
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
