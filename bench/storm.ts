/**
 * npm run storm -- --minutes N: the storm of test/integration/storm.test.ts for N minutes (default
 * 15), with its invariant table written to bench/results/storm-<time>.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { formatStorm, runStorm } from '../test/helpers/storm';

const opts = new Command().option('--minutes <n>', 'how long actions are fired', '15').option('--gap-ms <n>', 'mean pause between actions', '1500').parse().opts<{ minutes: string; gapMs: string }>();
const minutes = Math.min(240, Math.max(1, Number(opts.minutes)));
const started = new Date();
const report = await runStorm({ durationMs: minutes * 60_000, meanGapMs: Math.max(100, Number(opts.gapMs)), basePort: 19800, log: (l) => console.log(l) });
const text = `# Storm, ${minutes} min, ${started.toISOString()}\n\n${formatStorm(report)}\n`;
console.log(text);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL(`./results/storm-${started.toISOString().replace(/[:.]/g, '-')}.md`, import.meta.url), text);
process.exit(report.ok ? 0 : 1);
