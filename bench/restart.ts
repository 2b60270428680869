/**
 * Auto-restart benchmark: crash -> healthy-again time of the demo service, side by side, for
 *   docker      Docker's own restart policy (on-failure), no supervisor;
 *   durable-ops restart policy `no`, supervised by `supervise/<name>` through the event bridge.
 * Each round crashes each container once (alternating, never concurrently) by SIGKILL of its
 * main process from the host (`docker kill` would count as a manual stop, and Docker's policy
 * would not fire), then polls /health every 10 ms until HTTP 200 from the restarted process.
 *
 * Fairness: Docker doubles its restart delay (100 ms, 200 ms, ...) unless the container ran
 * for at least 10 s before it exited, so a container is crashed only after it has been up
 * --min-uptime-ms (default 10.5 s); both containers get the same treatment, which also lets the
 * supervisor's reset-after window (1 s) pass. Both paths thus start from a 100 ms first delay.
 *
 *   npm run bench -- --rounds 10      (src/stack/bench.sh starts the worker on a private queue)
 * Results: a table on stdout and bench/results/restart.json (raw samples too).
 * Exits 0 whether or not the target is met; 1 only if the bench itself broke.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../src/config/env';
import { createLogger } from '../src/config/logger';
import { startRunbook } from '../src/runbooks/registry';
import { connectClient, createDocker } from '../src/workers/clients';
import { inputFromLabels, LABEL_HEALTH_URL, LABEL_INPUT, LABEL_SUPERVISE } from '../src/workers/docker-events';
import type { SupervisorStatus } from '../src/workflows/supervise-service';

const TARGET_RATIO = 1.5;
const POLL_MS = 10;
const ROUND_TIMEOUT_MS = 30_000;
const SETTLE_MS = 1_500;
const SUPERVISE_INPUT = { restart: { initialDelayMs: 100, maxDelayMs: 1000, resetAfterMs: 1000, maxAttempts: 100 }, probeIntervalMs: 5000 };
const RESULTS = new URL('./results/restart.json', import.meta.url);

type Variant = 'docker' | 'durable-ops';

interface Target {
  variant: Variant;
  name: string;
  port: number;
  healthUrl: string;
  restartPolicy: 'on-failure' | 'no';
  labels: Record<string, string>;
  /** performance.now() when it was last seen healthy after a (re)start. */
  healthySince: number;
}

interface Sample {
  round: number;
  variant: Variant;
  /** Crash (SIGKILL sent) -> first HTTP 200 from the restarted process. */
  ms: number;
  crashedAt: string;
  polls: number;
  /** From the engine's events, filled in at the end: die -> start, and start -> first 200. */
  dieToStartMs?: number;
  startToHealthyMs?: number;
  /** The supervisor's attempt counter before the crash (durable-ops only; 0 = fresh cycle). */
  attemptsBefore?: number;
}

const opts = new Command('bench-restart')
  .description('crash -> healthy-again time: Docker restart policy vs the durable-ops supervisor')
  .option('--rounds <n>', 'rounds (each crashes both containers once)', positiveInt, 10)
  .option('--min-uptime-ms <ms>', 'crash a container only after it has been up this long (Docker resets its restart delay after 10 s)', positiveInt, 10_500)
  .parse()
  .opts<{ rounds: number; minUptimeMs: number }>();

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

const config = loadConfig();
const taskQueue = config.DURABLE_OPS_TASK_QUEUE;
const image = process.env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest';
const docker = createDocker(config);
const log = createLogger('warn', { component: 'bench' });

// The whole run stops itself: worst case per round is two timeouts plus the uptime wait.
const runBudgetMs = 120_000 + opts.rounds * (opts.minUptimeMs + 2 * ROUND_TIMEOUT_MS + 2 * SETTLE_MS);
// Ctrl-C / SIGTERM end the run through the same path, so the clean-up in `finally` runs.
const interrupt = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupt.signal.aborted) process.exit(130);
    console.error(`bench: ${sig}; cleaning up (again to quit at once)`);
    interrupt.abort();
  });
}
const overall = AbortSignal.any([AbortSignal.timeout(runBudgetMs), interrupt.signal]);
setTimeout(() => {
  console.error(`bench: still running ${runBudgetMs + 60_000} ms after the start; giving up`);
  process.exit(1);
}, runBudgetMs + 60_000).unref();

function checkBudget(): void {
  if (interrupt.signal.aborted) throw new Error('bench: interrupted');
  if (overall.aborted) throw new Error(`bench: over its time budget (${runBudgetMs} ms)`);
}

