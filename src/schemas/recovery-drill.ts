/**
 * Input of the recoveryDrill runbook: one Chaos-Toolkit-shaped drill (steady state -> fault ->
 * recovery -> verify -> report) from the scenario catalogue, with RTO/RPO targets.
 *
 * A scenario that would touch the project's own cluster ('main') needs allowUserData: true AND an
 * approval; by default every database scenario runs on a drill copy the drill creates and drops.
 * Pure: imported by the workflow, the starters and the tests.
 */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { containerName, durationMs, httpUrl } from './common';
import { volumeName } from './database';

export const DRILL_SCENARIOS = ['kill-container', 'stop-postgres', 'delete-data-folder', 'drop-table', 'corrupt-backup', 'delete-volume-data'] as const;
export type DrillScenario = (typeof DRILL_SCENARIOS)[number];

const identifier = z.string().regex(/^[a-z_][a-z0-9_]{0,40}$/, 'must be a lower-case SQL identifier');

export const drillApprovalSchema = z.strictObject({
  by: z.string().trim().min(1, 'say who approves').max(100),
  reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(500),
  ticket: z.string().trim().max(100).optional(),
});

export const drillTargetsSchema = z.strictObject({
  /** Fault injected -> steady state verified. */
  rtoMs: durationMs.min(1, 'must be > 0').default(seed.RTO_TARGET_MS),
  /** Fault time - newest heartbeat row the recovered database holds. */
  rpoMs: durationMs.default(seed.RPO_TARGET_MS),
});

/** kill-container: SIGKILL a service container, recover with the restartService runbook. */
export const containerTargetSchema = z
  .strictObject({
    /** The container. With demoPort the drill runs its own demo container by this name (and removes it). */
    service: containerName,
    /** HTTP endpoint that answers 200 when healthy; derived from demoPort when that is given. */
    healthUrl: httpUrl.optional(),
    /** Run a throwaway demo-service container (host network, 127.0.0.1:<demoPort>) as the target. */
    demoPort: z.number().int().min(1024, 'must be >= 1024').max(65535, 'must be <= 65535').optional(),
    healthTimeoutMs: durationMs.min(1, 'must be > 0').max(600_000, 'must be <= 600000').default(seed.HEALTHCHECK_START_PERIOD_MS),
    stopTimeoutSec: z.number().int().min(0).max(600).default(seed.DRILL_STOP_TIMEOUT_SEC),
  })
  .refine((t) => t.healthUrl !== undefined || t.demoPort !== undefined, { path: ['healthUrl'], message: 'required unless demoPort is given' });

/** Database scenarios: which database, which tables are validated after the recovery. */
export const databaseTargetSchema = z.strictObject({
  /** 'drill-copy': a fresh instance the drill creates, seeds and drops. 'main': the project cluster (allowUserData + approval). */
  database: z.enum(['drill-copy', 'main'], { error: 'must be "drill-copy" or "main"' }).default('drill-copy'),
  /** Rows seeded into the drill copy's table drill_items. */
  seedRows: z.number().int().min(1, 'must be >= 1').max(1_000_000, 'must be <= 1000000').default(seed.DRILL_SEED_ROWS),
  /** Tables whose row counts and checksums must match the source at the restore point. */
  tables: z.array(identifier).min(1, 'name at least one table').max(20).default(['drill_items']),
  /** drop-table: the table dropped by the fault. */
  dropTable: identifier.default('drill_items'),
});

/**
 * delete-volume-data: the drill runs its own demo container (host network, 127.0.0.1:<demoPort>)
 * with its own named volume, seeds `files` files into it and writes a heartbeat file; the fault
 * deletes the volume's content; the recovery is the restoreVolume runbook. Container and volume
 * are created and removed by the drill (an existing one that is not a drill's is refused).
 */
export const volumeTargetSchema = z.strictObject({
  /** The drill's demo container (created and removed by the drill). */
  service: containerName,
  demoPort: z.number().int().min(1024, 'must be >= 1024').max(65535, 'must be <= 65535'),
  /** The drill's named volume (created and removed by the drill, with its backups). */
  volume: volumeName,
  /** Data files seeded into the volume; their checksums are verified after the restore. */
  files: z.number().int('must be a whole number').min(1, 'must be >= 1').max(1000, 'must be <= 1000').default(seed.DRILL_VOLUME_FILES),
  healthTimeoutMs: durationMs.min(1, 'must be > 0').max(600_000, 'must be <= 600000').default(seed.HEALTHCHECK_START_PERIOD_MS),
  stopTimeoutSec: z.number().int().min(0).max(600).default(seed.DRILL_STOP_TIMEOUT_SEC),
});

const common = {
  approval: drillApprovalSchema.optional(),
  /** The drill may touch the project's own data (cluster 'main'); also needs an approval. */
  allowUserData: z.boolean().default(false),
  targets: drillTargetsSchema.prefault({}),
  /** Where the report files go; default $DURABLE_OPS_DATA/drills/<workflow id>/. */
  reportDir: z.string().regex(/^\/[A-Za-z0-9_./-]{0,400}$/, 'must be an absolute path ([A-Za-z0-9_./-])').optional(),
  /** The heartbeat writer's period (makes the RPO observable). */
  heartbeatIntervalMs: durationMs.min(50, 'must be >= 50').max(10_000, 'must be <= 10000').default(seed.DRILL_HEARTBEAT_INTERVAL_MS),
  /** A free-text note for the report (e.g. "re-run of restart/web/..."). */
  note: z.string().max(300).optional(),
};

const dbScenario = <T extends DrillScenario>(scenario: T) =>
  z.strictObject({ scenario: z.literal(scenario), target: databaseTargetSchema.prefault({}), ...common });

export const recoveryDrillInputSchema = z
  .discriminatedUnion(
    'scenario',
    [
      z.strictObject({ scenario: z.literal('kill-container'), target: containerTargetSchema, ...common }),
      dbScenario('stop-postgres'),
      dbScenario('delete-data-folder'),
      dbScenario('drop-table'),
      dbScenario('corrupt-backup'),
      z.strictObject({ scenario: z.literal('delete-volume-data'), target: volumeTargetSchema, ...common }),
    ],
    { error: (issue) => (issue.code === 'invalid_union' ? `unknown scenario: one of ${DRILL_SCENARIOS.join(', ')}` : undefined) },
  )
  .superRefine((input, ctx) => {
    if (input.scenario === 'delete-volume-data') return; // the drill's own container and volume only
    if (input.scenario === 'kill-container' || input.target.database !== 'main') return;
    if (!input.allowUserData) ctx.addIssue({ code: 'custom', path: ['allowUserData'], message: "must be true for a drill on the project's own cluster 'main'" });
    if (!input.approval) ctx.addIssue({ code: 'custom', path: ['approval'], message: "required for a drill on the project's own cluster 'main' ({ by, reason })" });
  });

export type RecoveryDrillInput = z.input<typeof recoveryDrillInputSchema>;
export type RecoveryDrillParams = z.output<typeof recoveryDrillInputSchema>;

/** What the drill says it will touch (for the summary and the report). */
export function drillSubject(input: RecoveryDrillParams): string {
  if (input.scenario === 'delete-volume-data') return `volume/${input.target.volume}`;
  return input.scenario === 'kill-container' ? input.target.service : input.target.database === 'main' ? 'main' : 'drill-copy';
}

/** FNV-1a, 32 bits, hex: the short deterministic suffix of a drill's instance ids (`drill-<hash of drillId/runId>-...`); reconcile recognises them by it. */
export function drillCopyHash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}
