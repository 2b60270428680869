/**
 * superviseService: one long-running supervisor per service (workflow id `supervise/<service>`).
 *
 * Learns of failures from signals (the Docker event bridge: die / unhealthy / oom) and from
 * its own periodic probe. Restarts with exponential backoff and full jitter, verifies health
 * after each restart, tells a down dependency from a crash loop, and after the last attempt
 * escalates by email and waits for an operator's `resume`. `pause`, `stop` and a `status`
 * query exist too. History stays bounded with continue-as-new, carrying the state.
 */
import {
  ActivityFailure,
  CancellationScope,
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { failureSignalSchema, superviseServiceInputSchema, withConfiguredDefaults, type FailureSignal, type SuperviseServiceParams } from '../schemas/supervise-service';
import { fullJitterDelayMs } from './shared/backoff';
import { now, random } from './shared/deterministic';
import { beginRunbook, iso, showDetails } from './shared/runbook';
import { continueAsNewDue, nonEssential } from './shared/harness';
import { leaseChangedSignal } from './service-lease';
import { leaseKeyOf } from '../schemas/lease';
import { LEASE_SUPERVISOR_RECHECK_MS } from '../config/defaults';

export const RUNBOOK = 'superviseService';
export const superviseWorkflowId = (service: string) => `supervise/${service}`;

export type SupervisorState = 'watching' | 'backing-off' | 'restarting' | 'verifying' | 'waiting-dependency' | 'deferring' | 'gave-up' | 'paused' | 'stopped';

export interface FailureRecord {
  kind: string;
  at: number;
  source: string;
  exitCode?: number;
  detail?: string;
}

export interface SupervisorStatus {
  service: string;
  state: SupervisorState;
  /** Restart attempts in the current cycle (reset after resetAfterMs healthy, or by resume). */
  attempts: number;
  maxAttempts: number;
  restartsTotal: number;
  failuresSeen: number;
  lastFailure?: FailureRecord;
  nextRetryAt?: number;
  lastRestartAt?: number;
  healthySince?: number;
  consecutiveProbeFailures: number;
  downDependencies: string[];
  gaveUpAt?: number;
  lastAlertError?: string;
  /** Dedup keys of alerts raised and not yet resolved. */
  openAlerts?: string[];
  /** The change that holds the service's lease (src/workflows/service-lease.ts), as last seen: the supervisor does not restart under it. */
  lease?: { workflowId: string; runbook: string; startedBy: string; since: number; expiresAt: number };
  /** Failures seen while deferring to a lease holder (recorded, not acted on). */
  deferredFailures?: number;
  runsCarried: number;
}

export interface SupervisorCarry {
  status: SupervisorStatus;
  pending: FailureRecord[];
  paused: boolean;
}

export interface SupervisorResult {
  service: string;
  stoppedBy: string;
  status: SupervisorStatus;
}

export const failureSignal = defineSignal<[FailureSignal]>('failure');
export const pauseSignal = defineSignal<[{ by?: string; reason?: string }?]>('pause');
export const resumeSignal = defineSignal<[{ by?: string; reason?: string }?]>('resume');
export const stopSignal = defineSignal<[{ by?: string; reason?: string }?]>('stop');
export const statusQuery = defineQuery<SupervisorStatus>('status');

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '20s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s' },
});

/** Metrics are recorded in the worker process (prom-client); never retried, never fatal. */
const metrics = proxyLocalActivities<Activities>({ startToCloseTimeout: '5s', retry: { maximumAttempts: 1 } });

const alerts = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 8 },
});

