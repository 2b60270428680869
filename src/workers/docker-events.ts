/**
 * The Docker event bridge: streams engine events and turns failures (die, oom,
 * health_status: unhealthy) into `failure` signals for the service's supervisor.
 *
 * Containers opt in to supervision with labels:
 *   durable-ops.supervise=true
 *   durable-ops.health-url=http://127.0.0.1:8081/health
 *   durable-ops.supervise-input={"restart":{"maxAttempts":5}}   (optional, merged into the input)
 * For those, the bridge uses signal-with-start, so the supervisor exists as soon as it is needed,
 * and on start-up it makes sure every running labelled container has one. Failures of other
 * containers are forwarded only to a supervisor an operator started.
 * After a reconnect it asks for the events it missed (`since` the last one seen).
 */
import { WorkflowIdConflictPolicy, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { RUNBOOK_ATTR, SERVICE_ATTR } from '../config/search-attributes';
import type { FailureSignal } from '../schemas/supervise-service';
import { validateInput } from '../runbooks/registry';
import { failureSignal, superviseWorkflowId } from '../workflows/supervise-service';

export const LABEL_SUPERVISE = 'durable-ops.supervise';
export const LABEL_HEALTH_URL = 'durable-ops.health-url';
export const LABEL_INPUT = 'durable-ops.supervise-input';

interface DockerEvent {
  Type?: string;
  Action?: string;
  status?: string;
  time?: number;
  timeNano?: number;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

export interface BridgeOptions {
  docker: Docker;
  client: Client;
  taskQueue: string;
  log: Logger;
  signal: AbortSignal;
}

/** Map an engine event to a failure, or undefined if it is not one. */
export function toFailure(ev: DockerEvent): FailureSignal | undefined {
  if (ev.Type !== 'container') return undefined;
  const action = ev.Action ?? ev.status ?? '';
  const attrs = ev.Actor?.Attributes ?? {};
  const at = ev.timeNano ? Math.floor(ev.timeNano / 1e6) : (ev.time ?? 0) * 1000;
  if (action === 'die') {
    const exitCode = Number(attrs.exitCode);
    return { kind: 'die', at, source: 'docker-events', ...(Number.isFinite(exitCode) ? { exitCode } : {}) };
  }
  if (action === 'oom') return { kind: 'oom', at, source: 'docker-events' };
  if (action === 'health_status: unhealthy') return { kind: 'unhealthy', at, source: 'docker-events' };
  return undefined;
}

/** The supervisor input a labelled container declares, or undefined (with the reason logged). */
export function inputFromLabels(name: string, labels: Record<string, string>, log: Logger): unknown {
  if (labels[LABEL_SUPERVISE] !== 'true') return undefined;
  let extra: Record<string, unknown> = {};
  if (labels[LABEL_INPUT]) {
    try {
      extra = JSON.parse(labels[LABEL_INPUT]) as Record<string, unknown>;
    } catch {
      log.error({ service: name, label: LABEL_INPUT }, 'label is not JSON; not supervising');
      return undefined;
    }
  }
  const raw = { ...extra, service: name, healthUrl: labels[LABEL_HEALTH_URL] };
  try {
    // Validated here, sent as given: the supervisor fills in the worker's configured defaults.
    validateInput('superviseService', raw);
    return raw;
  } catch (err) {
    log.error({ service: name, error: (err as Error).message }, 'labels do not make a valid supervisor input; not supervising');
    return undefined;
  }
}

/** How a supervisor is started for a labelled container (id, search attributes, summary). */
export function superviseStartOptions(taskQueue: string, service: string, input: unknown) {
  return {
    taskQueue,
    workflowId: superviseWorkflowId(service),
    args: [input],
    typedSearchAttributes: [
      { key: SERVICE_ATTR, value: service },
      { key: RUNBOOK_ATTR, value: 'superviseService' },
    ],
    staticSummary: `supervise ${service} (from container labels)`,
  };
}

/**
 * Tell a service's supervisor about a failure: signal-with-start when the container's labels
 * declare supervision, otherwise signal a supervisor an operator started (if there is one).
 * Used by the Docker event bridge and the Alertmanager receiver.
 */
export async function forwardFailure(
  client: Client,
  taskQueue: string,
  service: string,
  labels: Record<string, string>,
  failure: FailureSignal,
  log: Logger,
): Promise<'signal-with-start' | 'signalled' | 'no-supervisor'> {
  const input = inputFromLabels(service, labels, log);
  if (input) {
    await client.workflow.signalWithStart('superviseService', { ...superviseStartOptions(taskQueue, service, input), signal: failureSignal, signalArgs: [failure] });
    return 'signal-with-start';
  }
  try {
    await client.workflow.getHandle(superviseWorkflowId(service)).signal(failureSignal, failure);
    return 'signalled';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return 'no-supervisor';
    throw err;
  }
}

export async function runDockerEventBridge({ docker, client, taskQueue, log, signal }: BridgeOptions): Promise<void> {
  const ensureSupervisors = async () => {
    const containers = await docker.listContainers({ filters: { label: [`${LABEL_SUPERVISE}=true`] } });
    for (const c of containers) {
      const name = (c.Names[0] ?? '').replace(/^\//, '');
      const input = inputFromLabels(name, c.Labels, log);
      if (!input) continue;
      await client.workflow.start('superviseService', { ...superviseStartOptions(taskQueue, name, input), workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING });
    }
    log.info({ supervised: containers.length }, 'supervisors ensured for labelled containers');
  };

  const forward = async (ev: DockerEvent) => {
    const failure = toFailure(ev);
    const attrs = ev.Actor?.Attributes ?? {};
    const name = attrs.name;
    if (!failure || !name) return;
    const action = await forwardFailure(client, taskQueue, name, attrs, failure, log);
    if (action !== 'no-supervisor') log.info({ service: name, action, ...failure }, 'failure forwarded');
  };

  let since = Math.floor(Date.now() / 1000);
  let delay = 500;
  await ensureSupervisors().catch((err) => log.error({ error: (err as Error).message }, 'could not ensure supervisors'));
  while (!signal.aborted) {
    try {
      const stream = (await docker.getEvents({ since, filters: { type: ['container'], event: ['die', 'oom', 'health_status'] } })) as NodeJS.ReadableStream & { destroy(): void };
      const onAbort = () => stream.destroy();
      signal.addEventListener('abort', onAbort, { once: true });
      log.info({ since }, 'docker event stream connected');
      delay = 500;
      let buffered = '';
      for await (const chunk of stream) {
        buffered += chunk.toString();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line) as DockerEvent;
          if (ev.time) since = ev.time;
          await forward(ev).catch((err) => log.error({ error: (err as Error).message, action: ev.Action }, 'could not forward event'));
        }
      }
      signal.removeEventListener('abort', onAbort);
    } catch (err) {
      if (signal.aborted) break;
      log.warn({ error: (err as Error).message, retryInMs: delay }, 'docker event stream lost; reconnecting');
    }
    if (signal.aborted) break;
    // Exponential backoff with full jitter before reconnecting.
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * delay)));
    delay = Math.min(delay * 2, 10_000);
  }
}
