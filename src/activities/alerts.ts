/**
 * Alert delivery: channels behind one interface (email via nodemailer, a generic JSON webhook,
 * a Slack-shaped webhook, a PagerDuty Events v2-shaped one), each call through its own
 * circuit breaker, plus the entry points runbooks use:
 *   sendAlert      raise an alert: signal-with-start its group workflow `alert/<dedupKey>`
 *                  (dedup, grouping, fallback, dead letters happen there)
 *   resolveAlert   the condition cleared: the group sends a resolve
 *   deadLetter     park something undeliverable in the `dead-letters` workflow
 * A 429 or Retry-After is honoured through the activity's nextRetryDelay.
 */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import { chainFor, type AlertingConfig, type ChannelConfig } from '../config/alerting';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../config/search-attributes';
import { alertSchema, dedupKeyOf, type Alert, type ChannelPolicy, type DeadLetter, type DeliveryReceipt, type Notification, type Severity } from '../schemas/alert';
import type { BreakerRegistry } from './breaker';
import { redact } from './redact';

export interface AlertDeps {
  mailer: Transporter;
  from: string;
  to: string[];
  log: Logger;
  alerting: AlertingConfig;
  breakers: BreakerRegistry;
  /** Temporal client and task queue, to reach the alert group and dead-letter workflows. */
  client: Client;
  taskQueue: string;
  fetch?: typeof fetch;
  env?: NodeJS.ProcessEnv;
  /** Metrics hooks (the worker wires them to Prometheus). */
  metrics?: AlertMetrics;
}

export interface AlertMetrics {
  delivered(channel: string, deduplicated: number): void;
  failed(channel: string): void;
  deadLetterDepth(depth: number): void;
}

export interface AlertReceipt {
  dedupKey: string;
  groupWorkflowId: string;
}

export const alertGroupWorkflowId = (dedupKey: string) => `alert/${dedupKey}`;
/** One dead-letter store per task queue (production: `dead-letters/durable-ops`). */
export const deadLettersWorkflowId = (taskQueue: string) => `dead-letters/${taskQueue}`;

function renderText(n: Notification): { subject: string; text: string } {
  const a = n.alert;
  const state = n.status === 'resolved' ? 'RESOLVED' : a.severity.toUpperCase();
  const repeats = n.count > 1 ? ` (x${n.count})` : '';
  const subject = `[${state}] ${a.service}: ${a.summary}${repeats}`;
  const lines = [
    `Severity: ${a.severity}`,
    `Status:   ${n.status}`,
    `Service:  ${a.service}`,
    `Summary:  ${a.summary}`,
    a.runbook ? `Runbook:  ${a.runbook}` : undefined,
    a.workflowId ? `Workflow: ${a.workflowId}` : undefined,
    `Dedup key: ${n.dedupKey}`,
    n.count > 1 ? `Repeats:  ${n.count} since the last notification` : undefined,
    ...(n.fallbackFrom ?? []).map((f) => `Fallback: ${f.channel} failed (${f.error})`),
    '',
    ...Object.entries(a.details ?? {}).flatMap(([k, v]) => {
      const value = String(v);
      return value.includes('\n') ? [`${k}:`, ...value.split('\n').map((l) => `    ${l}`)] : [`${k}: ${value}`];
    }),
  ].filter((l): l is string => l !== undefined);
  return { subject: redact(subject), text: redact(lines.join('\n')) };
}

