/**
 * Service leases on the real Temporal dev server: the lease workflow and its activities are real;
 * the holders are restartService runs whose Docker activities are stubbed (a restart that takes as
 * long as the test says). One change per service: a second is refused naming the first, or waits
 * in line; a terminated holder's lease is freed by the liveness check; a cancelled waiter leaves
 * the line; the supervisor defers to a holder and looks again when the lease is freed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { Activities } from '../../src/activities';
import { leaseKeyOf, leaseWorkflowId, type LeaseView } from '../../src/schemas/lease';
import type { RestartServiceInput } from '../../src/schemas/restart-service';
import type { SupervisorStatus } from '../../src/workflows/supervise-service';
import { createLeaseActivities } from '../../src/activities/leases';
import { connectClient, startWorker, testLog, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';
import { recordHistory } from '../helpers/histories';

let client: Client;
let w: RunningWorker;

/** A container in memory; each restart takes `restartMs` (cancellable like the real one: it heartbeats). */
const fake = {
  restartMs: 1_500,
  /** Services whose next restart takes 20 s (a holder to terminate). */
  slowOnce: new Set<string>(),
  restarts: [] as Array<{ service: string; at: number; by: string }>,
  healthy: true,
  running: true,
  startedAt: Date.now(),
};

const stubs: Partial<Activities> = {
  inspectService: async (service) => ({ service, id: 'x', image: 'demo', running: true, status: 'running', exitCode: 0, oomKilled: false, startedAt: fake.startedAt, finishedAt: 0, health: 'none', restartCount: 0 }),
  restartContainer: async ({ service }) => {
    const { Context } = await import('@temporalio/activity');
    const ctx = Context.current();
    fake.restarts.push({ service, at: Date.now(), by: ctx.info.workflowExecution?.workflowId ?? '?' });
    const end = Date.now() + (fake.slowOnce.delete(service) ? 20_000 : fake.restartMs);
    while (Date.now() < end) {
      ctx.heartbeat();
      await ctx.sleep(100);
    }
    fake.startedAt = Date.now();
    fake.running = true;
    return { service, alreadyDone: false, startedAt: fake.startedAt };
  },
  waitHealthy: async () => ({ healthy: true, waitedMs: 1, probes: 1, last: { ok: true, status: 200, latencyMs: 1 } }),
  checkService: async () => ({ exists: true, running: fake.running, startedAt: fake.startedAt, http: fake.healthy ? { ok: true, status: 200, latencyMs: 1 } : { ok: false, error: 'ECONNREFUSED', latencyMs: 1 } }),
  recordRecovery: async () => undefined,
  sendAlert: async (a) => ({ dedupKey: a.dedupKey ?? 'x', groupWorkflowId: 'x' }),
  resolveAlert: async () => ({ resolved: true }),
};

before(async () => {
  client = await connectClient();
  // The lease activities are the real ones (Temporal only), with a short liveness check and idle end.
  const taskQueue = uniqueName('lease-test');
  const leases = createLeaseActivities({ client, taskQueue, log: testLog, livenessCheckMs: 300, idleEndMs: 3_000 });
  w = await startWorker({ taskQueue, activities: { ...stubs, ...leases } });
});

after(async () => {
  await w.stop();
  await client.connection.close();
});

const restart = (service: string, extra: Partial<RestartServiceInput> = {}, id = uniqueName(`restart-${service}`)) =>
  client.workflow.start('restartService', { taskQueue: w.taskQueue, workflowId: id, args: [{ service, reason: 'test', healthTimeoutMs: 5_000, ...extra }], workflowExecutionTimeout: '1 minute' });

const lease = (service: string) => client.workflow.getHandle(leaseWorkflowId(leaseKeyOf(service), w.taskQueue)).query<LeaseView>('lease');

const failureOf = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => assert.fail('expected the run to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, String(err));
  return err.cause;
};

