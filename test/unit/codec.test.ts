/** The payload codec (AES-256-GCM) and its keys: no Temporal server needed. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { AesGcmCodec, CodecDecryptError, CodecKeyError, codecFor, ENCODING_ENCRYPTED, fileKeyring, keyringFromKey, loadKeysFile, METADATA_KEY_ID, parseKeysFile } from '../../src/codec/codec';
import { ConfigError, loadConfig } from '../../src/config/env';

const dir = mkdtempSync(path.join(tmpdir(), 'codec-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const key = () => randomBytes(32).toString('base64');
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');
const plain = (v: unknown): Payload => defaultPayloadConverter.toPayload(v);

function keysFile(name: string, content: unknown, mode = 0o600): string {
  const file = path.join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  chmodSync(file, mode);
  return file;
}

test('encrypts with AES-256-GCM: binary/encrypted, the key id, a fresh IV each time, and decrypts back', async () => {
  const codec = new AesGcmCodec(parseKeysFile(JSON.stringify({ current: 'k1', keys: { k1: key() } }), 'test'));
  const input = [plain({ password: 'hunter2-marker', n: 1 }), plain('second')];
  const encoded = await codec.encode(input);
  assert.equal(encoded.length, 2);
  for (const p of encoded) {
    assert.equal(text(p.metadata!.encoding), ENCODING_ENCRYPTED);
    assert.equal(text(p.metadata![METADATA_KEY_ID]), 'k1');
    assert.deepEqual(Object.keys(p.metadata!).sort(), ['encoding', METADATA_KEY_ID].sort(), 'the original metadata (json/plain) is inside the ciphertext');
    assert.ok(!text(p.data).includes('hunter2-marker'));
    assert.ok(p.data!.length >= 12 + 16);
  }
  const again = await codec.encode([input[0]!]);
  assert.notDeepEqual(Buffer.from(again[0]!.data!), Buffer.from(encoded[0]!.data!), 'a random IV per payload');
  const decoded = await codec.decode(encoded);
  assert.deepEqual(defaultPayloadConverter.fromPayload(decoded[0]!), { password: 'hunter2-marker', n: 1 });
  assert.equal(defaultPayloadConverter.fromPayload(decoded[1]!), 'second');
  assert.equal(text(decoded[0]!.metadata!.encoding), 'json/plain');
});

test('payloads it did not encrypt pass through decode unchanged (old histories replay)', async () => {
  const codec = new AesGcmCodec(keyringFromKey(key()));
  const old = [plain({ service: 'web' }), { metadata: { encoding: Buffer.from('binary/null') } }, { metadata: { encoding: Buffer.from(ENCODING_ENCRYPTED) }, data: Buffer.from('someone else') }];
  const out = await codec.decode(old);
  assert.deepEqual(out, old);
});

test('a tampered payload, a wrong key and a truncated payload are clear errors', async () => {
  const ring = parseKeysFile(JSON.stringify({ current: 'k1', keys: { k1: key() } }), 'test');
  const codec = new AesGcmCodec(ring);
  const [enc] = await codec.encode([plain('secret')]);
  const tampered = { ...enc!, data: Buffer.from(enc!.data!) };
  tampered.data[20] = tampered.data[20]! ^ 1;
  await assert.rejects(codec.decode([tampered]), (err: Error) => err instanceof CodecDecryptError && /authentication failed/.test(err.message) && /"k1"/.test(err.message));
  const otherKey = new AesGcmCodec(parseKeysFile(JSON.stringify({ current: 'k1', keys: { k1: key() } }), 'other'));
  await assert.rejects(otherKey.decode([enc!]), CodecDecryptError);
  // The key id is authenticated: relabelling a payload with another key id does not decrypt.
  const relabelled = { ...enc!, metadata: { ...enc!.metadata, [METADATA_KEY_ID]: Buffer.from('k2') } };
  const both = new AesGcmCodec({ current: 'k1', keys: new Map([['k1', ring.keys.get('k1')!], ['k2', ring.keys.get('k1')!]]), source: 'test' });
  await assert.rejects(both.decode([relabelled]), CodecDecryptError);
  await assert.rejects(codec.decode([{ ...enc!, data: Buffer.alloc(10) }]), /truncated/);
});

test('an unknown key id is a clear error naming the id and the known keys', async () => {
  const a = new AesGcmCodec(parseKeysFile(JSON.stringify({ current: 'k0', keys: { k0: key() } }), 'a'));
  const b = new AesGcmCodec(parseKeysFile(JSON.stringify({ current: 'k1', keys: { k1: key(), k2: key() } }), '/etc/keys.json'));
  const [enc] = await a.encode([plain(1)]);
  await assert.rejects(b.decode([enc!]), (err: Error) => {
    assert.ok(err instanceof CodecKeyError);
    assert.match(err.message, /key id "k0", which is not in \/etc\/keys.json \(known: k1, k2\)/);
    return true;
  });
});

test('rotation: k1 payloads still decode after current becomes k2, new payloads use k2, and the file is re-read', async () => {
  const k1 = key();
  const file = keysFile('rotate.json', { current: 'k1', keys: { k1 } });
  const codec = new AesGcmCodec(fileKeyring(file));
  const [old] = await codec.encode([plain('written with k1')]);
  assert.equal(text(old!.metadata![METADATA_KEY_ID]), 'k1');
  keysFile('rotate.json', { current: 'k2', keys: { k1, k2: key() } });
  const [fresh] = await codec.encode([plain('written with k2')]);
  assert.equal(text(fresh!.metadata![METADATA_KEY_ID]), 'k2', 'the running codec picked up the rotation');
  const restarted = new AesGcmCodec(fileKeyring(file));
  const [a, b] = await restarted.decode([old!, fresh!]);
  assert.equal(defaultPayloadConverter.fromPayload(a!), 'written with k1');
  assert.equal(defaultPayloadConverter.fromPayload(b!), 'written with k2');
});

test('a bad keys file is refused at load with a clear message (and never echoes a key)', () => {
  const short = randomBytes(16).toString('base64');
  const cases: Array<[string, unknown, RegExp, number?]> = [
    ['short.json', { current: 'k1', keys: { k1: short } }, /keys\.k1: must be 32 bytes for AES-256 \(got 16 bytes\)/],
    ['notb64.json', { current: 'k1', keys: { k1: 'not base64!' } }, /keys\.k1: must be base64/],
    ['current.json', { current: 'k3', keys: { k1: key(), k2: key() } }, /current: "k3" is not one of the keys \(k1, k2\)/],
    ['empty.json', { current: 'k1', keys: {} }, /keys: must hold at least one key/],
    ['extra.json', { current: 'k1', keys: { k1: key() }, colour: 'red' }, /colour/],
    ['json.json', '{ not json', /not valid JSON/],
    ['open.json', { current: 'k1', keys: { k1: key() } }, /group\/other permissions are not allowed \(mode 0644\); run: chmod 600/, 0o644],
    ['group.json', { current: 'k1', keys: { k1: key() } }, /mode 0640/, 0o640],
  ];
  for (const [name, content, message, mode] of cases) {
    const file = keysFile(name, content, mode);
    assert.throws(() => loadKeysFile(file), (err: Error) => {
      assert.ok(err instanceof CodecKeyError && err instanceof ConfigError, `${name}: ${err.name}`);
      assert.match(err.message, message, name);
      assert.ok(err.message.includes(file), `${name} names the file`);
      assert.ok(!err.message.includes(short), `${name} does not echo a key`);
      return true;
    });
  }
  assert.throws(() => loadKeysFile(path.join(dir, 'missing.json'), { create: false }), /cannot read it \(ENOENT\)/);
});

test('first use creates the keys file with one fresh key, mode 0600, in a 0700 folder', async () => {
  const data = path.join(dir, 'data');
  const config = loadConfig({ DURABLE_OPS_DATA: data });
  const codec = codecFor(config);
  const file = path.join(data, 'codec', 'keys.json');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
  const ring = loadKeysFile(file);
  assert.equal(ring.current, 'k1');
  assert.equal(ring.keys.get('k1')!.length, 32);
  assert.equal(codecFor(config), codec, 'one codec per key source');
  assert.equal(codec.currentKeyId(), 'k1');
  const [enc] = await codec.encode([plain('x')]);
  assert.equal(defaultPayloadConverter.fromPayload((await codecFor(loadConfig({ DURABLE_OPS_DATA: data })).decode([enc!]))[0]!), 'x');
});

test('DURABLE_OPS_CODEC_KEY: one key, id "env"; a bad one is a config error that hides the value', async () => {
  const k = key();
  const codec = codecFor(loadConfig({ DURABLE_OPS_CODEC_KEY: k, DURABLE_OPS_DATA: path.join(dir, 'unused') }));
  const [enc] = await codec.encode([plain(1)]);
  assert.equal(text(enc!.metadata![METADATA_KEY_ID]), 'env');
  const bad = randomBytes(20).toString('base64');
  assert.throws(() => loadConfig({ DURABLE_OPS_CODEC_KEY: bad }), (err: Error) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /DURABLE_OPS_CODEC_KEY: must be 32 bytes, base64-encoded/);
    assert.ok(!err.message.includes(bad), 'the key is not echoed');
    return true;
  });
  assert.throws(() => loadConfig({ DURABLE_OPS_CODEC_CORS_ORIGINS: 'http://127.0.0.1:8233/path' }), /DURABLE_OPS_CODEC_CORS_ORIGINS: must be a comma-separated list of origins/);
});
