/**
 * leasehold.v1 Leases and Fences, server side (proto/leaseholdpb/leasehold.proto;
 * the state in src/state/resources.ts).
 *
 * Acquire(resource, holder, ttl, wait):
 * - One proposal ("acquire"): a fresh lease of `ttl` (its id chosen by the
 *   state machine) and its claim key, in one revision; or, when the resource
 *   is held and `wait` is false, nothing, answered ALREADY_EXISTS with the
 *   holder, its lease, its fencing token and its remaining time (asked of the
 *   leader) as trailers.
 * - With `wait` and a holder: the claim queues (FIFO, by create revision) and
 *   the call waits its turn (recipes.ts waitTurn: no polling, confirmed by a
 *   linearizable read). While it waits the server keeps the claim's lease
 *   alive (every TTL/3), so a waiter is not dropped for not renewing a lease
 *   it does not hold yet; once it holds, the lease is renewed once more and
 *   from then on renewing is the holder's job. A cancelled call (the client
 *   went away, or its deadline passed) revokes the claim's lease, and so does
 *   a failed wait; a claim lost while waiting (revoked by someone) answers
 *   NOT_FOUND.
 * - The answer: the holding, whose fencing token is the claim's create
 *   revision.
 * Renew(lease, holder): the lease's claim must name `holder` (PERMISSION_DENIED
 *   otherwise; NOT_FOUND without a claim); then the leader's keepalive. The
 *   holder of a claim never changes, so this member's own state answers when
 *   it knows the lease; only a lease it does not know yet costs a
 *   linearizable read.
 * KeepAlive (a stream): each request renews one lease's claim, a resource's
 *   or a semaphore's, checked as Renew checks it; answers matched by seq,
 *   refusals in the message (the stream goes on), at most
 *   KEEPALIVE_INFLIGHT_MAX in flight before the stream stops being read.
 * Release(resource, lease, holder): one proposal; refused unless the claim is
 *   the holder's.
 * Get(resource), List(prefix), CheckFence(resource, token): linearizable reads.
 * FencedPut(resource, token, put): one proposal, checked where it applies.
 *
 * Permissions, while auth is on: Acquire and FencedPut write their keys (the
 * claim key, the put's key); Renew and Release need a caller (Release is
 * checked again at apply like a lease revoke); reads read the claim prefix.
 */

import type { ServerDuplexStream, ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { LeaseId, ResourceClaim, StateMachine } from "../state/index.ts";
import {
  holderProblem,
  leaseId,
  MAX_LEASE_TTL_SECONDS,
  prefixEnd,
  RELEASE_REASON_LENGTH_MAX,
  resourceKey,
  resourceNameProblem,
  resourceNamesPrefix,
  resourcePrefix,
  revision,
  semaphoreKey,
} from "../state/index.ts";
import type { ApiHost, CallInfo } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { kvToWire } from "./convert.ts";
import type { LeaseEventHub, LeaseEventType } from "./lease-events.ts";
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
import { ERROR_KIND_TRAILER, LeaseholdError } from "./leasehold-errors.ts";
import type { WireMessage } from "./proto.ts";
import { int64FromWire } from "./proto.ts";
import { CallCancelled, readPrefix, waitTurn, wireBytes } from "./recipes.ts";

type W = WireMessage;

/** The Leases service's implementation for the gRPC server. */
export function leasesService(host: ApiHost, events: LeaseEventHub): UntypedServiceImplementation {
  return {
    Acquire: host.unary((w, call) => acquire(host, w, call)),
    Renew: host.unary((w, call) => renew(host, w, call)),
    KeepAlive: (call: ServerDuplexStream<W, W>) => keepAliveStream(host, call),
    Release: host.unary((w, call) => release(host, w, call)),
    Get: host.unary((w, call) => get(host, w, call)),
    List: host.unary((w, call) => list(host, w, call)),
    Events: (call: ServerWritableStream<W, W>) => void streamEvents(host, call, events),
    RequestRelease: host.unary((w, call) => requestRelease(host, w, call)),
    Revoke: host.unary((w, call) => forceRevoke(host, w, call)),
  };
}

/** Resolves true when `resource`'s lock-delay is over (looked at after every apply), false when the call is cancelled. */
function lockDelayEnded(host: ApiHost, call: CallInfo, resource: string): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ended: boolean) => {
      if (done) return;
      done = true;
      unsubscribe();
      call.removeListener?.("cancelled", onCancel);
      resolve(ended);
    };
    const onCancel = () => finish(false);
    const unsubscribe = host.subscribeApplied(() => {
      if (host.member.machine.lockDelay(resource) === undefined) finish(true);
    });
    call.once?.("cancelled", onCancel);
    if (call.cancelled === true) finish(false);
    else if (host.member.machine.lockDelay(resource) === undefined) finish(true);
  });
}

