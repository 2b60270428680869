/** The real PostgreSQL instance registry, with ports from a test file's own loopback range. */
import net from 'node:net';
import { PgInstances, type PgPaths } from '../../src/activities/pg-instances';

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => srv.close(() => resolve(true)));
  });

/** PgInstances whose new instances take the first free port of min..max (not the engine's whole range). */
export class RangeInstances extends PgInstances {
  constructor(
    paths: PgPaths,
    readonly min: number,
    readonly max: number,
  ) {
    super(paths);
  }

  override async pickPort(except?: string): Promise<number> {
    const taken = new Set((await this.list()).filter((r) => r.id !== except).map((r) => r.port));
    for (let port = this.min; port <= this.max; port++) if (!taken.has(port) && (await portFree(port))) return port;
    throw new Error(`no free port in 127.0.0.1:${this.min}-${this.max}`);
  }
}
