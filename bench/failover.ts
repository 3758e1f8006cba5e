/**
 * The `failover` workload (issue 4): a 3-member cluster under a steady write
 * load (`concurrency` writers through every member); `kills` times over, the
 * leader is killed with SIGKILL and the gap is measured from the kill to the
 * first acknowledged write that was sent after it; the killed member is then
 * restarted and the next round waits until it is back. The same for etcd when
 * it is on the PATH. Default --heartbeat-interval 100 ms, --election-timeout
 * 1000 ms on both (etcd's defaults). Prints every gap, then min/median/max.
 */

import { spawnSync } from "node:child_process";
import { EtcdTestClient } from "../src/client/etcd-client.ts";
import { fmtInt, machineInfo, machineLines, parseWorkloadArgs } from "./common.ts";
import type { Cluster, Proc, System } from "./server.ts";
import { spawnProc, startCluster, stopCluster } from "./server.ts";

interface FailoverConfig {
  readonly kills: number;
  readonly concurrency: number;
}

const USAGE = `usage: npm run bench -- failover-gaps [--kills N] [--concurrency C]
  --kills         leader kills per system (default 10, at most 100)
  --concurrency   writers (default 8, at most 256)
`;

function parse(args: readonly string[]): FailoverConfig | string {
  let kills = 10;
  let concurrency = 8;
  for (let i = 0; i < args.length; i += 2) {
    const v = Number(args[i + 1]);
    if (args[i] === "--kills") kills = v;
    else if (args[i] === "--concurrency") concurrency = v;
    else return `unknown option ${args[i]}`;
  }
  if (!Number.isInteger(kills) || kills < 1 || kills > 100) return "--kills must be 1..100";
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256)
    return "--concurrency must be 1..256";
  return { kills, concurrency };
}

const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;

/** The member whose Status says it leads, via etcdctl (both systems answer it alike). */
function leaderOf(c: Cluster): Proc | undefined {
  const eps = c.procs.filter(alive).map((p) => p.endpoint);
  const r = spawnSync("etcdctl", [`--endpoints=${eps.join(",")}`, "endpoint", "status", "-w", "json"], {
    encoding: "utf8",
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  try {
    const rows = JSON.parse(r.stdout) as {
      Endpoint: string;
      Status: { header: { member_id: number }; leader: number };
    }[];
    const lead = rows.find((x) => x.Status.leader !== 0 && x.Status.leader === x.Status.header.member_id);
    return lead === undefined ? undefined : c.procs.find((p) => p.endpoint === lead.Endpoint);
  } catch {
    return undefined;
  }
}

async function run(system: System, cfg: FailoverConfig): Promise<number[]> {
  const cluster = await startCluster(system, 3);
  const clients = new Map<Proc, EtcdTestClient>(
    cluster.procs.map((p) => [p, new EtcdTestClient(p.endpoint, 1000)]),
  );
  let lastAckSentAt = 0;
  let running = true;
  let seq = 0;
  const writers = Array.from({ length: cfg.concurrency }, async (_, w) => {
    while (running) {
      const live = cluster.procs.filter(alive);
      const p = live[(seq + w) % live.length]!;
      const sentAt = performance.now();
      try {
        await clients.get(p)!.put(`f/${seq++ % 1000}`, "v");
        lastAckSentAt = Math.max(lastAckSentAt, sentAt);
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  });
  const gaps: number[] = [];
  try {
    for (let k = 0; k < cfg.kills; k++) {
      await new Promise((r) => setTimeout(r, 500)); // steady load before each kill
      let victim = leaderOf(cluster);
      while (victim === undefined) {
        await new Promise((r) => setTimeout(r, 50));
        victim = leaderOf(cluster);
      }
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        victim!.child.once("exit", () => resolve());
        victim!.child.kill("SIGKILL");
      });
      while (lastAckSentAt < t0) await new Promise((r) => setTimeout(r, 2));
      const gap = performance.now() - t0;
      gaps.push(gap);
      process.stdout.write(
        `  ${system.padEnd(9)} kill ${String(k + 1).padStart(2)}: ${fmtInt(gap).padStart(5)} ms\n`,
      );
      spawnProc(system, victim.args, victim);
      clients.get(victim)!.close();
      clients.set(victim, new EtcdTestClient(victim.endpoint, 1000));
      // Back when it answers a read from its own state.
      for (;;) {
        try {
          await clients.get(victim)!.get("f/0", true);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  } finally {
    running = false;
    await Promise.all(writers);
    for (const c of clients.values()) c.close();
    await stopCluster(cluster);
  }
  return gaps;
}

function summary(gaps: readonly number[]): string {
  const s = [...gaps].sort((a, b) => a - b);
  const median = s[Math.floor(s.length / 2)]!;
  return `min ${fmtInt(s[0]!)} ms, median ${fmtInt(median)} ms, max ${fmtInt(s[s.length - 1]!)} ms over ${s.length} kills`;
}

export async function failoverBench(args: readonly string[]): Promise<void> {
  const cfg = parseWorkloadArgs("failover-gaps", USAGE, args, parse);
  if (cfg === undefined) return;
  const m = machineInfo();
  const haveEtcd = spawnSync("etcd", ["--version"]).status === 0;
  process.stdout.write(
    `${[
      "bench failover",
      ...machineLines(m),
      `  cluster             3 members, heartbeat 100 ms, election timeout 1000 ms`,
      `  load                ${cfg.concurrency} writers through every live member`,
      `  kills               ${cfg.kills} per system${haveEtcd ? " (leasehold, then etcd)" : " (etcd not on PATH)"}`,
    ].join("\n")}\n`,
  );
  const lh = await run("leasehold", cfg);
  const et = haveEtcd ? await run("etcd", cfg) : undefined;
  process.stdout.write(`  leasehold: ${summary(lh)}\n`);
  if (et !== undefined) process.stdout.write(`  etcd:      ${summary(et)}\n`);
  process.stdout.write(
    `${JSON.stringify({ workload: "failover", machine: m, config: cfg, leasehold: lh, etcd: et ?? null })}\n`,
  );
}
