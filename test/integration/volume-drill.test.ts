/**
 * recoveryDrill delete-volume-data on the real stack: the drill's own demo container
 * (127.0.0.1:18960) with its own named volume (seeded files, a heartbeat file written from inside
 * the container), a backupVolume child, the volume's content deleted, a restoreVolume child;
 * report files, RTO and RPO measured; the rollbacks remove the container, the volume and its
 * backups. A name taken by a non-drill volume is refused before anything is created.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { BackupStore } from '../../src/activities/backup';
import { pgPaths } from '../../src/activities/pg-instances';
import { startRunbook } from '../../src/runbooks/registry';
import type { RecoveryDrillInput } from '../../src/schemas/recovery-drill';
import type { DrillReport } from '../../src/workflows/recovery-drill';
import { docker } from '../helpers/docker';
import { recordHistory } from '../helpers/histories';
import { config, connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';

const store = new BackupStore(pgPaths(config));

let client: Client;
let worker: RunningWorker;
const reportDirs: string[] = [];
const containers: string[] = [];
const volumes: string[] = [];

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('volume-test-drill') });
});

after(async () => {
  for (const c of containers) await docker.getContainer(c).remove({ force: true }).catch(() => undefined);
  for (const v of volumes) {
    await docker.getVolume(v).remove({ force: true }).catch(() => undefined);
    rmSync(store.kindDir(v, 'volume'), { recursive: true, force: true });
  }
  for (const dir of reportDirs) rmSync(dir, { recursive: true, force: true });
  await worker?.stop();
  await client?.connection.close();
});

const exists = async (what: 'container' | 'volume', name: string) =>
  (what === 'container' ? docker.getContainer(name).inspect() : docker.getVolume(name).inspect()).then(
    () => true,
    () => false,
  );

async function drillFailure(input: unknown): Promise<{ cause: ApplicationFailure; report?: DrillReport }> {
  const handle = await client.workflow.start('recoveryDrill', { taskQueue: worker.taskQueue, workflowId: uniqueName('dvol-drill-bad'), args: [input] });
  try {
    await handle.result();
  } catch (err) {
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
    const report = err.cause.details?.[0] as DrillReport | undefined;
    if (report?.files) reportDirs.push(report.files.dir);
    return { cause: err.cause, report };
  }
  assert.fail('the drill should have failed');
}

test('delete-volume-data: backupVolume, content deleted, restoreVolume (stop, restore, start, health), checksums equal, RTO/RPO measured, rollbacks', async () => {
  const service = uniqueName('dvol-drill-web');
  const volume = uniqueName('dvol-drill-data');
  containers.push(service);
  volumes.push(volume);
  const drillId = uniqueName('drill/delete-volume-data');
  const input: RecoveryDrillInput = { scenario: 'delete-volume-data', target: { service, demoPort: 18960, volume, files: 12, healthTimeoutMs: 20_000, stopTimeoutSec: 1 } };
  const handle = await startRunbook(client, 'recoveryDrill', input, { taskQueue: worker.taskQueue, workflowId: drillId });
  let r: DrillReport;
  try {
    r = await handle.result();
  } catch (err) {
    const details = (err as WorkflowFailedError).cause instanceof ApplicationFailure ? (((err as WorkflowFailedError).cause as ApplicationFailure).details?.[0] as DrillReport | undefined) : undefined;
    if (details?.files) reportDirs.push(details.files.dir);
    assert.fail(`drill failed: ${String((err as Error).cause ?? err)}\n${JSON.stringify(details?.steps ?? [], null, 1)}\nrollbacks: ${JSON.stringify(details?.rollbacks ?? [])}`);
  }
  if (r.files) reportDirs.push(r.files.dir);
  await recordHistory(client, drillId, 'recovery-drill-delete-volume-data');

  assert.equal(r.scenario, 'delete-volume-data');
  assert.equal(r.subject, `volume/${volume}`);
  assert.equal(r.outcome, 'recovered', r.error);
  assert.ok(r.steps.every((s) => s.ok), `every step ok: ${JSON.stringify(r.steps.filter((s) => !s.ok))}`);
  const at = (ev: string) => {
    const e = r.timeline.find((x) => x.event === ev);
    assert.ok(e, `timeline has "${ev}"`);
    return e.at;
  };
  assert.ok(at('steady state ok') <= at('fault injected') && at('fault injected') <= at('detected') && at('detected') <= at('recovery started'));
  assert.ok(at('recovery started') <= at('data restored') && at('data restored') <= at('service healthy') && at('service healthy') <= at('steady state verified'));

  // RTO: fault -> steady state verified; RPO: fault - the newest heartbeat line in the restored volume.
  assert.ok(r.rto.ms !== undefined && r.rto.ms > 0, `RTO measured: ${r.rto.ms}`);
  assert.equal(r.rto.ms, at('steady state verified') - at('fault injected'));
  assert.ok(r.rpo.faultAt !== undefined && r.rpo.newestHeartbeat !== undefined, 'both ends of the RPO measured');
  assert.equal(r.rpo.ms, r.rpo.faultAt - r.rpo.newestHeartbeat);
  assert.ok(r.rpo.ms > 0, `RPO measured: ${r.rpo.ms}`);
  assert.equal(r.rto.verdict, 'pass');
  assert.equal(r.rpo.verdict, 'pass');
  assert.equal(r.verdict, 'pass');

  // Recovery: the restoreVolume child used the drill's backup; the files are the seeded ones.
  const rec = r.recovery as { workflowType: string; workflowId: string; backupId: string; skipped: unknown[]; files: number };
  assert.equal(rec.workflowType, 'restoreVolume');
  assert.deepEqual(rec.skipped, []);
  assert.ok(rec.files >= 13, `12 seeded files + the heartbeat file: ${rec.files}`);
  assert.equal((await client.workflow.getHandle(rec.workflowId).describe()).status.name, 'COMPLETED');
  // Children are keyed by the drill's run (a re-run under the same id drills afresh).
  const { runId } = await client.workflow.getHandle(drillId).describe();
  assert.equal(rec.workflowId, `${drillId}/${runId}/recovery`);
  assert.equal((await client.workflow.getHandle(`${drillId}/${runId}/backup`).describe()).status.name, 'COMPLETED');
  assert.equal(r.validation.length, 1);
  const v = r.validation[0]!;
  assert.ok(v.ok && v.source.rows === 12 && v.restored?.rows === 12 && v.restored.checksum === v.source.checksum, JSON.stringify(v));

  // Report files.
  assert.ok(r.files, 'report files written');
  const json = JSON.parse(readFileSync(r.files.json, 'utf8')) as DrillReport;
  assert.deepEqual(json.timeline, r.timeline);
  assert.match(readFileSync(r.files.markdown, 'utf8'), /scenario: \*\*delete-volume-data\*\*/);
  const svg = readFileSync(r.files.svg, 'utf8');
  assert.match(svg, /RTO [\d.]+ (s|min)/);
  assert.match(svg, /RPO [\d.]+ (s|min)/);

  // Rollbacks: no container, volume or backup left.
  assert.ok(r.rollbacks.length === 3 && r.rollbacks.every((b) => b.ok), JSON.stringify(r.rollbacks));
  assert.equal(await exists('container', service), false, 'container removed');
  assert.equal(await exists('volume', volume), false, 'volume removed');
  assert.equal(existsSync(store.kindDir(volume, 'volume')), false, 'its backups removed');
  process.stdout.write(`# delete-volume-data: RTO ${r.rto.ms} ms (${r.rto.verdict}), RPO ${r.rpo.ms} ms (${r.rpo.verdict}), restoreVolume ${String((r.recovery as { durationMs?: number }).durationMs)} ms, verdict ${r.verdict}\n`);
});

