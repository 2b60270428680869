/**
 * Polling activities wait with the activity's own sleep (src/activities/activity-sleep.ts): a
 * cancelled activity stops polling at once instead of waiting out its loop; outside an activity
 * (tests, the stack scripts) the same helper is a plain timer. No Temporal server needed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { activitySleep } from '../../src/activities/activity-sleep';
import { createCredentialActivities, type PgTarget } from '../../src/activities/credentials';
import { testLog } from '../helpers/temporal';

test('outside an activity the sleep is a plain timer', async () => {
  const t0 = Date.now();
  await activitySleep(50);
  assert.ok(Date.now() - t0 >= 45, `slept ${Date.now() - t0} ms`);
});

test('a cancelled polling activity stops at once (waitRoleSessionsGone: a session that never ends)', async () => {
  let polls = 0;
  const pg: PgTarget = {
    admin: async (fn) => fn(async () => {
      polls += 1;
      return { rows: [{ n: 1 }] };
    }),
    login: async () => 'x',
  };
  const acts = createCredentialActivities({ kv: {} as never, pg, log: testLog });
  const env = new MockActivityEnvironment();
  const t0 = Date.now();
  const running = env.run(acts.waitRoleSessionsGone, { role: 'app_v1', graceMs: 20_000 });
  setTimeout(() => env.cancel('CANCELLED'), 300);
  const outcome = await Promise.race([running.then(() => 'returned', (err: unknown) => err), new Promise((r) => setTimeout(() => r('still polling'), 3_000))]);
  assert.ok(outcome instanceof CancelledFailure, `expected a CancelledFailure within 3 s of the cancel, got ${String(outcome)}`);
  assert.ok(Date.now() - t0 < 3_000);
  const after = polls;
  await new Promise((r) => setTimeout(r, 1_200));
  assert.equal(polls, after, 'no poll after the cancel');
});
