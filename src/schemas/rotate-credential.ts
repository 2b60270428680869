/** Input of the rotateCredential runbook: one credential, everywhere it lives. */
import { z } from 'zod';
import { leaseFields } from './lease';
import { ROTATION_PERIOD_DAYS } from '../config/defaults';
import { containerName, durationMs } from './common';

/** KV v2 path (under the `secret/` mount) the worker's policy covers: durable-ops/<name>. */
export const vaultPath = z
  .string()
  .regex(/^durable-ops\/[a-z0-9][a-z0-9_/-]{0,100}$/, 'must be a KV path under durable-ops/ (e.g. durable-ops/app-db)');

const identifier = z.string().regex(/^[a-z_][a-z0-9_]{0,40}$/, 'must be a lower-case SQL identifier');

export const postgresTarget = z.strictObject({
  kind: z.literal('postgres-role'),
  /** Two login roles `<app>_a` / `<app>_b` with the same grants: rotation sets the one not in use. */
  app: identifier,
  database: identifier.default('app'),
});

export const dockerSecretTarget = z.strictObject({
  kind: z.literal('docker-secret'),
  /** Swarm secret base name: versions are `<name>_v<N>`. */
  secretName: z.string().regex(/^[a-z][a-z0-9_]{0,60}$/, 'must be a lower-case secret name'),
  /** Swarm services that consume it, updated one task at a time. */
  services: z.array(containerName).min(1, 'name at least one consuming service').max(20),
  /** Path inside the containers (/run/secrets/<target>); defaults to the secret name. */
  targetPath: z.string().regex(/^[a-zA-Z0-9_.-]+$/, 'must be a file name').optional(),
  /**
   * Swarm update order. stop-first (default) suits host-networked replicas, whose new task needs the
   * port the old one holds: the other replicas serve meanwhile (parallelism 1). start-first suits
   * services behind the routing mesh, with no gap even for one replica.
   */
  updateOrder: z.enum(['stop-first', 'start-first']).default('stop-first'),
  /** Pause between tasks (seed: 10 s). */
  updateDelayMs: durationMs.max(600_000, 'must be <= 600000').default(10_000),
});

export const vaultOnlyTarget = z.strictObject({ kind: z.literal('vault-only') });

export const rotateCredentialInputSchema = z.strictObject({
  /** A stable name for the credential (schedule ids and alerts use it). */
  credentialId: z.string().regex(/^[a-z0-9][a-z0-9-]{0,60}$/, 'must be a lower-case slug'),
  vaultPath,
  target: z.discriminatedUnion('kind', [postgresTarget, dockerSecretTarget, vaultOnlyTarget], {
    error: (issue) => (issue.code === 'invalid_union' ? 'unknown target kind: one of postgres-role, docker-secret, vault-only' : undefined),
  }),
  /** Length of the generated secret. */
  length: z.number().int().min(24, 'must be >= 24').max(128, 'must be <= 128').default(40),
  /** How long to wait for consumers to leave the old credential before revoking it (then alert instead of cutting them). */
  gracePeriodMs: durationMs.max(24 * 3_600_000, 'must be <= 24 h').default(5 * 60_000),
  /** Return the plan; change nothing. */
  dryRun: z.boolean().default(false),
  /** For the schedule's note: the rotation period this credential is on. */
  periodDays: z.number().int().min(1).max(3_650).default(ROTATION_PERIOD_DAYS),
  ...leaseFields,
});

export type RotateCredentialInput = z.input<typeof rotateCredentialInputSchema>;
export type RotateCredentialParams = z.output<typeof rotateCredentialInputSchema>;
export type RotationTarget = RotateCredentialParams['target'];
