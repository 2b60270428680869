/**
 * Rotation benchmark: end-to-end time of rotateCredential (PostgreSQL alternating users, real
 * Vault and PostgreSQL) while a consumer queries continuously (reconnecting with the current
 * credential from Vault), side by side with the raw steps done by hand (a Vault KV write and an
 * ALTER ROLE, no checks, no grace, no rollback). Reports failed queries (target 0), median/p95 of
 * each, and the ratio. Writes bench/results/rotation.json.
 *   npx tsx bench/rotation.ts [--rounds 5]      (npm run bench runs it last)
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { pgSettings, withPgClient } from '../src/activities/postgres';
import { vaultSettings, VaultSession } from '../src/activities/vault';
import { loadConfig } from '../src/config/env';
import { createLogger } from '../src/config/logger';
import { startRunbook } from '../src/runbooks/registry';
import { startBenchWorker } from './worker';

const opts = new Command('bench-rotation').option('--rounds <n>', 'rounds', (v) => Math.max(1, Number.parseInt(v, 10) || 5), 5).parse().opts<{ rounds: number }>();
const config = loadConfig();
const log = createLogger('warn', { component: 'bench-rotation' });
const PG = pgSettings(config);
const ADMIN = { username: config.DURABLE_OPS_PG_ADMIN_USER, password: readFileSync(config.DURABLE_OPS_PG_ADMIN_PASSWORD_FILE ?? `${config.DURABLE_OPS_DATA}/postgres/admin.password`, 'utf8').trim() };
const vault = new VaultSession(vaultSettings(config));
const app = `bench${process.pid}`;
const vaultPath = `durable-ops/bench-${app}`;
const taskQueue = `bench-rotation-${process.pid}`;
setTimeout(() => {
  console.error('bench-rotation: over its time budget; giving up');
  process.exit(1);
}, 120_000 + opts.rounds * 60_000).unref();

const admin = (sql: string) => withPgClient(PG, ADMIN, (c) => c.query(sql));
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
  return { n: s.length, median: at(0.5), p95: at(0.95), min: s[0]!, max: s.at(-1)! };
};

async function currentCreds() {
  const meta = await vault.kvMetadata(vaultPath);
  const version = Number(meta!.customMetadata.current_version);
  const data = (await vault.kvReadVersion(vaultPath, version))!;
  return { username: data.username!, password: data.value! };
}

async function main() {
  for (const r of ['a', 'b']) await admin(`CREATE ROLE ${app}_${r} NOLOGIN INHERIT IN ROLE app_rw`);
  const bench = await startBenchWorker(config, log, taskQueue);
  const { client } = bench;
  const input = { credentialId: app, vaultPath, target: { kind: 'postgres-role', app }, gracePeriodMs: 10_000 };
  const workflowMs: number[] = [];
  const rawMs: number[] = [];
  let queries = 0;
  const failures: string[] = [];
  try {
    await (await startRunbook(client, 'rotateCredential', input, { taskQueue })).result(); // the first version
    let on = true;
    const consumer = (async () => {
      while (on) {
        try {
          await withPgClient(PG, await currentCreds(), (c) => c.query('SELECT 1'));
          queries += 1;
        } catch (err) {
          failures.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    for (let i = 0; i < opts.rounds; i++) {
      const t0 = performance.now();
      await (await startRunbook(client, 'rotateCredential', input, { taskQueue })).result();
      workflowMs.push(performance.now() - t0);
    }
    on = false;
    await consumer;
    // Raw: the same change by hand, no checks (a scratch path and role, no consumer).
    const rawPath = `${vaultPath}-raw`;
    let cas = 0;
    for (let i = 0; i < opts.rounds; i++) {
      const t0 = performance.now();
      const value = randomBytes(30).toString('base64url');
      cas = (await vault.kvWrite(rawPath, { value, username: `${app}_b` }, { cas })).version;
      await admin(`ALTER ROLE ${app}_b WITH LOGIN PASSWORD '${value}'`);
      rawMs.push(performance.now() - t0);
    }
  } finally {
    await bench.stop();
    for (const r of ['a', 'b']) await admin(`DROP ROLE IF EXISTS ${app}_${r}`).catch(() => undefined);
  }
  const w = stats(workflowMs);
  const raw = stats(rawMs);
  const result = {
    bench: 'rotation',
    at: new Date().toISOString(),
    rounds: opts.rounds,
    consumer: { queries, failed: failures.length, failures: failures.slice(0, 5) },
    workflow: { ...w, samples: workflowMs.map(Math.round) },
    raw: { ...raw, samples: rawMs.map(Math.round) },
    ratio: { median: w.median / raw.median, p95: w.p95 / raw.p95 },
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/rotation.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  const f = (x: number) => `${Math.round(x)} ms`;
  console.log(`rotation (PostgreSQL alternating users, ${opts.rounds} rounds, a consumer reconnecting every 50 ms):`);
  console.log(`  consumer          ${queries} queries, ${failures.length} failed ${failures.length === 0 ? 'PASS' : 'FAIL'} (target 0)`);
  console.log(`  rotateCredential  median ${f(w.median)}  p95 ${f(w.p95)}  (create, set, test, finish with the grace check)`);
  console.log(`  raw KV write + ALTER ROLE  median ${f(raw.median)}  p95 ${f(raw.p95)}`);
  console.log(`  ratio             median ${result.ratio.median.toFixed(1)}x  p95 ${result.ratio.p95.toFixed(1)}x`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
