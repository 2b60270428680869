/**
 * Backups and restores of PostgreSQL (and Docker volumes) through the backup store:
 *   <store>/<db>/physical/<backupId>/  pg_basebackup -Ft (base.tar, backup_manifest) + manifest.json
 *   <store>/<db>/logical/<backupId>/   pg_dump -Fc (<database>.dump) + pg_dumpall --roles-only + manifest.json
 *   <store>/<db>/wal/                  the WAL archive (archive_command of the cluster)
 *   <store>/volumes/<volume>/<backupId>/ volume.tar + manifest.json
 * manifest.json is written last, atomically: a folder without one does not exist.
 *
 * Physical backups use `-Ft -X none --no-manifest` (our manifest.json holds the checksums): the WAL from the backup's start to its end is in the archive
 * (pg_basebackup waits for it to be archived; we check), so one archive serves both the base
 * backups and point-in-time recovery, and retention keeps the archive from the oldest kept base
 * backup's start segment. A cluster without an archive gets a self-contained `-X fetch` backup.
 *
 * Idempotent: ids are chosen by the workflow; a retry finds a finished backup by its manifest,
 * or kills the previous attempt's orphan child (recorded PID) and redoes the folder. A restore
 * records its instance as 'restoring' first and 'ready' last; a retry redoes a half-done one.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import * as seed from '../config/defaults';
import { loadConfig } from '../config/env';
import type { BackupKind, BackupManifest, DatabaseRef, ManifestFile } from '../schemas/database';
import { demuxDockerLog } from './docker';
import { beat, chownOwned, killRecorded, mkdirOwned, pgEnv, pgPaths, PgInstances, run, sha256sum, withAdminClient, writeFileAtomic, type PgPaths } from './pg-instances';

export const MANIFEST = 'manifest.json';
const WAL_SEGMENT_BYTES = 16n * 1024n * 1024n;
const WAL_NAME = /^([0-9A-F]{8})([0-9A-F]{16})(\.partial|\.[0-9A-F]{8}\.backup)?$/;

// ---- pure logic (unit-tested) -------------------------------------------------------------

/** "0/2000028" -> bigint. */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(lsn);
  if (!m) throw new Error(`not an LSN: ${lsn}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** The WAL segment file holding an LSN (16 MB segments). */
export function walFileName(timeline: number, lsn: bigint): string {
  const segNo = lsn / WAL_SEGMENT_BYTES;
  const perId = 0x1_0000_0000n / WAL_SEGMENT_BYTES;
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(segNo / perId)}${hex(segNo % perId)}`;
}

/** All segment names from start to stop (same timeline), inclusive. */
export function walRange(start: string, stop: string): string[] {
  const tli = start.slice(0, 8);
  const seg = (n: string) => (BigInt(`0x${n.slice(8, 16)}`) << 8n) | BigInt(`0x${n.slice(16, 24)}`);
  const out: string[] = [];
  for (let s = seg(start); s <= seg(stop) && out.length < 100_000; s++) {
    out.push(`${tli}${(s >> 8n).toString(16).toUpperCase().padStart(8, '0')}${(s & 0xffn).toString(16).toUpperCase().padStart(8, '0')}`);
  }
  return out;
}

/** Newest first: by consistent-until time, then by id. */
export function sortManifests(ms: BackupManifest[]): BackupManifest[] {
  return [...ms].sort((a, b) => Date.parse(b.consistentUntil) - Date.parse(a.consistentUntil) || b.backupId.localeCompare(a.backupId));
}

/**
 * Retention: which backups to remove (keep the newest `keep`, and always `current`) and which
 * manifest-less folders (abandoned attempts older than the grace period, never `current`).
 */
export function selectRetention(o: { manifests: BackupManifest[]; keep: number; current?: string; incomplete: Array<{ backupId: string; mtimeMs: number }>; nowMs: number; graceMs?: number }): { kept: BackupManifest[]; remove: string[] } {
  const sorted = sortManifests(o.manifests);
  const kept = sorted.slice(0, o.keep);
  const cur = sorted.find((m) => m.backupId === o.current);
  if (cur && !kept.includes(cur)) kept.push(cur);
  const remove = sorted.filter((m) => !kept.includes(m)).map((m) => m.backupId);
  const grace = o.graceMs ?? seed.BACKUP_INCOMPLETE_GRACE_MS;
  for (const d of o.incomplete) if (d.backupId !== o.current && o.nowMs - d.mtimeMs > grace) remove.push(d.backupId);
  return { kept, remove };
}

/**
 * WAL archive files no kept base backup needs: segments (and .backup/.partial files) before the
 * oldest kept backup's start segment, timelines aside (as pg_archivecleanup); .history files stay.
 */
export function walToRemove(files: string[], oldestStartWal: string | undefined): string[] {
  if (!oldestStartWal) return [];
  const keepFrom = oldestStartWal.slice(8, 24);
  return files.filter((f) => {
    const m = WAL_NAME.exec(f);
    return m !== null && m[2]! < keepFrom;
  });
}

/** The smallest start segment of the kept base backups (timelines aside); none if one lacks it. */
export function oldestStartWal(kept: BackupManifest[]): string | undefined {
  if (kept.length === 0 || kept.some((m) => !m.startWal)) return undefined;
  return kept.map((m) => m.startWal!).sort((a, b) => a.slice(8).localeCompare(b.slice(8)))[0];
}

/** "2026-11-30 07:21:21 UTC" (STOP TIME of a .backup file) -> ISO, if the zone is UTC/GMT. */
export function parseBackupTime(text: string | undefined): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (UTC|GMT)$/.exec(text?.trim() ?? '');
  return m ? new Date(`${m[1]}T${m[2]}Z`).toISOString() : undefined;
}

// ---- store ----------------------------------------------------------------------------------

export class BackupStore {
  constructor(readonly paths: PgPaths) {}

