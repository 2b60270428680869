import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';

/** The innermost message of a failure chain (ActivityFailure -> ApplicationFailure -> ...). */
export function rootMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

/** An activity failed with this ApplicationFailure type (e.g. 'BackupCorrupt'). */
export function activityFailedWith(err: unknown, type: string): err is ActivityFailure & { cause: ApplicationFailure } {
  return err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === type;
}
