/**
 * alertGroup: one workflow per dedup key (`alert/<service>/<rule>`), started by the first raise.
 * Repeats within the window become one notification with a count; timings follow Alertmanager
 * (group wait, group interval, repeat interval): a changed alert (another severity or summary) is
 * notified a group interval after the last notification; the same alert raised again (a scheduled
 * check that keeps failing) only at the repeat interval, with the count of raises since. A
 * `resolve` sends a resolved notification and ends the group; the next raise starts a new one. A
 * raise that comes after the resolve, even while the resolved notice is still being sent (a
 * flapping service), starts that new cycle right after it (continue-as-new with a fresh group).
 */
import { condition, continueAsNew, defineQuery, defineSignal, executeChild, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Alert, Notification } from '../schemas/alert';
import { deliverAlert, type DeliverAlertResult } from './deliver-alert';
import { now } from './shared/deterministic';
import { showDetails } from './shared/runbook';

export interface AlertGroupState {
  dedupKey: string;
  alert?: Alert;
  firstAt: number;
  /** Raises since the last notification. */
  pending: number;
  total: number;
  seq: number;
  lastNotifiedAt?: number;
  /** What the last notification said (a raise that differs is a change, not a repeat). */
  notified?: { severity: Alert['severity']; summary: string };
  resolved: boolean;
  /** Raises after the resolve (the service is failing again): the next cycle, started once the resolve is sent. */
  next?: { alert: Alert; raises: number };
  last?: { notification: string; status: string; channel?: string; deadLettered: boolean; failures: DeliverAlertResult['failures'] };
}

export const raiseSignal = defineSignal<[{ alert: Alert; at: number }]>('raise');
export const resolveSignal = defineSignal<[{ at: number }?]>('resolve');
export const alertGroupStatusQuery = defineQuery<AlertGroupState>('status');

const { alertRoute } = proxyActivities<Activities>({ startToCloseTimeout: '30s', retry: { maximumInterval: '30s' } });

export async function alertGroup(input: { dedupKey: string }, carried?: AlertGroupState): Promise<AlertGroupState> {
  const state: AlertGroupState = carried ?? { dedupKey: input.dedupKey, firstAt: now(), pending: 0, total: 0, seq: 0, resolved: false };
  setHandler(raiseSignal, ({ alert }) => {
    if (state.resolved) {
      // After the resolve: not part of this group (its resolve goes out as it is), the next one's.
      state.next = { alert, raises: (state.next?.raises ?? 0) + 1 };
      return;
    }
    state.alert = alert;
    state.pending += 1;
    state.total += 1;
  });
  setHandler(resolveSignal, () => {
    // Resolved again before the next cycle began: nothing to tell about it.
    if (state.resolved) state.next = undefined;
    state.resolved = true;
  });
  setHandler(alertGroupStatusQuery, () => state);

  await condition(() => state.alert !== undefined || state.resolved);
  const severity = state.alert?.severity ?? 'warning';
  const { grouping } = await alertRoute(severity);

  const notify = async (status: 'firing' | 'resolved') => {
    state.seq += 1;
    const notification: Notification = {
      id: `${state.dedupKey}#${state.firstAt}-${state.seq}`,
      status,
      dedupKey: state.dedupKey,
      alert: state.alert!,
      count: status === 'resolved' ? state.total : Math.max(1, state.pending),
      firstAt: state.firstAt,
    };
    state.pending = 0;
    state.lastNotifiedAt = now();
    state.notified = { severity: state.alert!.severity, summary: state.alert!.summary };
    const result = await executeChild(deliverAlert, {
      workflowId: `${workflowInfo().workflowId}/${state.firstAt}-${state.seq}`,
      args: [{ notification, deadLetterOnFailure: true }],
    });
    state.last = { notification: notification.id, status, channel: result.delivered?.channel, deadLettered: result.deadLettered, failures: result.failures };
    showDetails(`alert ${state.dedupKey}: ${status}`, {
      severity: state.alert?.severity,
      notifications: state.seq,
      raised: state.total,
      'last channel': result.delivered?.channel ?? (result.deadLettered ? 'dead letters' : 'none'),
      fallbacks: result.failures.map((f) => f.channel).join(', '),
    });
  };

  /** The group is over: done, unless raises came after the resolve; then a fresh group notifies them. */
  const end = async (): Promise<AlertGroupState> => {
    const next = state.next;
    // Histories from before dropped such raises.
    if (next && patched('alert-raise-after-resolve-starts-new-group')) {
      return continueAsNew<typeof alertGroup>(input, { dedupKey: state.dedupKey, alert: next.alert, firstAt: now(), pending: next.raises, total: next.raises, seq: 0, resolved: false });
    }
    return state;
  };

  if (state.seq === 0) {
    // Group wait: gather the first burst; resolved before anyone was told means nothing to say.
    await condition(() => state.resolved, grouping.groupWaitMs);
    if (state.resolved || state.alert === undefined) return end();
    await notify('firing');
  }

  for (;;) {
    if (state.resolved) {
      await notify('resolved');
      return end();
    }
    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > 1_000) {
      return continueAsNew<typeof alertGroup>(input, state);
    }
    const t = now();
    const last = state.lastNotifiedAt ?? t;
    // Histories from before this rule notified every raise after a group interval.
    const changed = !patched('alert-repeats-wait-for-repeat-interval') || (state.alert !== undefined && (state.alert.severity !== state.notified?.severity || state.alert.summary !== state.notified?.summary));
    const news = state.pending > 0 && changed;
    if (news && t >= last + grouping.groupIntervalMs) {
      await notify('firing');
      continue;
    }
    if (t >= last + grouping.repeatIntervalMs) {
      await notify('firing');
      continue;
    }
    const wakeAt = news ? last + grouping.groupIntervalMs : last + grouping.repeatIntervalMs;
    const seen = state.pending;
    await condition(() => state.resolved || state.pending !== seen, Math.max(1, wakeAt - t));
  }
}
