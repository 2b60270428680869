/**
 * PostgreSQL instances we create (restores, drill copies) next to the project cluster, and the
 * plumbing backups share with them: PG binaries run as the `postgres` OS user when we are root
 * (initdb and postgres refuse root), child processes recorded by PID so a retry after a worker
 * SIGKILL stops an orphan of the previous attempt (and only that process), heartbeats while
 * they run.
 *
 * An instance is a folder `<instances>/<id>/` holding `data/` (PGDATA, 0700 postgres), `run/`
 * (its unix socket), `postgres.log` and `instance.json` (the registry entry: port, state),
 * written last. It listens on 127.0.0.1 only, on a free port of PG_INSTANCE_PORT_MIN..MAX, with
 * the project cluster's superuser and password, scram only. Everything is idempotent by id.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, open, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import type { Logger } from 'pino';
import * as seed from '../config/defaults';
import { loadConfig, type Config } from '../config/env';
import type { DatabaseRef } from '../schemas/database';

/** Where everything lives, from the environment postgres.sh exports. */
export interface PgPaths {
  bin: string;
  backupDir: string;
  instancesDir: string;
  adminUser: string;
  adminPasswordFile: string;
  /** The project cluster ('main'). */
  main: { port: number; database: string };
}

export function pgPaths(config: Config): PgPaths {
  const pgDir = path.join(config.DURABLE_OPS_DATA, 'postgres');
  return {
    bin: config.DURABLE_OPS_PG_BIN,
    backupDir: config.DURABLE_OPS_BACKUP_DIR ?? path.join(pgDir, 'backups'),
    instancesDir: config.DURABLE_OPS_PG_INSTANCES_DIR ?? path.join(pgDir, 'instances'),
    adminUser: config.DURABLE_OPS_PG_ADMIN_USER,
    adminPasswordFile: config.DURABLE_OPS_PG_ADMIN_PASSWORD_FILE ?? path.join(pgDir, 'admin.password'),
    main: { port: config.DURABLE_OPS_PG_PORT, database: config.DURABLE_OPS_PG_DATABASE },
  };
}

/** Heartbeat when inside an activity (the same helpers run from tests and benches too). */
export function beat(details?: unknown): void {
  let ctx: Context | undefined;
  try {
    ctx = Context.current();
  } catch {
    return;
  }
  ctx.heartbeat(details);
}

