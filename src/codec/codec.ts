/**
 * Payload encryption: a Temporal PayloadCodec with AES-256-GCM, on every client and worker, so
 * workflow inputs, activity inputs and results, signals, queries, memos and summaries reach the
 * Temporal server (and its database) only as ciphertext.
 *
 * An encrypted payload is `{ metadata: { encoding: "binary/encrypted", "encryption-key-id": <id> },
 * data: iv (12 random bytes) || ciphertext || GCM tag (16 bytes) }`; the plaintext is the original
 * Payload, protobuf-encoded (metadata included), and the key id is authenticated as AAD.
 *
 * Keys: `DURABLE_OPS_CODEC_KEY` (base64 of 32 bytes, key id "env"), or the 0600 JSON file
 * `DURABLE_OPS_CODEC_KEYS_FILE` (default $DURABLE_OPS_DATA/codec/keys.json, created with one fresh
 * key on first use): `{ "current": "k2", "keys": { "k1": "<base64>", "k2": "<base64>" } }`.
 * New payloads use `current`; every listed key still decrypts. The file is re-read when it
 * changes, so a rotation reaches running workers without a restart.
 *
 * Decoding leaves a payload it did not encrypt (no `encryption-key-id`) unchanged: histories
 * recorded before encryption still replay, and old workflows still run.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import { z } from 'zod';
import type { Config } from '../config/env';
import { ConfigError } from '../config/env';
import { readPrivateFile, SecretFileError } from './secret-file';

const { Payload: PayloadMessage } = proto.temporal.api.common.v1;

export const ENCODING_ENCRYPTED = 'binary/encrypted';
export const METADATA_KEY_ID = 'encryption-key-id';
/** The key id of DURABLE_OPS_CODEC_KEY. */
export const ENV_KEY_ID = 'env';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const AAD_PREFIX = 'durable-ops/codec/v1:';

/** A codec key problem: a bad keys file or key, or a payload whose key is not known. */
export class CodecKeyError extends ConfigError {
  override name = 'CodecKeyError';
}

/** A payload that is ours but does not decrypt (wrong key material, tampered, truncated). */
export class CodecDecryptError extends Error {
  override name = 'CodecDecryptError';
}

export interface Keyring {
  /** Key id new payloads are encrypted with. */
  current: string;
  keys: ReadonlyMap<string, Buffer>;
  /** Where the keys came from (a file path, or "DURABLE_OPS_CODEC_KEY"), for error messages. */
  source: string;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** base64 -> 32 bytes, or a message saying what is wrong (never the value). */
function keyBytes(value: string): Buffer | string {
  const v = value.trim();
  if (!BASE64.test(v)) return 'must be base64 (32 random bytes, e.g. `head -c 32 /dev/urandom | base64`)';
  const buf = Buffer.from(v, 'base64');
  return buf.length === KEY_BYTES ? buf : `must be ${KEY_BYTES} bytes for AES-256 (got ${buf.length} bytes)`;
}

const keysFileSchema = z
  .object({
    current: z.string().min(1, 'must name the key new payloads use'),
    keys: z
      .record(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a key id is 1-64 of A-Z a-z 0-9 . _ -'), z.string())
      .refine((keys) => Object.keys(keys).length > 0, 'must hold at least one key'),
  })
  .strict()
  .superRefine((file, ctx) => {
    for (const [id, value] of Object.entries(file.keys)) {
      const key = keyBytes(value);
      if (typeof key === 'string') ctx.addIssue({ code: 'custom', path: ['keys', id], message: key });
    }
    if (Object.keys(file.keys).length > 0 && !(file.current in file.keys)) {
      ctx.addIssue({ code: 'custom', path: ['current'], message: `"${file.current}" is not one of the keys (${Object.keys(file.keys).join(', ')})` });
    }
  });

export type KeysFile = z.input<typeof keysFileSchema>;

/** Parse and validate the keys file's text; throws CodecKeyError naming every problem. */
export function parseKeysFile(text: string, source: string): Keyring {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CodecKeyError(`codec keys file ${source}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = keysFileSchema.safeParse(json);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(file)'}: ${i.message}`);
    throw new CodecKeyError(`codec keys file ${source} is invalid (expected {"current": "<id>", "keys": {"<id>": "<base64 of 32 bytes>"}}):\n${lines.join('\n')}`);
  }
  const keys = new Map(Object.entries(parsed.data.keys).map(([id, v]) => [id, keyBytes(v) as Buffer]));
  return { current: parsed.data.current, keys, source };
}

/** A fresh keys file's content: one random key, "k1". */
export function newKeysFile(id = 'k1'): string {
  return `${JSON.stringify({ current: id, keys: { [id]: randomBytes(KEY_BYTES).toString('base64') } }, null, 2)}\n`;
}

/** Read the keys file (0600, created with a fresh key when `create` and missing). */
export function loadKeysFile(file: string, opts: { create?: boolean } = {}): Keyring {
  let text;
  try {
    text = readPrivateFile(file, 'codec keys file', opts.create === false ? undefined : () => newKeysFile());
  } catch (err) {
    if (err instanceof SecretFileError) throw new CodecKeyError(err.message);
    throw err;
  }
  return parseKeysFile(text, file);
}

/** The single key of DURABLE_OPS_CODEC_KEY (key id "env"). */
export function keyringFromKey(base64: string): Keyring {
  const key = keyBytes(base64);
  if (typeof key === 'string') throw new CodecKeyError(`DURABLE_OPS_CODEC_KEY ${key}`);
  return { current: ENV_KEY_ID, keys: new Map([[ENV_KEY_ID, key]]), source: 'DURABLE_OPS_CODEC_KEY' };
}

/** A keyring read from a file, re-read whenever the file changes (rotation without restarts). */
export function fileKeyring(file: string, opts: { create?: boolean } = {}): () => Keyring {
  let cached: { stamp: string; ring: Keyring } | undefined;
  const stampOf = () => {
    try {
      const st = statSync(file);
      return `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}`;
    } catch {
      return 'missing';
    }
  };
  const get = () => {
    const stamp = stampOf();
    if (cached?.stamp === stamp) return cached.ring;
    const ring = loadKeysFile(file, opts);
    cached = { stamp: stampOf(), ring };
    return ring;
  };
  get(); // validate at load
  return get;
}

function aad(keyId: string): Buffer {
  return Buffer.from(AAD_PREFIX + keyId, 'utf8');
}

function metadataText(p: Payload, name: string): string | undefined {
  const v = p.metadata?.[name];
  return v ? Buffer.from(v).toString('utf8') : undefined;
}

/** Is this payload one our codec encrypted (the only ones it decodes)? */
export function isEncrypted(p: Payload): boolean {
  return metadataText(p, 'encoding') === ENCODING_ENCRYPTED && metadataText(p, METADATA_KEY_ID) !== undefined;
}

export class AesGcmCodec implements PayloadCodec {
  private readonly keyring: () => Keyring;

