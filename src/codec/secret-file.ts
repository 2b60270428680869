/**
 * Private files for secrets (the codec keys, the codec server's token): mode 0600 in a 0700
 * folder, created atomically on first use, refused when group or others have any access.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config/env';

/** A secret file that is missing, unreadable, too open or malformed (names the file, never its content). */
export class SecretFileError extends ConfigError {
  override name = 'SecretFileError';
}

/** Create `file` with `content` (mode 0600) unless it exists; safe against a concurrent creator. */
export function createPrivateFile(file: string, content: string): void {
  const dir = path.dirname(file);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(tmp, file); // atomic, fails if another process created it first
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(tmp);
  }
}

/** The permission bits (e.g. "0644") when group or others have any access; undefined when private. */
export function tooOpen(mode: number): string | undefined {
  return (mode & 0o077) !== 0 ? `0${(mode & 0o777).toString(8)}` : undefined;
}

/**
 * Read a private file. With `initial`, a missing file is first created with its result.
 * `what` names the file in errors ("codec keys file").
 */
export function readPrivateFile(file: string, what: string, initial?: () => string): string {
  if (initial && !existsSync(file)) createPrivateFile(file, initial());
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    throw new SecretFileError(`${what} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!st.isFile()) throw new SecretFileError(`${what} ${file}: not a regular file`);
  const open = tooOpen(st.mode);
  if (open) throw new SecretFileError(`${what} ${file}: group/other permissions are not allowed (mode ${open}); run: chmod 600 ${file}`);
  return readFileSync(file, 'utf8');
}
