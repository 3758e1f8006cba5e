/**
 * The Lock service (src/api/lock.ts, src/api/recipes.ts) against a real
 * in-process member and ApiServer over loopback, with proto-loader clients.
 * What is expected is etcd 3.4's v3lock server (checked against etcd 3.4.23:
 * key shape, headers, error texts and codes), except where etcd 3.4 has the
 * bug of issue 11456: a waiter whose key is lost fails, as etcd ≥ 3.5 does.
 *
 * Nothing sleeps: a waiter's key is seen arriving through a Watch stream on
 * the lock's prefix; "not acquired yet" is shown by the order in which calls
 * answer and by the revisions in their headers.
 */

import { Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { WireMessage } from "../../src/api/index.ts";
import { recipeWaiters } from "../../src/api/recipes.ts";
import type { RaftInitialState } from "../../src/raft/index.ts";
import { emptySnapshot, logIndex, memberId, NO_MEMBER, term } from "../../src/raft/index.ts";
import { B, DEADLINE_MS, type Pending, RecipeNode, S } from "./recipe-node.ts";

type W = WireMessage;

/** The harness member, with the Lock service's calls. */
class Node extends RecipeNode {
  constructor(initial?: RaftInitialState) {
    super(serverLog, initial);
  }

  lock(name: string, lease: string): Pending {
    return this.call("v3lockpb.Lock", "Lock", { name: B(name), lease });
  }

  unlock(key: unknown): Promise<W> {
    return this.unary("v3lockpb.Lock", "Unlock", { key });
  }
}

interface Duplex extends NodeJS.EventEmitter {
  write(msg: W): boolean;
  cancel(): void;
}

/** The puts and deletes under a prefix, one line each ("put k@rev", "delete k@rev"), awaited in order. */
class KeyEvents {
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private readonly call: Duplex;
  readonly created: Promise<void>;

  constructor(node: Node, prefix: string) {
    const c = node.client("etcdserverpb.Watch") as unknown as { Watch: (md: Metadata) => Duplex };
    this.call = c.Watch(new Metadata());
    this.call.on("error", () => {});
    this.created = new Promise((resolve) => {
      this.call.on("data", (m: W) => {
        if (m.created === true) resolve();
        for (const e of m.events as W[]) {
          const kv = e.kv as W;
          this.lines.push(`${e.type === 0 ? "put" : "delete"} ${S(kv.key)}@${kv.mod_revision}`);
        }
        const w = this.waiter;
        this.waiter = undefined;
        w?.();
      });
    });
    const end = Buffer.from(prefix);
    end[end.length - 1]! += 1;
    this.call.write({ create_request: { key: B(prefix), range_end: end } });
  }

  async next(): Promise<string> {
    while (this.lines.length === 0) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no event within the deadline")), DEADLINE_MS);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.lines.shift()!;
  }

  close(): void {
    this.call.cancel();
  }
}

const hex = (lease: string): string => BigInt(lease).toString(16);
const rev = (w: W): number => Number((w.header as W).revision);

/** Awaits `p`, which must fail; answers its gRPC code and message. */
async function failure(p: Promise<W>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as ServiceError;
    return { code: err.code, details: err.details };
  }
  throw new Error("expected the call to fail");
}

/** What the servers logged above info: nothing is expected (an unexpected error is logged). */
const serverLog: string[] = [];
let node: Node;
let n = 0;
/** A lock name of its own for each test. */
const fresh = (): string => `lock${++n}`;

async function watchLock(name: string): Promise<KeyEvents> {
  const ev = new KeyEvents(node, `${name}/`);
  await ev.created;
  return ev;
}

beforeAll(async () => {
  node = await new Node().start();
  await node.unary("etcdserverpb.KV", "Put", { key: B("warmup") }); // waits for the election
});
afterAll(async () => {
  await node?.stop();
});
afterEach(() => {
  expect(serverLog.splice(0)).toEqual([]);
  // No wait may outlive its call: every waiter resolved, its hub watchers closed.
  expect(recipeWaiters()).toBe(0);
});

