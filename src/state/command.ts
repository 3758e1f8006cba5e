/**
 * The commands of the replicated state machine: what one Raft entry carries,
 * and its codec. The API layer builds a `Command` from a client request (or
 * the leader from its lease duties), `encodeCommand` turns it into entry
 * data, and every replica's `StateMachine.apply` decodes it again.
 *
 * Two wire formats, told apart by the first byte of the entry data (JSON
 * always starts with `{`, 0x7B; version 2 starts with 0x02, which no JSON
 * text can start with). `decodeCommand` reads both, for every command, so
 * logs and snapshots written before version 2 decode exactly as before.
 *
 * Version 2, binary: written for `put`, `deleteRange`, `txn`, `compact`,
 * `leaseGrant`, `leaseRevoke`, `leaseCheckpoint` and `leaseExpire` (the hot
 * path: one encode by the proposer, one decode per member, and the bytes go
 * to the WAL and to every follower). Primitives:
 *   u      unsigned LEB128 varint of a safe integer (canonical: no trailing
 *          zero group; at most 8 bytes; at most 2^53 - 1)
 *   s      zigzag LEB128 varint of a safe integer (n >= 0: 2n, else -2n - 1),
 *          same rules
 *   i64    8 bytes, little-endian two's complement (lease ids)
 *   bytes  u length, then the bytes;  str: u length, then well-formed UTF-8
 *   ob     an optional boolean in 2 flag bits: 0 absent, 1 false, 2 true
 * Layout (fields in this order; [x]: present when its flag bit is set):
 *   entry       0x02, type tag (put 1, deleteRange 2, txn 3, compact 4,
 *               leaseGrant 5, leaseRevoke 6, leaseCheckpoint 7, leaseExpire 8),
 *               flags (bit 0 session, bit 1 auth, bit 2 grantIndex), the
 *               command's fields, [session], [auth]
 *   put         flags (bit 0 lease, bits 1-2 prevKv ob, 3-4 ignoreValue ob,
 *               5-6 ignoreLease ob), key bytes, value bytes, [lease i64]
 *   deleteRange flags (bit 0 rangeEnd, bits 1-2 prevKv ob), key, [rangeEnd]
 *   range       flags, 2 bytes little-endian (bit 0 rangeEnd, 1 limit,
 *               2 revision, 3 minModRevision, 4 maxModRevision,
 *               5 minCreateRevision, 6 maxCreateRevision, 7 sortOrder,
 *               8 sortTarget, 9-10 keysOnly ob, 11-12 countOnly ob), key,
 *               [rangeEnd], [limit s], [each revision u], [sortOrder byte:
 *               none 0, ascend 1, descend 2], [sortTarget byte: key 0,
 *               version 1, create 2, mod 3, value 4]
 *   compare     one byte: target in bits 0-2 (value 0, version 1, create 2,
 *               mod 3, lease 4), result in bits 3-5 (equal 0, notEqual 1,
 *               greater 2, less 3), bit 6 rangeEnd; key, [rangeEnd], the
 *               operand (value: bytes; version, createRevision, modRevision:
 *               s; lease: i64)
 *   op          type byte (range 0, put 1, deleteRange 2, txn 3), request
 *   txn         flags (bit 0 compare, 1 success, 2 failure), then each list
 *               present: u count, items
 *   compact     revision u;  leaseGrant: id i64, ttlSeconds s;
 *   leaseRevoke id i64, [grantIndex u]
 *   leaseCheckpoint  u count, each: id i64, remainingTtlSeconds u, grantIndex u
 *   leaseExpire      u count, each: id i64, grantIndex u
 *   session     clientId str, seq u;  auth: user str, revision u
 * Flag bits not listed are 0. Bytes fields decode as views of the entry data
 * (no copy): entry data is never written to after it is made (raft's codec
 * hands out fresh buffers), and whatever outlives the apply copies what it
 * keeps (MvccStore copies keys and values). A command holding a value version
 * 2 cannot carry exactly (a string with a lone surrogate, a number that is not
 * a safe integer, a negative number where only naturals go, a bigint outside
 * int64, an unknown sort or compare-result name) is written as version 1
 * instead, so it decodes (a lone surrogate round-trips through JSON) or is
 * refused at apply (every other case) exactly as it always was.
 *
 * Version 1, JSON: still written for the member, alarm and auth commands
 * (rare; not worth a second layout) and for leasehold.v1's (acquire,
 * release, fencedPut, counterAdd, counterCas, semaphoreAcquire,
 * semaphoreRelease). UTF-8 JSON, one object per entry,
 * `{"v":1,"type":…}` plus the command's fields. Bytes are standard padded
 * base64 (bytes.ts), int64 values (lease ids, counter deltas and values) are
 * decimal strings, revisions, TTLs and permits are JSON numbers (safe
 * integers).
 *
 * In both, fields absent from the TypeScript value are absent from the
 * encoding and present ones (explicit false, 0 and empty bytes included) are
 * written as they are, so `decodeCommand(encodeCommand(c))` equals `c`.
 *
 * Contract:
 * - Decoding validates everything apply relies on (CONVENTIONS 9), the same
 *   in both formats: well-formed input (JSON and UTF-8; varints, lengths and
 *   flags; no truncation, no trailing bytes), known type and version, no
 *   unknown fields, field types, known enums, integer ranges (lease ids
 *   0 ≤ id < 2^63 where a lease is named, any int64 in a put or a compare),
 *   list sizes (batch limits of lessor.ts), txn nesting depth, session shape.
 *   Anything else fails with a `CommandDecodeError` (stable code
 *   "COMMAND_DECODE") naming the field (`$.request.success[2].request.key`);
 *   it never fails an assertion, so garbage in the log cannot stop a member.
 * - Semantic checks (empty keys, too many txn ops, duplicate keys, unknown
 *   leases) are NOT codec errors: MvccStore / LeaseTable answer them as
 *   outcomes, as etcd does.
 * - `auth` (the caller and the auth revision it was identified at, etcd's
 *   request header) rides on client commands, never on `authenticate` nor on
 *   the leader's own; apply checks the command's rights for it (auth.ts).
 * - `session` rides on client commands only. Leader-made commands
 *   (`leaseCheckpoint`, `leaseExpire`, and a `leaseRevoke` with `grantIndex`)
 *   are idempotent by themselves: they name the lease incarnation, and a second
 *   application finds nothing to do.
 */

import { assert, assertNever } from "../raft/index.ts";
import type { AlarmType } from "./alarm.ts";
import { ALARM_TYPES, MAX_ALARM_MEMBER_ID } from "./alarm.ts";
import type { Permission, PermissionType } from "./auth.ts";
import { AUTH_TOKEN_PREFIX_LENGTH } from "./auth.ts";
import { base64ToBytes, bytesToBase64 } from "./bytes.ts";
import { counterNameProblem } from "./counters.ts";
import { MAX_LEASE_ID, MAX_LEASE_TTL_SECONDS } from "./lease.ts";
import { MAX_CHECKPOINTS_PER_BATCH, MAX_LEASES_PER_REVOKE_BATCH } from "./lessor.ts";
import type {
  Compare,
  CompareResult,
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  RequestOp,
  SortOrder,
  SortTarget,
  TxnRequest,
} from "./mvcc.ts";
import { holderProblem, resourceNameProblem } from "./resources.ts";
import { permitsProblem, semaphoreNameProblem } from "./semaphores.ts";
import type { LeaseId, Revision } from "./types.ts";
import { leaseId, revision } from "./types.ts";

/** The newest wire format version written by encodeCommand: binary, for the hot commands (file header). */
export const COMMAND_FORMAT_VERSION = 2;
/** The JSON format version, still written for the member, alarm and auth commands, and read for all. */
export const COMMAND_JSON_FORMAT_VERSION = 1;
/** Deepest txn nesting decoded; etcd's ops budget (txnOpsMax 128) allows no deeper tree that does anything. */
export const COMMAND_TXN_DEPTH_MAX = 128;
/** Longest client id, in UTF-16 code units. */
export const SESSION_CLIENT_ID_LENGTH_MAX = 128;

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/** Who sent a client command, for idempotent retries (ARCHITECTURE "Leases", rule 7; session.ts). */
export interface ClientSession {
  /** Non-empty, at most SESSION_CLIENT_ID_LENGTH_MAX chars; one client, one id, never reused. */
  readonly clientId: string;
  /** 1, 2, 3, …: a retry repeats the seq of the request it retries. */
  readonly seq: number;
}

/** One lease checkpoint, for the incarnation granted at `grantIndex` (lease.ts). */
export interface CheckpointItem {
  readonly id: LeaseId;
  readonly remainingTtlSeconds: number;
  readonly grantIndex: number;
}

/** One expired lease incarnation to revoke. */
export interface ExpireItem {
  readonly id: LeaseId;
  readonly grantIndex: number;
}

/** What a Raft entry carries. See the file header. */
export type Command =
  | {
      readonly type: "put";
      readonly request: PutRequest;
      readonly session?: ClientSession | undefined;
      readonly auth?: CommandAuth | undefined;
    }
  | {
      readonly type: "deleteRange";
      readonly request: DeleteRangeRequest;
      readonly session?: ClientSession | undefined;
      readonly auth?: CommandAuth | undefined;
    }
  | {
      readonly type: "txn";
      readonly request: TxnRequest;
      readonly session?: ClientSession | undefined;
      readonly auth?: CommandAuth | undefined;
    }
  /** etcd Compaction at `revision`. */
  | {
      readonly type: "compact";
      readonly revision: Revision;
      readonly session?: ClientSession | undefined;
      readonly auth?: CommandAuth | undefined;
    }
  /** etcd LeaseGrant; id 0 lets the table choose one from the entry's index. */
  | {
      readonly type: "leaseGrant";
      readonly id: LeaseId;
      readonly ttlSeconds: number;
      readonly session?: ClientSession | undefined;
      readonly auth?: CommandAuth | undefined;
    }
  /** etcd LeaseRevoke (no grantIndex), or the leader revoking one expired incarnation (grantIndex set). */
  | {
      readonly type: "leaseRevoke";
      readonly id: LeaseId;
      readonly grantIndex?: number | undefined;
      readonly session?: ClientSession | undefined;
      readonly auth?: CommandAuth | undefined;
    }
  /**
   * leasehold.v1 Acquire (resources.ts): grant lease `id` of `ttlSeconds` and claim `resource`
   * for `holder` under it, in one revision; refused (nothing changes) when another claim holds
   * and `wait` is false, queued behind the holder when it is true.
   */
  | ClientCommandBase<{
      readonly type: "acquire";
      readonly resource: string;
      readonly holder: string;
      readonly id: LeaseId;
      readonly ttlSeconds: number;
      readonly wait: boolean;
      /** Lock-delay after an expiry of this holding (resources.ts); absent or 0: none. */
      readonly lockDelaySeconds?: number | undefined;
    }>
  /** leasehold.v1 Release: revoke the lease of `holder`'s claim on `resource` (refused for anyone else). */
  | ClientCommandBase<{
      readonly type: "release";
      readonly resource: string;
      readonly id: LeaseId;
      readonly holder: string;
    }>
  /**
   * leasehold.v1 RequestRelease: ask `resource`'s holder to let go within `deadlineSeconds` (a
   * deadline lease `id` of that TTL; resources.ts "Release requests"). Nobody holding: refused.
   */
  | ClientCommandBase<{
      readonly type: "requestRelease";
      readonly resource: string;
      readonly requester: string;
      readonly reason: string;
      readonly id: LeaseId;
      readonly deadlineSeconds: number;
    }>
  /** leasehold.v1 Revoke: end the claim of lease `id` on `resource`, allowed once its release request's deadline passed. */
  | ClientCommandBase<{
      readonly type: "forceRevoke";
      readonly resource: string;
      readonly id: LeaseId;
    }>
  /** leasehold.v1 FencedPut: `request`, only while `token` is `resource`'s current fencing token. */
  | ClientCommandBase<{
      readonly type: "fencedPut";
      readonly resource: string;
      readonly token: Revision;
      readonly request: PutRequest;
    }>
  /**
   * leasehold.v1 Counters.Add (counters.ts): counter += delta, in one revision; refused
   * (nothing written) when the sum leaves int64 or the stored value is not a number.
   */
  | ClientCommandBase<{
      readonly type: "counterAdd";
      readonly counter: string;
      readonly delta: bigint;
    }>
  /** leasehold.v1 Counters.CompareAndSet: counter := value if it is `expected` now (an absent counter is 0). */
  | ClientCommandBase<{
      readonly type: "counterCas";
      readonly counter: string;
      readonly expected: bigint;
      readonly value: bigint;
    }>
  /**
   * leasehold.v1 Semaphores.Acquire (semaphores.ts): grant lease `id` of `ttlSeconds` and
   * claim `semaphore` of `permits` for `holder` under it, in one revision; refused (nothing
   * changes) when the semaphore has other permits, or when it is full and `wait` is false.
   */
  | ClientCommandBase<{
      readonly type: "semaphoreAcquire";
      readonly semaphore: string;
      readonly holder: string;
      readonly id: LeaseId;
      readonly ttlSeconds: number;
      readonly permits: number;
      readonly wait: boolean;
    }>
  /** leasehold.v1 Semaphores.Release: revoke the lease of `holder`'s claim on `semaphore`. */
  | ClientCommandBase<{
      readonly type: "semaphoreRelease";
      readonly semaphore: string;
      readonly id: LeaseId;
      readonly holder: string;
    }>
  /** The leader's checkpoints of remaining TTLs, at most MAX_CHECKPOINTS_PER_BATCH. */
  | { readonly type: "leaseCheckpoint"; readonly checkpoints: readonly CheckpointItem[] }
  /** Expired leases revoked in one proposal, at most MAX_LEASES_PER_REVOKE_BATCH (machine.ts: one revision). */
  | { readonly type: "leaseExpire"; readonly leases: readonly ExpireItem[] }
  /** A member's name and client URLs, proposed by the member itself after it starts (etcd's publish). */
  | {
      readonly type: "memberPublish";
      readonly member: number;
      readonly name: string;
      readonly clientUrls: readonly string[];
    }
  /** etcd MemberUpdate: a member's new peer URLs. */
  | { readonly type: "memberUpdate"; readonly member: number; readonly peerUrls: readonly string[] }
  /** etcd Alarm ACTIVATE / DEACTIVATE (alarm.ts); `member` is any uint64, JSON: a decimal string. */
  | {
      readonly type: "alarm";
      readonly action: "activate" | "deactivate";
      readonly member: bigint;
      readonly alarm: AlarmType;
    }
  | AuthCommand;

