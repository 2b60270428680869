/** Webhook receivers a test runs on 127.0.0.1: each records what it got and answers as told. */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Behaviour = 'ok' | 'fail' | 'slow' | { status: number; retryAfter?: string };

export interface Received {
  at: number;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

export interface Receiver {
  url: string;
  received: Received[];
  /** Answer the next requests with these behaviours, then with `then`. */
  script(behaviours: Behaviour[], then?: Behaviour): void;
  close(): Promise<void>;
}

export async function startReceiver(initial: Behaviour = 'ok', slowMs = 3_000): Promise<Receiver> {
  let queue: Behaviour[] = [];
  let fallback: Behaviour = initial;
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const behaviour = queue.shift() ?? fallback;
      received.push({ at: Date.now(), headers: req.headers, body: raw ? (JSON.parse(raw) as Record<string, unknown>) : {} });
      const answer = (status: number, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify({ status }));
      };
      if (behaviour === 'ok') answer(202);
      else if (behaviour === 'fail') answer(500);
      else if (behaviour === 'slow') setTimeout(() => answer(202), slowMs).unref();
      else answer(behaviour.status, behaviour.retryAfter ? { 'retry-after': behaviour.retryAfter } : {});
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    script(behaviours, then) {
      queue = [...behaviours];
      if (then !== undefined) fallback = then;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
