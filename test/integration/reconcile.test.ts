/**
 * reconcile on the real stack: real drift, made the way terminated runs leave it, then found and
 * repaired (a dry run first, which lists it and changes nothing):
 *   (a) an HAProxy server (and an Nginx upstream server) for a replica that does not exist;
 *   (b) a running, healthy replica that is in no balancer;
 *   (c) a pending Vault version whose rotation was terminated;
 *   (d) a lease whose holder was terminated (the lease's own liveness check set long, so only
 *       reconcile frees it);
 *   (e) a leftover drill container.
 * A private HAProxy + Nginx (test/helpers/lb.ts) on 127.0.0.1:19601-19629; the run is limited to
 * this file's services, so nothing of other tests on the shared stack is touched.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { WithStartWorkflowOperation, WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createCredentialActivities } from '../../src/activities/credentials';
import { createHaproxyActivities } from '../../src/activities/haproxy';
import { lbFiles } from '../../src/activities/lb-config';
import { createNginxActivities } from '../../src/activities/nginx';
import type { KvStore } from '../../src/config/kv-store';
import { startRunbook } from '../../src/runbooks/registry';
import type { LeaseAnswer, LeaseRequest, LeaseView } from '../../src/schemas/lease';
import type { Finding, ReconcileInput, ReconcileReport } from '../../src/schemas/reconcile';
import { activityDeps } from '../../src/workers/clients';
import { docker, httpStatus, runDemo, type DemoContainer } from '../helpers/docker';
import { startTestLb, type LbBackend, type TestLb } from '../helpers/lb';
import { config, connectClient, startWorker, testLog, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';
import { recordHistory } from '../helpers/histories';

const taskQueue = uniqueName('reconcile-test');
const id = uniqueName('rc').slice(3);
const S: LbBackend = { backend: 'recon-b', service: `recon-${id}`, frontendPort: 19601, nginxPort: 19602, base: 19610 };
const leaseService = `reconlease-${id}`;
const drillBox = `recondrill-${id}`;
const vaultPath = `durable-ops/reconcile-test-${id}`;
const ghost = `${S.service}-7`;
const unserved = `${S.service}-2`;

let client: Client;
let worker: RunningWorker;
let lb: TestLb;
let kv: KvStore | undefined;
const demos: DemoContainer[] = [];
let leaseWorkflowId: string;

const mock = new MockActivityEnvironment();
const haproxy = () => createHaproxyActivities({ lbDir: () => lb.dir, log: testLog });
const nginx = () => createNginxActivities({ lbDir: () => lb.dir, log: testLog });

/** A workflow that never ran a step (no worker polls its queue), terminated: a dead holder / rotation. */
async function terminatedRun(workflowType: string): Promise<{ workflowId: string; runId: string }> {
  const h = await client.workflow.start(workflowType, { taskQueue: uniqueName('nobody'), workflowId: uniqueName(`reconcile-dead-${workflowType}`), args: [] });
  await h.terminate('test: a run killed mid-change');
  return { workflowId: h.workflowId, runId: h.firstExecutionRunId };
}

async function runReconcile(input: Partial<ReconcileInput>, record?: string): Promise<ReconcileReport> {
  const h = await startRunbook(client, 'reconcile', { services: [S.service, leaseService, drillBox], vaultPaths: kv ? [vaultPath] : [], graceMs: 0, readyTimeoutMs: 20_000, ...input }, { taskQueue, workflowId: uniqueName('reconcile') });
  const r = (await h.result()) as ReconcileReport;
  if (record) await recordHistory(client, h.workflowId, record);
  return r;
}

