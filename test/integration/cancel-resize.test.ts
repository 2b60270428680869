/**
 * Cancel leaves the service as it was: resizeService cancelled at each apply step, on a real
 * demo container (real `docker update`, real health checks). Ports 127.0.0.1:19460-19469.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type { ResizeServiceInput } from '../../src/schemas/resize-service';
import type { ResizeReport } from '../../src/workflows/resize-service';
import { activitiesAfterCancel, cancelAndExpectCancelled, waitForRunningActivity, waitLeaseFree } from '../helpers/cancel';
import { docker, httpStatus, inspect, runDemo, type DemoContainer } from '../helpers/docker';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

const MIB = 1024 * 1024;
let client: Client;
let worker: RunningWorker;
const containers: DemoContainer[] = [];

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('cancel-resize') });
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

// Each apply step: the limits written, the engine read back until it shows them, the health watched.
for (const [step, port] of [
  ['applyResourceLimits', 19461],
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

    assert.deepEqual(await limitsOf(c.name), original, 'docker inspect: the limits from before the run');
    const report = await handle.query<ResizeReport>('status');
    assert.equal(report.outcome, 'rolled-back');
    assert.equal(report.failure, 'cancelled');
    assert.deepEqual(report.finalLimits, report.plan!.current, 'the report reads back the old limits');
    // The undo ran after the cancel: the old limits written and awaited, read back.
    const undo = await activitiesAfterCancel(handle);
    assert.ok(undo.includes('applyResourceLimits') && undo.includes('waitResourcesApplied'), `undo after the cancel request: ${undo.join(', ')}`);
    assert.ok(undo.indexOf('readResourceLimits') > undo.indexOf('applyResourceLimits'));
    await waitLeaseFree(client, c.name, worker.taskQueue);
    assert.equal(await httpStatus(c.healthUrl), 200, 'the service still serves');
  });
}
