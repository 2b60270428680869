/** Input of the startDatabase runbook: start a stopped instance we created and wait until it answers. */
import { z } from 'zod';
import { durationMs } from './common';
import { instanceId } from './database';

export const startDatabaseInputSchema = z.strictObject({
  /** An instance created by createInstance (never 'main': the project cluster is the stack's). */
  instanceId: instanceId.refine((v) => v !== 'main', "must not be 'main' (the project cluster is started by the stack)"),
  /** How long to wait for it to accept connections. */
  readyTimeoutMs: durationMs.min(1_000, 'must be >= 1000').max(600_000, 'must be <= 600000').default(60_000),
});

export type StartDatabaseInput = z.input<typeof startDatabaseInputSchema>;
export type StartDatabaseParams = z.output<typeof startDatabaseInputSchema>;