/** Leases.RequestRelease: one proposal (a deadline lease and the request next to the claim). */
async function requestRelease(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const resource = resourceOf(w);
  const requester = typeof w.requester === "string" ? w.requester : "";
  const problem = holderProblem(requester);
  if (problem !== undefined)
    throw new LeaseholdError("invalid", `requester: ${problem.replace("holder", "requester")}`);
  const reason = typeof w.reason === "string" ? w.reason : "";
  if (reason.length > RELEASE_REASON_LENGTH_MAX)
    throw new LeaseholdError("invalid", `reason: longer than ${RELEASE_REASON_LENGTH_MAX} characters`);
  const deadline = int64FromWire(w.deadline_seconds ?? "0");
  if (deadline <= 0n || deadline > BigInt(MAX_LEASE_TTL_SECONDS))
    throw new LeaseholdError("invalid", `deadline_seconds: expected 1 to ${MAX_LEASE_TTL_SECONDS}`);
  const auth = await host.authorize(call, []);
  const out = await host.propose({
    type: "requestRelease",
    resource,
    requester,
    reason,
    id: leaseId(0n),
    deadlineSeconds: Number(deadline),
    auth,
    ...sessionOf(call),
  });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind !== "requestRelease") throwFailed(r);
  if (r.holder === undefined) throw new LeaseholdError("notFound", `nobody holds "${resource}"`);
  return { header: host.header(r.header.revision), holding: holdingToWire(r.holder, 0, -1) };
}

/** Leases.Revoke: allowed once a release was requested and its deadline passed (checked where it applies). */
async function forceRevoke(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const resource = resourceOf(w);
  const id = leaseOf(w);
  const auth = await host.authorize(call, []);
  const out = await host.propose({ type: "forceRevoke", resource, id, auth, ...sessionOf(call) });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind !== "forceRevoke") throwFailed(r);
  switch (r.outcome) {
    case "revoked":
      return { header: host.header(r.header.revision) };
    case "noClaim":
      throw new LeaseholdError("notFound", `lease ${hexLease(id)} holds no claim on "${resource}"`);
    case "notRequested":
      throw new LeaseholdError(
        "notRequested",
        `nobody asked the holder of "${resource}" (lease ${hexLease(id)}) to release it: RequestRelease first`,
      );
    case "beforeDeadline": {
      const req = await host.member.read(false, (m) => m.releaseRequest(resource, id));
      throw new LeaseholdError(
        "beforeDeadline",
        `the release of "${resource}" (lease ${hexLease(id)}) was requested${req === undefined ? "" : ` by "${req.request.requester}"`}; its deadline has not passed yet`,
        req === undefined ? {} : { requester: req.request.requester },
      );
    }
  }
}

