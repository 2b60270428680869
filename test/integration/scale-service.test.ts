/**
 * scaleService on the real stack: real Docker (containers and Swarm services of the demo image on
 * the host network), a real HAProxy 2.6 driven through its runtime API and a real Nginx reloaded
 * from the rendered upstream, both started by this file from the same code the stack uses
 * (src/stack/lb.ts) on loopback ports 19100-19299 and 19500-19519, and real traffic from autocannon.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { lbFiles } from '../../src/activities/lb-config';
import { startRunbook } from '../../src/runbooks/registry';
import type { ScaleServiceInput } from '../../src/schemas/scale-service';
import type { ScaleReport, ScaleResult } from '../../src/workflows/scale-service';
import { DEMO_IMAGE, docker, httpStatus, runDemo } from '../helpers/docker';
import { containerSlots, range, startTestLb, underLoad, type TestLb } from '../helpers/lb';
import { waitForMail } from '../helpers/mailpit';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { spawnWorker } from '../helpers/worker-process';
import { sleep, waitUntil } from '../helpers/wait';

const NS = 1_000_000;
const taskQueue = uniqueName('scale-test');
const id = uniqueName('sc').slice(3);
/** One backend per scenario: HAProxy frontend, Nginx port, replica n on base+n. */
const B = {
  c: { backend: 'scale-c', service: `scalec-${id}`, frontendPort: 19101, nginxPort: 19102, base: 19110 },
  s: { backend: 'scale-s', service: `scales-${id}`, frontendPort: 19121, base: 19130 },
  u: { backend: 'scale-u', service: `scaleu-${id}`, frontendPort: 19141, base: 19150 },
  k: { backend: 'scale-k', service: `scalek-${id}`, frontendPort: 19161, base: 19170 },
  a: { backend: 'scale-a', service: `scalea-${id}`, frontendPort: 19201, base: 19210 },
  g: { backend: 'scale-g', service: `scaleg-${id}`, frontendPort: 19501, base: 19510 },
} as const;
type Scenario = (typeof B)[keyof typeof B];

let client: Client;
let worker: RunningWorker;
let lb: TestLb;
let dir: string;
const swarmServices: string[] = [];
const controlDirs: string[] = [];

before(async () => {
  // Replica 1 of each service is declared in the balancer's model here (these tests are about the
  // scaling itself); test/integration/scale-coordination.test.ts starts from an empty balancer, as
  // the stack's config/lb.json does, where scaleService adopts replica 1.
  lb = await startTestLb(Object.values(B), { declareReplica1: true, nginx: true });
  dir = lb.dir;
  process.env.DURABLE_OPS_LB_DIR = dir;
  client = await connectClient();
  worker = await startWorker({ taskQueue, env: { ...process.env, DURABLE_OPS_LB_DIR: dir } });
});

after(async () => {
  await worker?.stop();
  await client?.connection.close();
  for (const s of swarmServices) await docker.getService(s).remove().catch(() => undefined);
  await lb?.stop(id);
  for (const d of controlDirs) rmSync(d, { recursive: true, force: true });
});

// --- helpers -------------------------------------------------------------------------------

const stat = (backend: string) => lb.stat(backend);
const seedContainer = (s: Scenario) => lb.seedContainer(s);
const assertInRotation = (s: Scenario, slots: number[]) => lb.assertInRotation(s, slots);

async function seedSwarm(s: Scenario): Promise<string> {
  const control = mkdtempSync(path.join(tmpdir(), `${s.service}-control-`));
  controlDirs.push(control);
  await docker.createService({
    Name: s.service,
    Labels: { 'durable-ops.test': 'true' },
    TaskTemplate: {
      ContainerSpec: {
        Image: DEMO_IMAGE,
        Env: [`PORT=${s.base}`, 'SLOT={{.Task.Slot}}'],
        // Tolerant of a loaded machine: Swarm replaces a task whose checks fail.
        Healthcheck: { Test: ['CMD', '/bin/healthcheck'], Interval: 1_000 * NS, Timeout: 5_000 * NS, Retries: 10, StartPeriod: 1_000 * NS },
        Mounts: [{ Type: 'bind', Source: control, Target: '/control' }],
        StopGracePeriod: 5_000 * NS,
      },
      Networks: [{ Target: 'host' }],
      RestartPolicy: { Condition: 'any' },
    },
    Mode: { Replicated: { Replicas: 1 } },
  } as never);
  swarmServices.push(s.service);
  await waitUntil(`${s.service}.1 to serve`, async () => (await httpStatus(`http://127.0.0.1:${s.base + 1}/health`)) === 200, 60_000);
  await waitUntil(`${s.backend}/${s.service}-1 UP in HAProxy`, async () => (await stat(s.backend)).some((r) => r.svname === `${s.service}-1` && r.status === 'UP'), 20_000);
  return control;
}

