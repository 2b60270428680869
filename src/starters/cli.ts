/**
 * durable-ops CLI (thin: parse, validate with the runbook's schema, call the Temporal client).
 *
 *   npm run ops -- start restartService --input '{"service":"web","reason":"deploy"}' --wait
 *   npm run ops -- start superviseService --input @examples/superviseService.json
 *   npm run ops -- restart web --reason "stuck" --health-url http://127.0.0.1:8081/health
 *   npm run ops -- signal supervise/web resume --by alice --reason "fixed the config"
 *   npm run ops -- status supervise/web
 *   npm run ops -- result restart/web/2026-...
 *   npm run ops -- reconcile [--dry-run]
 */
import { readFileSync } from 'node:fs';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../config/env';
import { CLI_SERVICE_NAME, createTracing } from '../observability/tracing';
import { connectClient } from '../workers/clients';
import { InvalidInputError, isRunbook, RUNBOOKS, startRunbook, type RunbookName } from '../runbooks/registry';
import { rerunDrill } from './rerun-drill';
import { loadRotations } from '../runbooks/config-files';
import type { ReconcileReport } from '../schemas/reconcile';
import { scheduleFiles } from './schedules';

const SIGNALS = ['resume', 'pause', 'stop'] as const;

function parseJsonArg(value: string): unknown {
  const text = value.startsWith('@') ? readFileSync(value.slice(1), 'utf8') : value;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`not valid JSON: ${(err as Error).message}`);
  }
}

