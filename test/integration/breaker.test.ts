/**
 * A circuit breaker Temporal respects: a Docker engine API that fails (served on a unix socket
 * by the test, so it can fail on purpose) opens the `docker` breaker; the activity then fails
 * fast with nextRetryDelay = the time left until half-open, Temporal retries exactly then,
 * the probe succeeds, the breaker closes, and the runbook completes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import Docker from 'dockerode';
import { pino } from 'pino';
import { BreakerRegistry, SEED_BREAKER } from '../../src/activities/breaker';
import { startRunbook } from '../../src/runbooks/registry';
import type { RestartReport } from '../../src/workflows/restart-service';
import { connectClient, startWorker, type RunningWorker } from '../helpers/temporal';

let client: Client;
let worker: RunningWorker;
let server: Server;
let dir: string;
const requests: Array<{ at: number; method: string; url: string; status: number }> = [];
let failuresLeft = 2;
let startedAt = new Date(Date.now() - 60_000).toISOString();
const RESET_MS = 1_500;
const breakers = new BreakerRegistry(pino({ level: 'silent' }), { ...SEED_BREAKER, volumeThreshold: 2, resetTimeoutMs: RESET_MS });
const transitions: Array<{ at: number; state: string }> = [];

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'engine-'));
  const socketPath = path.join(dir, 'docker.sock');
  server = createServer((req, res) => {
    const url = req.url ?? '';
    let status = 200;
    let body: unknown = {};
    if (failuresLeft > 0) {
      failuresLeft -= 1;
      status = 500;
      body = { message: 'engine overloaded' };
    } else if (req.method === 'GET' && /\/containers\/web\/json/.test(url)) {
      body = { Id: 'abc', Config: { Image: 'demo' }, RestartCount: 0, State: { Running: true, Restarting: false, Status: 'running', ExitCode: 0, OOMKilled: false, StartedAt: startedAt, FinishedAt: '0001-01-01T00:00:00Z' } };
    } else if (req.method === 'POST' && /\/containers\/web\/(stop|start)/.test(url)) {
      status = 204;
      if (url.includes('/start')) startedAt = new Date().toISOString();
    } else {
      status = 404;
      body = { message: 'no such endpoint' };
    }
    requests.push({ at: Date.now(), method: req.method ?? '', url, status });
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(status === 204 ? undefined : JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  breakers.onStateChange((_name, state) => transitions.push({ at: Date.now(), state }));
  client = await connectClient();
  worker = await startWorker({ docker: new Docker({ socketPath }), breakers });
});

after(async () => {
  await worker.stop();
  await client.connection.close();
  breakers.shutdown();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

test('the engine failing opens the breaker; Temporal waits for half-open, the probe closes it, the restart completes', async () => {
  const handle = await startRunbook(client, 'restartService', { service: 'web', reason: 'breaker test', healthTimeoutMs: 5_000 }, { taskQueue: worker.taskQueue });
  const report: RestartReport = await handle.result();
  assert.equal(report.phase, 'done');
  assert.equal(report.restarted, true);

  const [first, second, ...rest] = requests;
  assert.equal(first!.status, 500);
  assert.equal(second!.status, 500);
  const opened = transitions.find((t) => t.state === 'open');
  assert.ok(opened, 'the breaker opened');
  // While open, the engine is not called at all; the next call is the half-open probe.
  const probe = rest[0]!;
  assert.ok(probe.at - opened.at >= RESET_MS - 100, `the probe came ${probe.at - opened.at} ms after opening, not before the ${RESET_MS} ms reset`);
  assert.ok(probe.at - opened.at < RESET_MS + 3_000, 'and not long after: Temporal retried when the breaker allowed');
  assert.deepEqual(transitions.map((t) => t.state), ['open', 'half-open', 'closed']);

  assert.equal(breakers.snapshot().find((b) => b.name === 'docker')?.state, 'closed');
});