  kindDir(dbId: string, kind: BackupKind | 'volume'): string {
    return kind === 'volume' ? path.join(this.paths.backupDir, 'volumes', dbId) : path.join(this.paths.backupDir, dbId, kind);
  }
  backupDir(dbId: string, kind: BackupKind | 'volume', backupId: string): string {
    return path.join(this.kindDir(dbId, kind), backupId);
  }
  walDir(dbId: string): string {
    return path.join(this.paths.backupDir, dbId, 'wal');
  }

  async readManifest(dir: string): Promise<BackupManifest | undefined> {
    try {
      return JSON.parse(await readFile(path.join(dir, MANIFEST), 'utf8')) as BackupManifest;
    } catch {
      return undefined;
    }
  }

  /** Manifests (newest first) and manifest-less folders of one kind. */
  async scan(dbId: string, kind: BackupKind | 'volume'): Promise<{ manifests: BackupManifest[]; incomplete: Array<{ backupId: string; mtimeMs: number }> }> {
    const dir = this.kindDir(dbId, kind);
    const names = existsSync(dir) ? (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name) : [];
    const manifests: BackupManifest[] = [];
    const incomplete: Array<{ backupId: string; mtimeMs: number }> = [];
    for (const name of names) {
      const m = await this.readManifest(path.join(dir, name));
      if (m) manifests.push(m);
      else incomplete.push({ backupId: name, mtimeMs: (await stat(path.join(dir, name))).mtimeMs });
    }
    return { manifests: sortManifests(manifests), incomplete };
  }

  async walFiles(dbId: string): Promise<string[]> {
    const dir = this.walDir(dbId);
    return existsSync(dir) ? (await readdir(dir)).filter((f) => !f.startsWith('.')).sort() : [];
  }
}

/** Up to this size a file is hashed in this process: starting openssl costs more than hashing it. */
const IN_PROCESS_HASH_MAX_BYTES = 8 * 2 ** 20;

/** SHA-256 of a file: small ones in this process, big ones by openssl in its own process (another core). */
export async function sha256File(file: string): Promise<string> {
  if ((await stat(file)).size <= IN_PROCESS_HASH_MAX_BYTES) return createHash('sha256').update(await readFile(file)).digest('hex');
  return sha256sum(file);
}

/**
 * SHA-256 of a file another process is still writing, in one read beside the writer: read what
 * has been written so far at increasing offsets, wait `pollMs` when caught up, and stop at the
 * end of the file once `writer` has settled (seen before that last read, so nothing written
 * before the exit is missed). The hash is ready about when the writer is, instead of a full
 * re-read after it. Only for append-only writers (pg_basebackup -Ft; not pg_dump -Fc to a file,
 * which seeks back to rewrite its table of contents). The file may appear late; if the writer
 * settles without creating it, this fails.
 */
export async function sha256Following(file: string, writer: Promise<unknown>, opts: { pollMs?: number; chunkBytes?: number } = {}): Promise<{ sha256: string; bytes: number }> {
  let settled = false;
  writer.then(
    () => (settled = true),
    () => (settled = true),
  );
  const pollMs = opts.pollMs ?? 20;
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(opts.chunkBytes ?? 2 ** 20);
  let bytes = 0;
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    for (;;) {
      const last = settled;
      if (!fh) {
        fh = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return undefined;
          throw err;
        });
        if (!fh) {
          if (last) throw new Error(`${file} was not written`);
          await sleep(pollMs);
          continue;
        }
      }
      const { bytesRead } = await fh.read(buf, 0, buf.length, bytes);
      if (bytesRead > 0) {
        hash.update(buf.subarray(0, bytesRead));
        bytes += bytesRead;
      } else if (last) {
        break;
      } else {
        await sleep(pollMs);
      }
    }
  } finally {
    await fh?.close();
  }
  return { sha256: hash.digest('hex'), bytes };
}

async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = path.join(prefix, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(dir, rel)));
    else if (e.isFile() && e.name !== MANIFEST && !e.name.startsWith('.')) out.push(rel);
  }
  return out.sort();
}

/** Size and SHA-256 of every file of a backup folder. */
export async function describeFiles(dir: string): Promise<ManifestFile[]> {
  const files: ManifestFile[] = [];
  for (const rel of await filesUnder(dir)) {
    const full = path.join(dir, rel);
    files.push({ path: rel, bytes: (await stat(full)).size, sha256: await sha256File(full) });
  }
  return files;
}

export const mismatch = (f: ManifestFile, sum: string) => `${f.path}: SHA-256 mismatch (${sum.slice(0, 12)}..., the manifest says ${f.sha256.slice(0, 12)}...)`;

/** The file a restore streams (and hashes on the way): base.tar or the dump. */
export function streamedFile(m: { kind: string; files: ManifestFile[] }): string | undefined {
  return m.kind === 'physical' ? 'base.tar' : m.files.find((f) => f.path.endsWith('.dump'))?.path;
}

/** Check a backup folder against its manifest (sizes of all, checksums of all but `sizeOnly`); the first problem, or ok. */
export async function checkFiles(dir: string, manifest: { files: ManifestFile[] }, sizeOnly?: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  for (const f of manifest.files) {
    const full = path.join(dir, f.path);
    if (!existsSync(full)) return { ok: false, reason: `${f.path} is missing` };
    const size = (await stat(full)).size;
    if (size !== f.bytes) return { ok: false, reason: `${f.path}: ${size} bytes, the manifest says ${f.bytes}` };
    if (f.path === sizeOnly) continue;
    const sum = await sha256File(full);
    if (sum !== f.sha256) return { ok: false, reason: mismatch(f, sum) };
  }
  return { ok: true };
}

