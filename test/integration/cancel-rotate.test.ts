/**
 * Cancel leaves the credential as it was: rotateCredential (postgres-role) cancelled after create
 * and after set rolls back (no pending version in Vault, the current one unchanged, the pending
 * role NOLOGIN again, the active role still logs in); cancelled in finish, past the point of no
 * return, it completes. Real Vault, the project PostgreSQL cluster.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { createActivities } from '../../src/activities';
import { withPgClient } from '../../src/activities/postgres';
import { startRunbook } from '../../src/runbooks/registry';
import { activityDeps } from '../../src/workers/clients';
import type { RotationReport } from '../../src/workflows/rotate-credential';
import { activitiesAfterCancel, cancelAndExpectCancelled, waitForRunningActivity, waitLeaseFree } from '../helpers/cancel';
import { ADMIN, PG, canLogin, currentCreds, dropApps, newApp, vault, whoami } from '../helpers/credentials';
import { config, connectClient, startWorker, TEST_ALERTING, testLog, uniqueName, type RunningWorker } from '../helpers/temporal';
import { recordHistory } from '../helpers/histories';

let client: Client;
let worker: RunningWorker;
const apps: string[] = [];
/** While set, the test step waits this long before the real login (the cancel lands inside it). */
let slowTestMs = 0;

before(async () => {
  client = await connectClient();
  const taskQueue = uniqueName('cancel-rotate');
  const real = createActivities({ ...activityDeps(config, testLog, { client, taskQueue }), alerting: TEST_ALERTING });
  worker = await startWorker({
    taskQueue,
    activities: {
      ...real,
      // The real login, after a delay that (like the real one) does not listen for cancellation.
      async testRoleLogin(input: Parameters<typeof real.testRoleLogin>[0]) {
        const until = Date.now() + slowTestMs;
        while (Date.now() < until) {
          Context.current().heartbeat();
          await new Promise((r) => setTimeout(r, 100));
        }
        return real.testRoleLogin(input);
      },
    },
  });
});

after(async () => {
  await worker?.stop();
  await client?.connection.close();
  await dropApps(apps);
});

const rotate = (input: Record<string, unknown>) => startRunbook(client, 'rotateCredential', input, { taskQueue: worker.taskQueue });

/** An app whose first rotation is done: `<app>_a` serves (current version), `<app>_b` is NOLOGIN and gets the next one. */
async function rotatedOnce() {
  const app = await newApp(apps);
  const vaultPath = `durable-ops/it-${app}`;
  const input = { credentialId: app, vaultPath, target: { kind: 'postgres-role', app }, gracePeriodMs: 2_000 };
  await (await rotate(input)).result();
  const before = await currentCreds(vaultPath);
  assert.equal(before.username, `${app}_a`);
  assert.equal(await canLogin(`${app}_b`), false);
  return { app, vaultPath, input, before };
}

/** The pending version's password, read from Vault while the rotation runs (it is destroyed by the undo). */
async function pendingPassword(vaultPath: string): Promise<{ version: number; password: string }> {
  const meta = await vault.kvMetadata(vaultPath);
  const version = Number(meta!.customMetadata.pending_version);
  assert.ok(version > 0, 'a pending version exists');
  return { version, password: (await vault.kvReadVersion(vaultPath, version))!.value! };
}

/** Nothing changed: the current version and role as before, no pending version, the pending one destroyed, its role NOLOGIN and refused with the new password. */
async function assertAsBefore(app: string, vaultPath: string, before: { version: number; username: string; password: string }, pending: { version: number; password: string }) {
  const now = await currentCreds(vaultPath);
  assert.deepEqual(now, before, 'Vault: the current version is unchanged');
  const meta = (await vault.kvMetadata(vaultPath))!;
  assert.equal(meta.customMetadata.pending_version, undefined, 'no pending version left');
  assert.equal(meta.customMetadata.pending_rotation, undefined);
  assert.equal(meta.versions[String(pending.version)]?.destroyed, true, 'the pending version is destroyed');
  assert.equal(await whoami(now), `${app}_a`, 'the active role still logs in');
  assert.equal(await canLogin(`${app}_b`), false, 'the pending role is NOLOGIN, as before');
  await assert.rejects(whoami({ username: `${app}_b`, password: pending.password }), 'the pending role cannot log in with the new password');
}

