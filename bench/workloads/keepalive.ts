/**
 * `keepalive`: --leases (default 10,000) leases, granted before the window
 * (TTL 60), renewed over --streams (default 64, all client processes
 * together) LeaseKeepAlive streams spread over the members. Each lease has
 * one renewal outstanding at a time and is renewed again as soon as its
 * acknowledgement arrives: the figure is acknowledgements per second, the
 * latency that of one renewal (send to acknowledgement, queueing included:
 * both servers answer a stream's requests one at a time). An answer with
 * TTL 0 (the lease is gone) counts as an error and that lease stops.
 */

import type { Duplex, W } from "../harness/client.ts";
import { pooled } from "../harness/measure.ts";
import { bulk, type WorkerContext } from "../harness/worker-context.ts";
import type { WorkloadDef } from "../harness/workload.ts";
import { throughputRun } from "./throughput.ts";

const TTL = 60;

async function worker(ctx: WorkerContext): Promise<void> {
  const ids: string[] = [];
  await bulk(ctx.share(ctx.num("leases")), 64, async () => {
    ids.push(await ctx.client.leaseGrant(TTL));
  });
  const n = ctx.job.endpoints.length;
  let streamIdx = ctx.share(ctx.num("streams"));
  if (streamIdx.length === 0) streamIdx = [ctx.job.index];
  const streams = streamIdx.map((s) => ({
    call: ctx.client.stream(s % n, "Lease", "LeaseKeepAlive") as Duplex,
    ids: [] as string[],
    sentAt: new Map<string, number>(),
  }));
  for (const [i, id] of ids.entries()) streams[i % streams.length]!.ids.push(id);
  for (const s of streams) {
    s.call.on("data", (r: W) => {
      const id = r.ID as string;
      const t = s.sentAt.get(id);
      if (t === undefined) return;
      const now = performance.now();
      if (Number(r.TTL) <= 0) {
        s.sentAt.delete(id);
        ctx.meter.fail(new Error(`lease ${id} expired`));
        ctx.meter.add("lost");
        return;
      }
      ctx.meter.ok((now - t) * 1000);
      if (ctx.stopped) s.sentAt.delete(id);
      else {
        s.sentAt.set(id, now);
        s.call.write({ ID: id });
      }
    });
    s.call.on("error", (e: Error) => {
      if (!ctx.stopped) ctx.meter.fail(e);
    });
  }
  await ctx.ready();
  for (const s of streams) {
    for (const id of s.ids) {
      s.sentAt.set(id, performance.now());
      s.call.write({ ID: id });
    }
  }
  await ctx.whenStopped();
  const drainUntil = performance.now() + 2_000;
  while (streams.some((s) => s.sentAt.size > 0) && performance.now() < drainUntil)
    await new Promise((r) => setTimeout(r, 20));
  for (const s of streams) s.call.cancel();
}

export const keepalive: WorkloadDef = {
  name: "keepalive",
  summary: "10,000 leases renewed over LeaseKeepAlive streams as fast as acknowledged: acks/s",
  describe: (o) =>
    `${o.leases ?? 10_000} leases (TTL ${TTL}) over ${o.streams ?? 64} LeaseKeepAlive streams in ${o.clients} client process(es), one renewal in flight per lease`,
  worker,
  run: async (env) =>
    throughputRun(
      await pooled(env, { leases: env.opts.leases ?? 10_000, streams: env.opts.streams ?? 64 }),
      "keepalive acks/s",
    ),
};
