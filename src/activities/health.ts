/**
 * Health probes: HTTP endpoints and Docker's own health status. Read-only, so safe to retry.
 */
import { Context } from '@temporalio/activity';
import type Docker from 'dockerode';

export interface HealthDeps {
  docker: Docker;
  /** Injected for tests; the global fetch by default. */
  fetch?: typeof fetch;
}

export interface ProbeResult {
  ok: boolean;
  status?: number;
  error?: string;
  latencyMs: number;
}

export interface ServiceCheck {
  exists: boolean;
  running: boolean;
  startedAt: number;
  http: ProbeResult;
}

export interface WaitHealthyResult {
  healthy: boolean;
  waitedMs: number;
  probes: number;
  last: ProbeResult;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createHealthActivities({ docker, fetch: fetchImpl = fetch }: HealthDeps) {
  async function probe(url: string, timeoutMs: number): Promise<ProbeResult> {
    const t0 = performance.now();
    try {
      const res = await fetchImpl(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
      await res.arrayBuffer().catch(() => undefined);
      return { ok: res.status >= 200 && res.status < 300, status: res.status, latencyMs: Math.round(performance.now() - t0) };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return { ok: false, error: e.cause?.code ?? e.name ?? String(err), latencyMs: Math.round(performance.now() - t0) };
    }
  }

  async function dockerHealth(service: string): Promise<ProbeResult> {
    const t0 = performance.now();
    try {
      const info = await docker.getContainer(service).inspect();
      const health = (info.State as { Health?: { Status?: string } }).Health?.Status;
      const ok = info.State.Running && (health === undefined || health === 'healthy');
      return { ok, error: ok ? undefined : `state=${info.State.Status} health=${health ?? 'none'}`, latencyMs: Math.round(performance.now() - t0) };
    } catch (err) {
      return { ok: false, error: (err as Error).message, latencyMs: Math.round(performance.now() - t0) };
    }
  }

  return {
    /**
     * The supervisor's periodic safety-net check: is the container there and running, and
     * does its endpoint answer? Read-only.
     */
    async checkService(input: { service: string; url: string; timeoutMs: number }): Promise<ServiceCheck> {
      let running = false;
      let exists = true;
      let startedAt = 0;
      try {
        const info = await docker.getContainer(input.service).inspect();
        running = info.State.Running;
        startedAt = Date.parse(info.State.StartedAt) || 0;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
        exists = false;
      }
      const http = running ? await probe(input.url, input.timeoutMs) : { ok: false, error: exists ? 'not running' : 'no such container', latencyMs: 0 };
      return { exists, running, startedAt, http };
    },

    /** One HTTP probe: healthy when the endpoint answers 2xx within the timeout. */
    async probeHttp(input: { url: string; timeoutMs: number }): Promise<ProbeResult> {
      return probe(input.url, input.timeoutMs);
    },

    /** Probe several dependencies at once. */
    async probeDependencies(input: { dependencies: Array<{ name: string; healthUrl: string }>; timeoutMs: number }): Promise<Array<ProbeResult & { name: string }>> {
      return Promise.all(input.dependencies.map(async (d) => ({ name: d.name, ...(await probe(d.healthUrl, input.timeoutMs)) })));
    },

    /**
     * Poll until healthy or the deadline passes, heartbeating on every poll. With a URL the
     * endpoint must answer 2xx; without one, Docker's health status (or running state) decides.
     */
    async waitHealthy(input: { service: string; url?: string; timeoutMs: number; intervalMs: number; probeTimeoutMs: number }): Promise<WaitHealthyResult> {
      const ctx = Context.current();
      const t0 = Date.now();
      let probes = 0;
      let last: ProbeResult = { ok: false, error: 'not probed', latencyMs: 0 };
      for (;;) {
        probes += 1;
        last = input.url ? await probe(input.url, Math.min(input.probeTimeoutMs, input.timeoutMs)) : await dockerHealth(input.service);
        const waitedMs = Date.now() - t0;
        if (last.ok) return { healthy: true, waitedMs, probes, last };
        if (waitedMs >= input.timeoutMs) return { healthy: false, waitedMs, probes, last };
        ctx.heartbeat({ probes, last });
        await Promise.race([sleep(Math.min(input.intervalMs, Math.max(0, input.timeoutMs - waitedMs))), ctx.cancelled]);
      }
    },
  };
}
