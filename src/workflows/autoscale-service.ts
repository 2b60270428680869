/**
 * autoscaleService: one long-running autoscaler per service (workflow id `autoscale/<service>`).
 *
 * Every interval: sample CPU (`docker stats` of the replicas) and, when targets ask for them,
 * request rate and latency (HAProxy's stats socket); decide like the Kubernetes HPA (pure logic in
 * ./shared/hpa.ts: ratio to target with a 10 % tolerance, min/max, separate up/down stabilization
 * windows, a cooldown); scale by starting `scaleService` as a child (deterministic child id) and
 * waiting for it. The seed's `high_cpu` rule sends a warning alert, resolved when CPU drops.
 * `pause` / `resume` / `stop` signals, a `status` query; history stays bounded (continue-as-new).
 */
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  executeChild,
  log,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { autoscaleServiceInputSchema, type AutoscaleServiceParams } from '../schemas/autoscale-service';
import { now } from './shared/deterministic';
import { rootMessage } from './shared/errors';
import { decide, highCpu, recordScale, type HighCpuState, type HpaState, type Observation } from './shared/hpa';
import { beginRunbook, iso, showDetails } from './shared/runbook';

export const RUNBOOK = 'autoscaleService';
export const autoscaleWorkflowId = (service: string) => `autoscale/${service}`;
export const autoscaleChildId = (service: string, n: number) => `autoscale/${service}/scale-${n}`;

export interface AutoscaleDecisionRecord {
  at: number;
  replicas: number;
  cpuPercent?: number;
  requestRate?: number;
  latencyMs?: number;
  raw: number;
  desired: number;
  action: 'none' | 'scale-up' | 'scale-down';
  heldBy?: string;
  reason: string;
  /** The scaleService child started for it, and how it ended. */
  child?: string;
  childOutcome?: string;
  /** When the child ended. */
  childEndedAt?: number;
}

export interface AutoscaleStatus {
  service: string;
  state: 'observing' | 'scaling' | 'paused' | 'stopped';
  replicas?: number;
  lastObservation?: Observation;
  lastDecision?: AutoscaleDecisionRecord;
  /** The most recent decisions, newest last (bounded). */
  history: AutoscaleDecisionRecord[];
  scalesTotal: number;
  lastScaleAt?: number;
  highCpuFiring: boolean;
  lastError?: string;
  runsCarried: number;
}

export interface AutoscaleCarry {
  status: AutoscaleStatus;
  hpa: HpaState;
  cpu: HighCpuState;
  paused: boolean;
}

export const autoscaleStatusQuery = defineQuery<AutoscaleStatus>('status');
export const autoscalePauseSignal = defineSignal<[{ by?: string; reason?: string }?]>('pause');
export const autoscaleResumeSignal = defineSignal<[{ by?: string; reason?: string }?]>('resume');
export const autoscaleStopSignal = defineSignal<[{ by?: string; reason?: string }?]>('stop');

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '20s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 3 },
});

const alerts = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 8 },
});

