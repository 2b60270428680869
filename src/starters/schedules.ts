/**
 * npm run schedules: reconcile the project's Temporal Schedules with its config files. One
 * schedule per credential (config/rotations.json, or DURABLE_OPS_ROTATIONS_CONFIG):
 * rotateCredential every `periodDays` (seed 90); per drill (config/drills.json); per database and
 * volume (config/backups.json); and reconcile every RECONCILE_EVERY_MS (seed 15 min). Each is
 * created or updated to the configured spec, policies and catch-up window, and the project's
 * schedules whose entry left the config are deleted. The project's schedules are those this
 * installer created for the same task queue (the memo it stamps; schedules from before the memo:
 * the note it writes); any other schedule is left alone.
 *   npm run schedules                      reconcile
 *   npm run schedules -- --trigger app-db  rotate one now (as the schedule would)
 */
import { fileURLToPath } from 'node:url';
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy, type Client, type ScheduleOptions, type ScheduleSummary } from '@temporalio/client';
import { Command } from 'commander';
import { loadConfig } from '../config/env';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../config/search-attributes';
import type { RotateCredentialParams } from '../schemas/rotate-credential';
import * as seed from '../config/defaults';
import { backupDatabaseInputSchema, verifyBackupsInputSchema, type BackupKind } from '../schemas/database';
import type { BackupVolumeParams } from '../schemas/volume';
import { reconcileInputSchema } from '../schemas/reconcile';
import { drillSubject } from '../schemas/recovery-drill';
import { DEFAULT_BACKUPS_FILE, DEFAULT_DRILLS_FILE, DEFAULT_ROTATIONS_FILE, loadDrills, loadRotations, readBackupsFile, type BackupSchedule, type DrillSchedule } from '../runbooks/config-files';
import { connectClient } from '../workers/clients';

/** The memo every schedule this installer creates carries: who manages it, for which task queue. */
export const MANAGED_BY = 'durable-ops npm run schedules';
export interface ScheduleMemo {
  managedBy: typeof MANAGED_BY;
  taskQueue: string;
}
/** The end of the note it writes (how schedules created before the memo are recognised). */
const MANAGED_NOTE = '(managed by npm run schedules)';

export const rotationScheduleId = (credentialId: string) => `rotate/${credentialId}`;

export function scheduleOptions(r: RotateCredentialParams, taskQueue: string): ScheduleOptions {
  return {
    scheduleId: rotationScheduleId(r.credentialId),
    spec: { intervals: [{ every: `${r.periodDays} days` }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'rotateCredential',
      workflowId: `rotate/${r.credentialId}/scheduled`,
      taskQueue,
      // Unattended: a credential busy with another change is waited for, not skipped.
      args: [{ ...r, waitForLease: true }],
      typedSearchAttributes: [
        { key: SERVICE_ATTR, value: r.credentialId },
        { key: RUNBOOK_ATTR, value: 'rotateCredential' },
      ],
      staticSummary: `scheduled rotation of ${r.credentialId} (${r.target.kind})`,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: seed.ROTATION_CATCHUP_WINDOW_MS, pauseOnFailure: true },
    state: { note: `rotate ${r.credentialId} every ${r.periodDays} days (managed by npm run schedules)` },
  };
}

/** Create each schedule, or update it to the configured one. Returns what was done per id. */
export async function installSchedules(client: Client, rotations: RotateCredentialParams[], taskQueue: string): Promise<Record<string, 'created' | 'updated'>> {
  return upsertSchedules(client, rotations.map((r) => scheduleOptions(r, taskQueue)));
}

/**
 * Create each schedule, or update an existing one to these options (idempotent). A created one
 * carries our memo (its action's task queue); Temporal keeps a schedule's memo across updates.
 */
export async function upsertSchedules(client: Client, all: ScheduleOptions[]): Promise<Record<string, 'created' | 'updated'>> {
  const done: Record<string, 'created' | 'updated'> = {};
  for (const opts of all) {
    const memo: ScheduleMemo = { managedBy: MANAGED_BY, taskQueue: opts.action.taskQueue };
    try {
      await client.schedule.create({ ...opts, memo: { ...opts.memo, ...memo } });
      done[opts.scheduleId] = 'created';
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      await client.schedule.getHandle(opts.scheduleId).update((prev) => ({ ...prev, spec: opts.spec, action: opts.action, policies: opts.policies }));
      done[opts.scheduleId] = 'updated';
    }
  }
  return done;
}

/**
 * Is this schedule one this installer created for the task queue? Ours carry the memo; one
 * created before the memo existed is recognised by the note we wrote and its action's task queue.
 * Anything else (no memo of ours, another task queue, another manager) is foreign.
 */
async function isManaged(client: Client, s: ScheduleSummary, taskQueue: string): Promise<boolean> {
  const memo = s.memo as Partial<ScheduleMemo> | undefined;
  if (memo?.managedBy !== undefined) return memo.managedBy === MANAGED_BY && memo.taskQueue === taskQueue;
  if (!s.state.note?.endsWith(MANAGED_NOTE)) return false;
  try {
    const desc = await client.schedule.getHandle(s.scheduleId).describe();
    return desc.action.type === 'startWorkflow' && desc.action.taskQueue === taskQueue;
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return false;
    throw err;
  }
}

/** The ids of the schedules this installer manages for the task queue (visibility: a schedule created a moment ago may not be listed yet). */
export async function managedScheduleIds(client: Client, taskQueue: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const s of client.schedule.list()) if (await isManaged(client, s, taskQueue)) ids.push(s.scheduleId);
  return ids.sort();
}

