/**
 * recoveryDrill: one Chaos-Toolkit-shaped drill on the real stack, with a report at the end.
 *
 *   steady-state hypothesis (probes) -> fault (from the catalogue) -> recovery (the matching
 *   runbook as a child workflow) -> verify (steady state again + row counts and checksums of the
 *   declared tables against the source at the restore point) -> report (result + files).
 *
 * Rollbacks (stop the heartbeat writer, restore the routing, drop the drill copies, remove the
 * drill's containers and backups) ALWAYS run, in reverse order of registration, even when the
 * drill fails or is cancelled. RTO = fault injected -> steady state verified (workflow time);
 * RPO = fault time - the newest heartbeat row the recovered database holds.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  executeChild,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { DrillReportFile, DrillRunRef, FaultRecord, TableStat } from '../activities/drill';
import type { DatabaseRef } from '../schemas/database';
import { drillCopyHash, drillSubject, recoveryDrillInputSchema, type RecoveryDrillParams } from '../schemas/recovery-drill';
import type { backupDatabase, BackupDatabaseResult } from './backup-database';
import type { restartService } from './restart-service';
import type { restoreDatabase, RestoreDatabaseResult } from './restore-database';
import type { startDatabase } from './start-database';
import { DRILL_VOLUME_DATA_PATH } from '../config/defaults';
import type { backupVolume } from './backup-volume';
import type { restoreVolume } from './restore-volume';
import { now } from './shared/deterministic';
import { rootMessage } from './shared/errors';
import { beginRunbook, iso, showDetails } from './shared/runbook';

export const RUNBOOK = 'recoveryDrill';

export type DrillPhase = 'validating' | 'setup' | 'steady-state-before' | 'fault' | 'detecting' | 'recovering' | 'switching' | 'verifying' | 'rollback' | 'reporting' | 'done' | 'failed';

export interface DrillReport extends DrillReportFile {
  phase: DrillPhase;
  outcome: 'running' | 'recovered' | 'failed' | 'aborted';
  files?: { dir: string; json: string; markdown: string; svg: string };
}

export const drillStatusQuery = defineQuery<DrillReport>('status');

type Acts = Activities;

const retry = { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 };
const quick = proxyActivities<Acts>({ startToCloseTimeout: '1m', retry });
const long = proxyActivities<Acts>({ startToCloseTimeout: '10m', heartbeatTimeout: '10s', retry });
/** The heartbeat writer runs until cancelled; a crashed worker's attempt times out by heartbeat and is retried. */
const writer = proxyActivities<Acts>({
  startToCloseTimeout: '2h',
  heartbeatTimeout: '5s',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '500ms', backoffCoefficient: 1.5, maximumInterval: '5s', maximumAttempts: 100 },
});

class Drill {
  readonly report: DrillReport;
  private readonly rollbacks: Array<{ name: string; run: () => Promise<string | void> }> = [];

  constructor(
    readonly input: RecoveryDrillParams,
    readonly drillId: string,
    /** This run (the workflow's runId): its faults and children are its own, so a re-run or a reset faults again. Unset in histories from before. */
    readonly runKey?: string,
  ) {
    const t = now();
    this.report = {
      drillId,
      scenario: input.scenario,
      subject: drillSubject(input),
      phase: 'validating',
      outcome: 'running',
      verdict: 'fail',
      startedAt: t,
      timeline: [],
      steps: [],
      rto: { targetMs: input.targets.rtoMs, verdict: 'n/a' },
      rpo: { targetMs: input.targets.rpoMs, verdict: 'n/a' },
      validation: [],
      rollbacks: [],
      ...(input.note ? { note: input.note } : {}),
    };
  }

  /** What a fault activity is recorded under (once per run, see onceFaultIn). */
  get run(): DrillRunRef {
    return this.runKey ? { drillId: this.drillId, runKey: this.runKey } : { drillId: this.drillId };
  }

  /** A child workflow's id: `<drillId>/<runId>/<name>` (older histories: `<drillId>/<name>`). */
  childId(name: string): string {
    return this.runKey ? `${this.drillId}/${this.runKey}/${name}` : `${this.drillId}/${name}`;
  }

  phase(p: DrillPhase): void {
    this.report.phase = p;
    const r = this.report;
    showDetails(`drill ${r.scenario} on ${r.subject}: ${p}`, {
      phase: p,
      started: iso(r.startedAt),
      'last event': r.timeline.at(-1)?.event,
      'RTO ms': r.rto.ms,
      'RPO ms': r.rpo.ms,
      error: r.error,
    });
  }

