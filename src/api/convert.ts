/**
 * The gateway's conversions between etcd's wire messages (as proto-loader
 * decodes them: snake_case names, int64 as decimal strings, bytes as Buffer,
 * enums as numbers; proto.ts) and the state layer's types, and back.
 *
 * Decoding validates what the state layer relies on and answers a bad request
 * with the etcd error etcd answers (`RequestRejected`): an unknown enum value,
 * an int64 out of range, a negative lease id, an empty key where one is
 * required. Encoding leaves zero values out, as etcd's gogoproto does.
 */

import type {
  CommandResult,
  Compare,
  CompareResult,
  DeleteRangeRequest,
  KeyValue,
  KvEvent,
  LeaseId,
  PutRequest,
  RangeRequest,
  RangeResult,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
} from "../state/index.ts";
import { leaseId, MAX_LEASE_ID, revision } from "../state/index.ts";
import { AUTH_ERROR_NAMES } from "./auth.ts";
import type { EtcdErrorName } from "./errors.ts";
import type { WireMessage } from "./proto.ts";

/** A request the gateway refuses before it reaches the log, with etcd's error. */
export class RequestRejected extends Error {
  override readonly name = "RequestRejected";
  constructor(
    readonly error: EtcdErrorName,
    detail: string,
  ) {
    super(detail);
  }
}

type W = WireMessage;

const SORT_ORDERS: readonly SortOrder[] = ["none", "ascend", "descend"];
const SORT_TARGETS: readonly SortTarget[] = ["key", "version", "create", "mod", "value"];
/** etcd Compare.CompareResult: EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3. */
const COMPARE_RESULTS: readonly CompareResult[] = ["equal", "greater", "less", "notEqual"];

const EMPTY = new Uint8Array(0);

function bytes(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : EMPTY;
}

/** An int64 field as a safe number (revisions, limits); out of that range is a bad request. */
function int(v: unknown, _field: string): number {
  // Decoded int64s are decimal strings (proto.ts); a number is taken whole.
  if (typeof v === "number") v = Number.isFinite(v) ? String(Math.trunc(v)) : "0";
  if (typeof v !== "string" || !/^-?\d+$/.test(v)) return 0;
  const n = BigInt(v);
  // Revisions, versions and limits this store reaches stay far below 2^53: a number past it
  // orders against them exactly as its clamp does (a revision in the future, no limit).
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  return Number(n > max ? max : n < -max ? -max : n);
}

function lease(v: unknown): LeaseId {
  const s = typeof v === "string" ? v : typeof v === "number" ? String(v) : "0";
  const n = BigInt(s);
  // etcd treats lease ids as int64; a negative one names no lease it could have granted.
  if (n < 0n || n > MAX_LEASE_ID) throw new RequestRejected("LeaseNotFound", `lease id ${s}`);
  return leaseId(n);
}

function enumOf<T>(table: readonly T[], v: unknown, field: string): T {
  const i = typeof v === "number" ? v : 0;
  const out = table[i];
  if (out === undefined) throw new RequestRejected("NotCapable", `unknown ${field} ${String(v)}`);
  return out;
}

function optionalEnd(v: unknown): Uint8Array | undefined {
  const b = bytes(v);
  return b.length === 0 ? undefined : b;
}

export function rangeFromWire(w: W): RangeRequest {
  const key = bytes(w.key);
  if (key.length === 0) throw new RequestRejected("EmptyKey", "range without a key");
  return {
    key,
    rangeEnd: optionalEnd(w.range_end),
    limit: int(w.limit, "limit"),
    // etcd reads at the current revision for any revision <= 0.
    revision: revision(Math.max(0, int(w.revision, "revision"))),
    ...sortFromWire(w),
    keysOnly: w.keys_only === true,
    countOnly: w.count_only === true,
    minModRevision: revision(int(w.min_mod_revision, "min_mod_revision")),
    maxModRevision: revision(int(w.max_mod_revision, "max_mod_revision")),
    minCreateRevision: revision(int(w.min_create_revision, "min_create_revision")),
    maxCreateRevision: revision(int(w.max_create_revision, "max_create_revision")),
  };
}

