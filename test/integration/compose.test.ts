/**
 * docker-compose.temporal.yml, the production-shaped stack, validated without starting it (its
 * images cannot be pulled here): `docker-compose config` checks and normalises the real file,
 * then the tests assert the policies on that output. docker-compose 1.29 prints YAML only; it
 * is a Python program that depends on PyYAML, which turns that YAML into JSON for us.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  HEALTHCHECK_INTERVAL_MS,
  HEALTHCHECK_RETRIES,
  HEALTHCHECK_START_PERIOD_MS,
  HEALTHCHECK_TIMEOUT_MS,
} from '../../src/config/defaults';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../../src/config/search-attributes';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.temporal.yml');
const WORKER_DOCKERFILE = 'docker/worker/Dockerfile';
const SERVICES = ['postgresql', 'temporal', 'temporal-admin-tools', 'temporal-ui', 'vault', 'mailpit', 'worker'];
/** Runs once and exits: no health check or restart-forever policy expected. */
const ONE_SHOT = new Set(['temporal-admin-tools']);
const SECRETS = ['db_password', 'api_keys', 'jwt_secret'];
const RESTART_POLICIES = /^(always|unless-stopped|on-failure(:\d+)?)$/;

interface Healthcheck {
  test?: string | string[];
  disable?: boolean;
  interval?: string;
  timeout?: string;
  retries?: number;
  start_period?: string;
}
type Mount = string | { type?: string; source?: string; target?: string };
interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | null>;
  ports?: Array<string | { host_ip?: string; published?: number | string; target?: number }>;
  volumes?: Mount[];
  secrets?: Array<{ source: string }>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: Healthcheck;
  restart?: string;
  cap_add?: string[];
  group_add?: Array<string | number>;
  network_mode?: string;
}
interface Compose {
  services: Record<string, Service>;
  secrets?: Record<string, { file?: string }>;
}

/** `docker-compose config` of a file (relative paths resolve against the repo), as an object. */
function composeConfig(file = COMPOSE_FILE): Compose {
  const yaml = execFileSync('docker-compose', ['--project-directory', ROOT, '-f', file, 'config'], { encoding: 'utf8' });
  const json = execFileSync('python3', ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], { input: yaml, encoding: 'utf8' });
  return JSON.parse(json) as Compose;
}

/** A Go/Compose duration ("30s", "1m30s", "500ms") in milliseconds. */
function durationMs(value: string | undefined): number {
  const unit: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 1e-3, ns: 1e-6 };
  const parts = [...(value ?? '').matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/g)];
  if (!value || parts.map((p) => p[0]).join('') !== value) return NaN;
  return parts.reduce((total, [, n, u]) => total + Number(n) * unit[u!]!, 0);
}

const text = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join(' ') : (v ?? ''));

/** The host address of a published port, '' when it binds every interface. */
function hostIp(port: NonNullable<Service['ports']>[number]): string {
  if (typeof port !== 'string') return port.host_ip ?? '';
  const parts = port.replace(/\/\w+$/, '').split(':');
  return parts.length >= 3 ? parts.slice(0, -2).join(':') : '';
}

/** Every published port that is not on loopback. */
function exposedPorts(config: Compose): string[] {
  const found: string[] = [];
  for (const [name, svc] of Object.entries(config.services)) {
    if (svc.network_mode === 'host') found.push(`${name}: network_mode host publishes every port`);
    for (const port of svc.ports ?? []) {
      if (!/^(127\.\d+\.\d+\.\d+|\[?::1\]?)$/.test(hostIp(port))) found.push(`${name}: ${JSON.stringify(port)} is not bound to 127.0.0.1`);
    }
  }
  return found;
}

