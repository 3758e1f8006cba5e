/**
 * The side-by-side benchmark (issue 6 §1):
 *
 *   npm run bench -- <workload>|all [--vs-etcd] [--members 1|3] [--seconds N]
 *                                   [--clients N] [--concurrency N] …
 *
 * For each workload: a fresh leasehold cluster, the workload, the cluster
 * stopped; then (with --vs-etcd, when `etcd` is on the PATH) the same for
 * etcd with the same flags and the same client code. Prints its configuration,
 * a one-line progress on stderr, then the table (figure, leasehold, etcd,
 * ratio) and one JSON line of results. `all` runs every workload (on 3
 * members unless --members 1), prints the goals of issue 6 §2 with met/not met, and writes
 * bench/results/<date>.json and bench/results/<date>.md.
 *
 * A workload that fails on one system is reported as failed and the run goes
 * on. Everything started is stopped, also on errors and SIGINT (cluster.ts).
 * Exit code 1 when some workload failed, 2 on bad usage.
 */

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { machineInfo, machineLines, parseWorkloadArgs } from "../common.ts";
import { WORKLOADS } from "../workloads/index.ts";
import { etcdVersion, installCleanup, type System, startCluster, stopCluster } from "./cluster.ts";
import { checkGoals, type GoalRow } from "./goals.ts";
import { Progress } from "./progress.ts";
import { goalsText, markdown, type Outcome, textTable, type WorkloadResult } from "./report.ts";
import type { Options, SideRun, WorkloadDef } from "./workload.ts";

const RESULTS = fileURLToPath(new URL("../results/", import.meta.url));

export const USAGE = `usage: npm run bench -- <workload>|all [options]
  side-by-side workloads: ${WORKLOADS.map((w) => w.name).join(", ")}
  --vs-etcd          also run etcd (when on the PATH) with the same flags and client; print the ratios
  --members 1|3      cluster size (default 3, as the goals are stated; failover always 3)
  --seconds N        measured seconds per throughput workload (default 10, 1..600)
  --warmup N         seconds of load before measuring (default 5, 0..60; fresh servers and
                     clients take ~5 s to reach their steady rate)
  --clients N        client processes (default 2, 1..16)
  --concurrency N    requests in flight per client process (default 64, 1..4096)
  --leases N         keepalive (10,000), expiry (20,000), memory (100,000)
  --ttl N            expiry: the leases' TTL in seconds (default 10)
  --streams N        keepalive: LeaseKeepAlive streams over all client processes (default 64)
  --kills N          failover: leader kills (default 3)
`;

const INT_FLAGS: Record<string, readonly [number, number]> = {
  "--members": [1, 3],
  "--seconds": [1, 600],
  "--warmup": [0, 60],
  "--clients": [1, 16],
  "--concurrency": [1, 4096],
  "--leases": [1, 1_000_000],
  "--ttl": [2, 3600],
  "--streams": [1, 10_000],
  "--kills": [1, 100],
};

export function parseOptions(args: readonly string[]): Options | string {
  const v: Record<string, number> = {};
  let vsEtcd = false;
  for (let i = 0; i < args.length; i++) {
    let flag = args[i]!;
    let value: string | undefined;
    const eq = flag.indexOf("=");
    if (eq > 0) {
      value = flag.slice(eq + 1);
      flag = flag.slice(0, eq);
    }
    if (flag === "--vs-etcd") {
      vsEtcd = true;
      continue;
    }
    const range = INT_FLAGS[flag];
    if (range === undefined) return `unknown option ${flag}`;
    value ??= args[++i];
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < range[0] || n > range[1])
      return `${flag} takes an integer in ${range[0]}..${range[1]}`;
    v[flag.slice(2)] = n;
  }
  const members = v.members ?? 3;
  if (members !== 1 && members !== 3) return "--members takes 1 or 3";
  return {
    seconds: v.seconds ?? 10,
    warmup: v.warmup ?? 5,
    clients: v.clients ?? 2,
    concurrency: v.concurrency ?? 64,
    members,
    vsEtcd,
    leases: v.leases,
    kills: v.kills,
    ttl: v.ttl,
    streams: v.streams,
  };
}

/**
 * Builds dist/ (scripts/build.js) so the members run the compiled code that
 * `npm start` runs, as bin/leasehold.js does once the build is fresh; says how
 * they will run. LEASEHOLD_TSX=1 measures the tsx path instead.
 */
function buildLeasehold(): string {
  if (process.env.LEASEHOLD_TSX === "1") return "src/ through tsx (LEASEHOLD_TSX=1)";
  const script = fileURLToPath(new URL("../../scripts/build.js", import.meta.url));
  const r = spawnSync(process.execPath, [script], { stdio: "inherit" });
  if (r.status !== 0) throw new Error("bench: building dist/ failed (npm run build)");
  return "compiled dist/";
}

