/**
 * reconcile: compare what the engine believes with what is there, and repair (or report) the
 * drift that a terminated run leaves behind (terminate runs no compensation):
 *   leases        a lease held by a workflow that no longer runs -> released (the `release` update
 *                 with the holder's ids)
 *   vault         a pending version whose rotation no longer runs -> discarded
 *   drills        drill containers and drill copies of no running recoveryDrill -> removed / dropped
 *   balancers     per service behind a declared backend, holding the service's lease:
 *                 HAProxy servers and Nginx upstream servers with no replica -> removed;
 *                 running healthy replicas not served -> staged, then ready once HAProxy's check
 *                 says UP, then Nginx; replica clones above the last finished scale's target ->
 *                 out of Nginx and HAProxy, then removed (no recorded target: reported only).
 * A service whose lease a live change holds is skipped ("skipped-busy"): the next run sees it.
 * dryRun (or repair: false) reports only, and takes no lease. The report (findings and counts) is
 * the result, the `status` query, and the UI's current details.
 */
import { ApplicationFailure, defineQuery, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { BalancerBackend, ReplicaView, ServiceReplicas } from '../activities/reconcile';
import { LB_SERVER_WEIGHT } from '../config/defaults';
import { DRILL_COPY_SUBJECT, RECONCILE_MAX_FINDINGS, reconcileInputSchema, type Finding, type ReconcileParams, type ReconcileReport } from '../schemas/reconcile';
import { now } from './shared/deterministic';
import { rootMessage } from './shared/errors';
import { holdingLease, LEASE_BUSY, nonEssential } from './shared/harness';
import { beginRunbook, iso, showDetails } from './shared/runbook';

export const RUNBOOK = 'reconcile';

export const reconcileStatusQuery = defineQuery<ReconcileReport>('status');

/** How many findings the UI's details list (the report holds up to RECONCILE_MAX_FINDINGS). */
const SHOWN_FINDINGS = 15;

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 5 },
});
/** Listing visibility, querying every lease, reading results: a little longer. */
const reads = proxyActivities<Activities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
});

/** One service behind one backend, as it is. */
interface ServiceView {
  service: string;
  backend: BalancerBackend;
  replicas: ServiceReplicas;
  /** Replica count of the last finished scale (undefined: none recorded). */
  target?: number;
}

/** What to do for one service, from one look at it. */
interface ServicePlan {
  orphans: BalancerBackend['haproxy'];
  nginxOrphans: NonNullable<BalancerBackend['nginx']>;
  unserved: Array<ReplicaView & { drained: boolean }>;
  extra: ReplicaView[];
  /** Clones not served, with no recorded target: reported only. */
  unknownTarget: ReplicaView[];
  /** Nginx's upstream once repaired: HAProxy's rotation of live replicas (undefined: no Nginx for the backend). */
  nginxWanted?: Array<{ name: string; port: number; weight: number }>;
  nginxDiffers: boolean;
}

const slotIn = (service: string, server: string): number | undefined => {
  if (!server.startsWith(`${service}-`)) return undefined;
  const rest = server.slice(service.length + 1);
  return /^\d+$/.test(rest) ? Number(rest) : undefined;
};
/** `web-3` -> `web`. */
const serviceOfServer = (server: string): string | undefined => /^(.+)-\d+$/.exec(server)?.[1];
const inRotation = (status: string) => !/^(MAINT|DRAIN)/.test(status);

