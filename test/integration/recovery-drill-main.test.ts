/**
 * recoveryDrill on the project cluster 'main' (the user's own data, with allowUserData and an
 * approval), on the real stack: main's data folder really deleted and restored in place from its
 * backup and WAL archive; a corrupted backup of main skipped; a table of main dropped and copied
 * back from a point-in-time restore; main stopped and started again by the stack. After each:
 * main answers on its own port with the user's data (a table the test owns, validated by row
 * count and checksum), the stack still records its postmaster, and the drill's own tables and
 * copies are gone.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { pgPaths, withAdminClient } from '../../src/activities/pg-instances';
import type { RecoveryDrillInput } from '../../src/schemas/recovery-drill';
import type { DrillReport } from '../../src/workflows/recovery-drill';
import { startRunbook } from '../../src/runbooks/registry';
import { assertReport, runDrill } from '../helpers/drills';
import { spawnWorker } from '../helpers/worker-process';
import { recordHistory } from '../helpers/histories';
import { config, connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';

const paths = pgPaths(config);
const main = { port: paths.main.port, database: paths.main.database };
const USER_TABLE = 'drill_test_user_orders';
const approval = { by: 'test-operator', reason: 'rehearse the loss of the project cluster' };

let client: Client;
let worker: RunningWorker;
const reportDirs: string[] = [];

const sql = <T>(fn: (c: import('pg').Client) => Promise<T>) => withAdminClient(paths, main, fn);

/** pg-main.sh status: exit 0 = main runs as the postmaster the stack recorded. */
function stackRecordsMain(): boolean {
  try {
    execFileSync('bash', [path.join(process.cwd(), 'src/stack/pg-main.sh'), 'status'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function userRows(): Promise<{ rows: number; sum: string }> {
  return sql(async (c) => {
    const r = await c.query<{ n: string; s: string }>(`SELECT count(*)::text AS n, md5(string_agg(t::text, ',' ORDER BY id)) AS s FROM ${USER_TABLE} t`);
    return { rows: Number(r.rows[0]!.n), sum: r.rows[0]!.s };
  });
}

let userBefore: { rows: number; sum: string };

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('drill-test-main') });
  assert.ok(stackRecordsMain(), 'the stack runs main (a drill on main needs the recorded postmaster)');
  // The user's own data: a table the drill does not own, which must come back whole.
  await sql(async (c) => {
    await c.query(`CREATE TABLE IF NOT EXISTS ${USER_TABLE} (id integer PRIMARY KEY, customer text NOT NULL, total numeric(10,2) NOT NULL)`);
    await c.query(`INSERT INTO ${USER_TABLE} SELECT g, 'customer-' || g, g * 3.5 FROM generate_series(1, 500) g ON CONFLICT DO NOTHING`);
  });
  userBefore = await userRows();
});

after(async () => {
  await sql((c) => c.query(`DROP TABLE IF EXISTS ${USER_TABLE}`)).catch(() => undefined);
  for (const dir of reportDirs) rmSync(dir, { recursive: true, force: true });
  await worker.stop();
  await client.connection.close();
});

const target = { database: 'main' as const, seedRows: 200, tables: ['drill_items', USER_TABLE] };

type MainScenario = 'delete-data-folder' | 'corrupt-backup' | 'drop-table' | 'stop-postgres';

