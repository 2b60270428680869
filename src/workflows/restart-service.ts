/**
 * restartService: a one-shot runbook an operator starts from the Temporal UI (or the CLI):
 * restart one container, verify it is healthy, return a report. Alerts if it stays unhealthy.
 */
import { ApplicationFailure, defineQuery, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { restartServiceInputSchema } from '../schemas/restart-service';
import { now } from './shared/deterministic';
import { beginRunbook, iso, showDetails } from './shared/runbook';
import { leaseKeyOf } from '../schemas/lease';
import { holdingLease } from './shared/harness';

export const RUNBOOK = 'restartService';

export type RestartPhase = 'validating' | 'restarting' | 'verifying' | 'done' | 'failed';

export interface RestartReport {
  service: string;
  reason: string;
  phase: RestartPhase;
  requestedAt: number;
  /** False when a retry found the restart already done (it is never done twice). */
  restarted: boolean;
  containerStartedAt?: number;
  healthy?: boolean;
  healthyAt?: number;
  /** Request -> healthy, in ms. */
  durationMs?: number;
  healthProbes?: number;
  lastProbe?: string;
}

export const restartStatusQuery = defineQuery<RestartReport>('status');

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '20s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 },
});

export async function restartService(rawInput: unknown): Promise<RestartReport> {
  const input = beginRunbook(RUNBOOK, restartServiceInputSchema, rawInput, (i) => i.service);
  const report: RestartReport = { service: input.service, reason: input.reason, phase: 'validating', requestedAt: now(), restarted: false };
  setHandler(restartStatusQuery, () => report);
  const show = () =>
    showDetails(`restart ${input.service}: ${report.phase}`, {
      phase: report.phase,
      reason: input.reason,
      requested: iso(report.requestedAt),
      'container started': iso(report.containerStartedAt),
      'healthy at': iso(report.healthyAt),
      'duration ms': report.durationMs,
      'last probe': report.lastProbe,
    });
  show();

  const { restartContainer } = proxyActivities<Activities>({
    startToCloseTimeout: `${input.stopTimeoutSec + 60}s`,
    heartbeatTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 },
  });
  const { waitHealthy } = proxyActivities<Activities>({
    startToCloseTimeout: input.healthTimeoutMs + 30_000,
    heartbeatTimeout: '20s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 },
  });

  // Unknown container: non-retryable failure, nothing touched (and no lease taken).
  await quick.inspectService(input.service);

  // One change per service at a time: an operator's restart holds the service's lease, so the
  // supervisor does not restart it too and no scale or resize runs meanwhile.
  return holdingLease({ service: leaseKeyOf(input.service), runbook: RUNBOOK, waitForLease: input.waitForLease, leaseWaitTimeoutMs: input.leaseWaitTimeoutMs, maxHoldMs: input.healthTimeoutMs + input.stopTimeoutSec * 1000 + 5 * 60_000 }, async () => {
    report.phase = 'restarting';
    report.requestedAt = now();
    show();
    const restart = await restartContainer({ service: input.service, requestedAt: report.requestedAt, stopTimeoutSec: input.stopTimeoutSec });
    report.restarted = !restart.alreadyDone;
    report.containerStartedAt = restart.startedAt;

    report.phase = 'verifying';
    show();
    const health = await waitHealthy({ service: input.service, url: input.healthUrl, timeoutMs: input.healthTimeoutMs, intervalMs: 250, probeTimeoutMs: 5_000 });
    report.healthy = health.healthy;
    report.healthProbes = health.probes;
    report.lastProbe = health.last.ok ? `ok${health.last.status ? ` (HTTP ${health.last.status})` : ''}` : (health.last.error ?? `HTTP ${health.last.status}`);

    if (!health.healthy) {
      report.phase = 'failed';
      show();
      await quick.sendAlert({
        severity: 'critical',
        service: input.service,
        summary: `not healthy ${input.healthTimeoutMs} ms after an operator restart`,
        details: { reason: input.reason, 'last probe': report.lastProbe, probes: health.probes },
        runbook: RUNBOOK,
        workflowId: workflowInfo().workflowId,
        dedupKey: `${input.service}/restart-unhealthy`,
      });
      // A failed runbook step waits in the dead letters, where an operator can re-run it.
      await quick.deadLetter({
        id: workflowInfo().workflowId,
        kind: 'workflow',
        at: now(),
        error: `not healthy ${input.healthTimeoutMs} ms after the restart (${report.lastProbe})`,
        attempts: 1,
        workflow: { workflowType: RUNBOOK, input, originalWorkflowId: workflowInfo().workflowId },
        service: input.service,
      });
      throw ApplicationFailure.create({ type: 'Unhealthy', nonRetryable: true, message: `${input.service} is not healthy ${input.healthTimeoutMs} ms after the restart (${report.lastProbe})`, details: [report] });
    }
    report.phase = 'done';
    report.healthyAt = now();
    report.durationMs = report.healthyAt - report.requestedAt;
    show();
    return report;
  });
}
