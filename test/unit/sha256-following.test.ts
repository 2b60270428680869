/**
 * sha256Following (src/activities/backup.ts): the checksum of base.tar taken while pg_basebackup
 * writes it. Real writer processes (sh + head) append to a file at their own pace; the hash must
 * equal coreutils `sha256sum` of the finished file whether the writer is slower or faster than
 * the reader, starts late, or never creates the file. Temp folders are removed in `after`.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { sha256Following } from '../../src/activities/backup';

const dir = mkdtempSync(path.join(os.tmpdir(), 'durable-ops-sha-following-'));
after(() => rm(dir, { recursive: true, force: true }));

/** A shell script as a separate process; resolves when it exits 0. */
function writer(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`writer exited with ${code}`))));
  });
}

async function sha256sum(file: string): Promise<string> {
  const { stdout } = await promisify(execFile)('sha256sum', [file]);
  return stdout.split(' ')[0]!;
}

test('a writer slower than the reader: appends in bursts with pauses, the last one right before it exits', async () => {
  const file = path.join(dir, 'slow.tar');
  // 12 bursts of odd sizes (not multiples of the reader's chunk), 40 ms apart.
  const w = writer(`for i in 1 2 3 4 5 6 7 8 9 10 11 12; do head -c $((i * 70001)) /dev/urandom >> ${file}; sleep 0.04; done; head -c 333 /dev/urandom >> ${file}`);
  const got = await sha256Following(file, w, { pollMs: 5, chunkBytes: 64 * 1024 });
  await w;
  assert.equal(got.bytes, (await stat(file)).size);
  assert.equal(got.bytes, 78 * 70001 + 333);
  assert.equal(got.sha256, await sha256sum(file));
});

test('a writer faster than the reader (big writes, small reader chunks) and one that starts late', async () => {
  const fast = path.join(dir, 'fast.tar');
  const w1 = writer(`head -c 48000000 /dev/urandom > ${fast}`);
  const got1 = await sha256Following(fast, w1, { chunkBytes: 16 * 1024 });
  assert.equal(got1.bytes, 48_000_000);
  assert.equal(got1.sha256, await sha256sum(fast));

  const late = path.join(dir, 'late.tar');
  const w2 = writer(`sleep 0.3; head -c 1000000 /dev/urandom > ${late}; sleep 0.1; head -c 7 /dev/urandom >> ${late}`);
  const got2 = await sha256Following(late, w2);
  assert.equal(got2.bytes, 1_000_007);
  assert.equal(got2.sha256, await sha256sum(late));
});

test('an empty file hashes as empty; a writer that never creates the file fails the hash', async () => {
  const empty = path.join(dir, 'empty.tar');
  const got = await sha256Following(empty, writer(`: > ${empty}`));
  assert.deepEqual(got, { bytes: 0, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' });
  await assert.rejects(sha256Following(path.join(dir, 'never.tar'), writer('sleep 0.1')), /was not written/);
  // A failing writer ends the reading too (the caller reports the writer's error).
  const failed = path.join(dir, 'failed.tar');
  const w = writer(`head -c 5000 /dev/urandom > ${failed}; exit 3`);
  const partial = await sha256Following(failed, w);
  await assert.rejects(w, /exited with 3/);
  assert.equal(partial.bytes, 5000);
  assert.equal(partial.sha256, await sha256sum(failed));
});