  mark(event: string, detail?: string): number {
    const at = now();
    this.report.timeline.push({ event, at, ...(detail ? { detail } : {}) });
    return at;
  }

  step(name: string, ok: boolean, detail?: string): void {
    this.report.steps.push({ name, ok, at: now(), ...(detail ? { detail } : {}) });
  }

  /** Register a rollback before doing what it undoes (each is a no-op when there is nothing to undo). */
  onRollback(name: string, run: () => Promise<string | void>): void {
    this.rollbacks.push({ name, run });
  }

  async runRollbacks(): Promise<void> {
    for (const rb of [...this.rollbacks].reverse()) {
      try {
        const detail = await rb.run();
        this.report.rollbacks.push({ name: rb.name, ok: true, ...(detail ? { detail } : {}) });
      } catch (err) {
        this.report.rollbacks.push({ name: rb.name, ok: false, detail: rootMessage(err) });
      }
    }
  }
}

const fail = (type: string, message: string) => ApplicationFailure.create({ type, nonRetryable: true, message });

async function killContainerDrill(d: Drill, input: Extract<RecoveryDrillParams, { scenario: 'kill-container' }>): Promise<void> {
  const t = input.target;
  let healthUrl = t.healthUrl ?? `http://127.0.0.1:${t.demoPort}/health`;
  d.phase('setup');
  if (t.demoPort !== undefined) {
    d.onRollback(`remove demo container ${t.service}`, async () => ((await quick.drillRemoveDemo(t.service)) ? 'removed' : 'absent'));
    const demo = await quick.drillRunDemo({ name: t.service, port: t.demoPort });
    healthUrl = t.healthUrl ?? demo.healthUrl;
    d.step('run demo container', true, `${t.service} on ${demo.healthUrl}`);
  } else {
    await quick.inspectService(t.service); // unknown container: non-retryable, nothing touched
  }

  d.phase('steady-state-before');
  const before = await long.waitHealthy({ service: t.service, url: healthUrl, timeoutMs: 30_000, intervalMs: 250, probeTimeoutMs: 2_000 });
  d.step('steady state before: GET /health', before.healthy, before.healthy ? `HTTP ${before.last.status}` : (before.last.error ?? `HTTP ${before.last.status}`));
  if (!before.healthy) throw fail('SteadyStateBroken', `steady state does not hold before the fault: ${healthUrl} ${before.last.error ?? before.last.status}`);
  d.mark('steady state ok');

  d.phase('fault');
  const fault = await quick.drillKillContainer({ ...d.run, service: t.service });
  d.mark('fault injected', fault.detail);
  d.step('fault: SIGKILL the container', true, fault.detail);

  d.phase('detecting');
  const det = await long.drillDetect({ url: healthUrl, timeoutMs: 30_000, intervalMs: 100 });
  d.mark('detected', det.detected ? `probe failed: ${det.error}` : 'probe never failed');
  d.step('detect: probe fails', det.detected, det.error);

  d.phase('recovering');
  d.mark('recovery started', 'restartService (child)');
  const childId = d.childId('recovery');
  const restart = await executeChild<typeof restartService>('restartService', {
    workflowId: childId,
    args: [{ service: t.service, reason: `recovery drill ${d.drillId}`, healthUrl, healthTimeoutMs: t.healthTimeoutMs, stopTimeoutSec: t.stopTimeoutSec }],
  });
  d.report.recovery = { workflowType: 'restartService', workflowId: childId, restarted: restart.restarted, durationMs: restart.durationMs, lastProbe: restart.lastProbe };
  d.mark('service healthy', `restartService: ${restart.lastProbe ?? ''}`);
  d.step('recovery: restartService', restart.healthy === true, `restarted=${restart.restarted} in ${restart.durationMs} ms`);

  d.phase('verifying');
  const after = await long.waitHealthy({ service: t.service, url: healthUrl, timeoutMs: 30_000, intervalMs: 250, probeTimeoutMs: 2_000 });
  d.step('steady state after: GET /health', after.healthy, after.healthy ? `HTTP ${after.last.status}` : after.last.error);
  if (!after.healthy) throw fail('SteadyStateBroken', `steady state does not hold after the recovery: ${after.last.error ?? after.last.status}`);
  const verified = d.mark('steady state verified');
  d.report.rto.ms = verified - d.report.timeline.find((e) => e.event === 'fault injected')!.at;
}

