/**
 * Plan -> approval -> apply, for every runbook that changes capacity (and any other that wants it).
 *
 * The runbook computes its plan, then calls `gate(plan, input)`:
 *  - the plan is always visible through the `plan` query (and in the UI's current details);
 *  - dry run: returns 'dry-run' at once, nothing changes;
 *  - approval "none": returns 'approved' at once;
 *  - approval "required": waits for an `approve` or `reject` update ({ by, reason }, validated
 *    synchronously, so a malformed decision is rejected without entering history as accepted),
 *    up to the approval timeout: 'approved', 'rejected' or 'timed-out'.
 * The decision (who, why, when) is returned and kept for the `plan` query, so the plan, the
 * approver and the outcome all live in one history.
 */
import { ApplicationFailure, condition, defineQuery, defineUpdate, setHandler } from '@temporalio/workflow';
import { decisionSchema, type Decision } from '../../schemas/approval';
import { describeIssues } from '../../schemas/common';
import { now } from './deterministic';

export type GateOutcome = 'dry-run' | 'approved' | 'rejected' | 'timed-out';

export interface PlanView<P> {
  plan: P | undefined;
  approval: 'none' | 'required';
  state: 'planning' | 'awaiting-approval' | GateOutcome;
  decision?: Decision & { verdict: 'approve' | 'reject'; at: number };
  deadline?: number;
}

export const planQuery = defineQuery<PlanView<unknown>>('plan');
export const approveUpdate = defineUpdate<PlanView<unknown>, [Decision]>('approve');
export const rejectUpdate = defineUpdate<PlanView<unknown>, [Decision]>('reject');

export interface GateOptions {
  approval: 'none' | 'required';
  approvalTimeoutMs: number;
  dryRun: boolean;
}

/** Install the plan query early (before the plan exists) so the UI can always ask. */
export function planGate<P>(opts: GateOptions) {
  const view: PlanView<P> = { plan: undefined, approval: opts.approval, state: 'planning' };
  let decided = false;

  setHandler(planQuery, () => view);
  const validate = (d: Decision) => {
    const parsed = decisionSchema.safeParse(d);
    if (!parsed.success) throw new Error(`invalid decision: ${describeIssues(parsed.error).join('; ')}`);
    if (view.state !== 'awaiting-approval') throw new Error(`nothing to decide: the plan is ${view.state}`);
  };
  const decide = (verdict: 'approve' | 'reject') => (d: Decision) => {
    // The validator ran against the same state; a second decision racing in is refused here too.
    // An ApplicationFailure rejects the update; a plain Error would fail the workflow task instead.
    if (decided || view.state !== 'awaiting-approval') throw ApplicationFailure.nonRetryable(`nothing to decide: the plan is ${view.state}`, 'NothingToDecide');
    const parsed = decisionSchema.safeParse(d);
    if (!parsed.success) throw ApplicationFailure.nonRetryable(`invalid decision: ${describeIssues(parsed.error).join('; ')}`, 'InvalidDecision');
    decided = true;
    view.decision = { ...parsed.data, verdict, at: now() };
    view.state = verdict === 'approve' ? 'approved' : 'rejected';
    return view as PlanView<unknown>;
  };
  setHandler(approveUpdate, decide('approve'), { validator: validate });
  setHandler(rejectUpdate, decide('reject'), { validator: validate });

  return {
    view,
    /**
     * Publish the plan and wait for the outcome the options call for. Called again (a re-plan: the
     * service changed while the plan waited), it asks afresh: the earlier decision was for another plan.
     */
    async gate(plan: P): Promise<{ outcome: GateOutcome; decision?: PlanView<P>['decision'] }> {
      view.plan = plan;
      decided = false;
      delete view.decision;
      if (opts.dryRun) {
        view.state = 'dry-run';
        return { outcome: 'dry-run' };
      }
      if (opts.approval === 'none') {
        view.state = 'approved';
        return { outcome: 'approved' };
      }
      view.state = 'awaiting-approval';
      view.deadline = now() + opts.approvalTimeoutMs;
      const inTime = await condition(() => decided, opts.approvalTimeoutMs);
      if (!inTime) view.state = 'timed-out';
      return { outcome: view.state as GateOutcome, ...(view.decision ? { decision: view.decision } : {}) };
    },
  };
}