async function drillOnMain(scenario: MainScenario, run?: (input: RecoveryDrillInput) => Promise<DrillReport>): Promise<DrillReport> {
  const input: RecoveryDrillInput = { scenario, target, allowUserData: true, approval };
  const r = run ? await run(input) : await runDrill(client, worker.taskQueue, input, reportDirs, uniqueName(`drill/main-${scenario}`));
  assertReport(r, scenario);
  assert.equal(r.subject, 'main');
  assert.ok(r.steps.some((s) => s.name === "project cluster 'main'" && s.detail?.includes('approved by test-operator')), 'the approval is in the report');
  assert.ok(r.rpo.ms !== undefined && r.rpo.newestHeartbeat !== undefined, `RPO measured: ${r.rpo.ms}`);
  assert.equal(r.rpo.ms, r.rpo.faultAt! - r.rpo.newestHeartbeat);
  assert.equal(r.verdict, r.rto.verdict === 'pass' && r.rpo.verdict === 'pass' ? 'pass' : 'fail');
  // The user's table and the drill's table both validated against the source at the restore point.
  assert.deepEqual(r.validation.map((v) => v.table).sort(), ['drill_items', USER_TABLE].sort());
  assert.ok(r.validation.every((v) => v.ok), JSON.stringify(r.validation));
  // Afterwards: main on its own port, recorded by the stack, the user's data whole, the drill's gone.
  assert.ok(stackRecordsMain(), 'the stack records main again');
  assert.deepEqual(await userRows(), userBefore, "the user's table is whole");
  const left = await sql(async (c) => (await c.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE tablename IN ('drill_items', 'drill_heartbeat')")).rows.map((x) => x.t));
  assert.deepEqual(left, [], 'the drill dropped its own tables in main');
  assert.ok(r.rollbacks.every((b) => b.ok), JSON.stringify(r.rollbacks));
  const copies = existsSync(paths.instancesDir) ? readdirSync(paths.instancesDir).filter((n) => n.endsWith('-main-r')) : [];
  assert.deepEqual(copies, [], 'no restored copy of main is left');
  return r;
}

test("delete-data-folder on main: crash + data folder deleted, restored in place from main's backup and WAL archive", async () => {
  const r = await drillOnMain('delete-data-folder');
  assert.equal((r.recovery as { workflowType: string }).workflowType, 'restoreDatabase');
  assert.ok(r.steps.some((s) => s.name === "the restored copy becomes main's data folder" && s.ok));
  assert.ok(r.steps.some((s) => s.name === 'base backup of the recovered main' && s.ok), 'a base backup on the new timeline');
  // Roles of the cluster (not only the database) came back with the data folder.
  const roles = await sql(async (c) => (await c.query<{ r: string }>("SELECT rolname AS r FROM pg_roles WHERE rolname IN ('app_a', 'app_b', 'vault_admin') ORDER BY 1")).rows.map((x) => x.r));
  assert.deepEqual(roles, ['app_a', 'app_b', 'vault_admin']);
  process.stdout.write(`# main delete-data-folder: RTO ${r.rto.ms} ms, RPO ${r.rpo.ms} ms\n`);
  await recordHistory(client, r.drillId, 'recovery-drill-main-delete-data-folder');
});

test('corrupt-backup on main: the corrupted newest backup is skipped, the previous good one restored in place, the corrupted one removed', async () => {
  const r = await drillOnMain('corrupt-backup');
  const rec = r.recovery as { backupId: string; skipped: Array<{ backupId: string; reason: string }> };
  assert.equal(rec.skipped.length, 1, JSON.stringify(rec.skipped));
  assert.ok(r.steps.some((s) => s.name === 'previous good backup chosen' && s.ok));
  const removed = r.rollbacks.find((b) => b.name.startsWith('remove the corrupted backup'));
  assert.equal(removed?.detail, 'removed');
  assert.equal(existsSync(path.join(paths.backupDir, 'main', 'physical', rec.skipped[0]!.backupId)), false, 'no corrupted backup of main stays in the store');
  assert.equal(existsSync(path.join(paths.backupDir, 'main', 'physical', rec.backupId, 'manifest.json')), true, 'the good backup stays');
});

test('drop-table on main: the table dropped, restored to just before the drop in a fresh instance, copied back into main', async () => {
  const r = await drillOnMain('drop-table');
  assert.match((r.recovery as { recoveryTarget: string }).recoveryTarget, /\d{4}-\d{2}-\d{2}T/);
  assert.ok(r.steps.some((s) => s.name === 'copy drill_items back into main' && s.detail?.startsWith('200 rows')));
});

test('stop-postgres on main: stopped, started again by the stack (startDatabase main), heartbeat advancing', async () => {
  const r = await drillOnMain('stop-postgres');
  assert.equal((r.recovery as { workflowType: string }).workflowType, 'startDatabase');
});

test("the worker SIGKILLed right after main's data folder was replaced (before Temporal heard of it): a new worker finishes, main adopted once", async () => {
  const queue = uniqueName('drill-test-main-crash');
  const first = await spawnWorker(queue, { env: { DURABLE_OPS_FAULT_CRASH_AFTER: 'adoptAsMain' } });
  let second: Awaited<ReturnType<typeof spawnWorker>> | undefined;
  try {
    const r = await drillOnMain('delete-data-folder', async (input) => {
      const handle = await startRunbook(client, 'recoveryDrill', input, { taskQueue: queue, workflowId: uniqueName('drill/main-crash') });
      await Promise.race([first.exited, new Promise((_, reject) => setTimeout(() => reject(new Error(`the worker did not crash after adoptAsMain:\n${first.output()}`)), 120_000))]);
      assert.match(first.output(), /fault injection: SIGKILL after adoptAsMain/);
      second = await spawnWorker(queue);
      const report: DrillReport = await handle.result();
      if (report.files) reportDirs.push(report.files.dir);
      return report;
    });
    assert.ok(r.steps.some((s) => s.name === "the restored copy becomes main's data folder" && s.ok));
    assert.ok(r.steps.some((s) => s.name === 'base backup of the recovered main' && s.ok));
  } finally {
    await first.kill('SIGKILL');
    await second?.kill();
  }
});