/** One GET with a fresh connection (no keep-alive, so a dead server is never hidden by a pooled socket). */
function probe(url: string, timeoutMs = 1_000): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

async function waitUntil<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, everyMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    checkBudget();
    const v = await fn();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`bench: ${what} not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

const isoMs = (iso: string) => Date.parse(iso) || 0;

async function removeContainer(name: string): Promise<void> {
  await docker
    .getContainer(name)
    .remove({ force: true })
    .catch((err: { statusCode?: number }) => {
      if (err.statusCode !== 404) throw err;
    });
}

async function runContainer(t: Target): Promise<void> {
  const c = await docker.createContainer({
    name: t.name,
    Image: image,
    Env: [`PORT=${t.port}`],
    Labels: { 'durable-ops.bench': 'true', ...t.labels },
    // Docker's health status plays no part here; keep the engine quiet.
    Healthcheck: { Test: ['NONE'] },
    HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: t.restartPolicy } },
  });
  await c.start();
}

async function supervisorStatus(client: Client, name: string): Promise<SupervisorStatus> {
  return client.workflow.getHandle(`supervise/${name}`).query<SupervisorStatus>('status');
}

/** Wait for a container to be back and stable: healthy for SETTLE_MS, up >= minUptimeMs. */
async function waitStable(t: Target, client: Client): Promise<number | undefined> {
  const info = await waitUntil(`${t.name} running`, ROUND_TIMEOUT_MS, async () => {
    const i = await docker.getContainer(t.name).inspect();
    return i.State.Running && i.State.Pid > 0 && (await probe(t.healthUrl)) === 200 ? i : undefined;
  });
  const upFor = Date.now() - isoMs(info.State.StartedAt);
  const wait = Math.max(opts.minUptimeMs - upFor, t.healthySince + SETTLE_MS - performance.now(), 0);
  if (wait > 0) await sleep(wait, undefined, { signal: overall }).catch(checkBudget);
  if ((await probe(t.healthUrl)) !== 200) throw new Error(`bench: ${t.name} not healthy before its crash`);
  if (t.variant !== 'durable-ops') return undefined;
  // The supervisor must be watching (not still verifying its last restart) before the next crash.
  const status = await waitUntil(`supervise/${t.name} watching`, ROUND_TIMEOUT_MS, async () => {
    const s = await supervisorStatus(client, t.name);
    return s.state === 'watching' ? s : undefined;
  });
  return status.attempts;
}

async function crashAndTime(t: Target, round: number, client: Client): Promise<Sample> {
  const attemptsBefore = await waitStable(t, client);
  const before = await docker.getContainer(t.name).inspect();
  if (!before.State.Running || !before.State.Pid) throw new Error(`bench: ${t.name} is not running`);
  const crashedAt = new Date().toISOString();
  const t0 = performance.now();
  process.kill(before.State.Pid, 'SIGKILL');
  let polls = 0;
  for (;;) {
    checkBudget();
    const p0 = performance.now();
    if (p0 - t0 > ROUND_TIMEOUT_MS) throw new Error(`bench: round ${round}: ${t.name} (${t.variant}) not healthy ${ROUND_TIMEOUT_MS} ms after the crash`);
    polls += 1;
    const status = await probe(t.healthUrl, 500);
    const at = performance.now();
    // A 200 counts only from the restarted process (the dying one may still answer once).
    if (status === 200) {
      const now = await docker.getContainer(t.name).inspect();
      if (now.State.Running && now.State.StartedAt !== before.State.StartedAt) {
        t.healthySince = at;
        return { round, variant: t.variant, ms: Math.round((at - t0) * 10) / 10, crashedAt, polls, ...(attemptsBefore !== undefined ? { attemptsBefore } : {}) };
      }
    }
    await sleep(Math.max(0, POLL_MS - (performance.now() - p0)));
  }
}

/** Split each sample with the engine's own events: die -> start, start -> first 200. */
async function annotateWithEvents(samples: Sample[], targets: Target[], sinceMs: number): Promise<void> {
  // `until` in the past (up to the next second) makes the engine end the stream.
  const raw = (await docker.getEvents({
    since: Math.floor(sinceMs / 1000) - 1,
    until: Math.ceil(Date.now() / 1000),
    filters: { type: ['container'], event: ['die', 'start'], container: targets.map((t) => t.name) },
  })) as unknown as NodeJS.ReadableStream | Buffer | string;
  let text = '';
  if (typeof raw === 'string' || Buffer.isBuffer(raw)) text = raw.toString();
  else for await (const chunk of raw) text += chunk.toString();
  const events = text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { Action: string; timeNano: number; Actor: { Attributes: { name: string } } })
    .map((e) => ({ action: e.Action, name: e.Actor.Attributes.name, at: e.timeNano / 1e6 }));
  for (const s of samples) {
    const t = targets.find((x) => x.variant === s.variant)!;
    const crash = Date.parse(s.crashedAt);
    const die = events.find((e) => e.name === t.name && e.action === 'die' && e.at >= crash - 5);
    const start = die && events.find((e) => e.name === t.name && e.action === 'start' && e.at > die.at);
    if (!die || !start) continue;
    s.dieToStartMs = Math.round(start.at - die.at);
    s.startToHealthyMs = Math.round(crash + s.ms - start.at);
  }
}

function percentile(sorted: number[], p: number): number {
  // Nearest rank.
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function stats(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, median: percentile(s, 50), p95: percentile(s, 95), min: s[0]!, max: s[s.length - 1]! };
}

async function stopSupervisor(client: Client, name: string, remove: () => Promise<void>): Promise<void> {
  const handle = client.workflow.getHandle(`supervise/${name}`);
  try {
    // Paused first, so the `die` of the removal is not taken for a crash to recover from.
    const desc = await handle.describe();
    if (desc.status.name !== 'RUNNING') return remove();
    await handle.signal('pause', { by: 'bench', reason: 'bench finished' });
    const seen = (await supervisorStatus(client, name).catch(() => undefined))?.failuresSeen;
    await remove();
    if (seen !== undefined) {
      // Let the bridge deliver the removal's `die` to the paused supervisor before it stops.
      await waitUntil('the removal seen by the supervisor', 5_000, async () => ((await supervisorStatus(client, name)).failuresSeen > seen ? true : undefined), 100).catch(() => undefined);
    }
    await handle.signal('stop', { by: 'bench' });
    await Promise.race([handle.result().catch(() => undefined), sleep(10_000)]);
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
    await remove();
  }
}

async function main(): Promise<number> {
  const targets: Target[] = [
    { variant: 'docker', name: 'bench-docker-policy', port: 19001, restartPolicy: 'on-failure', labels: {}, healthUrl: '', healthySince: 0 },
    {
      variant: 'durable-ops',
      name: 'bench-durable-ops',
      port: 19002,
      restartPolicy: 'no',
      labels: { [LABEL_SUPERVISE]: 'true', [LABEL_INPUT]: JSON.stringify(SUPERVISE_INPUT) },
      healthUrl: '',
      healthySince: 0,
    },
  ];
  for (const t of targets) {
    t.healthUrl = `http://127.0.0.1:${t.port}/health`;
    if (t.variant === 'durable-ops') t.labels[LABEL_HEALTH_URL] = t.healthUrl;
  }
  const durable = targets[1]!;
  if (taskQueue === 'durable-ops') console.warn('bench: DURABLE_OPS_TASK_QUEUE is the default queue; run it with `npm run bench` for a private worker');

  const client = await connectClient(config);
  const samples: Sample[] = [];
  const startedAt = Date.now();
  let error: string | undefined;
  try {
    // Leftovers of an earlier run: containers first, then a supervisor their removal may have woken.
    let staleContainers = false;
    for (const t of targets) {
      if (await docker.getContainer(t.name).inspect().catch(() => undefined)) staleContainers = true;
      await removeContainer(t.name);
    }
    if (staleContainers) await sleep(2_000);
    const stale = client.workflow.getHandle(`supervise/${durable.name}`);
    const desc = await stale.describe().catch(() => undefined);
    if (desc?.status.name === 'RUNNING') await stale.terminate('stale bench supervisor');

    for (const t of targets) {
      if ((await probe(t.healthUrl, 300)) !== 0) throw new Error(`bench: 127.0.0.1:${t.port} is in use by something else`);
      await runContainer(t);
    }
    // The supervisor as the bridge would start it (same input, from the labels), on our queue,
    // before the first crash: rounds measure steady-state recovery, and no other bridge can win
    // the signal-with-start race.
    const input = inputFromLabels(durable.name, durable.labels, log);
    if (!input) throw new Error('bench: the durable-ops labels do not make a valid supervisor input');
    const handle = await startRunbook(client, 'superviseService', input, { taskQueue });
    const onQueue = (await handle.describe()).taskQueue;
    if (onQueue !== taskQueue) console.warn(`bench: supervise/${durable.name} runs on task queue ${onQueue}, not ${taskQueue}`);

    console.log(`bench: ${opts.rounds} rounds; image ${image}; task queue ${taskQueue}; crash after >= ${opts.minUptimeMs} ms up`);
    for (let round = 1; round <= opts.rounds; round++) {
      // Alternate which goes first, so neither always follows the other.
      const order = round % 2 === 1 ? targets : [...targets].reverse();
      const line: string[] = [];
      for (const t of order) {
        const s = await crashAndTime(t, round, client);
        samples.push(s);
        line.push(`${t.variant} ${s.ms.toFixed(0)} ms`);
      }
      console.log(`  round ${String(round).padStart(2)}: ${line.join(', ')}`);
    }
    await annotateWithEvents(samples, targets, startedAt).catch((err: Error) => console.warn(`bench: no event breakdown: ${err.message}`));
  } catch (err) {
    error = (err as Error).message;
  } finally {
    await stopSupervisor(client, durable.name, () => removeContainer(durable.name)).catch((err: Error) => console.warn(`bench: stopping the supervisor: ${err.message}`));
    for (const t of targets) await removeContainer(t.name).catch((err: Error) => console.warn(`bench: removing ${t.name}: ${err.message}`));
    await client.connection.close();
  }

  const of = (v: Variant) => samples.filter((s) => s.variant === v);
  const complete = of('docker').length > 0 && of('durable-ops').length > 0;
  const summary = complete ? summarize(of('docker'), of('durable-ops')) : undefined;
  mkdirSync(new URL('.', RESULTS), { recursive: true });
  writeFileSync(
    RESULTS,
    `${JSON.stringify(
      {
        bench: 'restart',
        startedAt: new Date(startedAt).toISOString(),
        finishedAt: new Date().toISOString(),
        rounds: opts.rounds,
        minUptimeMs: opts.minUptimeMs,
        pollMs: POLL_MS,
        image,
        taskQueue,
        superviseInput: SUPERVISE_INPUT,
        targetRatio: TARGET_RATIO,
        ...(summary ?? {}),
        ...(error ? { error } : {}),
        samples,
      },
      null,
      2,
    )}\n`,
  );
  if (summary) printSummary(summary, error !== undefined);
  console.log(`results: ${RESULTS.pathname}`);
  if (error) {
    console.error(error);
    return 1;
  }
  return 0;
}

