/**
 * etcd v3 auth over gRPC (src/api/auth.ts, the checks in src/api/server.ts and
 * watch-stream.ts): a real in-process member and ApiServer on loopback, with
 * proto-loader clients that send the `token` metadata as clientv3 does. Each
 * expectation is etcd 3.4's answer (release-3.4; the texts were checked
 * against etcd 3.4.23 where that version agrees). Token lives run on an
 * injected clock; nothing sleeps.
 */

import {
  type Client,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuthGate, hashPassword, TokenKeeper, verifyPassword } from "../../src/api/auth.ts";
import type { CallInfo } from "../../src/api/context.ts";
import { loadEtcdApi, WATCH_CANCEL_REASONS, type WireMessage } from "../../src/api/index.ts";
import { ApiServer } from "../../src/api/server.ts";
import { bootstrapState, memberId } from "../../src/raft/index.ts";
import { Member } from "../../src/server/member.ts";

type W = WireMessage;
const api = loadEtcdApi();
const DEADLINE_MS = 10_000;
const B = (s: string): Buffer => Buffer.from(s);
/** Cheap scrypt for tests (the default costs ~50 ms a hash). */
const TEST_HASH_COST = { logN: 4, r: 8, p: 1 };

type ClientCtor = new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options?: Record<string, unknown>,
) => Client;
type UnaryFn = (
  req: W,
  md: Metadata,
  opts: { deadline: number },
  cb: (e: ServiceError | null, r?: W) => void,
) => void;
interface Duplex extends NodeJS.EventEmitter {
  write(msg: W): boolean;
  end(): void;
  cancel(): void;
}

/** A clock the test moves. */
class Clock {
  ms = 1_000_000;
  readonly now = (): number => this.ms;
}

/** One member serving the API on loopback. */
class Node {
  readonly member: Member;
  readonly server: ApiServer;
  readonly clock = new Clock();
  readonly logged: string[] = [];
  private readonly clients: Client[] = [];
  address = "";

  /** A member of `voters` (default: a cluster of one); `net` carries its messages to the others. */
  constructor(options: { id?: number; voters?: readonly number[]; net?: Map<number, Member> } = {}) {
    const id = memberId(options.id ?? 1);
    const net = options.net;
    this.member = new Member(
      { id, heartbeatMs: 10, electionMs: 50, snapshotCount: 1_000_000 },
      bootstrapState((options.voters ?? [1]).map(memberId)),
      { save: () => {}, saveSnapshot: () => {} },
      {
        send: (to, payload) => {
          const peer = net?.get(to);
          if (peer === undefined) return false;
          setImmediate(() => peer.receive(id, payload));
          return true;
        },
      },
    );
    net?.set(id, this.member);
    this.server = new ApiServer({
      member: this.member,
      clusterId: 0x1234n,
      dbSize: () => 0,
      nowMs: this.clock.now,
      passwordHashCost: TEST_HASH_COST,
      log: (level, msg) => this.logged.push(`${level} ${msg}`),
    });
  }

  async start(): Promise<this> {
    this.address = `127.0.0.1:${await this.server.listen("127.0.0.1", 0)}`;
    this.member.start();
    return this;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    await this.server.close();
    this.member.stop();
  }

  client<T>(service: string): Client & T {
    const pkgs = loadPackageDefinition(api.packageDefinition) as unknown as {
      etcdserverpb: Record<string, ClientCtor>;
    };
    const c = new pkgs.etcdserverpb[service]!(this.address, credentials.createInsecure());
    this.clients.push(c);
    return c as Client & T;
  }

  private readonly unaryClients = new Map<string, Client & Record<string, UnaryFn>>();

