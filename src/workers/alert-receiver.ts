/**
 * The alert receiver: an HTTP server on 127.0.0.1 (DURABLE_OPS_RECEIVER_PORT, default 9466)
 * for Alertmanager's webhook (POST /alertmanager, payload version 4, validated with zod).
 * Each alert becomes the runbook action it calls for:
 *   service_down firing  -> `failure` signal (kind alert, source alertmanager) to supervise/<service>:
 *                           signal-with-start when the container carries the durable-ops labels
 *                           (as the Docker event bridge does), else only an existing supervisor
 *   high_cpu firing      -> a warning alert through the alert groups (no autoscaler yet)
 *   other firing alerts  -> logged
 *   resolved             -> logged
 * Alertmanager repeats notifications (group_interval, repeat_interval, retries after a 5xx):
 * an alert is acted on once per fingerprint + startsAt + status (a bounded LRU), and the
 * supervisor ignores a failure older than its last restart anyway.
 */
import http from 'node:http';
import type net from 'node:net';
import type { Client } from '@temporalio/client';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { z } from 'zod';
import { raiseAlert, resolveAlertGroup } from '../activities/alerts';
import { listenLoopback } from '../observability/server';
import { containerName } from '../schemas/common';
import type { FailureSignal } from '../schemas/supervise-service';
import { forwardFailure } from './docker-events';

export const RECEIVER_PATH = '/alertmanager';

const amAlertSchema = z.object({
  status: z.enum(['firing', 'resolved']),
  labels: z.record(z.string(), z.string()),
  annotations: z.record(z.string(), z.string()).default({}),
  startsAt: z.string().refine((v) => !Number.isNaN(Date.parse(v)), 'must be an RFC 3339 time'),
  endsAt: z.string().optional(),
  generatorURL: z.string().optional(),
  fingerprint: z.string().min(1),
});

/** Alertmanager's webhook payload (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config). */
export const alertmanagerPayloadSchema = z.object({
  version: z.string(),
  groupKey: z.string().optional(),
  truncatedAlerts: z.number().int().min(0).optional(),
  status: z.enum(['firing', 'resolved']),
  receiver: z.string(),
  groupLabels: z.record(z.string(), z.string()).default({}),
  commonLabels: z.record(z.string(), z.string()).default({}),
  commonAnnotations: z.record(z.string(), z.string()).default({}),
  externalURL: z.string().optional(),
  alerts: z.array(amAlertSchema).max(10_000),
});

export type AlertmanagerPayload = z.infer<typeof alertmanagerPayloadSchema>;
export type AlertmanagerAlert = z.infer<typeof amAlertSchema>;

export type AlertAction = 'signalled' | 'signal-with-start' | 'no-supervisor' | 'raised' | 'resolved' | 'logged' | 'duplicate' | 'ignored';

export interface ReceiverOptions {
  client: Client;
  docker: Docker;
  taskQueue: string;
  log: Logger;
  /** How many handled alerts to remember for deduplication. */
  dedupSize?: number;
}

/** A small LRU set (Map keeps insertion order). */
class LruSet {
  private readonly map = new Map<string, true>();
  constructor(private readonly max: number) {}
  has(k: string): boolean {
    if (!this.map.has(k)) return false;
    this.map.delete(k);
    this.map.set(k, true);
    return true;
  }
  add(k: string): void {
    this.map.delete(k);
    this.map.set(k, true);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }
}

export const dedupKey = (a: AlertmanagerAlert) => `${a.fingerprint}/${a.startsAt}/${a.status}`;

