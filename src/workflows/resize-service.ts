/**
 * resizeService (vertical scaling): sample `docker stats` over a window, recommend CPU and memory
 * limits (observed peak + headroom, within bounds; reservations a fraction of the limits) or take
 * explicit ones, plan -> approval -> apply (`docker update` / a rolling Swarm service update),
 * verify health for a settle period, and on any failure restore the old limits (saga) and alert.
 */
import { ActivityCancellationType, ActivityFailure, ApplicationFailure, CancellationScope, CancelledFailure, defineQuery, isCancellation, log, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ResourceLimits, ResourceUsage } from '../activities/resources';
import { INVALID_INPUT } from '../schemas/common';
import { resizeServiceInputSchema } from '../schemas/resize-service';
import { planGate, type GateOutcome, type PlanView } from './shared/approval';
import { now } from './shared/deterministic';
import { rootMessage } from './shared/errors';
import { beginRunbook, iso, showDetails } from './shared/runbook';
import { planSizing } from './shared/sizing';
import { leaseKeyOf } from '../schemas/lease';
import { holdingLease, undoing } from './shared/harness';

export const RUNBOOK = 'resizeService';
/**
 * A cancel during `docker update` waits for the update to end before the undo runs (otherwise the
 * update, deaf to the cancel, could land after the restore), and a cancel that arrives once the
 * checks have passed still rolls back.
 */
const UNDO_AFTER_STEP_PATCH = 'resize-undo-after-step';

export type ResizePhase = 'sampling' | 'planning' | 'awaiting-approval' | 'applying' | 'verifying' | 'rolling-back' | 'done' | 'unchanged' | 'rolled-back' | GateOutcome;

export interface ResizePlan {
  service: string;
  mode: 'containers' | 'swarm';
  replicas: string[];
  current: ResourceLimits;
  target: ResourceLimits;
  source: { cpu: 'recommended' | 'explicit'; memoryMb: 'recommended' | 'explicit' };
  floor: { cpu: number; memoryMb: number };
  usage: { samples: number; windowMs: number; cpuCoresPeak: number; cpuCoresP95: number; cpuPercentOfLimitP95: number; memoryMbPeak: number; memoryMbP95: number };
  steps: string[];
  expectedDurationMs: number;
}

export interface ResizeReport {
  service: string;
  phase: ResizePhase;
  outcome?: 'resized' | 'unchanged' | 'rolled-back' | GateOutcome;
  plan?: ResizePlan;
  decision?: PlanView<ResizePlan>['decision'];
  appliedAt?: number;
  verifiedAt?: number;
  health?: string;
  failure?: string;
  /** Limits read back from the engine after the run (applied, or restored). */
  finalLimits?: ResourceLimits;
  alertSent?: boolean;
}

export const resizeStatusQuery = defineQuery<ResizeReport>('status');

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '60s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 },
});

const fmt = (l: ResourceLimits) => `cpu ${l.cpus || 'none'} (res ${l.cpuReservation || 'none'}), memory ${l.memoryMb || 'none'} MiB (res ${l.memoryReservationMb || 'none'} MiB)`;

