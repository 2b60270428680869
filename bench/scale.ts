/**
 * Scaling benchmark: a Swarm service of the demo image scaled 1 -> 5 (then back 5 -> 1) under
 * constant load through HAProxy, two ways side by side in one run:
 *   durable-ops  the scaleService runbook (seed step 1 and step delay, health-gated: Docker health +
 *                HTTP probe + HAProxy UP before a replica takes traffic; drain before removal)
 *   plain        `docker service scale` with no gating and no drain, behind an HAProxy backend that
 *                lists the five replica addresses as plain servers with `check` (the static config one
 *                would write for a Swarm service on the host network): HAProxy's own health checks are
 *                the only thing between a starting or stopping replica and the traffic.
 * A third run scales the durable-ops service in one step (step 4: the same gating, the replicas
 * started together), to separate the cost of the gating from that of going one replica at a time.
 * Each way has its own HAProxy backend and frontend (one HAProxy from src/stack/lb.ts, ports
 * 19250-19259) and its own service (ports 19230+n and 19240+n). Reports failed and non-2xx
 * requests, p95 latency, time until all replicas are healthy in rotation (plain: from the command
 * until HAProxy reports all five UP), and the ratios. Writes bench/results/scale.json.
 *   npx tsx bench/scale.ts [--step-delay-ms 10000]      (npm run bench runs it)
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { Command } from 'commander';
import Docker from 'dockerode';
import { haproxyCommand, parseShowStat } from '../src/activities/haproxy';
import { lbFiles } from '../src/activities/lb-config';
import { KPI_P95_LATENCY_MS, SCALE_STEP_DELAY_MS } from '../src/config/defaults';
import { loadConfig } from '../src/config/env';
import { createLogger } from '../src/config/logger';
import { initLbDir, startLoadBalancers } from '../src/stack/lb';
import { startRunbook } from '../src/runbooks/registry';
import type { ScaleResult } from '../src/workflows/scale-service';
import { startBenchWorker } from './worker';

const run = promisify(execFile);
const opts = new Command('bench-scale')
  .option('--step-delay-ms <ms>', 'scaleService step delay (seed 10 s)', (v) => Math.max(0, Number.parseInt(v, 10) || 0), SCALE_STEP_DELAY_MS)
  .parse()
  .opts<{ stepDelayMs: number }>();
const config = loadConfig();
const log = createLogger('warn', { component: 'bench-scale' });
const docker = new Docker({ socketPath: config.DURABLE_OPS_DOCKER_SOCKET });
const IMAGE = process.env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest';
const NS = 1_000_000;
const TARGET = 5;
const taskQueue = `bench-scale-${process.pid}`;
const WAYS = {
  durable: { service: `bench-scale-d-${process.pid}`, backend: 'bench-durable', frontendPort: 19251, base: 19230 },
  plain: { service: `bench-scale-p-${process.pid}`, backend: 'bench-plain', frontendPort: 19252, base: 19240 },
} as const;
setTimeout(() => {
  console.error('bench-scale: over its time budget; giving up');
  process.exit(1);
}, 600_000).unref();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Load {
  requests: number;
  failed: number;
  non2xx: number;
  p95Ms: number;
}

/** Constant load (4 connections, 100 req/s, bounded) through one frontend while `fn` runs. */
async function underLoad<T>(port: number, fn: () => Promise<T>): Promise<{ value: T; load: Load }> {
  const times: number[] = [];
  let settle!: (r: autocannon.Result) => void;
  let fail!: (e: unknown) => void;
  const done = new Promise<autocannon.Result>((res, rej) => ((settle = res), (fail = rej)));
  const inst = autocannon({ url: `http://127.0.0.1:${port}/`, connections: 4, overallRate: 100, duration: 240, timeout: 10 }, (err, res) => (err ? fail(err) : settle(res)));
  inst.on('response', (_c: unknown, _s: number, _b: number, ms: number) => times.push(ms));
  let value: T;
  try {
    await sleep(1_000);
    value = await fn();
    await sleep(1_000);
  } finally {
    inst.stop();
  }
  const res = await done;
  const sorted = times.sort((a, b) => a - b);
  return { value: value!, load: { requests: res.requests.total, failed: res.errors + res.timeouts, non2xx: res.non2xx, p95Ms: Math.round(sorted[Math.floor(sorted.length * 0.95)] ?? 0) } };
}

