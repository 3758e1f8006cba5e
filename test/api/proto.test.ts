/**
 * The etcd v3 protos load and speak etcd's wire format: messages encode to the
 * bytes worked out by hand below from etcd 3.4's field numbers (tag byte =
 * field_number << 3 | wire_type; 0 = varint, 2 = length-delimited), decode from
 * such bytes, and every service has etcd's methods with etcd's streaming flags.
 * The expected method table here is written independently of ETCD_SERVICES.
 */

import { describe, expect, it } from "vitest";
import {
  ETCD_SERVICES,
  INT64_MAX,
  int64FromWire,
  loadEtcdApi,
  UINT64_MAX,
  type WireMessage,
} from "../../src/api/index.ts";

const api = loadEtcdApi();
const { KV, Watch, Lease, Maintenance } = api.services;

/** Hex of `bytes` without separators; expectations below are written with spaces. */
const hex = (bytes: Buffer): string => bytes.toString("hex");
const h = (spaced: string): string => spaced.replace(/\s+/g, "");
const b = (s: string): Buffer => Buffer.from(s, "utf8");

describe("protos: encoding matches etcd's field numbers", () => {
  it("RangeRequest: every field 1..13", () => {
    const bytes = KV.Range.requestSerialize({
      key: b("foo"),
      range_end: b("fop"),
      limit: 10n,
      revision: 5n,
      sort_order: 2, // DESCEND
      sort_target: 3, // MOD
      serializable: true,
      keys_only: true,
      count_only: true,
      min_mod_revision: 1n,
      max_mod_revision: 2n,
      min_create_revision: 3n,
      max_create_revision: 4n,
    });
    expect(hex(bytes)).toBe(
      h(`0a 03 666f6f   12 03 666f70   18 0a   20 05   28 02   30 03   38 01   40 01   48 01
         50 01   58 02   60 03   68 04`),
    );
  });

  it("RangeRequest: a revision above 2^53 keeps every bit (given as bigint or decimal string)", () => {
    const expected = h("0a 01 61   20 80 80 80 80 80 80 80 80 40"); // 2^62 as a 9-byte varint
    expect(hex(KV.Range.requestSerialize({ key: b("a"), revision: 2n ** 62n }))).toBe(expected);
    expect(hex(KV.Range.requestSerialize({ key: b("a"), revision: String(2n ** 62n) }))).toBe(expected);
  });

  it("PutRequest: key=1 value=2 lease=3 prev_kv=4 ignore_value=5 ignore_lease=6", () => {
    const bytes = KV.Put.requestSerialize({
      key: b("k"),
      value: b("v"),
      lease: 0x1234n,
      prev_kv: true,
      ignore_value: true,
      ignore_lease: true,
    });
    expect(hex(bytes)).toBe(h("0a 01 6b   12 01 76   18 b4 24   20 01   28 01   30 01"));
  });

  it("LeaseGrantRequest: TTL=1 ID=2, ID up to INT64_MAX", () => {
    const bytes = Lease.LeaseGrant.requestSerialize({ TTL: 60n, ID: INT64_MAX });
    expect(hex(bytes)).toBe(h("08 3c   10 ff ff ff ff ff ff ff ff 7f"));
  });

  it("LeaseKeepAliveRequest: ID=1; a negative int64 is a 10-byte varint", () => {
    expect(hex(Lease.LeaseKeepAlive.requestSerialize({ ID: -1n }))).toBe(
      h("08 ff ff ff ff ff ff ff ff ff 01"),
    );
  });

  it("WatchRequest: create_request=1 with fields 1..8 (filters packed), cancel_request=2, progress_request=3", () => {
    const create = Watch.Watch.requestSerialize({
      create_request: {
        key: b("a"),
        range_end: b("b"),
        start_revision: 300n,
        progress_notify: true,
        filters: [1], // NODELETE
        prev_kv: true,
        watch_id: 5n,
        fragment: true,
      },
    });
    expect(hex(create)).toBe(
      h(`0a 14
           0a 01 61   12 01 62   18 ac 02   20 01   2a 01 01   30 01   38 05   40 01`),
    );
    expect(hex(Watch.Watch.requestSerialize({ cancel_request: { watch_id: 5n } }))).toBe(h("12 02 08 05"));
    expect(hex(Watch.Watch.requestSerialize({ progress_request: {} }))).toBe(h("1a 00"));
  });

  it("TxnRequest: Compare.range_end is field 64; a oneof target of 0 is still sent", () => {
    const bytes = KV.Txn.requestSerialize({
      compare: [
        { result: 1, target: 2, key: b("k"), mod_revision: 7n, range_end: b("l") }, // GREATER, MOD
        { key: b("k"), version: 0n }, // EQUAL, VERSION: the "key does not exist" compare
      ],
      success: [{ request_put: { key: b("k") } }],
    });
    expect(hex(bytes)).toBe(
      h(`0a 0d   08 01   10 02   1a 01 6b   30 07   82 04 01 6c
         0a 05   1a 01 6b   20 00
         12 05   12 03   0a 01 6b`),
    );
  });
});

