/**
 * reconcile's observations (src/workflows/reconcile.ts): what is there, read from each system, for
 * the workflow to compare with what the engine believes; and the two repairs no other activity
 * does (release a lease on behalf of a dead holder, discard a pending version only if it is still
 * the stale one). Everything else is repaired with the runbooks' own activities (haproxy, nginx,
 * replicas, pg-instances, drill), which are idempotent by name.
 *
 * Read-only except the two repairs, each idempotent: a retry finds the work done and says so.
 */
import { existsSync, readFileSync } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { loadConfig } from '../config/env';
import type { KvStore } from '../config/kv-store';
import { SERVICE_ATTR } from '../config/search-attributes';
import type { LeaseRelease, LeaseView } from '../schemas/lease';
import { haproxyCommand, parseShowStat } from './haproxy';
import { lbFiles, readModel } from './lb-config';
import { readNginxPid } from './nginx';
import { pgPaths, PgInstances } from './pg-instances';
import { drillCopyHash } from '../schemas/recovery-drill';

export interface ReconcileDeps {
  docker: Docker;
  client: Client;
  /** This engine's task queue: the leases and scales it looks at are its own. */
  taskQueue: string;
  log: Logger;
  env?: NodeJS.ProcessEnv;
  kv?: KvStore;
  fetch?: typeof fetch;
}

export interface BalancerServer {
  name: string;
  port: number;
  /** `show stat` status: UP, DOWN, DRAIN, MAINT, "UP 1/3"... */
  status: string;
  weight: number;
}

export interface BalancerBackend {
  name: string;
  healthPath: string;
  haproxy: BalancerServer[];
  /** Nginx's upstream of the same name as rendered (undefined: no Nginx running, or no port declared). */
  nginx?: Array<{ name: string; port: number; weight: number }>;
}

export interface ReplicaView {
  slot: number;
  name: string;
  port: number;
  running: boolean;
  /** Running, Docker's check healthy (or none) and GET /health answered 200. */
  healthy: boolean;
  /** The `durable-ops.replica-of` label: a clone scaleService made. */
  replicaOf?: string;
}

export interface ServiceReplicas {
  service: string;
  mode: 'containers' | 'swarm';
  replicas: ReplicaView[];
}

export interface LeftoverDrills {
  containers: Array<{ name: string; detail: string }>;
  instances: Array<{ id: string; detail: string }>;
  /** A running drill carries no Service attribute: what it owns cannot be told, so no container is called a leftover. */
  unsure?: string;
}

const LABEL_REPLICA_OF = 'durable-ops.replica-of';
const DRILL_LABEL = 'durable-ops.drill';
const isStatus = (err: unknown, code: number) => (err as { statusCode?: number } | undefined)?.statusCode === code;
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** Bounds on what one run lists (visibility pages, containers), so a run stays bounded. */
const MAX_LISTED = 500;

/** The upstreams of a rendered nginx.conf (src/activities/lb-config.ts renderNginxConfig): `server 127.0.0.1:<port> weight=<w>; # <name>`. */
export function parseNginxUpstreams(conf: string): Map<string, Array<{ name: string; port: number; weight: number }>> {
  const out = new Map<string, Array<{ name: string; port: number; weight: number }>>();
  let current: string | undefined;
  for (const line of conf.split('\n')) {
    const open = /^\s*upstream\s+(\S+)\s*\{/.exec(line);
    if (open) {
      current = open[1]!;
      out.set(current, []);
      continue;
    }
    if (!current) continue;
    if (/^\s*\}/.test(line)) {
      current = undefined;
      continue;
    }
    const s = /^\s*server\s+127\.0\.0\.1:(\d+)\s+weight=(\d+);\s*#\s*(\S+)/.exec(line);
    if (s) out.get(current)!.push({ port: Number(s[1]), weight: Number(s[2]), name: s[3]! });
  }
  return out;
}