function summarize(dockerSamples: Sample[], durableSamples: Sample[]) {
  const docker = stats(dockerSamples.map((s) => s.ms));
  const durableOps = stats(durableSamples.map((s) => s.ms));
  const breakdown = (xs: Sample[]) => {
    const a = xs.map((s) => s.dieToStartMs).filter((v): v is number => v !== undefined);
    const b = xs.map((s) => s.startToHealthyMs).filter((v): v is number => v !== undefined);
    return { dieToStart: a.length ? stats(a) : undefined, startToHealthy: b.length ? stats(b) : undefined };
  };
  const ratio = { median: durableOps.median / docker.median, p95: durableOps.p95 / docker.p95 };
  return { stats: { docker, 'durable-ops': durableOps }, breakdown: { docker: breakdown(dockerSamples), 'durable-ops': breakdown(durableSamples) }, ratio, pass: ratio.median <= TARGET_RATIO && ratio.p95 <= TARGET_RATIO };
}

function printSummary(s: ReturnType<typeof summarize>, incomplete: boolean): void {
  const row = (cells: string[]) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(26) : c.padStart(9))).join(''));
  const ms = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(0));
  console.log('\ncrash -> healthy again (ms)');
  row(['', 'n', 'median', 'p95', 'min', 'max']);
  for (const v of ['docker', 'durable-ops'] as const) {
    const st = s.stats[v];
    row([v === 'docker' ? 'docker (on-failure)' : 'durable-ops (supervisor)', String(st.n), ms(st.median), ms(st.p95), ms(st.min), ms(st.max)]);
  }
  for (const v of ['docker', 'durable-ops'] as const) {
    for (const [k, st] of Object.entries(s.breakdown[v])) {
      if (st) row([`  ${v}: ${k === 'dieToStart' ? 'die -> start' : 'start -> 200'}`, String(st.n), ms(st.median), ms(st.p95), ms(st.min), ms(st.max)]);
    }
  }
  console.log(`\nratio durable-ops/docker: median ${s.ratio.median.toFixed(2)}, p95 ${s.ratio.p95.toFixed(2)} (target <= ${TARGET_RATIO}): ${incomplete ? 'INCOMPLETE RUN' : s.pass ? 'PASS' : 'FAIL'}`);
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