/** Seconds or an HTTP date, as Retry-After allows; undefined if absent or unreadable. */
export function retryAfterMs(header: string | null, nowMs = Date.now()): number | undefined {
  if (!header) return undefined;
  const secs = Number(header);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** Raise an alert into its group workflow (signal-with-start). Used by runbooks and the Alertmanager receiver. */
export async function raiseAlert(client: Client, taskQueue: string, raw: Alert): Promise<AlertReceipt> {
  const alert = alertSchema.parse(raw);
  const dedupKey = dedupKeyOf(alert);
  const workflowId = alertGroupWorkflowId(dedupKey);
  await client.workflow.signalWithStart('alertGroup', {
    taskQueue,
    workflowId,
    args: [{ dedupKey }],
    signal: 'raise',
    signalArgs: [{ alert, at: Date.now() }],
    typedSearchAttributes: [
      { key: SERVICE_ATTR, value: alert.service },
      { key: RUNBOOK_ATTR, value: 'alertGroup' },
    ],
    staticSummary: `alert ${dedupKey}`,
  });
  return { dedupKey, groupWorkflowId: workflowId };
}

/** Tell a group its condition cleared; false when no group is open for that key. */
export async function resolveAlertGroup(client: Client, dedupKey: string): Promise<boolean> {
  try {
    await client.workflow.getHandle(alertGroupWorkflowId(dedupKey)).signal('resolve', { at: Date.now() });
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

export function createAlertActivities(deps: AlertDeps) {
  const { mailer, from, to, log, alerting, breakers, client, taskQueue } = deps;
  const fetchImpl = deps.fetch ?? fetch;
  const env = deps.env ?? process.env;

  async function postJson(channel: string, cfg: ChannelConfig & { url: string }, body: unknown, n: Notification): Promise<DeliveryReceipt> {
    return breakers.call(
      `channel:${channel}`,
      async () => {
        const res = await fetchImpl(cfg.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': n.id, 'user-agent': 'durable-ops' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(cfg.timeoutMs),
          redirect: 'manual',
        });
        const text = await res.text().catch(() => '');
        if (res.ok) return { channel, type: cfg.type, id: n.id, status: res.status };
        const retryIn = retryAfterMs(res.headers.get('retry-after'));
        if (res.status === 429 || res.status >= 500 || retryIn !== undefined) {
          // Honour the receiver's pace: Temporal retries after exactly this long.
          throw ApplicationFailure.create({
            type: res.status === 429 ? 'RateLimited' : 'ChannelUnavailable',
            message: `${channel}: HTTP ${res.status}${retryIn !== undefined ? ` (Retry-After ${retryIn} ms)` : ''}`,
            nextRetryDelay: retryIn ?? undefined,
          });
        }
        throw ApplicationFailure.nonRetryable(`${channel}: HTTP ${res.status} ${text.slice(0, 200)}`, 'ChannelRejected');
      },
      { timeoutMs: cfg.timeoutMs + 1_000 },
      { openIsFinal: true },
    );
  }

  const senders: Record<ChannelConfig['type'], (channel: string, cfg: ChannelConfig, n: Notification) => Promise<DeliveryReceipt>> = {
    async email(channel, cfg, n) {
      const { subject, text } = renderText(n);
      const recipients = cfg.type === 'email' && cfg.to ? cfg.to : to;
      await breakers.call(
        `channel:${channel}`,
        () =>
        mailer.sendMail({
          from,
          to: recipients,
          subject,
          text,
          messageId: `<${n.id.replace(/[^\w.-]/g, '-')}@durable-ops>`,
          headers: { 'X-Durable-Ops-Severity': n.alert.severity, 'X-Durable-Ops-Service': n.alert.service, 'X-Durable-Ops-Dedup-Key': n.dedupKey },
        }),
        { timeoutMs: cfg.timeoutMs },
        { openIsFinal: true },
      );
      return { channel, type: 'email', id: n.id };
    },
    async webhook(channel, cfg, n) {
      const a = n.alert;
      const body = { id: n.id, status: n.status, dedupKey: n.dedupKey, severity: a.severity, service: a.service, summary: redact(a.summary), details: JSON.parse(redact(JSON.stringify(a.details ?? {}))), count: n.count, firstAt: new Date(n.firstAt).toISOString(), runbook: a.runbook, workflowId: a.workflowId, fallbackFrom: n.fallbackFrom ?? [] };
      return postJson(channel, cfg as ChannelConfig & { url: string }, body, n);
    },
    async slack(channel, cfg, n) {
      const { subject, text } = renderText(n);
      const color = n.status === 'resolved' ? 'good' : n.alert.severity === 'critical' ? 'danger' : 'warning';
      const body = { text: subject, attachments: [{ color, fallback: subject, text, footer: `durable-ops ${n.id}` }] };
      return postJson(channel, cfg as ChannelConfig & { url: string }, body, n);
    },
    async pagerduty(channel, cfg, n) {
      if (cfg.type !== 'pagerduty') throw new Error('unreachable');
      const routingKey = env[cfg.routingKeyEnv];
      if (!routingKey) throw ApplicationFailure.nonRetryable(`${channel}: environment variable ${cfg.routingKeyEnv} (routing key) is not set`, 'ChannelMisconfigured');
      const a = n.alert;
      const body = {
        routing_key: routingKey,
        event_action: n.status === 'resolved' ? 'resolve' : 'trigger',
        dedup_key: n.dedupKey,
        payload: { summary: redact(`${a.service}: ${a.summary}`), source: a.service, severity: a.severity, custom_details: { ...JSON.parse(redact(JSON.stringify(a.details ?? {}))), count: n.count, notification: n.id, fallbackFrom: n.fallbackFrom ?? [] } },
      };
      return postJson(channel, cfg, body, n);
    },
  };

  return {
    /** The delivery chain for a severity, with each channel's timeout and retry policy. */
    async alertRoute(severity: Severity): Promise<{ chain: ChannelPolicy[]; grouping: AlertingConfig['grouping'] }> {
      return {
        chain: chainFor(alerting, severity).map((name) => {
          const c = alerting.channels[name]!;
          return { name, type: c.type, timeoutMs: c.timeoutMs, maxAttempts: c.retry.maxAttempts, initialIntervalMs: c.retry.initialIntervalMs, maxIntervalMs: c.retry.maxIntervalMs };
        }),
        grouping: alerting.grouping,
      };
    },

    /** Deliver one notification through one channel. Throws so Temporal retries; the chain falls back. */
    async deliverNotification(input: { channel: string; notification: Notification }): Promise<DeliveryReceipt> {
      const cfg = alerting.channels[input.channel];
      if (!cfg) throw ApplicationFailure.nonRetryable(`unknown channel "${input.channel}"`, 'ChannelMisconfigured');
      let receipt: DeliveryReceipt;
      try {
        receipt = await senders[cfg.type](input.channel, cfg, input.notification);
      } catch (err) {
        deps.metrics?.failed(input.channel);
        throw err;
      }
      deps.metrics?.delivered(input.channel, Math.max(0, input.notification.count - 1));
      log.info({ channel: input.channel, notification: input.notification.id, status: input.notification.status, service: input.notification.alert.service, attempt: Context.current().info.attempt }, 'alert delivered');
      return receipt;
    },

    /** Raise an alert: it joins its group (`alert/<dedupKey>`), which dedups, groups and delivers. */
    async sendAlert(raw: Alert): Promise<AlertReceipt> {
      const receipt = await raiseAlert(client, taskQueue, raw);
      log.info({ dedupKey: receipt.dedupKey, severity: raw.severity, service: raw.service }, 'alert raised');
      return receipt;
    },

    /** The condition behind an alert cleared: its group sends a resolve (if it notified at all). */
    async resolveAlert(input: { dedupKey: string }): Promise<{ resolved: boolean }> {
      return { resolved: await resolveAlertGroup(client, input.dedupKey) };
    },

    /** Report the dead-letter depth (a metric with an alert rule). */
    async recordDeadLetterDepth(input: { depth: number }): Promise<void> {
      deps.metrics?.deadLetterDepth(input.depth);
    },

    /** Park an undeliverable alert or a failed runbook step in the dead-letter workflow. */
    async deadLetter(entry: Omit<DeadLetter, 'replays'>): Promise<void> {
      await client.workflow.signalWithStart('deadLetters', {
        taskQueue,
        workflowId: deadLettersWorkflowId(taskQueue),
        args: [{}],
        signal: 'add',
        signalArgs: [{ ...entry, replays: 0 }],
        typedSearchAttributes: [
          { key: SERVICE_ATTR, value: 'durable-ops' },
          { key: RUNBOOK_ATTR, value: 'deadLetters' },
        ],
        staticSummary: 'dead letters',
      });
      log.error({ deadLetter: entry.id, kind: entry.kind, error: entry.error }, 'dead-lettered');
    },
  };
}
