/**
 * Container resources (dockerode): `docker stats` sampling and CPU/memory limits and reservations,
 * for a service run as plain containers (`<service>` or `<service>-<n>`) or as a Swarm service.
 *
 *  - sampleResources: one-shot stats of every replica, repeatedly over a window (heartbeating),
 *    CPU with the docker CLI formula (cpu delta / system delta x online CPUs), memory as the CLI
 *    shows it (usage minus inactive file cache); peak, p95 and mean over the window.
 *  - readResourceLimits / applyResourceLimits: containers through `docker update` (NanoCpus,
 *    Memory + MemorySwap, MemoryReservation, CpuShares as the CPU reservation), Swarm through a
 *    rolling `service update` of TaskTemplate.Resources (parallelism 1, seed delay). Applying the
 *    limits a service already has is a no-op, so a retry never rolls a Swarm service twice.
 *  - waitResourcesApplied: every running replica carries the limits (Swarm: the rolling update
 *    converged). watchHealth: healthy, and stays healthy for a settle period.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { SWARM_UPDATE_DELAY_MS, SWARM_UPDATE_PARALLELISM } from '../config/defaults';

export interface ResourceDeps {
  docker: Docker;
  log: Logger;
  fetch?: typeof fetch;
}

export type ServiceMode = 'containers' | 'swarm';

/** Limits and reservations; 0 = none set. CPU in cores, memory in MiB. */
export interface ResourceLimits {
  cpus: number;
  memoryMb: number;
  cpuReservation: number;
  memoryReservationMb: number;
}

export interface Stat {
  peak: number;
  p95: number;
  mean: number;
}

export interface ResourceUsage {
  service: string;
  mode: ServiceMode;
  /** Replica containers seen (names), at the end of the window. */
  containers: string[];
  replicas: number;
  samples: number;
  windowMs: number;
  onlineCpus: number;
  /** CPU in cores per replica (docker stats' CPU % / 100), averaged over replicas at each sample. */
  cpuCores: Stat;
  /** Busiest replica's CPU at each sample, in cores (what a per-replica limit must cover). */
  cpuCoresMaxReplica: Stat;
  /** CPU as a percentage of each replica's CPU limit (of the online CPUs when unlimited), averaged over replicas. */
  cpuPercentOfLimit: Stat;
  /** Memory per replica in MiB (usage minus inactive file cache), the busiest replica at each sample. */
  memoryMb: Stat;
  limits: ResourceLimits;
}

const MIB = 1024 * 1024;
const NANO = 1e9;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isStatus = (err: unknown, code: number) => (err as { statusCode?: number }).statusCode === code;
const round = (v: number, digits = 3) => Math.round(v * 10 ** digits) / 10 ** digits;

/** Peak, nearest-rank p95 and mean of a series (zeros for an empty one). */
export function summarize(values: number[]): Stat {
  if (values.length === 0) return { peak: 0, p95: 0, mean: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(0, Math.ceil(0.95 * sorted.length) - 1);
  return { peak: round(sorted[sorted.length - 1]!), p95: round(sorted[rank]!), mean: round(values.reduce((s, v) => s + v, 0) / values.length) };
}

interface RawStats {
  cpu_stats?: { cpu_usage?: { total_usage?: number; percpu_usage?: number[] }; system_cpu_usage?: number; online_cpus?: number };
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number };
  memory_stats?: { usage?: number; stats?: Record<string, number> };
}

/** The docker CLI's CPU formula, in cores (the CLI prints cores x 100 as "CPU %"). */
export function cpuCoresOf(s: RawStats): number {
  const cpuDelta = (s.cpu_stats?.cpu_usage?.total_usage ?? 0) - (s.precpu_stats?.cpu_usage?.total_usage ?? 0);
  const systemDelta = (s.cpu_stats?.system_cpu_usage ?? 0) - (s.precpu_stats?.system_cpu_usage ?? 0);
  const online = s.cpu_stats?.online_cpus || s.cpu_stats?.cpu_usage?.percpu_usage?.length || 1;
  if (cpuDelta <= 0 || systemDelta <= 0 || !s.precpu_stats?.system_cpu_usage) return 0;
  return (cpuDelta / systemDelta) * online;
}

