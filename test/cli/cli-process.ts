/**
 * The `leasehold` command as a child process, for the CLI tests: run it to
 * the end (`runCli`), or start it and wait for lines of its output
 * (`CliProcess.waitForOutput`) with a deadline, never a sleep. The sources
 * run through tsx (LEASEHOLD_TSX=1), so a stale dist/ is never tested. Every
 * process started here and still running is killed by PID in `stopAllCli()`.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../../bin/leasehold.js", import.meta.url));
const DEFAULT_DEADLINE_MS = 20_000;

/** How a run ended and what it printed. */
export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

const running = new Set<ChildProcess>();

/** A running `leasehold` process; stdin is a pipe (its command, if any, inherits it). */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<CliResult>;
  private readonly listeners = new Set<() => void>();

  constructor(args: readonly string[]) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, LEASEHOLD_TSX: "1" },
    });
    running.add(this.child);
    this.child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      this.stdout += s;
      this.notify();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (s: string) => {
      this.stderr += s;
      this.notify();
    });
    // "exit", not "close": a command the CLI started may outlive it holding the pipes (the bug a test looks for).
    this.child.once("exit", () => {
      running.delete(this.child);
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      this.child.once("close", (code, signal) => {
        this.notify();
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /** Resolves with the match once stdout matches `pattern`; rejects if the process ends first or at the deadline. */
  waitForOutput(pattern: RegExp, deadlineMs = DEFAULT_DEADLINE_MS): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.stdout.match(pattern);
        if (m !== null) done(() => resolve(m));
        else if (this.child.exitCode !== null || this.child.signalCode !== null)
          done(() => reject(new Error(`exited before printing ${pattern}:\n${this.describe()}`)));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`no ${pattern} within ${deadlineMs} ms:\n${this.describe()}`))),
        deadlineMs,
      );
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        fn();
      };
      this.listeners.add(check);
      check();
    });
  }

  /** The exit, or a rejection at the deadline (the process is then killed). */
  async exit(deadlineMs = DEFAULT_DEADLINE_MS): Promise<CliResult> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill("SIGKILL");
        reject(new Error(`did not exit within ${deadlineMs} ms:\n${this.describe()}`));
      }, deadlineMs);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` to the leasehold process (by its PID). */
  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  private notify(): void {
    for (const fn of [...this.listeners]) fn();
  }

  private describe(): string {
    return `stdout:\n${this.stdout}\nstderr:\n${this.stderr}`;
  }
}

/** Runs `leasehold args` to its end (bounded by a deadline). */
export function runCli(args: readonly string[], deadlineMs = DEFAULT_DEADLINE_MS): Promise<CliResult> {
  const p = new CliProcess(args);
  p.child.stdin!.end();
  return p.exit(deadlineMs);
}

/** Whether a process with this PID exists (signal 0 checks without signalling). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw e;
  }
}

/** Kills (SIGKILL, by PID) every CLI process these tests started that still runs. */
export async function stopAllCli(): Promise<void> {
  await Promise.all(
    [...running].map(
      (c) =>
        new Promise<void>((resolve) => {
          c.once("exit", () => resolve());
          c.kill("SIGKILL");
        }),
    ),
  );
}