export async function superviseService(rawInput: unknown, carried?: SupervisorCarry): Promise<SupervisorResult> {
  // The worker's configured restart defaults (not the client's): the same whoever starts it. A
  // carried run has them in its parsed input already.
  const raw = !carried && patched('configured-defaults-in-worker') ? withConfiguredDefaults(rawInput, await metrics.configuredRestartDefaults()) : rawInput;
  const input = beginRunbook(RUNBOOK, superviseServiceInputSchema, raw, (i) => i.service);
  const { service, restart: policy } = input;

  const restarter = proxyActivities<Activities>({
    startToCloseTimeout: `${policy.stopTimeoutSec + 60}s`,
    heartbeatTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
  });
  const verifier = proxyActivities<Activities>({
    startToCloseTimeout: policy.healthTimeoutMs + 30_000,
    heartbeatTimeout: input.probeTimeoutMs + 10_000,
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
  });

  const status: SupervisorStatus = carried?.status ?? {
    service,
    state: 'watching',
    attempts: 0,
    maxAttempts: policy.maxAttempts,
    restartsTotal: 0,
    failuresSeen: 0,
    consecutiveProbeFailures: 0,
    downDependencies: [],
    runsCarried: 0,
  };
  status.maxAttempts = policy.maxAttempts;
  const pending: FailureRecord[] = carried?.pending ?? [];
  let paused = carried?.paused ?? false;
  let resumeRequested = false;
  let stopRequested: string | undefined;

  const publish = () =>
    showDetails(`supervise ${service}: ${status.state}`, {
      state: status.state,
      attempt: `${status.attempts}/${status.maxAttempts}`,
      'next retry': iso(status.nextRetryAt),
      'last failure': status.lastFailure ? `${status.lastFailure.kind} at ${iso(status.lastFailure.at)}${status.lastFailure.exitCode !== undefined ? ` (exit ${status.lastFailure.exitCode})` : ''}${status.lastFailure.detail ? `: ${status.lastFailure.detail}` : ''}` : undefined,
      'last restart': iso(status.lastRestartAt),
      'healthy since': iso(status.healthySince),
      'restarts total': status.restartsTotal,
      'down dependencies': status.downDependencies.join(', '),
      'deferring to': status.lease ? `${status.lease.runbook} ${status.lease.workflowId} (started by ${status.lease.startedBy}, since ${iso(status.lease.since)}, expires ${iso(status.lease.expiresAt)})` : undefined,
      'alert error': status.lastAlertError,
    });
  const setState = (state: SupervisorState) => {
    status.state = state;
    publish();
  };

  setHandler(failureSignal, (raw) => {
    const parsed = failureSignalSchema.safeParse(raw);
    if (!parsed.success) {
      log.warn('ignoring malformed failure signal', { issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
      return;
    }
    status.failuresSeen += 1;
    pending.push(parsed.data);
  });
  setHandler(pauseSignal, (req) => {
    log.info('pause requested', { by: req?.by, reason: req?.reason });
    paused = true;
  });
  setHandler(resumeSignal, (req) => {
    log.info('resume requested', { by: req?.by, reason: req?.reason });
    resumeRequested = true;
    paused = false;
  });
  setHandler(stopSignal, (req) => {
    stopRequested = `${req?.by ?? 'operator'}${req?.reason ? `: ${req.reason}` : ''}`;
  });
  setHandler(statusQuery, () => status);
  /** The lease changed hands (told by the lease workflow): a freed lease means look at the service again. */
  let leaseFreed = false;
  setHandler(leaseChangedSignal, ({ holder }) => {
    if (holder) status.lease = { workflowId: holder.workflowId, runbook: holder.runbook, startedBy: holder.startedBy, since: holder.since, expiresAt: holder.expiresAt };
    else {
      status.lease = undefined;
      leaseFreed = true;
    }
    publish();
  });

  // A supervisor for a container that does not exist is bad input: fail before anything else.
  if (!carried) await quick.inspectService(service);
  if (paused) status.state = 'paused';
  publish();

  const checkNow = () => quick.checkService({ service, url: input.healthUrl, timeoutMs: input.probeTimeoutMs });
  const interrupted = () => stopRequested !== undefined || paused;

  /** Take the next failure that is not an echo of our own restart. */
  const nextFailure = (): FailureRecord | undefined => {
    while (pending.length > 0) {
      const f = pending.shift()!;
      if (status.lastRestartAt !== undefined && f.at <= status.lastRestartAt) continue;
      return f;
    }
    return undefined;
  };

  /** Alerts this supervisor raised and has not resolved yet (dedup keys). */
  const openAlerts = new Set<string>(status.openAlerts ?? []);
  const sendAlert = async (rule: string, severity: 'warning' | 'critical', summary: string, details: Record<string, string | number | boolean>) => {
    const dedupKey = `${service}/${rule}`;
    try {
      await alerts.sendAlert({ severity, service, summary, details, runbook: RUNBOOK, workflowId: workflowInfo().workflowId, dedupKey });
      openAlerts.add(dedupKey);
      status.openAlerts = [...openAlerts];
      status.lastAlertError = undefined;
    } catch (err) {
      // Alert delivery failing must not stop supervision; it stays visible in the status.
      status.lastAlertError = err instanceof ActivityFailure ? (err.cause?.message ?? err.message) : String(err);
      log.error('alert could not be delivered', { error: status.lastAlertError });
    }
  };

  /** The service is healthy again: the alerts it raised are resolved (their groups say so). */
  const resolveOpenAlerts = async () => {
    if (openAlerts.size === 0 || !patched('resolve-alerts')) return;
    for (const dedupKey of [...openAlerts]) {
      if (patched('resolve-non-essential')) {
        // A resolve notice that cannot be sent must never end supervision; the alert stays open and is resolved next time.
        const done = await nonEssential('resolve notice', () => alerts.resolveAlert({ dedupKey }));
        if (done === undefined) {
          status.lastAlertError = `resolve of ${dedupKey} not delivered`;
          continue;
        }
      } else {
        await alerts.resolveAlert({ dedupKey });
      }
      openAlerts.delete(dedupKey);
    }
    status.openAlerts = [...openAlerts];
  };

  /** Carry the state into a new run (history bounded); `current` is a failure being handled, handled again there. */
  const carryOn = async (current?: FailureRecord): Promise<never> => {
    await condition(allHandlersFinished);
    if (current) pending.unshift(current);
    status.runsCarried += 1;
    return continueAsNew<typeof superviseService>(input satisfies SuperviseServiceParams, { status, pending, paused });
  };

  /** Wait until no dependency is down (without burning attempts). False if interrupted. */
  const waitForDependencies = async (current: FailureRecord): Promise<boolean> => {
    if (input.dependencies.length === 0) return true;
    let alerted = false;
    for (;;) {
      // A long dependency outage must not run into the history limit.
      if (status.state === 'waiting-dependency' && continueAsNewDue(input.continueAsNewAfterEvents) && patched('dependency-wait-continue-as-new')) await carryOn(current);
      const results = await quick.probeDependencies({ dependencies: input.dependencies, timeoutMs: input.probeTimeoutMs });
      status.downDependencies = results.filter((r) => !r.ok).map((r) => r.name);
      if (status.downDependencies.length === 0) {
        publish();
        return true;
      }
      setState('waiting-dependency');
      if (!alerted) {
        alerted = true;
        await sendAlert('dependency-down', 'warning', `dependency down: ${status.downDependencies.join(', ')}; restart of ${service} deferred`, {
          dependencies: results.map((r) => `${r.name}=${r.ok ? 'up' : `down (${r.error ?? r.status})`}`).join(', '),
          attempts: `${status.attempts}/${policy.maxAttempts}`,
        });
      }
      if (await condition(interrupted, input.dependencyRecheckMs)) return false;
    }
  };

  /**
   * While another runbook holds the service's lease, record failures but do not restart; when the
   * lease is freed (the lease workflow says so, or a re-read finds it free; a dead holder's lease is
   * freed by the lease's liveness check), look at the service again: healthy means nothing to do.
   */
  const deferToLease = async (failure: FailureRecord): Promise<'free' | 'healthy' | 'interrupted'> => {
    // Replicas `<service>-<n>` share their service's lease: a scale or resize of the service holds them too.
    const key = leaseKeyOf(service);
    let lease = await quick.watchLease(key);
    if (!lease.holder) {
      status.lease = undefined;
      return 'free';
    }
    while (lease.holder) {
      const h = lease.holder;
      status.lease = { workflowId: h.workflowId, runbook: h.runbook, startedBy: h.startedBy, since: h.since, expiresAt: h.expiresAt };
      setState('deferring');
      log.info('deferring to the lease holder', { service, holder: h.workflowId, runbook: h.runbook, failure: failure.kind });
      leaseFreed = false;
      if (await condition(() => leaseFreed || interrupted(), LEASE_SUPERVISOR_RECHECK_MS)) {
        if (interrupted()) return 'interrupted';
      }
      if (continueAsNewDue(input.continueAsNewAfterEvents)) await carryOn(failure);
      lease = await quick.watchLease(key);
    }
    status.lease = undefined;
    // Failures during the change were the change's own (stops, restarts): counted, dropped, and the service looked at now.
    status.deferredFailures = (status.deferredFailures ?? 0) + 1 + pending.length;
    pending.length = 0;
    const check = await checkNow();
    if (check.running && check.http.ok) {
      status.healthySince = now();
      setState('watching');
      log.info('healthy after the lease was released; no restart', { service });
      return 'healthy';
    }
    return 'free';
  };

  const giveUp = async () => {
    status.gaveUpAt = now();
    status.nextRetryAt = undefined;
    setState('gave-up');
    const ctx = await quick.failureContext({ service, tailLines: 30 });
    await sendAlert('restart-gave-up', 'critical', `gave up after ${status.attempts} restart attempts`, {
      attempts: status.attempts,
      'last failure': status.lastFailure ? `${status.lastFailure.kind} (${status.lastFailure.source}) at ${iso(status.lastFailure.at)}${status.lastFailure.detail ? `: ${status.lastFailure.detail}` : ''}` : 'unknown',
      'last exit code': ctx.exitCode,
      'oom killed': ctx.oomKilled,
      'log tail': ctx.logTail || '(empty)',
      'to resume': `temporal workflow signal --workflow-id '${workflowInfo().workflowId}' --name resume`,
    });
  };

  /**
   * One recovery cycle for a failure: backoff, restart, verify; repeat until healthy or out of
   * attempts. `immediate` skips the first backoff (an operator's resume).
   */
  const recover = async (failure: FailureRecord, immediate = false): Promise<void> => {
    status.lastFailure = failure;
    const failedAt = failure.at;
    status.healthySince = undefined;
    status.consecutiveProbeFailures = 0;
    for (;;) {
      // A change (scale, resize, restore, an operator's restart) holds the service: do not fight
      // it, and do not count what it does (a stop, a pause) towards giving up.
      const deferFirst = patched('defer-before-give-up');
      if (deferFirst) {
        const deferred = await deferToLease(failure);
        if (deferred === 'interrupted' || deferred === 'healthy') return;
      }
      if (status.attempts >= policy.maxAttempts) return giveUp();
      if (!(await waitForDependencies(failure))) return;
      if (!deferFirst && patched('defer-to-lease')) {
        const deferred = await deferToLease(failure);
        if (deferred === 'interrupted') return;
        if (deferred === 'healthy') return;
      }
      status.attempts += 1;
      const delay = immediate ? 0 : fullJitterDelayMs(policy, status.attempts, random());
      immediate = false;
      status.nextRetryAt = now() + delay;
      setState('backing-off');
      if (delay > 0 && (await condition(interrupted, delay))) return;
      if (interrupted()) return;
      status.nextRetryAt = undefined;

      // The restart is a change too: it holds the service's lease (taken beside the check, so it
      // costs no time), and a change that got there first is deferred to, without burning the attempt.
      const holdsLease = patched('supervisor-holds-lease');
      const [check, lease] = await Promise.all([
        checkNow(),
        holdsLease ? quick.acquireLease({ service: leaseKeyOf(service), runbook: RUNBOOK, wait: false, waitTimeoutMs: 0, maxHoldMs: (policy.stopTimeoutSec + 60) * 1000 + policy.healthTimeoutMs + 60_000 }) : Promise.resolve(undefined),
      ]);
      if (lease && !lease.granted) {
        status.attempts -= 1;
        const deferred = await deferToLease(failure);
        if (deferred === 'interrupted' || deferred === 'healthy') return;
        continue;
      }
      let restarted = false;
      let health: Awaited<ReturnType<Activities['waitHealthy']>>;
      try {
        // Recovered on its own in the meantime (someone else restarted it)? Then no restart.
        if (check.running && check.startedAt > status.lastFailure.at && check.http.ok) {
          log.info('service recovered without a restart', { service });
        } else {
          restarted = true;
          setState('restarting');
          const requestedAt = now();
          const result = await restarter.restartContainer({ service, requestedAt, stopTimeoutSec: policy.stopTimeoutSec });
          status.restartsTotal += 1;
          status.lastRestartAt = now();
          log.info('restarted', { service, attempt: status.attempts, alreadyDone: result.alreadyDone });
        }

        setState('verifying');
        health = await verifier.waitHealthy({
          service,
          url: input.healthUrl,
          timeoutMs: policy.healthTimeoutMs,
          intervalMs: Math.min(1_000, input.probeIntervalMs),
          probeTimeoutMs: input.probeTimeoutMs,
        });
      } finally {
        if (lease?.granted) {
          const { workflowId, runId } = workflowInfo();
          await CancellationScope.nonCancellable(() => nonEssential('lease release', () => quick.releaseLease({ service: leaseKeyOf(service), workflowId, runId, reason: 'supervisor restart done' })));
        }
      }
      // Events that our own restart caused (die on stop) are not new failures.
      status.lastRestartAt = now();
      // Restarts and time to recover (failure -> verified healthy) as worker metrics.
      if (patched('record-recovery-metric')) {
        await metrics
          .recordRecovery({ service, outcome: health.healthy ? 'healthy' : 'unhealthy', restarted, failedAt, ...(health.healthy ? { healthyAt: now() } : {}) })
          .catch((err: unknown) => log.warn('recovery metric not recorded', { error: String(err) }));
      }
      if (health.healthy) {
        status.healthySince = now();
        setState('watching');
        await resolveOpenAlerts();
        return;
      }
      status.lastFailure = { kind: 'probe', at: now(), source: 'verify', detail: `not healthy ${policy.healthTimeoutMs} ms after restart: ${health.last.error ?? `HTTP ${health.last.status}`}` };
    }
  };

  while (stopRequested === undefined) {
    const info = workflowInfo();
    if (info.continueAsNewSuggested || info.historyLength > input.continueAsNewAfterEvents) {
      await condition(allHandlersFinished);
      status.runsCarried += 1;
      return continueAsNew<typeof superviseService>(input satisfies SuperviseServiceParams, { status, pending, paused });
    }

    if (paused) {
      setState('paused');
      await condition(() => !paused || stopRequested !== undefined);
      if (stopRequested !== undefined) break;
      // Failures seen while paused are stale; look at the service afresh.
      pending.length = 0;
      resumeRequested = false;
      if (status.gaveUpAt === undefined) {
        setState('watching');
        const check = await checkNow();
        if (!check.http.ok) pending.push({ kind: 'probe', at: now(), source: 'resume', detail: check.http.error ?? `HTTP ${check.http.status}` });
        continue;
      }
    }

    if (status.state === 'gave-up' || status.gaveUpAt !== undefined) {
      if (status.state !== 'gave-up') setState('gave-up');
      if (!resumeRequested) await condition(() => resumeRequested || stopRequested !== undefined || paused);
      if (stopRequested !== undefined) break;
      if (paused) continue;
      resumeRequested = false;
      status.gaveUpAt = undefined;
      status.attempts = 0;
      pending.length = 0;
      const check = await checkNow();
      if (check.running && check.http.ok) {
        status.healthySince = now();
        setState('watching');
        await resolveOpenAlerts();
      } else {
        await recover({ kind: 'operator', at: now(), source: 'resume', detail: check.http.error ?? `HTTP ${check.http.status}` }, true);
      }
      continue;
    }

    resumeRequested = false;
    const failure = nextFailure();
    if (failure) {
      log.info('failure', { service, ...failure });
      await recover(failure);
      continue;
    }

    // Watching: wait for a signal, the next probe, or the end of the reset-after window.
    setState('watching');
    let wait = input.probeIntervalMs;
    if (status.attempts > 0 && status.healthySince !== undefined) {
      wait = Math.max(0, Math.min(wait, status.healthySince + policy.resetAfterMs - now()));
    }
    const woke = await condition(() => pending.length > 0 || interrupted(), wait);
    if (woke) continue;

    if (status.attempts > 0 && status.healthySince !== undefined && now() - status.healthySince >= policy.resetAfterMs) {
      log.info('healthy for the reset-after window; attempts reset', { service, attempts: status.attempts });
      status.attempts = 0;
      publish();
    }

    const check = await checkNow();
    if (!check.exists) {
      throw ApplicationFailure.nonRetryable(`service: container "${service}" no longer exists; supervision ended`, 'ServiceNotFound');
    }
    if (check.http.ok) {
      if (status.consecutiveProbeFailures > 0) publish();
      status.consecutiveProbeFailures = 0;
      if (status.healthySince === undefined) status.healthySince = now();
      continue;
    }
    status.consecutiveProbeFailures += 1;
    if (!check.running || status.consecutiveProbeFailures >= input.unhealthyThreshold) {
      pending.push({
        kind: 'probe',
        at: now(),
        source: 'probe',
        detail: check.running ? `${status.consecutiveProbeFailures} failed probes: ${check.http.error ?? `HTTP ${check.http.status}`}` : 'container not running',
      });
    }
    publish();
  }

  await condition(allHandlersFinished);
  setState('stopped');
  return { service, stoppedBy: stopRequested ?? 'operator', status };
}
