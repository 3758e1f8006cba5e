/**
 * The `server` workload: real member processes on 127.0.0.1, driven over gRPC
 * (src/client/etcd-client.ts) by `concurrency` callers at once, for 1 and 3
 * members; and, when an `etcd` binary is on the PATH (Debian: etcd-server),
 * etcd 3.4 on the same workload in the same run, with the ratio.
 *
 * Figures per cluster: puts/s (100-byte values over 10,000 keys), lease
 * grants/s, and for leasehold the leader's fsyncs per second next to its
 * writes per second (group commit: one fsync per Ready, many writes each).
 * etcd's fsync count is read from its /metrics (etcd_disk_wal_fsync_duration_seconds_count).
 *
 * Every process it starts it stops (SIGTERM, then SIGKILL after 5 s), and it
 * removes its temporary data directories.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EtcdTestClient } from "../src/client/etcd-client.ts";
import { fmtInt, machineInfo, machineLines, parseWorkloadArgs } from "./common.ts";

interface ServerBenchConfig {
  readonly seconds: number;
  readonly concurrency: number;
  readonly sizes: readonly number[];
}

const USAGE = `usage: npm run bench -- server [--seconds S] [--concurrency C] [--members 1|3|1,3]
  --seconds       measured seconds per figure (default 5, at most 60)
  --concurrency   requests in flight at once (default 32, at most 1024)
  --members       cluster sizes (default 1,3)
`;

const BIN = fileURLToPath(new URL("../bin/leasehold.js", import.meta.url));

function parse(args: readonly string[]): ServerBenchConfig | string {
  let seconds = 5;
  let concurrency = 32;
  let sizes = [1, 3];
  for (let i = 0; i < args.length; i += 2) {
    const v = args[i + 1];
    if (v === undefined) return `${args[i]} needs a value`;
    if (args[i] === "--seconds") seconds = Number(v);
    else if (args[i] === "--concurrency") concurrency = Number(v);
    else if (args[i] === "--members") sizes = v.split(",").map(Number);
    else return `unknown option ${args[i]}`;
  }
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 60) return "--seconds must be 1..60";
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024)
    return "--concurrency must be 1..1024";
  if (sizes.some((n) => n !== 1 && n !== 3)) return "--members takes 1 and/or 3";
  return { seconds, concurrency, sizes };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === "object" && a !== null ? a.port : 0));
    });
  });
}

export type System = "leasehold" | "etcd";

export interface Proc {
  child: ChildProcess;
  readonly system: System;
  readonly args: readonly string[];
  readonly endpoint: string;
  readonly metricsUrl: string;
  log: string;
}

export interface Cluster {
  readonly procs: Proc[];
  readonly dir: string;
}

/** Starts (or, given `p`, restarts with the same flags and data) one member process. */
export function spawnProc(system: System, args: readonly string[], p?: Proc): Proc {
  const child =
    system === "leasehold"
      ? spawn(process.execPath, [BIN, "serve", ...args], { stdio: ["ignore", "ignore", "pipe"] })
      : spawn("etcd", [...args], { stdio: ["ignore", "ignore", "pipe"] });
  const url = args[args.indexOf("--listen-client-urls") + 1]!;
  const proc: Proc = p ?? {
    child,
    system,
    args,
    endpoint: url.replace("http://", ""),
    metricsUrl: `${url}/metrics`,
    log: "",
  };
  proc.child = child;
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (c: string) => {
    proc.log += c;
  });
  return proc;
}

