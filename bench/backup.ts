/**
 * Backup + restore benchmark: a pgbench database (`pgbench -i -s <scale>`; 70 ~ 1 GB) in a
 * created instance with WAL archiving, then, side by side in the same run:
 *   physical backup   backupDatabase runbook      vs raw pg_basebackup -Ft -X none -c fast
 *   physical restore  restoreDatabase runbook     vs raw tar -x + recovery.signal + pg_ctl start + wait for promotion
 *   logical backup    backupDatabase runbook      vs raw pg_dump -Fc
 *   logical restore   restoreDatabase runbook     vs raw initdb + start + pg_restore -C
 * The runbooks add what raw does not: checksums of every file, the manifest, retention, the
 * verification of a backup before restoring it, heartbeats and Temporal's round trips. Reports
 * each time and the overhead ratio runbook/raw (target <= 1.10). Writes bench/results/backup.json.
 *   npx tsx bench/backup.ts [--scale 70] [--rounds N]    (scale also from DURABLE_OPS_BENCH_BACKUP_SCALE;
 *   rounds: 3 up to scale 20, else 1; the verdict is on medians, the minima are shown beside them)
 * Exits 0 whether or not the target is met; 1 only if the bench itself broke.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { Command, InvalidArgumentError } from 'commander';
import { chownOwned, instanceConf, mkdirOwned, pgEnv, pgPaths, PgInstances, run, withAdminClient } from '../src/activities/pg-instances';
import { loadConfig } from '../src/config/env';
import { createLogger } from '../src/config/logger';
import { startRunbook, type RunbookName } from '../src/runbooks/registry';
import type { BackupDatabaseResult } from '../src/workflows/backup-database';
import type { RestoreDatabaseResult } from '../src/workflows/restore-database';
import { startBenchWorker } from './worker';

const TARGET_RATIO = 1.1;
const SMALL_SCALE = 20;
const SMALL_ROUNDS = 3;
const RESULTS = new URL('./results/backup.json', import.meta.url);

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

const opts = new Command('bench-backup')
  .option('--scale <n>', 'pgbench scale (70 ~ 1 GB)', positiveInt, positiveInt(process.env.DURABLE_OPS_BENCH_BACKUP_SCALE ?? '70'))
  .option('--rounds <n>', `rounds (each: every phase raw and through the runbook, alternating which goes first); default ${SMALL_ROUNDS} up to scale ${SMALL_SCALE}, else 1`, positiveInt)
  .parse()
  .opts<{ scale: number; rounds?: number }>();
// Small databases take seconds per phase, where a second process on the machine moves a single
// sample by 2x: several rounds, and the median. The 1 GB run stays at one round by default.
const rounds = opts.rounds ?? (opts.scale <= SMALL_SCALE ? SMALL_ROUNDS : 1);

const config = loadConfig();
const log = createLogger('warn', { component: 'bench-backup' });
const paths = pgPaths(config);
const instances = new PgInstances(paths, log);
const taskQueue = `bench-backup-${process.pid}`;
const sourceId = `bench-backup-src-${process.pid}`;
const scratch = path.join(paths.instancesDir, `.bench-raw-${process.pid}`);
const bin = (b: string) => path.join(paths.bin, b);
// Budget: about a minute per 10 scale units per round for everything, plus set-up.
const budgetMs = 300_000 + opts.scale * rounds * 12_000;
setTimeout(() => {
  console.error(`bench-backup: over its time budget (${budgetMs} ms); giving up`);
  process.exit(1);
}, budgetMs).unref();

type Phase = 'physicalBackup' | 'physicalRestore' | 'logicalBackup' | 'logicalRestore';
/** inActivity: of each runbook sample, the time its activities ran (the rest is the workflow and Temporal's round trips). */
const samples: Record<Phase, { raw: number[]; runbook: number[]; inActivity: number[] }> = {
  physicalBackup: { raw: [], runbook: [], inActivity: [] },
  physicalRestore: { raw: [], runbook: [], inActivity: [] },
  logicalBackup: { raw: [], runbook: [], inActivity: [] },
  logicalRestore: { raw: [], runbook: [], inActivity: [] },
};