/** etcd sorts only by an order it knows: an unknown one means no sort (and the target is never looked at). */
function sortFromWire(w: W): { sortOrder: SortOrder; sortTarget: SortTarget } {
  const order = typeof w.sort_order === "number" ? w.sort_order : 0;
  if (SORT_ORDERS[order] === undefined) return { sortOrder: "none", sortTarget: "key" };
  return {
    sortOrder: enumOf(SORT_ORDERS, w.sort_order, "sort order"),
    sortTarget: enumOf(SORT_TARGETS, w.sort_target, "sort target"),
  };
}

export function putFromWire(w: W): PutRequest {
  const key = bytes(w.key);
  if (key.length === 0) throw new RequestRejected("EmptyKey", "put without a key");
  // etcd checks ignore_lease against a given lease before it looks at the lease.
  if (w.ignore_lease === true && String(w.lease ?? "0") !== "0")
    throw new RequestRejected("LeaseProvided", "ignore_lease with a lease");
  return {
    key,
    value: bytes(w.value),
    lease: lease(w.lease),
    prevKv: w.prev_kv === true,
    ignoreValue: w.ignore_value === true,
    ignoreLease: w.ignore_lease === true,
  };
}

export function deleteFromWire(w: W): DeleteRangeRequest {
  const key = bytes(w.key);
  if (key.length === 0) throw new RequestRejected("EmptyKey", "delete without a key");
  return { key, rangeEnd: optionalEnd(w.range_end), prevKv: w.prev_kv === true };
}

/**
 * etcd's compareKV for enum values it does not know: an unknown target
 * compares as equal (its result switch sees 0), an unknown result holds
 * (the switch falls through to `true`); a value target still fails where no
 * key exists. Each case is the same test on `version`, which every key has.
 */
function unknownCompare(w: W, key: Uint8Array): Compare | undefined {
  const target = typeof w.target === "number" ? w.target : 0;
  const result = typeof w.result === "number" ? w.result : 0;
  const knownTarget = target >= 0 && target <= 4;
  const knownResult = COMPARE_RESULTS[result] !== undefined;
  if (knownTarget && knownResult) return undefined;
  const rangeEnd = optionalEnd(w.range_end);
  const always = { key, rangeEnd, target: "version", result: "greater", version: -1 } as const;
  if (!knownResult)
    return target === 3 ? { key, rangeEnd, target: "version", result: "greater", version: 0 } : always;
  // A known result on a target etcd does not know: equal holds, the others never do.
  return COMPARE_RESULTS[result] === "equal"
    ? always
    : { key, rangeEnd, target: "version", result: "less", version: 0 };
}

function compareFromWire(w: W): Compare {
  const key = bytes(w.key);
  const unknown = unknownCompare(w, key);
  if (unknown !== undefined) return unknown;
  const base = {
    key,
    rangeEnd: optionalEnd(w.range_end),
    result: enumOf(COMPARE_RESULTS, w.result, "compare result"),
  };
  // The operand is the oneof member set (the last one on the wire, as Go decodes it); another
  // member, or none, leaves the target's operand at its zero value.
  const operand = (field: string): unknown => (w.target_union === field ? w[field] : undefined);
  // etcd Compare.CompareTarget: VERSION 0, CREATE 1, MOD 2, VALUE 3, LEASE 4.
  switch (typeof w.target === "number" ? w.target : 0) {
    case 0:
      return { ...base, target: "version", version: int(operand("version"), "version") };
    case 1:
      return {
        ...base,
        target: "create",
        createRevision: revision(int(operand("create_revision"), "create_revision")),
      };
    case 2:
      return {
        ...base,
        target: "mod",
        modRevision: revision(int(operand("mod_revision"), "mod_revision")),
      };
    case 3:
      return { ...base, target: "value", value: bytes(operand("value")) };
    case 4:
      return {
        ...base,
        target: "lease",
        lease: leaseId(BigInt(typeof operand("lease") === "string" ? (operand("lease") as string) : "0")),
      };
    default:
      throw new RequestRejected("NotCapable", `unknown compare target ${String(w.target)}`);
  }
}

function opFromWire(w: W): RequestOp {
  switch (w.request) {
    case "request_range":
      return { type: "range", request: rangeFromWireLoose(w.request_range as W) };
    case "request_put":
      return { type: "put", request: putFromWireLoose(w.request_put as W) };
    case "request_delete_range":
      return { type: "deleteRange", request: deleteFromWireLoose(w.request_delete_range as W) };
    case "request_txn":
      return { type: "txn", request: txnFromWireChecked(w.request_txn as W) };
    default:
      // etcd finds no key for an op that names none.
      throw new RequestRejected("KeyNotFound", "txn op without a request");
  }
}

