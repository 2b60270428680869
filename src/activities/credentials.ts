/**
 * Credential rotation activities over Vault KV v2 and the PostgreSQL roles.
 *
 * Versions carry labels in the secret's custom metadata (KV v2 keeps one custom_metadata per
 * secret): current_version, previous_version, pending_version and pending_rotation (the id of the
 * rotation that made the pending one). Values are generated, read and used only inside these
 * activities; what they return are paths, versions and role names.
 */
import { randomBytes } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from 'pino';
import type { KvStore } from '../config/kv-store';
import { activitySleep as sleep } from './activity-sleep';

/** The few KV v2 calls rotation needs (src/config/kv-store.ts; backed by node-vault with the worker's AppRole token). */
export type { KvStore };

/** PostgreSQL as the cluster admin, and a login as a given role. */
export interface PgTarget {
  admin<T>(fn: (query: (sql: string, params?: unknown[]) => Promise<{ rows: Array<Record<string, unknown>> }>) => Promise<T>): Promise<T>;
  login(role: string, password: string, database: string): Promise<string>;
}

export interface CredentialDeps {
  kv: KvStore;
  pg?: PgTarget;
  log: Logger;
}

const quoteIdent = (id: string) => {
  if (!/^[a-z_][a-z0-9_]*$/.test(id)) throw ApplicationFailure.nonRetryable(`not a safe role name: ${id}`, 'InvalidInput');
  return `"${id}"`;
};
const quoteLiteral = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** A random secret of `length` characters, URL-safe. */
export function generateSecret(length: number): string {
  return randomBytes(length).toString('base64url').slice(0, length);
}

