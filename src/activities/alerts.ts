/**
 * Alerts by email (nodemailer). A delivery that fails throws, so Temporal retries it and a
 * delivery that keeps failing surfaces as a failed activity, never a silent drop.
 * The Message-ID is derived from the workflow and activity ids, so a retried send carries
 * the same id and a receiver can tell it is a repeat.
 */
import { Context } from '@temporalio/activity';
import type { Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import type { Alert } from '../schemas/alert';
import { redact } from './redact';

export interface AlertDeps {
  mailer: Transporter;
  from: string;
  to: string[];
  log: Logger;
}

export interface AlertReceipt {
  channel: 'email';
  messageId: string;
  accepted: string[];
}

function render(alert: Alert): { subject: string; text: string } {
  const subject = `[${alert.severity.toUpperCase()}] ${alert.service}: ${alert.summary}`;
  const lines = [
    `Severity: ${alert.severity}`,
    `Service:  ${alert.service}`,
    `Summary:  ${alert.summary}`,
    alert.runbook ? `Runbook:  ${alert.runbook}` : undefined,
    alert.workflowId ? `Workflow: ${alert.workflowId}` : undefined,
    '',
    ...Object.entries(alert.details ?? {}).flatMap(([k, v]) => {
      const value = String(v);
      return value.includes('\n') ? [`${k}:`, ...value.split('\n').map((l) => `    ${l}`)] : [`${k}: ${value}`];
    }),
  ].filter((l): l is string => l !== undefined);
  return { subject: redact(subject), text: redact(lines.join('\n')) };
}

export function createAlertActivities({ mailer, from, to, log }: AlertDeps) {
  return {
    async sendAlert(alert: Alert): Promise<AlertReceipt> {
      const info = Context.current().info;
      const wf = info.workflowExecution;
      const messageId = `<${wf ? `${wf.workflowId}.${wf.runId}` : 'standalone'}.${info.activityId}@durable-ops>`.replace(/[^\w<>@.-]/g, '-');
      const { subject, text } = render(alert);
      const result = await mailer.sendMail({
        from,
        to,
        subject,
        text,
        messageId,
        headers: {
          'X-Durable-Ops-Severity': alert.severity,
          'X-Durable-Ops-Service': alert.service,
          ...(alert.dedupKey ? { 'X-Durable-Ops-Dedup-Key': alert.dedupKey } : {}),
        },
      });
      log.info({ severity: alert.severity, service: alert.service, summary: alert.summary, messageId }, 'alert sent by email');
      return { channel: 'email', messageId, accepted: (result.accepted ?? []).map(String) };
    },
  };
}
