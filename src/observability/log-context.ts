/**
 * Log correlation: inside an activity, every log line of a project logger (src/config/logger.ts
 * mixes this in) carries the workflow id, run id and activity type, plus the trace and span id
 * when the activity is traced, with no change to the activities themselves. Outside an activity
 * it adds nothing. Only ids: never inputs or results.
 */
import { trace } from '@opentelemetry/api';
import { asyncLocalStorage } from '@temporalio/activity';

export interface ActivityLogFields {
  workflowId?: string;
  runId?: string;
  workflowType?: string;
  activity?: string;
  activityId?: string;
  attempt?: number;
  traceId?: string;
  spanId?: string;
}

export function activityLogFields(): ActivityLogFields {
  const info = asyncLocalStorage.getStore()?.info;
  if (!info) return {};
  const span = trace.getActiveSpan()?.spanContext();
  return {
    workflowId: info.workflowExecution?.workflowId,
    runId: info.workflowExecution?.runId,
    workflowType: info.workflowType,
    activity: info.activityType,
    activityId: info.activityId,
    attempt: info.attempt,
    ...(span ? { traceId: span.traceId, spanId: span.spanId } : {}),
  };
}
