/**
 * Alert delivery on the real stack (Temporal, Mailpit) with webhook receivers on 127.0.0.1:
 * fallback, dedup with counts, resolve, Retry-After, dead letters and their replay, and a
 * worker SIGKILLed during a delivery.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { createActivities } from '../../src/activities';
import { deadLettersWorkflowId } from '../../src/activities/alerts';
import { parseAlerting, type AlertingConfig } from '../../src/config/alerting';
import type { Alert } from '../../src/schemas/alert';
import { activityDeps } from '../../src/workers/clients';
import type { AlertGroupState } from '../../src/workflows/alert-group';
import type { DeadLetterState } from '../../src/workflows/dead-letters';
import { recordHistory } from '../helpers/histories';
import { searchMail } from '../helpers/mailpit';
import { startReceiver, type Receiver } from '../helpers/receivers';
import { config, connectClient, startWorker, testLog, uniqueName, type RunningWorker } from '../helpers/temporal';
import { spawnWorker } from '../helpers/worker-process';
import { waitUntil } from '../helpers/wait';

let client: Client;
const workers: RunningWorker[] = [];
const receivers: Receiver[] = [];

before(async () => {
  client = await connectClient();
});

after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await Promise.all(receivers.map((r) => r.close()));
  await client.connection.close();
});

async function receiver(behaviour: Parameters<typeof startReceiver>[0] = 'ok', slowMs?: number) {
  const r = await startReceiver(behaviour, slowMs);
  receivers.push(r);
  return r;
}

/** A worker with this alerting config, and the activities a runbook would call to raise/resolve. */
async function setup(alerting: AlertingConfig, env: NodeJS.ProcessEnv = {}) {
  const worker = await startWorker({ alerting, env });
  workers.push(worker);
  const acts = createActivities({ ...activityDeps(config, testLog, { client, taskQueue: worker.taskQueue }), alerting, env });
  return { worker, acts };
}

const alert = (service: string, over: Partial<Alert> = {}): Alert => ({ severity: 'critical', service, summary: 'gave up after 3 restart attempts', dedupKey: `${service}/restart-gave-up`, details: { attempts: 3 }, ...over });

test('a failing channel and a slow one fall back to the next; repeats become one notification with a count; resolve is sent', async () => {
  const pd = await receiver('fail');
  const slack = await receiver('slow', 3_000);
  const hook = await receiver('ok');
  const { acts } = await setup(
    parseAlerting({
      channels: {
        pagerduty: { type: 'pagerduty', url: pd.url, routingKeyEnv: 'TEST_PD_KEY', fallback: 'slack', retry: { maxAttempts: 2, initialIntervalMs: 50 } },
        slack: { type: 'slack', url: slack.url, timeoutMs: 500, fallback: 'hook', retry: { maxAttempts: 1 } },
        hook: { type: 'webhook', url: hook.url },
      },
      routes: { critical: 'pagerduty', warning: 'hook' },
      grouping: { groupWaitMs: 800, groupIntervalMs: 60_000, repeatIntervalMs: 3_600_000 },
    }),
    { TEST_PD_KEY: 'routing-key-123' },
  );
  const service = uniqueName('alerted');
  for (let i = 0; i < 3; i++) await acts.sendAlert(alert(service));
  await waitUntil('the fallback delivery', () => hook.received.length >= 1, 20_000);
  const firing = hook.received[0]!.body;
  assert.equal(firing.status, 'firing');
  assert.equal(firing.count, 3, 'three raises, one notification');
  assert.equal(firing.dedupKey, `${service}/restart-gave-up`);
  assert.deepEqual((firing.fallbackFrom as Array<{ channel: string }>).map((f) => f.channel), ['pagerduty', 'slack']);
  assert.equal(pd.received.length, 2, 'pagerduty tried its 2 attempts');
  assert.equal(pd.received[0]!.body.event_action, 'trigger');
  assert.equal(pd.received[0]!.body.routing_key, 'routing-key-123');
  assert.equal(pd.received[0]!.body.dedup_key, `${service}/restart-gave-up`);
  assert.equal(slack.received.length, 1, 'slack timed out once');
  assert.equal(hook.received[0]!.headers['idempotency-key'], firing.id);

  // More repeats within the group interval: no new notification.
  await acts.sendAlert(alert(service));
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(hook.received.length, 1);

  // The condition clears: one resolve, through the same chain.
  await acts.resolveAlert({ dedupKey: `${service}/restart-gave-up` });
  await waitUntil('the resolve', () => hook.received.length >= 2, 20_000);
  assert.equal(hook.received[1]!.body.status, 'resolved');
  assert.equal(pd.received.at(-1)!.body.event_action, 'resolve');
  const group = await client.workflow.getHandle(`alert/${service}/restart-gave-up`).result();
  assert.equal((group as AlertGroupState).total, 4);
  await recordHistory(client, `alert/${service}/restart-gave-up`, 'alert-group-fallback-resolve');
});

