/**
 * verifyBackups with `alert: true`, end to end on the real stack: real PostgreSQL 15 instances
 * with WAL archiving (127.0.0.1:18880-18889, this file's range), the backupDatabase runbook, and
 * the worker's real alert path (sendAlert/resolveAlert -> the `alert/<dedupKey>` group workflow ->
 * the deliverAlert child -> email through nodemailer) into Mailpit.
 *
 * The worker's grouping: group wait 200 ms (the first email within a second), group interval
 * 10 min (longer than this file: a second raise inside it must not mail again).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type { BackupHealth } from '../../src/activities/backup';
import { alertGroupWorkflowId } from '../../src/activities/alerts';
import { pgPaths } from '../../src/activities/pg-instances';
import { DEFAULT_ALERTING, parseAlerting } from '../../src/config/alerting';
import { BACKUP_RPO_WARNING_RATIO } from '../../src/config/defaults';
import type { DatabaseRef } from '../../src/schemas/database';
import { startRunbook } from '../../src/runbooks/registry';
import type { AlertGroupState } from '../../src/workflows/alert-group';
import type { BackupDatabaseResult } from '../../src/workflows/backup-database';
import { backupAlertKey } from '../../src/workflows/verify-backups';
import { mailText, searchMail, type MailSummary } from '../helpers/mailpit';
import { RangeInstances } from '../helpers/pg-range';
import { config, connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

const paths = pgPaths(config);
const instances = new RangeInstances(paths, 18880, 18889);
const password = readFileSync(paths.adminPasswordFile, 'utf8').trim();
const suffix = uniqueName('x').slice(2);
const GROUPING = { groupWaitMs: 200, groupIntervalMs: 10 * 60_000, repeatIntervalMs: 60 * 60_000 };
/** The warning case: RPO target 20 s, checked just inside the warning band (16.4 s of 16-20 s with the seed ratio 0.8). */
const WARN_RPO_MS = 20_000;

let client: Client;
let worker: RunningWorker;
/** No backup at first (critical), then a base backup (ok). */
let crit: DatabaseRef;
/** A dump only, taken in before(): its age makes the RPO exposure (the warning case). */
let warn: DatabaseRef;
let warnDump: BackupDatabaseResult;
const created: string[] = [];

async function verify(db: DatabaseRef, extra: Record<string, unknown> = {}): Promise<BackupHealth> {
  const handle = await startRunbook(client, 'verifyBackups', { database: db, alert: true, ...extra }, { taskQueue: worker.taskQueue, workflowId: uniqueName(`verify-test-${db.id}`) });
  return handle.result();
}

async function backup(db: DatabaseRef, kind: 'physical' | 'logical'): Promise<BackupDatabaseResult> {
  const handle = await startRunbook(client, 'backupDatabase', { database: db, kind }, { taskQueue: worker.taskQueue, workflowId: uniqueName(`verify-test-backup-${kind}`) });
  return handle.result();
}

/** The emails about this database (other suites mail too): its id in the subject. */
async function mailsOf(db: DatabaseRef): Promise<MailSummary[]> {
  return (await searchMail(db.id)).filter((m) => m.Subject.includes(`postgres/${db.id}:`)).sort((a, b) => a.Created.localeCompare(b.Created));
}

async function waitMailsOf(db: DatabaseRef, count: number): Promise<MailSummary[]> {
  return waitUntil(`${count} email(s) about ${db.id}`, async () => {
    const m = await mailsOf(db);
    return m.length >= count ? m : undefined;
  }, 20_000, 200);
}

const group = (db: DatabaseRef) => client.workflow.getHandle(alertGroupWorkflowId(backupAlertKey(db.id)));

before(async () => {
  client = await connectClient();
  worker = await startWorker({ taskQueue: uniqueName('verify-test'), alerting: parseAlerting({ ...DEFAULT_ALERTING, grouping: GROUPING }) });
  for (const name of ['crit', 'warn']) {
    const id = `verify-alert-${name}-${suffix}`;
    created.push(id);
    const ref = instances.ref(await instances.create(id, true));
    if (name === 'crit') crit = ref;
    else warn = ref;
  }
  // Taken first, so its age runs while the critical case does.
  warnDump = await backup(warn, 'logical');
});

after(async () => {
  for (const id of created) {
    // An alert group left open by a failed test would mail again in 10 min: end it.
    await client?.workflow
      .getHandle(alertGroupWorkflowId(backupAlertKey(id)))
      .terminate('test cleanup')
      .catch(() => undefined);
    await instances.drop(id).catch((err: unknown) => console.error(`drop ${id}: ${String(err)}`));
    await rm(path.join(paths.backupDir, id), { recursive: true, force: true });
  }
  await worker?.stop();
  await client?.connection.close();
});