/** A remaining time for a message: whole seconds from 10 s on, tenths below; "time left unknown" for -1. */
function timeLeft(ms: number): string {
  if (ms < 0) return "time left unknown";
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s left`;
}

/** LeaseEvent.Type CREATED: the first message of an Events stream. */
const CREATED_EVENT = 7;

const EVENT_TYPES: Readonly<Record<LeaseEventType, number>> = {
  grant: 0,
  queue: 1,
  renew: 2,
  release: 3,
  expire: 4,
  revoke: 5,
  releaseRequested: 6,
};

/**
 * Leases.Events: every event of the resources under the prefix, from now on, until the client
 * cancels. A client that does not read (grpc-js holding more than EVENTS_BUFFERED_MAX unsent
 * messages) is cut off with RESOURCE_EXHAUSTED rather than buffered without bound.
 */
async function streamEvents(
  host: ApiHost,
  call: ServerWritableStream<W, W>,
  events: LeaseEventHub,
): Promise<void> {
  if (host.refuseLearnerStream(call)) return;
  const fail = (err: unknown) => {
    call.on("error", () => {});
    call.emit("error", host.toServiceError(err));
  };
  try {
    const prefix = typeof call.request.prefix === "string" ? call.request.prefix : "";
    if (prefix.includes("\u0000")) throw new LeaseholdError("invalid", "prefix: contains NUL");
    const keys = resourceNamesPrefix(prefix);
    await host.authorize(call, [{ key: keys, rangeEnd: prefixEnd(keys), type: "read" }]);
    let unsubscribe: (() => void) | undefined;
    const stop = () => unsubscribe?.();
    unsubscribe = events.subscribe(prefix, (e) => {
      if (call.writableLength > EVENTS_BUFFERED_MAX) {
        stop();
        fail(new LeaseholdError("invalid", "the events stream was not read: too many events unsent"));
        return;
      }
      call.write({
        type: EVENT_TYPES[e.type],
        holding: holdingToWire(e.claim, 0, -1),
        revision: e.revision,
        ...(e.request === undefined
          ? {}
          : {
              requester: e.request.requester,
              reason: e.request.reason,
              deadline_seconds: e.request.deadlineSeconds,
            }),
      });
    });
    if (unsubscribe === undefined) throw new ErrorAnswer("RequestTooManyRequests");
    // Subscribed: what applies from here on is reported, so the client may act now (CREATED).
    call.write({ type: CREATED_EVENT, revision: host.header().revision });
    call.on("cancelled", stop);
    call.on("close", stop);
    call.on("error", stop);
  } catch (err) {
    fail(err);
  }
}

/** Unsent event messages a stream may hold before it is cut off. */
const EVENTS_BUFFERED_MAX = 10_000;

/** The Fences service's implementation for the gRPC server. */
export function fencesService(host: ApiHost): UntypedServiceImplementation {
  return {
    CheckFence: host.unary((w, call) => checkFence(host, w, call)),
    FencedPut: host.unary((w, call) => fencedPut(host, w, call)),
  };
}

// ---------------------------------------------------------------- requests

function resourceOf(w: W, field = "resource"): string {
  const v = w[field];
  const name = typeof v === "string" ? v : "";
  const problem = resourceNameProblem(name);
  if (problem !== undefined) throw new LeaseholdError("invalid", `${field}: ${problem}`);
  return name;
}

/** A holding on the wire; `remainingMs` -1 when unknown. */
function holdingToWire(c: ResourceClaim, ttlSeconds: number, remainingMs: number): W {
  return {
    resource: c.resource,
    holder: c.holder,
    lease_id: c.lease.toString(),
    fencing_token: c.token,
    ttl: ttlSeconds,
    remaining_ms: remainingMs,
  };
}

// ---------------------------------------------------------------- Leases

async function acquire(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const resource = resourceOf(w);
  const holder = holderOf(w);
  const ttl = int64FromWire(w.ttl ?? "0");
  if (ttl <= 0n) throw new LeaseholdError("invalid", "ttl: expected a positive number of seconds");
  if (ttl > BigInt(MAX_LEASE_TTL_SECONDS)) throw new ErrorAnswer("LeaseTTLTooLarge");
  const wait = w.wait === true;
  const lockDelaySeconds = int64FromWire(w.lock_delay_seconds ?? "0");
  if (lockDelaySeconds < 0n || lockDelaySeconds > BigInt(MAX_LEASE_TTL_SECONDS))
    throw new LeaseholdError("invalid", `lock_delay_seconds: expected 0 to ${MAX_LEASE_TTL_SECONDS}`);
  const prefix = resourcePrefix(resource);
  const auth = await host.authorize(call, [readPrefix(prefix)]);
  const out = await host.propose({
    type: "acquire",
    resource,
    holder,
    id: leaseId(0n),
    ttlSeconds: Number(ttl),
    wait,
    ...(lockDelaySeconds > 0n ? { lockDelaySeconds: Number(lockDelaySeconds) } : {}),
    auth,
    ...sessionOf(call),
  });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind !== "acquire") throwFailed(r);
  if (!r.granted) {
    const h = r.holder;
    const delay = r.lockDelay;
    if (h === undefined && delay !== undefined) {
      const left = await remainingMs(host, delay.lease);
      throw new LeaseholdError(
        "held",
        `resource "${resource}" is in its lock-delay after "${delay.holder}"'s lease expired (${timeLeft(left)})`,
        { holder: "", "lock-delay-of": delay.holder, "remaining-ms": String(left) },
      );
    }
    if (h === undefined) throw new Error("api: an acquire was refused without a holder");
    const left = await remainingMs(host, h.lease);
    throw new LeaseholdError(
      "held",
      `resource "${resource}" is held by "${h.holder}" (lease ${hexLease(h.lease)}, ${timeLeft(left)})`,
      {
        holder: h.holder,
        "lease-id": h.lease.toString(),
        "fencing-token": String(h.token),
        "remaining-ms": String(left),
      },
    );
  }
  const mine: ResourceClaim = { resource, holder, lease: r.id, token: revision(r.header.revision) };
  const answer = (rev: number): W => ({
    header: host.header(rev),
    holding: holdingToWire(mine, r.ttlSeconds, r.ttlSeconds * 1000),
  });
  if (r.position === 0) return answer(r.header.revision);

  const keepAlive = setInterval(
    () => host.member.keepAlive(r.id).catch(() => {}),
    Math.max(100, (r.ttlSeconds * 1000) / 3),
  );
  let turn: Awaited<ReturnType<typeof waitTurn>>;
  try {
    for (;;) {
      turn = await waitTurn(host, call, {
        prefix,
        key: resourceKey(resource, r.id),
        createRevision: mine.token,
      });
      // First in line, but the resource may be in a lock-delay: nobody holds until it ends.
      if (turn.kind !== "acquired" || host.member.machine.lockDelay(resource) === undefined) break;
      if (!(await lockDelayEnded(host, call, resource))) {
        turn = { kind: "cancelled" };
        break;
      }
    }
  } finally {
    clearInterval(keepAlive);
  }
  switch (turn.kind) {
    case "acquired":
      // A full TTL from now: the holder's own renewals start from this answer.
      await host.member.keepAlive(r.id);
      return answer(turn.revision);
    case "lost":
      throw new LeaseholdError(
        "notFound",
        `the claim on "${resource}" was lost while waiting (lease ${hexLease(r.id)} was revoked)`,
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
  const find = (m: StateMachine) => m.claimsOfLease(id)[0];
  const claim = (await host.member.read(false, find)) ?? (await host.member.read(true, find));
  if (claim === undefined) throw new LeaseholdError("notFound", `lease ${hexLease(id)} holds no resource`);
  const key = resourceKey(claim.resource, id);
  const ttl = await keepClaim(host, call, key, id, holder, `"${claim.resource}"`, claim.holder);
  return { header: host.header(), ttl };
}

/**
 * The checks and the leader's keepalive of a claim's lease; the TTL it now
 * runs. While auth is on the caller must be allowed to write the claim key (etcd's
 * LeaseKeepAlive checks write on a lease's keys likewise); the holder named
 * must be the claim's.
 */
async function keepClaim(
  host: ApiHost,
  call: CallInfo,
  key: Uint8Array,
  id: LeaseId,
  holder: string,
  what: string,
  claimHolder: string,
): Promise<number> {
  await host.authorize(call, [{ key, type: "write" }]);
  if (claimHolder !== holder)
    throw new LeaseholdError(
      "notHolder",
      `lease ${hexLease(id)} on ${what} is held by "${claimHolder}", not "${holder}"`,
      { holder: claimHolder },
    );
  const ttl = await host.member.keepAlive(id);
  if (ttl <= 0) throw new LeaseholdError("notFound", `lease ${hexLease(id)} has expired`);
  return ttl;
}

/** Renewals a KeepAlive stream may have in flight; beyond, the server stops reading it. */
const KEEPALIVE_INFLIGHT_MAX = 512;

/**
 * Leases.KeepAlive: each request renews the resource or semaphore claim of its
 * lease as Renew (or Semaphores.Renew) would; answers are written as they
 * complete, matched by seq, refusals in the message. Flow control: at
 * KEEPALIVE_INFLIGHT_MAX renewals in flight, or while grpc-js holds unsent
 * answers, the stream is paused (a client that sends but does not read stops
 * being read).
 */
function keepAliveStream(host: ApiHost, call: ServerDuplexStream<W, W>): void {
  if (host.refuseLearnerStream(call)) return;
  let inFlight = 0;
  let blocked = false;
  let paused = false;
  let halfClosed = false;
  const settle = (): void => {
    const want = blocked || inFlight >= KEEPALIVE_INFLIGHT_MAX;
    if (want !== paused) {
      paused = want;
      if (want) call.pause();
      else call.resume();
    }
    if (halfClosed && inFlight === 0 && !call.destroyed) call.end();
  };
  const answer = (m: W): void => {
    inFlight--;
    if (!call.cancelled && !call.destroyed && !call.write(m)) blocked = true;
    settle();
  };
  call.on("drain", () => {
    blocked = false;
    settle();
  });
  call.on("data", (w: W) => {
    inFlight++;
    settle();
    const seq = w.seq ?? "0";
    const leaseField = w.lease_id ?? "0";
    renewAny(host, w, call).then(
      (ttl) => answer({ header: host.header(), lease_id: leaseField, seq, ttl }),
      (err: unknown) => {
        const se = host.toServiceError(err);
        const kind = se.metadata?.get(ERROR_KIND_TRAILER)[0];
        answer({
          header: host.header(),
          lease_id: leaseField,
          seq,
          ttl: 0,
          error_code: se.code,
          error_kind: typeof kind === "string" ? kind : "",
          error_message: se.details ?? se.message,
        });
      },
    );
  });
  call.on("end", () => {
    halfClosed = true;
    settle();
  });
  call.on("error", () => {});
}

/** One KeepAlive request: the lease's resource claim, else its semaphore claim, renewed; the TTL. */
async function renewAny(host: ApiHost, w: W, call: CallInfo): Promise<number> {
  const id = leaseOf(w);
  const holder = holderOf(w);
  const find = (m: StateMachine) => {
    const claim = m.claimsOfLease(id)[0];
    if (claim !== undefined) return { claim, semaphore: undefined };
    const semaphore = m.semaphoreClaimsOfLease(id)[0];
    return semaphore === undefined ? undefined : { claim: undefined, semaphore };
  };
  const found = (await host.member.read(false, find)) ?? (await host.member.read(true, find));
  if (found === undefined) throw new LeaseholdError("notFound", `lease ${hexLease(id)} holds no claim`);
  if (found.claim !== undefined) {
    const c = found.claim;
    return keepClaim(host, call, resourceKey(c.resource, id), id, holder, `"${c.resource}"`, c.holder);
  }
  const s = found.semaphore;
  return keepClaim(
    host,
    call,
    semaphoreKey(s.semaphore, id),
    id,
    holder,
    `semaphore "${s.semaphore}"`,
    s.holder,
  );
}

async function release(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const resource = resourceOf(w);
  const id = leaseOf(w);
  const holder = holderOf(w);
  const auth = await host.authorize(call, []);
  const out = await host.propose({ type: "release", resource, id, holder, auth, ...sessionOf(call) });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind === "release") return { header: host.header(r.header.revision) };
  if (r.kind === "failed" && r.error === "leaseNotFound")
    throw new LeaseholdError("notFound", `lease ${hexLease(id)} holds no claim on "${resource}"`);
  if (r.kind === "failed" && r.error === "notHolder")
    throw new LeaseholdError(
      "notHolder",
      `lease ${hexLease(id)} on "${resource}" is not held by "${holder}"`,
    );
  throwFailed(r);
}

