/**
 * etcdserverpb.Maintenance (src/api/maintenance.ts) against real in-process
 * members and ApiServers over loopback, with proto-loader clients: the space
 * quota and the NOSPACE alarm (etcd's quota.go and applierV3Capped), Alarm,
 * Status, Hash and HashKV, the Snapshot stream (etcd's chunking and trailing
 * SHA-256, decodable by `snapshot restore`), and MoveLeader in a cluster of
 * three (members wired together by an in-memory transport). Wire shapes and
 * messages are etcd 3.4.23's (checked with etcdctl against a real etcd).
 * Nothing sleeps: every wait is for an answer.
 */

import { createHash } from "node:crypto";
import { type Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiHost } from "../../src/api/context.ts";
import { ErrorAnswer } from "../../src/api/context.ts";
import { loadEtcdApi, type WireMessage } from "../../src/api/index.ts";
import { DEFAULT_QUOTA_BACKEND_BYTES, SNAPSHOT_CHUNK_BYTES, SpaceQuota } from "../../src/api/maintenance.ts";
import { ApiServer } from "../../src/api/server.ts";
import type { MemberId } from "../../src/raft/index.ts";
import { bootstrapState, memberId } from "../../src/raft/index.ts";
import { decodeDbSnapshot } from "../../src/server/db-snapshot.ts";
import { Member } from "../../src/server/member.ts";
import type { Command } from "../../src/state/index.ts";
import { encodeMemberContext, revision, StateMachine } from "../../src/state/index.ts";

type W = WireMessage;
const api = loadEtcdApi();
const DEADLINE_MS = 10_000;
const B = (s: string): Buffer => Buffer.from(s);

type ClientCtor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;
type UnaryFn = (
  req: W,
  md: Metadata,
  opts: { deadline: number },
  cb: (e: ServiceError | null, r?: W) => void,
) => void;
type StreamFn = (req: W, md: Metadata) => NodeJS.EventEmitter;

/** One member of a cluster wired in memory, serving the API on a loopback port. */
class Node {
  readonly member: Member;
  readonly server: ApiServer;
  private readonly clients = new Map<string, Client & Record<string, UnaryFn | StreamFn>>();
  address = "";

  constructor(
    id: MemberId,
    voters: readonly MemberId[],
    net: Map<MemberId, Node>,
    quotaBackendBytes?: number,
  ) {
    this.member = new Member(
      { id, heartbeatMs: 10, electionMs: 100, snapshotCount: 1_000_000, requestTimeoutMs: 5_000 },
      bootstrapState(voters, (m) =>
        encodeMemberContext({ name: `m${m}`, peerUrls: [`http://127.0.0.1:${m}`] }),
      ),
      { save: () => {}, saveSnapshot: () => {} },
      {
        send: (to, payload) => {
          const peer = net.get(to);
          if (peer === undefined || peer.cut || this.cut) return true; // dropped on the way
          setImmediate(() => peer.member.receive(id, payload));
          return true;
        },
      },
    );
    this.server = new ApiServer({
      member: this.member,
      clusterId: 0x1234n,
      dbSize: () => this.member.machine.sizeBytes(),
      quotaBackendBytes,
    });
    net.set(id, this);
  }

  /** Cut off from the others (messages both ways are dropped). */
  cut = false;

  async start(): Promise<this> {
    const port = await this.server.listen("127.0.0.1", 0);
    this.address = `127.0.0.1:${port}`;
    this.member.start();
    return this;
  }

  async stop(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    await this.server.close();
    this.member.stop();
  }

  private client(service: string): Client & Record<string, UnaryFn | StreamFn> {
    let c = this.clients.get(service);
    if (c === undefined) {
      const pkgs = loadPackageDefinition(api.packageDefinition) as unknown as Record<
        "etcdserverpb" | "v3lockpb" | "v3electionpb",
        Record<string, ClientCtor>
      >;
      const ctor = pkgs.etcdserverpb[service] ?? pkgs.v3lockpb[service] ?? pkgs.v3electionpb[service];
      c = new ctor!(this.address, credentials.createInsecure()) as Client &
        Record<string, UnaryFn | StreamFn>;
      this.clients.set(service, c);
    }
    return c;
  }

