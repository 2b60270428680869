/**
 * The approval fields every capacity-changing runbook accepts, and the shape of an operator's
 * decision (the `approve` / `reject` updates). Pure: used by workflows, starters and tests.
 */
import { z } from 'zod';
import { APPROVAL_TIMEOUT_MS } from '../config/defaults';
import { durationMs } from './common';

/** Spread into a runbook's input schema. */
export const approvalFields = {
  /** "required": compute the plan, expose it (`plan` query) and wait for `approve` or `reject`. */
  approval: z.enum(['none', 'required'], { error: 'must be "none" or "required"' }).default('none'),
  /** How long a required approval waits before the run ends (nothing changed). */
  approvalTimeoutMs: durationMs.min(1_000, 'must be >= 1000').max(7 * 24 * 3_600_000, 'must be <= 7 days').default(APPROVAL_TIMEOUT_MS),
  /** Return the plan; change nothing. */
  dryRun: z.boolean().default(false),
};

/** An operator's decision: who and why are required. */
export const decisionSchema = z.strictObject({
  by: z.string().trim().min(1, 'say who decides').max(100),
  reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(500),
});

export type Decision = z.output<typeof decisionSchema>;