type DatabaseDrillParams = Exclude<RecoveryDrillParams, { scenario: 'kill-container' | 'delete-volume-data' }>;

/** The consumer: the heartbeat writer, routed by the drill's endpoint record (makes the RPO observable). */
async function startHeartbeatWriter(d: Drill, db: DatabaseRef, intervalMs: number): Promise<void> {
  d.onRollback('restore the original routing', async () => {
    await quick.drillSetEndpoint({ drillId: d.drillId, db: null });
    return 'endpoint record removed';
  });
  await quick.drillSetEndpoint({ drillId: d.drillId, db });
  const writerScope = new CancellationScope();
  const writing = writerScope.run(() => writer.drillHeartbeatWriter({ drillId: d.drillId, intervalMs }));
  writing.catch(() => undefined);
  d.onRollback('stop the heartbeat writer', async () => {
    writerScope.cancel();
    try {
      await writing;
    } catch (err) {
      if (!isCancellation(err)) return `ended: ${rootMessage(err)}`;
    }
    return 'stopped';
  });
}

/**
 * Verify: steady state on the recovered database, the declared tables against the source at the
 * restore point, the RPO from the newest heartbeat `rpoDb` holds from before the fault; RTO.
 */
async function verifyRecovered(d: Drill, input: DatabaseDrillParams, o: { target: DatabaseRef; rpoDb: DatabaseRef; sourceStats: TableStat[]; fault: FaultRecord; faultMark: number }): Promise<void> {
  const t = input.target;
  const { target, fault } = o;
  d.phase('verifying');
  const after = await long.drillProbeDb({ db: target, table: 'drill_items', expectedRows: t.seedRows, intervalMs: input.heartbeatIntervalMs, timeoutMs: 60_000 });
  d.step('steady state after: rows + heartbeat advancing', after.ok, after.error ?? `${after.rows} rows`);
  if (!after.ok) throw fail('SteadyStateBroken', `steady state does not hold after the recovery: ${after.error}`);
  d.mark('service healthy', `${target.id}: ${after.rows} rows, heartbeat advancing`);

  const restoredStats = await quick.drillTableStats({ db: target, tables: t.tables });
  d.report.validation = o.sourceStats.map((s) => {
    const r = restoredStats.find((x) => x.table === s.table);
    return { table: s.table, source: { rows: s.rows, checksum: s.checksum }, ...(r ? { restored: { rows: r.rows, checksum: r.checksum } } : {}), ok: !!r && r.rows === s.rows && r.checksum === s.checksum };
  });
  const valid = d.report.validation.every((v) => v.ok);
  d.step('validate row counts and checksums', valid, d.report.validation.map((v) => `${v.table}: ${v.restored?.rows ?? 'missing'}/${v.source.rows}`).join(', '));
  if (!valid) throw fail('ValidationFailed', `recovered data differs from the source: ${d.report.validation.filter((v) => !v.ok).map((v) => v.table).join(', ')}`);

  const hb = await quick.drillNewestHeartbeat({ db: o.rpoDb, before: fault.at });
  d.report.rpo.newestHeartbeat = hb.newest;
  d.report.rpo.ms = hb.newest === undefined ? undefined : Math.max(0, fault.at - hb.newest);
  d.step('RPO: newest heartbeat before the fault', hb.newest !== undefined, hb.newest === undefined ? 'no heartbeat survived' : `${hb.rows} rows, newest ${new Date(hb.newest).toISOString()}`);

  const verified = d.mark('steady state verified');
  d.report.rto.ms = verified - o.faultMark;
}

/** Physical backups of `db` as children: one, or two a few heartbeats apart for corrupt-backup. */
async function takeBackups(d: Drill, input: DatabaseDrillParams, db: DatabaseRef, keep?: number): Promise<BackupDatabaseResult[]> {
  const backups: BackupDatabaseResult[] = [];
  const count = input.scenario === 'corrupt-backup' ? 2 : 1;
  for (let i = 1; i <= count; i += 1) {
    if (i > 1) await sleep(input.heartbeatIntervalMs * 5); // a few heartbeats between the two backups
    const b = await executeChild<typeof backupDatabase>('backupDatabase', { workflowId: d.childId(`backup-${i}`), args: [{ database: db, kind: 'physical', ...(keep ? { keep } : {}) }] });
    backups.push(b);
    d.step(`physical backup ${i}${db.id === 'main' ? ' of main' : ''}`, true, `${b.backupId} (${b.sizeBytes} bytes, consistent until ${b.consistentUntil})`);
  }
  return backups;
}