/** The docker CLI's memory figure: usage minus the inactive file cache (cgroup v1 and v2). */
export function memoryBytesOf(s: RawStats): number {
  const usage = s.memory_stats?.usage ?? 0;
  const st = s.memory_stats?.stats ?? {};
  const inactive = st.total_inactive_file ?? st.inactive_file ?? 0;
  return Math.max(0, usage - (inactive < usage ? inactive : 0));
}

function limitsOfHostConfig(h: Docker.HostConfig): ResourceLimits {
  const shares = (h as { CpuShares?: number }).CpuShares ?? 0;
  return {
    cpus: round((h.NanoCpus ?? 0) / NANO),
    memoryMb: Math.round((h.Memory ?? 0) / MIB),
    // CpuShares is a plain container's CPU reservation (relative weight; 1024 = one CPU's worth).
    cpuReservation: shares > 0 ? round(shares / 1024) : 0,
    memoryReservationMb: Math.round((h.MemoryReservation ?? 0) / MIB),
  };
}

interface SwarmResources {
  Limits?: { NanoCPUs?: number; MemoryBytes?: number };
  Reservations?: { NanoCPUs?: number; MemoryBytes?: number };
}

function limitsOfSwarm(r: SwarmResources | undefined): ResourceLimits {
  return {
    cpus: round((r?.Limits?.NanoCPUs ?? 0) / NANO),
    memoryMb: Math.round((r?.Limits?.MemoryBytes ?? 0) / MIB),
    cpuReservation: round((r?.Reservations?.NanoCPUs ?? 0) / NANO),
    memoryReservationMb: Math.round((r?.Reservations?.MemoryBytes ?? 0) / MIB),
  };
}

export function sameLimits(a: ResourceLimits, b: ResourceLimits): boolean {
  return round(a.cpus) === round(b.cpus) && a.memoryMb === b.memoryMb && round(a.cpuReservation) === round(b.cpuReservation) && a.memoryReservationMb === b.memoryReservationMb;
}

function notFound(service: string, mode: ServiceMode): ApplicationFailure {
  return ApplicationFailure.create({
    type: 'ServiceNotFound',
    nonRetryable: true,
    message: mode === 'swarm' ? `service: no Swarm service named "${service}"` : `service: no running container named "${service}" or "${service}-<n>"`,
  });
}

