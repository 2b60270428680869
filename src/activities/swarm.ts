/**
 * Docker secrets in Swarm mode (dockerode): versioned secrets `<name>_v<N>` rolled into the
 * services that consume them, one task at a time (seed: update_config parallelism 1, delay 10 s;
 * stop-first for host-networked replicas, start-first behind the routing mesh). The value is read from Vault inside the activity.
 * Every call is idempotent: an existing secret, a service already on the version, a removed one.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { SWARM_UPDATE_DELAY_MS, SWARM_UPDATE_PARALLELISM } from '../config/defaults';
import { activitySleep as sleep } from './activity-sleep';

export interface SwarmDeps {
  docker: Docker;
  log: Logger;
  /** Reads a secret version's value from Vault (stays inside the activity). */
  readSecretValue: (vaultPath: string, version: number) => Promise<string>;
  updateDelayMs?: number;
}

const LABEL_SECRET = 'durable-ops.secret';
const LABEL_VERSION = 'durable-ops.version';
const LABEL_CREDENTIAL = 'durable-ops.credential';

const isStatus = (err: unknown, code: number) => (err as { statusCode?: number }).statusCode === code;

interface SecretRef {
  SecretID: string;
  SecretName: string;
  File?: { Name: string; UID: string; GID: string; Mode: number };
}

