/**
 * The shared part of the bad-input fuzz tests (issue 5 §3: grpc-fuzz.test.ts
 * and gateway-fuzz.test.ts): the state both servers are seeded with, the
 * fast-check arbitraries of invalid requests (each with the answer etcd 3.4
 * gives it), a gRPC client that turns every outcome into an `Answer` (never a
 * throw, never without a deadline), the judge that compares an answer with
 * the expected one, the state fingerprint taken before and after a run, and
 * the malformed JSON-gateway requests (`gatewayCases`: each built from a body
 * that changes no state, whatever a server makes of it; judged by comparing
 * with etcd's gateway, GATEWAY_DEVIATIONS listing the known differences).
 *
 * Contract:
 * - Every generated request is INVALID or read-only: on a correct server it
 *   changes no state (no key, lease, revision, member, user, role or alarm),
 *   so the fingerprint after a run equals the one before. Each case carries
 *   exactly one fault, so the expected answer is etcd's for that fault (the
 *   check order of etcd 3.4's v3rpc/key.go, apply.go and lessor.go does not
 *   matter). Where a write could slip through (e.g. a txn whose fault is on
 *   a branch not taken), the case is built so it cannot.
 * - `etcd` in a case is what etcd 3.4 answers (3.4.23, Debian's build, checked
 *   by running the same cases against it; `oneOf` where a later 3.4 patch
 *   release answers differently). `deviation`, where set, is leasehold's
 *   documented different answer (DEVIATIONS says why); both are accepted from
 *   leasehold. `etcdCrashes` marks requests that make etcd 3.4 panic (never
 *   sent to it).
 * - Never accepted from leasehold, whatever the case: no answer within the
 *   deadline (a hang), "etcdserver: internal error", or "Error serializing
 *   response" (an answer the server could not encode after doing the work).
 * - The seeded state is fixed (SEED_STEPS); the revisions it yields are
 *   asserted (SEEDED), so cases can name future and compacted revisions.
 */

import {
  type Client,
  credentials,
  Client as GrpcClient,
  Metadata,
  type MethodDefinition,
  status,
} from "@grpc/grpc-js";
import fc from "fast-check";
import {
  type EtcdErrorName,
  etcdErrorByMessage,
  etcdErrorSpec,
  WATCH_CANCEL_REASONS,
} from "../../src/api/errors.ts";
import { type EtcdServiceName, loadEtcdApi, type WireMessage } from "../../src/api/proto.ts";

type W = WireMessage;

// ------------------------------------------------------------------ constants

/** The fuzz seed: fixed, so a failure reproduces; LEASEHOLD_FUZZ_SEED overrides it. */
export const FUZZ_SEED: number = Number(process.env.LEASEHOLD_FUZZ_SEED ?? 0x5eed5);
/** How long any one call may take before it counts as a hang. */
export const CALL_DEADLINE_MS = 5_000;

export const INT64_MAX = 2n ** 63n - 1n;
export const INT64_MIN = -(2n ** 63n);
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);
/** etcd's --max-request-bytes default (1.5 MiB) and grpc's receive limit (that plus 512 KiB). */
export const REQUEST_BYTES_MAX = 1_572_864;
export const GRPC_MESSAGE_BYTES_MAX = REQUEST_BYTES_MAX + 512 * 1024;
/** etcd's --max-txn-ops default. */
export const TXN_OPS_MAX = 128;
/** lease.MaxLeaseTTL: 9,000,000,000 seconds. */
export const LEASE_TTL_MAX = 9_000_000_000n;

/** Keys written by cases that must fail live under this prefix. */
export const FUZZ_PREFIX = "fuzz/";
/** Never written: ranges here are empty, puts with ignore_value here fail. */
export const ABSENT_PREFIX = "absent/";

const B = (s: string): Buffer => Buffer.from(s);

// ------------------------------------------------------------------ the seeded state

/** One step of the seeding, run in order against a fresh server (revision 1). */
export type SeedStep =
  | { readonly op: "put"; readonly key: string; readonly value: Buffer; readonly lease?: bigint }
  | { readonly op: "delete"; readonly key: string }
  | { readonly op: "compact"; readonly revision: number }
  | { readonly op: "grant"; readonly id: bigint; readonly ttlSeconds: number };

/** The seeded lease (long enough never to expire during a test). */
export const SEED_LEASE_ID = 7_777_777n;

/** Keys with history, a compaction, a lease with a key, binary bytes and a tombstone. */
export const SEED_STEPS: readonly SeedStep[] = [
  { op: "put", key: "seed/a", value: B("1") }, // rev 2
  { op: "put", key: "seed/a", value: B("2") }, // rev 3
  { op: "put", key: "seed/a", value: B("3") }, // rev 4
  { op: "put", key: "seed/b", value: B("x") }, // rev 5
  { op: "compact", revision: 4 },
  { op: "grant", id: SEED_LEASE_ID, ttlSeconds: 3600 },
  { op: "put", key: "seed/leased", value: B("v"), lease: SEED_LEASE_ID }, // rev 6
  { op: "put", key: "seed/c", value: Buffer.from([0, 0xff]) }, // rev 7
  { op: "delete", key: "seed/b" }, // rev 8
];

/** What the seeding leaves, on etcd and on leasehold alike. */
export const SEEDED = { revision: 8, compactRevision: 4, leaseId: SEED_LEASE_ID } as const;

/** What the arbitraries need to know about the server under test. */
export interface World {
  readonly revision: number;
  readonly compactRevision: number;
  readonly leaseId: bigint;
  /** The cluster's member ids (never picked as "unknown"). */
  readonly memberIds: readonly bigint[];
}

// etcd Compare.CompareTarget and CompareResult numbers.
const VERSION = 0;
const CREATE = 1;
const MOD = 2;
const VALUE = 3;
const LEASE = 4;
const EQUAL = 0;
const GREATER = 1;
const LESS = 2;
const NOT_EQUAL = 3;

/** Compares that hold on the seeded state (so a txn made of them takes its success branch). */
function trueCompares(world: World): W[] {
  return [
    { key: B("seed/a"), target: VERSION, result: EQUAL, version: "3" },
    { key: B("seed/a"), target: CREATE, result: EQUAL, create_revision: "2" },
    { key: B("seed/a"), target: MOD, result: LESS, mod_revision: "100" },
    { key: B("seed/a"), target: VERSION, result: GREATER, version: "1" },
    { key: B("seed/c"), target: VALUE, result: EQUAL, value: Buffer.from([0, 0xff]) },
    { key: B("seed/a"), target: VALUE, result: NOT_EQUAL, value: B("9") },
    { key: B("seed/leased"), target: LEASE, result: EQUAL, lease: world.leaseId.toString() },
    { key: B(ABSENT_PREFIX), range_end: B("absent0"), target: VERSION, result: EQUAL, version: "0" },
    { key: B("seed/b"), target: CREATE, result: EQUAL, create_revision: "0" },
  ];
}

/** Compares that fail on the seeded state. */
function falseCompares(world: World): W[] {
  return [
    { key: B("seed/a"), target: VERSION, result: EQUAL, version: "7" },
    { key: B("seed/a"), target: VALUE, result: EQUAL, value: B("nope") },
    { key: B("seed/leased"), target: LEASE, result: NOT_EQUAL, lease: world.leaseId.toString() },
  ];
}

// ------------------------------------------------------------------ answers and expectations

/** What a server did with one call. */
export type Answer =
  | { readonly kind: "ok"; readonly response: W }
  | { readonly kind: "error"; readonly code: number; readonly message: string }
  /** A stream: the messages received, and how it ended if it did. */
  | {
      readonly kind: "stream";
      readonly responses: readonly W[];
      readonly end?: { readonly code: number; readonly message: string };
    }
  /** No answer within the deadline. */
  | { readonly kind: "hang"; readonly detail: string };

/** What a case expects (from etcd, or from leasehold where it deviates). */
export type Expected =
  /** A catalogued etcd error; `code` overrides the catalogue's (Lock and Election send Unknown). */
  | { readonly kind: "error"; readonly name: EtcdErrorName; readonly code?: number }
  /** A gRPC-level error (grpc-go and grpc-js word them differently: `text` matches both). */
  | { readonly kind: "grpc"; readonly code: number; readonly text: RegExp }
  /** A success; `check` says what must hold of the response. */
  | { readonly kind: "ok"; readonly check?: (r: W) => string | undefined }
  | { readonly kind: "watchCreated" }
  | { readonly kind: "watchRefused"; readonly reason: string }
  /** Created, then canceled with compact_revision set (a start below the compaction). */
  | { readonly kind: "watchCompacted"; readonly compactRevision: number }
  /** A keepalive of an unknown lease: TTL 0 for that id. */
  | { readonly kind: "keepAliveUnknown"; readonly id: string }
  /** Random bytes: any clear answer (a success, a catalogued error, a parse error). */
  | { readonly kind: "clear" }
  /** Any of these (etcd 3.4 patch releases that answer differently). */
  | { readonly kind: "oneOf"; readonly options: readonly Expected[] };

/** Why leasehold may answer differently from etcd 3.4.23, by id (the report lists each). */
export const DEVIATIONS = {
  readOnlyTxnSize:
    "a read-only txn over 1.5 MiB: leasehold 'request is too large' (every txn is a log entry); etcd serves it",
  invalidToken:
    "a request with a token nobody issued while auth is disabled: etcd refuses it ('invalid auth token'); " +
    "leasehold ignores the token",
  unknownPermType:
    "RoleGrantPermission with an unknown perm type: leasehold 'invalid auth management' (it checks the enum); " +
    "etcd takes any number and answers for the role ('role name not found' here)",
} as const;

export type DeviationId = keyof typeof DEVIATIONS;

/** One gRPC call to make. */
export type GrpcCall =
  | {
      readonly kind: "unary";
      readonly service: EtcdServiceName;
      readonly method: string;
      readonly request: W;
      /** gRPC metadata to send (e.g. an auth token). */
      readonly metadata?: Readonly<Record<string, string>>;
    }
  /** `bytes` sent as the message body of unary method `path`. */
  | { readonly kind: "raw"; readonly path: string; readonly bytes: Buffer }
  /** `bytes` sent as one message on bidi stream `path`. */
  | { readonly kind: "rawStream"; readonly path: string; readonly bytes: Buffer }
  /** One request on a fresh Watch stream; the first `count` responses are collected. */
  | { readonly kind: "watch"; readonly request: W; readonly count: number }
  | { readonly kind: "keepAlive"; readonly id: string };

export interface GrpcCase {
  /** The arm that made it, e.g. "Put: empty key". */
  readonly label: string;
  readonly call: GrpcCall;
  readonly etcd: Expected;
  readonly deviation?: { readonly id: DeviationId; readonly expected: Expected };
  readonly etcdCrashes?: true;
}

/** Undefined if `answer` is what `expected` says, else why not. */
export function judge(answer: Answer, expected: Expected): string | undefined {
  if (answer.kind === "hang") return `no answer: ${answer.detail}`;
  switch (expected.kind) {
    case "error": {
      const spec = etcdErrorSpec(expected.name);
      const code = expected.code ?? spec.code;
      if (answer.kind !== "error") return `expected ${expected.name}, got ${describeAnswer(answer)}`;
      if (answer.code !== code || answer.message !== spec.message)
        return `expected ${expected.name} (${code} ${spec.message}), got ${describeAnswer(answer)}`;
      return undefined;
    }
    case "grpc": {
      const got = answer.kind === "error" ? answer : answer.kind === "stream" ? answer.end : undefined;
      if (got === undefined || got.code !== expected.code || !expected.text.test(got.message))
        return `expected gRPC ${status[expected.code]} ${expected.text}, got ${describeAnswer(answer)}`;
      return undefined;
    }
    case "ok":
      if (answer.kind !== "ok") return `expected success, got ${describeAnswer(answer)}`;
      return expected.check?.(answer.response);
    case "clear":
      return clearAnswer(answer);
    case "oneOf": {
      const misses = expected.options.map((o) => judge(answer, o));
      return misses.includes(undefined) ? undefined : misses.join("; or ");
    }
    case "watchCreated":
    case "watchRefused":
    case "watchCompacted":
      return judgeWatch(answer, expected);
    case "keepAliveUnknown": {
      const first = answer.kind === "stream" ? answer.responses[0] : undefined;
      if (first === undefined || first.TTL !== "0" || first.ID !== expected.id)
        return `expected {ID: ${expected.id}, TTL: 0}, got ${describeAnswer(answer)}`;
      return undefined;
    }
  }
}

