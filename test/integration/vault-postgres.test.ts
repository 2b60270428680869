/**
 * Vault and PostgreSQL as the stack runs them (src/stack/services/vault.sh, postgres.sh): Vault
 * in server mode, initialised and unsealed; the worker's AppRole limited to its KV paths and
 * database roles; the audit log; Vault's database engine rotating app_b while app_a keeps
 * working; PostgreSQL on 127.0.0.1 only. Unique KV paths per run, so reruns are independent.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { createPostgresActivities, pgSettings, withPgClient } from '../../src/activities/postgres';
import { createVaultActivities, kvStoreFor, VaultSession, vaultSettings } from '../../src/activities/vault';
import { loadConfig } from '../../src/config/env';

const config = loadConfig();
const DATA = config.DURABLE_OPS_DATA;
const VAULT_DIR = path.join(DATA, 'vault');
const PG = pgSettings(config);
const ADMIN = {
  username: config.DURABLE_OPS_PG_ADMIN_USER,
  password: readFileSync(config.DURABLE_OPS_PG_ADMIN_PASSWORD_FILE ?? path.join(DATA, 'postgres', 'admin.password'), 'utf8').trim(),
};
const RUN = randomUUID().slice(0, 8);

/** Local addresses listening on TCP `port`, from /proc/net/tcp and tcp6. */
function listeners(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[3] !== '0A') continue; // LISTEN
      const [addr, p] = (f[1] ?? '').split(':');
      if (p !== hexPort || !addr) continue;
      if (addr.length === 8) out.push(Buffer.from(addr, 'hex').reverse().join('.'));
      else out.push(addr === '00000000000000000000000000000000' ? '::' : `ipv6:${addr}`);
    }
  }
  return out;
}

function mode(file: string): string {
  return (statSync(file).mode & 0o777).toString(8);
}

async function failureType(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err instanceof ApplicationFailure ? (err.type ?? 'ApplicationFailure') : `${(err as Error).name}: ${(err as Error).message}`;
  }
}

describe('PostgreSQL (project cluster)', { timeout: 60_000 }, () => {
  test('listens on 127.0.0.1 only, scram passwords, WAL for backups', async () => {
    assert.deepEqual(listeners(PG.port), ['127.0.0.1']);
    assert.equal(mode(config.DURABLE_OPS_PG_ADMIN_PASSWORD_FILE ?? path.join(DATA, 'postgres', 'admin.password')), '600');
    const settings = await withPgClient(PG, ADMIN, async (c) => (await c.query<{ name: string; setting: string }>("SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'wal_level', 'password_encryption', 'port')")).rows);
    assert.deepEqual(Object.fromEntries(settings.map((r) => [r.name, r.setting])), { listen_addresses: '127.0.0.1', password_encryption: 'scram-sha-256', port: String(PG.port), wal_level: 'replica' });
    // Any other address of this machine is refused.
    const other = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
    if (other) await assert.rejects(withPgClient({ ...PG, host: other.address }, ADMIN, async () => undefined), /ECONNREFUSED|EHOSTUNREACH|timeout/i);
    // A wrong password is refused (no trust/peer on TCP).
    assert.equal(await failureType(withPgClient(PG, { username: ADMIN.username, password: 'wrong' }, async () => undefined)), 'PgAuthFailed');
  });

  test('roles: app_a and app_b share app_rw with least privilege', async () => {
    const rows = await withPgClient(PG, ADMIN, async (c) => {
      const q = await c.query<{ rolname: string; rolcanlogin: boolean; rolsuper: boolean; rolcreaterole: boolean; rolcreatedb: boolean; groups: string[] }>(
        `SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb,
                ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1)::text[] AS groups
           FROM pg_roles r WHERE r.rolname IN ('app_a', 'app_b', 'app_rw', 'vault_admin') ORDER BY r.rolname`,
      );
      return q.rows;
    });
    assert.deepEqual(rows, [
      { rolname: 'app_a', rolcanlogin: true, rolsuper: false, rolcreaterole: false, rolcreatedb: false, groups: ['app_rw'] },
      { rolname: 'app_b', rolcanlogin: true, rolsuper: false, rolcreaterole: false, rolcreatedb: false, groups: ['app_rw'] },
      { rolname: 'app_rw', rolcanlogin: false, rolsuper: false, rolcreaterole: false, rolcreatedb: false, groups: [] },
      { rolname: 'vault_admin', rolcanlogin: true, rolsuper: false, rolcreaterole: true, rolcreatedb: false, groups: [] },
    ]);
    const privs = await withPgClient({ ...PG, database: 'app' }, ADMIN, async (c) => (await c.query(
      `SELECT has_database_privilege('app_rw', 'app', 'CONNECT') AS connect,
              has_database_privilege('app_rw', 'app', 'CREATE') AS create_schema,
              has_database_privilege('public', 'app', 'CONNECT') AS public_connect,
              has_schema_privilege('app_rw', 'public', 'USAGE') AS usage,
              has_schema_privilege('app_rw', 'public', 'CREATE') AS create_table`,
    )).rows[0]);
    assert.deepEqual(privs, { connect: true, create_schema: false, public_connect: false, usage: true, create_table: false });
  });
});

