/**
 * Recovery drill activities: the faults (SIGKILL a container, drop a table, delete a drill copy's
 * data folder, corrupt a backup file), the steady-state probes (HTTP, rows + heartbeat), the
 * heartbeat writer that makes the RPO observable, and the report files (JSON, Markdown, SVG).
 *
 * Idempotent: every fault is recorded in the drill's folder before it is done, so a retry after a
 * worker crash returns the recorded fault instead of doing it twice; report files are written to
 * a temporary name and renamed. Destructive calls refuse the project cluster ('main') and any
 * data folder that is not a drill copy's.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import pg from 'pg';
import type { Logger } from 'pino';
import { loadConfig } from '../config/env';
import { demuxDockerStreams } from './docker';
import { pgPaths, run as runPg } from './pg-instances';

/** The database a drill talks to (structurally the contract's DatabaseRef). */
export interface DrillDb {
  id: string;
  host: string;
  port: number;
  database: string;
}

export interface DrillDeps {
  docker: Docker;
  log: Logger;
  env?: NodeJS.ProcessEnv;
}

export interface FaultRecord {
  kind: string;
  /** Wall-clock ms of the fault, as the fault's own side saw it. */
  at: number;
  detail: string;
  /** True when a retry found the fault already done (it is never done twice). */
  alreadyDone: boolean;
}

export interface TableStat {
  table: string;
  rows: number;
  checksum: string;
}

export interface DbProbe {
  ok: boolean;
  rows?: number;
  /** ms since the epoch of the newest heartbeat row, if any. */
  newestHeartbeat?: number;
  advancing?: boolean;
  error?: string;
}

/** A drill's events and figures, as written into the report files (a subset of the workflow's report). */
export interface DrillReportFile {
  drillId: string;
  scenario: string;
  subject: string;
  verdict: 'pass' | 'fail';
  outcome: string;
  startedAt: number;
  finishedAt?: number;
  timeline: Array<{ event: string; at: number; detail?: string }>;
  steps: Array<{ name: string; ok: boolean; at: number; detail?: string }>;
  rto: { ms?: number; targetMs: number; verdict: string };
  rpo: { ms?: number; targetMs: number; verdict: string; faultAt?: number; newestHeartbeat?: number };
  validation: Array<{ table: string; source: { rows: number; checksum: string }; restored?: { rows: number; checksum: string }; ok: boolean }>;
  recovery?: Record<string, unknown>;
  rollbacks: Array<{ name: string; ok: boolean; detail?: string }>;
  error?: string;
  note?: string;
}

const NS = 1_000_000;
const DRILL_LABEL = 'durable-ops.drill';
const isStatus = (err: unknown, code: number) => typeof err === 'object' && err !== null && (err as { statusCode?: number }).statusCode === code;
const quoteIdent = (id: string) => {
  if (!/^[a-z_][a-z0-9_]*$/.test(id)) throw ApplicationFailure.nonRetryable(`not a safe table name: ${id}`, 'InvalidInput');
  return `"${id}"`;
};

/** A workflow id as a folder name: [A-Za-z0-9._-] only, no leading dot. */
export function sanitiseId(id: string): string {
  return id.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_').slice(0, 200);
}

