/**
 * v3electionpb.Election, server side: etcd 3.4's v3election service
 * (etcdserver/api/v3election/election.go over clientv3/concurrency/
 * election.go), with the lock's fix for a candidate whose key is lost.
 *
 * - Campaign(name, lease, value): the session's lease (recipes.ts: 0 gets a
 *   new 60-second lease) and key `name/<lease hex>`. One txn: if the key does
 *   not exist, put it with the value and the lease, else get it; an existing
 *   key with another value is proclaimed (its create revision kept). Then
 *   wait until it is the oldest key under `name/` (recipes.ts waitTurn) and
 *   answer the campaign txn's header and LeaderKey{name, key, rev = create
 *   revision, lease}. The key lost while waiting: "election: not leader"
 *   (etcd 3.4 has no such check and would answer success). The call is
 *   cancelled, or the wait fails: the key is deleted (etcd resigns).
 * - Proclaim(leader, value): txn "create_revision(key) == rev then put(key,
 *   value, lease)"; no match: "election: not leader".
 * - Leader(name): the oldest key under `name/` at a linearizable read, or
 *   "election: no leader".
 * - Observe(name): a stream of LeaderResponses (see Observer).
 * - Resign(leader): txn "create_revision(key) == rev then delete(key)";
 *   answers its header whether it matched or not.
 * - Proclaim and Resign without `leader`: '"leader" field must be provided'.
 *   Their LeaderKey's lease 0 gets a new 60-second lease too (etcd builds a
 *   session from it the same way); Proclaim then attaches the key to it.
 *
 * Every error goes out with code Unknown (recipes.ts); a learner refuses all.
 * Permissions: Campaign reads under `name/` and writes the key; Proclaim and
 * Resign read and write the key; Leader and Observe read under `name/`.
 */

