/**
 * The MVCC key space with etcd v3 semantics (api/etcdserverpb/rpc.proto:
 * Range, Put, DeleteRange, Txn, Compare, Compaction; behaviour as etcd's
 * server/etcdserver/txn and server/storage/mvcc apply it). Written from the
 * semantics, not from etcd's code.
 *
 * Contract:
 * - Deterministic: the same calls in the same order give the same state, the
 *   same answers and the same events on every replica. No clock, no
 *   randomness, no iteration of undefined order.
 * - Expected outcomes (compacted, key not found, duplicate key, ...) are
 *   returned as `{ ok: false, error }`, always before any change: a call that
 *   fails changes nothing. Assertions are for bugs only.
 * - Revisions: the store starts at revision 1, as etcd does (its store sets
 *   currentRev to 1): an empty store reports revision 1, a read at revision 1
 *   succeeds with no kvs, and the first write gets 2. Before any compaction the
 *   compacted revision is -1 (etcd's compactMainRev, which HashKV reports as
 *   compact_revision), so Compact(0) and Compact(1) on a fresh store succeed;
 *   a second Compact at or below the compacted revision fails with
 *   "compacted". A write that changes something takes the next revision, and
 *   every change it makes shares that revision, in op order. A Put always
 *   changes something; a DeleteRange changes something only if it deleted a
 *   key. So a read-only txn, a txn whose deletes matched nothing, and a
 *   DeleteRange that matched nothing leave the revision alone (etcd: the
 *   revision moves iff the write txn recorded changes).
 * - Every write returns its events (in op order, prevKv always filled when the
 *   key existed; the watch layer decides whether to send it) and the lease
 *   attachments it changed, so the lease table updates in O(1) per key.
 * - Stored keys and values are copies of the request's bytes. Every KeyValue
 *   and event handed out is made for the caller (`kvOf`) and may be kept;
 *   its bytes must not be mutated (a long value's bytes are shared).
 *
 * Data structures (n keys, k keys in a range, h versions of one key):
 * - A version (or a tombstone) is stored as a `Change`, not as a KeyValue:
 *   the key as its key string (the very string the tree holds), the value as
 *   a one-byte string up to VALUE_STRING_BYTES_MAX (longer: a copy of the
 *   bytes), the revisions, version and lease (the lease table's instance of
 *   the id, WriteOptions.internLease), and the version it replaced (for
 *   prevKv). V8 spends about 200 bytes on a small Uint8Array (the view, its
 *   ArrayBuffer and the bytes) and 16 plus the length on a one-byte string,
 *   and a store keeps every version until compaction: a key with one small
 *   version costs about 200 bytes this way, about 800 as KeyValue and event
 *   objects in two trees. KeyValues and events are made on the way out:
 *   reads and catch-up allocate what they return, writes their events.
 * - `history`: B+ tree, key string -> the key's changes, oldest first (the
 *   change itself while it is the only one, as most keys have one: an array
 *   of one costs 56 bytes more). A key exists now when its last change is a
 *   version, not a tombstone (one tree, as etcd's index, rather than a second
 *   one of the live versions). Put / delete of one key O(log n). A read at
 *   the current revision visits the keys in range, O(log n + k'), and one at
 *   a past revision also binary-searches each one's changes, O(log n + k' log
 *   h), where k' also counts keys deleted in the range and not yet compacted
 *   away.
 * - `log`: every change at revision >= the compacted revision, in revision
 *   then op order (the same objects as `history`). A watcher catching up on N
 *   events from revision r costs O(log E + N): binary search, then a scan of
 *   the changes since r (one key: its own changes only).
 * - Compaction at c visits every key (O(n + dropped)), as etcd's does.
 *
 * Where this store departs from etcd, on purpose:
 * - A delete whose range end is "\0" (to the end) counts as [key, +inf) in the
 *   txn duplicate-key check. etcd compares the raw "\0" and so never sees the
 *   overlap (etcd-io/etcd#22445, fix proposed in #22395); it then lets a txn
 *   delete and re-create a key in one revision, and panics if such a put has
 *   ignore_value. With this rule a put in a txn always sees its key as it was
 *   before the txn.
 * - Nested txns in etcd carry no revision in their response header (0); here
 *   the nested TxnResponse has no revision field at all.
 * - Sorting by a target other than the key breaks ties by key, ascending, for
 *   both orders (etcd's sort is not stable, so its tie order is unspecified).
 */

import btreeModule from "sorted-btree";
import { assert, assertNever, describeData } from "../raft/index.ts";

import type { ByteReader, ByteWriter } from "./bytes.ts";
import {
  base64ToBytes,
  bytesToBase64,
  bytesToKeyString,
  compareBytes,
  EMPTY_BYTES,
  isRangeEndToEnd,
  keyStringToBytes,
} from "./bytes.ts";
import { Crc32cWriter } from "./crc32c.ts";
import type { Limits } from "./limits.ts";
import { DEFAULT_LIMITS } from "./limits.ts";
import type { KeyValue, KvEvent, LeaseChange, LeaseId, Revision } from "./types.ts";
import { revision as asRevision, leaseId, NO_LEASE } from "./types.ts";

/** The revision of an empty store: etcd's store starts at 1, so the first write gets 2. */
export const FIRST_REVISION: Revision = asRevision(1);
/** compactedRevision() before any compaction: etcd's initial compactMainRev. */
export const NEVER_COMPACTED: Revision = asRevision(-1);
/**
 * What one kept change costs in `sizeBytes()` besides its key and value: the
 * estimate etcd's space quota charges for a key's metadata (quota.go
 * kvOverhead), about what a revision costs this in-memory store too.
 */
export const MVCC_CHANGE_OVERHEAD_BYTES = 256;
/**
 * Values up to this long are stored as one-byte strings (one char per byte),
 * longer ones as a copy of their bytes: converting costs a pass over the
 * bytes each way, and beyond a few KiB the object overheads no longer matter.
 */
export const VALUE_STRING_BYTES_MAX = 4096;

// ---------------------------------------------------------------------------
// The B+ tree import.

type BTreeClass = typeof btreeModule.default;
type Tree<K, V> = btreeModule.default<K, V>;

/**
 * sorted-btree is CommonJS with `exports.default = BTree`. tsc (NodeNext) types
 * the default import as module.exports, whose `default` is the class; tsx and
 * vitest apply the __esModule interop and hand over the class itself. Accept
 * both, so the same source runs under node, tsx and vitest.
 */
const BTree: BTreeClass = (() => {
  const m: unknown = btreeModule;
  return typeof m === "function" ? (m as BTreeClass) : btreeModule.default;
})();

/** Key strings are one char per byte, so plain string order is bytewise order. */
function compareKeyStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function newTree<V>(): Tree<string, V> {
  return new BTree<string, V>(undefined, compareKeyStrings);
}

// ---------------------------------------------------------------------------
// Requests and responses (etcd rpc.proto, in TypeScript shapes).

/**
 * The keys a request names (etcd key + range_end). `key` must not be empty.
 * - `rangeEnd` absent or empty: the single key `key`.
 * - `rangeEnd` = "\0" (RANGE_END_TO_END): every key >= `key`; with key "\0", every key.
 * - otherwise: [key, rangeEnd); empty when rangeEnd <= key. Use prefixEnd(key) for a prefix.
 */
export interface KeyRange {
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array | undefined;
}

/** etcd RangeRequest.SortOrder. */
export type SortOrder = "none" | "ascend" | "descend";
/** etcd RangeRequest.SortTarget. */
export type SortTarget = "key" | "version" | "create" | "mod" | "value";

/** etcd RangeRequest. Absent numbers mean 0 ("no limit", "current revision", "no filter"). */
export interface RangeRequest extends KeyRange {
  /** At most this many kvs; 0 or negative: no limit. */
  readonly limit?: number | undefined;
  /** Read at this past revision; 0: the current one. */
  readonly revision?: Revision | undefined;
  readonly sortOrder?: SortOrder | undefined;
  readonly sortTarget?: SortTarget | undefined;
  /** Return kvs with empty values. */
  readonly keysOnly?: boolean | undefined;
  /** Return only the count. */
  readonly countOnly?: boolean | undefined;
  readonly minModRevision?: Revision | undefined;
  readonly maxModRevision?: Revision | undefined;
  readonly minCreateRevision?: Revision | undefined;
  readonly maxCreateRevision?: Revision | undefined;
}

