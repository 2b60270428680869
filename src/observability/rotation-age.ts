/**
 * durable_ops_credential_rotation_age_seconds: for each scheduled credential, the time since its
 * current version was promoted (`rotated_at` in the Vault secret's custom metadata), refreshed
 * every minute by the worker. The `credential_rotation_overdue` rule fires past 90 days.
 */
import type { Logger } from 'pino';
import type { KvStore } from '../config/kv-store';
import { credentialRotationAge } from './metrics';

export async function refreshRotationAges(kv: KvStore, rotations: Array<{ credentialId: string; vaultPath: string }>, nowMs = Date.now()): Promise<void> {
  for (const r of rotations) {
    const meta = await kv.readMetadata(r.vaultPath);
    const at = meta?.custom.rotated_at ? Date.parse(meta.custom.rotated_at) : NaN;
    if (Number.isNaN(at)) credentialRotationAge.remove({ credential: r.credentialId });
    else credentialRotationAge.set({ credential: r.credentialId }, Math.max(0, (nowMs - at) / 1000));
  }
}

export function startRotationAgeRefresher(opts: { kv: KvStore; rotations: Array<{ credentialId: string; vaultPath: string }>; log: Logger; intervalMs?: number }): () => void {
  const tick = () => refreshRotationAges(opts.kv, opts.rotations).catch((err: unknown) => opts.log.warn({ error: (err as Error).message }, 'rotation ages not refreshed'));
  void tick();
  const timer = setInterval(() => void tick(), opts.intervalMs ?? 60_000);
  timer.unref();
  return () => clearInterval(timer);
}