  /** A unary call with `token` (etcd's metadata key) when given. */
  call(service: string, method: string, req: W, token?: string): Promise<W> {
    let c = this.unaryClients.get(service);
    if (c === undefined) {
      c = this.client<Record<string, UnaryFn>>(service);
      this.unaryClients.set(service, c);
    }
    const md = new Metadata();
    if (token !== undefined) md.set("token", token);
    return new Promise((resolve, reject) => {
      c[method]!.call(c, req, md, { deadline: Date.now() + DEADLINE_MS }, (e, r) =>
        e ? reject(e) : resolve(r!),
      );
    });
  }

  /** The etcd error a call fails with, as "<code> <message>"; "ok" if it succeeds. */
  async outcome(service: string, method: string, req: W, token?: string): Promise<string> {
    try {
      await this.call(service, method, req, token);
      return "ok";
    } catch (e) {
      const err = e as ServiceError;
      return `${status[err.code]} ${err.details}`;
    }
  }

  async login(name: string, password: string): Promise<string> {
    const r = await this.call("Auth", "Authenticate", { name, password });
    return String(r.token);
  }

  watch(token?: string): Reader {
    const md = new Metadata();
    if (token !== undefined) md.set("token", token);
    return new Reader(this.client<{ Watch: (md: Metadata) => Duplex }>("Watch").Watch(md));
  }
}

/** A stream whose messages are awaited one at a time. */
class Reader {
  private readonly queue: W[] = [];
  private waiter: ((m: W) => void) | undefined;
  readonly closed: Promise<{ code: number; details: string }>;
  constructor(readonly call: Duplex) {
    call.on("data", (m: W) => {
      const w = this.waiter;
      this.waiter = undefined;
      if (w !== undefined) w(m);
      else this.queue.push(m);
    });
    this.closed = new Promise((resolve) =>
      call.on("status", (s: { code: number; details: string }) => resolve(s)),
    );
    call.on("error", () => {});
  }
  next(): Promise<W> {
    const m = this.queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no message within the deadline")), DEADLINE_MS);
      this.waiter = (msg) => {
        clearTimeout(t);
        resolve(msg);
      };
    });
  }
  write(m: W): void {
    this.call.write(m);
  }
}

const DENIED = "PERMISSION_DENIED etcdserver: permission denied";
const USER_EMPTY = "INVALID_ARGUMENT etcdserver: user name is empty";
const BAD_TOKEN = "UNAUTHENTICATED etcdserver: invalid auth token";
const READWRITE = 2;

let node: Node;
let root: string;
let u: string;

beforeAll(async () => {
  node = await new Node().start();
  await node.call("KV", "Put", { key: B("warmup"), value: B("") }); // waits for the election
});
afterAll(async () => {
  await node?.stop();
});