/**
 * etcd RangeResponse. `count` is the number of keys in the range at the read
 * revision before the limit AND before the min/max revision filters (etcd
 * counts in the index, then filters); `more` says the limit cut the (filtered,
 * sorted) list. `revision` is the store's current revision, not the one read at.
 */
export interface RangeResponse {
  readonly kvs: readonly KeyValue[];
  readonly more: boolean;
  readonly count: number;
  readonly revision: Revision;
}

/** etcd PutRequest. */
export interface PutRequest {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  /** Attach the key to this lease; absent or NO_LEASE: none. */
  readonly lease?: LeaseId | undefined;
  /** Return the previous version in the response. */
  readonly prevKv?: boolean | undefined;
  /** Keep the current value (the key must exist; `value` must be empty). */
  readonly ignoreValue?: boolean | undefined;
  /** Keep the current lease (the key must exist; `lease` must be absent or NO_LEASE). */
  readonly ignoreLease?: boolean | undefined;
}

/** etcd PutResponse. */
export interface PutResponse {
  readonly revision: Revision;
  /** The version replaced, when asked for with `prevKv` and the key existed. */
  readonly prevKv: KeyValue | undefined;
}

/** etcd DeleteRangeRequest. */
export interface DeleteRangeRequest extends KeyRange {
  /** Return the deleted versions in the response. */
  readonly prevKv?: boolean | undefined;
}

/** etcd DeleteRangeResponse. */
export interface DeleteRangeResponse {
  readonly revision: Revision;
  readonly deleted: number;
  /** The deleted versions in key order, when asked for with `prevKv`; else empty. */
  readonly prevKvs: readonly KeyValue[];
}

/** etcd Compare.CompareResult: how the stored field relates to the given one. */
export type CompareResult = "equal" | "notEqual" | "greater" | "less";

/**
 * etcd Compare: one condition of a txn. With a rangeEnd it must hold for every
 * key in the range. When no key exists (in the range), version, create, mod
 * and lease compare as 0, and a value compare is false whatever the result.
 */
export type Compare = {
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array | undefined;
  readonly result: CompareResult;
} & (
  | { readonly target: "value"; readonly value: Uint8Array }
  | { readonly target: "version"; readonly version: number }
  | { readonly target: "create"; readonly createRevision: Revision }
  | { readonly target: "mod"; readonly modRevision: Revision }
  | { readonly target: "lease"; readonly lease: LeaseId }
);

/** etcd RequestOp: one operation of a txn branch. */
export type RequestOp =
  | { readonly type: "range"; readonly request: RangeRequest }
  | { readonly type: "put"; readonly request: PutRequest }
  | { readonly type: "deleteRange"; readonly request: DeleteRangeRequest }
  | { readonly type: "txn"; readonly request: TxnRequest };

/** etcd TxnRequest: if every compare holds, run `success`, else `failure`. */
export interface TxnRequest {
  readonly compare?: readonly Compare[] | undefined;
  readonly success?: readonly RequestOp[] | undefined;
  readonly failure?: readonly RequestOp[] | undefined;
}

/** etcd ResponseOp, one per op of the branch that ran. */
export type ResponseOp =
  | { readonly type: "range"; readonly response: RangeResponse }
  | { readonly type: "put"; readonly response: PutResponse }
  | { readonly type: "deleteRange"; readonly response: DeleteRangeResponse }
  | { readonly type: "txn"; readonly response: TxnResponse };

/** etcd TxnResponse without its header (the revision is on the top-level result). */
export interface TxnResponse {
  readonly succeeded: boolean;
  readonly responses: readonly ResponseOp[];
}

/** What a write did, for the watch hub and the lease table. */
export interface WriteEffects {
  /** One per changed key, in op order; all at the write's revision. */
  readonly events: readonly KvEvent[];
  /** In op order; apply them in order (a key put then deleted in one txn, see checkTxnRequest, appears twice). */
  readonly leaseChanges: readonly LeaseChange[];
}

/** Passed by the caller, who owns the lease table. */
export interface WriteOptions {
  /** Whether a lease with this id exists now (never asked about NO_LEASE). */
  readonly leaseExists: (id: LeaseId) => boolean;
  /**
   * The caller's own instance of an existing lease's id (the same value): a
   * stored version keeps it instead of the request's copy (a bigint costs 24
   * bytes, per version). Absent: the request's id is kept.
   */
  readonly internLease?: ((id: LeaseId) => LeaseId) | undefined;
}

/** Options for a write that names no lease, or a caller without a lease table: every lease is unknown. */
export const NO_LEASES: WriteOptions = Object.freeze({ leaseExists: () => false });

/**
 * Expected failures, each with the etcd message the API layer maps it to:
 * - emptyKey: "etcdserver: key is not provided"
 * - valueProvided: "etcdserver: value is provided" (ignoreValue with a value)
 * - leaseProvided: "etcdserver: lease is provided" (ignoreLease with a lease)
 * - tooManyOps: "etcdserver: too many operations in txn request"
 * - duplicateKey: "etcdserver: duplicate key given in txn request"
 * - compacted: "etcdserver: mvcc: required revision has been compacted"
 * - futureRevision: "etcdserver: mvcc: required revision is a future revision"
 * - keyNotFound: "etcdserver: key not found" (ignoreValue/ignoreLease on a missing key)
 * - leaseNotFound: "etcdserver: requested lease not found"
 */
export type MvccError =
  | "emptyKey"
  | "valueProvided"
  | "leaseProvided"
  | "tooManyOps"
  | "duplicateKey"
  | "compacted"
  | "futureRevision"
  | "keyNotFound"
  | "leaseNotFound";

/** The request-shape errors: decided from the request alone, before reading anything. */
export type RequestError = Extract<
  MvccError,
  "emptyKey" | "valueProvided" | "leaseProvided" | "tooManyOps" | "duplicateKey"
>;

/** A failed call: nothing changed. */
export interface MvccFailure<E extends MvccError> {
  readonly ok: false;
  readonly error: E;
}

export type RangeResult =
  | ({ readonly ok: true } & RangeResponse)
  | MvccFailure<"emptyKey" | "compacted" | "futureRevision">;
export type PutResult =
  | ({ readonly ok: true } & PutResponse & WriteEffects)
  | MvccFailure<"emptyKey" | "valueProvided" | "leaseProvided" | "keyNotFound" | "leaseNotFound">;
export type DeleteRangeResult =
  | ({ readonly ok: true } & DeleteRangeResponse & WriteEffects)
  | MvccFailure<"emptyKey">;
/** `revision` is the store's revision after the txn: bumped iff the txn changed something. */
export type TxnResult =
  | ({ readonly ok: true; readonly revision: Revision } & TxnResponse & WriteEffects)
  | MvccFailure<MvccError>;
export type DeleteKeysResult = { readonly revision: Revision; readonly deleted: number } & WriteEffects;
/** `revision` is the store's current revision (compaction takes none). */
export type CompactResult =
  | { readonly ok: true; readonly revision: Revision }
  | MvccFailure<"compacted" | "futureRevision">;
/**
 * etcd HashKV: a CRC-32C of the key space up to `revision` (see hashKv), the
 * store's current revision, and its compacted revision (-1: never).
 */
export type HashKvResult =
  | {
      readonly ok: true;
      readonly hash: number;
      readonly revision: Revision;
      readonly currentRevision: Revision;
      readonly compactRevision: Revision;
    }
  | MvccFailure<"compacted" | "futureRevision">;
/**
 * Events in revision then op order. Resume with `nextRevision`: the first
 * revision not yet delivered for this range.
 */
export type EventsSinceResult =
  | { readonly ok: true; readonly events: readonly KvEvent[]; readonly nextRevision: Revision }
  | { readonly ok: false; readonly error: "compacted"; readonly compactRevision: Revision };

/** Store configuration; must be the same on every member. */
export interface MvccOptions {
  readonly limits?: Limits | undefined;
}

// ---------------------------------------------------------------------------
// Snapshot format: plain JSON data (bytes as base64, lease ids as decimal strings).

/** A KeyValue in a snapshot. */
export interface SnapshotKeyValue {
  readonly key: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly value: string;
  readonly lease: string;
}

/** One change in a snapshot; a delete's revision is its tombstone's modRevision. */
export type SnapshotChange =
  | { readonly type: "put"; readonly kv: SnapshotKeyValue }
  | { readonly type: "delete"; readonly key: string; readonly revision: number };

/**
 * The whole store as JSON-serializable data. Replaying `changes` on top of
 * `base` rebuilds the history, the event log and the current state exactly.
 */
