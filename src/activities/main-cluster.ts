/**
 * The project cluster 'main' (the stack's own PostgreSQL, src/stack/services/postgres.sh) as a
 * drill target: the user's own data, touched only by a recovery drill that says so
 * (allowUserData) with an approval, whose `by` every call here carries and logs.
 *
 * Stopping, starting and replacing main's data folder go through src/stack/pg-main.sh, so the
 * stack keeps its bookkeeping (the recorded postmaster, the session that stops it). Recovery is
 * in place: main keeps its port and its WAL archive, so its consumers (the app, Vault's database
 * engine) reconnect without being switched anywhere.
 */
import { existsSync } from 'node:fs';
import { copyFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import type { Logger } from 'pino';
import { loadConfig } from '../config/env';
import type { DatabaseRef } from '../schemas/database';
import { onceFaultIn, type DrillRunRef } from './drill';
import { chownOwned, mkdirOwned, pgEnv, pgPaths, PgInstances, run, withAdminClient } from './pg-instances';

const PG_MAIN_SCRIPT = fileURLToPath(new URL('../stack/pg-main.sh', import.meta.url));

export interface MainClusterDeps {
  log?: Logger;
  env?: NodeJS.ProcessEnv;
}

/** Who approved touching the user's data (from the drill's input); required by every call that changes main. */
export interface UserDataApproval extends DrillRunRef {
  approvedBy: string;
}

export function createMainClusterActivities(deps: MainClusterDeps = {}) {
  const env = deps.env ?? process.env;
  const paths = () => pgPaths(loadConfig(env));
  const mainRef = (port: number): DatabaseRef => ({ id: 'main', host: '127.0.0.1', port, database: paths().main.database });

  /** pg-main.sh as root (it drops to postgres itself), with the stack's environment. */
  async function script(args: string[], what: string): Promise<string> {
    const scriptEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined && (k.startsWith('DURABLE_OPS_') || k === 'HOME')) scriptEnv[k] = v;
    try {
      return await run('bash', [PG_MAIN_SCRIPT, ...args], { asRoot: true, env: scriptEnv, beatDetails: { main: what }, timeoutMs: 5 * 60_000 });
    } catch (err) {
      const msg = (err as Error).message;
      if (/exited with 3\b/.test(msg)) throw ApplicationFailure.nonRetryable(`main is not run by this durable-ops stack (no recorded postmaster): ${what} refused`, 'NotSupported');
      throw new Error(`pg-main.sh ${args[0]}: ${msg}`);
    }
  }

  function approved(a: UserDataApproval, what: string): void {
    if (!a.approvedBy?.trim()) throw ApplicationFailure.nonRetryable(`${what} on the project cluster 'main' needs an approval`, 'InvalidInput');
    deps.log?.warn({ drillId: a.drillId, approvedBy: a.approvedBy }, `drill on the user's own data: ${what}`);
  }

  /** Once per drill run (recorded in the drill's folder, like its other faults): a retry after a crash does not fault twice. */
  const once = async (drill: DrillRunRef, key: string, act: () => Promise<string>): Promise<{ at: number; detail: string; alreadyDone: boolean }> => {
    const { at, detail, alreadyDone } = await onceFaultIn(path.join(loadConfig(env).DURABLE_OPS_DATA, 'drills'), drill, `main-${key}`, async () => {
      const startedAt = Date.now();
      return { at: startedAt, detail: await act() };
    });
    return { at, detail, alreadyDone };
  };

  async function status(): Promise<{ ref: DatabaseRef; dataDir: string }> {
    const out = (await script(['status'], 'status')).trim().split('\n').at(-1) ?? '';
    const [port, dataDir] = out.split(' ');
    return { ref: mainRef(Number(port)), dataDir: dataDir ?? '' };
  }

  return {
    /** main as a DatabaseRef, if the stack runs it (NotSupported otherwise: nothing to drill safely). */
    async mainClusterStatus(): Promise<{ ref: DatabaseRef; dataDir: string }> {
      return status();
    },

    /** Fault: fast shutdown of main (its recorded postmaster), once per drill run. */
    async stopMainCluster(input: UserDataApproval): Promise<{ at: number; detail: string; alreadyDone: boolean }> {
      approved(input, 'stop PostgreSQL');
      return once(input, 'stop', async () => {
        await script(['stop'], 'stop');
        return "stopped main (fast shutdown of the stack's postmaster)";
      });
    },

    /** Fault: main's data folder is lost (immediate shutdown as in a crash, then the folder deleted), once per drill run. */
    async deleteMainDataFolder(input: UserDataApproval): Promise<{ at: number; detail: string; alreadyDone: boolean }> {
      approved(input, 'delete the data folder');
      return once(input, 'delete-data-folder', async () => {
        await script(['crash-delete'], 'crash-delete');
        return "crashed main (immediate shutdown) and deleted its data folder";
      });
    },

    /** Start main the way the stack does; no-op when it runs. Refuses to initdb over a lost folder. */
    async startMainCluster(): Promise<DatabaseRef> {
      await script(['start'], 'start');
      return (await status()).ref;
    },

    /**
     * Recovery in place: a restored instance (promoted, verified) becomes main's data folder. The
     * instance is stopped cleanly, its timeline history files go into main's WAL archive (so a
     * later point-in-time restore can follow the new timeline), then pg-main.sh swaps the folders
     * and starts main on its own port with its own settings. Idempotent by drill id.
     */
    async adoptAsMain(input: UserDataApproval & { instanceId: string }): Promise<DatabaseRef> {
      approved(input, `replace the data folder by ${input.instanceId}`);
      const p = paths();
      const instances = new PgInstances(p, deps.log);
      const dataDir = instances.dataDir(input.instanceId);
      if (existsSync(path.join(dataDir, 'PG_VERSION'))) {
        await instances.stop(input.instanceId, 'fast');
        const archive = path.join(p.backupDir, 'main', 'wal');
        await mkdirOwned(archive);
        for (const f of await readdir(path.join(dataDir, 'pg_wal'))) {
          if (!f.endsWith('.history') || existsSync(path.join(archive, f))) continue;
          await copyFile(path.join(dataDir, 'pg_wal', f), path.join(archive, f));
          await chownOwned(path.join(archive, f));
        }
        // Its own settings go: main's are written by the stack at the start.
        await rm(path.join(dataDir, 'recovery.signal'), { force: true });
      }
      await script(['adopt', dataDir, input.drillId], 'adopt');
      // The instance's registry entry and folders (its data folder is main's now).
      await instances.drop(input.instanceId);
      const ref = (await status()).ref;
      deps.log?.warn({ drillId: input.drillId, instanceId: input.instanceId }, "main's data folder replaced by a restored copy");
      return ref;
    },

    /**
     * Recovery of a dropped table in place: dump it from a restored copy (PITR to just before the
     * drop) and restore it into main. Already there with the same rows (a retry) = done.
     */
    async copyTableToMain(input: UserDataApproval & { from: DatabaseRef; table: string }): Promise<{ rows: number; alreadyDone: boolean }> {
      approved(input, `restore table ${input.table}`);
      const p = paths();
      const count = (port: number) =>
        withAdminClient(p, { port, database: p.main.database }, async (c) => {
          const exists = await c.query('SELECT to_regclass($1) AS t', [pg.escapeIdentifier(input.table)]);
          if (!(exists.rows[0] as { t: string | null }).t) return undefined;
          return Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${pg.escapeIdentifier(input.table)}`)).rows[0]!.n);
        });
      const want = await count(input.from.port);
      if (want === undefined) throw ApplicationFailure.nonRetryable(`the restored copy ${input.from.id} has no table ${input.table}`, 'ValidationFailed');
      const have = await count(p.main.port);
      if (have === want) return { rows: have, alreadyDone: true };
      const envs = await pgEnv(p);
      const dumpFile = path.join(p.instancesDir, `.${input.from.id}.${input.table}.dump`);
      await run(path.join(p.bin, 'pg_dump'), ['-h', '127.0.0.1', '-p', String(input.from.port), '-U', p.adminUser, '-w', '-d', input.from.database, '-Fc', '-t', input.table, '-f', dumpFile], { env: envs, beatDetails: { copyTable: input.table, step: 'pg_dump' } });
      try {
        // --clean: a half-restored table of a crashed attempt goes first.
        await run(path.join(p.bin, 'pg_restore'), ['-h', '127.0.0.1', '-p', String(p.main.port), '-U', p.adminUser, '-w', '-d', p.main.database, '--clean', '--if-exists', '--single-transaction', '--exit-on-error', dumpFile], { env: envs, beatDetails: { copyTable: input.table, step: 'pg_restore' } });
      } finally {
        await rm(dumpFile, { force: true });
      }
      const after = await count(p.main.port);
      if (after !== want) throw new Error(`${input.table} in main has ${after ?? 'no'} rows after the copy, expected ${want}`);
      return { rows: after, alreadyDone: false };
    },
  };
}

export type MainClusterActivities = ReturnType<typeof createMainClusterActivities>;
