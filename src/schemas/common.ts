/**
 * Shared pieces of the runbook input schemas, and the one function that turns a zod
 * failure into a non-retryable ApplicationFailure naming the field.
 *
 * Pure: imported by workflows, starters and tests alike.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';

export const INVALID_INPUT = 'InvalidInput';

/** A Docker container name, as the engine accepts it. */
export const containerName = z
  .string()
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/, 'must be a Docker container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)');

/** An http(s) URL with a host. */
export const httpUrl = z
  .string()
  .refine((v) => /^https?:\/\/[^/\s:]+(:\d{1,5})?(\/\S*)?$/.test(v) && URL.canParse(v), 'must be an http:// or https:// URL');

export const durationMs = z.number().int('must be a whole number of milliseconds').min(0, 'must be >= 0');

/** Format zod issues as "field: problem" lines. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.flatMap((issue) => {
    const prefix = issue.path.length > 0 ? `${issue.path.join('.')}.` : '';
    if (issue.code === 'unrecognized_keys') return issue.keys.map((k) => `${prefix}${k}: unknown field`);
    const field = issue.path.length > 0 ? issue.path.join('.') : '(input)';
    return [`${field}: ${issue.message}`];
  });
}

/**
 * Validate a runbook input. Returns the parsed value (defaults filled) or throws a
 * non-retryable ApplicationFailure of type InvalidInput whose message names each bad field.
 */
export function parseInput<S extends z.ZodType>(runbook: string, schema: S, raw: unknown): z.output<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const problems = describeIssues(result.error);
  throw ApplicationFailure.create({
    type: INVALID_INPUT,
    nonRetryable: true,
    message: `invalid ${runbook} input: ${problems.join('; ')}`,
    details: [{ problems }],
  });
}