async function get(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const resource = resourceOf(w);
  await host.authorize(call, [readPrefix(resourcePrefix(resource))]);
  const { claims, ttls, rev, delayed } = await host.member.read(true, (m) => {
    const cs = m.resourceClaims(resource);
    return {
      claims: cs,
      ttls: cs.map((c) => m.lease(c.lease)?.ttlSeconds ?? 0),
      rev: m.currentRevision(),
      delayed: m.lockDelay(resource) !== undefined,
    };
  });
  // In a lock-delay nobody holds: every claim waits.
  const holds = delayed ? 0 : 1;
  const first = claims[0];
  const out: W = {
    header: host.header(rev),
    waiters: claims.slice(holds).map((c, i) => holdingToWire(c, ttls[i + holds]!, -1)),
  };
  if (holds === 1 && first !== undefined)
    out.holding = holdingToWire(first, ttls[0]!, await remainingMs(host, first.lease));
  return out;
}

async function list(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const namePrefix = typeof w.prefix === "string" ? w.prefix : "";
  if (namePrefix.includes("\u0000")) throw new LeaseholdError("invalid", "prefix: contains NUL");
  const keys = resourceNamesPrefix(namePrefix);
  await host.authorize(call, [{ key: keys, rangeEnd: prefixEnd(keys), type: "read" }]);
  const { holders, rev } = await host.member.read(true, (m) => {
    const hs = m.resourceHolders(namePrefix);
    return {
      holders: hs.map((c) => ({ c, ttl: m.lease(c.lease)?.ttlSeconds ?? 0 })),
      rev: m.currentRevision(),
    };
  });
  return { header: host.header(rev), holdings: holders.map(({ c, ttl }) => holdingToWire(c, ttl, -1)) };
}