/** The handler, without HTTP: takes a validated payload, returns what was done per alert. */
export function createAlertHandler(opts: ReceiverOptions) {
  const { client, docker, taskQueue, log } = opts;
  const handled = new LruSet(opts.dedupSize ?? 10_000);

  const signalSupervisor = async (service: string, failure: FailureSignal): Promise<AlertAction> => {
    const info = await docker.getContainer(service).inspect().catch((err: { statusCode?: number }) => {
      if (err.statusCode === 404) return undefined;
      throw err;
    });
    return forwardFailure(client, taskQueue, service, info?.Config.Labels ?? {}, failure, log);
  };

  /** high_cpu (no autoscaler yet): a warning through the alert groups (dedup, fallback, dead letters). */
  const raiseWarning = async (a: AlertmanagerAlert, service: string): Promise<AlertAction> => {
    await raiseAlert(client, taskQueue, {
      severity: 'warning',
      service,
      summary: a.annotations.summary ?? `${a.labels.alertname} firing`,
      details: { alert: a.labels.alertname ?? '', since: a.startsAt, ...(a.annotations.description ? { description: a.annotations.description } : {}), ...(a.generatorURL ? { source: a.generatorURL } : {}) },
      runbook: 'alertmanager',
      dedupKey: `${service}/${a.labels.alertname}`,
    });
    return 'raised';
  };

  const handleOne = async (a: AlertmanagerAlert): Promise<AlertAction> => {
    const key = dedupKey(a);
    const name = a.labels.alertname ?? '';
    const service = a.labels.service ?? '';
    if (handled.has(key)) return 'duplicate';
    let action: AlertAction;
    if (a.status === 'resolved') {
      // A warning we raised for it is resolved too; service_down resolves when the supervisor sees the service healthy.
      const resolved = name === 'high_cpu' ? await resolveAlertGroup(client, `${service || a.labels.instance || 'unknown'}/${name}`) : false;
      log.info({ alert: name, service, fingerprint: a.fingerprint, startsAt: a.startsAt, endsAt: a.endsAt, resolved }, 'alert resolved');
      action = resolved ? 'resolved' : 'logged';
    } else if (name === 'service_down') {
      if (!containerName.safeParse(service).success) {
        log.warn({ alert: name, labels: a.labels }, 'service_down without a valid service label; ignored');
        action = 'ignored';
      } else {
        const failure: FailureSignal = {
          kind: 'alert',
          at: Date.parse(a.startsAt),
          source: 'alertmanager',
          detail: `service_down firing since ${a.startsAt} (fingerprint ${a.fingerprint})`.slice(0, 500),
        };
        action = await signalSupervisor(service, failure);
        log.info({ alert: name, service, fingerprint: a.fingerprint, action }, action === 'no-supervisor' ? 'service_down for an unsupervised service; nothing to do' : 'service_down forwarded to the supervisor');
      }
    } else if (name === 'high_cpu') {
      action = await raiseWarning(a, service || a.labels.instance || 'unknown');
      log.info({ alert: name, service, fingerprint: a.fingerprint }, 'high_cpu: warning raised');
    } else {
      log.info({ alert: name, service, severity: a.labels.severity, fingerprint: a.fingerprint }, 'alert firing (no runbook mapped)');
      action = 'logged';
    }
    handled.add(key);
    return action;
  };

  return async (payload: AlertmanagerPayload): Promise<AlertAction[]> => {
    const results = await Promise.allSettled(payload.alerts.map(handleOne));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) throw new AggregateError(failed.map((f) => f.reason as Error), `${failed.length} of ${payload.alerts.length} alerts could not be handled`);
    return results.map((r) => (r as PromiseFulfilledResult<AlertAction>).value);
  };
}

export interface AlertReceiver {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Serve the webhook on 127.0.0.1:port (0 = any free port); undefined if the port is taken. */
export async function startAlertReceiver(opts: ReceiverOptions & { port: number }): Promise<AlertReceiver | undefined> {
  const { log } = opts;
  const handle = createAlertHandler(opts);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/healthz' && req.method === 'GET') {
      res.writeHead(200).end('ok\n');
      return;
    }
    if (url.pathname !== RECEIVER_PATH || req.method !== 'POST') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`POST ${RECEIVER_PATH}\n`);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 4 << 20) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      void (async () => {
        let raw: unknown;
        try {
          raw = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          res.writeHead(400, { 'content-type': 'text/plain' }).end('body is not JSON\n');
          return;
        }
        const parsed = alertmanagerPayloadSchema.safeParse(raw);
        if (!parsed.success) {
          const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`);
          log.warn({ problems: problems.slice(0, 10) }, 'invalid Alertmanager payload');
          res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid payload', problems }));
          return;
        }
        try {
          const actions = await handle(parsed.data);
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ actions }));
        } catch (err) {
          // 5xx: Alertmanager retries; what was handled is remembered and not done twice.
          log.error({ error: (err as Error).message, causes: (err as AggregateError).errors?.map((e: Error) => e.message) }, 'alerts not handled; Alertmanager will retry');
          res.writeHead(503, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
        }
      })();
    });
  });
  const listening = await listenLoopback(server, opts.port, 'the alert receiver', log);
  if (!listening) return undefined;
  const port = (server.address() as net.AddressInfo).port;
  const url = `http://127.0.0.1:${port}${RECEIVER_PATH}`;
  log.info({ url }, 'alert receiver listening');
  return { port, url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