export async function autoscaleService(rawInput: unknown, carried?: AutoscaleCarry): Promise<AutoscaleStatus> {
  const input = beginRunbook(RUNBOOK, autoscaleServiceInputSchema, rawInput, (i) => i.service);
  const { service, mode } = input;
  const backend = input.backend ?? service;

  const sampler = proxyActivities<Activities>({
    startToCloseTimeout: input.sampleWindowMs + 30_000,
    heartbeatTimeout: Math.max(20_000, input.sampleIntervalMs * 3),
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 3 },
  });

  const status: AutoscaleStatus = carried?.status ?? { service, state: 'observing', history: [], scalesTotal: 0, highCpuFiring: false, runsCarried: 0 };
  let hpa: HpaState = carried?.hpa ?? { recommendations: [] };
  let cpuRule: HighCpuState = carried?.cpu ?? { firing: false };
  let paused = carried?.paused ?? false;
  let stopRequested: string | undefined;

  const publish = () =>
    showDetails(`autoscale ${service}: ${status.state}`, {
      state: status.state,
      replicas: status.replicas,
      'cpu % of limit': status.lastObservation?.cpuPercent,
      'request rate': status.lastObservation?.requestRate,
      'latency ms': status.lastObservation?.latencyMs,
      target: `cpu ${input.targetCpuPercent}%${input.targetRequestRate ? `, ${input.targetRequestRate} req/s/replica` : ''}${input.targetLatencyMs ? `, ${input.targetLatencyMs} ms` : ''}; replicas ${input.minReplicas}..${input.maxReplicas}`,
      'last decision': status.lastDecision?.reason,
      'last scale': iso(status.lastScaleAt),
      'high cpu': status.highCpuFiring ? 'FIRING' : undefined,
      'last error': status.lastError,
    });
  const setState = (s: AutoscaleStatus['state']) => {
    status.state = s;
    publish();
  };

  setHandler(autoscaleStatusQuery, () => status);
  setHandler(autoscalePauseSignal, (req) => {
    log.info('autoscaler paused', { by: req?.by, reason: req?.reason });
    paused = true;
  });
  setHandler(autoscaleResumeSignal, (req) => {
    log.info('autoscaler resumed', { by: req?.by, reason: req?.reason });
    paused = false;
  });
  setHandler(autoscaleStopSignal, (req) => {
    stopRequested = `${req?.by ?? 'operator'}${req?.reason ? `: ${req.reason}` : ''}`;
  });
  publish();

  const policy = {
    minReplicas: input.minReplicas,
    maxReplicas: input.maxReplicas,
    targetCpuPercent: input.targetCpuPercent,
    ...(input.targetRequestRate !== undefined ? { targetRequestRate: input.targetRequestRate } : {}),
    ...(input.targetLatencyMs !== undefined ? { targetLatencyMs: input.targetLatencyMs } : {}),
    tolerance: input.tolerance,
    upStabilizationMs: input.upStabilizationMs,
    downStabilizationMs: input.downStabilizationMs,
    cooldownMs: input.cooldownMs,
  };
  const needsLb = input.targetRequestRate !== undefined || input.targetLatencyMs !== undefined;
  const dedupKey = `${service}/high_cpu`;

  const remember = (rec: AutoscaleDecisionRecord) => {
    status.lastDecision = rec;
    status.history.push(rec);
    if (status.history.length > input.historySize) status.history.splice(0, status.history.length - input.historySize);
  };

  const observe = async (): Promise<Observation | undefined> => {
    try {
      const usage = await sampler.sampleResources({ service, mode, windowMs: input.sampleWindowMs, intervalMs: input.sampleIntervalMs });
      const obs: Observation = { at: now(), replicas: usage.replicas, ...(usage.samples > 0 ? { cpuPercent: usage.cpuPercentOfLimit.mean } : {}) };
      if (needsLb) {
        const lb = await quick.haproxyBackendStats(backend);
        const up = lb.servers.filter((s) => s.status.startsWith('UP'));
        obs.requestRate = lb.rate;
        if (up.length > 0) obs.latencyMs = Math.round(up.reduce((a, s) => a + s.rtimeMs, 0) / up.length);
      }
      status.lastError = undefined;
      return obs;
    } catch (err) {
      // A failed observation is not a reason to scale, nor to stop autoscaling: hold and retry next interval.
      status.lastError = `observation failed: ${rootMessage(err)}`;
      log.warn('observation failed', { service, error: status.lastError });
      return undefined;
    }
  };

  const alertHighCpu = async (obs: Observation) => {
    const r = highCpu(cpuRule, obs.cpuPercent, obs.at, input.highCpu);
    cpuRule = r.state;
    status.highCpuFiring = r.state.firing;
    try {
      if (r.fire) {
        await alerts.sendAlert({
          severity: 'warning',
          service,
          summary: `high_cpu: CPU above ${input.highCpu.percent}% of the limit for ${Math.round(input.highCpu.forMs / 1000)} s`,
          details: { 'cpu % of limit': obs.cpuPercent ?? 'n/a', replicas: obs.replicas, 'max replicas': input.maxReplicas, since: iso(r.state.aboveSince) ?? '' },
          runbook: RUNBOOK,
          workflowId: workflowInfo().workflowId,
          dedupKey,
        });
      }
      if (r.resolve) await alerts.resolveAlert({ dedupKey });
    } catch (err) {
      status.lastError = `alert not delivered: ${rootMessage(err)}`;
    }
  };

  const scaleTo = async (rec: AutoscaleDecisionRecord) => {
    status.scalesTotal += 1;
    const childId = autoscaleChildId(service, status.scalesTotal);
    rec.child = childId;
    setState('scaling');
    try {
      const result = await executeChild('scaleService', {
        workflowId: childId,
        args: [{ service, mode, backend, basePort: input.basePort, replicas: rec.desired, ...input.scale, approval: 'none' }],
        parentClosePolicy: ParentClosePolicy.ABANDON,
      });
      rec.childOutcome = String((result as { outcome?: string }).outcome ?? 'done');
      status.replicas = rec.desired;
      status.lastScaleAt = now();
      rec.childEndedAt = status.lastScaleAt;
      hpa = recordScale(hpa, status.lastScaleAt, rec.desired);
    } catch (err) {
      // The child rolled back (and alerted); keep autoscaling, the cooldown spaces out the next try.
      rec.childOutcome = `failed: ${rootMessage(err)}`;
      status.lastError = `scale to ${rec.desired} failed: ${rootMessage(err)}`;
      status.lastScaleAt = now();
      rec.childEndedAt = status.lastScaleAt;
      hpa = { ...hpa, lastScaleAt: status.lastScaleAt };
    }
  };

  while (stopRequested === undefined) {
    const info = workflowInfo();
    if (info.continueAsNewSuggested || info.historyLength > input.continueAsNewAfterEvents) {
      await condition(allHandlersFinished);
      status.runsCarried += 1;
      return continueAsNew<typeof autoscaleService>(input satisfies AutoscaleServiceParams, { status, hpa, cpu: cpuRule, paused });
    }
    if (paused) {
      setState('paused');
      await condition(() => !paused || stopRequested !== undefined);
      if (stopRequested !== undefined) break;
      // Recommendations from before the pause are stale.
      hpa = { ...hpa, recommendations: [] };
    }
    setState('observing');
    const obs = await observe();
    if (obs) {
      status.lastObservation = obs;
      status.replicas = obs.replicas;
      await alertHighCpu(obs);
      const d = decide(hpa, obs, policy);
      hpa = d.state;
      const rec: AutoscaleDecisionRecord = {
        at: obs.at,
        replicas: obs.replicas,
        ...(obs.cpuPercent !== undefined ? { cpuPercent: obs.cpuPercent } : {}),
        ...(obs.requestRate !== undefined ? { requestRate: obs.requestRate } : {}),
        ...(obs.latencyMs !== undefined ? { latencyMs: obs.latencyMs } : {}),
        raw: d.raw,
        desired: d.desired,
        action: d.action,
        ...(d.heldBy ? { heldBy: d.heldBy } : {}),
        reason: d.reason,
      };
      remember(rec);
      if (d.action !== 'none' && !paused && stopRequested === undefined) await scaleTo(rec);
      publish();
    }
    await condition(() => stopRequested !== undefined || paused, input.intervalMs);
  }

  await condition(allHandlersFinished);
  if (cpuRule.firing) await alerts.resolveAlert({ dedupKey }).catch(() => undefined);
  setState('stopped');
  return status;
}
