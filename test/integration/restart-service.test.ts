/**
 * restartService on the real stack: a real container, the real Docker engine, real SMTP.
 * Includes the crash test: the worker is SIGKILLed while the restart is in flight, started
 * again, and the container is restarted exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startRunbook } from '../../src/runbooks/registry';
import type { RestartReport } from '../../src/workflows/restart-service';
import { containerEvents, httpStatus, inspect, runDemo, type DemoContainer } from '../helpers/docker';
import { recordHistory } from '../helpers/histories';
import { mailText, waitForMail } from '../helpers/mailpit';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { spawnWorker } from '../helpers/worker-process';
import { waitUntil } from '../helpers/wait';

let client: Client;
let worker: RunningWorker;
const containers: DemoContainer[] = [];

before(async () => {
  client = await connectClient();
  worker = await startWorker();
});

after(async () => {
  await Promise.all(containers.map((c) => c.remove()));
  await worker.stop();
  await client.connection.close();
});

async function demo(port: number): Promise<DemoContainer> {
  const c = await runDemo({ name: uniqueName('restart'), port });
  containers.push(c);
  await waitUntil(`${c.name} to serve`, async () => (await httpStatus(c.healthUrl)) === 200, 20_000);
  return c;
}

test('restarts a real container once, verifies health, and reports', async () => {
  const c = await demo(18110);
  const before = await inspect(c.name);
  const t0 = Date.now();
  const handle = await startRunbook(client, 'restartService', { service: c.name, reason: 'integration test', healthUrl: c.healthUrl, stopTimeoutSec: 5 }, { taskQueue: worker.taskQueue });
  const report: RestartReport = await handle.result();
  assert.equal(report.phase, 'done');
  assert.equal(report.restarted, true);
  assert.equal(report.healthy, true);
  assert.ok(report.durationMs !== undefined && report.durationMs >= 0);
  const afterInfo = await inspect(c.name);
  assert.ok(Date.parse(afterInfo.State.StartedAt) > Date.parse(before.State.StartedAt), 'the container was started again');
  assert.equal(await httpStatus(c.healthUrl), 200);
  const starts = (await containerEvents(c.name, t0)).filter((e) => e.Action === 'start');
  assert.equal(starts.length, 1, 'exactly one start');
  // The operator sees the runbook by its search attributes and summary.
  const desc = await handle.describe();
  assert.deepEqual(desc.searchAttributes.Service, [c.name]);
  assert.deepEqual(desc.searchAttributes.Runbook, ['restartService']);
  assert.equal(await desc.staticSummary(), `restart ${c.name}: integration test`);
  await recordHistory(client, handle.workflowId, 'restart-service-real');
});

test('without a health URL, Docker\'s own HEALTHCHECK decides: the report waits for "healthy"', async () => {
  const c = await demo(18113);
  await waitUntil('Docker to call it healthy', async () => (await inspect(c.name)).State.Health?.Status === 'healthy', 20_000);
  const handle = await startRunbook(client, 'restartService', { service: c.name, reason: 'docker health', healthTimeoutMs: 20_000, stopTimeoutSec: 5 }, { taskQueue: worker.taskQueue });
  const report: RestartReport = await handle.result();
  assert.equal(report.healthy, true);
  assert.equal(report.restarted, true);
  assert.equal((await inspect(c.name)).State.Health?.Status, 'healthy', 'the image HEALTHCHECK passes after the restart');
});

test('an unknown container fails non-retryably and nothing is touched', async () => {
  const handle = await startRunbook(client, 'restartService', { service: 'durable-ops-no-such-container' }, { taskQueue: worker.taskQueue });
  await assert.rejects(handle.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    const cause = err.cause?.cause;
    assert.ok(cause instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(cause)}`);
    assert.equal(cause.type, 'ServiceNotFound');
    assert.equal(cause.nonRetryable, true);
    assert.match(cause.message, /service: no container named/);
    return true;
  });
  const history = await handle.fetchHistory();
  const scheduled = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name);
  assert.deepEqual(scheduled, ['inspectService'], 'only the read-only check ran');
});

test('bad input from the UI fails at once naming the field, before any activity', async () => {
  // The UI sends raw JSON that no starter validated: the workflow validates first thing.
  const handle = await client.workflow.start('restartService', { taskQueue: worker.taskQueue, workflowId: uniqueName('restart-bad'), args: [{ service: 'web', stopTimeoutSec: -1, colour: 'red' }] });
  await assert.rejects(handle.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, 'InvalidInput');
    assert.match(err.cause.message, /stopTimeoutSec: must be >= 0/);
    assert.match(err.cause.message, /colour: unknown field/);
    return true;
  });
  const history = await handle.fetchHistory();
  assert.equal((history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).length, 0);
});

test('a service that stays unhealthy after the restart fails the runbook and sends a critical email', async () => {
  const c = await demo(18111);
  writeFileSync(path.join(c.controlDir, 'unhealthy'), '');
  const handle = await startRunbook(client, 'restartService', { service: c.name, reason: 'unhealthy check', healthUrl: c.healthUrl, healthTimeoutMs: 2_000 }, { taskQueue: worker.taskQueue });
  await assert.rejects(handle.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, 'Unhealthy');
    return true;
  });
  const [mail] = await waitForMail(c.name);
  assert.match(mail!.Subject, new RegExp(`\\[CRITICAL\\] ${c.name}: not healthy`));
  assert.match(await mailText(mail!.ID), /Runbook:\s+restartService/);
});

test('worker SIGKILLed while the restart is in flight: after a new worker, the container was restarted exactly once', async () => {
  const c = await demo(18112);
  writeFileSync(path.join(c.controlDir, 'slow-stop'), '3'); // the graceful stop takes 3 s
  const taskQueue = uniqueName('restart-crash');
  const first = await spawnWorker(taskQueue);
  const t0 = Date.now();
  const handle = await startRunbook(client, 'restartService', { service: c.name, reason: 'crash test', healthUrl: c.healthUrl, stopTimeoutSec: 10 }, { taskQueue });
  // Wait until the restart activity is running (the container is being stopped), then kill the worker.
  await waitUntil('the restart to be in flight', async () => {
    const desc = await handle.describe();
    const pending = desc.raw.pendingActivities ?? [];
    return pending.some((a) => a.activityType?.name === 'restartContainer' && Number(a.state) === 2 /* STARTED */);
  }, 30_000, 50);
  await new Promise((r) => setTimeout(r, 500));
  await first.kill('SIGKILL');
  const second = await spawnWorker(taskQueue);
  try {
    const report: RestartReport = await handle.result();
    assert.equal(report.phase, 'done');
    assert.equal(report.healthy, true);
    const events = await containerEvents(c.name, t0);
    assert.equal(events.filter((e) => e.Action === 'start').length, 1, `one start, not two: ${JSON.stringify(events)}`);
    assert.equal(events.filter((e) => e.Action === 'die').length, 1);
    // The retry is visible in the history: the restart activity ran more than once.
    const history = await handle.fetchHistory();
    const started = (history.events ?? []).find((e) => e.activityTaskStartedEventAttributes && e.activityTaskStartedEventAttributes.attempt! > 1);
    assert.ok(started, 'the restart activity was retried after the crash');
  } finally {
    await second.kill();
  }
});
