import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import * as seed from '../../src/config/defaults';
import { INVALID_INPUT, parseInput } from '../../src/schemas/common';
import { restartServiceInputSchema } from '../../src/schemas/restart-service';
import { superviseServiceInputSchema, withConfiguredDefaults } from '../../src/schemas/supervise-service';
import { InvalidInputError, validateInput } from '../../src/runbooks/registry';
import { ConfigError, loadConfig } from '../../src/config/env';

const ok = { service: 'web', healthUrl: 'http://127.0.0.1:8081/health' };

test('superviseService: the seed defaults fill what the input leaves out', () => {
  const p = superviseServiceInputSchema.parse(ok);
  assert.equal(p.restart.maxAttempts, seed.RESTART_MAX_ATTEMPTS);
  assert.equal(p.restart.maxDelayMs, seed.RESTART_BACKOFF_MAX_MS);
  assert.equal(p.restart.initialDelayMs, seed.RESTART_SEC_MS);
  assert.equal(p.probeIntervalMs, seed.HEALTHCHECK_INTERVAL_MS);
  assert.equal(p.probeTimeoutMs, seed.HEALTHCHECK_TIMEOUT_MS);
  assert.equal(p.unhealthyThreshold, seed.HEALTHCHECK_RETRIES);
  assert.deepEqual(p.dependencies, []);
});

const bad: Array<[string, unknown, RegExp]> = [
  ['negative attempts', { ...ok, restart: { maxAttempts: -1 } }, /restart\.maxAttempts: .*>= 1/],
  ['cap below the first delay', { ...ok, restart: { initialDelayMs: 5000, maxDelayMs: 1000 } }, /restart\.maxDelayMs: must be >= initialDelayMs/],
  ['malformed URL', { ...ok, healthUrl: 'http//nope' }, /healthUrl: must be an http/],
  ['non-http URL', { ...ok, healthUrl: 'file:///etc/passwd' }, /healthUrl: must be an http/],
  ['unknown field', { ...ok, restartz: 1 }, /restartz: unknown field/],
  ['unknown nested field', { ...ok, restart: { max: 1 } }, /restart\.max: unknown field/],
  ['missing service', { healthUrl: ok.healthUrl }, /service: /],
  ['bad container name', { ...ok, service: '-web;rm' }, /service: must be a Docker container name/],
  ['fractional delay', { ...ok, restart: { initialDelayMs: 1.5 } }, /restart\.initialDelayMs: must be a whole number/],
  ['dependency without URL', { ...ok, dependencies: [{ name: 'db' }] }, /dependencies\.0\.healthUrl/],
];

for (const [what, input, expected] of bad) {
  test(`superviseService rejects ${what}, naming the field`, () => {
    assert.throws(
      () => parseInput('superviseService', superviseServiceInputSchema, input),
      (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, INVALID_INPUT);
        assert.equal(err.nonRetryable, true);
        assert.match(err.message, expected);
        return true;
      },
    );
    // The starters validate with the same schema and say the same thing.
    assert.throws(() => validateInput('superviseService', input), (err: unknown) => err instanceof InvalidInputError && expected.test(err.message));
  });
}

test('restartService: defaults, and bad input names the field', () => {
  const p = restartServiceInputSchema.parse({ service: 'web' });
  assert.equal(p.reason, 'operator request');
  assert.equal(p.stopTimeoutSec, seed.RESTART_STOP_TIMEOUT_SEC);
  assert.throws(() => validateInput('restartService', { service: 'web', stopTimeoutSec: -3 }), /stopTimeoutSec: must be >= 0/);
  assert.throws(() => validateInput('restartService', { service: 'web', reason: '' }), /reason: must not be empty/);
  assert.throws(() => validateInput('restartService', { service: 'web', healthUrl: 'nope' }), /healthUrl: must be an http/);
});

test('configuration: a bad environment value is named at start-up', () => {
  assert.throws(() => loadConfig({ DURABLE_OPS_SMTP_PORT: 'seventy' }), (err: unknown) => err instanceof ConfigError && /DURABLE_OPS_SMTP_PORT/.test(err.message));
  assert.throws(() => loadConfig({ DURABLE_OPS_TEMPORAL_ADDRESS: 'temporal' }), /DURABLE_OPS_TEMPORAL_ADDRESS: must be host:port/);
  assert.equal(loadConfig({ DURABLE_OPS_TEMPORAL_ADDRESS: 'temporal:7233' }).DURABLE_OPS_TEMPORAL_ADDRESS, 'temporal:7233');
  assert.throws(() => loadConfig({ DURABLE_OPS_ALERT_TO: 'oncall' }), /DURABLE_OPS_ALERT_TO/);
  const c = loadConfig({ DURABLE_OPS_RESTART_MAX_ATTEMPTS: '5' });
  assert.equal(c.DURABLE_OPS_RESTART_MAX_ATTEMPTS, 5);
  assert.equal(loadConfig({}).DURABLE_OPS_RESTART_MAX_ATTEMPTS, seed.RESTART_MAX_ATTEMPTS);
});

test('the worker fills the restart defaults an operator configured where the input leaves them out; the input still wins', () => {
  const d = { maxAttempts: 5, initialDelayMs: 2000, maxDelayMs: seed.RESTART_BACKOFF_MAX_MS };
  const fromEnv = superviseServiceInputSchema.parse(withConfiguredDefaults(ok, d));
  assert.equal(fromEnv.restart.maxAttempts, 5);
  assert.equal(fromEnv.restart.initialDelayMs, 2000);
  assert.equal(fromEnv.restart.maxDelayMs, seed.RESTART_BACKOFF_MAX_MS);
  const explicit = superviseServiceInputSchema.parse(withConfiguredDefaults({ ...ok, restart: { maxAttempts: 2 } }, d));
  assert.equal(explicit.restart.maxAttempts, 2);
  assert.equal(explicit.restart.initialDelayMs, 2000);
  assert.throws(() => validateInput('superviseService', withConfiguredDefaults({ ...ok, restart: 'often' }, d)), /restart: /);
  // The client no longer applies them: what it validates is what it sends.
  assert.equal((validateInput('superviseService', ok).input as { restart: { maxAttempts: number } }).restart.maxAttempts, seed.RESTART_MAX_ATTEMPTS);
});