function leaseholdVersion(): string {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" });
  if (head.status !== 0) return "unknown";
  const dirty = spawnSync("git", ["status", "--porcelain", "--", "src", "bin"], { encoding: "utf8" });
  return `${head.stdout.trim()}${dirty.stdout.trim() === "" ? "" : "+uncommitted"}`;
}

async function runOn(def: WorkloadDef, system: System, opts: Options, progress: Progress): Promise<Outcome> {
  const size = def.members ?? opts.members;
  const label = `${system} x${size} ${def.name}`;
  progress.update(`${label}: starting ${size} member(s)`, true);
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  try {
    cluster = await startCluster(system, size);
    const run: SideRun = await def.run({ workload: def.name, system, cluster, opts, progress, label });
    return run;
  } catch (e) {
    progress.clear();
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`bench: ${label} failed: ${message}\n`);
    return { error: message.split("\n")[0]! };
  } finally {
    if (cluster !== undefined) {
      progress.update(`${label}: stopping the cluster`, true);
      await stopCluster(cluster);
    }
    progress.clear();
  }
}

async function runWorkload(
  def: WorkloadDef,
  opts: Options,
  etcd: boolean,
  progress: Progress,
): Promise<WorkloadResult> {
  const leasehold = await runOn(def, "leasehold", opts, progress);
  const et = etcd ? await runOn(def, "etcd", opts, progress) : null;
  return {
    workload: def.name,
    config: def.describe(opts),
    members: def.members ?? opts.members,
    leasehold,
    etcd: et,
  };
}

/** A results path that does not exist yet: bench/results/<date>[-n].<ext> for both extensions. */
function resultsBase(date: string): string {
  mkdirSync(RESULTS, { recursive: true });
  for (let n = 1; ; n++) {
    const base = `${RESULTS}${date}${n === 1 ? "" : `-${n}`}`;
    if (!existsSync(`${base}.json`) && !existsSync(`${base}.md`)) return base;
  }
}

/** `npm run bench -- <name> …` for a side-by-side workload, or `all`. */
export async function sideBench(name: string, args: readonly string[]): Promise<void> {
  const opts = parseWorkloadArgs(name, USAGE, args, parseOptions);
  if (opts === undefined) return;
  installCleanup();
  const defs = name === "all" ? WORKLOADS : WORKLOADS.filter((w) => w.name === name);
  const version = opts.vsEtcd ? etcdVersion() : undefined;
  const withEtcd = version !== undefined;
  const m = machineInfo();
  const command = `npm run bench -- ${[name, ...args].join(" ")}`;
  const how = buildLeasehold();
  const header = [
    `bench ${name}`,
    ...machineLines(m),
    `  command             ${command}`,
    `  leasehold           ${leaseholdVersion()} (node bin/leasehold.js serve: ${how})`,
    `  etcd                ${opts.vsEtcd ? (version ?? "not on the PATH: leasehold only") : "not run (add --vs-etcd)"}`,
    `  servers             127.0.0.1, data directories on disk, --heartbeat-interval 100 --election-timeout 1000, a fresh cluster per workload and system`,
    `  load                ${opts.clients} client process(es), ${opts.concurrency} in flight each; ${opts.warmup} s warmup, ${opts.seconds} s measured (throughput workloads)`,
  ];
  process.stdout.write(`${header.join("\n")}\n\n`);
  const progress = new Progress();
  const results: WorkloadResult[] = [];
  for (const def of defs) {
    const r = await runWorkload(def, opts, withEtcd, progress);
    results.push(r);
    process.stdout.write(`${textTable(r)}\n`);
    if (name !== "all")
      process.stdout.write(
        `${JSON.stringify({ workload: name, machine: m, options: opts, etcd: version ?? null, result: r })}\n`,
      );
  }
  const failed = results.some((r) => "error" in r.leasehold || (r.etcd !== null && "error" in r.etcd));
  if (name === "all") {
    const goals: GoalRow[] = checkGoals(results);
    process.stdout.write(`${goalsText(goals)}\n`);
    const date = new Date().toISOString().slice(0, 10);
    const summary = {
      workload: "all",
      date,
      command,
      machine: m,
      options: opts,
      etcd: version ?? null,
      goals,
      results,
    };
    const line = JSON.stringify(summary);
    const base = resultsBase(date);
    writeFileSync(`${base}.json`, `${line}\n`);
    writeFileSync(`${base}.md`, markdown(`leasehold vs etcd, ${date}`, header, goals, results));
    process.stdout.write(`${line}\n`);
    process.stderr.write(`bench: wrote ${base}.json and ${base}.md\n`);
  }
  if (failed) process.exitCode = 1;
}
