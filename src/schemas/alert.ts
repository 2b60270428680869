/** Alerts as runbooks raise them, notifications as channels deliver them, and dead letters. Never secret values: references only. */
import { z } from 'zod';
import { ALERT_SEVERITIES } from '../config/defaults';

export const alertSchema = z.strictObject({
  severity: z.enum(ALERT_SEVERITIES),
  service: z.string().min(1),
  summary: z.string().min(1).max(200),
  details: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  runbook: z.string().optional(),
  workflowId: z.string().optional(),
  /** service + rule (e.g. "web/restart-gave-up"): repeats with the same key are grouped. */
  dedupKey: z.string().min(1).max(200).optional(),
});

export type Alert = z.input<typeof alertSchema>;
export type Severity = (typeof ALERT_SEVERITIES)[number];

export const dedupKeyOf = (a: Alert) => a.dedupKey ?? `${a.service}/${a.summary}`;

/** One message to send: what a channel receives. */
export interface Notification {
  /** Unique and stable per notification: receivers use it to drop a repeat (Idempotency-Key, Message-ID). */
  id: string;
  status: 'firing' | 'resolved';
  dedupKey: string;
  alert: Alert;
  /** How many times the alert was raised since the previous notification (grouped repeats). */
  count: number;
  firstAt: number;
  /** Channels that failed before this one, and why (filled in by the fallback chain). */
  fallbackFrom?: Array<{ channel: string; error: string }>;
}

export interface ChannelPolicy {
  name: string;
  type: string;
  timeoutMs: number;
  maxAttempts: number;
  initialIntervalMs: number;
  maxIntervalMs: number;
}

export interface DeliveryReceipt {
  channel: string;
  type: string;
  id: string;
  status?: number;
}

export interface DeadLetter {
  id: string;
  kind: 'alert' | 'workflow';
  at: number;
  error: string;
  attempts: number;
  /** What to re-send or re-run. An alert carries its notification; a runbook step its workflow type and input reference. */
  notification?: Notification;
  workflow?: { workflowType: string; input: unknown; originalWorkflowId?: string };
  service?: string;
  replays: number;
}