/** The drift of one service (pure: from one look). */
export function planService(v: ServiceView): ServicePlan {
  const { service, backend } = v;
  const bySlot = new Map(v.replicas.replicas.map((r) => [r.slot, r]));
  const mine = backend.haproxy.filter((s) => slotIn(service, s.name) !== undefined);
  const orphans = mine.filter((s) => !bySlot.has(slotIn(service, s.name)!));
  const extra = v.target === undefined ? [] : v.replicas.replicas.filter((r) => v.replicas.mode === 'containers' && r.replicaOf === service && r.slot > v.target!);
  const inHaproxy = new Map(mine.map((s) => [s.name, s]));
  const candidates = v.replicas.replicas.filter((r) => r.healthy && !extra.includes(r) && (v.target === undefined || r.slot <= v.target || r.replicaOf !== service));
  const notServed = candidates.filter((r) => !inHaproxy.has(r.name) || inHaproxy.get(r.name)!.status.startsWith('DRAIN'));
  const unknownTarget = v.target === undefined ? notServed.filter((r) => r.replicaOf === service) : [];
  const unserved = notServed.filter((r) => !unknownTarget.includes(r)).map((r) => ({ ...r, drained: inHaproxy.has(r.name) }));
  const nginxOrphans = (backend.nginx ?? []).filter((s) => {
    const slot = slotIn(service, s.name);
    return slot !== undefined && (!bySlot.has(slot) || extra.some((e) => e.slot === slot));
  });
  let nginxWanted: ServicePlan['nginxWanted'];
  let nginxDiffers = false;
  if (backend.nginx) {
    const gone = new Set([...orphans.map((o) => o.name), ...extra.map((e) => e.name)]);
    // Other services' entries in the same upstream are kept as they are (their own pass sees them).
    const others = backend.nginx.filter((s) => slotIn(service, s.name) === undefined);
    const served = mine.filter((s) => !gone.has(s.name) && inRotation(s.status) && bySlot.get(slotIn(service, s.name)!)?.running).map((s) => ({ name: s.name, port: s.port, weight: s.weight || LB_SERVER_WEIGHT }));
    const added = unserved.map((r) => ({ name: r.name, port: r.port, weight: inHaproxy.get(r.name)?.weight || LB_SERVER_WEIGHT }));
    nginxWanted = [...others, ...served, ...added.filter((a) => !served.some((s) => s.name === a.name))].sort((a, b) => a.port - b.port);
    const key = (xs: Array<{ name: string; port: number }>) => xs.map((x) => `${x.name}:${x.port}`).sort().join(',');
    nginxDiffers = key(nginxWanted) !== key(backend.nginx);
  }
  return { orphans, nginxOrphans, unserved, extra, unknownTarget, ...(nginxWanted ? { nginxWanted } : {}), nginxDiffers };
}

const hasDrift = (p: ServicePlan) => p.orphans.length + p.nginxOrphans.length + p.unserved.length + p.extra.length > 0 || p.nginxDiffers;

