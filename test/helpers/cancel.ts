/**
 * Cancelling a runbook at a step, as an operator does (UI, CLI, `temporal workflow cancel`), and
 * reading what happened from its history and its service lease.
 */
import assert from 'node:assert/strict';
import { CancelledFailure, WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { leaseWorkflowId, type LeaseView } from '../../src/schemas/lease';
import { waitUntil } from './wait';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

export async function historyEvents(handle: WorkflowHandle): Promise<HistoryEvent[]> {
  return (await handle.fetchHistory()).events ?? [];
}

/** The activity types scheduled so far, in order. */
export async function scheduledActivities(handle: WorkflowHandle): Promise<string[]> {
  return (await historyEvents(handle)).flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
}

/** Wait until `activityType` runs (pending and picked up by a worker): the moment to cancel "inside" that step. */
export async function waitForRunningActivity(handle: WorkflowHandle, activityType: string, timeoutMs = 30_000): Promise<void> {
  await waitUntil(`${activityType} to run in ${handle.workflowId}`, async () => {
    const { raw } = await handle.describe();
    // PENDING_ACTIVITY_STATE_STARTED = 2
    return raw.pendingActivities?.some((a) => a.activityType?.name === activityType && Number(a.state) === 2);
  }, timeoutMs, 50);
}

/** Cancel, then expect the run to end CANCELED (WorkflowFailedError caused by a CancelledFailure). */
export async function cancelAndExpectCancelled(handle: WorkflowHandle): Promise<void> {
  await handle.cancel();
  const err = await handle.result().then(
    (r: unknown) => new Error(`expected the run to end cancelled; it completed with ${JSON.stringify(r)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${String(err)}`);
  assert.ok(err.cause instanceof CancelledFailure, `expected a CancelledFailure cause, got ${String(err.cause)}`);
  assert.equal((await handle.describe()).status.name, 'CANCELLED');
}

/** The activity types scheduled after the cancel request (the undo), in order. */
export async function activitiesAfterCancel(handle: WorkflowHandle): Promise<string[]> {
  const events = await historyEvents(handle);
  const at = events.findIndex((e) => e.workflowExecutionCancelRequestedEventAttributes);
  assert.ok(at >= 0, 'the history has a WorkflowExecutionCancelRequested event');
  return events.slice(at + 1).flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
}

/** The lease of `key` has no holder (or its workflow has ended). */
export async function waitLeaseFree(client: Client, key: string, taskQueue: string, timeoutMs = 15_000): Promise<void> {
  const h = client.workflow.getHandle(leaseWorkflowId(key, taskQueue));
  await waitUntil(`the lease of ${key} to be free`, async () => {
    if ((await h.describe()).status.name !== 'RUNNING') return true;
    return !(await h.query<LeaseView>('lease')).holder;
  }, timeoutMs, 100);
}
