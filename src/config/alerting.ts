/**
 * Alert channels and routing, configured in one place: a JSON file named by
 * DURABLE_OPS_ALERTING_CONFIG, or the default (email only). Validated at start-up: an unknown
 * channel, a malformed URL or a fallback chain with a cycle stops the worker with a clear error.
 *
 * {
 *   "channels": {
 *     "pagerduty": { "type": "pagerduty", "url": "http://127.0.0.1:9901/v2/enqueue", "routingKeyEnv": "PD_ROUTING_KEY", "fallback": "slack" },
 *     "slack":     { "type": "slack", "url": "http://127.0.0.1:9902/hook", "fallback": "email" },
 *     "email":     { "type": "email", "to": ["oncall@localhost"] }
 *   },
 *   "routes": { "critical": "pagerduty", "warning": "slack" },
 *   "grouping": { "groupWaitMs": 30000, "groupIntervalMs": 300000, "repeatIntervalMs": 14400000 }
 * }
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ALERT_SEVERITIES } from './defaults';

/** Alertmanager's defaults: group_wait 30 s, group_interval 5 min, repeat_interval 4 h. */
export const GROUP_WAIT_MS = 30_000;
export const GROUP_INTERVAL_MS = 5 * 60_000;
export const REPEAT_INTERVAL_MS = 4 * 60 * 60_000;
export const CHANNEL_TIMEOUT_MS = 5_000;
export const CHANNEL_MAX_ATTEMPTS = 3;

const url = z.string().refine((v) => /^https?:\/\/[^/\s]+/.test(v) && URL.canParse(v), 'must be an http(s) URL');

const retry = z
  .strictObject({
    maxAttempts: z.number().int().min(1).max(20).default(CHANNEL_MAX_ATTEMPTS),
    initialIntervalMs: z.number().int().min(10).default(1_000),
    maxIntervalMs: z.number().int().min(10).default(30_000),
  })
  .prefault({});

const common = {
  timeoutMs: z.number().int().min(100).max(120_000).default(CHANNEL_TIMEOUT_MS),
  retry,
  /** Where an alert goes when this channel keeps failing or its breaker is open. */
  fallback: z.string().optional(),
};

const channelSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('email'), to: z.array(z.string().regex(/^[^@\s,]+@[^@\s,]+$/, 'must be an email address')).min(1).optional(), ...common }),
  z.strictObject({ type: z.literal('webhook'), url, ...common }),
  z.strictObject({ type: z.literal('slack'), url, ...common }),
  /** The routing key is a secret: the config names the environment variable that holds it. */
  z.strictObject({ type: z.literal('pagerduty'), url, routingKeyEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name'), ...common }),
]);

export type ChannelConfig = z.output<typeof channelSchema>;

export const alertingSchema = z
  .strictObject({
    channels: z.record(z.string().regex(/^[a-z][a-z0-9-]*$/, 'channel names are lower-case words'), channelSchema),
    routes: z.strictObject(Object.fromEntries(ALERT_SEVERITIES.map((s) => [s, z.string()])) as Record<(typeof ALERT_SEVERITIES)[number], z.ZodString>),
    grouping: z
      .strictObject({
        groupWaitMs: z.number().int().min(0).default(GROUP_WAIT_MS),
        groupIntervalMs: z.number().int().min(0).default(GROUP_INTERVAL_MS),
        repeatIntervalMs: z.number().int().min(0).default(REPEAT_INTERVAL_MS),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const names = new Set(Object.keys(cfg.channels));
    for (const [severity, channel] of Object.entries(cfg.routes)) {
      if (!names.has(channel)) ctx.addIssue({ code: 'custom', path: ['routes', severity], message: `unknown channel "${channel}"` });
    }
    for (const [name, ch] of Object.entries(cfg.channels)) {
      if (ch.fallback === undefined) continue;
      if (!names.has(ch.fallback)) {
        ctx.addIssue({ code: 'custom', path: ['channels', name, 'fallback'], message: `unknown channel "${ch.fallback}"` });
        continue;
      }
      // Walk the chain from here: meeting a channel twice is a cycle.
      const seen = [name];
      let next: string | undefined = ch.fallback;
      while (next !== undefined && names.has(next)) {
        if (seen.includes(next)) {
          ctx.addIssue({ code: 'custom', path: ['channels', name, 'fallback'], message: `fallback chain has a cycle: ${[...seen, next].join(' -> ')}` });
          break;
        }
        seen.push(next);
        next = cfg.channels[next]!.fallback;
      }
    }
  });

export type AlertingConfig = z.output<typeof alertingSchema>;

export const DEFAULT_ALERTING: z.input<typeof alertingSchema> = {
  channels: { email: { type: 'email' } },
  routes: { critical: 'email', warning: 'email' },
};

export class AlertingConfigError extends Error {
  override name = 'AlertingConfigError';
}

export function parseAlerting(raw: unknown, source = 'alerting config'): AlertingConfig {
  const parsed = alertingSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new AlertingConfigError(`invalid ${source}:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

/** Load from a file (JSON) or the default. */
export function loadAlerting(path: string | undefined): AlertingConfig {
  if (!path) return parseAlerting(DEFAULT_ALERTING);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new AlertingConfigError(`cannot read ${path}: ${(err as Error).message}`);
  }
  return parseAlerting(raw, path);
}

/** The delivery chain for a severity: the routed channel, then its fallbacks. */
export function chainFor(cfg: AlertingConfig, severity: (typeof ALERT_SEVERITIES)[number]): string[] {
  const chain: string[] = [];
  let next: string | undefined = cfg.routes[severity];
  while (next !== undefined && !chain.includes(next)) {
    chain.push(next);
    next = cfg.channels[next]?.fallback;
  }
  return chain;
}
