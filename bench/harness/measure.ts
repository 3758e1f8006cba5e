/**
 * Turning a measured window into figures: the pooled run (client processes
 * driving load, the servers' /proc sampled as the window opens and closes),
 * server usage from two /proc samples, and the figures every workload shows
 * (server CPU per operation, server CPU %, RSS, the busiest client's CPU).
 *
 * A client process above CLIENT_BOUND_PCT of a core during the window is
 * flagged: the figure may then be the load generator's limit, not the
 * server's (run with more --clients, or fewer if the machine is saturated).
 */

import { type Cluster, sampleCluster } from "./cluster.ts";
import { Histogram } from "./histogram.ts";
import { runPool } from "./pool.ts";
import type { ProcSample } from "./procstat.ts";
import type { Better, Figure, RunEnv, ServerUsage } from "./workload.ts";

/** A client process this busy (% of one core) may be what limits the figure. */
export const CLIENT_BOUND_PCT = 85;

export const fig = (id: string, label: string, value: number | null, better: Better, digits = 0): Figure => ({
  id,
  label,
  value: value === null || Number.isFinite(value) ? value : null,
  better,
  digits,
});

export function serverUsage(
  s0: readonly (ProcSample | undefined)[],
  s1: readonly (ProcSample | undefined)[],
  ops: number,
  windowMs: number,
): ServerUsage {
  const cpuUs = s0.map((a, i) => {
    const b = s1[i];
    return a === undefined || b === undefined || a.pid !== b.pid ? null : b.cpuUs - a.cpuUs;
  });
  const complete = cpuUs.every((c) => c !== null);
  const total = cpuUs.reduce<number>((a, c) => a + (c ?? 0), 0);
  return {
    cpuUs,
    rssBytes: s1.map((s) => s?.rssBytes ?? null),
    windowMs,
    cpuUsPerOp: complete && ops > 0 ? total / ops : null,
  };
}

/** The figures every workload reports after its own. */
export function usageFigures(server: ServerUsage | undefined, clientCpuPct: readonly number[]): Figure[] {
  const out: Figure[] = [];
  if (server !== undefined) {
    const total = server.cpuUs.reduce<number>((a, c) => a + (c ?? 0), 0);
    const rss = server.rssBytes.filter((r): r is number => r !== null);
    out.push(
      fig("cpu-per-op", "server CPU µs/op (all members)", server.cpuUsPerOp, "lower", 1),
      ...(server.fsyncsPerOp === undefined
        ? []
        : [fig("fsyncs-per-op", "WAL fsyncs/op (all members)", server.fsyncsPerOp, "none", 2)]),
      fig(
        "server-cpu-pct",
        "server CPU, % of a core (all members)",
        (total / (server.windowMs * 1000)) * 100,
        "none",
      ),
      fig(
        "rss-mb",
        "server RSS MB (largest member, at end)",
        rss.length ? Math.max(...rss) / 2 ** 20 : null,
        "none",
      ),
    );
  }
  if (clientCpuPct.length > 0)
    out.push(
      fig("client-cpu-pct", "client CPU, % of a core (busiest process)", Math.max(...clientCpuPct), "none"),
    );
  return out;
}

/** Latency percentiles of `h` (microseconds) as figures in milliseconds. */
export function latencyFigures(h: Histogram, what = "latency"): Figure[] {
  return [
    fig("p50-ms", `${what} p50 ms`, h.percentile(50) / 1000, "lower", 2),
    fig("p99-ms", `${what} p99 ms`, h.percentile(99) / 1000, "lower", 2),
    fig("max-ms", `${what} max ms`, h.max / 1000, "lower", 1),
  ];
}

export function clientBoundNotes(clientCpuPct: readonly number[]): string[] {
  const busy = clientCpuPct.filter((p) => p >= CLIENT_BOUND_PCT);
  return busy.length === 0
    ? []
    : [
        `${busy.length} of ${clientCpuPct.length} client process(es) at >= ${CLIENT_BOUND_PCT}% of a core: the load generator may be the limit`,
      ];
}

