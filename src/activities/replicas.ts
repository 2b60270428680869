/**
 * Replicas of a service, in two modes (dockerode, engine calls through the `docker` breaker):
 *  - swarm: a replicated Swarm service on the host network whose task template sets
 *    PORT=<basePort> and SLOT={{.Task.Slot}}, so the task in slot n listens on 127.0.0.1:basePort+n.
 *    Scaling changes the service's replica count: Swarm fills the lowest free slots when scaling up.
 *    Scaling down, this engine (20.10, one node) removes the highest slots, but the orchestrator
 *    does not promise it (it sorts tasks by node balance and running state, unstably): after scaling
 *    down, the activity checks that exactly slots 1..target run, and fails non-retryably if Swarm
 *    took another one (the workflow then rolls back and alerts).
 *  - containers: containers `<service>-<n>` on the host network listening on basePort+n, each a
 *    clone of the lowest-numbered existing replica (image, env with PORT replaced, health check,
 *    mounts, restart policy, labels).
 * Idempotent by deterministic names and slots: adding a replica that exists, or removing one that is
 * gone, is a no-op that says so.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { replicaName } from '../schemas/scale-service';
import type { BreakerRegistry } from './breaker';
import { activitySleep as sleep } from './activity-sleep';

export type ReplicaMode = 'swarm' | 'containers';

export interface Replica {
  slot: number;
  /** `<service>-<n>`: the container name (containers mode) and the load-balancer server name. */
  name: string;
  port: number;
  containerId?: string;
  running: boolean;
  health: 'healthy' | 'unhealthy' | 'starting' | 'none';
  /** Swarm task id (swarm mode). */
  taskId?: string;
}

export interface ReplicaSet {
  service: string;
  mode: ReplicaMode;
  /** The replica count asked of the engine (Swarm spec), or the number of containers. */
  desired: number;
  replicas: Replica[];
}

export interface ReplicaDeps {
  docker: Docker;
  log: Logger;
  breakers: BreakerRegistry;
  fetch?: typeof fetch;
  pollMs?: number;
  /** How often waitReplicaHealthy polls (one container inspect and one HTTP probe). */
  healthPollMs?: number;
}

interface ReplicaRef {
  service: string;
  mode: ReplicaMode;
  basePort: number;
}

const isStatus = (err: unknown, code: number) => (err as { statusCode?: number }).statusCode === code;
const LABEL_REPLICA_OF = 'durable-ops.replica-of';
const LABEL_SLOT = 'durable-ops.slot';

type TaskInfo = { ID: string; Slot?: number; DesiredState?: string; Status?: { State?: string; ContainerStatus?: { ContainerID?: string } } };
type SwarmServiceSpec = { Mode?: { Replicated?: { Replicas?: number } }; TaskTemplate?: { ContainerSpec?: { Env?: string[] } } };

