/**
 * The supervisor's logic, with stubbed activities (a fake service in memory), on the real
 * Temporal dev server: backoff bounds, give-up -> alert -> resume, dependency wait,
 * reset-after, pause/stop, continue-as-new carrying state, bad input.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { Activities } from '../../src/activities';
import { serviceNotFound } from '../../src/activities/docker';
import type { Alert } from '../../src/schemas/alert';
import type { SuperviseServiceInput } from '../../src/schemas/supervise-service';
import type { SupervisorStatus, superviseService } from '../../src/workflows/supervise-service';
import { recordHistory } from '../helpers/histories';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

/** A service that lives in memory. `healOnRestart(n)` decides whether restart n makes it healthy. */
class FakeService {
  exists = true;
  running = true;
  healthy = true;
  startedAt = Date.now();
  depsUp = true;
  restarts: Array<{ at: number; requestedAt: number }> = [];
  alerts: Alert[] = [];
  resolved: string[] = [];
  calls: Record<string, number> = {};
  healOnRestart: (n: number) => boolean = () => true;

  crash() {
    this.running = false;
    this.healthy = false;
  }

  activities(): Partial<Activities> {
    const count = (name: string) => (this.calls[name] = (this.calls[name] ?? 0) + 1);
    return {
      inspectService: async (service) => {
        count('inspectService');
        if (!this.exists) throw serviceNotFound(service);
        return { service, id: 'x', image: 'demo', running: this.running, status: this.running ? 'running' : 'exited', exitCode: 3, oomKilled: false, startedAt: this.startedAt, finishedAt: 0, health: 'none', restartCount: 0 };
      },
      checkService: async () => {
        count('checkService');
        return { exists: this.exists, running: this.running, startedAt: this.startedAt, http: this.healthy ? { ok: true, status: 200, latencyMs: 1 } : { ok: false, error: 'ECONNREFUSED', latencyMs: 1 } };
      },
      restartContainer: async ({ service, requestedAt }) => {
        count('restartContainer');
        this.restarts.push({ at: Date.now(), requestedAt });
        this.running = true;
        this.startedAt = Date.now();
        this.healthy = this.healOnRestart(this.restarts.length);
        return { service, alreadyDone: false, startedAt: this.startedAt };
      },
      waitHealthy: async () => {
        count('waitHealthy');
        return { healthy: this.healthy, waitedMs: 1, probes: 1, last: this.healthy ? { ok: true, status: 200, latencyMs: 1 } : { ok: false, error: 'ECONNREFUSED', latencyMs: 1 } };
      },
      probeDependencies: async ({ dependencies }) => {
        count('probeDependencies');
        return dependencies.map((d) => ({ name: d.name, ok: this.depsUp, latencyMs: 1, ...(this.depsUp ? { status: 200 } : { error: 'ECONNREFUSED' }) }));
      },
      resolveAlert: async ({ dedupKey }) => {
        count('resolveAlert');
        this.resolved.push(dedupKey);
        return { resolved: true };
      },
      recordRecovery: async () => undefined,
      failureContext: async () => {
        count('failureContext');
        return { exitCode: 3, oomKilled: false, finishedAt: Date.now(), logTail: 'crash-on-start is set: exiting with code 3' };
      },
      sendAlert: async (alert) => {
        count('sendAlert');
        this.alerts.push(alert);
        return { dedupKey: alert.dedupKey ?? 'x', groupWorkflowId: `alert/${alert.dedupKey}` };
      },
    };
  }
}

let client: Client;
const workers: RunningWorker[] = [];

before(async () => {
  client = await connectClient();
});

after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await client.connection.close();
});

async function supervise(fake: FakeService, input: Partial<SuperviseServiceInput> = {}): Promise<WorkflowHandle<typeof superviseService>> {
  const w = await startWorker({ activities: fake.activities() });
  workers.push(w);
  const service = input.service ?? uniqueName('svc');
  return client.workflow.start<typeof superviseService>('superviseService', {
    taskQueue: w.taskQueue,
    workflowId: `supervise/${service}`,
    args: [{ service, healthUrl: 'http://127.0.0.1:9/health', probeIntervalMs: 60_000, restart: { initialDelayMs: 40, multiplier: 2, maxDelayMs: 120, resetAfterMs: 60_000, healthTimeoutMs: 1_000 }, ...input }],
    workflowExecutionTimeout: '2 minutes',
  });
}