// Inside a txn an empty key is the state machine's to refuse (etcd checks it in the txn, with the same error).
function rangeFromWireLoose(w: W): RangeRequest {
  // Inside a txn etcd checks the revision against the store's first one: a negative one is compacted.
  if (int(w.revision, "revision") < 0) throw new RequestRejected("Compacted", "negative revision in a txn");
  return bytes(w.key).length === 0
    ? { ...rangeFromWire({ ...w, key: Buffer.of(0) }), key: EMPTY }
    : rangeFromWire(w);
}
function putFromWireLoose(w: W): PutRequest {
  return bytes(w.key).length === 0
    ? { ...putFromWire({ ...w, key: Buffer.of(0) }), key: EMPTY }
    : putFromWire(w);
}
function deleteFromWireLoose(w: W): DeleteRangeRequest {
  return bytes(w.key).length === 0
    ? { ...deleteFromWire({ ...w, key: Buffer.of(0) }), key: EMPTY }
    : deleteFromWire(w);
}

/** etcd's --max-txn-ops default: the ops budget of a txn, nested txns included. */
export const MAX_TXN_OPS = 128;

export function txnFromWire(w: W): TxnRequest {
  checkTxnOps(w, MAX_TXN_OPS);
  return txnFromWireChecked(w);
}

/**
 * etcd's checkTxnRequest: the longest of a txn's compare, success and failure
 * lists must fit the budget, and each nested txn gets what is left of it
 * (so nesting alone runs it out). Checked before anything else is converted.
 */
function checkTxnOps(w: W, budget: number): void {
  const list = (v: unknown): W[] => (Array.isArray(v) ? (v as W[]) : []);
  const ops = Math.max(list(w.compare).length, list(w.success).length, list(w.failure).length);
  if (ops > budget) throw new RequestRejected("TooManyOps", "too many operations in txn request");
  for (const op of [...list(w.success), ...list(w.failure)])
    if (op.request === "request_txn") checkTxnOps(op.request_txn as W, budget - ops);
}

function txnFromWireChecked(w: W): TxnRequest {
  const list = (v: unknown): W[] => (Array.isArray(v) ? (v as W[]) : []);
  return {
    compare: list(w.compare).map(compareFromWire),
    success: list(w.success).map(opFromWire),
    failure: list(w.failure).map(opFromWire),
  };
}

// ---------------------------------------------------------------- answers

/** etcd ResponseHeader: cluster_id, member_id, revision, raft_term. */
export interface HeaderSource {
  readonly clusterId: bigint;
  readonly memberId: number;
  raftTerm(): number;
}

/**
 * A response header. The int64 fields are given as numbers (safe integers)
 * and the cluster id as its 32-bit halves, not as decimal strings: protobufjs
 * parses a string into a Long on every encode, and every response has one.
 */
export function header(src: HeaderSource, rev: number): W {
  return {
    cluster_id: uint64Bits(src.clusterId),
    member_id: src.memberId,
    revision: rev,
    raft_term: src.raftTerm(),
  };
}

/** A uint64 as protobufjs's Long-like halves (what Long.fromValue takes without parsing). */
export interface Uint64Bits {
  readonly low: number;
  readonly high: number;
  readonly unsigned: true;
}

/** A 64-bit id as protobufjs's Long-like halves (no decimal string for it to parse). */
export function int64Bits(value: bigint): Uint64Bits {
  return {
    low: Number(BigInt.asIntN(32, value)),
    high: Number(BigInt.asIntN(32, value >> 32n)),
    unsigned: true,
  };
}

/** The value of a Uint64Bits. */
export function uint64FromBits(b: Uint64Bits): bigint {
  return (BigInt(b.high >>> 0) << 32n) | BigInt(b.low >>> 0);
}

let lastBits: { readonly value: bigint; readonly bits: Uint64Bits } | undefined;

/** `value` (0 <= value < 2^64) as Uint64Bits; the last one is remembered (a member has one cluster id). */
export function uint64Bits(value: bigint): Uint64Bits {
  if (lastBits?.value === value) return lastBits.bits;
  const bits = int64Bits(value);
  lastBits = { value, bits };
  return bits;
}

