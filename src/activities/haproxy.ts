/**
 * HAProxy 2.6 through its runtime API (the admin-level stats socket): servers join and leave a
 * backend with no reload (`add server` / `enable health` / `enable server`, `set server ... state
 * drain`, `set server ... state maint` / `del server`), and `show stat` is read for sessions and rates.
 * After every change the live server set is written back to lb.json and haproxy.cfg is re-rendered
 * (src/activities/lb-config.ts), so a restart comes back with the same set.
 *
 * Idempotent by name: adding a server that exists, draining a drained one, deleting a missing one
 * are no-ops that say so (`alreadyDone`).
 */
import net from 'node:net';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from 'pino';
import { lbFiles, readModel, renderHaproxyConfig, writeAtomic, writeModel, type LbServer } from './lb-config';
import { activitySleep as sleep } from './activity-sleep';

export interface HaproxyDeps {
  /** The load-balancer folder (lb.json, haproxy.cfg, haproxy.sock); undefined: no HAProxy for this worker. */
  lbDir: () => string | undefined;
  log: Logger;
  /** How often waits poll `show stat`. */
  pollMs?: number;
}

export interface HaproxyServerStats {
  name: string;
  /** "127.0.0.1:port" */
  addr: string;
  /** UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/3"... as `show stat` says. */
  status: string;
  weight: number;
  /** Current sessions. */
  scur: number;
  /** Sessions per second (last second). */
  rate: number;
  /** Sessions since start (a server that never got traffic has 0). */
  stot: number;
  reqTotal: number;
  hrsp5xx: number;
  /** Average response / queue time over the last 1024 requests (ms). */
  rtimeMs: number;
  qtimeMs: number;
}

export interface HaproxyBackendStats {
  backend: string;
  servers: HaproxyServerStats[];
  /** Backend totals. */
  rate: number;
  scur: number;
  reqTotal: number;
  hrsp5xx: number;
}

