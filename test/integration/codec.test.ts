/**
 * Payload encryption on the real stack: a runbook run through a worker and a client with the
 * codec leaves only ciphertext in Temporal's history; the codec server decodes it for the UI
 * (bearer token, CORS for the UI only); key rotation; bad keys stop the processes with a clear error.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { AesGcmCodec, ENCODING_ENCRYPTED, fileKeyring, METADATA_KEY_ID } from '../../src/codec/codec';
import { COOKIE_NAME, loadCodecToken, startCodecServer, type CodecServer } from '../../src/codec/server';
import { startRunbook } from '../../src/runbooks/registry';
import type { RestartReport } from '../../src/workflows/restart-service';
import { httpStatus, runDemo, type DemoContainer } from '../helpers/docker';
import { createLogger } from '../../src/config/logger';
import { config, connectClient, startWorker, testCodec, uniqueName, type RunningWorker } from '../helpers/temporal';
import { waitUntil } from '../helpers/wait';

type History = proto.temporal.api.history.v1.IHistory;
const { History: HistoryMessage } = proto.temporal.api.history.v1;

const UI_ORIGIN = 'http://127.0.0.1:8233';
const dir = mkdtempSync(path.join(tmpdir(), 'codec-it-'));
let client: Client;
let worker: RunningWorker;
let server: CodecServer;
let token: string;
let demo: DemoContainer;
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');

before(async () => {
  client = await connectClient();
  worker = await startWorker();
  token = loadCodecToken(path.join(dir, 'token'));
  server = await startCodecServer({ port: 0, codec: testCodec(), token, origins: [UI_ORIGIN, 'http://localhost:8233'], log: createLogger('silent') });
  demo = await runDemo({ name: uniqueName('codec'), port: 18600 });
  await waitUntil(`${demo.name} to serve`, async () => (await httpStatus(demo.healthUrl)) === 200, 20_000);
});

after(async () => {
  await demo?.remove();
  await server?.close();
  await worker?.stop();
  await client?.connection.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The history exactly as the server stores it (no codec on this path). */
async function rawHistory(workflowId: string, runId: string): Promise<History> {
  const events = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.getWorkflowExecutionHistory({ namespace: config.DURABLE_OPS_NAMESPACE, execution: { workflowId, runId }, nextPageToken });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return { events };
}

/** The payloads a runbook's data lives in: input, activity inputs/results, result, summary. */
function payloadsOf(history: History): Array<{ where: string; payload: Payload }> {
  const out: Array<{ where: string; payload: Payload }> = [];
  const add = (where: string, ps?: Payload[] | null) => ps?.forEach((payload) => out.push({ where, payload }));
  for (const e of history.events ?? []) {
    add('workflow input', e.workflowExecutionStartedEventAttributes?.input?.payloads);
    add(`activity input ${e.activityTaskScheduledEventAttributes?.activityType?.name}`, e.activityTaskScheduledEventAttributes?.input?.payloads);
    add('activity result', e.activityTaskCompletedEventAttributes?.result?.payloads);
    add('workflow result', e.workflowExecutionCompletedEventAttributes?.result?.payloads);
    if (e.userMetadata?.summary) add('summary', [e.userMetadata.summary]);
  }
  return out;
}

async function restart(c: Client, marker: string, taskQueue: string) {
  const handle = await startRunbook(c, 'restartService', { service: demo.name, reason: marker, healthUrl: demo.healthUrl, stopTimeoutSec: 2 }, { taskQueue });
  const report: RestartReport = await handle.result();
  const { runId } = await handle.describe();
  return { handle, report, runId };
}

function post(route: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${server.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

const toJson = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])),
  data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
});

let encryptedInput: Payload;
let marker: string;

test('a runbook leaves only binary/encrypted payloads in the history, none with the plaintext; the client still decodes', async () => {
  marker = `plaintext-marker-${randomUUID()}`;
  const { handle, report, runId } = await restart(client, marker, worker.taskQueue);
  assert.equal(report.restarted, true, 'the client decoded the result');
  assert.equal(report.healthy, true);
  assert.equal(await (await handle.describe()).staticSummary(), `restart ${demo.name}: ${marker}`, 'the summary decodes too');

  const history = await rawHistory(handle.workflowId, runId);
  const payloads = payloadsOf(history);
  const wheres = new Set(payloads.map((p) => p.where.split(' ').slice(0, 2).join(' ')));
  for (const w of ['workflow input', 'activity input', 'activity result', 'workflow result', 'summary']) assert.ok(wheres.has(w), `history has a ${w}`);
  for (const { where, payload } of payloads) {
    assert.equal(text(payload.metadata?.encoding), ENCODING_ENCRYPTED, `${where} is encrypted`);
    assert.equal(text(payload.metadata?.[METADATA_KEY_ID]), testCodec().currentKeyId(), `${where} names its key`);
  }
  // Nothing anywhere in the stored history (any field, any event) contains the marker.
  const bytes = Buffer.from(HistoryMessage.encode(history).finish());
  assert.equal(bytes.includes(marker), false, 'the marker is not in the history in plaintext');
  assert.equal(bytes.includes(Buffer.from(marker).toString('base64')), false);
  encryptedInput = payloads.find((p) => p.where === 'workflow input')!.payload;
});