/** Wall time of a finished workflow's (non-local) activities, start to completion, from its history. */
async function activityMs(handle: WorkflowHandle): Promise<number> {
  const at = (e: { eventTime?: { seconds?: unknown; nanos?: number | null } | null }) => Number(e.eventTime?.seconds ?? 0) * 1000 + (e.eventTime?.nanos ?? 0) / 1e6;
  const started = new Map<string, number>();
  let ms = 0;
  for (const e of (await handle.fetchHistory()).events ?? []) {
    if (e.activityTaskStartedEventAttributes) started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), at(e));
    const done = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes;
    const from = done ? started.get(String(done.scheduledEventId)) : undefined;
    if (from !== undefined) ms += at(e) - from;
  }
  return ms;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function accounts(port: number): Promise<number> {
  return withAdminClient(paths, { port, database: 'app' }, async (c) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM pgbench_accounts')).rows[0]!.n));
}

/**
 * Untimed, before each measurement: the archiver has caught up (a base backup with -X none waits
 * for its WAL to be archived, so a backlog, e.g. pgbench -i's, would count against whoever runs
 * first), and dirty pages are flushed.
 */
async function settleArchive(port: number): Promise<void> {
  await withAdminClient(paths, { port, database: 'postgres' }, async (c) => {
    await c.query('CHECKPOINT');
    const seg = (await c.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')).rows[0]!.f;
    for (let i = 0; i < 1200; i++) {
      const last = (await c.query<{ w: string | null }>('SELECT last_archived_wal AS w FROM pg_stat_archiver')).rows[0]!.w;
      // Everything before the segment being written is archived.
      if (last && last.slice(8) >= (BigInt(`0x${seg.slice(8)}`) - 1n).toString(16).toUpperCase().padStart(16, '0')) return;
      await sleep(250);
    }
    throw new Error('the WAL archiver did not catch up within 5 min');
  });
}

/** The raw restore of a base backup: what an operator types, without checks. */
async function rawPhysicalRestore(base: string, port: number, dir: string): Promise<void> {
  const data = path.join(dir, 'data');
  await mkdirOwned(dir);
  await mkdirOwned(data, 0o700);
  await mkdirOwned(path.join(dir, 'run'), 0o755);
  await run('tar', ['-xf', path.join(base, 'base.tar'), '-C', data]);
  const conf = path.join(data, 'durable-ops.conf');
  await writeFile(conf, instanceConf({ port, socketDir: path.join(dir, 'run'), recovery: { restoreFrom: path.join(paths.backupDir, sourceId, 'wal') } }));
  await writeFile(path.join(data, 'recovery.signal'), '');
  await chownOwned(conf);
  await chownOwned(path.join(data, 'recovery.signal'));
  await run(bin('pg_ctl'), ['start', '-D', data, '-l', path.join(dir, 'postgres.log'), '-w', '-t', '900']).catch(async (err: unknown) => {
    throw new Error(`${String(err)}: ${(await readFile(path.join(dir, 'postgres.log'), 'utf8').catch(() => '')).split('\n').slice(-6).join(' | ')}`);
  });
  for (;;) {
    const inRecovery = await withAdminClient(paths, { port, database: 'postgres' }, async (c) => (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r).catch(() => true);
    if (!inRecovery) return;
    await sleep(100);
  }
}

/** The raw logical restore: initdb + start + pg_restore -C. */
async function rawLogicalRestore(dump: string, port: number, dir: string): Promise<void> {
  const data = path.join(dir, 'data');
  await mkdirOwned(dir);
  await mkdirOwned(data, 0o700);
  await mkdirOwned(path.join(dir, 'run'), 0o755);
  const pwfile = path.join(dir, '.pw');
  await writeFile(pwfile, (await readFile(paths.adminPasswordFile, 'utf8')).trim(), { mode: 0o600 });
  await chownOwned(pwfile);
  await run(bin('initdb'), ['-D', data, '-U', paths.adminUser, `--pwfile=${pwfile}`, '--auth-host=scram-sha-256', '--auth-local=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']);
  await run(bin('pg_ctl'), ['start', '-D', data, '-l', path.join(dir, 'postgres.log'), '-w', '-o', `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${path.join(dir, 'run')}`]);
  await run(bin('pg_restore'), ['-h', '127.0.0.1', '-p', String(port), '-U', paths.adminUser, '-w', '-d', 'postgres', '-C', '--exit-on-error', dump], { env: await pgEnv(paths) });
}

async function stopRaw(dir: string): Promise<void> {
  await run(bin('pg_ctl'), ['stop', '-D', path.join(dir, 'data'), '-m', 'immediate', '-w']).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const bench = await startBenchWorker(config, log, taskQueue);
  const { client } = bench;
  const env = await pgEnv(paths);
  let dbBytes = 0;
  try {
    console.log(`bench-backup: source instance ${sourceId}, pgbench -i -s ${opts.scale}`);
    const src = instances.ref(await instances.create(sourceId, true));
    const conn = ['-h', '127.0.0.1', '-p', String(src.port), '-U', paths.adminUser];
    const initMs = await timed(() => run(bin('pgbench'), [...conn, '-i', '-q', '-s', String(opts.scale), 'app'], { env }));
    await withAdminClient(paths, { port: src.port, database: 'app' }, (c) => c.query('CHECKPOINT'));
    dbBytes = await withAdminClient(paths, { port: src.port, database: 'app' }, async (c) => Number((await c.query<{ b: string }>("SELECT pg_database_size('app') AS b")).rows[0]!.b));
    const expected = opts.scale * 100_000;
    console.log(`bench-backup: database app ${(dbBytes / 2 ** 20).toFixed(0)} MiB (pgbench -i ${(initMs / 1000).toFixed(1)} s)`);
    await mkdirOwned(scratch);

    for (let round = 0; round < rounds; round++) {
      // Round 1 runs the runbook first: its retention drops WAL older than its own oldest kept base
      // backup, which must not be older than the raw one (the raw restore needs that WAL too).
      const rawFirst = round % 2 === 1;
      let handle: WorkflowHandle | undefined;
      const runbookResult = async <T>(runbook: RunbookName, input: unknown): Promise<T> => {
        handle = await startRunbook(client, runbook, input, { taskQueue });
        return (await handle.result()) as T;
      };
      const both = async (phase: Phase, raw: () => Promise<unknown>, runbook: () => Promise<unknown>) => {
        for (const which of rawFirst ? (['raw', 'runbook'] as const) : (['runbook', 'raw'] as const)) {
          await settleArchive(src.port);
          const ms = await timed(which === 'raw' ? raw : runbook);
          samples[phase][which].push(ms);
          // Untimed: how much of the runbook's time its activities took.
          const inActivity = which === 'runbook' ? await activityMs(handle!) : undefined;
          if (inActivity !== undefined) samples[phase].inActivity.push(inActivity);
          console.log(`  round ${round + 1} ${phase.padEnd(16)} ${which.padEnd(8)} ${(ms / 1000).toFixed(2)} s${inActivity !== undefined ? ` (in activities ${(inActivity / 1000).toFixed(2)} s)` : ''}`);
        }
      };
      const rawBase = path.join(scratch, `base-${round}`);
      let physical: BackupDatabaseResult | undefined;
      await both(
        'physicalBackup',
        () => run(bin('pg_basebackup'), [...conn, '-w', '-D', rawBase, '-Ft', '-X', 'none', '-c', 'fast', '-l', `raw-${round}`], { env }),
        async () => (physical = await runbookResult<BackupDatabaseResult>('backupDatabase', { database: src, kind: 'physical', keep: 2 })),
      );
      // Rows after the base backups: both restores replay the same archive to its end.
      await withAdminClient(paths, { port: src.port, database: 'app' }, (c) => c.query("UPDATE pgbench_branches SET filler = 'after base backup'; SELECT pg_switch_wal()"));
      await sleep(2_000);
      const rawPhys = path.join(scratch, `phys-${round}`);
      const rawPhysPort = await instances.pickPort();
      let restored: RestoreDatabaseResult | undefined;
      const physInstance = `bench-backup-p${round}-${process.pid}`;
      await both(
        'physicalRestore',
        () => rawPhysicalRestore(rawBase, rawPhysPort, rawPhys),
        async () => (restored = await runbookResult<RestoreDatabaseResult>('restoreDatabase', { source: src, kind: 'physical', backupId: physical!.backupId, instanceId: physInstance })),
      );
      const counts = [await accounts(rawPhysPort), await accounts(restored!.instance.port)];
      if (counts.some((n) => n !== expected)) throw new Error(`physical restores hold ${counts.join(' / ')} accounts, expected ${expected}`);
      await stopRaw(rawPhys);
      await instances.drop(physInstance);
      await rm(rawBase, { recursive: true, force: true });

      const rawDump = path.join(scratch, `dump-${round}.dump`);
      let logical: BackupDatabaseResult | undefined;
      await both(
        'logicalBackup',
        () => run(bin('pg_dump'), [...conn, '-w', '-d', 'app', '-Fc', '-f', rawDump], { env }),
        async () => (logical = await runbookResult<BackupDatabaseResult>('backupDatabase', { database: src, kind: 'logical', keep: 2 })),
      );
      const rawLog = path.join(scratch, `log-${round}`);
      const rawLogPort = await instances.pickPort();
      const logInstance = `bench-backup-l${round}-${process.pid}`;
      let restoredL: RestoreDatabaseResult | undefined;
      await both(
        'logicalRestore',
        () => rawLogicalRestore(rawDump, rawLogPort, rawLog),
        async () => (restoredL = await runbookResult<RestoreDatabaseResult>('restoreDatabase', { source: src, kind: 'logical', backupId: logical!.backupId, instanceId: logInstance })),
      );
      const countsL = [await accounts(rawLogPort), await accounts(restoredL!.instance.port)];
      if (countsL.some((n) => n !== expected)) throw new Error(`logical restores hold ${countsL.join(' / ')} accounts, expected ${expected}`);
      await stopRaw(rawLog);
      await instances.drop(logInstance);
      await rm(rawDump, { force: true });
    }
  } finally {
    await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
    for (const rec of await instances.list()) if (rec.id.endsWith(`-${process.pid}`)) await instances.drop(rec.id).catch(() => undefined);
    await rm(path.join(paths.backupDir, sourceId), { recursive: true, force: true });
    await bench.stop();
  }

  const phases = Object.fromEntries(
    (Object.keys(samples) as Phase[]).map((p) => {
      const raw = median(samples[p].raw);
      const runbook = median(samples[p].runbook);
      const [rawMin, runbookMin] = [Math.min(...samples[p].raw), Math.min(...samples[p].runbook)];
      // The verdict is on the medians; the minima (each side's least disturbed run) are shown beside them.
      const inActivity = median(samples[p].inActivity);
      return [p, { rawMs: Math.round(raw), runbookMs: Math.round(runbook), ratio: Number((runbook / raw).toFixed(3)), pass: runbook / raw <= TARGET_RATIO, rawMinMs: Math.round(rawMin), runbookMinMs: Math.round(runbookMin), minRatio: Number((runbookMin / rawMin).toFixed(3)), inActivityMs: Math.round(inActivity), activityRatio: Number((inActivity / raw).toFixed(3)), samples: samples[p] }];
    }),
  );
  const s = (ms: number) => (ms / 1000).toFixed(2);
  console.log(`\nbackup + restore of a ${(dbBytes / 2 ** 20).toFixed(0)} MiB pgbench database (scale ${opts.scale}), ${rounds} round(s); ratio = runbook median / raw median`);
  console.log('(in activities: the runbook median spent in its activities; the rest is the workflow and Temporal round trips)');
  console.log('phase             raw med (min) s   runbook med (min) s  ratio  min ratio  in activities s (/raw)  (target <= 1.10)');
  for (const [p, r] of Object.entries(phases)) {
    console.log(
      `${p.padEnd(17)} ${s(r.rawMs).padStart(7)} (${s(r.rawMinMs).padStart(5)})   ${s(r.runbookMs).padStart(11)} (${s(r.runbookMinMs).padStart(5)})  ${r.ratio.toFixed(3)}  ${r.minRatio.toFixed(3).padStart(9)}  ${s(r.inActivityMs).padStart(15)} (${r.activityRatio.toFixed(2)})  ${r.pass ? 'pass' : 'FAIL'}`,
    );
  }
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify({ at: new Date().toISOString(), scale: opts.scale, dbBytes, rounds, targetRatio: TARGET_RATIO, phases }, null, 2)}\n`);
  console.log(`written ${RESULTS.pathname}`);
}

main().catch((err: unknown) => {
  console.error(`bench-backup: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
