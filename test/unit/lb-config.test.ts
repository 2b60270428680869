/**
 * The load-balancer renderers (src/activities/lb-config.ts): one replica set -> haproxy.cfg and
 * nginx.conf, each accepted by the real binary's own check (`haproxy -c`, `nginx -t`).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { parseShowStat } from '../../src/activities/haproxy';
import { DEFAULT_TIMEOUTS, declareBackend, lbFiles, renderHaproxyConfig, renderNginxConfig, type LbModel } from '../../src/activities/lb-config';
import { nginxTest } from '../../src/activities/nginx';

const dir = mkdtempSync(path.join(tmpdir(), 'lb-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const model: LbModel = {
  statsPort: 19298,
  timeouts: DEFAULT_TIMEOUTS,
  backends: [
    declareBackend({
      name: 'web',
      frontendPort: 19296,
      nginxPort: 19297,
      servers: [
        { name: 'web-1', port: 19281, weight: 1, state: 'ready' },
        { name: 'web-2', port: 19282, weight: 3, state: 'ready' },
        { name: 'web-3', port: 19283, weight: 1, state: 'drain' },
        { name: 'web-4', port: 19284, weight: 1, state: 'maint' },
      ],
    }),
    declareBackend({ name: 'api', frontendPort: 19295, nginxPort: 19294 }),
  ],
};

test('haproxy.cfg: roundrobin + httpchk per backend, the live servers, admin socket; haproxy -c accepts it', () => {
  const cfg = renderHaproxyConfig(model, dir);
  assert.match(cfg, new RegExp(`stats socket ${lbFiles(dir).haproxySocket.replace(/[.]/g, '\\.')} mode 600 level admin expose-fd listeners`));
  assert.match(cfg, /backend web\n {2}balance roundrobin\n {2}option httpchk GET \/health/);
  assert.match(cfg, /server web-2 127\.0\.0\.1:19282 check inter 2000ms weight 3\n/);
  assert.match(cfg, /server web-3 127\.0\.0\.1:19283 check inter 2000ms weight 0\n/, 'a drained server comes back drained');
  assert.match(cfg, /server web-4 127\.0\.0\.1:19284 check inter 2000ms weight 1 disabled\n/, 'one in maintenance comes back disabled');
  assert.match(cfg, /frontend fe_api\n {2}bind 127\.0\.0\.1:19295\n/);
  assert.doesNotMatch(cfg, /server-template/);
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  execFileSync('/usr/sbin/haproxy', ['-c', '-q', '-f', file]);
});

test('nginx.conf: least_conn upstream with weights from the servers in rotation; nginx -t accepts it', async () => {
  const conf = renderNginxConfig(model, dir);
  assert.match(conf, /upstream web \{\n {4}least_conn;\n {4}server 127\.0\.0\.1:19281 weight=1; # web-1\n {4}server 127\.0\.0\.1:19282 weight=3; # web-2\n {2}\}/);
  assert.doesNotMatch(conf, /19283|19284/, 'drained and disabled servers are out of the upstream');
  assert.match(conf, /upstream api \{\n {4}least_conn;\n {4}server 127\.0\.0\.1:1 down;/, 'an empty upstream stays valid');
  assert.match(conf, /listen 127\.0\.0\.1:19297;/);
  mkdirSync(lbFiles(dir).nginxTemp, { recursive: true });
  writeFileSync(lbFiles(dir).nginxConf, conf);
  await nginxTest(lbFiles(dir).nginxConf, lbFiles(dir).nginxErrorLog);
  // And a broken one is refused with nginx's message.
  writeFileSync(lbFiles(dir).nginxConf, conf.replace('least_conn;', 'least_conn'));
  await assert.rejects(nginxTest(lbFiles(dir).nginxConf, lbFiles(dir).nginxErrorLog), /nginx -t failed/);
});

test('show stat CSV is parsed by column name', () => {
  const rows = parseShowStat('# pxname,svname,scur,status,weight,addr\nweb,web-1,3,UP,1,127.0.0.1:19281\nweb,BACKEND,3,UP,1,\n');
  assert.equal(rows.length, 2);
  assert.deepEqual(rows[0], { pxname: 'web', svname: 'web-1', scur: '3', status: 'UP', weight: '1', addr: '127.0.0.1:19281' });
  assert.throws(() => parseShowStat('Unknown command'), /unexpected show stat output/);
});