/** The steady state before the fault; returns the declared tables' stats (the source at the restore point: they do not change after the seed). */
async function steadyStateBefore(d: Drill, input: DatabaseDrillParams, db: DatabaseRef): Promise<TableStat[]> {
  d.phase('steady-state-before');
  const before = await long.drillProbeDb({ db, table: 'drill_items', expectedRows: input.target.seedRows, intervalMs: input.heartbeatIntervalMs, timeoutMs: 30_000 });
  d.step('steady state before: rows + heartbeat advancing', before.ok, before.error ?? `${before.rows} rows`);
  if (!before.ok) throw fail('SteadyStateBroken', `steady state does not hold before the fault: ${before.error}`);
  const sourceStats = await quick.drillTableStats({ db, tables: input.target.tables });
  d.mark('steady state ok');
  return sourceStats;
}

/** Record the fault, then wait for the probe to see it. Returns the fault's timeline mark. */
async function faultAndDetect(d: Drill, input: DatabaseDrillParams, db: DatabaseRef, fault: FaultRecord, label: string): Promise<number> {
  const faultMark = d.mark('fault injected', fault.detail);
  d.report.rpo.faultAt = fault.at;
  d.step(`fault: ${label}`, true, fault.detail);
  d.phase('detecting');
  const det = await long.drillDetect({ db, ...(input.scenario === 'drop-table' ? { table: input.target.dropTable } : {}), timeoutMs: 30_000, intervalMs: 100 });
  d.mark('detected', det.detected ? `probe failed: ${det.error}` : 'probe never failed');
  d.step('detect: probe fails', det.detected, det.error);
  return faultMark;
}

/**
 * restoreDatabase as the recovery child into a fresh instance (dropped by a rollback unless adopted):
 * to just before the fault for drop-table, else the latest point. For corrupt-backup, the
 * corrupted newest backup must have been skipped for the previous good one.
 */
async function restoreChild(d: Drill, input: DatabaseDrillParams, source: DatabaseRef, restoredId: string, fault: FaultRecord, backups: BackupDatabaseResult[]): Promise<RestoreDatabaseResult> {
  d.onRollback(`drop restored copy ${restoredId}`, async () => {
    await quick.dropInstance(restoredId);
    return restoredId;
  });
  const pointInTime = input.scenario === 'drop-table' ? new Date(fault.at).toISOString() : 'latest';
  d.mark('recovery started', `restoreDatabase (child), point in time ${pointInTime}`);
  const childId = d.childId('recovery');
  const restored = await executeChild<typeof restoreDatabase>('restoreDatabase', { workflowId: childId, args: [{ source, kind: 'physical', pointInTime, instanceId: restoredId }] });
  d.report.recovery = { workflowType: 'restoreDatabase', workflowId: childId, backupId: restored.backupId, skipped: restored.skipped, recoveryTarget: restored.recoveryTarget, restoredAt: restored.restoredAt, instance: restored.instance.id };
  d.mark('data restored', `backup ${restored.backupId} -> ${restored.instance.id} (${restored.recoveryTarget})`);
  if (input.scenario === 'corrupt-backup') {
    const corrupted = backups.at(-1)!.backupId;
    const good = backups[0]!.backupId;
    const skippedIt = restored.skipped.some((s) => s.backupId === corrupted);
    d.step('previous good backup chosen', skippedIt && restored.backupId === good, `skipped ${restored.skipped.map((s) => `${s.backupId} (${s.reason})`).join(', ') || 'nothing'}; used ${restored.backupId}`);
    if (!skippedIt || restored.backupId !== good) throw fail('WrongBackup', `expected the corrupted ${corrupted} to be skipped and ${good} used; used ${restored.backupId}`);
  }
  return restored;
}

/**
 * A drill on the project cluster 'main': the user's own data (the schema demands allowUserData and
 * an approval, whose author every activity that changes main logs). Same shape as on a drill copy,
 * but the recovery is in place: main keeps its port, its WAL archive and its consumers.
 *   stop-postgres          startDatabase 'main' (the stack starts it again, recorded)
 *   delete-data-folder     restoreDatabase of main's newest good backup + archive (PITR latest) into a
 *   corrupt-backup         fresh instance, verified, which then becomes main's data folder; then a
 *                          new base backup (main is on a new timeline)
 *   drop-table             restoreDatabase to just before the drop into a fresh instance, and the table
 *                          is copied back into main
 * The drill's own tables in main (drill_items, drill_heartbeat, if it created them) are dropped and
 * a backup it corrupted is removed, in the rollbacks, which always run.
 */