/**
 * Run a restore step that reads `file` of the backup while openssl hashes it, and fail it
 * as BackupCorrupt (non-retryable: the workflow falls back to the previous backup) when the
 * checksum disagrees, even if the step itself failed on the damaged data first. `hashing` is a
 * checksum of the file started earlier (see hashEarly); when it is known bad already, the step
 * does not run at all.
 */
async function streamVerified(dir: string, m: BackupManifest, fileName: string, step: (file: string) => Promise<unknown>, hashing?: Promise<string>): Promise<void> {
  const f = m.files.find((x) => x.path === fileName);
  if (!f) throw ApplicationFailure.nonRetryable(`${m.backupId}: ${fileName} is not in the manifest`, 'BackupCorrupt');
  const file = path.join(dir, fileName);
  const corrupt = (actual: string) => ApplicationFailure.create({ type: 'BackupCorrupt', nonRetryable: true, message: mismatch(f, actual), details: [{ backupId: m.backupId }] });
  let known: string | undefined;
  const sumOf = (hashing ?? sha256File(file)).then((s) => (known = s));
  await Promise.resolve();
  if (known !== undefined && known !== f.sha256) throw corrupt(known);
  // The restore and the checksum read the same file side by side (two processes, two cores).
  const [stepResult, sum] = await Promise.allSettled([step(file), sumOf]);
  const actual = sum.status === 'fulfilled' ? sum.value : 'unreadable';
  if (actual !== f.sha256) throw corrupt(actual);
  if (stepResult.status === 'rejected') throw stepResult.reason;
}

/** Start hashing a backup file now (beside other set-up work); streamVerified awaits it. Never rejects unhandled. */
function hashEarly(dir: string, fileName: string): Promise<string> {
  const p = sha256File(path.join(dir, fileName));
  p.catch(() => undefined);
  return p;
}

// ---- activities -----------------------------------------------------------------------------

export interface BackupDeps {
  log?: Logger;
  env?: NodeJS.ProcessEnv;
  docker?: Docker;
}

export interface BackupResult {
  manifest: BackupManifest;
  manifestPath: string;
  /** True when a retry found this backup already complete (it is never taken twice). */
  alreadyDone: boolean;
}

export interface RetentionResult {
  removed: string[];
  removedWal: number;
  kept: string[];
}

export interface BackupCheck {
  backupId: string;
  ok: boolean;
  reason?: string;
}

export interface RestoreResult {
  instance: DatabaseRef;
  backupId: string;
  kind: BackupKind;
  restoredAt: string;
  recoveryTarget: string;
  alreadyDone: boolean;
}

export interface KindFreshness {
  kind: BackupKind;
  count: number;
  newestBackupId?: string;
  consistentUntil?: string;
  ageMs?: number;
  /** Checksums of the newest backup (and, if it failed, of the next ones until one passes). */
  checks: BackupCheck[];
  newestGood?: string;
  newestGoodUntil?: string;
}

export interface BackupHealth {
  database: string;
  checkedAt: string;
  kinds: KindFreshness[];
  wal: { files: number; newestAt?: string; ageMs?: number; archiver?: { lastArchivedAt?: string; lastFailedAt?: string; failing: boolean } };
  /** How much committed data a loss now would cost at worst (ms), the RPO exposure. */
  exposureMs?: number;
  rpoMs: number;
  status: 'ok' | 'warning' | 'critical';
  problems: string[];
}

export interface VolumeManifest {
  backupId: string;
  kind: 'volume';
  volume: string;
  startedAt: string;
  finishedAt: string;
  consistentUntil: string;
  sizeBytes: number;
  files: ManifestFile[];
}

/** How often a physical restore asks the recovering instance whether it is promoted yet (one open connection). */
const PROMOTION_POLL_MS = 25;

/**
 * Polling the WAL archive after pg_basebackup: the backup history file is usually archived just
 * after pg_basebackup returns (the archiver takes the stop segment first when both share a
 * segment), so look again soon at first, then every 250 ms.
 */
const archivePollMs = (since: number) => (Date.now() - since < 5_000 ? 20 : 250);

const VOLUME_HELPER_IMAGE = process.env.DURABLE_OPS_DEMO_IMAGE ?? 'durable-ops/demo-service:latest';

