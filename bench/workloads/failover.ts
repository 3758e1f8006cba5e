/**
 * `failover`: 3 members under continuous writes (16 writers, each put
 * through the next live member) and one lease (TTL 5 s)
 * with a key on it, kept alive every second through a live member (on any
 * failure, at once through the next one). --kills (default 3) times: after 1 s
 * of steady load, find the leader (Maintenance.Status), kill -9 it, and time
 * the gap from the kill to the first acknowledged write that was sent after
 * it. Then, once the lease's TTL (plus 1 s) has passed since the kill, check
 * the lease still exists and its key is still there; restart the killed member
 * with the same flags and data and wait until it serves. The same scenario as
 * bench/failover.ts (which kills many times and reports only the gaps), with
 * the kept-alive lease added.
 *
 * Server CPU per operation is not reported: a killed member takes its CPU
 * counters with it.
 */

import { fmtInt } from "../common.ts";
import { BenchClient, type W } from "../harness/client.ts";
import { alive, leaderIndex, restartMember, signalMember } from "../harness/cluster.ts";
import { clientBoundNotes, cpuMeter, endpointsOf, fig, usageFigures } from "../harness/measure.ts";
import type { WorkloadDef } from "../harness/workload.ts";

const LEASE_TTL = 5;
const WRITERS = 16;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One keepalive of `id` on a fresh stream to member `at`: the TTL answered. */
function keepAliveOnce(client: BenchClient, at: number, id: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = client.stream(at, "Lease", "LeaseKeepAlive");
    const t = setTimeout(() => {
      s.cancel();
      reject(new Error("keepalive: no answer"));
    }, timeoutMs);
    s.on("data", (r: W) => {
      clearTimeout(t);
      s.cancel();
      resolve(Number(r.TTL));
    });
    s.on("error", (e: Error) => {
      clearTimeout(t);
      reject(e);
    });
    s.write({ ID: id });
  });
}

const median = (xs: readonly number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

export const failover: WorkloadDef = {
  name: "failover",
  summary:
    "3 members, writes + a kept-alive lease, kill -9 the leader: kill-to-first-write gap, lease survival",
  members: 3,
  describe: (o) =>
    `3 members, ${WRITERS} writers over the live members, a ${LEASE_TTL} s lease renewed every 1 s; ${o.kills ?? 3} leader kills (SIGKILL), each followed by a restart`,
  run: async (env) => {
    const c = env.cluster;
    const client = new BenchClient(endpointsOf(c), 1_000);
    const kills = env.opts.kills ?? 3;
    const clientCpu = cpuMeter();
    let running = true;
    let lastAckSentAt = 0;
    let writes = 0;
    let errors = 0;
    let seq = 0;
    const pickLive = (k: number): number => {
      const live = c.members.map((m, i) => (alive(m) ? i : -1)).filter((i) => i >= 0);
      return live[k % live.length]!;
    };
    const lease = await client.leaseGrant(LEASE_TTL, 0);
    await client.put(Buffer.from("failover/lease-key"), Buffer.from("held"), lease, 0);
    let leaseLost = false;
    let renewAt = 0;
    const renewer = (async () => {
      while (running) {
        let ok = false;
        for (let tries = 0; tries < 3 && !ok && running; tries++) {
          try {
            const ttl = await keepAliveOnce(client, pickLive(renewAt++), lease, 1_000);
            if (ttl <= 0) leaseLost = true;
            ok = true;
          } catch {
            // the next live member
          }
        }
        await sleep(ok ? 1_000 : 50);
      }
    })();
    const writers = Array.from({ length: WRITERS }, async (_, w) => {
      const value = Buffer.from("v");
      while (running) {
        const sentAt = performance.now();
        try {
          await client.put(Buffer.from(`failover/${seq++ % 1000}`), value, "0", pickLive(seq + w));
          writes++;
          if (sentAt > lastAckSentAt) lastAckSentAt = sentAt;
        } catch {
          errors++;
          await sleep(5);
        }
      }
    });
    const gaps: number[] = [];
    let survived = true;
    const notes: string[] = [];
    try {
      for (let k = 0; k < kills; k++) {
        await sleep(1_000);
        let victim = await leaderIndex(c, client);
        for (let tries = 0; victim === undefined && tries < 200; tries++) {
          await sleep(50);
          victim = await leaderIndex(c, client);
        }
        if (victim === undefined) throw new Error("failover: no leader found within 10 s");
        env.progress.update(`${env.label}: kill ${k + 1}/${kills}: kill -9 ${c.members[victim]!.name}`, true);
        const t0 = performance.now();
        await signalMember(c.members[victim]!, "SIGKILL");
        while (lastAckSentAt < t0) {
          if (performance.now() - t0 > 60_000)
            throw new Error("failover: no write acknowledged 60 s after the kill");
          await sleep(2);
        }
        gaps.push(performance.now() - t0);
        await sleep(Math.max(0, t0 + (LEASE_TTL + 1) * 1000 - performance.now()));
        const at = pickLive(k);
        const ttl = await client.leaseTimeToLive(lease, at).catch(() => ({ ttl: -1, keys: 0 }));
        const held = await client.get(Buffer.from("failover/lease-key"), at).catch(() => undefined);
        const kept = ttl.ttl > 0 && held !== undefined && !leaseLost;
        if (!kept)
          notes.push(
            `kill ${k + 1}: lease lost (TTL ${ttl.ttl}, key ${held === undefined ? "gone" : "kept"})`,
          );
        survived &&= kept;
        env.progress.update(
          `${env.label}: kill ${k + 1}/${kills}: gap ${fmtInt(gaps.at(-1)!)} ms; restarting`,
          true,
        );
        await restartMember(c, victim);
      }
    } finally {
      running = false;
      await Promise.all([...writers, renewer]);
      client.close();
    }
    const clientPct = clientCpu();
    notes.unshift(
      `gaps ms: ${gaps.map((g) => fmtInt(g)).join(", ")}; ${fmtInt(writes)} writes, ${fmtInt(errors)} failed`,
    );
    return {
      figures: [
        fig("gap-median-ms", "kill-to-first-write ms (median)", median(gaps), "lower"),
        fig("gap-max-ms", "kill-to-first-write ms (max)", gaps.length ? Math.max(...gaps) : null, "lower"),
        fig("lease-survived", "lease survived every kill (1 yes, 0 no)", survived ? 1 : 0, "higher"),
        ...usageFigures(undefined, [clientPct]),
      ],
      ops: writes,
      errors: 0, // failed writes are expected while there is no leader: counted in the notes
      firstError: undefined,
      latencyUs: undefined,
      perSecond: undefined,
      server: undefined,
      clientCpuPct: [clientPct],
      notes: [...notes, ...clientBoundNotes([clientPct])],
    };
  },
};