export function createReplicaActivities({ docker, log, breakers, fetch: fetchImpl = fetch, pollMs = 500, healthPollMs = 200 }: ReplicaDeps) {
  const engine = <T>(fn: () => Promise<T>) => breakers.call('docker', fn);

  async function swarmService(service: string) {
    try {
      return await engine(() => docker.getService(service).inspect());
    } catch (err) {
      if (isStatus(err, 404)) throw ApplicationFailure.nonRetryable(`service: no Swarm service named "${service}"`, 'ServiceNotFound');
      throw err;
    }
  }

  async function healthOf(containerId: string): Promise<{ running: boolean; health: Replica['health']; exited: boolean }> {
    try {
      const info = await engine(() => docker.getContainer(containerId).inspect());
      const h = info.State.Health?.Status;
      return { running: info.State.Running, health: h === 'healthy' || h === 'unhealthy' || h === 'starting' ? h : 'none', exited: !info.State.Running && info.State.Status === 'exited' };
    } catch (err) {
      if (isStatus(err, 404)) return { running: false, health: 'none', exited: true };
      throw err;
    }
  }

  /** The service's live tasks, one per slot: desired running, or ready (a replacement waiting out the restart delay). */
  async function swarmTasks(service: string): Promise<TaskInfo[]> {
    const all = (await engine(() => docker.listTasks({ filters: { service: [service] } }))) as TaskInfo[];
    const bySlot = new Map<number, TaskInfo>();
    for (const t of all) {
      if (t.Slot === undefined || (t.DesiredState !== 'running' && t.DesiredState !== 'ready')) continue;
      const prev = bySlot.get(t.Slot);
      if (!prev || (prev.Status?.State !== 'running' && t.Status?.State === 'running')) bySlot.set(t.Slot, t);
    }
    return [...bySlot.values()];
  }

  async function containersOf(service: string): Promise<Array<{ slot: number; id: string; running: boolean }>> {
    const list = await engine(() => docker.listContainers({ all: true, filters: { name: [`${service}-`] } }));
    const re = new RegExp(`^/${service.replace(/[.]/g, '\\.')}-(\\d+)$`);
    return list
      .map((c) => ({ m: c.Names.map((n) => re.exec(n)).find(Boolean), c }))
      .filter((x) => x.m)
      .map((x) => ({ slot: Number(x.m![1]), id: x.c.Id, running: x.c.State === 'running' }))
      .sort((a, b) => a.slot - b.slot);
  }

  async function list(ref: ReplicaRef): Promise<ReplicaSet> {
    if (ref.mode === 'swarm') {
      const svc = await swarmService(ref.service);
      const spec = svc.Spec as SwarmServiceSpec;
      const desired = spec.Mode?.Replicated?.Replicas;
      if (desired === undefined) throw ApplicationFailure.nonRetryable(`service: "${ref.service}" is not a replicated Swarm service`, 'ServiceNotReplicated');
      const tasks = (await swarmTasks(ref.service)).filter((t) => t.Slot !== undefined);
      const replicas: Replica[] = [];
      for (const t of tasks.sort((a, b) => a.Slot! - b.Slot!)) {
        const id = t.Status?.ContainerStatus?.ContainerID;
        const h = id ? await healthOf(id) : { running: false, health: 'none' as const };
        replicas.push({ slot: t.Slot!, name: replicaName(ref.service, t.Slot!), port: ref.basePort + t.Slot!, ...(id ? { containerId: id } : {}), taskId: t.ID, running: h.running && t.Status?.State === 'running', health: h.health });
      }
      return { service: ref.service, mode: 'swarm', desired, replicas };
    }
    const cs = await containersOf(ref.service);
    const replicas: Replica[] = [];
    for (const c of cs) {
      const h = await healthOf(c.id);
      replicas.push({ slot: c.slot, name: replicaName(ref.service, c.slot), port: ref.basePort + c.slot, containerId: c.id, running: h.running, health: h.health });
    }
    return { service: ref.service, mode: 'containers', desired: cs.length, replicas };
  }

  /** One replica (by slot), inspecting only its container. */
  async function replicaAt(ref: ReplicaRef, slot: number): Promise<Replica | undefined> {
    if (ref.mode === 'swarm') {
      const t = (await swarmTasks(ref.service)).find((x) => x.Slot === slot);
      if (!t) return undefined;
      const id = t.Status?.ContainerStatus?.ContainerID;
      const h = id ? await healthOf(id) : { running: false, health: 'none' as const };
      return { slot, name: replicaName(ref.service, slot), port: ref.basePort + slot, ...(id ? { containerId: id } : {}), taskId: t.ID, running: h.running && t.Status?.State === 'running', health: h.health };
    }
    const c = (await containersOf(ref.service)).find((x) => x.slot === slot);
    if (!c) return undefined;
    const h = await healthOf(c.id);
    return { slot, name: replicaName(ref.service, slot), port: ref.basePort + slot, containerId: c.id, running: h.running, health: h.health };
  }

  /** Swarm: set the replica count (with the spec's version; a conflict is retried by Temporal). */
  async function setSwarmReplicas(service: string, replicas: number): Promise<boolean> {
    const svc = await swarmService(service);
    const spec = svc.Spec as SwarmServiceSpec & Record<string, unknown>;
    if (spec.Mode?.Replicated?.Replicas === replicas) return false;
    await engine(() => docker.getService(service).update({ ...spec, version: svc.Version!.Index, Mode: { Replicated: { Replicas: replicas } } }));
    log.info({ service, replicas }, 'swarm service scaled');
    return true;
  }

  return {
    /**
     * The replica set as it is, and a check that the service exists in that mode and listens where
     * the input says (non-retryable ServiceNotFound / BasePortMismatch, messages naming the field).
     */
    async describeReplicaSet(ref: ReplicaRef): Promise<ReplicaSet> {
      if (ref.mode === 'swarm') {
        const svc = await swarmService(ref.service);
        const env = (svc.Spec as SwarmServiceSpec).TaskTemplate?.ContainerSpec?.Env ?? [];
        const port = env.find((e) => e.startsWith('PORT='))?.slice(5);
        if (!env.some((e) => /^SLOT=\{\{\s*\.Task\.Slot\s*\}\}$/.test(e))) {
          throw ApplicationFailure.nonRetryable(`service: Swarm service "${ref.service}" does not set SLOT={{.Task.Slot}} (replica n must listen on basePort+n)`, 'ServiceNotScalable');
        }
        if (port !== undefined && Number(port) !== ref.basePort) {
          throw ApplicationFailure.nonRetryable(`basePort: Swarm service "${ref.service}" has PORT=${port}, not ${ref.basePort}`, 'BasePortMismatch');
        }
      } else {
        const cs = await containersOf(ref.service);
        if (cs.length === 0) throw ApplicationFailure.nonRetryable(`service: no container named "${ref.service}-<n>" to clone replicas from`, 'ServiceNotFound');
        const info = await engine(() => docker.getContainer(cs[0]!.id).inspect());
        const port = (info.Config.Env ?? []).find((e) => e.startsWith('PORT='))?.slice(5);
        if (port !== undefined && Number(port) !== ref.basePort + cs[0]!.slot) {
          throw ApplicationFailure.nonRetryable(`basePort: ${ref.service}-${cs[0]!.slot} listens on PORT=${port}, not basePort+${cs[0]!.slot} = ${ref.basePort + cs[0]!.slot}`, 'BasePortMismatch');
        }
      }
      return list(ref);
    },

    /** List the replicas (slot, name, port, container, health). */
    async listReplicas(ref: ReplicaRef): Promise<ReplicaSet> {
      return list(ref);
    },

    /** The container ids of a service's running replicas (for `docker stats`). */
    async replicaContainerIds(input: { service: string; mode: ReplicaMode }): Promise<string[]> {
      const set = await list({ ...input, basePort: 0 });
      return set.replicas.filter((r) => r.running && r.containerId).map((r) => r.containerId!);
    },

    /**
     * Start the replicas in `slots` (not yet in any load balancer). Swarm: raise the replica count
     * to the highest slot asked (Swarm fills the lowest free slots). Containers: create and start
     * `<service>-<n>` cloned from the lowest existing replica. Already there: no-op.
     */
    async addReplicas(input: ReplicaRef & { slots: number[] }): Promise<{ added: string[]; alreadyDone: string[] }> {
      const added: string[] = [];
      const alreadyDone: string[] = [];
      if (input.mode === 'swarm') {
        const set = await list(input);
        const want = Math.max(set.desired, ...input.slots);
        const changed = await setSwarmReplicas(input.service, want);
        for (const s of input.slots) (changed ? added : alreadyDone).push(replicaName(input.service, s));
        return { added, alreadyDone };
      }
      const cs = await containersOf(input.service);
      const template = cs[0];
      if (!template) throw ApplicationFailure.nonRetryable(`service: no container named "${input.service}-<n>" to clone replicas from`, 'ServiceNotFound');
      const t = await engine(() => docker.getContainer(template.id).inspect());
      for (const slot of input.slots) {
        const name = replicaName(input.service, slot);
        const existing = cs.find((c) => c.slot === slot);
        if (existing) {
          if (!existing.running) await engine(() => docker.getContainer(existing.id).start()).catch((err: unknown) => {
            if (!isStatus(err, 304)) throw err;
          });
          alreadyDone.push(name);
          continue;
        }
        const env = (t.Config.Env ?? []).filter((e) => !e.startsWith('PORT=') && !e.startsWith('SLOT='));
        try {
          const c = await engine(() =>
            docker.createContainer({
              name,
              Image: t.Config.Image,
              Env: [...env, `PORT=${input.basePort + slot}`],
              Labels: { ...(t.Config.Labels ?? {}), [LABEL_REPLICA_OF]: input.service, [LABEL_SLOT]: String(slot) },
              ...(t.Config.Healthcheck ? { Healthcheck: t.Config.Healthcheck } : {}),
              HostConfig: {
                NetworkMode: 'host',
                ...(t.HostConfig.Binds ? { Binds: t.HostConfig.Binds } : {}),
                RestartPolicy: t.HostConfig.RestartPolicy ?? { Name: 'no' },
                ...(t.HostConfig.NanoCpus ? { NanoCpus: t.HostConfig.NanoCpus } : {}),
                ...(t.HostConfig.Memory ? { Memory: t.HostConfig.Memory } : {}),
              },
            }),
          );
          await engine(() => c.start());
          added.push(name);
        } catch (err) {
          // Created by an attempt that crashed before reporting: make sure it runs, count it as done.
          if (!isStatus(err, 409)) throw err;
          await engine(() => docker.getContainer(name).start()).catch((e: unknown) => {
            if (!isStatus(e, 304)) throw e;
          });
          alreadyDone.push(name);
        }
      }
      log.info({ service: input.service, added, alreadyDone }, 'replicas started');
      return { added, alreadyDone };
    },

    /**
     * Wait until replica `slot` is running, Docker reports it healthy (or it has no health check) and
     * GET 127.0.0.1:port/health answers 200. Heartbeats; non-retryable ReplicaUnhealthy at the timeout.
     */
    async waitReplicaHealthy(input: ReplicaRef & { slot: number; timeoutMs: number }): Promise<Replica> {
      const deadline = Date.now() + input.timeoutMs;
      const url = `http://127.0.0.1:${input.basePort + input.slot}/health`;
      let last = 'not started';
      // Once the slot has a container, only that container is inspected (one engine call a poll);
      // the task or container list is read again if it goes away (a replacement task).
      let known: Replica | undefined;
      for (;;) {
        let r: Replica | undefined;
        if (known?.containerId) {
          const h = await healthOf(known.containerId);
          // Swarm: the task says "running" only once Docker's check passed (its executor waits for
          // health_status: healthy), a beat after the container's own health state; the container's
          // state is Docker's report, read directly.
          r = h.exited ? undefined : { ...known, running: h.running, health: h.health };
        } else {
          r = await replicaAt(input, input.slot);
          if (r?.containerId && input.mode === 'swarm') r = { ...r, running: (await healthOf(r.containerId)).running };
        }
        known = r;
        let probe = 0;
        if (r?.running) {
          try {
            const res = await fetchImpl(url, { signal: AbortSignal.timeout(2_000) });
            await res.arrayBuffer();
            probe = res.status;
          } catch {
            probe = 0;
          }
        }
        last = r ? `running=${r.running} docker=${r.health} http=${probe || 'no answer'}` : 'no task/container';
        Context.current().heartbeat({ slot: input.slot, last });
        if (r?.running && (r.health === 'healthy' || r.health === 'none') && probe === 200) return r;
        if (Date.now() > deadline) {
          throw ApplicationFailure.nonRetryable(`replica ${replicaName(input.service, input.slot)} not healthy within ${input.timeoutMs} ms (${last})`, 'ReplicaUnhealthy');
        }
        await sleep(healthPollMs);
      }
    },

    /**
     * Stop and remove the replicas in `slots` (they must already be out of every load balancer).
     * Swarm: lower the replica count below the lowest slot given, then wait until exactly slots
     * 1..count run (non-retryable SwarmRemovedOtherSlot if Swarm removed another one). Containers:
     * graceful stop, then remove. Gone already: no-op.
     */
    async removeReplicas(input: ReplicaRef & { slots: number[]; stopTimeoutSec?: number; timeoutMs?: number }): Promise<{ removed: string[]; alreadyDone: string[] }> {
      const removed: string[] = [];
      const alreadyDone: string[] = [];
      if (input.slots.length === 0) return { removed, alreadyDone };
      if (input.mode === 'swarm') {
        const target = Math.min(...input.slots) - 1;
        const before = await list(input);
        const changed = before.desired > target ? await setSwarmReplicas(input.service, target) : false;
        const deadline = Date.now() + (input.timeoutMs ?? 120_000);
        for (;;) {
          const tasks = (await swarmTasks(input.service)).filter((t) => t.Slot !== undefined);
          const slots = [...new Set(tasks.map((t) => t.Slot!))].sort((a, b) => a - b);
          const lost = Array.from({ length: target }, (_, i) => i + 1).filter((s) => !slots.includes(s));
          const extra = slots.filter((s) => s > target);
          Context.current().heartbeat({ slots, target });
          if (extra.length === 0) {
            if (lost.length > 0 && before.replicas.some((r) => lost.includes(r.slot))) {
              throw ApplicationFailure.nonRetryable(`Swarm removed slot(s) ${lost.join(', ')} of ${input.service} instead of ${input.slots.join(', ')}`, 'SwarmRemovedOtherSlot');
            }
            break;
          }
          if (Date.now() > deadline) throw ApplicationFailure.retryable(`${input.service}: slots ${extra.join(', ')} still running`, 'SwarmNotConverged');
          await sleep(pollMs);
        }
        for (const s of input.slots) (changed ? removed : alreadyDone).push(replicaName(input.service, s));
        return { removed, alreadyDone };
      }
      const cs = await containersOf(input.service);
      for (const slot of input.slots) {
        const name = replicaName(input.service, slot);
        const c = cs.find((x) => x.slot === slot);
        if (!c) {
          alreadyDone.push(name);
          continue;
        }
        // A graceful stop is long by nature: not through the breaker's per-call timeout.
        await docker
          .getContainer(c.id)
          .stop({ t: input.stopTimeoutSec ?? 10 })
          .catch((err: unknown) => {
            if (!isStatus(err, 304) && !isStatus(err, 404)) throw err;
          });
        await engine(() => docker.getContainer(c.id).remove({ force: true })).catch((err: unknown) => {
          if (!isStatus(err, 404)) throw err;
        });
        removed.push(name);
      }
      log.info({ service: input.service, removed, alreadyDone }, 'replicas removed');
      return { removed, alreadyDone };
    },
  };
}

export type ReplicaActivities = ReturnType<typeof createReplicaActivities>;
