/**
 * The Watch stream (src/api/watch-stream.ts) and the LeaseKeepAlive stream
 * against a real in-process member and ApiServer over loopback, with
 * proto-loader clients. Each expectation is what etcd 3.4's server sends
 * (etcdserver/api/v3rpc/watch.go and lease.go, release-3.4; the traces were
 * checked against etcd 3.4.23 where that version agrees). An absence of an
 * answer is shown by a later request's answer arriving first (requests are
 * handled in order); nothing sleeps for a fixed time.
 */

import { type Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { loadEtcdApi, type WireMessage } from "../../src/api/index.ts";
import { ApiServer } from "../../src/api/server.ts";
import { bootstrapState, memberId } from "../../src/raft/index.ts";
import { Member, MemberError } from "../../src/server/member.ts";
import type { WatchId } from "../../src/state/index.ts";
import { watchId } from "../../src/state/index.ts";

type W = WireMessage;
const api = loadEtcdApi();
const DEADLINE_MS = 10_000;
const B = (s: string): Buffer => Buffer.from(s);

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
  pause(): void;
  resume(): void;
}

/** One member (a cluster of one, in memory) serving the API on a loopback port. */
class Node {
  readonly member: Member;
  readonly server: ApiServer;
  private readonly clients: Client[] = [];
  private readonly unaryClients = new Map<string, Client & Record<string, UnaryFn>>();
  address = "";

  constructor(options: { watchProgressNotifyIntervalMs?: number } = {}) {
    const id = memberId(1);
    this.member = new Member(
      { id, heartbeatMs: 10, electionMs: 50, snapshotCount: 1_000_000 },
      bootstrapState([id]),
      { save: () => {}, saveSnapshot: () => {} },
      { send: () => false },
    );
    this.server = new ApiServer({ member: this.member, clusterId: 0x1234n, dbSize: () => 0, ...options });
  }

  async start(): Promise<this> {
    const port = await this.server.listen("127.0.0.1", 0);
    this.address = `127.0.0.1:${port}`;
    this.member.start();
    return this;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    await this.server.close();
    this.member.stop();
  }

  /** A client of `service`; `own` gives it its own connection (flow control of its own). */
  client<T>(service: string, own = false): Client & T {
    const pkgs = loadPackageDefinition(api.packageDefinition) as unknown as {
      etcdserverpb: Record<string, ClientCtor>;
    };
    const c = new pkgs.etcdserverpb[service]!(
      this.address,
      credentials.createInsecure(),
      own ? { "grpc.use_local_subchannel_pool": 1 } : {},
    );
    this.clients.push(c);
    return c as Client & T;
  }

  unary(service: string, method: string, req: W): Promise<W> {
    let c = this.unaryClients.get(service);
    if (c === undefined) {
      c = this.client<Record<string, UnaryFn>>(service);
      this.unaryClients.set(service, c);
    }
    return new Promise((resolve, reject) => {
      c[method]!.call(c, req, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (e, r) =>
        e ? reject(e) : resolve(r!),
      );
    });
  }

  async put(key: string, value: string | Buffer = "v"): Promise<number> {
    const r = await this.unary("KV", "Put", {
      key: B(key),
      value: typeof value === "string" ? B(value) : value,
    });
    return Number((r.header as W).revision);
  }

  revision(): number {
    return this.member.machine.currentRevision();
  }
}

/** A client stream whose messages are awaited one at a time, each with a deadline. */
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
  async nextDescribed(): Promise<string> {
    return line(await this.next());
  }
  write(m: W): void {
    this.call.write(m);
  }
}

/** A watch response as one line: `watch <id> rev=<r> [created] [canceled] [compact=<c>] [reason="…"] [events]`. */
function line(m: W): string {
  const parts = [`watch ${m.watch_id} rev=${(m.header as W).revision}`];
  if (m.created) parts.push("created");
  if (m.canceled) parts.push("canceled");
  if (m.compact_revision !== "0") parts.push(`compact=${m.compact_revision}`);
  if (m.cancel_reason !== "") parts.push(`reason=${JSON.stringify(m.cancel_reason)}`);
  const events = m.events as W[];
  if (events.length > 0) {
    parts.push(
      `[${events
        .map((e) => {
          const kv = e.kv as W;
          return `${e.type === 0 ? "put" : "delete"} ${String(kv.key)}@${kv.mod_revision}`;
        })
        .join("; ")}]`,
    );
  }
  return parts.join(" ");
}

let node: Node;
const watch = (n: Node = node, own = false): Reader =>
  new Reader(n.client<{ Watch: (md: Metadata) => Duplex }>("Watch", own).Watch(new Metadata()));

