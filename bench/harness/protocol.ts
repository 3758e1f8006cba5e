/**
 * The messages between the coordinator (pool.ts) and its client processes
 * (worker.ts), over the IPC channel of node:child_process fork.
 *
 * A run: the coordinator sends `job`; the worker sets up (grants leases, opens
 * streams …) and answers `ready`; once all are ready the coordinator sends
 * phase `warm` (load on, nothing counted), then `measure` (counting from its
 * arrival; the coordinator samples the servers' /proc right then), then `stop`
 * (counting ends; /proc sampled again). Meanwhile the worker sends `tick`s
 * with its running count for the progress line, and finally one `result`
 * (or `error`) before it exits.
 */

import type { HistogramJson } from "./histogram.ts";

export type Phase = "setup" | "warm" | "measure" | "stop";

export interface Job {
  /** The workload whose worker function runs (workloads/index.ts). */
  readonly workload: string;
  /** This worker's number, 0 ≤ index < count. */
  readonly index: number;
  readonly count: number;
  /** host:port of every member, in member order. */
  readonly endpoints: readonly string[];
  /** Workload parameters (numbers and strings only: they cross IPC as JSON). */
  readonly params: Readonly<Record<string, number | string>>;
}

/** What one worker measured between `measure` and `stop`. */
export interface WorkerResult {
  /** Operations completed in the window (the workload says what one is). */
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** Latencies in microseconds. */
  readonly latency: HistogramJson;
  /** Operations completed in each second of the window. */
  readonly perSecond: readonly number[];
  /** This process's CPU time in the window (user + system), microseconds. */
  readonly cpuUs: number;
  /** The window as this process saw it, microseconds. */
  readonly wallUs: number;
  /** Workload-specific counters, summed over workers. */
  readonly extra: Readonly<Record<string, number>>;
}

export type ToWorker =
  | { readonly t: "job"; readonly job: Job }
  | { readonly t: "phase"; readonly phase: Phase };

export type FromWorker =
  | { readonly t: "ready" }
  | { readonly t: "tick"; readonly ops: number }
  | { readonly t: "result"; readonly result: WorkerResult }
  | { readonly t: "error"; readonly message: string };
