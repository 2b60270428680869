/**
 * Load-balanced services for tests: a private HAProxy + Nginx (the stack's own code, src/stack/lb.ts)
 * in a temporary folder, demo-service replicas `<service>-<n>` behind them, and bounded load.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { haproxyCommand, parseShowStat } from '../../src/activities/haproxy';
import { lbFiles } from '../../src/activities/lb-config';
import { initLbDir, startLoadBalancers, type LbProcesses } from '../../src/stack/lb';
import { docker, httpStatus, runDemo, type DemoContainer } from './docker';
import { sleep, waitUntil } from './wait';

export interface LbBackend {
  backend: string;
  service: string;
  frontendPort: number;
  nginxPort?: number;
  base: number;
}

export interface LoadResult {
  requests: number;
  errors: number;
  non2xx: number;
  p95: number;
}

export const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/**
 * Start HAProxy (and Nginx when a backend has an nginxPort) for these backends. `declareReplica1`:
 * replica 1 of each is written into the balancer's model (as an operator could); without it the
 * balancer starts empty, as the real stack's config/lb.json does, and scaleService must adopt it.
 */
export async function startTestLb(backends: LbBackend[], opts: { declareReplica1?: boolean; nginx?: boolean } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'test-lb-'));
  initLbDir(dir, {
    timeouts: { connectMs: 1_000, checkMs: 1_000 },
    backends: backends.map((b) => ({
      name: b.backend,
      frontendPort: b.frontendPort,
      ...(b.nginxPort ? { nginxPort: b.nginxPort } : {}),
      checkInterMs: 500,
      servers: opts.declareReplica1 ? [{ name: `${b.service}-1`, port: b.base + 1, weight: 1, state: 'ready' as const }] : [],
    })),
  });
  const lb: LbProcesses = await startLoadBalancers(dir, { nginx: opts.nginx ?? backends.some((b) => b.nginxPort) });
  const demos: DemoContainer[] = [];

  const stat = async (backend: string) => {
    const rows = parseShowStat(await haproxyCommand(lbFiles(dir).haproxySocket, 'show stat'));
    return rows.filter((r) => r.pxname === backend && r.svname !== 'BACKEND' && r.svname !== 'FRONTEND');
  };

  return {
    dir,
    stat,
    /** Replica 1 of the service, serving; with `inBalancer`, also wait until HAProxy reports it UP. */
    async seedContainer(s: LbBackend, o: { inBalancer?: boolean; healthIntervalMs?: number; volume?: string } = {}): Promise<DemoContainer> {
      const d = await runDemo({ name: `${s.service}-1`, port: s.base + 1, healthIntervalMs: o.healthIntervalMs ?? 1_000, ...(o.volume ? { volume: o.volume } : {}) });
      demos.push(d);
      await waitUntil(`${d.name} to serve`, async () => (await httpStatus(d.healthUrl)) === 200, 20_000);
      if (o.inBalancer ?? opts.declareReplica1) await waitUntil(`${s.backend}/${d.name} UP in HAProxy`, async () => (await stat(s.backend)).some((r) => r.svname === d.name && r.status === 'UP'), 20_000);
      return d;
    },
    async assertInRotation(s: LbBackend, slots: number[]) {
      const rows = await stat(s.backend);
      assert.deepEqual(rows.map((r) => r.svname).sort(), slots.map((n) => `${s.service}-${n}`).sort(), 'HAProxy servers');
      for (const r of rows) assert.equal(r.status, 'UP', `${r.svname} UP`);
    },
    track(d: DemoContainer) {
      demos.push(d);
    },
    async stop(idPart: string) {
      // The seeded replica 1 and every clone `<service>-<n>` a runbook made.
      const all = await docker.listContainers({ all: true, filters: { label: ['durable-ops.test=true'] } });
      await Promise.all(all.filter((c) => c.Names.some((n) => n.includes(idPart))).map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
      await Promise.all(demos.map((d) => d.remove()));
      await lb.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
export type TestLb = Awaited<ReturnType<typeof startTestLb>>;

export async function containerSlots(service: string): Promise<number[]> {
  const list = await docker.listContainers({ all: true, filters: { name: [`${service}-`] } });
  return list.flatMap((c) => c.Names.map((n) => new RegExp(`^/${service}-(\\d+)$`).exec(n)).filter(Boolean).map((m) => Number(m![1]))).sort((a, b) => a - b);
}

/** Bounded load (fixed connections, a rate cap, at most maxSeconds) on loopback URLs while `fn` runs. */
export async function underLoad<T>(urls: string[], fn: () => Promise<T>, maxSeconds = 150): Promise<{ value: T; loads: LoadResult[] }> {
  const runs = urls.map((url) => {
    const times: number[] = [];
    let settle!: (r: autocannon.Result) => void;
    let fail!: (e: unknown) => void;
    const done = new Promise<autocannon.Result>((res, rej) => ((settle = res), (fail = rej)));
    const inst = autocannon({ url, connections: 4, overallRate: 100, duration: maxSeconds, timeout: 10 }, (err, res) => (err ? fail(err) : settle(res)));
    inst.on('response', (_c: unknown, _status: number, _bytes: number, ms: number) => times.push(ms));
    return { inst, times, done };
  });
  let value: T;
  try {
    await sleep(500);
    value = await fn();
    await sleep(500);
  } finally {
    for (const r of runs) r.inst.stop();
  }
  const loads: LoadResult[] = [];
  for (const r of runs) {
    const res = await r.done;
    const sorted = [...r.times].sort((a, b) => a - b);
    loads.push({ requests: res.requests.total, errors: res.errors + res.timeouts, non2xx: res.non2xx, p95: sorted[Math.floor(sorted.length * 0.95)] ?? 0 });
  }
  return { value: value!, loads };
}
