/**
 * The commands of the replicated state machine: what one Raft entry carries,
 * and its codec. The API layer builds a `Command` from a client request (or
 * the leader from its lease duties), `encodeCommand` turns it into entry
 * data, and every replica's `StateMachine.apply` decodes it again.
 *
 * Wire format (version 1): UTF-8 JSON, one object per entry, `{"v":1,"type":…}`
 * plus the command's fields. Bytes are standard padded base64 (bytes.ts),
 * int64 values (lease ids) are decimal strings, revisions and TTLs are JSON
 * numbers (safe integers). Fields absent from the TypeScript value are absent
 * from the JSON; present ones are written as they are, so
 * `decodeCommand(encodeCommand(c))` equals `c`.
 *
 * Contract:
 * - Decoding validates everything apply relies on (CONVENTIONS 9): JSON and
 *   UTF-8 well-formed, known type and version, no unknown fields, field types,
 *   integer ranges (lease ids 0 ≤ id < 2^63 where a lease is named, any int64
 *   in a put or a compare), list sizes (batch limits of lessor.ts), txn
 *   nesting depth, session shape. Anything else fails with a
 *   `CommandDecodeError` (stable code "COMMAND_DECODE") naming the field; it
 *   never fails an assertion, so garbage in the log cannot stop a member.
 * - Semantic checks (empty keys, too many txn ops, duplicate keys, unknown
 *   leases) are NOT codec errors: MvccStore / LeaseTable answer them as
 *   outcomes, as etcd does.
 * - `session` rides on client commands only. Leader-made commands
 *   (`leaseCheckpoint`, `leaseExpire`, and a `leaseRevoke` with `grantIndex`)
 *   are idempotent by themselves: they name the lease incarnation, and a second
 *   application finds nothing to do.
 */

import { assertNever } from "../raft/index.ts";
import { base64ToBytes, bytesToBase64 } from "./bytes.ts";
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
import type { LeaseId, Revision } from "./types.ts";
import { leaseId, revision } from "./types.ts";

/** The wire format version written by encodeCommand. */
export const COMMAND_FORMAT_VERSION = 1;
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
  | { readonly type: "put"; readonly request: PutRequest; readonly session?: ClientSession | undefined }
  | {
      readonly type: "deleteRange";
      readonly request: DeleteRangeRequest;
      readonly session?: ClientSession | undefined;
    }
  | { readonly type: "txn"; readonly request: TxnRequest; readonly session?: ClientSession | undefined }
  /** etcd Compaction at `revision`. */
  | { readonly type: "compact"; readonly revision: Revision; readonly session?: ClientSession | undefined }
  /** etcd LeaseGrant; id 0 lets the table choose one from the entry's index. */
  | {
      readonly type: "leaseGrant";
      readonly id: LeaseId;
      readonly ttlSeconds: number;
      readonly session?: ClientSession | undefined;
    }
  /** etcd LeaseRevoke (no grantIndex), or the leader revoking one expired incarnation (grantIndex set). */
  | {
      readonly type: "leaseRevoke";
      readonly id: LeaseId;
      readonly grantIndex?: number | undefined;
      readonly session?: ClientSession | undefined;
    }
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
  | { readonly type: "memberUpdate"; readonly member: number; readonly peerUrls: readonly string[] };

/** The commands a client sends, which may carry a session. */
export type ClientCommand = Exclude<
  Command,
  { readonly type: "leaseCheckpoint" | "leaseExpire" | "memberPublish" | "memberUpdate" }
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

type Json = string | number | boolean | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** Entry data for `cmd`. */
export function encodeCommand(cmd: Command): Uint8Array {
  return encoder.encode(JSON.stringify(commandToJson(cmd)));
}

function commandToJson(cmd: Command): JsonObject {
  const o: JsonObject = { v: COMMAND_FORMAT_VERSION, type: cmd.type };
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
    default:
      return assertNever(cmd, "command");
  }
  if (cmd.session !== undefined) o.session = { clientId: cmd.session.clientId, seq: cmd.session.seq };
  return o;
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

/** Decodes entry data; throws CommandDecodeError on anything malformed. */
export function decodeCommand(data: Uint8Array): Command {
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

/** decodeCommand as a value: never throws for malformed data. */
export function tryDecodeCommand(data: Uint8Array): DecodeOutcome {
  try {
    return { ok: true, command: decodeCommand(data) };
  } catch (e) {
    if (e instanceof CommandDecodeError) return { ok: false, error: e };
    throw e;
  }
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

const SORT_ORDERS: readonly SortOrder[] = ["none", "ascend", "descend"];
const SORT_TARGETS: readonly SortTarget[] = ["key", "version", "create", "mod", "value"];
const COMPARE_RESULTS: readonly CompareResult[] = ["equal", "notEqual", "greater", "less"];

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
];

/** Fields of each command type besides v, type (and session for client commands). */
const COMMAND_FIELDS: Readonly<Record<CommandType, readonly string[]>> = {
  put: ["request", "session"],
  deleteRange: ["request", "session"],
  txn: ["request", "session"],
  compact: ["revision", "session"],
  leaseGrant: ["id", "ttlSeconds", "session"],
  leaseRevoke: ["id", "grantIndex", "session"],
  leaseCheckpoint: ["checkpoints"],
  leaseExpire: ["leases"],
  memberPublish: ["member", "name", "clientUrls"],
  memberUpdate: ["member", "peerUrls"],
};

const memberIdField = (v: unknown, path: string): number => integer(v, path, 1, Number.MAX_SAFE_INTEGER);

function text(v: unknown, path: string): string {
  if (typeof v !== "string" || v.length > MEMBER_TEXT_LENGTH_MAX) {
    fail(path, `expected a string of at most ${MEMBER_TEXT_LENGTH_MAX} chars`);
  }
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
  if (version !== COMMAND_FORMAT_VERSION) fail("$.v", `unknown format version ${version}`);
  const type = required(head, "type", oneOf(COMMAND_TYPES));
  const o = object(v, "$", ["v", "type", ...COMMAND_FIELDS[type]]);
  const withSession = <C extends Command>(cmd: C): C => {
    const s = optional(o, "session", session);
    return s === undefined ? cmd : { ...cmd, session: s };
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
    default:
      return assertNever(type, "command type");
  }
}