export async function reconcile(rawInput: unknown): Promise<ReconcileReport> {
  const input: ReconcileParams = beginRunbook(RUNBOOK, reconcileInputSchema, rawInput, (i) => (i.services ? i.services.join(',') : 'all'));
  const fix = input.repair && !input.dryRun;
  const wanted = (service: string) => !input.services || input.services.includes(service);
  const waits = proxyActivities<Activities>({
    startToCloseTimeout: input.readyTimeoutMs + 30_000,
    heartbeatTimeout: '10s',
    retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 3 },
  });

  const report: ReconcileReport = {
    dryRun: input.dryRun,
    repair: input.repair,
    state: 'checking',
    findings: [],
    counts: { total: 0, repaired: 0, reported: 0, skippedBusy: 0, failed: 0 },
    notChecked: [],
    startedAt: now(),
  };
  setHandler(reconcileStatusQuery, () => report);
  const show = (note?: string) => {
    const c = report.counts;
    const fields: Record<string, string | number | boolean | undefined> = {
      state: report.state,
      mode: input.dryRun ? 'dry run' : input.repair ? 'repair' : 'report only',
      services: input.services?.join(', ') ?? 'all',
      findings: `${c.total} (repaired ${c.repaired}, reported ${c.reported}, busy ${c.skippedBusy}, failed ${c.failed})`,
      'not checked': report.notChecked.join('; ') || undefined,
      started: iso(report.startedAt),
      note,
    };
    report.findings.slice(0, SHOWN_FINDINGS).forEach((f, i) => (fields[`${i + 1}. ${f.kind}`] = `${f.subject}: ${f.action}${f.error ? ` (${f.error})` : ''} - ${f.detail}`));
    if (report.findings.length > SHOWN_FINDINGS) fields['...'] = `${report.findings.length - SHOWN_FINDINGS} more in the result`;
    showDetails(`reconcile: ${report.state}`, fields);
  };
  const record = (f: Finding) => {
    report.counts.total += 1;
    if (f.action === 'repaired') report.counts.repaired += 1;
    else if (f.action === 'skipped-busy') report.counts.skippedBusy += 1;
    else report.counts.reported += 1;
    if (f.error) report.counts.failed += 1;
    if (report.findings.length < RECONCILE_MAX_FINDINGS) report.findings.push(f);
    show();
  };
  /** Repair one finding when repairing, else report it; a failed repair is reported with its error. */
  const handle = async (f: Omit<Finding, 'action'>, repair: () => Promise<unknown>) => {
    if (!fix) return record({ ...f, action: 'reported' });
    try {
      await repair();
      record({ ...f, action: 'repaired' });
    } catch (err) {
      record({ ...f, action: 'reported', error: rootMessage(err) });
    }
  };
  /** A check that cannot run (its system is not configured or does not answer) is named, not fatal. */
  const check = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      report.notChecked.push(`${what}: ${rootMessage(err)}`);
      show();
    }
  };
  show();

  // --- leases: a holder that no longer runs -------------------------------------------------
  await check('leases', async () => {
    for (const l of await reads.reconcileLeases()) {
      if (!l.holder || !wanted(l.service)) continue;
      const h = l.holder;
      const alive = await quick.workflowRunning({ workflowId: h.workflowId, runId: h.runId });
      if (alive.running) continue;
      await handle({ kind: 'lease-orphan', subject: l.leaseWorkflowId, detail: `held by ${h.runbook} ${h.workflowId} (${alive.status}) since ${iso(h.since)}` }, () =>
        quick.reconcileReleaseLease({ leaseWorkflowId: l.leaseWorkflowId, workflowId: h.workflowId, runId: h.runId, reason: 'reconcile: holder gone' }),
      );
    }
  });

  // --- Vault: a pending version whose rotation no longer runs -------------------------------
  if (input.vaultPaths.length > 0) {
    await check('vault', async () => {
      for (const p of await reads.reconcilePendingVersions(input.vaultPaths)) {
        const cut = p.rotationId.lastIndexOf('/');
        const run = cut > 0 ? await quick.workflowRunning({ workflowId: p.rotationId.slice(0, cut), runId: p.rotationId.slice(cut + 1) }) : { running: false, status: 'no rotation id' };
        if (run.running) continue;
        await handle({ kind: 'vault-pending', subject: `secret/${p.vaultPath} v${p.version}`, detail: `pending for rotation ${p.rotationId || '(none)'} (${run.status})` }, async () => {
          const r = await quick.reconcileDiscardPending(p);
          if (!r.discarded && r.reason !== 'no longer pending for that rotation') throw ApplicationFailure.nonRetryable(`not discarded: ${r.reason}`);
        });
      }
    });
  }

  // --- drills: containers and copies of no running drill ------------------------------------
  await check('drills', async () => {
    const includeCopies = !input.services || input.services.includes(DRILL_COPY_SUBJECT);
    const left = await reads.reconcileDrillLeftovers({ ...(input.services ? { services: input.services } : {}), includeCopies, graceMs: input.graceMs });
    if (left.unsure) report.notChecked.push(`drill containers: ${left.unsure}`);
    for (const c of left.containers) await handle({ kind: 'drill-container', subject: c.name, detail: c.detail }, () => quick.drillRemoveDemo(c.name));
    for (const i of left.instances) await handle({ kind: 'drill-copy', subject: i.id, detail: i.detail }, () => quick.dropInstance(i.id));
  });

  // --- balancers and replicas, per service ---------------------------------------------------
  await check('balancers', async () => {
    const lb = await reads.reconcileBalancers();
    if (!lb.configured) {
      report.notChecked.push(`balancers: ${lb.reason ?? 'not configured'}`);
      return;
    }
    // The services behind each backend: named by their servers (`<service>-<n>`), or the backend's own name.
    const pairs: Array<{ service: string; backend: string }> = [];
    for (const b of lb.backends) {
      const names = new Set([b.name, ...[...b.haproxy, ...(b.nginx ?? [])].map((s) => serviceOfServer(s.name)).filter((s): s is string => s !== undefined)]);
      for (const service of names) if (wanted(service) && !pairs.some((p) => p.service === service)) pairs.push({ service, backend: b.name });
    }
    const look = async (service: string, backendName: string, again: boolean): Promise<ServiceView> => {
      const seen = again ? await reads.reconcileBalancers() : lb;
      const backend = seen.backends.find((b) => b.name === backendName) ?? lb.backends.find((b) => b.name === backendName)!;
      const replicas = await reads.reconcileReplicas({ service, healthPath: backend.healthPath });
      // Not essential: without a recorded target no replica is called extra (reported, never removed).
      const target = (await nonEssential(`the last scale target of ${service}`, () => reads.reconcileScaleTarget(service)))?.target;
      return { service, backend, replicas, ...(target !== undefined ? { target } : {}) };
    };
    for (const { service, backend } of pairs) {
      await check(`service ${service}`, async () => {
        const first = await look(service, backend, false);
        const plan = planService(first);
        for (const r of plan.unknownTarget) record({ kind: 'replica-extra', subject: r.name, detail: `clone of ${service} not in the balancer, and no finished scaleService records a target: left as it is`, action: 'reported' });
        if (!hasDrift(plan)) return;
        if (!fix) return describe(first, plan).forEach((f) => record({ ...f, action: 'reported' }));
        report.state = 'repairing';
        show(`repairing ${service}`);
        try {
          await holdingLease({ service, runbook: RUNBOOK, waitForLease: false, leaseWaitTimeoutMs: 1_000, maxHoldMs: input.readyTimeoutMs * 4 + 10 * 60_000 }, async () => {
            // Under the lease, from a fresh look: what is repaired is what is there now.
            const view = await look(service, backend, true);
            await repairService(view, planService(view));
          });
        } catch (err) {
          if (!(err instanceof ApplicationFailure && err.type === LEASE_BUSY)) throw err;
          const holder = (err.details?.[0] as { holder?: { runbook?: string; workflowId?: string } } | undefined)?.holder;
          describe(first, plan).forEach((f) => record({ ...f, detail: `${f.detail}; ${service} is busy (${holder?.runbook ?? 'a change'} ${holder?.workflowId ?? ''} holds its lease)`, action: 'skipped-busy' }));
        } finally {
          report.state = 'checking';
        }
      });
    }
  });

  report.state = 'done';
  report.finishedAt = now();
  show();
  return report;

  function describe(v: ServiceView, p: ServicePlan): Array<Omit<Finding, 'action'>> {
    const b = v.backend.name;
    return [
      ...p.orphans.map((s) => ({ kind: 'balancer-orphan' as const, subject: `${b}/${s.name}`, detail: `HAProxy server 127.0.0.1:${s.port} (${s.status}) has no replica container` })),
      ...p.nginxOrphans.map((s) => ({ kind: 'nginx-orphan' as const, subject: `${b}/${s.name}`, detail: `Nginx upstream server 127.0.0.1:${s.port} has no replica (or one above the target)` })),
      ...(p.nginxDiffers && p.nginxOrphans.length === 0 && p.unserved.length === 0 && p.extra.length === 0
        ? [{ kind: 'nginx-orphan' as const, subject: `${b} (nginx)`, detail: `Nginx's upstream differs from HAProxy's rotation (${(v.backend.nginx ?? []).map((s) => s.name).join(', ') || 'empty'})` }]
        : []),
      ...p.unserved.map((r) => ({ kind: 'replica-unserved' as const, subject: r.name, detail: `running and healthy on 127.0.0.1:${r.port}, ${r.drained ? 'left drained in' : 'not in'} ${b}` })),
      ...p.extra.map((r) => ({ kind: 'replica-extra' as const, subject: r.name, detail: `clone above the target ${v.target} of the last finished scaleService` })),
    ];
  }

  async function repairService(v: ServiceView, p: ServicePlan): Promise<void> {
    const b = v.backend.name;
    const found = new Map(describe(v, p).map((f) => [`${f.kind}:${f.subject}`, f]));
    const done = async (kind: Finding['kind'], subject: string, fn: () => Promise<unknown>) => {
      const f = found.get(`${kind}:${subject}`) ?? { kind, subject, detail: '' };
      found.delete(`${kind}:${subject}`);
      await handle(f, fn);
    };
    const nginxSync = (servers: Array<{ name: string; port: number; weight: number }>) => waits.nginxSyncUpstream({ backend: b, servers });
    // 1. Out of Nginx first (what leaves is never proxied to once its container goes).
    if (p.nginxWanted && (p.nginxOrphans.length > 0 || p.extra.length > 0)) {
      const removing = new Set([...p.nginxOrphans.map((s) => s.name), ...p.extra.map((e) => e.name)]);
      const kept = (v.backend.nginx ?? []).filter((s) => !removing.has(s.name));
      for (const s of p.nginxOrphans) await done('nginx-orphan', `${b}/${s.name}`, () => nginxSync(kept));
      if (p.nginxOrphans.length === 0) await nginxSync(kept);
    }
    // 2. HAProxy servers with no replica, and the clones above the target: out of HAProxy.
    for (const s of p.orphans) await done('balancer-orphan', `${b}/${s.name}`, () => quick.haproxyRemoveServer({ backend: b, server: s.name, force: true }));
    // 3. The clones above the target: out of HAProxy (drain cut short: the target says they should not be there), then removed.
    for (const r of p.extra) {
      await done('replica-extra', r.name, async () => {
        await quick.haproxyRemoveServer({ backend: b, server: r.name, force: true });
        await waits.removeReplicas({ service: v.service, mode: 'containers', basePort: r.port - r.slot, slots: [r.slot] });
      });
    }
    // 4. Healthy replicas not served: staged (checked, no traffic), ready once HAProxy's check says UP.
    await Promise.all(
      p.unserved.map((r) =>
        done('replica-unserved', r.name, async () => {
          const weight = v.backend.haproxy.find((s) => s.name === r.name)?.weight || LB_SERVER_WEIGHT;
          await quick.haproxyStageServer({ backend: b, server: r.name, port: r.port, weight });
          await waits.haproxyWaitServerUp({ backend: b, server: r.name, timeoutMs: input.readyTimeoutMs });
          await quick.haproxyReadyServer({ backend: b, server: r.name, weight });
        }),
      ),
    );
    // 5. Nginx: the rotation as HAProxy now serves it.
    if (p.nginxWanted && p.nginxDiffers) {
      const after = (await reads.reconcileBalancers()).backends.find((x) => x.name === b);
      const ready = new Set((after?.haproxy ?? []).filter((s) => inRotation(s.status)).map((s) => s.name));
      const servers = p.nginxWanted.filter((s) => slotIn(v.service, s.name) === undefined || ready.has(s.name));
      const only = [...found.values()].find((f) => f.kind === 'nginx-orphan');
      if (only) await done('nginx-orphan', only.subject, () => nginxSync(servers));
      else await nginxSync(servers);
    }
  }
}
