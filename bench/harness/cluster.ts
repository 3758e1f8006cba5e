/**
 * The servers a side-by-side run measures: leasehold (`node bin/leasehold.js
 * serve`) or etcd 3.4 (`etcd` on the PATH), 1 or 3 members, started with the
 * very same etcd flags on free 127.0.0.1 ports, each member with its data
 * directory on disk under os.tmpdir().
 *
 * Contract:
 * - `startCluster` resolves once every member answers Maintenance.Status with
 *   a leader and a Put has gone through; if it cannot (a member exits, 30 s
 *   pass) it stops what it started and throws with the member's log tail.
 * - Every process this module (or `track`) starts is recorded by PID until it
 *   exits. `stopCluster` stops a cluster (SIGTERM, SIGKILL after 5 s) and
 *   removes its data directory. On process exit, SIGINT or SIGTERM, whatever
 *   is still running is killed with SIGKILL by PID and the data directories
 *   are removed (`installCleanup`, idempotent): nothing outlives the run.
 * - `sampleCluster` reads each member's CPU time and RSS from /proc
 *   (procstat.ts); a member that is not running samples as undefined.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BenchClient } from "./client.ts";
import { type ProcSample, sampleProc } from "./procstat.ts";

export type System = "leasehold" | "etcd";

const BIN = fileURLToPath(new URL("../../bin/leasehold.js", import.meta.url));
/** How much of a member's log is kept (the tail), for error messages. */
const LOG_TAIL = 64 * 1024;

export interface Member {
  readonly name: string;
  readonly system: System;
  readonly args: readonly string[];
  /** host:port of its client URL. */
  readonly endpoint: string;
  child: ChildProcess;
  log: string;
}

export interface Cluster {
  readonly system: System;
  readonly members: Member[];
  readonly dir: string;
  /** Flags every member got, less the per-member ones (for the report). */
  readonly flags: string;
}

export interface ClusterOptions {
  readonly heartbeatMs: number;
  readonly electionMs: number;
}

export const DEFAULT_CLUSTER_OPTIONS: ClusterOptions = { heartbeatMs: 100, electionMs: 1000 };

// ---- process registry and cleanup ----

const running = new Set<ChildProcess>();
const dataDirs = new Set<string>();
let cleanupInstalled = false;

/** Records a child process so that it is killed if the run ends before it does. */
export function track(child: ChildProcess): ChildProcess {
  running.add(child);
  child.once("exit", () => running.delete(child));
  return child;
}

const isRunning = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

/** SIGKILL by PID to everything still running, and the data directories removed; synchronous. */
export function killEverything(): number {
  let n = 0;
  for (const c of running) {
    if (isRunning(c) && c.pid !== undefined) {
      try {
        process.kill(c.pid, "SIGKILL");
        n++;
      } catch {
        // already gone
      }
    }
  }
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
  return n;
}

/** Installs the exit/SIGINT/SIGTERM handlers that call `killEverything`. */
export function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.once("exit", () => {
    killEverything();
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      const n = killEverything();
      process.stderr.write(`\nbench: ${sig}: killed ${n} process(es) this run started\n`);
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  }
}

// ---- starting and stopping ----

/** `etcd --version`'s version, or undefined when there is no etcd on the PATH. */
export function etcdVersion(): string | undefined {
  const r = spawnSync("etcd", ["--version"], { encoding: "utf8" });
  if (r.status !== 0) return undefined;
  return /etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? "unknown";
}

/** Ports nobody listens on now, all different. */
async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) {
    ports.add(
      await new Promise<number>((resolve, reject) => {
        const srv = createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
          const a = srv.address();
          srv.close(() => resolve(typeof a === "object" && a !== null ? a.port : 0));
        });
      }),
    );
  }
  return [...ports];
}

/** Extra node flags for leasehold members, e.g. LEASEHOLD_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p" to profile them. */
const NODE_ARGS = (process.env.LEASEHOLD_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");

function spawnMember(m: Member): void {
  const child =
    m.system === "leasehold"
      ? spawn(process.execPath, [...NODE_ARGS, BIN, "serve", ...m.args], {
          stdio: ["ignore", "ignore", "pipe"],
        })
      : spawn("etcd", [...m.args], { stdio: ["ignore", "ignore", "pipe"] });
  track(child);
  m.child = child;
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    m.log = (m.log + chunk).slice(-LOG_TAIL);
  });
  child.once("error", (e) => {
    m.log += `\nspawn error: ${e.message}`;
  });
}

export const alive = (m: Member): boolean => isRunning(m.child);

