/**
 * leasehold.v1 Semaphores, server side (proto/leaseholdpb/leasehold.proto;
 * the layout and rules in src/state/semaphores.ts: a claim holds while fewer
 * than `permits` live claims are older than it).
 *
 * Acquire(name, holder, ttl, permits, wait):
 * - One proposal ("semaphoreAcquire"): a fresh lease of `ttl` (its id chosen
 *   by the state machine) and its claim key, in one revision; or nothing,
 *   answered ALREADY_EXISTS semaphoreFull (trailers: holders, permits) when
 *   every permit is held and `wait` is false, or INVALID_ARGUMENT
 *   permitsMismatch (trailer: permits) when the semaphore has other permits.
 * - With `wait` and no free permit: the claim queues (FIFO, by create
 *   revision) and the call waits until fewer than `permits` claims are older
 *   than its own (PermitWaiter below; recipes.ts waitTurn waits to be THE
 *   oldest, which is the one-permit case only). No polling: the waiter
 *   watches deletes under the semaphore's prefix in the member's watch hub,
 *   counts the older claims that go, and reads the claims again only when
 *   it may hold (or after a snapshot replaced the state); it is confirmed by
 *   a linearizable read. While it
 *   waits, the server keeps the claim's lease alive (every TTL/3), then
 *   renews it once more when it holds; from then on renewing is the holder's
 *   job. A cancelled call (client gone, deadline passed) revokes the claim's
 *   lease, and so does a failed wait; a claim lost while waiting (its lease
 *   revoked or expired) answers NOT_FOUND.
 * - The answer: the holding (lease id; fencing token = the claim's create
 *   revision; position = live claims older than it, below `permits`) and
 *   the semaphore's permits.
 * Renew(lease, holder): Semaphores' own (Leases.Renew renews resource claims
 *   only): the lease's semaphore claim must name `holder` (PERMISSION_DENIED
 *   otherwise; NOT_FOUND without a claim); then the leader's keepalive.
 * Release(name, lease, holder): one proposal; refused unless the claim is
 *   the holder's. Releasing a waiter's claim takes it out of the queue.
 * Get(name): a linearizable read: permits (0: no claims), holders (with
 *   their remaining time from the leader, for the first
 *   GET_REMAINING_HOLDERS_MAX) and waiters.
 *
 * Mutations carry the call's client session, as every leasehold.v1 mutation
 * (leases.ts sessionOf). Permissions, while auth is on: Acquire writes its
 * claim key and reads the prefix; Renew and Release need a caller (Release is
 * checked again at apply like a lease revoke); Get reads the prefix.
 */

import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { LeaseId, Revision, SemaphoreClaim, StateMachine, WatchHub, WatchId } from "../state/index.ts";
import {
  leaseId,
  MAX_LEASE_TTL_SECONDS,
  permitsProblem,
  prefixEnd,
  revision,
  semaphoreKey,
  semaphoreNameProblem,
  semaphorePrefix,
  semaphoreView,
} from "../state/index.ts";
import type { ApiHost, CallInfo } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import {
  hexLease,
  holderOf,
  leaseOf,
  remainingMs,
  revokeQuietly,
  sessionOf,
  sessionRefusal,
  throwFailed,
} from "./leasehold-common.ts";
import { LeaseholdError } from "./leasehold-errors.ts";
import type { WireMessage } from "./proto.ts";
import { int64FromWire } from "./proto.ts";
import { CallCancelled, readPrefix } from "./recipes.ts";

type W = WireMessage;

/** Holders whose remaining time Get asks the leader for (the others answer -1). */
export const GET_REMAINING_HOLDERS_MAX = 128;
/** Hub responses taken per drain call while looking for deletes. */
const DRAIN_RESPONSES_MAX = 64;

/** The Semaphores service's implementation for the gRPC server. */
export function semaphoresService(host: ApiHost): UntypedServiceImplementation {
  return {
    Acquire: host.unary((w, call) => acquire(host, w, call)),
    Renew: host.unary((w, call) => renew(host, w, call)),
    Release: host.unary((w, call) => release(host, w, call)),
    Get: host.unary((w, call) => get(host, w, call)),
  };
}

// ---------------------------------------------------------------- requests

function nameOf(w: W): string {
  const name = typeof w.name === "string" ? w.name : "";
  const problem = semaphoreNameProblem(name);
  if (problem !== undefined) throw new LeaseholdError("invalid", `name: ${problem}`);
  return name;
}

