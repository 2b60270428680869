/**
 * recoveryDrill on the real stack: one drill per scenario of the catalogue, end to end, with its
 * report files and timeline picture; RTO and RPO measured (the heartbeat writer makes the RPO
 * observable); the rollbacks leave no drill container or instance behind; bad input fails at once
 * naming the field; and the re-run starter rehearses a drill just run.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { startRunbook } from '../../src/runbooks/registry';
import { rerunDrill } from '../../src/starters/rerun-drill';
import type { RecoveryDrillInput } from '../../src/schemas/recovery-drill';
import type { DrillReport } from '../../src/workflows/recovery-drill';
import { DEFAULT_DRILLS_FILE, loadDrills } from '../../src/runbooks/config-files';
import { drillScheduleId, installDrillSchedules } from '../../src/starters/schedules';
import { DRILL_SCHEDULE_EVERY } from '../../src/config/defaults';
import { docker, httpStatus, runDemo } from '../helpers/docker';
import { spawnWorker } from '../helpers/worker-process';
import { waitUntil } from '../helpers/wait';
import { recordHistory } from '../helpers/histories';
import { config, connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { pgPaths } from '../../src/activities/pg-instances';
import { assertReport, runDrill as runDrillIn } from '../helpers/drills';

const paths = pgPaths(config);

let client: Client;
let worker: RunningWorker;
const reportDirs: string[] = [];
const demoNames: string[] = [];

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('drill-test') });
});

after(async () => {
  for (const name of demoNames) await docker.getContainer(name).remove({ force: true }).catch(() => undefined);
  for (const dir of reportDirs) rmSync(dir, { recursive: true, force: true });
  await worker.stop();
  await client.connection.close();
});

const runDrill = (input: RecoveryDrillInput, workflowId?: string): Promise<DrillReport> => runDrillIn(client, worker.taskQueue, input, reportDirs, workflowId);

async function containerExists(name: string): Promise<boolean> {
  try {
    await docker.getContainer(name).inspect();
    return true;
  } catch {
    return false;
  }
}

test('bad input: non-retryable InvalidInput naming the fields, nothing touched', async () => {
  const name = uniqueName('drill-bad');
  demoNames.push(name);
  const handle = await client.workflow.start('recoveryDrill', {
    taskQueue: worker.taskQueue,
    workflowId: uniqueName('drill/bad'),
    args: [{ scenario: 'kill-container', target: { service: name, demoPort: 80 }, targets: { rtoMs: -1 }, colour: 'red' }],
  });
  await assert.rejects(handle.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    const cause = err.cause;
    assert.ok(cause instanceof ApplicationFailure);
    assert.equal(cause.type, 'InvalidInput');
    assert.equal(cause.nonRetryable, true);
    assert.match(cause.message, /target\.demoPort: must be >= 1024/);
    assert.match(cause.message, /targets\.rtoMs/);
    assert.match(cause.message, /colour: unknown field/);
    return true;
  });
  // The project cluster needs allowUserData AND an approval.
  const main = await client.workflow.start('recoveryDrill', { taskQueue: worker.taskQueue, workflowId: uniqueName('drill/bad'), args: [{ scenario: 'drop-table', target: { database: 'main' } }] });
  await assert.rejects(main.result(), (err: unknown) => {
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    assert.equal(cause.type, 'InvalidInput');
    assert.match(cause.message, /allowUserData: must be true/);
    assert.match(cause.message, /approval: required/);
    return true;
  });
  const history = await handle.fetchHistory();
  assert.ok(!history.events?.some((e) => e.activityTaskScheduledEventAttributes || e.startChildWorkflowExecutionInitiatedEventAttributes), 'no activity or child was scheduled');
  assert.equal(await containerExists(name), false, 'no container was created');
});

let killDrillId = '';

test('kill-container: SIGKILL a demo service, restartService as child, healthy again, report + SVG, container removed', async () => {
  const service = uniqueName('drill-kill');
  demoNames.push(service);
  killDrillId = uniqueName('drill/kill-container');
  const r = await runDrill({ scenario: 'kill-container', target: { service, demoPort: 18901, healthTimeoutMs: 20_000, stopTimeoutSec: 1 } }, killDrillId);
  assertReport(r, 'kill-container');
  assert.equal(r.rpo.verdict, 'n/a', 'a stateless service has no RPO');
  assert.equal(r.verdict, r.rto.verdict === 'pass' ? 'pass' : 'fail');
  assert.equal((r.recovery as { workflowType: string }).workflowType, 'restartService');
  assert.equal((r.recovery as { restarted: boolean }).restarted, true);
  // The recovery child is keyed by the drill's run (a re-run under the same id drills afresh).
  const childId = (r.recovery as { workflowId: string }).workflowId;
  const { runId } = await client.workflow.getHandle(killDrillId).describe();
  assert.equal(childId, `${killDrillId}/${runId}/recovery`);
  const child = await client.workflow.getHandle(childId).describe();
  assert.equal(child.status.name, 'COMPLETED');
  assert.equal(await containerExists(service), false, 'the drill removed its demo container');
  assert.ok(r.rollbacks.some((b) => b.name.startsWith('remove demo container') && b.detail === 'removed'));
  await recordHistory(client, killDrillId, 'recovery-drill-kill-container');
});

test('re-run starter: rebuilds the drill from its history, runs it again, prints both reports side by side', async () => {
  assert.ok(killDrillId, 'the kill-container drill ran first');
  const rerunId = uniqueName('drill/rerun');
  const r = await rerunDrill(client, killDrillId, { taskQueue: worker.taskQueue, rerunWorkflowId: rerunId });
  const rerunReport = (await client.workflow.getHandle(rerunId).result()) as DrillReport;
  if (rerunReport.files) reportDirs.push(rerunReport.files.dir);
  assert.equal(r.past.workflowId, killDrillId);
  assert.equal(r.rerun.workflowId, rerunId);
  assert.equal(r.rerun.scenario, 'kill-container');
  assert.equal(r.rerun.outcome, 'recovered');
  assert.ok(r.past.rtoMs! > 0 && r.rerun.rtoMs! > 0);
  assert.equal(rerunReport.note, `re-run of ${killDrillId}`);
  assert.match(r.table, /RTO \(target 900\.00 s\)/);
  assert.match(r.table, new RegExp(`${killDrillId}\\s+\\|\\s+${rerunId}`));
  assert.match(r.table, /step: fault: SIGKILL the container\s+\| ok\s+\| ok/);
  process.stdout.write(`${r.table}\n`);
});

/** The drill copies a report names (source and restored), from its steps and recovery. */
function drillInstances(r: DrillReport): string[] {
  const ids = new Set<string>();
  for (const s of r.steps) for (const m of (s.detail ?? '').matchAll(/drill-[0-9a-f]{8}-[a-z]+/g)) ids.add(m[0]);
  const inst = (r.recovery as { instance?: string } | undefined)?.instance;
  if (inst) ids.add(inst);
  return [...ids];
}

