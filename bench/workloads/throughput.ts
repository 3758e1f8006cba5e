/**
 * Closed-loop throughput workloads: every client process keeps `--concurrency`
 * requests in flight, spread round-robin over the members.
 *
 * - `grant`: LeaseGrant(TTL 60). Figure: grants/s.
 * - `put`: 256-byte values, each on a key never written before, no lease.
 * - `put-shared-lease`: the same, every key attached to one lease granted
 *   (TTL 3600) before the run, so the lease accumulates keys. The per-second
 *   curve is printed, and "flatness" is the mean rate of the window's last
 *   third over its first third (1.0: flat; etcd slows as the lease grows).
 */

import { BenchClient } from "../harness/client.ts";
import {
  clientBoundNotes,
  endpointsOf,
  fig,
  latencyFigures,
  type Pooled,
  pooled,
  usageFigures,
} from "../harness/measure.ts";
import type { WorkerContext } from "../harness/worker-context.ts";
import type { Figure, SideRun, WorkloadDef } from "../harness/workload.ts";

/** A SideRun from a pooled throughput window whose headline is `rateLabel`. */
export function throughputRun(
  p: Pooled,
  rateLabel: string,
  more: { readonly figures?: Figure[]; readonly notes?: string[]; readonly latencyOf?: string } = {},
): SideRun {
  const rate = p.ops / (p.windowMs / 1000);
  return {
    figures: [
      fig("rate", rateLabel, rate, "higher"),
      ...(more.figures ?? []),
      ...latencyFigures(p.latency, more.latencyOf),
      ...usageFigures(p.server, p.clientCpuPct),
    ],
    ops: p.ops,
    errors: p.errors,
    firstError: p.firstError,
    latencyUs: p.latency.summary(),
    perSecond: p.perSecond,
    server: p.server,
    clientCpuPct: p.clientCpuPct,
    notes: [...(more.notes ?? []), ...clientBoundNotes(p.clientCpuPct)],
  };
}

const describeLoop = (what: string) => (o: { clients: number; concurrency: number }) =>
  `${o.clients} client process(es) x ${o.concurrency} requests in flight, round-robin over the members; ${what}`;

export const grant: WorkloadDef = {
  name: "grant",
  summary: "concurrent LeaseGrant(TTL 60): grants/s",
  describe: describeLoop("LeaseGrant TTL 60"),
  worker: async (ctx) => {
    await ctx.ready();
    await ctx.closedLoop(ctx.num("concurrency"), () => ctx.client.leaseGrant(60));
  },
  run: async (env) => throughputRun(await pooled(env, { concurrency: env.opts.concurrency }), "grant ops/s"),
};

/** Puts 256-byte values on fresh keys, with lease `lease` ("0": none). */
async function putWorker(ctx: WorkerContext): Promise<void> {
  const value = Buffer.alloc(256, "v");
  const lease = ctx.str("lease");
  const prefix = `put/${ctx.job.index}/`;
  let seq = 0;
  await ctx.ready();
  await ctx.closedLoop(ctx.num("concurrency"), () =>
    ctx.client.put(Buffer.from(prefix + seq++), value, lease),
  );
}

export const put: WorkloadDef = {
  name: "put",
  summary: "256-byte values on distinct keys, no lease: puts/s",
  describe: describeLoop("Put 256-byte values, each on a new key, no lease"),
  worker: putWorker,
  run: async (env) =>
    throughputRun(
      await pooled(env, { concurrency: env.opts.concurrency, lease: "0" }),
      "put ops/s, no lease",
    ),
};

/** Mean of the window's last third over its first third (1: flat); null when too short. */
export function flatness(perSecond: readonly number[]): number | null {
  const third = Math.floor(perSecond.length / 3);
  if (third === 0) return null;
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const first = mean(perSecond.slice(0, third));
  return first === 0 ? null : mean(perSecond.slice(perSecond.length - third)) / first;
}

export const putSharedLease: WorkloadDef = {
  name: "put-shared-lease",
  summary: "256-byte values on distinct keys, all on one lease: puts/s and the per-second curve",
  describe: describeLoop("Put 256-byte values, each on a new key, all keys on one lease (TTL 3600)"),
  worker: putWorker,
  run: async (env) => {
    const c = new BenchClient(endpointsOf(env.cluster));
    let lease: string;
    try {
      lease = await c.leaseGrant(3600);
    } finally {
      c.close();
    }
    const p = await pooled(env, { concurrency: env.opts.concurrency, lease });
    const curve = `ops per second over the window: ${p.perSecond.map((n) => Math.round(n)).join(" ")}`;
    return throughputRun(p, "put ops/s onto one shared lease", {
      figures: [
        fig(
          "flatness",
          "flatness (last third / first third of the window)",
          flatness(p.perSecond),
          "higher",
          2,
        ),
      ],
      notes: [curve],
    });
  },
};
