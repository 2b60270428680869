/**
 * What every runbook does first: validate its input with its schema (bad input fails at once,
 * non-retryably, before any side effect) and tag itself with the Service and Runbook search
 * attributes; and how it keeps its progress visible in the UI (current details).
 */
import { setCurrentDetails, upsertSearchAttributes } from '@temporalio/workflow';
import type { z } from 'zod';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../../config/search-attributes';
import { parseInput } from '../../schemas/common';

export function beginRunbook<S extends z.ZodType>(runbook: string, schema: S, raw: unknown, serviceOf: (input: z.output<S>) => string): z.output<S> {
  const input = parseInput(runbook, schema, raw);
  upsertSearchAttributes([
    { key: SERVICE_ATTR, value: serviceOf(input) },
    { key: RUNBOOK_ATTR, value: runbook },
  ]);
  return input;
}

/** Render a small status table as the workflow's current details (shown in the Temporal UI). */
export function showDetails(title: string, fields: Record<string, string | number | boolean | undefined>): void {
  const rows = Object.entries(fields)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `| ${k} | ${String(v).replace(/\|/g, '\\|')} |`);
  setCurrentDetails([`**${title}**`, '', '| field | value |', '|---|---|', ...rows].join('\n'));
}

/** ISO time for humans, or undefined. */
export function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}
