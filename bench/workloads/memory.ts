/**
 * `memory`: RSS growth per lease, and per lease with one key, at --leases
 * (default 100,000) leases.
 *
 * Each member's RSS (/proc VmRSS) is read after start (1 s settled), after
 * granting every lease (TTL 3600, so none expires), and after putting one key
 * `mem/<i>` (16-byte value) on each lease, each time after 2 s of quiet.
 * Figures, averaged over the members: (RSS after grants − at start) / leases,
 * and (RSS after keys − at start) / leases. RSS includes whatever garbage the
 * runtime has not collected yet (V8, Go) and the pages of etcd's mmapped bbolt
 * file that were touched: it is what the machine pays. Each phase stops after
 * 10 minutes; the figures are then per lease actually granted.
 */

import { fmtInt } from "../common.ts";
import { BenchClient } from "../harness/client.ts";
import { sampleCluster } from "../harness/cluster.ts";
import {
  clientBoundNotes,
  cpuMeter,
  endpointsOf,
  fig,
  serverUsage,
  usageFigures,
} from "../harness/measure.ts";
import type { ProcSample } from "../harness/procstat.ts";
import { bulk } from "../harness/worker-context.ts";
import type { WorkloadDef } from "../harness/workload.ts";

const PHASE_CAP_MS = 600_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Mean over members of (b − a) RSS, bytes; null when a member was missing. */
function meanGrowth(
  a: readonly (ProcSample | undefined)[],
  b: readonly (ProcSample | undefined)[],
): number | null {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined || y === undefined) return null;
    sum += y.rssBytes - x.rssBytes;
  }
  return sum / a.length;
}

export const memory: WorkloadDef = {
  name: "memory",
  summary: "RSS growth per lease, and per lease with one key, at 100,000 leases",
  describe: (o) =>
    `${fmtInt(o.leases ?? 100_000)} leases (TTL 3600) then one key each (16-byte value), ${o.concurrency * o.clients} requests in flight; RSS per member from /proc`,
  run: async (env) => {
    const n = env.opts.leases ?? 100_000;
    const conc = env.opts.concurrency * env.opts.clients;
    const client = new BenchClient(endpointsOf(env.cluster), 30_000);
    const clientCpu = cpuMeter();
    const notes: string[] = [];
    try {
      await sleep(1_000);
      const s0 = sampleCluster(env.cluster);
      const t0 = performance.now();
      const ids: string[] = [];
      const stopAt = performance.now() + PHASE_CAP_MS;
      await bulk(
        Array.from({ length: n }, (_, i) => i),
        conc,
        async () => {
          if (performance.now() > stopAt) return;
          ids.push(await client.leaseGrant(3600));
        },
        (d) => env.progress.update(`${env.label}: granted ${fmtInt(d)}/${fmtInt(n)} leases`),
      );
      const grantSecs = (performance.now() - t0) / 1000;
      if (ids.length < n) notes.push(`only ${fmtInt(ids.length)} leases granted in ${PHASE_CAP_MS / 1000} s`);
      await sleep(2_000);
      const s1 = sampleCluster(env.cluster);
      const t1 = performance.now();
      const value = Buffer.alloc(16, "m");
      let keys = 0;
      const stopAt2 = performance.now() + PHASE_CAP_MS;
      await bulk(
        ids,
        conc,
        async (id, i) => {
          if (performance.now() > stopAt2) return;
          await client.put(Buffer.from(`mem/${i}`), value, id);
          keys++;
        },
        (d) => env.progress.update(`${env.label}: put ${fmtInt(d)}/${fmtInt(ids.length)} keys`),
      );
      const putSecs = (performance.now() - t1) / 1000;
      if (keys < ids.length) notes.push(`only ${fmtInt(keys)} keys put in ${PHASE_CAP_MS / 1000} s`);
      await sleep(2_000);
      const s2 = sampleCluster(env.cluster);
      const g1 = meanGrowth(s0, s1);
      const g2 = meanGrowth(s0, s2);
      const server = serverUsage(s0, s2, ids.length + keys, performance.now() - t0);
      const clientPct = clientCpu();
      notes.push(
        `RSS MB per member at start / after leases / after keys: ${[s0, s1, s2].map((s) => s.map((x) => (x === undefined ? "-" : (x.rssBytes / 2 ** 20).toFixed(0))).join("+")).join(" / ")}`,
      );
      return {
        figures: [
          fig(
            "bytes-per-lease",
            "RSS bytes per lease",
            g1 === null || ids.length === 0 ? null : g1 / ids.length,
            "lower",
          ),
          fig(
            "bytes-per-lease-key",
            "RSS bytes per lease with one key",
            g2 === null || keys === 0 ? null : g2 / keys,
            "lower",
          ),
          fig("grant-rate", "grants/s while filling", ids.length / grantSecs, "higher"),
          fig("put-rate", "puts/s while filling", keys / putSecs, "higher"),
          ...usageFigures(server, [clientPct]),
        ],
        ops: ids.length + keys,
        errors: 0,
        firstError: undefined,
        latencyUs: undefined,
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