function assertDatabaseDrill(r: DrillReport, scenario: string): void {
  assertReport(r, scenario);
  assert.ok(r.timeline.some((e) => e.event === 'data restored'), 'timeline has "data restored"');
  assert.ok(r.rpo.faultAt !== undefined && r.rpo.newestHeartbeat !== undefined, 'RPO ends measured');
  assert.ok(r.rpo.ms !== undefined && r.rpo.ms > 0, `RPO measured: ${r.rpo.ms}`);
  assert.equal(r.rpo.ms, r.rpo.faultAt - r.rpo.newestHeartbeat);
  assert.equal(r.rpo.verdict, r.rpo.ms <= r.rpo.targetMs ? 'pass' : 'fail');
  assert.equal(r.verdict, r.rto.verdict === 'pass' && r.rpo.verdict === 'pass' ? 'pass' : 'fail');
  assert.ok(r.validation.length >= 1 && r.validation.every((v) => v.ok && v.restored?.rows === v.source.rows && v.restored.checksum === v.source.checksum), JSON.stringify(r.validation));
  assert.equal(r.validation[0]!.source.rows, 300);
  assert.match(readFileSync(r.files!.svg, 'utf8'), /RPO [\d.]+ (s|min)/);
  // Rollbacks: no drill instance, registry entry or backup is left.
  const ids = drillInstances(r);
  assert.ok(ids.length >= 1, 'the report names its drill copies');
  for (const id of ids) {
    assert.equal(existsSync(path.join(paths.instancesDir, id)), false, `${id} dropped`);
    assert.equal(existsSync(path.join(paths.backupDir, id)), false, `${id}'s backups removed`);
  }
  assert.ok(r.rollbacks.some((b) => b.name === 'stop the heartbeat writer' && b.detail === 'stopped'), JSON.stringify(r.rollbacks));
}

const dbTarget = { database: 'drill-copy' as const, seedRows: 300 };

test('delete-data-folder: backup, data folder deleted, restoreDatabase (PITR latest) into a fresh instance, consumer switched', async () => {
  const id = uniqueName('drill/delete-data-folder');
  const r = await runDrill({ scenario: 'delete-data-folder', target: dbTarget }, id);
  assertDatabaseDrill(r, 'delete-data-folder');
  const rec = r.recovery as { workflowType: string; recoveryTarget: string; instance: string };
  assert.equal(rec.workflowType, 'restoreDatabase');
  assert.ok(r.steps.some((s) => s.name === 'switch the consumer to the restored copy' && s.detail?.startsWith(rec.instance)));
  await recordHistory(client, id, 'recovery-drill-delete-data-folder');
});

test('drop-table: DROP TABLE on a drill copy, PITR to just before the drop, table and rows back', async () => {
  const r = await runDrill({ scenario: 'drop-table', target: dbTarget });
  assertDatabaseDrill(r, 'drop-table');
  const rec = r.recovery as { recoveryTarget: string };
  assert.match(rec.recoveryTarget, /\d{4}-\d{2}-\d{2}/, `a point in time: ${rec.recoveryTarget}`);
});

