/**
 * Cancel leaves the service as it was: resizeService cancelled at each apply step, on a real
 * demo container (real `docker update`, real health checks). Ports 127.0.0.1:19460-19469.
 */
import { leaseKeyOf } from '../../src/schemas/lease';
import assert from 'node:assert/strict';
import { Context } from '@temporalio/activity';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { createActivities } from '../../src/activities';
import type { ResourceLimits } from '../../src/activities/resources';
import type { ResizeServiceInput } from '../../src/schemas/resize-service';
import type { ResizeReport } from '../../src/workflows/resize-service';
import { activitiesAfterCancel, cancelAndExpectCancelled, waitForRunningActivity, waitLeaseFree } from '../helpers/cancel';
import { docker, httpStatus, inspect, runDemo, type DemoContainer } from '../helpers/docker';
import { config, connectClient, startWorker, TEST_ALERTING, testLog, uniqueName, type RunningWorker } from '../helpers/temporal';
import { activityDeps } from '../../src/workers/clients';
import { waitUntil } from '../helpers/wait';
import { recordHistory } from '../helpers/histories';

const MIB = 1024 * 1024;
let client: Client;
let worker: RunningWorker;
/** While set, a `docker update` to these limits waits this long first, deaf to cancellation (as the engine call is). */
let slowApply: { cpus: number; ms: number } | undefined;
const containers: DemoContainer[] = [];

before(async () => {
  client = await connectClient();
  const taskQueue = uniqueName('cancel-resize');
  const real = createActivities({ ...activityDeps(config, testLog, { client, taskQueue }), alerting: TEST_ALERTING });
  worker = await startWorker({
    taskQueue,
    activities: {
      ...real,
      async applyResourceLimits(input: { service: string; mode: 'containers' | 'swarm'; limits: ResourceLimits; delayMs?: number }) {
        if (slowApply && input.limits.cpus === slowApply.cpus) await new Promise((r) => setTimeout(r, slowApply!.ms));
        return real.applyResourceLimits(input);
      },
      // The read-back is milliseconds for real: a cancellable pause first, so the cancel lands inside it.
      async waitResourcesApplied(input: Parameters<typeof real.waitResourcesApplied>[0]) {
        if (input.limits.cpus === fast.limits.cpu) await Context.current().sleep(3_000);
        return real.waitResourcesApplied(input);
      },
    },
  });
});

after(async () => {
  await Promise.all(containers.map((c) => c.remove()));
  await worker?.stop();
  await client?.connection.close();
});

/**
 * A demo container with starting limits and reservations: 1 CPU (0.5 reserved), 256 MiB (128 MiB
 * reserved). Explicit reservations, because `docker update` cannot unset one: a container without
 * them gets back their neutral equivalents (reservation = limit, 1024 shares).
 */
async function demo(port: number): Promise<DemoContainer> {
  const c = await runDemo({ name: uniqueName('cr'), port });
  containers.push(c);
  await docker.getContainer(c.name).update({ NanoCpus: 1e9, Memory: 256 * MIB, MemorySwap: 256 * MIB, MemoryReservation: 128 * MIB, CpuShares: 512 });
  await waitUntil(`${c.name} to serve`, async () => (await httpStatus(c.healthUrl)) === 200, 20_000);
  return c;
}

const limitsOf = async (name: string) => {
  const h = (await inspect(name)).HostConfig as { NanoCpus?: number; Memory?: number; MemoryReservation?: number; CpuShares?: number };
  return { NanoCpus: h.NanoCpus ?? 0, Memory: h.Memory ?? 0, MemoryReservation: h.MemoryReservation ?? 0, CpuShares: h.CpuShares ?? 0 };
};

const fast = { windowMs: 2_000, sampleIntervalMs: 1_000, healthTimeoutMs: 10_000, verifyIntervalMs: 250, limits: { cpu: 0.5, memoryMb: 128 } } satisfies Partial<ResizeServiceInput>;

// The apply steps after the write (the engine read back until it shows the limits, the health watched);
// a cancel inside the write itself (milliseconds for real) is the slow docker update test below.
for (const [step, port] of [
  ['waitResourcesApplied', 19462],
  ['watchHealth', 19463],
] as const) {
  test(`cancelled in ${step}: the original limits are back, the run ends CANCELED, the lease is free`, async () => {
    const c = await demo(port);
    const original = await limitsOf(c.name);
    assert.deepEqual(original, { NanoCpus: 1e9, Memory: 256 * MIB, MemoryReservation: 128 * MIB, CpuShares: 512 });
    const t0 = Date.now();
    const handle = await client.workflow.start('resizeService', {
      taskQueue: worker.taskQueue,
      workflowId: uniqueName('cancel-resize'),
      args: [{ service: c.name, ...fast, verifyStableMs: 30_000, healthUrl: c.healthUrl }],
    });
    await waitForRunningActivity(handle, step);
    await cancelAndExpectCancelled(handle);
    console.log(`  cancelled in ${step}: ${Date.now() - t0} ms from start to CANCELED`);
    await recordHistory(client, handle.workflowId, `resize-service-cancelled-in-${step}`);

    assert.deepEqual(await limitsOf(c.name), original, 'docker inspect: the limits from before the run');
    const report = await handle.query<ResizeReport>('status');
    assert.equal(report.outcome, 'rolled-back');
    assert.equal(report.failure, 'cancelled');
    assert.deepEqual(report.finalLimits, report.plan!.current, 'the report reads back the old limits');
    // The undo ran after the cancel: the old limits written and awaited, read back.
    const undo = await activitiesAfterCancel(handle);
    assert.ok(undo.includes('applyResourceLimits') && undo.includes('waitResourcesApplied'), `undo after the cancel request: ${undo.join(', ')}`);
    assert.ok(undo.indexOf('readResourceLimits') > undo.indexOf('applyResourceLimits'));
    await waitLeaseFree(client, leaseKeyOf(c.name), worker.taskQueue);
    assert.equal(await httpStatus(c.healthUrl), 200, 'the service still serves');
  });
}

test('cancelled while a slow docker update is in flight: the undo waits for it, so the old limits win', async () => {
  const c = await demo(19464);
  const original = await limitsOf(c.name);
  slowApply = { cpus: fast.limits.cpu, ms: 2_000 };
  try {
    const handle = await client.workflow.start('resizeService', { taskQueue: worker.taskQueue, workflowId: uniqueName('cancel-resize'), args: [{ service: c.name, ...fast, verifyStableMs: 30_000, healthUrl: c.healthUrl }] });
    const t0 = Date.now();
    await waitForRunningActivity(handle, 'applyResourceLimits');
    await cancelAndExpectCancelled(handle);
    console.log(`  cancelled in a slow docker update: CANCELED ${Date.now() - t0} ms after the update started`);
    assert.ok((await activitiesAfterCancel(handle)).includes('applyResourceLimits'), 'the undo wrote the old limits after the cancel request');
    await waitUntil('the worker to have no activity in flight', () => worker.worker.getStatus().numInFlightActivities === 0, 30_000, 100);
    assert.deepEqual(await limitsOf(c.name), original, 'docker inspect: the limits from before the run, after every activity has ended');
  } finally {
    slowApply = undefined;
  }
});
