/**
 * Resource leases in the state machine (src/state/resources.ts, machine.ts
 * acquire / release / fencedPut): who holds, FIFO waiting, fencing tokens that
 * only grow per resource, the key layout the etcd API sees, and refusals that
 * change nothing.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Command } from "../../src/state/command.ts";
import { decodeCommand, encodeCommand, tryDecodeCommand } from "../../src/state/command.ts";
import type { ApplyResult, CommandResult } from "../../src/state/machine.ts";
import { StateMachine } from "../../src/state/machine.ts";
import {
  claimOf,
  RESOURCE_NAME_BYTES_MAX,
  resourceKey,
  resourceNameProblem,
} from "../../src/state/resources.ts";
import type { LeaseId } from "../../src/state/types.ts";
import { leaseId, revision } from "../../src/state/types.ts";

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (u: Uint8Array): string => new TextDecoder().decode(u);

class Harness {
  readonly m = new StateMachine();
  private next = 1;
  run(cmd: Command): ApplyResult {
    return this.m.apply(this.next++, encodeCommand(cmd));
  }
  keys(): string[] {
    const r = this.m.range({ key: b("\0"), rangeEnd: b("\0") });
    if (!r.ok) throw new Error(r.error);
    return r.kvs.map((kv) => str(kv.key));
  }
}

const acquire = (resource: string, holder: string, id: bigint, wait = false, ttlSeconds = 10): Command => ({
  type: "acquire",
  resource,
  holder,
  id: leaseId(id),
  ttlSeconds,
  wait,
});
const release = (resource: string, id: bigint, holder: string): Command => ({
  type: "release",
  resource,
  id: leaseId(id),
  holder,
});
const fencedPut = (resource: string, token: number, key: string): Command => ({
  type: "fencedPut",
  resource,
  token: revision(token),
  request: { key: b(key), value: b("v") },
});

function acquired(r: CommandResult): Extract<CommandResult, { kind: "acquire" }> {
  if (r.kind !== "acquire") throw new Error(`expected an acquire result, got ${JSON.stringify(r)}`);
  return r;
}

describe("acquire", () => {
  it("grants a free resource: one lease, one claim key in one revision, the revision is the token", () => {
    const h = new Harness();
    const before = h.m.currentRevision();
    const r = acquired(h.run(acquire("db", "alice", 7n)).result);
    expect(r.granted).toBe(true);
    expect(r.position).toBe(0);
    expect(r.header.revision).toBe(before + 1);
    expect(r.holder).toEqual({
      resource: "db",
      holder: "alice",
      lease: leaseId(7n),
      token: r.header.revision,
    });
    expect(h.keys()).toEqual(["leasehold/resources/db\u00000000000000000007"]);
    expect(h.m.leaseTimeToLive(leaseId(7n), { keys: true })?.keys.map(str)).toEqual([
      "leasehold/resources/db\u00000000000000000007",
    ]);
  });

  it("refuses a held resource without waiting, names the holder, and changes nothing", () => {
    const h = new Harness();
    const first = acquired(h.run(acquire("db", "alice", 1n)).result);
    const rev = h.m.currentRevision();
    const r = acquired(h.run(acquire("db", "bob", 2n)).result);
    expect(r.granted).toBe(false);
    expect(r.holder).toEqual(first.holder);
    expect(h.m.currentRevision()).toBe(rev);
    expect(h.m.lease(leaseId(2n))).toBeUndefined();
    expect(h.keys()).toHaveLength(1);
  });

  it("queues waiters in FIFO order; each holds in turn, with a larger token", () => {
    const h = new Harness();
    const a = acquired(h.run(acquire("db", "a", 1n)).result);
    const bq = acquired(h.run(acquire("db", "b", 2n, true)).result);
    const cq = acquired(h.run(acquire("db", "c", 3n, true)).result);
    expect([bq.granted, bq.position, bq.holder?.holder]).toEqual([true, 1, "a"]);
    expect([cq.granted, cq.position, cq.holder?.holder]).toEqual([true, 2, "a"]);
    expect(h.m.resourceClaims("db").map((c) => c.holder)).toEqual(["a", "b", "c"]);
    h.run(release("db", 1n, "a"));
    const holderB = h.m.resourceHolder("db");
    expect(holderB?.holder).toBe("b");
    expect(holderB!.token).toBeGreaterThan(a.holder!.token);
    // The waiter's token is its claim's revision, made when it queued.
    expect(holderB!.token).toBe(bq.header.revision);
    h.run({ type: "leaseRevoke", id: leaseId(2n) });
    expect(h.m.resourceHolder("db")?.holder).toBe("c");
  });

  it("keeps resources apart: 'db' and 'db/1' and 'd' do not see each other's claims", () => {
    const h = new Harness();
    for (const [name, id] of [
      ["db", 1n],
      ["db/1", 2n],
      ["d", 3n],
    ] as const) {
      expect(acquired(h.run(acquire(name, "x", id)).result).granted).toBe(true);
    }
    expect(h.m.resourceClaims("db")).toHaveLength(1);
  });

  it("ignores keys under a resource's prefix that are not claims (written through the etcd API)", () => {
    const h = new Harness();
    h.run({ type: "put", request: { key: b("leasehold/resources/db\u0000junk"), value: b("x") } });
    expect(acquired(h.run(acquire("db", "alice", 5n)).result).granted).toBe(true);
    expect(h.m.resourceHolder("db")?.holder).toBe("alice");
  });

  it("mayHoldClaim and claimOfRenewedLease find a claim's lease cheaply and nothing on other leases", () => {
    const h = new Harness();
    h.run(acquire("db", "alice", 5n, false));
    h.run({
      type: "put",
      request: { key: b("leasehold/lock-delay-of/db\u0000x"), value: b("1"), lease: leaseId(5n) },
    });
    expect(h.m.claimOfRenewedLease(leaseId(5n))).toMatchObject({ resource: "db", holder: "alice" });
    expect(h.m.mayHoldClaim(leaseId(5n))).toBe(true);
    h.run({ type: "leaseGrant", id: leaseId(9n), ttlSeconds: 10 });
    expect(h.m.claimOfRenewedLease(leaseId(9n))).toBeUndefined(); // no keys
    h.run({ type: "put", request: { key: b("app/x"), value: b("1"), lease: leaseId(9n) } });
    expect(h.m.claimOfRenewedLease(leaseId(9n))).toBeUndefined(); // keys, none a claim
    expect(h.m.mayHoldClaim(leaseId(9n))).toBe(false);
    expect(h.m.claimOfRenewedLease(leaseId(77n))).toBeUndefined(); // no such lease
    // A lease carrying many keys is not a claim's lease (the etcd API could copy the layout): not looked at.
    for (let i = 0; i < 8; i++)
      h.run({ type: "put", request: { key: b(`app/many/${i}`), value: b("1"), lease: leaseId(5n) } });
    expect(h.m.claimsOfLease(leaseId(5n))).toHaveLength(1);
    expect(h.m.claimOfRenewedLease(leaseId(5n))).toBeUndefined();
    expect(h.m.mayHoldClaim(leaseId(5n))).toBe(false);
  });

  it("fails like a lease grant for a lease id in use, and changes nothing", () => {
    const h = new Harness();
    h.run({ type: "leaseGrant", id: leaseId(9n), ttlSeconds: 10 });
    const rev = h.m.currentRevision();
    const r = h.run(acquire("db", "alice", 9n)).result;
    expect(r).toMatchObject({ kind: "failed", error: "leaseExists" });
    expect(h.m.currentRevision()).toBe(rev);
    expect(h.m.resourceHolder("db")).toBeUndefined();
  });

  it("a claim goes when its lease expires, and the next waiter holds", () => {
    const h = new Harness();
    h.run(acquire("db", "a", 1n));
    h.run(acquire("db", "b", 2n, true));
    const grantIndex = h.m.lease(leaseId(1n))!.grantIndex;
    h.run({ type: "leaseExpire", leases: [{ id: leaseId(1n), grantIndex }] });
    expect(h.m.resourceHolder("db")?.holder).toBe("b");
  });
});

describe("release", () => {
  it("revokes the holder's lease and deletes its claim; anyone else is refused and nothing changes", () => {
    const h = new Harness();
    h.run(acquire("db", "alice", 1n));
    const rev = h.m.currentRevision();
    expect(h.run(release("db", 1n, "mallory")).result).toMatchObject({ kind: "failed", error: "notHolder" });
    expect(h.run(release("other", 1n, "alice")).result).toMatchObject({
      kind: "failed",
      error: "leaseNotFound",
    });
    expect(h.m.currentRevision()).toBe(rev);
    const r = h.run(release("db", 1n, "alice")).result;
    expect(r).toMatchObject({ kind: "release", deleted: 1, header: { revision: rev + 1 } });
    expect(h.m.lease(leaseId(1n))).toBeUndefined();
    expect(h.keys()).toEqual([]);
    expect(h.run(release("db", 1n, "alice")).result).toMatchObject({
      kind: "failed",
      error: "leaseNotFound",
    });
  });
});

describe("fencedPut", () => {
  it("writes only with the current holder's token: a stale holder and a waiter are refused", () => {
    const h = new Harness();
    const a = acquired(h.run(acquire("db", "a", 1n)).result).header.revision;
    const bq = acquired(h.run(acquire("db", "b", 2n, true)).result).header.revision;
    expect(h.run(fencedPut("db", a, "data")).result).toMatchObject({ kind: "fencedPut", ok: true });
    // A waiter's claim exists, but it does not hold: its revision is not a valid token yet.
    const waiter = h.run(fencedPut("db", bq, "data")).result;
    expect(waiter).toMatchObject({ kind: "fencedPut", ok: false, holder: { holder: "a", token: a } });
    h.run(release("db", 1n, "a"));
    const rev = h.m.currentRevision();
    expect(h.run(fencedPut("db", a, "data")).result).toMatchObject({
      kind: "fencedPut",
      ok: false,
      holder: { holder: "b", token: bq },
    });
    expect(h.m.currentRevision()).toBe(rev);
    expect(h.run(fencedPut("db", bq, "data")).result).toMatchObject({ kind: "fencedPut", ok: true });
    expect(h.run(fencedPut("free", 1, "data")).result).toMatchObject({ ok: false, holder: undefined });
  });

  it("tokens only grow per resource, whatever the order of acquires, releases and expiries", () => {
    type Op =
      | { op: "acquire"; holder: number; wait: boolean }
      | { op: "release"; claim: number }
      | { op: "expire"; claim: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant("acquire" as const), holder: fc.nat(3), wait: fc.boolean() }),
      fc.record({ op: fc.constant("release" as const), claim: fc.nat(20) }),
      fc.record({ op: fc.constant("expire" as const), claim: fc.nat(20) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const h = new Harness();
        let nextId = 1n;
        const claims: { id: LeaseId; holder: string }[] = [];
        let lastToken = 0;
        for (const o of ops) {
          if (o.op === "acquire") {
            const id = nextId++;
            const r = acquired(h.run(acquire("r", `h${o.holder}`, id, o.wait)).result);
            if (r.granted) claims.push({ id: leaseId(id), holder: `h${o.holder}` });
          } else if (claims.length > 0) {
            const c = claims.splice(o.claim % claims.length, 1)[0]!;
            if (o.op === "release") h.run(release("r", c.id, c.holder));
            else {
              const grantIndex = h.m.lease(c.id)!.grantIndex;
              h.run({ type: "leaseExpire", leases: [{ id: c.id, grantIndex }] });
            }
          }
          const holder = h.m.resourceHolder("r");
          // The holder is always the oldest live claim, and a new holder has a larger token.
          expect(holder?.lease).toBe(claims[0]?.id);
          if (holder !== undefined) {
            expect(holder.token).toBeGreaterThanOrEqual(lastToken);
            lastToken = holder.token;
          }
        }
      }),
    );
  });
});

describe("lock-delay", () => {
  const expire = (h: Harness, id: bigint) => {
    const grantIndex = h.m.lease(leaseId(id))!.grantIndex;
    return h.run({ type: "leaseExpire", leases: [{ id: leaseId(id), grantIndex }] }).result;
  };
  const withDelay = (resource: string, holder: string, id: bigint, wait = false): Command => ({
    ...(acquire(resource, holder, id, wait) as Extract<Command, { type: "acquire" }>),
    lockDelaySeconds: 30,
  });

  it("after the holder's lease EXPIRES nobody holds until the delay lease expires; then the first waiter does", () => {
    const h = new Harness();
    const a = acquired(h.run(withDelay("db", "a", 1n)).result);
    h.run(acquire("db", "b", 2n, true));
    expire(h, 1n);
    const delay = h.m.lockDelay("db");
    expect(delay?.holder).toBe("a");
    expect(h.m.resourceHolder("db")).toBeUndefined();
    expect(h.m.resourceHolders("")).toEqual([]);
    // A new acquire is refused, naming the delay; a waiter queues behind it and b.
    const refused = acquired(h.run(acquire("db", "c", 3n)).result);
    expect(refused).toMatchObject({
      granted: false,
      holder: undefined,
      position: 2,
      lockDelay: { holder: "a" },
    });
    const queued = acquired(h.run(acquire("db", "c", 4n, true)).result);
    expect(queued).toMatchObject({ granted: true, position: 2 });
    // No fencing token is current: not the expired holder's, not the waiter's.
    expect(h.run(fencedPut("db", a.header.revision, "k")).result).toMatchObject({ ok: false });
    // The leader's lessor expires the delay lease: b holds.
    expire(h, delay!.lease);
    expect(h.m.lockDelay("db")).toBeUndefined();
    expect(h.m.resourceHolder("db")?.holder).toBe("b");
  });

  it("a release, a revoke, or a holding without lock-delay starts none; a waiter's expiry starts none", () => {
    const h = new Harness();
    h.run(withDelay("r1", "a", 1n));
    h.run(release("r1", 1n, "a"));
    expect(h.m.lockDelay("r1")).toBeUndefined();
    h.run(withDelay("r2", "a", 2n));
    h.run({ type: "leaseRevoke", id: leaseId(2n) });
    expect(h.m.lockDelay("r2")).toBeUndefined();
    h.run(acquire("r3", "a", 3n));
    expire(h, 3n);
    expect(h.m.lockDelay("r3")).toBeUndefined();
    h.run(acquire("r4", "a", 4n));
    h.run(withDelay("r4", "b", 5n, true));
    expire(h, 5n); // a waiter, not the holder
    expect(h.m.lockDelay("r4")).toBeUndefined();
    expect(h.m.resourceHolder("r4")?.holder).toBe("a");
  });
});

describe("release requests", () => {
  it("a request needs a holder; revoke is refused until its deadline lease is gone, then ends the holding", () => {
    const h = new Harness();
    const ask = (resource: string, id = 50n): Command => ({
      type: "requestRelease",
      resource,
      requester: "ops",
      reason: "maintenance",
      id: leaseId(id),
      deadlineSeconds: 30,
    });
    const revoke = (id: bigint): Command => ({ type: "forceRevoke", resource: "db", id: leaseId(id) });
    expect(h.run(ask("db")).result).toMatchObject({ kind: "requestRelease", holder: undefined });
    h.run(acquire("db", "alice", 1n));
    expect(h.run(revoke(1n)).result).toMatchObject({ kind: "forceRevoke", outcome: "notRequested" });
    const asked = h.run(ask("db")).result;
    expect(asked).toMatchObject({
      kind: "requestRelease",
      holder: { holder: "alice" },
      deadlineLease: leaseId(50n),
    });
    expect(h.m.releaseRequest("db", leaseId(1n))).toEqual({
      request: {
        resource: "db",
        lease: leaseId(1n),
        requester: "ops",
        reason: "maintenance",
        deadlineSeconds: 30,
      },
      deadlinePassed: false,
    });
    const rev = h.m.currentRevision();
    expect(h.run(revoke(1n)).result).toMatchObject({ kind: "forceRevoke", outcome: "beforeDeadline" });
    expect(h.m.currentRevision()).toBe(rev);
    // The leader's lessor expires the deadline lease: the deadline has passed.
    const grantIndex = h.m.lease(leaseId(50n))!.grantIndex;
    h.run({ type: "leaseExpire", leases: [{ id: leaseId(50n), grantIndex }] });
    expect(h.m.releaseRequest("db", leaseId(1n))?.deadlinePassed).toBe(true);
    expect(h.run(revoke(1n)).result).toMatchObject({ kind: "forceRevoke", outcome: "revoked", deleted: 2 });
    expect(h.m.resourceHolder("db")).toBeUndefined();
    expect(h.keys()).toEqual([]);
    expect(h.run(revoke(1n)).result).toMatchObject({ kind: "forceRevoke", outcome: "noClaim" });
  });

  it("a request goes with the holding: released, its request key is gone too", () => {
    const h = new Harness();
    h.run(acquire("db", "alice", 1n));
    h.run({
      type: "requestRelease",
      resource: "db",
      requester: "ops",
      reason: "",
      id: leaseId(50n),
      deadlineSeconds: 30,
    });
    h.run(release("db", 1n, "alice"));
    expect(h.keys()).toEqual(["leasehold/release-deadlines/db\u00000000000000000001"]);
    expect(h.m.releaseRequest("db", leaseId(1n))).toBeUndefined();
  });
});

describe("layout and codec", () => {
  it("a claim key round-trips through claimOf; other keys are not claims", () => {
    const key = resourceKey("db/shard-1", leaseId(0xabcn));
    expect(str(key)).toBe("leasehold/resources/db/shard-1\u0000" + "0000000000000abc");
    const kv = { key, createRevision: revision(4), modRevision: revision(4), version: 1, value: b("me") };
    expect(claimOf({ ...kv, lease: leaseId(0xabcn) })).toEqual({
      resource: "db/shard-1",
      holder: "me",
      lease: leaseId(0xabcn),
      token: 4,
    });
    // Bound to another lease than its name says: not a claim.
    expect(claimOf({ ...kv, lease: leaseId(1n) })).toBeUndefined();
    expect(claimOf({ ...kv, key: b("leasehold/resources/db"), lease: leaseId(0xabcn) })).toBeUndefined();
  });

  it("resource names: 1 to 512 UTF-8 bytes, no NUL, no lone surrogate", () => {
    expect(resourceNameProblem("")).toMatch(/empty/);
    expect(resourceNameProblem("a\u0000b")).toMatch(/NUL/);
    expect(resourceNameProblem("\ud800")).toMatch(/well-formed/);
    expect(resourceNameProblem("é".repeat(RESOURCE_NAME_BYTES_MAX / 2))).toBeUndefined();
    expect(resourceNameProblem("é".repeat(RESOURCE_NAME_BYTES_MAX / 2 + 1))).toMatch(/over 512/);
  });

  it("the commands round-trip through the codec; a bad name does not decode", () => {
    for (const cmd of [acquire("db", "a", 3n, true, 30), release("db", 3n, "a"), fencedPut("db", 12, "k")]) {
      expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
    }
    const bad = new TextEncoder().encode(
      JSON.stringify({
        v: 1,
        type: "acquire",
        resource: "",
        holder: "a",
        id: "1",
        ttlSeconds: 5,
        wait: false,
      }),
    );
    const r = tryDecodeCommand(bad);
    expect(r.ok).toBe(false);
  });

  it("a snapshot keeps the claims: the restored machine answers the same holder", () => {
    const h = new Harness();
    h.run(acquire("db", "a", 1n));
    h.run(acquire("db", "b", 2n, true));
    const copy = StateMachine.restore(h.m.snapshot());
    expect(copy.resourceClaims("db")).toEqual(h.m.resourceClaims("db"));
  });
});
