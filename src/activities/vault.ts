/**
 * Vault (node-vault): the worker's AppRole session and the activities the credential rotation
 * runbook builds on. Secret values stay inside activities: no activity returns one (they go to
 * Temporal's history); they return versions, metadata and timestamps only.
 *
 * The session logs in with the role_id/secret_id files the stack writes, renews its token
 * before it expires (or logs in again), and on a 403 logs in once more and retries once (a
 * revoked or expired token), so a 403 that remains is a real policy denial.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import NodeVault from 'node-vault';
import type { Logger } from 'pino';
import type { Config } from '../config/env';
import type { KvStore } from './credentials';

export interface VaultSettings {
  addr: string;
  roleIdFile: string;
  secretIdFile: string;
  /** KV v2 mount (check-and-set required on it by the stack). */
  kvMount: string;
  /** Database secrets engine mount. */
  dbMount: string;
  /** Per-request timeout (ms). */
  timeoutMs?: number;
}

export function vaultSettings(config: Config): VaultSettings {
  const dir = path.join(config.DURABLE_OPS_DATA, 'vault');
  return {
    addr: config.DURABLE_OPS_VAULT_ADDR,
    roleIdFile: config.DURABLE_OPS_VAULT_ROLE_ID_FILE ?? path.join(dir, 'role-id'),
    secretIdFile: config.DURABLE_OPS_VAULT_SECRET_ID_FILE ?? path.join(dir, 'secret-id'),
    kvMount: config.DURABLE_OPS_VAULT_KV_MOUNT,
    dbMount: config.DURABLE_OPS_VAULT_DB_MOUNT,
  };
}

/** A KV v2 secret's metadata (no values). */
export interface SecretMetadata {
  path: string;
  currentVersion: number;
  oldestVersion: number;
  createdTime: string;
  updatedTime: string;
  casRequired: boolean;
  customMetadata: Record<string, string>;
  versions: Record<string, { created_time: string; deletion_time: string; destroyed: boolean }>;
}

/** A database static role's state (no password). */
export interface StaticRoleState {
  role: string;
  username: string;
  lastVaultRotation: string;
  rotationPeriodSec: number;
}

/** Static credentials: for use inside an activity only, never to be returned from one. */
export interface StaticCredentials {
  username: string;
  password: string;
  lastVaultRotation: string;
  ttlSec: number;
}

/** HTTP status of a node-vault error (ApiResponseError), if any. */
export function vaultStatus(err: unknown): number | undefined {
  const status = (err as { response?: { statusCode?: unknown } } | undefined)?.response?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

const CAS_MISMATCH = /check-and-set parameter did not match/i;

/** Vault's error as a Temporal failure: denials, CAS conflicts and unknown paths are not retried. */
export function vaultFailure(what: string, err: unknown): Error {
  if (err instanceof ApplicationFailure) return err;
  const status = vaultStatus(err);
  const message = `Vault: ${what}: ${(err as Error)?.message ?? String(err)}`;
  if (status === 403) return ApplicationFailure.nonRetryable(message, 'VaultPermissionDenied');
  if (status === 400 && CAS_MISMATCH.test(message)) return ApplicationFailure.nonRetryable(message, 'VaultCasMismatch');
  if (status === 404) return ApplicationFailure.nonRetryable(message, 'VaultNotFound');
  if (status !== undefined && status >= 400 && status < 500) return ApplicationFailure.nonRetryable(message, 'VaultRequestRejected');
  return ApplicationFailure.retryable(message, 'VaultUnavailable');
}

/** KV v2 paths are relative to the mount: `durable-ops/app/db`; no leading slash, no `..`. */
function kvPath(p: string): string {
  if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(p) || p.split('/').includes('..')) throw ApplicationFailure.nonRetryable(`bad secret path ${JSON.stringify(p)}`, 'InvalidInput');
  return p;
}

function roleName(role: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(role)) throw ApplicationFailure.nonRetryable(`bad role name ${JSON.stringify(role)}`, 'InvalidInput');
  return role;
}

type VaultFactory = (options: NodeVault.VaultOptions) => NodeVault.client;

export class VaultSession {
  private readonly client: NodeVault.client;
  /** ms since the epoch when the token expires; 0 = no token. */
  private expiresAt = 0;
  private ttlMs = 0;
  private renewable = false;
  private pendingLogin?: Promise<void>;

  constructor(
    readonly settings: VaultSettings,
    private readonly log?: Logger,
    factory: VaultFactory = NodeVault,
  ) {
    this.client = factory({ endpoint: settings.addr, requestOptions: { timeout: settings.timeoutMs ?? 10_000 } });
  }

  /** AppRole login (concurrent callers share one). */
  login(): Promise<void> {
    this.pendingLogin ??= this.doLogin().finally(() => {
      this.pendingLogin = undefined;
    });
    return this.pendingLogin;
  }

