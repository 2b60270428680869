/**
 * The storm, short form (about two minutes): random scale (two operators, and one waiting in
 * line), resize, restart, volume backup and restore, container crashes and cancels at random moments
 * on three supervised services behind HAProxy, with a worker SIGKILL in the middle and load the
 * whole time; then the runbook core's invariants (test/helpers/storm.ts). The long form:
 * `npm run storm -- --minutes N`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatStorm, runStorm } from '../helpers/storm';

test('storm: concurrent runbooks, cancels and a worker SIGKILL leave every service whole, served, and never held twice', { timeout: 600_000 }, async () => {
  const report = await runStorm({ durationMs: Number(process.env.DURABLE_OPS_STORM_MS ?? 60_000), meanGapMs: 1_200, basePort: 19700, log: (l) => console.log(l) });
  console.log(formatStorm(report));
  for (const row of report.table) assert.ok(row.ok, `${row.invariant}: ${row.detail}`);
  assert.ok(report.counts.runs! >= 15, `enough runs fired (${report.counts.runs})`);
  assert.ok(report.requests.total > 1_000, `enough requests (${report.requests.total})`);
});
