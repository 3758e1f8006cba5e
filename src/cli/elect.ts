/**
 * `leasehold elect NAME PROPOSAL` and `leasehold elect NAME --listen`:
 * etcd's v3election API, as `etcdctl elect` uses it.
 *
 * Contract (campaign):
 * - Grants an etcd lease of `ttlSeconds` and keeps it alive (the SDK's
 *   LeaseKeeper: renewals at TTL/3 over etcd's LeaseKeepAlive, the Chubby
 *   states valid → jeopardy → expired), then campaigns (Campaign, no bound
 *   on the wait) with that lease.
 * - Once elected prints the leader key and the proposal (etcdctl's `key` and
 *   `value` lines) and holds until SIGINT/SIGTERM; then resigns, revokes the
 *   lease and exits 0. Stopped while still campaigning: revokes the lease
 *   (which withdraws the candidacy) and exits 128 + the signal's number.
 * - Jeopardy is reported on stderr; an expired lease (or one the server no
 *   longer has) ends leadership: the reason on stderr, exit 1.
 *
 * Contract (listen): prints the leader's key and value each time Observe
 * answers (the current leader first, then each change) until SIGINT/SIGTERM,
 * then exits 0.
 */

import type { WireMessage } from "../api/index.ts";
import type { LeaseholdClient } from "../client/client.ts";
import { LeaseLostError, toClientError } from "../client/errors.ts";
import { LeaseKeeper, type RenewAnswer, systemClock } from "../client/lease-keeper.ts";
import { leaseHex, type Output, type Rendered } from "./output.ts";
import { EXIT_LEASE_LOST } from "./run-holding.ts";
import { signalExitCode, TerminationSignals, whenAborted } from "./signals.ts";

type W = WireMessage;

/** Campaigns for `name` with `proposal` and holds leadership (see the header); answers the exit code. */
export async function runCampaign(
  client: LeaseholdClient,
  spec: { readonly name: string; readonly proposal: string; readonly ttlSeconds: number },
  out: Output,
): Promise<number> {
  const stop = new TerminationSignals();
  const sentAt = systemClock.now();
  const granted = await client.call("etcdserverpb.Lease", "LeaseGrant", { TTL: spec.ttlSeconds }, {});
  const id = BigInt(String(granted.ID));
  const keeper = new LeaseKeeper({
    ttlSeconds: Number(granted.TTL),
    grantedAt: sentAt,
    renew: (signal) => keepAliveOnce(client, id, { signal, timeoutMs: (Number(granted.TTL) * 1000) / 3 }),
  });
  // The keeper's timers are unref'd: something must keep the process alive while it campaigns and leads.
  const alive = setInterval(() => {}, 1 << 30);
  try {
    const lost = new Promise<void>((resolve) => keeper.on("expired", () => resolve()));
    keeper.on("jeopardy", () =>
      out.note(`lease ${leaseHex(id)} of the election "${spec.name}" is in jeopardy: still trying to renew`),
    );
    keeper.on("valid", () => out.note(`lease ${leaseHex(id)} of the election "${spec.name}" is valid again`));
    const until = AbortSignal.any([stop.signal, expiredSignal(keeper)]);

    let leader: W;
    try {
      const r = await client.call(
        "v3electionpb.Election",
        "Campaign",
        { name: Buffer.from(spec.name), lease: id.toString(), value: Buffer.from(spec.proposal) },
        { signal: until, timeoutMs: Number.POSITIVE_INFINITY },
      );
      leader = r.leader as W;
    } catch (e) {
      if (stop.received !== undefined) {
        await revoke(client, keeper, id, out);
        return signalExitCode(stop.received);
      }
      if (keeper.state === "expired") return reportLost(id, spec.name, out);
      await revoke(client, keeper, id, out);
      throw e;
    }
    out.print(leaderResult(leader.key as Buffer, Buffer.from(spec.proposal)));

    await Promise.race([lost, whenAborted(stop.signal)]);
    if (stop.received === undefined) return reportLost(id, spec.name, out);
    try {
      await client.call("v3electionpb.Election", "Resign", { leader }, {});
    } catch (e) {
      out.note(`resign failed (revoking the lease instead): ${toClientError(e).message}`);
    }
    await revoke(client, keeper, id, out);
    return 0;
  } finally {
    clearInterval(alive);
    keeper.close();
    stop.dispose();
  }
}

/**
 * Prints the leader of `name` on each Observe answer until SIGINT/SIGTERM
 * (a reconnect to another member prints the current leader again); answers
 * the exit code.
 */
export async function runObserve(client: LeaseholdClient, name: string, out: Output): Promise<number> {
  const stop = new TerminationSignals();
  try {
    for await (const r of client.serverStream(
      "v3electionpb.Election",
      "Observe",
      { name: Buffer.from(name) },
      { signal: stop.signal },
    )) {
      const kv = r.kv as W | null;
      if (kv != null) out.print(leaderResult(kv.key as Buffer, kv.value as Buffer));
    }
    return 0;
  } finally {
    stop.dispose();
  }
}

/** One etcd keepalive of lease `id` (Lease.LeaseKeepAlive): its TTL now, or "gone" (etcd answers TTL 0 for a lease it does not have). */
export async function keepAliveOnce(
  client: LeaseholdClient,
  id: bigint,
  control: { readonly signal?: AbortSignal; readonly timeoutMs?: number },
): Promise<RenewAnswer> {
  const r = await client.streamOnce("etcdserverpb.Lease", "LeaseKeepAlive", { ID: id.toString() }, control);
  const ttl = Number(r.TTL);
  return ttl > 0 ? { kind: "renewed", ttlSeconds: ttl } : { kind: "gone" };
}

/** A leader as etcdctl prints it: its key, then its value. */
function leaderResult(key: Buffer, value: Buffer): Rendered {
  return {
    simple: [key.toString(), value.toString()],
    json: { key: key.toString(), value: value.toString() },
    table: { header: ["KEY", "VALUE"], rows: [[key.toString(), value.toString()]] },
  };
}

/** Aborts when the keeper's lease has expired (not merely in jeopardy). */
function expiredSignal(keeper: LeaseKeeper): AbortSignal {
  const c = new AbortController();
  keeper.on("expired", () => c.abort(new LeaseLostError("expired")));
  return c.signal;
}

function reportLost(id: bigint, name: string, out: Output): number {
  out.note(
    `lost the election "${name}" (lease ${leaseHex(id)}): ${new LeaseLostError("expired").message.replace(/^leasehold: /, "")}`,
  );
  return EXIT_LEASE_LOST;
}

/** Stops renewing and revokes the lease (best effort: it ends within its TTL anyway). */
async function revoke(client: LeaseholdClient, keeper: LeaseKeeper, id: bigint, out: Output): Promise<void> {
  keeper.release();
  try {
    await client.call("etcdserverpb.Lease", "LeaseRevoke", { ID: id.toString() }, {});
  } catch (e) {
    out.note(`could not revoke lease ${leaseHex(id)} (it ends within its TTL): ${toClientError(e).message}`);
  }
}