beforeAll(async () => {
  node = await new Node().start();
  await node.put("warmup"); // waits for the election
});
afterAll(async () => {
  await node?.stop();
});

describe("Watch ids (mvcc watchStream.Watch)", () => {
  it("auto ids skip ids the client picked; a picked id in use is refused; any other id is taken as given", async () => {
    const s = watch();
    const rev = node.revision();
    for (const id of [5, 2, 0, 0, 0, 5, -7, 0]) s.write({ create_request: { key: B("ids"), watch_id: id } });
    const dup = `watch -1 rev=${rev} created canceled reason="mvcc: duplicate watch ID provided on the WatchStream"`;
    const got = [];
    for (let i = 0; i < 8; i++) got.push(await s.nextDescribed());
    expect(got).toEqual([
      `watch 5 rev=${rev} created`,
      `watch 2 rev=${rev} created`,
      `watch 0 rev=${rev} created`,
      `watch 1 rev=${rev} created`,
      `watch 3 rev=${rev} created`,
      dup,
      `watch -7 rev=${rev} created`,
      `watch 4 rev=${rev} created`,
    ]);
    // The next auto id skips 5, which the client holds.
    s.write({ create_request: { key: B("ids") } });
    expect(await s.nextDescribed()).toBe(`watch 6 rev=${rev} created`);
    // Once canceled, a picked id may be used again.
    s.write({ cancel_request: { watch_id: 5 } });
    expect(await s.nextDescribed()).toBe(`watch 5 rev=${rev} canceled`);
    s.write({ create_request: { key: B("ids"), watch_id: 5 } });
    expect(await s.nextDescribed()).toBe(`watch 5 rev=${rev} created`);
    s.call.cancel();
  });
});

describe("refused creates (watch.go recvLoop, mvcc watcher.go)", () => {
  it("empty range and negative start: created and canceled at once, watch_id -1, with etcd's reason; unknown filters are ignored", async () => {
    const s = watch();
    const rev = node.revision();
    s.write({ create_request: { key: B("b"), range_end: B("a") } });
    s.write({ create_request: { key: B("b"), start_revision: -1 } });
    s.write({ create_request: { key: B("f"), filters: [7, 0] } });
    expect(await s.nextDescribed()).toBe(
      `watch -1 rev=${rev} created canceled reason="mvcc: watcher range is empty"`,
    );
    expect(await s.nextDescribed()).toBe(
      `watch -1 rev=${rev} created canceled reason="etcdserver: mvcc: required revision has been compacted"`,
    );
    // Refusals took no id: the first watcher is 0. NOPUT (0) applies, 7 is ignored.
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev} created`);
    const r1 = await node.put("f");
    await node.unary("KV", "DeleteRange", { key: B("f") });
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${r1 + 1} [delete f@${r1 + 1}]`);
    s.call.cancel();
  });

  it("a start below the compacted revision: created, then canceled with compact_revision and header revision 0; the id stays taken until the client cancels it", async () => {
    const first = await node.put("c");
    await node.put("c");
    const compactAt = first + 1;
    await node.unary("KV", "Compact", { revision: compactAt });
    const rev = node.revision();
    const s = watch();
    s.write({ create_request: { key: B("c"), start_revision: first } });
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev} created`);
    expect(await s.nextDescribed()).toBe(`watch 0 rev=0 canceled compact=${compactAt}`);
    s.write({ create_request: { key: B("c") } });
    expect(await s.nextDescribed()).toBe(`watch 1 rev=${rev} created`);
    s.write({ create_request: { key: B("c"), watch_id: 0 } });
    expect(await s.nextDescribed()).toBe(`watch 2 rev=${rev} created`);
    s.write({ cancel_request: { watch_id: 0 } });
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev} canceled`);
    s.call.cancel();
  });
});

describe("cancel (watch.go recvLoop CancelRequest)", () => {
  it("answers canceled at the current revision; an unknown id gets no answer", async () => {
    const s = watch();
    s.write({ create_request: { key: B("x") } });
    const rev = node.revision();
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev} created`);
    s.write({ cancel_request: { watch_id: 99 } });
    s.write({ cancel_request: { watch_id: 0 } });
    s.write({ cancel_request: { watch_id: 0 } });
    s.write({ create_request: { key: B("x") } });
    // No answer to 99 nor to the second cancel of 0: the next answers are the cancel of 0, then the create.
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev} canceled`);
    expect(await s.nextDescribed()).toBe(`watch 1 rev=${rev} created`);
    // The canceled watcher gets nothing more.
    const r = await node.put("x");
    expect(await s.nextDescribed()).toBe(`watch 1 rev=${r} [put x@${r}]`);
    s.call.cancel();
  });
});

