import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { pino } from 'pino';
import { retryAfterMs } from '../../src/activities/alerts';
import { BreakerRegistry, SEED_BREAKER } from '../../src/activities/breaker';
import { AlertingConfigError, chainFor, GROUP_INTERVAL_MS, GROUP_WAIT_MS, parseAlerting, REPEAT_INTERVAL_MS } from '../../src/config/alerting';
import * as seed from '../../src/config/defaults';

const base = {
  channels: {
    pd: { type: 'pagerduty', url: 'http://127.0.0.1:9/pd', routingKeyEnv: 'PD_KEY', fallback: 'slack' },
    slack: { type: 'slack', url: 'http://127.0.0.1:9/slack', fallback: 'email' },
    email: { type: 'email' },
  },
  routes: { critical: 'pd', warning: 'slack' },
};

test('routing: the chain follows the fallbacks; grouping defaults follow Alertmanager', () => {
  const cfg = parseAlerting(base);
  assert.deepEqual(chainFor(cfg, 'critical'), ['pd', 'slack', 'email']);
  assert.deepEqual(chainFor(cfg, 'warning'), ['slack', 'email']);
  assert.deepEqual(cfg.grouping, { groupWaitMs: GROUP_WAIT_MS, groupIntervalMs: GROUP_INTERVAL_MS, repeatIntervalMs: REPEAT_INTERVAL_MS });
  assert.equal(GROUP_WAIT_MS, 30_000);
  assert.equal(GROUP_INTERVAL_MS, 300_000);
  assert.equal(REPEAT_INTERVAL_MS, 4 * 3_600_000);
});

const badConfigs: Array<[string, unknown, RegExp]> = [
  ['an unknown channel in a route', { ...base, routes: { critical: 'pager', warning: 'slack' } }, /routes\.critical: unknown channel "pager"/],
  ['an unknown fallback', { ...base, channels: { ...base.channels, email: { type: 'email', fallback: 'sms' } } }, /channels\.email\.fallback: unknown channel "sms"/],
  ['a malformed URL', { ...base, channels: { ...base.channels, slack: { type: 'slack', url: 'hooks.slack/x' } } }, /channels\.slack\.url: must be an http\(s\) URL/],
  ['a fallback chain with a cycle', { ...base, channels: { ...base.channels, email: { type: 'email', fallback: 'pd' } } }, /fallback chain has a cycle: .*pd -> slack -> email -> pd|cycle/],
  ['an unknown channel type', { ...base, channels: { ...base.channels, sms: { type: 'sms' } } }, /channels\.sms\.type/],
  ['a routing key in the file', { ...base, channels: { ...base.channels, pd: { type: 'pagerduty', url: 'http://127.0.0.1:9/pd', routingKey: 'abc' } } }, /routingKey/],
];
for (const [what, cfg, expected] of badConfigs) {
  test(`alerting config: ${what} is a clear error`, () => {
    assert.throws(() => parseAlerting(cfg), (err: unknown) => err instanceof AlertingConfigError && expected.test(err.message));
  });
}

test('the worker refuses to start with a bad alerting config, naming the problem', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'alerting-'));
  const file = path.join(dir, 'alerting.json');
  writeFileSync(file, JSON.stringify({ ...base, channels: { ...base.channels, email: { type: 'email', fallback: 'pd' } } }));
  const main = new URL('../../src/workers/main.ts', import.meta.url).pathname;
  const run = spawnSync(process.execPath, ['--import', 'tsx', main, '--no-bridge'], { env: { ...process.env, DURABLE_OPS_ALERTING_CONFIG: file }, encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 2, run.stderr);
  assert.match(run.stderr, /fallback chain has a cycle/);
});

test('Retry-After: seconds or an HTTP date', () => {
  assert.equal(retryAfterMs('3'), 3_000);
  assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6_000);
  assert.equal(retryAfterMs(null), undefined);
  assert.equal(retryAfterMs('soon'), undefined);
});