export type ReconcileAction = 'created' | 'updated' | 'deleted';

/**
 * Make the project's schedules for the task queue exactly these: create or update each, then
 * delete the ones we manage that are not among them. Foreign schedules are never touched.
 */
export async function reconcileSchedules(client: Client, desired: ScheduleOptions[], taskQueue: string): Promise<Record<string, ReconcileAction>> {
  const ids = desired.map((o) => o.scheduleId);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new Error(`schedule ${dup} is configured twice`);
  const stray = desired.find((o) => o.action.taskQueue !== taskQueue);
  if (stray) throw new Error(`schedule ${stray.scheduleId} is for task queue ${stray.action.taskQueue}, not ${taskQueue}`);
  const done: Record<string, ReconcileAction> = await upsertSchedules(client, desired);
  const keep = new Set(ids);
  for (const id of await managedScheduleIds(client, taskQueue)) {
    if (keep.has(id)) continue;
    try {
      await client.schedule.getHandle(id).delete();
      done[id] = 'deleted';
    } catch (err) {
      if (!(err instanceof ScheduleNotFoundError)) throw err; // gone already (visibility still lists it for a moment)
    }
  }
  return done;
}

export interface ScheduleFiles {
  rotations: string;
  drills: string;
  backups: string;
  /** The reconcile schedule's interval (scheduleFiles(): RECONCILE_EVERY_MS); unset: no reconcile schedule in the set. */
  reconcileEveryMs?: number;
}

/** The config files (environment overrides, else the committed ones). */
export const scheduleFiles = (env: NodeJS.ProcessEnv = process.env): ScheduleFiles => ({
  rotations: env.DURABLE_OPS_ROTATIONS_CONFIG ?? DEFAULT_ROTATIONS_FILE,
  drills: env.DURABLE_OPS_DRILLS_CONFIG ?? DEFAULT_DRILLS_FILE,
  backups: env.DURABLE_OPS_BACKUPS_CONFIG ?? DEFAULT_BACKUPS_FILE,
  reconcileEveryMs: seed.RECONCILE_EVERY_MS,
});

/** Every schedule the config files ask for. Reads and validates all of them first: a bad file deletes nothing. */
export function configuredSchedules(files: ScheduleFiles, taskQueue: string): ScheduleOptions[] {
  const rotations = loadRotations(files.rotations);
  const drills = loadDrills(files.drills);
  const backups = readBackupsFile(files.backups);
  return [
    ...rotations.map((r) => scheduleOptions(r, taskQueue)),
    ...drills.map((d) => drillScheduleOptions(d, taskQueue)),
    ...backups.databases.flatMap((b) => backupScheduleOptions(b, taskQueue)),
    ...backups.volumes.map((v) => volumeBackupScheduleOptions(v, taskQueue)),
    ...(files.reconcileEveryMs ? [reconcileScheduleOptions(rotations, taskQueue, files.reconcileEveryMs)] : []),
  ];
}

/** What npm run schedules does: reconcile the task queue's schedules with the config files. */
export async function reconcileFromFiles(client: Client, files: ScheduleFiles, taskQueue: string): Promise<Record<string, ReconcileAction>> {
  return reconcileSchedules(client, configuredSchedules(files, taskQueue), taskQueue);
}