async function mainClusterDrill(d: Drill, input: DatabaseDrillParams): Promise<void> {
  const t = input.target;
  const approvedBy = input.approval!.by;
  const approval = { ...d.run, approvedBy };
  const restoredId = `drill-${drillCopyHash(`${d.drillId}/${workflowInfo().runId}`)}-main-r`;

  d.phase('setup');
  const { ref: main } = await quick.mainClusterStatus(); // NotSupported when the stack does not run main
  d.step("project cluster 'main'", true, `127.0.0.1:${main.port}/${main.database}; approved by ${approvedBy}: ${input.approval!.reason}`);
  let ownTables: string[] = [];
  d.onRollback('drop the drill tables in main', async () => (ownTables.length === 0 ? 'none created' : `dropped ${(await quick.drillDropOwnTables({ db: main, tables: ownTables, approvedBy })).join(', ')}`));
  const seeded = await quick.drillSeed({ db: main, rows: t.seedRows, approvedBy });
  ownTables = seeded.created ?? [];
  d.step('seed drill_items in main', seeded.rows === t.seedRows, `${seeded.rows} rows; created ${ownTables.join(', ') || 'nothing (tables there already)'}`);
  await startHeartbeatWriter(d, main, input.heartbeatIntervalMs);

  // main's own retention applies (no keep here): these are real backups of the user's data.
  const backups = input.scenario === 'stop-postgres' ? [] : await takeBackups(d, input, main);
  const sourceStats = await steadyStateBefore(d, input, main);

  d.phase('fault');
  let fault: FaultRecord;
  if (input.scenario === 'drop-table') {
    fault = await quick.drillDropTable({ ...d.run, db: main, table: t.dropTable, approvedBy });
  } else if (input.scenario === 'stop-postgres') {
    const f = await long.stopMainCluster(approval);
    fault = { kind: 'stop-postgres', ...f };
  } else {
    if (input.scenario === 'corrupt-backup') {
      const newest = backups.at(-1)!;
      d.onRollback(`remove the corrupted backup ${newest.backupId} of main`, async () => ((await quick.drillRemoveBackup({ manifestPath: newest.manifestPath, approvedBy })) ? 'removed' : 'absent'));
      const c = await quick.drillCorruptBackup({ ...d.run, manifestPath: newest.manifestPath, approvedBy });
      d.step('corrupt the newest backup', true, `${newest.backupId}: ${c.detail}`);
    }
    const f = await long.deleteMainDataFolder(approval);
    fault = { kind: 'delete-data-folder', ...f };
  }
  const faultMark = await faultAndDetect(d, input, main, fault, `${input.scenario} on main`);

  d.phase('recovering');
  let rpoDb: DatabaseRef = main;
  if (input.scenario === 'stop-postgres') {
    d.mark('recovery started', 'startDatabase main (child)');
    const childId = d.childId('recovery');
    const started = await executeChild<typeof startDatabase>('startDatabase', { workflowId: childId, args: [{ instanceId: 'main' }] });
    d.report.recovery = { workflowType: 'startDatabase', workflowId: childId, durationMs: started.durationMs };
    d.mark('data restored', 'same data folder, started by the stack');
  } else {
    const restored = await restoreChild(d, input, main, restoredId, fault, backups);
    d.phase('switching');
    if (input.scenario === 'drop-table') {
      const copied = await long.copyTableToMain({ ...approval, from: restored.instance, table: t.dropTable });
      d.step(`copy ${t.dropTable} back into main`, true, `${copied.rows} rows from ${restored.instance.id}`);
      rpoDb = restored.instance; // main itself never stopped: what the restore holds is what was saved
    } else {
      await long.adoptAsMain({ ...approval, instanceId: restoredId });
      d.step("the restored copy becomes main's data folder", true, `${restoredId} -> main on 127.0.0.1:${main.port}`);
    }
  }

  await verifyRecovered(d, input, { target: main, rpoDb, sourceStats, fault, faultMark });

  if (input.scenario === 'delete-data-folder' || input.scenario === 'corrupt-backup') {
    // main is on a new timeline: a base backup on it right away (not part of the RTO).
    const b = await executeChild<typeof backupDatabase>('backupDatabase', { workflowId: d.childId('backup-after'), args: [{ database: main, kind: 'physical' }] });
    d.step('base backup of the recovered main', true, `${b.backupId} (consistent until ${b.consistentUntil})`);
  }
}