const status = (h: WorkflowHandle) => h.query<SupervisorStatus>('status');
const fail = (h: WorkflowHandle, kind = 'die') => h.signal('failure', { kind, at: Date.now(), source: 'test', exitCode: 137 });

test('a crash is restarted once and the service is watched again', async () => {
  const fake = new FakeService();
  const h = await supervise(fake);
  await waitUntil('watching', async () => (await status(h)).state === 'watching');
  fake.crash();
  await fail(h);
  const s = await waitUntil('recovered', async () => {
    const s = await status(h);
    return s.state === 'watching' && s.restartsTotal === 1 ? s : undefined;
  });
  assert.equal(s.attempts, 1);
  assert.equal(s.lastFailure?.kind, 'die');
  assert.equal(fake.restarts.length, 1);
  assert.ok(fake.restarts[0]!.requestedAt >= s.lastFailure!.at, 'restart requested after the failure');
  await h.signal('stop', { by: 'test' });
  const result = await h.result();
  assert.equal(result.status.state, 'stopped');
  await recordHistory(client, h.workflowId, 'supervise-crash-restart');
});

test('a crash loop uses exactly maxAttempts with bounded full-jitter backoff, alerts once, waits, and resume starts a fresh cycle', async () => {
  const fake = new FakeService();
  fake.healOnRestart = (n) => n > 3; // the fourth restart (after resume) heals it
  const h = await supervise(fake, { restart: { maxAttempts: 3, initialDelayMs: 60, multiplier: 2, maxDelayMs: 150, resetAfterMs: 60_000, healthTimeoutMs: 1_000 } });
  await waitUntil('watching', async () => (await status(h)).state === 'watching');
  fake.crash();
  const crashedAt = Date.now();
  await fail(h);
  const gaveUp = await waitUntil('gave up and alerted', async () => {
    const s = await status(h);
    return s.state === 'gave-up' && fake.alerts.length > 0 ? s : undefined;
  });
  assert.equal(fake.restarts.length, 3, 'exactly maxAttempts restarts');
  assert.equal(gaveUp.attempts, 3);
  // Full jitter: each delay lies in [0, min(cap, base * 2^(n-1))]; plus scheduling slack.
  const ceilings = [60, 120, 150];
  let prev = crashedAt;
  fake.restarts.forEach((r, i) => {
    assert.ok(r.at - prev <= ceilings[i]! + 1_500, `delay before attempt ${i + 1} (${r.at - prev} ms) within its ceiling`);
    prev = r.at;
  });
  assert.equal(fake.alerts.length, 1, 'one escalation alert');
  const alert = fake.alerts[0]!;
  assert.equal(alert.severity, 'critical');
  assert.match(alert.summary, /gave up after 3 restart attempts/);
  assert.equal(alert.details?.['last exit code'], 3);
  assert.match(String(alert.details?.['log tail']), /crash-on-start/);
  assert.match(String(alert.details?.['to resume']), /--name resume/);

  // It waits: no more restarts without an operator.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(fake.restarts.length, 3);
  assert.equal((await status(h)).state, 'gave-up');

  await h.signal('resume', { by: 'alice', reason: 'fixed the config' });
  const resumed = await waitUntil('healthy after resume', async () => {
    const s = await status(h);
    return s.state === 'watching' && fake.restarts.length === 4 ? s : undefined;
  });
  assert.equal(resumed.attempts, 1, 'resume started a fresh cycle');
  assert.equal(fake.alerts.length, 1);
  await h.signal('stop');
  await h.result();
  await recordHistory(client, h.workflowId, 'supervise-crash-loop-resume');
});

test('a down dependency defers the restart without burning attempts, with one warning', async () => {
  const fake = new FakeService();
  const h = await supervise(fake, { dependencies: [{ name: 'db', healthUrl: 'http://127.0.0.1:9/db' }], dependencyRecheckMs: 100 });
  await waitUntil('watching', async () => (await status(h)).state === 'watching');
  fake.depsUp = false;
  fake.crash();
  await fail(h);
  const waiting = await waitUntil('waiting for the dependency', async () => {
    const s = await status(h);
    return s.state === 'waiting-dependency' && (fake.calls.probeDependencies ?? 0) >= 3 ? s : undefined;
  });
  assert.deepEqual(waiting.downDependencies, ['db']);
  assert.equal(waiting.attempts, 0);
  assert.equal(fake.restarts.length, 0);
  assert.equal(fake.alerts.length, 1);
  assert.equal(fake.alerts[0]!.severity, 'warning');
  assert.match(fake.alerts[0]!.summary, /dependency down: db/);
  fake.depsUp = true;
  const s = await waitUntil('recovered after the dependency', async () => {
    const s = await status(h);
    return s.state === 'watching' && s.restartsTotal === 1 ? s : undefined;
  });
  assert.equal(s.attempts, 1);
  await h.signal('stop');
  await h.result();
});