// ---------------------------------------------------------------- Fences

function tokenOf(w: W): number {
  const t = int64FromWire(w.fencing_token ?? "0");
  if (t <= 0n || t > BigInt(Number.MAX_SAFE_INTEGER))
    throw new LeaseholdError("invalid", "fencing_token: expected a revision above 0");
  return Number(t);
}

function staleFence(resource: string, token: number, holder: ResourceClaim | undefined): LeaseholdError {
  const now =
    holder === undefined ? "nobody holds it" : `"${holder.holder}" holds it with token ${holder.token}`;
  return new LeaseholdError(
    "staleFence",
    `fencing token ${token} is not current for "${resource}": ${now}`,
    holder === undefined ? {} : { holder: holder.holder, "fencing-token": String(holder.token) },
  );
}

async function checkFence(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const resource = resourceOf(w);
  const token = tokenOf(w);
  await host.authorize(call, [readPrefix(resourcePrefix(resource))]);
  const { holder, rev } = await host.member.read(true, (m) => ({
    holder: m.resourceHolder(resource),
    rev: m.currentRevision(),
  }));
  if (holder?.token !== token) throw staleFence(resource, token, holder);
  return { header: host.header(rev) };
}

async function fencedPut(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const resource = resourceOf(w);
  const token = tokenOf(w);
  const key = wireBytes(w.key);
  if (key.length === 0) throw new ErrorAnswer("EmptyKey");
  const lease = int64FromWire(w.lease ?? "0");
  const request = {
    key,
    value: wireBytes(w.value),
    ...(lease === 0n ? {} : { lease: leaseId(lease) }),
    ...(w.prev_kv === true ? { prevKv: true } : {}),
  };
  const auth = await host.authorize(call, [readPrefix(resourcePrefix(resource)), { key, type: "write" }]);
  const out = await host.propose({
    type: "fencedPut",
    resource,
    token: revision(token),
    request,
    auth,
    ...sessionOf(call),
  });
  const r = out.result;
  sessionRefusal(r);
  if (r.kind !== "fencedPut") throwFailed(r);
  if (!r.ok) throw staleFence(resource, token, r.holder);
  const answer: W = { header: host.header(r.header.revision) };
  if (r.prevKv !== undefined) answer.prev_kv = kvToWire(r.prevKv);
  return answer;
}
