/**
 * The runbooks operators can start, with the schema that validates each input (the same one
 * the workflow applies first thing), its workflow id, and the summary shown in the UI.
 */
import { WorkflowIdConflictPolicy, type Client, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { z } from 'zod';
import { loadConfig, type Config } from '../config/env';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../config/search-attributes';
import { describeIssues } from '../schemas/common';
import { backupDatabaseInputSchema, restoreDatabaseInputSchema, verifyBackupsInputSchema } from '../schemas/database';
import { recoveryDrillInputSchema, drillSubject } from '../schemas/recovery-drill';
import { restartServiceInputSchema } from '../schemas/restart-service';
import { resizeServiceInputSchema } from '../schemas/resize-service';
import { autoscaleServiceInputSchema } from '../schemas/autoscale-service';
import { rotateCredentialInputSchema } from '../schemas/rotate-credential';
import { scaleServiceInputSchema } from '../schemas/scale-service';
import { startDatabaseInputSchema } from '../schemas/start-database';
import { backupVolumeInputSchema, restoreVolumeInputSchema } from '../schemas/volume';
import { superviseServiceInputSchema } from '../schemas/supervise-service';

interface RunbookSpec<S extends z.ZodType> {
  schema: S;
  service: (input: z.output<S>) => string;
  workflowId: (input: z.output<S>, startedAt: Date) => string;
  summary: (input: z.output<S>) => string;
  /** A long-running entity: starting one that runs already attaches to it. */
  entity: boolean;
}

const spec = <S extends z.ZodType>(s: RunbookSpec<S>) => s;

export const RUNBOOKS = {
  superviseService: spec({
    schema: superviseServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i) => `supervise/${i.service}`,
    summary: (i) => `supervise ${i.service}`,
    entity: true,
  }),
  restartService: spec({
    schema: restartServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i, at) => `restart/${i.service}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `restart ${i.service}: ${i.reason}`,
    entity: false,
  }),
  rotateCredential: spec({
    schema: rotateCredentialInputSchema,
    service: (i) => i.credentialId,
    workflowId: (i, at) => `rotate/${i.credentialId}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `rotate ${i.credentialId} (${i.target.kind})${i.dryRun ? ': dry run' : ''}`,
    entity: false,
  }),
  backupDatabase: spec({
    schema: backupDatabaseInputSchema,
    service: (i) => `postgres/${i.database.id}`,
    workflowId: (i, at) => `backup/${i.database.id}/${i.kind}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `${i.kind} backup of ${i.database.id}`,
    entity: false,
  }),
  restoreDatabase: spec({
    schema: restoreDatabaseInputSchema,
    service: (i) => `postgres/${i.source.id}`,
    workflowId: (i) => `restore/${i.source.id}/${i.instanceId}`,
    summary: (i) => `restore ${i.source.id} (${i.kind}${i.kind === 'physical' ? `, ${i.pointInTime}` : ''}) into ${i.instanceId}`,
    entity: false,
  }),
  verifyBackups: spec({
    schema: verifyBackupsInputSchema,
    service: (i) => `postgres/${i.database.id}`,
    workflowId: (i, at) => `verify-backups/${i.database.id}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `verify the backups of ${i.database.id} (RPO ${Math.round(i.rpoMs / 1000)} s)`,
    entity: false,
  }),
  scaleService: spec({
    schema: scaleServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i, at) => `scale/${i.service}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `scale ${i.service} to ${i.replicas} (${i.mode})${i.dryRun ? ': dry run' : i.approval === 'required' ? ': approval required' : ''}`,
    entity: false,
  }),
  recoveryDrill: spec({
    schema: recoveryDrillInputSchema,
    service: (i) => drillSubject(i),
    workflowId: (i, at) => `drill/${i.scenario}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `recovery drill ${i.scenario} on ${drillSubject(i)}${i.note ? `: ${i.note}` : ''}`,
    entity: false,
  }),
  startDatabase: spec({
    schema: startDatabaseInputSchema,
    service: (i) => i.instanceId,
    workflowId: (i, at) => `start-db/${i.instanceId}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `start database instance ${i.instanceId}`,
    entity: false,
  }),
  backupVolume: spec({
    schema: backupVolumeInputSchema,
    service: (i) => `volume/${i.volume}`,
    workflowId: (i, at) => `backup-volume/${i.volume}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `backup of volume ${i.volume}${i.quiesce ? ` (${i.quiesce.service} paused)` : ''}`,
    entity: false,
  }),
  restoreVolume: spec({
    schema: restoreVolumeInputSchema,
    service: (i) => `volume/${i.intoVolume ?? i.volume}`,
    workflowId: (i, at) => `restore-volume/${i.intoVolume ?? i.volume}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `restore volume ${i.volume}${i.intoVolume ? ` into ${i.intoVolume}` : ''} from ${i.backupId ?? 'the newest good backup'}${i.service ? ` (${i.service} stopped and started)` : ''}`,
    entity: false,
  }),
  resizeService: spec({
    schema: resizeServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i, at) => `resize/${i.service}/${at.toISOString().replace(/[:.]/g, '-')}`,
    summary: (i) => `resize ${i.service} (${i.mode})${i.limits ? `: cpu ${i.limits.cpu ?? 'rec'}, memory ${i.limits.memoryMb ?? 'rec'} MiB` : ''}${i.dryRun ? ': dry run' : ''}`,
    entity: false,
  }),
  autoscaleService: spec({
    schema: autoscaleServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i) => `autoscale/${i.service}`,
    summary: (i) => `autoscale ${i.service}: ${i.minReplicas}..${i.maxReplicas} replicas, cpu target ${i.targetCpuPercent}%`,
    entity: true,
  }),
};

export type RunbookName = keyof typeof RUNBOOKS;

export class InvalidInputError extends Error {
  override name = 'InvalidInputError';
  constructor(
    readonly runbook: string,
    readonly problems: string[],
  ) {
    super(`invalid ${runbook} input:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}

export function isRunbook(name: string): name is RunbookName {
  return Object.hasOwn(RUNBOOKS, name);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The seed defaults an operator overrode in the environment (DURABLE_OPS_RESTART_*), filled in
 * where the input leaves them out. Whatever the input says wins; anything malformed is left for
 * the schema to report.
 */
export function applyConfiguredDefaults(runbook: RunbookName, raw: unknown, config: Config): unknown {
  if (runbook !== 'superviseService' || !isObject(raw)) return raw;
  if (raw.restart !== undefined && !isObject(raw.restart)) return raw;
  return {
    ...raw,
    restart: {
      maxAttempts: config.DURABLE_OPS_RESTART_MAX_ATTEMPTS,
      initialDelayMs: config.DURABLE_OPS_RESTART_SEC_MS,
      maxDelayMs: config.DURABLE_OPS_RESTART_BACKOFF_MAX_MS,
      ...(raw.restart ?? {}),
    },
  };
}

/**
 * Validate an input with the runbook's schema (after the configured defaults); throws
 * InvalidInputError naming each bad field.
 */
export function validateInput(runbook: RunbookName, raw: unknown, config: Config = loadConfig()): { input: unknown; service: string; summary: string } {
  const s = RUNBOOKS[runbook] as RunbookSpec<z.ZodType>;
  const parsed = s.schema.safeParse(applyConfiguredDefaults(runbook, raw, config));
  if (!parsed.success) throw new InvalidInputError(runbook, describeIssues(parsed.error));
  return { input: parsed.data, service: s.service(parsed.data), summary: s.summary(parsed.data) };
}

export interface StartOptions {
  taskQueue: string;
  workflowId?: string;
  /** Shown in the UI's summary; defaults to the runbook's. */
  summary?: string;
}

/**
 * Start a runbook: validate, then start with its id, search attributes and summary. Entity
 * runbooks (the supervisor) attach to the running one instead of failing.
 */
export async function startRunbook(client: Client, runbook: RunbookName, raw: unknown, opts: StartOptions): Promise<WorkflowHandleWithFirstExecutionRunId> {
  const s = RUNBOOKS[runbook] as RunbookSpec<z.ZodType>;
  const { input, service, summary } = validateInput(runbook, raw);
  return client.workflow.start(runbook, {
    taskQueue: opts.taskQueue,
    workflowId: opts.workflowId ?? s.workflowId(input, new Date()),
    args: [input],
    typedSearchAttributes: [
      { key: SERVICE_ATTR, value: service },
      { key: RUNBOOK_ATTR, value: runbook },
    ],
    staticSummary: opts.summary ?? summary,
    ...(s.entity ? { workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING } : {}),
  });
}
