/**
 * The codec server process (started by the stack, src/stack/services/codec.sh):
 *   node --import tsx src/codec/main.ts
 * Listens on 127.0.0.1:$DURABLE_OPS_CODEC_PORT (8888) for the Temporal UI.
 */
import { ConfigError, loadConfig } from '../config/env';
import { createLogger } from '../config/logger';
import { codecFor } from './codec';
import { codecOrigins, codecTokenFile, loadCodecToken, startCodecServer } from './server';

async function main(): Promise<void> {
  let config, codec, token;
  try {
    config = loadConfig();
    codec = codecFor(config);
    token = loadCodecToken(codecTokenFile(config));
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`durable-ops codec server: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.DURABLE_OPS_LOG_LEVEL, { component: 'codec-server' });
  const origins = codecOrigins(config);
  const server = await startCodecServer({ port: config.DURABLE_OPS_CODEC_PORT, codec, token, origins, log });
  log.info({ url: server.url, origins, tokenFile: codecTokenFile(config) }, 'codec server started');
  const stop = () => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