const leaseView = () => client.workflow.getHandle(leaseWorkflowId).query<LeaseView>('lease');
const nginxServers = () => [...readFileSync(lbFiles(lb.dir).nginxConf, 'utf8').matchAll(/# (\S+)$/gm)].map((m) => m[1]!).filter((n) => n.startsWith(S.service)).sort();
const pending = async () => (kv ? (await kv.readMetadata(vaultPath))?.custom.pending_version : undefined);
const exists = (name: string) =>
  docker
    .getContainer(name)
    .inspect()
    .then(() => true)
    .catch(() => false);
const find = (r: ReconcileReport, kind: Finding['kind'], subject: string) => r.findings.find((f) => f.kind === kind && f.subject === subject);

before(async () => {
  lb = await startTestLb([S], { declareReplica1: true });
  client = await connectClient();
  worker = await startWorker({ taskQueue, env: { ...process.env, DURABLE_OPS_LB_DIR: lb.dir } });
  kv = activityDeps(config, testLog, { client, taskQueue }).kv;

  // Replica 1, served by both balancers, as a finished scale would leave it.
  await lb.seedContainer(S, { inBalancer: true });
  // (b) replica 2 running and healthy, in no balancer (a scale-up terminated before it joined).
  const two = await runDemo({ name: unserved, port: S.base + 2, healthIntervalMs: 1_000 });
  lb.track(two);
  await waitUntil(`${unserved} to serve`, async () => (await httpStatus(two.healthUrl)) === 200, 20_000);
  await waitUntil(`${unserved} healthy for Docker`, async () => (await docker.getContainer(unserved).inspect()).State.Health?.Status === 'healthy', 20_000, 200);
  // (a) a server for replica 7, which does not exist, in HAProxy and in Nginx's upstream.
  await mock.run(haproxy().haproxyAddServer, { backend: S.backend, server: ghost, port: S.base + 7, weight: 1 });
  await mock.run(nginx().nginxSyncUpstream, { backend: S.backend, servers: [{ name: `${S.service}-1`, port: S.base + 1, weight: 1 }, { name: ghost, port: S.base + 7, weight: 1 }] });
  // (c) a pending version made by a rotation that was terminated before it could discard it.
  if (kv) {
    const rotation = await terminatedRun('rotateCredential');
    await createCredentialActivities({ kv, log: testLog }).createPendingVersion({ vaultPath, rotationId: `${rotation.workflowId}/${rotation.runId}`, length: 32 });
  }
  // (d) a lease held by a terminated run; its own liveness check is 10 min away.
  const holder = await terminatedRun('restartService');
  leaseWorkflowId = `lease/${taskQueue}/${leaseService}`;
  const req: LeaseRequest = { service: leaseService, holder: { ...holder, runbook: 'restartService', startedBy: 'test' }, wait: false, waitTimeoutMs: 0, maxHoldMs: 3_600_000 };
  const answer = await client.workflow.executeUpdateWithStart<() => Promise<LeaseView>, LeaseAnswer, [LeaseRequest]>('acquire', {
    args: [req],
    startWorkflowOperation: new WithStartWorkflowOperation('serviceLease', {
      workflowId: leaseWorkflowId,
      taskQueue,
      args: [{ service: leaseService, livenessCheckMs: 600_000, idleEndMs: 600_000 }] as never,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    }),
  });
  assert.equal(answer.granted, true);
  // (e) a drill's demo container its drill (terminated) never removed.
  demos.push(await runDemo({ name: drillBox, port: S.base + 15, labels: { 'durable-ops.drill': 'true' } }));
  // HAProxy lists replica 7 (down) and not replica 2: the drift is there.
  await waitUntil('the ghost server listed by HAProxy', async () => (await lb.stat(S.backend)).some((r) => r.svname === ghost));
});

after(async () => {
  await client?.workflow
    .getHandle(leaseWorkflowId)
    .terminate('test over')
    .catch(() => undefined);
  await worker?.stop();
  await client?.connection.close();
  await Promise.all(demos.map((d) => d.remove()));
  await lb?.stop(id);
});

test('a dry run lists every drift and changes nothing', async () => {
  const r = await runReconcile({ dryRun: true });
  const expect: Array<[Finding['kind'], string]> = [
    ['balancer-orphan', `${S.backend}/${ghost}`],
    ['nginx-orphan', `${S.backend}/${ghost}`],
    ['replica-unserved', unserved],
    ['lease-orphan', leaseWorkflowId],
    ['drill-container', drillBox],
    ...(kv ? [['vault-pending', `secret/${vaultPath} v1`] as [Finding['kind'], string]] : []),
  ];
  for (const [kind, subject] of expect) assert.equal(find(r, kind, subject)?.action, 'reported', `${kind} ${subject} in ${JSON.stringify(r.findings, null, 1)}`);
  assert.equal(r.counts.repaired, 0);
  assert.deepEqual(r.notChecked, []);

  const names = (await lb.stat(S.backend)).map((x) => x.svname).sort();
  assert.deepEqual(names, [`${S.service}-1`, ghost].sort(), 'HAProxy untouched');
  assert.deepEqual(nginxServers(), [`${S.service}-1`, ghost].sort(), 'Nginx untouched');
  assert.ok((await leaseView()).holder, 'the lease is still held');
  assert.ok(await exists(drillBox), 'the drill container is still there');
  if (kv) assert.equal(await pending(), '1', 'the pending version is still there');
});

test('reconcile repairs each drift and reports it; a second run finds nothing', async () => {
  const t0 = Date.now();
  const r = await runReconcile({}, 'reconcile-repair');
  const repaired: Array<[Finding['kind'], string]> = [
    ['balancer-orphan', `${S.backend}/${ghost}`],
    ['nginx-orphan', `${S.backend}/${ghost}`],
    ['replica-unserved', unserved],
    ['lease-orphan', leaseWorkflowId],
    ['drill-container', drillBox],
    ...(kv ? [['vault-pending', `secret/${vaultPath} v1`] as [Finding['kind'], string]] : []),
  ];
  for (const [kind, subject] of repaired) {
    const f = find(r, kind, subject);
    assert.equal(f?.action, 'repaired', `${kind} ${subject}: ${JSON.stringify(f ?? r.findings)}`);
    assert.equal(f.error, undefined);
  }
  assert.equal(r.counts.failed, 0);
  testLog.info({ ms: Date.now() - t0 }, 'reconcile repaired');

  // The service is served by both replicas, in both balancers; the ghost is gone.
  await lb.assertInRotation(S, [1, 2]);
  assert.deepEqual(nginxServers(), [`${S.service}-1`, unserved].sort());
  assert.equal(await httpStatus(`http://127.0.0.1:${S.nginxPort}/health`), 200);
  // The lease is free, with the reason recorded; the container and the pending version are gone.
  const lease = await leaseView();
  assert.equal(lease.holder, undefined);
  assert.ok(lease.recent.some((e) => e.what === 'released' && e.detail === 'reconcile: holder gone'));
  assert.equal(await exists(drillBox), false);
  if (kv) assert.equal(await pending(), undefined);

  const again = await runReconcile({});
  assert.deepEqual(again.findings, [], 'nothing left to repair');
});

const scale = (input: { replicas: number; approval?: 'none' | 'required' }) =>
  startRunbook(client, 'scaleService', { service: S.service, backend: S.backend, basePort: S.base, mode: 'containers', stepDelayMs: 0, healthTimeoutMs: 20_000, ...input }, { taskQueue, workflowId: uniqueName(`scale-${S.service}`) });

test('a service whose lease a live change holds is skipped as busy, and repaired once it is free', async () => {
  // A scale waiting for its approval holds the service's lease: a live change.
  const held = await scale({ replicas: 3, approval: 'required' });
  await waitUntil('the scale to wait for approval', async () => (await held.query<{ state: string }>('status')).state === 'awaiting-approval', 20_000, 200);
  const ghost8 = `${S.service}-8`;
  await mock.run(haproxy().haproxyAddServer, { backend: S.backend, server: ghost8, port: S.base + 8, weight: 1 });

  const busy = await runReconcile({});
  const f = find(busy, 'balancer-orphan', `${S.backend}/${ghost8}`);
  assert.equal(f?.action, 'skipped-busy', JSON.stringify(busy.findings));
  assert.match(f.detail, /scaleService/);
  assert.ok((await lb.stat(S.backend)).some((r) => r.svname === ghost8), 'left as it is while busy');

  await held.executeUpdate('reject', { args: [{ by: 'test', reason: 'not now, reconcile test' }] });
  await held.result();
  const free = await runReconcile({});
  assert.equal(find(free, 'balancer-orphan', `${S.backend}/${ghost8}`)?.action, 'repaired');
  await lb.assertInRotation(S, [1, 2]);
});

test('a clone above the target of the last finished scale is taken out and removed; with no target it is only reported', async () => {
  const clone = `${S.service}-3`;
  const labels = { 'durable-ops.replica-of': S.service, 'durable-ops.slot': '3' };
  demos.push(await runDemo({ name: clone, port: S.base + 3, labels, healthIntervalMs: 1_000 }));
  await waitUntil(`${clone} to serve`, async () => (await httpStatus(`http://127.0.0.1:${S.base + 3}/health`)) === 200, 20_000);
  await waitUntil(`${clone} healthy for Docker`, async () => (await docker.getContainer(clone).inspect()).State.Health?.Status === 'healthy', 20_000, 200);

  // No finished scale of this service yet (the rejected one sets no target): reported, left alone.
  const unknown = await runReconcile({});
  assert.equal(find(unknown, 'replica-extra', clone)?.action, 'reported', JSON.stringify(unknown.findings));
  assert.ok(await exists(clone));

  // A scale to 2 that finished records the target 2 (it removes the clone itself, as slot 3 is
  // above it); then the clone comes back, as a scale-up terminated after starting it would leave it.
  const done = await scale({ replicas: 2 });
  const result = await done.result();
  assert.ok(['scaled', 'unchanged'].includes((result as { outcome: string }).outcome));
  await waitUntil('the finished scale listed', async () => {
    for await (const _w of client.workflow.list({ query: `WorkflowType='scaleService' AND ExecutionStatus='Completed' AND Service='${S.service}' AND TaskQueue='${taskQueue}'` })) return true;
    return false;
  }, 20_000, 200);
  if (!(await exists(clone))) demos.push(await runDemo({ name: clone, port: S.base + 3, labels, healthIntervalMs: 1_000 }));

  const r = await runReconcile({});
  assert.equal(find(r, 'replica-extra', clone)?.action, 'repaired', JSON.stringify(r.findings));
  assert.equal(await exists(clone), false);
  await lb.assertInRotation(S, [1, 2]);
});