/** Waits until member `i` answers Status with a leader; throws with its log when it cannot. */
async function waitServing(c: Cluster, i: number, client: BenchClient, deadline: number): Promise<void> {
  const m = c.members[i]!;
  for (;;) {
    if (!alive(m)) throw new Error(`${c.system} ${m.name} exited while starting:\n${m.log.slice(-3000)}`);
    try {
      const s = await client.status(i, 1_000);
      if (s.leader !== "0") return;
    } catch {
      // not serving yet
    }
    if (performance.now() > deadline)
      throw new Error(`${c.system} ${m.name} not serving after 30 s:\n${m.log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startCluster(
  system: System,
  size: number,
  opts: ClusterOptions = DEFAULT_CLUSTER_OPTIONS,
): Promise<Cluster> {
  installCleanup();
  const dir = mkdtempSync(join(tmpdir(), `leasehold-bench-${system}-`));
  dataDirs.add(dir);
  const names = Array.from({ length: size }, (_, i) => `m${i}`);
  const ports = await freePorts(2 * size);
  const peerUrl = (i: number) => `http://127.0.0.1:${ports[size + i]}`;
  const clientUrl = (i: number) => `http://127.0.0.1:${ports[i]}`;
  const initial = names.map((n, i) => `${n}=${peerUrl(i)}`).join(",");
  const common = [
    "--initial-cluster",
    initial,
    "--initial-cluster-state",
    "new",
    "--initial-cluster-token",
    "bench",
    "--heartbeat-interval",
    String(opts.heartbeatMs),
    "--election-timeout",
    String(opts.electionMs),
  ];
  const members = names.map(
    (name, i): Member => ({
      name,
      system,
      endpoint: clientUrl(i).replace("http://", ""),
      args: [
        "--name",
        name,
        "--data-dir",
        join(dir, name),
        "--listen-client-urls",
        clientUrl(i),
        "--advertise-client-urls",
        clientUrl(i),
        "--listen-peer-urls",
        peerUrl(i),
        "--initial-advertise-peer-urls",
        peerUrl(i),
        ...common,
      ],
      child: undefined as unknown as ChildProcess,
      log: "",
    }),
  );
  const cluster: Cluster = {
    system,
    members,
    dir,
    flags: `--name --data-dir --listen-client-urls --advertise-client-urls --listen-peer-urls --initial-advertise-peer-urls (per member) ${common.join(" ")}`,
  };
  for (const m of members) spawnMember(m);
  const client = new BenchClient(
    members.map((m) => m.endpoint),
    2_000,
  );
  try {
    const deadline = performance.now() + 30_000;
    for (let i = 0; i < size; i++) await waitServing(cluster, i, client, deadline);
    for (;;) {
      try {
        await client.put(Buffer.from("bench/ready"), Buffer.from("1"), "0", 0);
        break;
      } catch (e) {
        if (performance.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    await stopCluster(cluster);
    throw e;
  } finally {
    client.close();
  }
  return cluster;
}

/** Starts member `i` again with the same flags and data; resolves once it answers Status with a leader. */
export async function restartMember(c: Cluster, i: number): Promise<void> {
  const m = c.members[i]!;
  if (alive(m)) throw new Error(`restart: ${m.name} is running`);
  spawnMember(m);
  const client = new BenchClient(
    c.members.map((x) => x.endpoint),
    2_000,
  );
  try {
    await waitServing(c, i, client, performance.now() + 30_000);
  } finally {
    client.close();
  }
}

/** Sends `signal` to the member's PID; resolves once it has exited. */
export function signalMember(m: Member, signal: NodeJS.Signals): Promise<void> {
  if (!alive(m)) return Promise.resolve();
  return new Promise((resolve) => {
    m.child.once("exit", () => resolve());
    m.child.kill(signal);
  });
}

export async function stopCluster(c: Cluster): Promise<void> {
  await Promise.all(
    c.members.map((m) => {
      if (!alive(m)) return Promise.resolve();
      const t = setTimeout(() => m.child.kill("SIGKILL"), 5_000);
      return signalMember(m, "SIGTERM").finally(() => clearTimeout(t));
    }),
  );
  rmSync(c.dir, { recursive: true, force: true });
  dataDirs.delete(c.dir);
}

/** The index of the member that says it leads (asking every live member), or undefined. */
export async function leaderIndex(c: Cluster, client: BenchClient): Promise<number | undefined> {
  const answers = await Promise.all(
    c.members.map((m, i) =>
      alive(m)
        ? client.status(i, 1_000).then(
            (s) => (s.leader !== "0" && s.leader === s.member ? i : undefined),
            () => undefined,
          )
        : undefined,
    ),
  );
  return answers.find((i) => i !== undefined);
}

/** Each member's CPU time and RSS now (undefined: not running). */
export function sampleCluster(c: Cluster): (ProcSample | undefined)[] {
  return c.members.map((m) => (alive(m) && m.child.pid !== undefined ? sampleProc(m.child.pid) : undefined));
}
