/**
 * The load balancers' files for the stack and the tests (src/activities/lb-config.ts renders them):
 *   npx tsx src/stack/lb.ts init <dir> <catalog.json>   create or update <dir>/lb.json from the catalog
 *                                                       (declared backends; live servers kept), render
 *                                                       haproxy.cfg and nginx.conf
 * and, for tests and the bench, the same processes the stack starts (HAProxy in the foreground with
 * its admin socket; Nginx with `daemon off`), on their own folder and ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TIMEOUTS, declareBackend, lbFiles, renderHaproxyConfig, renderNginxConfig, validateModel, writeAtomic, writeModel, type LbBackend, type LbModel } from '../activities/lb-config';
import { haproxyCommand } from '../activities/haproxy';
import { nginxTest } from '../activities/nginx';

export interface LbCatalog {
  statsPort?: number;
  timeouts?: Partial<LbModel['timeouts']>;
  backends: Array<Omit<LbBackend, 'servers' | 'checkInterMs' | 'healthPath'> & Partial<LbBackend>>;
}

/** Merge a catalog into the model in <dir> (declared backends win; each keeps its live servers); write and render. */
export function initLbDir(dir: string, catalog: LbCatalog): LbModel {
  mkdirSync(dir, { recursive: true });
  const f = lbFiles(dir);
  const old: LbModel | undefined = existsSync(f.model) ? (JSON.parse(readFileSync(f.model, 'utf8')) as LbModel) : undefined;
  const model: LbModel = validateModel({
    ...(catalog.statsPort ? { statsPort: catalog.statsPort } : {}),
    timeouts: { ...DEFAULT_TIMEOUTS, ...(catalog.timeouts ?? {}) },
    backends: catalog.backends.map((b) => declareBackend({ ...b, servers: b.servers ?? old?.backends.find((o) => o.name === b.name)?.servers ?? [] })),
  });
  writeModel(dir, model);
  writeAtomic(f.haproxyCfg, renderHaproxyConfig(model, dir));
  writeAtomic(f.nginxConf, renderNginxConfig(model, dir));
  mkdirSync(f.nginxTemp, { recursive: true });
  return model;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LbProcesses {
  dir: string;
  haproxy: ChildProcess;
  nginx?: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Start HAProxy (and Nginx if asked) on an initialised folder, as the stack does; wait until they answer. */
export async function startLoadBalancers(dir: string, opts: { nginx?: boolean } = {}): Promise<LbProcesses> {
  const f = lbFiles(dir);
  let out = '';
  const haproxy = spawn('/usr/sbin/haproxy', ['-db', '-f', f.haproxyCfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  haproxy.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  haproxy.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let nginx: ChildProcess | undefined;
  if (opts.nginx) {
    await nginxTest(f.nginxConf, f.nginxErrorLog);
    nginx = spawn('/usr/sbin/nginx', ['-e', f.nginxErrorLog, '-c', f.nginxConf], { stdio: ['ignore', 'pipe', 'pipe'] });
    nginx.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  }
  const stop = async () => {
    for (const p of [nginx, haproxy]) {
      if (!p || p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, sleep(5_000)]);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    const haproxyUp = await haproxyCommand(f.haproxySocket, 'show info', 1_000).then((o) => o.includes('Name: HAProxy')).catch(() => false);
    const nginxUp = !opts.nginx || existsSync(f.nginxPid);
    if (haproxyUp && nginxUp) break;
    if (haproxy.exitCode !== null || (nginx && nginx.exitCode !== null) || Date.now() > deadline) {
      await stop();
      throw new Error(`load balancers did not start in ${dir}:\n${out}`);
    }
    await sleep(100);
  }
  return { dir, haproxy, ...(nginx ? { nginx } : {}), output: () => out, stop };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [cmd, dir, catalogFile] = process.argv.slice(2);
  if (cmd !== 'init' || !dir || !catalogFile) {
    console.error('usage: lb.ts init <dir> <catalog.json>');
    process.exit(2);
  }
  const model = initLbDir(dir, JSON.parse(readFileSync(catalogFile, 'utf8')) as LbCatalog);
  console.log(`lb: ${model.backends.map((b) => `${b.name} (haproxy :${b.frontendPort}${b.nginxPort ? `, nginx :${b.nginxPort}` : ''}, ${b.servers.length} servers)`).join('; ')}`);
}
