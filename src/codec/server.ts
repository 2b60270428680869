/**
 * The codec server for the Temporal UI: the UI posts the payloads it shows to /decode (and what
 * an operator types to /encode) and gets them back readable, in Temporal's codec-server JSON shape
 * `{ "payloads": [{ "metadata": { "<name>": "<base64>" }, "data": "<base64>" }] }`.
 *
 * On 127.0.0.1 only. CORS answers only the UI's origins (DURABLE_OPS_CODEC_CORS_ORIGINS). Every
 * /encode and /decode needs the token from the 0600 file DURABLE_OPS_CODEC_TOKEN_FILE (default
 * $DURABLE_OPS_DATA/codec/token): as `Authorization: Bearer <token>`, or, for a browser, as the
 * HttpOnly cookie set by signing in once at /login (the Temporal UI sends its own bearer token
 * only over https with UI auth, but sends cookies when "Include cross-origin credentials" is on).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Payload, PayloadCodec } from '@temporalio/common';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Config } from '../config/env';
import { CodecDecryptError, CodecKeyError } from './codec';
import { readPrivateFile } from './secret-file';

export const COOKIE_NAME = 'durable_ops_codec';
const MAX_BODY_BYTES = 16 << 20;
const ALLOWED_HEADERS = 'Authorization, Content-Type, X-Namespace';

export function codecTokenFile(config: Pick<Config, 'DURABLE_OPS_CODEC_TOKEN_FILE' | 'DURABLE_OPS_DATA'>): string {
  return config.DURABLE_OPS_CODEC_TOKEN_FILE ?? path.join(config.DURABLE_OPS_DATA, 'codec', 'token');
}

export function codecOrigins(config: Pick<Config, 'DURABLE_OPS_CODEC_CORS_ORIGINS'>): string[] {
  return config.DURABLE_OPS_CODEC_CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean);
}

/** The server's token (0600 file, created with 32 random bytes on first use). */
export function loadCodecToken(file: string, opts: { create?: boolean } = {}): string {
  const token = readPrivateFile(file, 'codec server token file', opts.create === false ? undefined : () => `${randomBytes(32).toString('base64url')}\n`).trim();
  if (token.length < 16) throw new CodecKeyError(`codec server token file ${file}: the token must be at least 16 characters`);
  return token;
}

/** Temporal's codec-server JSON: bytes as base64. */
const payloadsBody = z.object({
  payloads: z.array(
    z.object({
      metadata: z.record(z.string(), z.string()).optional(),
      data: z.string().optional(),
    }),
  ),
});

function fromJson(p: z.infer<typeof payloadsBody>['payloads'][number]): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))])),
    data: new Uint8Array(Buffer.from(p.data ?? '', 'base64')),
  };
}