test('the codec server decodes a history payload with the bearer token, and refuses without it', async () => {
  assert.ok(encryptedInput, 'needs the first test');
  const ok = await post('/decode', { payloads: [toJson(encryptedInput)] }, { authorization: `Bearer ${token}`, 'x-namespace': 'default' });
  assert.equal(ok.status, 200);
  const body = (await ok.json()) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
  assert.equal(Buffer.from(body.payloads[0]!.metadata.encoding!, 'base64').toString(), 'json/plain');
  const input = JSON.parse(Buffer.from(body.payloads[0]!.data, 'base64').toString()) as { reason: string; service: string };
  assert.equal(input.reason, marker);
  assert.equal(input.service, demo.name);

  // /encode then /decode round-trips what an operator types in the UI.
  const typed = { metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('{"by":"alice"}').toString('base64') };
  const enc = (await (await post('/encode', { payloads: [typed] }, { authorization: `Bearer ${token}` })).json()) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
  assert.equal(Buffer.from(enc.payloads[0]!.metadata.encoding!, 'base64').toString(), ENCODING_ENCRYPTED);
  const dec = (await (await post('/decode', enc, { authorization: `Bearer ${token}` })).json()) as typeof enc;
  assert.deepEqual(dec.payloads[0], typed);

  const none = await post('/decode', { payloads: [toJson(encryptedInput)] });
  assert.equal(none.status, 401);
  assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
  const body401 = await none.text();
  assert.ok(!body401.includes(marker));
  assert.equal((await post('/decode', { payloads: [] }, { authorization: 'Bearer not-the-token' })).status, 401);
  assert.equal((await post('/decode', { payloads: [] }, { authorization: `Basic ${token}` })).status, 401);
  assert.equal((await fetch(`${server.url}/decode`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' }, body: '{}' })).status, 415);
  assert.equal((await post('/decode', { nope: 1 }, { authorization: `Bearer ${token}` })).status, 400);
});

test('CORS: the preflight answers the UI origin only; other origins get no CORS headers and are refused', async () => {
  const preflight = (origin: string) => fetch(`${server.url}/decode`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace' } });
  const ui = await preflight(UI_ORIGIN);
  assert.equal(ui.status, 204);
  assert.equal(ui.headers.get('access-control-allow-origin'), UI_ORIGIN);
  assert.equal(ui.headers.get('access-control-allow-credentials'), 'true');
  assert.match(ui.headers.get('access-control-allow-methods') ?? '', /POST/);
  assert.match(ui.headers.get('access-control-allow-headers') ?? '', /Content-Type/i);
  assert.match(ui.headers.get('access-control-allow-headers') ?? '', /X-Namespace/i);
  assert.equal((await preflight('http://localhost:8233')).headers.get('access-control-allow-origin'), 'http://localhost:8233');

  for (const other of ['http://evil.example', 'http://127.0.0.1:8025', 'http://127.0.0.1:8234']) {
    const res = await preflight(other);
    assert.equal(res.status, 403, other);
    assert.equal(res.headers.get('access-control-allow-origin'), null, other);
    const post403 = await post('/decode', { payloads: [] }, { origin: other, authorization: `Bearer ${token}` });
    assert.equal(post403.status, 403, `${other} POST`);
    assert.equal(post403.headers.get('access-control-allow-origin'), null);
  }
  // The UI's own request (with the token) carries the CORS headers it needs to read the answer.
  const fromUi = await post('/decode', { payloads: [toJson(encryptedInput)] }, { origin: UI_ORIGIN, authorization: `Bearer ${token}` });
  assert.equal(fromUi.status, 200);
  assert.equal(fromUi.headers.get('access-control-allow-origin'), UI_ORIGIN);
});

test('browser sign-in: /login sets an HttpOnly cookie scoped to /encode and /decode that authorizes the UI', async () => {
  const wrong = await fetch(`${server.url}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=nope' });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('set-cookie'), null);
  const res = await fetch(`${server.url}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }).toString() });
  assert.equal(res.status, 200);
  const cookies = res.headers.getSetCookie();
  assert.equal(cookies.length, 2);
  for (const c of cookies) assert.match(c, /HttpOnly; SameSite=Strict; Path=\/(en|de)code/);
  const cookie = cookies[0]!.split(';')[0]!;
  assert.ok(cookie.startsWith(`${COOKIE_NAME}=`));
  const viaCookie = await post('/decode', { payloads: [toJson(encryptedInput)] }, { origin: UI_ORIGIN, cookie });
  assert.equal(viaCookie.status, 200);
  assert.equal((await fetch(`${server.url}/login`, { method: 'POST', headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }).toString() })).status, 403);
});

