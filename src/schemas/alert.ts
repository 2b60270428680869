/** An alert as runbooks raise it. Never carries secret values: references only. */
import { z } from 'zod';
import { ALERT_SEVERITIES } from '../config/defaults';

export const alertSchema = z.strictObject({
  severity: z.enum(ALERT_SEVERITIES),
  service: z.string().min(1),
  summary: z.string().min(1).max(200),
  details: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  runbook: z.string().optional(),
  workflowId: z.string().optional(),
  /** service + rule; lets receivers group repeats. */
  dedupKey: z.string().optional(),
});

export type Alert = z.input<typeof alertSchema>;
