/** The Vault session's token handling and error mapping, against a fake node-vault client. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, mock, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type NodeVault from 'node-vault';
import { VaultSession, vaultFailure } from '../../src/activities/vault';

const dir = mkdtempSync(path.join(tmpdir(), 'vault-client-'));
writeFileSync(path.join(dir, 'role-id'), 'role\n');
writeFileSync(path.join(dir, 'secret-id'), 'secret\n');
after(() => rmSync(dir, { recursive: true, force: true }));
const settings = { addr: 'http://127.0.0.1:1', roleIdFile: path.join(dir, 'role-id'), secretIdFile: path.join(dir, 'secret-id'), kvMount: 'secret', dbMount: 'database' };

const httpError = (statusCode: number, message: string) => Object.assign(new Error(message), { response: { statusCode, body: { errors: [message] } } });

function fake(reads: Array<() => unknown>, ttlSec = 3600) {
  const calls = { logins: [] as unknown[], renewals: 0, tokens: [] as string[] };
  const client = {
    token: '',
    async approleLogin(args: unknown) {
      calls.logins.push(args);
      return { auth: { client_token: `t${calls.logins.length}`, lease_duration: ttlSec, renewable: true } };
    },
    async tokenRenewSelf() {
      calls.renewals++;
      return { auth: { lease_duration: ttlSec, renewable: true } };
    },
    async read() {
      calls.tokens.push(client.token);
      const next = reads.shift();
      if (!next) throw new Error('unexpected read');
      return next();
    },
  };
  return { calls, factory: () => client as unknown as NodeVault.client };
}

test('logs in with the trimmed role_id/secret_id, then once more after a 403, and retries once', async () => {
  const { calls, factory } = fake([
    () => {
      throw httpError(403, 'permission denied');
    },
    () => ({ data: { current_version: 3, custom_metadata: null } }),
  ]);
  const vault = new VaultSession(settings, undefined, factory);
  const meta = await vault.kvMetadata('durable-ops/x');
  assert.equal(meta?.currentVersion, 3);
  assert.deepEqual(calls.logins, [
    { role_id: 'role', secret_id: 'secret' },
    { role_id: 'role', secret_id: 'secret' },
  ]);
  assert.deepEqual(calls.tokens, ['t1', 't2']);
});

test('a 403 that remains is a non-retryable VaultPermissionDenied', async () => {
  const denied = () => {
    throw httpError(403, 'permission denied');
  };
  const { calls, factory } = fake([denied, denied]);
  const vault = new VaultSession(settings, undefined, factory);
  await assert.rejects(vault.kvMetadata('durable-ops/x'), (err: unknown) => err instanceof ApplicationFailure && err.type === 'VaultPermissionDenied' && err.nonRetryable);
  assert.equal(calls.logins.length, 2);
});

test('renews the token in the last third of its TTL', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  try {
    const { calls, factory } = fake([() => ({ data: {} }), () => ({ data: {} }), () => ({ data: {} })], 60);
    const vault = new VaultSession(settings, undefined, factory);
    await vault.kvMetadata('durable-ops/x');
    mock.timers.tick(10_000);
    await vault.kvMetadata('durable-ops/x');
    assert.equal(calls.renewals, 0);
    mock.timers.tick(35_000); // 15 s left of 60
    await vault.kvMetadata('durable-ops/x');
    assert.deepEqual([calls.renewals, calls.logins.length], [1, 1]);
  } finally {
    mock.timers.reset();
  }
});

test('errors map to Temporal failures without values', () => {
  const type = (e: Error) => [(e as ApplicationFailure).type, (e as ApplicationFailure).nonRetryable];
  assert.deepEqual(type(vaultFailure('w', httpError(400, 'check-and-set parameter did not match the current version'))), ['VaultCasMismatch', true]);
  assert.deepEqual(type(vaultFailure('w', httpError(404, 'Status 404'))), ['VaultNotFound', true]);
  assert.deepEqual(type(vaultFailure('w', httpError(503, 'Vault is sealed'))), ['VaultUnavailable', false]);
  assert.deepEqual(type(vaultFailure('w', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))), ['VaultUnavailable', false]);
});