export async function resizeService(rawInput: unknown): Promise<ResizeReport> {
  const input = beginRunbook(RUNBOOK, resizeServiceInputSchema, rawInput, (i) => i.service);
  const { service, mode } = input;
  const { view, gate } = planGate<ResizePlan>({ approval: input.approval, approvalTimeoutMs: input.approvalTimeoutMs, dryRun: input.dryRun });
  const report: ResizeReport = { service, phase: 'sampling' };
  setHandler(resizeStatusQuery, () => report);
  const show = () =>
    showDetails(`resize ${service}: ${report.phase}`, {
      phase: report.phase,
      mode,
      current: report.plan ? fmt(report.plan.current) : undefined,
      target: report.plan ? fmt(report.plan.target) : undefined,
      'observed cpu peak / p95 (cores)': report.plan ? `${report.plan.usage.cpuCoresPeak} / ${report.plan.usage.cpuCoresP95}` : undefined,
      'observed memory peak (MiB)': report.plan?.usage.memoryMbPeak,
      approval: view.state,
      'decided by': view.decision ? `${view.decision.by} (${view.decision.verdict}): ${view.decision.reason}` : undefined,
      'applied at': iso(report.appliedAt),
      health: report.health,
      failure: report.failure,
    });
  const setPhase = (p: ResizePhase) => {
    report.phase = p;
    show();
  };
  show();

  const run = async (): Promise<ResizeReport> => {
    // 1. Observe (read-only): docker stats over the window.
    const sampler = proxyActivities<Activities>({
      startToCloseTimeout: input.windowMs + 60_000,
      heartbeatTimeout: Math.max(30_000, input.sampleIntervalMs * 3),
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
    });
    const usage: ResourceUsage = await sampler.sampleResources({ service, mode, windowMs: input.windowMs, intervalMs: input.sampleIntervalMs });

    // 2. Plan: recommendation (or explicit limits), checked against the observed usage floor.
    setPhase('planning');
    const sizing = planSizing(
      { cpuCoresPeak: usage.cpuCoresMaxReplica.peak, cpuCoresP95: usage.cpuCoresMaxReplica.p95, memoryMbPeak: usage.memoryMb.peak },
      { bounds: input.bounds, headroomPercent: input.headroomPercent, reservationFraction: input.reservationFraction, ...(input.limits ? { limits: input.limits } : {}) },
    );
    if (sizing.problems.length > 0) {
      report.failure = sizing.problems.join('; ');
      setPhase('planning');
      throw ApplicationFailure.create({ type: INVALID_INPUT, nonRetryable: true, message: `invalid ${RUNBOOK} input: ${sizing.problems.join('; ')}`, details: [{ problems: sizing.problems }] });
    }
    const replicas = Math.max(1, usage.replicas);
    const perReplicaMs = mode === 'swarm' ? input.updateDelayMs + 5_000 : 500;
    const plan: ResizePlan = {
      service,
      mode,
      replicas: usage.containers,
      current: usage.limits,
      target: sizing.limits,
      source: sizing.source,
      floor: sizing.floor,
      usage: {
        samples: usage.samples,
        windowMs: usage.windowMs,
        cpuCoresPeak: usage.cpuCoresMaxReplica.peak,
        cpuCoresP95: usage.cpuCoresMaxReplica.p95,
        cpuPercentOfLimitP95: usage.cpuPercentOfLimit.p95,
        memoryMbPeak: usage.memoryMb.peak,
        memoryMbP95: usage.memoryMb.p95,
      },
      steps:
        mode === 'swarm'
          ? [`rolling service update of ${replicas} task(s), one at a time, ${input.updateDelayMs} ms apart (stop-first)`, `verify health for ${input.verifyStableMs} ms`, 'on failure: restore the old limits, alert']
          : [`docker update of ${usage.containers.join(', ')} (no restart)`, `verify health for ${input.verifyStableMs} ms`, 'on failure: restore the old limits, alert'],
      expectedDurationMs: replicas * perReplicaMs + input.verifyStableMs,
    };
    report.plan = plan;
    if (sameLimits(plan.current, plan.target)) {
      view.plan = plan;
      report.outcome = 'unchanged';
      setPhase('unchanged');
      return report;
    }

    // 3. Approval (dry run / none / required).
    setPhase(input.dryRun ? 'planning' : input.approval === 'required' ? 'awaiting-approval' : 'applying');
    const decision = await gate(plan);
    report.decision = decision.decision;
    if (decision.outcome !== 'approved') {
      report.outcome = decision.outcome;
      setPhase(decision.outcome);
      return report;
    }

    // 4. Apply, verify; any failure restores the old limits (saga) and alerts.
    const undoAfterStep = patched(UNDO_AFTER_STEP_PATCH);
    const applier = proxyActivities<Activities>({
      startToCloseTimeout: '2m',
      ...(undoAfterStep ? { cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED } : {}),
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
    });
    const convergeMs = replicas * (input.updateDelayMs + input.healthTimeoutMs + 30_000);
    const waiter = proxyActivities<Activities>({
      startToCloseTimeout: convergeMs + 60_000,
      heartbeatTimeout: '30s',
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
    });
    const verifier = proxyActivities<Activities>({
      startToCloseTimeout: input.healthTimeoutMs + input.verifyStableMs + 60_000,
      heartbeatTimeout: '30s',
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
    });
    const setLimits = async (limits: ResourceLimits) => {
      await applier.applyResourceLimits({ service, mode, limits, delayMs: input.updateDelayMs });
      await waiter.waitResourcesApplied({ service, mode, limits, timeoutMs: convergeMs });
    };

    const compensations: Array<{ what: string; run: () => Promise<void> }> = [];
    let failure: string | undefined;
    let cancelled: unknown;
    try {
      setPhase('applying');
      // Registered before the change: a partial apply (some replicas updated) is undone too.
      compensations.push({ what: `restore ${fmt(plan.current)}`, run: () => setLimits(plan.current) });
      await setLimits(plan.target);
      report.appliedAt = now();
      setPhase('verifying');
      const health = await verifier.watchHealth({
        service,
        mode,
        ...(input.healthUrl ? { url: input.healthUrl } : {}),
        healthTimeoutMs: input.healthTimeoutMs,
        stableMs: input.verifyStableMs,
        intervalMs: input.verifyIntervalMs,
        failureThreshold: 2,
      });
      report.health = health.detail;
      if (!health.healthy) failure = `unhealthy after the resize: ${health.detail}`;
      if (undoAfterStep && CancellationScope.current().consideredCancelled) {
        cancelled = new CancelledFailure('cancelled');
        failure = 'cancelled';
      }
    } catch (err) {
      if (isCancellation(err) || (undoAfterStep && CancellationScope.current().consideredCancelled)) {
        cancelled = isCancellation(err) ? err : new CancelledFailure('cancelled');
        failure = 'cancelled';
      } else {
        if (!(err instanceof ActivityFailure)) throw err;
        failure = `apply failed: ${rootMessage(err)}`;
      }
    }

    if (failure === undefined) {
      report.verifiedAt = now();
      report.finalLimits = (await quick.readResourceLimits({ service, mode })).limits;
      report.outcome = 'resized';
      setPhase('done');
      return report;
    }

    // The undo (and its alert) runs even when the run was cancelled: the old limits come back.
    const rollbackErrors = await undoing(async () => {
      report.failure = failure;
      setPhase('rolling-back');
      const rollbackErrors: string[] = [];
      for (const c of compensations.reverse()) {
        try {
          await c.run();
        } catch (err) {
          rollbackErrors.push(`${c.what}: ${rootMessage(err)}`);
          log.error('compensation failed', { step: c.what, error: rootMessage(err) });
        }
      }
      report.finalLimits = await quick
        .readResourceLimits({ service, mode })
        .then((r) => r.limits)
        .catch(() => undefined);
      try {
        await quick.sendAlert({
          severity: rollbackErrors.length > 0 ? 'critical' : 'warning',
          service,
          summary: rollbackErrors.length > 0 ? `resize failed and the rollback failed too` : `resize rolled back: ${failure}`.slice(0, 200),
          details: {
            failure,
            'tried limits': fmt(plan.target),
            'restored limits': rollbackErrors.length > 0 ? `NOT restored: ${rollbackErrors.join('; ')}` : fmt(plan.current),
            mode,
          },
          runbook: RUNBOOK,
          workflowId: workflowInfo().workflowId,
          dedupKey: `${service}/resize-rolled-back`,
        });
        report.alertSent = true;
      } catch (err) {
        log.error('alert could not be delivered', { error: rootMessage(err) });
        report.alertSent = false;
      }
      return rollbackErrors;
    });
    if (cancelled !== undefined) {
      report.outcome = 'rolled-back';
      setPhase('rolled-back');
      throw cancelled;
    }
    report.outcome = 'rolled-back';
    setPhase('rolled-back');
    throw ApplicationFailure.create({
      type: rollbackErrors.length > 0 ? 'RollbackFailed' : 'RolledBack',
      nonRetryable: true,
      message: `${service}: ${failure}; ${rollbackErrors.length > 0 ? `rollback failed: ${rollbackErrors.join('; ')}` : `old limits restored (${fmt(plan.current)})`}`,
      details: [report],
    });
  };
  // A dry run only reads; a change holds the service's lease while it samples, plans and applies.
  if (input.dryRun) return run();
  return holdingLease({ service: leaseKeyOf(service), runbook: RUNBOOK, waitForLease: input.waitForLease, leaseWaitTimeoutMs: input.leaseWaitTimeoutMs, approvalTimeoutMs: input.approvalTimeoutMs + input.windowMs }, run);
}

function sameLimits(a: ResourceLimits, b: ResourceLimits): boolean {
  const r = (v: number) => Math.round(v * 1000);
  return r(a.cpus) === r(b.cpus) && a.memoryMb === b.memoryMb && r(a.cpuReservation) === r(b.cpuReservation) && a.memoryReservationMb === b.memoryReservationMb;
}