describe("protos: decoding", () => {
  it("WatchResponse: events is field 11; int64 as decimal strings, bytes as Buffer, defaults filled", () => {
    // header{revision=9} watch_id=2 events[{type=DELETE kv{key="a" mod_revision=9}}]
    const bytes = Buffer.from(h("0a 02 18 09   10 02   5a 09 08 01 12 05 0a 01 61 18 09"), "hex");
    const msg = Watch.Watch.responseDeserialize(bytes);
    expect(msg).toEqual({
      header: { cluster_id: "0", member_id: "0", revision: "9", raft_term: "0" },
      watch_id: "2",
      created: false,
      canceled: false,
      compact_revision: "0",
      cancel_reason: "",
      fragment: false,
      events: [
        {
          type: 1,
          kv: {
            key: b("a"),
            create_revision: "0",
            mod_revision: "9",
            version: "0",
            value: Buffer.alloc(0),
            lease: "0",
          },
          prev_kv: null,
        },
      ],
    });
    const kv = (msg.events as WireMessage[])[0]!.kv as WireMessage;
    expect(Buffer.isBuffer(kv.key)).toBe(true);
    expect(Buffer.isBuffer(kv.value)).toBe(true);
  });

  it("names the set oneof member", () => {
    const req = Watch.Watch.requestDeserialize(Buffer.from(h("12 02 08 05"), "hex"));
    expect(req.request_union).toBe("cancel_request");
    expect(req.cancel_request).toEqual({ watch_id: "5" });
    expect(req.create_request).toBeUndefined();
  });

  it("round-trips int64 and uint64 extremes without loss", () => {
    const header = { cluster_id: UINT64_MAX, member_id: 2n ** 63n + 1n, revision: INT64_MAX, raft_term: 1n };
    const decoded = KV.Range.responseDeserialize(KV.Range.responseSerialize({ header, count: -(2n ** 63n) }));
    const got = decoded.header as WireMessage;
    expect(int64FromWire(got.cluster_id)).toBe(UINT64_MAX);
    expect(int64FromWire(got.member_id)).toBe(2n ** 63n + 1n);
    expect(int64FromWire(got.revision)).toBe(INT64_MAX);
    expect(int64FromWire(decoded.count)).toBe(-(2n ** 63n));
  });

  it("int64FromWire refuses what the load options never produce", () => {
    expect(() => int64FromWire(5)).toThrow(/int64/);
    expect(() => int64FromWire("5.0")).toThrow(/int64/);
  });

  it("SnapshotResponse: remaining_bytes=2 (uint64), blob=3 (bytes)", () => {
    const bytes = Maintenance.Snapshot.responseSerialize({
      remaining_bytes: 300n,
      blob: Buffer.from([0, 255]),
    });
    expect(hex(bytes)).toBe(h("10 ac 02   1a 02 00 ff"));
  });
});

