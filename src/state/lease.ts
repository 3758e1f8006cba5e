/**
 * The replicated lease table: which leases exist, their granted TTL, the
 * remaining TTL last checkpointed through the log, and which keys are attached
 * to each lease. Part of the state machine (ARCHITECTURE "Leases"): every
 * replica applies the same commands in the same order and ends in the same
 * state, so nothing here reads a clock or a random source, and everything that
 * leaves the table in a list (revoked keys, ids, snapshot) is sorted.
 *
 * Time is not measured here. Deadlines, keepalives and the decision to expire
 * belong to the leader's `Lessor` (lessor.ts); what reaches this table are the
 * committed outcomes: grant, revoke, checkpoint, and the key attachments the
 * MVCC store reports with every write.
 *
 * Contract:
 * - `grant` follows etcd's lessor: a TTL above MAX_LEASE_TTL_SECONDS is refused
 *   ("too large lease TTL"), a duplicate id is refused ("lease already exists"),
 *   a TTL below the minimum (including zero and negative) is raised to it.
 *   Id 0 asks the table to choose: a splitmix64 mix of the Raft index of the
 *   entry, made a positive int64 and re-mixed until unused, so every replica
 *   picks the same id without any shared random source.
 * - `revoke` removes the lease and returns its keys sorted bytewise; the caller
 *   deletes them in one MVCC revision (one delete event per key, in that order).
 * - A key is attached to at most one lease; attaching it to another moves it.
 *   Attach, detach and move cost O(1) (hash maps), independent of how many keys
 *   the lease already holds (etcd's put-with-lease is linear in them, #15993).
 * - Memory: a lease costs one record and one map entry; its keys are held
 *   inline while it has at most one (the common case: a session key, a lock)
 *   and in a Set from the second on, so a lease with no key or one key
 *   allocates no Set (an empty Set costs about 150 bytes in V8).
 * - `checkpoint` records a remaining TTL (whole seconds, 0 ≤ remaining ≤ TTL)
 *   written by the leader's lessor; a new leader reads it back with `get`. A
 *   checkpoint equal to the granted TTL is a "reset" (lessor.ts explains why).
 * - Incarnations: an id may be granted again after a revoke. Each grant
 *   records `grantIndex`, the Raft index of its entry. Checkpoints and expiry
 *   revokes, which the leader decides on before they commit, name the
 *   incarnation they were decided for and do nothing to a later one; otherwise
 *   a checkpoint or an expiry racing a client's revoke-and-regrant of the same
 *   id would shorten or kill the new lease behind its holder's back.
 * - Expected outcomes (not found, exists, too large) are returned values; a
 *   violated precondition (a key attached to a lease that does not exist, a
 *   malformed snapshot) is a bug and fails an assertion.
 */

import { assert } from "../raft/index.ts";
import type { ByteReader, ByteWriter } from "./bytes.ts";
import { base64ToBytes, bytesToBase64, bytesToKeyString, keyStringToBytes } from "./bytes.ts";
import type { LeaseChange, LeaseId } from "./types.ts";
import { leaseId, NO_LEASE } from "./types.ts";

/** etcd's MaxLeaseTTL: larger TTLs are refused with "etcdserver: too large lease TTL". */
export const MAX_LEASE_TTL_SECONDS = 9_000_000_000;
/** ceil(1.5 × 1000 ms election timeout) in seconds, etcd's minLeaseTTL with default settings. */
export const DEFAULT_MIN_LEASE_TTL_SECONDS = 2;
/** The largest int64, the upper end of the lease id space. */
export const MAX_LEASE_ID = (1n << 63n) - 1n;
/** Fresh ids tried when choosing one; 64 collisions in a 2^63 space do not happen short of a bug. */
const ID_PICKS_MAX = 64;

const MASK_64 = (1n << 64n) - 1n;

/** Options of a lease table; the same on every replica. */
export interface LeaseTableOptions {
  /** TTLs below this are raised to it (etcd: ceil(1.5 × election timeout) seconds). Default 2. */
  readonly minTtlSeconds?: number;
}

/** What the table knows of one lease. */
export interface LeaseInfo {
  readonly id: LeaseId;
  /** The TTL granted (after raising to the minimum). */
  readonly ttlSeconds: number;
  /** The remaining TTL of the last checkpoint, or the granted TTL if never checkpointed. */
  readonly remainingTtlSeconds: number;
  /** The Raft index of the entry that granted this incarnation of the id. */
  readonly grantIndex: number;
}

