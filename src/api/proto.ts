/**
 * Loads the etcd v3 API protos (src/api/proto/) with @grpc/proto-loader and
 * hands out the service definitions a grpc-js server registers.
 *
 * Contract:
 * - The protos carry etcd v3.4's wire names and numbers (see the header of
 *   proto/etcdserverpb/rpc.proto). `loadEtcdApi()` asserts that every service
 *   has exactly the methods and streaming flags of `ETCD_SERVICES`, so a proto
 *   edit that drifts from the table stops the member at startup, not a client.
 * - Decoded messages (what a handler receives) follow `PROTO_LOAD_OPTIONS`:
 *   - field names as in the .proto (`range_end`, `TTL`, `peerURLs`);
 *   - int64 and uint64 as decimal strings, never JS numbers: revisions, lease
 *     ids and member ids use all 64 bits, and numbers lose precision above 2^53.
 *     proto-loader cannot produce bigint; convert at the gateway with
 *     `int64FromWire` (CONVENTIONS 4: int64 ids are bigint inside);
 *   - bytes as Node `Buffer`;
 *   - enums as their numbers, so an unknown value reaches the gateway to be
 *     rejected instead of turning into `undefined`;
 *   - every absent scalar, bytes and repeated field filled with its default
 *     ("0", empty Buffer, false, ""), message fields absent stay null;
 *   - each set oneof named by a virtual field (`request_union: "create_request"`).
 * - Messages to encode (what a handler sends) may give int64 fields as bigint,
 *   decimal string or safe integer; grpc-js serializes them through protobufjs.
 *   Leave default-valued fields out to get etcd's byte-for-byte encoding; an
 *   explicit 0 or "" is encoded (valid proto3, just longer).
 */

import { fileURLToPath } from "node:url";
import type { MethodDefinition } from "@grpc/grpc-js";
import { loadSync, type Options, type PackageDefinition } from "@grpc/proto-loader";
import protobuf from "protobufjs";
import { assert } from "../raft/index.ts";

/** How deep protobufjs may nest messages: room for a txn nested past etcd's op limit. */
export const PROTO_RECURSION_LIMIT = 1024;

/** Directory holding the .proto files; imports inside them are relative to it. */
export const PROTO_ROOT_DIR: string = fileURLToPath(new URL("./proto/", import.meta.url));

/** The files loaded; the others (mvccpb, authpb) come in through their imports. */
export const PROTO_FILES: readonly string[] = [
  "etcdserverpb/rpc.proto",
  "v3lockpb/v3lock.proto",
  "v3electionpb/v3election.proto",
  "leaseholdpb/leasehold.proto",
];

/** proto-loader options; see the header for what each means for handlers. */
export const PROTO_LOAD_OPTIONS: Readonly<Options> = {
  keepCase: true,
  longs: String,
  enums: Number,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT_DIR],
};

/** How a method streams, from the caller's side. */
export type MethodKind = "unary" | "server-stream" | "client-stream" | "bidi";

/**
 * Every service of the etcd v3.4 gRPC API, with its fully qualified name and
 * each method's kind. The methods are listed in etcd's order.
 */
export const ETCD_SERVICES = {
  KV: {
    fullName: "etcdserverpb.KV",
    methods: { Range: "unary", Put: "unary", DeleteRange: "unary", Txn: "unary", Compact: "unary" },
  },
  Watch: {
    fullName: "etcdserverpb.Watch",
    methods: { Watch: "bidi" },
  },
  Lease: {
    fullName: "etcdserverpb.Lease",
    methods: {
      LeaseGrant: "unary",
      LeaseRevoke: "unary",
      LeaseKeepAlive: "bidi",
      LeaseTimeToLive: "unary",
      LeaseLeases: "unary",
    },
  },
  Cluster: {
    fullName: "etcdserverpb.Cluster",
    methods: {
      MemberAdd: "unary",
      MemberRemove: "unary",
      MemberUpdate: "unary",
      MemberList: "unary",
      MemberPromote: "unary",
    },
  },
  Maintenance: {
    fullName: "etcdserverpb.Maintenance",
    methods: {
      Alarm: "unary",
      Status: "unary",
      Defragment: "unary",
      Hash: "unary",
      HashKV: "unary",
      Snapshot: "server-stream",
      MoveLeader: "unary",
    },
  },
  Auth: {
    fullName: "etcdserverpb.Auth",
    methods: {
      AuthEnable: "unary",
      AuthDisable: "unary",
      Authenticate: "unary",
      UserAdd: "unary",
      UserGet: "unary",
      UserList: "unary",
      UserDelete: "unary",
      UserChangePassword: "unary",
      UserGrantRole: "unary",
      UserRevokeRole: "unary",
      RoleAdd: "unary",
      RoleGet: "unary",
      RoleList: "unary",
      RoleDelete: "unary",
      RoleGrantPermission: "unary",
      RoleRevokePermission: "unary",
    },
  },
  Lock: {
    fullName: "v3lockpb.Lock",
    methods: { Lock: "unary", Unlock: "unary" },
  },
  Election: {
    fullName: "v3electionpb.Election",
    methods: {
      Campaign: "unary",
      Proclaim: "unary",
      Leader: "unary",
      Observe: "server-stream",
      Resign: "unary",
    },
  },
  // leasehold's own services (leaseholdpb/leasehold.proto), on the same port.
  Leases: {
    fullName: "leasehold.v1.Leases",
    methods: {
      Acquire: "unary",
      Renew: "unary",
      KeepAlive: "bidi",
      Release: "unary",
      Get: "unary",
      List: "unary",
      Events: "server-stream",
      RequestRelease: "unary",
      Revoke: "unary",
    },
  },
  Fences: {
    fullName: "leasehold.v1.Fences",
    methods: { CheckFence: "unary", FencedPut: "unary" },
  },
  Counters: {
    fullName: "leasehold.v1.Counters",
    methods: { Add: "unary", Get: "unary", CompareAndSet: "unary" },
  },
  Semaphores: {
    fullName: "leasehold.v1.Semaphores",
    methods: { Acquire: "unary", Renew: "unary", Release: "unary", Get: "unary" },
  },
} as const satisfies Record<
  string,
  { readonly fullName: string; readonly methods: Readonly<Record<string, MethodKind>> }
