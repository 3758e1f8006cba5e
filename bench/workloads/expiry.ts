/**
 * `expiry`: --leases (default 20,000) leases with one key each fall due
 * together; how late are their deletions seen by a watcher?
 *
 * Setup (not measured): grant the leases, all with TTL --ttl (default 10 s),
 * and put one key `exp/<i>` on each; while that runs every lease granted so
 * far is renewed every TTL/3, so none expires early however long setup takes.
 * Then a watcher on `exp/` (from the next revision), and the measured part:
 * one renewal of every lease in a burst over 16 LeaseKeepAlive streams. Lease
 * i's deadline is the moment its renewal was acknowledged plus the TTL (the
 * server's own deadline is at most the renewal's round trip earlier). Then
 * wait until every key's delete event has arrived, or 60 s past the last
 * deadline.
 *
 * Figures: time from the last deadline until the last delete event; per-key
 * lateness (event seen − own deadline, early ones counted as 0) p50/p99/max;
 * leases deleted; the deadlines' spread (how long the renewal burst took);
 * server CPU per lease expired over the measured part.
 */

import { fmtInt } from "../common.ts";
import { BenchClient, prefixEnd, type W } from "../harness/client.ts";
import { sampleCluster } from "../harness/cluster.ts";
import { Histogram } from "../harness/histogram.ts";
import {
  clientBoundNotes,
  cpuMeter,
  endpointsOf,
  fig,
  serverUsage,
  usageFigures,
} from "../harness/measure.ts";
import { bulk } from "../harness/worker-context.ts";
import type { WorkloadDef } from "../harness/workload.ts";

const PREFIX = "exp/";
const WAIT_CAP_MS = 60_000;
const REFRESH_STREAMS = 16;

/** Renews leases `ks` (indexes into `ids`) on one stream to endpoint `at`; rejects on a stream error or after 5 s. */
function renewOn(
  client: BenchClient,
  at: number,
  ids: readonly string[],
  ks: readonly number[],
  index: ReadonlyMap<string, number>,
  ackAt: Float64Array,
  ttls: Float64Array,
): Promise<void> {
  const call = client.stream(at, "Lease", "LeaseKeepAlive");
  let pending = ks.length;
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`renewal: ${pending} unanswered after 5 s`)), 5_000);
    call.on("data", (r: W) => {
      const k = index.get(r.ID as string);
      if (k === undefined || !Number.isNaN(ackAt[k]!)) return;
      ackAt[k] = performance.now();
      ttls[k] = Number(r.TTL);
      if (--pending === 0) {
        clearTimeout(timer);
        resolve();
      }
    });
    call.on("error", (e: Error) => {
      clearTimeout(timer);
      reject(e);
    });
    if (pending === 0) resolve();
    for (const k of ks) call.write({ ID: ids[k] });
  }).finally(() => call.cancel());
}

/**
 * One renewal of each lease in `ids`, over `streams` LeaseKeepAlive streams
 * spread over the endpoints: when each was acknowledged (performance.now()),
 * and how many answered TTL 0 (gone). A stream that fails or stalls has its
 * unanswered leases renewed on a new stream to the next endpoint (4 tries);
 * `errors` holds what failed.
 */
export async function renewAll(
  client: BenchClient,
  ids: readonly string[],
  streams: number,
): Promise<{ ackAt: Float64Array; gone: number; errors: string[] }> {
  const ackAt = new Float64Array(ids.length).fill(Number.NaN);
  const ttls = new Float64Array(ids.length);
  const index = new Map<string, number>(ids.map((id, k) => [id, k]));
  const errors: string[] = [];
  const n = Math.min(streams, ids.length);
  await Promise.all(
    Array.from({ length: n }, async (_, s) => {
      for (let attempt = 0; ; attempt++) {
        const ks: number[] = [];
        for (let k = s; k < ids.length; k += n) if (Number.isNaN(ackAt[k]!)) ks.push(k);
        if (ks.length === 0) return;
        try {
          await renewOn(client, (s + attempt) % client.endpoints.length, ids, ks, index, ackAt, ttls);
        } catch (e) {
          errors.push((e as Error).message);
          if (attempt >= 3) throw e;
        }
      }
    }),
  );
  let gone = 0;
  for (const t of ttls) if (t <= 0) gone++;
  return { ackAt, gone, errors };
}

