/**
 * The autoscaler's decision, pure (after the Kubernetes Horizontal Pod Autoscaler):
 *
 *   desired = ceil(current x metric / target) per metric, the largest wins; a ratio within the
 *   tolerance (10 %) of 1 keeps the current count; clamped to [min, max].
 *   Each raw recommendation is kept with its time. Stabilization: scale up only to the lowest
 *   recommendation of the up window (HPA default 0 s: at once), scale down only to the highest
 *   recommendation of the down window (HPA default 300 s), so a short dip never removes replicas.
 *   Cooldown: no scale within `cooldownMs` of the previous one.
 *
 * Also the seed's `high_cpu` rule (CPU above 80 % for 5 min: fire a warning; resolve when it clears).
 * No I/O, no clock: the workflow passes the time in. Unit-tested in test/unit/autoscale.test.ts.
 */

export interface HpaPolicy {
  minReplicas: number;
  maxReplicas: number;
  /** Target CPU utilisation per replica, % of its CPU limit. */
  targetCpuPercent?: number;
  /** Target requests (sessions) per second per replica, from HAProxy. */
  targetRequestRate?: number;
  /** Target average response time (ms), from HAProxy. */
  targetLatencyMs?: number;
  /** Ratio band around 1 with no change (0.1 = 10 %). */
  tolerance: number;
  upStabilizationMs: number;
  downStabilizationMs: number;
  cooldownMs: number;
}

export interface Observation {
  at: number;
  /** Replicas serving now. */
  replicas: number;
  /** Mean CPU utilisation of the replicas, % of their limit. */
  cpuPercent?: number;
  /** Backend requests (sessions) per second, all replicas together. */
  requestRate?: number;
  /** Average response time (ms). */
  latencyMs?: number;
}

export interface Recommendation {
  at: number;
  replicas: number;
}

export interface HpaState {
  /** Raw (clamped) recommendations, oldest first, within the longest window. */
  recommendations: Recommendation[];
  lastScaleAt?: number;
}

export interface MetricProposal {
  metric: 'cpu' | 'requestRate' | 'latency';
  value: number;
  target: number;
  ratio: number;
  replicas: number;
  withinTolerance: boolean;
}

export interface HpaDecision {
  /** What to scale to (equal to current: hold). */
  desired: number;
  /** The raw recommendation of this observation, before stabilization and cooldown. */
  raw: number;
  action: 'none' | 'scale-up' | 'scale-down';
  /** Why no action, or why it is smaller than the raw recommendation. */
  heldBy?: 'no-metrics' | 'tolerance' | 'stabilization' | 'cooldown';
  proposals: MetricProposal[];
  state: HpaState;
  reason: string;
}

/** Desired replicas for one metric, like the HPA: ceil(current x value / target), or current within the tolerance. */
export function proposeReplicas(current: number, value: number, target: number, tolerance: number): { ratio: number; replicas: number; withinTolerance: boolean } {
  const ratio = target > 0 ? value / target : 1;
  if (Math.abs(ratio - 1) <= tolerance + 1e-9) return { ratio, replicas: current, withinTolerance: true };
  return { ratio, replicas: Math.ceil(current * ratio - 1e-9), withinTolerance: false };
}

export const clampReplicas = (n: number, p: Pick<HpaPolicy, 'minReplicas' | 'maxReplicas'>) => Math.min(p.maxReplicas, Math.max(p.minReplicas, n));

const MAX_RECOMMENDATIONS = 1_000;