/** The outcome of `grant`. */
export type GrantOutcome =
  | { readonly ok: true; readonly id: LeaseId; readonly ttlSeconds: number }
  | { readonly ok: false; readonly reason: "exists" | "ttlTooLarge" };

/** The outcome of `revoke`: the keys to delete, sorted bytewise. */
export type RevokeOutcome =
  | { readonly ok: true; readonly keys: Uint8Array[] }
  | { readonly ok: false; readonly reason: "notFound" };

/** The outcome of `checkpoint`; a checkpoint of an unknown (already revoked) lease is ignored. */
export type CheckpointOutcome = { readonly ok: true } | { readonly ok: false; readonly reason: "notFound" };

/** The replicated part of etcd's LeaseTimeToLive answer; the remaining TTL comes from the leader's lessor. */
export interface LeaseTimeToLiveInfo {
  readonly id: LeaseId;
  readonly grantedTtlSeconds: number;
  /** Attached keys sorted bytewise; empty unless asked for. */
  readonly keys: Uint8Array[];
}

/** The table as plain JSON data: leases in id order, each key in base64 (as the MVCC snapshot), in bytewise order. */
export interface LeaseTableSnapshot {
  readonly version: 1;
  readonly leases: readonly LeaseSnapshotEntry[];
}

export interface LeaseSnapshotEntry {
  /** The id as a decimal string (JSON has no int64). */
  readonly id: string;
  readonly ttlSeconds: number;
  readonly remainingTtlSeconds: number;
  readonly grantIndex: number;
  readonly keys: readonly string[];
}

interface LeaseRecord {
  readonly id: LeaseId;
  readonly ttlSeconds: number;
  readonly grantIndex: number;
  /** Invariant: an integer, 0 ≤ remainingTtlSeconds ≤ ttlSeconds. */
  remainingTtlSeconds: number;
  /**
   * Attached keys as key strings (bytes.ts): none, the one key inline, or a Set
   * of two or more. Invariant: keyLease.get(k) === this for each k; a Set
   * holds at least two keys.
   */
  keys: undefined | string | Set<string>;
}

/** The replicated lease table. See the file header for the contract. */
export class LeaseTable {
  readonly minTtlSeconds: number;
  private readonly leases = new Map<LeaseId, LeaseRecord>();
  /** Key (as a key string, one char per byte) -> the lease it is attached to. */
  private readonly keyLease = new Map<string, LeaseRecord>();
  /** The last id restored from a snapshot (restore checks their order). */
  private restoredIdMax = 0n;

  constructor(options: LeaseTableOptions = {}) {
    const min = options.minTtlSeconds ?? DEFAULT_MIN_LEASE_TTL_SECONDS;
    assert(
      Number.isSafeInteger(min) && min >= 1 && min <= MAX_LEASE_TTL_SECONDS,
      `lease: bad minimum TTL ${min}`,
    );
    this.minTtlSeconds = min;
  }

  /** The number of leases. */
  get size(): number {
    return this.leases.size;
  }

  /**
   * Grants a lease (etcd LeaseGrant, applied from the log). `id` 0 chooses one
   * from `ctx.index`, the Raft index of the entry being applied.
   */
  grant(id: LeaseId, ttlSeconds: number, ctx: { readonly index: number }): GrantOutcome {
    assert(id >= 0n && id <= MAX_LEASE_ID, `lease: grant of id ${id} outside (0, 2^63)`);
    assert(Number.isSafeInteger(ttlSeconds), `lease: grant of non-integer TTL ${ttlSeconds}`);
    assert(Number.isSafeInteger(ctx.index) && ctx.index >= 0, `lease: bad log index ${ctx.index}`);
    // etcd checks the TTL bound before existence, then raises to the minimum.
    if (ttlSeconds > MAX_LEASE_TTL_SECONDS) return { ok: false, reason: "ttlTooLarge" };
    if (id === NO_LEASE) id = this.pickId(ctx.index);
    else if (this.leases.has(id)) return { ok: false, reason: "exists" };
    const ttl = Math.max(ttlSeconds, this.minTtlSeconds);
    this.leases.set(id, {
      id,
      ttlSeconds: ttl,
      grantIndex: ctx.index,
      remainingTtlSeconds: ttl,
      keys: undefined,
    });
    return { ok: true, id, ttlSeconds: ttl };
  }

