/**
 * scaleService with others around, on the real stack (Docker, HAProxy 2.6, Temporal): the balancer
 * starts empty, as the stack's config/lb.json has it, so replica 1 must be adopted; two operators
 * scaling one service at once; a scale waiting in line; a cancel after a replica was added; a
 * plan re-made when the service changed while it waited for its approval.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { startRunbook } from '../../src/runbooks/registry';
import { leaseKeyOf, leaseWorkflowId, type LeaseView } from '../../src/schemas/lease';
import type { ScaleServiceInput } from '../../src/schemas/scale-service';
import type { ScaleReport, ScaleResult } from '../../src/workflows/scale-service';
import { runDemo } from '../helpers/docker';
import { containerSlots, range, startTestLb, underLoad, type TestLb } from '../helpers/lb';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';
import { recordHistory } from '../helpers/histories';

const taskQueue = uniqueName('scale-coord');
const id = uniqueName('co').slice(3);
const B = {
  adopt: { backend: 'coord-a', service: `coorda-${id}`, frontendPort: 19601, base: 19610 },
  race: { backend: 'coord-r', service: `coordr-${id}`, frontendPort: 19621, base: 19630 },
  cancel: { backend: 'coord-c', service: `coordc-${id}`, frontendPort: 19641, base: 19650 },
  replan: { backend: 'coord-p', service: `coordp-${id}`, frontendPort: 19661, base: 19670 },
} as const;
type Scenario = (typeof B)[keyof typeof B];

let client: Client;
let worker: RunningWorker;
let lb: TestLb;

before(async () => {
  lb = await startTestLb(Object.values(B), { nginx: false });
  client = await connectClient();
  worker = await startWorker({ taskQueue, env: { ...process.env, DURABLE_OPS_LB_DIR: lb.dir } });
});

after(async () => {
  await worker?.stop();
  await client?.connection.close();
  await lb?.stop(id);
});

const run = (s: Scenario, input: Partial<ScaleServiceInput> & { replicas: number }) =>
  startRunbook(client, 'scaleService', { service: s.service, backend: s.backend, basePort: s.base, mode: 'containers', stepDelayMs: 200, healthTimeoutMs: 20_000, drainTimeoutMs: 3_000, ...input }, { taskQueue, workflowId: uniqueName(`scale-${s.service}`) });

const leaseOf = (service: string) => client.workflow.getHandle(leaseWorkflowId(leaseKeyOf(service), taskQueue)).query<LeaseView>('lease');

async function failureOf(p: Promise<unknown>) {
  const err = await p.then(
    () => assert.fail('expected the run to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, String(err));
  return err.cause;
}

test('the README path: replica 1 started by hand is not in HAProxy; scaling adopts it first, and it serves at 1 replica again', async () => {
  const s = B.adopt;
  await lb.seedContainer(s, { inBalancer: false });
  assert.deepEqual(await lb.stat(s.backend), [], 'the balancer starts empty, as config/lb.json has it');
  const upRun = await run(s, { replicas: 2 });
  const up = (await upRun.result()) as ScaleResult;
  assert.equal(up.outcome, 'scaled');
  assert.deepEqual(up.plan.adopt, [`${s.service}-1`]);
  await recordHistory(client, upRun.workflowId, 'scale-service-adopt');
  await lb.assertInRotation(s, [1, 2]);
  // Scaling back to 1 under load: replica 1 keeps serving; not one request fails.
  const { value: down, loads } = await underLoad([`http://127.0.0.1:${s.frontendPort}/`], async () => (await (await run(s, { replicas: 1 })).result()) as ScaleResult);
  assert.equal(down.outcome, 'scaled');
  await lb.assertInRotation(s, [1]);
  assert.deepEqual(await containerSlots(s.service), [1]);
  console.log(`adopt then 2->1 through HAProxy: ${JSON.stringify(loads[0])}`);
  assert.ok(loads[0]!.requests > 50);
  assert.equal(loads[0]!.errors + loads[0]!.non2xx, 0, 'no failed request at 1 replica');
  // Nothing to adopt, nothing to change: unchanged.
  const same = (await (await run(s, { replicas: 1 })).result()) as ScaleResult;
  assert.equal(same.outcome, 'unchanged');
});

test('two operators scale one service at once: one applies, the other is refused naming it; the result says what is there', async () => {
  const s = B.race;
  await lb.seedContainer(s, { inBalancer: false });
  const [a, b] = await Promise.all([run(s, { replicas: 4 }), run(s, { replicas: 2 })]);
  const settled = await Promise.allSettled([a.result(), b.result()]);
  const ok = settled.findIndex((r) => r.status === 'fulfilled');
  assert.ok(ok >= 0, `one run completes: ${JSON.stringify(settled.map((r) => r.status))}`);
  const winner = [a, b][ok]!;
  const loser = settled[1 - ok]!;
  assert.equal(loser.status, 'rejected', 'the other is refused');
  const cause = (loser as PromiseRejectedResult).reason.cause;
  assert.ok(cause instanceof ApplicationFailure, String(cause));
  assert.equal(cause.type, 'LeaseBusy');
  assert.match(cause.message, new RegExp(`${s.service} is busy: scaleService ${winner.workflowId} \\(started by `));
  const result = (settled[ok] as PromiseFulfilledResult<ScaleResult>).value;
  const target = ok === 0 ? 4 : 2;
  assert.deepEqual(result.after, range(target).map((n) => `${s.service}-${n}`));
  assert.deepEqual(await containerSlots(s.service), range(target), 'what the result says is what is there');
  await lb.assertInRotation(s, range(target));

  // Waiting in line instead: the second plans under the lease, from what the first left.
  const first = await run(s, { replicas: 1 });
  await waitUntil('first holds the lease', async () => (await leaseOf(s.service)).holder?.workflowId === first.workflowId);
  const second = await run(s, { replicas: 3, waitForLease: true, leaseWaitTimeoutMs: 60_000 });
  const [r1, r2] = (await Promise.all([first.result(), second.result()])) as ScaleResult[];
  assert.deepEqual(r1!.after, [`${s.service}-1`]);
  assert.deepEqual(r2!.before, [`${s.service}-1`], 'planned from what the first left');
  assert.deepEqual(await containerSlots(s.service), range(3));
  await lb.assertInRotation(s, range(3));
});

test('cancel after a replica was added: the run ends CANCELED after its undo; the starting set is back, in HAProxy too', async () => {
  const s = B.cancel;
  await lb.seedContainer(s, { inBalancer: false });
  await (await run(s, { replicas: 1 })).result(); // adopt replica 1
  await lb.assertInRotation(s, [1]);
  const h = await run(s, { replicas: 4, stepDelayMs: 3_000 });
  await waitUntil('one replica added', async () => (await h.query<ScaleReport>('status')).stepsDone >= 1, 60_000, 50);
  await h.cancel();
  const cause = await failureOf(h.result());
  assert.ok(cause instanceof CancelledFailure, `ends CANCELED (${String(cause)})`);
  await recordHistory(client, h.workflowId, 'scale-service-cancelled');
  assert.deepEqual(await containerSlots(s.service), [1], 'the added replica is gone');
  await lb.assertInRotation(s, [1]);
  // The undo ran after the cancel request, in the history.
  const events = (await h.fetchHistory()).events ?? [];
  const cancelAt = events.findIndex((e) => e.workflowExecutionCancelRequestedEventAttributes);
  const undone = events.slice(cancelAt).filter((e) => ['haproxyRemoveServer', 'removeReplicas'].includes(e.activityTaskScheduledEventAttributes?.activityType?.name ?? '')).map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name);
  assert.ok(cancelAt > 0 && undone.includes('removeReplicas') && undone.includes('haproxyRemoveServer'), `undo activities after the cancel: ${undone.join(', ')}`);
  await waitUntil('lease released', async () => (await leaseOf(s.service)).holder === undefined);
});

test('the service changed while the plan waited for approval: planned again and asked again; what is applied is what was approved', async () => {
  const s = B.replan;
  const seed = await lb.seedContainer(s, { inBalancer: false });
  const h = await run(s, { replicas: 3, approval: 'required' });
  const planned = async (pred: (p: { before: string[] }) => boolean) =>
    waitUntil('a plan awaiting approval', async () => {
      const v = await h.query<{ state: string; plan?: { before: string[]; steps: Array<{ replicas: string[] }> } }>('plan');
      return v.state === 'awaiting-approval' && v.plan && pred(v.plan) ? v : undefined;
    });
  const first = await planned((p) => p.before.length === 1);
  assert.equal(first.plan!.steps.length, 2, 'add 2, add 3');
  // Someone starts replica 2 by hand meanwhile (outside any runbook).
  const r2 = await runDemo({ name: `${s.service}-2`, port: s.base + 2, healthIntervalMs: 1_000 });
  lb.track(r2);
  await h.executeUpdate('approve', { args: [{ by: 'alice', reason: 'traffic is up' }] });
  const second = await planned((p) => p.before.length === 2);
  assert.deepEqual(second.plan!.before, [`${s.service}-1`, `${s.service}-2`]);
  assert.deepEqual(
    second.plan!.steps.map((x) => x.replicas),
    [[`${s.service}-3`]],
  );
  await h.executeUpdate('approve', { args: [{ by: 'bob', reason: 'the new plan is fine' }] });
  const r = (await h.result()) as ScaleResult;
  assert.equal(r.outcome, 'scaled');
  assert.equal(r.decision?.by, 'bob');
  await recordHistory(client, h.workflowId, 'scale-service-replanned');
  assert.deepEqual(await containerSlots(s.service), range(3));
  await lb.assertInRotation(s, range(3));
  void seed;
});