test('a second change on a busy service is refused at once, naming the running change; the lease is free afterwards', async () => {
  const service = uniqueName('svc');
  const first = await restart(service);
  await waitUntil('first holds the lease', async () => (await lease(service)).holder?.workflowId === first.workflowId);
  const t0 = Date.now();
  const second = await restart(service);
  const cause = await failureOf(second.result());
  assert.ok(Date.now() - t0 < 1_400, 'refused before the first finished');
  assert.ok(cause instanceof ApplicationFailure);
  assert.equal(cause.type, 'LeaseBusy');
  assert.match(cause.message, new RegExp(`${service} is busy: restartService ${first.workflowId.replace(/[-/]/g, '.')} \\(started by .+, since 20`));
  assert.equal(fake.restarts.filter((r) => r.service === service).length, 1, 'the refused run changed nothing');
  await recordHistory(client, second.workflowId, 'restart-service-lease-refused');
  await first.result();
  const after = await waitUntil('lease released', async () => {
    const v = await lease(service);
    return v.holder === undefined ? v : undefined;
  });
  assert.deepEqual(
    after.recent.map((e) => e.what),
    ['granted', 'refused', 'released'],
  );
});

test('waitForLease: the second waits in line and runs after the first; no two restarts overlap', async () => {
  const service = uniqueName('svc');
  const first = await restart(service);
  await waitUntil('first holds the lease', async () => (await lease(service)).holder?.workflowId === first.workflowId);
  const second = await restart(service, { waitForLease: true, leaseWaitTimeoutMs: 20_000 });
  const queued = await waitUntil('second queued', async () => {
    const v = await lease(service);
    return v.queue.length === 1 ? v : undefined;
  });
  assert.equal(queued.queue[0]!.workflowId, second.workflowId);
  await Promise.all([first.result(), second.result()]);
  const rs = fake.restarts.filter((r) => r.service === service);
  assert.deepEqual(
    rs.map((r) => r.by),
    [first.workflowId, second.workflowId],
  );
  assert.ok(rs[1]!.at >= rs[0]!.at + fake.restartMs, 'the second restart began after the first had finished');
  await recordHistory(client, second.workflowId, 'restart-service-lease-queued');
});

test('a terminated holder cannot keep the service: the liveness check frees the lease and the waiter runs', async () => {
  const service = uniqueName('svc');
  fake.slowOnce.add(service);
  fake.restartMs = 200;
  const first = await restart(service);
  try {
    await waitUntil('first holds the lease', async () => (await lease(service)).holder?.workflowId === first.workflowId);
    const second = await restart(service, { waitForLease: true, leaseWaitTimeoutMs: 20_000 });
    await waitUntil('second queued', async () => (await lease(service)).queue.length === 1);
    const t0 = Date.now();
    await first.terminate('test: a holder that dies without releasing');
    await second.result();
    const freedIn = Date.now() - t0;
    assert.ok(freedIn < 5_000, `freed within the liveness bound (${freedIn} ms)`);
    const v = await lease(service);
    assert.ok(
      v.recent.some((e) => e.what === 'holder-gone' && e.workflowId === first.workflowId),
      JSON.stringify(v.recent),
    );
  } finally {
    fake.restartMs = 1_500;
  }
});

