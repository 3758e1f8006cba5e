/**
 * leasehold.v1 Semaphores (src/api/semaphores.ts) against a real in-process
 * member and ApiServer over loopback, with proto-loader clients: N holders at
 * once, refusal with the holders count, permits fixed by the first claim,
 * FIFO waiting for "fewer than N older claims" (not "the oldest"), a waiter
 * promoted when a holder's lease is revoked, a cancelled or lost waiter,
 * renew and release by the holder only, and the etcd API's view of the keys.
 *
 * Nothing sleeps: "still waiting" is shown by the order in which calls answer.
 */

import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { WireMessage } from "../../src/api/index.ts";
import { semaphoreEvaluations, semaphoreWaiters } from "../../src/api/semaphores.ts";
import { failure, type Pending, RecipeNode, S } from "./recipe-node.ts";

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
  expect(semaphoreWaiters()).toBe(0);
});

const sem = (method: string, req: W): Promise<W> => node.unary("leasehold.v1.Semaphores", method, req);
const acquireCall = (name: string, holder: string, permits: number, wait = false, ttl = 30): Pending =>
  node.call("leasehold.v1.Semaphores", "Acquire", { name, holder, ttl, permits, wait });
const holdingOf = async (p: Pending): Promise<W> => (await p.answer).holding as W;
const release = (h: W): Promise<W> =>
  sem("Release", { name: h.name, lease_id: h.lease_id, holder: h.holder });

/** Get until `n` claims wait (each Get is a linearizable read: no timer). */
async function waitersUntil(name: string, n: number): Promise<W> {
  let got: W;
  do got = await sem("Get", { name });
  while ((got.waiters as W[]).length < n);
  return got;
}

describe("Acquire", () => {
  it("grants up to N holders, each with its own lease, token and position; etcd sees the claims", async () => {
    const a = await holdingOf(acquireCall("s-a", "alice", 2));
    const b = await holdingOf(acquireCall("s-a", "bob", 2));
    expect(a).toMatchObject({
      name: "s-a",
      holder: "alice",
      position: "0",
      ttl: "30",
      remaining_ms: "30000",
    });
    expect(b).toMatchObject({ holder: "bob", position: "1" });
    expect(Number(b.fencing_token)).toBeGreaterThan(Number(a.fencing_token));
    expect(a.lease_id).not.toBe(b.lease_id);
    const id = BigInt(String(a.lease_id));
    const kv = await node.get(`leasehold/semaphores/s-a\u0000${id.toString(16).padStart(16, "0")}`);
    expect(S(kv?.value)).toBe("2 alice");
    expect(String(kv?.lease)).toBe(String(id));
    expect(String(kv?.create_revision)).toBe(String(a.fencing_token));
    const got = await sem("Get", { name: "s-a" });
    expect(got.permits).toBe("2");
    expect((got.holders as W[]).map((h) => h.holder)).toEqual(["alice", "bob"]);
    expect(got.waiters).toEqual([]);
    await release(a);
    await release(b);
    expect((await sem("Get", { name: "s-a" })).permits).toBe("0");
  });

  it("refuses a full semaphore with ALREADY_EXISTS semaphoreFull and the holders count", async () => {
    const a = await holdingOf(acquireCall("s-b", "a", 1));
    const f = await failure(acquireCall("s-b", "b", 1).answer);
    expect(f.code).toBe(status.ALREADY_EXISTS);
    expect(f.message).toBe(
      'leasehold: semaphore "s-b" has all 1 permits held (1 holders, 0 waiting); acquire with wait to queue',
    );
    expect(f.md).toMatchObject({ "leasehold-error": "semaphoreFull", holders: "1", permits: "1" });
    await release(a);
  });

  it("refuses other permits than the first claim fixed, with INVALID_ARGUMENT naming them", async () => {
    const a = await holdingOf(acquireCall("s-c", "a", 3));
    const f = await failure(acquireCall("s-c", "b", 4, true).answer);
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.message).toBe('leasehold: semaphore "s-c" has 3 permits, not 4 (the first claim fixed them)');
    expect(f.md).toMatchObject({ "leasehold-error": "permitsMismatch", permits: "3" });
    await release(a);
    // Gone with its last claim: the next acquire fixes new permits.
    const b = await holdingOf(acquireCall("s-c", "b", 4));
    expect((await sem("Get", { name: "s-c" })).permits).toBe("4");
    await release(b);
  });

  it("rejects bad requests with INVALID_ARGUMENT", async () => {
    for (const req of [
      { name: "", holder: "a", ttl: 5, permits: 1 },
      { name: "x\u0000y", holder: "a", ttl: 5, permits: 1 },
      { name: "x", holder: "", ttl: 5, permits: 1 },
      { name: "x", holder: "a", ttl: 0, permits: 1 },
      { name: "x", holder: "a", ttl: 5, permits: 0 },
      { name: "x", holder: "a", ttl: 5, permits: 100_001 },
    ]) {
      const f = await failure(sem("Acquire", req));
      expect(f.code).toBe(status.INVALID_ARGUMENT);
      expect(f.message).toMatch(/^leasehold: (name|holder|ttl|permits): /);
    }
  });
});

