/**
 * The unattended schedule: one Temporal Schedule per configured credential, every 90 days,
 * overlap SKIP, a catch-up window, pause on failure, a note; idempotent; a trigger starts a rotation.
 * npm run schedules reconciles: an entry taken out of the config loses its schedule, and
 * schedules it did not create (or created for another task queue) are left alone.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { BACKUP_CATCHUP_WINDOW_MS, DRILL_CATCHUP_WINDOW_MS, ROTATION_CATCHUP_WINDOW_MS, ROTATION_PERIOD_MS } from '../../src/config/defaults';
import { DEFAULT_ROTATIONS_FILE, loadRotations } from '../../src/runbooks/config-files';
import { rotateCredentialInputSchema } from '../../src/schemas/rotate-credential';
import { configuredSchedules, installSchedules, managedScheduleIds, reconcileFromFiles, rotationScheduleId, type ScheduleFiles } from '../../src/starters/schedules';
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
  assert.equal(desc.policies.catchupWindow, ROTATION_CATCHUP_WINDOW_MS);
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

test('each kind has its catch-up window: rotations and backups still run late, drills do not pile up', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'schedules-'));
  try {
    const files: ScheduleFiles = { rotations: path.join(dir, 'rotations.json'), drills: path.join(dir, 'drills.json'), backups: path.join(dir, 'backups.json') };
    writeFileSync(files.rotations, JSON.stringify({ rotations: [{ credentialId: 'c', vaultPath: 'durable-ops/c', target: { kind: 'vault-only' } }] }));
    writeFileSync(files.drills, JSON.stringify({ drills: [{ id: 'd', input: { scenario: 'delete-data-folder', target: { database: 'drill-copy' } } }] }));
    writeFileSync(files.backups, JSON.stringify({ databases: [{ database: { id: 'db', port: 5433 } }], volumes: [{ volume: 'v' }] }));
    const windows = Object.fromEntries(configuredSchedules(files, 'q').map((o) => [o.scheduleId, o.policies?.catchupWindow]));
    assert.deepEqual(windows, {
      'rotate/c': ROTATION_CATCHUP_WINDOW_MS,
      'drill/d': DRILL_CATCHUP_WINDOW_MS,
      'backup/db/physical': BACKUP_CATCHUP_WINDOW_MS,
      'backup/db/logical': BACKUP_CATCHUP_WINDOW_MS,
      'verify-backups/db': BACKUP_CATCHUP_WINDOW_MS,
      'backup-volume/v': BACKUP_CATCHUP_WINDOW_MS,
    });
    assert.ok(DRILL_CATCHUP_WINDOW_MS >= 10_000 && DRILL_CATCHUP_WINDOW_MS < ROTATION_CATCHUP_WINDOW_MS && DRILL_CATCHUP_WINDOW_MS < BACKUP_CATCHUP_WINDOW_MS);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a credential taken out of the config loses its schedule; foreign schedules and other task queues are untouched', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'schedules-'));
  const taskQueue = uniqueName('reconcile'); // its own queue: nothing else in this file manages schedules for it
  const rotation = (credentialId: string) => ({ credentialId, vaultPath: `durable-ops/${credentialId}`, target: { kind: 'vault-only' }, dryRun: true });
  const [kept, removed] = [uniqueName('kept'), uniqueName('removed')];
  const [keptId, removedId] = [rotationScheduleId(kept), rotationScheduleId(removed)];
  // Someone else's schedule with our id scheme on our task queue, and one of ours for another queue.
  const foreignId = rotationScheduleId(uniqueName('foreign'));
  const otherQueue = uniqueName('other-queue');
  const elsewhere = uniqueName('elsewhere');
  const otherQueueId = rotationScheduleId(elsewhere);
  // One this installer made before it stamped a memo: recognised by its note and task queue.
  const legacyId = rotationScheduleId(uniqueName('legacy'));
  ids.push(keptId, removedId, foreignId, otherQueueId, legacyId);
  try {
    const files: ScheduleFiles = { rotations: path.join(dir, 'rotations.json'), drills: path.join(dir, 'drills.json'), backups: path.join(dir, 'backups.json') };
    writeFileSync(files.drills, JSON.stringify({ drills: [] }));
    writeFileSync(files.backups, JSON.stringify({ databases: [] }));
    writeFileSync(files.rotations, JSON.stringify({ rotations: [rotation(kept), rotation(removed)] }));

    await client.schedule.create({
      scheduleId: foreignId,
      spec: { intervals: [{ every: '1 day' }] },
      action: { type: 'startWorkflow', workflowType: 'rotateCredential', taskQueue, args: [] },
      state: { paused: true, note: 'installed by hand' },
    });
    await installSchedules(client, [rotateCredentialInputSchema.parse(rotation(elsewhere))], otherQueue);
    await client.schedule.create({
      scheduleId: legacyId,
      spec: { intervals: [{ every: '90 days' }] },
      action: { type: 'startWorkflow', workflowType: 'rotateCredential', taskQueue, args: [] },
      state: { note: 'rotate legacy every 90 days (managed by npm run schedules)' },
    });

    const first = await reconcileFromFiles(client, files, taskQueue);
    const { [legacyId]: legacyFirst, ...rest } = first; // the legacy one goes now if visibility lists it already, else next run
    assert.deepEqual(rest, { [keptId]: 'created', [removedId]: 'created' });
    assert.ok(legacyFirst === undefined || legacyFirst === 'deleted');
    // Schedules are listed through visibility, which lags a moment behind creation.
    await waitUntil('both listed as ours', async () => {
      const managed = await managedScheduleIds(client, taskQueue);
      return [keptId, removedId].every((id) => managed.includes(id)) && (legacyFirst === 'deleted' || managed.includes(legacyId));
    }, 20_000, 200);
    const managed = await managedScheduleIds(client, taskQueue);
    assert.ok(!managed.includes(foreignId) && !managed.includes(otherQueueId), 'the foreign and the other queue’s schedules are not ours');

    writeFileSync(files.rotations, JSON.stringify({ rotations: [rotation(kept)] }));
    assert.deepEqual(await reconcileFromFiles(client, files, taskQueue), { [keptId]: 'updated', [removedId]: 'deleted', ...(legacyFirst ? {} : { [legacyId]: 'deleted' }) });
    await assert.rejects(client.schedule.getHandle(removedId).describe(), ScheduleNotFoundError);
    await assert.rejects(client.schedule.getHandle(legacyId).describe(), ScheduleNotFoundError);
    assert.equal((await client.schedule.getHandle(keptId).describe()).action.type, 'startWorkflow');
    assert.equal((await client.schedule.getHandle(foreignId).describe()).state.note, 'installed by hand');
    const other = await client.schedule.getHandle(otherQueueId).describe();
    assert.equal(other.action.type === 'startWorkflow' && other.action.taskQueue, otherQueue);

    // Idempotent: a second run with the same config only updates (even while the deleted one may still be listed).
    assert.deepEqual(await reconcileFromFiles(client, files, taskQueue), { [keptId]: 'updated' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
