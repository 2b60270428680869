/**
 * npm run schedules: create or update, idempotently, one Temporal Schedule per configured
 * credential (config/rotations.json, or DURABLE_OPS_ROTATIONS_CONFIG): rotateCredential every
 * `periodDays` (seed 90), overlap SKIP, an explicit catch-up window, pause on failure, a note.
 *   npm run schedules                      install / update
 *   npm run schedules -- --trigger app-db  rotate one now (as the schedule would)
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import { Command } from 'commander';
import { z } from 'zod';
import { loadConfig } from '../config/env';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../config/search-attributes';
import { describeIssues } from '../schemas/common';
import { rotateCredentialInputSchema, type RotateCredentialParams } from '../schemas/rotate-credential';
import * as seed from '../config/defaults';
import { backupDatabaseInputSchema, databaseRefSchema, verifyBackupsInputSchema, type BackupKind, type DatabaseRef } from '../schemas/database';
import { backupVolumeInputSchema, type BackupVolumeParams } from '../schemas/volume';
import { DRILL_SCHEDULE_EVERY } from '../config/defaults';
import { drillSubject, recoveryDrillInputSchema, type RecoveryDrillParams } from '../schemas/recovery-drill';
import { connectClient } from '../workers/clients';

export const DEFAULT_ROTATIONS_FILE = fileURLToPath(new URL('../../config/rotations.json', import.meta.url));
/** Missed runs within this window are still taken after an outage (then SKIP applies). */
export const ROTATION_CATCHUP_WINDOW = '1 day';

export const rotationScheduleId = (credentialId: string) => `rotate/${credentialId}`;

const fileSchema = z.strictObject({ $comment: z.string().optional(), rotations: z.array(z.unknown()) });

/** Read and validate the rotations file; every entry is a rotateCredential input. */
export function loadRotations(file: string): RotateCredentialParams[] {
  const raw = fileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  const problems: string[] = [];
  const parsed = raw.rotations.flatMap((r, i) => {
    const p = rotateCredentialInputSchema.safeParse(r);
    if (!p.success) {
      problems.push(...describeIssues(p.error).map((d) => `rotations.${i}.${d}`));
      return [];
    }
    return [p.data];
  });
  const ids = parsed.map((p) => p.credentialId);
  ids.forEach((id, i) => ids.indexOf(id) !== i && problems.push(`rotations.${i}.credentialId: "${id}" appears twice`));
  if (problems.length > 0) throw new Error(`invalid ${file}:\n  ${problems.join('\n  ')}`);
  return parsed;
}

export function scheduleOptions(r: RotateCredentialParams, taskQueue: string): ScheduleOptions {
  return {
    scheduleId: rotationScheduleId(r.credentialId),
    spec: { intervals: [{ every: `${r.periodDays} days` }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'rotateCredential',
      workflowId: `rotate/${r.credentialId}/scheduled`,
      taskQueue,
      args: [r],
      typedSearchAttributes: [
        { key: SERVICE_ATTR, value: r.credentialId },
        { key: RUNBOOK_ATTR, value: 'rotateCredential' },
      ],
      staticSummary: `scheduled rotation of ${r.credentialId} (${r.target.kind})`,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: ROTATION_CATCHUP_WINDOW, pauseOnFailure: true },
    state: { note: `rotate ${r.credentialId} every ${r.periodDays} days (managed by npm run schedules)` },
  };
}

/** Create each schedule, or update it to the configured one. Returns what was done per id. */
export async function installSchedules(client: Client, rotations: RotateCredentialParams[], taskQueue: string): Promise<Record<string, 'created' | 'updated'>> {
  return upsertSchedules(client, rotations.map((r) => scheduleOptions(r, taskQueue)));
}

/** Create each schedule, or update an existing one to these options (idempotent). */
export async function upsertSchedules(client: Client, all: ScheduleOptions[]): Promise<Record<string, 'created' | 'updated'>> {
  const done: Record<string, 'created' | 'updated'> = {};
  for (const opts of all) {
    try {
      await client.schedule.create(opts);
      done[opts.scheduleId] = 'created';
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      await client.schedule.getHandle(opts.scheduleId).update((prev) => ({ ...prev, spec: opts.spec, action: opts.action, policies: opts.policies }));
      done[opts.scheduleId] = 'updated';
    }
  }
  return done;
}

/** Recovery drills (config/drills.json, or DURABLE_OPS_DRILLS_CONFIG): a recoveryDrill every `every` (seed: weekly). */
export const DEFAULT_DRILLS_FILE = fileURLToPath(new URL('../../config/drills.json', import.meta.url));
export const drillScheduleId = (id: string) => `drill/${id}`;

export interface DrillSchedule {
  id: string;
  every: string;
  input: RecoveryDrillParams;
}

const drillsFileSchema = z.strictObject({
  $comment: z.string().optional(),
  drills: z.array(z.strictObject({ id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,60}$/, 'must be a lower-case slug'), every: z.string().regex(/^\d+ (minutes|hours|days)$/, 'must be "<n> minutes|hours|days"').default(DRILL_SCHEDULE_EVERY), input: z.unknown() })),
});