/** Long-running services without the seed health check or without a restart policy. */
function healthProblems(config: Compose): string[] {
  const found: string[] = [];
  const want = { interval: HEALTHCHECK_INTERVAL_MS, timeout: HEALTHCHECK_TIMEOUT_MS, start_period: HEALTHCHECK_START_PERIOD_MS };
  for (const [name, svc] of Object.entries(config.services)) {
    if (ONE_SHOT.has(name)) continue;
    if (!RESTART_POLICIES.test(svc.restart ?? '')) found.push(`${name}: restart policy ${JSON.stringify(svc.restart)}`);
    const hc = svc.healthcheck;
    if (!hc || hc.disable) {
      found.push(`${name}: no healthcheck`);
      continue;
    }
    // A built image may keep its Dockerfile's HEALTHCHECK command (checked on its own below).
    if (!hc.test && !svc.build) found.push(`${name}: healthcheck has no test`);
    for (const [key, ms] of Object.entries(want)) {
      const got = hc[key as keyof typeof want];
      if (durationMs(got) !== ms) found.push(`${name}: healthcheck ${key} ${JSON.stringify(got)}, want ${ms / 1000}s`);
    }
    if (hc.retries !== HEALTHCHECK_RETRIES) found.push(`${name}: healthcheck retries ${JSON.stringify(hc.retries)}, want ${HEALTHCHECK_RETRIES}`);
  }
  return found;
}