export function createBackupActivities(deps: BackupDeps = {}) {
  const paths = () => pgPaths(loadConfig(deps.env ?? process.env));
  const ctx = () => {
    const p = paths();
    return { p, store: new BackupStore(p), instances: new PgInstances(p, deps.log) };
  };

  /** Wait until every WAL segment in start..stop is in the archive (pg_basebackup -X none needs them). */
  async function waitArchived(store: BackupStore, dbId: string, start: string, stop: string, timeoutMs = 5 * 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const have = new Set(await store.walFiles(dbId));
      const missing = walRange(start, stop).filter((w) => !have.has(w));
      if (missing.length === 0) return;
      if (Date.now() > deadline) throw new Error(`WAL ${missing[0]} (of ${missing.length}) not archived into ${store.walDir(dbId)} within ${timeoutMs} ms`);
      beat({ waitingForWal: missing[0] });
      await sleep(archivePollMs(deadline - timeoutMs));
    }
  }

  /** The archived backup history file of a labelled base backup (START/STOP WAL, STOP TIME). */
  async function waitBackupHistory(store: BackupStore, dbId: string, label: string, timeoutMs = 5 * 60_000): Promise<{ startWal: string; stopWal: string; stopTime?: string }> {
    const deadline = Date.now() + timeoutMs;
    // History files of other backups, read once (archived files are renamed into place whole).
    const others = new Set<string>();
    for (;;) {
      const histories = (await store.walFiles(dbId)).filter((f) => f.endsWith('.backup')).reverse();
      for (const h of histories.slice(0, 20)) {
        if (others.has(h)) continue;
        const text = await readFile(path.join(store.walDir(dbId), h), 'utf8').catch(() => '');
        if (!text.split('\n').includes(`LABEL: ${label}`)) {
          if (text) others.add(h);
          continue;
        }
        const start = /^START WAL LOCATION: .* \(file ([0-9A-F]{24})\)$/m.exec(text)?.[1];
        const stop = /^STOP WAL LOCATION: .* \(file ([0-9A-F]{24})\)$/m.exec(text)?.[1];
        if (start && stop) return { startWal: start, stopWal: stop, stopTime: parseBackupTime(/^STOP TIME: (.*)$/m.exec(text)?.[1]) };
      }
      if (Date.now() > deadline) throw new Error(`the backup history file of ${label} was not archived into ${store.walDir(dbId)} within ${timeoutMs} ms`);
      beat({ waitingForBackupHistory: label });
      await sleep(archivePollMs(deadline - timeoutMs));
    }
  }

  async function writeManifest(dir: string, m: BackupManifest | VolumeManifest): Promise<string> {
    const file = path.join(dir, MANIFEST);
    await writeFileAtomic(file, `${JSON.stringify(m, null, 2)}\n`);
    return file;
  }

  /** A backup's restorability: its checksums, and (physical) the WAL it needs in the archive. */
  async function verifyOne(store: BackupStore, dbId: string, kind: BackupKind, backupId: string, full = true): Promise<BackupCheck> {
    const dir = store.backupDir(dbId, kind, backupId);
    const m = await store.readManifest(dir);
    if (!m) return { backupId, ok: false, reason: 'no manifest (incomplete or absent)' };
    // Quick: sizes, and checksums of every file but the big one the restore streams (and hashes) itself.
    const files = await checkFiles(dir, m, full ? undefined : streamedFile(m));
    if (!files.ok) return { backupId, ok: false, reason: files.reason };
    if (kind === 'physical' && m.startWal && m.stopWal && existsSync(store.walDir(dbId))) {
      const have = new Set(await store.walFiles(dbId));
      const missing = walRange(m.startWal, m.stopWal).find((w) => !have.has(w));
      if (missing) return { backupId, ok: false, reason: `WAL segment ${missing} is missing from the archive` };
    }
    return { backupId, ok: true };
  }

  return {
    /** pg_basebackup (tar, -X none against the archive) + checksums + manifest. */
    async backupPhysical(input: { database: DatabaseRef; backupId: string }): Promise<BackupResult> {
      const { p, store } = ctx();
      const db = input.database;
      const dir = store.backupDir(db.id, 'physical', input.backupId);
      const done = await store.readManifest(dir);
      if (done) return { manifest: done, manifestPath: path.join(dir, MANIFEST), alreadyDone: true };
      const pidFile = path.join(store.kindDir(db.id, 'physical'), `.${input.backupId}.pid`);
      await mkdirOwned(store.kindDir(db.id, 'physical'));
      await killRecorded(pidFile);
      await rm(dir, { recursive: true, force: true });
      const archived = existsSync(store.walDir(db.id));
      const startedAt = new Date().toISOString();
      // pg_basebackup writes base.tar itself (piping `-D -` through tee and a hasher slowed it down
      // ~2x) while this process hashes what it has written so far (from the page cache, on the
      // other core): the checksum is ready when pg_basebackup is, not a full re-read later.
      const basebackup = run(path.join(p.bin, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(db.port), '-U', p.adminUser, '-w', '-D', dir, '-Ft', '-X', archived ? 'none' : 'fetch', '-c', 'fast', '-l', input.backupId, '--no-manifest'], {
        env: await pgEnv(p),
        pidFile,
        beatDetails: { backup: input.backupId, step: 'pg_basebackup' },
      });
      const [written, hashed] = await Promise.allSettled([basebackup, sha256Following(path.join(dir, 'base.tar'), basebackup)]);
      if (written.status === 'rejected') throw written.reason;
      if (hashed.status === 'rejected') throw hashed.reason;
      const size = (await stat(path.join(dir, 'base.tar'))).size;
      // Append-only writes end where the reading ended; anything else (never seen) gets a full re-read.
      const base = hashed.value.bytes === size ? hashed.value : { sha256: await sha256File(path.join(dir, 'base.tar')), bytes: size };
      // The backup history file the server archived: the WAL range the backup needs, and its STOP
      // TIME (when it became consistent). pg_basebackup -X none waits until it is archived.
      const history = archived ? await waitBackupHistory(store, db.id, input.backupId) : undefined;
      if (history) await waitArchived(store, db.id, history.startWal, history.stopWal);
      const files: ManifestFile[] = [{ path: 'base.tar', bytes: base.bytes, sha256: base.sha256 }];
      const finishedAt = new Date().toISOString();
      const manifest: BackupManifest = {
        backupId: input.backupId,
        kind: 'physical',
        database: db,
        startedAt,
        finishedAt,
        consistentUntil: history?.stopTime ?? finishedAt,
        sizeBytes: base.bytes,
        files,
        ...(history ? { startWal: history.startWal, stopWal: history.stopWal } : {}),
      };
      const manifestPath = await writeManifest(dir, manifest);
      deps.log?.info({ database: db.id, backupId: input.backupId, sizeBytes: manifest.sizeBytes }, 'physical backup done');
      return { manifest, manifestPath, alreadyDone: false };
    },

    /** pg_dump -Fc of the database (+ the roles, so grants restore) + checksums + manifest. */
    async backupLogical(input: { database: DatabaseRef; backupId: string }): Promise<BackupResult> {
      const { p, store } = ctx();
      const db = input.database;
      const dir = store.backupDir(db.id, 'logical', input.backupId);
      const done = await store.readManifest(dir);
      if (done) return { manifest: done, manifestPath: path.join(dir, MANIFEST), alreadyDone: true };
      const pidFile = path.join(store.kindDir(db.id, 'logical'), `.${input.backupId}.pid`);
      const rolesPidFile = path.join(store.kindDir(db.id, 'logical'), `.${input.backupId}.roles.pid`);
      await mkdirOwned(store.kindDir(db.id, 'logical'));
      await killRecorded(pidFile);
      await killRecorded(rolesPidFile);
      await rm(dir, { recursive: true, force: true });
      await mkdirOwned(dir);
      const env = await pgEnv(p);
      const conn = ['-h', '127.0.0.1', '-p', String(db.port), '-U', p.adminUser, '-w'];
      // pg_dump's snapshot is taken at its start: the dump holds everything committed before now.
      const startedAt = new Date().toISOString();
      const dumpFile = `${db.database}.dump`;
      // The roles (a small separate file) are dumped at the same time as the database, not after it.
      // pg_dump writes (and fsyncs) the dump itself, as an operator's `pg_dump -Fc -f` does: through
      // a pipe into tee + openssl it was measured ~0.4 s slower at 160 MB (three processes handing
      // 64 KB pipe buffers to each other on a busy machine), and a piped dump has no data offsets in
      // its table of contents. It cannot be hashed while written (pg_dump seeks back to rewrite that
      // table at the end): it is hashed after, from the page cache; a compressed dump is a small
      // fraction of the database (2.7 MB for 160 MB here), so that takes milliseconds.
      const dumpPath = path.join(dir, dumpFile);
      const rolesFile = path.join(dir, 'roles.sql');
      const [dumped, roles] = await Promise.allSettled([
        run(path.join(p.bin, 'pg_dump'), [...conn, '-d', db.database, '-Fc', '-f', dumpPath], { env, pidFile, beatDetails: { backup: input.backupId, step: 'pg_dump' } }),
        run(path.join(p.bin, 'pg_dumpall'), [...conn, '-l', 'postgres', '--roles-only', '-f', rolesFile], { env, pidFile: rolesPidFile, beatDetails: { backup: input.backupId, step: 'pg_dumpall' } }),
      ]);
      if (dumped.status === 'rejected') throw dumped.reason;
      if (roles.status === 'rejected') throw roles.reason;
      const files = await describeFiles(dir);
      const finishedAt = new Date().toISOString();
      const manifest: BackupManifest = { backupId: input.backupId, kind: 'logical', database: db, startedAt, finishedAt, consistentUntil: startedAt, sizeBytes: files.reduce((n, f) => n + f.bytes, 0), files };
      const manifestPath = await writeManifest(dir, manifest);
      deps.log?.info({ database: db.id, backupId: input.backupId, sizeBytes: manifest.sizeBytes }, 'logical backup done');
      return { manifest, manifestPath, alreadyDone: false };
    },

    /** Keep the newest `keep` backups of a kind (and `current`); physical: drop WAL no kept backup needs. */
    async applyRetention(input: { databaseId: string; kind: BackupKind; keep: number; current?: string }): Promise<RetentionResult> {
      const { store } = ctx();
      const { manifests, incomplete } = await store.scan(input.databaseId, input.kind);
      const { kept, remove } = selectRetention({ manifests, keep: input.keep, current: input.current, incomplete, nowMs: Date.now() });
      for (const id of remove) await rm(store.backupDir(input.databaseId, input.kind, id), { recursive: true, force: true });
      let removedWal = 0;
      const from = input.kind === 'physical' ? oldestStartWal(kept) : undefined;
      if (from) {
        for (const f of walToRemove(await store.walFiles(input.databaseId), from)) {
          await rm(path.join(store.walDir(input.databaseId), f), { force: true });
          removedWal++;
        }
      }
      return { removed: remove, removedWal, kept: kept.map((m) => m.backupId) };
    },

    /** Manifests of a kind, newest first. */
    async listBackups(input: { databaseId: string; kind: BackupKind }): Promise<BackupManifest[]> {
      return (await ctx().store.scan(input.databaseId, input.kind)).manifests;
    },

    /** Checksums of every file (and, physical, the WAL it needs in the archive). */
    async verifyBackup(input: { databaseId: string; kind: BackupKind; backupId: string; full?: boolean }): Promise<BackupCheck> {
      return verifyOne(ctx().store, input.databaseId, input.kind, input.backupId, input.full ?? true);
    },

    /**
     * Restore a base backup into a new instance: extract, restore_command from the source's
     * archive, recovery_target_time or the archive's end, recovery.signal, start, wait for the
     * promotion. Idempotent by instance id.
     */
    async restorePhysical(input: { source: DatabaseRef; backupId: string; pointInTime: string; instanceId: string; timeoutMs?: number }): Promise<RestoreResult> {
      const { p, store, instances } = ctx();
      PgInstances.refuseMain(input.instanceId);
      const existing = await instances.read(input.instanceId);
      if (existing?.state === 'ready' && existing.restoredFrom?.backupId === input.backupId) {
        await instances.start(existing);
        return { instance: instances.ref(existing), backupId: input.backupId, kind: 'physical', restoredAt: existing.restoredFrom.restoredAt, recoveryTarget: existing.restoredFrom.recoveryTarget, alreadyDone: true };
      }
      const dir = store.backupDir(input.source.id, 'physical', input.backupId);
      const manifest = await store.readManifest(dir);
      if (!manifest) throw ApplicationFailure.nonRetryable(`no physical backup ${input.backupId} of ${input.source.id}`, 'BackupNotFound');
      // openssl hashes base.tar from now on, beside the set-up and the extraction (the same file,
      // from the page cache): the checksum is checked before PostgreSQL starts.
      const baseSum = hashEarly(dir, 'base.tar');
      // Whatever a previous attempt left (an orphan tar, a half-recovered postmaster) goes first.
      const rec = await instances.prepare(input.instanceId, 'restoring', false, input.source.database);
      await streamVerified(
        dir,
        manifest,
        'base.tar',
        (file) => run('tar', ['-xf', file, '-C', rec.dataDir], { pidFile: instances.pidFile(input.instanceId), beatDetails: { restore: input.instanceId, step: 'extract base.tar' } }),
        baseSum,
      );
      for (const stale of ['postmaster.pid', 'postmaster.opts', 'standby.signal']) await rm(path.join(rec.dataDir, stale), { force: true });
      const target = input.pointInTime === 'latest' ? undefined : new Date(input.pointInTime).toISOString().replace('T', ' ').replace('Z', '+00');
      await instances.configure(rec, { restoreFrom: store.walDir(input.source.id), targetTime: target });
      await writeFile(path.join(rec.dataDir, 'recovery.signal'), '');
      await chownOwned(path.join(rec.dataDir, 'recovery.signal'));
      const timeoutMs = input.timeoutMs ?? seed.PG_RESTORE_TIMEOUT_MS;
      await instances.start(rec, timeoutMs);
      // Consistent (accepting read-only connections) -> replaying the archive -> promoted.
      // One connection (it stays open across the promotion) polled every PROMOTION_POLL_MS; only
      // when it fails is the postmaster checked (pg_ctl status), and a new connection made.
      const deadline = Date.now() + timeoutMs;
      let replayedUntil: string | undefined;
      let promoted = false;
      let beatAt = 0;
      const recovering = () => {
        if (Date.now() - beatAt < 1_000) return;
        beatAt = Date.now();
        beat({ restore: input.instanceId, step: 'recovering', replayedUntil });
      };
      for (;;) {
        const outcome = await withAdminClient(p, { port: rec.port, database: 'postgres' }, async (c) => {
          for (;;) {
            const r = (await c.query<{ rec: boolean; ts: Date | null }>('SELECT pg_is_in_recovery() AS rec, pg_last_xact_replay_timestamp() AS ts')).rows[0]!;
            if (r.ts) replayedUntil = r.ts.toISOString();
            if (!r.rec) {
              // Promoted: the instance's own settings without the recovery part (restore_command stays unused).
              promoted = true;
              await instances.configure(rec);
              await c.query('SELECT pg_reload_conf()');
              return 'promoted' as const;
            }
            if (Date.now() > deadline) return 'late' as const;
            recovering();
            await sleep(PROMOTION_POLL_MS);
          }
        }).catch((err: unknown) => {
          if (promoted) throw err;
          return 'unreachable' as const;
        });
        if (outcome === 'promoted') break;
        if (outcome === 'unreachable' && !(await instances.running(rec.id))) throw new Error(`${rec.id}: PostgreSQL stopped during recovery: ${await instances.logTail(rec.id)}`);
        if (Date.now() > deadline) throw new Error(`${rec.id}: not promoted within ${timeoutMs} ms: ${await instances.logTail(rec.id)}`);
        recovering();
        await sleep(PROMOTION_POLL_MS);
      }
      const recoveryTarget = input.pointInTime === 'latest' ? `latest (end of the WAL archive; last replayed transaction ${replayedUntil ?? manifest.consistentUntil})` : new Date(input.pointInTime).toISOString();
      const restoredAt = new Date().toISOString();
      rec.state = 'ready';
      rec.restoredFrom = { source: input.source.id, kind: 'physical', backupId: input.backupId, recoveryTarget, restoredAt };
      await instances.write(rec);
      deps.log?.info({ instance: rec.id, port: rec.port, backupId: input.backupId, recoveryTarget }, 'physical restore done');
      return { instance: instances.ref(rec), backupId: input.backupId, kind: 'physical', restoredAt, recoveryTarget, alreadyDone: false };
    },

    /** createInstance + roles + pg_restore -C of the dump. Idempotent by instance id. */
    async restoreLogical(input: { source: DatabaseRef; backupId: string; instanceId: string }): Promise<RestoreResult> {
      const { p, store, instances } = ctx();
      PgInstances.refuseMain(input.instanceId);
      const existing = await instances.read(input.instanceId);
      if (existing?.state === 'ready' && existing.restoredFrom?.backupId === input.backupId) {
        await instances.start(existing);
        return { instance: instances.ref(existing), backupId: input.backupId, kind: 'logical', restoredAt: existing.restoredFrom.restoredAt, recoveryTarget: existing.restoredFrom.recoveryTarget, alreadyDone: true };
      }
      const dir = store.backupDir(input.source.id, 'logical', input.backupId);
      const manifest = await store.readManifest(dir);
      if (!manifest) throw ApplicationFailure.nonRetryable(`no logical backup ${input.backupId} of ${input.source.id}`, 'BackupNotFound');
      // The dump is hashed from now on, beside initdb (which leaves a core idle) rather than beside
      // pg_restore (which keeps both busy with the server); it is checked before the data is trusted.
      const dumpName = streamedFile(manifest) ?? `${input.source.database}.dump`;
      const dumpSum = hashEarly(dir, dumpName);
      await instances.drop(input.instanceId);
      const rec = await instances.create(input.instanceId, false, 'postgres');
      rec.state = 'restoring';
      rec.database = input.source.database;
      await instances.write(rec);
      const env = await pgEnv(p);
      const conn = ['-h', '127.0.0.1', '-p', String(rec.port), '-U', p.adminUser, '-w'];
      // Roles first (the superuser exists already: psql reports that one and goes on).
      if (existsSync(path.join(dir, 'roles.sql'))) {
        await run(path.join(p.bin, 'psql'), [...conn, '-X', '-q', '-d', 'postgres', '-f', path.join(dir, 'roles.sql')], { env, pidFile: instances.pidFile(rec.id), beatDetails: { restore: rec.id, step: 'roles' } });
      }
      await streamVerified(
        dir,
        manifest,
        dumpName,
        (file) => run(path.join(p.bin, 'pg_restore'), [...conn, '-d', 'postgres', '-C', '--exit-on-error', file], { env, pidFile: instances.pidFile(rec.id), beatDetails: { restore: rec.id, step: 'pg_restore' } }),
        dumpSum,
      );
      const restoredAt = new Date().toISOString();
      const recoveryTarget = `${manifest.consistentUntil} (the dump's snapshot)`;
      rec.state = 'ready';
      rec.restoredFrom = { source: input.source.id, kind: 'logical', backupId: input.backupId, recoveryTarget, restoredAt };
      await instances.write(rec);
      deps.log?.info({ instance: rec.id, port: rec.port, backupId: input.backupId }, 'logical restore done');
      return { instance: instances.ref(rec), backupId: input.backupId, kind: 'logical', restoredAt, recoveryTarget, alreadyDone: false };
    },

    /** Freshness against the RPO, checksums of the newest backups, the WAL archive's age. */
    async checkBackups(input: { database: DatabaseRef; rpoMs: number }): Promise<BackupHealth> {
      const { p, store } = ctx();
      const db = input.database;
      const now = Date.now();
      const problems: string[] = [];
      const kinds: KindFreshness[] = [];
      for (const kind of ['physical', 'logical'] as const) {
        const { manifests } = await store.scan(db.id, kind);
        const f: KindFreshness = { kind, count: manifests.length, checks: [] };
        const newest = manifests[0];
        if (newest) {
          f.newestBackupId = newest.backupId;
          f.consistentUntil = newest.consistentUntil;
          f.ageMs = now - Date.parse(newest.consistentUntil);
        }
        for (const m of manifests) {
          const check = await verifyOne(store, db.id, kind, m.backupId);
          f.checks.push(check);
          if (check.ok) {
            f.newestGood = m.backupId;
            f.newestGoodUntil = m.consistentUntil;
            break;
          }
          problems.push(`${kind} backup ${m.backupId} fails verification: ${check.reason}`);
        }
        kinds.push(f);
      }
      const files = await store.walFiles(db.id);
      const segs = files.filter((f) => /^[0-9A-F]{24}$/.test(f));
      const wal: BackupHealth['wal'] = { files: segs.length };
      if (segs.length > 0) {
        const newestAt = (await stat(path.join(store.walDir(db.id), segs[segs.length - 1]!))).mtimeMs;
        wal.newestAt = new Date(newestAt).toISOString();
        wal.ageMs = now - newestAt;
      }
      // The live archiver: failing (a failure after the last success) or healthy.
      try {
        wal.archiver = await withAdminClient(p, { port: db.port, database: 'postgres' }, async (c) => {
          const r = await c.query<{ la: Date | null; lf: Date | null; mode: string }>("SELECT last_archived_time AS la, last_failed_time AS lf, current_setting('archive_mode') AS mode FROM pg_stat_archiver");
          const row = r.rows[0]!;
          return { lastArchivedAt: row.la?.toISOString(), lastFailedAt: row.lf?.toISOString(), failing: row.mode === 'off' || (row.lf !== null && (row.la === null || row.lf > row.la)) };
        });
      } catch (err) {
        problems.push(`${db.id} is not reachable for the archiver status: ${(err as Error).message}`);
      }
      // Exposure: what a loss now would cost. A base backup + a healthy archive lose at most the
      // WAL not yet archived (bounded by archive_timeout); otherwise, everything since the newest
      // good backup (or since the last archived WAL, if the archive stopped).
      const physicalGood = kinds[0]!.newestGood;
      const goodTimes = kinds.flatMap((k) => (k.newestGoodUntil ? [Date.parse(k.newestGoodUntil)] : []));
      let coveredUntil = goodTimes.length > 0 ? Math.max(...goodTimes) : undefined;
      if (physicalGood && wal.newestAt) {
        const archivedTo = wal.archiver && !wal.archiver.failing ? Math.max(Date.parse(wal.newestAt), now - seed.WAL_ARCHIVE_TIMEOUT_S * 1000) : Date.parse(wal.archiver?.lastArchivedAt ?? wal.newestAt);
        coveredUntil = Math.max(coveredUntil ?? 0, archivedTo);
      }
      if (wal.archiver?.failing) problems.push(`WAL archiving of ${db.id} is failing since ${wal.archiver.lastFailedAt ?? '?'} (last success ${wal.archiver.lastArchivedAt ?? 'never'})`);
      const exposureMs = coveredUntil === undefined ? undefined : Math.max(0, now - coveredUntil);
      let status: BackupHealth['status'] = 'ok';
      if (exposureMs === undefined) {
        status = 'critical';
        problems.push(`no verified backup of ${db.id}`);
      } else if (exposureMs > input.rpoMs) {
        status = 'critical';
        problems.push(`RPO broken: ${Math.round(exposureMs / 1000)} s of data at risk (target ${Math.round(input.rpoMs / 1000)} s)`);
      } else if (exposureMs > input.rpoMs * seed.BACKUP_RPO_WARNING_RATIO || problems.length > 0) {
        status = 'warning';
        if (exposureMs > input.rpoMs * seed.BACKUP_RPO_WARNING_RATIO) problems.push(`RPO at risk: ${Math.round(exposureMs / 1000)} s of data at risk (target ${Math.round(input.rpoMs / 1000)} s)`);
      }
      return { database: db.id, checkedAt: new Date(now).toISOString(), kinds, wal, exposureMs, rpoMs: input.rpoMs, status, problems };
    },

    /** tar of a named Docker volume through a short-lived container of the demo image (busybox tar, no network). */
    async backupVolume(input: { volume: string; backupId: string }): Promise<{ manifest: VolumeManifest; manifestPath: string; alreadyDone: boolean }> {
      const { store } = ctx();
      const docker = requireDocker(deps.docker);
      const dir = store.backupDir(input.volume, 'volume', input.backupId);
      const done = (await store.readManifest(dir)) as unknown as VolumeManifest | undefined;
      if (done) return { manifest: done, manifestPath: path.join(dir, MANIFEST), alreadyDone: true };
      await docker.getVolume(input.volume).inspect().catch(() => {
        throw ApplicationFailure.nonRetryable(`no Docker volume ${input.volume}`, 'VolumeNotFound');
      });
      await rm(dir, { recursive: true, force: true });
      await mkdirOwned(dir);
      const startedAt = new Date().toISOString();
      await runHelper(docker, `durable-ops-volbackup-${input.backupId}`.slice(0, 120), ['tar', '-cf', '/backup/volume.tar', '-C', '/volume', '.'], [`${input.volume}:/volume:ro`, `${dir}:/backup`]);
      const files = await describeFiles(dir);
      const finishedAt = new Date().toISOString();
      const manifest: VolumeManifest = { backupId: input.backupId, kind: 'volume', volume: input.volume, startedAt, finishedAt, consistentUntil: startedAt, sizeBytes: files.reduce((n, f) => n + f.bytes, 0), files };
      return { manifest, manifestPath: await writeManifest(dir, manifest), alreadyDone: false };
    },

    /** Volume backups of one volume (those with a manifest), newest first. Read-only. */
    async listVolumeBackups(input: { volume: string }): Promise<VolumeManifest[]> {
      return (await ctx().store.scan(input.volume, 'volume')).manifests as unknown as VolumeManifest[];
    },

    /** Size and SHA-256 of every file of a volume backup against its manifest. Read-only. */
    async verifyVolumeBackup(input: { volume: string; backupId: string }): Promise<BackupCheck> {
      const { store } = ctx();
      const dir = store.backupDir(input.volume, 'volume', input.backupId);
      const m = await store.readManifest(dir);
      if (!m) return { backupId: input.backupId, ok: false, reason: 'no manifest (incomplete or absent)' };
      const check = await checkFiles(dir, m);
      return check.ok ? { backupId: input.backupId, ok: true } : { backupId: input.backupId, ok: false, reason: check.reason };
    },

    /** Keep the newest `keep` backups of a volume (and `current`); abandoned manifest-less folders past the grace period go too. */
    async applyVolumeRetention(input: { volume: string; keep: number; current?: string }): Promise<RetentionResult> {
      const { store } = ctx();
      const { manifests, incomplete } = await store.scan(input.volume, 'volume');
      const { kept, remove } = selectRetention({ manifests, keep: input.keep, current: input.current, incomplete, nowMs: Date.now() });
      for (const id of remove) await rm(store.backupDir(input.volume, 'volume', id), { recursive: true, force: true });
      return { removed: remove, removedWal: 0, kept: kept.map((m) => m.backupId) };
    },

    /** Replace a volume's content with a verified volume backup (the volume is created if absent). */
    async restoreVolume(input: { volume: string; backupId: string; intoVolume?: string }): Promise<{ volume: string; backupId: string; files: number; restoredFiles: number }> {
      const { store } = ctx();
      const docker = requireDocker(deps.docker);
      const dir = store.backupDir(input.volume, 'volume', input.backupId);
      const m = (await store.readManifest(dir)) as unknown as VolumeManifest | undefined;
      if (!m) throw ApplicationFailure.nonRetryable(`no volume backup ${input.backupId} of ${input.volume}`, 'BackupNotFound');
      const check = await checkFiles(dir, m);
      if (!check.ok) throw ApplicationFailure.nonRetryable(`volume backup ${input.backupId} fails verification: ${check.reason}`, 'BackupCorrupt');
      const target = input.intoVolume ?? input.volume;
      const exists = await docker.getVolume(target).inspect().then(() => true, () => false);
      if (!exists) await docker.createVolume({ Name: target, Labels: { 'durable-ops.restored-from': `${input.volume}/${input.backupId}` } });
      // Idempotent: the volume is emptied and refilled from the tar on every attempt.
      const out = await runHelper(docker, `durable-ops-volrestore-${target}`.slice(0, 120), ['sh', '-c', 'find /volume -mindepth 1 -maxdepth 1 -exec rm -rf {} + && tar -xf /backup/volume.tar -C /volume && find /volume -type f | wc -l'], [`${target}:/volume`, `${dir}:/backup:ro`]);
      // The regular files now in the volume (the last line the helper printed).
      const restoredFiles = Number(/(\d+)\s*$/.exec(out)?.[1] ?? Number.NaN);
      return { volume: target, backupId: input.backupId, files: m.files.length, restoredFiles };
    },
  };
}

