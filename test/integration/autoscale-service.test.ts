/**
 * autoscaleService on the real stack: demo-service replicas (containers `<service>-<n>`), a real
 * HAProxy (src/stack/lb.ts, the same code the stack uses) on 127.0.0.1:19400-19499, real
 * `docker stats`, and the horizontal helper's real scaleService as the child that scales.
 * A bounded CPU burn (busybox `timeout N sh -c 'while :; do :; done'` inside replica 1) drives CPU
 * over the target: scale up after the (short) up window, a high_cpu warning by email; when the burn
 * ends, no scale down before the down-stabilization window, then back to 1.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { haproxyCommand, parseShowStat } from '../../src/activities/haproxy';
import { lbFiles } from '../../src/activities/lb-config';
import type { AutoscaleServiceInput } from '../../src/schemas/autoscale-service';
import { initLbDir, startLoadBalancers, type LbProcesses } from '../../src/stack/lb';
import type { AutoscaleStatus } from '../../src/workflows/autoscale-service';
import { docker, httpStatus, runDemo, type DemoContainer } from '../helpers/docker';
import { mailText, waitForMail } from '../helpers/mailpit';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

const id = uniqueName('as').slice(3);
const S = { backend: 'autoscale-c', service: `asc-${id}`, frontendPort: 19401, base: 19410 };
const DOWN_WINDOW_MS = 15_000;
const INTERVAL_MS = 1_000;
const SAMPLE_WINDOW_MS = 2_000;

let client: Client;
let worker: RunningWorker;
let lb: LbProcesses | undefined;
let dir: string;
const demos: DemoContainer[] = [];
const workflows: string[] = [];

before(async () => {
  const t0 = Date.now();
  dir = mkdtempSync(path.join(tmpdir(), 'autoscale-lb-'));
  initLbDir(dir, {
    timeouts: { connectMs: 1_000, checkMs: 1_000 },
    backends: [{ name: S.backend, frontendPort: S.frontendPort, checkInterMs: 500, servers: [{ name: `${S.service}-1`, port: S.base + 1, weight: 1, state: 'ready' as const }] }],
  });
  lb = await startLoadBalancers(dir);
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('autoscale-test'), env: { ...process.env, DURABLE_OPS_LB_DIR: dir } });
  console.log(`  setup: HAProxy and the worker up in ${Date.now() - t0} ms (at ${new Date().toISOString()})`);
});

after(async () => {
  const t0 = Date.now();
  for (const w of workflows) await client?.workflow.getHandle(w).terminate('test cleanup').catch(() => undefined);
  await worker?.stop();
  console.log(`  cleanup: worker stopped after ${Date.now() - t0} ms (at ${new Date().toISOString()})`);
  await client?.connection.close();
  const all = await docker.listContainers({ all: true, filters: { name: [S.service] } });
  await Promise.all(all.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  await Promise.all(demos.map((d) => d.remove()));
  await lb?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  console.log(`  cleanup: done after ${Date.now() - t0} ms (at ${new Date().toISOString()})`);
});

async function upServers(): Promise<string[]> {
  const rows = parseShowStat(await haproxyCommand(lbFiles(dir).haproxySocket, 'show stat'));
  return rows.filter((r) => r.pxname === S.backend && r.svname !== 'BACKEND' && r.svname !== 'FRONTEND' && r.status?.startsWith('UP')).map((r) => r.svname!);
}

async function replicaNames(): Promise<string[]> {
  const list = await docker.listContainers({ filters: { name: [S.service], status: ['running'] } });
  return list.flatMap((c) => c.Names.map((n) => n.slice(1))).filter((n) => new RegExp(`^${S.service}-\\d+$`).test(n)).sort();
}

test('CPU load above target scales up after the up window (and warns high_cpu); after the load, no scale down before the down-stabilization window', async () => {
  const seed = await runDemo({ name: `${S.service}-1`, port: S.base + 1, healthIntervalMs: 1_000 });
  demos.push(seed);
  // Half a CPU per replica: two busy loops fill it. A high CPU weight (shares) so that the loops get
  // that half CPU even on a busy 2-core machine (the test must see the load it makes).
  await docker.getContainer(seed.name).update({ NanoCpus: 0.5e9, CpuShares: 16_384 });
  await waitUntil(`${seed.name} to serve`, async () => (await httpStatus(seed.healthUrl)) === 200, 20_000);
  await waitUntil(`${seed.name} UP in HAProxy`, async () => (await upServers()).includes(seed.name), 20_000);

  const input: AutoscaleServiceInput = {
    service: S.service,
    mode: 'containers',
    backend: S.backend,
    basePort: S.base,
    intervalMs: INTERVAL_MS,
    sampleWindowMs: SAMPLE_WINDOW_MS,
    sampleIntervalMs: 1_000,
    minReplicas: 1,
    maxReplicas: 2,
    targetCpuPercent: 50,
    upStabilizationMs: 6_000,
    downStabilizationMs: DOWN_WINDOW_MS,
    cooldownMs: 0,
    highCpu: { percent: 60, forMs: 2_500 },
    scale: { stepDelayMs: 0, healthTimeoutMs: 30_000, drainTimeoutMs: 5_000 },
  };
  const workflowId = `autoscale/${S.service}`;
  workflows.push(workflowId);
  const handle = await client.workflow.start('autoscaleService', { taskQueue: worker.taskQueue, workflowId, args: [input] });
  const status = () => handle.query<AutoscaleStatus>('status');

  // Idle: decisions hold at 1.
  await waitUntil('two idle decisions', async () => (await status()).history.length >= 2, 30_000, 250);
  const idle = await status();
  assert.ok(idle.history.every((d) => d.action === 'none' && d.replicas === 1), JSON.stringify(idle.history));
  assert.equal(idle.scalesTotal, 0);

  // Load: a bounded busy loop in replica 1.
  const burnSec = 20;
  const burners = await Promise.all([1, 2].map(() => docker.getContainer(seed.name).exec({ Cmd: ['timeout', String(burnSec), 'sh', '-c', 'while :; do :; done'] })));
  // Detached: the engine answers at once; read that answer, or its socket keeps this process alive.
  for (const b of burners) ((await b.start({ Detach: true })) as unknown as NodeJS.ReadableStream).resume();
  const loadStart = Date.now();

  const up = await waitUntil('a scale up to 2', async () => {
    const s = await status();
    return s.history.find((d) => d.action === 'scale-up' && d.childOutcome !== undefined) ? s : undefined;
  }, 60_000, 250).catch(async (err: unknown) => {
    console.log(`  status: ${JSON.stringify(await status())}`);
    throw err;
  });
  const upDecision = up.history.find((d) => d.action === 'scale-up')!;
  console.log(`  scale up decided ${upDecision.at - loadStart} ms after the load started: ${upDecision.reason}; child ${upDecision.child}: ${upDecision.childOutcome}`);
  assert.equal(upDecision.desired, 2);
  assert.equal(upDecision.child, `autoscale/${S.service}/scale-1`);
  assert.equal(upDecision.childOutcome, 'scaled');
  // The up window (6 s, longer than one decision round) held the first high recommendation.
  assert.ok(up.history.some((d) => d.at >= loadStart && d.raw === 2 && d.action === 'none' && d.heldBy === 'stabilization'), `the up window held the first high recommendation: ${JSON.stringify(up.history)}`);
  assert.deepEqual(await replicaNames(), [`${S.service}-1`, `${S.service}-2`]);
  await waitUntil('both replicas UP in HAProxy', async () => (await upServers()).length === 2, 20_000);
  const child = await client.workflow.getHandle(`autoscale/${S.service}/scale-1`).describe();
  assert.equal(child.status.name, 'COMPLETED');

  // high_cpu (the test's threshold: above 60 % for 2.5 s) -> a warning email.
  const mails = await waitForMail(`${S.service} high_cpu`, 1, 30_000);
  assert.match(await mailText(mails[0]!.ID), /Severity: warning/);

  // The load ends (busybox timeout). From then on: no scale down before the down window.
  await waitUntil('the burn to end', async () => (await Promise.all(burners.map((b) => b.inspect()))).every((i) => !i.Running), (burnSec + 10) * 1_000, 250);
  const loadEnd = Date.now();
  const down = await waitUntil('a scale down to 1', async () => {
    const s = await status();
    return s.history.find((d) => d.action === 'scale-down' && d.childOutcome !== undefined) ? s : undefined;
  }, DOWN_WINDOW_MS + 60_000, 250).catch(async (err: unknown) => {
    console.log(`  status: ${JSON.stringify(await status())}`);
    throw err;
  });
  const downDecision = down.history.find((d) => d.action === 'scale-down')!;
  console.log(`  scale down decided ${downDecision.at - loadEnd} ms after the load ended (down window ${DOWN_WINDOW_MS} ms): ${downDecision.reason}`);
  // Between the end of the load and the scale down, the window held low recommendations.
  const held = down.history.filter((d) => d.at > loadEnd && d.at < downDecision.at && d.raw === 1 && d.heldBy === 'stabilization');
  assert.ok(held.length >= 2, `low recommendations held by the down window: ${JSON.stringify(down.history)}`);
  // The window counts from the end of the scale up (the new size is a fresh recommendation).
  const upEnded = down.history.find((d) => d.action === 'scale-up')?.childEndedAt ?? upDecision.childEndedAt!;
  assert.ok(downDecision.at - upEnded > DOWN_WINDOW_MS, `scaled down ${downDecision.at - upEnded} ms after the scale up ended`);
  // The last high recommendation can come from a sample that overlapped the load's end.
  assert.ok(downDecision.at - loadEnd >= DOWN_WINDOW_MS - SAMPLE_WINDOW_MS - INTERVAL_MS - 1_000, `scaled down only ${downDecision.at - loadEnd} ms after the load ended`);
  assert.equal(downDecision.desired, 1);
  assert.equal(downDecision.childOutcome, 'scaled');
  assert.deepEqual(await replicaNames(), [`${S.service}-1`]);
  assert.deepEqual(await upServers(), [`${S.service}-1`]);

  // Pause, resume, stop.
  await handle.signal('pause', { by: 'test', reason: 'maintenance' });
  await waitUntil('paused', async () => (await status()).state === 'paused', 20_000, 250);
  await handle.signal('resume');
  await waitUntil('observing again', async () => (await status()).state !== 'paused', 20_000, 250);
  await handle.signal('stop', { by: 'test', reason: 'done' });
  const final: AutoscaleStatus = await handle.result();
  assert.equal(final.state, 'stopped');
  assert.equal(final.scalesTotal, 2);
});