function judgeWatch(
  answer: Answer,
  expected: Extract<Expected, { kind: "watchCreated" | "watchRefused" | "watchCompacted" }>,
): string | undefined {
  const rs = answer.kind === "stream" ? answer.responses : [];
  const [first, second] = rs;
  const bad = `expected ${expected.kind}, got ${describeAnswer(answer)}`;
  if (first === undefined || first.created !== true) return bad;
  switch (expected.kind) {
    case "watchCreated":
      return first.canceled === false && BigInt(String(first.watch_id)) >= 0n ? undefined : bad;
    case "watchRefused":
      return first.canceled === true && first.watch_id === "-1" && first.cancel_reason === expected.reason
        ? undefined
        : bad;
    case "watchCompacted":
      return first.canceled === false &&
        second?.canceled === true &&
        second.compact_revision === String(expected.compactRevision)
        ? undefined
        : bad;
  }
}

/** Any answer that says clearly what happened; a hang or a server fault is not. */
function clearAnswer(answer: Answer): string | undefined {
  if (answer.kind === "ok") return undefined;
  const e = answer.kind === "error" ? answer : answer.kind === "stream" ? answer.end : undefined;
  if (e === undefined) return undefined;
  if (etcdErrorByMessage(e.message) !== undefined && e.message !== "etcdserver: internal error")
    return undefined;
  if (e.code === status.INTERNAL && PARSE_ERROR.test(e.message)) return undefined;
  return `not a clear answer: ${describeAnswer(answer)}`;
}

/** grpc-js ("Error deserializing request") and grpc-go ("grpc: error unmarshalling request: …"). */
export const PARSE_ERROR = /deserializ|unmarshal/i;
/** grpc-js ("Received message larger than max (N vs M)") and grpc-go ("grpc: received message …"). */
export const TOO_BIG_ERROR = /received message larger than max/i;

/** Why an answer from leasehold is never acceptable, whatever the case; undefined if it is not one of those. */
export function serverFault(answer: Answer): string | undefined {
  if (answer.kind === "hang") return `hang: ${answer.detail}`;
  const e = answer.kind === "error" ? answer : answer.kind === "stream" ? answer.end : undefined;
  if (e === undefined) return undefined;
  if (e.message === "etcdserver: internal error") return "internal error";
  if (/serializing response/i.test(e.message)) return "could not encode its own response";
  return undefined;
}

/** One line for reports. */
export function describeAnswer(answer: Answer): string {
  switch (answer.kind) {
    case "ok":
      return `OK ${truncate(stringify(answer.response), 160)}`;
    case "error":
      return `${status[answer.code] ?? answer.code} "${answer.message}"`;
    case "stream": {
      const rs = answer.responses.map((r) => truncate(stringify(r), 120)).join(" | ");
      const end = answer.end === undefined ? "" : ` then ${status[answer.end.code]} "${answer.end.message}"`;
      return `stream [${rs}]${end}`;
    }
    case "hang":
      return `HANG (${answer.detail})`;
  }
}

