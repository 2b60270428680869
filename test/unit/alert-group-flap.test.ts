/**
 * A flapping service: alertGroup with stubbed channels on the real Temporal server. A raise that
 * comes while the group's resolved notice is being sent, or right after the resolve, is not lost:
 * once the resolve is out, a fresh group (new notification ids) notifies it. Resolved again
 * before that fresh group began: nothing more is sent.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Activities } from '../../src/activities';
import type { Alert, Notification } from '../../src/schemas/alert';
import type { AlertGroupState } from '../../src/workflows/alert-group';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { sleep, waitUntil } from '../helpers/wait';

const GROUPING = { groupWaitMs: 100, groupIntervalMs: 1_000, repeatIntervalMs: 60_000 };

let client: Client;
let worker: RunningWorker;
const sent: Notification[] = [];
/** Resolved notices of these dedup keys wait until their gate opens (the notice "is being sent"). */
const gates = new Map<string, { open: () => void; opened: Promise<void> }>();

before(async () => {
  client = await connectClient();
  const activities: Partial<Activities> = {
    alertRoute: async () => ({ chain: [{ name: 'email', timeoutMs: 1_000, initialIntervalMs: 100, maxIntervalMs: 100, maxAttempts: 1 }], grouping: GROUPING }) as never,
    deliverNotification: async ({ channel, notification }) => {
      sent.push(notification);
      if (notification.status === 'resolved') await gates.get(notification.dedupKey)?.opened;
      return { channel, at: Date.now() } as never;
    },
  };
  worker = await startWorker({ taskQueue: uniqueName('alert-flap-unit'), activities });
});

after(async () => {
  await worker.stop();
  await client.connection.close();
});

function group(name: string) {
  const dedupKey = uniqueName(name);
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  gates.set(dedupKey, { open, opened });
  const alert: Alert = { severity: 'critical', service: 'web', summary: 'web: health check failing', dedupKey };
  const mine = () => sent.filter((n) => n.dedupKey === dedupKey);
  const raise = () =>
    client.workflow.signalWithStart('alertGroup', { taskQueue: worker.taskQueue, workflowId: `alert/${dedupKey}`, args: [{ dedupKey }], signal: 'raise', signalArgs: [{ alert, at: Date.now() }] });
  const resolve = (h: WorkflowHandle) => h.signal('resolve', { at: Date.now() });
  return { dedupKey, mine, raise, resolve, open };
}

test('a raise while the resolved notice is being sent starts a fresh notification cycle', async () => {
  const g = group('web/flap-during');
  const handle = await g.raise();
  await waitUntil('the first notification', () => g.mine().length === 1, 10_000, 50);
  await g.resolve(handle);
  await waitUntil('the resolved notice on its way', () => g.mine().some((n) => n.status === 'resolved'), 10_000, 50);

  await g.raise(); // the service fails again while the resolve is still being sent
  g.open();
  await waitUntil('a new firing notification after the resolve', () => g.mine().length === 3, 10_000, 50);
  const [first, resolved, again] = g.mine();
  assert.deepEqual([first!.status, resolved!.status, again!.status], ['firing', 'resolved', 'firing']);
  assert.notEqual(again!.id, first!.id, 'a fresh group: new notification ids');
  assert.equal(again!.count, 1);

  await g.resolve(handle);
  const state = (await handle.result()) as AlertGroupState;
  assert.equal(state.resolved, true);
  assert.equal(g.mine().at(-1)!.status, 'resolved');
  assert.equal(g.mine().length, 4);
});

test('a raise right after the resolve (before its notice went out) is notified once the resolve is sent', async () => {
  const g = group('web/flap-after');
  g.open();
  const handle = await g.raise();
  await waitUntil('the first notification', () => g.mine().length === 1, 10_000, 50);
  await g.resolve(handle);
  await g.raise();
  await waitUntil('resolved, then firing again', () => g.mine().length === 3, 10_000, 50);
  assert.deepEqual(g.mine().map((n) => n.status), ['firing', 'resolved', 'firing']);
  await g.resolve(handle);
  await handle.result();
});

test('raised and resolved again while the resolve is being sent: nothing more to tell', async () => {
  const g = group('web/flap-cleared');
  const handle = await g.raise();
  await waitUntil('the first notification', () => g.mine().length === 1, 10_000, 50);
  await g.resolve(handle);
  await waitUntil('the resolved notice on its way', () => g.mine().some((n) => n.status === 'resolved'), 10_000, 50);
  await g.raise();
  await g.resolve(handle);
  g.open();
  const state = (await handle.result()) as AlertGroupState;
  assert.equal(state.resolved, true);
  await sleep(500);
  assert.deepEqual(g.mine().map((n) => n.status), ['firing', 'resolved']);
});