export interface Pooled {
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly latency: Histogram;
  readonly perSecond: number[];
  readonly windowMs: number;
  readonly server: ServerUsage;
  readonly clientCpuPct: number[];
  readonly extra: Record<string, number>;
}

/** Runs the workload's worker in `clients` processes against `env.cluster` and merges what they measured. */
export async function pooled(
  env: RunEnv,
  params: Readonly<Record<string, number | string>>,
  clients = env.opts.clients,
): Promise<Pooled> {
  let s0: (ProcSample | undefined)[] = [];
  let s1: (ProcSample | undefined)[] = [];
  let f0: Promise<number | null> = Promise.resolve(null);
  let f1: Promise<number | null> = Promise.resolve(null);
  const out = await runPool({
    workload: env.workload,
    count: clients,
    endpoints: endpointsOf(env.cluster),
    params,
    warmupMs: env.opts.warmup * 1000,
    measureMs: env.opts.seconds * 1000,
    onMeasureStart: () => {
      s0 = sampleCluster(env.cluster);
      f0 = walFsyncs(env.cluster);
    },
    onMeasureStop: () => {
      s1 = sampleCluster(env.cluster);
      f1 = walFsyncs(env.cluster);
    },
    progress: env.progress,
    label: env.label,
  });
  const latency = new Histogram();
  const perSecond: number[] = [];
  const extra: Record<string, number> = {};
  let ops = 0;
  let errors = 0;
  let firstError: string | undefined;
  for (const r of out.results) {
    latency.merge(Histogram.fromJSON(r.latency));
    ops += r.ops;
    errors += r.errors;
    firstError ??= r.firstError;
    r.perSecond.forEach((n, i) => {
      perSecond[i] = (perSecond[i] ?? 0) + n;
    });
    for (const [k, v] of Object.entries(r.extra)) extra[k] = (extra[k] ?? 0) + v;
  }
  // The last bin is a fraction of a second (the stop message's travel): drop it when it is.
  if (perSecond.length > env.opts.seconds) perSecond.length = env.opts.seconds;
  const [fsync0, fsync1] = await Promise.all([f0, f1]);
  const server = serverUsage(s0, s1, ops, out.windowMs);
  return {
    ops,
    errors,
    firstError,
    latency,
    perSecond,
    windowMs: out.windowMs,
    server: {
      ...server,
      fsyncsPerOp: fsync0 === null || fsync1 === null || ops === 0 ? null : (fsync1 - fsync0) / ops,
    },
    clientCpuPct: out.results.map((r) => (r.wallUs > 0 ? (r.cpuUs / r.wallUs) * 100 : 0)),
    extra,
  };
}

/** WAL fsyncs so far, all members (etcd_disk_wal_fsync_duration_seconds_count on each /metrics); null if one cannot be read. */
async function walFsyncs(c: Cluster): Promise<number | null> {
  const counts = await Promise.all(
    c.members.map(async (m) => {
      try {
        const res = await fetch(`http://${m.endpoint}/metrics`, { signal: AbortSignal.timeout(2_000) });
        const text = await res.text();
        const line = /^etcd_disk_wal_fsync_duration_seconds_count(?:\{[^}]*\})? (\S+)$/m.exec(text);
        return line === null ? null : Number(line[1]);
      } catch {
        return null;
      }
    }),
  );
  return counts.every((n) => n !== null && Number.isFinite(n))
    ? counts.reduce<number>((a, n) => a + (n ?? 0), 0)
    : null;
}

export const endpointsOf = (c: Cluster): string[] => c.members.map((m) => m.endpoint);

/** The coordinator's own CPU over a window, % of one core, for in-process workloads. */
export function cpuMeter(): () => number {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const c = process.cpuUsage(c0);
    return ((c.user + c.system) / ((performance.now() - t0) * 1000)) * 100;
  };
}