describe("waiting", () => {
  it("a waiter holds as soon as fewer than N claims are older: a younger holder's release is enough", async () => {
    const a = await holdingOf(acquireCall("s-w", "a", 2));
    const b = await holdingOf(acquireCall("s-w", "b", 2));
    const cCall = acquireCall("s-w", "c", 2, true);
    const dCall = acquireCall("s-w", "d", 2, true);
    const order: string[] = [];
    void cCall.answer.then(() => order.push("c"));
    void dCall.answer.then(() => order.push("d"));
    const got = await waitersUntil("s-w", 2);
    expect((got.waiters as W[]).map((w) => `${w.holder}@${w.position}`)).toEqual(["c@2", "d@3"]);
    expect(order).toEqual([]);
    // b goes, a stays: c has one older claim left, below 2 permits (waiting to be THE oldest would hang here).
    await release(b);
    const c = await holdingOf(cCall);
    expect(order).toEqual(["c"]);
    expect(c).toMatchObject({ holder: "c", position: "1" });
    expect(((await sem("Get", { name: "s-w" })).holders as W[]).map((h) => h.holder)).toEqual(["a", "c"]);
    // The holder's lease revoked (as an expiry would): d moves up.
    await node.revoke(String(a.lease_id));
    const d = await holdingOf(dCall);
    expect(order).toEqual(["c", "d"]);
    expect(d).toMatchObject({ holder: "d", position: "1" });
    await release(c);
    await release(d);
  });

  it("a release costs the waiters behind no full look at the claims: only the one that moves up looks", async () => {
    const a = await holdingOf(acquireCall("s-many", "a", 2));
    const b = await holdingOf(acquireCall("s-many", "b", 2));
    const calls = Array.from({ length: 30 }, (_, i) => acquireCall("s-many", `w${i}`, 2, true));
    await waitersUntil("s-many", 30);
    const before = semaphoreEvaluations();
    await release(b);
    const w0 = await holdingOf(calls[0]!);
    expect(w0).toMatchObject({ holder: "w0", position: "1" });
    // w0 read the claims once to see it holds (and once more to confirm); the 29 others only counted the delete.
    expect(semaphoreEvaluations() - before).toBeLessThanOrEqual(2);
    // The others still move up in order, each when its turn comes.
    await release(a);
    expect(await holdingOf(calls[1]!)).toMatchObject({ holder: "w1", position: "1" });
    for (const c of calls.slice(2)) c.call.cancel();
    await Promise.allSettled(calls.slice(2).map((c) => c.answer));
    let got: W;
    do got = await sem("Get", { name: "s-many" });
    while ((got.waiters as W[]).length > 0);
    await release(w0);
    await release(await holdingOf(calls[1]!));
  });

  it("a waiter that gives up (cancels) leaves no claim behind", async () => {
    const a = await holdingOf(acquireCall("s-x", "a", 1));
    const waiter = acquireCall("s-x", "b", 1, true);
    await waitersUntil("s-x", 1);
    waiter.call.cancel();
    expect((await failure(waiter.answer)).code).toBe(status.CANCELLED);
    let got: W;
    do got = await sem("Get", { name: "s-x" });
    while ((got.waiters as W[]).length > 0);
    expect((got.holders as W[]).map((h) => h.holder)).toEqual(["a"]);
    await release(a);
  });

  it("a waiter whose own claim is revoked answers NOT_FOUND", async () => {
    const a = await holdingOf(acquireCall("s-y", "a", 1));
    const waiter = acquireCall("s-y", "b", 1, true);
    const got = await waitersUntil("s-y", 1);
    await node.revoke(String((got.waiters as W[])[0]!.lease_id));
    const f = await failure(waiter.answer);
    expect(f.code).toBe(status.NOT_FOUND);
    expect(f.message).toMatch(/^leasehold: the claim on semaphore "s-y" was lost while waiting/);
    await release(a);
  });
});

describe("Renew and Release", () => {
  it("only the holder renews or releases; Leases.Renew does not renew semaphore claims", async () => {
    const h = await holdingOf(acquireCall("s-r", "alice", 2, false, 20));
    expect(String((await sem("Renew", { lease_id: h.lease_id, holder: "alice" })).ttl)).toBe("20");
    const wrong = await failure(sem("Renew", { lease_id: h.lease_id, holder: "mallory" }));
    expect(wrong.code).toBe(status.PERMISSION_DENIED);
    expect(wrong.message).toMatch(/on semaphore "s-r" is held by "alice", not "mallory"/);
    expect(wrong.md["leasehold-error"]).toBe("notHolder");
    const viaLeases = await failure(
      node.unary("leasehold.v1.Leases", "Renew", { lease_id: h.lease_id, holder: "alice" }),
    );
    expect(viaLeases.code).toBe(status.NOT_FOUND);
    const wrongRelease = await failure(
      sem("Release", { name: "s-r", lease_id: h.lease_id, holder: "mallory" }),
    );
    expect(wrongRelease.code).toBe(status.PERMISSION_DENIED);
    const otherName = await failure(sem("Release", { name: "s-q", lease_id: h.lease_id, holder: "alice" }));
    expect(otherName.code).toBe(status.NOT_FOUND);
    await release(h);
    expect((await failure(sem("Renew", { lease_id: h.lease_id, holder: "alice" }))).code).toBe(
      status.NOT_FOUND,
    );
    expect(
      await node.get(
        `leasehold/semaphores/s-r\u0000${BigInt(String(h.lease_id)).toString(16).padStart(16, "0")}`,
      ),
    ).toBeUndefined();
  });
});
