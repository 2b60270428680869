/**
 * serviceLease: the lease of one service (workflow id `lease/<service>`), an entity workflow.
 *
 * Temporal guarantees one running workflow per id, and runs its update handlers one at a time,
 * so the decisions here are serialised without any lock of ours:
 *  - `acquire` (update): granted when free (or already ours); otherwise refused at once with the
 *    holder, or queued (first come, first served) when the request says wait;
 *  - `release` (update): the holder frees it (or a waiter leaves the queue); the next waiter is
 *    granted and told by the `leaseGranted` signal;
 *  - `lease` (query): holder, queue and the newest events.
 * A holder that dies, is terminated or forgets to release never keeps the service for long: every
 * `livenessCheckMs` the lease asks Temporal whether the holder still runs, and every lease has an
 * expiry. Supervisors deferring to the holder `watch` the lease and are told (`leaseChanged`) when
 * it is freed, so they look at their service again. An idle lease ends after `idleEndMs`; history stays bounded (continue-as-new).
 */
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { leaseWorkflowInputSchema, type LeaseAnswer, type LeaseEvent, type LeaseHolder, type LeaseRelease, type LeaseRequest, type LeaseView, type LeaseWaiter, type LeaseWorkflowInput } from '../schemas/lease';
import { parseInput } from '../schemas/common';
import { now } from './shared/deterministic';
import { showDetails, iso } from './shared/runbook';

export const RUNBOOK = 'serviceLease';

export const acquireLeaseUpdate = defineUpdate<LeaseAnswer, [LeaseRequest]>('acquire');
export const releaseLeaseUpdate = defineUpdate<{ released: boolean; left: boolean }, [LeaseRelease]>('release');
export const leaseQuery = defineQuery<LeaseView>('lease');
/** A supervisor deferring to the holder asks to be told when the lease is freed (and reads it). */
export const watchLeaseUpdate = defineUpdate<LeaseView, [{ workflowId: string }]>('watch');
/** Sent to a waiter when its turn comes. */
export const leaseGrantedSignal = defineSignal<[LeaseHolder]>('leaseGranted');
/** Sent to the service's supervisor when the lease changes hands (undefined: free). */
export const leaseChangedSignal = defineSignal<[{ holder?: LeaseHolder; reason: string }]>('leaseChanged');

const RECENT_EVENTS = 20;
const CONTINUE_AS_NEW_AFTER_EVENTS = 2_000;

export interface LeaseCarry {
  holder?: LeaseHolder;
  watchers?: string[];
  queue: LeaseWaiter[];
  recent: LeaseEvent[];
  grants: number;
}

const probe = proxyActivities<Activities>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 3 },
});
const alerts = proxyActivities<Activities>({ startToCloseTimeout: '30s', retry: { maximumInterval: '30s', maximumAttempts: 5 } });