export function kvToWire(kv: KeyValue): W {
  const out: W = {
    key: Buffer.from(kv.key),
    create_revision: kv.createRevision,
    mod_revision: kv.modRevision,
    version: kv.version,
  };
  if (kv.value.length > 0) out.value = Buffer.from(kv.value);
  if (kv.lease !== 0n) out.lease = int64Bits(kv.lease);
  return out;
}

export function eventToWire(ev: KvEvent, withPrev: boolean): W {
  const out: W = { type: ev.type === "put" ? 0 : 1, kv: kvToWire(ev.kv) };
  if (withPrev && ev.prevKv !== undefined) out.prev_kv = kvToWire(ev.prevKv);
  return out;
}

export function rangeToWire(r: RangeResult & { ok: true }, h: W): W {
  return { header: h, kvs: r.kvs.map(kvToWire), more: r.more, count: r.count };
}

/**
 * One op's answer inside a txn. etcd fills only the revision in these headers:
 * the store's revision as the op saw it (before the txn's first change, the
 * txn's revision after it); a nested txn's own header stays empty.
 */
function responseOpToWire(op: ResponseOp): W {
  const h: W = op.type === "txn" ? {} : { revision: op.response.revision };
  switch (op.type) {
    case "range":
      return { response_range: rangeToWire({ ok: true, ...op.response }, h) };
    case "put":
      return { response_put: putToWire(op.response.prevKv, h) };
    case "deleteRange":
      return {
        response_delete_range: {
          header: h,
          deleted: op.response.deleted,
          prev_kvs: op.response.prevKvs.map(kvToWire),
        },
      };
    case "txn":
      return {
        response_txn: {
          header: h,
          succeeded: op.response.succeeded,
          responses: op.response.responses.map(responseOpToWire),
        },
      };
  }
}

export function putToWire(prevKv: KeyValue | undefined, h: W): W {
  return prevKv === undefined ? { header: h } : { header: h, prev_kv: kvToWire(prevKv) };
}

/** The etcd error for a failed command result (machine.ts ApplyError). */
export function applyErrorName(result: CommandResult & { kind: "failed" }): EtcdErrorName {
  switch (result.error) {
    case "emptyKey":
      return "EmptyKey";
    case "valueProvided":
      return "ValueProvided";
    case "leaseProvided":
      return "LeaseProvided";
    case "tooManyOps":
      return "TooManyOps";
    case "duplicateKey":
      return "DuplicateKey";
    case "compacted":
      return "Compacted";
    case "futureRevision":
      return "FutureRev";
    case "keyNotFound":
      return "KeyNotFound";
    case "leaseNotFound":
      return "LeaseNotFound";
    case "leaseExists":
      return "LeaseExist";
    case "ttlTooLarge":
      return "LeaseTTLTooLarge";
    case "memberNotFound":
      return "MemberNotFound";
    case "noSpace":
      return "NoSpace";
    case "corrupt":
      return "Corrupt";
    case "notHolder":
      // Only leasehold.v1 Release fails so (its own answer); nothing on the etcd API proposes one.
      return "PermissionDenied";
    default:
      return AUTH_ERROR_NAMES[result.error];
  }
}

/** The wire answer for a write's result, or the etcd error to answer instead. */
export function writeResultToWire(result: CommandResult, h: (rev: number) => W): W | EtcdErrorName {
  switch (result.kind) {
    case "failed":
      return applyErrorName(result);
    case "put":
      return putToWire(result.prevKv, h(result.header.revision));
    case "deleteRange":
      return {
        header: h(result.header.revision),
        deleted: result.deleted,
        prev_kvs: result.prevKvs.map(kvToWire),
      };
    case "txn": {
      const hh = h(result.header.revision);
      return {
        header: hh,
        succeeded: result.succeeded,
        responses: result.responses.map(responseOpToWire),
      };
    }
    case "compact":
      return { header: h(result.header.revision) };
    case "leaseGrant":
      return { header: h(result.header.revision), ID: int64Bits(result.id), TTL: result.ttlSeconds };
    case "leaseRevoke":
      return { header: h(result.header.revision) };
    default:
      return "NotCapable";
  }
}
