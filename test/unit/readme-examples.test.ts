/** The JSON inputs of the README and docs/*.md (each after a `<!-- input: <runbook> -->` marker) are valid inputs. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseAlerting } from '../../src/config/alerting';
import { isRunbook, RUNBOOKS, validateInput } from '../../src/runbooks/registry';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const docsDir = new URL('../../docs/', import.meta.url);
const docs = readdirSync(docsDir).filter((f) => f.endsWith('.md')).map((f) => readFileSync(new URL(f, docsDir), 'utf8'));
const examples = [...[readme, ...docs].join('\n').matchAll(/<!-- input: (\w+) -->\s*```json\n([\s\S]*?)```/g)].map((m) => ({ runbook: m[1]!, json: m[2]! }));

test('every runbook has an example in the README or docs/', () => {
  assert.deepEqual([...new Set(examples.map((e) => e.runbook))].sort(), Object.keys(RUNBOOKS).sort());
});

for (const { runbook, json } of examples) {
  test(`README example for ${runbook} validates with its schema`, () => {
    assert.ok(isRunbook(runbook), `unknown runbook ${runbook}`);
    assert.doesNotThrow(() => validateInput(runbook, JSON.parse(json)));
  });
}

test('the README alerting config example is valid', () => {
  const m = /<!-- alerting config -->\s*```json\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'the example is in the README');
  const cfg = parseAlerting(JSON.parse(m[1]!));
  assert.deepEqual(Object.keys(cfg.channels).sort(), ['email', 'pagerduty', 'slack']);
});