/**
 * Who sent a client command, when auth is on (etcd's RequestHeader username
 * and auth_revision): the user the API layer identified (token or client
 * certificate) and the auth revision it was identified at. Apply checks the
 * command's permissions for that user (auth.ts); an older revision fails.
 */
export interface CommandAuth {
  /** Non-empty, at most AUTH_NAME_LENGTH_MAX chars. */
  readonly user: string;
  /** >= 1. */
  readonly revision: number;
}

/** The etcd Auth service's replicated requests (auth.ts applies them); each may carry a session. */
export type AuthCommand =
  | ClientCommandBase<{ readonly type: "authEnable" }>
  | ClientCommandBase<{ readonly type: "authDisable" }>
  /** etcd InternalAuthenticateRequest: the token is `tokenPrefix.index`; `authRevision`: when the password was checked. */
  | {
      readonly type: "authenticate";
      readonly user: string;
      readonly tokenPrefix: string;
      readonly authRevision: number;
      readonly session?: ClientSession | undefined;
    }
  /** `passwordHash` undefined: etcd's no_password option. */
  | ClientCommandBase<{
      readonly type: "authUserAdd";
      readonly user: string;
      readonly passwordHash?: string | undefined;
    }>
  | ClientCommandBase<{ readonly type: "authUserDelete"; readonly user: string }>
  | ClientCommandBase<{
      readonly type: "authUserChangePassword";
      readonly user: string;
      readonly passwordHash: string;
    }>
  | ClientCommandBase<{ readonly type: "authUserGrantRole"; readonly user: string; readonly role: string }>
  | ClientCommandBase<{ readonly type: "authUserRevokeRole"; readonly user: string; readonly role: string }>
  | ClientCommandBase<{ readonly type: "authRoleAdd"; readonly role: string }>
  | ClientCommandBase<{ readonly type: "authRoleDelete"; readonly role: string }>
  /** `permission` undefined: the request gave none (etcd answers "permission not given"). */
  | ClientCommandBase<{
      readonly type: "authRoleGrantPermission";
      readonly role: string;
      readonly permission?: Permission | undefined;
    }>
  | ClientCommandBase<{
      readonly type: "authRoleRevokePermission";
      readonly role: string;
      readonly key: Uint8Array;
      readonly rangeEnd: Uint8Array;
    }>;

/** An auth management command: a session and the caller (who must be root while auth is on). */
/** A command a client sends: it may carry a session (exactly-once) and the caller (auth). */
type ClientCommandBase<T> = T & {
  readonly session?: ClientSession | undefined;
  readonly auth?: CommandAuth | undefined;
};

/** Longest reason of a release request, in UTF-16 code units. */
export const RELEASE_REASON_LENGTH_MAX = 1024;

/** Longest user or role name, in UTF-16 code units. */
export const AUTH_NAME_LENGTH_MAX = 65_536;
/** Longest password hash (text made by src/api/auth.ts). */
export const AUTH_PASSWORD_HASH_LENGTH_MAX = 1024;

/** The commands a client sends, which may carry a session. */
export type ClientCommand = Exclude<
  Command,
  { readonly type: "leaseCheckpoint" | "leaseExpire" | "memberPublish" | "memberUpdate" | "alarm" }
>;

/** Most URLs one member may have (of each kind). */
export const MEMBER_URLS_MAX = 64;
/** Longest member name or URL, in UTF-16 code units. */
export const MEMBER_TEXT_LENGTH_MAX = 1024;

/** The `type` of a command. */
export type CommandType = Command["type"];

/** Malformed entry data. `path` names the offending field (`$.request.success[2].request.key`). */
export class CommandDecodeError extends Error {
  override readonly name = "CommandDecodeError";
  readonly code = "COMMAND_DECODE";
  constructor(
    readonly path: string,
    readonly detail: string,
  ) {
    super(`command: ${path}: ${detail}`);
  }
}

/** The outcome of `tryDecodeCommand`. */
export type DecodeOutcome =
  | { readonly ok: true; readonly command: Command }
  | { readonly ok: false; readonly error: CommandDecodeError };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

// ---------------------------------------------------------------------------
// Encoding.

/** Entry data for `cmd`: format version 2 for the hot commands, version 1 (JSON) for the rest (file header). */
export function encodeCommand(cmd: Command): Uint8Array {
  switch (cmd.type) {
    case "put":
    case "deleteRange":
    case "txn":
    case "compact":
    case "leaseGrant":
    case "leaseRevoke":
    case "leaseCheckpoint":
    case "leaseExpire": {
      const data = encodeBinary(cmd);
      if (data !== undefined) return data;
      break;
    }
    default:
      break;
  }
  return encodeJson(cmd);
}

/**
 * The type of the command in version-2 entry data, read from its first two
 * bytes without decoding the rest (a cheap filter); undefined for JSON
 * entries and anything else. The data may still fail to decode.
 */
export function binaryCommandType(data: Uint8Array): CommandType | undefined {
  return data.length >= 2 && data[0] === BINARY_VERSION_BYTE ? BINARY_TYPES[data[1]!] : undefined;
}

/**
 * What the request-size limit counts for entry data (etcd bounds the
 * request as protobuf, where bytes are bytes): a version-2 entry's own
 * length (its framing is a few bytes, as protobuf's); for JSON, bytes
 * are base64 (4 characters per 3 bytes), which dominate any large request.
 */
export function commandRequestBytes(data: Uint8Array): number {
  return data.length > 0 && data[0] === BINARY_VERSION_BYTE ? data.length : Math.ceil((data.length * 3) / 4);
}

// ---------------------------------------------------------------------------
// Format version 2: binary. Sized exactly first (so one allocation of the
// final length: a small entry stays a V8 on-heap array), then written. The
// sizing pass also decides whether version 2 can carry the command: it
// answers NaN for any value it cannot (file header), and the command is then
// written as JSON.

const BINARY_VERSION_BYTE = 0x02;

/** The commands written in version 2. */
type BinaryCommand = Extract<
  Command,
  {
    readonly type:
      | "put"
      | "deleteRange"
      | "txn"
      | "compact"
      | "leaseGrant"
      | "leaseRevoke"
      | "leaseCheckpoint"
      | "leaseExpire";
  }
>;

const TAG_PUT = 1;
const TAG_DELETE_RANGE = 2;
const TAG_TXN = 3;
const TAG_COMPACT = 4;
const TAG_LEASE_GRANT = 5;
const TAG_LEASE_REVOKE = 6;
const TAG_LEASE_CHECKPOINT = 7;
const TAG_LEASE_EXPIRE = 8;

/** Command type by version-2 tag. */
const BINARY_TYPES: readonly (CommandType | undefined)[] = [
  undefined,
  "put",
  "deleteRange",
  "txn",
  "compact",
  "leaseGrant",
  "leaseRevoke",
  "leaseCheckpoint",
  "leaseExpire",
];

/** Entry flags. */
const F_SESSION = 1;
const F_AUTH = 2;
const F_GRANT_INDEX = 4;

/** Request op type codes. */
const OP_RANGE = 0;
const OP_PUT = 1;
const OP_DELETE_RANGE = 2;
const OP_TXN = 3;

/** Enum codes in both formats' order (version 2 writes the index). */
const SORT_ORDERS: readonly SortOrder[] = ["none", "ascend", "descend"];
const SORT_TARGETS: readonly SortTarget[] = ["key", "version", "create", "mod", "value"];
const COMPARE_RESULTS: readonly CompareResult[] = ["equal", "notEqual", "greater", "less"];

/** Compare target codes (the result codes are COMPARE_RESULTS indexes). */
const TARGET_VALUE = 0;
const TARGET_VERSION = 1;
const TARGET_CREATE = 2;
const TARGET_MOD = 3;
const TARGET_LEASE = 4;
const COMPARE_RANGE_END = 0x40;
/** Bits of the compare byte in use (target, result, rangeEnd). */
const COMPARE_BITS_USED = 0x7f;

/** Range request flags. */
const R_RANGE_END = 1 << 0;
const R_LIMIT = 1 << 1;
const R_REVISION = 1 << 2;
const R_MIN_MOD = 1 << 3;
const R_MAX_MOD = 1 << 4;
const R_MIN_CREATE = 1 << 5;
const R_MAX_CREATE = 1 << 6;
const R_SORT_ORDER = 1 << 7;
const R_SORT_TARGET = 1 << 8;
const R_KEYS_ONLY_SHIFT = 9;
const R_COUNT_ONLY_SHIFT = 11;
const R_FLAGS_USED = (1 << 13) - 1;

/** Put request flags (bit 0: lease; then three optional booleans). */
const P_LEASE = 1;
const P_PREV_KV_SHIFT = 1;
const P_IGNORE_VALUE_SHIFT = 3;
const P_IGNORE_LEASE_SHIFT = 5;
const P_FLAGS_USED = 0x7f;
/** Delete request flags. */
const D_RANGE_END = 1;
const D_PREV_KV_SHIFT = 1;
const D_FLAGS_USED = 0x07;
/** Txn request flags. */
const T_COMPARE = 1;
const T_SUCCESS = 2;
const T_FAILURE = 4;
const T_FLAGS_USED = 0x07;

