/** The runbook registry (src/runbooks/registry.ts): every entry complete, its example valid, and the floors respected. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isRunbook, RUNBOOKS, runbookSpec, validateInput, type RunbookName } from '../../src/runbooks/registry';

const names = Object.keys(RUNBOOKS) as RunbookName[];
const src = fileURLToPath(new URL('../../src/', import.meta.url));

for (const name of names) {
  test(`${name}: the example is a valid input, and the entry names its service, id and summary`, () => {
    const s = runbookSpec(name);
    const parsed = s.schema.safeParse(s.example);
    assert.ok(parsed.success, `example of ${name}: ${parsed.success ? '' : parsed.error.message}`);
    assert.doesNotThrow(() => validateInput(name, s.example));
    const at = new Date('2026-12-04T10:00:00.000Z');
    for (const [field, value] of [
      ['service', s.service(parsed.data)],
      ['workflowId', s.workflowId(parsed.data, at)],
      ['summary', s.summary(parsed.data)],
    ] as const) assert.ok(typeof value === 'string' && value.length > 0, `${field} of ${name}`);
    assert.match(s.description, /^[A-Z].*\.$/, 'one sentence');
    assert.ok(!s.description.includes('\n'), 'one line');
    assert.equal(typeof s.changes, 'boolean');
    assert.equal(typeof s.entity, 'boolean');
  });
}

test('only the watchers and the read-only runbooks are marked as not changing the service', () => {
  assert.deepEqual(names.filter((n) => !RUNBOOKS[n].changes).sort(), ['backupDatabase', 'superviseService', 'verifyBackups']);
  assert.ok(isRunbook('scaleService') && !isRunbook('toString'));
});

const importsOf = (dir: string) =>
  readdirSync(path.join(src, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .flatMap((f) => [...readFileSync(path.join(src, dir, f), 'utf8').matchAll(/^\s*(?:import|export)\b[^;]*?from '([^']+)'/gm)].map((m) => ({ file: path.join(dir, f), from: path.normalize(path.join(dir, path.dirname(f), m[1]!)) })));

test('floors: the runbook core imports no workflow, worker or starter; workers import no starter; observability no activity', () => {
  const upward = [
    ...importsOf('runbooks').filter((i) => /^(workflows|workers|starters)\//.test(i.from)),
    ...importsOf('workers').filter((i) => i.from.startsWith('starters/')),
    ...importsOf('observability').filter((i) => i.from.startsWith('activities/')),
  ];
  assert.deepEqual(upward, []);
});
