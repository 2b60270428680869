/**
 * startDatabase: start a stopped PostgreSQL instance (one we created, or the project cluster
 * 'main' through the stack's script), wait until it accepts
 * connections, report. The recovery of the recoveryDrill's stop-postgres scenario (as a child),
 * and usable on its own from the UI or the CLI.
 */
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { DatabaseRef } from '../schemas/database';
import { startDatabaseInputSchema } from '../schemas/start-database';
import { now } from './shared/deterministic';
import { beginRunbook, iso, showDetails } from './shared/runbook';

export const RUNBOOK = 'startDatabase';

export interface StartDatabaseReport {
  instance: DatabaseRef;
  requestedAt: number;
  readyAt: number;
  durationMs: number;
  probes: number;
}

const act = proxyActivities<Activities>({
  startToCloseTimeout: '2m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 },
});

export async function startDatabase(rawInput: unknown): Promise<StartDatabaseReport> {
  const input = beginRunbook(RUNBOOK, startDatabaseInputSchema, rawInput, (i) => i.instanceId);
  const requestedAt = now();
  showDetails(`start ${input.instanceId}: starting`, { requested: iso(requestedAt) });
  const instance = input.instanceId === 'main' ? await act.startMainCluster() : await act.startInstance(input.instanceId);
  const ready = await act.drillWaitReady({ db: instance, timeoutMs: input.readyTimeoutMs, intervalMs: 200 });
  if (!ready.ready) {
    throw ApplicationFailure.create({ type: 'Unhealthy', nonRetryable: true, message: `${input.instanceId} does not accept connections ${input.readyTimeoutMs} ms after the start (${ready.error ?? 'no answer'})` });
  }
  const readyAt = now();
  showDetails(`start ${input.instanceId}: ready`, { requested: iso(requestedAt), ready: iso(readyAt), port: instance.port });
  return { instance, requestedAt, readyAt, durationMs: readyAt - requestedAt, probes: ready.probes };
}
