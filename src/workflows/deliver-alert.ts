/**
 * deliverAlert: one notification through its fallback chain. Each channel is an activity with
 * that channel's timeout and retry policy; when it keeps failing (or its breaker is open) the
 * next channel gets the notification, which says so. If no channel delivers it, it goes to the
 * dead letters (unless this is already a replay from there).
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { DeliveryReceipt, Notification } from '../schemas/alert';
import { now } from './shared/deterministic';
import { rootMessage } from './shared/errors';

export interface DeliverAlertInput {
  notification: Notification;
  deadLetterOnFailure: boolean;
}

export interface DeliverAlertResult {
  delivered?: DeliveryReceipt;
  failures: Array<{ channel: string; error: string }>;
  deadLettered: boolean;
}

const control = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

export async function deliverAlert(input: DeliverAlertInput): Promise<DeliverAlertResult> {
  const { chain } = await control.alertRoute(input.notification.alert.severity);
  const failures: DeliverAlertResult['failures'] = [];
  for (const ch of chain) {
    const channel = proxyActivities<Activities>({
      startToCloseTimeout: ch.timeoutMs + 5_000,
      retry: { initialInterval: ch.initialIntervalMs, maximumInterval: ch.maxIntervalMs, backoffCoefficient: 2, maximumAttempts: ch.maxAttempts },
    });
    try {
      const notification = failures.length > 0 ? { ...input.notification, fallbackFrom: [...failures] } : input.notification;
      const delivered = await channel.deliverNotification({ channel: ch.name, notification });
      return { delivered, failures, deadLettered: false };
    } catch (err) {
      // Channel errors already start with the channel's name; keep the reason only.
      const message = rootMessage(err);
      failures.push({ channel: ch.name, error: message.startsWith(`${ch.name}: `) ? message.slice(ch.name.length + 2) : message });
    }
  }
  if (!input.deadLetterOnFailure) return { failures, deadLettered: false };
  await control.deadLetter({
    id: input.notification.id,
    kind: 'alert',
    at: now(),
    error: failures.map((f) => `${f.channel}: ${f.error}`).join('; ') || 'no channel routed',
    attempts: failures.length,
    notification: input.notification,
    service: input.notification.alert.service,
  });
  return { failures, deadLettered: true };
}