async function swarmSlots(service: string): Promise<number[]> {
  const tasks = (await docker.listTasks({ filters: { service: [service], 'desired-state': ['running'] } })) as Array<{ Slot?: number }>;
  return tasks.map((t) => t.Slot!).sort((a, b) => a - b);
}

function run(s: Scenario, input: Partial<ScaleServiceInput> & { replicas: number }, tq = taskQueue) {
  return startRunbook(client, 'scaleService', { service: s.service, backend: s.backend, basePort: s.base, mode: 'containers', stepDelayMs: 200, healthTimeoutMs: 20_000, drainTimeoutMs: 5_000, ...input }, { taskQueue: tq, workflowId: uniqueName(`scale-${s.service}`) });
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => assert.fail('expected the workflow to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${String(err)}`);
  assert.ok(err.cause instanceof ApplicationFailure);
  return err.cause;
}

// --- tests ---------------------------------------------------------------------------------

test('bad input names the field and touches nothing', async () => {
  const s = B.a;
  let f = await failureOf(run(s, { replicas: 2, service: 'no-such-service' }).then((h) => h.result()));
  assert.equal(f.type, 'InvalidInput');
  assert.match(f.message, /service: no container named "no-such-service-<n>"/);
  await seedContainer(s);
  f = await failureOf(run(s, { replicas: 2, backend: 'no-such-backend' }).then((h) => h.result()));
  assert.equal(f.type, 'InvalidInput');
  assert.match(f.message, /backend: HAProxy has no backend named "no-such-backend"/);
  // Schema errors (replicas above the max, unknown fields) are refused by the starter already,
  // and by the workflow itself when started raw.
  const raw = await client.workflow.start('scaleService', { taskQueue, workflowId: uniqueName('scale-raw'), args: [{ service: s.service, basePort: s.base, replicas: 99, colour: 'red' }] });
  f = await failureOf(raw.result());
  assert.equal(f.type, 'InvalidInput');
  assert.match(f.message, /replicas: must be <= 20/);
  assert.match(f.message, /colour: unknown field/);
  assert.deepEqual(await containerSlots(s.service), [1], 'nothing was started');
});

test('containers: 1 -> 5 -> 1 under load through HAProxy and Nginx, no failed request', async () => {
  const s = B.c;
  await seedContainer(s);
  const urls = [`http://127.0.0.1:${s.frontendPort}/`, `http://127.0.0.1:${s.nginxPort}/`];
  const { value, loads } = await underLoad(urls, async () => {
    const up = (await (await run(s, { replicas: 5 })).result()) as ScaleResult;
    assert.equal(up.outcome, 'scaled');
    assert.deepEqual(up.after, range(5).map((n) => `${s.service}-${n}`));
    assert.deepEqual(await containerSlots(s.service), range(5));
    await assertInRotation(s, range(5));
    await sleep(1_000); // traffic over all five
    const down = (await (await run(s, { replicas: 1 })).result()) as ScaleResult;
    return { up, down };
  });
  assert.equal(value.down.outcome, 'scaled');
  assert.deepEqual(value.down.after, [`${s.service}-1`]);
  assert.deepEqual(await containerSlots(s.service), [1]);
  await assertInRotation(s, [1]);
  const [viaHaproxy, viaNginx] = loads;
  if (process.env.SCALE_DEBUG) console.log((await import('node:fs')).readFileSync(lbFiles(dir).nginxErrorLog, 'utf8').slice(-3000));
  console.log(`containers 1->5->1: HAProxy ${JSON.stringify(viaHaproxy)}; Nginx ${JSON.stringify(viaNginx)}; up ${value.up.durationMs} ms, down ${value.down.durationMs} ms`);
  assert.ok(viaHaproxy!.requests > 100, `enough requests (${viaHaproxy!.requests})`);
  assert.equal(viaHaproxy!.errors, 0, 'no failed request through HAProxy');
  assert.equal(viaHaproxy!.non2xx, 0, 'no non-2xx response through HAProxy');
  // Nginx: every request answered 2xx; the only client errors allowed are the keep-alive connections
  // an Nginx reload closes while idle (a client reusing one at that instant sees a reset; browsers
  // retry). At most one per load connection per reload (8 steps).
  assert.ok(viaNginx!.requests > 100, `enough requests (${viaNginx!.requests})`);
  assert.equal(viaNginx!.non2xx, 0, 'no non-2xx response through Nginx');
  assert.ok(viaNginx!.errors <= 8 * 4, `connection resets through Nginx bounded by reloads x connections (${viaNginx!.errors})`);
  // Nginx's rendered upstream follows the set: one server left.
  const conf = (await import('node:fs')).readFileSync(lbFiles(dir).nginxConf, 'utf8');
  assert.match(conf, new RegExp(`server 127\\.0\\.0\\.1:${s.base + 1} weight=1; # ${s.service}-1`));
  assert.doesNotMatch(conf, new RegExp(`${s.service}-2`));
});

test('swarm: 1 -> 5 -> 1 under load through HAProxy, no failed request, the highest slots leave', async () => {
  const s = B.s;
  await seedSwarm(s);
  const { value, loads } = await underLoad([`http://127.0.0.1:${s.frontendPort}/`], async () => {
    const up = (await (await run(s, { replicas: 5, mode: 'swarm' })).result()) as ScaleResult;
    assert.equal(up.outcome, 'scaled');
    if (process.env.SCALE_DEBUG) console.log(JSON.stringify(await docker.listTasks({ filters: { service: [s.service] } }).then((ts) => (ts as Array<{ Slot: number; DesiredState: string; Status: { State: string; Err?: string; Message?: string } }>).map((t) => [t.Slot, t.DesiredState, t.Status.State, t.Status.Err ?? t.Status.Message]))));
    assert.deepEqual(await swarmSlots(s.service), range(5));
    await assertInRotation(s, range(5));
    await sleep(1_000);
    const down = (await (await run(s, { replicas: 1, mode: 'swarm' })).result()) as ScaleResult;
    return { up, down };
  });
  assert.equal(value.down.outcome, 'scaled');
  assert.deepEqual(await swarmSlots(s.service), [1]);
  await assertInRotation(s, [1]);
  console.log(`swarm 1->5->1: HAProxy ${JSON.stringify(loads[0])}; up ${value.up.durationMs} ms, down ${value.down.durationMs} ms`);
  assert.ok(loads[0]!.requests > 100);
  assert.equal(loads[0]!.errors, 0, 'no failed request');
  assert.equal(loads[0]!.non2xx, 0, 'no non-2xx response');
});

test('a replica that never turns healthy: rolled back to the starting set, alert sent, no traffic to it', async () => {
  const s = B.u;
  const seed = await seedContainer(s);
  // Replica 1 runs already; every replica started from now on exits at start (a crash loop).
  writeFileSync(path.join(seed.controlDir, 'crash-on-start'), '');
  const seen = new Map<string, number>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const r of await stat(s.backend)) seen.set(r.svname!, Math.max(seen.get(r.svname!) ?? 0, Number(r.stot)));
      await sleep(100);
    }
  })();
  const { loads, value: f } = await underLoad([`http://127.0.0.1:${s.frontendPort}/`], async () => failureOf((await run(s, { replicas: 3, healthTimeoutMs: 4_000 })).result()));
  watching = false;
  await watcher;
  assert.equal(f.type, 'ScaleFailed');
  assert.match(f.message, /not healthy within 4000 ms/);
  assert.deepEqual(await containerSlots(s.service), [1], 'back to the starting set');
  await assertInRotation(s, [1]);
  assert.equal(seen.get(`${s.service}-2`) ?? 0, 0, 'no session ever reached the unhealthy replica');
  assert.equal(loads[0]!.errors + loads[0]!.non2xx, 0, 'no failed request meanwhile');
  await waitForMail(`${s.service} scaling`, 1, 30_000);
});

