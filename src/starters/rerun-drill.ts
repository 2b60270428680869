/**
 * npm run rerun-drill -- <workflowId>: re-run a past incident as a new recovery drill.
 *
 * Reads the past run's history through the client (its first event holds the input, decrypted
 * with the payload codec), rebuilds the drill input (a past drill: the same input; a past
 * restartService / superviseService recovery: a kill-container drill on that service), starts
 * the new drill, waits, and prints the two reports side by side (RTO, RPO, steps, verdict).
 *
 *   npm run rerun-drill -- drill/delete-data-folder/2026-11-30T08-00-00-000Z
 *   npm run rerun-drill -- restart/web/2026-11-30T10-00-00-000Z --health-url http://127.0.0.1:8081/health
 */
import { fileURLToPath } from 'node:url';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import { Command } from 'commander';
import { RPO_TARGET_MS, RTO_TARGET_MS } from '../config/defaults';
import { loadConfig } from '../config/env';
import type { RecoveryDrillInput } from '../schemas/recovery-drill';
import type { DrillReport } from '../workflows/recovery-drill';
import type { RestartReport } from '../workflows/restart-service';
import { connectClient } from '../workers/clients';
import { startRunbook, validateInput } from '../runbooks/registry';

/** The figures compared side by side, whatever kind of run they come from. */
export interface ComparableReport {
  workflowId: string;
  workflowType: string;
  scenario: string;
  outcome: string;
  verdict: string;
  rtoMs?: number;
  rtoVerdict: string;
  rpoMs?: number;
  rpoVerdict: string;
  steps: Array<{ name: string; ok: boolean }>;
  /** Event -> ms after the fault (or after the request, for a restart). */
  timeline: Array<{ event: string; offsetMs: number }>;
}

export interface PastRun {
  workflowId: string;
  workflowType: string;
  input: Record<string, unknown>;
  /** The decoded result, or the report carried by the failure's details; undefined while running. */
  result?: unknown;
  error?: string;
}

/** The past run's type and input from its history, and its result (decoded by the client's codec). */
export async function readPastRun(client: Client, workflowId: string): Promise<PastRun> {
  const handle = client.workflow.getHandle(workflowId);
  const history = await handle.fetchHistory();
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  if (!started) throw new Error(`${workflowId}: the history has no start event`);
  const converter = client.options.loadedDataConverter;
  const input = await decodeFromPayloadsAtIndex<Record<string, unknown>>(converter, 0, started.input?.payloads);
  const past: PastRun = { workflowId, workflowType: started.workflowType?.name ?? '', input };
  const { status } = await handle.describe();
  if (status.name === 'RUNNING') return past;
  try {
    past.result = await handle.result();
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? err.cause : undefined;
    past.error = cause?.message ?? (err as Error).message;
    if (cause instanceof ApplicationFailure && cause.details?.[0]) past.result = cause.details[0];
  }
  return past;
}

/** The drill input that rehearses a past run. */
export function drillInputFor(past: PastRun, opts: { healthUrl?: string; demoPort?: number } = {}): RecoveryDrillInput {
  const note = `re-run of ${past.workflowId}`;
  if (past.workflowType === 'recoveryDrill') {
    return { ...(past.input as RecoveryDrillInput), note };
  }
  if (past.workflowType === 'restartService' || past.workflowType === 'superviseService') {
    const i = past.input as { service: string; healthUrl?: string; healthTimeoutMs?: number; stopTimeoutSec?: number; restart?: { healthTimeoutMs?: number; stopTimeoutSec?: number } };
    const healthUrl = opts.healthUrl ?? i.healthUrl;
    if (!healthUrl && opts.demoPort === undefined) throw new Error(`${past.workflowId} has no healthUrl: pass --health-url`);
    const healthTimeoutMs = i.healthTimeoutMs ?? i.restart?.healthTimeoutMs;
    const stopTimeoutSec = i.stopTimeoutSec ?? i.restart?.stopTimeoutSec;
    return {
      scenario: 'kill-container',
      target: {
        service: i.service,
        ...(healthUrl ? { healthUrl } : {}),
        ...(opts.demoPort !== undefined ? { demoPort: opts.demoPort } : {}),
        ...(healthTimeoutMs !== undefined ? { healthTimeoutMs } : {}),
        ...(stopTimeoutSec !== undefined ? { stopTimeoutSec } : {}),
      },
      note,
    };
  }
  throw new Error(`${past.workflowId} is a ${past.workflowType}: only recoveryDrill, restartService and superviseService runs can be re-run`);
}

