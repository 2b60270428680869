/**
 * npm run schedules: create or update, idempotently, one Temporal Schedule per configured
 * credential (config/rotations.json, or DURABLE_OPS_ROTATIONS_CONFIG): rotateCredential every
 * `periodDays` (seed 90), overlap SKIP, an explicit catch-up window, pause on failure, a note.
 *   npm run schedules                      install / update
 *   npm run schedules -- --trigger app-db  rotate one now (as the schedule would)
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import { Command } from 'commander';
import { z } from 'zod';
import { loadConfig } from '../config/env';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../config/search-attributes';
import { describeIssues } from '../schemas/common';
import { rotateCredentialInputSchema, type RotateCredentialParams } from '../schemas/rotate-credential';
import { connectClient } from '../workers/clients';

export const DEFAULT_ROTATIONS_FILE = fileURLToPath(new URL('../../config/rotations.json', import.meta.url));
/** Missed runs within this window are still taken after an outage (then SKIP applies). */
export const ROTATION_CATCHUP_WINDOW = '1 day';

export const rotationScheduleId = (credentialId: string) => `rotate/${credentialId}`;

const fileSchema = z.strictObject({ $comment: z.string().optional(), rotations: z.array(z.unknown()) });

/** Read and validate the rotations file; every entry is a rotateCredential input. */
export function loadRotations(file: string): RotateCredentialParams[] {
  const raw = fileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  const problems: string[] = [];
  const parsed = raw.rotations.flatMap((r, i) => {
    const p = rotateCredentialInputSchema.safeParse(r);
    if (!p.success) {
      problems.push(...describeIssues(p.error).map((d) => `rotations.${i}.${d}`));
      return [];
    }
    return [p.data];
  });
  const ids = parsed.map((p) => p.credentialId);
  ids.forEach((id, i) => ids.indexOf(id) !== i && problems.push(`rotations.${i}.credentialId: "${id}" appears twice`));
  if (problems.length > 0) throw new Error(`invalid ${file}:\n  ${problems.join('\n  ')}`);
  return parsed;
}

export function scheduleOptions(r: RotateCredentialParams, taskQueue: string): ScheduleOptions {
  return {
    scheduleId: rotationScheduleId(r.credentialId),
    spec: { intervals: [{ every: `${r.periodDays} days` }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'rotateCredential',
      workflowId: `rotate/${r.credentialId}/scheduled`,
      taskQueue,
      args: [r],
      typedSearchAttributes: [
        { key: SERVICE_ATTR, value: r.credentialId },
        { key: RUNBOOK_ATTR, value: 'rotateCredential' },
      ],
      staticSummary: `scheduled rotation of ${r.credentialId} (${r.target.kind})`,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: ROTATION_CATCHUP_WINDOW, pauseOnFailure: true },
    state: { note: `rotate ${r.credentialId} every ${r.periodDays} days (managed by npm run schedules)` },
  };
}

/** Create each schedule, or update it to the configured one. Returns what was done per id. */
export async function installSchedules(client: Client, rotations: RotateCredentialParams[], taskQueue: string): Promise<Record<string, 'created' | 'updated'>> {
  const done: Record<string, 'created' | 'updated'> = {};
  for (const r of rotations) {
    const opts = scheduleOptions(r, taskQueue);
    try {
      await client.schedule.create(opts);
      done[opts.scheduleId] = 'created';
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      await client.schedule.getHandle(opts.scheduleId).update((prev) => ({ ...prev, spec: opts.spec, action: opts.action, policies: opts.policies }));
      done[opts.scheduleId] = 'updated';
    }
  }
  return done;
}

async function main(): Promise<void> {
  const program = new Command()
    .name('schedules')
    .option('-c, --config <file>', 'rotations file', process.env.DURABLE_OPS_ROTATIONS_CONFIG ?? DEFAULT_ROTATIONS_FILE)
    .option('-t, --trigger <credentialId>', 'run one rotation now, as its schedule would')
    .parse(process.argv);
  const opts = program.opts<{ config: string; trigger?: string }>();
  const config = loadConfig();
  const client = await connectClient(config);
  try {
    const rotations = loadRotations(opts.config);
    const done = await installSchedules(client, rotations, config.DURABLE_OPS_TASK_QUEUE);
    for (const [id, what] of Object.entries(done)) process.stdout.write(`${what} schedule ${id}\n`);
    if (opts.trigger) {
      await client.schedule.getHandle(rotationScheduleId(opts.trigger)).trigger(ScheduleOverlapPolicy.SKIP);
      process.stdout.write(`triggered ${rotationScheduleId(opts.trigger)}\n`);
    }
  } finally {
    await client.connection.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