test('a 429 with Retry-After is honoured before the next try', async () => {
  const hook = await receiver('ok');
  hook.script([{ status: 429, retryAfter: '2' }], 'ok');
  const { acts } = await setup(
    parseAlerting({
      channels: { hook: { type: 'webhook', url: hook.url, retry: { maxAttempts: 3, initialIntervalMs: 50 } } },
      routes: { critical: 'hook', warning: 'hook' },
      grouping: { groupWaitMs: 0 },
    }),
  );
  await acts.sendAlert(alert(uniqueName('ratelimited')));
  await waitUntil('the retried delivery', () => hook.received.length >= 2, 20_000);
  const gap = hook.received[1]!.at - hook.received[0]!.at;
  assert.ok(gap >= 1_900, `retried after ${gap} ms, not before the 2 s Retry-After`);
  assert.equal(hook.received[1]!.body.id, hook.received[0]!.body.id, 'the same notification');
});

test('all channels down -> dead letters; channels back -> replay delivers exactly once; discard needs a reason', async () => {
  const hook = await receiver('fail');
  const { worker, acts } = await setup(
    parseAlerting({
      channels: { hook: { type: 'webhook', url: hook.url, retry: { maxAttempts: 2, initialIntervalMs: 50 } } },
      routes: { critical: 'hook', warning: 'hook' },
      grouping: { groupWaitMs: 0 },
    }),
  );
  const service = uniqueName('undeliverable');
  await acts.sendAlert(alert(service));
  const dlq = client.workflow.getHandle(deadLettersWorkflowId(worker.taskQueue));
  const parked = await waitUntil('a dead letter', async () => {
    const s = await dlq.query<DeadLetterState>('list').catch(() => undefined);
    return s?.entries.find((e) => e.service === service);
  }, 20_000);
  assert.equal(parked.kind, 'alert');
  assert.match(parked.error, /hook: .*HTTP 500/);
  const triedWhileDown = hook.received.length;

  // Discard without a reason is refused, and changes nothing.
  await assert.rejects(dlq.executeUpdate('discard', { args: [{ ids: [parked.id], reason: '', by: 'alice' }] }), (err: Error) => /reason: a reason is required/.test(String((err.cause as Error | undefined)?.message)));
  assert.equal((await dlq.query<DeadLetterState>('list')).entries.length, 1);

  // The channel is back: replay delivers it once.
  hook.script([], 'ok');
  await dlq.signal('replay', { ids: [parked.id], by: 'alice' });
  await waitUntil('the replayed delivery', async () => (await dlq.query<DeadLetterState>('list')).entries.length === 0, 20_000);
  const delivered = hook.received.slice(triedWhileDown);
  assert.equal(delivered.length, 1, 'delivered exactly once');
  assert.equal(delivered[0]!.body.id, parked.id);
  const state = await dlq.query<DeadLetterState>('list');
  assert.match(state.replayed.at(-1)!.outcome, /delivered via hook \(by alice\)/);

  // A second replay request finds nothing to do.
  await dlq.signal('replay', { all: true });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(hook.received.length, triedWhileDown + 1);

  // Discarding with a reason removes an entry and records who and why.
  hook.script([], 'fail');
  const other = uniqueName('discarded');
  await acts.sendAlert(alert(other));
  const second = await waitUntil('a second dead letter', async () => (await dlq.query<DeadLetterState>('list')).entries.find((e) => e.service === other), 20_000);
  await dlq.executeUpdate('discard', { args: [{ ids: [second.id], reason: 'service decommissioned', by: 'bob' }] });
  const after = await dlq.query<DeadLetterState>('list');
  assert.equal(after.entries.length, 0);
  assert.deepEqual(after.discarded.map((d) => [d.id, d.reason, d.by]), [[second.id, 'service decommissioned', 'bob']]);
  await recordHistory(client, deadLettersWorkflowId(worker.taskQueue), 'dead-letters-replay-discard');
});

