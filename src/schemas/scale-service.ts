/**
 * Input of the scaleService runbook (horizontal scaling behind HAProxy and Nginx).
 * Replica n of a service listens on 127.0.0.1:basePort+n and is the load-balancer server `<service>-<n>`.
 * Pure: used by the workflow, the CLI, the autoscaler and the tests.
 */
import { z } from 'zod';
import * as seed from '../config/defaults';
import { approvalFields } from './approval';
import { leaseFields } from './lease';
import { containerName, durationMs } from './common';

/** An HAProxy backend / Nginx upstream name. */
export const backendName = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, 'must be a backend name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)');

export const scaleServiceInputSchema = z
  .strictObject({
    /** Swarm mode: the Swarm service; containers mode: replicas are the containers `<service>-<n>`. */
    service: containerName,
    /** The target number of replicas. */
    replicas: z.number().int('must be a whole number').min(0, 'must be >= 0').max(seed.SCALE_MAX_REPLICAS, `must be <= ${seed.SCALE_MAX_REPLICAS}`),
    mode: z.enum(['swarm', 'containers'], { error: 'must be "swarm" or "containers"' }).default('swarm'),
    /** HAProxy backend (and Nginx upstream) of the service; default: the service name. */
    backend: backendName.optional(),
    /** Replica n listens on 127.0.0.1:basePort+n. */
    basePort: z.number().int('must be a whole number').min(1024, 'must be >= 1024').max(65_000, 'must be <= 65000'),
    /** Replicas added or removed per step (seed: update_config parallelism 1). */
    step: z.number().int('must be a whole number').min(1, 'must be >= 1').max(seed.SCALE_MAX_REPLICAS).default(seed.SCALE_STEP),
    /** Pause between steps (seed: update_config delay 10 s). */
    stepDelayMs: durationMs.max(3_600_000, 'must be <= 1 hour').default(seed.SCALE_STEP_DELAY_MS),
    /** A new replica must be healthy (Docker health + HTTP probe + HAProxy UP) within this long, or the run rolls back. */
    healthTimeoutMs: durationMs.min(1_000, 'must be >= 1000').max(3_600_000, 'must be <= 1 hour').default(seed.SCALE_HEALTH_TIMEOUT_MS),
    /** A drained replica's current sessions must reach 0 within this long. */
    drainTimeoutMs: durationMs.max(3_600_000, 'must be <= 1 hour').default(seed.SCALE_DRAIN_TIMEOUT_MS),
    /** When a drain times out (an alert goes out either way): "force" cuts the remaining sessions and goes on; "rollback" restores the starting set. */
    onDrainTimeout: z.enum(['force', 'rollback'], { error: 'must be "force" or "rollback"' }).default('force'),
    /** Load-balancer weight of each replica (HAProxy `weight`, Nginx `weight`). */
    weight: z.number().int('must be a whole number').min(1, 'must be >= 1').max(256, 'must be <= 256').default(seed.LB_SERVER_WEIGHT),
    ...approvalFields,
    ...leaseFields,
  })
  .transform((i) => ({ ...i, backend: i.backend ?? i.service }));

export type ScaleServiceInput = z.input<typeof scaleServiceInputSchema>;
export type ScaleServiceParams = z.output<typeof scaleServiceInputSchema>;

/** The load-balancer server name of replica n (also the container name in containers mode). */
export const replicaName = (service: string, n: number) => `${service}-${n}`;