/** One command on the runtime API (non-interactive: HAProxy answers and closes). */
export function haproxyCommand(socketPath: string, command: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let out = '';
    const timer = setTimeout(() => sock.destroy(new Error(`HAProxy runtime API: no answer to "${command}" within ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.end(`${command}\n`));
    sock.on('data', (d: string) => (out += d));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** Parse `show stat` (CSV, header line starting with "# "). */
export function parseShowStat(csv: string): Array<Record<string, string>> {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const header = lines.shift();
  if (!header?.startsWith('# ')) throw new Error(`unexpected show stat output: ${csv.slice(0, 200)}`);
  const cols = header.slice(2).split(',');
  return lines.map((l) => {
    const cells = l.split(',');
    return Object.fromEntries(cols.map((c, i) => [c, cells[i] ?? '']));
  });
}

const num = (v: string | undefined) => (v === undefined || v === '' ? 0 : Number(v));

function toServerStats(r: Record<string, string>): HaproxyServerStats {
  return {
    name: r.svname!,
    addr: r.addr ?? '',
    status: r.status ?? '',
    weight: num(r.weight),
    scur: num(r.scur),
    rate: num(r.rate),
    stot: num(r.stot),
    reqTotal: num(r.req_tot),
    hrsp5xx: num(r.hrsp_5xx),
    rtimeMs: num(r.rtime),
    qtimeMs: num(r.qtime),
  };
}

/** The model's state of a server from its `show stat` status. */
function lbState(status: string): LbServer['state'] {
  if (status.startsWith('MAINT')) return 'maint';
  if (status.startsWith('DRAIN')) return 'drain';
  return 'ready';
}

export function createHaproxyActivities({ lbDir, log, pollMs = 250 }: HaproxyDeps) {
  const dir = () => {
    const d = lbDir();
    if (!d) throw ApplicationFailure.nonRetryable('HAProxy is not configured for this worker (DURABLE_OPS_LB_DIR)', 'TargetUnavailable');
    return d;
  };
  const cmd = async (command: string) => {
    const out = (await haproxyCommand(lbFiles(dir()).haproxySocket, command)).trim();
    return out;
  };
  /** Run a command that answers nothing (or a known benign message) on success. */
  const act = async (command: string, ok: RegExp = /^$/) => {
    const out = await cmd(command);
    if (out !== '' && !ok.test(out)) throw ApplicationFailure.retryable(`HAProxy "${command}": ${out}`, 'HaproxyCommandFailed');
    return out;
  };

  const rows = async () => parseShowStat(await cmd('show stat'));

  async function backendStats(backend: string): Promise<HaproxyBackendStats> {
    const all = (await rows()).filter((r) => r.pxname === backend);
    const be = all.find((r) => r.svname === 'BACKEND');
    if (!be) throw ApplicationFailure.nonRetryable(`backend: HAProxy has no backend named "${backend}"`, 'BackendNotFound');
    const servers = all.filter((r) => r.svname !== 'BACKEND' && r.svname !== 'FRONTEND').map(toServerStats);
    return { backend, servers, rate: num(be.rate), scur: num(be.scur), reqTotal: num(be.req_tot), hrsp5xx: num(be.hrsp_5xx) };
  }

  const server = async (backend: string, name: string) => (await backendStats(backend)).servers.find((s) => s.name === name);

  /**
   * Administrative state of every server (`show servers state`: srv_admin_state bits), keyed
   * "backend/server". `show stat` says "DOWN" for a server that is both drained and failing its
   * checks, so the model's state is read from here: a drained server must come back drained.
   */
  async function adminStates(): Promise<Map<string, LbServer['state']>> {
    const out = await cmd('show servers state');
    const states = new Map<string, LbServer['state']>();
    for (const line of out.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 7 || line.startsWith('#') || !/^\d+$/.test(f[0]!)) continue;
      const admin = Number(f[6]);
      // 0x01 forced, 0x02 inherited, 0x04 config, 0x20 resolution, 0x40 hostname maintenance; 0x08 forced, 0x10 inherited drain.
      states.set(`${f[1]}/${f[3]}`, admin & 0x67 ? 'maint' : admin & 0x18 ? 'drain' : 'ready');
    }
    return states;
  }

  // One re-render at a time in this process; the file writes are atomic either way.
  let persisting: Promise<unknown> = Promise.resolve();
  /** Write the live server set of every declared backend to lb.json and re-render haproxy.cfg. */
  async function persist(): Promise<void> {
    const run = persisting.then(async () => {
      const d = dir();
      const model = readModel(d);
      const live = await rows();
      const admin = await adminStates();
      for (const b of model.backends) {
        const previous = new Map(b.servers.map((s) => [s.name, s]));
        b.servers = live
          .filter((r) => r.pxname === b.name && r.svname !== 'BACKEND' && r.svname !== 'FRONTEND')
          .map((r) => {
            const st = toServerStats(r);
            const state = admin.get(`${b.name}/${st.name}`) ?? lbState(st.status);
            // A drained server shows its user weight (a staged one: the weight it will serve with).
            const weight = st.weight > 0 ? st.weight : (previous.get(st.name)?.weight ?? 1);
            return { name: st.name, port: Number(st.addr.split(':').pop()), weight, state };
          });
      }
      writeModel(d, model);
      writeAtomic(lbFiles(d).haproxyCfg, renderHaproxyConfig(model, d));
    });
    persisting = run.catch(() => undefined);
    await run;
  }

  return {
    /** Servers, sessions and rates of one backend (`show stat`). Unknown backend: non-retryable BackendNotFound. */
    async haproxyBackendStats(backend: string): Promise<HaproxyBackendStats> {
      return backendStats(backend);
    },

    /**
     * Put a server in the backend and in rotation: `add server` (it starts in maintenance), `enable
     * health`, `enable server`. Call it only once the replica is healthy. An existing server with the
     * same address is made ready again (idempotent); one with another address is an error.
     */
    async haproxyAddServer(input: { backend: string; server: string; port: number; weight: number; checkInterMs?: number }): Promise<{ alreadyDone: boolean }> {
      const b = `${input.backend}/${input.server}`;
      const existing = await server(input.backend, input.server);
      if (existing && existing.addr !== `127.0.0.1:${input.port}`) {
        throw ApplicationFailure.nonRetryable(`HAProxy server ${b} exists with address ${existing.addr}, not 127.0.0.1:${input.port}`, 'ServerConflict');
      }
      const alreadyDone = existing !== undefined && !existing.status.startsWith('MAINT') && !existing.status.startsWith('DRAIN');
      if (!existing) {
        const inter = input.checkInterMs ?? readModel(dir()).backends.find((x) => x.name === input.backend)?.checkInterMs ?? 2_000;
        // rise 1: the replica already passed Docker's check and our HTTP probe; one check by HAProxy
        // itself confirms it can reach it.
        await act(`add server ${b} 127.0.0.1:${input.port} check inter ${inter}ms rise 1 weight ${input.weight}`, /^New server registered\.?$/);
      }
      if (!alreadyDone) {
        await act(`enable health ${b}`);
        await act(`set server ${b} state ready`);
        await act(`set server ${b} weight ${input.weight}`);
        await persist();
        log.info({ backend: input.backend, server: input.server, port: input.port }, 'haproxy server added');
      }
      return { alreadyDone };
    },

    /**
     * Put a server in the backend out of rotation, with HAProxy's health checks running: `add
     * server` (in maintenance), `set server ... state drain` (weight 0: no new session), `enable
     * health`. Called as soon as the replica is started, so HAProxy's checks run alongside Docker's;
     * `haproxyReadyServer` puts it in rotation once every check agrees. A server already there with
     * the same address is left as it is (drained, or in rotation by an earlier attempt); in
     * maintenance, it is drained and checked. One with another address is an error.
     */
    async haproxyStageServer(input: { backend: string; server: string; port: number; weight: number; checkInterMs?: number }): Promise<{ alreadyDone: boolean }> {
      const b = `${input.backend}/${input.server}`;
      const existing = await server(input.backend, input.server);
      if (existing && existing.addr !== `127.0.0.1:${input.port}`) {
        throw ApplicationFailure.nonRetryable(`HAProxy server ${b} exists with address ${existing.addr}, not 127.0.0.1:${input.port}`, 'ServerConflict');
      }
      const state = existing ? (await adminStates()).get(b) : undefined;
      if (state === 'ready') return { alreadyDone: true };
      if (state === 'drain') {
        await act(`enable health ${b}`); // idempotent; a drained server is always checked
        return { alreadyDone: true };
      }
      if (!existing) {
        const inter = input.checkInterMs ?? readModel(dir()).backends.find((x) => x.name === input.backend)?.checkInterMs ?? 2_000;
        // rise 1: HAProxy's check is one of three (with Docker's and the workflow's HTTP probe); one
        // pass by HAProxy itself confirms it can reach the replica.
        await act(`add server ${b} 127.0.0.1:${input.port} check inter ${inter}ms rise 1 weight ${input.weight}`, /^New server registered\.?$/);
      }
      // Checks on first, then from maintenance straight to drain: never in rotation in between, and
      // a drained server is always a checked one (a retry after a crash between the two finds it so).
      await act(`enable health ${b}`);
      await act(`set server ${b} state drain`);
      await persist();
      log.info({ backend: input.backend, server: input.server, port: input.port }, 'haproxy server staged (drained, checked)');
      return { alreadyDone: false };
    },

    /**
     * Wait until HAProxy's own health check reports the server UP (heartbeats while waiting). A
     * drained (staged) server whose checks pass shows DRAIN: up for the checks, not yet in rotation.
     */
    async haproxyWaitServerUp(input: { backend: string; server: string; timeoutMs: number }): Promise<{ status: string }> {
      const deadline = Date.now() + input.timeoutMs;
      for (;;) {
        const s = await server(input.backend, input.server);
        if (!s) throw ApplicationFailure.nonRetryable(`HAProxy has no server ${input.backend}/${input.server}`, 'ServerNotFound');
        Context.current().heartbeat({ status: s.status });
        // "UP 2/3", "DRAIN 2/3": failing checks, going down.
        if (/^(UP|DRAIN)/.test(s.status) && !/^(UP|DRAIN) \d/.test(s.status)) return { status: s.status };
        if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`HAProxy reports ${input.backend}/${input.server} ${s.status} after ${input.timeoutMs} ms`, 'ServerNotUp');
        await sleep(pollMs);
      }
    },

    /** `set server b/s state drain`: no new sessions, current ones finish. */
    async haproxyDrainServer(input: { backend: string; server: string }): Promise<{ alreadyDone: boolean }> {
      const s = await server(input.backend, input.server);
      if (!s) return { alreadyDone: true };
      if (s.status.startsWith('DRAIN') || s.status.startsWith('MAINT')) return { alreadyDone: true };
      await act(`set server ${input.backend}/${input.server} state drain`);
      await persist();
      return { alreadyDone: false };
    },

    /** Into rotation: a staged server once its checks agree, or undo a drain (compensation). */
    async haproxyReadyServer(input: { backend: string; server: string; weight?: number }): Promise<{ alreadyDone: boolean }> {
      const s = await server(input.backend, input.server);
      if (!s) return { alreadyDone: true };
      // The admin state, not `show stat`'s status: a drained server failing its checks shows DOWN.
      if ((await adminStates()).get(`${input.backend}/${input.server}`) === 'ready') return { alreadyDone: true };
      // The weight first (a server restored from the config in drain has weight 0), then ready.
      if (input.weight !== undefined) await act(`set server ${input.backend}/${input.server} weight ${input.weight}`);
      await act(`set server ${input.backend}/${input.server} state ready`);
      await persist();
      return { alreadyDone: false };
    },

    /** Wait until the server has no current session, up to timeoutMs; says whether it drained. */
    async haproxyWaitDrained(input: { backend: string; server: string; timeoutMs: number }): Promise<{ drained: boolean; scur: number }> {
      const deadline = Date.now() + input.timeoutMs;
      for (;;) {
        const s = await server(input.backend, input.server);
        if (!s) return { drained: true, scur: 0 };
        Context.current().heartbeat({ scur: s.scur });
        if (s.scur === 0) return { drained: true, scur: 0 };
        if (Date.now() > deadline) return { drained: false, scur: s.scur };
        await sleep(pollMs);
      }
    },

    /**
     * Take a server out of the backend: maintenance, then (force: cut what sessions remain) `del server`.
     * A missing server is a no-op.
     */
    async haproxyRemoveServer(input: { backend: string; server: string; force?: boolean }): Promise<{ removed: boolean; cutSessions: number }> {
      const b = `${input.backend}/${input.server}`;
      const s = await server(input.backend, input.server);
      if (!s) return { removed: false, cutSessions: 0 };
      await act(`set server ${b} state maint`);
      let cut = 0;
      if (input.force && s.scur > 0) {
        cut = s.scur;
        await act(`shutdown sessions server ${b}`);
      }
      const out = await cmd(`del server ${b}`);
      if (!/^Server deleted\.?$/.test(out) && out !== '') {
        // Sessions still attached (not forced): retryable, the caller drains first.
        throw ApplicationFailure.retryable(`HAProxy "del server ${b}": ${out}`, 'HaproxyCommandFailed');
      }
      await persist();
      log.info({ backend: input.backend, server: input.server, cut }, 'haproxy server removed');
      return { removed: true, cutSessions: cut };
    },
  };
}

export type HaproxyActivities = ReturnType<typeof createHaproxyActivities>;
