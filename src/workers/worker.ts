/** Builds the Temporal worker: every runbook, activities from injected clients. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';

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
}

export async function createWorker(opts: CreateWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    activities: opts.activities ?? createActivities(opts.deps),
    ...workflowSource(opts.bundlePath),
    shutdownGraceTime: '10s',
  });
}
