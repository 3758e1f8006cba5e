/**
 * What the Lock and Election services share. etcd 3.4 serves both by running
 * its own client recipes inside the member (etcdserver/api/v3lock/lock.go and
 * v3election/election.go over clientv3/concurrency: session.go, mutex.go,
 * election.go, key.go); leasehold does the same steps directly on the member.
 * Written from etcd's semantics (release-3.4), not from its code.
 *
 * Contract:
 * - Keys: a session's key is `name + "/" + lease id in lowercase hex`
 *   (concurrency's `fmt.Sprintf("%s%x", pfx, leaseID)`), put with that lease;
 *   the waiters of a name are ordered by create revision, the oldest holds.
 * - A session needs a lease: lease 0 asks for a fresh one of 60 seconds
 *   (concurrency.NewSession's default TTL), which nobody keeps alive (etcd's
 *   servers orphan the session at once). It stays after the call.
 * - Errors: etcd's servers answer whatever their in-process client returned,
 *   a plain error, so grpc-go sends every one of them with code Unknown and
 *   the error's text ("etcdserver: requested lease not found" included). Only
 *   the learner refusal comes from etcd's interceptor, with its own code.
 * - Waiting (`waitTurn`): until no key under the prefix has a smaller create
 *   revision than ours. Not etcd 3.4's way (issue 11456, Jepsen 2020: a
 *   waiter whose lease expired was told it held the lock): our own key is
 *   watched too, and the wait ends "lost" the moment it is gone or is another
 *   incarnation; acquisition is confirmed by one linearizable read (as etcd
 *   ≥ 3.5's mutex does) that still finds our key, our create revision, and no
 *   older key. A cancelled call (client cancel or deadline) ends the wait at
 *   once. Nothing is polled on a timer: the waiter re-checks only when the
 *   watch hub reports a delete of our key or of the key just before ours
 *   (etcd waits on that one too), or when a snapshot replaced the state.
 * - Limits: a waiter holds two watchers of the member's hub; when the hub
 *   is full (WATCH_WATCHERS_MAX) the wait fails "etcdserver: too many requests".
 */

import type { ServiceError, sendUnaryData } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { assert } from "../raft/index.ts";
import type { Member } from "../server/member.ts";
import type {
  CommandAuth,
  CommandResult,
  KeyValue,
  LeaseId,
  RangeRequest,
  ResponseOp,
  Revision,
  StateMachine,
  TxnRequest,
  WatchHub,
  WatchId,
} from "../state/index.ts";
import { leaseId, MAX_LEASE_ID, prefixEnd, revision } from "../state/index.ts";
import type { ApiHost, CallInfo, PermissionCheck, Unary } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { writeResultToWire } from "./convert.ts";
import { etcdServiceError } from "./errors.ts";
import type { WireMessage } from "./proto.ts";
import { int64FromWire } from "./proto.ts";

type W = WireMessage;

/** concurrency.defaultSessionTTL: the TTL of the lease granted for a request with lease 0. */
export const RECIPE_SESSION_TTL_SECONDS = 60;

/** Hub responses taken per drain call while looking for deletes. */
const DRAIN_RESPONSES_MAX = 64;

const SLASH = Uint8Array.of(0x2f);

// ---------------------------------------------------------------- wire

/** A bytes field as decoded (Buffer), or empty. */
export function wireBytes(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(0);
}

/** `name + "/"`: the prefix under which a name's sessions put their keys (NewMutex, NewElection). */
export function recipePrefix(name: Uint8Array): Uint8Array {
  return concat(name, SLASH);
}

/** `prefix + lease id in lowercase hex`, as concurrency's `%x` prints it. */
export function sessionKey(prefix: Uint8Array, lease: LeaseId): Uint8Array {
  return concat(prefix, new TextEncoder().encode(lease.toString(16)));
}