test('a waiter cancelled in line leaves the queue and changes nothing; one that waits too long gives up', async () => {
  const service = uniqueName('svc');
  fake.restartMs = 4_000;
  try {
    const first = await restart(service);
    await waitUntil('first holds the lease', async () => (await lease(service)).holder?.workflowId === first.workflowId);
    const waiter = await restart(service, { waitForLease: true, leaseWaitTimeoutMs: 30_000 });
    await waitUntil('queued', async () => (await lease(service)).queue.length === 1);
    await waiter.cancel();
    const cause = await failureOf(waiter.result());
    assert.ok(cause instanceof CancelledFailure, String(cause));
    await waitUntil('left the queue', async () => (await lease(service)).queue.length === 0);
    const impatient = await restart(service, { waitForLease: true, leaseWaitTimeoutMs: 1_000 });
    const c2 = await failureOf(impatient.result());
    assert.ok(c2 instanceof ApplicationFailure);
    assert.equal(c2.type, 'LeaseWaitTimedOut');
    assert.match(c2.message, /stayed busy for 1000 ms \(held by restartService/);
    await first.result();
    assert.equal(fake.restarts.filter((r) => r.service === service).length, 1);
  } finally {
    fake.restartMs = 1_500;
  }
});

test('the supervisor defers to a lease holder: no restart of its own, failures recorded, health looked at again on release', async () => {
  const service = uniqueName('svc');
  fake.restartMs = 2_500;
  try {
    const sup = await client.workflow.start('superviseService', {
      taskQueue: w.taskQueue,
      workflowId: `supervise/${service}`,
      args: [{ service, healthUrl: 'http://127.0.0.1:9/health', probeIntervalMs: 60_000, restart: { initialDelayMs: 10, multiplier: 2, maxDelayMs: 20, resetAfterMs: 60_000, healthTimeoutMs: 1_000 } }],
      workflowExecutionTimeout: '1 minute',
    });
    const status = () => sup.query<SupervisorStatus>('status');
    await waitUntil('watching', async () => (await status()).state === 'watching');
    const change = await restart(service);
    await waitUntil('change holds the lease', async () => (await lease(service)).holder?.workflowId === change.workflowId);
    // The change stops the container: the bridge forwards the die, twice.
    fake.running = false;
    await sup.signal('failure', { kind: 'die', at: Date.now(), source: 'test', exitCode: 143 });
    await sup.signal('failure', { kind: 'die', at: Date.now(), source: 'test', exitCode: 143 });
    const deferring = await waitUntil('deferring', async () => {
      const s = await status();
      return s.state === 'deferring' ? s : undefined;
    });
    assert.equal(deferring.lease?.workflowId, change.workflowId);
    assert.equal(deferring.lease?.runbook, 'restartService');
    assert.equal(deferring.attempts, 0, 'no attempt burned');
    await change.result();
    let last: SupervisorStatus | undefined;
    const s = await waitUntil(
      'watching again after the release',
      async () => {
        const s = (last = await status());
        return s.state === 'watching' && s.lease === undefined && (s.deferredFailures ?? 0) >= 2 ? s : undefined;
      },
      15_000,
    ).catch((err: Error) => assert.fail(`${err.message}: ${JSON.stringify(last)}`));
    assert.equal(s.restartsTotal, 0, 'the supervisor did not restart during or after the change');
    assert.equal(fake.restarts.filter((r) => r.service === service).length, 1, 'only the change restarted it');
    assert.equal(s.failuresSeen, 2, 'failures kept being recorded');
    await sup.signal('stop');
    await sup.result();
    await recordHistory(client, sup.workflowId, 'supervise-defers-to-lease');
  } finally {
    fake.restartMs = 1_500;
    fake.running = true;
  }
});

test('a lease with nothing to do ends by itself; the next change starts it afresh (update-with-start)', async () => {
  const service = uniqueName('svc');
  const r = await restart(service, {});
  await r.result();
  const handle = client.workflow.getHandle(leaseWorkflowId(leaseKeyOf(service), w.taskQueue));
  const firstRun = (await handle.describe()).runId;
  await waitUntil('idle lease ended', async () => (await handle.describe()).status.name === 'COMPLETED', 15_000);
  await recordHistory(client, handle.workflowId, 'service-lease-idle-end');
  const again = await restart(service, {});
  await again.result();
  const d = await handle.describe();
  assert.notEqual(d.runId, firstRun, 'a new lease run');
  assert.equal(fake.restarts.filter((x) => x.service === service).length, 2);
});