/** A request or response as JSON, with buffers as short text or length. */
export function stringify(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === "bigint") return x.toString();
    if (x !== null && typeof x === "object" && (x as { type?: unknown }).type === "Buffer") {
      const data = Buffer.from((x as { data: number[] }).data);
      return data.length > 48 ? `<${data.length} bytes>` : data.toString("latin1");
    }
    return x;
  });
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n)}…(${s.length} chars)`;
}

// ------------------------------------------------------------------ the gRPC client

const api = loadEtcdApi();

/** Call options of every client: no client-side limit on what is sent or received. */
const CHANNEL_OPTIONS = {
  "grpc.max_send_message_length": -1,
  "grpc.max_receive_message_length": -1,
  // Its own connection: one file's fuzz never shares a channel with another test's client.
  "grpc.use_local_subchannel_pool": 1,
};

const passThrough = (b: Buffer): Buffer => b;

/** A gRPC client of one server that answers every call with an `Answer`. */
export class GrpcTarget {
  private readonly client: Client;

  constructor(
    readonly name: string,
    readonly endpoint: string,
  ) {
    this.client = new GrpcClient(endpoint, credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  close(): void {
    this.client.close();
  }

  call(c: GrpcCall): Promise<Answer> {
    switch (c.kind) {
      case "unary":
        return this.unary(c.service, c.method, c.request, c.metadata);
      case "raw":
        return this.rawUnary(c.path, c.bytes);
      case "rawStream":
        return this.stream(c.path, [c.bytes], 1, true);
      case "watch":
        return this.stream("/etcdserverpb.Watch/Watch", [c.request], c.count, false);
      case "keepAlive":
        return this.stream("/etcdserverpb.Lease/LeaseKeepAlive", [{ ID: c.id }], 1, false);
    }
  }

  unary(
    service: EtcdServiceName,
    method: string,
    request: W,
    metadata: Readonly<Record<string, string>> = {},
  ): Promise<Answer> {
    const def = methodDefinition(service, method);
    const md = new Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request,
        md,
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (err, res) => resolve(err ? errorAnswer(err) : { kind: "ok", response: res ?? {} }),
      );
    });
  }

  /** A unary call whose request is `bytes` as they are; a success answers the byte count. */
  rawUnary(path: string, bytes: Buffer): Promise<Answer> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        path,
        passThrough,
        passThrough,
        bytes,
        new Metadata(),
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (err, res) => resolve(err ? errorAnswer(err) : { kind: "ok", response: { bytes: res?.length ?? 0 } }),
      );
    });
  }

  /**
   * Opens bidi stream `path`, writes `messages`, and collects responses until
   * `count` arrived (then cancels), the server ends it, or the deadline.
   */
  private stream(
    path: string,
    messages: readonly (W | Buffer)[],
    count: number,
    raw: boolean,
  ): Promise<Answer> {
    const def = raw ? undefined : streamDefinition(path);
    return new Promise((resolve) => {
      const call = this.client.makeBidiStreamRequest<W | Buffer, W | Buffer>(
        path,
        def ? (m) => def.requestSerialize(m as W) : (m) => m as Buffer,
        def ? (b) => def.responseDeserialize(b) : passThrough,
        new Metadata(),
        { deadline: Date.now() + CALL_DEADLINE_MS },
      );
      const responses: W[] = [];
      let done = false;
      const finish = (a: Answer): void => {
        if (done) return;
        done = true;
        call.cancel();
        resolve(a);
      };
      call.on("data", (m: W | Buffer) => {
        responses.push(Buffer.isBuffer(m) ? { bytes: m.length } : m);
        if (responses.length >= count) finish({ kind: "stream", responses });
      });
      call.on("error", (e: Error & { code?: number; details?: string }) => {
        if (e.code === status.DEADLINE_EXCEEDED)
          finish({
            kind: "hang",
            detail: `${responses.length} of ${count} responses within ${CALL_DEADLINE_MS} ms`,
          });
        else
          finish({ kind: "stream", responses, end: { code: e.code ?? -1, message: e.details ?? e.message } });
      });
      call.on("end", () => finish({ kind: "stream", responses, end: { code: status.OK, message: "" } }));
      for (const m of messages) call.write(m);
    });
  }
}

function methodDefinition(service: EtcdServiceName, method: string): MethodDefinition<W, W> {
  const def = (api.services[service] as Readonly<Record<string, MethodDefinition<W, W>>>)[method];
  if (def === undefined) throw new Error(`no method ${service}.${method}`);
  return def;
}

function streamDefinition(path: string): MethodDefinition<W, W> {
  const [, service, method] = /^\/[a-z0-9]+\.([A-Za-z]+)\/([A-Za-z]+)$/.exec(path) ?? [];
  return methodDefinition(service as EtcdServiceName, method ?? "");
}

function errorAnswer(err: Error & { code?: number; details?: string }): Answer {
  if (err.code === status.DEADLINE_EXCEEDED)
    return { kind: "hang", detail: `deadline ${CALL_DEADLINE_MS} ms` };
  return { kind: "error", code: err.code ?? -1, message: err.details ?? err.message };
}

/** The response of a unary call that must succeed (seeding, fingerprints). */
export async function mustOk(
  t: GrpcTarget,
  service: EtcdServiceName,
  method: string,
  request: W,
): Promise<W> {
  const a = await t.unary(service, method, request);
  if (a.kind !== "ok")
    throw new Error(`${t.name}: ${service}.${method} ${stringify(request)}: ${describeAnswer(a)}`);
  return a.response;
}

// ------------------------------------------------------------------ seeding and the fingerprint

/** Runs SEED_STEPS against a fresh server and returns its World (throws if revisions differ from SEEDED). */
export async function seed(t: GrpcTarget): Promise<World> {
  await waitPublished(t);
  for (const s of SEED_STEPS) {
    switch (s.op) {
      case "put":
        await mustOk(t, "KV", "Put", { key: B(s.key), value: s.value, lease: (s.lease ?? 0n).toString() });
        break;
      case "delete":
        await mustOk(t, "KV", "DeleteRange", { key: B(s.key) });
        break;
      case "compact":
        await mustOk(t, "KV", "Compact", { revision: String(s.revision), physical: true });
        break;
      case "grant":
        await mustOk(t, "Lease", "LeaseGrant", { ID: s.id.toString(), TTL: String(s.ttlSeconds) });
        break;
    }
  }
  const hkv = await mustOk(t, "Maintenance", "HashKV", { revision: "0" });
  const revision = Number((hkv.header as W).revision);
  const compactRevision = Number(hkv.compact_revision);
  if (revision !== SEEDED.revision || compactRevision !== SEEDED.compactRevision)
    throw new Error(
      `${t.name}: seeding left revision ${revision}, compacted ${compactRevision}; ` +
        `expected ${SEEDED.revision}, ${SEEDED.compactRevision}`,
    );
  const members = await mustOk(t, "Cluster", "MemberList", {});
  const memberIds = (members.members as W[]).map((m) => BigInt(String(m.ID)));
  return { revision, compactRevision, leaseId: SEED_LEASE_ID, memberIds };
}

/** How long a fresh member may take to publish its client URLs. */
const PUBLISH_WAIT_MS = 10_000;
/** Pause between two MemberList polls while waiting for that. */
const PUBLISH_POLL_MS = 20;

/**
 * Waits until every member's client URLs are in the member list: a fresh
 * member publishes them through Raft shortly after it starts serving, which
 * changes the replicated state (so it must happen before a fingerprint).
 * Polls MemberList (a real answer), bounded.
 */
async function waitPublished(t: GrpcTarget): Promise<void> {
  const deadline = Date.now() + PUBLISH_WAIT_MS;
  for (;;) {
    const members = (await mustOk(t, "Cluster", "MemberList", {})).members as W[];
    if (members.every((m) => Array.isArray(m.clientURLs) && m.clientURLs.length > 0)) return;
    if (Date.now() > deadline)
      throw new Error(`${t.name}: members did not publish client URLs: ${stringify(members)}`);
    await new Promise((resolve) => setTimeout(resolve, PUBLISH_POLL_MS));
  }
}

/**
 * Everything an invalid request could damage, as plain data: HashKV at the
 * current revision (hash, compacted revision), the current revision, every
 * key with its revisions, version and lease, every lease with its granted
 * TTL and keys, the members, users, roles and alarms; with `wholeHash`, also
 * Maintenance.Hash (leasehold's covers the whole replicated state; etcd's
 * covers its bbolt file, which every applied entry changes, so not for etcd).
 */
export async function fingerprint(t: GrpcTarget, options: { wholeHash: boolean }): Promise<W> {
  const hkv = await mustOk(t, "Maintenance", "HashKV", { revision: "0" });
  const range = await mustOk(t, "KV", "Range", { key: Buffer.of(0), range_end: Buffer.of(0) });
  const kvs = (range.kvs as W[]).map((kv) =>
    stringify({
      key: (kv.key as Buffer).toString("hex"),
      value: (kv.value as Buffer).toString("hex"),
      create: kv.create_revision,
      mod: kv.mod_revision,
      version: kv.version,
      lease: kv.lease,
    }),
  );
  const leaseList = await mustOk(t, "Lease", "LeaseLeases", {});
  const leases: string[] = [];
  for (const l of leaseList.leases as W[]) {
    const ttl = await mustOk(t, "Lease", "LeaseTimeToLive", { ID: l.ID, keys: true });
    leases.push(
      stringify({
        id: l.ID,
        granted: ttl.grantedTTL,
        keys: (ttl.keys as Buffer[]).map((k) => k.toString("hex")),
      }),
    );
  }
  const members = (await mustOk(t, "Cluster", "MemberList", {})).members as W[];
  const users = (await mustOk(t, "Auth", "UserList", {})).users;
  const roles = (await mustOk(t, "Auth", "RoleList", {})).roles;
  const alarms = (await mustOk(t, "Maintenance", "Alarm", { action: 0 })).alarms;
  const out: W = {
    revision: (hkv.header as W).revision,
    rangeRevision: (range.header as W).revision,
    hashKv: hkv.hash,
    compactRevision: hkv.compact_revision,
    kvs,
    leases: leases.sort(),
    members: members.map((m) =>
      stringify({ id: m.ID, name: m.name, peers: m.peerURLs, clients: m.clientURLs, learner: m.isLearner }),
    ),
    users,
    roles,
    alarms: stringify(alarms),
  };
  if (options.wholeHash) out.hash = (await mustOk(t, "Maintenance", "Hash", {})).hash;
  return out;
}

// ------------------------------------------------------------------ small arbitraries

const buf = (minLength: number, maxLength: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength, maxLength }).map((a) => Buffer.from(a));
const prefixed = (prefix: string, a: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> =>
  a.map((b) => Buffer.concat([B(prefix), b]));

/** Any non-empty key (reads only). */
const anyKey = buf(1, 24);
/** A key for a write that must fail. */
const fuzzKey = prefixed(FUZZ_PREFIX, buf(0, 16));
/** A key nobody wrote. */
const absentKey = prefixed(ABSENT_PREFIX, buf(0, 16));
const smallValue = buf(0, 32);
const dec = (a: fc.Arbitrary<bigint>): fc.Arbitrary<string> => a.map((n) => n.toString());
const bigIn = (min: bigint, max: bigint): fc.Arbitrary<bigint> => fc.bigInt({ min, max });
/** A negative int64 within ±2^53 (what every server handles as a number). */
const negativeSafe = dec(bigIn(-SAFE_MAX, -1n));
/** An int64 beyond ±2^53, either sign. */
const beyondSafe = dec(fc.oneof(bigIn(SAFE_MAX + 1n, INT64_MAX), bigIn(INT64_MIN, -SAFE_MAX - 1n)));
const int32Outside = (maxValid: number): fc.Arbitrary<number> =>
  fc.oneof(fc.integer({ min: maxValid + 1, max: 2 ** 31 - 1 }), fc.integer({ min: -(2 ** 31), max: -1 }));
/** A name for users, roles, elections: any text but "root" and "" (neither exists; both are special). */
const name = fc.string({ minLength: 1, maxLength: 24, unit: "grapheme" }).filter((s) => s !== "root");

/** An auth token no server issued (printable ASCII, as gRPC metadata takes). */
const authToken = fc.stringMatching(/^[!-~]{1,40}$/);

/** A lease id that is not the seeded one, either sign (0 excluded: "no lease"). */
function unknownLease(world: World): fc.Arbitrary<string> {
  return dec(
    fc.oneof(
      bigIn(1n, INT64_MAX).filter((n) => n !== world.leaseId),
      bigIn(INT64_MIN, -1n),
    ),
  );
}
function unknownPositiveLease(world: World): fc.Arbitrary<string> {
  return dec(bigIn(1n, INT64_MAX).filter((n) => n !== world.leaseId));
}
function unknownMember(world: World): fc.Arbitrary<string> {
  return dec(bigIn(1n, 2n ** 64n - 1n).filter((n) => !world.memberIds.includes(n)));
}
const futureRevision = (world: World): fc.Arbitrary<string> =>
  dec(bigIn(BigInt(world.revision) + 1n, SAFE_MAX));
const compactedRevision = (world: World): fc.Arbitrary<string> =>
  fc.integer({ min: 1, max: world.compactRevision - 1 }).map(String);
/** A revision a read may name: 0 (current) or one still kept. */
const readableRevision = (world: World): fc.Arbitrary<string> =>
  fc.oneof(fc.constant("0"), fc.integer({ min: world.compactRevision, max: world.revision }).map(String));

/** A valid RangeRequest (noise around a fault): every field in range. */
function validRange(world: World): fc.Arbitrary<W> {
  return fc.record({
    key: anyKey,
    range_end: fc.oneof(fc.constant(Buffer.alloc(0)), fc.constant(Buffer.of(0)), anyKey),
    limit: fc.integer({ min: 0, max: 10 }).map(String),
    revision: readableRevision(world),
    sort_order: fc.integer({ min: 0, max: 2 }),
    sort_target: fc.integer({ min: 0, max: 4 }),
    serializable: fc.boolean(),
    keys_only: fc.boolean(),
    count_only: fc.boolean(),
  });
}

const bytesOf = (n: number): Buffer => Buffer.alloc(n, 0x61);
/** A request over --max-request-bytes that still fits a gRPC message. */
const tooLargeSize = fc.integer({ min: REQUEST_BYTES_MAX, max: GRPC_MESSAGE_BYTES_MAX - 4096 });
/** Bigger than any gRPC message either server takes. */
const oversizeSize = fc.integer({ min: GRPC_MESSAGE_BYTES_MAX + 16, max: GRPC_MESSAGE_BYTES_MAX + 600_000 });

const err = (n: EtcdErrorName, code?: number): Expected =>
  code === undefined ? { kind: "error", name: n } : { kind: "error", name: n, code };
const ok = (check?: (r: W) => string | undefined): Expected =>
  check ? { kind: "ok", check } : { kind: "ok" };
const oneOf = (...options: Expected[]): Expected => ({ kind: "oneOf", options });
const tooBig: Expected = { kind: "grpc", code: status.RESOURCE_EXHAUSTED, text: TOO_BIG_ERROR };
const parseError: Expected = { kind: "grpc", code: status.INTERNAL, text: PARSE_ERROR };
const noKvs = (r: W): string | undefined =>
  Array.isArray(r.kvs) && r.kvs.length === 0 ? undefined : `expected no kvs, got ${stringify(r.kvs)}`;
const deletedNothing = (r: W): string | undefined =>
  r.deleted === "0" ? undefined : `expected deleted 0, got ${String(r.deleted)}`;

const unary = (service: EtcdServiceName, method: string, request: W): GrpcCall => ({
  kind: "unary",
  service,
  method,
  request,
});

/** One arm: a named family of cases. */
interface Arm {
  readonly label: string;
  readonly weight: number;
  readonly arb: fc.Arbitrary<Omit<GrpcCase, "label">>;
}

const arm = (label: string, weight: number, arb: fc.Arbitrary<Omit<GrpcCase, "label">>): Arm => ({
  label,
  weight,
  arb,
});

// ------------------------------------------------------------------ KV arms

function kvArms(world: World): Arm[] {
  const range = validRange(world);
  const putBase = fc.record({
    key: fuzzKey,
    value: smallValue,
    lease: fc.constantFrom("0", world.leaseId.toString()),
    prev_kv: fc.boolean(),
  });
  return [
    arm(
      "Put: empty key",
      3,
      fc
        .record({
          value: smallValue,
          lease: unknownLease(world),
          ignore_value: fc.boolean(),
          prev_kv: fc.boolean(),
        })
        .map((r) => ({ call: unary("KV", "Put", { ...r, key: Buffer.alloc(0) }), etcd: err("EmptyKey") })),
    ),
    arm(
      "Put: over --max-request-bytes",
      1,
      fc.tuple(putBase, tooLargeSize, fc.boolean()).map(([p, size, inKey]) => ({
        call: unary("KV", "Put", inKey ? { ...p, key: bytesOf(size) } : { ...p, value: bytesOf(size) }),
        etcd: err("RequestTooLarge"),
      })),
    ),
    arm(
      "Put: over the gRPC message limit",
      1,
      fc.tuple(putBase, oversizeSize).map(([p, size]) => ({
        call: unary("KV", "Put", { ...p, value: bytesOf(size) }),
        etcd: tooBig,
      })),
    ),
    arm(
      "Put: unknown lease",
      3,
      fc.tuple(putBase, unknownLease(world)).map(([p, lease]) => ({
        call: unary("KV", "Put", { ...p, lease }),
        etcd: err("LeaseNotFound"),
      })),
    ),
    arm(
      "Put: ignore_value with a value",
      2,
      fc.tuple(putBase, buf(1, 16), fc.boolean()).map(([p, value, existing]) => ({
        call: unary("KV", "Put", { ...p, key: existing ? B("seed/a") : p.key, value, ignore_value: true }),
        etcd: err("ValueProvided"),
      })),
    ),
    arm(
      "Put: ignore_lease with a lease",
      2,
      fc.tuple(putBase, unknownLease(world)).map(([p, lease]) => ({
        call: unary("KV", "Put", { ...p, lease, ignore_lease: true }),
        etcd: err("LeaseProvided"),
      })),
    ),
    arm(
      "Put: ignore_value/ignore_lease on a key that does not exist",
      2,
      fc.tuple(absentKey, fc.boolean()).map(([key, which]) => ({
        call: unary("KV", "Put", which ? { key, ignore_value: true } : { key, ignore_lease: true }),
        etcd: err("KeyNotFound"),
      })),
    ),
    arm(
      "Range: empty key",
      2,
      fc.tuple(range, fc.boolean()).map(([r, withEnd]) => ({
        call: unary("KV", "Range", {
          ...r,
          key: Buffer.alloc(0),
          range_end: withEnd ? r.range_end : Buffer.alloc(0),
        }),
        etcd: err("EmptyKey"),
      })),
    ),
    arm(
      "Range: future revision",
      2,
      fc.tuple(range, futureRevision(world)).map(([r, revision]) => ({
        call: unary("KV", "Range", { ...r, revision }),
        etcd: err("FutureRev"),
      })),
    ),
    arm(
      "Range: compacted revision",
      2,
      fc.tuple(range, compactedRevision(world)).map(([r, revision]) => ({
        call: unary("KV", "Range", { ...r, revision }),
        etcd: err("Compacted"),
      })),
    ),
    arm(
      "Range: negative revision (etcd reads the current one)",
      2,
      fc.tuple(range, negativeSafe).map(([r, revision]) => ({
        call: unary("KV", "Range", { ...r, revision }),
        etcd: ok(),
      })),
    ),
    arm(
      "Range: int64 beyond 2^53 (revision, limit, min/max revisions)",
      2,
      fc
        .tuple(
          range,
          fc.constantFrom(
            "revision",
            "limit",
            "min_mod_revision",
            "max_mod_revision",
            "min_create_revision",
            "max_create_revision",
          ),
          beyondSafe,
        )
        .map(([r, field, v]) => ({
          call: unary("KV", "Range", { ...r, [field]: v }),
          // etcd: a revision past the current one is in the future, one below 1 means "current";
          // limits and min/max filters are plain numbers.
          etcd: field === "revision" && !v.startsWith("-") ? err("FutureRev") : ok(),
        })),
    ),
    arm(
      "Range: range_end before key",
      2,
      fc
        .tuple(range, anyKey, anyKey)
        .filter(([, a, b]) => Buffer.compare(a, b) > 0 && !(b.length === 1 && b[0] === 0))
        .map(([r, key, end]) => ({
          call: unary("KV", "Range", { ...r, key, range_end: end, count_only: false }),
          etcd: ok(noKvs),
        })),
    ),
    arm(
      "Range: negative limit, negative min/max revisions",
      2,
      fc
        .tuple(
          range,
          negativeSafe,
          negativeSafe,
          fc.constantFrom("min_mod_revision", "max_create_revision", "limit"),
        )
        .map(([r, a, b, field]) => ({
          call: unary("KV", "Range", { ...r, limit: a, [field]: b }),
          etcd: ok(),
        })),
    ),
    arm(
      "Range: unknown sort order",
      2,
      fc.tuple(range, int32Outside(2)).map(([r, sort_order]) => ({
        call: unary("KV", "Range", { ...r, sort_order }),
        etcd: ok(),
      })),
    ),
    arm(
      "Range: unknown sort target (etcd 3.4 panics on it)",
      2,
      fc
        .tuple(range, int32Outside(4), fc.integer({ min: 0, max: 2 }))
        .map(([r, sort_target, sort_order]) => ({
          call: unary("KV", "Range", { ...r, sort_target, sort_order }),
          etcd: err("NotCapable"),
          etcdCrashes: true,
        })),
    ),
    arm(
      "Range: key over 1.5 MiB (reads are not size-limited)",
      1,
      tooLargeSize.map((size) => ({
        call: unary("KV", "Range", { key: bytesOf(size), count_only: true }),
        etcd: ok(noKvs),
      })),
    ),
    arm(
      "Range: over the gRPC message limit",
      1,
      oversizeSize.map((size) => ({ call: unary("KV", "Range", { key: bytesOf(size) }), etcd: tooBig })),
    ),
    arm(
      "DeleteRange: empty key",
      2,
      fc.tuple(fc.oneof(fc.constant(Buffer.alloc(0)), anyKey), fc.boolean()).map(([end, prev_kv]) => ({
        call: unary("KV", "DeleteRange", { key: Buffer.alloc(0), range_end: end, prev_kv }),
        etcd: err("EmptyKey"),
      })),
    ),
    arm(
      "DeleteRange: nothing to delete (range_end before key, or absent keys)",
      2,
      fc
        .oneof(
          fc
            .tuple(anyKey, anyKey)
            .filter(([a, b]) => Buffer.compare(a, b) > 0 && !(b.length === 1 && b[0] === 0))
            .map(([key, range_end]) => ({ key, range_end })),
          absentKey.map((key) => ({ key, range_end: Buffer.alloc(0) })),
        )
        .map((r) => ({
          call: unary("KV", "DeleteRange", { ...r, prev_kv: true }),
          etcd: ok(deletedNothing),
        })),
    ),
    arm(
      "DeleteRange: over --max-request-bytes",
      1,
      tooLargeSize.map((size) => ({
        call: unary("KV", "DeleteRange", { key: bytesOf(size) }),
        etcd: err("RequestTooLarge"),
      })),
    ),
    arm(
      "Compact: revision already compacted, or 0",
      2,
      fc.tuple(fc.integer({ min: 0, max: world.compactRevision }), fc.boolean()).map(([rev, physical]) => ({
        call: unary("KV", "Compact", { revision: String(rev), physical }),
        etcd: err("Compacted"),
      })),
    ),
    arm(
      "Compact: future revision",
      2,
      futureRevision(world).map((revision) => ({
        call: unary("KV", "Compact", { revision }),
        etcd: err("FutureRev"),
      })),
    ),
    arm(
      "Compact: negative or beyond 2^53",
      2,
      fc.oneof(negativeSafe, beyondSafe).map((revision) => ({
        call: unary("KV", "Compact", { revision }),
        etcd: revision.startsWith("-") ? err("Compacted") : err("FutureRev"),
      })),
    ),
  ];
}

// ------------------------------------------------------------------ Txn arms

/** The shape of a txn before keys are chosen. */
interface TxnShape {
  readonly compares: number;
  readonly success: readonly OpShape[];
  readonly failure: readonly OpShape[];
}
type OpShape =
  | { readonly kind: "range" | "put" | "delete" }
  | { readonly kind: "txn"; readonly txn: TxnShape };

function txnShape(depth: number): fc.Arbitrary<TxnShape> {
  const leaf = fc.constantFrom<OpShape>({ kind: "range" }, { kind: "put" }, { kind: "delete" });
  const op: fc.Arbitrary<OpShape> =
    depth <= 0
      ? leaf
      : fc.oneof(
          { weight: 3, arbitrary: leaf },
          { weight: 1, arbitrary: txnShape(depth - 1).map((txn): OpShape => ({ kind: "txn", txn })) },
        );
  return fc.record({
    compares: fc.integer({ min: 0, max: 3 }),
    success: fc.array(op, { maxLength: 3 }),
    failure: fc.array(op, { maxLength: 3 }),
  });
}

/** A txn in the tree, with what etcd's checks need to know about its place. */
interface TxnNode {
  readonly txn: W;
  readonly depth: number;
  /** Whether this txn runs (its ancestors take the branches that contain it). */
  readonly onPath: boolean;
  /** Which of its lists runs when it does: "success" unless its compares fail. */
  readonly taken: "success" | "failure";
  /** etcd's op budget here: TXN_OPS_MAX minus the ops count of every ancestor. */
  readonly budget: number;
}

function opsCount(txn: W): number {
  return Math.max(list(txn.compare).length, list(txn.success).length, list(txn.failure).length);
}

function list(v: unknown): W[] {
  return Array.isArray(v) ? (v as W[]) : [];
}

/** Every txn of the tree, parents first. */
function txnNodes(root: W, rootTaken: "success" | "failure"): TxnNode[] {
  const out: TxnNode[] = [];
  const walk = (
    txn: W,
    depth: number,
    onPath: boolean,
    taken: "success" | "failure",
    budget: number,
  ): void => {
    out.push({ txn, depth, onPath, taken, budget });
    const childBudget = budget - opsCount(txn);
    for (const branch of ["success", "failure"] as const)
      for (const op of list(txn[branch]))
        if (op.request_txn !== undefined)
          walk(op.request_txn as W, depth + 1, onPath && branch === taken, "success", childBudget);
  };
  walk(root, 0, true, rootTaken, TXN_OPS_MAX);
  return out;
}

/** Every op and compare of the tree (for faults that etcd finds wherever they are). */
function allOps(root: W): { readonly ops: W[]; readonly compares: W[] } {
  const ops: W[] = [];
  const compares: W[] = [];
  for (const n of txnNodes(root, "success")) {
    compares.push(...list(n.txn.compare));
    for (const branch of ["success", "failure"] as const)
      for (const op of list(n.txn[branch])) if (op.request_txn === undefined) ops.push(op);
  }
  return { ops, compares };
}

/**
 * Materializes a shape: compares that hold (so every txn takes its success
 * branch), puts on unique keys under fuzz/p/ with no or the seeded lease,
 * deletes under absent/d/ (never overlapping a put), valid ranges. With
 * `readOnly`, puts and deletes become ranges (for faults etcd does not refuse).
 */
class TxnBuilder {
  private next = 0;

  constructor(
    private readonly g: fc.GeneratorValue,
    private readonly world: World,
    private readonly readOnly: boolean,
  ) {}

  txn(shape: TxnShape): W {
    const compares = trueCompares(this.world);
    return {
      compare: Array.from({ length: shape.compares }, () => this.g(() => fc.constantFrom(...compares))),
      success: shape.success.map((op) => this.op(op)),
      failure: shape.failure.map((op) => this.op(op)),
    };
  }

  op(shape: OpShape): W {
    const kind = this.readOnly && shape.kind !== "txn" ? "range" : shape.kind;
    switch (kind) {
      case "range":
        return { request_range: this.g(() => validRange(this.world)) };
      case "put":
        return { request_put: this.put() };
      case "delete": {
        const n = this.next++;
        return {
          request_delete_range: {
            key: B(`${ABSENT_PREFIX}d/${n}/`),
            range_end: this.g(() => fc.boolean()) ? B(`${ABSENT_PREFIX}d/${n}0`) : Buffer.alloc(0),
          },
        };
      }
      case "txn":
        return { request_txn: this.txn((shape as { txn: TxnShape }).txn) };
    }
  }

  put(key?: Buffer): W {
    return {
      key: key ?? B(`${FUZZ_PREFIX}p/${this.next++}`),
      value: this.g(() => smallValue),
      lease: this.g(() => fc.constantFrom("0", this.world.leaseId.toString())),
      prev_kv: this.g(() => fc.boolean()),
    };
  }
}

/** The faults a txn case can carry; each makes the whole txn fail (or, read-only, change nothing). */
const TXN_FAULTS = [
  "tooManyOps",
  "emptyKey",
  "emptyOp",
  "duplicatePuts",
  "putAndDelete",
  "nestedDuplicate",
  "unknownLeasePut",
  "futureRange",
  "compactedRange",
  "negativeRange",
  "ignoreValueAbsent",
  "badCompareEnum",
  "tooLargePut",
  "tooLargeReadOnly",
] as const;
type TxnFault = (typeof TXN_FAULTS)[number];

function txnCase(world: World, g: fc.GeneratorValue, fault: TxnFault): Omit<GrpcCase, "label"> {
  const readOnly = fault === "badCompareEnum" || fault === "tooLargeReadOnly";
  const b = new TxnBuilder(g, world, readOnly);
  const root = b.txn(g(() => txnShape(3)));
  // Dynamic faults may sit on the root's failure branch: a failing compare picks it.
  const flip = g(() => fc.boolean());
  if (flip) root.compare = [...list(root.compare), g(() => fc.constantFrom(...falseCompares(world)))];
  const rootTaken = flip ? "failure" : "success";
  const nodes = txnNodes(root, rootTaken);
  const pick = <T>(xs: readonly T[]): T => xs[g(() => fc.integer({ min: 0, max: xs.length - 1 }))]!;
  const anyNode = pick(nodes);
  const pathNode = pick(nodes.filter((n) => n.onPath));
  const anyList = (n: TxnNode): W[] => {
    const branch = g(() => fc.constantFrom("success" as const, "failure" as const));
    const l = list(n.txn[branch]);
    n.txn[branch] = l;
    return l;
  };
  const takenList = (n: TxnNode): W[] => {
    const l = list(n.txn[n.taken]);
    n.txn[n.taken] = l;
    return l;
  };
  const insert = (l: W[], op: W): void => {
    l.splice(
      g(() => fc.integer({ min: 0, max: l.length })),
      0,
      op,
    );
  };
  const call = (): GrpcCall => unary("KV", "Txn", root);
  switch (fault) {
    case "tooManyOps": {
      const list_ = g(() => fc.constantFrom("compare" as const, "success" as const, "failure" as const));
      const n = anyNode.budget + 1 + g(() => fc.integer({ min: 0, max: 40 }));
      anyNode.txn[list_] =
        list_ === "compare"
          ? Array.from({ length: n }, () => g(() => fc.constantFrom(...trueCompares(world))))
          : Array.from({ length: n }, () => ({ request_range: { key: B("seed/a") } }));
      return { call: call(), etcd: err("TooManyOps") };
    }
    case "emptyKey": {
      const { ops, compares } = allOps(root);
      const targets = [
        ...ops.map((op) => (op.request_range ?? op.request_put ?? op.request_delete_range) as W),
        ...compares,
      ];
      if (targets.length === 0) insert(anyList(anyNode), { request_range: { key: Buffer.alloc(0) } });
      else pick(targets).key = Buffer.alloc(0);
      return { call: call(), etcd: err("EmptyKey") };
    }
    case "emptyOp":
      insert(anyList(anyNode), {});
      return { call: call(), etcd: err("KeyNotFound") };
    case "duplicatePuts": {
      const key = B(`${FUZZ_PREFIX}dup/${g(() => fc.nat())}`);
      const l = anyList(anyNode);
      insert(l, { request_put: b.put(key) });
      insert(l, { request_put: b.put(key) });
      return { call: call(), etcd: err("DuplicateKey") };
    }
    case "putAndDelete": {
      const key = B(`${FUZZ_PREFIX}dup/${g(() => fc.nat())}`);
      const l = anyList(anyNode);
      insert(l, { request_put: b.put(key) });
      const covering = g(() => fc.boolean());
      insert(l, {
        request_delete_range: covering
          ? { key: B(`${FUZZ_PREFIX}dup/`), range_end: B(`${FUZZ_PREFIX}dup0`) }
          : { key },
      });
      return { call: call(), etcd: err("DuplicateKey") };
    }
    case "nestedDuplicate": {
      const key = B(`${FUZZ_PREFIX}dup/${g(() => fc.nat())}`);
      const l = anyList(anyNode);
      insert(l, { request_put: b.put(key) });
      insert(l, { request_txn: { success: [{ request_put: b.put(key) }] } });
      return { call: call(), etcd: err("DuplicateKey") };
    }
    case "unknownLeasePut":
      insert(takenList(pathNode), {
        request_put: { ...b.put(), lease: g(() => unknownPositiveLease(world)) },
      });
      return { call: call(), etcd: err("LeaseNotFound") };
    case "futureRange":
      insert(takenList(pathNode), {
        request_range: { key: g(() => anyKey), revision: g(() => futureRevision(world)) },
      });
      return { call: call(), etcd: err("FutureRev") };
    case "compactedRange":
      insert(takenList(pathNode), {
        request_range: { key: g(() => anyKey), revision: g(() => compactedRevision(world)) },
      });
      return { call: call(), etcd: err("Compacted") };
    case "negativeRange":
      insert(takenList(pathNode), {
        request_range: { key: g(() => anyKey), revision: g(() => negativeSafe) },
      });
      return { call: call(), etcd: err("Compacted") };
    case "ignoreValueAbsent":
      insert(takenList(pathNode), { request_put: { key: g(() => absentKey), ignore_value: true } });
      return { call: call(), etcd: err("KeyNotFound") };
    case "badCompareEnum": {
      const { compares } = allOps(root);
      let c: W;
      if (compares.length > 0) c = pick(compares);
      else {
        c = { key: B("seed/a"), version: "3" };
        root.compare = [c];
      }
      if (g(() => fc.boolean())) c.target = g(() => int32Outside(4));
      else c.result = g(() => int32Outside(3));
      return { call: call(), etcd: ok() };
    }
    case "tooLargePut":
      insert(anyList(anyNode), { request_put: { ...b.put(), value: bytesOf(g(() => tooLargeSize)) } });
      return { call: call(), etcd: err("RequestTooLarge") };
    case "tooLargeReadOnly": {
      insert(anyList(anyNode), { request_range: { key: bytesOf(g(() => tooLargeSize)), count_only: true } });
      // etcd serves a txn whose top-level ops are all ranges without Raft (isTxnReadonly); one with a
      // nested txn goes through Raft, where the size limit applies.
      const readOnly = [...list(root.success), ...list(root.failure)].every(
        (op) => op.request_range !== undefined,
      );
      return readOnly
        ? { call: call(), etcd: ok(), deviation: { id: "readOnlyTxnSize", expected: err("RequestTooLarge") } }
        : { call: call(), etcd: err("RequestTooLarge") };
    }
  }
}

/**
 * A chain of txns, each the only op of its parent's success branch, `depth`
 * levels below the root, with `leaf` (an encoded RequestOp) at the bottom;
 * encoded by hand, since protobufjs (the client's encoder too) stops at 100
 * nested messages.
 */
export function encodeTxnChain(depth: number, leaf: Buffer): Buffer {
  // TxnRequest.success = 2; RequestOp.request_txn = 4.
  let txn = field(2, leaf);
  for (let i = 0; i < depth; i++) txn = field(2, field(4, txn));
  return txn;
}

/** RequestOp{request_range: RangeRequest{key}} */
export function rangeOp(key: Buffer): Buffer {
  return field(1, field(1, key));
}

/** RequestOp{request_put: PutRequest{key, value, lease}} */
export function putOp(key: Buffer, value: Buffer, lease: bigint): Buffer {
  const parts = [field(1, key), field(2, value)];
  if (lease !== 0n) parts.push(Buffer.from([3 << 3, ...varint(BigInt.asUintN(64, lease))]));
  return field(2, Buffer.concat(parts));
}

/** A length-delimited field. */
function field(n: number, body: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(varint(BigInt((n << 3) | 2))),
    Buffer.from(varint(BigInt(body.length))),
    body,
  ]);
}

function varint(n: bigint): number[] {
  const out: number[] = [];
  while (n > 127n) {
    out.push(Number(n & 127n) | 128);
    n >>= 7n;
  }
  out.push(Number(n));
  return out;
}

function txnArms(world: World): Arm[] {
  const arms = TXN_FAULTS.map((fault) =>
    arm(
      `Txn: ${fault}`,
      fault.startsWith("tooLarge") ? 1 : 2,
      fc.gen().map((g) => txnCase(world, g, fault)),
    ),
  );
  const chainLeaf = fc.oneof(
    anyKey.map((k) => ({ leaf: rangeOp(k), fails: false })),
    unknownPositiveLease(world).map((l) => ({
      leaf: putOp(B(`${FUZZ_PREFIX}chain`), B("v"), BigInt(l)),
      fails: true,
    })),
  );
  arms.push(
    arm(
      "Txn: nested 4-40 deep, failing at the bottom",
      2,
      fc.tuple(fc.integer({ min: 4, max: 40 }), unknownPositiveLease(world)).map(([depth, lease]) => {
        let txn: W = { success: [{ request_put: { key: B(`${FUZZ_PREFIX}chain`), lease } }] };
        for (let i = 0; i < depth; i++) txn = { success: [{ request_txn: txn }] };
        return { call: unary("KV", "Txn", txn), etcd: err("LeaseNotFound") };
      }),
    ),
    arm(
      "Txn: nested 49-127 deep (etcd takes them)",
      2,
      fc.tuple(fc.integer({ min: 49, max: 127 }), chainLeaf).map(([depth, { leaf, fails }]) => ({
        call: { kind: "raw", path: "/etcdserverpb.KV/Txn", bytes: encodeTxnChain(depth, leaf) },
        etcd: fails ? err("LeaseNotFound") : ok(),
      })),
    ),
    arm(
      "Txn: nested 128-400 deep (over --max-txn-ops)",
      2,
      fc.tuple(fc.integer({ min: 128, max: 400 }), chainLeaf).map(([depth, { leaf }]) => ({
        call: { kind: "raw", path: "/etcdserverpb.KV/Txn", bytes: encodeTxnChain(depth, leaf) },
        etcd: err("TooManyOps"),
      })),
    ),
  );
  return arms;
}

// ------------------------------------------------------------------ Lease and Watch arms

function leaseArms(world: World): Arm[] {
  const L = world.leaseId.toString();
  return [
    arm(
      "LeaseGrant: TTL over 9,000,000,000 s",
      2,
      fc
        .tuple(
          dec(bigIn(LEASE_TTL_MAX + 1n, INT64_MAX)),
          fc.oneof(fc.constant("0"), unknownPositiveLease(world)),
        )
        .map(([TTL, ID]) => ({
          call: unary("Lease", "LeaseGrant", { TTL, ID }),
          etcd: err("LeaseTTLTooLarge"),
        })),
    ),
    arm(
      "LeaseGrant: existing id (any TTL, negative ones too)",
      2,
      dec(bigIn(-SAFE_MAX, LEASE_TTL_MAX)).map((TTL) => ({
        call: unary("Lease", "LeaseGrant", { TTL, ID: L }),
        etcd: err("LeaseExist"),
      })),
    ),
    arm(
      "LeaseGrant: existing id, TTL below -2^53",
      1,
      dec(bigIn(INT64_MIN, -SAFE_MAX - 1n)).map((TTL) => ({
        call: unary("Lease", "LeaseGrant", { TTL, ID: L }),
        etcd: err("LeaseExist"),
      })),
    ),
    arm(
      "LeaseRevoke: unknown id",
      2,
      fc.oneof(fc.constant("0"), unknownPositiveLease(world)).map((ID) => ({
        call: unary("Lease", "LeaseRevoke", { ID }),
        etcd: err("LeaseNotFound"),
      })),
    ),
    arm(
      "LeaseRevoke: negative id",
      1,
      dec(bigIn(INT64_MIN, -1n)).map((ID) => ({
        call: unary("Lease", "LeaseRevoke", { ID }),
        etcd: err("LeaseNotFound"),
      })),
    ),
    arm(
      "LeaseTimeToLive: unknown id",
      2,
      fc.tuple(fc.oneof(fc.constant("0"), unknownLease(world)), fc.boolean()).map(([ID, keys]) => ({
        call: unary("Lease", "LeaseTimeToLive", { ID, keys }),
        etcd: ok((r) =>
          r.TTL === "-1" && r.ID === ID ? undefined : `expected TTL -1 for ${ID}, got ${stringify(r)}`,
        ),
      })),
    ),
    arm(
      "LeaseKeepAlive: unknown id",
      3,
      fc.oneof(fc.constant("0"), unknownLease(world)).map((id) => ({
        call: { kind: "keepAlive", id },
        etcd: { kind: "keepAliveUnknown", id },
      })),
    ),
  ];
}

function watchArms(world: World): Arm[] {
  const opts = fc.record({
    prev_kv: fc.boolean(),
    progress_notify: fc.boolean(),
    fragment: fc.boolean(),
    filters: fc.array(fc.integer({ min: 0, max: 1 }), { maxLength: 2 }),
  });
  const create = (r: W, count = 1): GrpcCall => ({ kind: "watch", request: { create_request: r }, count });
  return [
    arm(
      "Watch: range_end not after key",
      3,
      fc
        .tuple(opts, anyKey, anyKey)
        .filter(([, a, b]) => Buffer.compare(a, b) >= 0 && !(b.length === 1 && b[0] === 0))
        .map(([o, key, range_end]) => ({
          call: create({ ...o, key, range_end }),
          etcd: { kind: "watchRefused", reason: WATCH_CANCEL_REASONS.EmptyWatcherRange },
        })),
    ),
    arm(
      "Watch: future start revision",
      2,
      fc
        .tuple(opts, anyKey, dec(bigIn(BigInt(world.revision) + 1n, INT64_MAX)))
        .map(([o, key, start_revision]) => ({
          call: create({ ...o, key, start_revision }),
          etcd: { kind: "watchCreated" },
        })),
    ),
    arm(
      "Watch: compacted start revision",
      2,
      fc.tuple(opts, compactedRevision(world)).map(([o, start_revision]) => ({
        call: create({ ...o, key: B("seed/"), range_end: B("seed0"), start_revision }, 2),
        etcd: { kind: "watchCompacted", compactRevision: world.compactRevision },
      })),
    ),
    arm(
      "Watch: negative start revision",
      2,
      fc.tuple(opts, anyKey, dec(bigIn(INT64_MIN, -1n))).map(([o, key, start_revision]) => ({
        call: create({ ...o, key, start_revision }),
        // etcd 3.4.23 creates it; 3.4.38+ refuses it with the compacted message.
        etcd: oneOf(
          { kind: "watchCreated" },
          { kind: "watchRefused", reason: WATCH_CANCEL_REASONS.Compacted },
        ),
      })),
    ),
    arm(
      "Watch: unknown filters",
      2,
      fc
        .tuple(
          opts,
          anyKey,
          fc.array(fc.oneof(int32Outside(1), fc.integer({ min: 0, max: 1 })), { minLength: 1 }),
        )
        .map(([o, key, filters]) => ({
          call: create({ ...o, key, filters }),
          etcd: { kind: "watchCreated" },
        })),
    ),
  ];
}

// ------------------------------------------------------------------ other services and raw bytes

function otherArms(world: World): Arm[] {
  const unknown = unknownMember(world);
  const badUrl = fc.oneof(
    fc.constantFrom(
      "",
      "notaurl",
      "http://",
      "http:x",
      "ftp://1.2.3.4:5",
      "http://1.2.3.4:5/path",
      "http://1.2.3.4",
    ),
    fc.string({ maxLength: 20 }).filter((s) => !s.includes("://")),
  );
  const UNKNOWN = status.UNKNOWN;
  const electionLeader = fc.record({
    name: buf(1, 12),
    key: prefixed(ABSENT_PREFIX, buf(1, 12)),
    rev: fc.integer({ min: 1, max: world.revision }).map(String),
    lease: unknownPositiveLease(world),
  });
  return [
    arm(
      "Cluster: unknown member id",
      2,
      fc
        .tuple(unknown, fc.constantFrom("MemberRemove", "MemberUpdate", "MemberPromote"))
        .map(([ID, method]) => ({
          call: unary(
            "Cluster",
            method,
            method === "MemberUpdate" ? { ID, peerURLs: ["http://127.0.0.1:1"] } : { ID },
          ),
          etcd: err("MemberNotFound"),
        })),
    ),
    arm(
      "Cluster: MemberAdd with bad peer URLs",
      2,
      fc.tuple(fc.array(badUrl, { maxLength: 3 }), fc.boolean()).map(([peerURLs, isLearner]) => ({
        call: unary("Cluster", "MemberAdd", { peerURLs, isLearner }),
        etcd: err("MemberBadURLs"),
      })),
    ),
    arm(
      "Auth: empty user or role name",
      1,
      fc.tuple(fc.boolean(), fc.string({ maxLength: 8 })).map(([user, password]) => ({
        call: user
          ? unary("Auth", "UserAdd", { name: "", password })
          : unary("Auth", "RoleAdd", { name: "" }),
        etcd: err(user ? "UserEmpty" : "RoleEmpty"),
      })),
    ),
    arm(
      "Auth: unknown user",
      2,
      fc
        .tuple(
          name,
          fc.constantFrom("UserGet", "UserDelete", "UserChangePassword", "UserGrantRole", "UserRevokeRole"),
        )
        .map(([n, method]) => ({
          call: unary(
            "Auth",
            method,
            method === "UserGrantRole" ? { user: n, role: "r" } : { name: n, password: "p", role: "r" },
          ),
          etcd: err("UserNotFound"),
        })),
    ),
    arm(
      "Auth: unknown role",
      2,
      fc
        .tuple(name, fc.constantFrom("RoleGet", "RoleDelete", "RoleGrantPermission", "RoleRevokePermission"))
        .map(([n, method]) => ({
          call: unary("Auth", method, {
            role: n,
            name: n,
            key: B("k"),
            perm: { permType: 0, key: B("k") },
          }),
          etcd: err("RoleNotFound"),
        })),
    ),
    arm(
      "Auth: RoleGrantPermission without a permission or with an unknown type",
      1,
      fc.tuple(name, fc.option(int32Outside(2), { nil: undefined })).map(([n, permType]) => ({
        call: unary(
          "Auth",
          "RoleGrantPermission",
          permType === undefined ? { name: n } : { name: n, perm: { permType, key: B("k") } },
        ),
        // Without a permission: 3.4.23 'role name not found', 3.4.25+ 'permission not given'.
        etcd:
          permType === undefined
            ? oneOf(err("RoleNotFound"), err("PermissionNotGiven"))
            : err("RoleNotFound"),
        ...(permType === undefined
          ? {}
          : { deviation: { id: "unknownPermType" as const, expected: err("InvalidAuthMgmt") } }),
      })),
    ),
    arm(
      "Auth: Authenticate and AuthEnable while auth is off and root missing",
      1,
      fc.tuple(name, fc.boolean()).map(([n, authenticate]) => ({
        call: authenticate
          ? unary("Auth", "Authenticate", { name: n, password: "p" })
          : unary("Auth", "AuthEnable", {}),
        etcd: err(authenticate ? "AuthNotEnabled" : "RootUserNotExist"),
      })),
    ),
    arm(
      "KV with an invalid auth token (auth disabled)",
      2,
      fc
        .tuple(authToken, fc.boolean(), fuzzKey, unknownPositiveLease(world))
        .map(([token, read, key, lease]) => ({
          call: {
            ...unary("KV", read ? "Range" : "Put", read ? { key: B("seed/a") } : { key, lease }),
            metadata: { token },
          },
          etcd: err("InvalidAuthToken"),
          deviation: { id: "invalidToken" as const, expected: read ? ok() : err("LeaseNotFound") },
        })),
    ),
    arm(
      "Maintenance: MoveLeader to an unknown member",
      1,
      fc.oneof(fc.constant("0"), unknown).map((targetID) => ({
        call: unary("Maintenance", "MoveLeader", { targetID }),
        etcd: err("BadLeaderTransferee"),
      })),
    ),
    arm(
      "Maintenance: HashKV at a future or compacted revision",
      1,
      fc.oneof(
        futureRevision(world).map((revision) => ({
          call: unary("Maintenance", "HashKV", { revision }),
          etcd: err("FutureRev"),
        })),
        compactedRevision(world).map((revision) => ({
          call: unary("Maintenance", "HashKV", { revision }),
          etcd: err("Compacted"),
        })),
      ),
    ),
    arm(
      "Lock/Election: unknown lease, empty key, no leader",
      2,
      fc.oneof(
        fc.tuple(buf(0, 12), unknownPositiveLease(world)).map(([n, lease]) => ({
          call: unary("Lock", "Lock", { name: n, lease }),
          etcd: err("LeaseNotFound", UNKNOWN),
        })),
        fc.constant({
          call: unary("Lock", "Unlock", { key: Buffer.alloc(0) }),
          etcd: err("EmptyKey", UNKNOWN),
        }),
        fc.tuple(buf(1, 12), unknownPositiveLease(world), smallValue).map(([n, lease, value]) => ({
          call: unary("Election", "Campaign", { name: n, lease, value }),
          etcd: err("LeaseNotFound", UNKNOWN),
        })),
        buf(0, 12).map((n) => ({
          call: unary("Election", "Leader", { name: Buffer.concat([B(ABSENT_PREFIX), n]) }),
          etcd: err("ElectionNoLeader", UNKNOWN),
        })),
        fc.tuple(fc.boolean(), smallValue).map(([proclaim, value]) => ({
          call: proclaim ? unary("Election", "Proclaim", { value }) : unary("Election", "Resign", {}),
          etcd: err("ElectionMissingLeaderKey", UNKNOWN),
        })),
        fc.tuple(electionLeader, smallValue).map(([leader, value]) => ({
          call: unary("Election", "Proclaim", { leader, value }),
          etcd: err("ElectionNotLeader", UNKNOWN),
        })),
      ),
    ),
  ];
}

/** Every unary method's path of the etcd API (for garbage bodies; etcd has no leasehold.v1 to compare with). */
const UNARY_PATHS: readonly string[] = Object.values(api.services).flatMap((svc) =>
  Object.values(svc as Readonly<Record<string, MethodDefinition<W, W>>>)
    .filter((d) => !d.requestStream && !d.responseStream && !d.path.startsWith("/leasehold."))
    .map((d) => d.path),
);
/** Methods that only read: any decoding of random bytes is harmless there. */
const READ_PATHS: readonly string[] = [
  "/etcdserverpb.KV/Range",
  "/etcdserverpb.Lease/LeaseTimeToLive",
  "/etcdserverpb.Lease/LeaseLeases",
  "/etcdserverpb.Maintenance/Status",
  "/etcdserverpb.Maintenance/HashKV",
  "/etcdserverpb.Cluster/MemberList",
  "/v3electionpb.Election/Leader",
];

/**
 * Bytes no protobuf decoder takes, for any message: an unknown field (2047)
 * whose declared length runs past the end, after random bytes that cannot
 * end inside a varint (the prefix is itself wrapped as a complete field).
 */
const unparseable = fc
  .tuple(buf(0, 64), buf(0, 200))
  .map(([prefix, tail]) =>
    Buffer.concat([
      field(2046, prefix),
      Buffer.from([...varint(BigInt((2047 << 3) | 2)), ...varint(BigInt(tail.length + 1 + 65_536))]),
      tail,
    ]),
  );

function rawArms(): Arm[] {
  return [
    arm(
      "raw: malformed protobuf to any unary method",
      4,
      fc.tuple(fc.constantFrom(...UNARY_PATHS), unparseable).map(([path, bytes]) => ({
        call: { kind: "raw", path, bytes },
        etcd: parseError,
      })),
    ),
    arm(
      "raw: malformed protobuf on the Watch and LeaseKeepAlive streams",
      2,
      fc
        .tuple(
          fc.constantFrom("/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"),
          unparseable,
        )
        .map(([path, bytes]) => ({ call: { kind: "rawStream", path, bytes }, etcd: parseError })),
    ),
    arm(
      "raw: random bytes to a read-only method",
      4,
      fc.tuple(fc.constantFrom(...READ_PATHS), buf(0, 96)).map(([path, bytes]) => ({
        call: { kind: "raw", path, bytes },
        etcd: { kind: "clear" },
        // Random bytes may decode to anything, e.g. an unknown sort target, on which etcd panics.
        etcdCrashes: true,
      })),
    ),
    arm(
      "raw: unknown method",
      1,
      fc
        .tuple(
          fc.constantFrom("etcdserverpb.KV", "etcdserverpb.Lease", "nosuch.Service"),
          fc.stringMatching(/^[A-Z][a-z]{0,8}$/),
        )
        .filter(([svc, m]) => !UNARY_PATHS.includes(`/${svc}/${m}`))
        .map(([svc, m]) => ({
          call: { kind: "raw", path: `/${svc}/${m}`, bytes: Buffer.alloc(0) },
          etcd: {
            kind: "grpc",
            code: status.UNIMPLEMENTED,
            text: /unknown (method|service)|does not implement/i,
          },
        })),
    ),
  ];
}

/** The arm labels and the arbitrary of all invalid gRPC requests against `world`. */
export function grpcCases(world: World): fc.Arbitrary<GrpcCase> {
  const arms = [
    ...kvArms(world),
    ...txnArms(world),
    ...leaseArms(world),
    ...watchArms(world),
    ...otherArms(world),
    ...rawArms(),
  ];
  return fc.oneof(
    ...arms.map((a) => ({
      weight: a.weight,
      arbitrary: a.arb.map((c): GrpcCase => ({ label: a.label, ...c })),
    })),
  );
}

/**
 * Judges one answer from one server: from etcd, the case's etcd answer; from
 * leasehold, never a server fault, and etcd's answer or the documented
 * deviation. Returns the problem, or which expectation matched.
 */
export function verdict(
  c: GrpcCase,
  answer: Answer,
  server: "etcd" | "leasehold",
): { readonly problem?: string; readonly deviation?: DeviationId } {
  if (server === "leasehold") {
    const fault = serverFault(answer);
    if (fault !== undefined) return { problem: `${fault}: ${describeAnswer(answer)}` };
  }
  const asEtcd = judge(answer, c.etcd);
  if (asEtcd === undefined) return {};
  if (
    server === "leasehold" &&
    c.deviation !== undefined &&
    judge(answer, c.deviation.expected) === undefined
  )
    return { deviation: c.deviation.id };
  return { problem: asEtcd };
}

// ------------------------------------------------------------------ the JSON gateway

/** How an HTTP request's body goes on the wire. */
export type HttpFraming =
  /** In one piece, with Content-Length. */
  | { readonly kind: "length" }
  /** Transfer-Encoding: chunked, in pieces of these sizes (the rest in one last piece). */
  | { readonly kind: "chunked"; readonly sizes: readonly number[] }
  /** These bytes as they are on a fresh connection, then the client half-closes (framing faults). */
  | { readonly kind: "raw"; readonly bytes: Buffer };

export interface HttpRequestSpec {
  readonly method: string;
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body: Buffer;
  readonly framing: HttpFraming;
}

/** Why the gateway of leasehold may answer differently from etcd 3.4.23's, by id. */
export const GATEWAY_DEVIATIONS = {
  invalidUtf8Char:
    "an invalid UTF-8 byte where JSON expects a token: Go names the raw byte as a Latin-1 character " +
    "('ÿ' for 0xff); leasehold decodes the body as UTF-8 first and names '\\xef' (U+FFFD's first byte)",
  enumTypeName:
    "a non-integral or out-of-range number for an enum field: Go names the enum's Go type " +
    "(etcdserverpb.RangeRequest_SortOrder); leasehold says int32",
  httpFraming:
    "malformed HTTP framing (a body shorter than its Content-Length, a bad chunk size): etcd answers 400 with " +
    "a JSON error from Go's body reader; leasehold (Node's HTTP parser) answers a bare 400 and closes",
  bodyLimit:
    "a body over 8 MiB of text: leasehold refuses it unread (429, its own message); etcd reads it all first",
  invalidToken:
    "an Authorization header with a token nobody issued, auth disabled: etcd refuses it where it looks for a " +
    "user (401 'etcdserver: invalid auth token', or 500 'auth: invalid auth token' on Alarm); leasehold ignores it",
} as const;

export type GatewayDeviationId = keyof typeof GATEWAY_DEVIATIONS;

export interface HttpCase {
  readonly label: string;
  readonly request: HttpRequestSpec;
  /** Whether etcd answers it with an error status (a check on the generator: it is invalid). */
  readonly invalid: boolean;
  /** Documented differences that may explain leasehold's different answer. */
  readonly deviations?: readonly GatewayDeviationId[];
}

/** A JSON value as the templates hold it. */
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** What a template's field holds, for mutations that must make it unparsable. */
type FieldKind = "bytes" | "int64" | "enum" | "bool" | "string" | "message" | "repeated";

/**
 * A request body that changes no state, whatever value any one of its
 * non-`loadBearing` fields takes (and the load-bearing ones only ever get
 * values that do not parse). `fields` names the kind of every field path.
 */
interface Template {
  readonly path: string;
  readonly body: { [k: string]: Json };
  readonly fields: Readonly<Record<string, FieldKind>>;
  /** Whether etcd answers the template itself with an error. */
  readonly fails: boolean;
  /** A stream (Watch, LeaseKeepAlive): "watch" never ends when valid, so only unparsable bodies go there. */
  readonly stream?: "watch" | "keepalive";
}

const b64 = (s: string): string => Buffer.from(s).toString("base64");
const UNKNOWN_LEASE = "123456789";
const UNKNOWN_MEMBER = "1234";

function templates(world: World): Template[] {
  const L = world.leaseId.toString();
  return [
    {
      path: "/v3/kv/range",
      body: { key: b64("seed/"), range_end: b64("seed0"), limit: 2, sort_order: "DESCEND", keys_only: true },
      fields: { key: "bytes", range_end: "bytes", limit: "int64", sort_order: "enum", keys_only: "bool" },
      fails: false,
    },
    {
      path: "/v3/kv/put",
      body: { key: b64(`${FUZZ_PREFIX}gw`), value: b64("v"), lease: UNKNOWN_LEASE, prev_kv: true },
      fields: { key: "bytes", value: "bytes", lease: "int64", prev_kv: "bool" },
      fails: true,
    },
    {
      path: "/v3/kv/deleterange",
      body: { key: b64(`${ABSENT_PREFIX}gw`), range_end: b64(`${ABSENT_PREFIX}gw0`), prev_kv: true },
      fields: { key: "bytes", range_end: "bytes", prev_kv: "bool" },
      fails: false,
    },
    {
      path: "/v3/kv/txn",
      body: {
        compare: [{ key: b64("seed/a"), target: "VERSION", result: "EQUAL", version: "3" }],
        success: [{ request_put: { key: b64(`${FUZZ_PREFIX}gw`), lease: UNKNOWN_LEASE } }],
      },
      fields: {
        compare: "repeated",
        "compare.0": "message",
        "compare.0.key": "bytes",
        "compare.0.target": "enum",
        "compare.0.result": "enum",
        "compare.0.version": "int64",
        success: "repeated",
        "success.0": "message",
        "success.0.request_put": "message",
        "success.0.request_put.key": "bytes",
        "success.0.request_put.lease": "int64",
      },
      fails: true,
    },
    {
      path: "/v3/kv/compaction",
      body: { revision: String(world.compactRevision - 1), physical: true },
      fields: { revision: "int64", physical: "bool" },
      fails: true,
    },
    {
      path: "/v3/lease/grant",
      body: { TTL: 60, ID: L },
      fields: { TTL: "int64", ID: "int64" },
      fails: true,
    },
    { path: "/v3/lease/revoke", body: { ID: UNKNOWN_LEASE }, fields: { ID: "int64" }, fails: true },
    {
      path: "/v3/lease/timetolive",
      body: { ID: UNKNOWN_LEASE, keys: true },
      fields: { ID: "int64", keys: "bool" },
      fails: false,
    },
    {
      path: "/v3/lease/keepalive",
      body: { ID: UNKNOWN_LEASE },
      fields: { ID: "int64" },
      fails: false,
      stream: "keepalive",
    },
    {
      path: "/v3/watch",
      body: { create_request: { key: b64("seed/a"), start_revision: "0", prev_kv: true } },
      fields: {
        create_request: "message",
        "create_request.key": "bytes",
        "create_request.start_revision": "int64",
        "create_request.prev_kv": "bool",
      },
      fails: false,
      stream: "watch",
    },
    { path: "/v3/cluster/member/remove", body: { ID: UNKNOWN_MEMBER }, fields: { ID: "int64" }, fails: true },
    {
      path: "/v3/maintenance/transfer-leadership",
      body: { targetID: UNKNOWN_MEMBER },
      fields: { targetID: "int64" },
      fails: true,
    },
    { path: "/v3/maintenance/alarm", body: { action: "GET" }, fields: { action: "enum" }, fails: false },
    { path: "/v3/auth/user/get", body: { name: "nobody" }, fields: { name: "string" }, fails: true },
    { path: "/v3/auth/role/get", body: { role: "nope" }, fields: { role: "string" }, fails: true },
    {
      path: "/v3/auth/authenticate",
      body: { name: "u", password: "p" },
      fields: { name: "string", password: "string" },
      fails: true,
    },
    {
      path: "/v3/election/leader",
      body: { name: b64(`${ABSENT_PREFIX}e`) },
      fields: { name: "bytes" },
      fails: true,
    },
    {
      path: "/v3/lock/unlock",
      body: { key: b64(`${ABSENT_PREFIX}l`) },
      fields: { key: "bytes" },
      fails: false,
    },
  ];
}

/**
 * Routes whose EMPTY request changes nothing (for `null`, `{}`, whitespace
 * bodies): not lease/grant, lock, campaign, snapshot or watch.
 */
const EMPTY_SAFE_ROUTES = [
  "/v3/kv/range",
  "/v3/kv/put",
  "/v3/kv/deleterange",
  "/v3/kv/compaction",
  "/v3/lease/revoke",
  "/v3/lease/timetolive",
  "/v3/lease/leases",
  "/v3/lease/keepalive",
  "/v3/cluster/member/list",
  "/v3/cluster/member/remove",
  "/v3/maintenance/alarm",
  "/v3/maintenance/status",
  "/v3/maintenance/transfer-leadership",
  "/v3/auth/user/get",
  "/v3/auth/user/add",
  "/v3/auth/role/add",
  "/v3/auth/authenticate",
  "/v3/auth/enable",
  "/v3/lock/unlock",
  "/v3/election/leader",
] as const;

/** Every gateway route etcd 3.4 serves (for wrong methods and near-miss paths). */
const GATEWAY_PATHS = [
  ...EMPTY_SAFE_ROUTES,
  "/v3/kv/txn",
  "/v3/watch",
  "/v3/lease/grant",
  "/v3/maintenance/hash",
  "/v3/maintenance/defragment",
  "/v3/maintenance/snapshot",
  "/v3/auth/role/delete",
  "/v3/lock/lock",
  "/v3/election/campaign",
] as const;

/** A valid UTF-8 character that is never a JSON token's start: Go answers "invalid character …". */
const BAD_TOKEN_CHARS = "#@!$%^&*~`'<>?;|\\)=+";
/** Bytes that are never valid UTF-8 on their own. */
const INVALID_UTF8 = fc.oneof(
  fc.integer({ min: 0x80, max: 0xbf }).map((b) => Buffer.of(b)),
  fc.integer({ min: 0xf8, max: 0xff }).map((b) => Buffer.of(b)),
  fc.constant(Buffer.of(0xc3)),
  fc.constant(Buffer.of(0xe2, 0x82)),
);