describe('Vault (server mode) and the worker AppRole', { timeout: 60_000 }, () => {
  let vault: VaultSession;
  before(async () => {
    vault = new VaultSession(vaultSettings(config));
    await vault.login();
  });

  test('initialised, unsealed, file storage (not dev mode), loopback, secrets in 0600 files', async () => {
    const res = await fetch(`${config.DURABLE_OPS_VAULT_ADDR}/v1/sys/seal-status`);
    const status = (await res.json()) as { initialized: boolean; sealed: boolean; storage_type: string; type: string; n: number; t: number; version: string };
    assert.equal(status.initialized, true);
    assert.equal(status.sealed, false);
    assert.equal(status.storage_type, 'file');
    assert.equal(status.type, 'shamir');
    assert.equal(status.version, '1.13.0');
    assert.deepEqual([status.n, status.t], [1, 1]);
    const port = Number(new URL(config.DURABLE_OPS_VAULT_ADDR).port);
    assert.deepEqual(listeners(port), ['127.0.0.1']);
    for (const f of ['init.json', 'role-id', 'secret-id']) assert.equal(mode(path.join(VAULT_DIR, f)), '600', f);
    assert.equal(mode(VAULT_DIR), '700');
  });

  test('KV v2 under durable-ops/: write with check-and-set, stale cas rejected, metadata', async () => {
    const p = `durable-ops/test/${RUN}/kv`;
    assert.equal(await vault.kvMetadata(p), undefined);
    assert.equal((await vault.kvWrite(p, { value: `plain-${RUN}-v1` }, { cas: 0 })).version, 1);
    assert.equal(await failureType(vault.kvWrite(p, { value: `plain-${RUN}-dup` }, { cas: 0 })), 'VaultCasMismatch');
    assert.equal((await vault.kvWrite(p, { value: `plain-${RUN}-v2` }, { cas: 1 })).version, 2);
    assert.equal(await failureType(vault.kvWrite(p, { value: `plain-${RUN}-stale` }, { cas: 1 })), 'VaultCasMismatch');
    await vault.kvSetCustomMetadata(p, { rotated_by: 'test', run: RUN });
    const meta = await vault.kvMetadata(p);
    assert.equal(meta?.currentVersion, 2);
    assert.equal(meta?.casRequired, false); // required mount-wide (secret/config), not per key
    assert.deepEqual(meta?.customMetadata, { rotated_by: 'test', run: RUN });
    assert.deepEqual((await vault.kvRead(p)).data, { value: `plain-${RUN}-v2` });
  });

  test('rotate activity: the value stays in the activity, a retry is idempotent', async () => {
    const acts = createVaultActivities({ vault });
    const p = `durable-ops/test/${RUN}/rotated`;
    const input = { path: p, cas: 0, rotationId: `rot-${RUN}` };
    const first = await acts.vaultRotateKvSecret(input);
    assert.deepEqual(first, { path: p, version: 1, alreadyDone: false });
    assert.deepEqual(await acts.vaultRotateKvSecret(input), { path: p, version: 1, alreadyDone: true });
    assert.equal(await failureType(acts.vaultRotateKvSecret({ ...input, rotationId: 'someone-else' })), 'VaultCasMismatch');
    const meta = await acts.vaultSecretMetadata(p);
    assert.equal(meta?.currentVersion, 1);
    assert.ok(!JSON.stringify(meta).includes((await vault.kvRead(p)).data.value ?? 'missing'));
  });

  test('the rotation runbook KvStore over the session: versions, labels, destroy', async () => {
    const kv = kvStoreFor(vault);
    const p = `durable-ops/test/${RUN}/store`;
    assert.equal(await kv.readMetadata(p), null);
    assert.equal(await kv.write(p, { value: 'one' }, 0), 1);
    assert.equal(await kv.write(p, { value: 'two' }, 1), 2);
    await kv.writeCustomMetadata(p, { current_version: '1', pending_version: '2' });
    await kv.destroyVersions(p, [2]);
    const meta = await kv.readMetadata(p);
    assert.equal(meta?.currentVersion, 2);
    assert.deepEqual(meta?.custom, { current_version: '1', pending_version: '2' });
    assert.equal(meta?.versions['2']?.destroyed, true);
    assert.deepEqual(await kv.readVersion(p, 1), { value: 'one' });
    assert.equal(await kv.readVersion(p, 2), null);
  });

  test('denied outside its paths', async () => {
    assert.equal(await failureType(vault.kvWrite(`other/${RUN}/x`, { value: 'x' }, { cas: 0 })), 'VaultPermissionDenied');
    assert.equal(await failureType(vault.kvMetadata(`other/${RUN}/x`)), 'VaultPermissionDenied');
    for (const p of ['sys/policies/acl', 'sys/policy', 'secret/config', 'sys/audit', 'database/config/app', 'auth/approle/role/durable-ops-worker/secret-id']) {
      assert.equal(await failureType(vault.call(`read ${p}`, (c) => c.read(p))), 'VaultPermissionDenied', p);
    }
    assert.equal(await failureType(vault.call('rotate-root', (c) => c.write('database/rotate-root/app', {}))), 'VaultPermissionDenied');
  });

  test('the audit log records the accesses with hashed values only', async () => {
    const p = `durable-ops/test/${RUN}/audited`;
    const plaintext = `plaintext-${randomUUID()}`;
    await vault.kvWrite(p, { value: plaintext }, { cas: 0 });
    await failureType(vault.kvWrite(`other/${RUN}/audited`, { value: plaintext }, { cas: 0 }));
    const log = readFileSync(config.DURABLE_OPS_VAULT_AUDIT_LOG ?? path.join(VAULT_DIR, 'audit.log'), 'utf8');
    assert.ok(!log.includes(plaintext), 'plaintext secret in the audit log');
    const entries = log
      .split('\n')
      .filter((l) => l.includes(RUN))
      .map((l) => JSON.parse(l) as { type: string; error?: string; request: { path: string; operation: string; data?: { data?: { value?: string } } } });
    const write = entries.find((e) => e.type === 'response' && e.request.path === `secret/data/${p}`);
    assert.ok(write, 'the write is in the audit log');
    assert.match(write.request.data?.data?.value ?? '', /^hmac-sha256:/);
    const denied = entries.find((e) => e.request.path === `secret/data/other/${RUN}/audited` && e.error);
    assert.match(denied?.error ?? '', /permission denied/);
  });

  test('database engine: rotating app_b changes its password, app_a keeps working', async () => {
    const acts = { ...createVaultActivities({ vault }), ...createPostgresActivities({ vault, pg: PG }) };
    const whoami = async (creds: { username: string; password: string }) => withPgClient(PG, creds, async (c) => (await c.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u);
    const a = await vault.staticCredentials('app_a');
    const bBefore = await vault.staticCredentials('app_b');
    assert.equal(await whoami(a), 'app_a');
    const rotated = await acts.vaultRotateDatabaseRole('app_b');
    assert.equal(rotated.username, 'app_b');
    assert.ok(Date.parse(rotated.lastVaultRotation) > Date.parse(bBefore.lastVaultRotation), 'a new rotation time');
    const bAfter = await vault.staticCredentials('app_b');
    assert.notEqual(bAfter.password, bBefore.password);
    assert.equal(await whoami(bAfter), 'app_b');
    assert.equal(await failureType(whoami(bBefore)), 'PgAuthFailed');
    assert.equal(await whoami(a), 'app_a');
    const check = await acts.pgVerifyLogin('app_b');
    assert.deepEqual({ role: check.role, user: check.currentUser }, { role: 'app_b', user: 'app_b' });
    assert.ok(!JSON.stringify(check).includes(bAfter.password));
    // Both logins share app_rw: app_b writes, app_a reads; neither may create tables.
    await withPgClient(PG, ADMIN, (c) => c.query('CREATE TABLE IF NOT EXISTS rotation_probe (run text, by_user text)'));
    await withPgClient(PG, bAfter, (c) => c.query('INSERT INTO rotation_probe VALUES ($1, current_user)', [RUN]));
    const seen = await withPgClient(PG, a, async (c) => (await c.query<{ by_user: string }>('SELECT by_user FROM rotation_probe WHERE run = $1', [RUN])).rows);
    assert.deepEqual(seen, [{ by_user: 'app_b' }]);
    await assert.rejects(withPgClient(PG, a, (c) => c.query(`CREATE TABLE probe_${RUN} (x int)`)), /permission denied/);
  });
});