function permitsOf(w: W): number {
  const n = int64FromWire(w.permits ?? "0");
  const permits = n > 0n && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : 0;
  const problem = permitsProblem(permits);
  if (problem !== undefined) throw new LeaseholdError("invalid", `permits: ${problem}`);
  return permits;
}

/** A claim on the wire; `remainingMs` -1 when unknown. */
function holdingToWire(c: SemaphoreClaim, ttlSeconds: number, remainingMs: number, position: number): W {
  return {
    name: c.semaphore,
    holder: c.holder,
    lease_id: c.lease.toString(),
    fencing_token: c.token,
    ttl: ttlSeconds,
    remaining_ms: remainingMs,
    position,
  };
}

// ---------------------------------------------------------------- methods

async function acquire(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const name = nameOf(w);
  const holder = holderOf(w);
  const ttl = int64FromWire(w.ttl ?? "0");
  if (ttl <= 0n) throw new LeaseholdError("invalid", "ttl: expected a positive number of seconds");
  if (ttl > BigInt(MAX_LEASE_TTL_SECONDS)) throw new ErrorAnswer("LeaseTTLTooLarge");
  const permits = permitsOf(w);
  const auth = await host.authorize(call, [readPrefix(semaphorePrefix(name))]);
  const out = await host.propose({
    type: "semaphoreAcquire",
    semaphore: name,
    holder,
    id: leaseId(0n),
    ttlSeconds: Number(ttl),
    permits,
    wait: w.wait === true,
    auth,
    ...sessionOf(call),
  });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind !== "semaphoreAcquire") throwFailed(r);
  if (r.outcome === "permitsMismatch")
    throw new LeaseholdError(
      "permitsMismatch",
      `semaphore "${name}" has ${r.permits} permits, not ${permits} (the first claim fixed them)`,
      { permits: String(r.permits) },
    );
  if (r.outcome === "full")
    throw new LeaseholdError(
      "semaphoreFull",
      `semaphore "${name}" has all ${r.permits} permits held (${r.holders} holders, ${r.position - r.holders} waiting); acquire with wait to queue`,
      { holders: String(r.holders), permits: String(r.permits) },
    );
  const mine: SemaphoreClaim = {
    semaphore: name,
    holder,
    lease: r.id,
    permits,
    token: revision(r.header.revision),
  };
  const answer = (rev: number, position: number): W => ({
    header: host.header(rev),
    holding: holdingToWire(mine, r.ttlSeconds, r.ttlSeconds * 1000, position),
    permits,
  });
  if (r.position < permits) return answer(r.header.revision, r.position);

  const keepAlive = setInterval(
    () => host.member.keepAlive(r.id).catch(() => {}),
    Math.max(100, (r.ttlSeconds * 1000) / 3),
  );
  let turn: PermitOutcome;
  try {
    turn = await waitPermit(host, call, { name, lease: r.id, token: mine.token });
  } finally {
    clearInterval(keepAlive);
  }
  switch (turn.kind) {
    case "acquired":
      // A full TTL from now: the holder's own renewals start from this answer.
      await host.member.keepAlive(r.id);
      return answer(turn.revision, turn.position);
    case "lost":
      throw new LeaseholdError(
        "notFound",
        `the claim on semaphore "${name}" was lost while waiting (lease ${hexLease(r.id)} was revoked)`,
      );
    case "cancelled":
      await revokeQuietly(host, r.id, auth);
      throw new CallCancelled();
    case "failed":
      await revokeQuietly(host, r.id, auth);
      throw turn.error;
  }
}

async function renew(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const id = leaseOf(w);
  const holder = holderOf(w);
  const find = (m: StateMachine): SemaphoreClaim | undefined => m.semaphoreClaimsOfLease(id)[0];
  const claim = (await host.member.read(false, find)) ?? (await host.member.read(true, find));
  if (claim === undefined)
    throw new LeaseholdError("notFound", `lease ${hexLease(id)} holds no semaphore claim`);
  // As etcd's LeaseKeepAlive: the caller must be allowed to write the lease's (claim) key.
  await host.authorize(call, [{ key: semaphoreKey(claim.semaphore, id), type: "write" }]);
  if (claim.holder !== holder)
    throw new LeaseholdError(
      "notHolder",
      `lease ${hexLease(id)} on semaphore "${claim.semaphore}" is held by "${claim.holder}", not "${holder}"`,
      { holder: claim.holder },
    );
  const ttl = await host.member.keepAlive(id);
  if (ttl <= 0) throw new LeaseholdError("notFound", `lease ${hexLease(id)} has expired`);
  return { header: host.header(), ttl };
}