  call(service: string, method: string, req: W = {}): Promise<W> {
    const c = this.client(service);
    const fn = c[method] as UnaryFn;
    return new Promise((resolve, reject) => {
      fn.call(c, req, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (e, r) =>
        e ? reject(e) : resolve(r!),
      );
    });
  }

  /** The error a call answers: "<code> <message>", or "ok". */
  async error(service: string, method: string, req: W = {}): Promise<string> {
    try {
      await this.call(service, method, req);
      return "ok";
    } catch (e) {
      return `${(e as ServiceError).code} ${(e as ServiceError).details}`;
    }
  }

  /** Every message of a server stream, and its status. */
  stream(service: string, method: string, req: W = {}): Promise<{ messages: W[]; code: number }> {
    const c = this.client(service);
    const s = (c[method] as StreamFn).call(c, req, new Metadata());
    const messages: W[] = [];
    return new Promise((resolve) => {
      s.on("data", (m: W) => messages.push(m));
      s.on("error", () => {});
      s.on("status", (st: { code: number }) => resolve({ messages, code: st.code }));
    });
  }
}

const NO_SPACE = "8 etcdserver: mvcc: database space exceeded";

describe("the space quota and the NOSPACE alarm", () => {
  let node: Node;
  const QUOTA = 4_000;
  const put = (key: string, bytes: number) =>
    node.error("KV", "Put", { key: B(key), value: Buffer.alloc(bytes, 120) });

  beforeAll(async () => {
    node = await new Node(memberId(1), [memberId(1)], new Map(), QUOTA).start();
    node.member.raft.campaignNow();
    await node.member.read(true, () => undefined);
  });
  afterAll(() => node.stop());

  it("refuses the write that would reach the quota and raises NOSPACE through Raft", async () => {
    // Each put costs 256 + 2 + 500 = 758 bytes (etcd's estimate, and what the size grows by).
    const answers: string[] = [];
    for (let i = 1; i <= 6; i++) answers.push(await put(`k${i}`, 500));
    expect(answers).toEqual(["ok", "ok", "ok", "ok", "ok", NO_SPACE]);
    expect(node.member.machine.sizeBytes()).toBe(5 * 758);
    expect(await node.call("Maintenance", "Alarm", { action: 0 })).toEqual({
      header: null,
      alarms: [{ memberID: "1", alarm: 1 }],
    });
    const status = await node.call("Maintenance", "Status");
    expect(status.errors).toEqual(["memberID:1 alarm:NOSPACE "]);
    expect(status.dbSize).toBe(String(5 * 758));
  });

  it("while NOSPACE is active: puts and grants fail, reads, deletes and compaction work; then disarm", async () => {
    expect(await put("tiny", 0)).toBe(NO_SPACE);
    expect(await node.error("Lease", "LeaseGrant", { TTL: "10" })).toBe(NO_SPACE);
    const got = await node.call("KV", "Range", { key: B("k1") });
    expect((got.kvs as W[]).length).toBe(1);
    expect(await node.error("KV", "DeleteRange", { key: B("k1"), range_end: B("k5") })).toBe("ok");
    expect(await node.error("KV", "DeleteRange", { key: B("k5") })).toBe("ok");
    const rev = node.member.machine.currentRevision();
    expect(await node.error("KV", "Compact", { revision: String(rev) })).toBe("ok");
    // Space is free now, but the alarm still caps the store: refused at apply, on every replica.
    const size = node.member.machine.sizeBytes();
    expect(size + 256 + 4).toBeLessThan(QUOTA);
    expect(await put("tiny", 0)).toBe(NO_SPACE);
    const disarm = await node.call("Maintenance", "Alarm", { action: 2, memberID: "1", alarm: 1 });
    expect(disarm.alarms).toEqual([{ memberID: "1", alarm: 1 }]);
    expect(await node.call("Maintenance", "Alarm", { action: 0 })).toMatchObject({ alarms: [] });
    expect((await node.call("Maintenance", "Status")).errors).toEqual([]);
    expect(await put("tiny", 0)).toBe("ok");
    expect(await node.error("Lease", "LeaseGrant", { TTL: "10" })).toBe("ok");
  });

  it("answers NONE and unknown alarm types with no alarm, and proposes nothing", async () => {
    const applied = node.member.machine.appliedIndex();
    expect(await node.call("Maintenance", "Alarm", { action: 1, memberID: "1", alarm: 0 })).toMatchObject({
      alarms: [],
    });
    expect(await node.call("Maintenance", "Alarm", { action: 1, memberID: "1", alarm: 7 })).toMatchObject({
      alarms: [],
    });
    expect(await node.call("Maintenance", "Alarm", { action: 0, alarm: 7 })).toMatchObject({ alarms: [] });
    expect(node.member.machine.appliedIndex()).toBe(applied);
    // An ACTIVATE of CORRUPT by a client is taken (etcd takes it), for any member id.
    expect(
      await node.call("Maintenance", "Alarm", { action: 1, memberID: "18446744073709551615", alarm: 2 }),
    ).toMatchObject({ alarms: [{ memberID: "18446744073709551615", alarm: 2 }] });
    expect(await node.error("KV", "DeleteRange", { key: B("tiny") })).toBe("15 etcdserver: corrupt cluster");
    expect(await node.call("Maintenance", "Alarm", { action: 0, alarm: 1 })).toMatchObject({ alarms: [] });
    await node.call("Maintenance", "Alarm", { action: 2, memberID: "18446744073709551615", alarm: 2 });
    expect(await node.error("KV", "DeleteRange", { key: B("tiny") })).toBe("ok");
  });
});