export const expiry: WorkloadDef = {
  name: "expiry",
  summary: "20,000 leases with one key each fall due together: deletions seen how late after the deadline",
  describe: (o) =>
    `${fmtInt(o.leases ?? 20_000)} leases, TTL ${o.ttl ?? 10} s, one key each; renewed in one burst, then a watcher on the prefix waits for every delete (at most ${WAIT_CAP_MS / 1000} s past the deadline)`,
  run: async (env) => {
    const n = env.opts.leases ?? 20_000;
    const ttl = env.opts.ttl ?? 10;
    const conc = env.opts.concurrency * env.opts.clients;
    const client = new BenchClient(endpointsOf(env.cluster), 30_000);
    const notes: string[] = [];
    try {
      const ids: string[] = new Array(n).fill("");
      const granted: string[] = [];
      // Keep what is granted alive while setup runs.
      let renewing: Promise<unknown> = Promise.resolve();
      const background = { bursts: 0, failed: 0, gone: 0, errors: [] as string[] };
      const renewTimer = setInterval(
        () => {
          renewing = renewing
            .then(() => renewAll(client, [...granted], REFRESH_STREAMS))
            .then(
              (r) => {
                background.bursts++;
                background.gone = r.gone;
                background.errors.push(...r.errors);
              },
              (e: unknown) => {
                background.failed++;
                background.errors.push((e as Error).message);
              },
            );
        },
        (ttl * 1000) / 3,
      );
      try {
        await bulk(
          ids.map((_, i) => i),
          conc,
          async (i) => {
            ids[i] = await client.leaseGrant(ttl);
            granted.push(ids[i]!);
          },
          (d) => env.progress.update(`${env.label}: granted ${fmtInt(d)}/${fmtInt(n)} leases`),
        );
        const value = Buffer.from("x");
        await bulk(
          ids.map((_, i) => i),
          conc,
          async (i) => {
            await client.put(Buffer.from(`${PREFIX}${i}`), value, ids[i]!);
          },
          (d) => env.progress.update(`${env.label}: put ${fmtInt(d)}/${fmtInt(n)} keys`),
        );
      } finally {
        clearInterval(renewTimer);
        await renewing;
      }
      if (background.failed > 0 || background.errors.length > 0 || background.gone > 0)
        notes.push(
          `renewals during setup: ${background.bursts} bursts done, ${background.failed} failed, ${background.gone} leases gone at the last; errors: ${[...new Set(background.errors)].slice(0, 3).join("; ") || "none"}`,
        );
      // The watcher, from the revision after setup.
      const rev = await client.revision(0);
      const seen = new Float64Array(n).fill(Number.NaN);
      let seenCount = 0;
      const w = client.stream(0, "Watch", "Watch");
      await new Promise<void>((resolve, reject) => {
        w.once("error", reject);
        w.on("data", (r: W) => {
          if (r.created === true) resolve();
          const now = performance.now();
          for (const e of r.events as { type: number; kv: { key: Buffer } }[]) {
            if (e.type !== 1) continue;
            const i = Number(e.kv.key.subarray(PREFIX.length).toString());
            if (Number.isNaN(seen[i]!)) {
              seen[i] = now;
              seenCount++;
            }
          }
        });
        w.write({
          create_request: {
            key: Buffer.from(PREFIX),
            range_end: prefixEnd(Buffer.from(PREFIX)),
            start_revision: rev + 1,
          },
        });
      });
      w.on("error", () => {});
      // Measured: the burst, then the wait.
      const s0 = sampleCluster(env.cluster);
      const clientCpu = cpuMeter();
      const t0 = performance.now();
      env.progress.update(`${env.label}: renewing ${fmtInt(n)} leases in one burst`, true);
      const { ackAt, gone, errors } = await renewAll(client, ids, REFRESH_STREAMS);
      if (gone > 0) notes.push(`${gone} leases expired during setup`);
      if (errors.length > 0)
        notes.push(`renewal burst: ${errors.length} stream(s) failed and retried: ${errors[0]}`);
      const deadline = Array.from(ackAt, (a) => a + ttl * 1000);
      const lastDeadline = deadline.reduce((a, b) => (b > a ? b : a), Number.NEGATIVE_INFINITY);
      const firstDeadline = deadline.reduce((a, b) => (b < a ? b : a), Number.POSITIVE_INFINITY);
      const expected = n - gone;
      while (seenCount < n && performance.now() < lastDeadline + WAIT_CAP_MS) {
        const rel = (performance.now() - lastDeadline) / 1000;
        env.progress.update(
          `${env.label}: ${fmtInt(seenCount)}/${fmtInt(n)} deletions seen, ${rel < 0 ? `${(-rel).toFixed(1)} s to` : `${rel.toFixed(1)} s past`} the last deadline`,
        );
        await new Promise((r) => setTimeout(r, 100));
      }
      const s1 = sampleCluster(env.cluster);
      const windowMs = performance.now() - t0;
      const clientPct = clientCpu();
      w.cancel();
      const late = new Histogram();
      let lastSeen = 0;
      for (let i = 0; i < n; i++) {
        if (Number.isNaN(seen[i]!)) continue;
        late.record((seen[i]! - deadline[i]!) * 1000);
        lastSeen = Math.max(lastSeen, seen[i]!);
      }
      if (seenCount < expected)
        notes.push(
          `${fmtInt(expected - seenCount)} deletions not seen ${WAIT_CAP_MS / 1000} s after the last deadline`,
        );
      const server = serverUsage(s0, s1, seenCount, windowMs);
      return {
        figures: [
          fig(
            "all-deleted-s",
            "last delete seen, s after the last deadline",
            seenCount === n ? (lastSeen - lastDeadline) / 1000 : null,
            "lower",
            2,
          ),
          fig(
            "late-p50-ms",
            "lateness p50 ms",
            late.count > 0 ? late.percentile(50) / 1000 : null,
            "lower",
            0,
          ),
          fig(
            "late-p99-ms",
            "lateness p99 ms",
            late.count > 0 ? late.percentile(99) / 1000 : null,
            "lower",
            0,
          ),
          fig("late-max-ms", "lateness max ms", late.count > 0 ? late.max / 1000 : null, "lower", 0),
          fig("deleted", `leases deleted (of ${fmtInt(n)})`, seenCount, "higher"),
          fig("spread-ms", "deadline spread ms (renewal burst)", lastDeadline - firstDeadline, "none"),
          ...usageFigures(server, [clientPct]),
        ],
        ops: seenCount,
        errors: gone,
        firstError: undefined,
        latencyUs: late.summary(),
        perSecond: undefined,
        server,
        clientCpuPct: [clientPct],
        notes: [...notes, ...clientBoundNotes([clientPct])],
      };
    } finally {
      client.close();
    }
  },
};
