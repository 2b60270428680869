/**
 * A private Prometheus + Alertmanager (Debian's binaries) for tests and the bench: free
 * 127.0.0.1 ports, a temp folder for configs and data, fast timings (scrape and evaluation
 * every second, the real rules with `for:` shortened), killed by their own PIDs at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../../src/observability/server';

export const OBSERVABILITY_DIR = fileURLToPath(new URL('../../observability', import.meta.url));
export const RULES_FILE = path.join(OBSERVABILITY_DIR, 'prometheus', 'rules.yml');

/** A free TCP port on 127.0.0.1 (the worker's own helper). */
export const freePort = freeLoopbackPort;

/** The real rules with every `for:` set to `forDuration` (same expressions and thresholds). */
export function fastRules(forDuration = '1s'): string {
  return readFileSync(RULES_FILE, 'utf8').replace(/^(\s+for:\s*)\S+$/gm, `$1${forDuration}`);
}

export interface Monitoring {
  prometheusUrl: string;
  alertmanagerUrl: string;
  dir: string;
  /** Write the file_sd targets: one per service, scraped at 127.0.0.1:<port>/metrics. */
  setTargets(targets: Array<{ service: string; port: number }>): void;
  stop(): Promise<void>;
}

async function waitHttp(url: string, child: ChildProcess, what: string, logFile: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}): ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (r.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function launch(bin: string, args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  return spawn(bin, args, { stdio: ['ignore', fd, fd] });
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

export async function startMonitoring(opts: { receiverUrl: string; forDuration?: string; groupWait?: string }): Promise<Monitoring> {
  const dir = mkdtempSync(path.join(tmpdir(), 'durable-ops-monitoring-'));
  const [promPort, amPort] = [await freePort(), await freePort()];
  mkdirSync(path.join(dir, 'targets'));
  mkdirSync(path.join(dir, 'prom-data'));
  mkdirSync(path.join(dir, 'am-data'));
  writeFileSync(path.join(dir, 'rules.yml'), fastRules(opts.forDuration));
  writeFileSync(
    path.join(dir, 'prometheus.yml'),
    `global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [${JSON.stringify(path.join(dir, 'rules.yml'))}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:${amPort}"]
scrape_configs:
  - job_name: services
    file_sd_configs:
      - files: [${JSON.stringify(path.join(dir, 'targets', '*.json'))}]
        refresh_interval: 1s
`,
  );
  writeFileSync(
    path.join(dir, 'alertmanager.yml'),
    `route:
  receiver: durable-ops
  group_by: [alertname, service]
  group_wait: ${opts.groupWait ?? '0s'}
  group_interval: 1s
  repeat_interval: 1m
receivers:
  - name: durable-ops
    webhook_configs:
      - url: ${JSON.stringify(opts.receiverUrl)}
        send_resolved: true
`,
  );
  const amLog = path.join(dir, 'alertmanager.log');
  const promLog = path.join(dir, 'prometheus.log');
  const am = launch('/usr/bin/prometheus-alertmanager', [`--config.file=${path.join(dir, 'alertmanager.yml')}`, `--storage.path=${path.join(dir, 'am-data')}`, `--web.listen-address=127.0.0.1:${amPort}`, '--cluster.listen-address='], amLog);
  const prom = launch(
    '/usr/bin/prometheus',
    [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'prom-data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--rules.alert.resend-delay=1s'],
    promLog,
  );
  const prometheusUrl = `http://127.0.0.1:${promPort}`;
  const alertmanagerUrl = `http://127.0.0.1:${amPort}`;
  try {
    await waitHttp(`${alertmanagerUrl}/-/ready`, am, 'Alertmanager', amLog);
    await waitHttp(`${prometheusUrl}/-/ready`, prom, 'Prometheus', promLog);
  } catch (err) {
    await Promise.all([kill(prom), kill(am)]);
    throw err;
  }
  return {
    prometheusUrl,
    alertmanagerUrl,
    dir,
    setTargets(targets) {
      const file = path.join(dir, 'targets', 'services.json');
      writeFileSync(`${file}.tmp`, JSON.stringify(targets.map((t) => ({ targets: [`127.0.0.1:${t.port}`], labels: { service: t.service } }))));
      renameSync(`${file}.tmp`, file); // atomic: Prometheus never reads half a file
    },
    async stop() {
      await Promise.all([kill(prom), kill(am)]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Prometheus query API: the value of an instant vector's first sample, or undefined. */
export async function promQuery(prometheusUrl: string, query: string): Promise<number | undefined> {
  const r = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await r.json()) as { data?: { result?: Array<{ value: [number, string] }> } };
  const v = body.data?.result?.[0]?.value[1];
  return v === undefined ? undefined : Number(v);
}

/** Prometheus's active (pending or firing) alerts. */
export async function promAlerts(prometheusUrl: string): Promise<Array<{ labels: Record<string, string>; state: string }>> {
  const r = await fetch(`${prometheusUrl}/api/v1/alerts`);
  const body = (await r.json()) as { data: { alerts: Array<{ labels: Record<string, string>; state: string }> } };
  return body.data.alerts;
}