describe("progress_request (watch.go RequestProgressAll, mvcc progressIfSync)", () => {
  it("answered once per request with watch_id -1 at the current revision when every watcher is synced", async () => {
    const s = watch();
    s.write({ create_request: { key: B("p") } });
    s.write({ create_request: { key: B("q"), range_end: B("r") } });
    const rev0 = node.revision();
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev0} created`);
    expect(await s.nextDescribed()).toBe(`watch 1 rev=${rev0} created`);
    const r = await node.put("p");
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${r} [put p@${r}]`);
    await node.put("other");
    s.write({ progress_request: {} });
    s.write({ progress_request: {} });
    expect(await s.nextDescribed()).toBe(`watch -1 rev=${r + 1}`);
    expect(await s.nextDescribed()).toBe(`watch -1 rev=${r + 1}`);
    s.call.cancel();
  });

  it("answered at once on a stream with no watchers (etcd 3.4.23); not while a watcher is behind or waits for a future start", async () => {
    const s = watch();
    const rev = node.revision();
    s.write({ progress_request: {} });
    expect(await s.nextDescribed()).toBe(`watch -1 rev=${rev}`);
    // A watcher waiting for a revision in the future is not "synced" for progress.
    s.write({ create_request: { key: B("fut"), start_revision: rev + 2 } });
    s.write({ progress_request: {} });
    s.write({ create_request: { key: B("fut2") } });
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev} created`);
    expect(await s.nextDescribed()).toBe(`watch 1 rev=${rev} created`);
    await node.put("a1");
    await node.put("a2"); // the future start is reached
    s.write({ progress_request: {} });
    expect(await s.nextDescribed()).toBe(`watch -1 rev=${rev + 2}`);
    s.call.cancel();
  });
});

describe("progress_notify (watch.go sendLoop progressTicker)", () => {
  let fast: Node;
  beforeAll(async () => {
    fast = await new Node({ watchProgressNotifyIntervalMs: 50 }).start();
    await fast.put("warmup");
  });
  afterAll(async () => {
    await fast?.stop();
  });

  it("a synced progress_notify watcher gets its own progress responses at the current revision; others get none", async () => {
    const s = watch(fast);
    s.write({ create_request: { key: B("n") } });
    s.write({ create_request: { key: B("n"), progress_notify: true } });
    const rev = fast.revision();
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev} created`);
    expect(await s.nextDescribed()).toBe(`watch 1 rev=${rev} created`);
    expect(await s.nextDescribed()).toBe(`watch 1 rev=${rev}`);
    const r = await fast.put("elsewhere");
    // Ticks keep coming, only for watcher 1, and now say the new revision.
    let m = await s.nextDescribed();
    while (m === `watch 1 rev=${rev}`) m = await s.nextDescribed();
    expect(m).toBe(`watch 1 rev=${r}`);
    expect(await s.nextDescribed()).toBe(`watch 1 rev=${r}`);
    s.call.cancel();
  });
});

describe("half-close", () => {
  it("Watch: the client's half-close ends nothing; events keep coming until the client cancels", async () => {
    const s = watch();
    s.write({ create_request: { key: B("h") } });
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${node.revision()} created`);
    s.call.end();
    const r = await node.put("h");
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${r} [put h@${r}]`);
    s.call.cancel();
    expect((await s.closed).code).toBe(1); // CANCELLED, by the client
  });

  it("LeaseKeepAlive: every request answered in order (an unknown lease with TTL 0), then the stream ends OK", async () => {
    const grant = await node.unary("Lease", "LeaseGrant", { TTL: 60 });
    const rev = node.revision();
    const k = new Reader(
      node.client<{ LeaseKeepAlive: (md: Metadata) => Duplex }>("Lease").LeaseKeepAlive(new Metadata()),
    );
    k.write({ ID: grant.ID });
    k.write({ ID: "12345" });
    k.write({ ID: grant.ID });
    k.call.end();
    const answers = [];
    for (let i = 0; i < 3; i++) {
      const m = await k.next();
      answers.push(`${m.ID} ${m.TTL} rev=${(m.header as W).revision}`);
    }
    expect(answers).toEqual([`${grant.ID} 60 rev=${rev}`, `12345 0 rev=${rev}`, `${grant.ID} 60 rev=${rev}`]);
    expect(await k.closed).toEqual(expect.objectContaining({ code: 0 }));
  });
});