describe("Auth service: users, roles and root (etcd's rules and errors)", () => {
  it("enable needs root with the root role, as etcdctl's auth enable finds out", async () => {
    expect(await node.outcome("Auth", "AuthEnable", {})).toBe(
      "FAILED_PRECONDITION etcdserver: root user does not exist",
    );
    expect(await node.outcome("Auth", "Authenticate", { name: "root", password: "pw" })).toBe(
      "FAILED_PRECONDITION etcdserver: authentication is not enabled",
    );
    await node.call("Auth", "UserAdd", { name: "root", password: "rootpw" });
    expect(await node.outcome("Auth", "AuthEnable", {})).toBe(
      "FAILED_PRECONDITION etcdserver: root user does not have root role",
    );
    await node.call("Auth", "RoleAdd", { name: "root" });
    await node.call("Auth", "UserGrantRole", { user: "root", role: "root" });
    await node.call("Auth", "RoleAdd", { name: "foo" });
    await node.call("Auth", "RoleGrantPermission", {
      name: "foo",
      perm: { permType: READWRITE, key: B("k/"), range_end: B("k0") },
    });
    await node.call("Auth", "UserAdd", { name: "u", password: "upw" });
    await node.call("Auth", "UserGrantRole", { user: "u", role: "foo" });
    const enabled = await node.call("Auth", "AuthEnable", {});
    expect((enabled.header as W).revision).toBe(String(node.member.machine.currentRevision()));
    // Now everything needs a caller.
    expect(await node.outcome("Auth", "RoleList", {})).toBe(USER_EMPTY);
    expect(await node.outcome("KV", "Range", { key: B("k/1") })).toBe(USER_EMPTY);
    expect(await node.outcome("KV", "Put", { key: B("k/1"), value: B("v") })).toBe(USER_EMPTY);
    expect(await node.outcome("Auth", "Authenticate", { name: "root", password: "nope" })).toBe(
      "INVALID_ARGUMENT etcdserver: authentication failed, invalid user ID or password",
    );
    expect(await node.outcome("Auth", "Authenticate", { name: "ghost", password: "x" })).toBe(
      "INVALID_ARGUMENT etcdserver: authentication failed, invalid user ID or password",
    );
    root = await node.login("root", "rootpw");
    u = await node.login("u", "upw");
    expect(root).toMatch(/^[A-Za-z]{16}\.\d+$/);
    expect(u).not.toBe(root);
  });

  it("root may not be deleted nor lose its role, nor the root role be deleted, while auth is on", async () => {
    const mgmt = "INVALID_ARGUMENT etcdserver: invalid auth management";
    expect(await node.outcome("Auth", "UserDelete", { name: "root" }, root)).toBe(mgmt);
    expect(await node.outcome("Auth", "UserRevokeRole", { name: "root", role: "root" }, root)).toBe(mgmt);
    expect(await node.outcome("Auth", "RoleDelete", { role: "root" }, root)).toBe(mgmt);
    expect(await node.outcome("Auth", "UserAdd", { name: "u", password: "x" }, root)).toBe(
      "FAILED_PRECONDITION etcdserver: user name already exists",
    );
    expect(await node.outcome("Auth", "RoleAdd", { name: "foo" }, root)).toBe(
      "FAILED_PRECONDITION etcdserver: role name already exists",
    );
    expect(await node.outcome("Auth", "UserRevokeRole", { name: "u", role: "bar" }, root)).toBe(
      "FAILED_PRECONDITION etcdserver: role is not granted to the user",
    );
    expect(
      await node.outcome(
        "Auth",
        "RoleRevokePermission",
        { role: "foo", key: B("nope"), range_end: B("") },
        root,
      ),
    ).toBe("FAILED_PRECONDITION etcdserver: permission is not granted to the role");
    expect(await node.outcome("Auth", "RoleGrantPermission", { name: "foo" }, root)).toBe(
      "INVALID_ARGUMENT etcdserver: permission not given",
    );
    expect(
      await node.outcome(
        "Auth",
        "RoleGrantPermission",
        { name: "nope", perm: { permType: 0, key: B("x"), range_end: B("") } },
        root,
      ),
    ).toBe("FAILED_PRECONDITION etcdserver: role name not found");
    expect(await node.outcome("Auth", "UserAdd", { name: "", password: "x" }, root)).toBe(USER_EMPTY);
  });

  it("reads of users and roles: root sees all; a user sees itself and its roles", async () => {
    expect((await node.call("Auth", "UserList", {}, root)).users).toEqual(["root", "u"]);
    expect((await node.call("Auth", "RoleList", {}, root)).roles).toEqual(["foo", "root"]);
    expect((await node.call("Auth", "UserGet", { name: "u" }, u)).roles).toEqual(["foo"]);
    const foo = await node.call("Auth", "RoleGet", { role: "foo" }, u);
    expect(foo.perm).toEqual([{ permType: READWRITE, key: B("k/"), range_end: B("k0") }]);
    expect(await node.outcome("Auth", "UserGet", { name: "root" }, u)).toBe(DENIED);
    expect(await node.outcome("Auth", "RoleGet", { role: "root" }, u)).toBe(DENIED);
    expect(await node.outcome("Auth", "UserList", {}, u)).toBe(DENIED);
    expect(await node.outcome("Auth", "RoleAdd", { name: "mine" }, u)).toBe(DENIED);
    expect(await node.outcome("Auth", "UserGet", { name: "ghost" }, root)).toBe(
      "FAILED_PRECONDITION etcdserver: user name not found",
    );
  });
});