/** The permission checks of reading every key under `prefix`. */
export function readPrefix(prefix: Uint8Array): PermissionCheck {
  return { key: prefix, rangeEnd: prefixEnd(prefix), type: "read" };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

// ---------------------------------------------------------------- answers

/** Whether the member is a learner now (etcd's interceptor refuses these services there). */
export function isLearner(member: Member): boolean {
  return member.raft.conf.learners.includes(member.id);
}

/** The error etcd's recipe servers answer for `err`: its etcd text, code Unknown (see the header). */
export function recipeServiceError(host: ApiHost, err: unknown): ServiceError {
  return Object.assign(host.toServiceError(err), { code: status.UNKNOWN });
}

/** Thrown by a handler whose call the client cancelled (or whose deadline passed). */
export class CallCancelled extends Error {
  constructor() {
    super("context canceled");
  }
}

/**
 * A unary method of the Lock or Election service: refused on a learner
 * (etcd's interceptor: "rpc not supported for learner", Unavailable), its
 * errors answered with code Unknown (see the header); a cancelled call is
 * answered Cancelled, which grpc-js does not deliver (the client is gone).
 */
export function recipeUnary(host: ApiHost, handler: (w: W, call: CallInfo) => Promise<W>): Unary {
  return (call, callback: sendUnaryData<W>) => {
    if (isLearner(host.member)) {
      callback(etcdServiceError("NotSupportedForLearner"));
      return;
    }
    Promise.resolve(call.request)
      .then((w) => handler(w, call))
      .then(
        (res) => callback(null, res),
        (err: unknown) =>
          callback(
            err instanceof CallCancelled
              ? Object.assign(err, { code: status.CANCELLED, details: err.message })
              : recipeServiceError(host, err),
          ),
      );
  };
}

// ---------------------------------------------------------------- member steps

/**
 * The lease of a session (concurrency.NewSession): the request's lease, or
 * for 0 a new lease of RECIPE_SESSION_TTL_SECONDS. A negative id or one
 * above etcd's range names no lease ("etcdserver: requested lease not found").
 */
export async function sessionLease(host: ApiHost, call: CallInfo, wireLease: unknown): Promise<LeaseId> {
  const id = int64FromWire(wireLease);
  if (id < 0n || id > MAX_LEASE_ID) throw new ErrorAnswer("LeaseNotFound");
  if (id !== 0n) return leaseId(id);
  // etcd's LeaseGrant: any authenticated caller.
  const auth = await host.authorize(call, []);
  const out = await host.propose({
    type: "leaseGrant",
    id: leaseId(0n),
    ttlSeconds: RECIPE_SESSION_TTL_SECONDS,
    auth,
  });
  const r = out.result;
  if (r.kind === "leaseGrant") return r.id;
  const answer = writeResultToWire(r, () => ({}));
  throw new ErrorAnswer(typeof answer === "string" ? answer : "NotCapable");
}

/** A txn's result (a write that answers anything else is answered as its etcd error). */
export type TxnOutcome = Extract<CommandResult, { kind: "txn" }>;

/**
 * Proposes `request` (as `auth`, what ApiHost.authorize answered) and waits
 * for its result; a failed txn throws its etcd error (the lease is gone, ...).
 */
export async function runTxn(
  host: ApiHost,
  request: TxnRequest,
  auth: CommandAuth | undefined,
): Promise<TxnOutcome> {
  const out = await host.propose({ type: "txn", request, auth });
  const r = out.result;
  if (r.kind === "txn") return r;
  const answer = writeResultToWire(r, () => ({}));
  throw new ErrorAnswer(typeof answer === "string" ? answer : "NotCapable");
}

/** The kvs of a txn's range response (none for another kind of response). */
export function rangeKvs(op: ResponseOp | undefined): readonly KeyValue[] {
  return op?.type === "range" ? op.response.kvs : [];
}

/** The key's current version, or undefined. */
export function getKey(m: StateMachine, key: Uint8Array): KeyValue | undefined {
  const r = m.range({ key });
  assert(r.ok, "recipes: a range of one non-empty key failed");
  return r.kvs[0];
}

/** etcd's WithFirstCreate() on `prefix`: the range that finds the oldest key under it. */
export function firstCreateRange(prefix: Uint8Array): RangeRequest {
  return { key: prefix, rangeEnd: prefixEnd(prefix), sortTarget: "create", sortOrder: "ascend", limit: 1 };
}

/** The oldest key under `prefix` (the holder, the leader), or undefined. */
export function firstCreated(m: StateMachine, prefix: Uint8Array): KeyValue | undefined {
  const r = m.range(firstCreateRange(prefix));
  assert(r.ok, "recipes: a prefix range failed");
  return r.kvs[0];
}

/** The youngest key under `prefix` older than `rev` (etcd waitDeletes' WithLastCreate + WithMaxCreateRev). */
function lastCreatedBefore(m: StateMachine, prefix: Uint8Array, rev: Revision): KeyValue | undefined {
  const r = m.range({
    key: prefix,
    rangeEnd: prefixEnd(prefix),
    sortTarget: "create",
    sortOrder: "descend",
    maxCreateRevision: revision(rev - 1),
    limit: 1,
  });
  assert(r.ok, "recipes: a prefix range failed");
  return r.kvs[0];
}

/**
 * Deletes `key` if it is still the incarnation created at `rev` (etcd's
 * Resign; its mutex Unlock deletes unconditionally, which could remove a
 * newer incarnation). Failures are logged: the caller is cleaning up.
 */
export async function deleteIfCreatedAt(
  host: ApiHost,
  key: Uint8Array,
  rev: Revision,
  auth: CommandAuth | undefined,
): Promise<void> {
  try {
    await runTxn(
      host,
      {
        compare: [{ key, target: "create", result: "equal", createRevision: rev }],
        success: [{ type: "deleteRange", request: { key } }],
      },
      auth,
    );
  } catch (err) {
    host.log(
      "warn",
      `recipes: could not delete ${Buffer.from(key).toString()} after a failed wait: ${String(err)}`,
    );
  }
}

// ---------------------------------------------------------------- apply notifications

/** Calls `listener` after every apply (see ApiHost.subscribeApplied); returns the unsubscribe. */
export function subscribeApplied(host: ApiHost, listener: (restored: boolean) => void): () => void {
  return host.subscribeApplied(listener);
}

// ---------------------------------------------------------------- waiting

/** How a wait ended. */
export type TurnOutcome =
  /** Our key is the oldest under the prefix, at `revision` (confirmed by a linearizable read). */
  | { readonly kind: "acquired"; readonly revision: number }
  /** Our key is gone (lease expired or revoked, key deleted) or is another incarnation. */
  | { readonly kind: "lost" }
  /** The client cancelled the call, or its deadline passed. */
  | { readonly kind: "cancelled" }
  /** The member could not tell (the confirming read failed, the hub is full). */
  | { readonly kind: "failed"; readonly error: unknown };

/** What a waiter waits for: `key`, created at `createRevision`, the oldest under `prefix`. */
export interface TurnTarget {
  readonly prefix: Uint8Array;
  readonly key: Uint8Array;
  readonly createRevision: Revision;
}

/** Waits until `target.key` is the oldest key under its prefix; see the header. */
export function waitTurn(host: ApiHost, call: CallInfo, target: TurnTarget): Promise<TurnOutcome> {
  return new Promise((resolve) => new TurnWaiter(host, call, target, resolve).start());
}

/** Live waiters (tests check that none is left behind). */
let waitersLive = 0;

/** Waits in progress in this process (for tests and metrics). */
export function recipeWaiters(): number {
  return waitersLive;
}

/** One wait: the hub watchers on our key and our predecessor, and what ends the wait. */
class TurnWaiter {
  private readonly host: ApiHost;
  private readonly call: CallInfo;
  private readonly target: TurnTarget;
  private readonly resolve: (o: TurnOutcome) => void;
  /** The hub the watchers are on (a snapshot restore replaces it) and their ids. */
  private hub: WatchHub | undefined;
  private watchIds: WatchId[] = [];
  private unsubscribe: (() => void) | undefined;
  private readonly onCancel = (): void => this.finish({ kind: "cancelled" });
  /** A confirming read is under way: applies change nothing until it answers. */
  private confirming = false;
  private settled = false;

  constructor(host: ApiHost, call: CallInfo, target: TurnTarget, resolve: (o: TurnOutcome) => void) {
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
    this.unsubscribe = subscribeApplied(this.host, (restored) => this.onApplied(restored));
    this.evaluate();
  }

  private onApplied(restored: boolean): void {
    if (this.settled || this.confirming) return;
    if (restored) {
      // The old hub and its watchers are gone with the old state: start over.
      this.hub = undefined;
      this.watchIds = [];
      this.evaluate();
    } else if (this.sawDelete()) {
      this.evaluate();
    }
  }

  /** Drains our watchers (deletes only): true if either key was deleted or a watcher was cancelled. */
  private sawDelete(): boolean {
    const hub = this.hub;
    if (hub === undefined) return false;
    let seen = false;
    for (const id of this.watchIds) {
      for (;;) {
        const rs = hub.drain(id, DRAIN_RESPONSES_MAX);
        if (rs.length === 0) break;
        for (const r of rs) if (r.canceled || r.events.length > 0) seen = true;
      }
    }
    return seen;
  }

  /** Looks at the state now: lost, our turn (then confirm), or watch the key before ours. */
  private evaluate(): void {
    this.closeWatchers();
    const { prefix, key, createRevision } = this.target;
    const m = this.host.member.machine;
    const mine = getKey(m, key);
    if (mine === undefined || mine.createRevision !== createRevision) {
      this.finish({ kind: "lost" });
      return;
    }
    const before = lastCreatedBefore(m, prefix, createRevision);
    if (before === undefined) {
      this.confirm();
      return;
    }
    const hub = this.host.member.replica.hub;
    this.hub = hub;
    for (const k of [before.key, key]) {
      const created = hub.create({ key: k, filters: ["noPut"] });
      if (!created.ok) {
        this.finish({ kind: "failed", error: new ErrorAnswer("RequestTooManyRequests") });
        return;
      }
      this.watchIds.push(created.watchId);
    }
  }

  /** Our turn locally: a linearizable read confirms it (etcd ≥ 3.5's mutex Get after the wait). */
  private confirm(): void {
    this.confirming = true;
    const { prefix, key, createRevision } = this.target;
    this.host.member
      .read(true, (m) => {
        const mine = getKey(m, key);
        if (mine === undefined || mine.createRevision !== createRevision) return "lost" as const;
        if (lastCreatedBefore(m, prefix, createRevision) !== undefined) return "wait" as const;
        return m.currentRevision();
      })
      .then(
        (r) => {
          this.confirming = false;
          if (this.settled) return;
          if (r === "lost") this.finish({ kind: "lost" });
          // Older keys do not appear: a revision only grows. Should one, wait for it.
          else if (r === "wait") this.evaluate();
          else this.finish({ kind: "acquired", revision: r });
        },
        (error: unknown) => {
          this.confirming = false;
          this.finish({ kind: "failed", error });
        },
      );
  }

  private closeWatchers(): void {
    // A hub replaced by a restore is garbage with its watchers: nothing to close there.
    if (this.hub !== undefined && this.hub === this.host.member.replica.hub) {
      for (const id of this.watchIds) this.hub.close(id);
    }
    this.hub = undefined;
    this.watchIds = [];
  }

  private finish(outcome: TurnOutcome): void {
    if (this.settled) return;
    this.settled = true;
    waitersLive--;
    this.closeWatchers();
    this.unsubscribe?.();
    this.call.removeListener?.("cancelled", this.onCancel);
    this.resolve(outcome);
  }
}
