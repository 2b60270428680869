/**
 * The runbook registry: one entry per runbook operators can start, with the schema that
 * validates its input (the same one the workflow applies first thing), its workflow id, whether
 * it changes the service, and the summary, description and example shown to operators.
 *
 * The runbook core floor: workers, starters, the CLI and tests read it; it imports only from
 * the floors below (schemas, config), never from src/workflows, src/workers or src/starters.
 */
import { WorkflowIdConflictPolicy, type Client, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { z } from 'zod';
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
import { reconcileInputSchema } from '../schemas/reconcile';

export interface RunbookSpec<S extends z.ZodType> {
  schema: S;
  service: (input: z.output<S>) => string;
  workflowId: (input: z.output<S>, startedAt: Date) => string;
  summary: (input: z.output<S>) => string;
  /** A long-running entity: starting one that runs already attaches to it. */
  entity: boolean;
  /** Does a run change the service (its replicas, limits, containers, credentials, data or running state)? */
  changes: boolean;
  /** One line for operators (CLI help, docs). */
  description: string;
  /** A valid input (checked against the schema by test/unit/registry.test.ts). */
  example: z.input<S>;
}

const spec = <S extends z.ZodType>(s: RunbookSpec<S>) => s;
const stamp = (at: Date) => at.toISOString().replace(/[:.]/g, '-');

export const RUNBOOKS = {
  superviseService: spec({
    schema: superviseServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i) => `supervise/${i.service}`,
    summary: (i) => `supervise ${i.service}`,
    entity: true,
    // false: it watches. The restart it does when a container dies brings the service back to the
    // state it was in (like Docker's restart policy); it is not an operator's change, and it
    // defers to a change in progress instead of taking the service's lease.
    changes: false,
    description: 'Watch a service (Docker events and health probes) and restart it with backoff; alert and wait for resume when it gives up.',
    example: { service: 'web', healthUrl: 'http://127.0.0.1:8081/health' },
  }),
  restartService: spec({
    schema: restartServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i, at) => `restart/${i.service}/${stamp(at)}`,
    summary: (i) => `restart ${i.service}: ${i.reason}`,
    entity: false,
    changes: true, // stops and starts the container
    description: 'Restart a service gracefully and wait until it is healthy again.',
    example: { service: 'web', reason: 'stuck connections after deploy', healthUrl: 'http://127.0.0.1:8081/health' },
  }),
  rotateCredential: spec({
    schema: rotateCredentialInputSchema,
    service: (i) => i.credentialId,
    workflowId: (i, at) => `rotate/${i.credentialId}/${stamp(at)}`,
    summary: (i) => `rotate ${i.credentialId} (${i.target.kind})${i.dryRun ? ': dry run' : ''}`,
    entity: false,
    changes: true, // a new credential version becomes current and the old one is revoked (a dry run changes nothing, but the flag is per runbook)
    description: 'Rotate a credential in Vault and its consumer (create, set, test, finish), revoking the old one after a grace period.',
    example: { credentialId: 'app-db', vaultPath: 'durable-ops/app-db', target: { kind: 'postgres-role', app: 'orders', database: 'app' } },
  }),
  backupDatabase: spec({
    schema: backupDatabaseInputSchema,
    service: (i) => `postgres/${i.database.id}`,
    workflowId: (i, at) => `backup/${i.database.id}/${i.kind}/${stamp(at)}`,
    summary: (i) => `${i.kind} backup of ${i.database.id}`,
    entity: false,
    changes: false, // reads the database (pg_basebackup / pg_dump) and writes only to the backup store (retention prunes old backups there)
    description: 'Take a physical (base backup + WAL) or logical (dump) backup of a database and apply retention.',
    example: { database: { id: 'main', port: 5433, database: 'app' }, kind: 'physical', keep: 24 },
  }),
  restoreDatabase: spec({
    schema: restoreDatabaseInputSchema,
    service: (i) => `postgres/${i.source.id}`,
    workflowId: (i) => `restore/${i.source.id}/${i.instanceId}`,
    summary: (i) => `restore ${i.source.id} (${i.kind}${i.kind === 'physical' ? `, ${i.pointInTime}` : ''}) into ${i.instanceId}`,
    entity: false,
    changes: true, // creates and starts a new database instance (never over the source)
    description: 'Restore the newest verified backup (or a point in time) of a database into a new instance.',
    example: { source: { id: 'main', port: 5433 }, kind: 'physical', pointInTime: 'latest', instanceId: 'main-restore-1' },
  }),
  verifyBackups: spec({
    schema: verifyBackupsInputSchema,
    service: (i) => `postgres/${i.database.id}`,
    workflowId: (i, at) => `verify-backups/${i.database.id}/${stamp(at)}`,
    summary: (i) => `verify the backups of ${i.database.id} (RPO ${Math.round(i.rpoMs / 1000)} s)`,
    entity: false,
    changes: false, // reads the backup store and the database's WAL position; alerts only
    description: 'Check the backups of a database against its RPO target and alert when the data at risk grows too old.',
    example: { database: { id: 'main', port: 5433 }, rpoMs: 300_000 },
  }),
  scaleService: spec({
    schema: scaleServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i, at) => `scale/${i.service}/${stamp(at)}`,
    summary: (i) => `scale ${i.service} to ${i.replicas} (${i.mode})${i.dryRun ? ': dry run' : i.approval === 'required' ? ': approval required' : ''}`,
    entity: false,
    changes: true, // adds or drains and removes replicas, and rewrites the load balancer
    description: 'Scale a service to a number of replicas step by step, behind the load balancer, rolling back on failure.',
    example: { service: 'web', replicas: 3, basePort: 8500 },
  }),
  recoveryDrill: spec({
    schema: recoveryDrillInputSchema,
    service: (i) => drillSubject(i),
    workflowId: (i, at) => `drill/${i.scenario}/${stamp(at)}`,
    summary: (i) => `recovery drill ${i.scenario} on ${drillSubject(i)}${i.note ? `: ${i.note}` : ''}`,
    entity: false,
    changes: true, // injects a real fault (kills a container, deletes data) and runs the recovery
    description: 'Inject a fault, run the matching recovery and verify the steady state, RTO and RPO (a Chaos Toolkit style experiment).',
    example: { scenario: 'kill-container', target: { service: 'web', healthUrl: 'http://127.0.0.1:8081/health' } },
  }),
  startDatabase: spec({
    schema: startDatabaseInputSchema,
    service: (i) => i.instanceId,
    workflowId: (i, at) => `start-db/${i.instanceId}/${stamp(at)}`,
    summary: (i) => `start database instance ${i.instanceId}`,
    entity: false,
    changes: true, // starts the instance
    description: 'Start a database instance and wait until it accepts connections.',
    example: { instanceId: 'main-restore-1', readyTimeoutMs: 60_000 },
  }),
  backupVolume: spec({
    schema: backupVolumeInputSchema,
    service: (i) => `volume/${i.volume}`,
    workflowId: (i, at) => `backup-volume/${i.volume}/${stamp(at)}`,
    summary: (i) => `backup of volume ${i.volume}${i.quiesce ? ` (${i.quiesce.service} paused)` : ''}`,
    entity: false,
    changes: true, // with `quiesce` it pauses the container using the volume for the tar (without, it only reads; the flag is per runbook)
    description: 'Back up a Docker volume into the backup store (optionally pausing the container that uses it) and apply retention.',
    example: { volume: 'web-data', keep: 7, quiesce: { service: 'web' } },
  }),
  restoreVolume: spec({
    schema: restoreVolumeInputSchema,
    service: (i) => `volume/${i.intoVolume ?? i.volume}`,
    workflowId: (i, at) => `restore-volume/${i.intoVolume ?? i.volume}/${stamp(at)}`,
    summary: (i) => `restore volume ${i.volume}${i.intoVolume ? ` into ${i.intoVolume}` : ''} from ${i.backupId ?? 'the newest good backup'}${i.service ? ` (${i.service} stopped and started)` : ''}`,
    entity: false,
    changes: true, // replaces the volume's content (and stops and starts the service using it)
    description: "Replace a Docker volume's content with its newest verified backup, stopping and starting the service that uses it.",
    example: { volume: 'web-data', service: 'web', healthUrl: 'http://127.0.0.1:8081/health' },
  }),
  resizeService: spec({
    schema: resizeServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i, at) => `resize/${i.service}/${stamp(at)}`,
    summary: (i) => `resize ${i.service} (${i.mode})${i.limits ? `: cpu ${i.limits.cpu ?? 'rec'}, memory ${i.limits.memoryMb ?? 'rec'} MiB` : ''}${i.dryRun ? ': dry run' : ''}`,
    entity: false,
    changes: true, // sets new CPU and memory limits on the containers
    description: "Measure a service's CPU and memory, recommend limits with headroom and apply them, restoring the old ones if it turns unhealthy.",
    example: { service: 'web', mode: 'containers', healthUrl: 'http://127.0.0.1:8081/health' },
  }),
  autoscaleService: spec({
    schema: autoscaleServiceInputSchema,
    service: (i) => i.service,
    workflowId: (i) => `autoscale/${i.service}`,
    summary: (i) => `autoscale ${i.service}: ${i.minReplicas}..${i.maxReplicas} replicas, cpu target ${i.targetCpuPercent}%`,
    entity: true,
    changes: true, // starts scaleService children that change the replica count
    description: 'Keep a service between min and max replicas on its CPU (and optionally request rate or latency) target, as the Kubernetes HPA does.',
    example: { service: 'web', basePort: 8080, minReplicas: 2, maxReplicas: 8 },
  }),
  reconcile: spec({
    schema: reconcileInputSchema,
    service: (i) => (i.services ? i.services.join(',') : 'all'),
    workflowId: (_i, at) => `reconcile/${stamp(at)}`,
    summary: (i) => `reconcile ${i.services ? i.services.join(', ') : 'everything'}${i.dryRun ? ': dry run' : !i.repair ? ': report only' : ''}`,
    entity: false,
    changes: true, // removes balancer servers, replicas, pending versions, drill leftovers and releases leases (each service under its lease); a dry run changes nothing, but the flag is per runbook
    description: 'Find the drift terminated runs leave (balancer servers, replicas, pending Vault versions, leases, drill leftovers) and repair or report it.',
    example: { dryRun: true, services: ['web'], vaultPaths: ['durable-ops/app-db'] },
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

/** A registry entry, typed loosely enough to read any runbook's fields. */
export const runbookSpec = (runbook: RunbookName): RunbookSpec<z.ZodType> => RUNBOOKS[runbook] as RunbookSpec<z.ZodType>;

/**
 * Validate an input with the runbook's schema; throws InvalidInputError naming each bad field.
 * Defaults an operator configured in the environment are the worker's to apply (the supervisor
 * reads them first thing), not the client's: the input goes as given.
 */
export function validateInput(runbook: RunbookName, raw: unknown): { input: unknown; service: string; summary: string } {
  const s = runbookSpec(runbook);
  const parsed = s.schema.safeParse(raw);
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
  const s = runbookSpec(runbook);
  const { input, service, summary } = validateInput(runbook, raw);
  return client.workflow.start(runbook, {
    taskQueue: opts.taskQueue,
    workflowId: opts.workflowId ?? s.workflowId(input, new Date()),
    // As given (validated): the workflow fills the defaults, the worker's configured ones included.
    args: [raw],
    typedSearchAttributes: [
      { key: SERVICE_ATTR, value: service },
      { key: RUNBOOK_ATTR, value: runbook },
    ],
    staticSummary: opts.summary ?? summary,
    ...(s.entity ? { workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING } : {}),
  });
}
