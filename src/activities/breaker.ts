/**
 * Circuit breakers (opossum) around calls to external dependencies: SMTP, each webhook, the
 * Docker engine. Seed values: timeout 3000 ms, error threshold 50%, reset timeout 30000 ms.
 *
 * When a breaker is open the call fails fast with a *retryable* ApplicationFailure whose
 * nextRetryDelay is the time left until the breaker lets a probe through (half-open), so
 * Temporal retries exactly when it can succeed, instead of hammering or giving up.
 */
import { ApplicationFailure } from '@temporalio/common';
import CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import { BREAKER_ERROR_THRESHOLD_PERCENT, BREAKER_RESET_TIMEOUT_MS, BREAKER_TIMEOUT_MS } from '../config/defaults';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  /** Per-call timeout in ms, or false for calls that are long by nature (a graceful stop). */
  timeoutMs: number | false;
  errorThresholdPercent: number;
  resetTimeoutMs: number;
  /** Calls in the rolling window before the error rate can open the breaker. */
  volumeThreshold: number;
  rollingWindowMs: number;
}

export const SEED_BREAKER: BreakerOptions = {
  timeoutMs: BREAKER_TIMEOUT_MS,
  errorThresholdPercent: BREAKER_ERROR_THRESHOLD_PERCENT,
  resetTimeoutMs: BREAKER_RESET_TIMEOUT_MS,
  volumeThreshold: 4,
  rollingWindowMs: 10_000,
};

export interface BreakerSnapshot {
  name: string;
  state: BreakerState;
  openedAt?: number;
  /** ms until a probe is let through, when open. */
  retryInMs?: number;
  stats: { fires: number; failures: number; rejects: number; timeouts: number; successes: number };
}

export type BreakerListener = (name: string, state: BreakerState) => void;

/** Errors that say nothing about the dependency's health (bad input) do not count. */
const isCallerError = (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable === true;

export class BreakerRegistry {
  private readonly breakers = new Map<string, { breaker: CircuitBreaker<[() => Promise<unknown>], unknown>; openedAt?: number; options: BreakerOptions }>();
  private readonly listeners: BreakerListener[] = [];

  constructor(
    private readonly log: Logger,
    private readonly defaults: BreakerOptions = SEED_BREAKER,
  ) {}

  onStateChange(listener: BreakerListener): void {
    this.listeners.push(listener);
  }

  private get(name: string, overrides: Partial<BreakerOptions> = {}) {
    let entry = this.breakers.get(name);
    if (entry) return entry;
    const options = { ...this.defaults, ...overrides };
    const breaker = new CircuitBreaker((fn: () => Promise<unknown>) => fn(), {
      name,
      timeout: options.timeoutMs,
      errorThresholdPercentage: options.errorThresholdPercent,
      resetTimeout: options.resetTimeoutMs,
      volumeThreshold: options.volumeThreshold,
      rollingCountTimeout: options.rollingWindowMs,
      errorFilter: isCallerError,
    });
    const created = { breaker, options, openedAt: undefined as number | undefined };
    const emit = (state: BreakerState) => {
      this.log.warn({ breaker: name, state }, `circuit breaker ${state}`);
      for (const l of this.listeners) l(name, state);
    };
    breaker.on('open', () => {
      created.openedAt = Date.now();
      emit('open');
    });
    breaker.on('halfOpen', () => emit('half-open'));
    breaker.on('close', () => {
      created.openedAt = undefined;
      emit('closed');
    });
    this.breakers.set(name, created);
    entry = created;
    return entry;
  }

  /**
   * Run `fn` through the named breaker. With `openIsFinal` an open breaker fails the activity
   * for good (an alert channel: the chain falls back at once); otherwise Temporal retries it
   * when the breaker lets a probe through.
   */
  async call<T>(name: string, fn: () => Promise<T>, overrides?: Partial<BreakerOptions>, opts: { openIsFinal?: boolean } = {}): Promise<T> {
    const entry = this.get(name, overrides);
    if (entry.breaker.opened) throw this.openFailure(name, entry.openedAt, entry.options, opts.openIsFinal);
    try {
      return (await entry.breaker.fire(fn)) as T;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'EOPENBREAKER') throw this.openFailure(name, entry.openedAt, entry.options, opts.openIsFinal);
      if (code === 'ETIMEDOUT') throw ApplicationFailure.retryable(`${name}: no answer within ${entry.options.timeoutMs} ms`, 'DependencyTimeout');
      throw err;
    }
  }

  private openFailure(name: string, openedAt: number | undefined, options: BreakerOptions, final = false): ApplicationFailure {
    const retryInMs = Math.max(100, (openedAt ?? Date.now()) + options.resetTimeoutMs - Date.now());
    return ApplicationFailure.create({
      type: 'BreakerOpen',
      nonRetryable: final,
      message: `${name}: circuit breaker open; next try in ${retryInMs} ms`,
      ...(final ? {} : { nextRetryDelay: retryInMs }),
      details: [{ breaker: name, retryInMs }],
    });
  }

  snapshot(): BreakerSnapshot[] {
    return [...this.breakers.entries()].map(([name, { breaker, openedAt, options }]) => {
      const s = breaker.stats;
      const state: BreakerState = breaker.opened ? 'open' : breaker.halfOpen ? 'half-open' : 'closed';
      return {
        name,
        state,
        ...(openedAt !== undefined ? { openedAt } : {}),
        ...(state === 'open' ? { retryInMs: Math.max(0, (openedAt ?? 0) + options.resetTimeoutMs - Date.now()) } : {}),
        stats: { fires: s.fires, failures: s.failures, rejects: s.rejects, timeouts: s.timeouts, successes: s.successes },
      };
    });
  }

  shutdown(): void {
    for (const { breaker } of this.breakers.values()) breaker.shutdown();
  }
}