async function databaseDrill(d: Drill, input: DatabaseDrillParams): Promise<void> {
  const t = input.target;
  if (t.database === 'main') return mainClusterDrill(d, input);
  const base = `drill-${drillCopyHash(`${d.drillId}/${workflowInfo().runId}`)}`;
  const srcId = `${base}-src`;
  const restoredId = `${base}-r`;
  const restores = input.scenario !== 'stop-postgres';

  d.phase('setup');
  d.onRollback(`drop drill copy ${srcId}`, async () => {
    await quick.dropInstance(srcId);
    return srcId;
  });
  d.onRollback(`remove backups of ${srcId}`, async () => ((await quick.drillRemoveBackups(srcId)) ? 'removed' : 'none'));
  const src = await quick.createInstance({ instanceId: srcId, archive: restores });
  d.step('create drill copy', true, `${srcId} on 127.0.0.1:${src.port}${restores ? ' with WAL archiving' : ''}`);
  const seeded = await quick.drillSeed({ db: src, rows: t.seedRows });
  d.step('seed drill_items', seeded.rows === t.seedRows, `${seeded.rows} rows`);

  await startHeartbeatWriter(d, src, input.heartbeatIntervalMs);

  const backups = restores ? await takeBackups(d, input, src, 5) : [];
  const sourceStats = await steadyStateBefore(d, input, src);

  d.phase('fault');
  let fault: FaultRecord;
  if (input.scenario === 'drop-table') {
    fault = await quick.drillDropTable({ ...d.run, db: src, table: t.dropTable });
  } else {
    if (input.scenario === 'corrupt-backup') {
      const newest = backups.at(-1)!;
      const c = await quick.drillCorruptBackup({ ...d.run, manifestPath: newest.manifestPath });
      d.step('corrupt the newest backup', true, `${newest.backupId}: ${c.detail}`);
    }
    if (input.scenario === 'stop-postgres') {
      const stoppedAt = now();
      await quick.stopInstance(srcId);
      fault = { kind: 'stop-postgres', at: stoppedAt, detail: `stopped ${srcId} (fast shutdown)`, alreadyDone: false };
    } else {
      // The data folder is lost under the running server (a crash: what is not archived yet is lost).
      const dataDir = await quick.instanceDataDir(srcId);
      fault = await long.drillDeleteDataFolder({ ...d.run, instanceId: srcId, dataDir });
    }
  }
  const faultMark = await faultAndDetect(d, input, src, fault, input.scenario);

  d.phase('recovering');
  let target: DatabaseRef = src;
  if (input.scenario === 'stop-postgres') {
    d.mark('recovery started', 'startDatabase (child)');
    const childId = d.childId('recovery');
    const started = await executeChild<typeof startDatabase>('startDatabase', { workflowId: childId, args: [{ instanceId: srcId }] });
    target = started.instance;
    d.report.recovery = { workflowType: 'startDatabase', workflowId: childId, durationMs: started.durationMs };
    d.mark('data restored', 'same data folder, restarted');
  } else {
    target = (await restoreChild(d, input, src, restoredId, fault, backups)).instance;
    d.phase('switching');
    await quick.drillSetEndpoint({ drillId: d.drillId, db: target });
    d.step('switch the consumer to the restored copy', true, `${target.id} on 127.0.0.1:${target.port}`);
  }

  await verifyRecovered(d, input, { target, rpoDb: target, sourceStats, fault, faultMark });
}

/**
 * delete-volume-data: the drill's own demo container with its own named volume (seeded files,
 * and a heartbeat file the container appends to every heartbeatIntervalMs) -> a backupVolume child
 * (quiesced) -> steady state (GET /health, the files' checksums, the heartbeat advancing) -> the
 * volume's content deleted (rm -rf inside the container) -> detected by the data probe -> a
 * restoreVolume child (stop, restore, start, health) -> steady state again, the files' checksums
 * equal the seeded ones. RPO = fault time - the newest heartbeat the restored volume holds.
 */
