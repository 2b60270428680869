/**
 * Docker engine activities (dockerode). Every call is idempotent: restartContainer checks
 * whether the restart it was asked for already happened before doing anything.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import type { BreakerRegistry } from './breaker';
import { redact } from './redact';

export interface DockerDeps {
  docker: Docker;
  log: Logger;
  /** Engine calls go through the `docker` breaker (a graceful stop, long by nature, through `docker-stop`). */
  breakers: BreakerRegistry;
}

export type HealthStatus = 'healthy' | 'unhealthy' | 'starting' | 'none';

export interface ServiceState {
  service: string;
  id: string;
  image: string;
  running: boolean;
  status: string;
  exitCode: number;
  oomKilled: boolean;
  /** ms since the epoch; 0 if never started. */
  startedAt: number;
  finishedAt: number;
  health: HealthStatus;
  restartCount: number;
}

export interface RestartResult {
  service: string;
  /** True when a restart requested at `requestedAt` had already happened (a retry after a crash). */
  alreadyDone: boolean;
  startedAt: number;
}

export interface FailureContext {
  exitCode: number;
  oomKilled: boolean;
  finishedAt: number;
  logTail: string;
}

function isStatus(err: unknown, code: number): boolean {
  return typeof err === 'object' && err !== null && (err as { statusCode?: number }).statusCode === code;
}

function toMs(iso: string | undefined): number {
  if (!iso || iso.startsWith('0001-')) return 0;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? 0 : ms;
}

/** Thrown when the named container does not exist: bad input, never retried. */
export function serviceNotFound(service: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: 'ServiceNotFound',
    nonRetryable: true,
    message: `service: no container named "${service}" on this Docker engine`,
  });
}