/** Normalise a drill report or a restart report for the side-by-side view. */
export function comparable(workflowId: string, workflowType: string, result: unknown, error?: string): ComparableReport {
  if (workflowType === 'recoveryDrill' && result && typeof result === 'object' && 'timeline' in result) {
    const r = result as DrillReport;
    const fault = r.timeline.find((e) => e.event === 'fault injected')?.at ?? r.startedAt;
    return {
      workflowId,
      workflowType,
      scenario: r.scenario,
      outcome: r.outcome,
      verdict: r.verdict,
      rtoMs: r.rto.ms,
      rtoVerdict: r.rto.verdict,
      rpoMs: r.rpo.ms,
      rpoVerdict: r.rpo.verdict,
      steps: r.steps.map((s) => ({ name: s.name, ok: s.ok })),
      timeline: r.timeline.map((e) => ({ event: e.event, offsetMs: e.at - fault })),
    };
  }
  if (workflowType === 'restartService' && result && typeof result === 'object' && 'requestedAt' in result) {
    const r = result as RestartReport;
    const rto = r.durationMs;
    return {
      workflowId,
      workflowType,
      scenario: 'restart (real recovery)',
      outcome: r.healthy ? 'recovered' : 'failed',
      verdict: r.healthy && rto !== undefined && rto <= RTO_TARGET_MS ? 'pass' : 'fail',
      rtoMs: rto,
      rtoVerdict: rto === undefined ? 'fail' : rto <= RTO_TARGET_MS ? 'pass' : 'fail',
      rpoVerdict: 'n/a',
      steps: [
        { name: 'restart', ok: r.containerStartedAt !== undefined },
        { name: 'health verified', ok: r.healthy === true },
      ],
      timeline: [
        { event: 'recovery started', offsetMs: 0 },
        ...(r.containerStartedAt ? [{ event: 'container started', offsetMs: r.containerStartedAt - r.requestedAt }] : []),
        ...(r.healthyAt ? [{ event: 'service healthy', offsetMs: r.healthyAt - r.requestedAt }] : []),
      ],
    };
  }
  return { workflowId, workflowType, scenario: '?', outcome: error ? `failed: ${error}` : 'no report', verdict: 'fail', rtoVerdict: 'n/a', rpoVerdict: 'n/a', steps: [], timeline: [] };
}

const ms = (v?: number) => (v === undefined ? 'n/a' : `${(v / 1000).toFixed(2)} s`);