test('a new replica up for HAProxy but not yet healthy for Docker: staged drained, no traffic until all checks agree', async () => {
  const s = B.g;
  // Replica 1 (and so every clone) with a 6 s Docker health interval: Docker says "starting" for
  // ~6 s while the replica already answers /health and HAProxy's checks (inter 500 ms) pass.
  const d = await runDemo({ name: `${s.service}-1`, port: s.base + 1, healthIntervalMs: 6_000 });
  lb.track(d);
  await waitUntil(`${d.name} UP in HAProxy`, async () => (await stat(s.backend)).some((r) => r.svname === d.name && r.status === 'UP'), 30_000);
  const server = `${s.service}-2`;
  const seen: Array<{ status: string; stot: number }> = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const r = (await stat(s.backend)).find((x) => x.svname === server);
      if (r) seen.push({ status: r.status!, stot: Number(r.stot) });
      await sleep(100);
    }
  })();
  const { loads, value } = await underLoad([`http://127.0.0.1:${s.frontendPort}/`], async () => {
    const r = (await (await run(s, { replicas: 2 })).result()) as ScaleResult;
    await sleep(1_000); // traffic over both
    return r;
  });
  watching = false;
  await watcher;
  assert.equal(value.outcome, 'scaled');
  await assertInRotation(s, [1, 2]);
  const staged = seen.filter((x) => x.status !== 'UP');
  const drainedUp = staged.filter((x) => x.status === 'DRAIN').length;
  console.log(`staged ${server}: ${staged.length} samples out of rotation, ${drainedUp} of them with HAProxy's checks passing (DRAIN); sessions then: ${Math.max(0, ...staged.map((x) => x.stot))}`);
  assert.ok(drainedUp >= 5, `HAProxy's checks passed while Docker still said starting (${drainedUp} DRAIN samples)`);
  assert.equal(Math.max(0, ...staged.map((x) => x.stot)), 0, 'no session reached it before it was in rotation');
  assert.ok(seen.at(-1)!.stot > 0, 'in rotation, it takes traffic');
  assert.equal(loads[0]!.errors + loads[0]!.non2xx, 0, 'no failed request');
});

