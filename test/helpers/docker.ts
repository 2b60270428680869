/** Demo-service containers for tests: host network, 127.0.0.1 ports, removed afterwards. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { config } from './temporal';

export const docker = new Docker({ socketPath: config.DURABLE_OPS_DOCKER_SOCKET });
export const DEMO_IMAGE = process.env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest';

const NS = 1_000_000;

export interface DemoContainer {
  name: string;
  port: number;
  healthUrl: string;
  /** Host folder mounted at /control (crash-on-start, unhealthy, start-delay). */
  controlDir: string;
  remove(): Promise<void>;
}

export async function runDemo(opts: {
  name: string;
  port: number;
  labels?: Record<string, string>;
  restartPolicy?: 'no' | 'on-failure' | 'always';
  /** Docker HEALTHCHECK interval (ms); short in tests. */
  healthIntervalMs?: number;
  /** A named volume mounted at /data (created by Docker if absent). */
  volume?: string;
}): Promise<DemoContainer> {
  const controlDir = mkdtempSync(path.join(tmpdir(), `${opts.name}-control-`));
  await docker.getContainer(opts.name).remove({ force: true }).catch(() => undefined);
  const interval = (opts.healthIntervalMs ?? 1_000) * NS;
  const container = await docker.createContainer({
    name: opts.name,
    Image: DEMO_IMAGE,
    Env: [`PORT=${opts.port}`],
    Labels: { 'durable-ops.test': 'true', ...(opts.labels ?? {}) },
    Healthcheck: { Test: ['CMD', '/bin/healthcheck'], Interval: interval, Timeout: 2_000 * NS, Retries: 3, StartPeriod: interval },
    HostConfig: {
      NetworkMode: 'host',
      Binds: [`${controlDir}:/control`, ...(opts.volume ? [`${opts.volume}:/data`] : [])],
      RestartPolicy: { Name: opts.restartPolicy ?? 'no' },
    },
  });
  await container.start();
  return {
    name: opts.name,
    port: opts.port,
    healthUrl: `http://127.0.0.1:${opts.port}/health`,
    controlDir,
    async remove() {
      await container.remove({ force: true }).catch(() => undefined);
      rmSync(controlDir, { recursive: true, force: true });
    },
  };
}

export async function inspect(name: string) {
  return docker.getContainer(name).inspect();
}

/** Crash the container's main process from the host (kill -9 its PID), as a real crash. */
export async function crashFromHost(name: string): Promise<void> {
  const info = await inspect(name);
  if (!info.State.Running || !info.State.Pid) throw new Error(`${name} is not running`);
  process.kill(info.State.Pid, 'SIGKILL');
}

/** Engine events of one container between two moments (ms), e.g. to count restarts. */
export async function containerEvents(name: string, sinceMs: number, untilMs = Date.now()): Promise<Array<{ Action: string; time: number }>> {
  // A bounded query: the engine sends what it has up to `until`, then ends the stream.
  const stream = (await docker.getEvents({
    since: Math.floor(sinceMs / 1000),
    until: Math.ceil(untilMs / 1000),
    filters: { type: ['container'], container: [name] },
  })) as unknown as NodeJS.ReadableStream;
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { Action: string; timeNano: number })
    .filter((e) => e.timeNano / 1e6 >= sinceMs)
    .map((e) => ({ Action: e.Action, time: Math.floor(e.timeNano / 1e6) }));
}

export async function httpStatus(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}