test('cancelled after create (the set blocked on a lock): no pending version, the pending role NOLOGIN, the active role logs in; CANCELED, lease free', async () => {
  const { app, vaultPath, input, before } = await rotatedOnce();
  const t0 = Date.now();
  // An open transaction that altered the pending role holds its row lock: the set waits on it.
  const { handle, pending } = await withPgClient(PG, ADMIN, async (blocker) => {
    await blocker.query('BEGIN');
    await blocker.query(`ALTER ROLE ${app}_b CONNECTION LIMIT 50`);
    try {
      const h = await rotate(input);
      await waitForRunningActivity(h, 'setRolePassword');
      const p = await pendingPassword(vaultPath);
      await h.cancel();
      return { handle: h, pending: p };
    } finally {
      await blocker.query('COMMIT');
    }
  });
  await cancelAndExpectCancelled(handle);
  console.log(`  cancelled after create: ${Date.now() - t0} ms from start to CANCELED`);
  await recordHistory(client, handle.workflowId, 'rotate-credential-cancelled-after-create');
  await assertAsBefore(app, vaultPath, before, pending);
  const undo = await activitiesAfterCancel(handle);
  assert.ok(undo.includes('disableRoleLogin') && undo.includes('discardPendingVersion'), `undo after the cancel request: ${undo.join(', ')}`);
  assert.equal(undo.includes('promotePendingVersion'), false, 'never promoted');
  await waitLeaseFree(client, `credential/${app}`, worker.taskQueue);
});

test('cancelled after set (in the test step; the pending role has the new password): rolled back the same way', async () => {
  const { app, vaultPath, input, before } = await rotatedOnce();
  const t0 = Date.now();
  slowTestMs = 3_000;
  try {
    const handle = await rotate(input);
    await waitForRunningActivity(handle, 'testRoleLogin');
    const pending = await pendingPassword(vaultPath);
    assert.equal(await whoami({ username: `${app}_b`, password: pending.password }), `${app}_b`, 'set: the pending role logs in with the new password');
    await cancelAndExpectCancelled(handle);
    console.log(`  cancelled after set: ${Date.now() - t0} ms from start to CANCELED`);
    await assertAsBefore(app, vaultPath, before, pending);
    const undo = await activitiesAfterCancel(handle);
    assert.ok(undo.includes('disableRoleLogin') && undo.includes('discardPendingVersion'), `undo after the cancel request: ${undo.join(', ')}`);
    assert.equal(undo.includes('promotePendingVersion'), false, 'never promoted');
    await waitLeaseFree(client, `credential/${app}`, worker.taskQueue);
  } finally {
    slowTestMs = 0;
  }
});

test('cancelled in finish (the new version promoted, waiting for the old role to drain): the rotation completes', async () => {
  const { app, vaultPath, input, before } = await rotatedOnce();
  const t0 = Date.now();
  // A session on the old role holds the finish phase in its grace period.
  const handle = await withPgClient(PG, before, async (session) => {
    const h = await rotate({ ...input, gracePeriodMs: 20_000 });
    await waitForRunningActivity(h, 'waitRoleSessionsGone');
    await h.cancel();
    await session.end();
    return h;
  });
  const report: RotationReport = await handle.result();
  console.log(`  cancelled in finish: ${Date.now() - t0} ms from start to done`);
  assert.equal(report.phase, 'done');
  assert.equal(report.revokedOld, true);
  assert.equal((await handle.describe()).status.name, 'COMPLETED');
  const now = await currentCreds(vaultPath);
  assert.equal(now.version, before.version + 1, 'the new version is current');
  assert.equal(await whoami(now), `${app}_b`, 'the new credential logs in');
  assert.equal(await canLogin(`${app}_a`), false, 'the old role revoked');
  assert.equal((await vault.kvMetadata(vaultPath))!.customMetadata.pending_version, undefined);
  assert.ok((await activitiesAfterCancel(handle)).includes('disableRoleLogin'), 'finish went on after the cancel request');
  await waitLeaseFree(client, `credential/${app}`, worker.taskQueue);
});
