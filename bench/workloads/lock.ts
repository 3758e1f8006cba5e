/**
 * `lock`: 32 lockers contend on 8 lock names (4 per name) through
 * v3lockpb.Lock and Unlock, spread over the client processes. Each locker
 * has its own lease (its session, TTL 600, granted before the window) and
 * loops: Lock(name, lease), then Unlock(the key it got). Figure:
 * acquisitions per second; the latency is Lock's (the wait for the three
 * other lockers of the name included).
 */

import type { W } from "../harness/client.ts";
import { pooled } from "../harness/measure.ts";
import type { WorkerContext } from "../harness/worker-context.ts";
import type { WorkloadDef } from "../harness/workload.ts";
import { throughputRun } from "./throughput.ts";

const LOCKERS = 32;
const NAMES = 8;

async function worker(ctx: WorkerContext): Promise<void> {
  const mine = ctx.share(LOCKERS);
  const leases = await Promise.all(mine.map(() => ctx.client.leaseGrant(600)));
  await ctx.ready();
  await Promise.all(
    mine.map(async (c, k) => {
      const name = Buffer.from(`bench-lock/${c % NAMES}`);
      while (!ctx.stopped) {
        const t0 = performance.now();
        try {
          const r: W = await ctx.client.unary("Lock", "Lock", { name, lease: leases[k] }, 60_000);
          ctx.meter.ok((performance.now() - t0) * 1000);
          await ctx.client.unary("Lock", "Unlock", { key: r.key });
        } catch (e) {
          ctx.meter.fail(e);
          await new Promise((r) => setTimeout(r, 1));
        }
      }
    }),
  );
}

export const lock: WorkloadDef = {
  name: "lock",
  summary: "32 lockers contending on 8 names via v3lockpb.Lock/Unlock: acquisitions/s",
  describe: (o) =>
    `${LOCKERS} lockers (each its own lease) on ${NAMES} lock names, Lock then Unlock in a loop, in ${Math.min(o.clients, LOCKERS)} client process(es)`,
  worker,
  run: async (env) =>
    throughputRun(
      await pooled(env, {}, Math.min(env.opts.clients, LOCKERS)),
      "lock acquisitions/s, contended",
    ),
};