  private async doLogin(): Promise<void> {
    const [roleId, secretId] = await Promise.all([readFile(this.settings.roleIdFile, 'utf8'), readFile(this.settings.secretIdFile, 'utf8')]);
    try {
      const res = (await this.client.approleLogin({ role_id: roleId.trim(), secret_id: secretId.trim() })) as { auth: { client_token: string; lease_duration: number; renewable: boolean } };
      this.client.token = res.auth.client_token;
      this.setLease(res.auth.lease_duration, res.auth.renewable);
      this.log?.debug({ ttlSec: res.auth.lease_duration }, 'vault: logged in (approle)');
    } catch (err) {
      throw vaultFailure('approle login', err);
    }
  }

  private setLease(ttlSec: number, renewable: boolean) {
    this.ttlMs = ttlSec * 1000;
    this.expiresAt = ttlSec > 0 ? Date.now() + this.ttlMs : Number.MAX_SAFE_INTEGER;
    this.renewable = renewable;
  }

  /** A token that is valid for a while: renew it in its last third, log in again if that fails. */
  private async ensureToken(): Promise<void> {
    if (this.pendingLogin) return this.pendingLogin;
    const left = this.expiresAt - Date.now();
    if (this.expiresAt === 0 || left < 5_000) return this.login();
    if (left > this.ttlMs / 3 || !this.renewable) return;
    try {
      const res = (await this.client.tokenRenewSelf()) as { auth: { lease_duration: number; renewable: boolean } };
      // Capped by token_max_ttl: once the renewal no longer extends it, the next call logs in.
      if (res.auth.lease_duration * 1000 <= left) this.renewable = false;
      else this.setLease(res.auth.lease_duration, res.auth.renewable);
    } catch (err) {
      this.log?.debug({ err: (err as Error).message }, 'vault: renew-self failed, logging in again');
      await this.login();
    }
  }

  /** Run one Vault call with a valid token; after a 403, log in again and retry once. */
  async call<T>(what: string, fn: (client: NodeVault.client) => Promise<T>): Promise<T> {
    await this.ensureToken();
    try {
      return await fn(this.client);
    } catch (err) {
      if (vaultStatus(err) !== 403) throw vaultFailure(what, err);
    }
    await this.login();
    try {
      return await fn(this.client);
    } catch (err) {
      throw vaultFailure(what, err);
    }
  }

  private kv(kind: 'data' | 'metadata', p: string) {
    return `${this.settings.kvMount}/${kind}/${kvPath(p)}`;
  }

  /** Metadata of a KV v2 secret, or undefined if it does not exist. */
  async kvMetadata(p: string): Promise<SecretMetadata | undefined> {
    const res = await this.call(`read metadata of ${p}`, (c) => c.read(this.kv('metadata', p))).catch((err: unknown) => {
      if (err instanceof ApplicationFailure && err.type === 'VaultNotFound') return undefined;
      throw err;
    });
    if (!res) return undefined;
    const d = (res as { data: Record<string, unknown> }).data;
    return {
      path: p,
      currentVersion: Number(d.current_version ?? 0),
      oldestVersion: Number(d.oldest_version ?? 0),
      createdTime: String(d.created_time ?? ''),
      updatedTime: String(d.updated_time ?? ''),
      casRequired: Boolean(d.cas_required),
      customMetadata: (d.custom_metadata as Record<string, string> | null) ?? {},
      versions: (d.versions as SecretMetadata['versions'] | null) ?? {},
    };
  }

  /** Write a new version with check-and-set: `cas` is the version it replaces (0 = must not exist). */
  async kvWrite(p: string, data: Record<string, string>, opts: { cas: number }): Promise<{ version: number; createdTime: string }> {
    const res = (await this.call(`write ${p} (cas ${opts.cas})`, (c) => c.write(this.kv('data', p), { data, options: { cas: opts.cas } }))) as { data: { version: number; created_time: string } };
    return { version: res.data.version, createdTime: res.data.created_time };
  }

  /** Read a version's values: inside an activity only, never returned from one. */
  async kvRead(p: string, version?: number): Promise<{ version: number; data: Record<string, string> }> {
    const q = version === undefined ? '' : `?version=${version}`;
    const res = (await this.call(`read ${p}`, (c) => c.read(`${this.kv('data', p)}${q}`))) as { data: { data: Record<string, string>; metadata: { version: number } } };
    return { version: res.data.metadata.version, data: res.data.data };
  }

  /** A version's values, or undefined if it does not exist or was deleted/destroyed (inside an activity only). */
  async kvReadVersion(p: string, version: number): Promise<Record<string, string> | undefined> {
    try {
      const res = await this.kvRead(p, version);
      return res.data ?? undefined;
    } catch (err) {
      if (err instanceof ApplicationFailure && err.type === 'VaultNotFound') return undefined;
      throw err;
    }
  }

  /** Destroy versions for good (e.g. a pending version after a failed rotation). */
  async kvDestroyVersions(p: string, versions: number[]): Promise<void> {
    await this.call(`destroy versions ${versions.join(',')} of ${p}`, (c) => c.write(`${this.settings.kvMount}/destroy/${kvPath(p)}`, { versions }));
  }