/** Recovery drills (config/drills.json, or DURABLE_OPS_DRILLS_CONFIG): a recoveryDrill every `every` (seed: weekly). */
export const drillScheduleId = (id: string) => `drill/${id}`;

export function drillScheduleOptions(d: DrillSchedule, taskQueue: string): ScheduleOptions {
  return {
    scheduleId: drillScheduleId(d.id),
    spec: { intervals: [{ every: d.every as `${number} days` }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'recoveryDrill',
      workflowId: `drill/${d.id}/scheduled`,
      taskQueue,
      args: [d.input],
      typedSearchAttributes: [
        { key: SERVICE_ATTR, value: drillSubject(d.input) },
        { key: RUNBOOK_ATTR, value: 'recoveryDrill' },
      ],
      staticSummary: `scheduled recovery drill ${d.input.scenario} on ${drillSubject(d.input)}`,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: seed.DRILL_CATCHUP_WINDOW_MS, pauseOnFailure: false },
    state: { note: `recovery drill ${d.input.scenario} every ${d.every} (managed by npm run schedules)` },
  };
}

/** Create each drill schedule, or update it to the configured one. */
export async function installDrillSchedules(client: Client, drills: DrillSchedule[], taskQueue: string): Promise<Record<string, 'created' | 'updated'>> {
  return upsertSchedules(client, drills.map((d) => drillScheduleOptions(d, taskQueue)));
}

/**
 * Backups (config/backups.json, or DURABLE_OPS_BACKUPS_CONFIG): per database, a physical
 * backupDatabase every hour, a logical one daily, verifyBackups every 15 min (seed constants).
 * No pause on failure: a failed backup must not stop the next one (verifyBackups alerts instead).
 */
export const backupScheduleId = (databaseId: string, what: BackupKind | 'verify') => (what === 'verify' ? `verify-backups/${databaseId}` : `backup/${databaseId}/${what}`);

export function backupScheduleOptions(b: BackupSchedule, taskQueue: string): ScheduleOptions[] {
  const id = b.database.id;
  const one = (what: BackupKind | 'verify', everyMs: number, workflowType: string, input: unknown, summary: string): ScheduleOptions => ({
    scheduleId: backupScheduleId(id, what),
    spec: { intervals: [{ every: everyMs }] },
    action: {
      type: 'startWorkflow',
      workflowType,
      workflowId: `${backupScheduleId(id, what)}/scheduled`,
      taskQueue,
      args: [input],
      typedSearchAttributes: [
        { key: SERVICE_ATTR, value: `postgres/${id}` },
        { key: RUNBOOK_ATTR, value: workflowType },
      ],
      staticSummary: summary,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: seed.BACKUP_CATCHUP_WINDOW_MS, pauseOnFailure: false },
    state: { note: `${summary} every ${Math.round(everyMs / 60_000)} min (managed by npm run schedules)` },
  });
  return [
    one('physical', seed.BACKUP_PHYSICAL_EVERY_MS, 'backupDatabase', backupDatabaseInputSchema.parse({ database: b.database, kind: 'physical', keep: b.keepPhysical }), `scheduled physical backup of ${id}`),
    one('logical', seed.BACKUP_LOGICAL_EVERY_MS, 'backupDatabase', backupDatabaseInputSchema.parse({ database: b.database, kind: 'logical', keep: b.keepLogical }), `scheduled logical backup of ${id}`),
    one('verify', seed.BACKUP_VERIFY_EVERY_MS, 'verifyBackups', verifyBackupsInputSchema.parse({ database: b.database, rpoMs: b.rpoMs }), `scheduled verification of the backups of ${id}`),
  ];
}

export const volumeBackupScheduleId = (volume: string) => `backup-volume/${volume}`;

export function volumeBackupScheduleOptions(v: BackupVolumeParams, taskQueue: string): ScheduleOptions {
  const scheduleId = volumeBackupScheduleId(v.volume);
  const summary = `scheduled backup of volume ${v.volume}${v.quiesce ? ` (${v.quiesce.service} paused)` : ''}`;
  return {
    scheduleId,
    spec: { intervals: [{ every: seed.VOLUME_BACKUP_EVERY_MS }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'backupVolume',
      workflowId: `${scheduleId}/scheduled`,
      taskQueue,
      // Unattended: a quiesce target busy with another change is waited for, not skipped.
      args: [{ ...v, waitForLease: true }],
      typedSearchAttributes: [
        { key: SERVICE_ATTR, value: `volume/${v.volume}` },
        { key: RUNBOOK_ATTR, value: 'backupVolume' },
      ],
      staticSummary: summary,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: seed.BACKUP_CATCHUP_WINDOW_MS, pauseOnFailure: false },
    state: { note: `${summary} every ${Math.round(seed.VOLUME_BACKUP_EVERY_MS / 60_000)} min (managed by npm run schedules)` },
  };
}

/**
 * reconcile every RECONCILE_EVERY_MS (seed: 15 min): the drift terminated runs leave is repaired
 * within that long. Its input names the configured credentials' Vault paths (their pending versions
 * are checked). Skipped while the previous one still runs; no pause on failure.
 */
/** One reconcile schedule per engine: `reconcile` for the operator's queue, `reconcile/<queue>` for another (a test run, a bench). */
export const reconcileScheduleId = (taskQueue: string) => (taskQueue === seed.DEFAULT_TASK_QUEUE ? 'reconcile' : `reconcile/${taskQueue}`);

export function reconcileScheduleOptions(rotations: RotateCredentialParams[], taskQueue: string, everyMs: number = seed.RECONCILE_EVERY_MS): ScheduleOptions {
  const input = reconcileInputSchema.parse({ vaultPaths: [...new Set(rotations.map((r) => r.vaultPath))] });
  const scheduleId = reconcileScheduleId(taskQueue);
  return {
    scheduleId,
    spec: { intervals: [{ every: everyMs }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'reconcile',
      workflowId: `${scheduleId}/scheduled`,
      taskQueue,
      args: [input],
      typedSearchAttributes: [
        { key: SERVICE_ATTR, value: 'all' },
        { key: RUNBOOK_ATTR, value: 'reconcile' },
      ],
      staticSummary: 'scheduled reconcile: repair the drift terminated runs left',
    },
    // A missed run is not worth catching up long after: the next one comes within everyMs.
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: everyMs, pauseOnFailure: false },
    state: { note: `reconcile every ${Math.round(everyMs / 60_000)} min (managed by npm run schedules)` },
  };
}

/** Create each backup schedule, or update it to the configured one. */
export async function installBackupSchedules(client: Client, backups: BackupSchedule[], taskQueue: string): Promise<Record<string, 'created' | 'updated'>> {
  return upsertSchedules(client, backups.flatMap((b) => backupScheduleOptions(b, taskQueue)));
}

/** Create each volume backup schedule, or update it to the configured one. */
export async function installVolumeBackupSchedules(client: Client, volumes: BackupVolumeParams[], taskQueue: string): Promise<Record<string, 'created' | 'updated'>> {
  return upsertSchedules(client, volumes.map((v) => volumeBackupScheduleOptions(v, taskQueue)));
}

async function main(): Promise<void> {
  const program = new Command()
    .name('schedules')
    .option('-c, --config <file>', 'rotations file', process.env.DURABLE_OPS_ROTATIONS_CONFIG ?? DEFAULT_ROTATIONS_FILE)
    .option('-t, --trigger <credentialId>', 'run one rotation now, as its schedule would')
    .parse(process.argv);
  const opts = program.opts<{ config: string; trigger?: string }>();
  const config = loadConfig();
  const files = { ...scheduleFiles(), rotations: opts.config };
  const desired = configuredSchedules(files, config.DURABLE_OPS_TASK_QUEUE); // before connecting: a bad file changes nothing
  const client = await connectClient(config);
  try {
    const done = await reconcileSchedules(client, desired, config.DURABLE_OPS_TASK_QUEUE);
    for (const [id, what] of Object.entries(done)) process.stdout.write(`${what} schedule ${id}${what === 'deleted' ? ' (no longer in the config)' : ''}\n`);
    const count = (what: ReconcileAction) => Object.values(done).filter((w) => w === what).length;
    process.stdout.write(`schedules: ${count('created')} created, ${count('updated')} updated, ${count('deleted')} deleted\n`);
    if (opts.trigger) {
      await client.schedule.getHandle(rotationScheduleId(opts.trigger)).trigger(ScheduleOverlapPolicy.SKIP);
      process.stdout.write(`triggered ${rotationScheduleId(opts.trigger)}\n`);
    }
  } finally {
    await client.connection.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