const json = (v: Json): Buffer => Buffer.from(JSON.stringify(v));

/** A copy of `body` with the field at dotted path `p` set to `v` (the raw JSON text `v` when a Buffer). */
function withField(body: Json, p: string, v: Json | { raw: string }): Buffer {
  const marker = "\u0000FUZZ-RAW\u0000";
  const copy = JSON.parse(JSON.stringify(body)) as Json;
  const keys = p.split(".");
  let at = copy as { [k: string]: Json } | Json[];
  for (const k of keys.slice(0, -1)) at = (at as { [k: string]: Json })[k] as { [k: string]: Json } | Json[];
  const last = keys[keys.length - 1]!;
  const raw = typeof v === "object" && v !== null && !Array.isArray(v) && "raw" in v;
  (at as { [k: string]: Json })[last] = raw ? marker : (v as Json);
  const text = JSON.stringify(copy);
  return Buffer.from(raw ? text.replace(JSON.stringify(marker), (v as { raw: string }).raw) : text);
}

/** A JSON value of another kind than `kind` takes, that no server parses as one (never null, no integer arrays). */
function wrongValue(kind: FieldKind): fc.Arbitrary<Json | { raw: string }> {
  const obj = fc.constantFrom<Json>({}, { a: 1 }, { key: "YQ==" });
  const bool = fc.boolean();
  const float = fc.constantFrom<Json | { raw: string }>(1.5, -0.25, { raw: "1e3" }, { raw: "2.0" });
  const junk = fc.constantFrom<Json>("abc", "x1", "-", "true");
  const arr = fc.constantFrom<Json>([{}], [true]);
  switch (kind) {
    case "bytes":
    case "string":
      return fc.oneof(obj, bool, float);
    case "int64":
      return fc.oneof(obj, bool, float, junk, arr);
    case "enum":
      return fc.oneof(obj, bool, float, fc.constantFrom<Json>("NOPE", "equal ", ""), arr);
    case "bool":
      return fc.oneof(obj, fc.integer(), junk, arr);
    case "message":
      return fc.oneof(fc.integer(), junk, bool, fc.constantFrom<Json>([1], ["a"]));
    case "repeated":
      return fc.oneof(fc.integer(), junk, bool, obj);
  }
}

