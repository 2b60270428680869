/**
 * The observability configs: promtool accepts the rules and the Prometheus config, amtool the
 * Alertmanager config; the rule thresholds equal the seed constants in src/config/defaults.ts;
 * every metric in the Grafana dashboard exists (our registry, the Temporal SDK's, or `up`).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import * as seed from '../../src/config/defaults';
import { metricNames } from '../../src/observability/metrics';
import { OBSERVABILITY_DIR, RULES_FILE, fastRules } from '../helpers/prometheus';

const run = (bin: string, args: string[]) => execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('promtool accepts the rules (and their fast variant) and the Prometheus config; amtool the Alertmanager config', () => {
  assert.match(run('promtool', ['check', 'rules', RULES_FILE]), /SUCCESS: 6 rules found/);
  assert.match(run('promtool', ['check', 'config', path.join(OBSERVABILITY_DIR, 'prometheus', 'prometheus.yml')]), /is valid prometheus config/);
  assert.match(run('amtool', ['check-config', path.join(OBSERVABILITY_DIR, 'alertmanager', 'alertmanager.yml')]), /SUCCESS/);
  const dir = mkdtempSync(path.join(tmpdir(), 'rules-'));
  try {
    writeFileSync(path.join(dir, 'rules.yml'), fastRules('1s'));
    assert.match(run('promtool', ['check', 'rules', path.join(dir, 'rules.yml')]), /SUCCESS: 6 rules found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Each rule's block of rules.yml: expr and for (the file is written one key per line). */
function rules(): Map<string, { expr: string; for?: string; severity?: string }> {
  const out = new Map<string, { expr: string; for?: string; severity?: string }>();
  for (const block of readFileSync(RULES_FILE, 'utf8').split(/^\s+- alert:\s*/m).slice(1)) {
    const name = block.split('\n')[0]!.trim();
    out.set(name, {
      expr: /^\s+expr:\s*(.+)$/m.exec(block)![1]!.trim(),
      for: /^\s+for:\s*(\S+)$/m.exec(block)?.[1],
      severity: /^\s+severity:\s*(\S+)$/m.exec(block)?.[1],
    });
  }
  return out;
}

const durationMs = (d: string | undefined) => {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(d ?? '');
  assert.ok(m, `a Prometheus duration: ${d}`);
  return Number(m[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
};
const threshold = (expr: string) => Number(/>\s*([\d.]+)\s*$/.exec(expr)?.[1]);

test('rule thresholds equal the seed constants (src/config/defaults.ts)', () => {
  const r = rules();
  assert.deepEqual([...r.keys()].sort(), ['backup_older_than_rpo', 'credential_rotation_overdue', 'dead_letters_waiting', 'error_rate_high', 'high_cpu', 'service_down']);
  assert.equal(threshold(r.get('high_cpu')!.expr), seed.ALERT_HIGH_CPU_PERCENT);
  assert.equal(durationMs(r.get('high_cpu')!.for), seed.ALERT_HIGH_CPU_FOR_MS);
  assert.equal(r.get('high_cpu')!.severity, 'warning');
  assert.equal(durationMs(r.get('service_down')!.for), seed.ALERT_SERVICE_DOWN_FOR_MS);
  assert.equal(r.get('service_down')!.severity, 'critical');
  assert.match(r.get('service_down')!.expr, /^up\{job="services"\} == 0$/);
  assert.equal(threshold(r.get('credential_rotation_overdue')!.expr), seed.ROTATION_PERIOD_MS / 1000);
  assert.equal(threshold(r.get('backup_older_than_rpo')!.expr), seed.RPO_TARGET_MS / 1000);
  assert.equal(threshold(r.get('error_rate_high')!.expr), seed.KPI_ERROR_RATE_PERCENT / 100);
  assert.equal(threshold(r.get('dead_letters_waiting')!.expr), 0);
});

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/** Metric names in a PromQL expression (not functions, label names, strings or keywords). */
function metricsIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  return [...stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
    .filter((m) => !/^\s*\(/.test(stripped.slice(m.index + m[0].length)))
    .map((m) => m[0])
    .filter((t) => !PROMQL_WORDS.has(t.toLowerCase()));
}

test('every metric in the Grafana dashboard exists in the registry (or is an SDK metric or up)', async () => {
  const dashboard = JSON.parse(readFileSync(path.join(OBSERVABILITY_DIR, 'grafana', 'durable-ops.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  const known = new Set((await metricNames()).flatMap((n) => [n, `${n}_bucket`, `${n}_sum`, `${n}_count`]));
  let checked = 0;
  for (const panel of dashboard.panels) {
    assert.ok(panel.targets?.length, `panel ${panel.title} has a query`);
    for (const { expr } of panel.targets!) {
      const names = metricsIn(expr);
      assert.ok(names.length > 0, `${panel.title}: no metric in ${expr}`);
      for (const name of names) {
        assert.ok(known.has(name) || name.startsWith('temporal_') || name === 'up', `${panel.title}: unknown metric ${name} in ${expr}`);
        checked += 1;
      }
    }
  }
  assert.ok(checked >= 10);
  assert.deepEqual(metricsIn('sum by (service, le) (rate(durable_ops_time_to_recover_seconds_bucket{service="x"}[1h]))'), ['durable_ops_time_to_recover_seconds_bucket']);
});