async function atomicWrite(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

// ---- delete-volume-data: pure pieces (unit-tested) -------------------------------------------

/** A file of the volume drill's seeded data and its SHA-256. */
export interface VolumeFileSum {
  path: string;
  sha256: string;
}

/**
 * The volume drill's container command: a heartbeat writer (a shell loop appending the wall-clock
 * time in ms to <data>/heartbeat.log every HEARTBEAT_SEC; busybox `date` has no %N, `adjtimex`
 * gives the microseconds) next to the demo service, both restarted with the container.
 */
export const VOLUME_DRILL_ENTRYPOINT = [
  'sh',
  '-c',
  [
    'd="${DATA_DIR:-/data}"; s="${HEARTBEAT_SEC:-0.2}"; mkdir -p "$d"',
    `( while :; do adjtimex 2>/dev/null | awk '/tv_sec/ {s=$2} /tv_usec/ {u=$2} END {if (s != "") printf "%s%03d\\n", s, int(u / 1000)}' >>"$d/heartbeat.log"; sleep "$s"; done ) &`,
    'exec /bin/demo-service',
  ].join('\n'),
];

/** Seeds `n` files with known content under <data>/items (deterministic: a retry writes the same bytes), then lists their SHA-256. */
export const VOLUME_SEED_SCRIPT =
  'set -e; d="$1"; n="$2"; mkdir -p "$d/items"; i=1; while [ "$i" -le "$n" ]; do seq 1 $((i * 37)) | sed "s/^/item $i line /" >"$d/items/item-$i.txt"; i=$((i + 1)); done; cd "$d/items" && sha256sum item-*.txt';

/** `sha256sum` output -> sorted (path, sum) pairs. */
export function parseSha256sum(text: string): VolumeFileSum[] {
  const out: VolumeFileSum[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *]?(.+)$/.exec(line.trim());
    if (m) out.push({ path: m[2]!, sha256: m[1]! });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** One digest of a file list (order-independent), for the report's validation row. */
export function digestOf(files: VolumeFileSum[]): string {
  const h = createHash('sha256');
  for (const f of [...files].sort((a, b) => a.path.localeCompare(b.path))) h.update(`${f.sha256}  ${f.path}\n`);
  return h.digest('hex');
}

/** Compare the volume's files with the expected ones: how many match, and the first difference. */
export function compareFiles(expected: VolumeFileSum[], actual: VolumeFileSum[]): { ok: boolean; matching: number; problem?: string } {
  const have = new Map(actual.map((f) => [f.path, f.sha256]));
  let matching = 0;
  let problem: string | undefined;
  for (const f of expected) {
    const sum = have.get(f.path);
    if (sum === f.sha256) matching += 1;
    else problem ??= sum === undefined ? `${f.path} is missing` : `${f.path}: SHA-256 differs`;
  }
  return { ok: matching === expected.length, matching, ...(problem ? { problem } : {}) };
}

/** heartbeat.log (one ms timestamp a line) -> the newest at or before `before` (ms), and how many lines are at or before it. */
export function newestHeartbeatIn(text: string, before: number): { newest?: number; rows: number } {
  let newest: number | undefined;
  let rows = 0;
  for (const line of text.split('\n')) {
    if (!/^\d{13}$/.test(line.trim())) continue;
    const t = Number(line.trim());
    if (t > before) continue;
    rows += 1;
    if (newest === undefined || t > newest) newest = t;
  }
  return { ...(newest !== undefined ? { newest } : {}), rows };
}

/**
 * Which drill run a fault belongs to: the drill's workflow id and its run (the workflow's runId).
 * A drill run again under the same workflow id, or reset, is a new run and faults again; the
 * record without `runKey` (drills started before runs had keys) is one per workflow id.
 */
export interface DrillRunRef {
  drillId: string;
  runKey?: string;
}

/**
 * A drill run's fault, once: the one recorded in the drill's folder under `<drillsDir>` for this
 * run, or do it now and record it, so a retry after a crash does not fault twice (or move the
 * fault time), while another run of the same drill id does the fault for real.
 */
export async function onceFaultIn(drillsDir: string, drill: DrillRunRef, key: string, run: () => Promise<{ at: number; detail: string }>): Promise<FaultRecord> {
  const file = path.join(drillsDir, sanitiseId(drill.drillId), drill.runKey ? `fault-${key}.${sanitiseId(drill.runKey)}.json` : `fault-${key}.json`);
  if (existsSync(file)) {
    const prev = JSON.parse(await readFile(file, 'utf8')) as FaultRecord;
    if (prev.at > 0) return { ...prev, alreadyDone: true };
  }
  const done = await run();
  const rec: FaultRecord = { kind: key, at: done.at, detail: done.detail, alreadyDone: false };
  await atomicWrite(file, JSON.stringify(rec));
  return rec;
}

export interface Detection {
  detected: boolean;
  at: number;
  probes: number;
  error?: string;
}

/** Detection: run `probe` every intervalMs (heartbeating) until it reports an error, or the timeout. */
async function pollUntilFails(o: { timeoutMs: number; intervalMs: number }, probe: () => Promise<string | undefined>): Promise<Detection> {
  const ctx = Context.current();
  const t0 = Date.now();
  let probes = 0;
  for (;;) {
    probes += 1;
    const error = await probe();
    if (error) return { detected: true, at: Date.now(), probes, error };
    if (Date.now() - t0 >= o.timeoutMs) return { detected: false, at: Date.now(), probes };
    ctx.heartbeat({ probes });
    await ctx.sleep(o.intervalMs);
  }
}

export function createDrillActivities({ docker, log, env = process.env }: DrillDeps) {
  const config = loadConfig(env);
  // The same admin and backup store as the pg-instances and backup activities.
  const { adminUser, adminPasswordFile, backupDir, bin: pgBin } = pgPaths(config);
  const drillsDir = path.join(config.DURABLE_OPS_DATA, 'drills');

  const password = async () => (await readFile(adminPasswordFile, 'utf8')).trim();
  async function connect(db: DrillDb, timeoutMs = 3_000): Promise<pg.Client> {
    const client = new pg.Client({
      host: db.host,
      port: db.port,
      database: db.database,
      user: adminUser,
      password: await password(),
      connectionTimeoutMillis: timeoutMs,
      query_timeout: 30_000,
      application_name: 'durable-ops-drill',
    });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }
  async function withDb<T>(db: DrillDb, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = await connect(db);
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  /** Drill copies only; the project cluster 'main' only with an approval (the drill's allowUserData + approval). */
  const refuseMain = (db: DrillDb, what: string, approvedBy?: string) => {
    if (db.id === 'main' && approvedBy?.trim()) {
      log.warn({ approvedBy, database: db.database }, `drill on the user's own data: ${what}`);
      return;
    }
    if (db.id === 'main' || !db.id.startsWith('drill-')) throw ApplicationFailure.nonRetryable(`${what}: refusing to touch "${db.id}", which is not a drill copy`, 'NotADrillCopy');
  };
  const drillDir = (drillId: string) => path.join(drillsDir, sanitiseId(drillId));

  const onceFault = (drill: DrillRunRef, key: string, run: () => Promise<{ at: number; detail: string }>) => onceFaultIn(drillsDir, drill, key, run);

  async function tableStats(c: pg.Client, table: string): Promise<TableStat> {
    const t = quoteIdent(table);
    // Order by the whole row's text, so the checksum needs no key and is the same on any copy.
    const r = await c.query<{ n: string; sum: string | null }>(`SELECT count(*)::text AS n, md5(coalesce(string_agg(x.r, E'\\n' ORDER BY x.r), '')) AS sum FROM (SELECT t::text AS r FROM ${t} t) x`);
    return { table, rows: Number(r.rows[0]?.n ?? 0), checksum: r.rows[0]?.sum ?? '' };
  }

  /** docker exec in a running container: exit code, stdout, stderr (bounded in time). */
  async function execIn(name: string, cmd: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
    const exec = await docker.getContainer(name).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
    const stream = (await exec.start({})) as NodeJS.ReadableStream & { destroy?: () => void };
    const chunks: Buffer[] = [];
    const reading = (async () => {
      for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    })();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([reading, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`docker exec ${cmd[0]} in ${name}: no end within ${timeoutMs} ms`)), timeoutMs)))]);
    } catch (err) {
      stream.destroy?.();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    const { stdout, stderr } = demuxDockerStreams(Buffer.concat(chunks));
    // The stream ends as the process exits; the engine may record the exit code a moment later.
    let info = await exec.inspect();
    for (let i = 0; i < 100 && (info.Running || info.ExitCode === null); i += 1) {
      await new Promise((r) => setTimeout(r, 20));
      info = await exec.inspect();
    }
    return { code: info.ExitCode ?? -1, stdout, stderr };
  }

  /** SHA-256 of the volume drill's seeded files (under <data>/items); fails when the folder is gone. */
  async function volumeSums(service: string, dataPath: string): Promise<VolumeFileSum[]> {
    const r = await execIn(service, ['sh', '-c', 'cd "$1/items" && sha256sum item-*.txt', 'sums', dataPath]);
    if (r.code !== 0) throw new Error(`${dataPath}/items: ${r.stderr.trim() || `exit ${r.code}`}`);
    return parseSha256sum(r.stdout);
  }

  return {
    /** Run the drill's own demo-service container (host network, 127.0.0.1:port); reuse it if it is there. */
    async drillRunDemo(input: { name: string; port: number; image?: string }): Promise<{ name: string; healthUrl: string; created: boolean }> {
      const healthUrl = `http://127.0.0.1:${input.port}/health`;
      const c = docker.getContainer(input.name);
      try {
        const info = await c.inspect();
        if (info.Config.Labels?.[DRILL_LABEL] !== 'true') throw ApplicationFailure.nonRetryable(`a container named ${input.name} exists and is not a drill container`, 'InvalidInput');
        if (!info.State.Running) await c.start().catch((err: unknown) => (isStatus(err, 304) ? undefined : Promise.reject(err)));
        return { name: input.name, healthUrl, created: false };
      } catch (err) {
        if (!isStatus(err, 404)) throw err;
      }
      const container = await docker.createContainer({
        name: input.name,
        Image: input.image ?? env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest',
        Env: [`PORT=${input.port}`],
        Labels: { [DRILL_LABEL]: 'true' },
        Healthcheck: { Test: ['CMD', '/bin/healthcheck'], Interval: 1_000 * NS, Timeout: 2_000 * NS, Retries: 3, StartPeriod: 1_000 * NS },
        HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: 'no' } },
      });
      await container.start();
      log.info({ container: input.name, port: input.port }, 'drill demo container started');
      return { name: input.name, healthUrl, created: true };
    },

    /** Remove a drill's demo container (only one labelled as a drill's); no-op if absent. */
    async drillRemoveDemo(name: string): Promise<boolean> {
      try {
        const info = await docker.getContainer(name).inspect();
        if (info.Config.Labels?.[DRILL_LABEL] !== 'true') throw ApplicationFailure.nonRetryable(`${name} is not a drill container; not removing it`, 'NotADrillCopy');
        await docker.getContainer(name).remove({ force: true });
        return true;
      } catch (err) {
        if (isStatus(err, 404)) return false;
        throw err;
      }
    },

    /** Fault: SIGKILL the container's main process (through the engine), once per drill run. */
    async drillKillContainer(input: DrillRunRef & { service: string }): Promise<FaultRecord> {
      return onceFault(input, 'kill-container', async () => {
        const c = docker.getContainer(input.service);
        const info = await c.inspect().catch((err: unknown) => {
          if (isStatus(err, 404)) throw ApplicationFailure.nonRetryable(`service: no container named "${input.service}"`, 'ServiceNotFound');
          throw err;
        });
        if (!info.State.Running) throw ApplicationFailure.nonRetryable(`${input.service} is not running: nothing to kill`, 'SteadyStateBroken');
        const at = Date.now();
        await c.kill({ signal: 'SIGKILL' });
        log.warn({ service: input.service }, 'drill: container SIGKILLed');
        return { at, detail: `SIGKILL to ${input.service} (pid ${info.State.Pid})` };
      });
    },

    /** Detection: poll the HTTP endpoint or the database until the probe fails; returns when it was seen. */
    async drillDetect(input: { url?: string; db?: DrillDb; table?: string; timeoutMs: number; intervalMs: number }): Promise<Detection> {
      return pollUntilFails(input, async () => {
        let error: string | undefined;
        if (input.url) {
          try {
            const res = await fetch(input.url, { signal: AbortSignal.timeout(1_000) });
            await res.arrayBuffer().catch(() => undefined);
            if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`;
          } catch (err) {
            const e = err as Error & { cause?: { code?: string } };
            error = e.cause?.code ?? e.name;
          }
        } else if (input.db) {
          try {
            await withDb(input.db, (c) => c.query(input.table ? `SELECT count(*) FROM ${quoteIdent(input.table)}` : 'SELECT 1'));
          } catch (err) {
            error = (err as Error).message;
          }
        }
        return error;
      });
    },

    /** Wait until a database accepts connections and answers a query. */
    async drillWaitReady(input: { db: DrillDb; timeoutMs: number; intervalMs: number }): Promise<{ ready: boolean; probes: number; waitedMs: number; error?: string }> {
      const ctx = Context.current();
      const t0 = Date.now();
      let probes = 0;
      let error: string | undefined;
      for (;;) {
        probes += 1;
        try {
          await withDb(input.db, (c) => c.query('SELECT 1'));
          return { ready: true, probes, waitedMs: Date.now() - t0 };
        } catch (err) {
          error = (err as Error).message;
        }
        if (Date.now() - t0 >= input.timeoutMs) return { ready: false, probes, waitedMs: Date.now() - t0, error };
        ctx.heartbeat({ probes, error });
        await ctx.sleep(input.intervalMs);
      }
    },

    /**
     * Create the drill's tables: drill_items (seedRows rows) and drill_heartbeat. Idempotent. On
     * 'main' (approved), `created` names the tables this call created, for the rollback to drop.
     */
    async drillSeed(input: { db: DrillDb; rows: number; approvedBy?: string }): Promise<TableStat & { created?: string[] }> {
      refuseMain(input.db, 'seed', input.approvedBy);
      return withDb(input.db, async (c) => {
        const existing = (await c.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = current_schema() AND tablename IN ('drill_items', 'drill_heartbeat')")).rows.map((r) => r.t);
        const created = ['drill_items', 'drill_heartbeat'].filter((t) => !existing.includes(t));
        await c.query('CREATE TABLE IF NOT EXISTS drill_items (id integer PRIMARY KEY, name text NOT NULL, amount numeric(12,2) NOT NULL)');
        await c.query('CREATE TABLE IF NOT EXISTS drill_heartbeat (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
        await c.query(`INSERT INTO drill_items SELECT g, 'item-' || g, round((g * 7.31)::numeric % 1000, 2) FROM generate_series(1, $1::int) g ON CONFLICT (id) DO NOTHING`, [input.rows]);
        const stat = await tableStats(c, 'drill_items');
        return input.db.id === 'main' ? { ...stat, created } : stat;
      });
    },

    /** Rollback on 'main': drop the drill's own tables (drill_*), and nothing else. No-op when gone. */
    async drillDropOwnTables(input: { db: DrillDb; tables: string[]; approvedBy?: string }): Promise<string[]> {
      refuseMain(input.db, 'drop the drill tables', input.approvedBy);
      const bad = input.tables.find((t) => !/^drill_[a-z0-9_]+$/.test(t));
      if (bad) throw ApplicationFailure.nonRetryable(`refusing to drop ${bad}: not a drill table`, 'NotADrillCopy');
      return withDb(input.db, async (c) => {
        for (const t of input.tables) await c.query(`DROP TABLE IF EXISTS ${quoteIdent(t)}`);
        return input.tables;
      });
    },

    /** Row counts and checksums of the declared tables. Read-only. */
    async drillTableStats(input: { db: DrillDb; tables: string[] }): Promise<TableStat[]> {
      return withDb(input.db, async (c) => {
        const out: TableStat[] = [];
        for (const t of input.tables) out.push(await tableStats(c, t));
        return out;
      });
    },

    /**
     * Steady state of a database: the table answers with the expected rows and the heartbeat
     * table is advancing (two reads `intervalMs * 3` apart). Polls until it holds or the deadline.
     */
    async drillProbeDb(input: { db: DrillDb; table: string; expectedRows: number; intervalMs: number; timeoutMs: number }): Promise<DbProbe> {
      const ctx = Context.current();
      const t0 = Date.now();
      let last: DbProbe = { ok: false, error: 'not probed' };
      const newest = async (c: pg.Client) => {
        const r = await c.query<{ at: Date | null }>('SELECT max(at) AS at FROM drill_heartbeat');
        return r.rows[0]?.at ? r.rows[0].at.getTime() : undefined;
      };
      for (;;) {
        try {
          last = await withDb(input.db, async (c) => {
            const rows = (await tableStats(c, input.table)).rows;
            const first = await newest(c);
            await new Promise((r) => setTimeout(r, input.intervalMs * 3));
            const second = await newest(c);
            const advancing = first !== undefined && second !== undefined && second > first;
            const ok = rows === input.expectedRows && advancing;
            return { ok, rows, newestHeartbeat: second, advancing, ...(ok ? {} : { error: rows !== input.expectedRows ? `${input.table}: ${rows} rows, expected ${input.expectedRows}` : 'heartbeat not advancing' }) };
          });
        } catch (err) {
          last = { ok: false, error: (err as Error).message };
        }
        if (last.ok || Date.now() - t0 >= input.timeoutMs) return last;
        ctx.heartbeat(last);
        await ctx.sleep(Math.max(200, input.intervalMs));
      }
    },

    /** Where the heartbeat writer writes: the drill's endpoint record (switched after a restore). */
    async drillSetEndpoint(input: { drillId: string; db: DrillDb | null }): Promise<string> {
      const file = path.join(drillDir(input.drillId), 'endpoint.json');
      if (input.db === null) await rm(file, { force: true });
      else await atomicWrite(file, JSON.stringify(input.db));
      return file;
    },

    /**
     * The heartbeat writer: INSERT a row into drill_heartbeat of the database named by the
     * endpoint record every intervalMs, until cancelled. Connection errors (the fault) are counted,
     * not fatal; a changed record (the switch) reconnects. After a worker crash the activity is
     * retried on the next worker (heartbeat timeout) and simply goes on writing.
     */
    async drillHeartbeatWriter(input: { drillId: string; intervalMs: number }): Promise<never> {
      const ctx = Context.current();
      const file = path.join(drillDir(input.drillId), 'endpoint.json');
      let client: pg.Client | undefined;
      let key = '';
      let written = 0;
      let errors = 0;
      let lastError: string | undefined;
      try {
        for (;;) {
          try {
            const text = await readFile(file, 'utf8').catch(() => '');
            if (text && text !== key) {
              await client?.end().catch(() => undefined);
              client = undefined;
              key = text;
            }
            if (key) {
              client ??= await connect(JSON.parse(key) as DrillDb, 1_000);
              await client.query('INSERT INTO drill_heartbeat DEFAULT VALUES');
              written += 1;
            }
          } catch (err) {
            errors += 1;
            lastError = (err as Error).message;
            await client?.end().catch(() => undefined);
            client = undefined;
          }
          ctx.heartbeat({ written, errors, lastError });
          await ctx.sleep(input.intervalMs);
        }
      } finally {
        await client?.end().catch(() => undefined);
        log.info({ drillId: input.drillId, written, errors }, 'drill heartbeat writer stopped');
      }
    },

    /** Newest heartbeat row at or before `before` (ms), in the recovered database: the RPO's other end. */
    async drillNewestHeartbeat(input: { db: DrillDb; before: number }): Promise<{ newest?: number; rows: number }> {
      return withDb(input.db, async (c) => {
        const r = await c.query<{ at: Date | null; n: string }>('SELECT max(at) AS at, count(*)::text AS n FROM drill_heartbeat WHERE at <= to_timestamp($1::double precision / 1000)', [input.before]);
        return { ...(r.rows[0]?.at ? { newest: r.rows[0].at.getTime() } : {}), rows: Number(r.rows[0]?.n ?? 0) };
      });
    },

    /** Fault: DROP TABLE on a drill copy, once; `at` is the server's clock just before the drop (the PITR target). */
    async drillDropTable(input: DrillRunRef & { db: DrillDb; table: string; approvedBy?: string }): Promise<FaultRecord> {
      refuseMain(input.db, `drop table ${input.table}`, input.approvedBy);
      return onceFault(input, 'drop-table', () =>
        withDb(input.db, async (c) => {
          const r = await c.query<{ at: Date }>('SELECT clock_timestamp() AS at');
          await c.query(`DROP TABLE IF EXISTS ${quoteIdent(input.table)}`);
          // Close the WAL segment holding the drop, so the archive has what a PITR to "just before" needs.
          await c.query('SELECT pg_switch_wal()');
          return { at: r.rows[0]!.at.getTime(), detail: `DROP TABLE ${input.table} on ${input.db.id}` };
        }),
      );
    },

    /**
     * Fault: a drill copy's data folder is lost under the running server, once. The server goes
     * down as in a crash (pg_ctl stop -m immediate: no shutdown checkpoint, no last WAL switch, so
     * what was not archived yet is lost, as on a real disk loss), then the folder is deleted.
     */
    async drillDeleteDataFolder(input: DrillRunRef & { instanceId: string; dataDir: string }): Promise<FaultRecord> {
      if (!input.instanceId.startsWith('drill-') || !input.dataDir.includes(input.instanceId)) {
        throw ApplicationFailure.nonRetryable(`refusing to delete ${input.dataDir}: not the data folder of drill copy ${input.instanceId}`, 'NotADrillCopy');
      }
      return onceFault(input, 'delete-data-folder', async () => {
        const at = Date.now();
        let crashed = false;
        if (existsSync(path.join(input.dataDir, 'postmaster.pid'))) {
          await runPg(path.join(pgBin, 'pg_ctl'), ['stop', '-D', input.dataDir, '-m', 'immediate', '-w', '-t', '60']).catch((err: unknown) => log.warn({ err: String(err) }, 'immediate stop failed (not running?)'));
          crashed = true;
        }
        await rm(input.dataDir, { recursive: true, force: true });
        log.warn({ dataDir: input.dataDir }, 'drill: data folder deleted');
        return { at, detail: `${crashed ? 'crashed the server (immediate stop) and ' : ''}deleted ${input.dataDir}` };
      });
    },

    /** Fault on a backup: flip bytes in the middle of the largest file of a drill copy's backup, once. */
    async drillCorruptBackup(input: DrillRunRef & { manifestPath: string; approvedBy?: string }): Promise<FaultRecord> {
      const rel = path.relative(backupDir, input.manifestPath);
      const mainOk = rel.startsWith(`main${path.sep}physical${path.sep}`) && !!input.approvedBy?.trim();
      if (rel.startsWith('..') || !(rel.startsWith('drill-') || mainOk)) throw ApplicationFailure.nonRetryable(`refusing to corrupt ${input.manifestPath}: not a drill copy's backup`, 'NotADrillCopy');
      return onceFault(input, 'corrupt-backup', async () => {
        const manifest = JSON.parse(await readFile(input.manifestPath, 'utf8')) as { files: Array<{ path: string; bytes: number }> };
        const biggest = [...manifest.files].sort((a, b) => b.bytes - a.bytes)[0];
        if (!biggest) throw ApplicationFailure.nonRetryable(`${input.manifestPath} lists no files`, 'InvalidInput');
        const file = path.isAbsolute(biggest.path) ? biggest.path : path.join(path.dirname(input.manifestPath), biggest.path);
        const size = (await stat(file)).size;
        const fh = await open(file, 'r+');
        try {
          const at = Math.floor(size / 2);
          const buf = Buffer.alloc(Math.min(64, size - at));
          await fh.read(buf, 0, buf.length, at);
          for (let i = 0; i < buf.length; i += 1) buf[i] = buf[i]! ^ 0xff;
          await fh.write(buf, 0, buf.length, at);
        } finally {
          await fh.close();
        }
        return { at: Date.now(), detail: `flipped ${Math.min(64, size)} bytes in the middle of ${path.relative(backupDir, file)}` };
      });
    },

    /** Rollback on 'main': remove the one backup the drill made and corrupted (its folder), nothing else. */
    async drillRemoveBackup(input: { manifestPath: string; approvedBy?: string }): Promise<boolean> {
      const rel = path.relative(backupDir, input.manifestPath);
      if (!input.approvedBy?.trim() || !/^main\/physical\/[A-Za-z0-9][A-Za-z0-9._-]*\/manifest\.json$/.test(rel)) {
        throw ApplicationFailure.nonRetryable(`refusing to remove ${input.manifestPath}: not a backup of main this drill made`, 'NotADrillCopy');
      }
      const dir = path.dirname(input.manifestPath);
      if (!existsSync(dir)) return false;
      await rm(dir, { recursive: true, force: true });
      log.warn({ approvedBy: input.approvedBy, dir }, 'drill: removed the corrupted backup it made of main');
      return true;
    },

    /** Rollback: remove a drill copy's backups and WAL archive from the backup store. */
    async drillRemoveBackups(instanceId: string): Promise<boolean> {
      if (!/^drill-[a-z0-9-]+$/.test(instanceId)) throw ApplicationFailure.nonRetryable(`refusing to remove the backups of ${instanceId}: not a drill copy`, 'NotADrillCopy');
      const dir = path.join(backupDir, instanceId);
      if (!existsSync(dir)) return false;
      await rm(dir, { recursive: true, force: true });
      return true;
    },

    // ---- delete-volume-data ---------------------------------------------------------------

    /**
     * The volume drill's own demo container (host network, 127.0.0.1:port) with its own named
     * volume at `dataPath` and the heartbeat writer (VOLUME_DRILL_ENTRYPOINT). Refuses (InvalidInput,
     * before creating anything) a container or volume of that name that is not a drill's; reuses
     * its own on a retry. Records the pair in the drill's folder first, for the rollbacks.
     */
    async drillRunVolumeDemo(input: { drillId: string; name: string; port: number; volume: string; dataPath: string; heartbeatIntervalMs: number; image?: string }): Promise<{ name: string; volume: string; healthUrl: string; created: boolean }> {
      const healthUrl = `http://127.0.0.1:${input.port}/health`;
      const existingVolume = await docker.getVolume(input.volume).inspect().catch((err: unknown) => (isStatus(err, 404) ? undefined : Promise.reject(err)));
      if (existingVolume && existingVolume.Labels?.[DRILL_LABEL] !== 'true') throw ApplicationFailure.nonRetryable(`target.volume: a volume named ${input.volume} exists and is not a drill volume`, 'InvalidInput');
      const existing = await docker.getContainer(input.name).inspect().catch((err: unknown) => (isStatus(err, 404) ? undefined : Promise.reject(err)));
      if (existing) {
        if (existing.Config.Labels?.[DRILL_LABEL] !== 'true') throw ApplicationFailure.nonRetryable(`target.service: a container named ${input.name} exists and is not a drill container`, 'InvalidInput');
        if (!(existing.Mounts ?? []).some((m) => m.Type === 'volume' && m.Name === input.volume)) throw ApplicationFailure.nonRetryable(`target.service: drill container ${input.name} does not mount ${input.volume}`, 'InvalidInput');
      }
      await atomicWrite(path.join(drillDir(input.drillId), 'volume.json'), JSON.stringify({ container: input.name, volume: input.volume }));
      if (!existingVolume) await docker.createVolume({ Name: input.volume, Labels: { [DRILL_LABEL]: 'true', 'durable-ops.drill-id': sanitiseId(input.drillId) } });
      if (existing) {
        if (!existing.State.Running) await docker.getContainer(input.name).start().catch((err: unknown) => (isStatus(err, 304) ? undefined : Promise.reject(err)));
        return { name: input.name, volume: input.volume, healthUrl, created: false };
      }
      const container = await docker.createContainer({
        name: input.name,
        Image: input.image ?? env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest',
        Entrypoint: VOLUME_DRILL_ENTRYPOINT,
        Env: [`PORT=${input.port}`, `DATA_DIR=${input.dataPath}`, `HEARTBEAT_SEC=${(input.heartbeatIntervalMs / 1000).toFixed(3)}`],
        Labels: { [DRILL_LABEL]: 'true' },
        Healthcheck: { Test: ['CMD', '/bin/healthcheck'], Interval: 1_000 * NS, Timeout: 2_000 * NS, Retries: 3, StartPeriod: 1_000 * NS },
        HostConfig: { NetworkMode: 'host', Binds: [`${input.volume}:${input.dataPath}`], RestartPolicy: { Name: 'no' } },
      });
      await container.start();
      log.info({ container: input.name, port: input.port, volume: input.volume }, 'volume drill demo container started');
      return { name: input.name, volume: input.volume, healthUrl, created: true };
    },

    /** Seed `files` files of known content into the volume (through the container); their SHA-256. Idempotent. */
    async drillSeedVolume(input: { service: string; dataPath: string; files: number }): Promise<{ files: VolumeFileSum[]; digest: string }> {
      const r = await execIn(input.service, ['sh', '-c', VOLUME_SEED_SCRIPT, 'seed', input.dataPath, String(input.files)]);
      if (r.code !== 0) throw new Error(`seeding ${input.service}:${input.dataPath} exited with ${r.code}: ${r.stderr.trim()}`);
      const files = parseSha256sum(r.stdout);
      if (files.length !== input.files) throw new Error(`seeded ${input.files} files, sha256sum listed ${files.length}`);
      return { files, digest: digestOf(files) };
    },

    /** SHA-256 of the seeded files as the volume holds them now (through the container). Read-only. */
    async drillVolumeChecksums(input: { service: string; dataPath: string }): Promise<{ files: VolumeFileSum[]; digest: string }> {
      const files = await volumeSums(input.service, input.dataPath);
      return { files, digest: digestOf(files) };
    },

    /**
     * Steady state of the volume drill: GET /health answers 200, the seeded files are there with
     * their checksums, and the heartbeat file advances (two reads `intervalMs * 3` apart). Polls
     * until it holds or the deadline.
     */
    async drillProbeVolume(input: { service: string; healthUrl: string; dataPath: string; expected: VolumeFileSum[]; intervalMs: number; timeoutMs: number }): Promise<{ ok: boolean; matching?: number; newestHeartbeat?: number; advancing?: boolean; error?: string }> {
      const ctx = Context.current();
      const t0 = Date.now();
      const lastBeat = async () => {
        const r = await execIn(input.service, ['tail', '-n', '1', `${input.dataPath}/heartbeat.log`]);
        const t = Number(r.stdout.trim());
        return r.code === 0 && /^\d{13}$/.test(r.stdout.trim()) ? t : undefined;
      };
      let last: { ok: boolean; matching?: number; newestHeartbeat?: number; advancing?: boolean; error?: string } = { ok: false, error: 'not probed' };
      for (;;) {
        try {
          const res = await fetch(input.healthUrl, { signal: AbortSignal.timeout(2_000) });
          await res.arrayBuffer().catch(() => undefined);
          if (res.status !== 200) {
            last = { ok: false, error: `GET /health: HTTP ${res.status}` };
          } else {
            const cmp = compareFiles(input.expected, await volumeSums(input.service, input.dataPath));
            const first = await lastBeat();
            await new Promise((r) => setTimeout(r, input.intervalMs * 3));
            const second = await lastBeat();
            const advancing = first !== undefined && second !== undefined && second > first;
            const ok = cmp.ok && advancing;
            last = { ok, matching: cmp.matching, ...(second !== undefined ? { newestHeartbeat: second } : {}), advancing, ...(ok ? {} : { error: !cmp.ok ? `${cmp.matching}/${input.expected.length} files match (${cmp.problem})` : 'heartbeat not advancing' }) };
          }
        } catch (err) {
          const e = err as Error & { cause?: { code?: string } };
          last = { ok: false, error: e.cause?.code ?? e.message };
        }
        if (last.ok || Date.now() - t0 >= input.timeoutMs) return last;
        ctx.heartbeat(last);
        await ctx.sleep(Math.max(200, input.intervalMs));
      }
    },

    /** Detection: poll the seeded files' checksums until they stop matching; when that was seen. */
    async drillDetectVolume(input: { service: string; dataPath: string; expected: VolumeFileSum[]; timeoutMs: number; intervalMs: number }): Promise<Detection> {
      return pollUntilFails(input, async () => {
        try {
          const cmp = compareFiles(input.expected, await volumeSums(input.service, input.dataPath));
          return cmp.ok ? undefined : `${cmp.matching}/${input.expected.length} files match (${cmp.problem})`;
        } catch (err) {
          return (err as Error).message;
        }
      });
    },

    /** Fault: delete the content of the drill's volume (rm -rf inside its drill container), once. */
    async drillDeleteVolumeData(input: DrillRunRef & { service: string; dataPath: string }): Promise<FaultRecord> {
      const info = await docker.getContainer(input.service).inspect();
      if (info.Config.Labels?.[DRILL_LABEL] !== 'true') throw ApplicationFailure.nonRetryable(`refusing to delete data in ${input.service}: not a drill container`, 'NotADrillCopy');
      return onceFault(input, 'delete-volume-data', async () => {
        const at = Date.now();
        const r = await execIn(input.service, ['sh', '-c', 'find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} +', 'fault', input.dataPath]);
        if (r.code !== 0) throw new Error(`rm -rf in ${input.service}:${input.dataPath} exited with ${r.code}: ${r.stderr.trim()}`);
        log.warn({ service: input.service, dataPath: input.dataPath }, 'drill: volume content deleted');
        return { at, detail: `deleted everything under ${input.dataPath} in ${input.service} (rm -rf)` };
      });
    },

    /** Newest heartbeat at or before `before` (ms) that the (restored) volume holds: the RPO's other end. */
    async drillVolumeNewestHeartbeat(input: { service: string; dataPath: string; before: number }): Promise<{ newest?: number; rows: number }> {
      const r = await execIn(input.service, ['cat', `${input.dataPath}/heartbeat.log`]);
      if (r.code !== 0) return { rows: 0 };
      return newestHeartbeatIn(r.stdout, input.before);
    },

    /**
     * Rollbacks of the volume drill, each a no-op when there is nothing to undo: the container,
     * the volume (only the ones this drill recorded and labelled as a drill's) and the volume's
     * backups in the store.
     */
    async drillRemoveVolumeDrill(input: { drillId: string; what: 'container' | 'volume' | 'backups' }): Promise<string> {
      const file = path.join(drillDir(input.drillId), 'volume.json');
      if (!existsSync(file)) return 'nothing recorded';
      const rec = JSON.parse(await readFile(file, 'utf8')) as { container: string; volume: string };
      if (input.what === 'container') {
        const info = await docker.getContainer(rec.container).inspect().catch((err: unknown) => (isStatus(err, 404) ? undefined : Promise.reject(err)));
        if (!info) return `${rec.container} absent`;
        if (info.Config.Labels?.[DRILL_LABEL] !== 'true') throw ApplicationFailure.nonRetryable(`${rec.container} is not a drill container; not removing it`, 'NotADrillCopy');
        await docker.getContainer(rec.container).remove({ force: true });
        return `${rec.container} removed`;
      }
      if (input.what === 'volume') {
        const info = await docker.getVolume(rec.volume).inspect().catch((err: unknown) => (isStatus(err, 404) ? undefined : Promise.reject(err)));
        if (!info) return `${rec.volume} absent`;
        if (info.Labels?.[DRILL_LABEL] !== 'true') throw ApplicationFailure.nonRetryable(`${rec.volume} is not a drill volume; not removing it`, 'NotADrillCopy');
        await docker.getVolume(rec.volume).remove({ force: true });
        return `${rec.volume} removed`;
      }
      const dir = path.join(backupDir, 'volumes', rec.volume);
      if (!existsSync(dir)) return 'none';
      await rm(dir, { recursive: true, force: true });
      return `${dir} removed`;
    },

    /** The report files: report.json, report.md and timeline.svg in the drill's folder (or reportDir). Idempotent. */
    async drillWriteReport(input: { report: DrillReportFile; reportDir?: string }): Promise<{ dir: string; json: string; markdown: string; svg: string; sha256: string }> {
      const dir = input.reportDir ?? drillDir(input.report.drillId);
      const json = `${JSON.stringify(input.report, null, 2)}\n`;
      const files = { json: path.join(dir, 'report.json'), markdown: path.join(dir, 'report.md'), svg: path.join(dir, 'timeline.svg') };
      await atomicWrite(files.json, json);
      await atomicWrite(files.markdown, renderMarkdown(input.report));
      await atomicWrite(files.svg, renderSvg(input.report));
      return { dir, ...files, sha256: createHash('sha256').update(json).digest('hex') };
    },
  };
}

export type DrillActivities = ReturnType<typeof createDrillActivities>;

const fmtMs = (ms: number | undefined) => (ms === undefined ? 'n/a' : ms >= 60_000 ? `${(ms / 60_000).toFixed(2)} min` : `${(ms / 1000).toFixed(2)} s`);
const isoT = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString());

export function renderMarkdown(r: DrillReportFile): string {
  const lines = [
    `# Recovery drill ${r.drillId}`,
    '',
    `- scenario: **${r.scenario}** on ${r.subject}`,
    `- verdict: **${r.verdict.toUpperCase()}** (${r.outcome})`,
    `- RTO: ${fmtMs(r.rto.ms)} (target ${fmtMs(r.rto.targetMs)}): **${r.rto.verdict}**`,
    `- RPO: ${fmtMs(r.rpo.ms)} (target ${fmtMs(r.rpo.targetMs)}): **${r.rpo.verdict}**`,
    `- started ${isoT(r.startedAt)}, finished ${isoT(r.finishedAt)}`,
    ...(r.note ? [`- note: ${r.note}`] : []),
    ...(r.error ? ['', `**Error:** ${r.error}`] : []),
    '',
    '## Timeline',
    '',
    '| event | at | +s from start | detail |',
    '|---|---|---|---|',
    ...r.timeline.map((e) => `| ${e.event} | ${isoT(e.at)} | ${((e.at - r.startedAt) / 1000).toFixed(3)} | ${(e.detail ?? '').replace(/\|/g, '\\|')} |`),
    '',
    '## Steps',
    '',
    '| step | ok | detail |',
    '|---|---|---|',
    ...r.steps.map((s) => `| ${s.name} | ${s.ok ? 'yes' : 'NO'} | ${(s.detail ?? '').replace(/\|/g, '\\|')} |`),
  ];
  if (r.validation.length > 0) {
    lines.push('', '## Data validation (source at the restore point vs recovered)', '', '| table | source rows | recovered rows | checksums equal |', '|---|---|---|---|');
    for (const v of r.validation) lines.push(`| ${v.table} | ${v.source.rows} | ${v.restored?.rows ?? 'missing'} | ${v.ok ? 'yes' : 'NO'} |`);
  }
  if (r.recovery) lines.push('', '## Recovery', '', '```json', JSON.stringify(r.recovery, null, 2), '```');
  lines.push('', '## Rollbacks', '', ...r.rollbacks.map((b) => `- ${b.ok ? '✓' : '✗'} ${b.name}${b.detail ? `: ${b.detail}` : ''}`), '', 'Timeline picture: [timeline.svg](timeline.svg)', '');
  return lines.join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A horizontal timeline: one tick per event (labels alternate above and below), RTO and RPO bars under it. */
export function renderSvg(r: DrillReportFile): string {
  const W = 1000;
  const left = 40;
  const right = W - 40;
  const events = r.timeline;
  const t0 = Math.min(r.startedAt, ...events.map((e) => e.at), r.rpo.newestHeartbeat ?? Infinity);
  const t1 = Math.max(r.finishedAt ?? r.startedAt, ...events.map((e) => e.at), t0 + 1);
  const x = (t: number) => left + ((t - t0) / (t1 - t0)) * (right - left);
  const axisY = 150;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="330" viewBox="0 0 ${W} 330" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="330" fill="white"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">${esc(`drill ${r.drillId}: ${r.scenario} — ${r.verdict.toUpperCase()}`)}</text>`,
    `<line x1="${left}" y1="${axisY}" x2="${right}" y2="${axisY}" stroke="#333" stroke-width="2"/>`,
  ];
  events.forEach((e, i) => {
    const ex = x(e.at).toFixed(1);
    const up = i % 2 === 0;
    // Four label rows (two above, two below the axis) so that close events do not overlap.
    const ty = up ? axisY - 20 - (i % 4 === 0 ? 0 : 36) : axisY + 30 + (i % 4 === 1 ? 0 : 36);
    parts.push(
      `<line x1="${ex}" y1="${axisY - 8}" x2="${ex}" y2="${axisY + 8}" stroke="#1f4e99" stroke-width="2"/>`,
      `<line x1="${ex}" y1="${axisY}" x2="${ex}" y2="${ty - (up ? -4 : 10)}" stroke="#9ab" stroke-dasharray="2,2"/>`,
      `<text x="${ex}" y="${ty}" text-anchor="middle">${esc(e.event)}</text>`,
      `<text x="${ex}" y="${up ? ty - 13 : ty + 12}" text-anchor="middle" fill="#666">+${((e.at - t0) / 1000).toFixed(2)} s</text>`,
    );
  });
  const bar = (label: string, from: number | undefined, ms: number | undefined, y: number, verdict: string, colour: string) => {
    if (from === undefined || ms === undefined) {
      parts.push(`<text x="${left}" y="${y + 12}">${esc(`${label}: n/a`)}</text>`);
      return;
    }
    const x1 = x(from);
    const x2 = Math.max(x(from + ms), x1 + 2);
    parts.push(
      `<rect x="${x1.toFixed(1)}" y="${y}" width="${(x2 - x1).toFixed(1)}" height="16" fill="${colour}" opacity="0.8"/>`,
      `<text x="${(x2 + 6).toFixed(1)}" y="${y + 12}">${esc(`${label} ${fmtMs(ms)} (${verdict})`)}</text>`,
    );
  };
  const fault = events.find((e) => e.event === 'fault injected')?.at;
  bar('RTO', fault, r.rto.ms, 260, r.rto.verdict, r.rto.verdict === 'pass' ? '#2e8b57' : '#c0392b');
  bar('RPO', r.rpo.newestHeartbeat, r.rpo.ms, 290, r.rpo.verdict, r.rpo.verdict === 'pass' ? '#2e8b57' : '#c0392b');
  parts.push('</svg>', '');
  return parts.join('\n');
}