export interface MvccSnapshot {
  readonly formatVersion: 1;
  readonly revision: number;
  readonly compactedRevision: number;
  /**
   * Per key, in key order: its newest version older than the compacted
   * revision, when that version is not a tombstone. It is what a read at the
   * compacted revision sees of a key not changed at it.
   */
  readonly base: readonly SnapshotKeyValue[];
  /** Every change at or after the compacted revision, in revision then op order. */
  readonly changes: readonly SnapshotChange[];
}

// ---------------------------------------------------------------------------
// Request checks that need no state (etcd's v3rpc checks).

/**
 * The request-shape checks etcd's gateway runs on a txn, in etcd's order:
 * - too many ops: max(|compare|, |success|, |failure|) > txnOpsMax; each nested
 *   txn is held to what its parent left (txnOpsMax minus the parent's count);
 * - empty keys, value/lease given with ignoreValue/ignoreLease;
 * - duplicate keys (etcd checkIntervals), per branch: a key put twice, or put
 *   and covered by a delete, is an error. Deletes may overlap each other. A
 *   nested txn's success and failure may put the same key (only one runs).
 *   As in etcd, a put in a nested txn is checked against the deletes of the
 *   enclosing level and of the nested txns before it, and a level's own puts
 *   against everything below: so a put in one nested txn followed by a delete
 *   of that key in a later sibling nested txn is accepted, and the key is put
 *   then deleted within one revision. Unlike etcd, a "\0" range end counts as
 *   +inf (see the header).
 */
export function checkTxnRequest(
  req: TxnRequest,
  limits: Pick<Limits, "txnOpsMax">,
): RequestError | undefined {
  const shape = checkTxnShape(req, limits.txnOpsMax);
  if (shape !== undefined) return shape;
  if (writeSets(req.success ?? []) === undefined) return "duplicateKey";
  if (writeSets(req.failure ?? []) === undefined) return "duplicateKey";
  return undefined;
}

function checkTxnShape(req: TxnRequest, opsMax: number): RequestError | undefined {
  const compare = req.compare ?? [];
  const success = req.success ?? [];
  const failure = req.failure ?? [];
  const opCount = Math.max(compare.length, success.length, failure.length);
  if (opCount > opsMax) return "tooManyOps";
  for (const c of compare) if (c.key.length === 0) return "emptyKey";
  for (const op of success) {
    const e = checkOpShape(op, opsMax - opCount);
    if (e !== undefined) return e;
  }
  for (const op of failure) {
    const e = checkOpShape(op, opsMax - opCount);
    if (e !== undefined) return e;
  }
  return undefined;
}

function checkOpShape(op: RequestOp, opsMax: number): RequestError | undefined {
  switch (op.type) {
    case "range":
      return op.request.key.length === 0 ? "emptyKey" : undefined;
    case "put":
      return checkPutShape(op.request);
    case "deleteRange":
      return op.request.key.length === 0 ? "emptyKey" : undefined;
    case "txn":
      return checkTxnShape(op.request, opsMax);
    default:
      return assertNever(op, "request op");
  }
}

function checkPutShape(req: PutRequest): "emptyKey" | "valueProvided" | "leaseProvided" | undefined {
  if (req.key.length === 0) return "emptyKey";
  if (req.ignoreValue && req.value.length !== 0) return "valueProvided";
  if (req.ignoreLease && req.lease !== undefined && req.lease !== NO_LEASE) return "leaseProvided";
  return undefined;
}

/** Greater than every key string (whose chars are 0..255): the upper bound "to the end". */
const KEY_STRING_INFINITY = "\u0100";

/**
 * A union of key intervals [lo, hi), kept as disjoint runs in a B+ tree keyed by
 * `lo`: add and contains are O(log n) amortized (each run is merged away once).
 */
class IntervalSet {
  private readonly runs: Tree<string, string> = newTree<string>();

  add(lo: string, hi: string): void {
    if (lo >= hi) return;
    const before = this.runs.getPairOrNextLower(lo);
    if (before !== undefined && before[1] >= lo) {
      lo = before[0];
      if (before[1] > hi) hi = before[1];
    }
    for (;;) {
      const next = this.runs.getPairOrNextHigher(lo);
      if (next === undefined || next[0] > hi) break;
      if (next[1] > hi) hi = next[1];
      this.runs.delete(next[0]);
    }
    this.runs.set(lo, hi);
  }

  addAll(other: IntervalSet): void {
    for (const [lo, hi] of other.runs.entries()) this.add(lo, hi);
  }

  contains(k: string): boolean {
    const run = this.runs.getPairOrNextLower(k);
    return run !== undefined && k < run[1];
  }
}

/** The keys a branch puts and the intervals it deletes (etcd checkIntervals); undefined on a duplicate. */
function writeSets(ops: readonly RequestOp[]): { puts: Set<string>; dels: IntervalSet } | undefined {
  const dels = new IntervalSet();
  for (const op of ops) {
    if (op.type !== "deleteRange") continue;
    const span = spanOf(op.request);
    dels.add(span.lo, span.single ? `${span.lo}\0` : (span.hi ?? KEY_STRING_INFINITY));
  }
  const puts = new Set<string>();
  for (const op of ops) {
    if (op.type !== "txn") continue;
    const then = writeSets(op.request.success ?? []);
    if (then === undefined) return undefined;
    const otherwise = writeSets(op.request.failure ?? []);
    if (otherwise === undefined) return undefined;
    for (const k of then.puts) {
      if (puts.has(k) || dels.contains(k)) return undefined;
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      // Only one branch of a txn runs: the same key in both is fine.
      if (puts.has(k) && !then.puts.has(k)) return undefined;
      if (dels.contains(k)) return undefined;
      puts.add(k);
    }
    dels.addAll(then.dels);
    dels.addAll(otherwise.dels);
  }
  for (const op of ops) {
    if (op.type !== "put") continue;
    const k = bytesToKeyString(op.request.key);
    if (puts.has(k) || dels.contains(k)) return undefined;
    puts.add(k);
  }
  return { puts, dels };
}

// ---------------------------------------------------------------------------
// Key spans.

/** A KeyRange resolved once, as key strings (their order is bytewise order). */
interface Span {
  readonly lo: string;
  /** Exclusive upper bound; undefined: to the end (or unused when `single`). */
  readonly hi: string | undefined;
  readonly single: boolean;
}

function spanOf(r: KeyRange): Span {
  const lo = bytesToKeyString(r.key);
  const end = r.rangeEnd;
  if (end === undefined || end.length === 0) return { lo, hi: undefined, single: true };
  if (isRangeEndToEnd(end)) return { lo, hi: undefined, single: false };
  return { lo, hi: bytesToKeyString(end), single: false };
}

/** Whether the key string `k` is in `span`. */
function spanHas(span: Span, k: string): boolean {
  if (span.single) return k === span.lo;
  return k >= span.lo && (span.hi === undefined || k < span.hi);
}

/** Visits the entries of `tree` in `span` in key order while `visit` returns true. */
function forEachIn<V>(tree: Tree<string, V>, span: Span, visit: (k: string, v: V) => boolean): void {
  if (span.single) {
    const v = tree.get(span.lo);
    if (v !== undefined) visit(span.lo, v);
    return;
  }
  if (span.hi !== undefined && span.hi <= span.lo) return;
  for (const [k, v] of tree.entries(span.lo)) {
    if (span.hi !== undefined && k >= span.hi) return;
    if (!visit(k, v)) return;
  }
}

// ---------------------------------------------------------------------------
// Changes: how the store keeps a version or a tombstone (see the file header).

/** A value as stored: a one-byte string (short values) or a copy of the bytes. */
type StoredValue = string | Uint8Array;

/**
 * One change of a key: a version, or a tombstone (version 0, createRevision
 * 0, empty value, no lease) at the revision that deleted the key. Immutable
 * once recorded, but for `prev`, which compaction clears on the oldest change
 * it keeps (never shown again: reads and events use changes at or after the
 * compacted revision).
 */
interface Change {
  /** The key string; the same string instance as the tree's key. */
  readonly key: string;
  readonly value: StoredValue;
  readonly createRevision: Revision;
  readonly modRevision: Revision;
  readonly version: number;
  readonly lease: LeaseId;
  /** The live version this change replaced (an event's prevKv): undefined if the key did not exist. */
  prev: Change | undefined;
}

