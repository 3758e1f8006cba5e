/**
 * The shape of a side-by-side workload and of what one run of it reports.
 *
 * A workload runs once per system on a fresh cluster (`RunEnv.cluster`) and
 * returns a `SideRun`: named figures (each saying whether higher or lower is
 * better), plus the raw material (latency summary, per-second curve, server
 * and client CPU). Workloads that generate load from client processes give a
 * `worker` (run inside worker.ts) and call `pooled` (measure.ts) from `run`;
 * the others drive the cluster from the coordinator itself.
 */

import type { Cluster, System } from "./cluster.ts";
import type { HistogramSummary } from "./histogram.ts";
import type { Progress } from "./progress.ts";
import type { WorkerContext } from "./worker-context.ts";

/** The command-line options every workload understands (workload-specific ones may be undefined). */
export interface Options {
  readonly seconds: number;
  readonly warmup: number;
  readonly clients: number;
  readonly concurrency: number;
  readonly members: 1 | 3;
  readonly vsEtcd: boolean;
  readonly leases: number | undefined;
  readonly kills: number | undefined;
  readonly ttl: number | undefined;
  readonly streams: number | undefined;
}

export type Better = "higher" | "lower" | "none";

export interface Figure {
  /** Stable name, used to pair the systems and in goals.ts. */
  readonly id: string;
  readonly label: string;
  readonly value: number | null;
  readonly better: Better;
  /** Decimals when printed. */
  readonly digits: number;
}

export interface ServerUsage {
  /** CPU each member used in the window, microseconds (null: not running at an end of it). */
  readonly cpuUs: readonly (number | null)[];
  /** RSS of each member at the end of the window, bytes. */
  readonly rssBytes: readonly (number | null)[];
  readonly windowMs: number;
  /** All members' CPU over the operations of the window. */
  readonly cpuUsPerOp: number | null;
  /** All members' WAL fsyncs over the operations of the window (from /metrics; undefined: not scraped). */
  readonly fsyncsPerOp?: number | null;
}

export interface SideRun {
  readonly figures: readonly Figure[];
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly latencyUs: HistogramSummary | undefined;
  readonly perSecond: readonly number[] | undefined;
  readonly server: ServerUsage | undefined;
  /** CPU of each client process in the window, % of one core. */
  readonly clientCpuPct: readonly number[];
  readonly notes: readonly string[];
}

export interface RunEnv {
  /** The workload's name (its worker function's, in client processes). */
  readonly workload: string;
  readonly system: System;
  readonly cluster: Cluster;
  readonly opts: Options;
  readonly progress: Progress;
  /** "leasehold x3 grant": the progress line's prefix. */
  readonly label: string;
}

export interface WorkloadDef {
  readonly name: string;
  readonly summary: string;
  /** A cluster size the workload needs whatever --members says. */
  readonly members?: 1 | 3;
  /** One line describing the configuration the options give. */
  readonly describe: (opts: Options) => string;
  readonly worker?: (ctx: WorkerContext) => Promise<void>;
  readonly run: (env: RunEnv) => Promise<SideRun>;
}