const mounts = (svc: Service) => (svc.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
const secretsOf = (svc: Service) => (svc.secrets ?? []).map((s) => s.source);

const config = composeConfig();
const services = config.services;
const svc = (name: string): Service => {
  const found = services[name];
  assert.ok(found, `service ${name} is missing`);
  return found;
};

void test('docker-compose accepts the file and it declares the whole stack', () => {
  assert.deepEqual(Object.keys(services).sort(), [...SERVICES].sort());
});

void test('temporal persists to PostgreSQL, with the password from a secret', () => {
  const pg = svc('postgresql');
  assert.match(pg.image ?? '', /^postgres:15/);
  assert.match(text(pg.healthcheck?.test), /pg_isready/);
  assert.ok(mounts(pg).some((m) => m.endsWith(':/var/lib/postgresql/data:rw') && !m.startsWith('/')), 'named data volume');
  assert.equal(pg.environment?.POSTGRES_PASSWORD_FILE, '/run/secrets/db_password');

  const temporal = svc('temporal');
  assert.match(temporal.image ?? '', /^temporalio\/auto-setup:/);
  assert.equal(temporal.environment?.DB, 'postgres12');
  assert.equal(temporal.environment?.POSTGRES_SEEDS, 'postgresql');
  assert.equal(temporal.environment?.POSTGRES_PWD_FILE, '/run/secrets/db_password');
  assert.equal(temporal.depends_on?.postgresql?.condition, 'service_healthy');
  for (const s of [pg, temporal]) {
    assert.ok(secretsOf(s).includes('db_password'));
    assert.equal(s.environment?.POSTGRES_PASSWORD ?? s.environment?.POSTGRES_PWD, undefined, 'no plaintext password');
  }
});

void test('the runbook search attributes are registered once temporal is healthy', () => {
  const tools = svc('temporal-admin-tools');
  assert.equal(tools.depends_on?.temporal?.condition, 'service_healthy');
  const script = text(tools.entrypoint) + text(tools.command);
  for (const attr of [SERVICE_ATTR, RUNBOOK_ATTR]) assert.match(script, new RegExp(`\\b${attr.name}\\b`));
  assert.match(script, /search-attribute create .*--type Keyword/);
});

void test('the UI, Vault (server mode) and Mailpit are wired as specified', () => {
  assert.equal(svc('temporal-ui').environment?.TEMPORAL_ADDRESS, 'temporal:7233');
  const vault = svc('vault');
  assert.equal(text(vault.command), 'server');
  assert.ok(vault.cap_add?.includes('IPC_LOCK'));
  assert.ok(mounts(vault).some((m) => m.includes(':/vault/file')), 'file storage volume');
  assert.match(svc('mailpit').image ?? '', /^axllent\/mailpit:/);
});

void test('every published port binds 127.0.0.1 only', () => {
  assert.ok(Object.values(services).some((s) => s.ports?.length), 'some ports are published');
  assert.deepEqual(exposedPorts(config), []);
});

void test('the worker builds from docker/worker/Dockerfile, drives Docker and reaches temporal and mailpit', () => {
  const worker = svc('worker');
  assert.equal(path.resolve(worker.build?.context ?? ''), path.resolve(ROOT));
  assert.equal(worker.build?.dockerfile, WORKER_DOCKERFILE);
  assert.ok(mounts(worker).some((m) => m.startsWith('/var/run/docker.sock:/var/run/docker.sock')), 'docker socket mounted');
  assert.ok(worker.group_add?.length, 'runs with the docker socket group');
  assert.equal(worker.environment?.DURABLE_OPS_TEMPORAL_ADDRESS, 'temporal:7233');
  assert.equal(worker.environment?.DURABLE_OPS_SMTP_HOST, 'mailpit');
  assert.equal(worker.environment?.DURABLE_OPS_SMTP_PORT, '1025');
  assert.equal(worker.depends_on?.temporal?.condition, 'service_healthy');
  assert.ok(worker.depends_on?.mailpit, 'depends on mailpit');
  assert.deepEqual(secretsOf(worker).sort(), ['api_keys', 'jwt_secret']);
});

void test('secrets are file-based and declared at the top level', () => {
  assert.deepEqual(Object.keys(config.secrets ?? {}).sort(), [...SECRETS].sort());
  for (const name of SECRETS) assert.equal(config.secrets?.[name]?.file, path.join(ROOT, 'secrets', `${name}.txt`));
});

void test('every long-running service has the seed health check and a restart policy', () => {
  assert.deepEqual(healthProblems(config), []);
});

void test('the worker image: seed HEALTHCHECK, non-root user, tsx entry point', () => {
  const dockerfile = readFileSync(path.join(ROOT, WORKER_DOCKERFILE), 'utf8').replace(/\\\n/g, ' ');
  const flags = Object.fromEntries([...(/^HEALTHCHECK (.*?) CMD /m.exec(dockerfile)?.[1] ?? '').matchAll(/--([\w-]+)=(\S+)/g)].map(([, k, v]) => [k, v]));
  assert.equal(durationMs(flags.interval), HEALTHCHECK_INTERVAL_MS);
  assert.equal(durationMs(flags.timeout), HEALTHCHECK_TIMEOUT_MS);
  assert.equal(Number(flags.retries), HEALTHCHECK_RETRIES);
  assert.equal(durationMs(flags['start-period']), HEALTHCHECK_START_PERIOD_MS);
  assert.match(dockerfile, /^USER (?!root\b|0\b)\S+/m);
  assert.match(dockerfile, /^CMD \["node", "--import", "tsx", "src\/workers\/main\.ts"\]/m);
});

void test('the checks catch a tampered stack', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'durable-ops-compose-'));
  try {
    const tampered = readFileSync(COMPOSE_FILE, 'utf8')
      .replace('"127.0.0.1:8200:8200"', '"0.0.0.0:8200:8200"')
      .replace('"127.0.0.1:8025:8025"', '"8025:8025"')
      .replace(/interval: 30s/, 'interval: 5s') // the first service's health check
      .replace(/(\n {2}vault:\n(?: {4}.*\n)*?) {4}restart: .*\n/, '$1');
    const file = path.join(dir, 'docker-compose.yml');
    writeFileSync(file, tampered);
    const bad = composeConfig(file);
    assert.deepEqual(new Set(exposedPorts(bad).map((p) => p.split(':')[0])), new Set(['vault', 'mailpit']));
    const health = healthProblems(bad);
    assert.ok(health.some((p) => /^postgresql: healthcheck interval "5s"/.test(p)), health.join('\n'));
    assert.ok(health.some((p) => /^vault: restart policy/.test(p)), health.join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