describe("Lock: key and fencing token (v3lock Lock, concurrency Mutex.Lock)", () => {
  it("answers name/<lease in lowercase hex>, created with the lease at the header's revision (the fencing token)", async () => {
    const name = fresh();
    const lease = await node.grant();
    const res = await node.lock(name, lease).answer;
    expect(S(res.key)).toBe(`${name}/${hex(lease)}`);
    const kv = (await node.get(S(res.key)))!;
    expect(Number(kv.create_revision)).toBe(rev(res));
    expect(kv.lease).toBe(lease);
    expect(S(kv.value)).toBe("");
  });

  it("the same lease locking the same name again holds it again: same key, the current revision", async () => {
    const name = fresh();
    const lease = await node.grant();
    const first = await node.lock(name, lease).answer;
    await node.unary("etcdserverpb.KV", "Put", { key: B("elsewhere") });
    const again = await node.lock(name, lease).answer;
    expect(S(again.key)).toBe(S(first.key));
    expect(rev(again)).toBe(rev(first) + 1);
  });

  it("lease 0: a new 60-second lease is granted for the lock's key (concurrency.NewSession)", async () => {
    const name = fresh();
    const res = await node.lock(name, "0").answer;
    const kv = (await node.get(S(res.key)))!;
    expect(S(res.key)).toBe(`${name}/${hex(String(kv.lease))}`);
    const ttl = await node.unary("etcdserverpb.Lease", "LeaseTimeToLive", { ID: kv.lease });
    expect(ttl.grantedTTL).toBe("60");
  });

  it("an unknown lease: 'etcdserver: requested lease not found', code Unknown (etcd's lock server answers its client's error)", async () => {
    expect(await failure(node.lock(fresh(), "123456789").answer)).toEqual({
      code: 2,
      details: "etcdserver: requested lease not found",
    });
    expect(await failure(node.lock(fresh(), "-5").answer)).toEqual({
      code: 2,
      details: "etcdserver: requested lease not found",
    });
  });
});

describe("Lock: waiting, FIFO by create revision", () => {
  it("three waiters acquire in the order their keys were created; each Unlock hands over to the next", async () => {
    const name = fresh();
    const events = await watchLock(name);
    const [la, lb, lc] = [await node.grant(), await node.grant(), await node.grant()];
    const a = await node.lock(name, la).answer;
    expect(await events.next()).toBe(`put ${name}/${hex(la)}@${rev(a)}`);
    const order: string[] = [];
    const b = node.lock(name, lb);
    const putB = await events.next();
    expect(putB).toMatch(`put ${name}/${hex(lb)}@`);
    const c = node.lock(name, lc);
    const putC = await events.next();
    expect(putC).toMatch(`put ${name}/${hex(lc)}@`);
    b.answer.then(() => order.push("b"));
    c.answer.then(() => order.push("c"));

    const ua = await node.unlock(a.key);
    const rb = await b.answer;
    expect(S(rb.key)).toBe(`${name}/${hex(lb)}`);
    expect(rev(rb)).toBeGreaterThanOrEqual(rev(ua));
    const tokenB = Number((await node.get(S(rb.key)))!.create_revision);
    const ub = await node.unlock(rb.key);
    const rc = await c.answer;
    expect(S(rc.key)).toBe(`${name}/${hex(lc)}`);
    expect(rev(rc)).toBeGreaterThanOrEqual(rev(ub));
    const tokenC = Number((await node.get(S(rc.key)))!.create_revision);
    expect(order).toEqual(["b", "c"]);
    // The fencing tokens (create revisions) grow in lock order.
    expect([rev(a), tokenB, tokenC]).toEqual([
      rev(a),
      Number(putB.split("@")[1]),
      Number(putC.split("@")[1]),
    ]);
    expect(rev(a) < tokenB && tokenB < tokenC).toBe(true);
    await node.unlock(rc.key);
    events.close();
  });

  it("a waiter behind two holders' keys waits for both (it waits on the youngest older key, then again)", async () => {
    const name = fresh();
    const events = await watchLock(name);
    const [la, lb, lc] = [await node.grant(), await node.grant(), await node.grant()];
    const a = await node.lock(name, la).answer;
    await events.next();
    const b = node.lock(name, lb);
    await events.next();
    const c = node.lock(name, lc);
    await events.next();
    // b's key goes first (its waiter fails: its key is lost); c still waits for a.
    await node.unary("etcdserverpb.KV", "DeleteRange", { key: B(`${name}/${hex(lb)}`) });
    expect(await failure(b.answer)).toEqual({ code: 2, details: "mutex: session is expired" });
    await events.next();
    const ua = await node.unlock(a.key);
    const rc = await c.answer;
    expect(rev(rc)).toBeGreaterThanOrEqual(rev(ua));
    await node.unlock(rc.key);
    events.close();
  });
});

describe("Lock: the lock bug etcd 3.4 has (issue 11456) is not here", () => {
  it("the waiter's lease revoked while it waits: its Lock fails at once ('mutex: session is expired', Unknown), and the next waiter gets the lock", async () => {
    const name = fresh();
    const events = await watchLock(name);
    const [la, lb, lc] = [await node.grant(), await node.grant(), await node.grant()];
    const a = await node.lock(name, la).answer;
    await events.next();
    const b = node.lock(name, lb);
    await events.next();
    const c = node.lock(name, lc);
    await events.next();

    await node.revoke(lb);
    // While a still holds the lock: b is told at once (etcd 3.4 would tell it later that it holds it).
    expect(await failure(b.answer)).toEqual({ code: 2, details: "mutex: session is expired" });
    expect(await events.next()).toMatch(`delete ${name}/${hex(lb)}@`);

    const ua = await node.unlock(a.key);
    const rc = await c.answer;
    expect(S(rc.key)).toBe(`${name}/${hex(lc)}`);
    expect(rev(rc)).toBeGreaterThanOrEqual(rev(ua));
    await node.unlock(rc.key);
    events.close();
  });

  it("the holder's lease revoked: the waiter gets the lock", async () => {
    const name = fresh();
    const events = await watchLock(name);
    const [la, lb] = [await node.grant(), await node.grant()];
    await node.lock(name, la).answer;
    await events.next();
    const b = node.lock(name, lb);
    await events.next();
    const revoked = await node.revoke(la);
    const rb = await b.answer;
    expect(S(rb.key)).toBe(`${name}/${hex(lb)}`);
    expect(rev(rb)).toBeGreaterThanOrEqual(rev(revoked));
    await node.unlock(rb.key);
    events.close();
  });
});

