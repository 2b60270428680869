/**
 * A saga's compensations (Temporal's saga sample): register the undo of a step *before* doing the
 * step (every undo is an idempotent activity, so undoing a step that never happened is harmless),
 * and on failure run them newest first. A failing undo is logged and the rest still run.
 * Compensations run in a non-cancellable scope: a cancelled run (UI, CLI, `temporal workflow
 * cancel`) still undoes what it did.
 */
import { CancellationScope, log } from '@temporalio/workflow';
import { rootMessage } from './errors';

export class Saga {
  private readonly steps: Array<{ what: string; undo: () => Promise<unknown> }> = [];

  add(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Run every compensation, newest first; returns what could not be undone. */
  compensate(): Promise<Array<{ what: string; error: string }>> {
    return CancellationScope.nonCancellable(() => this.runAll());
  }

  private async runAll(): Promise<Array<{ what: string; error: string }>> {
    const failed: Array<{ what: string; error: string }> = [];
    for (const s of this.steps.splice(0).reverse()) {
      try {
        await s.undo();
      } catch (err) {
        const error = rootMessage(err);
        log.error('compensation failed', { what: s.what, error });
        failed.push({ what: s.what, error });
      }
    }
    return failed;
  }
}
