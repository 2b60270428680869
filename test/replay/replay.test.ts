/**
 * Recorded histories (test/replay/histories, exported from real runs with
 * `npm run record-histories`) replay against today's workflow code: a change that would break
 * running supervisors or recorded recoveries fails here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { replayTracingOptions } from '../../src/observability/tracing';
import { workflowSource } from '../../src/workers/worker';
import { loadHistories } from '../helpers/histories';

test('recorded histories replay deterministically against the current workflows', async () => {
  const histories = loadHistories();
  assert.ok(histories.length >= 4, `expected the recorded histories, found ${histories.length}`);
  const replayed: string[] = [];
  const source = workflowSource(process.env.DURABLE_OPS_WORKFLOW_BUNDLE);
  for await (const result of Worker.runReplayHistories({ ...source, ...replayTracingOptions(!source.workflowBundle), replayName: 'durable-ops-replay' }, histories)) {
    assert.equal(result.error, undefined, `${result.workflowId}: ${result.error?.message}`);
    replayed.push(result.workflowId);
  }
  assert.deepEqual(replayed.sort(), histories.map((h) => h.workflowId).sort());
});
