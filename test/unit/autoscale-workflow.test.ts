/**
 * autoscaleService's loop with stubbed activities (scripted CPU) on the real Temporal server:
 * high_cpu fires once and resolves, the state survives continue-as-new, pause stops sampling,
 * stop ends the run. (Scaling itself, with the real scaleService child, is in
 * test/integration/autoscale-service.test.ts.)
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type { Activities } from '../../src/activities';
import type { ResourceUsage } from '../../src/activities/resources';
import type { Alert } from '../../src/schemas/alert';
import type { AutoscaleServiceInput } from '../../src/schemas/autoscale-service';
import type { AutoscaleStatus } from '../../src/workflows/autoscale-service';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { sleep, waitUntil } from '../helpers/wait';

let client: Client;
let worker: RunningWorker;
let cpu = 95;
let samples = 0;
const alerts: Alert[] = [];
const resolved: string[] = [];

const stat = (v: number) => ({ peak: v, p95: v, mean: v });
const activities: Partial<Activities> = {
  sampleResources: async ({ service, mode }) => {
    samples += 1;
    return { service, mode, containers: [`${service}-1`], replicas: 1, samples: 1, windowMs: 10, onlineCpus: 2, cpuCores: stat(cpu / 100), cpuCoresMaxReplica: stat(cpu / 100), cpuPercentOfLimit: stat(cpu), memoryMb: stat(1), limits: { cpus: 1, memoryMb: 64, cpuReservation: 0, memoryReservationMb: 0 } } satisfies ResourceUsage;
  },
  sendAlert: async (a) => {
    alerts.push(a);
    return { dedupKey: a.dedupKey ?? '', groupWorkflowId: `alert/${a.dedupKey}` };
  },
  resolveAlert: async ({ dedupKey }) => {
    resolved.push(dedupKey);
    return { resolved: true };
  },
};

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('autoscale-test-unit'), activities });
});

after(async () => {
  await worker.stop();
  await client.connection.close();
});

test('high_cpu fires once and resolves; the state survives continue-as-new; pause stops sampling; stop ends the run', async () => {
  const service = uniqueName('asu');
  const input: AutoscaleServiceInput = {
    service,
    mode: 'containers',
    basePort: 19480,
    intervalMs: 1_000,
    sampleWindowMs: 1_000,
    // At max already: the CPU can only alert, never scale (no child in this test).
    minReplicas: 1,
    maxReplicas: 1,
    highCpu: { percent: 80, forMs: 2_000 },
    continueAsNewAfterEvents: 100,
  };
  const handle = await client.workflow.start('autoscaleService', { taskQueue: worker.taskQueue, workflowId: `autoscale/${service}`, args: [input] });
  try {
    const status = () => handle.query<AutoscaleStatus>('status');
    await waitUntil('high_cpu to fire', async () => alerts.length > 0, 30_000, 100);
    assert.equal(alerts.length, 1);
    assert.equal(alerts[0]!.severity, 'warning');
    assert.equal(alerts[0]!.dedupKey, `${service}/high_cpu`);
    // Keep the CPU high across a continue-as-new: the alert is not sent again.
    await waitUntil('a continue-as-new', async () => (await status()).runsCarried >= 1, 90_000, 250);
    const carried = await status();
    assert.equal(carried.highCpuFiring, true, 'the firing state is carried');
    assert.ok(carried.history.length > 0 && carried.history.every((d) => d.action === 'none' && d.desired === 1), 'held at max');
    assert.equal(alerts.length, 1, 'no second alert after continue-as-new');
    cpu = 10;
    await waitUntil('high_cpu to resolve', async () => resolved.includes(`${service}/high_cpu`), 30_000, 100);
    assert.equal((await status()).highCpuFiring, false);

    await handle.signal('pause', { by: 'test', reason: 'maintenance' });
    await waitUntil('paused', async () => (await status()).state === 'paused', 20_000, 100);
    const before = samples;
    await sleep(2_500);
    assert.equal(samples, before, 'no sampling while paused');
    await handle.signal('resume');
    await waitUntil('sampling again', async () => samples > before, 20_000, 100);
    await handle.signal('stop', { by: 'test', reason: 'done' });
    const final: AutoscaleStatus = await handle.result();
    assert.equal(final.state, 'stopped');
    assert.equal(final.scalesTotal, 0);
  } finally {
    await handle.terminate('test cleanup').catch(() => undefined);
  }
});