/** 2^53 - 1 needs 53 bits, a zigzag one 54: eight 7-bit groups either way. */
const VARINT_BYTES_MAX = 8;
const INT64_BYTES = 8;

/** Scratch for int64 <-> 8 little-endian bytes (no allocation per value). */
const int64Scratch = new DataView(new ArrayBuffer(INT64_BYTES));
const int64ScratchBytes = new Uint8Array(int64Scratch.buffer);

/** Optional boolean as 2 bits: 0 absent, 1 false, 2 true. */
function optBoolCode(b: boolean | undefined): number {
  return b === undefined ? 0 : b ? 2 : 1;
}

// -- sizes (NaN: not representable in version 2) ------------------------------

/** Bytes of the varint of a length, count or other non-negative integer below 2^56. */
function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x20_0000) return 3;
  if (n < 0x1000_0000) return 4;
  if (n < 2 ** 35) return 5;
  if (n < 2 ** 42) return 6;
  if (n < 2 ** 49) return 7;
  return 8;
}

function natSize(n: number): number {
  return Number.isSafeInteger(n) && n >= 0 ? varintSize(n) : Number.NaN;
}

/** Zigzag (2n or -2n - 1): exact below 2^53 and only compared with powers of two above it. */
function intSize(n: number): number {
  return Number.isSafeInteger(n) ? varintSize(n >= 0 ? 2 * n : -2 * n - 1) : Number.NaN;
}

function int64Size(v: bigint): number {
  return typeof v === "bigint" && v >= INT64_MIN && v <= INT64_MAX ? INT64_BYTES : Number.NaN;
}

function bytesSize(b: Uint8Array): number {
  return varintSize(b.length) + b.length;
}

/** UTF-8 bytes of `s`, or NaN if it has a lone surrogate (UTF-8 cannot carry it; JSON can). */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
    } else if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return Number.NaN;
      n += 2; // two UTF-16 units, four bytes
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return Number.NaN;
    } else {
      n += 2;
    }
  }
  return n;
}

function stringSize(s: string): number {
  const n = utf8Length(s);
  return varintSize(n) + n;
}

function putSize(r: PutRequest): number {
  return 1 + bytesSize(r.key) + bytesSize(r.value) + (r.lease === undefined ? 0 : int64Size(r.lease));
}

function deleteSize(r: DeleteRangeRequest): number {
  return 1 + bytesSize(r.key) + (r.rangeEnd === undefined ? 0 : bytesSize(r.rangeEnd));
}

function rangeSize(r: RangeRequest): number {
  let n = 2 + bytesSize(r.key);
  if (r.rangeEnd !== undefined) n += bytesSize(r.rangeEnd);
  if (r.limit !== undefined) n += intSize(r.limit);
  if (r.revision !== undefined) n += natSize(r.revision);
  if (r.minModRevision !== undefined) n += natSize(r.minModRevision);
  if (r.maxModRevision !== undefined) n += natSize(r.maxModRevision);
  if (r.minCreateRevision !== undefined) n += natSize(r.minCreateRevision);
  if (r.maxCreateRevision !== undefined) n += natSize(r.maxCreateRevision);
  if (r.sortOrder !== undefined) n += SORT_ORDERS.indexOf(r.sortOrder) < 0 ? Number.NaN : 1;
  if (r.sortTarget !== undefined) n += SORT_TARGETS.indexOf(r.sortTarget) < 0 ? Number.NaN : 1;
  return n;
}

function compareSize(c: Compare): number {
  let n = 1 + bytesSize(c.key);
  if (c.rangeEnd !== undefined) n += bytesSize(c.rangeEnd);
  if (COMPARE_RESULTS.indexOf(c.result) < 0) return Number.NaN;
  switch (c.target) {
    case "value":
      return n + bytesSize(c.value);
    case "version":
      return n + intSize(c.version);
    case "create":
      return n + intSize(c.createRevision);
    case "mod":
      return n + intSize(c.modRevision);
    case "lease":
      return n + int64Size(c.lease);
    default:
      return assertNever(c, "compare target");
  }
}

function opSize(op: RequestOp): number {
  switch (op.type) {
    case "range":
      return 1 + rangeSize(op.request);
    case "put":
      return 1 + putSize(op.request);
    case "deleteRange":
      return 1 + deleteSize(op.request);
    case "txn":
      return 1 + txnSize(op.request);
    default:
      return assertNever(op, "request op");
  }
}

function txnSize(r: TxnRequest): number {
  let n = 1;
  if (r.compare !== undefined) {
    n += varintSize(r.compare.length);
    for (const c of r.compare) n += compareSize(c);
  }
  if (r.success !== undefined) {
    n += varintSize(r.success.length);
    for (const op of r.success) n += opSize(op);
  }
  if (r.failure !== undefined) {
    n += varintSize(r.failure.length);
    for (const op of r.failure) n += opSize(op);
  }
  return n;
}

/** Exact bytes of `cmd` in version 2, or NaN if version 2 cannot carry it. */
function binarySize(cmd: BinaryCommand): number {
  let n = 3; // version, type, flags
  switch (cmd.type) {
    case "put":
      n += putSize(cmd.request);
      break;
    case "deleteRange":
      n += deleteSize(cmd.request);
      break;
    case "txn":
      n += txnSize(cmd.request);
      break;
    case "compact":
      n += natSize(cmd.revision);
      break;
    case "leaseGrant":
      n += int64Size(cmd.id) + intSize(cmd.ttlSeconds);
      break;
    case "leaseRevoke":
      n += int64Size(cmd.id) + (cmd.grantIndex === undefined ? 0 : natSize(cmd.grantIndex));
      break;
    case "leaseCheckpoint":
      n += varintSize(cmd.checkpoints.length);
      for (const c of cmd.checkpoints) {
        n += int64Size(c.id) + natSize(c.remainingTtlSeconds) + natSize(c.grantIndex);
      }
      return n;
    case "leaseExpire":
      n += varintSize(cmd.leases.length);
      for (const l of cmd.leases) n += int64Size(l.id) + natSize(l.grantIndex);
      return n;
    default:
      return assertNever(cmd, "command");
  }
  const s = cmd.session;
  if (s !== undefined) n += stringSize(s.clientId) + natSize(s.seq);
  const a = cmd.auth;
  if (a !== undefined) n += stringSize(a.user) + natSize(a.revision);
  return n;
}

// -- writing (values checked by the sizing pass) ----------------------------

/** Writes into a buffer of the exact size binarySize computed. */
class Writer {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  byte(b: number): void {
    this.buf[this.pos++] = b;
  }