export async function startCluster(
  system: System,
  size: number,
  extra: readonly string[] = [],
): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), `bench-${system}-`));
  const names = Array.from({ length: size }, (_, i) => `m${i}`);
  const peer = await Promise.all(names.map(() => freePort()));
  const client = await Promise.all(names.map(() => freePort()));
  const initial = names.map((n, i) => `${n}=http://127.0.0.1:${peer[i]}`).join(",");
  const procs = names.map((n, i): Proc => {
    const args = [
      "--name",
      n,
      "--data-dir",
      join(dir, n),
      "--listen-client-urls",
      `http://127.0.0.1:${client[i]}`,
      "--advertise-client-urls",
      `http://127.0.0.1:${client[i]}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${peer[i]}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peer[i]}`,
      "--initial-cluster",
      initial,
      "--initial-cluster-token",
      `bench-${system}`,
      ...extra,
    ];
    return spawnProc(system, args);
  });
  // Ready when a write goes through.
  const c = new EtcdTestClient(procs[0]!.endpoint, 1000);
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      await c.put("bench/ready", "1");
      break;
    } catch (e) {
      if (performance.now() > deadline)
        throw new Error(
          `${system} x${size} did not start: ${(e as Error).message}\n${procs[0]!.log.slice(-2000)}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  c.close();
  return { procs, dir };
}

export async function stopCluster(c: Cluster): Promise<void> {
  await Promise.all(
    c.procs.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
          const t = setTimeout(() => p.child.kill("SIGKILL"), 5_000);
          p.child.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
          p.child.kill("SIGTERM");
        }),
    ),
  );
  rmSync(c.dir, { recursive: true, force: true });
}

/** Runs `op` from `concurrency` loops for `seconds`; returns completed ops per second. */
async function load(
  clients: EtcdTestClient[],
  seconds: number,
  concurrency: number,
  op: (c: EtcdTestClient, i: number) => Promise<unknown>,
): Promise<number> {
  let done = 0;
  let failed = 0;
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = w; performance.now() < end; i += concurrency) {
        try {
          await op(clients[i % clients.length]!, i);
          done++;
        } catch {
          failed++;
        }
      }
    }),
  );
  if (failed > 0) process.stdout.write(`    (${failed} requests failed)\n`);
  return done / ((performance.now() - t0) / 1000);
}

async function etcdFsyncs(p: Proc): Promise<number | undefined> {
  try {
    const text = await (await fetch(p.metricsUrl)).text();
    const m = /^etcd_disk_wal_fsync_duration_seconds_count (\d+)/m.exec(text);
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

interface Figures {
  readonly putsPerSec: number;
  readonly grantsPerSec: number;
  readonly fsyncsPerSec: number | undefined;
}

async function measure(system: System, size: number, cfg: ServerBenchConfig): Promise<Figures> {
  const cluster = await startCluster(system, size);
  try {
    const clients = cluster.procs.map((p) => new EtcdTestClient(p.endpoint, 10_000));
    const value = "x".repeat(100);
    await load(clients, 1, cfg.concurrency, (c, i) => c.put(`bench/${i % 10_000}`, value)); // warm-up
    const fsync0 = system === "etcd" ? await Promise.all(cluster.procs.map(etcdFsyncs)) : undefined;
    const putsPerSec = await load(clients, cfg.seconds, cfg.concurrency, (c, i) =>
      c.put(`bench/${i % 10_000}`, value),
    );
    const fsync1 = system === "etcd" ? await Promise.all(cluster.procs.map(etcdFsyncs)) : undefined;
    const grantsPerSec = await load(clients, cfg.seconds, cfg.concurrency, (c) => c.leaseGrant(60));
    for (const c of clients) c.close();
    let fsyncsPerSec: number | undefined;
    if (system === "etcd" && fsync0 !== undefined && fsync1 !== undefined) {
      const deltas = fsync0.map((a, i) => (a !== undefined && fsync1[i] !== undefined ? fsync1[i]! - a : 0));
      fsyncsPerSec = Math.max(...deltas) / cfg.seconds;
    }
    await stopCluster(cluster);
    if (system === "leasehold") {
      // Each member logs its storage counters when it stops; the whole run's fsyncs over its writes.
      const counts = cluster.procs.map((p) => Number(/fsyncs=(\d+)/.exec(p.log)?.[1] ?? 0));
      fsyncsPerSec = Math.max(...counts) / (cfg.seconds * 2 + 1);
    }
    return { putsPerSec, grantsPerSec, fsyncsPerSec };
  } finally {
    await stopCluster(cluster);
  }
}

export async function serverBench(args: readonly string[]): Promise<void> {
  const cfg = parseWorkloadArgs("server", USAGE, args, parse);
  if (cfg === undefined) return;
  const m = machineInfo();
  const etcdVersion = spawnSync("etcd", ["--version"], { encoding: "utf8" });
  const haveEtcd = etcdVersion.status === 0;
  const lines = [
    "bench server",
    ...machineLines(m),
    `  members             ${cfg.sizes.join(", ")}`,
    `  measured            ${cfg.seconds} s per figure, ${cfg.concurrency} requests in flight, 100-byte values`,
    `  etcd                ${haveEtcd ? (/etcd Version: (\S+)/.exec(etcdVersion.stdout)?.[1] ?? "yes") : "not on PATH: leasehold only"}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  const results: Record<string, unknown>[] = [];
  for (const size of cfg.sizes) {
    const lh = await measure("leasehold", size, cfg);
    const et = haveEtcd ? await measure("etcd", size, cfg) : undefined;
    const row = (name: string, f: Figures) =>
      `  ${name.padEnd(10)} x${size}: ${fmtInt(f.putsPerSec).padStart(7)} puts/s  ${fmtInt(f.grantsPerSec).padStart(7)} grants/s` +
      (f.fsyncsPerSec !== undefined ? `  ${fmtInt(f.fsyncsPerSec).padStart(6)} fsyncs/s (leader)` : "");
    process.stdout.write(`${row("leasehold", lh)}\n`);
    if (et !== undefined) {
      process.stdout.write(`${row("etcd", et)}\n`);
      process.stdout.write(
        `  ratio      x${size}: puts ${(lh.putsPerSec / et.putsPerSec).toFixed(2)}x, grants ${(lh.grantsPerSec / et.grantsPerSec).toFixed(2)}x (leasehold / etcd)\n`,
      );
    }
    results.push({ members: size, leasehold: lh, etcd: et ?? null });
  }
  process.stdout.write(`${JSON.stringify({ workload: "server", machine: m, config: cfg, results })}\n`);
}
