/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
 * delay = random() * min(cap, base * multiplier^(attempt - 1)). Pure: random is passed in.
 */
export interface BackoffPolicy {
  initialDelayMs: number;
  multiplier: number;
  maxDelayMs: number;
}

/** The upper bound of the delay before attempt `attempt` (1-based). */
export function backoffCeilingMs(policy: BackoffPolicy, attempt: number): number {
  if (attempt < 1) throw new RangeError('attempt is 1-based');
  const exp = policy.initialDelayMs * Math.pow(policy.multiplier, attempt - 1);
  return Math.min(policy.maxDelayMs, exp);
}

/** Full-jitter delay before attempt `attempt`; `rand` is in [0, 1). */
export function fullJitterDelayMs(policy: BackoffPolicy, attempt: number, rand: number): number {
  return Math.floor(rand * backoffCeilingMs(policy, attempt));
}
