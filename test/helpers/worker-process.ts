/** The real worker as a separate process (src/workers/main.ts), so a test can SIGKILL it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './wait';

const MAIN = fileURLToPath(new URL('../../src/workers/main.ts', import.meta.url));

export interface WorkerProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves when the process has exited (e.g. killed by its own fault injection). */
  exited: Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function spawnWorker(taskQueue: string, opts: { bridge?: boolean; env?: Record<string, string> } = {}): Promise<WorkerProcess> {
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...(opts.bridge ? [] : ['--no-bridge'])], {
    env: { ...process.env, DURABLE_OPS_TASK_QUEUE: taskQueue, DURABLE_OPS_LOG_LEVEL: 'info', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitUntil('the worker process to start', () => {
    if (child.exitCode !== null) throw new Error(`worker exited early:\n${output}`);
    return output.includes('"msg":"worker started"');
  }, 60_000);
  return {
    child,
    output: () => output,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