/**
 * `bytes` as the store keeps a value: a copy (new Uint8Array, not slice():
 * a Node Buffer's slice is a view of the request's memory).
 */
function storedValue(bytes: Uint8Array): StoredValue {
  if (bytes.length === 0) return "";
  return bytes.length <= VALUE_STRING_BYTES_MAX ? bytesToKeyString(bytes) : new Uint8Array(bytes);
}

function valueBytes(v: StoredValue): Uint8Array {
  if (typeof v !== "string") return v;
  return v.length === 0 ? EMPTY_BYTES : keyStringToBytes(v);
}

/** Bytewise comparison of a stored value with `b`, without converting the value. */
function compareValue(v: StoredValue, b: Uint8Array): number {
  if (typeof v !== "string") return compareBytes(v, b);
  const n = Math.min(v.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = v.charCodeAt(i) - b[i]!;
    if (d !== 0) return d;
  }
  return v.length - b.length;
}

/** Bytewise comparison of two stored values. */
function compareValues(a: StoredValue, b: StoredValue): number {
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  return compareValue(a, valueBytes(b));
}

/** The KeyValue of a change, made now (a tombstone's as etcd sends a delete event's kv). */
function kvOf(c: Change): KeyValue {
  return {
    key: keyStringToBytes(c.key),
    createRevision: c.createRevision,
    modRevision: c.modRevision,
    version: c.version,
    value: valueBytes(c.value),
    lease: c.lease,
  };
}

/** The event a change makes, made now. */
function eventOf(c: Change): KvEvent {
  return {
    type: c.version === 0 ? "delete" : "put",
    kv: kvOf(c),
    prevKv: c.prev === undefined ? undefined : kvOf(c.prev),
  };
}