export function decide(state: HpaState, obs: Observation, policy: HpaPolicy): HpaDecision {
  const current = obs.replicas;
  const proposals: MetricProposal[] = [];
  const add = (metric: MetricProposal['metric'], value: number | undefined, target: number | undefined, perReplica: boolean) => {
    if (value === undefined || target === undefined || !Number.isFinite(value)) return;
    // Request rate is a total: per replica it is rate / current.
    const v = perReplica && current > 0 ? value / current : value;
    const p = proposeReplicas(Math.max(1, current), v, target, policy.tolerance);
    proposals.push({ metric, value: Math.round(v * 100) / 100, target, ratio: Math.round(p.ratio * 1000) / 1000, replicas: p.replicas, withinTolerance: p.withinTolerance });
  };
  add('cpu', obs.cpuPercent, policy.targetCpuPercent, false);
  add('requestRate', obs.requestRate, policy.targetRequestRate, true);
  add('latency', obs.latencyMs, policy.targetLatencyMs, false);

  const window = Math.max(policy.upStabilizationMs, policy.downStabilizationMs);
  const keep = (recs: Recommendation[]) => recs.filter((r) => obs.at - r.at <= window).slice(-MAX_RECOMMENDATIONS);

  if (proposals.length === 0) {
    // No data (no replica, no stats): hold, and do not record a recommendation.
    const desired = clampReplicas(current, policy);
    return { desired, raw: desired, action: actionOf(current, desired), heldBy: desired === current ? 'no-metrics' : undefined, proposals, state: { ...state, recommendations: keep(state.recommendations) }, reason: 'no metrics' };
  }
  const raw = clampReplicas(Math.max(...proposals.map((p) => p.replicas)), policy);
  const recommendations = keep([...state.recommendations, { at: obs.at, replicas: raw }]);

  // HPA stabilization: up to the lowest recommendation of the up window, down to the highest of the down window.
  let upRec = raw;
  let downRec = raw;
  for (const r of recommendations) {
    if (obs.at - r.at <= policy.upStabilizationMs) upRec = Math.min(upRec, r.replicas);
    if (obs.at - r.at <= policy.downStabilizationMs) downRec = Math.max(downRec, r.replicas);
  }
  let desired = clampReplicas(current, policy);
  if (desired < upRec) desired = upRec;
  if (desired > downRec) desired = downRec;

  let heldBy: HpaDecision['heldBy'];
  if (desired === current && raw !== current) heldBy = 'stabilization';
  if (desired === current && raw === current && proposals.every((p) => p.withinTolerance)) heldBy = 'tolerance';
  if (desired !== current && state.lastScaleAt !== undefined && obs.at - state.lastScaleAt < policy.cooldownMs) {
    heldBy = 'cooldown';
    desired = current;
  }
  const action = actionOf(current, desired);
  const metrics = proposals.map((p) => `${p.metric} ${p.value}/${p.target} -> ${p.replicas}`).join(', ');
  const reason = action === 'none' ? `hold at ${current} (${heldBy ?? 'at target'}; ${metrics}; raw ${raw})` : `${action} ${current} -> ${desired} (${metrics})`;
  return { desired, raw, action, ...(heldBy ? { heldBy } : {}), proposals, state: { ...state, recommendations }, reason };
}

/**
 * A scale to `replicas` finished at `at`: start the cooldown, and count the new size as a fresh
 * recommendation. Our loop waits for the scale (the HPA keeps syncing meanwhile), so without it a
 * scale longer than the down window would leave the window empty, and the first low sample
 * would scale down at once.
 */
export function recordScale(state: HpaState, at: number, replicas: number): HpaState {
  return { recommendations: [...state.recommendations, { at, replicas }].slice(-MAX_RECOMMENDATIONS), lastScaleAt: at };
}

function actionOf(current: number, desired: number): HpaDecision['action'] {
  return desired > current ? 'scale-up' : desired < current ? 'scale-down' : 'none';
}

/** The seed's high_cpu rule: above `percent` continuously for `forMs` fires; dropping below resolves. */
export interface HighCpuState {
  /** Since when CPU has been above the threshold (undefined: it is not). */
  aboveSince?: number;
  firing: boolean;
}

export function highCpu(state: HighCpuState, cpuPercent: number | undefined, at: number, rule: { percent: number; forMs: number }): { state: HighCpuState; fire: boolean; resolve: boolean } {
  if (cpuPercent === undefined) return { state, fire: false, resolve: false };
  if (cpuPercent > rule.percent) {
    const aboveSince = state.aboveSince ?? at;
    const fire = !state.firing && at - aboveSince >= rule.forMs;
    return { state: { aboveSince, firing: state.firing || fire }, fire, resolve: false };
  }
  return { state: { firing: false }, fire: false, resolve: state.firing };
}
