/**
 * deadLetters with a stubbed metrics activity on the real Temporal server: recording the depth
 * metric fails every time, and the dead letters go on (entries kept, replays still run); the
 * failure is only logged.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { Activities } from '../../src/activities';
import type { DeadLetter } from '../../src/schemas/alert';
import type { DeadLetterState } from '../../src/workflows/dead-letters';
import { connectClient, startWorker, uniqueName, type RunningWorker } from '../helpers/temporal';
import { sleep, waitUntil } from '../helpers/wait';

let client: Client;
let worker: RunningWorker;
let metricCalls = 0;

before(async () => {
  client = await connectClient();
  const activities: Partial<Activities> = {
    recordDeadLetterDepth: async () => {
      metricCalls += 1;
      throw ApplicationFailure.nonRetryable('metrics registry unavailable', 'MetricsDown');
    },
  };
  worker = await startWorker({ taskQueue: uniqueName('dead-letters-unit'), activities });
});

after(async () => {
  await worker.stop();
  await client.connection.close();
});

const entry = (id: string): DeadLetter => ({ id, kind: 'workflow', at: Date.now(), error: 'step failed', attempts: 1, service: 'web', replays: 0 });

test('a failing depth metric never ends the dead-letter workflow', async () => {
  const handle = await client.workflow.signalWithStart('deadLetters', {
    taskQueue: worker.taskQueue,
    workflowId: `dead-letters/${uniqueName('unit')}`,
    args: [{}],
    signal: 'add',
    signalArgs: [entry('a')],
  });
  try {
    await waitUntil('the first depth metric attempt', () => metricCalls >= 1, 10_000, 50);
    await handle.signal('add', entry('b'));
    await waitUntil('the depth metric tried again for the new entry', () => metricCalls >= 2, 10_000, 50);
    await sleep(500);
    assert.equal((await handle.describe()).status.name, 'RUNNING');

    // Still serving: a replay runs (and fails again: the entry has nothing to re-run), entries stay.
    await handle.signal('replay', { ids: ['a'], by: 'test' });
    const state = await waitUntil('the replay recorded', async () => {
      const s = await handle.query<DeadLetterState>('list');
      return s.replayed.length > 0 ? s : undefined;
    }, 10_000, 100);
    assert.deepEqual(state.entries.map((e) => e.id), ['a', 'b']);
    assert.match(state.replayed[0]!.outcome, /failed again: nothing to replay/);
    assert.equal((await handle.describe()).status.name, 'RUNNING');
  } finally {
    await handle.terminate('test done').catch(() => undefined);
  }
});