  /** A non-negative safe integer. */
  uvarint(n: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (n >= 0x80) {
      buf[pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    buf[pos++] = n;
    this.pos = pos;
  }

  /** A safe integer, zigzag: the first group carries the sign and 6 bits (no value above 2^53 is formed). */
  svarint(n: number): void {
    const negative = n < 0;
    let m = negative ? -n - 1 : n;
    const first = ((m % 0x40) << 1) | (negative ? 1 : 0);
    m = Math.floor(m / 0x40);
    if (m === 0) {
      this.buf[this.pos++] = first;
    } else {
      this.buf[this.pos++] = first | 0x80;
      this.uvarint(m);
    }
  }

  bytes(b: Uint8Array): void {
    const n = b.length;
    this.uvarint(n);
    const buf = this.buf;
    const pos = this.pos;
    if (n <= 16) for (let i = 0; i < n; i++) buf[pos + i] = b[i]!;
    else buf.set(b, pos);
    this.pos = pos + n;
  }

  int64(v: bigint): void {
    int64Scratch.setBigInt64(0, v, true);
    const buf = this.buf;
    const pos = this.pos;
    for (let i = 0; i < INT64_BYTES; i++) buf[pos + i] = int64ScratchBytes[i]!;
    this.pos = pos + INT64_BYTES;
  }

  /** A well-formed string (checked by the sizing pass). */
  string(s: string): void {
    const n = utf8Length(s);
    this.uvarint(n);
    const buf = this.buf;
    const pos = this.pos;
    if (n === s.length) for (let i = 0; i < n; i++) buf[pos + i] = s.charCodeAt(i);
    else encoder.encodeInto(s, buf.subarray(pos, pos + n));
    this.pos = pos + n;
  }
}

function writePut(w: Writer, r: PutRequest): void {
  w.byte(
    (r.lease === undefined ? 0 : P_LEASE) |
      (optBoolCode(r.prevKv) << P_PREV_KV_SHIFT) |
      (optBoolCode(r.ignoreValue) << P_IGNORE_VALUE_SHIFT) |
      (optBoolCode(r.ignoreLease) << P_IGNORE_LEASE_SHIFT),
  );
  w.bytes(r.key);
  w.bytes(r.value);
  if (r.lease !== undefined) w.int64(r.lease);
}

function writeDelete(w: Writer, r: DeleteRangeRequest): void {
  w.byte((r.rangeEnd === undefined ? 0 : D_RANGE_END) | (optBoolCode(r.prevKv) << D_PREV_KV_SHIFT));
  w.bytes(r.key);
  if (r.rangeEnd !== undefined) w.bytes(r.rangeEnd);
}

function writeRange(w: Writer, r: RangeRequest): void {
  let f = optBoolCode(r.keysOnly) << R_KEYS_ONLY_SHIFT;
  f |= optBoolCode(r.countOnly) << R_COUNT_ONLY_SHIFT;
  if (r.rangeEnd !== undefined) f |= R_RANGE_END;
  if (r.limit !== undefined) f |= R_LIMIT;
  if (r.revision !== undefined) f |= R_REVISION;
  if (r.minModRevision !== undefined) f |= R_MIN_MOD;
  if (r.maxModRevision !== undefined) f |= R_MAX_MOD;
  if (r.minCreateRevision !== undefined) f |= R_MIN_CREATE;
  if (r.maxCreateRevision !== undefined) f |= R_MAX_CREATE;
  if (r.sortOrder !== undefined) f |= R_SORT_ORDER;
  if (r.sortTarget !== undefined) f |= R_SORT_TARGET;
  w.byte(f & 0xff);
  w.byte(f >>> 8);
  w.bytes(r.key);
  if (r.rangeEnd !== undefined) w.bytes(r.rangeEnd);
  if (r.limit !== undefined) w.svarint(r.limit);
  if (r.revision !== undefined) w.uvarint(r.revision);
  if (r.minModRevision !== undefined) w.uvarint(r.minModRevision);
  if (r.maxModRevision !== undefined) w.uvarint(r.maxModRevision);
  if (r.minCreateRevision !== undefined) w.uvarint(r.minCreateRevision);
  if (r.maxCreateRevision !== undefined) w.uvarint(r.maxCreateRevision);
  if (r.sortOrder !== undefined) w.byte(SORT_ORDERS.indexOf(r.sortOrder));
  if (r.sortTarget !== undefined) w.byte(SORT_TARGETS.indexOf(r.sortTarget));
}

function compareTargetCode(c: Compare): number {
  switch (c.target) {
    case "value":
      return TARGET_VALUE;
    case "version":
      return TARGET_VERSION;
    case "create":
      return TARGET_CREATE;
    case "mod":
      return TARGET_MOD;
    case "lease":
      return TARGET_LEASE;
    default:
      return assertNever(c, "compare target");
  }
}

function writeCompare(w: Writer, c: Compare): void {
  w.byte(
    compareTargetCode(c) |
      (COMPARE_RESULTS.indexOf(c.result) << 3) |
      (c.rangeEnd === undefined ? 0 : COMPARE_RANGE_END),
  );
  w.bytes(c.key);
  if (c.rangeEnd !== undefined) w.bytes(c.rangeEnd);
  switch (c.target) {
    case "value":
      w.bytes(c.value);
      return;
    case "version":
      w.svarint(c.version);
      return;
    case "create":
      w.svarint(c.createRevision);
      return;
    case "mod":
      w.svarint(c.modRevision);
      return;
    case "lease":
      w.int64(c.lease);
      return;
    default:
      assertNever(c, "compare target");
  }
}

function writeOp(w: Writer, op: RequestOp): void {
  switch (op.type) {
    case "range":
      w.byte(OP_RANGE);
      writeRange(w, op.request);
      return;
    case "put":
      w.byte(OP_PUT);
      writePut(w, op.request);
      return;
    case "deleteRange":
      w.byte(OP_DELETE_RANGE);
      writeDelete(w, op.request);
      return;
    case "txn":
      w.byte(OP_TXN);
      writeTxn(w, op.request);
      return;
    default:
      assertNever(op, "request op");
  }
}

function writeTxn(w: Writer, r: TxnRequest): void {
  w.byte(
    (r.compare === undefined ? 0 : T_COMPARE) |
      (r.success === undefined ? 0 : T_SUCCESS) |
      (r.failure === undefined ? 0 : T_FAILURE),
  );
  if (r.compare !== undefined) {
    w.uvarint(r.compare.length);
    for (const c of r.compare) writeCompare(w, c);
  }
  if (r.success !== undefined) {
    w.uvarint(r.success.length);
    for (const op of r.success) writeOp(w, op);
  }
  if (r.failure !== undefined) {
    w.uvarint(r.failure.length);
    for (const op of r.failure) writeOp(w, op);
  }
}

function binaryTag(cmd: BinaryCommand): number {
  switch (cmd.type) {
    case "put":
      return TAG_PUT;
    case "deleteRange":
      return TAG_DELETE_RANGE;
    case "txn":
      return TAG_TXN;
    case "compact":
      return TAG_COMPACT;
    case "leaseGrant":
      return TAG_LEASE_GRANT;
    case "leaseRevoke":
      return TAG_LEASE_REVOKE;
    case "leaseCheckpoint":
      return TAG_LEASE_CHECKPOINT;
    case "leaseExpire":
      return TAG_LEASE_EXPIRE;
    default:
      return assertNever(cmd, "command");
  }
}

/** `cmd` in version 2, or undefined when version 2 cannot carry it exactly. */
function encodeBinary(cmd: BinaryCommand): Uint8Array | undefined {
  const size = binarySize(cmd);
  if (Number.isNaN(size)) return undefined;
  const w = new Writer(new Uint8Array(size));
  w.byte(BINARY_VERSION_BYTE);
  w.byte(binaryTag(cmd));
  switch (cmd.type) {
    case "put":
      w.byte(tailFlags(cmd));
      writePut(w, cmd.request);
      break;
    case "deleteRange":
      w.byte(tailFlags(cmd));
      writeDelete(w, cmd.request);
      break;
    case "txn":
      w.byte(tailFlags(cmd));
      writeTxn(w, cmd.request);
      break;
    case "compact":
      w.byte(tailFlags(cmd));
      w.uvarint(cmd.revision);
      break;
    case "leaseGrant":
      w.byte(tailFlags(cmd));
      w.int64(cmd.id);
      w.svarint(cmd.ttlSeconds);
      break;
    case "leaseRevoke":
      w.byte(tailFlags(cmd) | (cmd.grantIndex === undefined ? 0 : F_GRANT_INDEX));
      w.int64(cmd.id);
      if (cmd.grantIndex !== undefined) w.uvarint(cmd.grantIndex);
      break;
    case "leaseCheckpoint":
      w.byte(0);
      w.uvarint(cmd.checkpoints.length);
      for (const c of cmd.checkpoints) {
        w.int64(c.id);
        w.uvarint(c.remainingTtlSeconds);
        w.uvarint(c.grantIndex);
      }
      break;
    case "leaseExpire":
      w.byte(0);
      w.uvarint(cmd.leases.length);
      for (const l of cmd.leases) {
        w.int64(l.id);
        w.uvarint(l.grantIndex);
      }
      break;
    default:
      return assertNever(cmd, "command");
  }
  if (cmd.type !== "leaseCheckpoint" && cmd.type !== "leaseExpire") {
    if (cmd.session !== undefined) {
      w.string(cmd.session.clientId);
      w.uvarint(cmd.session.seq);
    }
    if (cmd.auth !== undefined) {
      w.string(cmd.auth.user);
      w.uvarint(cmd.auth.revision);
    }
  }
  if (w.pos !== size) assert(false, `command: wrote ${w.pos} bytes of the ${size} sized for ${cmd.type}`);
  return w.buf;
}

/** The session and auth flags of a client command. */
function tailFlags(cmd: {
  readonly session?: ClientSession | undefined;
  readonly auth?: CommandAuth | undefined;
}): number {
  return (cmd.session === undefined ? 0 : F_SESSION) | (cmd.auth === undefined ? 0 : F_AUTH);
}

// ---------------------------------------------------------------------------
// Format version 1: JSON.

type Json = string | number | boolean | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function encodeJson(cmd: Command): Uint8Array {
  return encoder.encode(JSON.stringify(commandToJson(cmd)));
}

function commandToJson(cmd: Command): JsonObject {
  const o: JsonObject = { v: COMMAND_JSON_FORMAT_VERSION, type: cmd.type };
  switch (cmd.type) {
    case "put":
      o.request = putToJson(cmd.request);
      break;
    case "deleteRange":
      o.request = deleteToJson(cmd.request);
      break;
    case "txn":
      o.request = txnToJson(cmd.request);
      break;
    case "compact":
      o.revision = cmd.revision;
      break;
    case "leaseGrant":
      o.id = cmd.id.toString();
      o.ttlSeconds = cmd.ttlSeconds;
      break;
    case "leaseRevoke":
      o.id = cmd.id.toString();
      if (cmd.grantIndex !== undefined) o.grantIndex = cmd.grantIndex;
      break;
    case "acquire":
      o.resource = cmd.resource;
      o.holder = cmd.holder;
      o.id = cmd.id.toString();
      o.ttlSeconds = cmd.ttlSeconds;
      o.wait = cmd.wait;
      if (cmd.lockDelaySeconds !== undefined && cmd.lockDelaySeconds > 0)
        o.lockDelaySeconds = cmd.lockDelaySeconds;
      break;
    case "release":
      o.resource = cmd.resource;
      o.id = cmd.id.toString();
      o.holder = cmd.holder;
      break;
    case "requestRelease":
      o.resource = cmd.resource;
      o.requester = cmd.requester;
      o.reason = cmd.reason;
      o.id = cmd.id.toString();
      o.deadlineSeconds = cmd.deadlineSeconds;
      break;
    case "forceRevoke":
      o.resource = cmd.resource;
      o.id = cmd.id.toString();
      break;
    case "fencedPut":
      o.resource = cmd.resource;
      o.token = cmd.token;
      o.request = putToJson(cmd.request);
      break;
    case "counterAdd":
      o.counter = cmd.counter;
      o.delta = cmd.delta.toString();
      break;
    case "counterCas":
      o.counter = cmd.counter;
      o.expected = cmd.expected.toString();
      o.value = cmd.value.toString();
      break;
    case "semaphoreAcquire":
      o.semaphore = cmd.semaphore;
      o.holder = cmd.holder;
      o.id = cmd.id.toString();
      o.ttlSeconds = cmd.ttlSeconds;
      o.permits = cmd.permits;
      o.wait = cmd.wait;
      break;
    case "semaphoreRelease":
      o.semaphore = cmd.semaphore;
      o.id = cmd.id.toString();
      o.holder = cmd.holder;
      break;
    case "leaseCheckpoint":
      o.checkpoints = cmd.checkpoints.map((c) => ({
        id: c.id.toString(),
        remainingTtlSeconds: c.remainingTtlSeconds,
        grantIndex: c.grantIndex,
      }));
      return o;
    case "leaseExpire":
      o.leases = cmd.leases.map((l) => ({ id: l.id.toString(), grantIndex: l.grantIndex }));
      return o;
    case "memberPublish":
      o.member = cmd.member;
      o.name = cmd.name;
      o.clientUrls = [...cmd.clientUrls];
      return o;
    case "memberUpdate":
      o.member = cmd.member;
      o.peerUrls = [...cmd.peerUrls];
      return o;
    case "alarm":
      o.action = cmd.action;
      o.member = cmd.member.toString();
      o.alarm = cmd.alarm;
      return o;
    case "authEnable":
    case "authDisable":
    case "authenticate":
    case "authUserAdd":
    case "authUserDelete":
    case "authUserChangePassword":
    case "authUserGrantRole":
    case "authUserRevokeRole":
    case "authRoleAdd":
    case "authRoleDelete":
    case "authRoleGrantPermission":
    case "authRoleRevokePermission":
      authCommandToJson(cmd, o);
      break;
    default:
      return assertNever(cmd, "command");
  }
  if (cmd.session !== undefined) o.session = { clientId: cmd.session.clientId, seq: cmd.session.seq };
  if ("auth" in cmd && cmd.auth !== undefined) o.auth = { user: cmd.auth.user, revision: cmd.auth.revision };
  return o;
}

/** The fields of an auth command (besides session and auth). */
function authCommandToJson(cmd: AuthCommand, o: JsonObject): void {
  switch (cmd.type) {
    case "authEnable":
    case "authDisable":
      return;
    case "authenticate":
      o.user = cmd.user;
      o.tokenPrefix = cmd.tokenPrefix;
      o.authRevision = cmd.authRevision;
      return;
    case "authUserAdd":
      o.user = cmd.user;
      put(o, "passwordHash", cmd.passwordHash, same);
      return;
    case "authUserDelete":
      o.user = cmd.user;
      return;
    case "authUserChangePassword":
      o.user = cmd.user;
      o.passwordHash = cmd.passwordHash;
      return;
    case "authUserGrantRole":
    case "authUserRevokeRole":
      o.user = cmd.user;
      o.role = cmd.role;
      return;
    case "authRoleAdd":
    case "authRoleDelete":
      o.role = cmd.role;
      return;
    case "authRoleGrantPermission":
      o.role = cmd.role;
      if (cmd.permission !== undefined)
        o.permission = {
          type: cmd.permission.type,
          key: bytesToBase64(cmd.permission.key),
          rangeEnd: bytesToBase64(cmd.permission.rangeEnd),
        };
      return;
    case "authRoleRevokePermission":
      o.role = cmd.role;
      o.key = bytesToBase64(cmd.key);
      o.rangeEnd = bytesToBase64(cmd.rangeEnd);
      return;
    default:
      assertNever(cmd, "auth command");
  }
}

/** Sets `o[name]` to `conv(value)` when the value is defined (absent stays absent). */
function put<T>(o: JsonObject, name: string, value: T | undefined, conv: (v: T) => Json): void {
  if (value !== undefined) o[name] = conv(value);
}
const same = <T extends Json>(v: T): Json => v;
const b64 = (v: Uint8Array): Json => bytesToBase64(v);
const dec = (v: bigint): Json => v.toString();

function putToJson(r: PutRequest): JsonObject {
  const o: JsonObject = { key: bytesToBase64(r.key), value: bytesToBase64(r.value) };
  put(o, "lease", r.lease, dec);
  put(o, "prevKv", r.prevKv, same);
  put(o, "ignoreValue", r.ignoreValue, same);
  put(o, "ignoreLease", r.ignoreLease, same);
  return o;
}

function deleteToJson(r: DeleteRangeRequest): JsonObject {
  const o: JsonObject = { key: bytesToBase64(r.key) };
  put(o, "rangeEnd", r.rangeEnd, b64);
  put(o, "prevKv", r.prevKv, same);
  return o;
}

const RANGE_NUMBER_FIELDS = [
  "limit",
  "revision",
  "minModRevision",
  "maxModRevision",
  "minCreateRevision",
  "maxCreateRevision",
] as const;

function rangeToJson(r: RangeRequest): JsonObject {
  const o: JsonObject = { key: bytesToBase64(r.key) };
  put(o, "rangeEnd", r.rangeEnd, b64);
  for (const f of RANGE_NUMBER_FIELDS) put<number>(o, f, r[f], same);
  put(o, "sortOrder", r.sortOrder, same);
  put(o, "sortTarget", r.sortTarget, same);
  put(o, "keysOnly", r.keysOnly, same);
  put(o, "countOnly", r.countOnly, same);
  return o;
}

function compareToJson(c: Compare): JsonObject {
  const o: JsonObject = { key: bytesToBase64(c.key) };
  put(o, "rangeEnd", c.rangeEnd, b64);
  o.result = c.result;
  o.target = c.target;
  switch (c.target) {
    case "value":
      o.value = bytesToBase64(c.value);
      break;
    case "version":
      o.version = c.version;
      break;
    case "create":
      o.createRevision = c.createRevision;
      break;
    case "mod":
      o.modRevision = c.modRevision;
      break;
    case "lease":
      o.lease = c.lease.toString();
      break;
    default:
      return assertNever(c, "compare target");
  }
  return o;
}

function opToJson(op: RequestOp): JsonObject {
  switch (op.type) {
    case "range":
      return { type: op.type, request: rangeToJson(op.request) };
    case "put":
      return { type: op.type, request: putToJson(op.request) };
    case "deleteRange":
      return { type: op.type, request: deleteToJson(op.request) };
    case "txn":
      return { type: op.type, request: txnToJson(op.request) };
    default:
      return assertNever(op, "request op");
  }
}

function txnToJson(r: TxnRequest): JsonObject {
  const o: JsonObject = {};
  put(o, "compare", r.compare, (cs) => cs.map(compareToJson));
  put(o, "success", r.success, (ops) => ops.map(opToJson));
  put(o, "failure", r.failure, (ops) => ops.map(opToJson));
  return o;
}

// ---------------------------------------------------------------------------
// Decoding: every read names its path and fails with CommandDecodeError.

/** Decodes entry data (either format, told by its first byte); throws CommandDecodeError on anything malformed. */
export function decodeCommand(data: Uint8Array): Command {
  if (data.length > 0 && data[0] === BINARY_VERSION_BYTE) return decodeBinary(data);
  return decodeJson(data);
}

/** decodeCommand as a value: never throws for malformed data. */
export function tryDecodeCommand(data: Uint8Array): DecodeOutcome {
  try {
    return { ok: true, command: decodeCommand(data) };
  } catch (e) {
    if (e instanceof CommandDecodeError) return { ok: false, error: e };
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Decoding format version 2. Paths are built only when failing: the reader
// keeps the field names and list indexes it is inside of, and `fail` joins
// them. Failure details are constants or built in `fail`'s callers only on
// the failing branch.

/** UTF-8 of strings: strict, and a leading U+FEFF is kept (it is part of the string). */
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Short ASCII strings are built without the TextDecoder call. */
const ASCII_FAST_BYTES_MAX = 64;

const CLIENT_ID_DETAIL = `expected a string of 1..${SESSION_CLIENT_ID_LENGTH_MAX} chars`;
const AUTH_NAME_DETAIL = `expected a string of at most ${AUTH_NAME_LENGTH_MAX} chars`;
const TYPE_DETAIL = `expected one of ${BINARY_TYPES.filter((t) => t !== undefined).join(", ")}`;
const OP_TYPE_DETAIL = "expected one of range, put, deleteRange, txn";
const TARGET_DETAIL = "expected one of value, version, create, mod, lease";
const RESULT_DETAIL = `expected one of ${COMPARE_RESULTS.join(", ")}`;
const SORT_ORDER_DETAIL = `expected one of ${SORT_ORDERS.join(", ")}`;
const SORT_TARGET_DETAIL = `expected one of ${SORT_TARGETS.join(", ")}`;
const TRUNCATED = "truncated";
const OPT_BOOL_DETAIL = "expected a boolean (optional boolean code 3)";

/** A cursor over untrusted entry data; every read is bounds-checked and fails with a CommandDecodeError. */
class Reader {
  /** After the version byte. */
  pos = 1;
  /** Field names and list indexes below "$" (for error paths only). */
  private readonly at: (string | number)[] = [];

  constructor(private readonly data: Uint8Array) {}

  /** Fails at `field` of the current object ("" : the object itself). */
  fail(field: string, detail: string): never {
    let path = "$";
    for (const s of this.at) path += typeof s === "number" ? `[${s}]` : `.${s}`;
    if (field !== "") path += `.${field}`;
    throw new CommandDecodeError(path, detail);
  }

  enter(name: string | number): void {
    this.at.push(name);
  }

  leave(): void {
    this.at.pop();
  }

  /** Fails unless the whole input was read. */
  end(): void {
    const left = this.data.length - this.pos;
    if (left !== 0) this.fail("", `${left} trailing bytes`);
  }

  byte(field: string): number {
    if (this.pos >= this.data.length) this.fail(field, TRUNCATED);
    return this.data[this.pos++]!;
  }

  /** Flag bits: fails when any outside `used` is set. */
  flags(used: number): number {
    const f = this.byte("");
    if ((f & ~used) !== 0) this.fail("", `unknown flag bits 0x${(f & ~used).toString(16)}`);
    return f;
  }

  uvarint(field: string): number {
    const data = this.data;
    let pos = this.pos;
    if (pos < data.length && data[pos]! < 0x80) {
      this.pos = pos + 1;
      return data[pos]!;
    }
    let value = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (pos >= data.length) this.fail(field, TRUNCATED);
      const b = data[pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (b === 0 && i > 0) this.fail(field, "varint not in canonical form");
        // Sums below 2^53 are exact; anything larger rounds to at least 2^53.
        if (value > Number.MAX_SAFE_INTEGER) this.fail(field, "expected a safe integer");
        this.pos = pos;
        return value;
      }
      scale *= 0x80;
    }
    return this.fail(field, `varint longer than ${VARINT_BYTES_MAX} bytes`);
  }

  /** Zigzag: the first group holds the sign and 6 bits of the magnitude. */
  svarint(field: string): number {
    const first = this.byte(field);
    const negative = (first & 1) === 1;
    let m = (first & 0x7f) >>> 1;
    if (first >= 0x80) {
      let scale = 0x40;
      for (let i = 1; ; i++) {
        if (i === VARINT_BYTES_MAX) this.fail(field, `varint longer than ${VARINT_BYTES_MAX} bytes`);
        const b = this.byte(field);
        m += (b & 0x7f) * scale;
        if (b < 0x80) {
          if (b === 0) this.fail(field, "varint not in canonical form");
          break;
        }
        scale *= 0x80;
      }
    }
    // -(2^53 - 1) is -m - 1 for m = 2^53 - 2.
    if (m > (negative ? Number.MAX_SAFE_INTEGER - 1 : Number.MAX_SAFE_INTEGER))
      this.fail(field, "expected a safe integer");
    return negative ? -m - 1 : m;
  }

  /** A uvarint in [min, max]. */
  natural(field: string, min: number, max: number): number {
    const v = this.uvarint(field);
    if (v < min || v > max) this.fail(field, `${v} outside [${min}, ${max}]`);
    return v;
  }

  /** A count of items of at least one byte each (never more than the bytes left). */
  count(field: string, max: number): number {
    const n = this.uvarint(field);
    if (n > max) this.fail(field, `${n} items, at most ${max}`);
    if (n > this.data.length - this.pos) this.fail(field, `${TRUNCATED}: ${n} items claimed`);
    return n;
  }

  /** A view of the next `length`-prefixed bytes (a plain Uint8Array even when the input is a Buffer). */
  bytes(field: string): Uint8Array {
    const n = this.uvarint(field);
    const data = this.data;
    if (n > data.length - this.pos) this.fail(field, `${TRUNCATED}: ${n} bytes claimed`);
    const out = new Uint8Array(data.buffer, data.byteOffset + this.pos, n);
    this.pos += n;
    return out;
  }

  int64(field: string): bigint {
    const data = this.data;
    const pos = this.pos;
    if (data.length - pos < INT64_BYTES) this.fail(field, TRUNCATED);
    for (let i = 0; i < INT64_BYTES; i++) int64ScratchBytes[i] = data[pos + i]!;
    this.pos = pos + INT64_BYTES;
    return int64Scratch.getBigInt64(0, true);
  }

  /** A lease the table may hold (or 0), as `tableLease`. */
  tableLease(field: string): LeaseId {
    const v = this.int64(field);
    if (v < 0n || v > MAX_LEASE_ID) this.fail(field, `${v} outside [0, ${MAX_LEASE_ID}]`);
    return leaseId(v);
  }

  /** UTF-8 text of at most `charsMax` UTF-16 units (`detail` when longer). */
  string(field: string, charsMax: number, detail: string): string {
    const n = this.uvarint(field);
    const data = this.data;
    const start = this.pos;
    if (n > data.length - start) this.fail(field, `${TRUNCATED}: ${n} bytes claimed`);
    // One UTF-16 unit takes at most 3 bytes: refuse the impossible before decoding it.
    if (n > 3 * charsMax) this.fail(field, detail);
    this.pos = start + n;
    const view = new Uint8Array(data.buffer, data.byteOffset + start, n);
    let ascii = n <= ASCII_FAST_BYTES_MAX;
    for (let i = 0; ascii && i < n; i++) if (view[i]! >= 0x80) ascii = false;
    let s: string;
    if (ascii) {
      s = String.fromCharCode.apply(null, view as unknown as number[]);
    } else {
      try {
        s = utf8Strict.decode(view);
      } catch (e) {
        return this.fail(field, `not UTF-8 (${String(e)})`);
      }
    }
    if (s.length > charsMax) this.fail(field, detail);
    return s;
  }
}

/** An optional boolean from its 2-bit code. */
function optBool(r: Reader, code: number, field: string): boolean | undefined {
  switch (code & 3) {
    case 0:
      return undefined;
    case 1:
      return false;
    case 2:
      return true;
    default:
      return r.fail(field, OPT_BOOL_DETAIL);
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function readPut(r: Reader): PutRequest {
  const f = r.flags(P_FLAGS_USED);
  const out: Mutable<PutRequest> = { key: r.bytes("key"), value: r.bytes("value") };
  if ((f & P_LEASE) !== 0) out.lease = leaseId(r.int64("lease"));
  const prevKv = optBool(r, f >>> P_PREV_KV_SHIFT, "prevKv");
  if (prevKv !== undefined) out.prevKv = prevKv;
  const ignoreValue = optBool(r, f >>> P_IGNORE_VALUE_SHIFT, "ignoreValue");
  if (ignoreValue !== undefined) out.ignoreValue = ignoreValue;
  const ignoreLease = optBool(r, f >>> P_IGNORE_LEASE_SHIFT, "ignoreLease");
  if (ignoreLease !== undefined) out.ignoreLease = ignoreLease;
  return out;
}

function readDelete(r: Reader): DeleteRangeRequest {
  const f = r.flags(D_FLAGS_USED);
  const out: Mutable<DeleteRangeRequest> = { key: r.bytes("key") };
  if ((f & D_RANGE_END) !== 0) out.rangeEnd = r.bytes("rangeEnd");
  const prevKv = optBool(r, f >>> D_PREV_KV_SHIFT, "prevKv");
  if (prevKv !== undefined) out.prevKv = prevKv;
  return out;
}

function readRange(r: Reader): RangeRequest {
  const low = r.byte("");
  const f = low | (r.byte("") << 8);
  if ((f & ~R_FLAGS_USED) !== 0) r.fail("", `unknown flag bits 0x${(f & ~R_FLAGS_USED).toString(16)}`);
  const out: Mutable<RangeRequest> = { key: r.bytes("key") };
  if ((f & R_RANGE_END) !== 0) out.rangeEnd = r.bytes("rangeEnd");
  if ((f & R_LIMIT) !== 0) out.limit = r.svarint("limit");
  if ((f & R_REVISION) !== 0) out.revision = revision(r.natural("revision", 0, Number.MAX_SAFE_INTEGER));
  if ((f & R_MIN_MOD) !== 0)
    out.minModRevision = revision(r.natural("minModRevision", 0, Number.MAX_SAFE_INTEGER));
  if ((f & R_MAX_MOD) !== 0)
    out.maxModRevision = revision(r.natural("maxModRevision", 0, Number.MAX_SAFE_INTEGER));
  if ((f & R_MIN_CREATE) !== 0)
    out.minCreateRevision = revision(r.natural("minCreateRevision", 0, Number.MAX_SAFE_INTEGER));
  if ((f & R_MAX_CREATE) !== 0)
    out.maxCreateRevision = revision(r.natural("maxCreateRevision", 0, Number.MAX_SAFE_INTEGER));
  if ((f & R_SORT_ORDER) !== 0) {
    const order = SORT_ORDERS[r.byte("sortOrder")];
    if (order === undefined) r.fail("sortOrder", SORT_ORDER_DETAIL);
    out.sortOrder = order;
  }
  if ((f & R_SORT_TARGET) !== 0) {
    const target = SORT_TARGETS[r.byte("sortTarget")];
    if (target === undefined) r.fail("sortTarget", SORT_TARGET_DETAIL);
    out.sortTarget = target;
  }
  const keysOnly = optBool(r, f >>> R_KEYS_ONLY_SHIFT, "keysOnly");
  if (keysOnly !== undefined) out.keysOnly = keysOnly;
  const countOnly = optBool(r, f >>> R_COUNT_ONLY_SHIFT, "countOnly");
  if (countOnly !== undefined) out.countOnly = countOnly;
  return out;
}

function readCompare(r: Reader): Compare {
  const h = r.flags(COMPARE_BITS_USED);
  const targetCode = h & 7;
  if (targetCode > TARGET_LEASE) r.fail("target", TARGET_DETAIL);
  const result = COMPARE_RESULTS[(h >>> 3) & 7];
  if (result === undefined) r.fail("result", RESULT_DETAIL);
  const key = r.bytes("key");
  const rangeEnd = (h & COMPARE_RANGE_END) !== 0 ? r.bytes("rangeEnd") : undefined;
  let c: Compare;
  switch (targetCode) {
    case TARGET_VALUE:
      c = { key, result, target: "value", value: r.bytes("value") };
      break;
    case TARGET_VERSION:
      c = { key, result, target: "version", version: r.svarint("version") };
      break;
    case TARGET_CREATE:
      c = { key, result, target: "create", createRevision: revision(r.svarint("createRevision")) };
      break;
    case TARGET_MOD:
      c = { key, result, target: "mod", modRevision: revision(r.svarint("modRevision")) };
      break;
    default:
      c = { key, result, target: "lease", lease: leaseId(r.int64("lease")) };
      break;
  }
  if (rangeEnd !== undefined) (c as { rangeEnd?: Uint8Array }).rangeEnd = rangeEnd;
  return c;
}

/** One op of a txn at nesting `depth` (its own request, when a txn, is one deeper). */
function readOp(r: Reader, depth: number): RequestOp {
  const type = r.byte("type");
  if (type > OP_TXN) r.fail("type", OP_TYPE_DETAIL);
  r.enter("request");
  let op: RequestOp;
  switch (type) {
    case OP_RANGE:
      op = { type: "range", request: readRange(r) };
      break;
    case OP_PUT:
      op = { type: "put", request: readPut(r) };
      break;
    case OP_DELETE_RANGE:
      op = { type: "deleteRange", request: readDelete(r) };
      break;
    default:
      op = { type: "txn", request: readTxn(r, depth + 1) };
      break;
  }
  r.leave();
  return op;
}

function readOps(r: Reader, field: string, depth: number): RequestOp[] {
  const n = r.count(field, Number.MAX_SAFE_INTEGER);
  const ops: RequestOp[] = [];
  r.enter(field);
  for (let i = 0; i < n; i++) {
    r.enter(i);
    ops.push(readOp(r, depth));
    r.leave();
  }
  r.leave();
  return ops;
}

/** A txn request at nesting `depth` (1: the command's own); op lists are not bounded here (see OPS_DECODED_MAX). */
function readTxn(r: Reader, depth: number): TxnRequest {
  if (depth > COMMAND_TXN_DEPTH_MAX) r.fail("", `txn nested deeper than ${COMMAND_TXN_DEPTH_MAX}`);
  const f = r.flags(T_FLAGS_USED);
  const out: Mutable<TxnRequest> = {};
  if ((f & T_COMPARE) !== 0) {
    const n = r.count("compare", Number.MAX_SAFE_INTEGER);
    const compare: Compare[] = [];
    r.enter("compare");
    for (let i = 0; i < n; i++) {
      r.enter(i);
      compare.push(readCompare(r));
      r.leave();
    }
    r.leave();
    out.compare = compare;
  }
  if ((f & T_SUCCESS) !== 0) out.success = readOps(r, "success", depth);
  if ((f & T_FAILURE) !== 0) out.failure = readOps(r, "failure", depth);
  return out;
}

function readSession(r: Reader): ClientSession {
  r.enter("session");
  const clientId = r.string("clientId", SESSION_CLIENT_ID_LENGTH_MAX, CLIENT_ID_DETAIL);
  if (clientId.length === 0) r.fail("clientId", CLIENT_ID_DETAIL);
  const seq = r.natural("seq", 1, Number.MAX_SAFE_INTEGER);
  r.leave();
  return { clientId, seq };
}

function readAuth(r: Reader): CommandAuth {
  r.enter("auth");
  const user = r.string("user", AUTH_NAME_LENGTH_MAX, AUTH_NAME_DETAIL);
  if (user === "") r.fail("user", "expected a non-empty name");
  const rev = r.natural("revision", 1, Number.MAX_SAFE_INTEGER);
  r.leave();
  return { user, revision: rev };
}

/** Reads the session and auth `flags` announce onto a client command, then checks the input is all read. */
function finishClient<C extends ClientCommand>(r: Reader, flags: number, cmd: C): C {
  const out = cmd as Mutable<ClientCommand>;
  if ((flags & F_SESSION) !== 0) out.session = readSession(r);
  if ((flags & F_AUTH) !== 0) (out as { auth?: CommandAuth }).auth = readAuth(r);
  r.end();
  return cmd;
}

/** Fails on flags naming fields the command does not have. */
function checkEntryFlags(r: Reader, flags: number, allowed: number): void {
  const extra = flags & ~allowed;
  if (extra === 0) return;
  if ((extra & F_SESSION) !== 0) r.fail("session", "unknown field");
  if ((extra & F_AUTH) !== 0) r.fail("auth", "unknown field");
  if ((extra & F_GRANT_INDEX) !== 0) r.fail("grantIndex", "unknown field");
  r.fail("", `unknown flag bits 0x${extra.toString(16)}`);
}

function decodeBinary(data: Uint8Array): Command {
  const r = new Reader(data);
  const tag = r.byte("type");
  const type = BINARY_TYPES[tag];
  if (type === undefined) r.fail("type", TYPE_DETAIL);
  const flags = r.byte("");
  switch (tag) {
    case TAG_PUT: {
      checkEntryFlags(r, flags, F_SESSION | F_AUTH);
      r.enter("request");
      const request = readPut(r);
      r.leave();
      return finishClient(r, flags, { type: "put", request });
    }
    case TAG_DELETE_RANGE: {
      checkEntryFlags(r, flags, F_SESSION | F_AUTH);
      r.enter("request");
      const request = readDelete(r);
      r.leave();
      return finishClient(r, flags, { type: "deleteRange", request });
    }
    case TAG_TXN: {
      checkEntryFlags(r, flags, F_SESSION | F_AUTH);
      r.enter("request");
      const request = readTxn(r, 1);
      r.leave();
      return finishClient(r, flags, { type: "txn", request });
    }
    case TAG_COMPACT: {
      checkEntryFlags(r, flags, F_SESSION | F_AUTH);
      const rev = revision(r.natural("revision", 0, Number.MAX_SAFE_INTEGER));
      return finishClient(r, flags, { type: "compact", revision: rev });
    }
    case TAG_LEASE_GRANT: {
      checkEntryFlags(r, flags, F_SESSION | F_AUTH);
      const id = r.tableLease("id");
      return finishClient(r, flags, { type: "leaseGrant", id, ttlSeconds: r.svarint("ttlSeconds") });
    }
    case TAG_LEASE_REVOKE: {
      checkEntryFlags(r, flags, F_SESSION | F_AUTH | F_GRANT_INDEX);
      const id = r.tableLease("id");
      if ((flags & F_GRANT_INDEX) === 0) return finishClient(r, flags, { type: "leaseRevoke", id });
      const grantIndex = r.natural("grantIndex", 0, Number.MAX_SAFE_INTEGER);
      return finishClient(r, flags, { type: "leaseRevoke", id, grantIndex });
    }
    case TAG_LEASE_CHECKPOINT: {
      checkEntryFlags(r, flags, 0);
      const n = r.count("checkpoints", MAX_CHECKPOINTS_PER_BATCH);
      const checkpoints: CheckpointItem[] = [];
      r.enter("checkpoints");
      for (let i = 0; i < n; i++) {
        r.enter(i);
        const id = r.tableLease("id");
        const remainingTtlSeconds = r.natural("remainingTtlSeconds", 0, MAX_LEASE_TTL_SECONDS);
        checkpoints.push({
          id,
          remainingTtlSeconds,
          grantIndex: r.natural("grantIndex", 0, Number.MAX_SAFE_INTEGER),
        });
        r.leave();
      }
      r.leave();
      r.end();
      return { type: "leaseCheckpoint", checkpoints };
    }
    default: {
      checkEntryFlags(r, flags, 0);
      const n = r.count("leases", MAX_LEASES_PER_REVOKE_BATCH);
      const leases: ExpireItem[] = [];
      r.enter("leases");
      for (let i = 0; i < n; i++) {
        r.enter(i);
        const id = r.tableLease("id");
        leases.push({ id, grantIndex: r.natural("grantIndex", 0, Number.MAX_SAFE_INTEGER) });
        r.leave();
      }
      r.leave();
      r.end();
      return { type: "leaseExpire", leases };
    }
  }
}

// ---------------------------------------------------------------------------
// Decoding format version 1 (JSON).

function decodeJson(data: Uint8Array): Command {
  let text: string;
  let json: unknown;
  try {
    text = decoder.decode(data);
  } catch (e) {
    throw new CommandDecodeError("$", `not UTF-8 (${String(e)})`);
  }
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CommandDecodeError("$", `not JSON (${String(e)})`);
  }
  return commandFromJson(json);
}

type Obj = { readonly path: string; readonly fields: Readonly<Record<string, unknown>> };

function fail(path: string, detail: string): never {
  throw new CommandDecodeError(path, detail);
}

/** `v` as an object with only the `allowed` fields. */
function object(v: unknown, path: string, allowed: readonly string[]): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "expected an object");
  const fields = v as Record<string, unknown>;
  for (const k of Object.keys(fields)) if (!allowed.includes(k)) fail(`${path}.${k}`, "unknown field");
  return { path, fields };
}

function field(o: Obj, name: string): unknown {
  return Object.hasOwn(o.fields, name) ? o.fields[name] : undefined;
}

function required<T>(o: Obj, name: string, read: (v: unknown, path: string) => T): T {
  const v = field(o, name);
  if (v === undefined) fail(`${o.path}.${name}`, "missing");
  return read(v, `${o.path}.${name}`);
}

function optional<T>(o: Obj, name: string, read: (v: unknown, path: string) => T): T | undefined {
  const v = field(o, name);
  return v === undefined ? undefined : read(v, `${o.path}.${name}`);
}

function bytes(v: unknown, path: string): Uint8Array {
  if (typeof v !== "string") fail(path, "expected base64 text");
  const b = base64ToBytes(v);
  if (b === undefined) fail(path, "not canonical base64");
  return b;
}

function bool(v: unknown, path: string): boolean {
  if (typeof v !== "boolean") fail(path, "expected a boolean");
  return v;
}

function integer(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) fail(path, "expected a safe integer");
  if (v < min || v > max) fail(path, `${v} outside [${min}, ${max}]`);
  return v;
}

const anyInt = (v: unknown, path: string): number =>
  integer(v, path, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
const natural = (v: unknown, path: string): number => integer(v, path, 0, Number.MAX_SAFE_INTEGER);
const rev = (v: unknown, path: string): Revision => revision(natural(v, path));

function int64(v: unknown, path: string, min: bigint, max: bigint): bigint {
  if (typeof v !== "string" || !/^-?(0|[1-9][0-9]{0,18})$/.test(v) || v === "-0") {
    fail(path, "expected a decimal int64 string");
  }
  const n = BigInt(v);
  if (n < min || n > max) fail(path, `${v} outside [${min}, ${max}]`);
  return n;
}

/** A uint64 as a decimal string (an alarm's member id). */
function uint64(v: unknown, path: string): bigint {
  if (typeof v !== "string" || !/^(0|[1-9][0-9]{0,19})$/.test(v))
    fail(path, "expected a decimal uint64 string");
  const n = BigInt(v);
  if (n > MAX_ALARM_MEMBER_ID) fail(path, `${v} outside [0, ${MAX_ALARM_MEMBER_ID}]`);
  return n;
}

/** Any int64: a put or a compare may name a lease that cannot exist; the store answers that. */
const anyLease = (v: unknown, path: string): LeaseId => leaseId(int64(v, path, INT64_MIN, INT64_MAX));
/** A lease the table may hold (or 0): the table asserts this range. */
const tableLease = (v: unknown, path: string): LeaseId => leaseId(int64(v, path, 0n, MAX_LEASE_ID));

function oneOf<T extends string>(values: readonly T[]): (v: unknown, path: string) => T {
  return (v, path) => {
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
      fail(path, `expected one of ${values.join(", ")}`);
    }
    return v as T;
  };
}

function list<T>(max: number, read: (v: unknown, path: string) => T): (v: unknown, path: string) => T[] {
  return (v, path) => {
    if (!Array.isArray(v)) fail(path, "expected an array");
    if (v.length > max) fail(path, `${v.length} items, at most ${max}`);
    return v.map((item, i) => read(item, `${path}[${i}]`));
  };
}

function session(v: unknown, path: string): ClientSession {
  const o = object(v, path, ["clientId", "seq"]);
  const clientId = required(o, "clientId", (x, p) => {
    if (typeof x !== "string" || x.length === 0 || x.length > SESSION_CLIENT_ID_LENGTH_MAX) {
      fail(p, `expected a string of 1..${SESSION_CLIENT_ID_LENGTH_MAX} chars`);
    }
    return x;
  });
  return { clientId, seq: required(o, "seq", (x, p) => integer(x, p, 1, Number.MAX_SAFE_INTEGER)) };
}

/** Sets `name` on `out` when the value is defined (so absent stays absent). */
function assign<T extends object>(out: T, name: string, value: unknown): void {
  if (value !== undefined) (out as Record<string, unknown>)[name] = value;
}

function putFromJson(v: unknown, path: string): PutRequest {
  const o = object(v, path, ["key", "value", "lease", "prevKv", "ignoreValue", "ignoreLease"]);
  const r: PutRequest = { key: required(o, "key", bytes), value: required(o, "value", bytes) };
  assign(r, "lease", optional(o, "lease", anyLease));
  assign(r, "prevKv", optional(o, "prevKv", bool));
  assign(r, "ignoreValue", optional(o, "ignoreValue", bool));
  assign(r, "ignoreLease", optional(o, "ignoreLease", bool));
  return r;
}

function deleteFromJson(v: unknown, path: string): DeleteRangeRequest {
  const o = object(v, path, ["key", "rangeEnd", "prevKv"]);
  const r: DeleteRangeRequest = { key: required(o, "key", bytes) };
  assign(r, "rangeEnd", optional(o, "rangeEnd", bytes));
  assign(r, "prevKv", optional(o, "prevKv", bool));
  return r;
}

function rangeFromJson(v: unknown, path: string): RangeRequest {
  const o = object(v, path, [
    "key",
    "rangeEnd",
    ...RANGE_NUMBER_FIELDS,
    "sortOrder",
    "sortTarget",
    "keysOnly",
    "countOnly",
  ]);
  const r: RangeRequest = { key: required(o, "key", bytes) };
  assign(r, "rangeEnd", optional(o, "rangeEnd", bytes));
  assign(r, "limit", optional(o, "limit", anyInt));
  for (const f of RANGE_NUMBER_FIELDS) if (f !== "limit") assign(r, f, optional(o, f, rev));
  assign(r, "sortOrder", optional(o, "sortOrder", oneOf(SORT_ORDERS)));
  assign(r, "sortTarget", optional(o, "sortTarget", oneOf(SORT_TARGETS)));
  assign(r, "keysOnly", optional(o, "keysOnly", bool));
  assign(r, "countOnly", optional(o, "countOnly", bool));
  return r;
}

function compareFromJson(v: unknown, path: string): Compare {
  const target = required(
    object(v, path, [
      "key",
      "rangeEnd",
      "result",
      "target",
      "value",
      "version",
      "createRevision",
      "modRevision",
      "lease",
    ]),
    "target",
    oneOf(["value", "version", "create", "mod", "lease"] as const),
  );
  const operand = {
    value: "value",
    version: "version",
    create: "createRevision",
    mod: "modRevision",
    lease: "lease",
  }[target];
  const o = object(v, path, ["key", "rangeEnd", "result", "target", operand]);
  const key = required(o, "key", bytes);
  const rangeEnd = optional(o, "rangeEnd", bytes);
  const result = required(o, "result", oneOf(COMPARE_RESULTS));
  const base = rangeEnd === undefined ? { key, result } : { key, rangeEnd, result };
  switch (target) {
    case "value":
      return { ...base, target, value: required(o, operand, bytes) };
    case "version":
      return { ...base, target, version: required(o, operand, anyInt) };
    case "create":
      return { ...base, target, createRevision: revision(required(o, operand, anyInt)) };
    case "mod":
      return { ...base, target, modRevision: revision(required(o, operand, anyInt)) };
    case "lease":
      return { ...base, target, lease: required(o, operand, anyLease) };
    default:
      return assertNever(target, "compare target");
  }
}

function opFromJson(depth: number): (v: unknown, path: string) => RequestOp {
  return (v, path) => {
    const o = object(v, path, ["type", "request"]);
    const type = required(o, "type", oneOf(["range", "put", "deleteRange", "txn"] as const));
    switch (type) {
      case "range":
        return { type, request: required(o, "request", rangeFromJson) };
      case "put":
        return { type, request: required(o, "request", putFromJson) };
      case "deleteRange":
        return { type, request: required(o, "request", deleteFromJson) };
      case "txn":
        return { type, request: required(o, "request", txnFromJson(depth + 1)) };
      default:
        return assertNever(type, "request op");
    }
  };
}

/** Op lists are not bounded here: the store answers "tooManyOps"; the gateway bounds request bytes. */
const OPS_DECODED_MAX = Number.MAX_SAFE_INTEGER;

function txnFromJson(depth: number): (v: unknown, path: string) => TxnRequest {
  return (v, path) => {
    if (depth > COMMAND_TXN_DEPTH_MAX) fail(path, `txn nested deeper than ${COMMAND_TXN_DEPTH_MAX}`);
    const o = object(v, path, ["compare", "success", "failure"]);
    const r: TxnRequest = {};
    assign(r, "compare", optional(o, "compare", list(OPS_DECODED_MAX, compareFromJson)));
    assign(r, "success", optional(o, "success", list(OPS_DECODED_MAX, opFromJson(depth))));
    assign(r, "failure", optional(o, "failure", list(OPS_DECODED_MAX, opFromJson(depth))));
    return r;
  };
}

/** Declared before COMMAND_TYPES, which spreads it at module load. */
const AUTH_COMMAND_TYPES: readonly AuthCommand["type"][] = [
  "authEnable",
  "authDisable",
  "authenticate",
  "authUserAdd",
  "authUserDelete",
  "authUserChangePassword",
  "authUserGrantRole",
  "authUserRevokeRole",
  "authRoleAdd",
  "authRoleDelete",
  "authRoleGrantPermission",
  "authRoleRevokePermission",
];

const COMMAND_TYPES: readonly CommandType[] = [
  "put",
  "deleteRange",
  "txn",
  "compact",
  "leaseGrant",
  "leaseRevoke",
  "leaseCheckpoint",
  "leaseExpire",
  "memberPublish",
  "memberUpdate",
  "alarm",
  ...AUTH_COMMAND_TYPES,
  "acquire",
  "release",
  "fencedPut",
  "requestRelease",
  "forceRevoke",
  "counterAdd",
  "counterCas",
  "semaphoreAcquire",
  "semaphoreRelease",
];

/** Fields of each command type besides v, type (and session for client commands). */
const COMMAND_FIELDS: Readonly<Record<CommandType, readonly string[]>> = {
  put: ["request", "session", "auth"],
  deleteRange: ["request", "session", "auth"],
  txn: ["request", "session", "auth"],
  compact: ["revision", "session", "auth"],
  leaseGrant: ["id", "ttlSeconds", "session", "auth"],
  leaseRevoke: ["id", "grantIndex", "session", "auth"],
  acquire: ["resource", "holder", "id", "ttlSeconds", "wait", "lockDelaySeconds", "session", "auth"],
  release: ["resource", "id", "holder", "session", "auth"],
  fencedPut: ["resource", "token", "request", "session", "auth"],
  requestRelease: ["resource", "requester", "reason", "id", "deadlineSeconds", "session", "auth"],
  forceRevoke: ["resource", "id", "session", "auth"],
  counterAdd: ["counter", "delta", "session", "auth"],
  counterCas: ["counter", "expected", "value", "session", "auth"],
  semaphoreAcquire: ["semaphore", "holder", "id", "ttlSeconds", "permits", "wait", "session", "auth"],
  semaphoreRelease: ["semaphore", "id", "holder", "session", "auth"],
  leaseCheckpoint: ["checkpoints"],
  leaseExpire: ["leases"],
  memberPublish: ["member", "name", "clientUrls"],
  memberUpdate: ["member", "peerUrls"],
  alarm: ["action", "member", "alarm"],
  authEnable: ["session", "auth"],
  authDisable: ["session", "auth"],
  authenticate: ["user", "tokenPrefix", "authRevision", "session"],
  authUserAdd: ["user", "passwordHash", "session", "auth"],
  authUserDelete: ["user", "session", "auth"],
  authUserChangePassword: ["user", "passwordHash", "session", "auth"],
  authUserGrantRole: ["user", "role", "session", "auth"],
  authUserRevokeRole: ["user", "role", "session", "auth"],
  authRoleAdd: ["role", "session", "auth"],
  authRoleDelete: ["role", "session", "auth"],
  authRoleGrantPermission: ["role", "permission", "session", "auth"],
  authRoleRevokePermission: ["role", "key", "rangeEnd", "session", "auth"],
};

const memberIdField = (v: unknown, path: string): number => integer(v, path, 1, Number.MAX_SAFE_INTEGER);

function text(v: unknown, path: string): string {
  if (typeof v !== "string" || v.length > MEMBER_TEXT_LENGTH_MAX) {
    fail(path, `expected a string of at most ${MEMBER_TEXT_LENGTH_MAX} chars`);
  }
  return v;
}

function resourceName(v: unknown, path: string): string {
  if (typeof v !== "string") fail(path, "expected a string");
  const problem = resourceNameProblem(v);
  if (problem !== undefined) fail(path, problem);
  return v;
}

function counterName(v: unknown, path: string): string {
  if (typeof v !== "string") fail(path, "expected a string");
  const problem = counterNameProblem(v);
  if (problem !== undefined) fail(path, problem);
  return v;
}

function semaphoreName(v: unknown, path: string): string {
  if (typeof v !== "string") fail(path, "expected a string");
  const problem = semaphoreNameProblem(v);
  if (problem !== undefined) fail(path, problem);
  return v;
}

function permitsField(v: unknown, path: string): number {
  if (typeof v !== "number") fail(path, "expected a number");
  const problem = permitsProblem(v);
  if (problem !== undefined) fail(path, problem);
  return v;
}

/** Any int64, as a decimal string (counter values and deltas). */
const anyInt64 = (v: unknown, path: string): bigint => int64(v, path, INT64_MIN, INT64_MAX);

function holderName(v: unknown, path: string): string {
  if (typeof v !== "string") fail(path, "expected a string");
  const problem = holderProblem(v);
  if (problem !== undefined) fail(path, problem);
  return v;
}

function checkpointFromJson(v: unknown, path: string): CheckpointItem {
  const o = object(v, path, ["id", "remainingTtlSeconds", "grantIndex"]);
  return {
    id: required(o, "id", tableLease),
    remainingTtlSeconds: required(o, "remainingTtlSeconds", (x, p) =>
      integer(x, p, 0, MAX_LEASE_TTL_SECONDS),
    ),
    grantIndex: required(o, "grantIndex", natural),
  };
}

function expireFromJson(v: unknown, path: string): ExpireItem {
  const o = object(v, path, ["id", "grantIndex"]);
  return { id: required(o, "id", tableLease), grantIndex: required(o, "grantIndex", natural) };
}

/** Every field any command may have (computed once: decode is on the apply path). */
const HEAD_FIELDS: readonly string[] = ["v", "type", ...new Set(Object.values(COMMAND_FIELDS).flat())];

function commandFromJson(v: unknown): Command {
  const head = object(v, "$", HEAD_FIELDS);
  const version = required(head, "v", natural);
  if (version !== COMMAND_JSON_FORMAT_VERSION) fail("$.v", `unknown format version ${version}`);
  const type = required(head, "type", oneOf(COMMAND_TYPES));
  const o = object(v, "$", ["v", "type", ...COMMAND_FIELDS[type]]);
  const withSession = <C extends Command>(cmd: C): C => {
    const s = optional(o, "session", session);
    const a = optional(o, "auth", commandAuth);
    const withS = s === undefined ? cmd : { ...cmd, session: s };
    return a === undefined ? withS : { ...withS, auth: a };
  };
  switch (type) {
    case "put":
      return withSession({ type, request: required(o, "request", putFromJson) });
    case "deleteRange":
      return withSession({ type, request: required(o, "request", deleteFromJson) });
    case "txn":
      return withSession({ type, request: required(o, "request", txnFromJson(1)) });
    case "compact":
      return withSession({ type, revision: required(o, "revision", rev) });
    case "leaseGrant":
      return withSession({
        type,
        id: required(o, "id", tableLease),
        ttlSeconds: required(o, "ttlSeconds", anyInt),
      });
    case "leaseRevoke": {
      const grantIndex = optional(o, "grantIndex", natural);
      const id = required(o, "id", tableLease);
      return withSession(grantIndex === undefined ? { type, id } : { type, id, grantIndex });
    }
    case "acquire": {
      const lockDelaySeconds = optional(o, "lockDelaySeconds", (x, p) =>
        integer(x, p, 1, MAX_LEASE_TTL_SECONDS),
      );
      const cmd = {
        type,
        resource: required(o, "resource", resourceName),
        holder: required(o, "holder", holderName),
        id: required(o, "id", tableLease),
        ttlSeconds: required(o, "ttlSeconds", anyInt),
        wait: required(o, "wait", bool),
      } as const;
      return withSession(lockDelaySeconds === undefined ? cmd : { ...cmd, lockDelaySeconds });
    }
    case "release":
      return withSession({
        type,
        resource: required(o, "resource", resourceName),
        id: required(o, "id", tableLease),
        holder: required(o, "holder", holderName),
      });
    case "requestRelease":
      return withSession({
        type,
        resource: required(o, "resource", resourceName),
        requester: required(o, "requester", holderName),
        reason: required(o, "reason", (x, p) => {
          if (typeof x !== "string" || x.length > RELEASE_REASON_LENGTH_MAX)
            fail(p, `expected a string of at most ${RELEASE_REASON_LENGTH_MAX} chars`);
          return x;
        }),
        id: required(o, "id", tableLease),
        deadlineSeconds: required(o, "deadlineSeconds", anyInt),
      });
    case "forceRevoke":
      return withSession({
        type,
        resource: required(o, "resource", resourceName),
        id: required(o, "id", tableLease),
      });
    case "fencedPut":
      return withSession({
        type,
        resource: required(o, "resource", resourceName),
        token: required(o, "token", rev),
        request: required(o, "request", putFromJson),
      });
    case "counterAdd":
      return withSession({
        type,
        counter: required(o, "counter", counterName),
        delta: required(o, "delta", anyInt64),
      });
    case "counterCas":
      return withSession({
        type,
        counter: required(o, "counter", counterName),
        expected: required(o, "expected", anyInt64),
        value: required(o, "value", anyInt64),
      });
    case "semaphoreAcquire":
      return withSession({
        type,
        semaphore: required(o, "semaphore", semaphoreName),
        holder: required(o, "holder", holderName),
        id: required(o, "id", tableLease),
        ttlSeconds: required(o, "ttlSeconds", anyInt),
        permits: required(o, "permits", permitsField),
        wait: required(o, "wait", bool),
      });
    case "semaphoreRelease":
      return withSession({
        type,
        semaphore: required(o, "semaphore", semaphoreName),
        id: required(o, "id", tableLease),
        holder: required(o, "holder", holderName),
      });
    case "leaseCheckpoint":
      return {
        type,
        checkpoints: required(o, "checkpoints", list(MAX_CHECKPOINTS_PER_BATCH, checkpointFromJson)),
      };
    case "leaseExpire":
      return { type, leases: required(o, "leases", list(MAX_LEASES_PER_REVOKE_BATCH, expireFromJson)) };
    case "memberPublish":
      return {
        type,
        member: required(o, "member", memberIdField),
        name: required(o, "name", text),
        clientUrls: required(o, "clientUrls", list(MEMBER_URLS_MAX, text)),
      };
    case "memberUpdate":
      return {
        type,
        member: required(o, "member", memberIdField),
        peerUrls: required(o, "peerUrls", list(MEMBER_URLS_MAX, text)),
      };
    case "alarm":
      return {
        type,
        action: required(o, "action", oneOf(["activate", "deactivate"] as const)),
        member: required(o, "member", uint64),
        alarm: required(o, "alarm", oneOf(ALARM_TYPES)),
      };
    case "authEnable":
    case "authDisable":
    case "authenticate":
    case "authUserAdd":
    case "authUserDelete":
    case "authUserChangePassword":
    case "authUserGrantRole":
    case "authUserRevokeRole":
    case "authRoleAdd":
    case "authRoleDelete":
    case "authRoleGrantPermission":
    case "authRoleRevokePermission":
      return withSession(authCommandFromJson(type, o));
    default:
      return assertNever(type, "command type");
  }
}

// ---------------------------------------------------------------------------
// Auth commands.

/** A user or role name: any string up to AUTH_NAME_LENGTH_MAX (emptiness is the store's answer, as etcd's). */
function authName(v: unknown, path: string): string {
  if (typeof v !== "string" || v.length > AUTH_NAME_LENGTH_MAX) {
    fail(path, `expected a string of at most ${AUTH_NAME_LENGTH_MAX} chars`);
  }
  return v;
}

/** A password hash: printable text of the hash's alphabet (never a password: src/api/auth.ts hashes). */
function passwordHash(v: unknown, path: string): string {
  if (typeof v !== "string" || v.length > AUTH_PASSWORD_HASH_LENGTH_MAX || !/^[A-Za-z0-9+/=$.]+$/.test(v)) {
    fail(path, `expected hash text of at most ${AUTH_PASSWORD_HASH_LENGTH_MAX} chars`);
  }
  return v;
}

function tokenPrefix(v: unknown, path: string): string {
  if (typeof v !== "string" || !new RegExp(`^[A-Za-z]{${AUTH_TOKEN_PREFIX_LENGTH}}$`).test(v)) {
    fail(path, `expected ${AUTH_TOKEN_PREFIX_LENGTH} letters`);
  }
  return v;
}

const authRevision = (v: unknown, path: string): number => integer(v, path, 1, Number.MAX_SAFE_INTEGER);

function commandAuth(v: unknown, path: string): CommandAuth {
  const o = object(v, path, ["user", "revision"]);
  const user = required(o, "user", authName);
  if (user === "") fail(`${path}.user`, "expected a non-empty name");
  return { user, revision: required(o, "revision", authRevision) };
}

const PERMISSION_TYPES: readonly PermissionType[] = ["read", "write", "readwrite"];

function permission(v: unknown, path: string): Permission {
  const o = object(v, path, ["type", "key", "rangeEnd"]);
  return {
    type: required(o, "type", oneOf(PERMISSION_TYPES)),
    key: required(o, "key", bytes),
    rangeEnd: required(o, "rangeEnd", bytes),
  };
}

/** An auth command's own fields (session and auth are added by the caller). */
function authCommandFromJson(type: AuthCommand["type"], o: Obj): AuthCommand {
  switch (type) {
    case "authEnable":
    case "authDisable":
      return { type };
    case "authenticate":
      return {
        type,
        user: required(o, "user", authName),
        tokenPrefix: required(o, "tokenPrefix", tokenPrefix),
        authRevision: required(o, "authRevision", authRevision),
      };
    case "authUserAdd": {
      const user = required(o, "user", authName);
      const hash = optional(o, "passwordHash", passwordHash);
      return hash === undefined ? { type, user } : { type, user, passwordHash: hash };
    }
    case "authUserDelete":
      return { type, user: required(o, "user", authName) };
    case "authUserChangePassword":
      return {
        type,
        user: required(o, "user", authName),
        passwordHash: required(o, "passwordHash", passwordHash),
      };
    case "authUserGrantRole":
    case "authUserRevokeRole":
      return { type, user: required(o, "user", authName), role: required(o, "role", authName) };
    case "authRoleAdd":
    case "authRoleDelete":
      return { type, role: required(o, "role", authName) };
    case "authRoleGrantPermission": {
      const role = required(o, "role", authName);
      const perm = optional(o, "permission", permission);
      return perm === undefined ? { type, role } : { type, role, permission: perm };
    }
    case "authRoleRevokePermission":
      return {
        type,
        role: required(o, "role", authName),
        key: required(o, "key", bytes),
        rangeEnd: required(o, "rangeEnd", bytes),
      };
    default:
      return assertNever(type, "auth command type");
  }
}
