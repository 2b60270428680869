/**
 * Running a recoveryDrill from a test and checking what every drill report must show (shared by
 * the drill test files).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { startRunbook } from '../../src/runbooks/registry';
import type { RecoveryDrillInput } from '../../src/schemas/recovery-drill';
import type { DrillReport } from '../../src/workflows/recovery-drill';
import { config, uniqueName } from './temporal';

/** Start a drill, wait for its report; a failed drill fails the test with its steps and rollbacks. Report folders go into `reportDirs`. */
export async function runDrill(client: Client, taskQueue: string, input: RecoveryDrillInput, reportDirs: string[], workflowId = uniqueName(`drill/${input.scenario}`)): Promise<DrillReport> {
  const handle = await startRunbook(client, 'recoveryDrill', input, { taskQueue, workflowId });
  let report: DrillReport;
  try {
    report = await handle.result();
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? err.cause : undefined;
    const details = cause instanceof ApplicationFailure ? (cause.details?.[0] as DrillReport | undefined) : undefined;
    if (details?.files) reportDirs.push(details.files.dir);
    assert.fail(`drill failed: ${cause?.message ?? String(err)}\n${JSON.stringify(details?.steps ?? [], null, 1)}\nrollbacks: ${JSON.stringify(details?.rollbacks ?? [])}`);
  }
  if (report.files) reportDirs.push(report.files.dir);
  return report;
}

/** What every drill report must show: the files, the picture, measured RTO, verdicts, rollbacks that ran. */
export function assertReport(r: DrillReport, scenario: string): void {
  assert.equal(r.scenario, scenario);
  assert.equal(r.outcome, 'recovered', r.error);
  for (const ev of ['fault injected', 'detected', 'recovery started', 'service healthy', 'steady state verified']) {
    assert.ok(r.timeline.some((e) => e.event === ev), `timeline has "${ev}"`);
  }
  const at = (ev: string) => r.timeline.find((e) => e.event === ev)!.at;
  assert.ok(at('fault injected') <= at('detected') && at('detected') <= at('recovery started') && at('service healthy') <= at('steady state verified'), 'events in order');
  assert.ok(r.rto.ms !== undefined && r.rto.ms > 0, `RTO measured: ${r.rto.ms}`);
  assert.equal(r.rto.ms, at('steady state verified') - at('fault injected'));
  assert.equal(r.rto.verdict, r.rto.ms <= r.rto.targetMs ? 'pass' : 'fail');
  assert.ok(r.steps.every((s) => s.ok), `every step ok: ${JSON.stringify(r.steps.filter((s) => !s.ok))}`);
  assert.ok(r.rollbacks.length > 0 && r.rollbacks.every((b) => b.ok), `rollbacks ran: ${JSON.stringify(r.rollbacks)}`);
  assert.ok(r.files, 'report files written');
  const json = JSON.parse(readFileSync(r.files.json, 'utf8')) as DrillReport;
  assert.equal(json.drillId, r.drillId);
  assert.deepEqual(json.timeline, r.timeline);
  const md = readFileSync(r.files.markdown, 'utf8');
  assert.match(md, new RegExp(`scenario: \\*\\*${scenario}\\*\\*`));
  assert.match(md, /RTO: [\d.]+ (s|min)/);
  const svg = readFileSync(r.files.svg, 'utf8');
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /fault injected/);
  assert.match(svg, /RTO [\d.]+ (s|min)/);
  assert.equal(path.dirname(r.files.json), r.files.dir);
  assert.ok(r.files.dir.startsWith(path.join(config.DURABLE_OPS_DATA, 'drills')), r.files.dir);
  process.stdout.write(`# ${scenario}: RTO ${r.rto.ms} ms (${r.rto.verdict}), RPO ${r.rpo.ms ?? 'n/a'} ms (${r.rpo.verdict}), verdict ${r.verdict}\n`);
}