test('key rotation on the real server: k1 runs still decode after current becomes k2, and new runs use k2', async () => {
  const keysFile = path.join(dir, 'keys.json');
  const k1 = randomBytes(32).toString('base64');
  const write = (content: unknown) => {
    writeFileSync(keysFile, JSON.stringify(content), { mode: 0o600 });
    chmodSync(keysFile, 0o600);
  };
  write({ current: 'k1', keys: { k1 } });
  const codec = new AesGcmCodec(fileKeyring(keysFile));
  const rotWorker = await startWorker({ codec });
  const c1 = await connectClient({ codec });
  try {
    const first = await restart(c1, `rotation-k1-${randomUUID()}`, rotWorker.taskQueue);
    for (const { where, payload } of payloadsOf(await rawHistory(first.handle.workflowId, first.runId))) assert.equal(text(payload.metadata?.[METADATA_KEY_ID]), 'k1', where);

    write({ current: 'k2', keys: { k1, k2: randomBytes(32).toString('base64') } });
    // A client started after the rotation (a fresh codec) still reads the k1 run...
    const c2 = await connectClient({ codec: new AesGcmCodec(fileKeyring(keysFile)) });
    try {
      const old: RestartReport = await c2.workflow.getHandle(first.handle.workflowId).result();
      assert.equal(old.restarted, true);
      // ...and new runs (client and the running worker, which re-read the file) use k2.
      const second = await restart(c2, `rotation-k2-${randomUUID()}`, rotWorker.taskQueue);
      assert.equal(second.report.healthy, true);
      const payloads = payloadsOf(await rawHistory(second.handle.workflowId, second.runId));
      assert.ok(payloads.some((p) => p.where.startsWith('activity result')));
      for (const { where, payload } of payloads) assert.equal(text(payload.metadata?.[METADATA_KEY_ID]), 'k2', where);
    } finally {
      await c2.connection.close();
    }
  } finally {
    await rotWorker.stop();
    await c1.connection.close();
  }
});

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function run(entry: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(ROOT, entry)], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, output: stdout + stderr });
    });
  });
}

test('a bad keys file (wrong length, world-readable) stops the worker and the codec server with a clear error', async () => {
  const short = path.join(dir, 'short.json');
  writeFileSync(short, JSON.stringify({ current: 'k1', keys: { k1: randomBytes(16).toString('base64') } }), { mode: 0o600 });
  const open = path.join(dir, 'open.json');
  writeFileSync(open, JSON.stringify({ current: 'k1', keys: { k1: randomBytes(32).toString('base64') } }));
  chmodSync(open, 0o644);
  const env = { DURABLE_OPS_TASK_QUEUE: uniqueName('codec-bad'), DURABLE_OPS_METRICS_PORT: '0', DURABLE_OPS_RECEIVER_PORT: '0', DURABLE_OPS_CODEC_PORT: '0', DURABLE_OPS_CODEC_TOKEN_FILE: path.join(dir, 'token') };
  const worker1 = await run('src/workers/main.ts', { ...env, DURABLE_OPS_CODEC_KEYS_FILE: short });
  assert.equal(worker1.code, 2, worker1.output);
  assert.match(worker1.output, /codec keys file .*short\.json is invalid[\s\S]*keys\.k1: must be 32 bytes for AES-256 \(got 16 bytes\)/);
  const worker2 = await run('src/workers/main.ts', { ...env, DURABLE_OPS_CODEC_KEYS_FILE: open });
  assert.equal(worker2.code, 2, worker2.output);
  assert.match(worker2.output, /open\.json: group\/other permissions are not allowed \(mode 0644\); run: chmod 600/);
  const codecServer = await run('src/codec/main.ts', { ...env, DURABLE_OPS_CODEC_KEYS_FILE: open });
  assert.equal(codecServer.code, 2, codecServer.output);
  assert.match(codecServer.output, /durable-ops codec server: .*mode 0644/);
});