  constructor(keyring: Keyring | (() => Keyring)) {
    this.keyring = typeof keyring === 'function' ? keyring : () => keyring;
  }

  /** The key id new payloads get. */
  currentKeyId(): string {
    return this.keyring().current;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    if (payloads.length === 0) return payloads;
    const ring = this.keyring();
    const key = ring.keys.get(ring.current)!;
    return payloads.map((p) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(aad(ring.current));
      const plain = PayloadMessage.encode(p).finish();
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: { encoding: Buffer.from(ENCODING_ENCRYPTED), [METADATA_KEY_ID]: Buffer.from(ring.current) },
        data: new Uint8Array(data),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    if (!payloads.some(isEncrypted)) return payloads;
    const ring = this.keyring();
    return payloads.map((p) => {
      if (!isEncrypted(p)) return p; // not ours (e.g. recorded before encryption): unchanged
      const keyId = metadataText(p, METADATA_KEY_ID)!;
      const key = ring.keys.get(keyId);
      if (!key) {
        throw new CodecKeyError(`payload encrypted with key id "${keyId}", which is not in ${ring.source} (known: ${[...ring.keys.keys()].join(', ')}); keep retired keys in the file so old payloads still decode`);
      }
      const data = Buffer.from(p.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new CodecDecryptError(`encrypted payload (key "${keyId}") is truncated: ${data.length} bytes`);
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
        decipher.setAAD(aad(keyId));
        decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
        const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
        const decoded = PayloadMessage.decode(plain);
        return { metadata: decoded.metadata, data: decoded.data };
      } catch (err) {
        throw new CodecDecryptError(`cannot decrypt payload with key "${keyId}" from ${ring.source}: authentication failed (wrong key material or tampered payload): ${(err as Error).message}`);
      }
    });
  }
}

/** The keys file path from the configuration. */
export function codecKeysFile(config: Pick<Config, 'DURABLE_OPS_CODEC_KEYS_FILE' | 'DURABLE_OPS_DATA'>): string {
  return config.DURABLE_OPS_CODEC_KEYS_FILE ?? path.join(config.DURABLE_OPS_DATA, 'codec', 'keys.json');
}

const codecs = new Map<string, AesGcmCodec>();

/**
 * The codec for this configuration (one per key source, shared by every client and worker in the
 * process). Validates the keys now: throws CodecKeyError with a clear message.
 */
export function codecFor(config: Pick<Config, 'DURABLE_OPS_CODEC_KEY' | 'DURABLE_OPS_CODEC_KEYS_FILE' | 'DURABLE_OPS_DATA'>): AesGcmCodec {
  const envKey = config.DURABLE_OPS_CODEC_KEY;
  const source = envKey ? `env:${createHash('sha256').update(envKey).digest('hex')}` : `file:${path.resolve(codecKeysFile(config))}`;
  let codec = codecs.get(source);
  if (!codec) {
    codec = new AesGcmCodec(envKey ? keyringFromKey(envKey) : fileKeyring(codecKeysFile(config)));
    codecs.set(source, codec);
  }
  return codec;
}
