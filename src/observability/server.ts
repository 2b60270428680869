/**
 * The worker's one metrics endpoint: GET /metrics returns the durable_ops_ registry
 * (prom-client) followed by the Temporal SDK's metrics, which Core exports on a private
 * loopback port (Runtime telemetry, Prometheus exporter) and this server fetches per scrape.
 * The two sets never share a name (temporal_ vs durable_ops_/process_/nodejs_), so the
 * concatenation is one valid exposition.
 */
import http from 'node:http';
import net from 'node:net';
import type { Logger } from 'pino';
import { registry } from './metrics';

/** A free TCP port on 127.0.0.1 (for the SDK exporter when none is configured). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Listen on 127.0.0.1:port; resolves with the server, or undefined (logged) if the port is taken. */
export function listenLoopback(server: http.Server, port: number, what: string, log: Logger): Promise<http.Server | undefined> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        // Another engine process (npm start, a test, the bench) serves it already: the worker
        // runs on without it rather than failing.
        log.warn({ port, what }, `127.0.0.1:${port} is in use; ${what} not served by this process`);
        resolve(undefined);
      } else reject(err);
    };
    server.once('error', onError);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: { port: number; sdkMetricsUrl?: string; log: Logger; breakers?: () => unknown }): Promise<MetricsServer | undefined> {
  const { sdkMetricsUrl, log } = opts;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    // GET /breakers: the circuit breakers' state, stats and time to half-open, as JSON.
    if (req.method === 'GET' && url.pathname === '/breakers' && opts.breakers) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(opts.breakers(), null, 2)}\n`);
      return;
    }
    if (req.method !== 'GET' || url.pathname !== '/metrics') {
      res.writeHead(url.pathname === '/metrics' ? 405 : 404, { 'content-type': 'text/plain' }).end('GET /metrics or /breakers\n');
      return;
    }
    void (async () => {
      let body = await registry.metrics();
      if (sdkMetricsUrl) {
        try {
          const r = await fetch(sdkMetricsUrl, { signal: AbortSignal.timeout(2_000) });
          if (!r.ok) throw new Error(`HTTP ${r.status}`);
          const sdk = (await r.text()).replace(/^# EOF\s*$/m, '');
          body = `${body.endsWith('\n') ? body : `${body}\n`}${sdk}`;
        } catch (err) {
          log.warn({ error: (err as Error).message, sdkMetricsUrl }, 'SDK metrics unavailable for this scrape');
        }
      }
      res.writeHead(200, { 'content-type': registry.contentType }).end(body);
    })().catch((err: Error) => {
      log.error({ error: err.message }, 'metrics scrape failed');
      if (!res.headersSent) res.writeHead(500).end(`${err.message}\n`);
    });
  });
  const listening = await listenLoopback(server, opts.port, 'metrics', log);
  if (!listening) return undefined;
  const port = (server.address() as net.AddressInfo).port;
  log.info({ url: `http://127.0.0.1:${port}/metrics`, sdkMetricsUrl }, 'metrics served');
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
