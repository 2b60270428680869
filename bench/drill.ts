/**
 * Recovery drill benchmark: the database drills of the catalogue (delete-data-folder, drop-table,
 * corrupt-backup) on a drill copy seeded with N rows (default 200 000; `--rows`), each run through
 * recoveryDrill on its own worker. Reports each drill's measured RTO (fault -> steady state
 * verified) and RPO (fault -> newest heartbeat row the recovered database holds) against the seed's
 * targets (RTO 15 min, RPO 5 min), with the report files' folder. Writes bench/results/drill.json.
 *   npx tsx bench/drill.ts [--rows 200000]
 * Exits 0 whether or not the targets are met; 1 only if the bench itself broke.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { WorkflowFailedError } from '@temporalio/client';
import { Command, InvalidArgumentError } from 'commander';
import { RPO_TARGET_MS, RTO_TARGET_MS } from '../src/config/defaults';
import { loadConfig } from '../src/config/env';
import { createLogger } from '../src/config/logger';
import { startRunbook } from '../src/runbooks/registry';
import type { DrillReport } from '../src/workflows/recovery-drill';
import { startBenchWorker } from './worker';

const SCENARIOS = ['delete-data-folder', 'drop-table', 'corrupt-backup'] as const;
const RESULTS = new URL('./results/drill.json', import.meta.url);

const opts = new Command('bench-drill')
  .option(
    '--rows <n>',
    'rows seeded into each drill copy',
    (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new InvalidArgumentError('must be an integer in 1..1000000');
      return n;
    },
    200_000,
  )
  .parse()
  .opts<{ rows: number }>();

const config = loadConfig();
const log = createLogger('warn', { component: 'bench-drill' });
const taskQueue = `bench-drill-${process.pid}`;
setTimeout(() => {
  console.error('bench-drill: over its 20-minute budget; giving up');
  process.exit(1);
}, 20 * 60_000).unref();

async function main(): Promise<void> {
  const bench = await startBenchWorker(config, log, taskQueue);
  const { client } = bench;
  const drills: Array<{ scenario: string; workflowId: string; verdict: string; rtoMs?: number; rpoMs?: number; rtoVerdict: string; rpoVerdict: string; reportDir?: string; error?: string }> = [];
  try {
    for (const scenario of SCENARIOS) {
      const h = await startRunbook(client, 'recoveryDrill', { scenario, target: { seedRows: opts.rows }, note: `bench, ${opts.rows} rows` }, { taskQueue });
      let report: DrillReport;
      try {
        report = (await h.result()) as DrillReport;
      } catch (err) {
        // A failed drill still carries its report (DrillFailed details): record it as a failure.
        const details = err instanceof WorkflowFailedError ? (err.cause as { details?: unknown[] } | undefined)?.details : undefined;
        report = (details?.[0] as DrillReport | undefined) ?? ({ verdict: 'fail', rto: { verdict: 'unknown' }, rpo: { verdict: 'unknown' }, error: String(err) } as unknown as DrillReport);
      }
      const row = {
        scenario,
        workflowId: h.workflowId,
        verdict: report.verdict,
        ...(report.rto.ms !== undefined ? { rtoMs: report.rto.ms } : {}),
        ...(report.rpo.ms !== undefined ? { rpoMs: report.rpo.ms } : {}),
        rtoVerdict: report.rto.verdict,
        rpoVerdict: report.rpo.verdict,
        ...(report.files?.dir ? { reportDir: report.files.dir } : {}),
        ...(report.error ? { error: report.error } : {}),
      };
      drills.push(row);
      const s = (ms?: number) => (ms === undefined ? '   n/a' : `${(ms / 1000).toFixed(1).padStart(6)} s`);
      console.log(`  ${scenario.padEnd(19)} RTO ${s(row.rtoMs)} (${row.rtoVerdict})  RPO ${s(row.rpoMs)} (${row.rpoVerdict})  ${row.verdict}`);
    }
  } finally {
    await bench.stop();
  }
  console.log(`\nrecovery drills on drill copies of ${opts.rows} rows; targets RTO ${RTO_TARGET_MS / 60_000} min, RPO ${RPO_TARGET_MS / 60_000} min`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify({ at: new Date().toISOString(), rows: opts.rows, targets: { rtoMs: RTO_TARGET_MS, rpoMs: RPO_TARGET_MS }, drills }, null, 2)}\n`);
  console.log(`written ${RESULTS.pathname}`);
}

main().catch((err: unknown) => {
  console.error(`bench-drill: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
