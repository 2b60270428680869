/**
 * The runbooks' configuration files, read and validated with the runbooks' own schemas:
 * config/rotations.json (rotateCredential inputs), config/drills.json (recoveryDrill inputs and
 * their period) and config/backups.json (databases and Docker volumes to back up). The schedule
 * installer (src/starters/schedules.ts) and the worker (rotation ages) both read them.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import * as seed from '../config/defaults';
import { describeIssues } from '../schemas/common';
import { databaseRefSchema, type DatabaseRef } from '../schemas/database';
import { recoveryDrillInputSchema, type RecoveryDrillParams } from '../schemas/recovery-drill';
import { rotateCredentialInputSchema, type RotateCredentialParams } from '../schemas/rotate-credential';
import { backupVolumeInputSchema, type BackupVolumeParams } from '../schemas/volume';

/** Credentials to rotate on a schedule (or DURABLE_OPS_ROTATIONS_CONFIG). */
export const DEFAULT_ROTATIONS_FILE = fileURLToPath(new URL('../../config/rotations.json', import.meta.url));

const rotationsFileSchema = z.strictObject({ $comment: z.string().optional(), rotations: z.array(z.unknown()) });

/** Read and validate the rotations file; every entry is a rotateCredential input. */
export function loadRotations(file: string): RotateCredentialParams[] {
  const raw = rotationsFileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
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

/** Recovery drills (or DURABLE_OPS_DRILLS_CONFIG): a recoveryDrill every `every` (seed: weekly). */
export const DEFAULT_DRILLS_FILE = fileURLToPath(new URL('../../config/drills.json', import.meta.url));

export interface DrillSchedule {
  id: string;
  every: string;
  input: RecoveryDrillParams;
}

const drillsFileSchema = z.strictObject({
  $comment: z.string().optional(),
  drills: z.array(z.strictObject({ id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,60}$/, 'must be a lower-case slug'), every: z.string().regex(/^\d+ (minutes|hours|days)$/, 'must be "<n> minutes|hours|days"').default(seed.DRILL_SCHEDULE_EVERY), input: z.unknown() })),
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
  const ids = parsed.map((d) => d.id);
  ids.forEach((id, i) => ids.indexOf(id) !== i && problems.push(`drills.${i}.id: "${id}" appears twice`));
  if (problems.length > 0) throw new Error(`invalid ${file}:\n  ${problems.join('\n  ')}`);
  return parsed;
}

/**
 * Backups (or DURABLE_OPS_BACKUPS_CONFIG): per database, physical and logical backups and their
 * verification; per Docker volume, a backupVolume input.
 */
export const DEFAULT_BACKUPS_FILE = fileURLToPath(new URL('../../config/backups.json', import.meta.url));

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

/** The volumes of the backups file, each a valid backupVolume input (seed keep filled in). */
export const loadVolumeBackups = (file: string): BackupVolumeParams[] => readBackupsFile(file).volumes;
