/**
 * resizeService on the real stack: real containers and a real Swarm service of the demo image,
 * real `docker stats`, `docker update` and `docker service update`, real SMTP for the alert.
 * Ports 127.0.0.1:19300-19399.
 */
import assert from 'node:assert/strict';
import { writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { createResourceActivities } from '../../src/activities/resources';
import type { ResizeServiceInput } from '../../src/schemas/resize-service';
import type { PlanView } from '../../src/workflows/shared/approval';
import type { ResizePlan, ResizeReport } from '../../src/workflows/resize-service';
import { DEMO_IMAGE, docker, httpStatus, inspect, runDemo, type DemoContainer } from '../helpers/docker';
import { mailText, waitForMail } from '../helpers/mailpit';
import { connectClient, startWorker, testLog, uniqueName, type RunningWorker } from '../helpers/temporal';
import { sleep, waitUntil } from '../helpers/wait';

const MIB = 1024 * 1024;
let client: Client;
let worker: RunningWorker;
const containers: DemoContainer[] = [];
const services: string[] = [];

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('resize-test') });
});

after(async () => {
  const t0 = Date.now();
  await Promise.all(containers.map((c) => c.remove()));
  await Promise.all(services.map((s) => docker.getService(s).remove().catch(() => undefined)));
  console.log(`  cleanup: containers and services removed in ${Date.now() - t0} ms`);
  await worker.stop();
  console.log(`  cleanup: worker stopped at ${Date.now() - t0} ms`);
  await client.connection.close();
});

/** A demo container with starting limits: 1 CPU, 256 MiB. */
async function demo(port: number): Promise<DemoContainer> {
  const c = await runDemo({ name: uniqueName('rs'), port });
  containers.push(c);
  await docker.getContainer(c.name).update({ NanoCpus: 1e9, Memory: 256 * MIB, MemorySwap: 256 * MIB });
  await waitUntil(`${c.name} to serve`, async () => (await httpStatus(c.healthUrl)) === 200, 20_000);
  return c;
}

const fast = { windowMs: 3_000, sampleIntervalMs: 1_000, healthTimeoutMs: 15_000, verifyStableMs: 2_000, verifyIntervalMs: 250 } satisfies Partial<ResizeServiceInput>;

function start(input: ResizeServiceInput, id = uniqueName('resize')) {
  // Straight to Temporal (not through the CLI's validation): the workflow validates too.
  return client.workflow.start('resizeService', { taskQueue: worker.taskQueue, workflowId: id, args: [input] });
}