describe("KV, Lease, Maintenance and Cluster checks", () => {
  it("KV: the user's prefix only; prev_kv reads; nested txns; compaction is root's", async () => {
    expect(await node.outcome("KV", "Put", { key: B("k/1"), value: B("v") }, u)).toBe("ok");
    expect(await node.outcome("KV", "Put", { key: B("x"), value: B("v") }, u)).toBe(DENIED);
    expect(await node.outcome("KV", "Put", { key: B("x"), value: B("root's") }, root)).toBe("ok");
    expect((await node.call("KV", "Range", { key: B("k/1") }, u)).count).toBe("1");
    expect(
      (await node.call("KV", "Range", { key: B("k/"), range_end: B("k0"), serializable: true }, u)).count,
    ).toBe("1");
    expect(await node.outcome("KV", "Range", { key: B("k"), range_end: B("l") }, u)).toBe(DENIED);
    expect(await node.outcome("KV", "Range", { key: B("x") }, u)).toBe(DENIED);
    expect(await node.outcome("KV", "DeleteRange", { key: B("x") }, u)).toBe(DENIED);
    const nested = {
      success: [{ request_txn: { success: [{ request_put: { key: B("x"), value: B("sneaky") } }] } }],
    };
    expect(await node.outcome("KV", "Txn", nested, u)).toBe(DENIED);
    const compareX = { compare: [{ key: B("x"), target: 0, result: 0, version: "0" }] };
    expect(await node.outcome("KV", "Txn", compareX, u)).toBe(DENIED);
    expect((await node.call("KV", "Range", { key: B("x") }, root)).kvs).toMatchObject([
      { value: B("root's") },
    ]);
    expect(await node.outcome("KV", "Compact", { revision: "1" }, u)).toBe(DENIED);
    expect(await node.outcome("KV", "Compact", { revision: "1" })).toBe(USER_EMPTY);
    expect(await node.outcome("KV", "Compact", { revision: "1" }, root)).toBe("ok");
  });

  it("leases: a caller to grant; write access to every key to revoke or keep alive; read to list them", async () => {
    expect(await node.outcome("Lease", "LeaseGrant", { TTL: "60" })).toBe(USER_EMPTY);
    const mine = await node.call("Lease", "LeaseGrant", { TTL: "60" }, u);
    const shared = await node.call("Lease", "LeaseGrant", { TTL: "60" }, u);
    await node.call("KV", "Put", { key: B("k/mine"), value: B("v"), lease: mine.ID }, u);
    await node.call("KV", "Put", { key: B("x2"), value: B("v"), lease: shared.ID }, root);
    // A lease holding a key u may not write: u may not attach more keys, revoke it, nor keep it alive.
    expect(await node.outcome("KV", "Put", { key: B("k/2"), value: B("v"), lease: shared.ID }, u)).toBe(
      DENIED,
    );
    expect(await node.outcome("Lease", "LeaseRevoke", { ID: shared.ID }, u)).toBe(DENIED);
    expect(await node.outcome("Lease", "LeaseTimeToLive", { ID: shared.ID, keys: true }, u)).toBe(DENIED);
    expect(await node.outcome("Lease", "LeaseTimeToLive", { ID: shared.ID }, u)).toBe("ok");
    expect(await node.outcome("Lease", "LeaseLeases", {}, u)).toBe(DENIED);
    expect(await node.outcome("Lease", "LeaseLeases", {})).toBe(USER_EMPTY);
    expect((await node.call("Lease", "LeaseLeases", {}, root)).leases).toHaveLength(2);
    const keepAlive = (token: string) => {
      const md = new Metadata();
      md.set("token", token);
      return new Reader(
        node.client<{ LeaseKeepAlive: (md: Metadata) => Duplex }>("Lease").LeaseKeepAlive(md),
      );
    };
    const ok = keepAlive(u);
    ok.write({ ID: mine.ID });
    expect((await ok.next()).TTL).toBe("60");
    ok.call.end();
    const refused = keepAlive(u);
    refused.write({ ID: shared.ID });
    expect(await refused.closed).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: "etcdserver: permission denied",
    });
    expect(await node.outcome("Lease", "LeaseRevoke", { ID: mine.ID }, u)).toBe("ok");
    expect(await node.outcome("Lease", "LeaseRevoke", { ID: shared.ID }, root)).toBe("ok");
  });

  it("Maintenance is root's but Status and Alarm GET (anyone, as etcd 3.4.23); MemberList anyone's, membership changes root", async () => {
    expect(await node.outcome("Maintenance", "Status", {}, u)).toBe("ok");
    expect(await node.outcome("Maintenance", "Status", {})).toBe("ok");
    expect(await node.outcome("Maintenance", "Status", {}, root)).toBe("ok");
    // etcd's Maintenance answers the auth package's own errors (code Unknown).
    expect(await node.outcome("Maintenance", "Defragment", {}, u)).toBe("UNKNOWN auth: permission denied");
    expect(await node.outcome("Maintenance", "Defragment", {})).toBe("UNKNOWN auth: user name is empty");
    expect(await node.outcome("Maintenance", "Alarm", { action: 0 }, u)).toBe("ok");
    expect(await node.outcome("Maintenance", "Alarm", { action: 0 })).toBe("ok");
    expect(await node.outcome("Maintenance", "Alarm", { action: 2, memberID: "1", alarm: 1 }, u)).toBe(
      "UNKNOWN auth: permission denied",
    );
    expect(await node.outcome("Cluster", "MemberList", {}, u)).toBe("ok");
    expect(await node.outcome("Cluster", "MemberList", {})).toBe("ok");
    expect(await node.outcome("Cluster", "MemberRemove", { ID: "99" }, u)).toBe(DENIED);
    expect(await node.outcome("Cluster", "MemberRemove", { ID: "99" }, root)).toBe(
      "NOT_FOUND etcdserver: member not found",
    );
  });

  it("Watch: a forbidden create is created and canceled at once with etcd's reason; an allowed one streams", async () => {
    const s = node.watch(u);
    const rev = node.member.machine.currentRevision();
    s.write({ create_request: { key: B("x") } });
    // "\0": every key from k/ on, which u may not read all of (etcd 3.4 would check only k/ itself).
    s.write({ create_request: { key: B("k/"), range_end: Buffer.of(0) } });
    s.write({ create_request: { key: B("k/"), range_end: B("k0") } });
    for (let i = 0; i < 2; i++) {
      expect(await s.next()).toMatchObject({
        watch_id: "-1",
        created: true,
        canceled: true,
        cancel_reason: WATCH_CANCEL_REASONS.PermissionDenied,
        header: { revision: String(rev) },
      });
    }
    expect(await s.next()).toMatchObject({ watch_id: "0", created: true, canceled: false });
    await node.call("KV", "Put", { key: B("k/w"), value: B("1") }, root);
    const ev = await s.next();
    expect((ev.events as W[]).map((e) => String((e.kv as W).key))).toEqual(["k/w"]);
    s.call.cancel();
    expect(WATCH_CANCEL_REASONS.PermissionDenied).toBe(
      "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    );
    const anonymous = node.watch();
    anonymous.write({ create_request: { key: B("k/w") } });
    expect((await anonymous.next()).cancel_reason).toBe(WATCH_CANCEL_REASONS.UserEmpty);
    anonymous.call.cancel();
    const forged = node.watch("abcdefghijklmnop.1");
    forged.write({ create_request: { key: B("k/w") } });
    expect((await forged.next()).cancel_reason).toBe(WATCH_CANCEL_REASONS.InvalidAuthToken);
    forged.call.cancel();
  });
});

