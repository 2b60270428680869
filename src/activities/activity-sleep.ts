/**
 * The sleep for polling loops inside activities: Temporal's `Context.current().sleep(ms)`, which
 * rejects with a CancelledFailure as soon as the activity is cancelled (so a cancelled runbook does
 * not wait out the poll). Outside an activity (tests, benches, the stack scripts) a plain timer.
 */
import { Context } from '@temporalio/activity';

export function activitySleep(ms: number): Promise<void> {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
  return ctx.sleep(ms);
}
