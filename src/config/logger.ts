/** JSON logs (pino), one line per event, ready for ELK. Never log secret values. */
import { pino, type DestinationStream, type Logger } from 'pino';
import { activityLogFields } from '../observability/log-context';

/** Inside an activity every line also carries workflowId, runId, activity (+ traceId, spanId). */
export function createLogger(level: string, bindings: Record<string, unknown> = {}, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { app: 'durable-ops', ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ['*.password', '*.secret', '*.token', '*.value', 'password', 'secret', 'token'], censor: '[REDACTED]' },
    mixin: activityLogFields,
  };
  return destination ? pino(options, destination) : pino(options);
}