test('breaker: seed values; over 50% failures open it; open fails fast with nextRetryDelay; after resetTimeout a probe closes it', async () => {
  assert.equal(SEED_BREAKER.timeoutMs, seed.BREAKER_TIMEOUT_MS);
  assert.equal(SEED_BREAKER.errorThresholdPercent, seed.BREAKER_ERROR_THRESHOLD_PERCENT);
  assert.equal(SEED_BREAKER.resetTimeoutMs, seed.BREAKER_RESET_TIMEOUT_MS);
  const changes: string[] = [];
  const breakers = new BreakerRegistry(pino({ level: 'silent' }), { ...SEED_BREAKER, resetTimeoutMs: 400, volumeThreshold: 4 });
  breakers.onStateChange((name, state) => changes.push(`${name}:${state}`));
  let calls = 0;
  const failing = async () => {
    calls += 1;
    throw new Error('ECONNREFUSED');
  };
  const ok = async () => {
    calls += 1;
    return 'pong';
  };
  assert.equal(await breakers.call('smtp', ok), 'pong');
  // 1 success + 3 failures: 75% of 4 calls > 50%: open.
  for (let i = 0; i < 3; i++) await assert.rejects(breakers.call('smtp', failing), /ECONNREFUSED/);
  assert.equal(breakers.snapshot()[0]!.state, 'open');
  const before = calls;
  await assert.rejects(breakers.call('smtp', ok), (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure);
    assert.equal(err.type, 'BreakerOpen');
    assert.equal(err.nonRetryable, false, 'retryable: Temporal tries again when the breaker allows');
    const delay = Number(err.nextRetryDelay);
    assert.ok(delay > 0 && delay <= 400, `nextRetryDelay ${delay} ms is the time left until half-open`);
    return true;
  });
  assert.equal(calls, before, 'failed fast: the dependency was not called');
  await new Promise((r) => setTimeout(r, 450));
  assert.equal(await breakers.call('smtp', ok), 'pong', 'the half-open probe went through');
  assert.equal(breakers.snapshot()[0]!.state, 'closed');
  assert.deepEqual(changes, ['smtp:open', 'smtp:half-open', 'smtp:closed']);
  // Bad input is not the dependency's fault and does not count.
  for (let i = 0; i < 6; i++) await assert.rejects(breakers.call('docker', async () => { throw ApplicationFailure.nonRetryable('service: no container named x', 'ServiceNotFound'); }));
  assert.equal(breakers.snapshot().find((b) => b.name === 'docker')!.state, 'closed');
  // An alert channel's open breaker is final: the chain falls back at once.
  for (let i = 0; i < 4; i++) await assert.rejects(breakers.call('channel:hook', failing, undefined, { openIsFinal: true }));
  await assert.rejects(breakers.call('channel:hook', ok, undefined, { openIsFinal: true }), (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable === true && err.type === 'BreakerOpen');
  breakers.shutdown();
});

test('rotation age: seconds since the current version was promoted, per credential', async () => {
  const { refreshRotationAges } = await import('../../src/observability/rotation-age');
  const { registry } = await import('../../src/observability/metrics');
  const rotatedAt = '2026-09-01T00:00:00.000Z';
  const kv = {
    readMetadata: async (p: string) => (p === 'durable-ops/a' ? { currentVersion: 3, versions: {}, custom: { current_version: '3', rotated_at: rotatedAt } } : null),
  } as unknown as import('../../src/activities/credentials').KvStore;
  const now = Date.parse('2026-11-30T00:00:00.000Z');
  await refreshRotationAges(kv, [{ credentialId: 'a', vaultPath: 'durable-ops/a' }, { credentialId: 'never', vaultPath: 'durable-ops/never' }], now);
  const text = await registry.getSingleMetricAsString('durable_ops_credential_rotation_age_seconds');
  assert.match(text, new RegExp(`durable_ops_credential_rotation_age_seconds\\{credential="a"\\} ${(now - Date.parse(rotatedAt)) / 1000}`));
  assert.doesNotMatch(text, /credential="never"/, 'never rotated: no sample (no false age)');
});
