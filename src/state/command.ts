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
 * - `auth` (the caller and the auth revision it was identified at, etcd's
 *   request header) rides on client commands, never on `authenticate` nor on
 *   the leader's own; apply checks the command's rights for it (auth.ts).
 * - `session` rides on client commands only. Leader-made commands
 *   (`leaseCheckpoint`, `leaseExpire`, and a `leaseRevoke` with `grantIndex`)
 *   are idempotent by themselves: they name the lease incarnation, and a second
 *   application finds nothing to do.
 */

import { assertNever } from "../raft/index.ts";
import type { AlarmType } from "./alarm.ts";
import { ALARM_TYPES, MAX_ALARM_MEMBER_ID } from "./alarm.ts";
import type { Permission, PermissionType } from "./auth.ts";
import { AUTH_TOKEN_PREFIX_LENGTH } from "./auth.ts";
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
  | AuthCommandBase<{ readonly type: "authEnable" }>
  | AuthCommandBase<{ readonly type: "authDisable" }>
  /** etcd InternalAuthenticateRequest: the token is `tokenPrefix.index`; `authRevision`: when the password was checked. */
  | {
      readonly type: "authenticate";
      readonly user: string;
      readonly tokenPrefix: string;
      readonly authRevision: number;
      readonly session?: ClientSession | undefined;
    }
  /** `passwordHash` undefined: etcd's no_password option. */
  | AuthCommandBase<{
      readonly type: "authUserAdd";
      readonly user: string;
      readonly passwordHash?: string | undefined;
    }>
  | AuthCommandBase<{ readonly type: "authUserDelete"; readonly user: string }>
  | AuthCommandBase<{
      readonly type: "authUserChangePassword";
      readonly user: string;
      readonly passwordHash: string;
    }>
  | AuthCommandBase<{ readonly type: "authUserGrantRole"; readonly user: string; readonly role: string }>
  | AuthCommandBase<{ readonly type: "authUserRevokeRole"; readonly user: string; readonly role: string }>
  | AuthCommandBase<{ readonly type: "authRoleAdd"; readonly role: string }>
  | AuthCommandBase<{ readonly type: "authRoleDelete"; readonly role: string }>
  /** `permission` undefined: the request gave none (etcd answers "permission not given"). */
  | AuthCommandBase<{
      readonly type: "authRoleGrantPermission";
      readonly role: string;
      readonly permission?: Permission | undefined;
    }>
  | AuthCommandBase<{
      readonly type: "authRoleRevokePermission";
      readonly role: string;
      readonly key: Uint8Array;
      readonly rangeEnd: Uint8Array;
    }>;

/** An auth management command: a session and the caller (who must be root while auth is on). */
type AuthCommandBase<T> = T & {
  readonly session?: ClientSession | undefined;
  readonly auth?: CommandAuth | undefined;
};

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
];

/** Fields of each command type besides v, type (and session for client commands). */
const COMMAND_FIELDS: Readonly<Record<CommandType, readonly string[]>> = {
  put: ["request", "session", "auth"],
  deleteRange: ["request", "session", "auth"],
  txn: ["request", "session", "auth"],
  compact: ["revision", "session", "auth"],
  leaseGrant: ["id", "ttlSeconds", "session", "auth"],
  leaseRevoke: ["id", "grantIndex", "session", "auth"],
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