function requireDocker(docker: Docker | undefined): Docker {
  if (!docker) throw ApplicationFailure.nonRetryable('Docker is not configured for this worker', 'TargetUnavailable');
  return docker;
}

/** One short-lived helper container (removed before and after), no network; fails on a non-zero exit. */
async function runHelper(docker: Docker, name: string, cmd: string[], binds: string[]): Promise<string> {
  await docker.getContainer(name).remove({ force: true }).catch(() => undefined);
  const c = await docker.createContainer({
    name,
    Image: VOLUME_HELPER_IMAGE,
    Entrypoint: [],
    Cmd: cmd,
    Labels: { 'durable-ops.helper': 'volume-backup' },
    HostConfig: { NetworkMode: 'none', Binds: binds },
  });
  try {
    await c.start();
    const beating = setInterval(() => beat({ helper: name }), 2_000);
    const res = (await c.wait().finally(() => clearInterval(beating))) as { StatusCode: number };
    if (res.StatusCode !== 0) {
      const logs = (await c.logs({ stdout: true, stderr: true, tail: 5 })).toString('utf8');
      throw new Error(`${cmd.join(' ')} exited with ${res.StatusCode}: ${logs.trim()}`);
    }
    // Its output (stdout and stderr, Docker's stream headers stripped).
    return demuxDockerLog((await c.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer);
  } finally {
    await c.remove({ force: true }).catch(() => undefined);
  }
}

export type BackupActivities = ReturnType<typeof createBackupActivities>;
