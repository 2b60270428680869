/**
 * Input of the startDatabase runbook: start a stopped instance we created, or the project cluster
 * 'main' (the way the stack starts it: recorded, never initdb'd over a lost data folder), and
 * wait until it answers.
 */
import { z } from 'zod';
import { durationMs } from './common';
import { instanceId } from './database';

export const startDatabaseInputSchema = z.strictObject({
  /** An instance created by createInstance, or 'main' (the project cluster, started through the stack). */
  instanceId,
  /** How long to wait for it to accept connections. */
  readyTimeoutMs: durationMs.min(1_000, 'must be >= 1000').max(600_000, 'must be <= 600000').default(60_000),
});

export type StartDatabaseInput = z.input<typeof startDatabaseInputSchema>;
export type StartDatabaseParams = z.output<typeof startDatabaseInputSchema>;
