/**
 * rotateCredential: rotate one credential everywhere it lives, in four recorded phases
 * (create -> set -> test -> finish), the protocol of the big secret managers:
 *   create  a new value, generated inside an activity, written to Vault KV v2 as a new version
 *           with check-and-set and marked *pending* (a re-run finds it instead of making another)
 *   set     applied to the target: the PostgreSQL role not in use (alternating users), a new
 *           versioned Docker secret rolled into each consuming Swarm service, or nothing (Vault-only)
 *   test    the new credential proven to work (a login; the services' tasks healthy on it)
 *   finish  pending -> current, current -> previous; consumers off the old credential (waiting up to
 *           the grace period, then alerting rather than cutting them); the old one revoked.
 * Any failure before finish rolls back (saga): the pending version is discarded, the target stays on
 * the current credential, an alert goes out, and the workflow fails with the reason.
 * No secret value ever crosses the workflow: activities pass Vault paths and versions.
 */
import { ActivityCancellationType, ApplicationFailure, CancellationScope, CancelledFailure, defineQuery, isCancellation, log, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { rotateCredentialInputSchema, type RotateCredentialParams, type RotationTarget } from '../schemas/rotate-credential';
import { now } from './shared/deterministic';
import { rootMessage } from './shared/errors';
import { beginRunbook, iso, showDetails } from './shared/runbook';
import { holdingLease, undoing } from './shared/harness';

export const RUNBOOK = 'rotateCredential';

export type RotationPhase = 'plan' | 'create' | 'set' | 'test' | 'finish' | 'done' | 'rolling-back' | 'rolled-back';

export interface RotationPlan {
  credentialId: string;
  vaultPath: string;
  target: RotationTarget['kind'];
  currentVersion?: number;
  /** The PostgreSQL role that keeps serving during the rotation, and the one that gets the new password. */
  activeRole?: string;
  pendingRole?: string;
  services?: string[];
  steps: string[];
}

export interface RotationReport {
  credentialId: string;
  dryRun: boolean;
  phase: RotationPhase;
  plan: RotationPlan;
  /** References only: the Vault path and version of the new credential. */
  newVersion?: number;
  previousVersion?: number;
  phases: Array<{ phase: RotationPhase; at: number; note?: string }>;
  /** Old credential still in use when the grace period ended: alerted, not revoked. */
  oldStillInUse?: number;
  revokedOld: boolean;
  startedAt: number;
  finishedAt?: number;
}

export const rotationStatusQuery = defineQuery<RotationReport>('status');

const vault = proxyActivities<Activities>({
  // A cancel waits for a running step to end before the undo runs (a step deaf to the cancel could land after its undo).
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 10 },
});
const target = proxyActivities<Activities>({
  // A cancel waits for a running step to end before the undo runs (a step deaf to the cancel could land after its undo).
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  startToCloseTimeout: '30m',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
});
const alerts = proxyActivities<Activities>({ startToCloseTimeout: '30s', retry: { maximumInterval: '30s', maximumAttempts: 8 } });

function planFor(input: RotateCredentialParams, current: { currentVersion?: number; currentUsername?: string }): RotationPlan {
  const t = input.target;
  const base = { credentialId: input.credentialId, vaultPath: input.vaultPath, target: t.kind, ...(current.currentVersion !== undefined ? { currentVersion: current.currentVersion } : {}) };
  const next = current.currentVersion === undefined ? 'the first version' : `version ${current.currentVersion + 1}`;
  if (t.kind === 'postgres-role') {
    const roles = [`${t.app}_a`, `${t.app}_b`];
    const activeRole = current.currentUsername && roles.includes(current.currentUsername) ? current.currentUsername : undefined;
    const pendingRole = activeRole === roles[0] ? roles[1]! : roles[0]!;
    return {
      ...base,
      ...(activeRole ? { activeRole } : {}),
      pendingRole,
      steps: [
        `create: write ${next} of secret/${input.vaultPath} (pending), username ${pendingRole}`,
        `set: ALTER ROLE ${pendingRole} LOGIN PASSWORD <new> (${activeRole ?? 'no role'} keeps serving)`,
        `test: log in to ${t.database} as ${pendingRole} with the new password`,
        `finish: promote the version to current; wait up to ${input.gracePeriodMs} ms for ${activeRole ?? 'the old role'}'s sessions to end; then NOLOGIN ${activeRole ?? '(nothing to revoke)'}`,
      ],
    };
  }
  if (t.kind === 'docker-secret') {
    return {
      ...base,
      services: t.services,
      steps: [
        `create: write ${next} of secret/${input.vaultPath} (pending)`,
        `set: create Swarm secret ${t.secretName}_v<N>; update ${t.services.join(', ')} to it (one task at a time)`,
        `test: every task of ${t.services.join(', ')} running and healthy on the new secret`,
        `finish: promote the version to current; remove the old ${t.secretName}_v* secrets`,
      ],
    };
  }
  return { ...base, steps: [`create: write ${next} of secret/${input.vaultPath} (pending)`, 'set: nothing (consumers read by path)', 'test: the version reads back', 'finish: promote the version to current'] };
}