describe("the space quota covers the Lock and Election services' writes", () => {
  it("a lock key or a proclaimed value that would pass the quota raises NOSPACE and fails", async () => {
    const node = await new Node(memberId(1), [memberId(1)], new Map(), 2_000).start();
    try {
      node.member.raft.campaignNow();
      await node.member.read(true, () => undefined);
      // etcd's lock and election servers answer every error with code Unknown (2).
      const noSpace = NO_SPACE.replace(/^8 /, "2 ");
      expect(await node.error("Lock", "Lock", { name: Buffer.alloc(3_000, 97) })).toBe(noSpace);
      expect(node.member.machine.alarmList().map((a) => a.alarm)).toEqual(["nospace"]);
      expect(await node.error("Election", "Campaign", { name: B("e"), value: B("v") })).toBe(noSpace);
    } finally {
      await node.stop();
    }
  });
});

describe("SpaceQuota (etcd's NewBackendQuota and quotaAlarmer)", () => {
  /** A host whose state is `sizeBytes` big and whose writes are recorded (and fail, as without a leader). */
  function host(sizeBytes: number) {
    const writes: Command[] = [];
    const logs: string[] = [];
    const h = {
      member: {
        id: 5,
        machine: { sizeBytes: () => sizeBytes },
        write: (c: Command) => {
          writes.push(c);
          return Promise.reject(new Error("etcdserver: no leader"));
        },
      },
      log: (level: string, msg: string) => logs.push(`${level}: ${msg}`),
    } as unknown as ApiHost;
    return { h, writes, logs };
  }
  const put: Command = { type: "put", request: { key: B("k"), value: B("v") } };
  const outcome = (p: Promise<void>): Promise<string> =>
    p.then(
      () => "ok",
      (e: unknown) => (e instanceof ErrorAnswer ? e.etcdError : String(e)),
    );

  it("0 is etcd's 2 GiB, a negative quota is none, above 8 GiB it is kept with a warning", async () => {
    const full = host(DEFAULT_QUOTA_BACKEND_BYTES);
    expect(new SpaceQuota(full.h, 0).quotaBytes).toBe(DEFAULT_QUOTA_BACKEND_BYTES);
    expect(await outcome(new SpaceQuota(full.h, 0).check(put))).toBe("NoSpace");
    // The raise was proposed for this member; its failure is logged, and the answer is NoSpace all the same.
    expect(full.writes).toEqual([{ type: "alarm", action: "activate", member: 5n, alarm: "nospace" }]);
    expect(full.logs).toEqual(["warn: could not raise the NOSPACE alarm: etcdserver: no leader"]);
    expect(await outcome(new SpaceQuota(full.h, -1).check(put))).toBe("ok");
    // Deletes cost nothing: they pass a full store.
    expect(
      await outcome(new SpaceQuota(full.h, 0).check({ type: "deleteRange", request: { key: B("k") } })),
    ).toBe("ok");
    const big = host(0);
    expect(new SpaceQuota(big.h, 9 * 1024 ** 3).quotaBytes).toBe(9 * 1024 ** 3);
    expect(big.logs[0]).toMatch(/^warn: quota exceeds the maximum value/);
  });
});

