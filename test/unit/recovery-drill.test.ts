/**
 * recoveryDrill's logic with stubbed activities on the real Temporal server: the rollbacks run
 * (in reverse order) and the report is still written when the recovery fails; a failure in the
 * steady-state hypothesis aborts the drill before any fault; RTO/RPO verdicts follow the targets.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { Activities } from '../../src/activities';
import type { DrillReportFile } from '../../src/activities/drill';
import { recoveryDrillInputSchema } from '../../src/schemas/recovery-drill';
import type { DrillReport } from '../../src/workflows/recovery-drill';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';

class FakeStack {
  calls: string[] = [];
  healthyBefore = true;
  healthyAfterRestart = false;
  written?: DrillReportFile;

  activities(): Partial<Activities> {
    const call = (n: string) => this.calls.push(n);
    const probe = (ok: boolean) => ({ ok, status: ok ? 200 : 503, latencyMs: 1 });
    let killed = false;
    return {
      drillRunDemo: async ({ name, port }) => {
        call('drillRunDemo');
        return { name, healthUrl: `http://127.0.0.1:${port}/health`, created: true };
      },
      drillRemoveDemo: async () => {
        call('drillRemoveDemo');
        return true;
      },
      inspectService: async (service) => ({ service, id: 'x', image: 'demo', running: true, status: 'running', exitCode: 0, oomKilled: false, startedAt: 1, finishedAt: 0, health: 'healthy', restartCount: 0 }),
      waitHealthy: async () => {
        call('waitHealthy');
        const ok = killed ? this.healthyAfterRestart : this.healthyBefore;
        return { healthy: ok, waitedMs: 1, probes: 1, last: probe(ok) };
      },
      drillKillContainer: async () => {
        call('drillKillContainer');
        killed = true;
        return { kind: 'kill-container', at: Date.now(), detail: 'SIGKILL', alreadyDone: false };
      },
      drillDetect: async () => {
        call('drillDetect');
        return { detected: true, at: Date.now(), probes: 1, error: 'ECONNREFUSED' };
      },
      restartContainer: async ({ service }) => {
        call('restartContainer');
        return { service, alreadyDone: false, startedAt: Date.now() };
      },
      sendAlert: async () => {
        call('sendAlert');
        return { delivered: true } as never;
      },
      deadLetter: async () => {
        call('deadLetter');
        return undefined as never;
      },
      mainClusterStatus: async () => {
        call('mainClusterStatus');
        throw ApplicationFailure.nonRetryable('main is not run by this durable-ops stack (no recorded postmaster): status refused', 'NotSupported');
      },
      drillWriteReport: async ({ report }) => {
        call('drillWriteReport');
        this.written = report;
        return { dir: '/tmp/x', json: '/tmp/x/report.json', markdown: '/tmp/x/report.md', svg: '/tmp/x/timeline.svg', sha256: 'x' };
      },
    };
  }
}

let client: Client;

before(async () => {
  client = await connectClient();
});

after(async () => {
  await client.connection.close();
});

async function withFake<T>(fake: FakeStack, fn: (w: RunningWorker) => Promise<T>): Promise<T> {
  const worker = await startWorker({ taskQueue: uniqueName('drill-test-unit'), activities: fake.activities() });
  try {
    return await fn(worker);
  } finally {
    await worker.stop();
  }
}

const input = { scenario: 'kill-container', target: { service: 'drill-unit', demoPort: 18940, healthTimeoutMs: 1_000 } };

test('the recovery fails: rollbacks still run, the report is written, the drill fails with it', async () => {
  const fake = new FakeStack();
  await withFake(fake, async (w) => {
    const handle = await client.workflow.start('recoveryDrill', { taskQueue: w.taskQueue, workflowId: uniqueName('drill/unit'), args: [input] });
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      const cause = err.cause as ApplicationFailure;
      assert.equal(cause.type, 'DrillFailed');
      const report = cause.details?.[0] as DrillReport;
      assert.equal(report.outcome, 'failed');
      assert.equal(report.verdict, 'fail');
      assert.match(report.error ?? '', /not healthy/);
      assert.deepEqual(report.rollbacks, [{ name: 'remove demo container drill-unit', ok: true, detail: 'removed' }]);
      assert.ok(report.timeline.some((e) => e.event === 'recovery started'));
      assert.ok(!report.timeline.some((e) => e.event === 'steady state verified'));
      assert.equal(report.rto.verdict, 'fail');
      return true;
    });
  });
  assert.ok(fake.calls.indexOf('drillRemoveDemo') > fake.calls.indexOf('restartContainer'), fake.calls.join(','));
  assert.ok(fake.calls.indexOf('drillWriteReport') > fake.calls.indexOf('drillRemoveDemo'), 'the report is written after the rollbacks');
  assert.equal(fake.written?.outcome, 'failed');
});

test('the steady state does not hold before the fault: aborted, no fault injected, rollbacks run', async () => {
  const fake = new FakeStack();
  fake.healthyBefore = false;
  await withFake(fake, async (w) => {
    const handle = await client.workflow.start('recoveryDrill', { taskQueue: w.taskQueue, workflowId: uniqueName('drill/unit'), args: [input] });
    await assert.rejects(handle.result(), (err: unknown) => {
      const report = ((err as WorkflowFailedError).cause as ApplicationFailure).details?.[0] as DrillReport;
      assert.equal(report.outcome, 'aborted');
      assert.match(report.error ?? '', /before the fault/);
      return true;
    });
  });
  assert.ok(!fake.calls.includes('drillKillContainer'), 'no fault');
  assert.ok(fake.calls.includes('drillRemoveDemo'), 'rollback ran');
});

test('a recovery within the targets passes; a tiny RTO target fails the verdict but not the run', async () => {
  const fake = new FakeStack();
  fake.healthyAfterRestart = true;
  await withFake(fake, async (w) => {
    const ok: DrillReport = await client.workflow.execute('recoveryDrill', { taskQueue: w.taskQueue, workflowId: uniqueName('drill/unit'), args: [input] });
    assert.equal(ok.outcome, 'recovered');
    assert.equal(ok.rto.verdict, 'pass');
    assert.equal(ok.rpo.verdict, 'n/a');
    assert.equal(ok.verdict, 'pass');
    const tight: DrillReport = await client.workflow.execute('recoveryDrill', { taskQueue: w.taskQueue, workflowId: uniqueName('drill/unit'), args: [{ ...input, targets: { rtoMs: 1 } }] });
    assert.equal(tight.outcome, 'recovered');
    assert.ok(tight.rto.ms! >= 1);
    assert.equal(tight.rto.verdict, tight.rto.ms! <= 1 ? 'pass' : 'fail');
    assert.equal(tight.verdict, tight.rto.verdict);
  });
});

test("the project cluster 'main', approved, but not run by this stack: the drill fails before touching anything", async () => {
  const fake = new FakeStack();
  await withFake(fake, async (w) => {
    const handle = await client.workflow.start('recoveryDrill', {
      taskQueue: w.taskQueue,
      workflowId: uniqueName('drill/unit'),
      args: [{ scenario: 'drop-table', target: { database: 'main' }, allowUserData: true, approval: { by: 'alice', reason: 'quarterly drill' } }],
    });
    await assert.rejects(handle.result(), (err: unknown) => {
      const report = ((err as WorkflowFailedError).cause as ApplicationFailure).details?.[0] as DrillReport;
      assert.equal(report.outcome, 'failed');
      assert.match(report.error ?? '', /not run by this durable-ops stack/);
      assert.deepEqual(report.rollbacks, []);
      return true;
    });
  });
  assert.deepEqual(fake.calls, ['mainClusterStatus', 'drillWriteReport'], 'only the status is read and the report written');
});

test('schema: seed targets, a drill copy by default, the project cluster gated by allowUserData AND an approval', () => {
  const p = recoveryDrillInputSchema.parse({ scenario: 'drop-table' });
  assert.deepEqual(p.targets, { rtoMs: 15 * 60_000, rpoMs: 5 * 60_000 });
  assert.equal(p.scenario === 'drop-table' && p.target.database, 'drill-copy');
  assert.equal(p.allowUserData, false);
  assert.equal(recoveryDrillInputSchema.safeParse({ scenario: 'drop-table', target: { database: 'main' }, allowUserData: true }).success, false);
  assert.equal(recoveryDrillInputSchema.safeParse({ scenario: 'drop-table', target: { database: 'main' }, approval: { by: 'alice', reason: 'quarterly drill' } }).success, false);
  assert.equal(recoveryDrillInputSchema.safeParse({ scenario: 'drop-table', target: { database: 'main' }, allowUserData: true, approval: { by: 'alice', reason: 'quarterly drill' } }).success, true);
  assert.equal(recoveryDrillInputSchema.safeParse({ scenario: 'kill-container', target: { service: 'web' } }).success, false, 'healthUrl or demoPort');
  assert.equal(recoveryDrillInputSchema.safeParse({ scenario: 'stop-postgres', target: { colour: 1 } }).success, false);
});