test('delete-volume-data on a volume that is not a drill volume: refused before anything is created, the volume untouched', async () => {
  const volume = uniqueName('dvol-user-data');
  const service = uniqueName('dvol-drill-web');
  volumes.push(volume);
  containers.push(service);
  await docker.createVolume({ Name: volume, Labels: { 'durable-ops.test': 'true' } });
  const { cause, report } = await drillFailure({ scenario: 'delete-volume-data', target: { service, demoPort: 18961, volume } });
  assert.equal(cause.type, 'DrillFailed');
  assert.match(cause.message, /target\.volume: a volume named .* is not a drill volume/);
  assert.equal(report?.outcome, 'failed');
  assert.ok(!report?.timeline.some((e) => e.event === 'fault injected'), 'no fault');
  assert.ok(report?.rollbacks.every((b) => b.ok && b.detail === 'nothing recorded'), JSON.stringify(report?.rollbacks));
  assert.equal(await exists('container', service), false, 'no container created');
  assert.equal(await exists('volume', volume), true, 'the volume is still there');
});

test('bad input: the volume target names its fields', async () => {
  const handle = await client.workflow.start('recoveryDrill', {
    taskQueue: worker.taskQueue,
    workflowId: uniqueName('dvol-drill-bad'),
    args: [{ scenario: 'delete-volume-data', target: { service: 'x', demoPort: 80, volume: 'bad volume', files: 0, colour: 1 } }],
  });
  await assert.rejects(handle.result(), (err: unknown) => {
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    assert.equal(cause.type, 'InvalidInput');
    for (const re of [/target\.demoPort: must be >= 1024/, /target\.volume: must be a Docker volume name/, /target\.files: must be >= 1/, /target\.colour: unknown field/]) assert.match(cause.message, re);
    return true;
  });
  const history = await handle.fetchHistory();
  assert.ok(!history.events?.some((e) => e.activityTaskScheduledEventAttributes), 'nothing scheduled');
  assert.ok(path.isAbsolute(config.DURABLE_OPS_DATA));
});
