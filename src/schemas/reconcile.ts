/**
 * Input and report of the reconcile runbook: compare what the engine believes (the load-balancer
 * model, the last finished scale, pending credential versions, leases, drills) with what is there,
 * and repair or report the drift a terminated run leaves behind (terminate runs no compensation).
 * Pure: used by the workflow, the CLI, the schedule installer and the tests.
 */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { containerName, durationMs } from './common';
import { vaultPath } from './rotate-credential';

/** The subject a `services` list may name to include the drill copies (PostgreSQL instances `drill-*`). */
export const DRILL_COPY_SUBJECT = 'drill-copy';
/** At most this many findings are kept in the report (the counts still count them all). */
export const RECONCILE_MAX_FINDINGS = 200;

export const reconcileInputSchema = z.strictObject({
  /** Report only: change nothing, take no lease. */
  dryRun: z.boolean().default(false),
  /** false: report the drift, repair nothing (as dryRun, but said "reported" per finding). */
  repair: z.boolean().default(true),
  /**
   * Limit the service checks (balancers, replicas, leases, drill containers) to these; the drill
   * copies are checked only when the list names "drill-copy". Default: everything.
   */
  services: z.array(containerName).min(1, 'name at least one service, or leave it out').max(50, 'at most 50 services').optional(),
  /** Vault KV paths whose pending versions are checked (the starters fill in config/rotations.json's). */
  vaultPaths: z.array(vaultPath).max(100, 'at most 100 paths').default([]),
  /** Drill leftovers (containers, instances) younger than this are left for the next run: a drill may be starting. */
  graceMs: durationMs.max(3_600_000, 'must be <= 1 hour').default(60_000),
  /** A replica put back into the balancer must pass HAProxy's check within this long. */
  readyTimeoutMs: durationMs.min(1_000, 'must be >= 1000').max(600_000, 'must be <= 10 minutes').default(seed.SCALE_HEALTH_TIMEOUT_MS),
});

export type ReconcileInput = z.input<typeof reconcileInputSchema>;
export type ReconcileParams = z.output<typeof reconcileInputSchema>;

export type DriftKind =
  /** An HAProxy server with no replica container. */
  | 'balancer-orphan'
  /** An Nginx upstream server with no replica container (or the upstream out of step with HAProxy's rotation). */
  | 'nginx-orphan'
  /** A running, healthy replica the balancer does not serve (absent, or left drained). */
  | 'replica-unserved'
  /** A replica container above the target of the last finished scale. */
  | 'replica-extra'
  /** A pending Vault version whose rotation no longer runs. */
  | 'vault-pending'
  /** A lease held by a workflow that no longer runs. */
  | 'lease-orphan'
  /** A drill copy (PostgreSQL instance) of no running drill. */
  | 'drill-copy'
  /** A drill container of no running drill. */
  | 'drill-container';

export interface Finding {
  kind: DriftKind;
  /** What it is about: `backend/server`, a container, `secret/<path> v<N>`, `lease/<service>`, an instance. */
  subject: string;
  detail: string;
  action: 'repaired' | 'reported' | 'skipped-busy';
  /** The repair failed (the finding stays "reported"). */
  error?: string;
}

export interface ReconcileReport {
  dryRun: boolean;
  repair: boolean;
  state: 'checking' | 'repairing' | 'done';
  findings: Finding[];
  counts: { total: number; repaired: number; reported: number; skippedBusy: number; failed: number };
  /** Checks that could not run (a system not configured or unreachable): named, not fatal. */
  notChecked: string[];
  startedAt: number;
  finishedAt?: number;
}
