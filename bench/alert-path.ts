/**
 * Alert-path benchmark: container stopped (`docker stop`) -> restarted and answering HTTP 200,
 * side by side for
 *   events  the Docker event bridge signals the supervisor (die)
 *   alert   Prometheus (scrape + evaluation every 1 s, the real rules with for: 1s) fires
 *           service_down -> Alertmanager (group_wait 0s) -> the durable-ops receiver -> supervisor
 * Own worker (private task queue), receiver, Prometheus and Alertmanager on free 127.0.0.1
 * ports, all stopped at the end. The bridge runs only during the event rounds, so the alert
 * rounds are restarted by the alert path alone. Writes bench/results/alert-path.json.
 *   npx tsx bench/alert-path.ts [--rounds 3]      (npm run bench runs it after bench/restart.ts)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { loadConfig } from '../src/config/env';
import { createLogger } from '../src/config/logger';
import { startRunbook } from '../src/runbooks/registry';
import { startAlertReceiver } from '../src/workers/alert-receiver';
import { createDocker } from '../src/workers/clients';
import { runDockerEventBridge } from '../src/workers/docker-events';
import { promAlerts, promQuery, startMonitoring } from '../test/helpers/prometheus';
import { startBenchWorker } from './worker';

const opts = new Command('bench-alert-path').option('--rounds <n>', 'rounds', (v) => Math.max(1, Number.parseInt(v, 10) || 3), 3).parse().opts<{ rounds: number }>();
const config = loadConfig();
const log = createLogger('warn', { component: 'bench-alert-path' });
const docker = createDocker(config);
const image = process.env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest';
const taskQueue = `bench-alert-${process.pid}`;
const RESULTS = new URL('./results/alert-path.json', import.meta.url);
const ROUND_TIMEOUT_MS = 45_000;
const SUPERVISE = { probeIntervalMs: 600_000, restart: { initialDelayMs: 100, maxDelayMs: 1_000, resetAfterMs: 1_000, maxAttempts: 100, stopTimeoutSec: 2 } };
setTimeout(() => {
  console.error('bench-alert-path: over its time budget; giving up');
  process.exit(1);
}, 60_000 + opts.rounds * 2 * ROUND_TIMEOUT_MS).unref();

type Path = 'events' | 'alert';
const targets: Array<{ path: Path; name: string; port: number }> = [
  { path: 'events', name: 'bench-alert-events', port: 19011 },
  { path: 'alert', name: 'bench-alert-path', port: 19012 },
];

async function status(url: string): Promise<number> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(500), headers: { connection: 'close' } });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = ROUND_TIMEOUT_MS, everyMs = 20): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`bench: ${what} not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

async function stopAndTime(t: (typeof targets)[number]): Promise<number> {
  const c = docker.getContainer(t.name);
  const before = (await c.inspect()).State.StartedAt;
  const t0 = performance.now();
  await c.stop({ t: 2 });
  await until(`${t.name} back`, async () => {
    if ((await status(`http://127.0.0.1:${t.port}/health`)) !== 200) return undefined;
    const now = await c.inspect();
    return now.State.Running && now.State.StartedAt !== before ? true : undefined;
  });
  return Math.round(performance.now() - t0);
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, median: s[Math.floor((s.length - 1) / 2)]!, min: s[0]!, max: s[s.length - 1]! };
};

async function main(): Promise<number> {
  const bench = await startBenchWorker(config, log, taskQueue);
  const { client } = bench;
  const receiver = (await startAlertReceiver({ port: 0, client, docker, taskQueue, log }))!;
  const monitoring = await startMonitoring({ receiverUrl: receiver.url });
  const samples: Array<{ round: number; path: Path; ms: number }> = [];
  let error: string | undefined;
  try {
    for (const t of targets) {
      await docker.getContainer(t.name).remove({ force: true }).catch(() => undefined);
      const c = await docker.createContainer({ name: t.name, Image: image, Env: [`PORT=${t.port}`], Labels: { 'durable-ops.bench': 'true' }, Healthcheck: { Test: ['NONE'] }, HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: 'no' } } });
      await c.start();
      await until(`${t.name} serving`, async () => ((await status(`http://127.0.0.1:${t.port}/health`)) === 200 ? true : undefined));
      const h = await startRunbook(client, 'superviseService', { service: t.name, healthUrl: `http://127.0.0.1:${t.port}/health`, ...SUPERVISE }, { taskQueue });
      await until('supervisor watching', async () => ((await h.query<{ state: string }>('status')).state === 'watching' ? true : undefined));
    }
    const alertTarget = targets[1]!;
    monitoring.setTargets([{ service: alertTarget.name, port: alertTarget.port }]);
    await until('Prometheus scraping', async () => ((await promQuery(monitoring.prometheusUrl, `up{service="${alertTarget.name}"}`)) === 1 ? true : undefined), 20_000, 250);
    console.log(`bench-alert-path: ${opts.rounds} rounds; Prometheus scrape/eval 1 s, for: 1s; Alertmanager group_wait 0s; task queue ${taskQueue}`);
    for (let round = 1; round <= opts.rounds; round++) {
      // Event path: the bridge runs only now.
      const abort = new AbortController();
      const bridge = runDockerEventBridge({ docker, client, taskQueue, log, signal: abort.signal });
      await sleep(1_000);
      const ev = await stopAndTime(targets[0]!);
      abort.abort();
      await bridge;
      // Alert path: no bridge; Prometheus must see it up and no alert pending before the stop.
      await until('no alert left', async () => ((await promAlerts(monitoring.prometheusUrl)).length === 0 && (await promQuery(monitoring.prometheusUrl, `up{service="${alertTarget.name}"}`)) === 1 ? true : undefined), 30_000, 250);
      await sleep(1_500); // the supervisor's reset-after window
      const al = await stopAndTime(alertTarget);
      samples.push({ round, path: 'events', ms: ev }, { round, path: 'alert', ms: al });
      console.log(`  round ${round}: events ${ev} ms, alert ${al} ms`);
    }
  } catch (err) {
    error = (err as Error).message;
  } finally {
    for (const t of targets) {
      const h = client.workflow.getHandle(`supervise/${t.name}`);
      await h.terminate('bench finished').catch(() => undefined);
      await docker.getContainer(t.name).remove({ force: true }).catch(() => undefined);
    }
    await monitoring.stop();
    await receiver.close();
    await bench.stop();
  }
  const of = (p: Path) => samples.filter((s) => s.path === p).map((s) => s.ms);
  const summary = of('events').length && of('alert').length ? { events: stats(of('events')), alert: stats(of('alert')) } : undefined;
  const ratio = summary ? Math.round((summary.alert.median / summary.events.median) * 100) / 100 : undefined;
  mkdirSync(new URL('.', RESULTS), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify({ bench: 'alert-path', finishedAt: new Date().toISOString(), rounds: opts.rounds, timings: { scrapeIntervalS: 1, evaluationIntervalS: 1, for: '1s', groupWait: '0s' }, superviseInput: SUPERVISE, stats: summary, ratioAlertOverEventsMedian: ratio, ...(error ? { error } : {}), samples }, null, 2)}\n`);
  if (summary) {
    console.log(`\nstop -> restarted and healthy (ms)      n  median     min     max`);
    for (const p of ['events', 'alert'] as const) console.log(`${(p === 'events' ? 'Docker event path' : 'Prometheus -> Alertmanager -> durable-ops').padEnd(40)}${String(summary[p].n).padStart(2)}${String(summary[p].median).padStart(8)}${String(summary[p].min).padStart(8)}${String(summary[p].max).padStart(8)}`);
    console.log(`ratio alert/events (median): ${ratio}`);
  }
  console.log(`results: ${RESULTS.pathname}`);
  if (error) console.error(error);
  return error ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