export async function rotateCredential(rawInput: unknown): Promise<RotationReport> {
  const input = beginRunbook(RUNBOOK, rotateCredentialInputSchema, rawInput, (i) => i.credentialId);
  const t = input.target;
  const info = workflowInfo();
  const rotationId = `${info.workflowId}/${info.runId}`;

  const run = async (): Promise<RotationReport> => {
    const current = await vault.describeCredential({ vaultPath: input.vaultPath });
    const plan = planFor(input, current);
    const report: RotationReport = { credentialId: input.credentialId, dryRun: input.dryRun, phase: 'plan', plan, phases: [], revokedOld: false, startedAt: now() };
    setHandler(rotationStatusQuery, () => report);
    const enter = (phase: RotationPhase, note?: string) => {
      report.phase = phase;
      report.phases.push({ phase, at: now(), ...(note ? { note } : {}) });
      showDetails(`rotate ${input.credentialId}: ${phase}`, {
        phase,
        target: t.kind,
        'vault path': `secret/${input.vaultPath}`,
        'new version': report.newVersion,
        'active role': plan.activeRole,
        'pending role': plan.pendingRole,
        started: iso(report.startedAt),
        note,
      });
    };
    enter('plan');
    if (input.dryRun) {
      report.finishedAt = now();
      return report;
    }

    // The saga: what to undo if a phase before finish fails, newest first.
    const compensations: Array<{ what: string; undo: () => Promise<unknown> }> = [];
    try {
      enter('create');
      const created = await vault.createPendingVersion({ vaultPath: input.vaultPath, rotationId, length: input.length, ...(plan.pendingRole ? { username: plan.pendingRole } : {}) });
      report.newVersion = created.version;
      compensations.push({ what: `discard pending version ${created.version}`, undo: () => vault.discardPendingVersion({ vaultPath: input.vaultPath, rotationId, version: created.version }) });

      enter('set');
      if (t.kind === 'postgres-role') {
        const role = plan.pendingRole!;
        compensations.push({ what: `NOLOGIN ${role}`, undo: () => target.disableRoleLogin({ role }) });
        await target.setRolePassword({ vaultPath: input.vaultPath, version: created.version, role });
      } else if (t.kind === 'docker-secret') {
        const name = `${t.secretName}_v${created.version}`;
        compensations.push({ what: `remove Swarm secret ${name}`, undo: () => target.removeSwarmSecret({ name }) });
        await target.createSwarmSecret({ vaultPath: input.vaultPath, version: created.version, name, credentialId: input.credentialId });
        for (const service of t.services) {
          const before = await target.swarmServiceSecret({ service, secretName: t.secretName });
          if (before.version !== undefined && before.version !== created.version) {
            const previous = `${t.secretName}_v${before.version}`;
            compensations.push({ what: `put ${service} back on ${previous}`, undo: () => target.attachSwarmSecret({ service, secretName: t.secretName, name: previous, targetPath: t.targetPath ?? t.secretName, order: t.updateOrder, delayMs: t.updateDelayMs }) });
          }
          await target.attachSwarmSecret({ service, secretName: t.secretName, name, targetPath: t.targetPath ?? t.secretName, order: t.updateOrder, delayMs: t.updateDelayMs });
        }
      }

      enter('test');
      if (t.kind === 'postgres-role') {
        await target.testRoleLogin({ vaultPath: input.vaultPath, version: created.version, role: plan.pendingRole!, database: t.database });
      } else if (t.kind === 'docker-secret') {
        for (const service of t.services) await target.waitSwarmServiceOn({ service, name: `${t.secretName}_v${created.version}` });
      } else {
        await vault.checkVersionReadable({ vaultPath: input.vaultPath, version: created.version });
      }
      // Cancelled while the last step ran (it waited for the step to end): roll back rather than promote.
      if (CancellationScope.current().consideredCancelled) throw new CancelledFailure('cancelled before finish');
    } catch (err) {
      const failedIn = report.phase;
      const cancelled = isCancellation(err);
      const reason = cancelled ? 'cancelled' : rootMessage(err);
      // The undo runs even when the run was cancelled: the pending version is discarded, the pending role locked again.
      await undoing(async () => {
        enter('rolling-back', `${failedIn} ${cancelled ? 'cancelled' : `failed: ${reason}`}`);
        const failed: string[] = [];
        for (const c of compensations.reverse()) {
          try {
            await c.undo();
          } catch (undoErr) {
            log.error('compensation failed', { what: c.what, error: rootMessage(undoErr) });
            failed.push(`${c.what}: ${rootMessage(undoErr)}`);
          }
        }
        enter('rolled-back');
        if (cancelled && failed.length === 0) return failed;
        await alerts.sendAlert({
          severity: 'critical',
          service: input.credentialId,
          summary: cancelled ? `rotation cancelled in ${failedIn}; not everything could be undone` : `rotation failed in ${failedIn}; rolled back to the current credential`,
          details: { reason, 'vault path': `secret/${input.vaultPath}`, 'discarded version': report.newVersion ?? 'none', target: t.kind, ...(failed.length ? { 'not undone': failed.join('; ') } : {}) },
          runbook: RUNBOOK,
          workflowId: info.workflowId,
          dedupKey: `${input.credentialId}/rotation-failed`,
        });
        return failed;
      });
      if (cancelled) throw err;
      throw ApplicationFailure.create({ type: 'RotationFailed', nonRetryable: true, message: `rotation of ${input.credentialId} failed in ${failedIn} (${reason}); rolled back, the current credential is unchanged`, details: [report] });
    }

    // Past the point of no return (the new version becomes current): finish even if cancelled meanwhile.
    await undoing(async () => {
      enter('finish');
      const promoted = await vault.promotePendingVersion({ vaultPath: input.vaultPath, rotationId, version: report.newVersion! });
      if (promoted.previous !== undefined) report.previousVersion = promoted.previous;
      if (t.kind === 'postgres-role' && plan.activeRole) {
        const { waitRoleSessionsGone } = proxyActivities<Activities>({
          startToCloseTimeout: input.gracePeriodMs + 60_000,
          heartbeatTimeout: '10s',
          retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
        });
        const drained = await waitRoleSessionsGone({ role: plan.activeRole, graceMs: input.gracePeriodMs });
        if (drained.drained) {
          await target.disableRoleLogin({ role: plan.activeRole });
          report.revokedOld = true;
        } else {
          report.oldStillInUse = drained.sessions;
          await alerts.sendAlert({
            severity: 'warning',
            service: input.credentialId,
            summary: `old credential still in use after the grace period; not revoked`,
            details: { role: plan.activeRole, sessions: drained.sessions, 'grace period ms': input.gracePeriodMs, 'new version': report.newVersion! },
            runbook: RUNBOOK,
            workflowId: info.workflowId,
            dedupKey: `${input.credentialId}/old-credential-in-use`,
          });
        }
      } else if (t.kind === 'docker-secret') {
        await target.removeOldSwarmSecrets({ secretName: t.secretName, keepName: `${t.secretName}_v${report.newVersion}` });
        report.revokedOld = true;
      }
    });
    report.finishedAt = now();
    enter('done');
    return report;
  };
  // A dry run only reads; a rotation holds the credential's lease (one rotation of a credential at a time).
  if (input.dryRun) return run();
  return holdingLease({ service: `credential/${input.credentialId}`, runbook: RUNBOOK, waitForLease: input.waitForLease, leaseWaitTimeoutMs: input.leaseWaitTimeoutMs, maxHoldMs: input.gracePeriodMs + 3 * 3_600_000 }, run);
}
