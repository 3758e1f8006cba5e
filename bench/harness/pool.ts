/**
 * The coordinator side of the client processes: forks `count` workers
 * (worker.ts, under tsx), hands each its job, and drives the phases of
 * protocol.ts: all ready → warm for `warmupMs` → measure for `measureMs` →
 * stop; `onMeasureStart`/`onMeasureStop` run right as the window opens and
 * closes (that is where the servers' /proc is sampled). Returns every
 * worker's result and the window's length as the coordinator timed it.
 *
 * Contract: a worker that reports an error, exits without a result, or is not
 * ready within `setupTimeoutMs` fails the run; every worker is killed by PID
 * when the run ends, however it ends.
 */

import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { fmtInt } from "../common.ts";
import { track } from "./cluster.ts";
import type { Progress } from "./progress.ts";
import type { FromWorker, Job, ToWorker, WorkerResult } from "./protocol.ts";

const WORKER = fileURLToPath(new URL("./worker.ts", import.meta.url));

export interface PoolOptions {
  readonly workload: string;
  readonly count: number;
  readonly endpoints: readonly string[];
  readonly params: Readonly<Record<string, number | string>>;
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly onMeasureStart: () => void;
  readonly onMeasureStop: () => void;
  readonly progress: Progress;
  /** Prefix of the progress line, e.g. "leasehold x3 grant". */
  readonly label: string;
  readonly setupTimeoutMs?: number;
}

export interface PoolOutcome {
  readonly results: readonly WorkerResult[];
  readonly windowMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Fleet {
  readonly procs: ChildProcess[] = [];
  readonly ready: boolean[] = [];
  readonly ticks: number[] = [];
  readonly results: (WorkerResult | undefined)[] = [];
  failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(opts: PoolOptions) {
    for (let i = 0; i < opts.count; i++) {
      const child = track(
        fork(WORKER, [], {
          execArgv: ["--import", import.meta.resolve("tsx")],
          stdio: ["ignore", "inherit", "inherit", "ipc"],
        }),
      );
      this.procs.push(child);
      this.ready.push(false);
      this.ticks.push(0);
      this.results.push(undefined);
      child.on("message", (m: FromWorker) => {
        if (m.t === "ready") this.ready[i] = true;
        else if (m.t === "tick") this.ticks[i] = m.ops;
        else if (m.t === "result") this.results[i] = m.result;
        else this.failure ??= new Error(`client process ${i}: ${m.message}`);
        this.wake?.();
      });
      child.once("exit", (code, signal) => {
        if (this.results[i] === undefined)
          this.failure ??= new Error(`client process ${i} exited (${code ?? signal}) without a result`);
        this.wake?.();
      });
      const job: Job = {
        workload: opts.workload,
        index: i,
        count: opts.count,
        endpoints: opts.endpoints,
        params: opts.params,
      };
      this.send(i, { t: "job", job });
    }
  }

  send(i: number, m: ToWorker): void {
    const p = this.procs[i]!;
    if (p.connected) p.send(m);
  }

  broadcast(m: ToWorker): void {
    for (let i = 0; i < this.procs.length; i++) this.send(i, m);
  }

  /** Resolves when `cond` holds; rejects on a worker failure or after `timeoutMs`. */
  async until(cond: () => boolean, timeoutMs: number, what: string, onWait?: () => void): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!cond()) {
      if (this.failure !== undefined) throw this.failure;
      if (performance.now() > deadline)
        throw new Error(`client processes: ${what} not within ${timeoutMs} ms`);
      onWait?.();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 250);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
    if (this.failure !== undefined) throw this.failure;
  }

  killAll(): void {
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  }
}

export async function runPool(opts: PoolOptions): Promise<PoolOutcome> {
  const fleet = new Fleet(opts);
  const { progress, label } = opts;
  try {
    const t0 = performance.now();
    await fleet.until(
      () => fleet.ready.every(Boolean),
      opts.setupTimeoutMs ?? 300_000,
      "setup",
      () =>
        progress.update(
          `${label}: setting up ${opts.count} client process(es) … ${Math.round((performance.now() - t0) / 1000)} s`,
        ),
    );
    fleet.broadcast({ t: "phase", phase: "warm" });
    progress.update(`${label}: warming up ${opts.warmupMs / 1000} s`, true);
    await sleep(opts.warmupMs);
    if (fleet.failure !== undefined) throw fleet.failure;
    opts.onMeasureStart();
    const start = performance.now();
    fleet.broadcast({ t: "phase", phase: "measure" });
    const end = start + opts.measureMs;
    while (performance.now() < end) {
      if (fleet.failure !== undefined) throw fleet.failure;
      await sleep(Math.min(250, end - performance.now()));
      const secs = (performance.now() - start) / 1000;
      const ops = fleet.ticks.reduce((a, b) => a + b, 0);
      const bar = "#".repeat(Math.round((20 * secs * 1000) / opts.measureMs)).padEnd(20, ".");
      progress.update(
        `${label}: [${bar}] ${secs.toFixed(0)}/${opts.measureMs / 1000} s  ${fmtInt(ops)} ops  ${fmtInt(ops / Math.max(secs, 0.001))}/s`,
      );
    }
    fleet.broadcast({ t: "phase", phase: "stop" });
    const windowMs = performance.now() - start;
    opts.onMeasureStop();
    progress.update(`${label}: stopping client processes`, true);
    await fleet.until(() => fleet.results.every((r) => r !== undefined), 60_000, "results");
    progress.clear();
    return { results: fleet.results as WorkerResult[], windowMs };
  } finally {
    fleet.killAll();
  }
}
