/**
 * rotateCredential on the real stack: Vault (server mode, the worker's AppRole), the project
 * PostgreSQL cluster, Docker Swarm secrets. Zero failed queries through a rotation, rollback on a
 * failure in test, a worker SIGKILLed mid-rotation completing exactly once, and no secret value
 * in the history, the worker's logs or the alert emails.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { pino } from 'pino';
import { withPgClient, pgSettings } from '../../src/activities/postgres';
import { vaultSettings, VaultSession } from '../../src/activities/vault';
import { startRunbook } from '../../src/runbooks/registry';
import type { RotationReport } from '../../src/workflows/rotate-credential';
import { docker } from '../helpers/docker';
import { mailText, waitForMail } from '../helpers/mailpit';
import { config, connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { spawnWorker } from '../helpers/worker-process';
import { waitUntil } from '../helpers/wait';

const PG = pgSettings(config);
const ADMIN = { username: config.DURABLE_OPS_PG_ADMIN_USER, password: readFileSync(config.DURABLE_OPS_PG_ADMIN_PASSWORD_FILE ?? `${config.DURABLE_OPS_DATA}/postgres/admin.password`, 'utf8').trim() };
const vault = new VaultSession(vaultSettings(config));

let client: Client;
let worker: RunningWorker;
const logLines: string[] = [];
const apps: string[] = [];
const services: string[] = [];

const admin = (sql: string) => withPgClient(PG, ADMIN, (c) => c.query(sql));

/** Two alternating roles for a fresh app, as the stack makes them for `orders`. */
async function newApp(): Promise<string> {
  const app = `t${uniqueName('x').slice(2).replace(/-/g, '')}`;
  apps.push(app);
  for (const r of ['a', 'b']) await admin(`CREATE ROLE ${app}_${r} NOLOGIN INHERIT IN ROLE app_rw`);
  return app;
}

/** What a consumer does: the current version's username and value from Vault. */
async function currentCreds(vaultPath: string): Promise<{ username: string; password: string; version: number }> {
  const meta = await vault.kvMetadata(vaultPath);
  const version = Number(meta!.customMetadata.current_version);
  const data = (await vault.kvReadVersion(vaultPath, version))!;
  return { username: data.username!, password: data.value!, version };
}