test('the email channel delivers through SMTP with the dedup key', async () => {
  const { acts } = await setup(parseAlerting({ channels: { email: { type: 'email' } }, routes: { critical: 'email', warning: 'email' }, grouping: { groupWaitMs: 0 } }));
  const service = uniqueName('mailed');
  await acts.sendAlert(alert(service, { severity: 'warning', summary: 'dependency down: db', dedupKey: `${service}/dependency-down` }));
  const mails = await waitUntil('the email', async () => {
    const m = await searchMail(service);
    return m.length > 0 ? m : undefined;
  }, 20_000);
  assert.match(mails[0]!.Subject, new RegExp(`\\[WARNING\\] ${service}: dependency down: db`));
});

test('worker SIGKILLed during a delivery: the notification reaches the receiver once per id (the dedup key makes the repeat harmless)', async () => {
  const hook = await receiver('slow', 2_500);
  const dir = mkdtempSync(path.join(tmpdir(), 'alerting-'));
  const file = path.join(dir, 'alerting.json');
  writeFileSync(file, JSON.stringify({ channels: { hook: { type: 'webhook', url: hook.url, timeoutMs: 10_000, retry: { maxAttempts: 5, initialIntervalMs: 100 } } }, routes: { critical: 'hook', warning: 'hook' }, grouping: { groupWaitMs: 0 } }));
  const taskQueue = uniqueName('alert-crash');
  process.env.DURABLE_OPS_ALERTING_CONFIG = file;
  const first = await spawnWorker(taskQueue);
  delete process.env.DURABLE_OPS_ALERTING_CONFIG;
  const acts = createActivities({ ...activityDeps(config, testLog, { client, taskQueue }), alerting: parseAlerting({ channels: { hook: { type: 'webhook', url: hook.url } }, routes: { critical: 'hook', warning: 'hook' } }) });
  const service = uniqueName('crash-delivery');
  await acts.sendAlert(alert(service));
  await waitUntil('the delivery in flight', () => hook.received.length >= 1, 20_000);
  await first.kill('SIGKILL');
  hook.script([], 'ok');
  process.env.DURABLE_OPS_ALERTING_CONFIG = file;
  const second = await spawnWorker(taskQueue);
  delete process.env.DURABLE_OPS_ALERTING_CONFIG;
  try {
    const group = client.workflow.getHandle(`alert/${service}/restart-gave-up`);
    await waitUntil('delivered after the crash', async () => (await group.query<AlertGroupState>('status')).last?.channel === 'hook', 40_000, 200);
    const ids = new Set(hook.received.map((r) => r.body.id));
    assert.equal(ids.size, 1, 'one notification');
    assert.ok(hook.received.length >= 1);
  } finally {
    await second.kill();
  }
});