test('corrupt-backup: the newest backup is corrupted, the restore chooses the previous good one and the report says so', async () => {
  const r = await runDrill({ scenario: 'corrupt-backup', target: dbTarget });
  assertDatabaseDrill(r, 'corrupt-backup');
  const rec = r.recovery as { backupId: string; skipped: Array<{ backupId: string; reason: string }> };
  assert.equal(rec.skipped.length, 1, JSON.stringify(rec.skipped));
  assert.notEqual(rec.skipped[0]!.backupId, rec.backupId);
  assert.match(rec.skipped[0]!.reason, /checksum|sha|size|bytes/i);
  assert.ok(r.steps.some((s) => s.name === 'previous good backup chosen' && s.ok));
  assert.match(readFileSync(r.files!.markdown, 'utf8'), /"skipped"/);
});

test('re-run of a real recovery: a past restartService becomes a kill-container drill on that service', async () => {
  const c = await runDemo({ name: uniqueName('drill-real'), port: 18902 });
  demoNames.push(c.name);
  try {
    await waitUntil(`${c.name} to serve`, async () => (await httpStatus(c.healthUrl)) === 200, 20_000);
    const restart = await startRunbook(client, 'restartService', { service: c.name, reason: 'incident', healthUrl: c.healthUrl, stopTimeoutSec: 1 }, { taskQueue: worker.taskQueue });
    await restart.result();
    const rerunId = uniqueName('drill/rerun');
    const r = await rerunDrill(client, restart.workflowId, { taskQueue: worker.taskQueue, rerunWorkflowId: rerunId });
    const report = (await client.workflow.getHandle(rerunId).result()) as DrillReport;
    if (report.files) reportDirs.push(report.files.dir);
    assert.equal(r.past.workflowType, 'restartService');
    assert.ok(r.past.rtoMs! > 0, 'the restart report gives the past RTO');
    assert.equal(report.scenario, 'kill-container');
    assert.equal(report.subject, c.name);
    assert.equal(report.outcome, 'recovered');
    assert.equal(await httpStatus(c.healthUrl), 200, 'the real service is healthy after the drill');
    assert.equal(await containerExists(c.name), true, "the drill does not remove a service it did not create");
    assert.match(r.table, /restartService\s+\|\s+recoveryDrill/);
    process.stdout.write(`${r.table}\n`);
  } finally {
    await c.remove();
  }
});

test('schedule: the committed drills file is valid; the weekly drill schedule installs idempotently', async () => {
  const drills = loadDrills(DEFAULT_DRILLS_FILE);
  assert.ok(drills.length >= 1);
  assert.ok(drills.every((d) => d.every === DRILL_SCHEDULE_EVERY && (d.input.scenario === 'kill-container' || d.input.scenario === 'delete-volume-data' || d.input.target.database === 'drill-copy')));
  const mine = { ...drills[0]!, id: uniqueName('drill-sched') };
  const id = drillScheduleId(mine.id);
  try {
    assert.deepEqual(await installDrillSchedules(client, [mine], worker.taskQueue), { [id]: 'created' });
    assert.deepEqual(await installDrillSchedules(client, [mine], worker.taskQueue), { [id]: 'updated' });
    const desc = await client.schedule.getHandle(id).describe();
    assert.equal(desc.spec.intervals?.[0]?.every, 7 * 86_400_000);
    assert.equal(desc.action.type === 'startWorkflow' && desc.action.workflowType, 'recoveryDrill');
    assert.match(desc.state.note ?? '', /every 7 days/);
  } finally {
    await client.schedule.getHandle(id).delete().catch(() => undefined);
  }
});

test('stop-postgres, with the worker SIGKILLed mid-drill: startDatabase as child, a new worker finishes, the heartbeat writer is back, RPO measured', async () => {
  const queue = uniqueName('drill-test-crash');
  let w = await spawnWorker(queue);
  try {
    const handle = await startRunbook(client, 'recoveryDrill', { scenario: 'stop-postgres', target: dbTarget }, { taskQueue: queue, workflowId: uniqueName('drill/crash') });
    await waitUntil('the fault to be injected', async () => (await handle.query<DrillReport>('status')).timeline.some((e) => e.event === 'fault injected'), 60_000, 50);
    await w.kill('SIGKILL');
    w = await spawnWorker(queue);
    const r: DrillReport = await handle.result();
    if (r.files) reportDirs.push(r.files.dir);
    assertDatabaseDrill(r, 'stop-postgres');
    // The steady state after needs the heartbeat advancing: the writer was retried on the new worker.
    assert.ok(r.steps.some((s) => s.name.startsWith('steady state after') && s.ok));
    assert.equal((r.recovery as { workflowType: string }).workflowType, 'startDatabase');
  } finally {
    await w.kill('SIGKILL');
  }
});

test('rollbacks left no drill containers', async () => {
  const leftovers = await docker.listContainers({ all: true, filters: { label: ['durable-ops.drill=true'] } });
  assert.deepEqual(leftovers.map((c) => c.Names[0]).filter((n) => demoNames.some((d) => n?.endsWith(d))), []);
  const drills = path.join(config.DURABLE_OPS_DATA, 'drills');
  assert.ok(existsSync(drills) && readdirSync(drills).length > 0);
});