async function release(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const name = nameOf(w);
  const id = leaseOf(w);
  const holder = holderOf(w);
  const auth = await host.authorize(call, []);
  const out = await host.propose({
    type: "semaphoreRelease",
    semaphore: name,
    id,
    holder,
    auth,
    ...sessionOf(call),
  });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind === "semaphoreRelease") return { header: host.header(r.header.revision) };
  if (r.kind === "failed" && r.error === "leaseNotFound")
    throw new LeaseholdError("notFound", `lease ${hexLease(id)} holds no claim on semaphore "${name}"`);
  if (r.kind === "failed" && r.error === "notHolder")
    throw new LeaseholdError(
      "notHolder",
      `lease ${hexLease(id)} on semaphore "${name}" is not held by "${holder}"`,
    );
  throwFailed(r);
}

async function get(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const name = nameOf(w);
  await host.authorize(call, [readPrefix(semaphorePrefix(name))]);
  const { claims, ttls, rev } = await host.member.read(true, (m) => {
    const cs = m.semaphoreClaims(name);
    return { claims: cs, ttls: cs.map((c) => m.lease(c.lease)?.ttlSeconds ?? 0), rev: m.currentRevision() };
  });
  const view = semaphoreView(claims);
  const remaining = await Promise.all(
    view.holders.map((c, i) => (i < GET_REMAINING_HOLDERS_MAX ? remainingMs(host, c.lease) : -1)),
  );
  return {
    header: host.header(rev),
    permits: view.permits,
    holders: view.holders.map((c, i) => holdingToWire(c, ttls[i]!, remaining[i]!, i)),
    waiters: view.waiters.map((c, i) => {
      const position = view.holders.length + i;
      return holdingToWire(c, ttls[position]!, -1, position);
    }),
  };
}

// ---------------------------------------------------------------- waiting

/** How a wait for a permit ended. */
type PermitOutcome =
  /** Our claim holds, at `revision` and `position` (confirmed by a linearizable read). */
  | { readonly kind: "acquired"; readonly revision: number; readonly position: number }
  /** Our claim is gone (lease expired or revoked) or is another incarnation. */
  | { readonly kind: "lost" }
  /** The client cancelled the call, or its deadline passed. */
  | { readonly kind: "cancelled" }
  /** The member could not tell (the confirming read failed, the hub is full). */
  | { readonly kind: "failed"; readonly error: unknown };

/** The claim a waiter waits with: on semaphore `name`, under `lease`, made at `token`. */
interface PermitTarget {
  readonly name: string;
  readonly lease: LeaseId;
  readonly token: Revision;
}

/** Where the claim stands in `m`: gone, or its position (claims older than it), the permits, and whether it holds. */
function standing(
  m: StateMachine,
  target: PermitTarget,
):
  | { readonly kind: "lost" }
  | { readonly kind: "holds" | "waits"; readonly position: number; readonly permits: number } {
  evaluations++;
  const claims = m.semaphoreClaims(target.name);
  const position = claims.findIndex((c) => c.lease === target.lease && c.token === target.token);
  if (position < 0) return { kind: "lost" };
  const permits = semaphoreView(claims).permits;
  return { kind: position < permits ? "holds" : "waits", position, permits };
}

/** Full looks at a semaphore's claims by waiters, ever (tests: a release must not make every waiter look). */
let evaluations = 0;

/** How many times a semaphore waiter read all the claims of its semaphore (for tests). */
export function semaphoreEvaluations(): number {
  return evaluations;
}

/** Waits until the target claim holds a permit; see the header. */
function waitPermit(host: ApiHost, call: CallInfo, target: PermitTarget): Promise<PermitOutcome> {
  return new Promise((resolve) => new PermitWaiter(host, call, target, resolve).start());
}

/** Live waiters (tests check that none is left behind). */
let waitersLive = 0;

/** Semaphore waits in progress in this process (for tests and metrics). */
export function semaphoreWaiters(): number {
  return waitersLive;
}

/**
 * One wait: a watcher of deletes under the semaphore's prefix (a claim can
 * only move up when an older one goes, and our own going is a delete too),
 * and what ends the wait. The same steps as recipes.ts TurnWaiter, with
 * "fewer than `permits` older claims" for "no older key". The claims are read
 * in full only when the wait starts and when the count of older claims,
 * kept from the deletes the watcher reports (their previous key-values carry
 * the create revision, which orders claims), falls below the permits: a
 * release costs each other waiter one look at one event, not a read of every
 * claim.
 */