export async function serviceLease(rawInput: LeaseWorkflowInput, carried?: LeaseCarry): Promise<LeaseView> {
  const input = parseInput(RUNBOOK, leaseWorkflowInputSchema, rawInput);
  const { service } = input;
  const view: LeaseView = { service, queue: carried?.queue ?? [], recent: carried?.recent ?? [], grants: carried?.grants ?? 0, livenessCheckMs: input.livenessCheckMs };
  if (carried?.holder) view.holder = carried.holder;
  const watchers = new Set<string>(carried?.watchers ?? []);
  /** Waiters granted in a handler, to be told by signal from the main loop. */
  const toNotify: LeaseHolder[] = [];
  /** Set when the lease is freed with nobody in line: the watchers are told (and it is cleared by a grant). */
  let freedNotice: string | undefined;

  const record = (what: LeaseEvent['what'], who: { workflowId: string; runbook: string }, detail?: string) => {
    view.recent.push({ at: now(), what, workflowId: who.workflowId, runbook: who.runbook, ...(detail ? { detail } : {}) });
    if (view.recent.length > RECENT_EVENTS) view.recent.splice(0, view.recent.length - RECENT_EVENTS);
  };
  const publish = () =>
    showDetails(`lease ${service}: ${view.holder ? 'held' : 'free'}`, {
      holder: view.holder ? `${view.holder.runbook} ${view.holder.workflowId}` : '(free)',
      'started by': view.holder?.startedBy,
      since: iso(view.holder?.since),
      expires: iso(view.holder?.expiresAt),
      queue: view.queue.map((w) => `${w.runbook} ${w.workflowId}`).join(', ') || undefined,
      grants: view.grants,
    });

  const same = (a: { workflowId: string; runId: string }, b: { workflowId: string; runId: string }) => a.workflowId === b.workflowId && a.runId === b.runId;

  const grant = (req: Omit<LeaseHolder, 'since' | 'expiresAt'>, maxHoldMs: number): LeaseHolder => {
    const t = now();
    const holder: LeaseHolder = { ...req, since: t, expiresAt: t + maxHoldMs };
    view.holder = holder;
    view.grants += 1;
    record('granted', holder);
    freedNotice = undefined;
    publish();
    return holder;
  };

  /** Free the lease and hand it to the next live waiter in line (told by signal from the main loop). */
  const free = (what: LeaseEvent['what'], detail: string) => {
    if (!view.holder) return;
    record(what, view.holder, detail);
    view.holder = undefined;
    const t = now();
    view.queue = view.queue.filter((w) => w.deadline > t);
    const next = view.queue.shift();
    if (next) {
      const { deadline: _deadline, since, expiresAt, ...req } = next;
      toNotify.push(grant(req, expiresAt - since));
    } else {
      freedNotice = `${what}: ${detail}`;
      publish();
    }
  };

  setHandler(
    acquireLeaseUpdate,
    (req): LeaseAnswer => {
      const who = req.holder;
      if (view.holder && same(view.holder, who)) return { granted: true, holder: view.holder };
      if (!view.holder) {
        // Free: granted, unless others already wait (first come, first served).
        const queuedAt = view.queue.findIndex((w) => same(w, who));
        if (view.queue.length === 0 || queuedAt === 0) {
          if (queuedAt === 0) view.queue.shift();
          return { granted: true, holder: grant(who, req.maxHoldMs) };
        }
      }
      const holder = view.holder ?? view.queue[0]!;
      if (!req.wait) {
        record('refused', who, `held by ${holder.workflowId}`);
        return { granted: false, queued: false, holder };
      }
      let position = view.queue.findIndex((w) => same(w, who));
      if (position < 0) {
        const t = now();
        view.queue.push({ ...who, since: t, expiresAt: t + req.maxHoldMs, deadline: t + req.waitTimeoutMs });
        position = view.queue.length - 1;
        record('queued', who, `behind ${holder.workflowId}`);
        publish();
      }
      return { granted: false, queued: true, position: position + 1, holder };
    },
    {
      validator: (req) => {
        if (!req || typeof req !== 'object' || !req.holder?.workflowId || !req.holder.runId) throw new Error('acquire: holder.workflowId and holder.runId are required');
        if (req.service !== service) throw new Error(`acquire: this is the lease of ${service}, not ${req.service}`);
        if (!(req.maxHoldMs > 0) || !(req.waitTimeoutMs >= 0)) throw new Error('acquire: maxHoldMs and waitTimeoutMs must be positive numbers');
      },
    },
  );

  setHandler(
    releaseLeaseUpdate,
    (rel) => {
      if (view.holder && same(view.holder, rel)) {
        free('released', rel.reason);
        return { released: true, left: false };
      }
      const i = view.queue.findIndex((w) => same(w, rel));
      if (i >= 0) {
        const [w] = view.queue.splice(i, 1);
        record('left', w!, rel.reason);
        publish();
        return { released: false, left: true };
      }
      return { released: false, left: false };
    },
    {
      validator: (rel) => {
        if (!rel || typeof rel !== 'object' || !rel.workflowId || !rel.runId) throw new Error('release: workflowId and runId are required');
      },
    },
  );
  setHandler(leaseQuery, () => ({ ...view, watchers: [...watchers] }));
  setHandler(
    watchLeaseUpdate,
    ({ workflowId }) => {
      if (view.holder) watchers.add(workflowId);
      return { ...view, watchers: [...watchers] };
    },
    {
      validator: (w) => {
        if (!w || typeof w.workflowId !== 'string' || !w.workflowId) throw new Error('watch: workflowId is required');
      },
    },
  );
  publish();

  const tell = async () => {
    while (toNotify.length > 0) {
      const h = toNotify.shift()!;
      try {
        await getExternalWorkflowHandle(h.workflowId, h.runId).signal(leaseGrantedSignal, h);
      } catch (err) {
        // The waiter is gone: free it again for the next one.
        log.warn('lease waiter gone', { service, workflowId: h.workflowId, error: String(err) });
        if (view.holder && same(view.holder, h)) free('holder-gone', 'the waiter no longer runs');
      }
    }
    if (freedNotice !== undefined) {
      const notice = { reason: freedNotice };
      freedNotice = undefined;
      // Freed: every watcher (the supervisors deferring to the holder) looks at its service again.
      // A watcher that ended meanwhile is not an error.
      if (watchers.size > 0) {
        const told = [...watchers];
        watchers.clear();
        await Promise.all(told.map((id) => getExternalWorkflowHandle(id).signal(leaseChangedSignal, notice).catch(() => undefined)));
      }
    }
  };

  /** Is the holder still running? A failing check counts as alive (the next check decides). */
  const holderAlive = async (h: LeaseHolder): Promise<boolean> => {
    try {
      return (await probe.workflowRunning({ workflowId: h.workflowId, runId: h.runId })).running;
    } catch (err) {
      log.warn('lease holder check failed', { service, error: String(err) });
      return true;
    }
  };

  let idleSince = now();
  for (;;) {
    await tell();
    const info = workflowInfo();
    if (info.continueAsNewSuggested || info.historyLength > CONTINUE_AS_NEW_AFTER_EVENTS) {
      await condition(allHandlersFinished);
      await tell();
      return continueAsNew<typeof serviceLease>(input, { ...(view.holder ? { holder: view.holder } : {}), watchers: [...watchers], queue: view.queue, recent: view.recent, grants: view.grants });
    }
    const h = view.holder;
    if (!h) {
      if (view.queue.length > 0) {
        // Free with waiters (the holder released between two checks): the next one gets it.
        const { deadline: _d, since, expiresAt, ...req } = view.queue.shift()!;
        if (_d > now()) toNotify.push(grant(req, expiresAt - since));
        continue;
      }
      const waited = now() - idleSince;
      const changed = await condition(() => view.holder !== undefined || view.queue.length > 0 || toNotify.length > 0 || freedNotice !== undefined, Math.max(1, input.idleEndMs - waited));
      if (changed) continue;
      await condition(allHandlersFinished);
      if (view.holder || view.queue.length > 0) continue;
      await tell();
      return view;
    }
    const wait = Math.max(1, Math.min(input.livenessCheckMs, h.expiresAt - now()));
    const changed = await condition(() => view.holder !== h || toNotify.length > 0 || freedNotice !== undefined, wait);
    if (changed) {
      if (!view.holder) idleSince = now();
      continue;
    }
    if (now() >= h.expiresAt) {
      free('expired', `held longer than its bound (${h.expiresAt - h.since} ms)`);
      idleSince = now();
      await alerts
        .sendAlert({
          severity: 'warning',
          service,
          summary: `the lease of ${service} held by ${h.runbook} ${h.workflowId} expired and was freed`,
          details: { holder: h.workflowId, runbook: h.runbook, 'started by': h.startedBy, since: new Date(h.since).toISOString() },
          runbook: RUNBOOK,
          workflowId: info.workflowId,
          dedupKey: `${service}/lease-expired`,
        })
        .catch((err: unknown) => log.warn('lease expiry alert not sent', { error: String(err) }));
      continue;
    }
    if (!(await holderAlive(h))) {
      if (view.holder === h) {
        free('holder-gone', 'the holder no longer runs (terminated, failed or timed out without releasing)');
        idleSince = now();
      }
    }
    // Waiters that gave up (their deadline passed) leave the line.
    const t = now();
    const before = view.queue.length;
    view.queue = view.queue.filter((w) => w.deadline > t);
    if (view.queue.length !== before) publish();
  }
}
