/**
 * rotateCredential's logic with stubbed activities (a fake Vault and a fake PostgreSQL in memory)
 * on the real Temporal server: phases in order, alternating users, dry run, rollback in reverse
 * on a failure before finish, grace period, bad input.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { Activities } from '../../src/activities';
import type { Alert } from '../../src/schemas/alert';
import type { RotateCredentialInput } from '../../src/schemas/rotate-credential';
import type { RotationReport, rotateCredential } from '../../src/workflows/rotate-credential';
import { recordHistory } from '../helpers/histories';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';

class FakeWorld {
  versions: Array<{ username?: string }> = [];
  custom: Record<string, string> = {};
  roles: Record<string, { login: boolean; version?: number }> = { app_a: { login: true }, app_b: { login: true } };
  sessions: Record<string, number> = {};
  calls: string[] = [];
  alerts: Alert[] = [];
  failLogin = false;

  activities(): Partial<Activities> {
    const call = (name: string) => this.calls.push(name);
    return {
      describeCredential: async () => {
        call('describeCredential');
        const cur = this.custom.current_version ? Number(this.custom.current_version) : undefined;
        return { exists: this.versions.length > 0, ...(cur ? { currentVersion: cur, currentUsername: this.versions[cur - 1]?.username } : {}) };
      },
      createPendingVersion: async ({ rotationId, username }) => {
        call('createPendingVersion');
        if (this.custom.pending_rotation === rotationId) return { version: Number(this.custom.pending_version), alreadyDone: true };
        this.versions.push({ username });
        this.custom.pending_version = String(this.versions.length);
        this.custom.pending_rotation = rotationId;
        return { version: this.versions.length, alreadyDone: false };
      },
      discardPendingVersion: async ({ version }) => {
        call(`discardPendingVersion:${version}`);
        delete this.custom.pending_version;
        delete this.custom.pending_rotation;
        return { discarded: true };
      },
      promotePendingVersion: async ({ version }) => {
        call('promotePendingVersion');
        const previous = this.custom.current_version;
        this.custom = { current_version: String(version), ...(previous ? { previous_version: previous } : {}) };
        return { current: version, ...(previous ? { previous: Number(previous) } : {}) };
      },
      checkVersionReadable: async () => {
        call('checkVersionReadable');
        return { ok: true };
      },
      setRolePassword: async ({ role, version }) => {
        call(`setRolePassword:${role}`);
        this.roles[role] = { login: true, version };
        return { role };
      },
      testRoleLogin: async ({ role }) => {
        call(`testRoleLogin:${role}`);
        if (this.failLogin) throw ApplicationFailure.nonRetryable(`login as ${role} with the new password failed: password authentication failed`, 'LoginFailed');
        return { ok: true, serverVersion: '15' };
      },
      waitRoleSessionsGone: async ({ role }) => {
        call(`waitRoleSessionsGone:${role}`);
        const sessions = this.sessions[role] ?? 0;
        return { drained: sessions === 0, sessions };
      },
      disableRoleLogin: async ({ role }) => {
        call(`disableRoleLogin:${role}`);
        this.roles[role] = { ...this.roles[role], login: false };
        return { role };
      },
      sendAlert: async (alert) => {
        call('sendAlert');
        this.alerts.push(alert);
        return { dedupKey: alert.dedupKey ?? '', groupWorkflowId: '' };
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

async function rotate(world: FakeWorld, input: Partial<RotateCredentialInput> = {}) {
  const w = await startWorker({ activities: world.activities() });
  workers.push(w);
  const id = uniqueName('rotate');
  return client.workflow.start<typeof rotateCredential>('rotateCredential', {
    taskQueue: w.taskQueue,
    workflowId: `rotate/${id}`,
    args: [{ credentialId: 'app-db', vaultPath: 'durable-ops/app-db', target: { kind: 'postgres-role', app: 'app' }, gracePeriodMs: 1_000, ...input }],
    workflowExecutionTimeout: '1 minute',
  });
}

test('postgres: create -> set -> test -> finish, alternating users, the old role revoked once drained', async () => {
  const world = new FakeWorld();
  const first: RotationReport = await (await rotate(world)).result();
  assert.deepEqual(first.phases.map((p) => p.phase), ['plan', 'create', 'set', 'test', 'finish', 'done']);
  assert.equal(first.plan.pendingRole, 'app_a', 'first rotation: app_a gets the credential');
  assert.equal(first.newVersion, 1);
  world.calls = [];
  const h2 = await rotate(world);
  const second: RotationReport = await h2.result();
  await recordHistory(client, h2.workflowId, 'rotate-credential-postgres');
  assert.equal(second.plan.activeRole, 'app_a');
  assert.equal(second.plan.pendingRole, 'app_b', 'the role not in use is the one rotated');
  assert.equal(second.newVersion, 2);
  assert.equal(second.previousVersion, 1);
  assert.equal(second.revokedOld, true);
  assert.deepEqual(world.calls, ['describeCredential', 'createPendingVersion', 'setRolePassword:app_b', 'testRoleLogin:app_b', 'promotePendingVersion', 'waitRoleSessionsGone:app_a', 'disableRoleLogin:app_a']);
  assert.equal(world.roles.app_a!.login, false);
  assert.equal(world.roles.app_b!.login, true);
});

test('dry run returns the plan and changes nothing', async () => {
  const world = new FakeWorld();
  const report: RotationReport = await (await rotate(world, { dryRun: true })).result();
  assert.equal(report.dryRun, true);
  assert.equal(report.phase, 'plan');
  assert.equal(report.plan.steps.length, 4);
  assert.match(report.plan.steps[1]!, /ALTER ROLE app_a LOGIN PASSWORD <new>/);
  assert.deepEqual(world.calls, ['describeCredential']);
});

test('a failure in test rolls back in reverse: the pending role disabled, the pending version discarded, an alert, a clear failure', async () => {
  const world = new FakeWorld();
  await (await rotate(world)).result(); // app_a current
  world.calls = [];
  world.failLogin = true;
  const h = await rotate(world);
  await assert.rejects(h.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, 'RotationFailed');
    assert.match(err.cause.message, /failed in test \(login as app_b with the new password failed.*\); rolled back/);
    return true;
  });
  assert.deepEqual(world.calls, ['describeCredential', 'createPendingVersion', 'setRolePassword:app_b', 'testRoleLogin:app_b', 'disableRoleLogin:app_b', 'discardPendingVersion:2', 'sendAlert']);
  assert.equal(world.custom.current_version, '1', 'the current credential is unchanged');
  assert.equal(world.roles.app_a!.login, true, 'the role in use still logs in');
  assert.equal(world.alerts[0]!.severity, 'critical');
  assert.match(world.alerts[0]!.summary, /rotation failed in test; rolled back/);
  const status = await h.query<RotationReport>('status');
  assert.equal(status.phase, 'rolled-back');
  await recordHistory(client, h.workflowId, 'rotate-credential-rollback');
});

test('sessions still on the old role after the grace period: alert, do not cut them', async () => {
  const world = new FakeWorld();
  await (await rotate(world)).result();
  world.sessions.app_a = 2;
  const report: RotationReport = await (await rotate(world)).result();
  assert.equal(report.revokedOld, false);
  assert.equal(report.oldStillInUse, 2);
  assert.equal(world.roles.app_a!.login, true);
  assert.equal(world.alerts.at(-1)!.severity, 'warning');
  assert.match(world.alerts.at(-1)!.summary, /old credential still in use/);
});

const bad: Array<[string, unknown, RegExp]> = [
  ['an unknown target', { target: { kind: 'ldap' } }, /target\.kind: unknown target kind/],
  ['a missing Vault path', { vaultPath: undefined }, /vaultPath: /],
  ['a Vault path outside durable-ops/', { vaultPath: 'secret/other' }, /vaultPath: must be a KV path under durable-ops\//],
  ['a negative grace period', { gracePeriodMs: -5 }, /gracePeriodMs: must be >= 0/],
  ['an unknown field', { rotateNow: true }, /rotateNow: unknown field/],
  ['a docker target without services', { target: { kind: 'docker-secret', secretName: 'db_password', services: [] } }, /target\.services: name at least one/],
];
for (const [what, patch, expected] of bad) {
  test(`bad input: ${what} fails at once naming the field, nothing touched`, async () => {
    const world = new FakeWorld();
    const h = await rotate(world, patch as Partial<RotateCredentialInput>);
    await assert.rejects(h.result(), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'InvalidInput' && expected.test(err.cause.message));
    assert.deepEqual(world.calls, []);
  });
}
