/**
 * The only place workflows read time or randomness. Inside the workflow sandbox Temporal
 * replaces Date and Math.random with replay-safe versions (workflow time, a PRNG seeded per
 * run), so these are deterministic; everywhere else in src/workflows they are banned by lint.
 */

/** Workflow time in ms since the epoch (the time of the current workflow task). */
export function now(): number {
  // eslint-disable-next-line no-restricted-properties -- sandbox Date is workflow time
  return Date.now();
}

/** A replay-safe random number in [0, 1). */
export function random(): number {
  // eslint-disable-next-line no-restricted-properties -- sandbox Math.random is seeded per run
  return Math.random();
}
