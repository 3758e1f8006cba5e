/**
 * Benchmark entry point: `npm run bench -- <workload> [options]`.
 *
 * Benchmarks are programs, not tests (CONVENTIONS 14): each workload prints its
 * configuration, then its figures, then one JSON line of results. This file
 * only dispatches; a new workload adds one row to WORKLOADS.
 *
 * The side-by-side workloads of issue 6 (harness/side.ts: grant, keepalive,
 * put, put-shared-lease, lock, expiry, failover, memory, watch, and `all`)
 * are listed after the older ones; the older multi-kill failover benchmark
 * (failover.ts) is `failover-gaps`, since `failover` is now the side-by-side
 * one (which also keeps a lease alive through the kills).
 *
 * Exit codes: 0 done, 1 the workload failed, 2 bad usage (unknown workload).
 */

import { failoverBench } from "./failover.ts";
import { sideBench } from "./harness/side.ts";
import { raftBench } from "./raft.ts";
import { serverBench } from "./server.ts";
import { stateBench } from "./state.ts";
import { WORKLOADS as SIDE_BY_SIDE } from "./workloads/index.ts";

/** One runnable workload: `args` are the command-line words after its name. */
interface Workload {
  readonly summary: string;
  readonly run: (args: readonly string[]) => void | Promise<void>;
}

/** The registry, in the order `--help` lists it. */
const WORKLOADS: ReadonlyMap<string, Workload> = new Map<string, Workload>([
  [
    "raft",
    {
      summary: "3-member in-process Raft cluster, no I/O: committed 100-byte entries/s per batch size",
      run: raftBench,
    },
  ],
  [
    "failover-gaps",
    {
      summary:
        "3 member processes under write load: kill -9 the leader N times, gap to the first write acknowledged after",
      run: failoverBench,
    },
  ],
  [
    "server",
    {
      summary:
        "real member processes (1 and 3) over gRPC: puts/s, lease grants/s, fsyncs/s; etcd side by side",
      run: serverBench,
    },
  ],
  [
    "state",
    {
      summary:
        "state layer alone, no Raft/I/O: put-with-lease onto a 100k-key lease vs a fresh one; expiring 100k leases",
      run: stateBench,
    },
  ],
  ...SIDE_BY_SIDE.map((w): [string, Workload] => [
    w.name,
    { summary: `${w.summary} [side by side: --vs-etcd]`, run: (args) => sideBench(w.name, args) },
  ]),
  [
    "all",
    {
      summary:
        "every side-by-side workload, 3 members by default (with --vs-etcd: and etcd); goals met/not met; writes bench/results/<date>.json and .md",
      run: (args) => sideBench("all", args),
    },
  ],
]);

function usage(): string {
  const names = [...WORKLOADS.keys()];
  const width = Math.max(...names.map((n) => n.length));
  const rows = [...WORKLOADS].map(([name, w]) => `  ${name.padEnd(width)}  ${w.summary}`);
  return `usage: npm run bench -- <workload> [options]\n\nworkloads:\n${rows.join("\n")}\n`;
}

async function main(argv: readonly string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(usage());
    return;
  }
  if (name === undefined) {
    process.stderr.write(`bench: no workload given\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  const workload = WORKLOADS.get(name);
  if (workload === undefined) {
    process.stderr.write(`bench: unknown workload '${name}'\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  await workload.run(rest);
}

await main(process.argv.slice(2));
