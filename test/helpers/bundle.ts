/** Bundle the workflows once per test run; every test worker loads this bundle. */
import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';
import { workflowsPath } from '../../src/workers/worker';

const out = process.argv[2];
if (!out) throw new Error('usage: bundle.ts OUTPUT');
const { code } = await bundleWorkflowCode({ workflowsPath, logger: { info() {}, warn() {}, error: console.error, debug() {}, trace() {}, log() {} } as never });
writeFileSync(out, code);