test('worker SIGKILLed mid scale-up and mid scale-down: exactly the target replicas', async () => {
  const s = B.k;
  await seedContainer(s);
  const tq = uniqueName('scale-test-kill');
  Object.assign(process.env, { DURABLE_OPS_LB_DIR: dir, DURABLE_OPS_METRICS_PORT: '0', DURABLE_OPS_RECEIVER_PORT: '0' });
  // One worker process at a time on a private queue: killed after a step of the scale up, a fresh
  // one finishes it; killed again mid scale down, a third finishes that.
  let w = await spawnWorker(tq);
  try {
    for (const [target, killAfterSteps] of [
      [3, 1],
      [1, 1],
    ] as const) {
      const t0 = Date.now();
      const handle = await run(s, { replicas: target }, tq);
      await waitUntil(`step ${killAfterSteps} done`, async () => (await handle.query<ScaleReport>('status')).stepsDone >= killAfterSteps, 90_000, 50).catch(async (err: unknown) => {
        console.log(JSON.stringify(await handle.query<ScaleReport>('status').catch((e: unknown) => String(e))), w.output().slice(-3000));
        throw err;
      });
      await w.kill('SIGKILL');
      const killedAt = Date.now() - t0;
      w = await spawnWorker(tq);
      const result = (await handle.result()) as ScaleResult;
      console.log(`scale to ${target}: worker SIGKILLed at ${killedAt} ms, done at ${Date.now() - t0} ms`);
      assert.equal(result.outcome, 'scaled');
      assert.deepEqual(await containerSlots(s.service), range(target), `exactly ${target} replica(s), none duplicated or lost`);
      await assertInRotation(s, range(target));
    }
  } finally {
    await w.kill('SIGKILL');
  }
});

test('approval: plan by query; reject changes nothing; approve applies; a timeout ends cleanly', async () => {
  const s = B.a;
  if ((await containerSlots(s.service)).length === 0) await seedContainer(s);
  const planOf = async (h: Awaited<ReturnType<typeof run>>) =>
    waitUntil('the plan', async () => {
      const v = await h.query<{ state: string; plan?: { steps: unknown[]; target: string[]; expectedDurationMs: number } }>('plan');
      return v.state === 'awaiting-approval' ? v : undefined;
    });
  // Dry run: the plan, nothing else.
  const dry = (await (await run(s, { replicas: 3, dryRun: true })).result()) as ScaleResult;
  assert.equal(dry.outcome, 'dry-run');
  assert.equal(dry.plan.steps.length, 2);
  // Reject.
  let h = await run(s, { replicas: 3, approval: 'required' });
  const view = await planOf(h);
  assert.deepEqual(view.plan!.target, [1, 2, 3].map((n) => `${s.service}-${n}`));
  assert.ok(view.plan!.expectedDurationMs > 0);
  await assert.rejects(h.executeUpdate('approve', { args: [{ by: '', reason: 'x' }] }), (e: Error) => /say who decides/.test(String((e.cause as Error | undefined)?.message)));
  await h.executeUpdate('reject', { args: [{ by: 'alice', reason: 'not during the sale' }] });
  let r = (await h.result()) as ScaleResult;
  assert.equal(r.outcome, 'rejected');
  assert.equal(r.decision?.by, 'alice');
  assert.deepEqual(await containerSlots(s.service), [1]);
  // Approve.
  h = await run(s, { replicas: 2, approval: 'required' });
  await planOf(h);
  await h.executeUpdate('approve', { args: [{ by: 'bob', reason: 'traffic is up' }] });
  r = (await h.result()) as ScaleResult;
  assert.equal(r.outcome, 'scaled');
  assert.deepEqual(await containerSlots(s.service), [1, 2]);
  await assertInRotation(s, [1, 2]);
  // Timeout.
  h = await run(s, { replicas: 1, approval: 'required', approvalTimeoutMs: 1_000 });
  r = (await h.result()) as ScaleResult;
  assert.equal(r.outcome, 'timed-out');
  assert.deepEqual(await containerSlots(s.service), [1, 2], 'nothing changed');
});