async function withClient<T>(fn: (client: Client, taskQueue: string) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const tracing = createTracing({ serviceName: CLI_SERVICE_NAME, endpoint: config.DURABLE_OPS_OTLP_ENDPOINT });
  const client = await connectClient(config, tracing);
  try {
    return await fn(client, config.DURABLE_OPS_TASK_QUEUE);
  } finally {
    await client.connection.close();
    await tracing.shutdown();
  }
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

async function start(runbook: RunbookName, input: unknown, opts: { wait?: boolean; id?: string }): Promise<void> {
  await withClient(async (client, taskQueue) => {
    const handle = await startRunbook(client, runbook, input, { taskQueue, workflowId: opts.id });
    const config = loadConfig();
    process.stderr.write(`started ${runbook}: ${handle.workflowId}\n  ${config.DURABLE_OPS_TEMPORAL_UI}/namespaces/${config.DURABLE_OPS_NAMESPACE}/workflows/${encodeURIComponent(handle.workflowId)}\n`);
    if (opts.wait) print(await handle.result());
    else print({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId });
  });
}

const program = new Command()
  .name('durable-ops')
  .description('Start, signal and query durable-ops runbooks on Temporal.')
  .showHelpAfterError();

program
  .command('start')
  .description(`start a runbook with one JSON input (${Object.keys(RUNBOOKS).join(', ')})`)
  .argument('<runbook>', 'workflow type', (v) => {
    if (!isRunbook(v)) throw new InvalidArgumentError(`unknown runbook; one of ${Object.keys(RUNBOOKS).join(', ')}`);
    return v;
  })
  .requiredOption('-i, --input <json|@file>', 'the input, as JSON or @path/to/file.json', parseJsonArg)
  .option('--id <workflowId>', 'workflow id (default: derived from the input)')
  .option('-w, --wait', 'wait for the result and print it')
  .action(async (runbook: RunbookName, opts: { input: unknown; wait?: boolean; id?: string }) => start(runbook, opts.input, opts));

program
  .command('supervise')
  .description('start (or attach to) the supervisor of a service')
  .argument('<service>', 'container name')
  .requiredOption('--health-url <url>', 'HTTP endpoint that answers 200 when healthy')
  .option('--max-attempts <n>', 'restart attempts before escalating', (v) => Number(v))
  .action(async (service: string, opts: { healthUrl: string; maxAttempts?: number }) =>
    start('superviseService', { service, healthUrl: opts.healthUrl, ...(opts.maxAttempts !== undefined ? { restart: { maxAttempts: opts.maxAttempts } } : {}) }, {}),
  );

program
  .command('restart')
  .description('restart a service now, verify its health, print the report')
  .argument('<service>', 'container name')
  .option('--reason <text>', 'why (shown in the UI)')
  .option('--health-url <url>', 'HTTP endpoint that must answer 200 after the restart')
  .action(async (service: string, opts: { reason?: string; healthUrl?: string }) => start('restartService', { service, ...opts }, { wait: true }));

program
  .command('signal')
  .description(`send ${SIGNALS.join(' / ')} to a supervisor`)
  .argument('<workflowId>', 'e.g. supervise/web')
  .argument('<signal>', SIGNALS.join(' | '), (v) => {
    if (!(SIGNALS as readonly string[]).includes(v)) throw new InvalidArgumentError(`one of ${SIGNALS.join(', ')}`);
    return v;
  })
  .option('--by <who>', 'operator name', process.env.USER ?? 'operator')
  .option('--reason <text>', 'why')
  .action(async (workflowId: string, signal: string, opts: { by: string; reason?: string }) =>
    withClient(async (client) => {
      await client.workflow.getHandle(workflowId).signal(signal, { by: opts.by, reason: opts.reason });
      process.stderr.write(`sent ${signal} to ${workflowId}\n`);
    }),
  );

program
  .command('scale')
  .description('scale a service horizontally behind HAProxy/Nginx (scaleService); --approval required waits for approve/reject')
  .argument('<service>', 'Swarm service, or the prefix of containers <service>-<n>')
  .argument('<replicas>', 'target number of replicas', (v) => Number(v))
  .requiredOption('--base-port <port>', 'replica n listens on 127.0.0.1:<base-port + n>', (v) => Number(v))
  .option('--mode <mode>', 'swarm | containers', 'swarm')
  .option('--backend <name>', 'HAProxy backend / Nginx upstream (default: the service)')
  .option('--approval <mode>', 'none | required')
  .option('--dry-run', 'print the plan, change nothing')
  .option('--wait', 'wait for the result and print it')
  .action(async (service: string, replicas: number, opts: { basePort: number; mode: string; backend?: string; approval?: string; dryRun?: boolean; wait?: boolean }) =>
    start('scaleService', { service, replicas, basePort: opts.basePort, mode: opts.mode, ...(opts.backend ? { backend: opts.backend } : {}), ...(opts.approval ? { approval: opts.approval } : {}), ...(opts.dryRun ? { dryRun: true } : {}) }, { wait: opts.wait || opts.dryRun }),
  );

program
  .command('plan')
  .description('show the plan of a capacity runbook (plan query): steps, expected duration, approval state')
  .argument('<workflowId>')
  .action(async (workflowId: string) => withClient(async (client) => print(await client.workflow.getHandle(workflowId).query('plan'))));

for (const verdict of ['approve', 'reject'] as const) {
  program
    .command(verdict)
    .description(`${verdict} a plan waiting for approval (the ${verdict} update; who and why are required)`)
    .argument('<workflowId>')
    .requiredOption('--reason <text>', 'why (at least 3 characters)')
    .option('--by <who>', 'operator name', process.env.USER ?? 'operator')
    .action(async (workflowId: string, opts: { by: string; reason: string }) =>
      withClient(async (client) => {
        print(await client.workflow.getHandle(workflowId).executeUpdate(verdict, { args: [{ by: opts.by, reason: opts.reason }] }));
        process.stderr.write(`${verdict === 'approve' ? 'approved' : 'rejected'} ${workflowId}\n`);
      }),
    );
}

program
  .command('status')
  .description('query a runbook for its status')
  .argument('<workflowId>')
  .action(async (workflowId: string) => withClient(async (client) => print(await client.workflow.getHandle(workflowId).query('status'))));

program
  .command('breakers')
  .description("the worker's circuit breakers: state, stats, time to half-open")
  .option('--url <url>', 'the worker metrics endpoint', `http://127.0.0.1:${process.env.DURABLE_OPS_METRICS_PORT ?? 9464}`)
  .action(async (opts: { url: string }) => {
    const res = await fetch(`${opts.url}/breakers`, { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) throw new Error(`${opts.url}/breakers: HTTP ${res.status}`);
    print(await res.json());
  });

program
  .command('result')
  .description('wait for a runbook to finish and print its result')
  .argument('<workflowId>')
  .action(async (workflowId: string) => withClient(async (client) => print(await client.workflow.getHandle(workflowId).result())));

/** The findings of a reconcile run as a plain table (kind, subject, action, detail). */
export function findingsTable(r: ReconcileReport): string {
  const rows = r.findings.map((f) => [f.kind, f.subject, f.error ? `${f.action} (failed: ${f.error})` : f.action, f.detail]);
  const head = ['kind', 'subject', 'action', 'detail'];
  const width = head.map((h, i) => Math.min(60, Math.max(h.length, ...rows.map((row) => row[i]!.length))));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(width[i]!))).join('  ');
  const c = r.counts;
  return [
    ...(rows.length ? [line(head), line(width.map((w) => '-'.repeat(w))), ...rows.map(line)] : ['no drift found']),
    '',
    `${c.total} finding(s): ${c.repaired} repaired, ${c.reported} reported, ${c.skippedBusy} skipped (busy), ${c.failed} failed${r.dryRun ? ' (dry run: nothing changed)' : ''}`,
    ...r.notChecked.map((n) => `not checked: ${n}`),
  ].join('\n');
}

