/**
 * scaleService: horizontal scaling behind HAProxy (runtime API) and Nginx (rendered upstream),
 * plan -> approval -> apply, one step at a time (seed: parallelism 1, delay 10 s):
 *   scale up    start the step's replicas; each joins HAProxy at once drained (add server, enable
 *               health, state drain: checked, no traffic), and goes into rotation (state ready) only
 *               when it is running, healthy for Docker, answers GET /health and HAProxy's own check
 *               reports it UP; then Nginx's upstream is re-rendered and reloaded.
 *   scale down  the highest-numbered replicas first: out of Nginx's upstream (reloaded, old workers
 *               finish), `state drain` in HAProxy, wait until their current sessions reach 0 (or the
 *               drain timeout: a warning alert, then "force" cuts what remains, "rollback" restores
 *               the starting set), `del server`, then stop and remove them.
 * Any failure runs the saga's compensations (every step registers its undo first), bringing the
 * replica set and both load balancers back to the starting set, sends a critical alert, and fails
 * with the reason. Every activity is idempotent by name and slot, so a worker killed mid-run (SIGKILL)
 * resumes without adding a replica twice or losing one.
 * Usable as a child workflow (the autoscaler): the result carries outcome, before and after.
 */
import { ActivityCancellationType, ApplicationFailure, defineQuery, isCancellation, log, proxyActivities, setHandler, sleep, workflowInfo, ActivityFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { INVALID_INPUT } from '../schemas/common';
import { replicaName, scaleServiceInputSchema, type ScaleServiceParams } from '../schemas/scale-service';
import { planGate, type GateOutcome, type PlanView } from './shared/approval';
import { now } from './shared/deterministic';
import { rootMessage } from './shared/errors';
import { beginRunbook, iso, showDetails } from './shared/runbook';
import { Saga } from './shared/saga';
import { leaseKeyOf } from '../schemas/lease';
import { holdingLease, undoing } from './shared/harness';

export const RUNBOOK = 'scaleService';

/** Rough time of one step, for the plan's expected duration (a replica's start + health, or a drain). */
const UP_STEP_ESTIMATE_MS = 10_000;
const DOWN_STEP_ESTIMATE_MS = 3_000;

export interface ScaleStep {
  action: 'add' | 'remove';
  replicas: string[];
}

export interface ScalePlan {
  service: string;
  mode: ScaleServiceParams['mode'];
  backend: string;
  before: string[];
  target: string[];
  direction: 'up' | 'down' | 'none';
  steps: ScaleStep[];
  /** Running replicas not yet in HAProxy (replica 1 started by hand): put into rotation first, once healthy. */
  adopt?: string[];
  stepDelayMs: number;
  /** Estimate: steps x their typical time, plus the delays between them (plus any drain waits). */
  expectedDurationMs: number;
}

export type ScaleOutcome = 'scaled' | 'unchanged' | Exclude<GateOutcome, 'approved'>;

export interface ScaleReport {
  service: string;
  backend: string;
  mode: ScaleServiceParams['mode'];
  state: 'planning' | 'awaiting-approval' | 'applying' | 'waiting' | 'rolling-back' | 'rolled-back' | 'done';
  outcome?: ScaleOutcome;
  before: string[];
  after: string[];
  /** The replicas in both load balancers' rotation now. */
  inRotation: string[];
  plan?: ScalePlan;
  stepsDone: number;
  decision?: PlanView<ScalePlan>['decision'];
  drainTimeouts: Array<{ server: string; sessions: number }>;
  failure?: string;
  startedAt: number;
  finishedAt?: number;
}

export interface ScaleResult {
  outcome: ScaleOutcome;
  before: string[];
  after: string[];
  plan: ScalePlan;
  decision?: PlanView<ScalePlan>['decision'];
  drainTimeouts: ScaleReport['drainTimeouts'];
  durationMs: number;
}

export const scaleStatusQuery = defineQuery<ScaleReport>('status');

const quick = proxyActivities<Activities>({
  // A cancel waits for a running step to end before the undo runs (a step deaf to the cancel could land after its undo).
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  // Short: a retry after a worker crash starts this soon (the calls are a few engine or socket requests).
  startToCloseTimeout: '15s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 8 },
});
const alerts = proxyActivities<Activities>({ startToCloseTimeout: '30s', retry: { maximumInterval: '30s', maximumAttempts: 8 } });

/** Activity failure types that mean the input names something that is not there. */
const INPUT_FAILURES = new Set(['ServiceNotFound', 'ServiceNotScalable', 'ServiceNotReplicated', 'BasePortMismatch', 'BackendNotFound']);

function chunk<T>(xs: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}

export async function scaleService(rawInput: unknown): Promise<ScaleResult> {
  const input = beginRunbook(RUNBOOK, scaleServiceInputSchema, rawInput, (i) => i.service);
  const gate = planGate<ScalePlan>(input);
  const info = workflowInfo();
  const { service, backend, mode, basePort } = input;
  const name = (n: number) => replicaName(service, n);
  const ref = { service, mode, basePort };

  const waits = proxyActivities<Activities>({
    // A cancel waits for a running step to end before the undo runs (a step deaf to the cancel could land after its undo).
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    startToCloseTimeout: input.healthTimeoutMs + input.drainTimeoutMs + 60_000,
    heartbeatTimeout: '5s',
    retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 5 },
  });

  const report: ScaleReport = { service, backend, mode, state: 'planning', before: [], after: [], inRotation: [], stepsDone: 0, drainTimeouts: [], startedAt: now() };
  setHandler(scaleStatusQuery, () => report);
  const show = (note?: string) =>
    showDetails(`scale ${service}: ${report.state}`, {
      state: report.state,
      outcome: report.outcome,
      mode,
      backend,
      before: report.before.join(', ') || '(none)',
      target: report.plan?.target.join(', ') || undefined,
      'in rotation': report.inRotation.join(', ') || '(none)',
      steps: report.plan ? `${report.stepsDone}/${report.plan.steps.length}` : undefined,
      approval: input.approval,
      decision: report.decision ? `${report.decision.verdict} by ${report.decision.by}: ${report.decision.reason}` : undefined,
      started: iso(report.startedAt),
      note,
    });
  show();

  // What is there now: an unknown service or backend is bad input, found before anything changes.
  const look = async () => {
    try {
      const set = await quick.describeReplicaSet(ref);
      const lb = await quick.haproxyBackendStats(backend);
      return { set, lb };
    } catch (err) {
      const cause = err instanceof ActivityFailure ? err.cause : undefined;
      if (cause instanceof ApplicationFailure && cause.type && INPUT_FAILURES.has(cause.type)) {
        throw ApplicationFailure.create({ type: INVALID_INPUT, nonRetryable: true, message: `invalid ${RUNBOOK} input: ${cause.message}`, details: [{ problems: [cause.message] }] });
      }
      throw err;
    }
  };

  /** The plan from what is there: which slots to add and remove, and running replicas HAProxy does not know yet (adopted). */
  const planFrom = ({ set, lb }: Awaited<ReturnType<typeof look>>): ScalePlan => {
    const beforeSlots = set.replicas.map((r) => r.slot).sort((a, b) => a - b);
    const targetSlots = Array.from({ length: input.replicas }, (_, i) => i + 1);
    const toAdd = targetSlots.filter((s) => !beforeSlots.includes(s));
    const toRemove = beforeSlots.filter((s) => !targetSlots.includes(s)).sort((a, b) => b - a);
    const known = new Set(lb.servers.map((x) => x.name));
    const adopt = set.replicas.filter((r) => targetSlots.includes(r.slot) && r.running && r.health !== 'unhealthy' && !known.has(name(r.slot))).map((r) => name(r.slot));
    const steps: ScaleStep[] = [
      ...chunk(toAdd, input.step).map((slots) => ({ action: 'add' as const, replicas: slots.map(name) })),
      ...chunk(toRemove, input.step).map((slots) => ({ action: 'remove' as const, replicas: slots.map(name) })),
    ];
    return {
      service,
      mode,
      backend,
      before: beforeSlots.map(name),
      target: targetSlots.map(name),
      direction: toAdd.length > 0 ? 'up' : toRemove.length > 0 ? 'down' : 'none',
      steps,
      ...(adopt.length ? { adopt } : {}),
      stepDelayMs: input.stepDelayMs,
      expectedDurationMs: steps.reduce((t, s) => t + (s.action === 'add' ? UP_STEP_ESTIMATE_MS : DOWN_STEP_ESTIMATE_MS), 0) + Math.max(0, steps.length - 1) * input.stepDelayMs,
    };
  };
  const slotOf = (replica: string) => Number(replica.slice(service.length + 1));

  const finishWith = (plan: ScalePlan) => (outcome: ScaleOutcome): ScaleResult => {
    report.outcome = outcome;
    report.state = 'done';
    report.finishedAt = now();
    show();
    return { outcome, before: report.before, after: report.after, plan, ...(report.decision ? { decision: report.decision } : {}), drainTimeouts: report.drainTimeouts, durationMs: report.finishedAt - report.startedAt };
  };
  const usePlan = (p: ScalePlan) => {
    report.before = p.before;
    report.after = p.before;
    report.inRotation = p.before.filter((r) => !p.adopt?.includes(r));
    report.plan = p;
  };

  // A dry run only reads: it never takes (or waits for) the service's lease.
  if (input.dryRun) {
    const plan = planFrom(await look());
    usePlan(plan);
    await gate.gate(plan);
    return finishWith(plan)('dry-run');
  }

  return holdingLease({ service: leaseKeyOf(service), runbook: RUNBOOK, waitForLease: input.waitForLease, leaseWaitTimeoutMs: input.leaseWaitTimeoutMs, approvalTimeoutMs: input.approvalTimeoutMs, onQueued: (q) => show(`waiting for the lease (position ${q.position}) behind ${q.holder.runbook} ${q.holder.workflowId}`) }, async () => {
    // The plan is made under the lease, so what is approved is what is applied.
    let plan = planFrom(await look());
    usePlan(plan);
    for (;;) {
      if (plan.steps.length === 0 && !plan.adopt) return finishWith(plan)('unchanged');
      if (input.approval === 'required') {
        report.state = 'awaiting-approval';
        show('waiting for approve / reject');
      }
      const { outcome, decision } = await gate.gate(plan);
      if (decision) report.decision = decision;
      if (outcome !== 'approved') return finishWith(plan)(outcome);
      if (input.approval === 'none') break;
      // The service may have changed while the plan waited for its approval: then plan again and ask again.
      const fresh = planFrom(await look());
      if (fresh.before.join() === plan.before.join() && (fresh.adopt ?? []).join() === (plan.adopt ?? []).join()) break;
      log.info('the service changed while the plan waited for approval; planning again', { service, before: plan.before, now: fresh.before });
      plan = fresh;
      usePlan(plan);
      report.decision = undefined;
    }
    return apply(plan, finishWith(plan));
  });

  async function apply(plan: ScalePlan, finish: (o: ScaleOutcome) => ScaleResult): Promise<ScaleResult> {
  const beforeSlots = plan.before.map(slotOf);
  const { steps } = plan;
  // --- apply ---------------------------------------------------------------------------------
  const rotation = new Set<number>(beforeSlots);
  const present = new Set<number>(beforeSlots);
  const syncRotation = () => {
    report.inRotation = [...rotation].sort((a, b) => a - b).map(name);
    report.after = [...present].sort((a, b) => a - b).map(name);
    return waits.nginxSyncUpstream({ backend, servers: [...rotation].sort((a, b) => a - b).map((n) => ({ name: name(n), port: basePort + n, weight: input.weight })) });
  };

  /** The first failure of settled promises, thrown (all settle first: nothing left running behind a failure). */
  const allOrFirstFailure = async (ps: Array<Promise<unknown>>) => {
    const failed = (await Promise.allSettled(ps)).find((g): g is PromiseRejectedResult => g.status === 'rejected');
    if (failed) throw failed.reason;
  };

  /**
   * Start replicas; each joins HAProxy at the same time, drained (no traffic) with HAProxy's checks
   * running, so they run alongside Docker's; it goes into rotation only when Docker reports it
   * healthy, GET /health answers 200 and HAProxy's own check reports it UP. Then Nginx.
   */
  const bringIn = async (slots: number[]) => {
    // Staged (drained, checked: no traffic) while the replicas start: HAProxy's first checks fail
    // until the replica listens, which is what they are for.
    await allOrFirstFailure([
      quick.addReplicas({ ...ref, slots }),
      ...slots.map((s) => quick.haproxyStageServer({ backend, server: name(s), port: basePort + s, weight: input.weight })),
    ]);
    slots.forEach((s) => present.add(s));
    await intoRotation(slots);
  };

  /** Staged replicas go into rotation, each as soon as Docker, GET /health and HAProxy's own check agree; then Nginx. */
  const intoRotation = async (slots: number[]) => {
    await allOrFirstFailure(
      slots.map(async (s) => {
        await allOrFirstFailure([
          waits.waitReplicaHealthy({ ...ref, slot: s, timeoutMs: input.healthTimeoutMs }),
          waits.haproxyWaitServerUp({ backend, server: name(s), timeoutMs: input.healthTimeoutMs }),
        ]);
        await quick.haproxyReadyServer({ backend, server: name(s), weight: input.weight });
        rotation.add(s);
      }),
    );
    await syncRotation();
  };

  /** Out of Nginx, drain in HAProxy (wait for 0 sessions), del server, then stop the replicas. */
  const takeOut = async (slots: number[], compensating: boolean) => {
    slots.forEach((s) => rotation.delete(s));
    await syncRotation();
    for (const s of slots) await quick.haproxyDrainServer({ backend, server: name(s) });
    for (const s of slots) {
      const drained = await waits.haproxyWaitDrained({ backend, server: name(s), timeoutMs: input.drainTimeoutMs });
      if (!drained.drained) {
        report.drainTimeouts.push({ server: name(s), sessions: drained.scur });
        const rollback = input.onDrainTimeout === 'rollback' && !compensating;
        await alerts.sendAlert({
          severity: 'warning',
          service,
          summary: `${name(s)} still had ${drained.scur} session(s) after the ${input.drainTimeoutMs} ms drain: ${rollback ? 'rolling back' : 'cutting them'}`,
          details: { backend, server: name(s), sessions: drained.scur, 'drain timeout ms': input.drainTimeoutMs, 'on drain timeout': input.onDrainTimeout },
          runbook: RUNBOOK,
          workflowId: info.workflowId,
          dedupKey: `${service}/scale-drain-timeout`,
        });
        if (rollback) throw ApplicationFailure.nonRetryable(`${name(s)} did not drain within ${input.drainTimeoutMs} ms (${drained.scur} sessions)`, 'DrainTimeout');
      }
    }
    for (const s of slots) await quick.haproxyRemoveServer({ backend, server: name(s), force: true });
    await waits.removeReplicas({ ...ref, slots });
    slots.forEach((s) => present.delete(s));
    report.after = [...present].sort((a, b) => a - b).map(name);
  };

  /** Running replicas HAProxy does not know (replica 1 started by hand): staged, checked, then into rotation. */
  const adopt = async (slots: number[]) => {
    slots.forEach((s) => rotation.delete(s));
    await allOrFirstFailure(slots.map((s) => quick.haproxyStageServer({ backend, server: name(s), port: basePort + s, weight: input.weight })));
    await intoRotation(slots);
  };

  const saga = new Saga();
  report.state = 'applying';
  show();
  try {
    if (plan.adopt) {
      show(`adopting ${plan.adopt.join(', ')} into the balancers`);
      await adopt(plan.adopt.map(slotOf));
    }
    for (const [i, step] of steps.entries()) {
      const slots = step.replicas.map(slotOf);
      if (step.action === 'add') {
        saga.add(`remove ${step.replicas.join(', ')}`, () => takeOut(slots, true));
        await bringIn(slots);
      } else {
        saga.add(`restore ${step.replicas.join(', ')}`, () => bringIn(slots));
        await takeOut(slots, false);
      }
      report.stepsDone = i + 1;
      show(`${step.action} ${step.replicas.join(', ')}: done`);
      if (i < steps.length - 1 && input.stepDelayMs > 0) {
        report.state = 'waiting';
        show(`next step in ${input.stepDelayMs} ms`);
        await sleep(input.stepDelayMs);
        report.state = 'applying';
      }
    }
  } catch (err) {
    const cancelled = isCancellation(err);
    const reason = cancelled ? 'cancelled' : rootMessage(err);
    report.failure = reason;
    report.state = 'rolling-back';
    show(`step ${report.stepsDone + 1} ${cancelled ? 'cancelled' : `failed: ${reason}`}`);
    // Undo and report even when cancelled (non-cancellable): the service goes back to its starting set.
    const notUndone = await saga.compensate();
    report.state = 'rolled-back';
    show(notUndone.length ? `not undone: ${notUndone.map((n) => n.what).join('; ')}` : 'back to the starting set');
    if (cancelled) {
      if (notUndone.length > 0) {
        await undoing(() =>
          alerts.sendAlert({
            severity: 'critical',
            service,
            summary: `scaling ${service} to ${input.replicas} was cancelled and could not be fully undone`,
            details: { backend, mode, before: plan.before.join(', ') || '(none)', after: report.after.join(', ') || '(none)', 'not undone': notUndone.map((n) => `${n.what}: ${n.error}`).join('; ') },
            runbook: RUNBOOK,
            workflowId: info.workflowId,
            dedupKey: `${service}/scale-cancel-incomplete`,
          }),
        ).catch((e: unknown) => log.error('cancel alert not sent', { error: rootMessage(e) }));
      }
      report.finishedAt = now();
      throw err;
    }
    await alerts.sendAlert({
      severity: 'critical',
      service,
      summary: `scaling ${service} to ${input.replicas} failed; rolled back to ${plan.before.length} replica(s)`,
      details: { reason, backend, mode, before: plan.before.join(', ') || '(none)', after: report.after.join(', ') || '(none)', 'not undone': notUndone.map((n) => `${n.what}: ${n.error}`).join('; ') || 'nothing' },
      runbook: RUNBOOK,
      workflowId: info.workflowId,
      dedupKey: `${service}/scale-failed`,
    });
    report.outcome = undefined;
    report.finishedAt = now();
    throw ApplicationFailure.create({ type: 'ScaleFailed', nonRetryable: true, message: `scaling ${service} to ${input.replicas} failed (${reason}); rolled back to ${report.after.join(', ') || 'no replicas'}`, details: [report] });
  }
  return finish('scaled');
  }
}
