/**
 * `holder-keepalive`: what a lease holder pays to stay the holder.
 * --leases (default 10,000) holdings, taken before the window (TTL 60) and
 * renewed over --streams (default 64, all client processes together)
 * streams spread over the members, one renewal in flight per holding,
 * renewed again as soon as its acknowledgement arrives (as `keepalive`).
 *
 * - leasehold: each holding is a leasehold.v1 resource (Leases.Acquire of
 *   `bench/hk/<i>` by holder `h<i>`), renewed on Leases.KeepAlive streams:
 *   every renewal is checked against the claim's holder, and the leader
 *   shares it with the other members (lease events on every member).
 * - etcd, which has no resources: each holding is what an etcd user builds
 *   for one (a lease and one key put with it: the claim), renewed on
 *   LeaseKeepAlive streams: no holder check.
 *
 * The figure is acknowledgements per second; a refusal, or an answer that
 * the lease is gone, counts as an error and that holding stops.
 */

import type { Duplex, W } from "../harness/client.ts";
import { pooled } from "../harness/measure.ts";
import { bulk, type WorkerContext } from "../harness/worker-context.ts";
import type { WorkloadDef } from "../harness/workload.ts";
import { throughputRun } from "./throughput.ts";

const TTL = 60;

/** One holding to keep: its lease, and (leasehold) its holder name. */
interface Holding {
  readonly lease: string;
  readonly holder: string;
}

/** Takes holding `i`: a resource on leasehold, a lease and its key on etcd. */
async function take(ctx: WorkerContext, leasehold: boolean, i: number): Promise<Holding> {
  const holder = `h${i}`;
  if (leasehold) {
    const r = await ctx.client.unary("Leases", "Acquire", { resource: `bench/hk/${i}`, holder, ttl: TTL });
    return { lease: String((r.holding as W).lease_id), holder };
  }
  const lease = await ctx.client.leaseGrant(TTL);
  await ctx.client.unary("KV", "Put", {
    key: Buffer.from(`bench/hk/${i}`),
    value: Buffer.from(holder),
    lease,
  });
  return { lease, holder };
}

async function worker(ctx: WorkerContext): Promise<void> {
  const leasehold = ctx.str("system") === "leasehold";
  const holdings: Holding[] = [];
  await bulk(ctx.share(ctx.num("leases")), 64, async (i) => {
    holdings.push(await take(ctx, leasehold, i));
  });
  const n = ctx.job.endpoints.length;
  let streamIdx = ctx.share(ctx.num("streams"));
  if (streamIdx.length === 0) streamIdx = [ctx.job.index];
  const streams = streamIdx.map((s) => ({
    call: (leasehold
      ? ctx.client.stream(s % n, "Leases", "KeepAlive")
      : ctx.client.stream(s % n, "Lease", "LeaseKeepAlive")) as Duplex,
    holdings: [] as Holding[],
    /** Per holding (by its place in `holdings`): when its renewal in flight was sent. */
    sentAt: new Map<number, number>(),
  }));
  for (const [i, h] of holdings.entries()) streams[i % streams.length]!.holdings.push(h);
  const send = (s: (typeof streams)[number], k: number) => {
    s.sentAt.set(k, performance.now());
    const h = s.holdings[k]!;
    s.call.write(leasehold ? { lease_id: h.lease, holder: h.holder, seq: String(k) } : { ID: h.lease });
  };
  for (const s of streams) {
    const byLease = new Map(s.holdings.map((h, k) => [h.lease, k]));
    s.call.on("data", (r: W) => {
      const k = leasehold ? Number(r.seq) : byLease.get(String(r.ID));
      const t = k === undefined ? undefined : s.sentAt.get(k);
      if (k === undefined || t === undefined) return;
      const refused = leasehold ? Number(r.error_code ?? 0) !== 0 : Number(r.TTL) <= 0;
      if (refused || Number(leasehold ? r.ttl : r.TTL) <= 0) {
        s.sentAt.delete(k);
        ctx.meter.fail(new Error(`holding ${k} lost: ${String(r.error_message ?? "TTL 0")}`));
        return;
      }
      ctx.meter.ok((performance.now() - t) * 1000);
      if (ctx.stopped) s.sentAt.delete(k);
      else send(s, k);
    });
    s.call.on("error", (e: Error) => {
      if (!ctx.stopped) ctx.meter.fail(e);
    });
  }
  await ctx.ready();
  for (const s of streams) for (let k = 0; k < s.holdings.length; k++) send(s, k);
  await ctx.whenStopped();
  const drainUntil = performance.now() + 2_000;
  while (streams.some((s) => s.sentAt.size > 0) && performance.now() < drainUntil)
    await new Promise((r) => setTimeout(r, 20));
  for (const s of streams) s.call.cancel();
}

export const holderKeepalive: WorkloadDef = {
  name: "holder-keepalive",
  summary:
    "10,000 holdings renewed as fast as acknowledged: leasehold.v1 resources on Leases.KeepAlive vs etcd leases with one key on LeaseKeepAlive",
  describe: (o) =>
    `${o.leases ?? 10_000} holdings (TTL ${TTL}; leasehold: Leases.Acquire resources renewed on Leases.KeepAlive with the holder checked; etcd: a lease and one key each, on LeaseKeepAlive) over ${o.streams ?? 64} streams in ${o.clients} client process(es), one renewal in flight per holding`,
  worker,
  run: async (env) =>
    throughputRun(
      await pooled(env, {
        leases: env.opts.leases ?? 10_000,
        streams: env.opts.streams ?? 64,
        system: env.system,
      }),
      "holder renewals/s",
    ),
};
