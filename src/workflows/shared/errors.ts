/** The innermost message of a failure chain (ActivityFailure -> ApplicationFailure -> ...). */
export function rootMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}