  /**
   * Removes the lease; returns its keys sorted bytewise, detached from it. A
   * client's revoke names no incarnation; an expiry revoke passes the
   * `grantIndex` it was decided for and finds nothing if the id was re-granted.
   */
  revoke(id: LeaseId, scope: { readonly grantIndex?: number } = {}): RevokeOutcome {
    const lease = this.find(id, scope.grantIndex);
    if (lease === undefined) return { ok: false, reason: "notFound" };
    const keys = sortedKeys(lease);
    for (const k of keys) {
      assert(this.keyLease.get(k) === lease, "lease: key index out of step with its lease");
      this.keyLease.delete(k);
    }
    this.leases.delete(id);
    return { ok: true, keys: keys.map(keyStringToBytes) };
  }

  /**
   * Attaches `key` to lease `id` (which must exist: the apply layer checks
   * before the put), moving it off any other lease. Returns the lease it was on.
   */
  attach(key: Uint8Array, id: LeaseId): LeaseId {
    return this.attachKey(bytesToKeyString(key), id);
  }

  /** attach, of a key string. */
  private attachKey(k: string, id: LeaseId): LeaseId {
    const to = this.leases.get(id);
    assert(to !== undefined, `lease: attach to unknown lease ${id}`);
    const from = this.keyLease.get(k);
    if (from === to) return id;
    if (from !== undefined) removeKey(from, k);
    addKey(to, k);
    this.keyLease.set(k, to);
    return from === undefined ? NO_LEASE : from.id;
  }

  /** Detaches `key` from its lease, if any. Returns the lease it was on (NO_LEASE if none). */
  detach(key: Uint8Array): LeaseId {
    return this.detachKey(bytesToKeyString(key));
  }

  /** detach, of a key string. */
  private detachKey(k: string): LeaseId {
    const from = this.keyLease.get(k);
    if (from === undefined) return NO_LEASE;
    removeKey(from, k);
    this.keyLease.delete(k);
    return from.id;
  }

  /**
   * Applies the lease moves the MVCC store reports for one write, in order.
   * `from` must be the key's current lease; the one tolerated mismatch is a key
   * whose lease was revoked earlier in the same apply step (revoke detaches the
   * keys before the store deletes them), so the store's `{from: revoked, to: 0}`
   * finds the key already detached.
   */
  applyLeaseChanges(changes: readonly LeaseChange[]): void {
    for (const c of changes) {
      const k = c.keyString ?? bytesToKeyString(c.key);
      const current = this.keyLease.get(k)?.id ?? NO_LEASE;
      assert(
        current === c.from || (current === NO_LEASE && !this.leases.has(c.from)),
        `lease: key's lease is ${current}, the store says ${c.from}`,
      );
      if (c.to === NO_LEASE) this.detachKey(k);
      else this.attachKey(k, c.to);
    }
  }

  /** The lease `key` is attached to, or NO_LEASE. */
  leaseOf(key: Uint8Array): LeaseId {
    return this.keyLease.get(bytesToKeyString(key))?.id ?? NO_LEASE;
  }

  /** The keys attached to lease `id`, sorted bytewise; undefined if there is no such lease. */
  keysOf(id: LeaseId): Uint8Array[] | undefined {
    const lease = this.leases.get(id);
    return lease === undefined ? undefined : sortedKeys(lease).map(keyStringToBytes);
  }

  /** Whether some key attached to lease `id` (as a key string, bytesToKeyString) passes `test`; unsorted, no copies. */
  someKey(id: LeaseId, test: (key: string) => boolean): boolean {
    const keys = this.leases.get(id)?.keys;
    if (keys === undefined) return false;
    if (typeof keys === "string") return test(keys);
    for (const k of keys) if (test(k)) return true;
    return false;
  }

  /** The number of keys attached to lease `id` (0 if there is no such lease). */
  keyCount(id: LeaseId): number {
    const lease = this.leases.get(id);
    return lease === undefined ? 0 : keyCountOf(lease);
  }

  has(id: LeaseId): boolean {
    return this.leases.has(id);
  }

