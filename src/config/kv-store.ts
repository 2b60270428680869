/**
 * The few Vault KV v2 calls credential rotation needs, as a type only: the rotation activities
 * (src/activities/credentials.ts) use it, src/activities/vault.ts implements it over a Vault
 * session, and the worker's rotation-age gauge (src/observability/rotation-age.ts) reads with it.
 */
export interface KvStore {
  /** null when the secret does not exist. */
  readMetadata(path: string): Promise<{ currentVersion: number; versions: Record<string, { destroyed: boolean; deletion_time: string }>; custom: Record<string, string> } | null>;
  readVersion(path: string, version: number): Promise<Record<string, string> | null>;
  /** Write a new version; `cas` = the version the caller saw last (0 = must not exist). */
  write(path: string, data: Record<string, string>, cas: number): Promise<number>;
  writeCustomMetadata(path: string, custom: Record<string, string>): Promise<void>;
  destroyVersions(path: string, versions: number[]): Promise<void>;
}
