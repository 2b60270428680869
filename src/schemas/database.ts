/**
 * Databases and backups (issue #6): the DatabaseRef every backup, restore and drill runbook
 * speaks, the three runbook inputs (backupDatabase, restoreDatabase, verifyBackups), and the
 * backup manifest. Pure: imported by workflows, activities, starters and tests alike.
 */
import { z } from 'zod';
import { leaseFields } from './lease';
import * as seed from '../config/defaults';

/** An instance id: 'main' is the project cluster (127.0.0.1:5433); others are instances we created. */
export const instanceId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,47}$/, 'must be lowercase letters, digits and dashes (at most 48, not starting with a dash)');

export const databaseRefSchema = z
  .object({
    id: instanceId,
    host: z.literal('127.0.0.1').default('127.0.0.1'),
    port: z.number().int().min(1024).max(65535),
    database: z.string().regex(/^[a-z_][a-z0-9_]*$/, 'must be a lowercase SQL identifier').default('app'),
  })
  .strict();
export type DatabaseRef = z.output<typeof databaseRefSchema>;

export const BACKUP_KINDS = ['physical', 'logical'] as const;
export type BackupKind = (typeof BACKUP_KINDS)[number];

/** Backup ids are made by backupDatabase (`<UTC start>-<hash of the workflow>`); a name safe as a folder. */
export const backupId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'must be a backup id (letters, digits, . _ -)');

const keep = z.number().int('must be a whole number').min(1, 'must be >= 1').max(1000, 'must be <= 1000');

export const backupDatabaseInputSchema = z.strictObject({
  database: databaseRefSchema,
  kind: z.enum(BACKUP_KINDS),
  /** Backups of this kind kept after this one (the seed: 24 base backups, 7 dumps). */
  keep: keep.optional(),
});
export type BackupDatabaseInput = z.input<typeof backupDatabaseInputSchema>;
export type BackupDatabaseParams = z.output<typeof backupDatabaseInputSchema>;

export const keepFor = (kind: BackupKind, keepN?: number): number => keepN ?? (kind === 'physical' ? seed.BACKUP_KEEP_PHYSICAL : seed.BACKUP_KEEP_LOGICAL);

const isoTime = z.string().refine((v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v) && !Number.isNaN(Date.parse(v)), 'must be an ISO 8601 time with a zone (e.g. 2026-11-30T07:00:00Z)');

export const restoreDatabaseInputSchema = z
  .strictObject({
    source: databaseRefSchema,
    kind: z.enum(BACKUP_KINDS).default('physical'),
    /** Default: the newest backup whose checksums verify. */
    backupId: backupId.optional(),
    /** Physical only: replay the WAL archive up to this time, or to its end ('latest'). */
    pointInTime: z.union([z.literal('latest'), isoTime]).default('latest'),
    /** The new instance's id (chosen by the caller, deterministic); never 'main'. */
    instanceId: instanceId.refine((v) => v !== 'main', "must not be 'main' (a restore always goes into a new instance)"),
    ...leaseFields,
  })
  .superRefine((v, ctx) => {
    if (v.kind === 'logical' && v.pointInTime !== 'latest') ctx.addIssue({ code: 'custom', path: ['pointInTime'], message: "a logical restore has no point in time: use 'latest' or kind 'physical'" });
    if (v.instanceId === v.source.id) ctx.addIssue({ code: 'custom', path: ['instanceId'], message: 'must differ from source.id' });
  });
export type RestoreDatabaseInput = z.input<typeof restoreDatabaseInputSchema>;
export type RestoreDatabaseParams = z.output<typeof restoreDatabaseInputSchema>;

export const verifyBackupsInputSchema = z.strictObject({
  database: databaseRefSchema,
  rpoMs: z.number().int('must be a whole number of milliseconds').min(1_000, 'must be >= 1000').default(seed.RPO_TARGET_MS),
  /** Raise a warning/critical alert when the RPO is at risk or broken (schedules: yes; a drill may say no). */
  alert: z.boolean().default(true),
});
export type VerifyBackupsInput = z.input<typeof verifyBackupsInputSchema>;
export type VerifyBackupsParams = z.output<typeof verifyBackupsInputSchema>;

export interface ManifestFile {
  /** Relative to the backup folder. */
  path: string;
  bytes: number;
  sha256: string;
}

export interface BackupManifest {
  backupId: string;
  kind: BackupKind;
  database: DatabaseRef;
  startedAt: string;
  finishedAt: string;
  /** The newest moment whose data this backup holds by itself (before any WAL replay). */
  consistentUntil: string;
  sizeBytes: number;
  files: ManifestFile[];
  /** Physical: the WAL segment a restore starts from (retention keeps the archive from here) and the last one it needs. */
  startWal?: string;
  stopWal?: string;
}

/** Docker volume backups: `<store>/volumes/<volume>/<backupId>/`, same manifest shape (database = the volume). */
export const volumeName = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/, 'must be a Docker volume name');
