/** Builds the Temporal worker: every runbook, activities from injected clients. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PayloadCodec } from '@temporalio/common';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { workerTracingOptions, type Tracing } from '../observability/tracing';
import { codecFor } from '../codec/codec';
import { loadConfig } from '../config/env';
import { crashAfterInterceptor } from './fault-injection';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** Use a prebuilt workflow bundle when one is given (tests, fast restarts); bundle otherwise. */
export function workflowSource(bundlePath?: string): Pick<WorkerOptions, 'workflowsPath' | 'workflowBundle'> {
  if (bundlePath && existsSync(bundlePath)) return { workflowBundle: { codePath: bundlePath } };
  return { workflowsPath };
}

export interface CreateWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  bundlePath?: string;
  /** Override activities (unit tests stub them); the real ones by default. */
  activities?: object;
  /** Trace workflows and activities (src/observability/tracing.ts); workflow spans are dropped without it. */
  tracing?: Tracing;
  /** Payload encryption (src/codec/codec.ts): the configured codec by default; `false` for plain payloads. */
  codec?: PayloadCodec | false;
  /** Crash tests only: SIGKILL this process right after these activities complete, before they report. */
  crashAfter?: string[];
}

export async function createWorker(opts: CreateWorkerOptions): Promise<Worker> {
  const codec = opts.codec === false ? undefined : (opts.codec ?? codecFor(loadConfig()));
  const tracingOptions = workerTracingOptions(opts.tracing, !workflowSource(opts.bundlePath).workflowBundle);
  const crash = opts.crashAfter?.length ? [crashAfterInterceptor(opts.crashAfter)] : [];
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    activities: opts.activities ?? createActivities(opts.deps),
    ...workflowSource(opts.bundlePath),
    ...tracingOptions,
    interceptors: { ...tracingOptions.interceptors, activity: [...(tracingOptions.interceptors?.activity ?? []), ...crash] },
    shutdownGraceTime: '10s',
    ...(codec ? { dataConverter: { payloadCodecs: [codec] } } : {}),
  });
}