  /** Replace the secret's custom metadata (e.g. rotated-at, rotated-by); the values are untouched. */
  async kvSetCustomMetadata(p: string, customMetadata: Record<string, string>): Promise<void> {
    await this.call(`write metadata of ${p}`, (c) => c.write(this.kv('metadata', p), { custom_metadata: customMetadata }));
  }

  async staticRole(role: string): Promise<StaticRoleState> {
    const res = (await this.call(`read static role ${role}`, (c) => c.read(`${this.settings.dbMount}/static-roles/${roleName(role)}`))) as { data: { username: string; last_vault_rotation: string; rotation_period: number } };
    return { role, username: res.data.username, lastVaultRotation: res.data.last_vault_rotation, rotationPeriodSec: res.data.rotation_period };
  }

  /** The role's current password: inside an activity only, never returned from one. */
  async staticCredentials(role: string): Promise<StaticCredentials> {
    const res = (await this.call(`read static credentials of ${role}`, (c) => c.read(`${this.settings.dbMount}/static-creds/${roleName(role)}`))) as { data: { username: string; password: string; last_vault_rotation: string; ttl: number } };
    return { username: res.data.username, password: res.data.password, lastVaultRotation: res.data.last_vault_rotation, ttlSec: res.data.ttl };
  }

  /** Vault sets a new password on the database role now. */
  async rotateStaticRole(role: string): Promise<void> {
    await this.call(`rotate static role ${role}`, (c) => c.write(`${this.settings.dbMount}/rotate-role/${roleName(role)}`, {}));
  }
}

/** The rotation runbook's KvStore (src/activities/credentials.ts) over this session. */
export function kvStoreFor(vault: VaultSession): KvStore {
  return {
    async readMetadata(p) {
      const m = await vault.kvMetadata(p);
      return m ? { currentVersion: m.currentVersion, versions: m.versions, custom: m.customMetadata } : null;
    },
    async readVersion(p, version) {
      return (await vault.kvReadVersion(p, version)) ?? null;
    },
    async write(p, data, cas) {
      return (await vault.kvWrite(p, data, { cas })).version;
    },
    writeCustomMetadata: (p, custom) => vault.kvSetCustomMetadata(p, custom),
    destroyVersions: (p, versions) => vault.kvDestroyVersions(p, versions),
  };
}

export interface VaultActivityDeps {
  vault: VaultSession;
  log?: Logger;
}

export interface RotateKvSecretInput {
  /** KV v2 path under the mount, e.g. `durable-ops/web/api-key`. */
  path: string;
  /** The version being replaced (from vaultSecretMetadata; 0 = create). */
  cas: number;
  /** The field that gets the new random value (default `value`). */
  field?: string;
  /** Random bytes in the value (base64url), default 32. */
  bytes?: number;
  /** Identifies this rotation: a retry after a write that went through is recognised by it. */
  rotationId: string;
}

export function createVaultActivities({ vault }: VaultActivityDeps) {
  return {
    /** Metadata of a secret (versions, times, custom metadata), null if it does not exist. */
    async vaultSecretMetadata(p: string): Promise<SecretMetadata | null> {
      return (await vault.kvMetadata(p)) ?? null;
    },

    /**
     * A new random value for one field, written with check-and-set; the value never leaves the
     * activity. Idempotent: after a CAS conflict, a current version written by this same
     * rotationId counts as done.
     */
    async vaultRotateKvSecret(input: RotateKvSecretInput): Promise<{ path: string; version: number; alreadyDone: boolean }> {
      const field = input.field ?? 'value';
      const value = randomBytes(input.bytes ?? 32).toString('base64url');
      try {
        const { version } = await vault.kvWrite(input.path, { [field]: value, rotation_id: input.rotationId }, { cas: input.cas });
        return { path: input.path, version, alreadyDone: false };
      } catch (err) {
        if (!(err instanceof ApplicationFailure && err.type === 'VaultCasMismatch')) throw err;
        const current = await vault.kvRead(input.path);
        if (current.data.rotation_id === input.rotationId) return { path: input.path, version: current.version, alreadyDone: true };
        throw err;
      }
    },

    /** Replace a secret's custom metadata (strings only). */
    async vaultSetSecretMetadata(input: { path: string; customMetadata: Record<string, string> }): Promise<void> {
      await vault.kvSetCustomMetadata(input.path, input.customMetadata);
    },

    /** Rotate a database static role's password now; returns when and for which user (no password). */
    async vaultRotateDatabaseRole(role: string): Promise<StaticRoleState> {
      await vault.rotateStaticRole(role);
      return vault.staticRole(role);
    },

    async vaultDatabaseRole(role: string): Promise<StaticRoleState> {
      return vault.staticRole(role);
    },
  };
}

export type VaultActivities = ReturnType<typeof createVaultActivities>;
