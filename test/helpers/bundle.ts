/** Bundle the workflows once per test run (with the tracing interceptors); every test worker loads this bundle. */
import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';
import { workflowInterceptorModules } from '../../src/observability/tracing';
import { workflowsPath } from '../../src/workers/worker';

const out = process.argv[2];
if (!out) throw new Error('usage: bundle.ts OUTPUT');
const { code } = await bundleWorkflowCode({ workflowsPath, workflowInterceptorModules, logger: { info() {}, warn() {}, error: console.error, debug() {}, trace() {}, log() {} } as never });
writeFileSync(out, code);
