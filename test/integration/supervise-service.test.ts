/**
 * The supervisor on the real stack: real containers, the Docker event bridge, real restarts,
 * escalation by email through Mailpit, and resume.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { startRunbook } from '../../src/runbooks/registry';
import { LABEL_HEALTH_URL, LABEL_INPUT, LABEL_SUPERVISE, runDockerEventBridge } from '../../src/workers/docker-events';
import type { SupervisorStatus } from '../../src/workflows/supervise-service';
import { containerEvents, crashFromHost, docker, httpStatus, inspect, runDemo, type DemoContainer } from '../helpers/docker';
import { recordHistory } from '../helpers/histories';
import { mailText, searchMail, waitForMail } from '../helpers/mailpit';
import { connectClient, startWorker, testLog, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

let client: Client;
let worker: RunningWorker;
const abort = new AbortController();
let bridge: Promise<void>;
const containers: DemoContainer[] = [];
const handles: WorkflowHandle[] = [];

/** Short timings so a scenario takes seconds; the logic is the production one. */
const fast = { initialDelayMs: 100, multiplier: 2, maxDelayMs: 400, resetAfterMs: 60_000, healthTimeoutMs: 3_000, stopTimeoutSec: 5 };

before(async () => {
  client = await connectClient();
  worker = await startWorker();
  bridge = runDockerEventBridge({ docker, client, taskQueue: worker.taskQueue, log: testLog, signal: abort.signal });
});

after(async () => {
  await Promise.all(handles.map((h) => h.signal('stop', { by: 'test' }).catch(() => undefined)));
  await Promise.all(handles.map((h) => h.result().catch(() => undefined)));
  abort.abort();
  await bridge;
  await Promise.all(containers.map((c) => c.remove()));
  await worker.stop();
  await client.connection.close();
});

async function demo(port: number, opts: Parameters<typeof runDemo>[0] extends infer O ? Partial<O> : never = {}): Promise<DemoContainer> {
  const c = await runDemo({ name: uniqueName('sup'), port, ...opts });
  containers.push(c);
  await waitUntil(`${c.name} to serve`, async () => (await httpStatus(c.healthUrl)) === 200, 20_000);
  return c;
}

async function supervise(c: DemoContainer, extra: Record<string, unknown> = {}): Promise<WorkflowHandle> {
  const h = await startRunbook(client, 'superviseService', { service: c.name, healthUrl: c.healthUrl, probeIntervalMs: 60_000, restart: fast, ...extra }, { taskQueue: worker.taskQueue });
  handles.push(h);
  await waitUntil('the supervisor to watch', async () => (await h.query<SupervisorStatus>('status')).state === 'watching', 20_000);
  return h;
}

const status = (h: WorkflowHandle) => h.query<SupervisorStatus>('status');

test('docker kill -> the event bridge signals the supervisor -> restarted and healthy again', async () => {
  const c = await demo(18120);
  const h = await supervise(c); // the periodic probe is 60 s away: only the event path can act in time
  const t0 = Date.now();
  await docker.getContainer(c.name).kill();
  const s = await waitUntil('restarted and healthy', async () => {
    const s = await status(h);
    return s.state === 'watching' && s.restartsTotal === 1 && (await httpStatus(c.healthUrl)) === 200 ? s : undefined;
  }, 30_000);
  assert.equal(s.lastFailure?.kind, 'die');
  assert.equal(s.lastFailure?.source, 'docker-events');
  assert.equal(s.lastFailure?.exitCode, 137);
  assert.equal(s.attempts, 1);
  assert.equal((await inspect(c.name)).State.Running, true);
  const starts = (await containerEvents(c.name, t0)).filter((e) => e.Action === 'start');
  assert.equal(starts.length, 1, 'restarted exactly once (our own stop/start is not taken for a new failure)');
});