describe("Hash, HashKV, Status and Snapshot", () => {
  let node: Node;
  beforeAll(async () => {
    node = await new Node(memberId(1), [memberId(1)], new Map()).start();
    node.member.raft.campaignNow();
    await node.member.read(true, () => undefined);
    for (let i = 0; i < 3; i++)
      await node.call("KV", "Put", { key: B(`big${i}`), value: Buffer.alloc(40_000, 97 + i) });
  });
  afterAll(() => node.stop());

  it("HashKV: the current revision's hash, stable for a past revision, etcd's errors at the edges", async () => {
    const at = node.member.machine.currentRevision();
    const now = await node.call("Maintenance", "HashKV", { revision: "0" });
    expect(now.compact_revision).toBe("-1");
    expect((now.header as W).revision).toBe(String(at));
    expect(node.member.machine.hashKv(revision(0))).toMatchObject({ ok: true, hash: now.hash });
    await node.call("KV", "Put", { key: B("later"), value: B("x") });
    const past = await node.call("Maintenance", "HashKV", { revision: String(at) });
    expect(past.hash).toBe(now.hash);
    expect((past.header as W).revision).toBe(String(at + 1));
    expect((await node.call("Maintenance", "HashKV", {})).hash).not.toBe(now.hash);
    expect(await node.error("Maintenance", "HashKV", { revision: String(at + 5) })).toBe(
      "11 etcdserver: mvcc: required revision is a future revision",
    );
    expect(await node.error("Maintenance", "HashKV", { revision: "9223372036854775807" })).toBe(
      "11 etcdserver: mvcc: required revision is a future revision",
    );
    await node.call("KV", "Compact", { revision: "3" });
    expect(await node.error("Maintenance", "HashKV", { revision: "3" })).toBe(
      "11 etcdserver: mvcc: required revision has been compacted",
    );
    expect((await node.call("Maintenance", "HashKV", { revision: "4" })).compact_revision).toBe("3");
  });

  it("Hash: unchanged by requests that fail, changed by a write", async () => {
    const h0 = (await node.call("Maintenance", "Hash")).hash;
    expect(await node.error("KV", "Put", { key: B("x"), value: B("y"), lease: "99" })).toBe(
      "5 etcdserver: requested lease not found",
    );
    expect(await node.error("KV", "Compact", { revision: "1" })).toMatch(/^11 /);
    expect((await node.call("Maintenance", "Hash")).hash).toBe(h0);
    await node.call("KV", "Put", { key: B("x"), value: B("y") });
    expect((await node.call("Maintenance", "Hash")).hash).not.toBe(h0);
  });

  it("Status: the leader, no errors, the quota's size; Defragment answers success", async () => {
    const s = await node.call("Maintenance", "Status");
    expect(s.leader).toBe("1");
    expect(s.errors).toEqual([]);
    expect(s.dbSize).toBe(String(node.member.machine.sizeBytes()));
    expect(s.dbSizeInUse).toBe(s.dbSize);
    expect(await node.call("Maintenance", "Defragment")).toEqual({ header: null });
  });

  it("Snapshot: 32 KiB chunks counting down, then the SHA-256; the file restores to the same key space", async () => {
    const { messages, code } = await node.stream("Maintenance", "Snapshot");
    expect(code).toBe(0);
    const blobs = messages.map((m) => m.blob as Buffer);
    const body = Buffer.concat(blobs.slice(0, -1));
    expect(messages.length).toBeGreaterThan(4);
    for (const m of messages.slice(0, -2)) expect((m.blob as Buffer).length).toBe(SNAPSHOT_CHUNK_BYTES);
    let left = body.length;
    for (const m of messages.slice(0, -1)) {
      left -= (m.blob as Buffer).length;
      expect(m.remaining_bytes).toBe(String(left));
    }
    const last = messages.at(-1)!;
    expect(last.remaining_bytes).toBe("0");
    expect(last.blob).toEqual(createHash("sha256").update(body).digest());
    const file = Buffer.concat(blobs);
    expect(file.length % 512).toBe(32); // etcdctl's check (hasChecksum)
    const snap = decodeDbSnapshot(file);
    expect(snap.checked).toBe(true);
    expect(snap.header).toMatchObject({
      memberId: "1",
      clusterId: String(0x1234n),
      revision: node.member.machine.currentRevision(),
    });
    const restored = StateMachine.restore(snap.state);
    expect(restored.hashKv(revision(0))).toEqual(node.member.machine.hashKv(revision(0)));
    const flipped = Buffer.from(file);
    flipped[100]! ^= 1;
    expect(() => decodeDbSnapshot(flipped)).toThrow(/expected sha256 .* the file is damaged/);
  });
});