describe("tokens", () => {
  it("are not brought back by a restart's replay or by a snapshot (etcd keeps them in memory only)", () => {
    const tokens = [
      { token: "old.5", user: "alice", index: 5 },
      { token: "new.12", user: "alice", index: 12 },
    ];
    const store = {
      tokensAfter: (i: number) => tokens.filter((t) => t.index > i),
      tokenUser: (t: string) => tokens.find((x) => x.token === t)?.user,
    } as unknown as Parameters<TokenKeeper["sync"]>[0];
    let now = 0;
    const keeper = new TokenKeeper(300_000, () => now);
    // What was committed before this process started (index 10) is the previous life's.
    keeper.skipThrough(10);
    keeper.sync(store);
    expect(keeper.use(store, "old.5")).toBeUndefined();
    expect(keeper.use(store, "new.12")).toBe("alice");
    // A snapshot installed at index 20 brings no token in either.
    tokens.push({ token: "snap.15", user: "alice", index: 15 });
    keeper.skipThrough(20);
    keeper.sync(store);
    expect(keeper.use(store, "snap.15")).toBeUndefined();
    now = 300_001;
    expect(keeper.use(store, "new.12")).toBeUndefined();
  });

  it("live --auth-token-ttl (300 s) on this member's clock from their last use", async () => {
    const t = await node.login("u", "upw");
    const get = () => node.outcome("KV", "Range", { key: B("k/1") }, t);
    node.clock.ms += 299_000;
    expect(await get()).toBe("ok");
    node.clock.ms += 299_000; // 598 s after login, 299 s after the last use
    expect(await get()).toBe("ok");
    node.clock.ms += 301_000;
    expect(await get()).toBe(BAD_TOKEN);
    expect(await get()).toBe(BAD_TOKEN); // gone for good
    // Forged or malformed tokens: the same answer.
    expect(await node.outcome("KV", "Range", { key: B("k/1") }, "nope")).toBe(BAD_TOKEN);
    expect(await node.outcome("KV", "Range", { key: B("k/1") }, `${root}x`)).toBe(BAD_TOKEN);
    // Other tokens were not used for 900 s either.
    expect(await node.outcome("KV", "Range", { key: B("k/1") }, u)).toBe(BAD_TOKEN);
    root = await node.login("root", "rootpw");
    u = await node.login("u", "upw");
  });

  it("a new password ends the user's tokens; the old password no longer works", async () => {
    const t = await node.login("u", "upw");
    await node.call("Auth", "UserChangePassword", { name: "u", password: "upw2" }, root);
    expect(await node.outcome("KV", "Range", { key: B("k/1") }, t)).toBe(BAD_TOKEN);
    expect(await node.outcome("Auth", "Authenticate", { name: "u", password: "upw" })).toBe(
      "INVALID_ARGUMENT etcdserver: authentication failed, invalid user ID or password",
    );
    u = await node.login("u", "upw2");
    expect(await node.outcome("KV", "Range", { key: B("k/1") }, u)).toBe("ok");
  });

  it("a token naming an entry this member has not applied waits for it", async () => {
    const gate = node.server.auth;
    const applied = node.member.machine.appliedIndex();
    const call = fakeCall({ token: `abcdefghijklmnop.${applied + 2}` });
    const pending = gate.identify(call);
    expect(pending).toBeInstanceOf(Promise);
    let settled = false;
    const outcome = (pending as Promise<unknown>).then(
      () => "resolved",
      (e: unknown) => String((e as { etcdError?: string }).etcdError),
    );
    void outcome.then(() => {
      settled = true;
    });
    await node.call("KV", "Put", { key: B("k/a"), value: B("1") }, u);
    await Promise.resolve();
    expect(settled).toBe(false);
    await node.call("KV", "Put", { key: B("k/b"), value: B("1") }, u);
    // Applied now, and no such token was ever assigned: invalid.
    expect(await outcome).toBe("InvalidAuthToken");
  });
});