export function createCredentialActivities({ kv, pg, log }: CredentialDeps) {
  const needPg = () => {
    if (!pg) throw ApplicationFailure.nonRetryable('no PostgreSQL target configured for this worker', 'TargetUnavailable');
    return pg;
  };
  const value = async (vaultPath: string, version: number) => {
    const data = await kv.readVersion(vaultPath, version);
    if (!data?.value) throw ApplicationFailure.nonRetryable(`secret/${vaultPath} version ${version} has no value`, 'VersionMissing');
    return data;
  };

  return {
    /** Labels and the current username (not the value). No side effect. */
    async describeCredential(input: { vaultPath: string }): Promise<{ exists: boolean; currentVersion?: number; previousVersion?: number; pendingVersion?: number; currentUsername?: string }> {
      const meta = await kv.readMetadata(input.vaultPath);
      if (!meta) return { exists: false };
      const current = meta.custom.current_version ? Number(meta.custom.current_version) : undefined;
      const data = current !== undefined ? await kv.readVersion(input.vaultPath, current) : null;
      return {
        exists: true,
        ...(current !== undefined ? { currentVersion: current } : {}),
        ...(meta.custom.previous_version ? { previousVersion: Number(meta.custom.previous_version) } : {}),
        ...(meta.custom.pending_version ? { pendingVersion: Number(meta.custom.pending_version) } : {}),
        ...(data?.username ? { currentUsername: data.username } : {}),
      };
    },

    /**
     * create: a new version with check-and-set, labelled pending for this rotation. A retry (or a
     * re-run after a crash) finds the pending version of the same rotation and returns it.
     */
    async createPendingVersion(input: { vaultPath: string; rotationId: string; length: number; username?: string }): Promise<{ version: number; alreadyDone: boolean }> {
      const meta = await kv.readMetadata(input.vaultPath);
      if (meta?.custom.pending_rotation === input.rotationId && meta.custom.pending_version) {
        return { version: Number(meta.custom.pending_version), alreadyDone: true };
      }
      if (meta?.custom.pending_version && meta.custom.pending_rotation) {
        throw ApplicationFailure.nonRetryable(`secret/${input.vaultPath} has a pending version ${meta.custom.pending_version} from another rotation (${meta.custom.pending_rotation}); finish or discard it first`, 'RotationInProgress');
      }
      const data: Record<string, string> = { value: generateSecret(input.length), ...(input.username ? { username: input.username } : {}) };
      const version = await kv.write(input.vaultPath, data, meta?.currentVersion ?? 0);
      await kv.writeCustomMetadata(input.vaultPath, { ...(meta?.custom ?? {}), pending_version: String(version), pending_rotation: input.rotationId });
      log.info({ vaultPath: input.vaultPath, version, rotationId: input.rotationId }, 'pending version created');
      return { version, alreadyDone: false };
    },

    /** Rollback: destroy the pending version and clear its label (idempotent). */
    async discardPendingVersion(input: { vaultPath: string; rotationId: string; version: number }): Promise<{ discarded: boolean }> {
      const meta = await kv.readMetadata(input.vaultPath);
      if (!meta) return { discarded: false };
      if (meta.custom.current_version === String(input.version)) {
        throw ApplicationFailure.nonRetryable(`version ${input.version} is current; it cannot be discarded`, 'AlreadyPromoted');
      }
      await kv.destroyVersions(input.vaultPath, [input.version]);
      const { pending_version: _p, pending_rotation: _r, ...rest } = meta.custom;
      await kv.writeCustomMetadata(input.vaultPath, rest);
      log.warn({ vaultPath: input.vaultPath, version: input.version }, 'pending version discarded');
      return { discarded: true };
    },

    /** finish: pending -> current, current -> previous (idempotent). */
    async promotePendingVersion(input: { vaultPath: string; rotationId: string; version: number }): Promise<{ current: number; previous?: number }> {
      const meta = await kv.readMetadata(input.vaultPath);
      if (!meta) throw ApplicationFailure.nonRetryable(`secret/${input.vaultPath} does not exist`, 'VersionMissing');
      if (meta.custom.current_version === String(input.version)) {
        return { current: input.version, ...(meta.custom.previous_version ? { previous: Number(meta.custom.previous_version) } : {}) };
      }
      if (meta.custom.pending_version !== String(input.version) || meta.custom.pending_rotation !== input.rotationId) {
        throw ApplicationFailure.nonRetryable(`version ${input.version} is not the pending version of this rotation`, 'NotPending');
      }
      const { pending_version: _p, pending_rotation: _r, ...rest } = meta.custom;
      const previous = meta.custom.current_version;
      await kv.writeCustomMetadata(input.vaultPath, { ...rest, current_version: String(input.version), ...(previous ? { previous_version: previous } : {}), rotated_at: new Date().toISOString() });
      log.info({ vaultPath: input.vaultPath, current: input.version, previous }, 'version promoted');
      return { current: input.version, ...(previous ? { previous: Number(previous) } : {}) };
    },

    /** test for Vault-only secrets: the version reads back with a value. */
    async checkVersionReadable(input: { vaultPath: string; version: number }): Promise<{ ok: true }> {
      await value(input.vaultPath, input.version);
      return { ok: true };
    },

    /** set: the pending role gets the new password and may log in (the active role is untouched). */
    async setRolePassword(input: { vaultPath: string; version: number; role: string }): Promise<{ role: string }> {
      const data = await value(input.vaultPath, input.version);
      await needPg().admin((q) => q(`ALTER ROLE ${quoteIdent(input.role)} WITH LOGIN PASSWORD ${quoteLiteral(data.value!)}`));
      log.info({ role: input.role, version: input.version }, 'role password set');
      return { role: input.role };
    },

    /** test: log in as the role with the new password. */
    async testRoleLogin(input: { vaultPath: string; version: number; role: string; database: string }): Promise<{ ok: true; serverVersion: string }> {
      const data = await value(input.vaultPath, input.version);
      try {
        return { ok: true, serverVersion: await needPg().login(input.role, data.value!, input.database) };
      } catch (err) {
        throw ApplicationFailure.nonRetryable(`login as ${input.role} with the new password failed: ${(err as Error).message}`, 'LoginFailed');
      }
    },

    /** finish: wait (up to the grace period) until no session uses the old role. */
    async waitRoleSessionsGone(input: { role: string; graceMs: number }): Promise<{ drained: boolean; sessions: number }> {
      const ctx = Context.current();
      const deadline = Date.now() + input.graceMs;
      for (;;) {
        const sessions = await needPg().admin(async (q) => Number((await q('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [input.role])).rows[0]?.n ?? 0));
        if (sessions === 0) return { drained: true, sessions };
        if (Date.now() >= deadline) return { drained: false, sessions };
        ctx.heartbeat({ sessions });
        await sleep(Math.min(500, Math.max(0, deadline - Date.now())));
      }
    },

    /** Revoke (or roll back): the role can no longer log in; its sessions are not cut. */
    async disableRoleLogin(input: { role: string }): Promise<{ role: string }> {
      await needPg().admin((q) => q(`ALTER ROLE ${quoteIdent(input.role)} WITH NOLOGIN`));
      log.info({ role: input.role }, 'role login disabled');
      return { role: input.role };
    },
  };
}