export function createSwarmActivities({ docker, log, readSecretValue, updateDelayMs = SWARM_UPDATE_DELAY_MS }: SwarmDeps) {
  const secretByName = async (name: string) => (await docker.listSecrets({ filters: { name: [name] } })).find((s) => s.Spec?.Name === name);
  const versionOf = (secretName: string, name: string) => {
    const m = new RegExp(`^${secretName}_v(\\d+)$`).exec(name);
    return m ? Number(m[1]) : undefined;
  };
  const serviceSpec = async (service: string) => {
    try {
      return await docker.getService(service).inspect();
    } catch (err) {
      if (isStatus(err, 404)) throw ApplicationFailure.nonRetryable(`target.services: no Swarm service named "${service}"`, 'ServiceNotFound');
      throw err;
    }
  };

  return {
    /** Create `<name>_v<N>` from Vault version N, unless it exists already. */
    async createSwarmSecret(input: { vaultPath: string; version: number; name: string; credentialId: string }): Promise<{ id: string; alreadyDone: boolean }> {
      const existing = await secretByName(input.name);
      if (existing) return { id: existing.ID, alreadyDone: true };
      const value = await readSecretValue(input.vaultPath, input.version);
      const secretName = input.name.replace(/_v\d+$/, '');
      const created = (await docker.createSecret({
        Name: input.name,
        Data: Buffer.from(value, 'utf8').toString('base64'),
        Labels: { [LABEL_SECRET]: secretName, [LABEL_VERSION]: String(input.version), [LABEL_CREDENTIAL]: input.credentialId },
      })) as unknown as { id?: string; ID?: string };
      log.info({ secret: input.name, version: input.version }, 'swarm secret created');
      return { id: created.id ?? created.ID ?? '', alreadyDone: false };
    },

    /** Which version of the secret a service is on now. */
    async swarmServiceSecret(input: { service: string; secretName: string }): Promise<{ version?: number }> {
      const spec = await serviceSpec(input.service);
      const refs = (spec.Spec?.TaskTemplate as { ContainerSpec?: { Secrets?: SecretRef[] } })?.ContainerSpec?.Secrets ?? [];
      const versions = refs.map((r) => versionOf(input.secretName, r.SecretName)).filter((v): v is number => v !== undefined);
      return versions.length > 0 ? { version: Math.max(...versions) } : {};
    },

    /** Point a service at `name` (replacing any other version of the secret), rolling one task at a time. */
    async attachSwarmSecret(input: { service: string; secretName: string; name: string; targetPath: string; order?: 'stop-first' | 'start-first'; delayMs?: number }): Promise<{ updated: boolean }> {
      const secret = await secretByName(input.name);
      if (!secret) throw ApplicationFailure.nonRetryable(`no Swarm secret named ${input.name}`, 'SecretNotFound');
      const spec = await serviceSpec(input.service);
      const template = spec.Spec!.TaskTemplate as { ContainerSpec: { Secrets?: SecretRef[] } };
      const refs = template.ContainerSpec.Secrets ?? [];
      if (refs.some((r) => r.SecretName === input.name)) return { updated: false };
      const keep = refs.filter((r) => versionOf(input.secretName, r.SecretName) === undefined);
      const next: SecretRef[] = [...keep, { SecretID: secret.ID, SecretName: input.name, File: { Name: input.targetPath, UID: '0', GID: '0', Mode: 0o444 } }];
      await docker.getService(input.service).update({
        ...spec.Spec,
        version: spec.Version!.Index,
        TaskTemplate: { ...spec.Spec!.TaskTemplate, ContainerSpec: { ...template.ContainerSpec, Secrets: next } },
        UpdateConfig: { Parallelism: SWARM_UPDATE_PARALLELISM, Delay: (input.delayMs ?? updateDelayMs) * 1_000_000, Order: input.order ?? 'stop-first', FailureAction: 'pause' },
      });
      log.info({ service: input.service, secret: input.name }, 'service updated to the new secret');
      return { updated: true };
    },

    /** Wait until every running task of the service uses `name` and is running (and healthy, if it has a check). */
    async waitSwarmServiceOn(input: { service: string; name: string; timeoutMs?: number }): Promise<{ tasks: number }> {
      const ctx = Context.current();
      const deadline = Date.now() + (input.timeoutMs ?? 5 * 60_000);
      for (;;) {
        const spec = await serviceSpec(input.service);
        const state = (spec as { UpdateStatus?: { State?: string; Message?: string } }).UpdateStatus;
        if (state?.State === 'paused' || state?.State === 'rollback_completed') {
          throw ApplicationFailure.nonRetryable(`${input.service}: update ${state.State}: ${state.Message ?? ''}`, 'SwarmUpdateFailed');
        }
        const tasks = (await docker.listTasks({ filters: { service: [input.service], 'desired-state': ['running'] } })) as Array<{
          Status?: { State?: string };
          Spec?: { ContainerSpec?: { Secrets?: SecretRef[] } };
        }>;
        const replicas = (spec.Spec?.Mode as { Replicated?: { Replicas?: number } })?.Replicated?.Replicas ?? tasks.length;
        const onNew = tasks.filter((t) => t.Status?.State === 'running' && (t.Spec?.ContainerSpec?.Secrets ?? []).some((s) => s.SecretName === input.name));
        const done = (state?.State === undefined || state.State === 'completed') && onNew.length >= replicas && onNew.length === tasks.length;
        ctx.heartbeat({ running: onNew.length, replicas, update: state?.State });
        if (done) return { tasks: onNew.length };
        if (Date.now() > deadline) throw ApplicationFailure.retryable(`${input.service}: ${onNew.length}/${replicas} tasks on ${input.name} (update ${state?.State ?? 'none'})`, 'SwarmNotConverged');
        await sleep(500);
      }
    },

    /** Remove one secret version (idempotent; refused by the engine while a service uses it). */
    async removeSwarmSecret(input: { name: string }): Promise<{ removed: boolean }> {
      const s = await secretByName(input.name);
      if (!s) return { removed: false };
      try {
        await docker.getSecret(s.ID).remove();
        return { removed: true };
      } catch (err) {
        if (isStatus(err, 404)) return { removed: false };
        throw err;
      }
    },

    /** After promotion: remove the versions of a secret that no service references any more. */
    async removeOldSwarmSecrets(input: { secretName: string; keepName: string }): Promise<{ removed: string[] }> {
      const all = await docker.listSecrets({ filters: { label: [`${LABEL_SECRET}=${input.secretName}`] } });
      const services = await docker.listServices();
      const inUse = new Set(services.flatMap((svc) => ((svc.Spec?.TaskTemplate as { ContainerSpec?: { Secrets?: SecretRef[] } })?.ContainerSpec?.Secrets ?? []).map((r) => r.SecretName)));
      const removed: string[] = [];
      for (const s of all) {
        const name = s.Spec?.Name ?? '';
        if (name === input.keepName || inUse.has(name)) continue;
        await docker.getSecret(s.ID).remove().catch((err: unknown) => {
          if (!isStatus(err, 404)) throw err;
        });
        removed.push(name);
      }
      return { removed };
    },
  };
}