describe("a watch create whose token waits", () => {
  it("holds the stream's later requests, so the answers keep their order", async () => {
    const gate = node.server.auth;
    const applied = node.member.machine.appliedIndex();
    const s = node.watch(`abcdefghijklmnop.${applied + 1}`);
    s.write({ create_request: { key: B("k/1") } });
    s.write({ create_request: { key: B("k/1"), start_revision: -1 } }); // refused at once, before auth
    for (let i = 0; i < 10_000 && gate.tokenWaiters === 0; i++) await new Promise((r) => setImmediate(r));
    expect(gate.tokenWaiters).toBe(1);
    await node.call("KV", "Put", { key: B("k/q"), value: B("1") }, u);
    expect((await s.next()).cancel_reason).toBe(WATCH_CANCEL_REASONS.InvalidAuthToken);
    expect((await s.next()).cancel_reason).toBe(WATCH_CANCEL_REASONS.Compacted);
    s.call.cancel();
  });
});

describe("passwords", () => {
  it("only a scrypt hash is replicated; the password is neither in the state nor in the log", async () => {
    const secret = "correct horse battery staple";
    await node.call("Auth", "UserAdd", { name: "h", password: secret }, root);
    const user = node.member.machine.authStore().user("h");
    expect(user?.passwordHash).toMatch(/^scrypt\$4\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(await verifyPassword(secret, user!.passwordHash!)).toBe(true);
    expect(await verifyPassword("wrong", user!.passwordHash!)).toBe(false);
    expect(Buffer.from(node.member.machine.snapshot()).includes(secret)).toBe(false);
    await node.login("h", secret);
    expect(node.logged.join("\n")).not.toContain(secret);
    // The same password hashes differently each time (a random salt).
    expect(await hashPassword(secret, { logN: 4, r: 8, p: 1 })).not.toBe(
      await hashPassword(secret, TEST_HASH_COST),
    );
    expect(await verifyPassword(secret, "scrypt$99$8$1$AA==$AA==")).toBe(false);
  });

  it("a no_password user cannot authenticate (etcd's plain error, code Unknown)", async () => {
    await node.call("Auth", "UserAdd", { name: "np", password: "", options: { no_password: true } }, root);
    expect(node.member.machine.authStore().user("np")).toMatchObject({
      noPassword: true,
      passwordHash: undefined,
    });
    expect(await node.outcome("Auth", "Authenticate", { name: "np", password: "x" })).toBe(
      "UNKNOWN auth: authentication failed, password was given for no password user",
    );
  });
});

/** A CallInfo as the gateway or a test builds one. */
function fakeCall(options: { token?: string; cn?: string | string[] }): CallInfo {
  const md = new Metadata();
  if (options.token !== undefined) md.set("token", options.token);
  return {
    metadata: md,
    getPeer: () => "127.0.0.1:1",
    getAuthContext: () =>
      options.cn === undefined ? {} : { sslPeerCertificate: { subject: { CN: options.cn } } },
  };
}

describe("callers without a token: the client certificate's CN (etcd --client-cert-auth)", () => {
  it("names the user; a token wins over it; ApiHost.authorize returns the caller to stamp on writes", async () => {
    const gate: AuthGate = node.server.auth;
    const revision = node.member.machine.authStore().revision();
    expect(gate.identify(fakeCall({ cn: "u" }))).toEqual({ user: "u", revision });
    expect(gate.identify(fakeCall({ cn: ["u", "other"] }))).toEqual({ user: "u", revision });
    expect(gate.identify(fakeCall({ cn: "u", token: root }))).toEqual({ user: "root", revision });
    expect(gate.identify(fakeCall({}))).toBeUndefined();
    const caller = await node.server.authorize(fakeCall({ cn: "u" }), [{ key: B("k/1"), type: "write" }]);
    expect(caller).toEqual({ user: "u", revision });
    await expect(
      node.server.authorize(fakeCall({ cn: "u" }), [{ key: B("x"), type: "read" }]),
    ).rejects.toMatchObject({ etcdError: "PermissionDenied" });
    await expect(node.server.authorize(fakeCall({}), [])).rejects.toMatchObject({ etcdError: "UserEmpty" });
    // What Lock and Election do: authorize, then write with the caller it returned.
    const put = { type: "put" as const, request: { key: B("k/cn"), value: B("1") } };
    expect((await node.member.write({ ...put, auth: caller })).result.kind).toBe("put");
    expect((await node.member.write(put)).result).toMatchObject({ kind: "failed", error: "userEmpty" });
    // The gRPC path with a certificate is the same code; an unknown CN has no rights.
    expect(gate.identify(fakeCall({ cn: "mallory" }))).toEqual({ user: "mallory", revision });
    await expect(
      node.server.authorize(fakeCall({ cn: "mallory" }), [{ key: B("k/1"), type: "read" }]),
    ).rejects.toMatchObject({ etcdError: "PermissionDenied" });
  });
});

describe("AuthDisable", () => {
  it("is root's; afterwards tokens are ignored and Authenticate says auth is off", async () => {
    expect(await node.outcome("Auth", "AuthDisable", {}, u)).toBe(DENIED);
    expect(await node.outcome("Auth", "AuthDisable", {})).toBe(USER_EMPTY);
    await node.call("Auth", "AuthDisable", {}, root);
    expect(node.member.machine.authStore().isEnabled()).toBe(false);
    expect(await node.outcome("KV", "Put", { key: B("x"), value: B("free") }, u)).toBe("ok");
    expect(await node.outcome("KV", "Put", { key: B("x"), value: B("free") }, "stale.1")).toBe("ok");
    expect(await node.outcome("Maintenance", "Status", {})).toBe("ok");
    expect(await node.outcome("Auth", "Authenticate", { name: "u", password: "upw2" })).toBe(
      "FAILED_PRECONDITION etcdserver: authentication is not enabled",
    );
    expect(node.server.auth.identify(fakeCall({ cn: "u" }))).toBeUndefined();
  });
});

describe("three members: a token assigned through Raft", () => {
  const net = new Map<number, Member>();
  const nodes: Node[] = [];

  beforeAll(async () => {
    for (const id of [1, 2, 3]) nodes.push(await new Node({ id, voters: [1, 2, 3], net }).start());
    const [a] = nodes as [Node];
    await a.call("KV", "Put", { key: B("warmup"), value: B("") }); // waits for an election
    await a.call("Auth", "UserAdd", { name: "root", password: "pw" });
    await a.call("Auth", "UserGrantRole", { user: "root", role: "root" });
    await a.call("Auth", "AuthEnable", {});
  });
  afterAll(async () => {
    for (const n of nodes) await n.stop();
  });

  it("is accepted by every member; its time to live is each member's own", async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    const token = await b.login("root", "pw");
    await a.call("KV", "Put", { key: B("k"), value: B("v") }, token);
    for (const n of nodes) expect((await n.call("KV", "Range", { key: B("k") }, token)).count).toBe("1");
    // c's clock runs ahead: the token dies there only.
    c.clock.ms += 301_000;
    expect(await c.outcome("KV", "Range", { key: B("k") }, token)).toBe(BAD_TOKEN);
    expect(await a.outcome("KV", "Range", { key: B("k") }, token)).toBe("ok");
    expect(await b.outcome("KV", "Range", { key: B("k") }, token)).toBe("ok");
    // A write through c fails there, before it is proposed.
    expect(await c.outcome("KV", "Put", { key: B("k"), value: B("w") }, token)).toBe(BAD_TOKEN);
  });
});
