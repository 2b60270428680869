/**
 * Service leases, the activity side: acquire and release `lease/<service>` (src/workflows/service-lease.ts)
 * with update-with-start, read it, and tell whether a workflow still runs (the lease's liveness check).
 * Every call is idempotent: the lease recognises its holder by workflow id + run id.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { WithStartWorkflowOperation, WorkflowIdConflictPolicy, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Logger } from 'pino';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../config/search-attributes';
import { leaseWorkflowId, type LeaseAnswer, type LeaseRelease, type LeaseRequest, type LeaseView } from '../schemas/lease';

export interface LeaseDeps {
  client: Client;
  taskQueue: string;
  log: Logger;
  /** The lease workflow's liveness check and idle end (tests shorten them). */
  livenessCheckMs?: number;
  idleEndMs?: number;
}

/** Who started a workflow, from its first history event: a schedule, a parent workflow, or the client's identity. */
export async function startedByOf(client: Client, workflowId: string, runId: string): Promise<string> {
  const res = await client.workflowService.getWorkflowExecutionHistory({ namespace: client.options.namespace, execution: { workflowId, runId }, maximumPageSize: 1 });
  const started = res.history?.events?.[0]?.workflowExecutionStartedEventAttributes;
  if (!started) return 'unknown';
  const scheduledBy = started.searchAttributes?.indexedFields?.TemporalScheduledById?.data;
  if (scheduledBy) {
    try {
      return `schedule ${JSON.parse(Buffer.from(scheduledBy).toString('utf8')) as string}`;
    } catch {
      // fall through to the identity
    }
  }
  if (started.parentWorkflowExecution?.workflowId) return `workflow ${started.parentWorkflowExecution.workflowId}`;
  return started.identity || 'unknown';
}

export function createLeaseActivities({ client, taskQueue, log, livenessCheckMs, idleEndMs }: LeaseDeps) {
  return {
    /** Ask for the lease of `service` for the calling workflow (granted, refused with the holder, or queued). */
    async acquireLease(input: Omit<LeaseRequest, 'holder'> & { runbook: string }): Promise<LeaseAnswer> {
      const { workflowExecution } = Context.current().info;
      if (!workflowExecution) throw ApplicationFailure.nonRetryable('acquireLease must be called from a workflow', 'NotFromWorkflow');
      const startedBy = await startedByOf(client, workflowExecution.workflowId, workflowExecution.runId);
      const req: LeaseRequest = {
        service: input.service,
        holder: { workflowId: workflowExecution.workflowId, runId: workflowExecution.runId, runbook: input.runbook, startedBy },
        wait: input.wait,
        waitTimeoutMs: input.waitTimeoutMs,
        maxHoldMs: input.maxHoldMs,
      };
      const answer = await client.workflow.executeUpdateWithStart<() => Promise<LeaseView>, LeaseAnswer, [LeaseRequest]>('acquire', {
        args: [req],
        startWorkflowOperation: new WithStartWorkflowOperation('serviceLease', {
          workflowId: leaseWorkflowId(input.service, taskQueue),
          taskQueue,
          args: [{ service: input.service, ...(livenessCheckMs ? { livenessCheckMs } : {}), ...(idleEndMs ? { idleEndMs } : {}) }] as never,
          workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
          typedSearchAttributes: [
            { key: SERVICE_ATTR, value: input.service },
            { key: RUNBOOK_ATTR, value: 'serviceLease' },
          ],
          staticSummary: `lease of ${input.service}`,
        }),
      });
      log.info({ service: input.service, workflowId: req.holder.workflowId, granted: answer.granted, holder: answer.holder.workflowId }, 'lease requested');
      return answer;
    },

    /** Give the lease back (or leave the queue). Already released, or no lease workflow: nothing to do. */
    async releaseLease(input: LeaseRelease & { service: string }): Promise<{ released: boolean; left: boolean }> {
      try {
        return await client.workflow.getHandle(leaseWorkflowId(input.service, taskQueue)).executeUpdate<{ released: boolean; left: boolean }, [LeaseRelease]>('release', {
          args: [{ workflowId: input.workflowId, runId: input.runId, reason: input.reason }],
        });
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return { released: false, left: false };
        throw err;
      }
    },

    /**
     * The lease of `service` now, and (when held) a promise to tell the calling workflow by the
     * `leaseChanged` signal when it is freed. No lease workflow: free.
     */
    async watchLease(service: string): Promise<LeaseView> {
      const caller = Context.current().info.workflowExecution?.workflowId;
      if (!caller) throw ApplicationFailure.nonRetryable('watchLease must be called from a workflow', 'NotFromWorkflow');
      try {
        return await client.workflow.getHandle(leaseWorkflowId(service, taskQueue)).executeUpdate<LeaseView, [{ workflowId: string }]>('watch', { args: [{ workflowId: caller }] });
      } catch (err) {
        // No lease workflow, or it just ended (idle): nobody holds the service.
        if (err instanceof WorkflowNotFoundError || (err instanceof Error && /completed|not found/i.test(err.message))) return { service, queue: [], recent: [], grants: 0, livenessCheckMs: 0 };
        throw err;
      }
    },

    /** Does this workflow run still run? (A lease's liveness check of its holder.) */
    async workflowRunning(input: { workflowId: string; runId: string }): Promise<{ running: boolean; status: string }> {
      try {
        const d = await client.workflow.getHandle(input.workflowId, input.runId).describe();
        return { running: d.status.name === 'RUNNING', status: d.status.name };
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return { running: false, status: 'NOT_FOUND' };
        throw err;
      }
    },
  };
}

export type LeaseActivities = ReturnType<typeof createLeaseActivities>;