/** A string no base64 decoder takes: at least one character outside the alphabet (Go skips CR and LF). */
const notBase64 = fc
  .tuple(
    fc.stringMatching(/^[A-Za-z0-9+/=]{0,12}$/),
    fc.constantFrom("!", "-", "_", "*", " ", "é", ".", "\t", "%", "\u00ff", "\ud83d\ude00"),
    fc.stringMatching(/^[A-Za-z0-9+/=!_-]{0,12}$/),
  )
  .map(([a, bad, b]) => `${a}${bad}${b}`);

const post = (path: string, body: Buffer, framing: HttpFraming = { kind: "length" }): HttpRequestSpec => ({
  method: "POST",
  path,
  body,
  framing,
});

interface GwArm {
  readonly label: string;
  readonly weight: number;
  readonly arb: fc.Arbitrary<Omit<HttpCase, "label">>;
}

const gwArm = (label: string, weight: number, arb: fc.Arbitrary<Omit<HttpCase, "label">>): GwArm => ({
  label,
  weight,
  arb,
});

/** The arbitrary of malformed (or harmless) gateway requests against `world`. */
export function gatewayCases(world: World): fc.Arbitrary<HttpCase> {
  const all = templates(world);
  const unary = all.filter((t) => t.stream === undefined);
  const notWatch = all.filter((t) => t.stream !== "watch");
  const template = fc.constantFrom(...all);
  const fieldOf = (t: Template): fc.Arbitrary<[string, FieldKind]> =>
    fc.constantFrom(...(Object.entries(t.fields) as [string, FieldKind][]));
  const bytesFieldOf = (t: Template): string[] =>
    Object.entries(t.fields)
      .filter(([, k]) => k === "bytes")
      .map(([p]) => p);
  const arms: GwArm[] = [
    gwArm(
      "truncated JSON",
      3,
      template.chain((t) => {
        const text = json(t.body);
        return fc.integer({ min: 1, max: text.length - 1 }).map((n) => ({
          request: post(t.path, text.subarray(0, n)),
          invalid: true,
        }));
      }),
    ),
    gwArm(
      "a character that starts no JSON value",
      2,
      fc.tuple(template, fc.constantFrom(...BAD_TOKEN_CHARS)).map(([t, ch]) => ({
        request: post(t.path, Buffer.concat([Buffer.from(ch), json(t.body)])),
        invalid: true,
      })),
    ),
    gwArm(
      "wrong JSON type for a field",
      5,
      template.chain((t) =>
        fieldOf(t).chain(([p, kind]) =>
          wrongValue(kind).map((v) => ({
            request: post(t.path, withField(t.body, p, v)),
            invalid: true,
            deviations: kind === "enum" ? (["enumTypeName"] as const) : [],
          })),
        ),
      ),
    ),
    gwArm(
      "non-base64 text in a bytes field",
      3,
      fc
        .constantFrom(...all.filter((t) => bytesFieldOf(t).length > 0))
        .chain((t) =>
          fc
            .tuple(fc.constantFrom(...bytesFieldOf(t)), notBase64)
            .map(([p, s]) => ({ request: post(t.path, withField(t.body, p, s)), invalid: true })),
        ),
    ),
    gwArm(
      "invalid UTF-8 between tokens",
      2,
      fc.tuple(template, INVALID_UTF8, fc.boolean()).map(([t, bad, front]) => {
        const text = json(t.body);
        // After the opening brace (where a key is expected) or before the body.
        const body = front
          ? Buffer.concat([bad, text])
          : Buffer.concat([text.subarray(0, 1), bad, text.subarray(1)]);
        return { request: post(t.path, body), invalid: true, deviations: ["invalidUtf8Char"] as const };
      }),
    ),
    gwArm(
      "invalid UTF-8 inside a bytes field's string",
      2,
      fc
        .constantFrom(...all.filter((t) => bytesFieldOf(t).length > 0))
        .chain((t) =>
          fc.tuple(
            fc.constant(t),
            fc.constantFrom(...bytesFieldOf(t)),
            INVALID_UTF8,
            fc.stringMatching(/^[A-Za-z0-9]{0,8}$/),
          ),
        )
        .map(([t, p, bad, prefix]) => {
          // The field's string is `prefix` then the invalid bytes, spliced in where the marker is.
          const [before, after] = withField(t.body, p, `${prefix}\u0001`).toString("latin1").split("\\u0001");
          return {
            request: post(
              t.path,
              Buffer.concat([Buffer.from(before!, "latin1"), bad, Buffer.from(after!, "latin1")]),
            ),
            invalid: true,
          };
        }),
    ),
    gwArm(
      "unknown fields (ignored, as etcd does)",
      3,
      fc
        .tuple(
          fc.constantFrom(...notWatch),
          fc.uniqueArray(fc.stringMatching(/^x_[a-z0-9_]{1,10}$/), { minLength: 1, maxLength: 3 }),
          fc.array(fc.jsonValue({ maxDepth: 2 }), { minLength: 3, maxLength: 3 }),
        )
        .map(([t, names, values]) => {
          const body: { [k: string]: Json } = { ...t.body };
          names.forEach((n, i) => {
            body[n] = values[i] as Json;
          });
          return { request: post(t.path, json(body)), invalid: t.fails };
        }),
    ),
    gwArm(
      "a body that is not an object",
      2,
      fc
        .tuple(
          fc.constantFrom(...GATEWAY_PATHS.filter((p) => p !== "/v3/watch")),
          fc.constantFrom("[1,2]", "[]", '"abc"', "12", "-1.5", "true", "false"),
        )
        .map(([path, text]) => ({ request: post(path, Buffer.from(text)), invalid: true })),
    ),
    gwArm(
      "an empty request (empty body, null, {}, whitespace)",
      2,
      fc
        .tuple(
          fc.constantFrom(...EMPTY_SAFE_ROUTES),
          fc.constantFrom("", "null", "{}", "  \n\t", "{} trailing"),
        )
        .map(([path, text]) => ({ request: post(path, Buffer.from(text)), invalid: false })),
    ),
    gwArm(
      "a method other than POST",
      2,
      fc
        .tuple(fc.constantFrom(...GATEWAY_PATHS), fc.constantFrom("GET", "PUT", "DELETE", "PATCH", "HEAD"))
        .map(([path, method]) => ({
          request: { method, path, body: Buffer.alloc(0), framing: { kind: "length" } },
          invalid: true,
        })),
    ),
    gwArm(
      "an unknown path",
      2,
      fc
        .tuple(
          fc.constantFrom("/v3/", "/v3beta/", "/v3alpha/", "/zz"),
          fc.stringMatching(/^[a-z0-9_-]{1,12}(\/[a-z0-9_-]{1,12}){0,2}$/),
          fc.constantFrom("POST", "GET"),
        )
        .filter(
          ([prefix, rest]) =>
            !(GATEWAY_PATHS as readonly string[]).includes(`/v3/${rest}`) || prefix === "/zz",
        )
        .filter(
          ([prefix, rest]) =>
            !(prefix === "/v3beta/" && (GATEWAY_PATHS as readonly string[]).includes(`/v3/${rest}`)),
        )
        .map(([prefix, rest, method]) => ({
          request: { method, path: `${prefix}${rest}`, body: Buffer.from("{}"), framing: { kind: "length" } },
          invalid: true,
        })),
    ),
    gwArm(
      "a chunked body in random pieces",
      3,
      fc
        .tuple(fc.constantFrom(...unary, ...all.filter((t) => t.stream === "keepalive")), fc.boolean())
        .chain(([t, truncate]) => {
          const text = json(t.body);
          return fc
            .tuple(
              fc.array(fc.integer({ min: 1, max: 16 }), { maxLength: 12 }),
              fc.integer({ min: 1, max: text.length - 1 }),
            )
            .map(([sizes, cut]) => ({
              request: post(t.path, truncate ? text.subarray(0, cut) : text, { kind: "chunked", sizes }),
              invalid: truncate || t.fails,
            }));
        }),
    ),
    gwArm(
      "a body shorter than its Content-Length, then EOF",
      1,
      fc.tuple(fc.constantFrom(...unary), fc.integer({ min: 1, max: 200 })).chain(([t, extra]) => {
        const text = json(t.body);
        return fc.integer({ min: 1, max: text.length - 1 }).map((cut) => ({
          request: {
            method: "POST",
            path: t.path,
            body: text,
            framing: {
              kind: "raw" as const,
              bytes: Buffer.concat([
                Buffer.from(
                  `POST ${t.path} HTTP/1.1\r\nHost: fuzz\r\nContent-Length: ${text.length + extra}\r\n\r\n`,
                ),
                text.subarray(0, cut),
              ]),
            },
          },
          invalid: true,
          deviations: ["httpFraming"] as const,
        }));
      }),
    ),
    gwArm(
      "a malformed chunked body",
      1,
      fc
        .tuple(fc.constantFrom(...unary), fc.constantFrom("zz", "-1", "0x5", "fffffffffffffffffff", "5;"))
        .map(([t, size]) => ({
          request: {
            method: "POST",
            path: t.path,
            body: json(t.body),
            framing: {
              kind: "raw" as const,
              bytes: Buffer.from(
                `POST ${t.path} HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n${size}\r\nabc\r\n0\r\n\r\n`,
              ),
            },
          },
          invalid: true,
          deviations: ["httpFraming"] as const,
        })),
    ),
    gwArm(
      "a put over --max-request-bytes, or over the gRPC message limit",
      1,
      fc.oneof(tooLargeSize, oversizeSize).map((size) => ({
        request: post(
          "/v3/kv/put",
          json({ key: b64(`${FUZZ_PREFIX}huge`), value: Buffer.alloc(size, 0x62).toString("base64") }),
        ),
        invalid: true,
      })),
    ),
    gwArm(
      "an Authorization header with a token nobody issued",
      1,
      fc.tuple(fc.constantFrom(...unary), authToken).map(([t, token]) => ({
        request: { ...post(t.path, json(t.body)), headers: { authorization: token } },
        // etcd checks the token only where it looks for a user (not e.g. LeaseTimeToLive).
        invalid: t.fails,
        deviations: ["invalidToken"] as const,
      })),
    ),
  ];
  return fc.oneof(
    ...arms.map((a) => ({
      weight: a.weight,
      arbitrary: a.arb.map((c): HttpCase => ({ label: a.label, ...c })),
    })),
  );
}

/** A body over leasehold's 8 MiB text limit (whitespace: etcd reads it as the empty request). */
export function hugeWhitespaceCase(): HttpCase {
  return {
    label: "a body over 8 MiB",
    request: post("/v3/kv/range", Buffer.alloc(9 * 1024 * 1024, 0x20)),
    invalid: true,
    deviations: ["bodyLimit"],
  };
}
