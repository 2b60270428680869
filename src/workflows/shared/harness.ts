/**
 * The harness every state-changing runbook runs through (the workflow side of the runbook core):
 *
 *   beginRunbook (validate, search attributes)  -> holdingLease(service)  -> plan -> planGate
 *   -> apply through a Saga (undo registered before each step)  -> release  -> report
 *
 *  - `holdingLease` takes the service's lease (`lease/<service>`, src/workflows/service-lease.ts):
 *    refused at once with the holder's name, or queued when the input says `waitForLease`; the lease
 *    is always released, also when the run is cancelled or fails;
 *  - `undoing` runs compensations (and the report of a failed change) in a non-cancellable scope,
 *    so a cancel from the UI or `temporal workflow cancel` still undoes every step done;
 *  - `nonEssential` runs a call whose failure must never end a long-running workflow (metrics,
 *    resolve notices);
 *  - `continueAsNewIfDue` is the one check a long-running loop (and its inner loops) makes.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { LEASE_APPLY_BUDGET_MS, LEASE_MAX_HOLD_MS } from '../../config/defaults';
import { describeHolder, type LeaseAnswer, type LeaseHolder } from '../../schemas/lease';
import { leaseGrantedSignal } from '../service-lease';
import { now } from './deterministic';
import { rootMessage } from './errors';

export const LEASE_BUSY = 'LeaseBusy';
export const LEASE_TIMEOUT = 'LeaseWaitTimedOut';
const LEASE_PATCH = 'service-lease';

const leases = proxyActivities<Activities>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 10 },
});

/** A lost grant signal (or a lease workflow that was replaced) is caught by asking again this often. */
const REASK_MS = 30_000;

export interface LeaseOptions {
  service: string;
  runbook: string;
  waitForLease: boolean;
  leaseWaitTimeoutMs: number;
  /** The lease is freed after this long even if this run still holds it (default: approval timeout + apply budget). */
  maxHoldMs?: number;
  approvalTimeoutMs?: number;
  /** Shown while waiting in line. */
  onQueued?: (answer: Extract<LeaseAnswer, { queued: true }>) => void;
}

/**
 * Run `body` holding the lease of `opts.service`. A busy service fails at once (non-retryable,
 * type LeaseBusy, naming the holder) unless `waitForLease`: then this run waits in line up to
 * `leaseWaitTimeoutMs` (type LeaseWaitTimedOut after that). The lease is released in a
 * non-cancellable scope, whatever `body` does.
 */
export async function holdingLease<T>(opts: LeaseOptions, body: (lease?: LeaseHolder) => Promise<T>): Promise<T> {
  // Runs recorded before leases existed replay without them.
  if (!patched(LEASE_PATCH)) return body();
  const info = workflowInfo();
  const me = { workflowId: info.workflowId, runId: info.runId };
  const maxHoldMs = Math.min(LEASE_MAX_HOLD_MS, opts.maxHoldMs ?? (opts.approvalTimeoutMs ?? 0) + LEASE_APPLY_BUDGET_MS);
  const ask = () => leases.acquireLease({ service: opts.service, runbook: opts.runbook, wait: opts.waitForLease, waitTimeoutMs: opts.leaseWaitTimeoutMs, maxHoldMs });
  const release = (reason: string) =>
    CancellationScope.nonCancellable(() => leases.releaseLease({ service: opts.service, ...me, reason })).catch((err: unknown) =>
      // The lease's own liveness check frees it soon after this run ends.
      log.warn('lease not released', { service: opts.service, error: rootMessage(err) }),
    );

  let granted: LeaseHolder | undefined;
  setHandler(leaseGrantedSignal, (h) => {
    if (h.workflowId === me.workflowId && h.runId === me.runId) granted = h;
  });
  const first = await ask();
  if (first.granted) granted = first.holder;
  else if (!first.queued) {
    throw ApplicationFailure.create({
      type: LEASE_BUSY,
      nonRetryable: true,
      message: `${opts.service} is busy: ${describeHolder(first.holder)} holds its lease; start again when it has finished, or with waitForLease: true to wait in line`,
      details: [{ service: opts.service, holder: first.holder }],
    });
  } else {
    opts.onQueued?.(first);
    const deadline = now() + opts.leaseWaitTimeoutMs;
    try {
      while (!granted && now() < deadline) {
        if (await condition(() => granted !== undefined, Math.max(1, Math.min(deadline - now(), REASK_MS)))) break;
        const again = await ask();
        if (again.granted) granted = again.holder;
      }
    } catch (err) {
      // Cancelled while waiting in line: leave the line.
      await release(isCancellation(err) ? 'cancelled while waiting' : `failed while waiting: ${rootMessage(err)}`);
      throw err;
    }
    if (!granted) {
      await release('gave up waiting');
      throw ApplicationFailure.create({
        type: LEASE_TIMEOUT,
        nonRetryable: true,
        message: `${opts.service} stayed busy for ${opts.leaseWaitTimeoutMs} ms (held by ${describeHolder(first.holder)}); nothing changed`,
        details: [{ service: opts.service, holder: first.holder }],
      });
    }
  }
  let outcome = 'finished';
  try {
    return await body(granted);
  } catch (err) {
    outcome = isCancellation(err) ? 'cancelled' : `failed: ${rootMessage(err)}`;
    throw err;
  } finally {
    await release(outcome);
  }
}

/**
 * Run the undo of a change (compensations, the failure alert) where a cancel cannot stop it.
 * Everything a runbook does after a failure or a cancel goes through here.
 */
export function undoing<T>(fn: () => Promise<T>): Promise<T> {
  return CancellationScope.nonCancellable(fn);
}

/** A call whose failure must never end the workflow (metrics, resolve notices): logged, then ignored. */
export async function nonEssential<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    if (isCancellation(err)) throw err;
    log.warn(`${what} failed (not essential; carrying on)`, { error: rootMessage(err) });
    return undefined;
  }
}

/** True when this run's history should be carried into a new run (the server suggests it, or it passed `maxEvents`). */
export function continueAsNewDue(maxEvents: number): boolean {
  const info = workflowInfo();
  return info.continueAsNewSuggested || info.historyLength > maxEvents;
}
