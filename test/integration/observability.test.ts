/**
 * Alert-driven remediation on real components: a demo container supervised by
 * superviseService (periodic probe far away, no Docker event bridge), a private Prometheus
 * scraping its /metrics and evaluating the real rules (for: shortened to 1 s), a private
 * Alertmanager calling durable-ops' receiver. `docker stop` -> service_down fires -> the
 * receiver signals the supervisor -> restarted, healthy -> the alert resolves.
 * And the real worker process serving /metrics with the SDK's and the durable_ops_ metrics.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { pino } from 'pino';
import { registry } from '../../src/observability/metrics';
import { startRunbook } from '../../src/runbooks/registry';
import { startAlertReceiver, type AlertReceiver } from '../../src/workers/alert-receiver';
import type { SupervisorStatus } from '../../src/workflows/supervise-service';
import { docker, httpStatus, inspect, runDemo, type DemoContainer } from '../helpers/docker';
import { freePort, promAlerts, promQuery, startMonitoring, type Monitoring } from '../helpers/prometheus';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';
import { spawnWorker } from '../helpers/worker-process';

let client: Client;
let worker: RunningWorker;
let receiver: AlertReceiver;
let monitoring: Monitoring;
const receiverLog: Array<Record<string, unknown>> = [];
const containers: DemoContainer[] = [];
const handles: WorkflowHandle[] = [];

const fast = { initialDelayMs: 100, multiplier: 2, maxDelayMs: 400, resetAfterMs: 60_000, healthTimeoutMs: 5_000, stopTimeoutSec: 2 };

before(async () => {
  client = await connectClient();
  worker = await startWorker();
  const log = pino({ level: 'info' }, { write: (line: string) => void receiverLog.push(JSON.parse(line) as Record<string, unknown>) });
  receiver = (await startAlertReceiver({
    port: 0,
    client,
    docker,
    taskQueue: worker.taskQueue,
    log,
  }))!;
  monitoring = await startMonitoring({ receiverUrl: receiver.url });
});

after(async () => {
  await Promise.all(handles.map((h) => h.signal('stop', { by: 'test' }).catch(() => undefined)));
  await Promise.all(handles.map((h) => h.result().catch(() => undefined)));
  await monitoring?.stop();
  await receiver?.close();
  await Promise.all(containers.map((c) => c.remove()));
  await worker?.stop();
  await client?.connection.close();
});

const metricValue = async (name: string, labels: Record<string, string>) => {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val) && Object.keys(x.labels).length >= Object.keys(labels).length);
  return v?.value;
};

test('docker stop -> Prometheus service_down -> Alertmanager -> receiver -> the supervisor restarts it -> resolved', async () => {
  // Docker's own health check far away: no health_status event, only the alert path acts.
  const c = await runDemo({ name: uniqueName('obs'), port: 18300, healthIntervalMs: 600_000 });
  containers.push(c);
  await waitUntil('serving', async () => (await httpStatus(c.healthUrl)) === 200, 20_000);
  assert.match(await (await fetch(`http://127.0.0.1:${c.port}/metrics`)).text(), /^demo_service_up 1$/m);
  const h = await startRunbook(client, 'superviseService', { service: c.name, healthUrl: c.healthUrl, probeIntervalMs: 600_000, restart: fast }, { taskQueue: worker.taskQueue });
  handles.push(h);
  await waitUntil('watching', async () => (await h.query<SupervisorStatus>('status')).state === 'watching', 20_000);

  monitoring.setTargets([{ service: c.name, port: c.port }]);
  await waitUntil('Prometheus scraping the service', async () => (await promQuery(monitoring.prometheusUrl, `up{service="${c.name}"}`)) === 1, 20_000, 250);

  const startedBefore = (await inspect(c.name)).State.StartedAt;
  const t0 = Date.now();
  await docker.getContainer(c.name).stop({ t: 2 });

  const s = await waitUntil('restarted through the alert path and healthy', async () => {
    const s = await h.query<SupervisorStatus>('status');
    return s.state === 'watching' && s.restartsTotal === 1 && (await httpStatus(c.healthUrl)) === 200 ? s : undefined;
  }, 40_000, 200);
  const recoveredMs = Date.now() - t0;
  assert.equal(s.lastFailure?.kind, 'alert');
  assert.equal(s.lastFailure?.source, 'alertmanager');
  assert.match(s.lastFailure?.detail ?? '', /service_down firing since/);
  assert.notEqual((await inspect(c.name)).State.StartedAt, startedBefore);
  assert.ok(receiverLog.some((l) => l.msg === 'service_down forwarded to the supervisor' && l.service === c.name && l.action === 'signalled'));

  // The alert resolves once Prometheus scrapes the restarted service, and the receiver hears it.
  await waitUntil('service_down resolved in Prometheus', async () => (await promAlerts(monitoring.prometheusUrl)).every((a) => a.labels.service !== c.name), 20_000, 250);
  await waitUntil('the resolve delivered to the receiver', () => receiverLog.some((l) => l.msg === 'alert resolved' && l.service === c.name && l.alert === 'service_down'), 20_000, 200);
  const amAlerts = (await (await fetch(`${monitoring.alertmanagerUrl}/api/v2/alerts?filter=service%3D%22${c.name}%22`)).json()) as Array<{ status: { state: string } }>;
  assert.equal(amAlerts.filter((a) => a.status.state === 'active').length, 0, 'no active alert left in Alertmanager');

  // Repeats of the same firing alert (Alertmanager's group_interval) did not restart it again.
  await new Promise((r) => setTimeout(r, 1_500));
  assert.equal((await h.query<SupervisorStatus>('status')).restartsTotal, 1);

  // The KPIs, recorded by the supervisor through the recordRecovery local activity (this process).
  assert.equal(await metricValue('durable_ops_restarts_total', { service: c.name, outcome: 'healthy' }), 1);
  const text = await registry.metrics();
  const m = new RegExp(`^durable_ops_time_to_recover_seconds_count\\{service="${c.name}"\\} 1$`, 'm');
  assert.match(text, m);
  const sum = Number(new RegExp(`^durable_ops_time_to_recover_seconds_sum\\{service="${c.name}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
  assert.ok(sum > 0 && sum * 1000 <= recoveredMs + 2_000, `time to recover ${sum}s within the observed ${recoveredMs} ms`);
});

test('the receiver validates the payload and acts once per fingerprint + startsAt + status', async () => {
  const post = (body: unknown) => fetch(receiver.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const bad = await post({ version: '4', alerts: [{ labels: {} }] });
  assert.equal(bad.status, 400);
  const payload = {
    version: '4',
    status: 'firing',
    receiver: 'durable-ops',
    alerts: [{ status: 'firing', labels: { alertname: 'service_down', service: uniqueName('nobody'), severity: 'critical' }, annotations: {}, startsAt: new Date().toISOString(), fingerprint: 'f00d' }],
  };
  const first = (await (await post(payload)).json()) as { actions: string[] };
  assert.deepEqual(first.actions, ['no-supervisor']);
  const again = (await (await post(payload)).json()) as { actions: string[] };
  assert.deepEqual(again.actions, ['duplicate']);
});

test('the worker process serves /metrics: the SDK metrics and the durable_ops_ KPIs', async () => {
  const metricsPort = await freePort();
  process.env.DURABLE_OPS_METRICS_PORT = String(metricsPort);
  process.env.DURABLE_OPS_RECEIVER_PORT = String(await freePort());
  const w = await spawnWorker(uniqueName('obs-metrics'));
  try {
    const text = await waitUntil('SDK metrics in /metrics', async () => {
      const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      const t = await r.text();
      return r.ok && /^temporal_\w+/m.test(t) ? t : undefined;
    }, 20_000, 250);
    for (const name of ['durable_ops_restarts_total', 'durable_ops_time_to_recover_seconds', 'durable_ops_alerts_total', 'durable_ops_dead_letters', 'durable_ops_breaker_state', 'durable_ops_breaker_transitions_total', 'durable_ops_credential_rotation_age_seconds', 'durable_ops_backup_newest_age_seconds', 'durable_ops_drill_rto_seconds', 'durable_ops_drill_rpo_seconds']) {
      assert.match(text, new RegExp(`^# HELP ${name} `, 'm'), name);
    }
    assert.match(text, /^temporal_(num_pollers|worker_task_slots_available|request)/m);
    assert.match(text, /^process_cpu_seconds_total /m);
    // The breakers are visible too (the Docker bridge's start-up calls go through none, so the list may be empty, but it is JSON).
    const breakers = await fetch(`http://127.0.0.1:${metricsPort}/breakers`);
    assert.equal(breakers.status, 200);
    assert.ok(Array.isArray(await breakers.json()));
  } finally {
    await w.kill();
  }
});
