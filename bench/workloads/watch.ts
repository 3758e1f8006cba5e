/**
 * `watch`: 100 watchers (each its own Watch stream, spread over the members
 * and the client processes) on the prefix `watch/`, and 100 puts per second
 * (open loop, sent on schedule whatever the answers) shared among the client
 * processes. A put's value carries the sending process and its send time, so
 * each process measures the notification latency (put sent → event received)
 * of its own puts on its own watchers without comparing clocks across
 * processes. The operation counted (for CPU per op) is one notification
 * delivered to one watcher: 100 puts/s make 10,000 of them per second.
 */

import { type Duplex, prefixEnd, type W } from "../harness/client.ts";
import { fig, pooled } from "../harness/measure.ts";
import type { WorkerContext } from "../harness/worker-context.ts";
import type { WorkloadDef } from "../harness/workload.ts";
import { throughputRun } from "./throughput.ts";

const WATCHERS = 100;
const RATE = 100;
const PREFIX = Buffer.from("watch/");

function openWatcher(ctx: WorkerContext, endpoint: number): Promise<Duplex> {
  const s = ctx.client.stream(endpoint, "Watch", "Watch");
  return new Promise((resolve, reject) => {
    const onData = (r: W) => {
      if (r.created === true) {
        s.off("data", onData);
        s.off("error", reject);
        resolve(s);
      }
    };
    s.on("data", onData);
    s.once("error", reject);
    s.write({ create_request: { key: PREFIX, range_end: prefixEnd(PREFIX) } });
  });
}

async function worker(ctx: WorkerContext): Promise<void> {
  const me = ctx.job.index;
  const n = ctx.job.endpoints.length;
  const streams = await Promise.all(ctx.share(ctx.num("watchers")).map((w) => openWatcher(ctx, w % n)));
  for (const s of streams) {
    s.on("data", (r: W) => {
      const events = r.events as { kv: { value: Buffer } }[];
      const now = performance.now();
      ctx.meter.count(events.length);
      for (const e of events) {
        const v = e.kv.value.toString();
        const sp = v.indexOf(" ");
        if (Number(v.slice(0, sp)) === me) ctx.meter.sample((now - Number(v.slice(sp + 1))) * 1000);
      }
    });
    s.on("error", (e: Error) => {
      if (!ctx.stopped) ctx.meter.fail(e);
    });
  }
  await ctx.ready();
  const rate = ctx.num("rate") / ctx.job.count;
  const t0 = performance.now();
  let sent = 0;
  while (!ctx.stopped) {
    const due = Math.floor(((performance.now() - t0) * rate) / 1000);
    for (; sent < due; sent++) {
      const counted = ctx.meter.active;
      ctx.client
        .put(Buffer.from(`watch/${me}/${sent % 1000}`), Buffer.from(`${me} ${performance.now()}`))
        .then(
          () => {
            if (counted) ctx.meter.add("puts");
          },
          (e: unknown) => ctx.meter.fail(e),
        );
    }
    await new Promise((r) =>
      setTimeout(r, Math.max(1, ((sent + 1) * 1000) / rate - (performance.now() - t0))),
    );
  }
  await new Promise((r) => setTimeout(r, 200)); // the last notifications
  for (const s of streams) s.cancel();
}

export const watch: WorkloadDef = {
  name: "watch",
  summary: "100 watchers on a prefix, 100 puts/s: notification latency p50/p99",
  describe: (o) =>
    `${WATCHERS} watchers (one Watch stream each) on a prefix, ${RATE} puts/s open loop, in ${o.clients} client process(es)`,
  worker,
  run: async (env) => {
    const p = await pooled(env, { watchers: WATCHERS, rate: RATE });
    return throughputRun(p, "notifications/s (all watchers)", {
      latencyOf: "notification latency",
      figures: [
        fig("puts-per-sec", "puts/s acknowledged", (p.extra.puts ?? 0) / (p.windowMs / 1000), "none"),
      ],
    });
  },
};
