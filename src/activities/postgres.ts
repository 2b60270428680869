/**
 * PostgreSQL (pg): connections as an app's login role with the credentials Vault's database
 * engine manages. The password is read from Vault inside the activity and never leaves it.
 */
import { ApplicationFailure } from '@temporalio/common';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config/env';
import { readFile } from 'node:fs/promises';
import type { PgTarget } from './credentials';
import type { VaultSession } from './vault';

export interface PgSettings {
  host: string;
  port: number;
  database: string;
  connectTimeoutMs?: number;
}

export function pgSettings(config: Config): PgSettings {
  return { host: config.DURABLE_OPS_PG_HOST, port: config.DURABLE_OPS_PG_PORT, database: config.DURABLE_OPS_PG_DATABASE };
}

/** PostgreSQL's "invalid_password" / "invalid_authorization_specification". */
const AUTH_FAILED = new Set(['28P01', '28000']);

/** Connect with explicit credentials, run fn, always close. */
export async function withPgClient<T>(settings: PgSettings, creds: { username: string; password: string }, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    host: settings.host,
    port: settings.port,
    database: settings.database,
    user: creds.username,
    password: creds.password,
    connectionTimeoutMillis: settings.connectTimeoutMs ?? 5_000,
    application_name: 'durable-ops',
  });
  try {
    await client.connect();
    return await fn(client);
  } catch (err) {
    const code = (err as { code?: string }).code;
    // Never include the connection string or password; pg's messages name the user only.
    if (code && AUTH_FAILED.has(code)) throw ApplicationFailure.nonRetryable(`PostgreSQL: login as ${creds.username} failed: ${(err as Error).message}`, 'PgAuthFailed');
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Connect as the login role behind Vault's static role `role`, with its current password. */
export async function withVaultPgClient<T>(vault: VaultSession, settings: PgSettings, role: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const creds = await vault.staticCredentials(role);
  return withPgClient(settings, creds, fn);
}

export interface PgActivityDeps {
  vault: VaultSession;
  pg: PgSettings;
  log?: Logger;
}

export interface LoginCheck {
  role: string;
  username: string;
  currentUser: string;
  lastVaultRotation: string;
}

export function createPostgresActivities({ vault, pg: settings }: PgActivityDeps) {
  return {
    /** Log in as the role's user with the password Vault holds now (e.g. after a rotation) and say who we are. */
    async pgVerifyLogin(role: string): Promise<LoginCheck> {
      const creds = await vault.staticCredentials(role);
      const currentUser = await withPgClient(settings, creds, async (c) => (await c.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u ?? '');
      return { role, username: creds.username, currentUser, lastVaultRotation: creds.lastVaultRotation };
    },
  };
}

export type PostgresActivities = ReturnType<typeof createPostgresActivities>;

/**
 * The rotation target: admin work as the worker's rotator role (password from its 0600 file,
 * read per call), and a login check as any role.
 */
export function pgTargetFor(settings: PgSettings, rotator: { user: string; passwordFile: string }): PgTarget {
  return {
    async admin(fn) {
      const password = (await readFile(rotator.passwordFile, 'utf8')).trim();
      return withPgClient(settings, { username: rotator.user, password }, (c) => fn((sql, params) => c.query(sql, params as unknown[] | undefined)));
    },
    async login(role, password, database) {
      return withPgClient({ ...settings, database }, { username: role, password }, async (c) => String((await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? ''));
    },
  };
}
