/**
 * Recorded histories for the replay tests. A test calls recordHistory after a scenario; the
 * history is written only when DURABLE_OPS_RECORD_HISTORIES=1 (`npm run record-histories`),
 * so normal runs never rewrite the checked-in files.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { config, testCodec } from './temporal';
import { isEncrypted } from '../../src/codec/codec';

export const HISTORIES_DIR = fileURLToPath(new URL('../replay/histories', import.meta.url));

/** Export a history the way an operator would (`temporal workflow show --output json`). */
export async function recordHistory(client: Client, workflowId: string, name: string): Promise<void> {
  if (process.env.DURABLE_OPS_RECORD_HISTORIES !== '1') return;
  const { runId } = await client.workflow.getHandle(workflowId).describe();
  const bin = process.env.DURABLE_OPS_TEMPORAL_BIN ?? 'temporal';
  const raw = execFileSync(bin, ['workflow', 'show', '--address', config.DURABLE_OPS_TEMPORAL_ADDRESS, '--namespace', config.DURABLE_OPS_NAMESPACE, '--workflow-id', workflowId, '--run-id', runId, '--output', 'json'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  // Recorded histories are test fixtures: store them decrypted so they replay without the keys.
  const json = `${JSON.stringify(await decryptHistoryJson(JSON.parse(raw)), null, 2)}\n`;
  writeFileSync(path.join(HISTORIES_DIR, `${name}.json`), json);
  // Replay needs the real workflow id (child ids and the like derive from it).
  const index = readIndex();
  index[name] = workflowId;
  writeFileSync(INDEX, `${JSON.stringify(index, null, 2)}\n`);
}

const INDEX = path.join(HISTORIES_DIR, 'workflow-ids.json');

type JsonPayload = { metadata?: Record<string, string>; data?: string };

/** Replace every payload our codec encrypted (proto JSON, base64 fields) with its plaintext. */
export async function decryptHistoryJson(node: unknown): Promise<unknown> {
  if (Array.isArray(node)) return Promise.all(node.map(decryptHistoryJson));
  if (node === null || typeof node !== 'object') return node;
  const obj = node as Record<string, unknown>;
  if (obj.metadata && typeof obj.metadata === 'object' && Object.values(obj.metadata).every((v) => typeof v === 'string')) {
    const p = obj as JsonPayload;
    const payload = { metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])), data: Buffer.from(p.data ?? '', 'base64') };
    if (isEncrypted(payload)) {
      const [plain] = await testCodec().decode([payload]);
      return {
        metadata: Object.fromEntries(Object.entries(plain!.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')])),
        data: Buffer.from(plain!.data ?? new Uint8Array()).toString('base64'),
      };
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k] = await decryptHistoryJson(v);
  return out;
}

function readIndex(): Record<string, string> {
  try {
    return JSON.parse(readFileSync(INDEX, 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

export function loadHistories(): Array<{ workflowId: string; history: ReturnType<typeof historyFromJSON> }> {
  const index = readIndex();
  return readdirSync(HISTORIES_DIR)
    .filter((f) => f.endsWith('.json') && path.join(HISTORIES_DIR, f) !== INDEX)
    .sort()
    .map((f) => {
      const name = f.replace(/\.json$/, '');
      return { workflowId: index[name] ?? name, history: historyFromJSON(JSON.parse(readFileSync(path.join(HISTORIES_DIR, f), 'utf8'))) };
    });
}