  /** The lease `id`; its `id` is the table's own instance of the value (callers that keep it share it). */
  get(id: LeaseId): LeaseInfo | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined) return undefined;
    return {
      id: lease.id,
      ttlSeconds: lease.ttlSeconds,
      remainingTtlSeconds: lease.remainingTtlSeconds,
      grantIndex: lease.grantIndex,
    };
  }

  /** Every lease id, ascending (etcd LeaseLeases). */
  ids(): LeaseId[] {
    return [...this.leases.keys()].sort(compareIds);
  }

  /**
   * The replicated part of etcd's LeaseTimeToLive; undefined for an unknown
   * lease (the API answers TTL -1 then, as etcd does).
   */
  timeToLive(id: LeaseId, options: { readonly keys: boolean }): LeaseTimeToLiveInfo | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined) return undefined;
    const keys = options.keys ? sortedKeys(lease).map(keyStringToBytes) : [];
    return { id, grantedTtlSeconds: lease.ttlSeconds, keys };
  }

  /**
   * Records the leader's checkpoint of a lease's remaining TTL (whole seconds,
   * at most the TTL) for the incarnation granted at `scope.grantIndex`. A
   * checkpoint of a revoked lease or of an earlier incarnation is ignored.
   */
  checkpoint(
    id: LeaseId,
    remainingTtlSeconds: number,
    scope: { readonly grantIndex: number },
  ): CheckpointOutcome {
    const lease = this.find(id, scope.grantIndex);
    if (lease === undefined) return { ok: false, reason: "notFound" };
    assert(
      Number.isSafeInteger(remainingTtlSeconds) &&
        remainingTtlSeconds >= 0 &&
        remainingTtlSeconds <= lease.ttlSeconds,
      `lease: checkpoint of ${remainingTtlSeconds}s for a ${lease.ttlSeconds}s lease`,
    );
    lease.remainingTtlSeconds = remainingTtlSeconds;
    return { ok: true };
  }

  /** The table as plain JSON-serializable data, in a canonical order. */
  snapshot(): LeaseTableSnapshot {
    const leases = this.ids().map((id): LeaseSnapshotEntry => {
      const lease = this.leases.get(id)!;
      return {
        id: id.toString(),
        ttlSeconds: lease.ttlSeconds,
        remainingTtlSeconds: lease.remainingTtlSeconds,
        grantIndex: lease.grantIndex,
        keys: sortedKeys(lease).map((k) => bytesToBase64(keyStringToBytes(k))),
      };
    });
    return { version: 1, leases };
  }

  /**
   * Rebuilds a table from `snapshot()` output. The snapshot was checked at the
   * storage boundary (checksums); a malformed one here is a bug.
   */
  static restore(snapshot: LeaseTableSnapshot, options: LeaseTableOptions = {}): LeaseTable {
    assert(snapshot.version === 1, `lease: snapshot version ${String(snapshot.version)}`);
    const table = new LeaseTable(options);
    for (const entry of snapshot.leases) {
      assert(/^[1-9][0-9]*$/.test(entry.id), `lease: snapshot id ${entry.id}`);
      const lease = table.restoreLease(
        leaseId(BigInt(entry.id)),
        entry.ttlSeconds,
        entry.remainingTtlSeconds,
        entry.grantIndex,
      );
      for (const text of entry.keys) {
        const bytes = base64ToBytes(text);
        assert(bytes !== undefined, `lease: snapshot key ${text} is not base64`);
        table.restoreKey(lease, bytesToKeyString(bytes));
      }
    }
    return table;
  }

  /**
   * Writes the table in snapshot format 2 (binary), from which `readSnapshot`
   * makes the table `restore(snapshot())` would: the number of leases, then
   * per lease in id order its id (8 bytes), TTL, remaining TTL, grant index,
   * number of keys and its keys in bytewise order.
   */
  writeSnapshot(w: ByteWriter): void {
    const ids = this.ids();
    w.uint(ids.length);
    for (const id of ids) {
      const lease = this.leases.get(id)!;
      w.u64(id).uint(lease.ttlSeconds).uint(lease.remainingTtlSeconds).uint(lease.grantIndex);
      const keys = sortedKeys(lease);
      w.uint(keys.length);
      for (const k of keys) w.keyString(k);
    }
  }

  /**
   * The table `writeSnapshot` wrote, read from `r`. `internKey` gives the
   * instance of a key string to keep (the MVCC store's, so that the two hold
   * one string per key).
   */
  static readSnapshot(
    r: ByteReader,
    options: LeaseTableOptions = {},
    internKey: (k: string) => string = (k) => k,
  ): LeaseTable {
    const table = new LeaseTable(options);
    const n = r.uint();
    for (let i = 0; i < n; i++) {
      const lease = table.restoreLease(leaseId(r.u64()), r.uint(), r.uint(), r.uint());
      const keyCount = r.uint();
      for (let j = 0; j < keyCount; j++) table.restoreKey(lease, internKey(r.keyString()));
    }
    return table;
  }

  /** Adds a lease read from a snapshot; ids come in ascending order, so `id` is above every one restored. */
  private restoreLease(id: LeaseId, ttl: number, remaining: number, grantIndex: number): LeaseRecord {
    assert(id > this.restoredIdMax && id <= MAX_LEASE_ID, `lease: snapshot ids out of order at ${id}`);
    this.restoredIdMax = id;
    assert(
      Number.isSafeInteger(ttl) && ttl >= 1 && ttl <= MAX_LEASE_TTL_SECONDS,
      `lease: snapshot TTL ${ttl}`,
    );
    assert(
      Number.isSafeInteger(remaining) && remaining >= 0 && remaining <= ttl,
      `lease: snapshot remaining TTL ${remaining}`,
    );
    assert(Number.isSafeInteger(grantIndex) && grantIndex >= 0, `lease: snapshot grant index ${grantIndex}`);
    const lease: LeaseRecord = {
      id,
      ttlSeconds: ttl,
      grantIndex,
      remainingTtlSeconds: remaining,
      keys: undefined,
    };
    this.leases.set(id, lease);
    return lease;
  }

  /** Attaches a key read from a snapshot to `lease`. */
  private restoreKey(lease: LeaseRecord, k: string): void {
    assert(!this.keyLease.has(k), `lease: snapshot key ${JSON.stringify(k)} on two leases`);
    addKey(lease, k);
    this.keyLease.set(k, lease);
  }

  /** The lease `id`, if it exists and (when given) was granted at `grantIndex`. */
  private find(id: LeaseId, grantIndex: number | undefined): LeaseRecord | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined || (grantIndex !== undefined && lease.grantIndex !== grantIndex))
      return undefined;
    return lease;
  }

  /**
   * A positive int64 not in use, derived from the log index alone: splitmix64
   * (Steele, Lea, Flood 2014) seeded with the index, re-mixed on 0 or collision.
   */
  private pickId(index: number): LeaseId {
    const mix = new SplitMix64(BigInt(index));
    for (let i = 0; i < ID_PICKS_MAX; i++) {
      const id = leaseId(mix.next() & MAX_LEASE_ID);
      if (id !== NO_LEASE && !this.leases.has(id)) return id;
    }
    assert(false, `lease: no free id after ${ID_PICKS_MAX} picks at index ${index}`);
  }
}