/** Read and validate the drills file; every input is a recoveryDrill input. */
export function loadDrills(file: string): DrillSchedule[] {
  const raw = drillsFileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  const problems: string[] = [];
  const parsed = raw.drills.flatMap((d, i) => {
    const p = recoveryDrillInputSchema.safeParse(d.input);
    if (!p.success) {
      problems.push(...describeIssues(p.error).map((e) => `drills.${i}.input.${e}`));
      return [];
    }
    return [{ id: d.id, every: d.every, input: p.data }];
  });
  if (problems.length > 0) throw new Error(`invalid ${file}:\n  ${problems.join('\n  ')}`);
  return parsed;
}

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
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: ROTATION_CATCHUP_WINDOW, pauseOnFailure: false },
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
export const DEFAULT_BACKUPS_FILE = fileURLToPath(new URL('../../config/backups.json', import.meta.url));
export const backupScheduleId = (databaseId: string, what: BackupKind | 'verify') => (what === 'verify' ? `verify-backups/${databaseId}` : `backup/${databaseId}/${what}`);

export interface BackupSchedule {
  database: DatabaseRef;
  keepPhysical: number;
  keepLogical: number;
  rpoMs: number;
}

const backupsFileSchema = z.strictObject({
  $comment: z.string().optional(),
  /** Docker volumes of services with state on disk: a backupVolume input each, taken every VOLUME_BACKUP_EVERY_MS. */
  volumes: z.array(backupVolumeInputSchema).default([]),
  databases: z.array(
    z.strictObject({
      database: databaseRefSchema,
      keepPhysical: z.number().int().min(1).default(seed.BACKUP_KEEP_PHYSICAL),
      keepLogical: z.number().int().min(1).default(seed.BACKUP_KEEP_LOGICAL),
      rpoMs: z.number().int().min(1_000).default(seed.RPO_TARGET_MS),
    }),
  ),
});

/** Read and validate the backups file (each entry's inputs through the runbooks' own schemas; no database or volume twice). */
export function readBackupsFile(file: string): { databases: BackupSchedule[]; volumes: BackupVolumeParams[] } {
  const parsed = backupsFileSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new Error(`invalid ${file}:\n  ${describeIssues(parsed.error).join('\n  ')}`);
  for (const [list, names] of [
    ['databases', parsed.data.databases.map((d) => d.database.id)],
    ['volumes', parsed.data.volumes.map((v) => v.volume)],
  ] as const) {
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) throw new Error(`invalid ${file}: ${list}: "${dup}" appears twice`);
  }
  return parsed.data;
}

/** The databases of the backups file. */
export const loadBackups = (file: string): BackupSchedule[] => readBackupsFile(file).databases;

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
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: ROTATION_CATCHUP_WINDOW, pauseOnFailure: false },
    state: { note: `${summary} every ${Math.round(everyMs / 60_000)} min (managed by npm run schedules)` },
  });
  return [
    one('physical', seed.BACKUP_PHYSICAL_EVERY_MS, 'backupDatabase', backupDatabaseInputSchema.parse({ database: b.database, kind: 'physical', keep: b.keepPhysical }), `scheduled physical backup of ${id}`),
    one('logical', seed.BACKUP_LOGICAL_EVERY_MS, 'backupDatabase', backupDatabaseInputSchema.parse({ database: b.database, kind: 'logical', keep: b.keepLogical }), `scheduled logical backup of ${id}`),
    one('verify', seed.BACKUP_VERIFY_EVERY_MS, 'verifyBackups', verifyBackupsInputSchema.parse({ database: b.database, rpoMs: b.rpoMs }), `scheduled verification of the backups of ${id}`),
  ];
}

export const volumeBackupScheduleId = (volume: string) => `backup-volume/${volume}`;

/** The volumes of the backups file, each a valid backupVolume input (seed keep filled in). */
export const loadVolumeBackups = (file: string): BackupVolumeParams[] => readBackupsFile(file).volumes;

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
      args: [v],
      typedSearchAttributes: [
        { key: SERVICE_ATTR, value: `volume/${v.volume}` },
        { key: RUNBOOK_ATTR, value: 'backupVolume' },
      ],
      staticSummary: summary,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: ROTATION_CATCHUP_WINDOW, pauseOnFailure: false },
    state: { note: `${summary} every ${Math.round(seed.VOLUME_BACKUP_EVERY_MS / 60_000)} min (managed by npm run schedules)` },
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
  const client = await connectClient(config);
  try {
    const rotations = loadRotations(opts.config);
    const done = await installSchedules(client, rotations, config.DURABLE_OPS_TASK_QUEUE);
    for (const [id, what] of Object.entries(done)) process.stdout.write(`${what} schedule ${id}\n`);
    const drills = await installDrillSchedules(client, loadDrills(process.env.DURABLE_OPS_DRILLS_CONFIG ?? DEFAULT_DRILLS_FILE), config.DURABLE_OPS_TASK_QUEUE);
    for (const [id, what] of Object.entries(drills)) process.stdout.write(`${what} schedule ${id}\n`);
    const backupsFile = readBackupsFile(process.env.DURABLE_OPS_BACKUPS_CONFIG ?? DEFAULT_BACKUPS_FILE);
    const backups = await installBackupSchedules(client, backupsFile.databases, config.DURABLE_OPS_TASK_QUEUE);
    for (const [id, what] of Object.entries(backups)) process.stdout.write(`${what} schedule ${id}\n`);
    const volumes = await installVolumeBackupSchedules(client, backupsFile.volumes, config.DURABLE_OPS_TASK_QUEUE);
    for (const [id, what] of Object.entries(volumes)) process.stdout.write(`${what} schedule ${id}\n`);
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