test('no backup -> critical: one email naming the database and the problem, no password; again -> no second email; base backup -> ok -> resolved email', async () => {
  const started = Date.now();
  const h1 = await verify(crit);
  assert.equal(h1.status, 'critical');
  assert.ok(h1.problems.includes(`no verified backup of ${crit.id}`), h1.problems.join('; '));

  const [first] = await waitMailsOf(crit, 1);
  console.log(`  critical email ${Date.now() - started} ms after verifyBackups started`);
  assert.equal(first!.Subject, `[CRITICAL] postgres/${crit.id}: backups: RPO broken or no verified backup`);
  const text = await mailText(first!.ID);
  assert.match(text, /Severity: critical/);
  assert.match(text, /Runbook:\s+verifyBackups/);
  assert.ok(text.includes(`no verified backup of ${crit.id}`), text);
  assert.ok(text.includes(`Dedup key: ${backupAlertKey(crit.id)}`), text);
  assert.ok(!text.includes(password) && !first!.Subject.includes(password), 'no password in the email');

  // Still critical: the same group takes the raise, and tells nobody again within the group interval.
  const h2 = await verify(crit);
  assert.equal(h2.status, 'critical');
  const state = await waitUntil('the second raise in the group', async () => {
    const s = await group(crit).query<AlertGroupState>('status');
    return s.total >= 2 ? s : undefined;
  }, 10_000, 100);
  assert.equal(state.seq, 1, 'one notification for two raises');
  assert.equal(state.last?.channel, 'email');
  await sleep(10 * GROUPING.groupWaitMs);
  assert.equal((await mailsOf(crit)).length, 1, 'no second email');

  // A base backup: ok, and the alert resolves with one email.
  await backup(crit, 'physical');
  const h3 = await verify(crit);
  assert.equal(h3.status, 'ok', h3.problems.join('; '));
  assert.deepEqual(h3.problems, []);
  const mails = await waitMailsOf(crit, 2);
  assert.equal(mails.length, 2);
  assert.equal(mails[1]!.Subject, `[RESOLVED] postgres/${crit.id}: backups: RPO broken or no verified backup (x2)`);
  assert.match(await mailText(mails[1]!.ID), /Status:\s+resolved/);
  const ended = await group(crit).result() as AlertGroupState;
  assert.equal(ended.resolved, true);
  assert.equal(ended.seq, 2, 'firing once, resolved once');
  assert.equal(ended.total, 2);
  console.log(`  critical -> dedup -> resolved: ${Date.now() - started} ms`);
});

test(`a dump at ${BACKUP_RPO_WARNING_RATIO * 100}-100% of the RPO target -> warning email; then ok -> resolved`, async () => {
  // Exposure = now - the dump's consistent-until point (no base backup: the WAL does not count).
  const until = Date.parse(warnDump.consistentUntil);
  const checkAt = until + (BACKUP_RPO_WARNING_RATIO + (1 - BACKUP_RPO_WARNING_RATIO) / 10) * WARN_RPO_MS;
  await sleep(Math.max(0, checkAt - Date.now()));
  const h = await verify(warn, { rpoMs: WARN_RPO_MS });
  console.log(`  exposure ${h.exposureMs} ms against the band ${BACKUP_RPO_WARNING_RATIO * WARN_RPO_MS}-${WARN_RPO_MS} ms`);
  assert.ok(h.exposureMs !== undefined && h.exposureMs > BACKUP_RPO_WARNING_RATIO * WARN_RPO_MS && h.exposureMs <= WARN_RPO_MS, `exposure ${h.exposureMs} ms within the warning band of ${WARN_RPO_MS} ms`);
  assert.equal(h.status, 'warning', h.problems.join('; '));
  assert.ok(h.problems.some((p) => p.startsWith('RPO at risk:')), h.problems.join('; '));

  const [mail] = await waitMailsOf(warn, 1);
  assert.equal(mail!.Subject, `[WARNING] postgres/${warn.id}: backups: RPO at risk`);
  const text = await mailText(mail!.ID);
  assert.match(text, /Severity: warning/);
  assert.match(text, /RPO target s: 20/);
  assert.ok(text.includes('RPO at risk:'), text);
  assert.ok(!text.includes(password), 'no password in the email');

  // The seed's RPO target (5 min): the same dump is fresh enough.
  const ok = await verify(warn);
  assert.equal(ok.status, 'ok', ok.problems.join('; '));
  const mails = await waitMailsOf(warn, 2);
  assert.equal(mails[1]!.Subject, `[RESOLVED] postgres/${warn.id}: backups: RPO at risk`);
  assert.equal(((await group(warn).result()) as AlertGroupState).resolved, true);
});
