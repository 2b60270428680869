/**
 * The autoscaler's pure decision logic (src/workflows/shared/hpa.ts) and the resize recommendation
 * (src/workflows/shared/sizing.ts): tolerance, stabilization windows, min/max, cooldown, high_cpu.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { autoscaleServiceInputSchema } from '../../src/schemas/autoscale-service';
import { resizeServiceInputSchema } from '../../src/schemas/resize-service';
import { decide, highCpu, proposeReplicas, recordScale, type HpaPolicy, type HpaState } from '../../src/workflows/shared/hpa';
import { planSizing } from '../../src/workflows/shared/sizing';

const policy: HpaPolicy = { minReplicas: 1, maxReplicas: 10, targetCpuPercent: 50, tolerance: 0.1, upStabilizationMs: 0, downStabilizationMs: 300_000, cooldownMs: 0 };
const empty: HpaState = { recommendations: [] };

test('desired = ceil(current x metric / target), like the HPA', () => {
  assert.deepEqual(proposeReplicas(2, 100, 50, 0.1), { ratio: 2, replicas: 4, withinTolerance: false });
  assert.equal(proposeReplicas(3, 60, 50, 0.1).replicas, 4, 'ceil(3 x 1.2) = 4');
  assert.equal(proposeReplicas(4, 10, 50, 0.1).replicas, 1, 'ceil(4 x 0.2) = 1');
});

test('tolerance: within 10 % of the target, no change', () => {
  for (const cpu of [45, 50, 55]) {
    const d = decide(empty, { at: 0, replicas: 3, cpuPercent: cpu }, policy);
    assert.equal(d.action, 'none', `cpu ${cpu}`);
    assert.equal(d.heldBy, 'tolerance');
  }
  assert.equal(decide(empty, { at: 0, replicas: 3, cpuPercent: 56 }, policy).desired, 4, 'just outside the band scales');
  assert.equal(decide(empty, { at: 0, replicas: 3, cpuPercent: 44 }, { ...policy, downStabilizationMs: 0 }).desired, 3, 'ceil(3 x 0.88) = 3');
});

test('min and max replicas bound the result', () => {
  assert.equal(decide(empty, { at: 0, replicas: 4, cpuPercent: 500 }, { ...policy, maxReplicas: 6 }).desired, 6);
  assert.equal(decide(empty, { at: 0, replicas: 4, cpuPercent: 1 }, { ...policy, minReplicas: 2, downStabilizationMs: 0 }).desired, 2);
  assert.equal(decide(empty, { at: 0, replicas: 0, cpuPercent: 0 }, { ...policy, minReplicas: 2 }).desired, 2, 'below min: back to min');
});

test('the largest proposal among metrics wins; request rate is per replica', () => {
  const p = { ...policy, targetRequestRate: 10 };
  const d = decide(empty, { at: 0, replicas: 2, cpuPercent: 50, requestRate: 60 }, p);
  assert.equal(d.desired, 6, 'rate 30/replica vs 10 -> ceil(2 x 3) = 6, over cpu at target');
  assert.deepEqual(d.proposals.map((x) => x.metric), ['cpu', 'requestRate']);
  assert.equal(decide(empty, { at: 0, replicas: 2 }, p).heldBy, 'no-metrics');
});

test('scale up at once (up window 0 s); scale down only after the down-stabilization window', () => {
  let state = empty;
  let replicas = 2;
  // High load: scale up immediately.
  let d = decide(state, { at: 0, replicas, cpuPercent: 100 }, policy);
  assert.equal(d.action, 'scale-up');
  assert.equal(d.desired, 4);
  state = { ...d.state, lastScaleAt: 0 };
  replicas = 4;
  // The load stops: every recommendation says 1, but the window remembers 4.
  for (let t = 15_000; t < 300_000; t += 15_000) {
    d = decide(state, { at: t, replicas, cpuPercent: 5 }, policy);
    state = d.state;
    assert.equal(d.action, 'none', `no scale down at ${t} ms`);
    assert.equal(d.heldBy, 'stabilization');
    assert.equal(d.raw, 1);
  }
  // 300 s after the last high recommendation: the highest left in the window is 1.
  d = decide(state, { at: 300_001, replicas, cpuPercent: 5 }, policy);
  assert.equal(d.action, 'scale-down');
  assert.equal(d.desired, 1);
});

test('down window: a short dip does not scale down; the highest recommendation in the window is used', () => {
  const p = { ...policy, downStabilizationMs: 60_000 };
  let s = decide(empty, { at: 0, replicas: 4, cpuPercent: 50 }, p).state; // rec 4
  s = decide(s, { at: 10_000, replicas: 4, cpuPercent: 37 }, p).state; // rec 3
  const d = decide(s, { at: 20_000, replicas: 4, cpuPercent: 10 }, p); // rec 1
  assert.equal(d.desired, 4, 'max over the window is 4');
  const later = decide(d.state, { at: 65_000, replicas: 4, cpuPercent: 10 }, p);
  assert.equal(later.desired, 3, 'the 4 fell out of the window; the 3 is still in it');
});

test('up window: scale up only to the lowest recommendation within it', () => {
  const p = { ...policy, upStabilizationMs: 30_000 };
  let s = decide(empty, { at: 0, replicas: 2, cpuPercent: 50 }, p).state; // rec 2
  const d = decide(s, { at: 10_000, replicas: 2, cpuPercent: 200 }, p); // rec 8
  assert.equal(d.desired, 2, 'a burst held by the up window');
  assert.equal(d.heldBy, 'stabilization');
  s = d.state;
  const d2 = decide(s, { at: 35_000, replicas: 2, cpuPercent: 200 }, p);
  assert.equal(d2.desired, 8, 'sustained past the window: scale up');
});

test('cooldown: no second scale within cooldownMs of the previous one', () => {
  const p = { ...policy, cooldownMs: 60_000 };
  const state: HpaState = { recommendations: [], lastScaleAt: 100_000 };
  const d = decide(state, { at: 130_000, replicas: 2, cpuPercent: 200 }, p);
  assert.equal(d.action, 'none');
  assert.equal(d.heldBy, 'cooldown');
  assert.equal(d.raw, 8);
  assert.equal(decide(state, { at: 160_001, replicas: 2, cpuPercent: 200 }, p).desired, 8);
});

test('recommendations older than the longest window are dropped (bounded state)', () => {
  let s = empty;
  for (let t = 0; t <= 1_000_000; t += 1_000) s = decide(s, { at: t, replicas: 1, cpuPercent: 50 }, policy).state;
  assert.ok(s.recommendations.length <= 301, `kept ${s.recommendations.length}`);
});

test('high_cpu: fires once after the threshold is exceeded for the whole period, resolves when it clears', () => {
  const rule = { percent: 80, forMs: 300_000 };
  let s = { firing: false } as Parameters<typeof highCpu>[0];
  let r = highCpu(s, 90, 0, rule);
  assert.equal(r.fire, false);
  s = r.state;
  r = highCpu(s, 95, 299_999, rule);
  assert.equal(r.fire, false);
  s = r.state;
  r = highCpu(s, 95, 300_000, rule);
  assert.equal(r.fire, true);
  s = r.state;
  r = highCpu(s, 99, 400_000, rule);
  assert.equal(r.fire, false, 'fires once');
  s = r.state;
  r = highCpu(s, 20, 410_000, rule);
  assert.equal(r.resolve, true);
  assert.deepEqual(r.state, { firing: false });
  // A dip under the threshold restarts the period.
  s = highCpu({ firing: false }, 90, 0, rule).state;
  s = highCpu(s, 70, 100_000, rule).state;
  assert.equal(highCpu(s, 90, 350_000, rule).fire, false);
});

test('resize recommendation: peak + headroom within bounds; reservations a fraction; floor check names the field', () => {
  const input = resizeServiceInputSchema.parse({ service: 'web' });
  const base = { bounds: input.bounds, headroomPercent: 30, reservationFraction: 0.5 };
  const p = planSizing({ cpuCoresPeak: 1, cpuCoresP95: 0.8, memoryMbPeak: 200 }, base);
  assert.deepEqual(p.limits, { cpus: 1.3, memoryMb: 260, cpuReservation: 0.65, memoryReservationMb: 130 });
  assert.deepEqual(p.problems, []);
  const low = planSizing({ cpuCoresPeak: 0.001, cpuCoresP95: 0, memoryMbPeak: 1 }, base);
  assert.equal(low.limits.cpus, input.bounds.cpu.min);
  assert.equal(low.limits.memoryMb, input.bounds.memoryMb.min);
  const high = planSizing({ cpuCoresPeak: 100, cpuCoresP95: 1, memoryMbPeak: 100 }, base);
  assert.equal(high.limits.cpus, input.bounds.cpu.max);
  const explicit = planSizing({ cpuCoresPeak: 1, cpuCoresP95: 0.9, memoryMbPeak: 300 }, { ...base, limits: { cpu: 0.5, memoryMb: 256 } });
  assert.deepEqual(explicit.problems, ['limits.cpu: 0.5 CPU is below the observed usage floor (p95 0.9 CPU)', 'limits.memoryMb: 256 MiB is below the observed usage floor (peak 300 MiB)']);
  const bounded = planSizing({ cpuCoresPeak: 1, cpuCoresP95: 0.2, memoryMbPeak: 500 }, { ...base, bounds: { ...input.bounds, memoryMb: { min: 32, max: 400 } } });
  assert.match(bounded.problems.join(), /^bounds\.memoryMb\.max: 400 MiB is below/);
});

test('schemas: seed defaults, min <= max, unknown fields', () => {
  const a = autoscaleServiceInputSchema.parse({ service: 'web', basePort: 8080 });
  assert.equal(a.tolerance, 0.1);
  assert.equal(a.downStabilizationMs, 300_000);
  assert.equal(a.upStabilizationMs, 0);
  assert.deepEqual(a.highCpu, { percent: 80, forMs: 300_000 });
  const bad = autoscaleServiceInputSchema.safeParse({ service: 'web', basePort: 8080, minReplicas: 5, maxReplicas: 2, colour: 1 });
  assert.equal(bad.success, false);
  const paths = bad.error!.issues.map((i) => (i.code === 'unrecognized_keys' ? i.keys.join() : i.path.join('.')));
  assert.ok(paths.includes('colour'), paths.join());
  const r = resizeServiceInputSchema.safeParse({ service: 'web', bounds: { memoryMb: { min: 512, max: 64 } } });
  assert.equal(r.success, false);
  assert.deepEqual(r.error!.issues.map((i) => i.path.join('.')), ['bounds.memoryMb.min']);
});

test('a finished scale counts as a fresh recommendation: a scale longer than the down window does not empty it', () => {
  const p = { ...policy, downStabilizationMs: 15_000 };
  let s = decide(empty, { at: 0, replicas: 1, cpuPercent: 100 }, p).state; // rec 2, scale starts
  s = recordScale(s, 20_000, 2); // the scale took 20 s (longer than the window)
  const d = decide(s, { at: 25_000, replicas: 2, cpuPercent: 5 }, p);
  assert.equal(d.action, 'none', 'held: the window still holds the new size');
  assert.equal(d.heldBy, 'stabilization');
  assert.equal(decide(d.state, { at: 35_001, replicas: 2, cpuPercent: 5 }, p).action, 'scale-down');
  assert.equal(s.lastScaleAt, 20_000);
});