export function createDockerActivities({ docker, log, breakers }: DockerDeps) {
  const engine = <T>(fn: () => Promise<T>) => breakers.call('docker', fn);
  async function inspect(service: string): Promise<Docker.ContainerInspectInfo> {
    return engine(async () => {
      try {
        return await docker.getContainer(service).inspect();
      } catch (err) {
        if (isStatus(err, 404)) throw serviceNotFound(service);
        throw err;
      }
    });
  }

  function toState(service: string, info: Docker.ContainerInspectInfo): ServiceState {
    const health = (info.State as { Health?: { Status?: string } }).Health?.Status;
    return {
      service,
      id: info.Id,
      image: info.Config.Image,
      running: info.State.Running,
      status: info.State.Status,
      exitCode: info.State.ExitCode,
      oomKilled: info.State.OOMKilled,
      startedAt: toMs(info.State.StartedAt),
      finishedAt: toMs(info.State.FinishedAt),
      health: health === 'healthy' || health === 'unhealthy' || health === 'starting' ? health : 'none',
      restartCount: info.RestartCount,
    };
  }

  return {
    /** Current state of a container; fails non-retryably if it does not exist. No side effect. */
    async inspectService(service: string): Promise<ServiceState> {
      return toState(service, await inspect(service));
    },

    /**
     * Restart a container (stop with a grace period, then start), exactly once per request.
     *
     * `requestedAt` is the workflow's (deterministic) time of the decision. If the container
     * is running and started at or after that moment, the restart already happened (this is a
     * retry after a worker crash, or someone else restarted it): report it and do nothing.
     * Stop and start are each idempotent at the engine (304 = already in that state).
     */
    async restartContainer(input: { service: string; requestedAt: number; stopTimeoutSec: number }): Promise<RestartResult> {
      const { service, requestedAt, stopTimeoutSec } = input;
      const ctx = Context.current();
      const beat = setInterval(() => ctx.heartbeat({ service }), 1_000);
      try {
        const before = await inspect(service);
        const startedBefore = toMs(before.State.StartedAt);
        if (before.State.Running && startedBefore >= requestedAt) {
          log.info({ service, requestedAt, startedAt: startedBefore, attempt: ctx.info.attempt }, 'restart already done; not restarting again');
          return { service, alreadyDone: true, startedAt: startedBefore };
        }
        const container = docker.getContainer(service);
        if (before.State.Running || before.State.Restarting) {
          await breakers.call(
            'docker-stop',
            async () => {
              try {
                await container.stop({ t: stopTimeoutSec });
              } catch (err) {
                if (!isStatus(err, 304)) throw err;
              }
            },
            { timeoutMs: false },
          );
        }
        await engine(async () => {
          try {
            await container.start();
          } catch (err) {
            if (!isStatus(err, 304)) throw err;
          }
        });
        const after = await inspect(service);
        const startedAt = toMs(after.State.StartedAt);
        log.info({ service, startedAt, attempt: ctx.info.attempt }, 'container restarted');
        return { service, alreadyDone: false, startedAt };
      } finally {
        clearInterval(beat);
      }
    },

    /**
     * Volume runbooks: the container exists and mounts the named volume (read-only check);
     * otherwise a non-retryable InvalidInput naming `field`, before anything is touched.
     */
    async checkVolumeMount(input: { service: string; volume: string; field: string }): Promise<{ destination: string; running: boolean; paused: boolean }> {
      const info = await engine(async () => {
        try {
          return await docker.getContainer(input.service).inspect();
        } catch (err) {
          if (isStatus(err, 404)) throw ApplicationFailure.create({ type: 'InvalidInput', nonRetryable: true, message: `${input.field}: no container named "${input.service}" on this Docker engine` });
          throw err;
        }
      });
      const mount = (info.Mounts ?? []).find((m) => m.Type === 'volume' && m.Name === input.volume);
      if (!mount) throw ApplicationFailure.create({ type: 'InvalidInput', nonRetryable: true, message: `${input.field}: container "${input.service}" does not mount the volume "${input.volume}"` });
      return { destination: mount.Destination, running: info.State.Running, paused: info.State.Paused };
    },

    /** docker pause (freeze every process), for a consistent copy. Idempotent: a paused one stays paused; a stopped one is left alone (already quiet). */
    async pauseContainer(service: string): Promise<{ paused: boolean; detail: string }> {
      const info = await inspect(service);
      if (info.State.Paused) return { paused: true, detail: 'already paused' };
      if (!info.State.Running) return { paused: false, detail: `not running (${info.State.Status}): nothing to pause` };
      await engine(() => docker.getContainer(service).pause());
      log.info({ service }, 'container paused');
      return { paused: true, detail: 'paused' };
    },

    /** docker unpause. Idempotent: a container that is not paused (or gone) is left as it is. */
    async unpauseContainer(service: string): Promise<{ unpaused: boolean; detail: string }> {
      let info: Docker.ContainerInspectInfo;
      try {
        info = await inspect(service);
      } catch (err) {
        if (err instanceof ApplicationFailure && err.type === 'ServiceNotFound') return { unpaused: false, detail: 'no such container' };
        throw err;
      }
      if (!info.State.Paused) return { unpaused: false, detail: `not paused (${info.State.Status})` };
      await engine(() => docker.getContainer(service).unpause());
      log.info({ service }, 'container unpaused');
      return { unpaused: true, detail: 'unpaused' };
    },

    /** Graceful stop (grace `stopTimeoutSec`). Idempotent: a stopped container stays stopped (304). */
    async stopContainer(input: { service: string; stopTimeoutSec: number }): Promise<{ wasRunning: boolean }> {
      const ctx = Context.current();
      const beat = setInterval(() => ctx.heartbeat({ service: input.service }), 1_000);
      try {
        const info = await inspect(input.service);
        const wasRunning = info.State.Running || info.State.Restarting || info.State.Paused;
        if (wasRunning) {
          await breakers.call(
            'docker-stop',
            async () => {
              try {
                await docker.getContainer(input.service).stop({ t: input.stopTimeoutSec });
              } catch (err) {
                if (!isStatus(err, 304)) throw err;
              }
            },
            { timeoutMs: false },
          );
          log.info({ service: input.service }, 'container stopped');
        }
        return { wasRunning };
      } finally {
        clearInterval(beat);
      }
    },

    /** Start a container. Idempotent: a running container is left running (304). */
    async startContainer(service: string): Promise<{ startedAt: number }> {
      await inspect(service);
      await engine(async () => {
        try {
          await docker.getContainer(service).start();
        } catch (err) {
          if (!isStatus(err, 304)) throw err;
        }
      });
      return { startedAt: toMs((await inspect(service)).State.StartedAt) };
    },

    /** Exit code and the tail of the log (redacted), for the escalation alert. */
    async failureContext(input: { service: string; tailLines: number }): Promise<FailureContext> {
      const info = await inspect(input.service);
      const raw = await engine(async () => (await docker.getContainer(input.service).logs({ stdout: true, stderr: true, tail: input.tailLines, follow: false })) as unknown as Buffer);
      return {
        exitCode: info.State.ExitCode,
        oomKilled: info.State.OOMKilled,
        finishedAt: toMs(info.State.FinishedAt),
        logTail: redact(demuxDockerLog(raw)).slice(-4_000),
      };
    },
  };
}

/** Strip Docker's 8-byte stream headers from a non-TTY log buffer. */
export function demuxDockerLog(buf: Buffer): string {
  const frames = dockerFrames(buf);
  return frames ? frames.map((f) => f.data.toString('utf8')).join('') : buf.toString('utf8');
}

/** The same framing split by stream (a `docker exec` without a TTY): stdout and stderr apart. */
export function demuxDockerStreams(buf: Buffer): { stdout: string; stderr: string } {
  const frames = dockerFrames(buf) ?? [{ stream: 1, data: buf }];
  const of = (stream: number) => Buffer.concat(frames.filter((f) => f.stream === stream).map((f) => f.data)).toString('utf8');
  return { stdout: of(1), stderr: of(2) };
}

/** Docker's multiplexed frames (8-byte header: stream 1/2, 0, 0, 0, size), or undefined when the buffer is not framed (a TTY). */
function dockerFrames(buf: Buffer): Array<{ stream: number; data: Buffer }> | undefined {
  const frames: Array<{ stream: number; data: Buffer }> = [];
  let i = 0;
  while (i + 8 <= buf.length && (buf[i] === 1 || buf[i] === 2) && buf[i + 1] === 0) {
    const size = buf.readUInt32BE(i + 4);
    frames.push({ stream: buf[i]!, data: buf.subarray(i + 8, i + 8 + size) });
    i += 8 + size;
  }
  return i === 0 ? undefined : frames;
}
