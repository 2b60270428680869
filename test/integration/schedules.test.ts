/**
 * The unattended schedule: one Temporal Schedule per configured credential, every 90 days,
 * overlap SKIP, a catch-up window, pause on failure, a note; idempotent; a trigger starts a rotation.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { ROTATION_PERIOD_MS } from '../../src/config/defaults';
import { rotateCredentialInputSchema } from '../../src/schemas/rotate-credential';
import { DEFAULT_ROTATIONS_FILE, installSchedules, loadRotations, rotationScheduleId } from '../../src/starters/schedules';
import type { RotationReport } from '../../src/workflows/rotate-credential';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

let client: Client;
let worker: RunningWorker;
const ids: string[] = [];

before(async () => {
  client = await connectClient();
  // The triggered rotation is a dry run: only the read-only describe activity runs.
  worker = await startWorker({ activities: { describeCredential: async () => ({ exists: true, currentVersion: 3, currentUsername: 'app_a' }) } });
});

after(async () => {
  await Promise.all(ids.map((id) => client.schedule.getHandle(id).delete().catch(() => undefined)));
  await worker.stop();
  await client.connection.close();
});

test('the committed rotations file is valid and on the seed period', () => {
  const rotations = loadRotations(DEFAULT_ROTATIONS_FILE);
  assert.ok(rotations.length >= 1);
  for (const r of rotations) assert.equal(r.periodDays * 86_400_000, ROTATION_PERIOD_MS);
});

test('schedules are installed idempotently with the spec, policies and next run 90 days out; a trigger rotates now', async () => {
  const credentialId = uniqueName('cred');
  const rotation = rotateCredentialInputSchema.parse({ credentialId, vaultPath: `durable-ops/${credentialId}`, target: { kind: 'postgres-role', app: 'app' }, dryRun: true });
  const id = rotationScheduleId(credentialId);
  ids.push(id);
  const t0 = Date.now();
  assert.deepEqual(await installSchedules(client, [rotation], worker.taskQueue), { [id]: 'created' });
  assert.deepEqual(await installSchedules(client, [rotation], worker.taskQueue), { [id]: 'updated' }, 'a second run updates, it does not fail or duplicate');

  const desc = await client.schedule.getHandle(id).describe();
  assert.equal(desc.spec.intervals?.[0]?.every, ROTATION_PERIOD_MS);
  assert.equal(desc.policies.overlap, ScheduleOverlapPolicy.SKIP);
  assert.equal(desc.policies.catchupWindow, 86_400_000);
  assert.equal(desc.policies.pauseOnFailure, true);
  assert.match(desc.state.note ?? '', /every 90 days/);
  assert.equal(desc.action.type, 'startWorkflow');
  assert.equal(desc.action.workflowType, 'rotateCredential');
  const next = desc.info.nextActionTimes[0]!.getTime();
  assert.ok(next > t0 && next <= t0 + ROTATION_PERIOD_MS + 60_000, `next run ${new Date(next).toISOString()} within 90 days`);

  await client.schedule.getHandle(id).trigger();
  const run = await waitUntil('the triggered rotation', async () => (await client.schedule.getHandle(id).describe()).info.recentActions[0]?.action.workflow.workflowId, 20_000, 200);
  const report: RotationReport = await client.workflow.getHandle(run).result();
  assert.equal(report.dryRun, true);
  assert.equal(report.plan.pendingRole, 'app_b');
});