/** The number of changes with modRevision < rev (changes are in revision order). */
function countBefore(changes: readonly Change[], rev: number): number {
  let lo = 0;
  let hi = changes.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (changes[mid]!.modRevision < rev) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The version of a key visible at `rev` (its newest change at or before rev), if not deleted. */
function versionAt(changes: readonly Change[], rev: number): Change | undefined {
  const i = countBefore(changes, rev + 1);
  if (i === 0) return undefined;
  const c = changes[i - 1]!;
  return c.version === 0 ? undefined : c;
}

/** A key's entry in `history`: its one change, or its changes (two or more), oldest first. */
type History = Change | Change[];

/** The current version of a key with history `h`: its last change, unless that is a tombstone. */
function liveOf(h: History | undefined): Change | undefined {
  if (h === undefined) return undefined;
  const last = Array.isArray(h) ? h[h.length - 1]! : h;
  return last.version === 0 ? undefined : last;
}

/** The changes of a history entry, oldest first. */
function changesOf(h: History): readonly Change[] {
  return Array.isArray(h) ? h : [h];
}

function firstChange(h: History): Change {
  return Array.isArray(h) ? h[0]! : h;
}

/** The tombstone of `prev` (a live version) at `rev`. */
function tombstone(prev: Change, rev: Revision): Change {
  return {
    key: prev.key,
    value: "",
    createRevision: asRevision(0),
    modRevision: rev,
    version: 0,
    lease: NO_LEASE,
    prev,
  };
}

/** What one kept change counts for in sizeBytes(): key string and value lengths are byte lengths. */
function changeBytes(c: Change): number {
  return c.key.length + c.value.length + MVCC_CHANGE_OVERHEAD_BYTES;
}

/** Feeds one change to a HashKV: everything a read or a watcher could see of it. */
function hashChange(h: Crc32cWriter, c: Change): void {
  h.int(c.modRevision)
    .int(c.createRevision)
    .int(c.version)
    .int64(c.lease)
    .bytes(keyStringToBytes(c.key))
    .bytes(valueBytes(c.value));
}

function compareNumbers(a: number | bigint, b: number | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The field of `kv` a compare targets, compared with the compare's operand; kv undefined: an absent key (zero values). */
function compareHoldsFor(c: Compare, kv: Change | undefined): boolean {
  let cmp: number;
  switch (c.target) {
    case "value":
      assert(kv !== undefined, "mvcc: a value compare on an absent key is decided by the caller");
      cmp = compareValue(kv.value, c.value);
      break;
    case "version":
      cmp = compareNumbers(kv?.version ?? 0, c.version);
      break;
    case "create":
      cmp = compareNumbers(kv?.createRevision ?? 0, c.createRevision);
      break;
    case "mod":
      cmp = compareNumbers(kv?.modRevision ?? 0, c.modRevision);
      break;
    case "lease":
      cmp = compareNumbers(kv?.lease ?? NO_LEASE, c.lease);
      break;
    default:
      return assertNever(c, "compare target");
  }
  switch (c.result) {
    case "equal":
      return cmp === 0;
    case "notEqual":
      return cmp !== 0;
    case "greater":
      return cmp > 0;
    case "less":
      return cmp < 0;
    default:
      return assertNever(c.result, "compare result");
  }
}

function sortComparator(target: SortTarget): (a: Change, b: Change) => number {
  switch (target) {
    case "key":
      return (a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    case "version":
      return (a, b) => a.version - b.version;
    case "create":
      return (a, b) => a.createRevision - b.createRevision;
    case "mod":
      return (a, b) => a.modRevision - b.modRevision;
    case "value":
      return (a, b) => compareValues(a.value, b.value);
    default:
      return assertNever(target, "sort target");
  }
}

/** The branch a txn runs given whether its compares held. */
function branchOf(req: TxnRequest, succeeded: boolean): readonly RequestOp[] {
  return (succeeded ? req.success : req.failure) ?? [];
}

/**
 * Which branch every txn on the executed path takes, decided before any write
 * (etcd compareToPath): nested compares see the state before the txn, not
 * the writes of the ops before them.
 */
interface TxnPath {
  readonly succeeded: boolean;
  /** One per txn op of the chosen branch, in op order. */
  readonly nested: readonly TxnPath[];
}

/** The write in progress: its revision-to-be and what it did so far. */
interface WriteBatch {
  readonly revision: Revision;
  changed: boolean;
  readonly changes: Change[];
  readonly leaseChanges: LeaseChange[];
  readonly internLease: ((id: LeaseId) => LeaseId) | undefined;
}

/**
 * The instance of lease `id` a new version keeps: NO_LEASE itself, the
 * previous version's when equal, else the caller's (WriteOptions.internLease).
 */
function sharedLease(id: LeaseId, prev: Change | undefined, batch: WriteBatch): LeaseId {
  if (id === NO_LEASE) return NO_LEASE;
  if (prev !== undefined && prev.lease === id) return prev.lease;
  return batch.internLease === undefined ? id : batch.internLease(id);
}

function encodeKv(c: Change): SnapshotKeyValue {
  return {
    key: bytesToBase64(keyStringToBytes(c.key)),
    createRevision: c.createRevision,
    modRevision: c.modRevision,
    version: c.version,
    value: bytesToBase64(valueBytes(c.value)),
    lease: c.lease.toString(),
  };
}

function decodeBytes(text: string, what: string): Uint8Array {
  const b = base64ToBytes(text);
  assert(b !== undefined, `mvcc snapshot: ${what} is not base64`);
  return b;
}

/** One version as a snapshot holds it, decoded from either format. */
interface SnapshotVersion {
  readonly key: string;
  readonly value: StoredValue;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly lease: LeaseId;
}

/** One change as a snapshot holds it, decoded from either format. */
type SnapshotItem =
  | { readonly type: "put"; readonly kv: SnapshotVersion }
  | { readonly type: "delete"; readonly key: string; readonly revision: number };

/** A snapshot being read, in either format: its header, then its items in order. */
interface SnapshotSource {
  readonly revision: number;
  readonly compactedRevision: number;
  readonly baseCount: number;
  readonly changeCount: number;
  nextBase(): SnapshotVersion;
  nextChange(): SnapshotItem;
}

/** A snapshot's version as a change: `key` the key string to keep, `prev` the live version it replaces. */
function changeOf(v: SnapshotVersion, key: string, prev: Change | undefined): Change {
  for (const n of [v.createRevision, v.modRevision, v.version]) {
    assert(Number.isSafeInteger(n) && n >= 0, `mvcc snapshot: bad number ${n}`);
  }
  return {
    key,
    value: v.value,
    createRevision: asRevision(v.createRevision),
    modRevision: asRevision(v.modRevision),
    version: v.version,
    lease: v.lease,
    prev,
  };
}

/** A format-1 version; `leases` gives one instance per lease id. */
function versionFromJson(s: SnapshotKeyValue, leases: Map<string, LeaseId>): SnapshotVersion {
  assert(/^\d+$/.test(s.lease), `mvcc snapshot: bad lease id ${s.lease}`);
  let lease = leases.get(s.lease);
  if (lease === undefined) {
    const id = leaseId(BigInt(s.lease));
    lease = id === NO_LEASE ? NO_LEASE : id;
    leases.set(s.lease, lease);
  }
  return {
    key: bytesToKeyString(decodeBytes(s.key, "key")),
    value: storedValue(decodeBytes(s.value, "value")),
    createRevision: s.createRevision,
    modRevision: s.modRevision,
    version: s.version,
    lease,
  };
}

/** Format 2 (binary) of a version: key, revisions, version, value, lease (0: none). */
function writeVersion(w: ByteWriter, c: Change): void {
  w.keyString(c.key).uint(c.createRevision).uint(c.modRevision).uint(c.version);
  if (typeof c.value === "string") w.keyString(c.value);
  else w.bytes(c.value);
  w.u64(c.lease);
}

function readVersion(r: ByteReader, leases: Map<bigint, LeaseId>): SnapshotVersion {
  const key = r.keyString();
  const createRevision = r.uint();
  const modRevision = r.uint();
  const version = r.uint();
  const value = storedValue(r.bytes());
  const id = r.u64();
  assert(id <= MAX_INT64, `mvcc snapshot: lease id ${id} beyond int64`);
  let lease = leases.get(id);
  if (lease === undefined) {
    lease = id === NO_LEASE ? NO_LEASE : leaseId(id);
    leases.set(id, lease);
  }
  return { key, value, createRevision, modRevision, version, lease };
}

const MAX_INT64 = (1n << 63n) - 1n;

// ---------------------------------------------------------------------------
// The store.

/** The MVCC key space of one replica. See the file header for the contract. */
export class MvccStore {
  private readonly limits: Limits;
  /** The revision of the last write that changed something. Invariant: compacted <= rev. */
  private rev: Revision;
  /** Reads below this revision fail. NEVER_COMPACTED (-1, etcd's initial compactMainRev): no compaction yet. */
  private compacted: Revision;
  /**
   * Every key with a change still kept -> its changes, oldest first, in
   * revision then op order. Invariant: at most the first change is older than
   * `compacted`, and then it is a put; the first change has no prev, each
   * other's prev is the one before it unless that is a tombstone; never empty.
   */
  private readonly history: Tree<string, History>;
  /** Every change at revision >= compacted, in revision then op order; the same objects as in `history`. */
  private log: Change[];
  /** The write being applied, while one is. */
  private batch: WriteBatch | undefined;
  /** Invariant: the sum of changeBytes over every change kept in `history`. */
  private bytes = 0;

  constructor(options: MvccOptions = {}) {
    this.limits = options.limits ?? DEFAULT_LIMITS;
    assert(this.limits.txnOpsMax >= 1, "mvcc: txnOpsMax must be positive");
    assert(this.limits.watchBatchRevisionsMax >= 1, "mvcc: watchBatchRevisionsMax must be positive");
    this.rev = FIRST_REVISION;
    this.compacted = NEVER_COMPACTED;
    this.history = newTree<History>();
    this.log = [];
    this.batch = undefined;
  }

  /** The revision of the last write that changed something (1, FIRST_REVISION, before any, as in etcd). */
  currentRevision(): Revision {
    return this.rev;
  }

  /** The revision of the last compaction (NEVER_COMPACTED, -1, if none, as etcd reports it): reads below it fail. */
  compactedRevision(): Revision {
    return this.compacted;
  }

  /**
   * The size of the store as the space quota counts it: per change kept
   * (every version and tombstone not compacted away), its key and value plus
   * MVCC_CHANGE_OVERHEAD_BYTES. It grows with every write and shrinks when a
   * compaction drops history. O(1).
   */
  sizeBytes(): number {
    return this.bytes;
  }

  // -- reads -----------------------------------------------------------------

  /** etcd Range. Fails with "compacted" below the compacted revision, "futureRevision" above the current one. */
  range(req: RangeRequest): RangeResult {
    if (req.key.length === 0) return { ok: false, error: "emptyKey" };
    const e = this.checkReadRevision(req.revision);
    if (e !== undefined) return { ok: false, error: e };
    return { ok: true, ...this.readRange(req) };
  }

  /**
   * The events with revision >= `start` on keys in `range`, in revision then op
   * order, at most `revisionsMax` distinct revisions (whole revisions only).
   * Fails when `start` is below the compacted revision; watching from exactly
   * the compacted revision works (etcd cancels a watcher only when its start
   * is below the compact revision, and clients restart from that revision).
   * Cost O(log E + N) for the N events scanned; a single key scans only its own.
   */
  eventsSince(
    start: Revision,
    range: KeyRange,
    revisionsMax: number = this.limits.watchBatchRevisionsMax,
  ): EventsSinceResult {
    assert(this.batch === undefined, "mvcc: eventsSince during a write");
    assert(Number.isSafeInteger(revisionsMax) && revisionsMax >= 1, `mvcc: bad revisionsMax ${revisionsMax}`);
    if (start < this.compacted) return { ok: false, error: "compacted", compactRevision: this.compacted };
    const span = spanOf(range);
    const single = span.single ? this.history.get(span.lo) : undefined;
    const source = span.single ? (single === undefined ? [] : changesOf(single)) : this.log;
    const events: KvEvent[] = [];
    let revisions = 0;
    let last = -1;
    for (let i = countBefore(source, start); i < source.length; i++) {
      const c = source[i]!;
      if (!span.single && !spanHas(span, c.key)) continue;
      const r = c.modRevision;
      if (r !== last) {
        if (revisions === revisionsMax) return { ok: true, events, nextRevision: r };
        revisions++;
        last = r;
      }
      events.push(eventOf(c));
    }
    return { ok: true, events, nextRevision: asRevision(Math.max(start, this.rev + 1)) };
  }

  /**
   * etcd HashKV (mvcc HashByRev): a CRC-32C of the key space up to `rev`
   * (0: the current revision), so replicas can be compared: the changes kept
   * from before the compacted revision (each key's newest version older than
   * it, in key order), then every change at or after it up to `rev`, in
   * revision then op order; each change as its revisions, version, lease, key
   * and value. Replicas that applied the same commands answer the same hash,
   * and the hash of a revision does not change with later writes (only with
   * a later compaction). Errors as etcd's: rev > 0 at or below the compacted
   * revision: "compacted"; above the current one: "futureRevision". O(n + E).
   */
  hashKv(rev: Revision): HashKvResult {
    assert(this.batch === undefined, "mvcc: hashKv during a write");
    assert(Number.isSafeInteger(rev), `mvcc: bad hash revision ${rev}`);
    if (rev > 0 && rev <= this.compacted) return { ok: false, error: "compacted" };
    if (rev > this.rev) return { ok: false, error: "futureRevision" };
    const upTo = rev > 0 ? rev : this.rev;
    const h = new Crc32cWriter().int(upTo).int(this.compacted);
    for (const [, changes] of this.history.entries()) {
      const first = firstChange(changes);
      if (first.modRevision < this.compacted) hashChange(h, first);
    }
    for (const c of this.log) {
      if (c.modRevision > upTo) break;
      hashChange(h, c);
    }
    return {
      ok: true,
      hash: h.value(),
      revision: asRevision(upTo),
      currentRevision: this.rev,
      compactRevision: this.compacted,
    };
  }

  // -- writes ----------------------------------------------------------------

  /**
   * etcd Put. Checks, in etcd's order: the request shape, the lease
   * (options.leaseExists), then that the key exists when ignoreValue or
   * ignoreLease asks to keep its value or lease. Always takes a new revision.
   */
  put(req: PutRequest, options: WriteOptions = NO_LEASES): PutResult {
    const shape = checkPutShape(req);
    if (shape !== undefined) return { ok: false, error: shape };
    const lease = req.lease ?? NO_LEASE;
    if (lease !== NO_LEASE && !options.leaseExists(lease)) return { ok: false, error: "leaseNotFound" };
    if ((req.ignoreValue || req.ignoreLease) && this.live(bytesToKeyString(req.key)) === undefined) {
      return { ok: false, error: "keyNotFound" };
    }
    const batch = this.begin(options);
    const response = this.execPut(req, batch);
    return { ok: true, ...response, ...this.commit(batch) };
  }

  /** etcd DeleteRange. Takes a new revision only if it deleted something. */
  deleteRange(req: DeleteRangeRequest): DeleteRangeResult {
    if (req.key.length === 0) return { ok: false, error: "emptyKey" };
    const batch = this.begin();
    const response = this.execDelete(req, batch);
    return { ok: true, ...response, ...this.commit(batch) };
  }

  /**
   * etcd Txn, in one revision. In order: the request checks (checkTxnRequest);
   * every compare on the executed path, against the state before the txn;
   * the executed path's ops against that same state (a range's revision must
   * be readable; a put's lease must exist, and its key too with
   * ignoreValue/ignoreLease); then the ops run in order. Ranges in the txn see
   * the writes before them. The revision moves iff an op changed something.
   */
  txn(req: TxnRequest, options: WriteOptions = NO_LEASES): TxnResult {
    const requestError = checkTxnRequest(req, this.limits);
    if (requestError !== undefined) return { ok: false, error: requestError };
    const path = this.pathOf(req);
    const stateError = this.checkAgainstState(req, path, options);
    if (stateError !== undefined) return { ok: false, error: stateError };
    const batch = this.begin(options);
    const response = this.execTxn(req, path, batch);
    const effects = this.commit(batch);
    return { ok: true, revision: this.rev, ...response, ...effects };
  }

  /**
   * Deletes the given keys that exist, in one revision, in key order (as etcd's
   * lease revoke does); duplicates count once. Used to revoke a lease: one
   * delete event per key. Takes no revision when none of the keys exists.
   */
  deleteKeys(keys: readonly Uint8Array[]): DeleteKeysResult {
    for (const k of keys) assert(k.length > 0, "mvcc: deleteKeys with an empty key");
    const batch = this.begin();
    const deleted = this.tombstoneKeys(keys, batch);
    const effects = this.commit(batch);
    return { revision: this.rev, deleted, ...effects };
  }

  /**
   * deleteKeys, then `puts`, all in ONE revision (a lease expiry that starts
   * lock-delays: machine.ts). Each put is a plain put (no ignore flags) whose
   * lease the caller has granted; its shape is asserted, not answered.
   */
  deleteKeysThenPut(
    keys: readonly Uint8Array[],
    puts: readonly PutRequest[],
    options: WriteOptions,
  ): DeleteKeysResult {
    for (const k of keys) assert(k.length > 0, "mvcc: deleteKeysThenPut with an empty key");
    for (const p of puts) {
      assert(
        checkPutShape(p) === undefined && !p.ignoreValue && !p.ignoreLease,
        "mvcc: a bad put in deleteKeysThenPut",
      );
      assert(
        p.lease === undefined || p.lease === NO_LEASE || options.leaseExists(p.lease),
        "mvcc: put on a missing lease",
      );
    }
    const batch = this.begin(options);
    const deleted = this.tombstoneKeys(keys, batch);
    for (const p of puts) this.execPut(p, batch);
    const effects = this.commit(batch);
    return { revision: this.rev, deleted, ...effects };
  }

  /** Deletes each live key of `keys` (in key order, duplicates once) in `batch`; how many were live. */
  private tombstoneKeys(keys: readonly Uint8Array[], batch: WriteBatch): number {
    const sorted = keys.map(bytesToKeyString).sort();
    let deleted = 0;
    for (let i = 0; i < sorted.length; i++) {
      const k = sorted[i]!;
      if (i > 0 && sorted[i - 1] === k) continue;
      const prev = this.live(k);
      if (prev === undefined) continue;
      this.record(tombstone(prev, batch.revision), batch);
      deleted++;
    }
    return deleted;
  }

  /**
   * etcd Compaction: forgets history below `target`. Afterwards reads at
   * revisions >= target answer as before, reads below fail with "compacted",
   * and eventsSince works from target on. Per key it keeps every change at or
   * after target and the newest one before it unless that is a tombstone.
   * Errors: target <= the compacted revision: "compacted"; target > current: "futureRevision"
   * (etcd updateCompactRev). On a fresh store (compacted -1, current 1) Compact(0)
   * and Compact(1) succeed, as in etcd.
   */
  compact(target: Revision): CompactResult {
    assert(this.batch === undefined, "mvcc: compact during a write");
    if (target <= this.compacted) return { ok: false, error: "compacted" };
    if (target > this.rev) return { ok: false, error: "futureRevision" };
    // What the loop decides for a key is applied after it: the tree is not changed while iterated.
    const replaced: [string, History | undefined][] = [];
    for (const [k, h] of this.history.entries()) {
      const changes = changesOf(h);
      const older = countBefore(changes, target);
      if (older === 0) continue;
      const newestOlder = changes[older - 1]!;
      const dropped = newestOlder.version === 0 ? older : older - 1;
      if (dropped === 0 && newestOlder.prev === undefined) continue;
      for (let i = 0; i < dropped; i++) this.bytes -= changeBytes(changes[i]!);
      if (newestOlder.version !== 0) newestOlder.prev = undefined;
      const left = changes.slice(dropped);
      replaced.push([k, left.length === 0 ? undefined : left.length === 1 ? left[0]! : left]);
    }
    for (const [k, h] of replaced) {
      if (h === undefined) this.history.delete(k);
      else this.history.set(k, h);
    }
    this.log = this.log.slice(countBefore(this.log, target));
    this.compacted = target;
    return { ok: true, revision: this.rev };
  }

  // -- snapshot --------------------------------------------------------------

  /** The whole store as plain JSON-serializable data; see MvccSnapshot. */
  snapshot(): MvccSnapshot {
    assert(this.batch === undefined, "mvcc: snapshot during a write");
    const base: SnapshotKeyValue[] = [];
    for (const [, changes] of this.history.entries()) {
      const first = firstChange(changes);
      if (first.modRevision < this.compacted) base.push(encodeKv(first));
    }
    const changes = this.log.map(
      (c): SnapshotChange =>
        c.version !== 0
          ? { type: "put", kv: encodeKv(c) }
          : { type: "delete", key: bytesToBase64(keyStringToBytes(c.key)), revision: c.modRevision },
    );
    return { formatVersion: 1, revision: this.rev, compactedRevision: this.compacted, base, changes };
  }

  /**
   * A store equal to the one that made `snap`: same revision, compacted
   * revision, answers at every readable revision, and events. The snapshot is
   * trusted to come from snapshot() (checksummed by the storage layer); a
   * structurally broken one fails an assertion.
   */
  static restore(snap: MvccSnapshot, options: MvccOptions = {}): MvccStore {
    assert(snap.formatVersion === 1, `mvcc snapshot: unknown format ${String(snap.formatVersion)}`);
    const leases = new Map<string, LeaseId>();
    let b = 0;
    let c = 0;
    return MvccStore.rebuild(
      {
        revision: snap.revision,
        compactedRevision: snap.compactedRevision,
        baseCount: snap.base.length,
        changeCount: snap.changes.length,
        nextBase: () => versionFromJson(snap.base[b++]!, leases),
        nextChange: () => {
          const x = snap.changes[c++]!;
          return x.type === "put"
            ? { type: "put", kv: versionFromJson(x.kv, leases) }
            : { type: "delete", key: bytesToKeyString(decodeBytes(x.key, "key")), revision: x.revision };
        },
      },
      options,
    );
  }

  /**
   * Writes the store in snapshot format 2 (binary), from which `readSnapshot`
   * makes the store `restore(snapshot())` would: the revision, the compacted
   * revision + 1, the numbers of base versions and of changes, the base
   * versions in key order, then every change in revision then op order (a
   * tag byte, 0: put, then the version; 1: delete, then key and revision).
   * Written straight from the store: no object per version.
   */
  writeSnapshot(w: ByteWriter): void {
    assert(this.batch === undefined, "mvcc: snapshot during a write");
    let baseCount = 0;
    for (const [, h] of this.history.entries()) if (firstChange(h).modRevision < this.compacted) baseCount++;
    w.uint(this.rev)
      .uint(this.compacted + 1)
      .uint(baseCount)
      .uint(this.log.length);
    for (const [, h] of this.history.entries()) {
      const first = firstChange(h);
      if (first.modRevision < this.compacted) writeVersion(w, first);
    }
    for (const c of this.log) {
      if (c.version !== 0) writeVersion(w.u8(0), c);
      else w.u8(1).keyString(c.key).uint(c.modRevision);
    }
  }

  /** The store `writeSnapshot` wrote, read from `r` (checked at the storage boundary; malformed is a bug). */
  static readSnapshot(r: ByteReader, options: MvccOptions = {}): MvccStore {
    const leases = new Map<bigint, LeaseId>();
    const revision = r.uint();
    const compactedRevision = r.uint() - 1;
    const baseCount = r.uint();
    const changeCount = r.uint();
    return MvccStore.rebuild(
      {
        revision,
        compactedRevision,
        baseCount,
        changeCount,
        nextBase: () => readVersion(r, leases),
        nextChange: () => {
          const tag = r.u8();
          assert(tag === 0 || tag === 1, `mvcc snapshot: change tag ${tag}`);
          return tag === 0
            ? { type: "put", kv: readVersion(r, leases) }
            : { type: "delete", key: r.keyString(), revision: r.uint() };
        },
      },
      options,
    );
  }

  /**
   * The store a snapshot describes, in either format: same revision,
   * compacted revision, answers at every readable revision, and events. The
   * snapshot is trusted to come from a store (checksummed by the storage
   * layer); a structurally broken one fails an assertion.
   */
  private static rebuild(src: SnapshotSource, options: MvccOptions): MvccStore {
    const store = new MvccStore(options);
    const compacted = src.compactedRevision;
    assert(
      Number.isSafeInteger(src.revision) &&
        src.revision >= FIRST_REVISION &&
        Number.isSafeInteger(compacted) &&
        compacted >= NEVER_COMPACTED &&
        compacted <= src.revision,
      `mvcc snapshot: compacted ${compacted} vs revision ${src.revision}`,
    );
    store.compacted = asRevision(compacted);
    let previousKey: string | undefined;
    for (let i = 0; i < src.baseCount; i++) {
      const v = src.nextBase();
      const k = v.key;
      assert(previousKey === undefined || previousKey < k, "mvcc snapshot: base not in key order");
      assert(v.version > 0 && v.modRevision < compacted, "mvcc snapshot: bad base version");
      assert(v.createRevision <= v.modRevision, "mvcc snapshot: base created after modified");
      previousKey = k;
      const kv = changeOf(v, k, undefined);
      store.history.set(k, kv);
      store.bytes += changeBytes(kv);
    }
    // Every revision after FIRST_REVISION has changes, so every one from the compacted one (or
    // FIRST_REVISION + 1) on is in `changes`: replay them one write at a time.
    store.rev = asRevision(Math.max(compacted - 1, FIRST_REVISION));
    let batch: WriteBatch | undefined;
    for (let i = 0; i < src.changeCount; i++) {
      const c = src.nextChange();
      const r = c.type === "put" ? c.kv.modRevision : c.revision;
      if (batch === undefined || r !== batch.revision) {
        if (batch !== undefined) store.commit(batch);
        batch = store.begin();
        assert(r === batch.revision, `mvcc snapshot: change at ${r}, expected ${batch.revision}`);
      }
      const k = c.type === "put" ? c.kv.key : c.key;
      const prev = store.live(k);
      if (c.type === "put") {
        const kv = changeOf(c.kv, store.historyKey(k), prev);
        assert(
          prev === undefined
            ? kv.version === 1 && kv.createRevision === r
            : kv.version === prev.version + 1 && kv.createRevision === prev.createRevision,
          `mvcc snapshot: put at ${r} does not follow the key's previous version`,
        );
        store.record(kv, batch);
      } else {
        assert(prev !== undefined, `mvcc snapshot: delete at ${r} of a key that does not exist`);
        store.record(tombstone(prev, batch.revision), batch);
      }
    }
    if (batch !== undefined) store.commit(batch);
    assert(store.rev === src.revision, `mvcc snapshot: changes end at ${store.rev}, not ${src.revision}`);
    store.checkInvariants();
    return store;
  }

  /**
   * Asserts the structural invariants (for tests, the simulator and restore).
   * O(n + E).
   */
  checkInvariants(): void {
    assert(this.batch === undefined, "mvcc: invariants checked during a write");
    assert(this.compacted <= this.rev, "mvcc: compacted beyond current");
    let kept = 0;
    let bytes = 0;
    for (const [k, h] of this.history.entries()) {
      assert(
        !Array.isArray(h) || h.length > 1,
        `mvcc: history of ${JSON.stringify(k)} is an array of ${changesOf(h).length}`,
      );
      const changes = changesOf(h);
      for (let i = 0; i < changes.length; i++) {
        const c = changes[i]!;
        bytes += changeBytes(c);
        assert(c.key === k, "mvcc: change filed under another key");
        assert(c.modRevision <= this.rev, "mvcc: change beyond the current revision");
        if (i > 0) assert(changes[i - 1]!.modRevision <= c.modRevision, "mvcc: history out of order");
        if (c.modRevision < this.compacted) assert(i === 0 && c.version !== 0, "mvcc: stale history kept");
        else kept++;
        const before = i === 0 ? undefined : changes[i - 1]!;
        assert(
          c.prev === (before !== undefined && before.version !== 0 ? before : undefined),
          "mvcc: a change's previous version is not the one before it",
        );
      }
    }
    assert(bytes === this.bytes, `mvcc: size ${this.bytes} but the history holds ${bytes} bytes`);
    assert(kept === this.log.length, "mvcc: log and history disagree");
    for (let i = 0; i < this.log.length; i++) {
      const r = this.log[i]!.modRevision;
      assert(r >= this.compacted && (i === 0 || this.log[i - 1]!.modRevision <= r), "mvcc: log out of order");
    }
  }

  // -- internals -------------------------------------------------------------

  /** The revision the current versions show: the write in progress once it changed something. */
  private liveRevision(): Revision {
    return this.batch?.changed ? this.batch.revision : this.rev;
  }

  /** etcd checkRange / rangeKeys: 0 reads the current revision. */
  private checkReadRevision(rev: Revision | undefined): "compacted" | "futureRevision" | undefined {
    if (rev === undefined || rev === 0) return undefined;
    assert(Number.isSafeInteger(rev) && rev > 0, `mvcc: bad read revision ${rev}`);
    if (rev > this.rev) return "futureRevision";
    if (rev < this.compacted) return "compacted";
    return undefined;
  }

  /**
   * etcd executeRange. Without sort or filters, only limit+1 kvs are kept
   * (enough for `more`), but every key in range is counted. With a sort order
   * or a min/max filter, everything is fetched, filtered, sorted, then cut.
   * A sort target other than key with sortOrder none sorts ascending, but
   * (as in etcd) only the limit+1 first keys by key order were fetched.
   */
  private readRange(req: RangeRequest): RangeResponse {
    const current = this.liveRevision();
    const at = req.revision !== undefined && req.revision > 0 ? req.revision : current;
    assert(at <= current && at >= this.compacted, `mvcc: read at ${at} was not checked`);
    const limit = req.limit !== undefined && req.limit > 0 ? req.limit : 0;
    assert(Number.isSafeInteger(limit), `mvcc: bad limit ${req.limit}`);
    const minMod = req.minModRevision ?? 0;
    const maxMod = req.maxModRevision ?? 0;
    const minCreate = req.minCreateRevision ?? 0;
    const maxCreate = req.maxCreateRevision ?? 0;
    const filtered = minMod !== 0 || maxMod !== 0 || minCreate !== 0 || maxCreate !== 0;
    const requestedOrder = req.sortOrder ?? "none";
    const target = req.sortTarget ?? "key";
    const keep = req.countOnly
      ? 0
      : requestedOrder !== "none" || filtered || limit === 0
        ? Number.POSITIVE_INFINITY
        : limit + 1;

    let count = 0;
    let kvs: Change[] = [];
    const span = spanOf(req);
    if (at === current) {
      this.forEachLive(span, (kv) => {
        count++;
        if (kvs.length < keep) kvs.push(kv);
        return true;
      });
    } else {
      forEachIn(this.history, span, (_k, h) => {
        const kv = versionAt(changesOf(h), at);
        if (kv !== undefined) {
          count++;
          if (kvs.length < keep) kvs.push(kv);
        }
        return true;
      });
    }
    if (req.countOnly) return { kvs: [], more: false, count, revision: current };
    const keysOnly = req.keysOnly === true;

    if (filtered) {
      kvs = kvs.filter(
        (kv) =>
          (maxMod === 0 || kv.modRevision <= maxMod) &&
          (minMod === 0 || kv.modRevision >= minMod) &&
          (maxCreate === 0 || kv.createRevision <= maxCreate) &&
          (minCreate === 0 || kv.createRevision >= minCreate),
      );
    }
    // kvs are in key order: ascending by key needs no sort; any other target defaults to ascending.
    let order = requestedOrder;
    if (target !== "key" && order === "none") order = "ascend";
    else if (target === "key" && order === "ascend") order = "none";
    if (order !== "none") {
      const cmp = sortComparator(target);
      // Array.prototype.sort is stable: ties stay in key order.
      kvs.sort(order === "ascend" ? cmp : (a, b) => cmp(b, a));
    }
    let more = false;
    if (limit > 0 && kvs.length > limit) {
      kvs = kvs.slice(0, limit);
      more = true;
    }
    const out = kvs.map((c) => (keysOnly ? { ...kvOf(c), value: EMPTY_BYTES } : kvOf(c)));
    return { kvs: out, more, count, revision: current };
  }

  /** etcd applyCompare: against the live state, which no write has touched yet. */
  private compareHolds(c: Compare): boolean {
    assert(this.batch === undefined, "mvcc: compare during a write");
    let any = false;
    let holds = true;
    this.forEachLive(spanOf(c), (kv) => {
      any = true;
      holds = compareHoldsFor(c, kv);
      return holds;
    });
    if (any) return holds;
    // No key: a value compare fails (etcd cannot tell a missing value from an empty one); the rest compare zeros.
    return c.target === "value" ? false : compareHoldsFor(c, undefined);
  }

  private pathOf(req: TxnRequest): TxnPath {
    const succeeded = (req.compare ?? []).every((c) => this.compareHolds(c));
    const nested: TxnPath[] = [];
    for (const op of branchOf(req, succeeded)) if (op.type === "txn") nested.push(this.pathOf(op.request));
    return { succeeded, nested };
  }

  /** etcd checkTxn: the executed path's ops against the state before the txn, first error wins. */
  private checkAgainstState(req: TxnRequest, path: TxnPath, options: WriteOptions): MvccError | undefined {
    let n = 0;
    for (const op of branchOf(req, path.succeeded)) {
      let e: MvccError | undefined;
      switch (op.type) {
        case "range":
          e = this.checkReadRevision(op.request.revision);
          break;
        case "put": {
          const p = op.request;
          if ((p.ignoreValue || p.ignoreLease) && this.live(bytesToKeyString(p.key)) === undefined)
            e = "keyNotFound";
          else if (p.lease !== undefined && p.lease !== NO_LEASE && !options.leaseExists(p.lease)) {
            e = "leaseNotFound";
          }
          break;
        }
        case "deleteRange":
          break;
        case "txn":
          e = this.checkAgainstState(op.request, path.nested[n++]!, options);
          break;
        default:
          assertNever(op, "request op");
      }
      if (e !== undefined) return e;
    }
    return undefined;
  }

  private begin(options: WriteOptions = NO_LEASES): WriteBatch {
    assert(this.batch === undefined, "mvcc: nested write");
    this.batch = {
      revision: asRevision(this.rev + 1),
      changed: false,
      changes: [],
      leaseChanges: [],
      internLease: options.internLease,
    };
    return this.batch;
  }

  private commit(batch: WriteBatch): WriteEffects {
    assert(this.batch === batch, "mvcc: commit of a write not in progress");
    this.batch = undefined;
    if (batch.changed) {
      this.rev = batch.revision;
      for (const c of batch.changes) this.log.push(c);
    }
    assert(batch.changed === batch.changes.length > 0, "mvcc: a change without an event");
    return { events: batch.changes.map(eventOf), leaseChanges: batch.leaseChanges };
  }

  private execTxn(req: TxnRequest, path: TxnPath, batch: WriteBatch): TxnResponse {
    const responses: ResponseOp[] = [];
    let n = 0;
    for (const op of branchOf(req, path.succeeded)) {
      switch (op.type) {
        case "range":
          responses.push({ type: "range", response: this.readRange(op.request) });
          break;
        case "put":
          responses.push({ type: "put", response: this.execPut(op.request, batch) });
          break;
        case "deleteRange":
          responses.push({ type: "deleteRange", response: this.execDelete(op.request, batch) });
          break;
        case "txn":
          responses.push({ type: "txn", response: this.execTxn(op.request, path.nested[n++]!, batch) });
          break;
        default:
          assertNever(op, "request op");
      }
    }
    assert(n === path.nested.length, "mvcc: txn path does not match the request");
    return { succeeded: path.succeeded, responses };
  }

  private execPut(req: PutRequest, batch: WriteBatch): PutResponse {
    const k = bytesToKeyString(req.key);
    const h = this.history.get(k);
    const prev = liveOf(h);
    const keep = req.ignoreValue || req.ignoreLease;
    assert(!keep || prev !== undefined, "mvcc: ignoreValue/ignoreLease on a missing key was not checked");
    const c: Change = {
      // One string per key: the one the trees already hold, if they hold the key.
      key: h === undefined ? k : firstChange(h).key,
      value: req.ignoreValue ? prev!.value : storedValue(req.value),
      createRevision: prev?.createRevision ?? batch.revision,
      modRevision: batch.revision,
      version: prev === undefined ? 1 : prev.version + 1,
      lease: req.ignoreLease ? prev!.lease : sharedLease(req.lease ?? NO_LEASE, prev, batch),
      prev,
    };
    this.record(c, batch);
    return { revision: batch.revision, prevKv: req.prevKv && prev !== undefined ? kvOf(prev) : undefined };
  }

  private execDelete(req: DeleteRangeRequest, batch: WriteBatch): DeleteRangeResponse {
    const victims: Change[] = [];
    this.forEachLive(spanOf(req), (c) => {
      victims.push(c);
      return true;
    });
    for (const prev of victims) this.record(tombstone(prev, batch.revision), batch);
    return {
      revision: batch.changed ? batch.revision : this.rev,
      deleted: victims.length,
      prevKvs: req.prevKv ? victims.map(kvOf) : [],
    };
  }

  /**
   * The store's own instance of the key string `k` (the same text), or `k`
   * if it holds no such key: for a caller that keeps key strings too (the
   * lease table), so that there is one string per key.
   */
  sharedKey(k: string): string {
    return this.historyKey(k);
  }

  /** The current version of key `k`, if it exists. */
  private live(k: string): Change | undefined {
    return liveOf(this.history.get(k));
  }

  /** Visits the keys in `span` that exist now, in key order, with their current version, while `visit` returns true. */
  private forEachLive(span: Span, visit: (c: Change) => boolean): void {
    forEachIn(this.history, span, (_k, h) => {
      const c = liveOf(h);
      return c === undefined || visit(c);
    });
  }

  /** The key string `history` holds for `k` (the same text), or `k` if it holds none: one string per key. */
  private historyKey(k: string): string {
    const h = this.history.get(k);
    return h === undefined ? k : firstChange(h).key;
  }

  /** Applies one change (a put, or a delete when c.version is 0) to the history, the batch and lease changes. */
  private record(c: Change, batch: WriteBatch): void {
    assert(c.modRevision === batch.revision, "mvcc: change outside its write's revision");
    const k = c.key;
    const h = this.history.get(k);
    const last = h === undefined ? undefined : Array.isArray(h) ? h[h.length - 1]! : h;
    assert(
      c.prev === (last !== undefined && last.version !== 0 ? last : undefined),
      "mvcc: previous version is not the live one",
    );
    // The second change makes a literal of two: V8 gives an array's first push room for 17 (152 bytes).
    if (h === undefined) this.history.set(k, c);
    else if (Array.isArray(h)) h.push(c);
    else this.history.set(k, [h, c]);
    this.bytes += changeBytes(c);
    batch.changes.push(c);
    const from = c.prev?.lease ?? NO_LEASE;
    if (from !== c.lease)
      batch.leaseChanges.push({ key: keyStringToBytes(k), keyString: k, from, to: c.lease });
    batch.changed = true;
  }
}

/** `put "k" rev=5 create=3 ver=2 lease=7 "v"` / `delete "k" rev=6`: deterministic, for logs and traces. */
export function describeEvent(ev: KvEvent): string {
  const kv = ev.kv;
  if (ev.type === "delete") return `delete ${describeData(kv.key)} rev=${kv.modRevision}`;
  return `put ${describeData(kv.key)} rev=${kv.modRevision} create=${kv.createRevision} ver=${kv.version} lease=${kv.lease} ${describeData(kv.value)}`;
}