export function createResourceActivities({ docker, log, fetch: fetchImpl = fetch }: ResourceDeps) {
  const nameRe = (service: string) => new RegExp(`^/${service.replace(/[.]/g, '\\.')}(-\\d+)?$`);

  /** Running replica containers of a service: ids and names. */
  async function replicaContainers(service: string, mode: ServiceMode): Promise<Array<{ id: string; name: string }>> {
    if (mode === 'swarm') {
      await swarmSpec(service);
      const tasks = (await docker.listTasks({ filters: { service: [service], 'desired-state': ['running'] } })) as Array<{
        Slot?: number;
        Status?: { State?: string; ContainerStatus?: { ContainerID?: string } };
      }>;
      return tasks
        // 'starting': the container runs, its HEALTHCHECK has not passed yet.
        .filter((t) => (t.Status?.State === 'running' || t.Status?.State === 'starting') && t.Status.ContainerStatus?.ContainerID)
        .sort((a, b) => (a.Slot ?? 0) - (b.Slot ?? 0))
        .map((t) => ({ id: t.Status!.ContainerStatus!.ContainerID!, name: `${service}.${t.Slot ?? 0}` }));
    }
    const list = await docker.listContainers({ filters: { name: [service], status: ['running'] } });
    const re = nameRe(service);
    return list
      .map((c) => ({ id: c.Id, name: (c.Names.find((n) => re.test(n)) ?? '').slice(1) }))
      .filter((c) => c.name !== '')
      .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  }

  async function swarmSpec(service: string) {
    try {
      return await docker.getService(service).inspect();
    } catch (err) {
      if (isStatus(err, 404)) throw notFound(service, 'swarm');
      throw err;
    }
  }

  async function currentLimits(service: string, mode: ServiceMode): Promise<{ limits: ResourceLimits; perContainer: Record<string, ResourceLimits> }> {
    if (mode === 'swarm') {
      const spec = await swarmSpec(service);
      const limits = limitsOfSwarm((spec.Spec?.TaskTemplate as { Resources?: SwarmResources })?.Resources);
      return { limits, perContainer: {} };
    }
    const replicas = await replicaContainers(service, mode);
    if (replicas.length === 0) throw notFound(service, mode);
    const perContainer: Record<string, ResourceLimits> = {};
    for (const r of replicas) perContainer[r.name] = limitsOfHostConfig((await docker.getContainer(r.id).inspect()).HostConfig);
    return { limits: perContainer[replicas[0]!.name]!, perContainer };
  }

  /** What `docker update` needs for these limits; "none" (0) is the host's maximum, since the engine cannot unset a limit. */
  async function containerUpdate(limits: ResourceLimits) {
    const info = (await docker.info()) as { NCPU?: number; MemTotal?: number };
    const memory = limits.memoryMb > 0 ? limits.memoryMb * MIB : (info.MemTotal ?? 0);
    return {
      NanoCpus: Math.round((limits.cpus > 0 ? limits.cpus : (info.NCPU ?? 1)) * NANO),
      Memory: memory,
      // With a memory limit, Docker wants the swap limit too (memory + swap); no swap for replicas.
      MemorySwap: memory,
      MemoryReservation: limits.memoryReservationMb > 0 ? limits.memoryReservationMb * MIB : memory,
      CpuShares: limits.cpuReservation > 0 ? Math.max(2, Math.round(limits.cpuReservation * 1024)) : 1024,
    };
  }

  function asSwarmResources(l: ResourceLimits): SwarmResources {
    return {
      Limits: { NanoCPUs: Math.round(l.cpus * NANO), MemoryBytes: l.memoryMb * MIB },
      Reservations: { NanoCPUs: Math.round(l.cpuReservation * NANO), MemoryBytes: l.memoryReservationMb * MIB },
    };
  }

  async function probe(url: string, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
    try {
      const res = await fetchImpl(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
      await res.arrayBuffer().catch(() => undefined);
      return { ok: res.status >= 200 && res.status < 300, detail: `HTTP ${res.status}` };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return { ok: false, detail: e.cause?.code ?? e.name ?? String(err) };
    }
  }

  /** Every replica running (and healthy when it has a HEALTHCHECK); the URL answering 2xx when given. */
  async function checkOnce(service: string, mode: ServiceMode, url: string | undefined, probeTimeoutMs: number): Promise<{ ok: boolean; detail: string }> {
    const replicas = await replicaContainers(service, mode);
    if (replicas.length === 0) return { ok: false, detail: 'no running replica' };
    for (const r of replicas) {
      const info = await docker.getContainer(r.id).inspect().catch(() => undefined);
      const health = (info?.State as { Health?: { Status?: string } } | undefined)?.Health?.Status;
      if (!info?.State.Running) return { ok: false, detail: `${r.name}: not running` };
      if (health !== undefined && health !== 'healthy') return { ok: false, detail: `${r.name}: docker health ${health}` };
    }
    if (url) {
      const p = await probe(url, probeTimeoutMs);
      if (!p.ok) return { ok: false, detail: `${url}: ${p.detail}` };
    }
    return { ok: true, detail: `${replicas.length} replica(s) healthy` };
  }

  return {
    /** Names and ids of a service's running replica containers. Read-only. */
    async serviceContainers(input: { service: string; mode: ServiceMode }): Promise<Array<{ id: string; name: string }>> {
      return replicaContainers(input.service, input.mode);
    },

    /**
     * Sample `docker stats` of every replica every `intervalMs` for `windowMs` (one-shot stats
     * take about a second each; replicas are read in parallel). Read-only; heartbeats each round.
     */
    async sampleResources(input: { service: string; mode: ServiceMode; windowMs: number; intervalMs: number }): Promise<ResourceUsage> {
      const ctx = Context.current();
      const { service, mode } = input;
      const { limits, perContainer } = await currentLimits(service, mode);
      const online = ((await docker.info()) as { NCPU?: number }).NCPU ?? 1;
      const avgCores: number[] = [];
      const maxCores: number[] = [];
      const pctOfLimit: number[] = [];
      const memMb: number[] = [];
      let seen: string[] = [];
      const t0 = Date.now();
      const swarmLimitCores = mode === 'swarm' ? limits.cpus : 0;
      do {
        const round0 = Date.now();
        const replicas = await replicaContainers(service, mode);
        if (replicas.length === 0) throw notFound(service, mode);
        seen = replicas.map((r) => r.name);
        const stats = await Promise.all(
          replicas.map(async (r) => {
            try {
              return { name: r.name, s: (await docker.getContainer(r.id).stats({ stream: false })) as unknown as RawStats };
            } catch (err) {
              if (isStatus(err, 404) || isStatus(err, 409)) return undefined; // replaced or stopped meanwhile
              throw err;
            }
          }),
        );
        const got = stats.filter((x): x is { name: string; s: RawStats } => x !== undefined);
        if (got.length > 0) {
          const cores = got.map((g) => cpuCoresOf(g.s));
          avgCores.push(cores.reduce((a, b) => a + b, 0) / cores.length);
          maxCores.push(Math.max(...cores));
          const pcts = got.map((g, i) => {
            const limit = (mode === 'swarm' ? swarmLimitCores : (perContainer[g.name]?.cpus ?? 0)) || online;
            return (cores[i]! / limit) * 100;
          });
          pctOfLimit.push(pcts.reduce((a, b) => a + b, 0) / pcts.length);
          memMb.push(Math.max(...got.map((g) => memoryBytesOf(g.s) / MIB)));
        }
        ctx.heartbeat({ samples: avgCores.length, replicas: replicas.length });
        const elapsed = Date.now() - t0;
        if (elapsed >= input.windowMs) break;
        const wait = Math.min(input.intervalMs - (Date.now() - round0), input.windowMs - elapsed);
        if (wait > 0) await Promise.race([sleep(wait), ctx.cancelled]);
      } while (Date.now() - t0 < input.windowMs);
      return {
        service,
        mode,
        containers: seen,
        replicas: seen.length,
        samples: avgCores.length,
        windowMs: Date.now() - t0,
        onlineCpus: online,
        cpuCores: summarize(avgCores),
        cpuCoresMaxReplica: summarize(maxCores),
        cpuPercentOfLimit: summarize(pctOfLimit),
        memoryMb: summarize(memMb),
        limits,
      };
    },

    /** The limits and reservations the service runs with now (containers: the first replica's; all listed). */
    async readResourceLimits(input: { service: string; mode: ServiceMode }): Promise<{ limits: ResourceLimits; perContainer: Record<string, ResourceLimits> }> {
      return currentLimits(input.service, input.mode);
    },

    /**
     * Set limits and reservations. Containers: `docker update` on every replica whose limits
     * differ (no restart). Swarm: one rolling service update (parallelism 1, `delayMs` apart,
     * stop-first: replicas use host ports), skipped when the spec has them already.
     */
    async applyResourceLimits(input: { service: string; mode: ServiceMode; limits: ResourceLimits; delayMs?: number }): Promise<{ changed: boolean; containers: string[] }> {
      const { service, mode, limits } = input;
      if (mode === 'swarm') {
        const spec = await swarmSpec(service);
        const template = spec.Spec!.TaskTemplate as { Resources?: SwarmResources };
        if (sameLimits(limitsOfSwarm(template.Resources), limits)) return { changed: false, containers: [] };
        await docker.getService(service).update({
          ...spec.Spec,
          version: spec.Version!.Index,
          TaskTemplate: { ...spec.Spec!.TaskTemplate, Resources: asSwarmResources(limits) },
          UpdateConfig: { Parallelism: SWARM_UPDATE_PARALLELISM, Delay: (input.delayMs ?? SWARM_UPDATE_DELAY_MS) * 1_000_000, Order: 'stop-first', FailureAction: 'pause', Monitor: 5_000_000_000 },
        });
        log.info({ service, limits }, 'swarm service resources updated (rolling)');
        return { changed: true, containers: [] };
      }
      const replicas = await replicaContainers(service, mode);
      if (replicas.length === 0) throw notFound(service, mode);
      const update = await containerUpdate(limits);
      const wanted = limitsOfHostConfig(update as Docker.HostConfig);
      const changed: string[] = [];
      for (const r of replicas) {
        const c = docker.getContainer(r.id);
        if (sameLimits(limitsOfHostConfig((await c.inspect()).HostConfig), wanted)) continue;
        await c.update(update);
        changed.push(r.name);
      }
      if (changed.length > 0) log.info({ service, limits, containers: changed }, 'container resources updated');
      return { changed: changed.length > 0, containers: changed };
    },

    /**
     * Wait until every running replica carries the limits (Swarm: the rolling update completed and
     * each running task's spec has them). Heartbeats; a paused or rolled-back update fails at once.
     */
    async waitResourcesApplied(input: { service: string; mode: ServiceMode; limits: ResourceLimits; timeoutMs: number }): Promise<{ replicas: number }> {
      const ctx = Context.current();
      const deadline = Date.now() + input.timeoutMs;
      for (;;) {
        if (input.mode === 'containers') {
          const replicas = await replicaContainers(input.service, input.mode);
          const wanted = limitsOfHostConfig((await containerUpdate(input.limits)) as Docker.HostConfig);
          const ok = await Promise.all(replicas.map(async (r) => sameLimits(limitsOfHostConfig((await docker.getContainer(r.id).inspect()).HostConfig), wanted)));
          if (replicas.length > 0 && ok.every(Boolean)) return { replicas: replicas.length };
        } else {
          const spec = await swarmSpec(input.service);
          const update = (spec as { UpdateStatus?: { State?: string; Message?: string } }).UpdateStatus;
          if (update?.State === 'paused' || update?.State === 'rollback_completed') {
            throw ApplicationFailure.nonRetryable(`${input.service}: update ${update.State}: ${update.Message ?? ''}`, 'SwarmUpdateFailed');
          }
          const want = (spec.Spec?.Mode as { Replicated?: { Replicas?: number } })?.Replicated?.Replicas ?? 1;
          const tasks = (await docker.listTasks({ filters: { service: [input.service], 'desired-state': ['running'] } })) as Array<{ Status?: { State?: string }; Spec?: { Resources?: SwarmResources } }>;
          const onNew = tasks.filter((t) => t.Status?.State === 'running' && sameLimits(limitsOfSwarm(t.Spec?.Resources), input.limits));
          if ((update?.State === undefined || update.State === 'completed') && onNew.length >= want && onNew.length === tasks.length) return { replicas: onNew.length };
          ctx.heartbeat({ running: onNew.length, want, update: update?.State });
        }
        if (Date.now() > deadline) throw ApplicationFailure.retryable(`${input.service}: the new limits are not on every replica after ${input.timeoutMs} ms`, 'NotConverged');
        await Promise.race([sleep(500), ctx.cancelled]);
      }
    },

    /**
     * Verify health after a change: within `healthTimeoutMs` every replica is running and healthy
     * (and `url` answers 2xx), then it stays so for `stableMs` (`failureThreshold` consecutive
     * failed checks = unhealthy). Read-only; heartbeats on every check.
     */
    async watchHealth(input: { service: string; mode: ServiceMode; url?: string; healthTimeoutMs: number; stableMs: number; intervalMs: number; failureThreshold: number }): Promise<{ healthy: boolean; detail: string; checks: number; healthyAfterMs?: number }> {
      const ctx = Context.current();
      const t0 = Date.now();
      let checks = 0;
      let last = { ok: false, detail: 'not checked' };
      let healthyAt: number | undefined;
      let failures = 0;
      for (;;) {
        checks += 1;
        last = await checkOnce(input.service, input.mode, input.url, Math.min(5_000, input.intervalMs * 2));
        const at = Date.now();
        if (healthyAt === undefined) {
          if (last.ok) healthyAt = at;
          else if (at - t0 >= input.healthTimeoutMs) return { healthy: false, detail: `not healthy within ${input.healthTimeoutMs} ms: ${last.detail}`, checks };
        } else if (!last.ok) {
          failures += 1;
          if (failures >= input.failureThreshold) return { healthy: false, detail: `unhealthy ${at - healthyAt} ms after turning healthy: ${last.detail}`, checks, healthyAfterMs: healthyAt - t0 };
        } else {
          failures = 0;
        }
        if (healthyAt !== undefined && at - healthyAt >= input.stableMs && last.ok) return { healthy: true, detail: last.detail, checks, healthyAfterMs: healthyAt - t0 };
        ctx.heartbeat({ checks, last });
        await Promise.race([sleep(input.intervalMs), ctx.cancelled]);
      }
    },
  };
}