describe("protos: services and streaming", () => {
  type Kind = "unary" | "server-stream" | "client-stream" | "bidi";
  const u: Kind = "unary";
  // Transcribed from etcd 3.4's rpc.proto, v3lock.proto and v3election.proto.
  const expected: Record<string, Record<string, Kind>> = {
    "etcdserverpb.KV": { Range: u, Put: u, DeleteRange: u, Txn: u, Compact: u },
    "etcdserverpb.Watch": { Watch: "bidi" },
    "etcdserverpb.Lease": {
      LeaseGrant: u,
      LeaseRevoke: u,
      LeaseKeepAlive: "bidi",
      LeaseTimeToLive: u,
      LeaseLeases: u,
    },
    "etcdserverpb.Cluster": {
      MemberAdd: u,
      MemberRemove: u,
      MemberUpdate: u,
      MemberList: u,
      MemberPromote: u,
    },
    "etcdserverpb.Maintenance": {
      Alarm: u,
      Status: u,
      Defragment: u,
      Hash: u,
      HashKV: u,
      Snapshot: "server-stream",
      MoveLeader: u,
    },
    "etcdserverpb.Auth": Object.fromEntries(
      [
        "AuthEnable",
        "AuthDisable",
        "Authenticate",
        "UserAdd",
        "UserGet",
        "UserList",
        "UserDelete",
        "UserChangePassword",
        "UserGrantRole",
        "UserRevokeRole",
        "RoleAdd",
        "RoleGet",
        "RoleList",
        "RoleDelete",
        "RoleGrantPermission",
        "RoleRevokePermission",
      ].map((m) => [m, u]),
    ),
    "v3lockpb.Lock": { Lock: u, Unlock: u },
    "v3electionpb.Election": { Campaign: u, Proclaim: u, Leader: u, Observe: "server-stream", Resign: u },
    // leasehold's own services, beside etcd's.
    "leasehold.v1.Leases": {
      Acquire: u,
      Renew: u,
      KeepAlive: "bidi",
      Release: u,
      Get: u,
      List: u,
      Events: "server-stream",
      RequestRelease: u,
      Revoke: u,
    },
    "leasehold.v1.Fences": { CheckFence: u, FencedPut: u },
    "leasehold.v1.Counters": { Add: u, Get: u, CompareAndSet: u },
    "leasehold.v1.Semaphores": { Acquire: u, Renew: u, Release: u, Get: u },
  };

  it("loads exactly etcd's services (and leasehold.v1's), each with exactly its methods and streaming flags", () => {
    const services = Object.entries(api.packageDefinition).filter(([, def]) => !("format" in def));
    const actual = Object.fromEntries(
      services.map(([name, def]) => [
        name,
        Object.fromEntries(
          Object.entries(def as Record<string, { requestStream: boolean; responseStream: boolean }>).map(
            ([method, m]) => [
              method,
              m.requestStream
                ? m.responseStream
                  ? "bidi"
                  : "client-stream"
                : m.responseStream
                  ? "server-stream"
                  : "unary",
            ],
          ),
        ),
      ]),
    );
    expect(actual).toEqual(expected);
  });

  it("hands out the same services under their short names, with etcd's method paths", () => {
    for (const [short, spec] of Object.entries(ETCD_SERVICES)) {
      const def = api.services[short as keyof typeof api.services] as Record<string, { path: string }>;
      expect(Object.keys(def).sort()).toEqual(Object.keys(expected[spec.fullName]!).sort());
      for (const [method, m] of Object.entries(def)) expect(m.path).toBe(`/${spec.fullName}/${method}`);
    }
    expect(Watch.Watch.path).toBe("/etcdserverpb.Watch/Watch");
    expect(Lease.LeaseKeepAlive.path).toBe("/etcdserverpb.Lease/LeaseKeepAlive");
  });

  it("knows the message types clients name, in etcd's packages", () => {
    for (const name of [
      "etcdserverpb.ResponseHeader",
      "etcdserverpb.LeaseCheckpointRequest",
      "etcdserverpb.AuthStatusResponse",
      "etcdserverpb.AlarmType",
      "mvccpb.KeyValue",
      "mvccpb.Event",
      "authpb.User",
      "authpb.Role",
      "v3electionpb.LeaderKey",
    ]) {
      expect(api.packageDefinition[name], name).toBeDefined();
    }
  });
});