program
  .command('reconcile')
  .description('find the drift terminated runs leave (balancers, replicas, pending Vault versions, leases, drill leftovers), repair it, print the findings')
  .option('--dry-run', 'report only, change nothing')
  .option('--no-repair', 'report only (as a dry run)')
  .option('--service <name...>', 'limit the service checks to these (drill copies: "drill-copy")')
  .action(async (opts: { dryRun?: boolean; repair: boolean; service?: string[] }) =>
    withClient(async (client, taskQueue) => {
      // The configured credentials' pending versions are checked (as the schedule does).
      const vaultPaths = [...new Set(loadRotations(scheduleFiles().rotations).map((r) => r.vaultPath))];
      const input = { dryRun: Boolean(opts.dryRun), repair: opts.repair, vaultPaths, ...(opts.service ? { services: opts.service } : {}) };
      const handle = await startRunbook(client, 'reconcile', input, { taskQueue });
      process.stderr.write(`started reconcile: ${handle.workflowId}\n`);
      const report: ReconcileReport = await handle.result();
      process.stdout.write(`${findingsTable(report)}\n`);
      if (report.counts.failed > 0) process.exitCode = 1;
    }),
  );

program
  .command('rerun-drill')
  .description('re-run a past drill or recovery (restartService, superviseService) as a new drill; print both reports side by side')
  .argument('<workflowId>')
  .option('--health-url <url>', 'health endpoint (for a past restart without one)')
  .option('--demo-port <port>', 'rehearse on a throwaway demo container on this 127.0.0.1 port', (v) => Number(v))
  .action(async (workflowId: string, opts: { healthUrl?: string; demoPort?: number }) =>
    withClient(async (client, taskQueue) => {
      const r = await rerunDrill(client, workflowId, { taskQueue, ...opts });
      process.stdout.write(`${r.table}\n`);
      if (r.rerun.verdict !== 'pass') process.exitCode = 1;
    }),
  );

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof InvalidInputError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof WorkflowFailedError) {
    let cause: Error | undefined = err;
    while (cause?.cause instanceof Error) cause = cause.cause;
    process.stderr.write(`runbook failed: ${cause?.message ?? err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
