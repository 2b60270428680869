/**
 * alertGroup's timing rules with stubbed channels on the real Temporal server (short grouping):
 * the same alert raised again (a scheduled check that keeps failing) is not mailed again at each
 * group interval, only at the repeat interval with the count of raises since; a changed alert
 * (another severity) is mailed a group interval after the last notification; resolve ends it.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type { Activities } from '../../src/activities';
import type { Alert, Notification } from '../../src/schemas/alert';
import type { AlertGroupState } from '../../src/workflows/alert-group';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

const GROUPING = { groupWaitMs: 100, groupIntervalMs: 1_000, repeatIntervalMs: 5_000 };

let client: Client;
let worker: RunningWorker;
const sent: Notification[] = [];

before(async () => {
  client = await connectClient();
  const activities: Partial<Activities> = {
    alertRoute: async () => ({ chain: [{ name: 'email', timeoutMs: 1_000, initialIntervalMs: 100, maxIntervalMs: 100, maxAttempts: 1 }], grouping: GROUPING }) as never,
    deliverNotification: async ({ channel, notification }) => {
      sent.push(notification);
      return { channel, at: Date.now() } as never;
    },
  };
  worker = await startWorker({ taskQueue: uniqueName('alert-group-unit'), activities });
});

after(async () => {
  await worker.stop();
  await client.connection.close();
});

test('repeats of the same alert wait for the repeat interval (with a count); a severity change goes out after the group interval', async () => {
  const dedupKey = uniqueName('postgres/x/backups');
  const mine = () => sent.filter((n) => n.dedupKey === dedupKey);
  const alert = (severity: Alert['severity']): Alert => ({ severity, service: 'postgres/x', summary: 'backups: RPO at risk', dedupKey });
  const raise = (a: Alert) =>
    client.workflow.signalWithStart('alertGroup', { taskQueue: worker.taskQueue, workflowId: `alert/${dedupKey}`, args: [{ dedupKey }], signal: 'raise', signalArgs: [{ alert: a, at: Date.now() }] });
  const handle = await raise(alert('warning'));
  await waitUntil('the first notification', async () => mine().length === 1, 10_000, 50);
  const t0 = Date.now();

  // The same alert, raised again and again for longer than two group intervals: no new email.
  for (let i = 0; i < 5; i += 1) {
    await raise(alert('warning'));
    await sleep(500);
  }
  assert.equal(mine().length, 1, `repeats of an unchanged alert are not mailed at the group interval (${Date.now() - t0} ms)`);

  // At the repeat interval: one notification counting the raises since the last one.
  await waitUntil('the repeat notification', async () => mine().length === 2, 10_000, 50);
  assert.ok(Date.now() - t0 >= GROUPING.repeatIntervalMs - 200, `repeated after ${Date.now() - t0} ms`);
  assert.equal(mine()[1]!.count, 5);
  assert.equal(mine()[1]!.status, 'firing');

  // A change (warning -> critical): out after the group interval, not the repeat interval.
  const t1 = Date.now();
  await raise(alert('critical'));
  await waitUntil('the escalation', async () => mine().length === 3, 4_000, 50);
  assert.ok(Date.now() - t1 < GROUPING.repeatIntervalMs, `escalated after ${Date.now() - t1} ms`);
  assert.equal(mine()[2]!.alert.severity, 'critical');

  await handle.signal('resolve', { at: Date.now() });
  const state = (await handle.result()) as AlertGroupState;
  assert.equal(state.resolved, true);
  assert.equal(mine().at(-1)!.status, 'resolved');
  assert.equal(state.total, 7);
});
