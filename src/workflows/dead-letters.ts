/**
 * deadLetters: the one place undeliverable alerts and failed runbook steps wait for a human
 * (workflow id `dead-letters/<task queue>`). Nothing is dropped: entries stay until replayed successfully
 * or discarded with a reason.
 *   query  `list`             the entries (and the recent replays and discards)
 *   signal `replay`           { ids } | { service } | { kind } | { all: true }: re-send / re-run
 *   update `discard`          { ids, reason, by }: reason required; recorded
 * History stays bounded with continue-as-new.
 */
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  executeChild,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { DeadLetter } from '../schemas/alert';
import { deliverAlert } from './deliver-alert';
import { now } from './shared/deterministic';
import { rootMessage } from './shared/errors';
import { showDetails } from './shared/runbook';

export interface ReplayRequest {
  ids?: string[];
  service?: string;
  kind?: DeadLetter['kind'];
  all?: boolean;
  by?: string;
}

export interface DeadLetterState {
  entries: DeadLetter[];
  replayed: Array<{ id: string; at: number; outcome: string }>;
  discarded: Array<{ id: string; at: number; reason: string; by: string }>;
  requests: ReplayRequest[];
}

export const addSignal = defineSignal<[DeadLetter]>('add');
export const replaySignal = defineSignal<[ReplayRequest]>('replay');
export const discardUpdate = defineUpdate<{ discarded: string[] }, [{ ids: string[]; reason: string; by: string }]>('discard');
export const listQuery = defineQuery<DeadLetterState>('list');

const KEEP_LOG = 50;

const { recordDeadLetterDepth } = proxyActivities<Activities>({ startToCloseTimeout: '10s', retry: { maximumAttempts: 3 } });

function selects(req: ReplayRequest, e: DeadLetter): boolean {
  if (req.all) return true;
  if (req.ids) return req.ids.includes(e.id);
  if (req.service) return e.service === req.service;
  if (req.kind) return e.kind === req.kind;
  return false;
}

export async function deadLetters(_input: Record<string, never> = {}, carried?: DeadLetterState): Promise<void> {
  const state: DeadLetterState = carried ?? { entries: [], replayed: [], discarded: [], requests: [] };
  let depthReported = -1;

  const publish = () =>
    showDetails(`dead letters: ${state.entries.length} waiting`, {
      waiting: state.entries.length,
      alerts: state.entries.filter((e) => e.kind === 'alert').length,
      'runbook steps': state.entries.filter((e) => e.kind === 'workflow').length,
      'oldest': state.entries[0] ? new Date(state.entries[0].at).toISOString() : undefined,
    });

  setHandler(addSignal, (entry) => {
    if (state.entries.some((e) => e.id === entry.id)) return; // a retried add is harmless
    state.entries.push(entry);
    publish();
  });
  setHandler(replaySignal, (req) => {
    state.requests.push(req);
  });
  setHandler(discardUpdate, ({ ids, reason, by }) => {
    const gone = new Set(ids);
    for (const e of state.entries) if (gone.has(e.id)) state.discarded.push({ id: e.id, at: now(), reason, by });
    state.discarded = state.discarded.slice(-KEEP_LOG);
    state.entries = state.entries.filter((e) => !gone.has(e.id));
    publish();
    return { discarded: ids };
  }, {
    validator: ({ ids, reason, by }) => {
      if (!reason || reason.trim().length < 3) throw new Error('reason: a reason is required to discard (at least 3 characters)');
      if (!by || by.trim() === '') throw new Error('by: who discards is required');
      if (!Array.isArray(ids) || ids.length === 0) throw new Error('ids: name at least one entry');
      const unknown = ids.filter((id) => !state.entries.some((e) => e.id === id));
      if (unknown.length > 0) throw new Error(`ids: no such entries: ${unknown.join(', ')}`);
    },
  });
  setHandler(listQuery, () => state);

  publish();
  for (;;) {
    if (depthReported !== state.entries.length) {
      depthReported = state.entries.length;
      try {
        await recordDeadLetterDepth({ depth: depthReported });
      } catch (err) {
        // A metric is never worth the dead letters themselves: log it and carry on (histories
        // from before this failed the workflow here).
        if (isCancellation(err) || !patched('dead-letters-metric-failure-logged')) throw err;
        log.warn('dead-letter depth metric not recorded', { depth: depthReported, error: rootMessage(err) });
      }
    }
    const info = workflowInfo();
    if ((info.continueAsNewSuggested || info.historyLength > 2_000) && state.requests.length === 0) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof deadLetters>({}, state);
    }
    await condition(() => state.requests.length > 0 || depthReported !== state.entries.length, '1 hour');
    const req = state.requests.shift();
    if (!req) continue;
    for (const entry of state.entries.filter((e) => selects(req, e))) {
      entry.replays += 1;
      let outcome: string;
      try {
        if (entry.kind === 'alert' && entry.notification) {
          const result = await executeChild(deliverAlert, {
            workflowId: `dead-letters/replay/${entry.id}/${entry.replays}`,
            args: [{ notification: entry.notification, deadLetterOnFailure: false }],
          });
          if (!result.delivered) throw new Error(result.failures.map((f) => `${f.channel}: ${f.error}`).join('; '));
          outcome = `delivered via ${result.delivered.channel}`;
        } else if (entry.kind === 'workflow' && entry.workflow) {
          await executeChild(entry.workflow.workflowType, {
            workflowId: `dead-letters/rerun/${entry.id}/${entry.replays}`,
            args: [entry.workflow.input],
          });
          outcome = `${entry.workflow.workflowType} completed`;
        } else {
          throw new Error('nothing to replay');
        }
        state.entries = state.entries.filter((e) => e.id !== entry.id);
      } catch (err) {
        entry.error = rootMessage(err);
        entry.attempts += 1;
        outcome = `failed again: ${entry.error}`;
      }
      state.replayed.push({ id: entry.id, at: now(), outcome: `${outcome}${req.by ? ` (by ${req.by})` : ''}` });
      state.replayed = state.replayed.slice(-KEEP_LOG);
      publish();
    }
  }
}
