/** Pure backup logic: WAL names, retention selection, backup ids, and the input schemas. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { oldestStartWal, parseBackupTime, parseLsn, selectRetention, walFileName, walRange, walToRemove } from '../../src/activities/backup';
import { backupDatabaseInputSchema, keepFor, restoreDatabaseInputSchema, type BackupManifest } from '../../src/schemas/database';
import { backupIdFor } from '../../src/workflows/backup-database';

const manifest = (backupId: string, consistentUntil: string, startWal?: string): BackupManifest => ({
  backupId,
  kind: 'physical',
  database: { id: 'main', host: '127.0.0.1', port: 5433, database: 'app' },
  startedAt: consistentUntil,
  finishedAt: consistentUntil,
  consistentUntil,
  sizeBytes: 1,
  files: [],
  ...(startWal ? { startWal } : {}),
});

test('LSNs map to the WAL segment files PostgreSQL names (16 MB segments)', () => {
  assert.equal(parseLsn('0/2000028'), 0x2000028n);
  assert.equal(walFileName(1, parseLsn('0/2000028')), '000000010000000000000002');
  assert.equal(walFileName(1, parseLsn('0/FF000000')), '0000000100000000000000FF');
  assert.equal(walFileName(2, parseLsn('1/00000010')), '000000020000000100000000');
  assert.deepEqual(walRange('0000000100000000000000FE', '000000010000000100000001'), ['0000000100000000000000FE', '0000000100000000000000FF', '000000010000000100000000', '000000010000000100000001']);
  assert.throws(() => parseLsn('nope'));
});

test('retention keeps the newest N (and the current one), and drops old abandoned folders only', () => {
  const ms = [manifest('a', '2026-01-01T00:00:00Z'), manifest('c', '2026-01-03T00:00:00Z'), manifest('b', '2026-01-02T00:00:00Z')];
  const now = Date.parse('2026-01-04T00:00:00Z');
  const r = selectRetention({ manifests: ms, keep: 2, incomplete: [{ backupId: 'old', mtimeMs: now - 2 * 3_600_000 }, { backupId: 'fresh', mtimeMs: now - 60_000 }], nowMs: now });
  assert.deepEqual(r.kept.map((m) => m.backupId), ['c', 'b']);
  assert.deepEqual(r.remove, ['a', 'old']);
  assert.deepEqual(selectRetention({ manifests: ms, keep: 1, current: 'a', incomplete: [], nowMs: now }).kept.map((m) => m.backupId), ['c', 'a']);
  assert.deepEqual(selectRetention({ manifests: [], keep: 3, incomplete: [{ backupId: 'cur', mtimeMs: 0 }], current: 'cur', nowMs: now }).remove, []);
});

test('WAL retention removes only what precedes the oldest kept base backup, never history files', () => {
  const files = ['000000010000000000000001', '000000010000000000000002.00000028.backup', '000000010000000000000003', '000000020000000000000004', '00000002.history', '000000010000000000000002.partial'];
  const kept = [manifest('x', '2026-01-02T00:00:00Z', '000000010000000000000003'), manifest('y', '2026-01-03T00:00:00Z', '000000020000000000000004')];
  assert.equal(oldestStartWal(kept), '000000010000000000000003');
  assert.deepEqual(walToRemove(files, oldestStartWal(kept)), ['000000010000000000000001', '000000010000000000000002.00000028.backup', '000000010000000000000002.partial']);
  assert.equal(oldestStartWal([manifest('z', '2026-01-01T00:00:00Z')]), undefined, 'a backup without a start segment keeps the whole archive');
  assert.deepEqual(walToRemove(files, undefined), []);
});

test('backup ids are deterministic per workflow run, sortable by time', () => {
  const t = new Date('2026-11-30T07:25:22.123Z');
  assert.equal(backupIdFor(t, 'backup/main/physical', 'run-1'), backupIdFor(t, 'backup/main/physical', 'run-1'));
  assert.notEqual(backupIdFor(t, 'backup/main/physical', 'run-1'), backupIdFor(t, 'backup/main/physical', 'run-2'));
  assert.match(backupIdFor(t, 'w', 'r'), /^20261130T072522Z-[0-9a-f]{8}$/);
  assert.equal(parseBackupTime('2026-11-30 07:21:21 UTC'), '2026-11-30T07:21:21.000Z');
  assert.equal(parseBackupTime('2026-11-30 07:21:21 CET'), undefined);
});

test('schemas: seed defaults and named fields', () => {
  const b = backupDatabaseInputSchema.parse({ database: { id: 'main', port: 5433 }, kind: 'physical' });
  assert.deepEqual(b.database, { id: 'main', host: '127.0.0.1', port: 5433, database: 'app' });
  assert.equal(keepFor('physical', b.keep), 24);
  assert.equal(keepFor('logical'), 7);
  const r = restoreDatabaseInputSchema.parse({ source: { id: 'main', port: 5433 }, instanceId: 'copy-1' });
  assert.equal(r.kind, 'physical');
  assert.equal(r.pointInTime, 'latest');
  const bad = restoreDatabaseInputSchema.safeParse({ source: { id: 'main', port: 5433 }, instanceId: 'main' });
  assert.ok(!bad.success && bad.error.issues.some((i) => i.path.join('.') === 'instanceId'));
  const logicalPitr = restoreDatabaseInputSchema.safeParse({ source: { id: 'main', port: 5433 }, instanceId: 'x', kind: 'logical', pointInTime: '2026-11-30T07:00:00Z' });
  assert.ok(!logicalPitr.success && logicalPitr.error.issues.some((i) => i.path.join('.') === 'pointInTime'));
});

test('config/backups.json: physical hourly, logical daily, verify every 15 min, inputs valid', async () => {
  const { backupScheduleOptions } = await import('../../src/starters/schedules');
  const { DEFAULT_BACKUPS_FILE, loadBackups } = await import('../../src/runbooks/config-files');
  const backups = loadBackups(DEFAULT_BACKUPS_FILE);
  assert.equal(backups[0]!.database.id, 'main');
  const opts = backupScheduleOptions(backups[0]!, 'q');
  assert.deepEqual(opts.map((o) => o.scheduleId), ['backup/main/physical', 'backup/main/logical', 'verify-backups/main']);
  assert.deepEqual(opts.map((o) => o.spec.intervals?.[0]?.every), [3_600_000, 86_400_000, 900_000]);
  assert.deepEqual(opts.map((o) => (o.action.type === 'startWorkflow' ? o.action.workflowType : '')), ['backupDatabase', 'backupDatabase', 'verifyBackups']);
});

test('config/backups.json volumes: each a backupVolume input, backed up daily; bad entries named', async () => {
  const { volumeBackupScheduleOptions } = await import('../../src/starters/schedules');
  const { loadVolumeBackups, DEFAULT_BACKUPS_FILE } = await import('../../src/runbooks/config-files');
  assert.deepEqual(loadVolumeBackups(DEFAULT_BACKUPS_FILE), []);
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const dir = mkdtempSync(path.join(tmpdir(), 'backups-'));
  try {
    const file = path.join(dir, 'backups.json');
    writeFileSync(file, JSON.stringify({ databases: [], volumes: [{ volume: 'web-data', quiesce: { service: 'web' } }] }));
    const [v] = loadVolumeBackups(file);
    assert.deepEqual(v, { volume: 'web-data', keep: 7, quiesce: { service: 'web' }, waitForLease: false, leaseWaitTimeoutMs: 600_000 });
    const o = volumeBackupScheduleOptions(v!, 'q');
    assert.equal(o.scheduleId, 'backup-volume/web-data');
    assert.equal(o.spec.intervals?.[0]?.every, 86_400_000);
    assert.equal(o.action.type === 'startWorkflow' && o.action.workflowType, 'backupVolume');
    // Unattended runs wait for a busy service instead of being refused.
    assert.deepEqual(o.action.type === 'startWorkflow' && o.action.args, [{ ...v, waitForLease: true }]);
    writeFileSync(file, JSON.stringify({ databases: [], volumes: [{ volume: 'bad name!' }] }));
    assert.throws(() => loadVolumeBackups(file), /volumes\.0\.volume: must be a Docker volume name/);
    writeFileSync(file, JSON.stringify({ databases: [], volumes: [{ volume: 'a' }, { volume: 'a' }] }));
    assert.throws(() => loadVolumeBackups(file), /"a" appears twice/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
