/**
 * Traces and logs on the real stack: a restartService run through a traced client (the CLI's
 * service) and a traced worker is ONE trace in Jaeger, from the client's start span through the
 * workflow to its last activity; every activity log line carries workflowId, runId, activity
 * and the trace id. Demo containers use ports 18400-18499.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Writable } from 'node:stream';
import type { Client } from '@temporalio/client';
import { createLogger } from '../../src/config/logger';
import { CLI_SERVICE_NAME, createTracing, WORKER_SERVICE_NAME, type Tracing } from '../../src/observability/tracing';
import { startRunbook } from '../../src/runbooks/registry';
import { connectClient } from '../../src/workers/clients';
import type { RestartReport } from '../../src/workflows/restart-service';
import { httpStatus, runDemo, type DemoContainer } from '../helpers/docker';
import { config, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

const JAEGER = process.env.DURABLE_OPS_JAEGER_UI ?? 'http://127.0.0.1:16686';

interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  processID: string;
  references: Array<{ refType: string; traceID: string; spanID: string }>;
  tags: Array<{ key: string; value: unknown }>;
}
interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

async function jaeger<T>(path: string): Promise<T> {
  const res = await fetch(`${JAEGER}${path}`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`Jaeger ${path}: HTTP ${res.status}`);
  return ((await res.json()) as { data: T }).data;
}

const lines: Array<Record<string, unknown>> = [];
const captured = new Writable({
  write(chunk: Buffer, _enc, done) {
    for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
    done();
  },
});

let cliTracing: Tracing;
let workerTracing: Tracing;
let client: Client;
let worker: RunningWorker;
const containers: DemoContainer[] = [];

before(async () => {
  cliTracing = createTracing({ serviceName: CLI_SERVICE_NAME, endpoint: config.DURABLE_OPS_OTLP_ENDPOINT });
  workerTracing = createTracing({ serviceName: WORKER_SERVICE_NAME, endpoint: config.DURABLE_OPS_OTLP_ENDPOINT });
  client = await connectClient(config, cliTracing);
  worker = await startWorker({ tracing: workerTracing, log: createLogger('info', { component: 'activity' }, captured) });
});

after(async () => {
  await Promise.all(containers.map((c) => c.remove()));
  await worker.stop();
  await client.connection.close();
  await Promise.all([cliTracing.shutdown(), workerTracing.shutdown()]);
});

test('a restartService run is one trace in Jaeger: client start -> workflow -> every activity; activity logs carry the ids', async () => {
  const c = await runDemo({ name: uniqueName('trace'), port: 18400 });
  containers.push(c);
  await waitUntil(`${c.name} to serve`, async () => (await httpStatus(c.healthUrl)) === 200, 20_000);

  const handle = await startRunbook(client, 'restartService', { service: c.name, reason: 'tracing test', healthUrl: c.healthUrl, stopTimeoutSec: 2 }, { taskQueue: worker.taskQueue });
  const report: RestartReport = await handle.result();
  assert.equal(report.healthy, true);
  const history = await handle.fetchHistory();
  const activities = [...new Set((history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name!))];
  assert.ok(activities.includes('restartContainer') && activities.includes('waitHealthy'), `activities: ${activities.join(', ')}`);

  // Search by the workflow id the client span carries, then read the whole trace.
  const tags = encodeURIComponent(JSON.stringify({ temporalWorkflowId: handle.workflowId }));
  const expected = ['StartWorkflow:restartService', 'RunWorkflow:restartService', ...activities.flatMap((a) => [`StartActivity:${a}`, `RunActivity:${a}`])];
  const trace = await waitUntil('the whole trace in Jaeger', async () => {
    await Promise.all([cliTracing.forceFlush(), workerTracing.forceFlush()]);
    const found = await jaeger<JaegerTrace[]>(`/api/traces?service=${CLI_SERVICE_NAME}&tags=${tags}&lookback=1h&limit=10`);
    assert.equal(found.length, 1, `one trace for ${handle.workflowId}, found ${found.length}`);
    const [t] = await jaeger<JaegerTrace[]>(`/api/traces/${found[0]!.traceID}`);
    const ops = new Set(t!.spans.map((s) => s.operationName));
    return expected.every((op) => ops.has(op)) ? t : undefined;
  }, 30_000, 500);

  const service = (s: JaegerSpan) => trace.processes[s.processID]!.serviceName;
  const byOp = (op: string) => trace.spans.filter((s) => s.operationName === op);
  assert.ok(trace.spans.every((s) => s.traceID === trace.traceID));
  assert.deepEqual(byOp('StartWorkflow:restartService').map(service), [CLI_SERVICE_NAME]);
  assert.deepEqual(byOp('RunWorkflow:restartService').map(service), [WORKER_SERVICE_NAME]);
  // One tree: the client's start span is the only root, every other span hangs below it.
  const ids = new Map(trace.spans.map((s) => [s.spanID, s]));
  const parent = (s: JaegerSpan) => s.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
  const roots = trace.spans.filter((s) => !parent(s) || !ids.has(parent(s)!));
  assert.deepEqual(roots.map((s) => s.operationName), ['StartWorkflow:restartService']);
  const ancestors = (s: JaegerSpan): string[] => {
    const p = parent(s);
    return p && ids.has(p) ? [ids.get(p)!.operationName, ...ancestors(ids.get(p)!)] : [];
  };
  const last = byOp(`RunActivity:${activities.at(-1)}`)[0]!;
  assert.ok(ancestors(last).includes('RunWorkflow:restartService'), `the last activity is under the workflow: ${ancestors(last).join(' <- ')}`);
  const tag = (s: JaegerSpan, key: string) => s.tags.find((t) => t.key === key)?.value;
  assert.equal(tag(last, 'temporalWorkflowId'), handle.workflowId);
  assert.equal(tag(last, 'run_id'), handle.firstExecutionRunId);

  // Logs: every line an activity wrote carries the workflow, run, activity and trace ids.
  const ours = lines.filter((l) => l.workflowId === handle.workflowId);
  assert.ok(ours.some((l) => l.activity === 'restartContainer'), `an activity line from restartContainer: ${JSON.stringify(lines)}`);
  for (const l of ours) {
    assert.equal(l.runId, handle.firstExecutionRunId);
    assert.ok(typeof l.activity === 'string' && activities.includes(l.activity), `activity field: ${JSON.stringify(l)}`);
    assert.equal(l.traceId, trace.traceID, 'the log line names the trace');
    assert.equal(l.component, 'activity');
  }
  assert.ok(lines.every((l) => typeof l.workflowId === 'string' && typeof l.runId === 'string' && typeof l.activity === 'string'), `every activity line has the ids: ${JSON.stringify(lines)}`);
});

test('outside an activity, log lines carry no activity fields', () => {
  const out: string[] = [];
  const log = createLogger('info', {}, new Writable({ write: (c: Buffer, _e, done) => (out.push(c.toString()), done()) }));
  log.info({ service: 'web' }, 'hello');
  const line = JSON.parse(out.join('')) as Record<string, unknown>;
  assert.equal(line.msg, 'hello');
  for (const k of ['workflowId', 'runId', 'activity', 'traceId']) assert.equal(k in line, false, k);
});
