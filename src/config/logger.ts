/** JSON logs (pino), one line per event, ready for ELK. Never log secret values. */
import { pino, type Logger } from 'pino';

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { app: 'durable-ops', ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ['*.password', '*.secret', '*.token', '*.value', 'password', 'secret', 'token'], censor: '[REDACTED]' },
  });
}