describe("LeaseKeepAlive pipelining", () => {
  it("renewals on one stream are in flight together (not one round trip each) and still answered in request order", async () => {
    const held: { id: bigint; resolve: (ttl: number) => void }[] = [];
    let allThere: () => void = () => {};
    const allThree = new Promise<void>((r) => {
      allThere = r;
    });
    const spy = vi.spyOn(node.member, "keepAlive").mockImplementation(
      (id) =>
        new Promise<number>((resolve) => {
          held.push({ id: id as bigint, resolve });
          if (held.length === 3) allThere();
        }),
    );
    try {
      const k = new Reader(
        node.client<{ LeaseKeepAlive: (md: Metadata) => Duplex }>("Lease").LeaseKeepAlive(new Metadata()),
      );
      for (const id of ["11", "22", "33"]) k.write({ ID: id });
      k.call.end();
      // All three reach the member before any is answered: a serial stream would stop at one.
      await allThree;
      expect(held.map((h) => String(h.id))).toEqual(["11", "22", "33"]);
      for (const h of [...held].reverse()) h.resolve(Number(h.id) + 1);
      const answers = [];
      for (let i = 0; i < 3; i++) {
        const m = await k.next();
        answers.push(`${m.ID} ${m.TTL}`);
      }
      expect(answers).toEqual(["11 12", "22 23", "33 34"]);
      expect(await k.closed).toEqual(expect.objectContaining({ code: 0 }));
    } finally {
      spy.mockRestore();
    }
  });
});

describe("LeaseKeepAlive failure order", () => {
  it("a renewal that fails ends the stream only after the answers to the renewals before it", async () => {
    let first: (ttl: number) => void = () => {};
    let calls = 0;
    let bothThere: () => void = () => {};
    const both = new Promise<void>((r) => {
      bothThere = r;
    });
    const spy = vi.spyOn(node.member, "keepAlive").mockImplementation(() => {
      calls++;
      if (calls === 2) bothThere();
      return calls === 1
        ? new Promise<number>((resolve) => {
            first = resolve;
          })
        : Promise.reject(new MemberError("noLeader", "etcdserver: no leader"));
    });
    try {
      const k = new Reader(
        node.client<{ LeaseKeepAlive: (md: Metadata) => Duplex }>("Lease").LeaseKeepAlive(new Metadata()),
      );
      k.write({ ID: "11" });
      k.write({ ID: "22" });
      await both;
      // The second failed already; the first is still out. Its answer must come first.
      first(30);
      const m = await k.next();
      expect(`${m.ID} ${m.TTL}`).toBe("11 30");
      const end = await k.closed;
      expect(end).toEqual(expect.objectContaining({ details: "etcdserver: no leader" }));
    } finally {
      spy.mockRestore();
    }
  });
});

describe("backpressure", () => {
  let slow: Node;
  beforeAll(async () => {
    slow = await new Node().start();
    await slow.put("warmup");
  });
  afterAll(async () => {
    await slow?.stop();
  });

  it("a client that does not read: the stream stops pulling from the hub; then every event arrives in order, and a progress request is answered after the events before it", async () => {
    const hub = slow.member.replica.hub;
    const s = watch(slow, true);
    s.write({ create_request: { key: B("bp/"), range_end: B("bp0") } });
    const rev0 = slow.revision();
    expect(await s.nextDescribed()).toBe(`watch 0 rev=${rev0} created`);
    const hubWatcher: WatchId = watchId(0n);
    expect(hub.status(hubWatcher)?.state).toBe("synced");
    s.call.pause();
    const value = Buffer.alloc(64 * 1024, 1);
    let puts = 0;
    // Each awaited put is applied and drained into the stream before it resolves.
    while ((hub.status(hubWatcher)?.queuedEvents ?? 0) === 0) {
      expect(puts, "the stream never stopped pulling").toBeLessThan(500);
      await slow.put(`bp/${puts}`, value);
      puts++;
    }
    const held = hub.status(hubWatcher)!;
    expect(held.state).toBe("synced");
    // More writes stay in the hub, not in the stream.
    await slow.put(`bp/${puts++}`, value);
    expect(hub.status(hubWatcher)!.queuedEvents).toBe(held.queuedEvents + 1);
    const barrier = slow.revision();
    s.write({ progress_request: {} });
    await slow.put(`bp/${puts++}`, value); // after the progress request
    s.call.resume();
    const seen: string[] = [];
    let progressAt = -1;
    while (seen.length < puts) {
      const m = await s.next();
      if (m.watch_id === "-1") {
        expect((m.header as W).revision).toBe(String(barrier));
        progressAt = seen.length;
        continue;
      }
      for (const e of m.events as W[]) seen.push(`${(e.kv as W).key}@${(e.kv as W).mod_revision}`);
    }
    expect(seen).toEqual(Array.from({ length: puts }, (_, i) => `bp/${i}@${rev0 + 1 + i}`));
    expect(progressAt).toBe(puts - 1);
    s.call.cancel();
  });
});