/** Two reports as a plain-text table, column per run. */
export function sideBySide(a: ComparableReport, b: ComparableReport): string {
  const rows: Array<[string, string, string]> = [
    ['workflow', a.workflowId, b.workflowId],
    ['type', a.workflowType, b.workflowType],
    ['scenario', a.scenario, b.scenario],
    ['outcome', a.outcome, b.outcome],
    ['verdict', a.verdict.toUpperCase(), b.verdict.toUpperCase()],
    [`RTO (target ${ms(RTO_TARGET_MS)})`, `${ms(a.rtoMs)} ${a.rtoVerdict}`, `${ms(b.rtoMs)} ${b.rtoVerdict}`],
    [`RPO (target ${ms(RPO_TARGET_MS)})`, `${ms(a.rpoMs)} ${a.rpoVerdict}`, `${ms(b.rpoMs)} ${b.rpoVerdict}`],
    ['steps ok', `${a.steps.filter((s) => s.ok).length}/${a.steps.length}`, `${b.steps.filter((s) => s.ok).length}/${b.steps.length}`],
  ];
  const events = [...new Set([...a.timeline, ...b.timeline].map((e) => e.event))];
  for (const ev of events) {
    const at = (r: ComparableReport) => {
      const e = r.timeline.find((x) => x.event === ev);
      return e ? `${e.offsetMs >= 0 ? '+' : ''}${(e.offsetMs / 1000).toFixed(2)} s` : '-';
    };
    rows.push([`  ${ev}`, at(a), at(b)]);
  }
  const steps = [...new Set([...a.steps, ...b.steps].map((s) => s.name))];
  for (const st of steps) {
    const ok = (r: ComparableReport) => {
      const s = r.steps.find((x) => x.name === st);
      return s ? (s.ok ? 'ok' : 'FAILED') : '-';
    };
    rows.push([`  step: ${st}`, ok(a), ok(b)]);
  }
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), i === 0 ? 0 : 'past'.length));
  const line = (r: [string, string, string]) => `${r[0].padEnd(w[0]!)} | ${r[1].padEnd(w[1]!)} | ${r[2]}`;
  return [line(['', 'past', 're-run']), `${'-'.repeat(w[0]!)}-+-${'-'.repeat(w[1]!)}-+-${'-'.repeat(w[2]!)}`, ...rows.map(line)].join('\n');
}

export interface RerunResult {
  past: ComparableReport;
  rerun: ComparableReport;
  rerunWorkflowId: string;
  table: string;
}

/** Rebuild, start, wait, compare. A failed re-run is reported, not thrown. */
export async function rerunDrill(client: Client, workflowId: string, opts: { taskQueue: string; healthUrl?: string; demoPort?: number; rerunWorkflowId?: string }): Promise<RerunResult> {
  const pastRun = await readPastRun(client, workflowId);
  const input = drillInputFor(pastRun, opts);
  validateInput('recoveryDrill', input); // a clear message before anything starts
  const id = opts.rerunWorkflowId ?? `drill/rerun/${new Date().toISOString().replace(/[:.]/g, '-')}`;
  const handle = await startRunbook(client, 'recoveryDrill', input, { taskQueue: opts.taskQueue, workflowId: id });
  let result: unknown;
  let error: string | undefined;
  try {
    result = await handle.result();
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? err.cause : undefined;
    error = cause?.message ?? (err as Error).message;
    if (cause instanceof ApplicationFailure && cause.details?.[0]) result = cause.details[0];
  }
  const past = comparable(workflowId, pastRun.workflowType, pastRun.result, pastRun.error);
  const rerun = comparable(id, 'recoveryDrill', result, error);
  return { past, rerun, rerunWorkflowId: id, table: sideBySide(past, rerun) };
}

async function main(): Promise<void> {
  const program = new Command()
    .name('rerun-drill')
    .description('re-run a past drill or recovery as a new drill and compare the reports')
    .argument('<workflowId>', 'a past recoveryDrill, restartService or superviseService run')
    .option('--health-url <url>', 'health endpoint (for a past restart without one)')
    .option('--demo-port <port>', 'rehearse on a throwaway demo container on this 127.0.0.1 port instead of the real service', (v) => Number(v))
    .option('--id <workflowId>', 'workflow id of the re-run')
    .parse(process.argv);
  const opts = program.opts<{ healthUrl?: string; demoPort?: number; id?: string }>();
  const config = loadConfig();
  const client = await connectClient(config);
  try {
    const r = await rerunDrill(client, program.args[0]!, { taskQueue: config.DURABLE_OPS_TASK_QUEUE, ...opts, ...(opts.id ? { rerunWorkflowId: opts.id } : {}) });
    process.stdout.write(`${r.table}\n`);
    if (r.rerun.verdict !== 'pass') process.exitCode = 1;
  } finally {
    await client.connection.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof Error && err.name === 'InvalidInputError' ? 2 : 1);
  });
}