describe("Lock: cancel while waiting", () => {
  it("a cancelled Lock deletes its key and leaves no waiter or hub watcher behind", async () => {
    const name = fresh();
    const events = await watchLock(name);
    const watchersBefore = node.member.replica.hub.watcherCount();
    const [la, lb] = [await node.grant(), await node.grant()];
    const a = await node.lock(name, la).answer;
    await events.next();
    const b = node.lock(name, lb);
    expect(await events.next()).toMatch(`put ${name}/${hex(lb)}@`);
    expect(node.member.replica.hub.watcherCount()).toBe(watchersBefore + 2);
    b.call.cancel();
    expect((await failure(b.answer)).code).toBe(1);
    expect(await events.next()).toMatch(`delete ${name}/${hex(lb)}@`);
    expect(recipeWaiters()).toBe(0);
    expect(node.member.replica.hub.watcherCount()).toBe(watchersBefore);
    // The lease stays: only the key goes.
    expect((await node.unary("etcdserverpb.Lease", "LeaseTimeToLive", { ID: lb })).TTL).not.toBe("-1");
    await node.unlock(a.key);
    events.close();
  });
});

describe("Lock: a snapshot replacing the state while waiting", () => {
  it("the waiter starts over on the new state's hub and still gets the lock when the holder unlocks", async () => {
    const name = fresh();
    const events = await watchLock(name);
    const [la, lb] = [await node.grant(), await node.grant()];
    const a = await node.lock(name, la).answer;
    await events.next();
    const b = node.lock(name, lb);
    await events.next();
    // What a follower does when the leader sends a snapshot: same state, a new hub (watch streams end).
    events.close();
    node.member.replica.restore(node.member.machine.snapshot());
    node.member.onApplied(true);
    const ua = await node.unlock(a.key);
    const rb = await b.answer;
    expect(S(rb.key)).toBe(`${name}/${hex(lb)}`);
    expect(rev(rb)).toBeGreaterThanOrEqual(rev(ua));
    await node.unlock(rb.key);
  });
});

describe("Unlock (v3lock Unlock: a plain delete)", () => {
  it("deletes the key and answers the delete's header; a key that does not exist is fine; an empty key is refused", async () => {
    const name = fresh();
    const lease = await node.grant();
    const res = await node.lock(name, lease).answer;
    const un = await node.unlock(res.key);
    expect(rev(un)).toBe(rev(res) + 1);
    expect(await node.get(S(res.key))).toBeUndefined();
    const again = await node.unlock(res.key);
    expect(rev(again)).toBe(rev(un));
    expect(await failure(node.unlock(B("")))).toEqual({
      code: 2,
      details: "etcdserver: key is not provided",
    });
  });
});

describe("a learner refuses Lock and Election (etcd's interceptor)", () => {
  it("answers 'etcdserver: rpc not supported for learner', Unavailable, to Lock, Unlock, Campaign, Leader and Observe", async () => {
    // Member 1 as a learner of a cluster whose voter (2) is not running: it never leads.
    const learner = await new Node({
      hardState: { term: term(1), vote: NO_MEMBER, commit: logIndex(0) },
      snapshot: emptySnapshot({ voters: [memberId(2)], learners: [memberId(1)] }),
      entries: [],
      applied: logIndex(0),
    }).start();
    try {
      const refused = { code: 14, details: "etcdserver: rpc not supported for learner" };
      expect(await failure(learner.lock("l", "0").answer)).toEqual(refused);
      expect(await failure(learner.unlock(B("l/1")))).toEqual(refused);
      const el = "v3electionpb.Election";
      expect(await failure(learner.unary(el, "Campaign", { name: B("e"), lease: "1" }))).toEqual(refused);
      expect(await failure(learner.unary(el, "Leader", { name: B("e") }))).toEqual(refused);
      const c = learner.client(el) as unknown as { Observe: (req: W, md: Metadata) => NodeJS.EventEmitter };
      const obs = c.Observe({ name: B("e") }, new Metadata());
      obs.on("error", () => {});
      const st = await new Promise<{ code: number; details: string }>((resolve) => obs.on("status", resolve));
      expect({ code: st.code, details: st.details }).toEqual(refused);
    } finally {
      await learner.stop();
    }
  });
});
