/**
 * Nginx: no runtime API, so its config is re-rendered from the load-balancer model (the same
 * replica set HAProxy holds, src/activities/lb-config.ts), validated with `nginx -t -c`, and
 * reloaded by a HUP to the master (its PID from nginx.pid). The activity returns once the reload
 * took: every worker that ran the old config has exited (they finish their requests first), so a
 * replica removed from the upstream can be stopped right after.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from 'pino';
import { lbFiles, readModel, renderNginxConfig, writeAtomic, type LbServer } from './lb-config';
import { activitySleep as sleep } from './activity-sleep';

const run = promisify(execFile);

export interface NginxDeps {
  lbDir: () => string | undefined;
  log: Logger;
  nginxBin?: string;
}

/** Worker PIDs of a master (children in /proc). */
export function nginxWorkers(masterPid: number): number[] {
  try {
    return readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function readNginxPid(dir: string): number | undefined {
  const f = lbFiles(dir).nginxPid;
  if (!existsSync(f)) return undefined;
  const pid = Number(readFileSync(f, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined;
}

/** Validate a config file with `nginx -t -c` (throws with nginx's message). */
export async function nginxTest(conf: string, errorLog: string, nginxBin = '/usr/sbin/nginx'): Promise<void> {
  try {
    await run(nginxBin, ['-t', '-q', '-e', errorLog, '-c', conf], { timeout: 20_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`nginx -t failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

export function createNginxActivities({ lbDir, log, nginxBin = '/usr/sbin/nginx' }: NginxDeps) {
  return {
    /**
     * Make the upstream `backend` hold exactly `servers` (the replicas in rotation): render, validate
     * (`nginx -t -c` on a candidate file; the live config is replaced only if it passes), HUP, and wait
     * until the old workers are gone. No change: no reload. No Nginx for this worker or no Nginx port
     * declared for the backend: skipped.
     */
    async nginxSyncUpstream(input: { backend: string; servers: Array<Omit<LbServer, 'state'>> }): Promise<{ reloaded: boolean; skipped?: string }> {
      const dir = lbDir();
      if (!dir) return { reloaded: false, skipped: 'no load-balancer folder (DURABLE_OPS_LB_DIR)' };
      const pid = readNginxPid(dir);
      if (pid === undefined) return { reloaded: false, skipped: 'nginx is not running' };
      const f = lbFiles(dir);
      const model = readModel(dir);
      const b = model.backends.find((x) => x.name === input.backend);
      if (!b || b.nginxPort === undefined) return { reloaded: false, skipped: `no nginx port declared for ${input.backend}` };
      // Nginx's view of the set: the servers given, in rotation. HAProxy's own entries (drain/maint)
      // are written by the HAProxy activities; here only the ready set matters.
      const rendered = renderNginxConfig(
        { ...model, backends: model.backends.map((x) => (x.name === input.backend ? { ...x, servers: input.servers.map((s) => ({ ...s, state: 'ready' as const })) } : x)) },
        dir,
      );
      const current = existsSync(f.nginxConf) ? readFileSync(f.nginxConf, 'utf8') : '';
      if (current === rendered) return { reloaded: false };
      const candidate = `${f.nginxConf}.candidate`;
      writeAtomic(candidate, rendered);
      try {
        await nginxTest(candidate, f.nginxErrorLog, nginxBin);
      } catch (err) {
        throw ApplicationFailure.nonRetryable((err as Error).message, 'NginxConfigInvalid');
      }
      const before = nginxWorkers(pid);
      writeAtomic(f.nginxConf, rendered);
      process.kill(pid, 'SIGHUP');
      const deadline = Date.now() + 60_000;
      for (;;) {
        const now = nginxWorkers(pid);
        Context.current().heartbeat({ oldWorkers: before.filter((w) => now.includes(w)).length });
        if (now.length > 0 && !before.some((w) => now.includes(w))) break;
        if (Date.now() > deadline) throw ApplicationFailure.retryable(`nginx (pid ${pid}) did not finish reloading within 60 s`, 'NginxReloadSlow');
        await sleep(100);
      }
      log.info({ backend: input.backend, servers: input.servers.map((s) => s.name) }, 'nginx upstream reloaded');
      return { reloaded: true };
    },
  };
}

export type NginxActivities = ReturnType<typeof createNginxActivities>;