async function volumeDrill(d: Drill, input: Extract<RecoveryDrillParams, { scenario: 'delete-volume-data' }>): Promise<void> {
  const t = input.target;
  const dataPath = DRILL_VOLUME_DATA_PATH;
  d.phase('setup');
  // Rollbacks run newest first: the container, then its volume, then the volume's backups.
  d.onRollback(`remove the backups of volume ${t.volume}`, () => quick.drillRemoveVolumeDrill({ drillId: d.drillId, what: 'backups' }));
  d.onRollback(`remove volume ${t.volume}`, () => quick.drillRemoveVolumeDrill({ drillId: d.drillId, what: 'volume' }));
  d.onRollback(`remove demo container ${t.service}`, () => quick.drillRemoveVolumeDrill({ drillId: d.drillId, what: 'container' }));
  const demo = await quick.drillRunVolumeDemo({ drillId: d.drillId, name: t.service, port: t.demoPort, volume: t.volume, dataPath, heartbeatIntervalMs: input.heartbeatIntervalMs });
  d.step('run demo container with its volume', true, `${t.service} on ${demo.healthUrl}, volume ${t.volume} at ${dataPath}, heartbeat every ${input.heartbeatIntervalMs} ms`);
  const up = await long.waitHealthy({ service: t.service, url: demo.healthUrl, timeoutMs: 30_000, intervalMs: 250, probeTimeoutMs: 2_000 });
  if (!up.healthy) throw fail('SteadyStateBroken', `the drill container never served: ${demo.healthUrl} ${up.last.error ?? up.last.status}`);
  const seeded = await quick.drillSeedVolume({ service: t.service, dataPath, files: t.files });
  d.step(`seed ${t.files} files`, seeded.files.length === t.files, `${seeded.files.length} files under ${dataPath}/items (digest ${seeded.digest.slice(0, 12)}...)`);

  const backup = await executeChild<typeof backupVolume>('backupVolume', { workflowId: d.childId('backup'), args: [{ volume: t.volume, keep: 5, quiesce: { service: t.service } }] });
  d.step('volume backup (backupVolume, container paused)', true, `${backup.backupId} (${backup.sizeBytes} bytes, consistent until ${backup.consistentUntil})`);

  d.phase('steady-state-before');
  const before = await long.drillProbeVolume({ service: t.service, healthUrl: demo.healthUrl, dataPath, expected: seeded.files, intervalMs: input.heartbeatIntervalMs, timeoutMs: 30_000 });
  d.step('steady state before: GET /health + checksums + heartbeat advancing', before.ok, before.error ?? `HTTP 200, ${before.matching}/${t.files} files match`);
  if (!before.ok) throw fail('SteadyStateBroken', `steady state does not hold before the fault: ${before.error}`);
  d.mark('steady state ok');

  d.phase('fault');
  const fault = await quick.drillDeleteVolumeData({ ...d.run, service: t.service, dataPath });
  const faultMark = d.mark('fault injected', fault.detail);
  d.report.rpo.faultAt = fault.at;
  d.step('fault: delete the volume content', true, fault.detail);

  d.phase('detecting');
  const det = await long.drillDetectVolume({ service: t.service, dataPath, expected: seeded.files, timeoutMs: 30_000, intervalMs: 100 });
  d.mark('detected', det.detected ? `probe failed: ${det.error}` : 'probe never failed');
  d.step('detect: data probe fails', det.detected, det.error);

  d.phase('recovering');
  const childId = d.childId('recovery');
  d.mark('recovery started', 'restoreVolume (child)');
  const restored = await executeChild<typeof restoreVolume>('restoreVolume', {
    workflowId: childId,
    args: [{ volume: t.volume, service: t.service, healthUrl: demo.healthUrl, healthTimeoutMs: t.healthTimeoutMs, stopTimeoutSec: t.stopTimeoutSec }],
  });
  d.report.recovery = { workflowType: 'restoreVolume', workflowId: childId, volume: restored.volume, backupId: restored.backupId, skipped: restored.skipped, files: restored.files, durationMs: restored.durationMs };
  d.mark('data restored', `backup ${restored.backupId} -> volume ${restored.volume} (${restored.files} files), ${t.service} restarted`);
  d.step('recovery: restoreVolume', restored.backupId === backup.backupId && restored.healthy === true, `${restored.backupId}: ${restored.files} files, ${t.service} healthy=${String(restored.healthy)} in ${restored.durationMs} ms`);

  d.phase('verifying');
  const after = await long.drillProbeVolume({ service: t.service, healthUrl: demo.healthUrl, dataPath, expected: seeded.files, intervalMs: input.heartbeatIntervalMs, timeoutMs: 60_000 });
  d.step('steady state after: GET /health + checksums + heartbeat advancing', after.ok, after.error ?? `HTTP 200, ${after.matching}/${t.files} files match`);
  if (!after.ok) throw fail('SteadyStateBroken', `steady state does not hold after the recovery: ${after.error}`);
  d.mark('service healthy', `${t.service}: /health 200, ${after.matching}/${t.files} files, heartbeat advancing`);

  const sums = await quick.drillVolumeChecksums({ service: t.service, dataPath });
  const valid = sums.digest === seeded.digest && sums.files.length === seeded.files.length;
  d.report.validation = [{ table: `${t.volume}:${dataPath}/items`, source: { rows: seeded.files.length, checksum: seeded.digest }, restored: { rows: sums.files.length, checksum: sums.digest }, ok: valid }];
  d.step('validate file count and checksums', valid, `${sums.files.length}/${seeded.files.length} files, checksums ${valid ? 'equal' : 'DIFFER'}`);
  if (!valid) throw fail('ValidationFailed', `restored files differ from the seeded ones: ${sums.files.length}/${seeded.files.length} files`);

  const hb = await quick.drillVolumeNewestHeartbeat({ service: t.service, dataPath, before: fault.at });
  d.report.rpo.newestHeartbeat = hb.newest;
  d.report.rpo.ms = hb.newest === undefined ? undefined : Math.max(0, fault.at - hb.newest);
  d.step('RPO: newest heartbeat before the fault', hb.newest !== undefined, hb.newest === undefined ? 'no heartbeat survived' : `${hb.rows} heartbeat lines from before the fault survived, newest ${new Date(hb.newest).toISOString()}`);

  const verified = d.mark('steady state verified');
  d.report.rto.ms = verified - faultMark;
}