function toJson(p: Payload): { metadata: Record<string, string>; data: string } {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')])),
    data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function cookie(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const LOGIN_PAGE = (message = '') => `<!doctype html>
<html><head><meta charset="utf-8"><title>durable-ops codec server</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>durable-ops codec server</h1>
${message ? `<p><strong>${message}</strong></p>` : ''}
<p>Paste the token from the codec token file (<code>.data/codec/token</code> by default) to let the
Temporal UI in this browser decode payloads. In the UI's codec settings, turn on
<em>Include cross-origin credentials</em>.</p>
<form method="post" action="login">
<input type="password" name="token" autocomplete="off" size="50" autofocus>
<button type="submit">Sign in</button>
</form></body></html>
`;

export interface CodecServerOptions {
  /** 0 = any free port. Always 127.0.0.1. */
  port: number;
  codec: PayloadCodec;
  token: string;
  /** Origins allowed by CORS (the Temporal UI). */
  origins: string[];
  log: Logger;
}

export interface CodecServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  const { codec, log } = opts;
  const tokenDigest = digest(opts.token);
  const origins = new Set(opts.origins);
  let port = opts.port;
  const authorized = (req: http.IncomingMessage): boolean => {
    const header = req.headers.authorization;
    const presented = header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : cookie(req, COOKIE_NAME);
    return presented !== undefined && timingSafeEqual(digest(presented), tokenDigest);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const origin = req.headers.origin;
    const corsAllowed = origin !== undefined && origins.has(origin);
    const headers: Record<string, string> = { vary: 'Origin', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    if (corsAllowed) Object.assign(headers, { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true' });
    const send = (status: number, body: unknown, extra: Record<string, string> = {}) => {
      const text = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
      res.writeHead(status, { ...headers, 'content-type': typeof body === 'string' ? 'text/html; charset=utf-8' : 'application/json', ...extra }).end(text);
    };
    const route = new URL(req.url ?? '/', 'http://127.0.0.1').pathname.replace(/\/+$/, '');

    if (req.method === 'OPTIONS') {
      // CORS preflight (no credentials are ever sent with it).
      if (!corsAllowed) return send(403, { error: `origin ${origin ?? '(none)'} is not allowed` });
      res.writeHead(204, { ...headers, 'access-control-allow-methods': 'POST, OPTIONS', 'access-control-allow-headers': ALLOWED_HEADERS, 'access-control-max-age': '600' }).end();
      return;
    }

    if (route === '/login') {
      // Same-origin page: the operator pastes the token once; an HttpOnly cookie carries it after.
      const own = [`http://127.0.0.1:${port}`, `http://localhost:${port}`];
      if (origin !== undefined && !own.includes(origin)) return send(403, { error: 'cross-origin sign-in is not allowed' });
      res.setHeader('x-frame-options', 'DENY');
      if (req.method === 'GET') return send(200, LOGIN_PAGE());
      if (req.method !== 'POST') return send(405, { error: 'GET or POST /login' }, { allow: 'GET, POST' });
      const token = new URLSearchParams(await readBody(req)).get('token')?.trim() ?? '';
      if (!timingSafeEqual(digest(token), tokenDigest)) {
        log.warn({ path: route }, 'codec server: sign-in with a wrong token');
        return send(401, LOGIN_PAGE('Wrong token.'));
      }
      // Cookies are per host, not per port: scope them to /encode and /decode so the other
      // services on 127.0.0.1 (the UI, Mailpit, ...) never receive the token.
      res.setHeader('set-cookie', ['/encode', '/decode'].map((p) => `${COOKIE_NAME}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=${p}; Max-Age=43200`));
      return send(200, LOGIN_PAGE('Signed in: the Temporal UI in this browser can now decode payloads.'));
    }

    if (route !== '/encode' && route !== '/decode') return send(404, { error: 'POST /encode or /decode' });
    if (origin !== undefined && !corsAllowed) return send(403, { error: `origin ${origin} is not allowed` });
    if (req.method !== 'POST') return send(405, { error: `POST ${route}` }, { allow: 'POST, OPTIONS' });
    if (!authorized(req)) {
      log.warn({ path: route, origin }, 'codec server: request without a valid token');
      return send(401, { error: 'a valid "Authorization: Bearer <token>" (or the sign-in cookie) is required' }, { 'www-authenticate': 'Bearer realm="durable-ops-codec"' });
    }
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) return send(415, { error: 'Content-Type must be application/json' });
    let body;
    try {
      body = payloadsBody.safeParse(JSON.parse(await readBody(req)));
    } catch (err) {
      if (err instanceof HttpError) return send(err.status, { error: err.message });
      return send(400, { error: `body is not JSON: ${(err as Error).message}` });
    }
    if (!body.success) return send(400, { error: `expected {"payloads": [{"metadata": {...}, "data": "<base64>"}]}: ${body.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` });
    const payloads = body.data.payloads.map(fromJson);
    try {
      const out = route === '/encode' ? await codec.encode(payloads) : await codec.decode(payloads);
      log.debug({ path: route, payloads: payloads.length, namespace: req.headers['x-namespace'] }, 'codec server request');
      return send(200, { payloads: out.map(toJson) });
    } catch (err) {
      if (err instanceof CodecKeyError || err instanceof CodecDecryptError) return send(400, { error: err.message });
      throw err;
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ error: (err as Error).message }, 'codec server: request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(`${JSON.stringify({ error: 'internal error' })}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
