/**
 * leasehold.v1 Leases and Fences (src/api/leases.ts) against a real in-process
 * member and ApiServer over loopback, with proto-loader clients: acquire,
 * refusal naming the holder, FIFO waiting with the claim kept alive, renew and
 * release by the holder only, fencing tokens and fenced writes, and the etcd
 * API's view of the same state.
 *
 * Nothing sleeps: "still waiting" is shown by the order in which calls answer.
 */

import { Metadata, status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { WireMessage } from "../../src/api/index.ts";
import { recipeWaiters } from "../../src/api/recipes.ts";
import { emptySnapshot, logIndex, memberId, NO_MEMBER, term } from "../../src/raft/index.ts";
import { B, failure, type Pending, RecipeNode, S } from "./recipe-node.ts";

type W = WireMessage;

const serverLog: string[] = [];
let node: RecipeNode;

beforeAll(async () => {
  node = await new RecipeNode(serverLog).start();
});
afterAll(async () => {
  await node.stop();
});
afterEach(() => {
  expect(serverLog.splice(0)).toEqual([]);
  expect(recipeWaiters()).toBe(0);
});

const leases = (method: string, req: W): Promise<W> => node.unary("leasehold.v1.Leases", method, req);
const fences = (method: string, req: W): Promise<W> => node.unary("leasehold.v1.Fences", method, req);
const acquireCall = (resource: string, holder: string, wait = false, ttl = 30): Pending =>
  node.call("leasehold.v1.Leases", "Acquire", { resource, holder, ttl, wait });

describe("Acquire", () => {
  it("grants a free resource with a fencing token; the etcd API sees the claim key on the lease", async () => {
    const r = await acquireCall("db-a", "alice").answer;
    const h = r.holding as W;
    expect(h).toMatchObject({ resource: "db-a", holder: "alice", ttl: "30", remaining_ms: "30000" });
    expect(String(h.fencing_token)).toBe(String((r.header as W).revision));
    const id = BigInt(String(h.lease_id));
    const key = `leasehold/resources/db-a\u0000${id.toString(16).padStart(16, "0")}`;
    const kv = await node.get(key);
    expect(S(kv?.value)).toBe("alice");
    expect(String(kv?.lease)).toBe(String(id));
    expect(String(kv?.create_revision)).toBe(String(h.fencing_token));
  });

  it("refuses a held resource with ALREADY_EXISTS, naming the holder and its time left", async () => {
    const first = (await acquireCall("db-b", "alice").answer).holding as W;
    const f = await failure(acquireCall("db-b", "bob").answer);
    expect(f.code).toBe(status.ALREADY_EXISTS);
    expect(f.message).toMatch(
      /^leasehold: resource "db-b" is held by "alice" \(lease [0-9a-f]+, \d+ s left\)$/,
    );
    expect(f.md).toMatchObject({
      "leasehold-error": "held",
      holder: "alice",
      "lease-id": String(first.lease_id),
      "fencing-token": String(first.fencing_token),
    });
    // Milliseconds, not whole seconds: a just-granted 30 s lease has more than 29,000 ms left.
    expect(Number(f.md["remaining-ms"])).toBeGreaterThan(29_000);
    expect(Number(f.md["remaining-ms"])).toBeLessThanOrEqual(30_000);
  });

  it("rejects bad requests with INVALID_ARGUMENT and changes nothing", async () => {
    const before = String(((await leases("List", { prefix: "" })).header as W).revision);
    for (const req of [
      { resource: "", holder: "a", ttl: 5 },
      { resource: "x\u0000y", holder: "a", ttl: 5 },
      { resource: "x", holder: "", ttl: 5 },
      { resource: "x", holder: "a", ttl: 0 },
    ]) {
      const f = await failure(leases("Acquire", req));
      expect(f.code).toBe(status.INVALID_ARGUMENT);
      expect(f.message).toMatch(/^leasehold: (resource|holder|ttl): /);
    }
    expect(String(((await leases("List", { prefix: "" })).header as W).revision)).toBe(before);
  });

  it("with wait, queues FIFO and answers each waiter when the one before releases", async () => {
    const a = (await acquireCall("db-c", "a").answer).holding as W;
    const bCall = acquireCall("db-c", "b", true);
    const cCall = acquireCall("db-c", "c", true);
    const order: string[] = [];
    void bCall.answer.then(() => order.push("b"));
    void cCall.answer.then(() => order.push("c"));
    // Both waiters are queued behind a (Get lists them in order) before a lets go.
    let got: W;
    do got = await leases("Get", { resource: "db-c" });
    while ((got.waiters as W[]).length < 2);
    expect((got.waiters as W[]).map((w) => w.holder)).toEqual(["b", "c"]);
    expect(order).toEqual([]);
    await leases("Release", { resource: "db-c", lease_id: a.lease_id, holder: "a" });
    const b = (await bCall.answer).holding as W;
    expect(order).toEqual(["b"]);
    expect(Number(b.fencing_token)).toBeGreaterThan(Number(a.fencing_token));
    await leases("Release", { resource: "db-c", lease_id: b.lease_id, holder: "b" });
    const c = (await cCall.answer).holding as W;
    expect(Number(c.fencing_token)).toBeGreaterThan(Number(b.fencing_token));
    await leases("Release", { resource: "db-c", lease_id: c.lease_id, holder: "c" });
  });

  it("a waiter that gives up (cancels) leaves no claim behind", async () => {
    const a = (await acquireCall("db-d", "a").answer).holding as W;
    const waiter = acquireCall("db-d", "b", true);
    let got: W;
    do got = await leases("Get", { resource: "db-d" });
    while ((got.waiters as W[]).length < 1);
    waiter.call.cancel();
    expect((await failure(waiter.answer)).code).toBe(status.CANCELLED);
    do got = await leases("Get", { resource: "db-d" });
    while ((got.waiters as W[]).length > 0);
    expect((got.holding as W).holder).toBe("a");
    await leases("Release", { resource: "db-d", lease_id: a.lease_id, holder: "a" });
  });
});

describe("client sessions (leasehold-client-id / leasehold-seq)", () => {
  const withSession = (clientId: string, seq: number): Metadata => {
    const md = new Metadata();
    md.set("leasehold-client-id", clientId);
    md.set("leasehold-seq", String(seq));
    return md;
  };

  it("a retried acquire (same client id and seq) is applied once and answered the same", async () => {
    const req = { resource: "db-s", holder: "alice", ttl: 30 };
    const first = await node.call("leasehold.v1.Leases", "Acquire", req, withSession("c1", 1)).answer;
    const retry = await node.call("leasehold.v1.Leases", "Acquire", req, withSession("c1", 1)).answer;
    expect((retry.holding as W).lease_id).toBe((first.holding as W).lease_id);
    const got = await leases("Get", { resource: "db-s" });
    expect(got.waiters).toEqual([]);
    // A new request (seq 2) of the same client is a new acquire: refused, the resource is held.
    const again = await failure(
      node.call("leasehold.v1.Leases", "Acquire", req, withSession("c1", 2)).answer,
    );
    expect(again.code).toBe(status.ALREADY_EXISTS);
    // An older seq than the last answered one was superseded: refused, nothing applied.
    const stale = await failure(
      node.call("leasehold.v1.Leases", "Acquire", req, withSession("c1", 1)).answer,
    );
    expect(stale.code).toBe(status.INVALID_ARGUMENT);
    expect(stale.message).toMatch(/newer request/);
    await leases("Release", { resource: "db-s", lease_id: (first.holding as W).lease_id, holder: "alice" });
  });

  it("a half-given session is refused", async () => {
    const md = new Metadata();
    md.set("leasehold-client-id", "c2");
    const f = await failure(
      node.call("leasehold.v1.Leases", "Acquire", { resource: "db-t", holder: "a", ttl: 5 }, md).answer,
    );
    expect(f.code).toBe(status.INVALID_ARGUMENT);
  });
});

describe("Renew and Release", () => {
  it("only the holder renews or releases; a released lease is gone", async () => {
    const h = (await acquireCall("db-e", "alice", false, 20).answer).holding as W;
    const renewed = await leases("Renew", { lease_id: h.lease_id, holder: "alice" });
    expect(String(renewed.ttl)).toBe("20");
    const wrong = await failure(leases("Renew", { lease_id: h.lease_id, holder: "mallory" }));
    expect(wrong.code).toBe(status.PERMISSION_DENIED);
    expect(wrong.message).toMatch(/is held by "alice", not "mallory"/);
    expect(wrong.md["leasehold-error"]).toBe("notHolder");
    const wrongRelease = await failure(
      leases("Release", { resource: "db-e", lease_id: h.lease_id, holder: "mallory" }),
    );
    expect(wrongRelease.code).toBe(status.PERMISSION_DENIED);
    await leases("Release", { resource: "db-e", lease_id: h.lease_id, holder: "alice" });
    expect((await failure(leases("Renew", { lease_id: h.lease_id, holder: "alice" }))).code).toBe(
      status.NOT_FOUND,
    );
    expect((await leases("Get", { resource: "db-e" })).holding).toBeNull();
    // Free again: someone else gets it at once.
    const next = (await acquireCall("db-e", "bob").answer).holding as W;
    await leases("Release", { resource: "db-e", lease_id: next.lease_id, holder: "bob" });
  });
});

describe("KeepAlive (one stream renews many holdings)", () => {
  it("renews resource and semaphore claims, answers refusals in the message and goes on", async () => {
    const res = (await acquireCall("ka-res", "alice", false, 20).answer).holding as W;
    const sem = (
      await node.unary("leasehold.v1.Semaphores", "Acquire", {
        name: "ka-sem",
        holder: "carol",
        ttl: 25,
        permits: 2,
      })
    ).holding as W;
    const stream = (
      node.client("leasehold.v1.Leases") as unknown as {
        KeepAlive(): NodeJS.EventEmitter & { write(m: W): void; end(): void };
      }
    ).KeepAlive();
    const answers = new Map<string, W>();
    const ended = new Promise<void>((resolve, reject) => {
      stream.on("data", (m: W) => answers.set(String(m.seq), m));
      stream.on("end", resolve);
      stream.on("error", reject);
    });
    stream.write({ lease_id: res.lease_id, holder: "alice", seq: 1 });
    stream.write({ lease_id: res.lease_id, holder: "mallory", seq: 2 });
    stream.write({ lease_id: "424242", holder: "alice", seq: 3 });
    stream.write({ lease_id: sem.lease_id, holder: "carol", seq: 4 });
    stream.write({ lease_id: sem.lease_id, holder: "alice", seq: 5 });
    stream.end();
    await ended; // the server ends its side once every request is answered
    const view = (seq: string) => {
      const m = answers.get(seq)!;
      return { lease: String(m.lease_id), ttl: String(m.ttl), code: m.error_code, kind: m.error_kind };
    };
    expect([...answers.keys()].sort()).toEqual(["1", "2", "3", "4", "5"]);
    expect(view("1")).toEqual({ lease: String(res.lease_id), ttl: "20", code: 0, kind: "" });
    expect(view("2")).toEqual({
      lease: String(res.lease_id),
      ttl: "0",
      code: status.PERMISSION_DENIED,
      kind: "notHolder",
    });
    expect(answers.get("2")!.error_message).toMatch(/is held by "alice", not "mallory"/);
    expect(view("3")).toEqual({ lease: "424242", ttl: "0", code: status.NOT_FOUND, kind: "notFound" });
    expect(view("4")).toEqual({ lease: String(sem.lease_id), ttl: "25", code: 0, kind: "" });
    expect(view("5")).toMatchObject({ code: status.PERMISSION_DENIED, kind: "notHolder" });
    expect(answers.get("5")!.error_message).toMatch(/semaphore "ka-sem" is held by "carol"/);
    await leases("Release", { resource: "ka-res", lease_id: res.lease_id, holder: "alice" });
    await node.unary("leasehold.v1.Semaphores", "Release", {
      name: "ka-sem",
      lease_id: sem.lease_id,
      holder: "carol",
    });
  });
});

describe("Get and List", () => {
  it("List answers the holder of every resource under a prefix, in name order, not its waiters", async () => {
    const held: W[] = [];
    for (const name of ["ls/b", "ls/a", "ls/a/1", "lsx"])
      held.push((await acquireCall(name, `h-${name}`).answer).holding as W);
    const waiter = acquireCall("ls/a", "late", true);
    let got: W;
    do got = await leases("Get", { resource: "ls/a" });
    while ((got.waiters as W[]).length < 1);
    const r = await leases("List", { prefix: "ls/" });
    expect((r.holdings as W[]).map((h) => `${h.resource}=${h.holder}`)).toEqual([
      "ls/a=h-ls/a",
      "ls/a/1=h-ls/a/1",
      "ls/b=h-ls/b",
    ]);
    waiter.call.cancel();
    await failure(waiter.answer);
    for (const h of held)
      await leases("Release", { resource: h.resource, lease_id: h.lease_id, holder: h.holder });
  });
});

describe("Fences", () => {
  it("a fenced write succeeds with the current token and fails with a stale one, naming the holder", async () => {
    const a = (await acquireCall("store", "a").answer).holding as W;
    await fences("CheckFence", { resource: "store", fencing_token: a.fencing_token });
    const ok = await fences("FencedPut", {
      resource: "store",
      fencing_token: a.fencing_token,
      key: B("data/x"),
      value: B("from a"),
    });
    expect(Number((ok.header as W).revision)).toBeGreaterThan(Number(a.fencing_token));
    await leases("Release", { resource: "store", lease_id: a.lease_id, holder: "a" });
    const b = (await acquireCall("store", "b").answer).holding as W;
    const stale = await failure(
      fences("FencedPut", {
        resource: "store",
        fencing_token: a.fencing_token,
        key: B("data/x"),
        value: B("late a"),
      }),
    );
    expect(stale.code).toBe(status.FAILED_PRECONDITION);
    expect(stale.message).toBe(
      `leasehold: fencing token ${a.fencing_token} is not current for "store": "b" holds it with token ${b.fencing_token}`,
    );
    expect(stale.md).toMatchObject({
      "leasehold-error": "staleFence",
      holder: "b",
      "fencing-token": String(b.fencing_token),
    });
    expect(S((await node.get("data/x"))?.value)).toBe("from a");
    expect(
      (await failure(fences("CheckFence", { resource: "store", fencing_token: a.fencing_token }))).code,
    ).toBe(status.FAILED_PRECONDITION);
    await leases("Release", { resource: "store", lease_id: b.lease_id, holder: "b" });
  });
});

describe("a learner refuses leasehold.v1 (etcd's rule: try another member)", () => {
  it("answers 'rpc not supported for learner', Unavailable, to Acquire, KeepAlive and Events", async () => {
    // Member 1 as a learner of a cluster whose voter (2) is not running: it never leads.
    const learner = await new RecipeNode([], {
      hardState: { term: term(1), vote: NO_MEMBER, commit: logIndex(0) },
      snapshot: emptySnapshot({ voters: [memberId(2)], learners: [memberId(1)] }),
      entries: [],
      applied: logIndex(0),
    }).start();
    try {
      const refused = { code: status.UNAVAILABLE, message: "etcdserver: rpc not supported for learner" };
      const acquire = await failure(
        learner.unary("leasehold.v1.Leases", "Acquire", { resource: "r", holder: "h", ttl: 5 }),
      );
      expect({ code: acquire.code, message: acquire.message }).toEqual(refused);
      const c = learner.client("leasehold.v1.Leases") as unknown as {
        KeepAlive(md: Metadata): NodeJS.EventEmitter & { write(m: W): void };
        Events(req: W, md: Metadata): NodeJS.EventEmitter;
      };
      for (const stream of [c.KeepAlive(new Metadata()), c.Events({ prefix: "" }, new Metadata())]) {
        stream.on("error", () => {});
        const st = await new Promise<{ code: number; details: string }>((resolve) =>
          stream.on("status", resolve),
        );
        expect({ code: st.code, message: st.details }).toEqual(refused);
      }
    } finally {
      await learner.stop();
    }
  });
});
