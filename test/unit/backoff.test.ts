import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RESTART_BACKOFF_MAX_MS, RESTART_SEC_MS } from '../../src/config/defaults';
import { backoffCeilingMs, fullJitterDelayMs } from '../../src/workflows/shared/backoff';

const seedPolicy = { initialDelayMs: RESTART_SEC_MS, multiplier: 2, maxDelayMs: RESTART_BACKOFF_MAX_MS };

test('the backoff ceiling doubles from RestartSec and is capped at the seed 60 s', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((a) => backoffCeilingMs(seedPolicy, a)), [10_000, 20_000, 40_000, 60_000, 60_000, 60_000]);
});

test('full jitter stays within [0, ceiling) and spans the range', () => {
  for (let attempt = 1; attempt <= 6; attempt++) {
    const ceiling = backoffCeilingMs(seedPolicy, attempt);
    assert.equal(fullJitterDelayMs(seedPolicy, attempt, 0), 0);
    assert.ok(fullJitterDelayMs(seedPolicy, attempt, 0.999999) < ceiling);
    assert.ok(fullJitterDelayMs(seedPolicy, attempt, 0.999999) >= ceiling - 1);
    assert.equal(fullJitterDelayMs(seedPolicy, attempt, 0.5), Math.floor(ceiling / 2));
  }
});

test('attempts are 1-based', () => {
  assert.throws(() => backoffCeilingMs(seedPolicy, 0), RangeError);
});

test('a huge attempt number does not overflow past the cap', () => {
  assert.equal(backoffCeilingMs(seedPolicy, 10_000), RESTART_BACKOFF_MAX_MS);
});