const whoami = (creds: { username: string; password: string }) => withPgClient(PG, creds, async (c) => (await c.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u);
const canLogin = async (role: string) => (await withPgClient(PG, ADMIN, (c) => c.query<{ l: boolean }>('SELECT rolcanlogin AS l FROM pg_roles WHERE rolname = $1', [role]))).rows[0]!.l;

before(async () => {
  // Plain payloads here, so the grep below proves no secret is in them at all (not merely encrypted).
  client = await connectClient({ codec: false });
  const capture = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  worker = await startWorker({ codec: false, log: pino({ level: 'debug' }, capture) });
});

after(async () => {
  await worker.stop();
  await client.connection.close();
  for (const s of services) await docker.getService(s).remove().catch(() => undefined);
  for (const app of apps) for (const r of ['a', 'b']) await admin(`DROP ROLE IF EXISTS ${app}_${r}`).catch(() => undefined);
});

/**
 * The image's own health check (seed: every 30 s) for the test services, but checked every 500 ms:
 * Swarm's rolling update waits for each new task to be healthy, and the tests need not wait 30 s.
 * An empty Test inherits the image's command.
 */
const FAST_HEALTH = { Test: [], Interval: 500_000_000, Timeout: 3_000_000_000, Retries: 3, StartPeriod: 0 };

const rotate = (input: Record<string, unknown>, taskQueue = worker.taskQueue) => startRunbook(client, 'rotateCredential', input, { taskQueue });

/** After a rotation through a crash: done, exactly one new Vault version (no orphan pending one), and the password on the new role is the one Vault holds as current. */
async function assertRotatedOnce(report: RotationReport, app: string, vaultPath: string, before: { version: number }): Promise<void> {
  assert.equal(report.phase, 'done');
  const after = await currentCreds(vaultPath);
  assert.equal(after.version, before.version + 1, 'one new version, not two');
  assert.equal(Object.keys((await vault.kvMetadata(vaultPath))!.versions).length, 2, 'no orphan pending version');
  assert.equal(await whoami(after), `${app}_b`, 'the password set on the role is the one Vault holds as current');
}

test('postgres: two rotations with a client querying all along: 0 failed queries; the old role revoked; no secret in history, logs or alerts', async () => {
  const app = await newApp();
  const vaultPath = `durable-ops/it-${app}`;
  const first: RotationReport = await (await rotate({ credentialId: app, vaultPath, target: { kind: 'postgres-role', app }, gracePeriodMs: 10_000 })).result();
  assert.equal(first.plan.pendingRole, `${app}_a`);
  const v1 = await currentCreds(vaultPath);
  assert.equal(v1.version, first.newVersion);
  assert.equal(await whoami(v1), `${app}_a`);

  // A consumer querying several times a second, reconnecting with the current credential from Vault.
  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const consumer = (async () => {
    while (running) {
      try {
        await whoami(await currentCreds(vaultPath));
        ok += 1;
      } catch (err) {
        failures.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const h = await rotate({ credentialId: app, vaultPath, target: { kind: 'postgres-role', app }, gracePeriodMs: 10_000 });
  const second: RotationReport = await h.result();
  await new Promise((r) => setTimeout(r, 500));
  running = false;
  await consumer;
  assert.deepEqual(failures, [], 'no failed query through the rotation');
  assert.ok(ok >= 5, `the consumer ran (${ok} queries)`);
  assert.deepEqual(second.phases.map((p) => p.phase), ['plan', 'create', 'set', 'test', 'finish', 'done']);
  assert.equal(second.plan.activeRole, `${app}_a`);
  assert.equal(second.plan.pendingRole, `${app}_b`);
  assert.equal(second.revokedOld, true);
  const v2 = await currentCreds(vaultPath);
  assert.equal(v2.version, v1.version + 1);
  assert.equal(await whoami(v2), `${app}_b`);
  assert.equal(await canLogin(`${app}_a`), false, 'the old role can no longer log in');
  const meta = await vault.kvMetadata(vaultPath);
  assert.equal(meta!.customMetadata.previous_version, String(v1.version));
  assert.equal(meta!.customMetadata.pending_version, undefined);

  // No secret value anywhere an operator looks.
  const history = JSON.stringify(await h.fetchHistory());
  const logs = logLines.join('');
  for (const secret of [v1.password, v2.password]) {
    assert.equal(history.includes(secret), false, 'not in the workflow history');
    assert.equal(logs.includes(secret), false, 'not in the worker logs');
  }
  assert.ok(logs.includes('"msg":"role password set"'), 'the worker did log the rotation');
});

test('a failure injected in test rolls back: the old credential keeps working, the pending version is destroyed, an alert goes out', async () => {
  const app = await newApp();
  const vaultPath = `durable-ops/it-${app}`;
  await (await rotate({ credentialId: app, vaultPath, target: { kind: 'postgres-role', app } })).result();
  const before = await currentCreds(vaultPath);
  // The fault: the pending role gets its password but may not connect.
  await admin(`ALTER ROLE ${app}_b CONNECTION LIMIT 0`);
  const h = await rotate({ credentialId: app, vaultPath, target: { kind: 'postgres-role', app } });
  await assert.rejects(h.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, 'RotationFailed');
    assert.match(err.cause.message, /failed in test .*rolled back/);
    return true;
  });
  const after = await currentCreds(vaultPath);
  assert.equal(after.version, before.version, 'still on the current version');
  assert.equal(await whoami(after), `${app}_a`, 'the old credential works');
  assert.equal(await canLogin(`${app}_b`), false, 'the pending role was disabled again');
  const meta = await vault.kvMetadata(vaultPath);
  assert.equal(meta!.customMetadata.pending_version, undefined);
  assert.equal(meta!.versions[String(before.version + 1)]?.destroyed, true, 'the pending version is destroyed');
  const [mail] = await waitForMail(`${app}: rotation failed`, 1, 20_000);
  const text = await mailText(mail!.ID);
  assert.match(text, /rolled back/);
  assert.equal(text.includes(before.password), false, 'no secret in the alert');
});

test('worker SIGKILLed during the finish phase: a new worker completes it; exactly one new version', async () => {
  const app = await newApp();
  const vaultPath = `durable-ops/it-${app}`;
  await (await rotate({ credentialId: app, vaultPath, target: { kind: 'postgres-role', app } })).result();
  const before = await currentCreds(vaultPath);
  // A long-lived session on the old role holds the finish phase in its grace period.
  // The spawned worker encrypts its payloads: read them with the codec.
  const encClient = await connectClient();
  const held = await withPgClient(PG, before, async (c) => {
    const taskQueue = uniqueName('rotate-crash');
    const first = await spawnWorker(taskQueue);
    const h = await startRunbook(encClient, 'rotateCredential', { credentialId: app, vaultPath, target: { kind: 'postgres-role', app }, gracePeriodMs: 6_000 }, { taskQueue });
    await waitUntil('the finish phase', async () => (await h.query<RotationReport>('status')).phase === 'finish', 30_000, 50);
    await first.kill('SIGKILL');
    const second = await spawnWorker(taskQueue);
    await c.end();
    try {
      return (await h.result()) as RotationReport;
    } finally {
      await second.kill();
      await encClient.connection.close();
    }
  });
  await assertRotatedOnce(held, app, vaultPath, before);
});

test('worker SIGKILLed during the set phase (its ALTER ROLE blocked by a lock): completes once, one new version, one password', async () => {
  const app = await newApp();
  const vaultPath = `durable-ops/it-${app}`;
  await (await rotate({ credentialId: app, vaultPath, target: { kind: 'postgres-role', app } })).result();
  const before = await currentCreds(vaultPath);
  const encClient = await connectClient();
  const taskQueue = uniqueName('rotate-crash-set');
  // An open transaction that altered the pending role holds its row lock: the set phase waits on it.
  const report = await withPgClient(PG, ADMIN, async (blocker) => {
    await blocker.query('BEGIN');
    await blocker.query(`ALTER ROLE ${app}_b CONNECTION LIMIT 50`);
    const first = await spawnWorker(taskQueue);
    const h = await startRunbook(encClient, 'rotateCredential', { credentialId: app, vaultPath, target: { kind: 'postgres-role', app }, gracePeriodMs: 5_000 }, { taskQueue });
    await waitUntil('the set phase', async () => (await h.query<RotationReport>('status')).phase === 'set', 30_000, 50);
    await new Promise((r) => setTimeout(r, 300));
    await first.kill('SIGKILL');
    const second = await spawnWorker(taskQueue);
    await blocker.query('COMMIT');
    try {
      return (await h.result()) as RotationReport;
    } finally {
      await second.kill();
      await encClient.connection.close();
    }
  });
  await assertRotatedOnce(report, app, vaultPath, before);
});

test('vault-only: a new version, labelled current, the previous one kept as previous', async () => {
  const id = `v${uniqueName('x').slice(2).replace(/-/g, '')}`;
  const vaultPath = `durable-ops/it-${id}`;
  const r1: RotationReport = await (await rotate({ credentialId: id, vaultPath, target: { kind: 'vault-only' } })).result();
  const r2: RotationReport = await (await rotate({ credentialId: id, vaultPath, target: { kind: 'vault-only' } })).result();
  assert.deepEqual(r2.phases.map((p) => p.phase), ['plan', 'create', 'set', 'test', 'finish', 'done']);
  const meta = await vault.kvMetadata(vaultPath);
  assert.equal(meta!.customMetadata.current_version, String(r2.newVersion));
  assert.equal(meta!.customMetadata.previous_version, String(r1.newVersion));
  const [v1, v2] = await Promise.all([vault.kvReadVersion(vaultPath, r1.newVersion!), vault.kvReadVersion(vaultPath, r2.newVersion!)]);
  assert.ok(v1?.value && v2?.value && v1.value !== v2.value && v2.value.length === 40, 'a fresh 40-character value');
});

test('docker-secret: a new versioned Swarm secret rolled into the consuming service; the old one removed', async () => {
  const name = uniqueName('rot-svc');
  const secretName = `s${name.slice(-8)}`;
  const vaultPath = `durable-ops/it-${secretName}`;
  services.push(name);
  const image = process.env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest';
  // First rotation creates v1 for a service that does not use it yet: attach it by hand, as a deploy would.
  await docker.createService({
    Name: name,
    TaskTemplate: { ContainerSpec: { Image: image, Env: ['PORT=18700'], HealthCheck: FAST_HEALTH }, Networks: [{ Target: 'host' }] },
    Mode: { Replicated: { Replicas: 1 } },
  });
  const r1: RotationReport = await (await rotate({ credentialId: secretName, vaultPath, target: { kind: 'docker-secret', secretName, services: [name], updateDelayMs: 0 } })).result();
  const r2: RotationReport = await (await rotate({ credentialId: secretName, vaultPath, target: { kind: 'docker-secret', secretName, services: [name], updateDelayMs: 0 } })).result();
  assert.equal(r2.phase, 'done');
  const spec = await docker.getService(name).inspect();
  const refs = (spec.Spec.TaskTemplate as { ContainerSpec: { Secrets?: Array<{ SecretName: string; File: { Name: string } }> } }).ContainerSpec.Secrets ?? [];
  assert.deepEqual(refs.map((r) => [r.SecretName, r.File.Name]), [[`${secretName}_v${r2.newVersion}`, secretName]]);
  const secrets = await docker.listSecrets({ filters: { label: [`durable-ops.secret=${secretName}`] } });
  assert.deepEqual(secrets.map((s) => s.Spec?.Name).sort(), [`${secretName}_v${r2.newVersion}`], `the old version ${r1.newVersion} is removed`);
  // The running task reads the new value at /run/secrets/<name>.
  const { password } = await currentCreds(vaultPath).catch(async () => ({ password: (await vault.kvReadVersion(vaultPath, r2.newVersion!))!.value!, username: '', version: 0 }));
  const task = await waitUntil('a running task', async () => {
    const tasks = await docker.listTasks({ filters: { service: [name], 'desired-state': ['running'] } });
    return (tasks as Array<{ Status?: { State?: string; ContainerStatus?: { ContainerID?: string } } }>).find((t) => t.Status?.State === 'running')?.Status?.ContainerStatus?.ContainerID;
  }, 30_000);
  const exec = await docker.getContainer(task).exec({ Cmd: ['cat', `/run/secrets/${secretName}`], AttachStdout: true });
  const stream = await exec.start({});
  let out = '';
  for await (const chunk of stream) out += (chunk as Buffer).toString('latin1');
  assert.ok(out.includes(password), 'the container reads the current value');
});

/**
 * The hardest crash: the worker dies right after an activity's side effect and before Temporal hears
 * of it (DURABLE_OPS_FAULT_CRASH_AFTER, src/workers/fault-injection.ts). A second worker retries it.
 */
async function rotateThroughCrash(input: Record<string, unknown>, crashAfter: string): Promise<{ report: RotationReport; firstOutput: string }> {
  const encClient = await connectClient();
  const taskQueue = uniqueName(`rotate-crash-${crashAfter.toLowerCase().slice(0, 12)}`);
  const first = await spawnWorker(taskQueue, { env: { DURABLE_OPS_FAULT_CRASH_AFTER: crashAfter } });
  let second: Awaited<ReturnType<typeof spawnWorker>> | undefined;
  try {
    const h = await startRunbook(encClient, 'rotateCredential', input, { taskQueue });
    await Promise.race([first.exited, new Promise((_, reject) => setTimeout(() => reject(new Error(`the worker did not crash after ${crashAfter}:\n${first.output()}`)), 60_000))]);
    assert.match(first.output(), new RegExp(`fault injection: SIGKILL after ${crashAfter}`));
    second = await spawnWorker(taskQueue);
    return { report: (await h.result()) as RotationReport, firstOutput: first.output() };
  } finally {
    await first.kill('SIGKILL');
    await second?.kill();
    await encClient.connection.close();
  }
}

for (const crashAfter of ['createPendingVersion', 'setRolePassword', 'testRoleLogin']) {
  test(`postgres: worker SIGKILLed right after ${crashAfter} (side effect done, not reported): completes once`, async () => {
    const app = await newApp();
    const vaultPath = `durable-ops/it-${app}`;
    await (await rotate({ credentialId: app, vaultPath, target: { kind: 'postgres-role', app } })).result();
    const before = await currentCreds(vaultPath);
    const { report } = await rotateThroughCrash({ credentialId: app, vaultPath, target: { kind: 'postgres-role', app }, gracePeriodMs: 2_000 }, crashAfter);
    await assertRotatedOnce(report, app, vaultPath, before);
    assert.equal(await canLogin(`${app}_a`), false, 'the old role revoked once its sessions were gone');
  });
}

for (const [i, crashAfter] of ['createSwarmSecret', 'attachSwarmSecret'].entries()) {
  test(`docker-secret: worker SIGKILLed right after ${crashAfter}: one new secret, the service on it, completes once`, async () => {
    const name = uniqueName('rot-crash');
    const secretName = `s${name.slice(-8)}`;
    const vaultPath = `durable-ops/it-${secretName}`;
    services.push(name);
    const image = process.env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest';
    await docker.createService({
      Name: name,
      TaskTemplate: { ContainerSpec: { Image: image, Env: [`PORT=${18701 + i}`], HealthCheck: FAST_HEALTH }, Networks: [{ Target: 'host' }] },
      Mode: { Replicated: { Replicas: 1 } },
    });
    const input = { credentialId: secretName, vaultPath, target: { kind: 'docker-secret', secretName, services: [name], updateDelayMs: 0 } };
    try {
      const r1: RotationReport = await (await rotate(input)).result();
      const { report } = await rotateThroughCrash(input, crashAfter);
      assert.equal(report.phase, 'done');
      assert.equal(report.newVersion, r1.newVersion! + 1, 'one new Vault version');
      const secrets = await docker.listSecrets({ filters: { label: [`durable-ops.secret=${secretName}`] } });
      assert.deepEqual(secrets.map((s) => s.Spec?.Name), [`${secretName}_v${report.newVersion}`], 'exactly one secret left: the new one');
      const spec = await docker.getService(name).inspect();
      const refs = (spec.Spec.TaskTemplate as { ContainerSpec: { Secrets?: Array<{ SecretName: string }> } }).ContainerSpec.Secrets ?? [];
      assert.deepEqual(refs.map((r) => r.SecretName), [`${secretName}_v${report.newVersion}`]);
      // One task per spec change: created, attached v1, moved to v2. A repeated update would not add a
      // task (same spec), but a second secret or a rollback-and-redo would; count them all the same.
      const tasks = await docker.listTasks({ filters: { service: [name] } });
      assert.equal(tasks.length, 3, `one task per rollout (tasks: ${tasks.length})`);
    } finally {
      // Its host port is free for the next test at once.
      await docker.getService(name).remove().catch(() => undefined);
    }
  });
}