class PermitWaiter {
  private readonly host: ApiHost;
  private readonly call: CallInfo;
  private readonly target: PermitTarget;
  private readonly resolve: (o: PermitOutcome) => void;
  /** The hub the watcher is on (a snapshot restore replaces it) and its id. */
  private hub: WatchHub | undefined;
  private watchId: WatchId | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly onCancel = (): void => this.finish({ kind: "cancelled" });
  /** A confirming read is under way: applies change nothing until it answers. */
  private confirming = false;
  private settled = false;
  /** Live claims older than ours, and the permits, as of the last full look plus the deletes seen since. */
  private older = 0;
  private permits = 1;

  constructor(host: ApiHost, call: CallInfo, target: PermitTarget, resolve: (o: PermitOutcome) => void) {
    this.host = host;
    this.call = call;
    this.target = target;
    this.resolve = resolve;
  }

  start(): void {
    waitersLive++;
    if (this.call.cancelled === true) {
      this.finish({ kind: "cancelled" });
      return;
    }
    this.call.once?.("cancelled", this.onCancel);
    this.unsubscribe = this.host.subscribeApplied((restored) => this.onApplied(restored));
    this.evaluate();
  }

  private onApplied(restored: boolean): void {
    if (this.settled || this.confirming) return;
    if (restored) {
      // The old hub and its watcher are gone with the old state: start over.
      this.hub = undefined;
      this.watchId = undefined;
      this.evaluate();
    } else if (this.countDeletes() === "look") {
      this.evaluate();
    }
  }

  /**
   * Drains our watcher (deletes only, with their previous key-values): each
   * older claim gone moves us up one. "look" when the claims must be read in
   * full: we may hold now, our own claim went, the watcher was cancelled, or
   * a delete came without its previous key-value.
   */
  private countDeletes(): "look" | "wait" {
    const hub = this.hub;
    const id = this.watchId;
    if (hub === undefined || id === undefined) return "wait";
    let look = false;
    for (;;) {
      const rs = hub.drain(id, DRAIN_RESPONSES_MAX);
      if (rs.length === 0) break;
      for (const r of rs) {
        if (r.canceled) look = true;
        for (const e of r.events) {
          const prev = e.prevKv;
          if (prev === undefined || prev.lease === this.target.lease) look = true;
          else if (prev.createRevision < this.target.token) this.older--;
        }
      }
    }
    return look || this.older < this.permits ? "look" : "wait";
  }

  /** Looks at the state now: lost, holding (then confirm), or watch for deletes. */
  private evaluate(): void {
    this.closeWatcher();
    const now = standing(this.host.member.machine, this.target);
    if (now.kind === "lost") {
      this.finish({ kind: "lost" });
      return;
    }
    if (now.kind === "holds") {
      this.confirm();
      return;
    }
    this.older = now.position;
    this.permits = now.permits;
    const hub = this.host.member.replica.hub;
    const prefix = semaphorePrefix(this.target.name);
    const created = hub.create({
      key: prefix,
      rangeEnd: prefixEnd(prefix),
      filters: ["noPut"],
      prevKv: true,
    });
    if (!created.ok) {
      this.finish({ kind: "failed", error: new ErrorAnswer("RequestTooManyRequests") });
      return;
    }
    this.hub = hub;
    this.watchId = created.watchId;
  }

  /** Holding locally: a linearizable read confirms it. */
  private confirm(): void {
    this.confirming = true;
    this.host.member
      .read(true, (m) => ({ now: standing(m, this.target), rev: m.currentRevision() }))
      .then(
        ({ now, rev }) => {
          this.confirming = false;
          if (this.settled) return;
          if (now.kind === "lost") this.finish({ kind: "lost" });
          // A place only shrinks; should a restore have changed that, wait again.
          else if (now.kind === "waits") this.evaluate();
          else this.finish({ kind: "acquired", revision: rev, position: now.position });
        },
        (error: unknown) => {
          this.confirming = false;
          this.finish({ kind: "failed", error });
        },
      );
  }

  private closeWatcher(): void {
    // A hub replaced by a restore is garbage with its watcher: nothing to close there.
    if (this.hub !== undefined && this.watchId !== undefined && this.hub === this.host.member.replica.hub)
      this.hub.close(this.watchId);
    this.hub = undefined;
    this.watchId = undefined;
  }

  private finish(outcome: PermitOutcome): void {
    if (this.settled) return;
    this.settled = true;
    waitersLive--;
    this.closeWatcher();
    this.unsubscribe?.();
    this.call.removeListener?.("cancelled", this.onCancel);
    this.resolve(outcome);
  }
}
