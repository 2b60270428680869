/**
 * Service leases: at most one state-changing runbook per service at any moment, whoever starts it.
 * The lease is a small entity workflow per service (`lease/<service>`, src/workflows/service-lease.ts);
 * runbooks acquire and release it through activities (src/activities/leases.ts) with update-with-start,
 * so Temporal itself guarantees one lease workflow per service and serialises every decision.
 * Pure: used by the lease workflow, the harness, the activities, the CLI and the tests.
 */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { DEFAULT_TASK_QUEUE } from '../config/defaults';
import { durationMs } from './common';

/**
 * The lease workflow of a service, scoped to the engine (its task queue): the operator's engine
 * (the default queue) has `lease/<service>`; another engine on the same server (a test run, a
 * bench) has `lease/<queue>/<service>`, so the two never hold each other's services.
 */
export const leaseWorkflowId = (service: string, taskQueue: string = DEFAULT_TASK_QUEUE) => (taskQueue === DEFAULT_TASK_QUEUE ? `lease/${service}` : `lease/${taskQueue}/${service}`);

/**
 * The lease key of a container or service name: replicas `<service>-<n>` (containers mode, the
 * project's naming) share their service's lease, so a restart of `web-2`, a resize of `web` and a
 * scale of `web` exclude each other. A plain name is its own key. (Over-excluding a container that
 * only looks like a replica is safe; under-excluding is not.)
 */
export const leaseKeyOf = (name: string) => name.replace(/-\d+$/, '');

/** Who holds (or waits for) a lease: the runbook's own execution, and who started it. */
export interface LeaseHolder {
  workflowId: string;
  runId: string;
  runbook: string;
  /** The starter's identity from the history (UI, CLI user@host, a schedule id, a parent workflow). */
  startedBy: string;
  /** When the lease was granted (for a waiter: when it asked). */
  since: number;
  /** The lease is freed at this time even if the holder still runs (an alert says so). */
  expiresAt: number;
}

export interface LeaseWaiter extends LeaseHolder {
  /** The waiter gives up at this time. */
  deadline: number;
}

export interface LeaseRequest {
  service: string;
  holder: Omit<LeaseHolder, 'since' | 'expiresAt'>;
  /** Wait in line when another change holds the lease (false: refused at once). */
  wait: boolean;
  waitTimeoutMs: number;
  /** The lease is freed after this long even if the holder still runs. */
  maxHoldMs: number;
}

export type LeaseAnswer =
  | { granted: true; holder: LeaseHolder }
  | { granted: false; queued: false; holder: LeaseHolder }
  | { granted: false; queued: true; position: number; holder: LeaseHolder };

export interface LeaseRelease {
  workflowId: string;
  runId: string;
  reason: string;
}

export interface LeaseEvent {
  at: number;
  what: 'granted' | 'released' | 'expired' | 'holder-gone' | 'refused' | 'queued' | 'left';
  workflowId: string;
  runbook: string;
  detail?: string;
}

export interface LeaseView {
  service: string;
  holder?: LeaseHolder;
  queue: LeaseWaiter[];
  /** The newest events, oldest first (bounded). */
  recent: LeaseEvent[];
  grants: number;
  livenessCheckMs: number;
  /** Workflows (supervisors) to tell when the lease is next freed. */
  watchers?: string[];
}

export const leaseWorkflowInputSchema = z.strictObject({
  service: z.string().min(1).max(200),
  livenessCheckMs: durationMs.min(100, 'must be >= 100').max(600_000, 'must be <= 10 minutes').default(seed.LEASE_LIVENESS_CHECK_MS),
  idleEndMs: durationMs.min(1_000, 'must be >= 1000').max(86_400_000, 'must be <= 1 day').default(seed.LEASE_IDLE_END_MS),
});
export type LeaseWorkflowInput = z.input<typeof leaseWorkflowInputSchema>;

/** The lease fields every state-changing runbook accepts. */
export const leaseFields = {
  /** Another change holds the service: wait in line (up to leaseWaitTimeoutMs) instead of being refused at once. */
  waitForLease: z.boolean().default(false),
  leaseWaitTimeoutMs: durationMs.min(1_000, 'must be >= 1000').max(seed.LEASE_MAX_WAIT_MS, `must be <= ${seed.LEASE_MAX_WAIT_MS}`).default(seed.LEASE_WAIT_TIMEOUT_MS),
};

/** A short human line for a holder: "scaleService scale/web/... (started by alice@host, since ...)". */
export function describeHolder(h: Pick<LeaseHolder, 'workflowId' | 'runbook' | 'startedBy' | 'since'>): string {
  return `${h.runbook} ${h.workflowId} (started by ${h.startedBy}, since ${new Date(h.since).toISOString()})`;
}
