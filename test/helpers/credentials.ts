/**
 * Credential rotation on the real stack, the test's side: the project PostgreSQL cluster as its
 * admin, fresh apps with their two alternating roles, and what a consumer reads from Vault.
 */
import { readFileSync } from 'node:fs';
import { pgSettings, withPgClient } from '../../src/activities/postgres';
import { vaultSettings, VaultSession } from '../../src/activities/vault';
import { config, uniqueName } from './temporal';

export const PG = pgSettings(config);
export const ADMIN = { username: config.DURABLE_OPS_PG_ADMIN_USER, password: readFileSync(config.DURABLE_OPS_PG_ADMIN_PASSWORD_FILE ?? `${config.DURABLE_OPS_DATA}/postgres/admin.password`, 'utf8').trim() };
export const vault = new VaultSession(vaultSettings(config));

export const admin = (sql: string) => withPgClient(PG, ADMIN, (c) => c.query(sql));

/** A fresh app with two alternating NOLOGIN roles `<app>_a` and `<app>_b`, as the stack makes them for `orders`; its name goes into `made` for dropApps. */
export async function newApp(made: string[]): Promise<string> {
  const app = `t${uniqueName('x').slice(2).replace(/-/g, '')}`;
  made.push(app);
  for (const r of ['a', 'b']) await admin(`CREATE ROLE ${app}_${r} NOLOGIN INHERIT IN ROLE app_rw`);
  return app;
}

export async function dropApps(apps: string[]): Promise<void> {
  for (const app of apps) for (const r of ['a', 'b']) await admin(`DROP ROLE IF EXISTS ${app}_${r}`).catch(() => undefined);
}

/** What a consumer does: the current version's username and value from Vault. */
export async function currentCreds(vaultPath: string): Promise<{ username: string; password: string; version: number }> {
  const meta = await vault.kvMetadata(vaultPath);
  const version = Number(meta!.customMetadata.current_version);
  const data = (await vault.kvReadVersion(vaultPath, version))!;
  return { username: data.username!, password: data.value!, version };
}

export const whoami = (creds: { username: string; password: string }) => withPgClient(PG, creds, async (c) => (await c.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u);

/** rolcanlogin of a role. */
export const canLogin = async (role: string) => (await withPgClient(PG, ADMIN, (c) => c.query<{ l: boolean }>('SELECT rolcanlogin AS l FROM pg_roles WHERE rolname = $1', [role]))).rows[0]!.l;