export function createReconcileActivities({ docker, client, taskQueue, log, env = process.env, kv, fetch: fetchImpl = fetch }: ReconcileDeps) {
  const lbDir = () => env.DURABLE_OPS_LB_DIR || undefined;
  const ns = client.options.namespace;

  async function listExecutions(query: string): Promise<Array<{ workflowId: string; runId: string; service?: string; closeTime?: Date }>> {
    const out: Array<{ workflowId: string; runId: string; service?: string; closeTime?: Date }> = [];
    for await (const w of client.workflow.list({ query, pageSize: 100 })) {
      const service = w.typedSearchAttributes.get(SERVICE_ATTR);
      out.push({ workflowId: w.workflowId, runId: w.runId, ...(service ? { service } : {}), ...(w.closeTime ? { closeTime: w.closeTime } : {}) });
      if (out.length >= MAX_LISTED) break;
    }
    return out;
  }

  async function probe(port: number, healthPath: string): Promise<number> {
    try {
      const res = await fetchImpl(`http://127.0.0.1:${port}${healthPath}`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.status;
    } catch {
      return 0;
    }
  }

  return {
    /**
     * Every declared backend: its servers in HAProxy (runtime API `show stat`) and in Nginx's
     * rendered upstream. No load-balancer folder: `configured: false` (nothing to compare).
     */
    async reconcileBalancers(): Promise<{ configured: boolean; reason?: string; backends: BalancerBackend[] }> {
      const dir = lbDir();
      if (!dir) return { configured: false, reason: 'no load-balancer folder (DURABLE_OPS_LB_DIR)', backends: [] };
      const f = lbFiles(dir);
      const model = readModel(dir);
      const rows = parseShowStat(await haproxyCommand(f.haproxySocket, 'show stat'));
      const nginxRunning = readNginxPid(dir) !== undefined && existsSync(f.nginxConf);
      const upstreams = nginxRunning ? parseNginxUpstreams(readFileSync(f.nginxConf, 'utf8')) : new Map<string, Array<{ name: string; port: number; weight: number }>>();
      return {
        configured: true,
        backends: model.backends.map((b) => {
          const nginx = b.nginxPort !== undefined ? upstreams.get(b.name) : undefined;
          return {
            name: b.name,
            healthPath: b.healthPath,
            haproxy: rows
              .filter((r) => r.pxname === b.name && r.svname !== 'BACKEND' && r.svname !== 'FRONTEND')
              .map((r) => ({ name: r.svname!, port: Number((r.addr ?? '').split(':').pop()), status: r.status ?? '', weight: Number(r.weight || 0) })),
            ...(nginx ? { nginx } : {}),
          };
        }),
      };
    },

    /**
     * The replicas of a service as they are: Swarm tasks (a Swarm service of that name) or the
     * containers `<service>-<n>`, each with its port (PORT), health (Docker's and GET healthPath)
     * and its `durable-ops.replica-of` label.
     */
    async reconcileReplicas(input: { service: string; healthPath: string }): Promise<ServiceReplicas> {
      const swarm = await docker
        .getService(input.service)
        .inspect()
        .catch((err: unknown) => (isStatus(err, 404) || isStatus(err, 503) ? undefined : Promise.reject(err)));
      if (swarm) {
        const envs = ((swarm.Spec as { TaskTemplate?: { ContainerSpec?: { Env?: string[] } } }).TaskTemplate?.ContainerSpec?.Env ?? []) as string[];
        const base = Number(envs.find((e) => e.startsWith('PORT='))?.slice(5) ?? NaN);
        const tasks = (await docker.listTasks({ filters: { service: [input.service], 'desired-state': ['running'] } })) as Array<{ Slot?: number; Status?: { State?: string } }>;
        const replicas: ReplicaView[] = [];
        for (const t of tasks) {
          if (t.Slot === undefined || !Number.isFinite(base)) continue;
          const port = base + t.Slot;
          const running = t.Status?.State === 'running';
          replicas.push({ slot: t.Slot, name: `${input.service}-${t.Slot}`, port, running, healthy: running && (await probe(port, input.healthPath)) === 200 });
        }
        return { service: input.service, mode: 'swarm', replicas: replicas.sort((a, b) => a.slot - b.slot) };
      }
      const re = new RegExp(`^/${escapeRe(input.service)}-(\\d+)$`);
      const list = await docker.listContainers({ all: true, filters: { name: [`${input.service}-`] } });
      const replicas: ReplicaView[] = [];
      for (const c of list.slice(0, MAX_LISTED)) {
        const m = c.Names.map((n) => re.exec(n)).find(Boolean);
        if (!m) continue;
        const slot = Number(m[1]);
        const info = await docker
          .getContainer(c.Id)
          .inspect()
          .catch((err: unknown) => (isStatus(err, 404) ? undefined : Promise.reject(err)));
        if (!info) continue;
        const port = Number((info.Config.Env ?? []).find((e) => e.startsWith('PORT='))?.slice(5) ?? NaN);
        const health = info.State.Health?.Status;
        const running = info.State.Running;
        const dockerOk = health === undefined || health === 'healthy' || health === 'none';
        const healthy = running && dockerOk && Number.isFinite(port) && (await probe(port, input.healthPath)) === 200;
        const replicaOf = info.Config.Labels?.[LABEL_REPLICA_OF];
        replicas.push({ slot, name: `${input.service}-${slot}`, port: Number.isFinite(port) ? port : 0, running, healthy, ...(replicaOf ? { replicaOf } : {}) });
      }
      return { service: input.service, mode: 'containers', replicas: replicas.sort((a, b) => a.slot - b.slot) };
    },

    /**
     * The replica count of this engine's newest finished scaleService of `service` that scaled or
     * found nothing to do (dry runs, rejections and failures set no target). None recorded: {}.
     */
    async reconcileScaleTarget(service: string): Promise<{ target?: number; workflowId?: string }> {
      const runs = await listExecutions(`WorkflowType='scaleService' AND ExecutionStatus='Completed' AND Service='${service}' AND TaskQueue='${taskQueue}'`);
      runs.sort((a, b) => (b.closeTime?.getTime() ?? 0) - (a.closeTime?.getTime() ?? 0));
      for (const r of runs.slice(0, 20)) {
        const res = (await client.workflow.getHandle(r.workflowId, r.runId).result()) as { outcome?: string; plan?: { target?: string[] } } | undefined;
        if ((res?.outcome === 'scaled' || res?.outcome === 'unchanged') && Array.isArray(res.plan?.target)) return { target: res.plan.target.length, workflowId: r.workflowId };
      }
      return {};
    },

    /** This engine's running lease workflows and their holders (the `lease` query). */
    async reconcileLeases(): Promise<Array<{ leaseWorkflowId: string; service: string; holder?: LeaseView['holder'] }>> {
      const runs = await listExecutions(`WorkflowType='serviceLease' AND ExecutionStatus='Running' AND TaskQueue='${taskQueue}'`);
      const out: Array<{ leaseWorkflowId: string; service: string; holder?: LeaseView['holder'] }> = [];
      for (const r of runs) {
        try {
          const view = await client.workflow.getHandle(r.workflowId, r.runId).query<LeaseView>('lease');
          out.push({ leaseWorkflowId: r.workflowId, service: view.service, ...(view.holder ? { holder: view.holder } : {}) });
        } catch (err) {
          // Ended between the list and the query: nothing held.
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        }
      }
      return out;
    },

    /** The `release` update on behalf of a holder that no longer runs (no-op when it holds nothing any more). */
    async reconcileReleaseLease(input: LeaseRelease & { leaseWorkflowId: string }): Promise<{ released: boolean }> {
      try {
        const r = await client.workflow.getHandle(input.leaseWorkflowId).executeUpdate<{ released: boolean; left: boolean }, [LeaseRelease]>('release', {
          args: [{ workflowId: input.workflowId, runId: input.runId, reason: input.reason }],
        });
        log.warn({ lease: input.leaseWorkflowId, holder: input.workflowId, released: r.released }, 'reconcile: lease of a dead holder released');
        return { released: r.released };
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return { released: false };
        throw err;
      }
    },

    /** The pending versions of these secrets, with the rotation (`<workflowId>/<runId>`) that made each. */
    async reconcilePendingVersions(vaultPaths: string[]): Promise<Array<{ vaultPath: string; version: number; rotationId: string }>> {
      if (vaultPaths.length === 0) return [];
      if (!kv) throw ApplicationFailure.nonRetryable('Vault is not configured for this worker', 'TargetUnavailable');
      const out: Array<{ vaultPath: string; version: number; rotationId: string }> = [];
      for (const p of vaultPaths) {
        const meta = await kv.readMetadata(p);
        const version = Number(meta?.custom.pending_version);
        if (meta && Number.isInteger(version) && version > 0) out.push({ vaultPath: p, version, rotationId: meta.custom.pending_rotation ?? '' });
      }
      return out;
    },

    /**
     * Destroy a stale pending version and clear its label, only if it is still pending for that
     * same rotation (a new rotation may have started since it was found). Idempotent.
     */
    async reconcileDiscardPending(input: { vaultPath: string; version: number; rotationId: string }): Promise<{ discarded: boolean; reason?: string }> {
      if (!kv) throw ApplicationFailure.nonRetryable('Vault is not configured for this worker', 'TargetUnavailable');
      const meta = await kv.readMetadata(input.vaultPath);
      if (!meta || meta.custom.pending_version !== String(input.version) || (meta.custom.pending_rotation ?? '') !== input.rotationId) return { discarded: false, reason: 'no longer pending for that rotation' };
      if (meta.custom.current_version === String(input.version)) return { discarded: false, reason: 'it is current' };
      await kv.destroyVersions(input.vaultPath, [input.version]);
      const { pending_version: _v, pending_rotation: _r, ...rest } = meta.custom;
      await kv.writeCustomMetadata(input.vaultPath, rest);
      log.warn({ vaultPath: input.vaultPath, version: input.version, rotationId: input.rotationId }, 'reconcile: stale pending version discarded');
      return { discarded: true };
    },

    /**
     * Drill containers (label durable-ops.drill) and drill copies (instances `drill-<hash>-*`) that
     * belong to no running recoveryDrill, older than `graceMs`. A drill owns the container named by
     * its subject (Service attribute: the container, or `volume/<volume>` for the one mounting it) and
     * the copies named by the hash of its workflowId/runId.
     */
    async reconcileDrillLeftovers(input: { services?: string[]; includeCopies: boolean; graceMs: number }): Promise<LeftoverDrills> {
      const now = Date.now();
      const drills = await listExecutions(`WorkflowType='recoveryDrill' AND ExecutionStatus='Running'`);
      const subjects = new Set(drills.flatMap((d) => (d.service ? [d.service] : [])));
      const hashes = new Set(drills.map((d) => drillCopyHash(`${d.workflowId}/${d.runId}`)));
      const unnamed = drills.find((d) => !d.service);
      const out: LeftoverDrills = { containers: [], instances: [], ...(unnamed ? { unsure: `running drill ${unnamed.workflowId} has no Service attribute` } : {}) };

      const containers = await docker.listContainers({ all: true, filters: { label: [`${DRILL_LABEL}=true`] } });
      for (const c of containers.slice(0, MAX_LISTED)) {
        const name = (c.Names[0] ?? '').replace(/^\//, '');
        if (input.services && !input.services.includes(name)) continue;
        const volumes = (c.Mounts ?? []).flatMap((m) => (m.Type === 'volume' && m.Name ? [`volume/${m.Name}`] : []));
        if (subjects.has(name) || volumes.some((v) => subjects.has(v))) continue;
        if (now - c.Created * 1000 < input.graceMs) continue;
        if (out.unsure) continue;
        out.containers.push({ name, detail: `drill container (${c.State}, created ${new Date(c.Created * 1000).toISOString()}) of no running recoveryDrill` });
      }

      if (input.includeCopies) {
        const instances = await new PgInstances(pgPaths(loadConfig(env)), log).list();
        for (const rec of instances) {
          const m = /^drill-([0-9a-f]{8})-/.exec(rec.id);
          if (!m || hashes.has(m[1]!)) continue;
          const created = Date.parse(rec.createdAt);
          if (Number.isFinite(created) && now - created < input.graceMs) continue;
          out.instances.push({ id: rec.id, detail: `drill copy (${rec.state}, port ${rec.port}, created ${rec.createdAt}) of no running recoveryDrill` });
        }
      }
      log.debug({ namespace: ns, containers: out.containers.length, instances: out.instances.length }, 'reconcile: drill leftovers');
      return out;
    },
  };
}

export type ReconcileActivities = ReturnType<typeof createReconcileActivities>;
