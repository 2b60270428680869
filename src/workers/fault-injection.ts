/**
 * Fault injection for crash tests: the hardest moment for an activity to die is right after its
 * side effect is done and before Temporal hears about it (the retry then finds the work already
 * done). With DURABLE_OPS_FAULT_CRASH_AFTER=<activity>[,<activity>...] the worker SIGKILLs itself
 * at exactly that moment, the first time one of those activities completes. Off unless set.
 */
import type { ActivityInboundCallsInterceptor, ActivityExecuteInput, Next } from '@temporalio/worker';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';

export function crashAfterInterceptor(activityTypes: string[]): ActivityInterceptorsFactory {
  const names = new Set(activityTypes);
  return (ctx) => {
    const inbound: ActivityInboundCallsInterceptor = {
      async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>) {
        const result = await next(input);
        if (names.has(ctx.info.activityType)) {
          process.stderr.write(`fault injection: SIGKILL after ${ctx.info.activityType} completed (attempt ${ctx.info.attempt})\n`);
          process.kill(process.pid, 'SIGKILL');
          await new Promise(() => undefined); // never report
        }
        return result;
      },
    };
    return { inbound };
  };
}