describe("MoveLeader in a cluster of three", () => {
  const net = new Map<MemberId, Node>();
  const ids = [1, 2, 3].map(memberId);
  let nodes: Node[];
  const leader = (): Node => nodes.find((n) => n.member.isLeader)!;

  beforeAll(async () => {
    nodes = await Promise.all(ids.map((id) => new Node(id, ids, net).start()));
    nodes[0]!.member.raft.campaignNow();
    await nodes[0]!.member.read(true, () => undefined);
  });
  afterAll(() => Promise.all(nodes.map((n) => n.stop())));

  it("refuses on a follower and for a target that is not a voting member", async () => {
    expect(leader()).toBe(nodes[0]);
    expect(await nodes[1]!.error("Maintenance", "MoveLeader", { targetID: "3" })).toBe(
      "9 etcdserver: not leader",
    );
    const bad = "9 etcdserver: bad leader transferee";
    expect(await nodes[0]!.error("Maintenance", "MoveLeader", { targetID: "99" })).toBe(bad);
    expect(await nodes[0]!.error("Maintenance", "MoveLeader", { targetID: "0" })).toBe(bad);
    expect(await nodes[0]!.error("Maintenance", "MoveLeader", { targetID: "18446744073709551615" })).toBe(
      bad,
    );
    await nodes[0]!.member.changeMembership({
      kind: "addLearner",
      member: memberId(4),
      context: encodeMemberContext({ name: "m4", peerUrls: ["http://127.0.0.1:4"] }),
    });
    expect(await nodes[0]!.error("Maintenance", "MoveLeader", { targetID: "4" })).toBe(bad);
  });

  it("hands leadership to the target and answers once it leads; to itself at once", async () => {
    expect(await nodes[0]!.call("Maintenance", "MoveLeader", { targetID: "3" })).toEqual({ header: null });
    expect(nodes[2]!.member.isLeader).toBe(true);
    expect(nodes[0]!.member.leader).toBe(3);
    expect(await nodes[2]!.call("Maintenance", "MoveLeader", { targetID: "3" })).toEqual({ header: null });
    // The cluster still works under the new leader.
    expect(await nodes[0]!.error("KV", "Put", { key: B("after"), value: B("move") })).toBe("ok");
  });

  it("answers etcd's timeout when the target cannot take over (Raft gives the transfer up)", async () => {
    const from = leader();
    const target = nodes.find((n) => n !== from)!;
    target.cut = true;
    try {
      expect(await from.error("Maintenance", "MoveLeader", { targetID: String(target.member.id) })).toBe(
        "2 etcdserver: request timed out, leader transfer took too long",
      );
      expect(from.member.isLeader).toBe(true);
    } finally {
      target.cut = false;
    }
  });
});