/** One line describing a lease, the same on every replica (CONVENTIONS 12). */
export function describeLease(info: LeaseInfo, keyCount: number): string {
  const { id, ttlSeconds, remainingTtlSeconds, grantIndex } = info;
  return `lease ${id}@${grantIndex} ttl=${ttlSeconds}s remaining=${remainingTtlSeconds}s keys=${keyCount}`;
}

/** Ascending order of lease ids. */
export function compareIds(a: LeaseId, b: LeaseId): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** splitmix64: a 64-bit state advanced by the golden gamma, output through two xor-shift-multiply rounds. */
class SplitMix64 {
  constructor(private state: bigint) {}

  next(): bigint {
    this.state = (this.state + 0x9e3779b97f4a7c15n) & MASK_64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
    return z ^ (z >> 31n);
  }
}

/** The lease's keys (as key strings) in bytewise order: string order of key strings is bytewise order. */
function sortedKeys(lease: LeaseRecord): string[] {
  const keys = lease.keys;
  if (keys === undefined) return [];
  if (typeof keys === "string") return [keys];
  return [...keys].sort();
}

function keyCountOf(lease: LeaseRecord): number {
  const keys = lease.keys;
  return keys === undefined ? 0 : typeof keys === "string" ? 1 : keys.size;
}

/** Adds `k` (not attached to `lease`) to its keys: inline while it is the only one, then a Set. */
function addKey(lease: LeaseRecord, k: string): void {
  const keys = lease.keys;
  if (keys === undefined) lease.keys = k;
  else if (typeof keys === "string") {
    assert(keys !== k, "lease: key attached twice");
    lease.keys = new Set([keys, k]);
  } else keys.add(k);
}

/** Removes `k` (attached to `lease`) from its keys; a Set left with one key goes back inline. */
function removeKey(lease: LeaseRecord, k: string): void {
  const keys = lease.keys;
  if (typeof keys === "string") {
    assert(keys === k, "lease: detaching a key the lease does not hold");
    lease.keys = undefined;
    return;
  }
  assert(keys?.has(k) === true, "lease: detaching a key the lease does not hold");
  keys.delete(k);
  if (keys.size === 1) lease.keys = keys.values().next().value;
}