export async function recoveryDrill(rawInput: unknown): Promise<DrillReport> {
  const input = beginRunbook(RUNBOOK, recoveryDrillInputSchema, rawInput, drillSubject);
  // Faults and children keyed by the run: a drill re-run under the same id, or reset, faults for real.
  const d = new Drill(input, workflowInfo().workflowId, patched('drill-keyed-by-run') ? workflowInfo().runId : undefined);
  const report = d.report;
  setHandler(drillStatusQuery, () => report);
  d.phase('setup');

  let cancelled: unknown;
  try {
    if (input.scenario === 'kill-container') await killContainerDrill(d, input);
    else if (input.scenario === 'delete-volume-data') await volumeDrill(d, input);
    else await databaseDrill(d, input);
    report.outcome = 'recovered';
  } catch (err) {
    if (isCancellation(err)) cancelled = err;
    const type = err instanceof ApplicationFailure ? err.type : (err as { cause?: ApplicationFailure }).cause?.type;
    report.outcome = type === 'SteadyStateBroken' && !report.timeline.some((e) => e.event === 'fault injected') ? 'aborted' : 'failed';
    report.error = rootMessage(err);
  } finally {
    d.phase('rollback');
    await CancellationScope.nonCancellable(() => d.runRollbacks());
  }

  report.rto.verdict = report.rto.ms === undefined ? 'fail' : report.rto.ms <= report.rto.targetMs ? 'pass' : 'fail';
  if (input.scenario === 'kill-container') report.rpo.verdict = 'n/a'; // stateless: no data to lose
  else report.rpo.verdict = report.rpo.ms !== undefined && report.rpo.ms <= report.rpo.targetMs ? 'pass' : 'fail';
  report.verdict = report.outcome === 'recovered' && report.rto.verdict === 'pass' && report.rpo.verdict !== 'fail' && report.validation.every((v) => v.ok) ? 'pass' : 'fail';
  report.finishedAt = now();

  d.phase('reporting');
  const { phase: _phase, outcome: _outcome, files: _files, ...fileReport } = report;
  const files = await CancellationScope.nonCancellable(() => quick.drillWriteReport({ report: { ...fileReport, outcome: report.outcome }, ...(input.reportDir ? { reportDir: input.reportDir } : {}) }));
  report.files = { dir: files.dir, json: files.json, markdown: files.markdown, svg: files.svg };

  d.phase(report.outcome === 'recovered' ? 'done' : 'failed');
  if (cancelled) throw cancelled;
  if (report.outcome !== 'recovered') {
    throw ApplicationFailure.create({ type: 'DrillFailed', nonRetryable: true, message: `drill ${report.outcome}: ${report.error}`, details: [report] });
  }
  return report;
}