test('a crash loop: exactly maxAttempts restarts, one critical email with the exit code and log tail, then resume restarts it', async () => {
  const c = await demo(18121);
  const h = await supervise(c, { restart: { ...fast, maxAttempts: 3, healthTimeoutMs: 1_500 } });
  writeFileSync(path.join(c.controlDir, 'crash-on-start'), '');
  const t0 = Date.now();
  await crashFromHost(c.name);
  const gaveUp = await waitUntil('give-up', async () => {
    const s = await status(h);
    return s.state === 'gave-up' ? s : undefined;
  }, 60_000, 200);
  assert.equal(gaveUp.attempts, 3);
  const [mail] = await waitForMail(c.name, 1, 20_000);
  assert.match(mail!.Subject, new RegExp(`\\[CRITICAL\\] ${c.name}: gave up after 3 restart attempts`));
  const text = await mailText(mail!.ID);
  assert.match(text, /last exit code: 3/);
  assert.match(text, /crash-on-start is set: exiting with code 3/, 'the log tail is in the email');
  assert.match(text, /--name resume/);
  assert.equal((await containerEvents(c.name, t0)).filter((e) => e.Action === 'start').length, 3, 'exactly 3 restarts');

  // It waits for a human: nothing more happens on its own.
  await new Promise((r) => setTimeout(r, 1_500));
  assert.equal((await status(h)).state, 'gave-up');
  assert.equal((await searchMail(c.name)).length, 1, 'exactly one email');

  // The operator fixes the cause and resumes.
  rmSync(path.join(c.controlDir, 'crash-on-start'));
  await h.signal('resume', { by: 'alice', reason: 'removed the bad flag' });
  const back = await waitUntil('healthy after resume', async () => {
    const s = await status(h);
    return s.state === 'watching' && (await httpStatus(c.healthUrl)) === 200 ? s : undefined;
  }, 30_000);
  assert.equal(back.attempts, 1, 'a fresh cycle');
  assert.equal((await containerEvents(c.name, t0)).filter((e) => e.Action === 'start').length, 4);
});

test('the periodic probe catches an unhealthy service that no event reported', async () => {
  // Docker's own health check is far away (60 s), so no health_status event arrives in time.
  const c = await demo(18122, { healthIntervalMs: 60_000 });
  const h = await supervise(c, { probeIntervalMs: 300, unhealthyThreshold: 2 });
  const before = Date.parse((await inspect(c.name)).State.StartedAt);
  writeFileSync(path.join(c.controlDir, 'unhealthy'), '');
  // Once the supervisor has restarted it, the fault is gone (as after a real restart).
  await waitUntil('a restart', async () => Date.parse((await inspect(c.name)).State.StartedAt) > before, 30_000);
  rmSync(path.join(c.controlDir, 'unhealthy'));
  const s = await waitUntil('healthy again', async () => {
    const s = await status(h);
    return s.state === 'watching' && s.restartsTotal >= 1 && (await httpStatus(c.healthUrl)) === 200 ? s : undefined;
  }, 30_000);
  assert.equal(s.lastFailure?.kind, 'probe');
  assert.match(s.lastFailure?.detail ?? '', /2 failed probes/);
});

test('a labelled container gets its supervisor from the bridge on its first failure (signal-with-start)', async () => {
  const name = uniqueName('sup-labelled');
  const port = 18123;
  const c = await runDemo({
    name,
    port,
    labels: {
      [LABEL_SUPERVISE]: 'true',
      [LABEL_HEALTH_URL]: `http://127.0.0.1:${port}/health`,
      [LABEL_INPUT]: JSON.stringify({ restart: fast, probeIntervalMs: 60_000 }),
    },
  });
  containers.push(c);
  await waitUntil('serving', async () => (await httpStatus(c.healthUrl)) === 200, 20_000);
  await crashFromHost(name);
  const h = client.workflow.getHandle(`supervise/${name}`);
  handles.push(h);
  const s = await waitUntil('supervised and restarted', async () => {
    const s = await h.query<SupervisorStatus>('status').catch(() => undefined);
    return s && s.restartsTotal === 1 && s.state === 'watching' && (await httpStatus(c.healthUrl)) === 200 ? s : undefined;
  }, 30_000, 200);
  assert.equal(s.lastFailure?.kind, 'die');
  const desc = await h.describe();
  assert.deepEqual(desc.searchAttributes.Service, [name]);
  assert.deepEqual(desc.searchAttributes.Runbook, ['superviseService']);
  await recordHistory(client, h.workflowId, 'supervise-real-bridge-restart');
});