>;

/** A service's short name: `KV`, `Watch`, `Lease`, … */
export type EtcdServiceName = keyof typeof ETCD_SERVICES;

/** The method names of service `S`. */
export type EtcdMethodName<S extends EtcdServiceName> = keyof (typeof ETCD_SERVICES)[S]["methods"] & string;

/**
 * A decoded or to-be-encoded message: a plain object shaped by the .proto and
 * `PROTO_LOAD_OPTIONS`. Deliberately untyped here; the gateway validates it.
 */
export type WireMessage = Record<string, unknown>;

/** The grpc-js definition of service `S`: one entry per method, nothing else. */
export type EtcdServiceDefinition<S extends EtcdServiceName> = {
  readonly [M in EtcdMethodName<S>]: MethodDefinition<WireMessage, WireMessage>;
};

/** The loaded API. */
export interface EtcdApi {
  /** proto-loader's output, for `grpc.loadPackageDefinition` (clients, reflection). */
  readonly packageDefinition: PackageDefinition;
  /** Per service, what `server.addService(definition, implementation)` takes. */
  readonly services: { readonly [S in EtcdServiceName]: EtcdServiceDefinition<S> };
}

/** The kind of a loaded method, from its two streaming flags. */
function methodKind(method: MethodDefinition<WireMessage, WireMessage>): MethodKind {
  if (method.requestStream) return method.responseStream ? "bidi" : "client-stream";
  return method.responseStream ? "server-stream" : "unary";
}

/** Narrows one loaded service to `S` after checking it against `ETCD_SERVICES`. */
function checkedService<S extends EtcdServiceName>(
  packageDefinition: PackageDefinition,
  name: S,
): EtcdServiceDefinition<S> {
  const spec = ETCD_SERVICES[name];
  const loaded = packageDefinition[spec.fullName];
  assert(loaded !== undefined, `proto: service ${spec.fullName} not loaded`);
  assert(!("format" in loaded) && !("type" in loaded), `proto: ${spec.fullName} is not a service`);
  const service = loaded as Readonly<Record<string, MethodDefinition<WireMessage, WireMessage>>>;
  const expected: Readonly<Record<string, MethodKind>> = spec.methods;
  const loadedNames = Object.keys(service).sort();
  const expectedNames = Object.keys(expected).sort();
  assert(
    loadedNames.join(",") === expectedNames.join(","),
    `proto: ${spec.fullName} has methods [${loadedNames.join(", ")}], expected [${expectedNames.join(", ")}]`,
  );
  for (const method of expectedNames) {
    const def = service[method]!;
    assert(
      def.path === `/${spec.fullName}/${method}`,
      `proto: ${spec.fullName}.${method} path is ${def.path}`,
    );
    const kind = methodKind(def);
    assert(
      kind === expected[method],
      `proto: ${spec.fullName}.${method} is ${kind}, expected ${expected[method]}`,
    );
  }
  return service as unknown as EtcdServiceDefinition<S>;
}

/**
 * Loads and checks the protos. Synchronous (reads a few files); call once at
 * startup. Throws an AssertionError if a service drifted from `ETCD_SERVICES`.
 */
export function loadEtcdApi(): EtcdApi {
  // protobufjs stops at 100 nested messages; etcd (Go) decodes a txn nested until its 128-op limit
  // answers TooManyOps (two messages per level), and a response must encode as deep as its request.
  protobuf.util.recursionLimit = Math.max(protobuf.util.recursionLimit, PROTO_RECURSION_LIMIT);
  protobuf.Reader.recursionLimit = Math.max(protobuf.Reader.recursionLimit, PROTO_RECURSION_LIMIT);
  const packageDefinition = loadSync([...PROTO_FILES], { ...PROTO_LOAD_OPTIONS });
  return {
    packageDefinition,
    services: {
      KV: checkedService(packageDefinition, "KV"),
      Watch: checkedService(packageDefinition, "Watch"),
      Lease: checkedService(packageDefinition, "Lease"),
      Cluster: checkedService(packageDefinition, "Cluster"),
      Maintenance: checkedService(packageDefinition, "Maintenance"),
      Auth: checkedService(packageDefinition, "Auth"),
      Lock: checkedService(packageDefinition, "Lock"),
      Election: checkedService(packageDefinition, "Election"),
      Leases: checkedService(packageDefinition, "Leases"),
      Fences: checkedService(packageDefinition, "Fences"),
      Counters: checkedService(packageDefinition, "Counters"),
      Semaphores: checkedService(packageDefinition, "Semaphores"),
    },
  };
}

/** Smallest and largest int64 and the largest uint64, for range checks at the gateway. */
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const UINT64_MAX = 2n ** 64n - 1n;

/**
 * A decoded int64 or uint64 field (a decimal string under `PROTO_LOAD_OPTIONS`)
 * as a bigint. Asserts the decimal form: anything else means the load options
 * changed under the handlers.
 */
export function int64FromWire(value: unknown): bigint {
  assert(typeof value === "string" && /^-?\d+$/.test(value), `proto: int64 field decoded as ${typeof value}`);
  return BigInt(value);
}