function failureOf(err: unknown): ApplicationFailure {
  assert.ok(err instanceof WorkflowFailedError, `expected a failed workflow, got ${String(err)}`);
  assert.ok(err.cause instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(err.cause)}`);
  return err.cause;
}

test('recommendation within bounds, applied with docker update (no restart), read back by docker inspect; a second run is a no-op', async () => {
  const c = await demo(19301);
  const startedAt = (await inspect(c.name)).State.StartedAt;
  const bounds = { cpu: { min: 0.2, max: 0.5 }, memoryMb: { min: 48, max: 96 } };
  const t0 = Date.now();
  const report: ResizeReport = await (await start({ service: c.name, ...fast, bounds, healthUrl: c.healthUrl })).result();
  console.log(`  resize (containers) took ${Date.now() - t0} ms; plan usage ${JSON.stringify(report.plan?.usage)}`);
  assert.equal(report.outcome, 'resized');
  const t = report.plan!.target;
  assert.ok(t.cpus >= bounds.cpu.min && t.cpus <= bounds.cpu.max, `cpu ${t.cpus} within bounds`);
  assert.ok(t.memoryMb >= bounds.memoryMb.min && t.memoryMb <= bounds.memoryMb.max, `memory ${t.memoryMb} within bounds`);
  // An idle demo service: peak + 30 % is under the minimums, so the minimums are chosen.
  assert.equal(t.cpus, 0.2);
  assert.equal(t.memoryMb, 48);
  assert.deepEqual(report.plan!.current, { cpus: 1, memoryMb: 256, cpuReservation: 0, memoryReservationMb: 0 });
  assert.ok(report.plan!.usage.samples >= 2, 'several docker stats samples');
  const h = (await inspect(c.name)).HostConfig;
  assert.equal(h.NanoCpus, 0.2e9);
  assert.equal(h.Memory, 48 * MIB);
  assert.equal(h.MemoryReservation, 24 * MIB, 'memory reservation = half the limit');
  assert.equal((h as { CpuShares?: number }).CpuShares, Math.round(0.1 * 1024), 'cpu reservation (shares) = half the limit');
  assert.equal((await inspect(c.name)).State.StartedAt, startedAt, 'docker update does not restart the container');
  assert.equal(await httpStatus(c.healthUrl), 200);

  const again: ResizeReport = await (await start({ service: c.name, ...fast, bounds, healthUrl: c.healthUrl })).result();
  assert.equal(again.outcome, 'unchanged', 'the same limits again: nothing to do');
  // The activity itself is idempotent (a retry after a crash): the same limits again change nothing.
  const acts = createResourceActivities({ docker, log: testLog });
  assert.deepEqual(await acts.applyResourceLimits({ service: c.name, mode: 'containers', limits: report.plan!.target }), { changed: false, containers: [] });
});

test('swarm: explicit limits applied by a rolling service update; the spec and the new task container carry them', async () => {
  const name = uniqueName('rs-swarm');
  services.push(name);
  await docker.createService({
    Name: name,
    TaskTemplate: {
      ContainerSpec: {
        Image: DEMO_IMAGE,
        Env: ['PORT=19320'],
        Healthcheck: { Test: ['CMD', '/bin/healthcheck'], Interval: 1e9, Timeout: 2e9, Retries: 3, StartPeriod: 1e9 },
      },
      Networks: [{ Target: 'host' }],
      Resources: { Limits: { NanoCPUs: 1e9, MemoryBytes: 256 * MIB } },
    },
    Mode: { Replicated: { Replicas: 1 } },
  } as never);
  await waitUntil('the swarm replica to serve', async () => (await httpStatus('http://127.0.0.1:19320/health')) === 200, 60_000, 250);
  await waitUntil('the swarm task to be running (healthy)', async () => {
    const tasks = (await docker.listTasks({ filters: { service: [name], 'desired-state': ['running'] } })) as Array<{ Status: { State: string } }>;
    return tasks.some((t) => t.Status.State === 'running');
  }, 60_000, 250);
  const t0 = Date.now();
  const report: ResizeReport = await (
    await start({ service: name, mode: 'swarm', ...fast, updateDelayMs: 0, limits: { cpu: 0.3, memoryMb: 64 }, healthUrl: 'http://127.0.0.1:19320/health', healthTimeoutMs: 30_000 })
  ).result();
  console.log(`  resize (swarm, 1 task) took ${Date.now() - t0} ms`);
  assert.equal(report.outcome, 'resized');
  assert.deepEqual(report.plan!.current, { cpus: 1, memoryMb: 256, cpuReservation: 0, memoryReservationMb: 0 });
  assert.deepEqual(report.finalLimits, { cpus: 0.3, memoryMb: 64, cpuReservation: 0.15, memoryReservationMb: 32 });
  const spec = await docker.getService(name).inspect();
  const res = (spec.Spec.TaskTemplate as { Resources: { Limits: { NanoCPUs: number; MemoryBytes: number }; Reservations: { NanoCPUs: number; MemoryBytes: number } } }).Resources;
  assert.deepEqual(res, { Limits: { NanoCPUs: 0.3e9, MemoryBytes: 64 * MIB }, Reservations: { NanoCPUs: 0.15e9, MemoryBytes: 32 * MIB } });
  const tasks = (await docker.listTasks({ filters: { service: [name], 'desired-state': ['running'] } })) as Array<{ Status: { State: string; ContainerStatus?: { ContainerID?: string } } }>;
  const running = tasks.filter((t) => t.Status.State === 'running');
  assert.equal(running.length, 1);
  const h = (await inspect(running[0]!.Status.ContainerStatus!.ContainerID!)).HostConfig;
  assert.equal(h.NanoCpus, 0.3e9, 'docker inspect of the task container: the new CPU limit');
  assert.equal(h.Memory, 64 * MIB, 'docker inspect of the task container: the new memory limit');
  assert.equal(await httpStatus('http://127.0.0.1:19320/health'), 200);
});

test('unhealthy after the resize: the old limits come back and an alert is sent', async () => {
  const c = await demo(19302);
  const handle = await start({ service: c.name, ...fast, verifyStableMs: 20_000, limits: { cpu: 0.5, memoryMb: 128 }, healthUrl: c.healthUrl });
  // The moment the new limits are on, the service turns unhealthy (the demo image's control file).
  await waitUntil('the new limits to be applied', async () => (await inspect(c.name)).HostConfig.NanoCpus === 0.5e9, 30_000, 100);
  writeFileSync(path.join(c.controlDir, 'unhealthy'), '');
  try {
    const err = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    const f = failureOf(err);
    assert.equal(f.type, 'RolledBack', f.message);
    assert.match(f.message, /unhealthy after the resize/);
    const report = (await handle.query<ResizeReport>('status'));
    assert.equal(report.outcome, 'rolled-back');
    assert.equal(report.alertSent, true);
    const h = (await inspect(c.name)).HostConfig;
    assert.equal(h.NanoCpus, 1e9, 'old CPU limit restored');
    assert.equal(h.Memory, 256 * MIB, 'old memory limit restored');
    const mails = await waitForMail(c.name, 1, 30_000);
    const text = await mailText(mails[0]!.ID);
    assert.match(text, /restored limits: cpu 1/);
  } finally {
    rmSync(path.join(c.controlDir, 'unhealthy'), { force: true });
  }
});

test('plan gate: dry run and reject change nothing; approve applies; the plan is visible by query', async () => {
  const c = await demo(19303);
  const base = { service: c.name, ...fast, limits: { cpu: 0.4, memoryMb: 80 }, healthUrl: c.healthUrl };

  const dry: ResizeReport = await (await start({ ...base, dryRun: true })).result();
  assert.equal(dry.outcome, 'dry-run');
  assert.equal(dry.plan!.target.cpus, 0.4);
  assert.equal((await inspect(c.name)).HostConfig.NanoCpus, 1e9, 'dry run: unchanged');

  const rejected = await start({ ...base, approval: 'required' });
  const plan = await waitUntil('the plan to await approval', async () => {
    const v = await rejected.query<PlanView<ResizePlan>>('plan');
    return v.state === 'awaiting-approval' ? v : undefined;
  }, 30_000, 200);
  assert.equal(plan.plan!.target.memoryMb, 80);
  assert.equal(plan.plan!.current.memoryMb, 256);
  await assert.rejects(rejected.executeUpdate('reject', { args: [{ by: 'alice' }] }), 'a decision without a reason is refused');
  await rejected.executeUpdate('reject', { args: [{ by: 'alice', reason: 'not during the sale' }] });
  const r: ResizeReport = await rejected.result();
  assert.equal(r.outcome, 'rejected');
  assert.equal(r.decision?.by, 'alice');
  assert.equal((await inspect(c.name)).HostConfig.Memory, 256 * MIB, 'rejected: unchanged');

  const approved = await start({ ...base, approval: 'required' });
  await waitUntil('the plan to await approval', async () => (await approved.query<PlanView<ResizePlan>>('plan')).state === 'awaiting-approval', 30_000, 200);
  await sleep(200);
  assert.equal((await inspect(c.name)).HostConfig.Memory, 256 * MIB, 'nothing changes before the approval');
  await approved.executeUpdate('approve', { args: [{ by: 'bob', reason: 'capacity review' }] });
  const a: ResizeReport = await approved.result();
  assert.equal(a.outcome, 'resized');
  assert.equal(a.decision?.by, 'bob');
  const h = (await inspect(c.name)).HostConfig;
  assert.equal(h.NanoCpus, 0.4e9);
  assert.equal(h.Memory, 80 * MIB);
});

test('bad input fails at once, naming the field; a limit below the observed usage floor is refused and nothing is touched', async () => {
  for (const [input, field] of [
    [{ service: 'x', colour: 'red' }, /colour: unknown field/],
    [{ service: 'x', bounds: { cpu: { min: 2, max: 1 } } }, /bounds\.cpu\.min: must be <= max/],
    [{ service: 'x', limits: { memoryMb: 2 } }, /limits\.memoryMb: must be >= 6 MiB/],
  ] as const) {
    const f = failureOf(await (await start(input as never)).result().catch((e: unknown) => e));
    assert.equal(f.type, 'InvalidInput');
    assert.match(f.message, field);
  }

  const missing = await (await start({ service: 'durable-ops-no-such-service', ...fast })).result().catch((e: unknown) => e);
  assert.ok(missing instanceof WorkflowFailedError);
  assert.equal((missing.cause?.cause as ApplicationFailure | undefined)?.type, 'ServiceNotFound', 'an unknown service fails non-retryably');

  // Busy the container's CPU for the window (bounded by `timeout`), then ask for less than it uses.
  const c = await demo(19304);
  const exec = await docker.getContainer(c.name).exec({ Cmd: ['timeout', '8', 'sh', '-c', 'while :; do :; done'] });
  // Detached: the engine answers at once; read that answer, or its socket keeps this process alive.
  ((await exec.start({ Detach: true })) as unknown as NodeJS.ReadableStream).resume();
  const f = failureOf(await (await start({ service: c.name, ...fast, windowMs: 4_000, limits: { cpu: 0.05 } })).result().catch((e: unknown) => e));
  assert.equal(f.type, 'InvalidInput');
  assert.match(f.message, /limits\.cpu: 0\.05 CPU is below the observed usage floor/);
  const h = (await inspect(c.name)).HostConfig;
  assert.equal(h.NanoCpus, 1e9, 'nothing touched');
  assert.equal(h.Memory, 256 * MIB, 'nothing touched');
});