function cancellation(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

const isRoot = () => process.getuid?.() === 0;

let ownerIds: { uid: number; gid: number } | undefined;
/** The postgres OS user's uid/gid (from /etc/passwd), when we run as root. */
function postgresIds(): { uid: number; gid: number } {
  if (ownerIds) return ownerIds;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw ApplicationFailure.nonRetryable('running as root but there is no postgres OS user (Debian package postgresql)', 'TargetUnavailable');
  const [, , uid, gid] = line.split(':');
  ownerIds = { uid: Number(uid), gid: Number(gid) };
  return ownerIds;
}

/** mkdir -p, each created level (and the leaf) owned by postgres when we are root. */
/**
 * Where an instance's unix socket lives. PostgreSQL refuses a socket path over 107 bytes, which a
 * deep instances folder (e.g. /var/lib/durable-ops/postgres-<hash>/instances/<long id>/run) exceeds:
 * then the socket goes to a short per-instance folder under the system temp folder.
 */
export function socketDirFor(instanceDir: string): string {
  const preferred = path.join(instanceDir, 'run');
  if (`${preferred}/.s.PGSQL.65535`.length <= 107) return preferred;
  return path.join(os.tmpdir(), 'durable-ops-pg', createHash('sha256').update(instanceDir).digest('hex').slice(0, 16));
}

export async function mkdirOwned(dir: string, mode = 0o750): Promise<void> {
  const missing: string[] = [];
  for (let d = path.resolve(dir); !existsSync(d); d = path.dirname(d)) missing.unshift(d);
  await mkdir(dir, { recursive: true });
  for (const d of [...missing, path.resolve(dir)]) {
    if (isRoot()) {
      const { uid, gid } = postgresIds();
      await chown(d, uid, gid);
    }
  }
  await chmod(dir, mode);
}

export async function chownOwned(file: string): Promise<void> {
  if (isRoot()) {
    const { uid, gid } = postgresIds();
    await chown(file, uid, gid);
  }
}

/** Write a file atomically (temp + fsync + rename + fsync of the folder). */
export async function writeFileAtomic(file: string, content: string, mode = 0o640): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  const dh = await open(path.dirname(file), 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

export interface RunOptions {
  /** Extra environment (PGPASSWORD...). Never logged. */
  env?: Record<string, string>;
  /** Record the child's PID and command line here while it runs (see killRecorded). */
  pidFile?: string;
  /** Heartbeat details while it runs. */
  beatDetails?: unknown;
  /** Run as root even when we are root (e.g. tar of a root-owned folder). */
  asRoot?: boolean;
  timeoutMs?: number;
}

/** The exact /proc/<pid>/cmdline of a process we start (setpriv execs the binary). */
const cmdlineOf = (argv: string[]) => `${argv.join('\0')}\0`;

/**
 * Run a program to completion: as postgres when we are root, heartbeating every 2 s, killed on
 * activity cancellation or timeout. Resolves with stdout; rejects with the stderr tail.
 */
export function run(bin: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const asOwner = isRoot() && !opts.asRoot;
  const argv = [bin, ...args];
  const [cmd, ...cmdArgs] = asOwner ? ['setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups', '--', ...argv] : argv;
  return new Promise<string>((resolve, reject) => {
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' };
    // cwd /: the postgres user may not be allowed into the caller's folder (a clone under a private one).
    const child = spawn(cmd!, cmdArgs, { env: { ...env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout = (stdout + d.toString()).slice(-1_000_000)));
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8_000)));
    if (opts.pidFile && child.pid) {
      // The child runs `bin args` once setpriv has exec'd: that is the command line to match later.
      void writeFile(opts.pidFile, `${child.pid}\n${JSON.stringify(argv)}\n`).catch(() => undefined);
    }
    const beating = setInterval(() => beat(opts.beatDetails ?? { running: path.basename(bin) }), 2_000);
    const signal = cancellation();
    const onAbort = () => child.kill('SIGKILL');
    signal?.addEventListener('abort', onAbort);
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.on('error', (err) => {
      clearInterval(beating);
      reject(err);
    });
    child.on('close', (code, sig) => {
      void (async () => {
        clearInterval(beating);
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (opts.pidFile) await rm(opts.pidFile, { force: true });
        if (code !== 0) throw new Error(`${path.basename(bin)} ${sig ? `killed by ${sig}` : `exited with ${code}`}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
        return stdout;
      })().then(resolve, reject);
    });
  });
}

/**
 * SHA-256 of a file by `openssl dgst` (about 1 GB/s with SHA-NI, three times coreutils
 * sha256sum): its own process, so it runs on another core beside a restore.
 */
export async function sha256sum(file: string): Promise<string> {
  const out = await run('openssl', ['dgst', '-sha256', '-r', file], { asRoot: true, beatDetails: { hashing: path.basename(file) } });
  return out.split(' ')[0]!;
}

/**
 * A previous attempt's child (recorded by run's pidFile) still running after its worker was
 * SIGKILLed: kill it, but only if that PID still runs that very command line.
 */
export async function killRecorded(pidFile: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch {
    return false;
  }
  const [pidLine, argvLine] = text.split('\n');
  const pid = Number(pidLine);
  let killed = false;
  try {
    const argv = JSON.parse(argvLine ?? '[]') as string[];
    const actual = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    if (pid > 1 && actual === cmdlineOf(argv)) {
      process.kill(pid, 'SIGKILL');
      killed = true;
      for (let i = 0; i < 50 && existsSync(`/proc/${pid}`); i++) await sleep(100);
    }
  } catch {
    // gone already
  }
  await rm(pidFile, { force: true });
  return killed;
}

export async function adminPassword(paths: PgPaths): Promise<string> {
  return (await readFile(paths.adminPasswordFile, 'utf8')).trim();
}

/** libpq environment for the admin (password by env, never on a command line). */
export async function pgEnv(paths: PgPaths): Promise<Record<string, string>> {
  return { PGPASSWORD: await adminPassword(paths), PGCONNECT_TIMEOUT: '10' };
}

/** A pg client as the admin on a DatabaseRef (or another database of it). */
export async function withAdminClient<T>(paths: PgPaths, ref: Pick<DatabaseRef, 'port'> & { database: string }, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: '127.0.0.1', port: ref.port, database: ref.database, user: paths.adminUser, password: await adminPassword(paths), connectionTimeoutMillis: 5_000, application_name: 'durable-ops-backup' });
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * archive_command into a WAL archive folder (the same as postgres.sh's): an already archived
 * identical segment counts as done (a retry after a crash succeeds), a different one fails;
 * copy to a temp name, flush, rename. Quoted for postgresql.conf (no single quotes inside).
 */
export function archiveCommand(walDir: string): string {
  return `d=${walDir}; if [ -f "$d/%f" ]; then cmp -s "%p" "$d/%f"; else cp "%p" "$d/.%f.tmp" && sync "$d/.%f.tmp" && mv "$d/.%f.tmp" "$d/%f"; fi`;
}

export const HBA = `# Written by durable-ops (src/activities/pg-instances.ts): passwords (scram) only, loopback only.
local   all          all                  scram-sha-256
host    all          all   127.0.0.1/32   scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
`;

/** The instance's own settings (durable-ops.conf, included by its postgresql.conf). */
export function instanceConf(o: { port: number; socketDir: string; archiveDir?: string; recovery?: { restoreFrom: string; targetTime?: string } }): string {
  const lines = [
    '# Written by durable-ops (src/activities/pg-instances.ts).',
    "listen_addresses = '127.0.0.1'",
    `port = ${o.port}`,
    `unix_socket_directories = '${o.socketDir}'`,
    "password_encryption = 'scram-sha-256'",
    'wal_level = replica',
    'max_wal_senders = 10',
    `archive_mode = ${o.archiveDir ? 'on' : 'off'}`,
    ...(o.archiveDir ? [`archive_command = '${archiveCommand(o.archiveDir)}'`, `archive_timeout = ${seed.WAL_ARCHIVE_TIMEOUT_S}`] : []),
    'logging_collector = off',
  ];
  if (o.recovery) {
    lines.push(`restore_command = 'cp "${o.recovery.restoreFrom}/%f" "%p"'`, "recovery_target_action = 'promote'", "recovery_target_timeline = 'latest'");
    if (o.recovery.targetTime) lines.push(`recovery_target_time = '${o.recovery.targetTime}'`, 'recovery_target_inclusive = on');
  }
  return `${lines.join('\n')}\n`;
}

/** A backup folder is complete once its manifest exists (src/activities/backup.ts writes it last). */
const BACKUP_MANIFEST = 'manifest.json';

/** What dropInstance did: the instance, and its WAL archive in the backup store. */
export interface DropResult {
  dropped: boolean;
  walArchive:
    | { state: 'none' }
    | { state: 'removed'; dir: string; files: number; storeFolderRemoved: boolean }
    | { state: 'kept'; dir: string; files: number; backups: string[] };
}

export interface InstanceRecord {
  id: string;
  port: number;
  database: string;
  dataDir: string;
  /** 'restoring' until a restore completed; a record in that state is half done and is redone or dropped. */
  state: 'creating' | 'restoring' | 'ready';
  archive: boolean;
  createdAt: string;
  restoredFrom?: { source: string; kind: string; backupId: string; recoveryTarget: string; restoredAt: string };
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** The instances registry and lifecycle. */
export class PgInstances {
  constructor(
    readonly paths: PgPaths,
    private readonly log?: Logger,
  ) {}

  dir(id: string): string {
    return path.join(this.paths.instancesDir, id);
  }
  dataDir(id: string): string {
    return path.join(this.dir(id), 'data');
  }
  private recordFile(id: string): string {
    return path.join(this.dir(id), 'instance.json');
  }
  /** Where run() records a child of a half-done create/restore of this instance. */
  pidFile(id: string): string {
    return path.join(this.paths.instancesDir, `.${id}.child.pid`);
  }

  static refuseMain(id: string): void {
    if (id === 'main') throw ApplicationFailure.nonRetryable("'main' is the project cluster, not an instance we created", 'InvalidInput');
  }

  async read(id: string): Promise<InstanceRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.recordFile(id), 'utf8')) as InstanceRecord;
    } catch {
      return undefined;
    }
  }

  async write(rec: InstanceRecord): Promise<void> {
    await writeFileAtomic(this.recordFile(rec.id), `${JSON.stringify(rec, null, 2)}\n`);
  }

  async list(): Promise<InstanceRecord[]> {
    const names = existsSync(this.paths.instancesDir) ? await readdir(this.paths.instancesDir) : [];
    const recs = await Promise.all(names.filter((n) => !n.startsWith('.')).map((n) => this.read(n)));
    return recs.filter((r): r is InstanceRecord => r !== undefined);
  }

  ref(rec: InstanceRecord): DatabaseRef {
    return { id: rec.id, host: '127.0.0.1', port: rec.port, database: rec.database };
  }

  /** A free loopback port in the range, not recorded by another instance. */
  async pickPort(except?: string): Promise<number> {
    const taken = new Set((await this.list()).filter((r) => r.id !== except).map((r) => r.port));
    const span = seed.PG_INSTANCE_PORT_MAX - seed.PG_INSTANCE_PORT_MIN + 1;
    const offset = Math.floor(Math.random() * span);
    for (let i = 0; i < span; i++) {
      const port = seed.PG_INSTANCE_PORT_MIN + ((offset + i) % span);
      if (!taken.has(port) && (await portFree(port))) return port;
    }
    throw new Error(`no free port in 127.0.0.1:${seed.PG_INSTANCE_PORT_MIN}-${seed.PG_INSTANCE_PORT_MAX}`);
  }

  async running(id: string): Promise<boolean> {
    if (!existsSync(path.join(this.dataDir(id), 'PG_VERSION'))) return false;
    try {
      await run(path.join(this.paths.bin, 'pg_ctl'), ['status', '-D', this.dataDir(id)]);
      return true;
    } catch {
      return false;
    }
  }

  /** Write durable-ops.conf (and pg_hba.conf) into the instance's data folder. */
  async configure(rec: InstanceRecord, recovery?: { restoreFrom: string; targetTime?: string }): Promise<void> {
    const archiveDir = rec.archive ? path.join(this.paths.backupDir, rec.id, 'wal') : undefined;
    if (archiveDir) await mkdirOwned(archiveDir);
    const socketDir = socketDirFor(this.dir(rec.id));
    await mkdirOwned(socketDir, 0o755);
    for (const [name, text] of [
      ['durable-ops.conf', instanceConf({ port: rec.port, socketDir, archiveDir, recovery })],
      ['pg_hba.conf', HBA],
    ] as const) {
      const file = path.join(rec.dataDir, name);
      await writeFile(file, text, { mode: 0o600 });
      await chownOwned(file);
    }
  }

  /** pg_ctl start (waits until it accepts connections, or until consistent in a recovery). */
  async start(rec: InstanceRecord, timeoutMs: number = seed.PG_START_TIMEOUT_MS): Promise<void> {
    if (await this.running(rec.id)) return;
    // The recorded port may have been taken meanwhile (the instance was stopped): take another.
    if (!(await portFree(rec.port))) {
      rec.port = await this.pickPort(rec.id);
      await this.configure(rec);
      await this.write(rec);
    }
    await rm(path.join(rec.dataDir, 'postmaster.pid'), { force: true }).catch(() => undefined);
    const logFile = path.join(this.dir(rec.id), 'postgres.log');
    if (!existsSync(logFile)) {
      await writeFile(logFile, '');
      await chownOwned(logFile);
    }
    try {
      await run(path.join(this.paths.bin, 'pg_ctl'), ['start', '-D', rec.dataDir, '-l', logFile, '-w', '-t', String(Math.ceil(timeoutMs / 1000))], { beatDetails: { starting: rec.id } });
    } catch (err) {
      throw new Error(`${rec.id}: PostgreSQL did not start: ${(err as Error).message}; log: ${await this.logTail(rec.id)}`);
    }
  }

  async logTail(id: string, lines = 5): Promise<string> {
    try {
      return (await readFile(path.join(this.dir(id), 'postgres.log'), 'utf8')).trim().split('\n').slice(-lines).join(' | ');
    } catch {
      return '(no log)';
    }
  }

  async stop(id: string, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!(await this.running(id))) return;
    await run(path.join(this.paths.bin, 'pg_ctl'), ['stop', '-D', this.dataDir(id), '-m', mode, '-w', '-t', '60'], { beatDetails: { stopping: id } });
  }

  /** Stop and delete everything of an instance (its folder and registry entry), and any orphan child; see remove(). */
  async drop(id: string): Promise<boolean> {
    return (await this.remove(id)).dropped;
  }

  /**
   * drop(), with what became of the instance's WAL archive (`<store>/<id>/wal`): stopped first
   * (the archiver writes there), the archive removed when no completed base backup of the
   * instance remains in the store, else kept. Runs even when the instance is gone already, so a
   * retry after a crash finishes the job.
   */
  async remove(id: string): Promise<DropResult> {
    PgInstances.refuseMain(id);
    await killRecorded(this.pidFile(id));
    const present = existsSync(this.dir(id));
    if (present) await this.stop(id, 'immediate').catch((err: unknown) => this.log?.warn({ instance: id, err: String(err) }, 'stop before drop failed'));
    const walArchive = await this.removeArchive(id);
    if (present) {
      await rm(this.dir(id), { recursive: true, force: true });
      await rm(socketDirFor(this.dir(id)), { recursive: true, force: true });
    }
    return { dropped: present, walArchive };
  }

  /**
   * The WAL archive of a dropped instance: a base backup without its WAL is useless, and WAL
   * without a base backup too. So: no completed physical backup left -> remove the archive (and
   * the store folder once empty); otherwise keep it (backupDatabase's retention manages it).
   * Logical backups need no WAL and stay either way. Never the project cluster's ('main').
   */
  async removeArchive(id: string): Promise<DropResult['walArchive']> {
    PgInstances.refuseMain(id);
    // The store folder is keyed by id: an odd id never reaches outside it (or into volumes/).
    if (!/^[a-z0-9][a-z0-9-]*$/.test(id) || id === 'volumes') {
      this.log?.warn({ instance: id }, 'not an instance id: its backup store folder is left alone');
      return { state: 'none' };
    }
    const storeDir = path.join(this.paths.backupDir, id);
    const walDir = path.join(storeDir, 'wal');
    if (!existsSync(walDir)) {
      await this.removeIfEmpty(storeDir);
      return { state: 'none' };
    }
    const files = (await readdir(walDir)).filter((f) => !f.startsWith('.')).length;
    const physicalDir = path.join(storeDir, 'physical');
    const backups: string[] = [];
    if (existsSync(physicalDir)) {
      for (const e of await readdir(physicalDir, { withFileTypes: true })) {
        if (e.isDirectory() && !e.name.startsWith('.') && existsSync(path.join(physicalDir, e.name, BACKUP_MANIFEST))) backups.push(e.name);
      }
    }
    if (backups.length > 0) {
      this.log?.info({ instance: id, walDir, files, backups }, 'instance dropped: WAL archive kept for its base backups');
      return { state: 'kept', dir: walDir, files, backups: backups.sort() };
    }
    await rm(walDir, { recursive: true, force: true });
    const storeFolderRemoved = await this.removeIfEmpty(storeDir);
    this.log?.info({ instance: id, walDir, files, storeFolderRemoved }, 'instance dropped: WAL archive removed (no base backup left)');
    return { state: 'removed', dir: walDir, files, storeFolderRemoved };
  }

  /** rmdir `dir` (and its empty physical/ and logical/ folders) if nothing else is in it. */
  private async removeIfEmpty(dir: string): Promise<boolean> {
    if (!existsSync(dir)) return false;
    for (const kind of ['physical', 'logical']) {
      const sub = path.join(dir, kind);
      if (existsSync(sub) && (await readdir(sub)).length === 0) await rmdir(sub).catch(() => undefined);
    }
    if ((await readdir(dir)).length > 0) return false;
    await rmdir(dir).catch(() => undefined);
    return !existsSync(dir);
  }

  /** A new, empty folder for an instance (owned by postgres), with a registry entry in `state`. */
  async prepare(id: string, state: InstanceRecord['state'], archive: boolean, database: string): Promise<InstanceRecord> {
    await this.drop(id);
    await mkdirOwned(this.paths.instancesDir);
    await mkdirOwned(this.dir(id));
    await mkdirOwned(this.dataDir(id), 0o700);
    const rec: InstanceRecord = { id, port: await this.pickPort(id), database, dataDir: this.dataDir(id), state, archive, createdAt: new Date().toISOString() };
    await this.write(rec);
    return rec;
  }

  /** createInstance: initdb + start, with the project's superuser; a database `database`. */
  async create(id: string, archive: boolean, database = 'app'): Promise<InstanceRecord> {
    PgInstances.refuseMain(id);
    const existing = await this.read(id);
    if (existing?.state === 'ready') {
      await this.start(existing);
      return existing;
    }
    const rec = await this.prepare(id, 'creating', archive, database);
    const pwfile = path.join(this.dir(id), '.pwfile');
    await writeFile(pwfile, await adminPassword(this.paths), { mode: 0o600 });
    await chownOwned(pwfile);
    try {
      await run(path.join(this.paths.bin, 'initdb'), ['-D', rec.dataDir, '-U', this.paths.adminUser, `--pwfile=${pwfile}`, '--auth-local=scram-sha-256', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'], {
        pidFile: this.pidFile(id),
        beatDetails: { initdb: id },
      });
    } finally {
      await rm(pwfile, { force: true });
    }
    await writeFile(path.join(rec.dataDir, 'postgresql.conf'), `${await readFile(path.join(rec.dataDir, 'postgresql.conf'), 'utf8')}\ninclude_if_exists = 'durable-ops.conf'\n`);
    await this.configure(rec);
    await this.start(rec);
    await withAdminClient(this.paths, { port: rec.port, database: 'postgres' }, async (c) => {
      const exists = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (exists.rowCount === 0) await c.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
    });
    rec.state = 'ready';
    await this.write(rec);
    this.log?.info({ instance: id, port: rec.port }, 'instance created');
    return rec;
  }
}

export interface PgInstanceDeps {
  log?: Logger;
  env?: NodeJS.ProcessEnv;
}

export function createPgInstanceActivities(deps: PgInstanceDeps = {}) {
  const instances = () => new PgInstances(pgPaths(loadConfig(deps.env ?? process.env)), deps.log);
  return {
    /** A fresh instance (initdb + start) on a free loopback port; if it exists already, (re)start it. */
    async createInstance(input: { instanceId: string; archive: boolean }): Promise<DatabaseRef> {
      const i = instances();
      return i.ref(await i.create(input.instanceId, input.archive));
    },

    async startInstance(instanceId: string): Promise<DatabaseRef> {
      PgInstances.refuseMain(instanceId);
      const i = instances();
      const rec = await i.read(instanceId);
      if (!rec) throw ApplicationFailure.nonRetryable(`no instance ${instanceId}`, 'InstanceNotFound');
      if (rec.state !== 'ready') throw ApplicationFailure.nonRetryable(`instance ${instanceId} is half ${rec.state === 'restoring' ? 'restored' : 'created'}; drop it`, 'InstanceIncomplete');
      await i.start(rec);
      return i.ref(rec);
    },

    /** Fast shutdown; no-op when stopped or absent. */
    async stopInstance(instanceId: string): Promise<void> {
      PgInstances.refuseMain(instanceId);
      await instances().stop(instanceId);
    },

    /**
     * Stop and delete its folder and registry entry, and its WAL archive unless a base backup of
     * it remains (the result says which); no-op if absent; never 'main'.
     */
    async dropInstance(instanceId: string): Promise<DropResult> {
      return instances().remove(instanceId);
    },

    async instanceDataDir(instanceId: string): Promise<string> {
      PgInstances.refuseMain(instanceId);
      return instances().dataDir(instanceId);
    },
  };
}

export type PgInstanceActivities = ReturnType<typeof createPgInstanceActivities>;
