/**
 * SIGINT and SIGTERM for the client commands that run until stopped
 * (acquire, lock, elect, watch): caught while such a command runs, so it can
 * release what it holds before exiting; the default handling comes back with
 * `dispose()`.
 */

import { constants } from "node:os";

/** A shell's exit code for a process ended by `signal` (128 + its number). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** Resolves once `signal` has aborted (at once if it already has). */
export function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** SIGINT and SIGTERM, caught: `signal` aborts at the first, `received` names it. */
export class TerminationSignals {
  private readonly controller = new AbortController();
  /** The first termination signal received, if any. */
  received: NodeJS.Signals | undefined;
  private readonly handlers = (["SIGINT", "SIGTERM"] as const).map((name) => {
    const fn = () => {
      this.received ??= name;
      this.controller.abort(new Error(`leasehold: ${name}`));
    };
    process.on(name, fn);
    return { name, fn };
  });

  /** Aborts at the first SIGINT or SIGTERM. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Stops catching: the default handling (exit) comes back. */
  dispose(): void {
    for (const h of this.handlers) process.off(h.name, h.fn);
  }
}