test('attempts reset once the service stays healthy for resetAfterMs', async () => {
  const fake = new FakeService();
  const h = await supervise(fake, { restart: { initialDelayMs: 10, maxDelayMs: 20, resetAfterMs: 400, healthTimeoutMs: 1_000 } });
  await waitUntil('watching', async () => (await status(h)).state === 'watching');
  fake.crash();
  await fail(h);
  await waitUntil('one attempt', async () => (await status(h)).attempts === 1);
  const s = await waitUntil('reset', async () => {
    const s = await status(h);
    return s.attempts === 0 ? s : undefined;
  }, 5_000);
  assert.equal(s.restartsTotal, 1);
  await h.signal('stop');
  await h.result();
});

test('paused: failures are not acted on; resume looks afresh; stop ends the workflow', async () => {
  const fake = new FakeService();
  const h = await supervise(fake);
  await waitUntil('watching', async () => (await status(h)).state === 'watching');
  await h.signal('pause', { by: 'bob', reason: 'maintenance' });
  await waitUntil('paused', async () => (await status(h)).state === 'paused');
  fake.crash();
  await fail(h);
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(fake.restarts.length, 0, 'no restart while paused');
  await h.signal('resume', { by: 'bob' });
  await waitUntil('restarted after resume', async () => {
    const s = await status(h);
    return s.state === 'watching' && s.restartsTotal === 1;
  });
  await h.signal('stop', { by: 'bob', reason: 'decommissioned' });
  const result = await h.result();
  assert.match(result.stoppedBy, /bob: decommissioned/);
  await recordHistory(client, h.workflowId, 'supervise-pause-resume-stop');
});

test('history stays bounded: continue-as-new carries the state', async () => {
  const fake = new FakeService();
  const h = await supervise(fake, { probeIntervalMs: 100, continueAsNewAfterEvents: 100, restart: { initialDelayMs: 10, maxDelayMs: 20, resetAfterMs: 600_000, healthTimeoutMs: 1_000 } });
  await waitUntil('watching', async () => (await status(h)).state === 'watching');
  fake.crash();
  await fail(h);
  await waitUntil('one restart', async () => (await status(h)).restartsTotal === 1);
  const firstRun = (await h.describe()).runId;
  const s = await waitUntil('continued as new', async () => {
    const s = await status(h);
    return s.runsCarried >= 1 ? s : undefined;
  }, 30_000, 200);
  const desc = await client.workflow.getHandle(h.workflowId).describe();
  assert.notEqual(desc.runId, firstRun, 'a new run');
  assert.equal(s.restartsTotal, 1, 'restart count carried');
  assert.equal(s.attempts, 1, 'attempts carried (reset window not passed)');
  assert.equal(s.lastFailure?.kind, 'die', 'last failure carried');
  assert.equal(fake.calls.inspectService, 1, 'the existence check runs once, not on every run');
  await client.workflow.getHandle(h.workflowId).signal('stop');
  await client.workflow.getHandle(h.workflowId).result();
});

test('bad input fails at once, non-retryably, naming the field, and touches nothing', async () => {
  const fake = new FakeService();
  const h = await supervise(fake, { restart: { maxAttempts: -2 } } as Partial<SuperviseServiceInput>);
  await assert.rejects(h.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    assert.ok(err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, 'InvalidInput');
    assert.equal(err.cause.nonRetryable, true);
    assert.match(err.cause.message, /restart\.maxAttempts/);
    return true;
  });
  assert.deepEqual(fake.calls, {}, 'no activity ran');
});

test('an unknown container fails at once with ServiceNotFound and no restart', async () => {
  const fake = new FakeService();
  fake.exists = false;
  const h = await supervise(fake, { service: 'no-such-container' });
  await assert.rejects(h.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    assert.match(String((err.cause?.cause as Error | undefined)?.message ?? err.cause?.message), /service: no container named "no-such-container"/);
    return true;
  });
  assert.equal(fake.restarts.length, 0);
});
