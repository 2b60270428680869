/**
 * recoveryDrill run twice under the same workflow id, on the real Temporal server, with the real
 * fault activity (drillKillContainer and its once-per-run record in a temporary drills folder)
 * against a fake Docker engine: the second run kills the container again (it does not find the
 * first run's record and "recover" from nothing), and each run's recovery child has its own id.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type Docker from 'dockerode';
import { createActivities, type Activities } from '../../src/activities';
import { createDrillActivities, sanitiseId } from '../../src/activities/drill';
import { activityDeps } from '../../src/workers/clients';
import type { DrillReport } from '../../src/workflows/recovery-drill';
import { config, connectClient, startWorker, TEST_ALERTING, testLog, uniqueName, type RunningWorker } from '../helpers/temporal';

let client: Client;
let worker: RunningWorker;
let dataDir: string;
const kills: string[] = [];

before(async () => {
  client = await connectClient();
  dataDir = await mkdtemp(path.join(tmpdir(), 'drill-rerun-'));
  const docker = {
    getContainer: (name: string) => ({
      inspect: async () => ({ State: { Running: true, Pid: 4242 } }),
      kill: async () => {
        kills.push(name);
      },
    }),
  } as unknown as Docker;
  const real = createDrillActivities({ docker, log: testLog, env: { ...process.env, DURABLE_OPS_DATA: dataDir } });
  const healthy = { healthy: true, waitedMs: 1, probes: 1, last: { ok: true, status: 200, latencyMs: 1 } };
  // The rest (e.g. the recovery child's service lease) real, on this worker's task queue.
  const taskQueue = uniqueName('drill-rerun-unit');
  const stubs: Partial<Activities> = {
    drillKillContainer: real.drillKillContainer,
    inspectService: async (service) => ({ service, id: 'x', image: 'demo', running: true, status: 'running', exitCode: 0, oomKilled: false, startedAt: 1, finishedAt: 0, health: 'healthy', restartCount: 0 }),
    waitHealthy: async () => healthy,
    drillDetect: async () => ({ detected: true, at: Date.now(), probes: 1, error: 'ECONNREFUSED' }),
    restartContainer: async ({ service }) => ({ service, alreadyDone: false, startedAt: Date.now() }),
    drillWriteReport: async () => ({ dir: dataDir, json: 'report.json', markdown: 'report.md', svg: 'timeline.svg', sha256: 'x' }),
  };
  const activities = { ...createActivities({ ...activityDeps(config, testLog, { client, taskQueue }), alerting: TEST_ALERTING }), ...stubs };
  worker = await startWorker({ taskQueue, activities });
});

after(async () => {
  await worker.stop();
  await client.connection.close();
  await rm(dataDir, { recursive: true, force: true });
});

test('a drill re-run under the same workflow id faults for real again, with its own recovery child', async () => {
  const service = uniqueName('drill-rerun');
  const workflowId = `drill/${service}`;
  const input = { scenario: 'kill-container', target: { service, healthUrl: 'http://127.0.0.1:9/health', healthTimeoutMs: 1_000 } };
  const run = () => client.workflow.execute('recoveryDrill', { taskQueue: worker.taskQueue, workflowId, args: [input] }) as Promise<DrillReport>;

  const first = await run();
  const second = await run();

  assert.deepEqual(kills.filter((k) => k === service), [service, service], 'the second run kills the container too');
  for (const r of [first, second]) {
    assert.equal(r.outcome, 'recovered');
    const fault = r.steps.find((s) => s.name.startsWith('fault:'));
    assert.match(fault?.detail ?? '', /SIGKILL to .* \(pid 4242\)/);
  }
  assert.notEqual(first.recovery?.workflowId, second.recovery?.workflowId, "each run's recovery child has its own id");
  assert.ok(String(second.recovery?.workflowId).startsWith(`${workflowId}/`));
  // One fault record per run in the drill's folder.
  const records = (await readdir(path.join(dataDir, 'drills', sanitiseId(workflowId)))).filter((f) => f.startsWith('fault-kill-container'));
  assert.equal(records.length, 2, records.join(', '));
});