import type { ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { CommandAuth, KeyValue, LeaseId, Revision, WatchHub, WatchId } from "../state/index.ts";
import { prefixEnd, revision } from "../state/index.ts";
import type { ApiHost, CallInfo } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import { kvToWire } from "./convert.ts";
import { etcdServiceError } from "./errors.ts";
import type { WireMessage } from "./proto.ts";
import { int64FromWire } from "./proto.ts";
import {
  CallCancelled,
  deleteIfCreatedAt,
  firstCreated,
  isLearner,
  rangeKvs,
  readPrefix,
  recipePrefix,
  recipeServiceError,
  recipeUnary,
  runTxn,
  sessionKey,
  sessionLease,
  subscribeApplied,
  waitTurn,
  wireBytes,
} from "./recipes.ts";

type W = WireMessage;

/** The Election service's implementation for the gRPC server. */
export function electionService(host: ApiHost): UntypedServiceImplementation {
  return {
    Campaign: recipeUnary(host, (w, call) => campaign(host, w, call)),
    Proclaim: recipeUnary(host, (w, call) => proclaim(host, w, call)),
    Leader: recipeUnary(host, (w, call) => leader(host, w, call)),
    Observe: (call: ServerWritableStream<W, W>) => observe(host, call),
    Resign: recipeUnary(host, (w, call) => resign(host, w, call)),
  };
}

async function campaign(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const name = wireBytes(w.name);
  const prefix = recipePrefix(name);
  const value = wireBytes(w.value);
  const lease = await sessionLease(host, call, w.lease);
  const key = sessionKey(prefix, lease);
  const auth = await host.authorize(call, [readPrefix(prefix), { key, type: "write" }]);

  const r = await runTxn(
    host,
    {
      compare: [{ key, target: "create", result: "equal", createRevision: revision(0) }],
      success: [{ type: "put", request: { key, value, lease } }],
      failure: [{ type: "range", request: { key } }],
    },
    auth,
  );
  let rev: Revision = r.header.revision;
  if (!r.succeeded) {
    const existing = rangeKvs(r.responses[0])[0]!;
    rev = existing.createRevision;
    if (!Buffer.from(existing.value).equals(value)) {
      try {
        await proclaimAs(host, { key, rev, lease, auth }, value);
      } catch (err) {
        await deleteIfCreatedAt(host, key, rev, auth);
        throw err;
      }
    }
  }

  const turn = await waitTurn(host, call, { prefix, key, createRevision: rev });
  switch (turn.kind) {
    case "acquired":
      return {
        header: host.header(r.header.revision),
        leader: { name: Buffer.from(name), key: Buffer.from(key), rev: String(rev), lease: lease.toString() },
      };
    case "lost":
      throw new ErrorAnswer("ElectionNotLeader");
    case "cancelled":
      await deleteIfCreatedAt(host, key, rev, auth);
      throw new CallCancelled();
    case "failed":
      await deleteIfCreatedAt(host, key, rev, auth);
      throw turn.error;
  }
}

/** A LeaderKey as the leader's session knows it, and who acts on it. */
interface LeaderSession {
  readonly key: Uint8Array;
  readonly rev: Revision;
  readonly lease: LeaseId;
  readonly auth: CommandAuth | undefined;
}

/**
 * The request's LeaderKey with its session's lease (0: a new one), checked
 * for reading and writing its key; or the missing-leader error.
 */
async function leaderSession(host: ApiHost, w: W, call: CallInfo): Promise<LeaderSession> {
  const lk = w.leader as W | null | undefined;
  if (lk === null || lk === undefined) throw new ErrorAnswer("ElectionMissingLeaderKey");
  const rev = int64FromWire(lk.rev);
  const key = wireBytes(lk.key);
  // A revision past the safe range matches no key's create revision (one revision per write).
  const safeRev = rev >= 0n && rev <= BigInt(Number.MAX_SAFE_INTEGER) ? revision(Number(rev)) : revision(-1);
  const lease = await sessionLease(host, call, lk.lease);
  const auth = await host.authorize(call, [
    { key, type: "read" },
    { key, type: "write" },
  ]);
  return { key, rev: safeRev, lease, auth };
}

/** Proclaim's txn; resolves with its revision, or throws "election: not leader". */
async function proclaimAs(host: ApiHost, s: LeaderSession, value: Uint8Array): Promise<number> {
  const r = await runTxn(
    host,
    {
      compare: [{ key: s.key, target: "create", result: "equal", createRevision: s.rev }],
      success: [{ type: "put", request: { key: s.key, value, lease: s.lease } }],
    },
    s.auth,
  );
  if (!r.succeeded) throw new ErrorAnswer("ElectionNotLeader");
  return r.header.revision;
}

async function proclaim(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const s = await leaderSession(host, w, call);
  const rev = await proclaimAs(host, s, wireBytes(w.value));
  return { header: host.header(rev) };
}

async function resign(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const s = await leaderSession(host, w, call);
  const r = await runTxn(
    host,
    {
      compare: [{ key: s.key, target: "create", result: "equal", createRevision: s.rev }],
      success: [{ type: "deleteRange", request: { key: s.key } }],
    },
    s.auth,
  );
  return { header: host.header(r.header.revision) };
}

async function leader(host: ApiHost, w: W, call: CallInfo): Promise<W> {
  const prefix = recipePrefix(wireBytes(w.name));
  await host.authorize(call, [readPrefix(prefix)]);
  const found = await host.member.read(true, (m) => ({
    kv: firstCreated(m, prefix),
    rev: m.currentRevision(),
  }));
  if (found.kv === undefined) throw new ErrorAnswer("ElectionNoLeader");
  return { header: host.header(found.rev), kv: kvToWire(found.kv) };
}

// ---------------------------------------------------------------- Observe

/** Observe streams open in this process (tests check that none is left behind). */
let observersLive = 0;

/** Observe streams in progress in this process (for tests and metrics). */
export function electionObservers(): number {
  return observersLive;
}

function observe(host: ApiHost, call: ServerWritableStream<W, W>): void {
  call.on("error", () => {});
  if (isLearner(host.member)) {
    call.emit("error", etcdServiceError("NotSupportedForLearner"));
    return;
  }
  new Observer(host, call).start();
}

/**
 * One Observe stream (etcd's Election.Observe loop, run on the member):
 * - At the start, after a linearizable read: the leader (the oldest key under
 *   `name/`), if any, with that read's header.
 * - While there is a leader: one response per put to its key (a proclaim,
 *   even of the same value), with the put's revision in the header. When its
 *   key is deleted, the new leader at the member's current state, if any,
 *   with the current revision: leaders that came and went between are not
 *   reported (etcd re-reads the same way).
 * - While there is none: the first put under `name/` (a new key, so the new
 *   leader), with its revision.
 * - When a snapshot replaces the state: the leader is read again and sent if
 *   it differs from the last one sent (key, create or mod revision).
 * - Ends when the client cancels. An error of the first read ends it with
 *   that error (etcd ends it with no status error and no response).
 * One hub watcher per stream: on the leader's key, or on `name/` while there
 * is no leader (etcd's client watches the same). When the client reads
 * slowly (write() says the buffer is full) nothing is taken from the hub
 * until 'drain'; the hub keeps the watcher's place.
 */
class Observer {
  private readonly host: ApiHost;
  private readonly call: ServerWritableStream<W, W>;
  private readonly prefix: Uint8Array;
  /** The leader as last sent; undefined: none (watching the prefix for a put). */
  private leader: KeyValue | undefined;
  /** Events at revisions up to here are already reflected in what was sent. */
  private seenRevision = 0;
  private hub: WatchHub | undefined;
  private watchId: WatchId | undefined;
  private unsubscribe: (() => void) | undefined;
  private paused = false;
  private closed = false;

  constructor(host: ApiHost, call: ServerWritableStream<W, W>) {
    this.host = host;
    this.call = call;
    this.prefix = recipePrefix(wireBytes(call.request.name));
  }

  start(): void {
    observersLive++;
    this.call.on("cancelled", () => this.close());
    this.call.on("close", () => this.close());
    this.call.on("drain", () => {
      this.paused = false;
      this.pull();
    });
    this.host
      .authorize(this.call, [readPrefix(this.prefix)])
      .then(() =>
        this.host.member.read(true, () => {
          // Runs on the state at the read: what is sent and where the watcher starts agree.
          if (this.closed) return;
          this.restart();
          this.unsubscribe = subscribeApplied(this.host, (restored) => this.onApplied(restored));
        }),
      )
      .catch((err: unknown) => {
        if (this.closed) return;
        this.call.emit("error", recipeServiceError(this.host, err));
        this.close();
      });
  }

  private onApplied(restored: boolean): void {
    if (this.closed) return;
    if (restored) this.restart();
    else this.pull();
  }

  /** From the state now: send the leader if it is not the one last sent; watch from here. */
  private restart(): void {
    this.closeWatcher();
    const m = this.host.member.machine;
    const kv = firstCreated(m, this.prefix);
    this.seenRevision = m.currentRevision();
    if (kv !== undefined && !sameVersion(kv, this.leader)) this.send(kv, this.seenRevision);
    this.leader = kv;
    this.rewatch();
  }

  /** Takes everything the watcher has (unless paused) and follows it. */
  private pull(): void {
    const hub = this.hub;
    const id = this.watchId;
    if (this.closed || this.paused || hub === undefined || id === undefined) return;
    const watchedKey = this.leader?.key;
    for (;;) {
      const rs = hub.drain(id, 64);
      if (rs.length === 0) break;
      for (const r of rs) {
        if (r.canceled) {
          // Compacted past the watcher's place: start over from the state now.
          this.restart();
          return;
        }
        for (const ev of r.events) this.follow(ev.type, ev.kv);
      }
    }
    // The leader changed (or there is none now, or one now): watch what is to be watched now.
    if (!sameKey(this.leader?.key, watchedKey)) this.rewatch();
  }

  /** One event from the watcher. */
  private follow(type: "put" | "delete", kv: KeyValue): void {
    if (kv.modRevision <= this.seenRevision) return;
    const current = this.leader;
    if (current === undefined) {
      if (type !== "put") return;
      // The first put under the prefix after there was none: the new leader.
      this.leader = kv;
      this.seenRevision = kv.modRevision;
      this.send(kv, kv.modRevision);
      return;
    }
    if (!Buffer.from(kv.key).equals(current.key)) return;
    if (type === "put") {
      this.leader = kv;
      this.send(kv, kv.modRevision);
      return;
    }
    // The leader's key is gone: the leader now, if any, from the current state.
    const m = this.host.member.machine;
    const next = firstCreated(m, this.prefix);
    this.seenRevision = m.currentRevision();
    if (next !== undefined) this.send(next, this.seenRevision);
    this.leader = next;
  }

  /** Watches the leader's key, or the prefix while there is none, from the next revision. */
  private rewatch(): void {
    this.closeWatcher();
    const hub = this.host.member.replica.hub;
    const created =
      this.leader === undefined
        ? hub.create({ key: this.prefix, rangeEnd: prefixEnd(this.prefix) })
        : hub.create({ key: this.leader.key });
    if (!created.ok) {
      this.call.emit("error", recipeServiceError(this.host, new ErrorAnswer("RequestTooManyRequests")));
      this.close();
      return;
    }
    this.hub = hub;
    this.watchId = created.watchId;
  }

  private send(kv: KeyValue, rev: number): void {
    if (this.closed) return;
    if (!this.call.write({ header: this.host.header(rev), kv: kvToWire(kv) })) this.paused = true;
  }

  private closeWatcher(): void {
    if (this.hub !== undefined && this.watchId !== undefined && this.hub === this.host.member.replica.hub) {
      this.hub.close(this.watchId);
    }
    this.hub = undefined;
    this.watchId = undefined;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    observersLive--;
    this.closeWatcher();
    this.unsubscribe?.();
  }
}

function sameKey(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a === undefined || b === undefined ? a === b : Buffer.from(a).equals(b);
}

function sameVersion(a: KeyValue, b: KeyValue | undefined): boolean {
  return (
    b !== undefined &&
    Buffer.from(a.key).equals(b.key) &&
    a.createRevision === b.createRevision &&
    a.modRevision === b.modRevision
  );
}