async function upServers(dir: string, backend: string): Promise<string[]> {
  const rows = parseShowStat(await haproxyCommand(lbFiles(dir).haproxySocket, 'show stat'));
  return rows.filter((r) => r.pxname === backend && r.svname !== 'BACKEND' && r.svname !== 'FRONTEND' && r.status === 'UP').map((r) => r.svname!);
}

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs = 180_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function createService(way: (typeof WAYS)[keyof typeof WAYS]) {
  await docker.createService({
    Name: way.service,
    Labels: { 'durable-ops.bench': 'true' },
    TaskTemplate: {
      ContainerSpec: {
        Image: IMAGE,
        Env: [`PORT=${way.base}`, 'SLOT={{.Task.Slot}}'],
        // Checked every second, but tolerant: on a loaded machine a check's exec can take seconds, and
        // Swarm kills a task it finds unhealthy.
        Healthcheck: { Test: ['CMD', '/bin/healthcheck'], Interval: 1_000 * NS, Timeout: 5_000 * NS, Retries: 10, StartPeriod: 1_000 * NS },
        StopGracePeriod: 5_000 * NS,
      },
      Networks: [{ Target: 'host' }],
      // "any", not the seed's on-failure: Swarm stops an unhealthy task with SIGTERM, the demo service
      // then exits 0, and on-failure would leave that slot empty.
      RestartPolicy: { Condition: 'any' },
    },
    Mode: { Replicated: { Replicas: 1 } },
  } as never);
}

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-scale-'));
  const server = (way: (typeof WAYS)[keyof typeof WAYS], n: number) => ({ name: `${way.service}-${n}`, port: way.base + n, weight: 1, state: 'ready' as const });
  initLbDir(dir, {
    backends: [
      // durable-ops: replica 1 declared; the runbook adds and removes the others at run time.
      { name: WAYS.durable.backend, frontendPort: WAYS.durable.frontendPort, checkInterMs: 500, servers: [server(WAYS.durable, 1)] },
      // plain: all five addresses declared up front, HAProxy's checks decide.
      { name: WAYS.plain.backend, frontendPort: WAYS.plain.frontendPort, checkInterMs: 500, servers: [1, 2, 3, 4, 5].map((n) => server(WAYS.plain, n)) },
    ],
  });
  const lb = await startLoadBalancers(dir);
  const bench = await startBenchWorker(config, log, taskQueue);
  const { client } = bench;
  process.env.DURABLE_OPS_LB_DIR = dir; // the activities read it at call time
  try {
    for (const way of Object.values(WAYS)) await createService(way);
    for (const way of Object.values(WAYS)) {
      await waitFor(`${way.service}-1 UP`, async () => (await upServers(dir, way.backend)).includes(`${way.service}-1`));
    }
    // The plain backend's other four servers start out UP (HAProxy assumes so) until checked DOWN.
    await waitFor('plain servers 2-5 DOWN', async () => (await upServers(dir, WAYS.plain.backend)).length === 1, 30_000);

    const input = (replicas: number, step = 1) => ({ service: WAYS.durable.service, backend: WAYS.durable.backend, basePort: WAYS.durable.base, mode: 'swarm', replicas, step, stepDelayMs: opts.stepDelayMs, healthTimeoutMs: 60_000 });
    const durableUp = await underLoad(WAYS.durable.frontendPort, async () => {
      const t0 = performance.now();
      const r = (await (await startRunbook(client, 'scaleService', input(TARGET), { taskQueue })).result()) as ScaleResult;
      if (r.outcome !== 'scaled') throw new Error(`scaleService up: ${r.outcome}`);
      return performance.now() - t0;
    });
    const plainUp = await underLoad(WAYS.plain.frontendPort, async () => {
      const t0 = performance.now();
      await run('docker', ['service', 'scale', '-d', `${WAYS.plain.service}=${TARGET}`]);
      await waitFor('plain: all five UP', async () => (await upServers(dir, WAYS.plain.backend)).length === TARGET);
      return performance.now() - t0;
    });
    const durableDown = await underLoad(WAYS.durable.frontendPort, async () => {
      const t0 = performance.now();
      const r = (await (await startRunbook(client, 'scaleService', input(1), { taskQueue })).result()) as ScaleResult;
      if (r.outcome !== 'scaled') throw new Error(`scaleService down: ${r.outcome}`);
      return performance.now() - t0;
    });
    const plainDown = await underLoad(WAYS.plain.frontendPort, async () => {
      const t0 = performance.now();
      await run('docker', ['service', 'scale', '-d', `${WAYS.plain.service}=1`]);
      await waitFor('plain: one UP', async () => (await upServers(dir, WAYS.plain.backend)).length === 1);
      return performance.now() - t0;
    });

    // The same gating in one step (step 4): all four new replicas start together, as with plain
    // scaling, and join HAProxy as each turns healthy.
    const durableOneStepUp = await underLoad(WAYS.durable.frontendPort, async () => {
      const t0 = performance.now();
      const r = (await (await startRunbook(client, 'scaleService', input(TARGET, TARGET - 1), { taskQueue })).result()) as ScaleResult;
      if (r.outcome !== 'scaled') throw new Error(`scaleService one-step up: ${r.outcome}`);
      return performance.now() - t0;
    });
    const durableOneStepDown = await underLoad(WAYS.durable.frontendPort, async () => {
      const t0 = performance.now();
      const r = (await (await startRunbook(client, 'scaleService', input(1, TARGET - 1), { taskQueue })).result()) as ScaleResult;
      if (r.outcome !== 'scaled') throw new Error(`scaleService one-step down: ${r.outcome}`);
      return performance.now() - t0;
    });

    const steps = TARGET - 1;
    const delays = (steps - 1) * opts.stepDelayMs;
    const result = {
      bench: 'scale',
      at: new Date().toISOString(),
      replicas: `1 -> ${TARGET} -> 1`,
      mode: 'swarm (host network), demo image, HAProxy 2.6 roundrobin + httpchk GET /health (inter 500 ms)',
      load: 'autocannon through HAProxy: 4 connections, 100 req/s, the whole time',
      stepDelayMs: opts.stepDelayMs,
      durable: {
        up: { ...durableUp.load, timeToAllHealthyInRotationMs: Math.round(durableUp.value) },
        down: { ...durableDown.load, timeMs: Math.round(durableDown.value) },
      },
      durableOneStep: {
        up: { ...durableOneStepUp.load, timeToAllHealthyInRotationMs: Math.round(durableOneStepUp.value) },
        down: { ...durableOneStepDown.load, timeMs: Math.round(durableOneStepDown.value) },
      },
      plain: {
        up: { ...plainUp.load, timeToAllHealthyInRotationMs: Math.round(plainUp.value) },
        down: { ...plainDown.load, timeMs: Math.round(plainDown.value) },
      },
      ratio: {
        upTime: +(durableUp.value / plainUp.value).toFixed(2),
        upTimeWithoutStepDelays: +((durableUp.value - delays) / plainUp.value).toFixed(2),
        upTimeOneStep: +(durableOneStepUp.value / plainUp.value).toFixed(2),
      },
      targets: {
        failedRequests: 0,
        p95Ms: KPI_P95_LATENCY_MS,
        upTime: `durable <= 1.5 x plain + step delays (${delays} ms): ${durableUp.value <= 1.5 * plainUp.value + delays ? 'met' : 'missed'}`,
        upTimeOneStep: `durable in one step <= 1.5 x plain: ${durableOneStepUp.value <= 1.5 * plainUp.value ? 'met' : 'missed'}`,
      },
    };
    console.log(JSON.stringify(result, null, 2));
    mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
    writeFileSync(new URL('./results/scale.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    for (const way of Object.values(WAYS)) await docker.getService(way.service).remove().catch(() => undefined);
    await bench.stop().catch(() => undefined);
    await lb.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
