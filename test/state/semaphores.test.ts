/**
 * Semaphores in the state machine (src/state/semaphores.ts, machine.ts
 * semaphoreAcquire / semaphoreRelease): up to N holders, FIFO waiters, permits
 * fixed by the first claim, release and expiry promoting the next waiter, the
 * key layout the etcd API sees, refusals that change nothing, and a
 * fast-check property against a small model (never more than N holders; the
 * holders are always the N oldest live claims; a holder never goes back to
 * waiting).
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ClientSession, Command } from "../../src/state/command.ts";
import { decodeCommand, encodeCommand, tryDecodeCommand } from "../../src/state/command.ts";
import type { ApplyResult, CommandResult } from "../../src/state/machine.ts";
import { StateMachine } from "../../src/state/machine.ts";
import {
  SEMAPHORE_PERMITS_MAX,
  semaphoreClaimOf,
  semaphoreKey,
  semaphoreView,
} from "../../src/state/semaphores.ts";
import type { LeaseId } from "../../src/state/types.ts";
import { leaseId, revision } from "../../src/state/types.ts";

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (u: Uint8Array): string => new TextDecoder().decode(u);

class Harness {
  m = new StateMachine();
  private next = 1;
  run(cmd: Command): ApplyResult {
    return this.m.apply(this.next++, encodeCommand(cmd));
  }
  keys(): string[] {
    const r = this.m.range({ key: b("\0"), rangeEnd: b("\0") });
    if (!r.ok) throw new Error(r.error);
    return r.kvs.map((kv) => `${str(kv.key)}=${str(kv.value)}`);
  }
  holders(name: string): string[] {
    return semaphoreView(this.m.semaphoreClaims(name)).holders.map((c) => c.holder);
  }
  waiters(name: string): string[] {
    return semaphoreView(this.m.semaphoreClaims(name)).waiters.map((c) => c.holder);
  }
  expire(id: bigint): void {
    const grantIndex = this.m.lease(leaseId(id))!.grantIndex;
    this.run({ type: "leaseExpire", leases: [{ id: leaseId(id), grantIndex }] });
  }
}

const acquire = (
  semaphore: string,
  holder: string,
  id: bigint,
  permits: number,
  wait = false,
  session?: ClientSession,
): Command => ({
  type: "semaphoreAcquire",
  semaphore,
  holder,
  id: leaseId(id),
  ttlSeconds: 10,
  permits,
  wait,
  ...(session === undefined ? {} : { session }),
});
const release = (semaphore: string, id: bigint, holder: string): Command => ({
  type: "semaphoreRelease",
  semaphore,
  id: leaseId(id),
  holder,
});

function acquired(r: CommandResult): Extract<CommandResult, { kind: "semaphoreAcquire" }> {
  if (r.kind !== "semaphoreAcquire") throw new Error(`expected a semaphoreAcquire result, got ${r.kind}`);
  return r;
}

describe("semaphoreAcquire", () => {
  it("grants up to N holders, each one lease and one claim key in one revision", () => {
    const h = new Harness();
    const rev = h.m.currentRevision();
    const a = acquired(h.run(acquire("pool", "a", 1n, 2)).result);
    expect(a).toMatchObject({
      outcome: "granted",
      position: 0,
      holders: 1,
      permits: 2,
      ttlSeconds: 10,
      header: { revision: rev + 1 },
    });
    const bb = acquired(h.run(acquire("pool", "b", 2n, 2)).result);
    expect(bb).toMatchObject({ outcome: "granted", position: 1, holders: 2 });
    expect(h.keys()).toEqual([
      "leasehold/semaphores/pool\u00000000000000000001=2 a",
      "leasehold/semaphores/pool\u00000000000000000002=2 b",
    ]);
    expect(h.m.leaseTimeToLive(leaseId(2n), { keys: true })?.keys.map(str)).toEqual([
      "leasehold/semaphores/pool\u00000000000000000002",
    ]);
    expect(h.holders("pool")).toEqual(["a", "b"]);
    expect(h.m.semaphoreClaims("pool").map((c) => c.token)).toEqual([rev + 1, rev + 2]);
  });

  it("refuses a full semaphore without waiting, with the holders count, and changes nothing", () => {
    const h = new Harness();
    h.run(acquire("pool", "a", 1n, 2));
    h.run(acquire("pool", "b", 2n, 2));
    const rev = h.m.currentRevision();
    const r = acquired(h.run(acquire("pool", "c", 3n, 2)).result);
    expect(r).toMatchObject({ outcome: "full", holders: 2, permits: 2, position: 2 });
    expect(h.m.currentRevision()).toBe(rev);
    expect(h.m.lease(leaseId(3n))).toBeUndefined();
  });

  it("queues waiters FIFO; a release promotes the oldest waiter, and only the holder may release", () => {
    const h = new Harness();
    h.run(acquire("pool", "a", 1n, 2));
    h.run(acquire("pool", "b", 2n, 2));
    const c = acquired(h.run(acquire("pool", "c", 3n, 2, true)).result);
    const d = acquired(h.run(acquire("pool", "d", 4n, 2, true)).result);
    expect([c.outcome, c.position, c.holders]).toEqual(["granted", 2, 2]);
    expect([d.outcome, d.position]).toEqual(["granted", 3]);
    expect(h.waiters("pool")).toEqual(["c", "d"]);
    const rev = h.m.currentRevision();
    expect(h.run(release("pool", 2n, "mallory")).result).toMatchObject({
      kind: "failed",
      error: "notHolder",
    });
    expect(h.run(release("other", 2n, "b")).result).toMatchObject({ kind: "failed", error: "leaseNotFound" });
    expect(h.m.currentRevision()).toBe(rev);
    expect(h.run(release("pool", 2n, "b")).result).toMatchObject({
      kind: "semaphoreRelease",
      deleted: 1,
      header: { revision: rev + 1 },
    });
    expect(h.m.lease(leaseId(2n))).toBeUndefined();
    expect(h.holders("pool")).toEqual(["a", "c"]);
    expect(h.waiters("pool")).toEqual(["d"]);
    // A waiter that gives up (its lease revoked) leaves the order of the others alone.
    h.run({ type: "leaseRevoke", id: leaseId(4n) });
    h.run(release("pool", 1n, "a"));
    expect(h.holders("pool")).toEqual(["c"]);
  });

  it("an expired holder's place goes to the oldest waiter", () => {
    const h = new Harness();
    h.run(acquire("s", "a", 1n, 1));
    h.run(acquire("s", "b", 2n, 1, true));
    h.run(acquire("s", "c", 3n, 1, true));
    h.expire(1n);
    expect(h.holders("s")).toEqual(["b"]);
    expect(h.waiters("s")).toEqual(["c"]);
  });

  it("the first claim fixes the permits; other permits are refused until the last claim is gone", () => {
    const h = new Harness();
    h.run(acquire("s", "a", 1n, 3));
    const rev = h.m.currentRevision();
    for (const wait of [false, true]) {
      const r = acquired(h.run(acquire("s", "b", 2n, 5, wait)).result);
      expect(r).toMatchObject({ outcome: "permitsMismatch", permits: 3, holders: 1, position: 1 });
    }
    expect(h.m.currentRevision()).toBe(rev);
    h.run(release("s", 1n, "a"));
    const fresh = acquired(h.run(acquire("s", "b", 2n, 5)).result);
    expect([fresh.outcome, fresh.permits]).toEqual(["granted", 5]);
  });

  it("ignores keys under a semaphore's prefix that are not claims", () => {
    const h = new Harness();
    h.run({ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 10 });
    const junk: [string, string, bigint][] = [
      ["leasehold/semaphores/s\u0000junk", "1 x", 0n],
      ["leasehold/semaphores/s\u00000000000000000007", "no permits", 7n],
      ["leasehold/semaphores/s\u00000000000000000007", "0 x", 7n],
      ["leasehold/semaphores/s\u00000000000000000008", "1 x", 7n],
    ];
    for (const [key, value, lease] of junk) {
      h.run({
        type: "put",
        request: { key: b(key), value: b(value), ...(lease === 0n ? {} : { lease: leaseId(lease) }) },
      });
      expect(h.m.semaphoreClaims("s")).toEqual([]);
    }
    expect(acquired(h.run(acquire("s", "alice", 5n, 1)).result).position).toBe(0);
    expect(h.holders("s")).toEqual(["alice"]);
  });

  it("a retried acquire with the same session applies once", () => {
    const h = new Harness();
    const s: ClientSession = { clientId: "w", seq: 1 };
    const first = acquired(h.run(acquire("s", "a", 0n, 2, false, s)).result);
    const retry = h.run(acquire("s", "a", 0n, 2, false, s));
    expect(retry.replayed).toBe(true);
    expect(acquired(retry.result).id).toBe(first.id);
    expect(h.m.semaphoreClaims("s")).toHaveLength(1);
  });

  it("fails like a lease grant for a lease id in use, and is refused under CORRUPT", () => {
    const h = new Harness();
    h.run({ type: "leaseGrant", id: leaseId(9n), ttlSeconds: 10 });
    expect(h.run(acquire("s", "a", 9n, 1)).result).toMatchObject({ kind: "failed", error: "leaseExists" });
    h.run({ type: "alarm", action: "activate", member: 1n, alarm: "corrupt" });
    expect(h.run(acquire("s", "a", 1n, 1)).result).toMatchObject({ kind: "failed", error: "corrupt" });
    expect(h.m.semaphoreClaims("s")).toEqual([]);
  });
});

describe("the rules against a model", () => {
  it("never more than N holders; the holders are always the N oldest live claims", () => {
    type Op =
      | { op: "acquire"; holder: number; wait: boolean; permits: number }
      | { op: "release"; claim: number }
      | { op: "expire"; claim: number }
      | { op: "revoke"; claim: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          op: fc.constant("acquire" as const),
          holder: fc.nat(4),
          wait: fc.boolean(),
          permits: fc.constantFrom(2, 2, 2, 3),
        }),
      },
      fc.record({ op: fc.constant("release" as const), claim: fc.nat(30) }),
      fc.record({ op: fc.constant("expire" as const), claim: fc.nat(30) }),
      fc.record({ op: fc.constant("revoke" as const), claim: fc.nat(30) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
        const h = new Harness();
        let nextId = 1n;
        // The model: live claims, oldest first, and the permits of the oldest.
        const live: { id: LeaseId; holder: string; permits: number }[] = [];
        const held = new Set<bigint>();
        for (const o of ops) {
          if (o.op === "acquire") {
            const id = nextId++;
            const r = acquired(h.run(acquire("s", `h${o.holder}`, id, o.permits, o.wait)).result);
            const permits = live[0]?.permits ?? o.permits;
            const expected =
              permits !== o.permits
                ? "permitsMismatch"
                : live.length >= permits && !o.wait
                  ? "full"
                  : "granted";
            expect(r.outcome).toBe(expected);
            if (r.outcome === "granted") {
              expect(r.position).toBe(live.length);
              live.push({ id: leaseId(id), holder: `h${o.holder}`, permits: o.permits });
            }
          } else if (live.length > 0) {
            const c = live.splice(o.claim % live.length, 1)[0]!;
            if (o.op === "release") h.run(release("s", c.id, c.holder));
            else if (o.op === "revoke") h.run({ type: "leaseRevoke", id: c.id });
            else h.expire(c.id);
          }
          const view = semaphoreView(h.m.semaphoreClaims("s"));
          const n = live[0]?.permits ?? 0;
          expect(view.permits).toBe(n);
          expect(view.holders.length).toBeLessThanOrEqual(n);
          expect(view.holders.map((c) => c.lease)).toEqual(live.slice(0, n).map((c) => c.id));
          expect(view.waiters.map((c) => c.lease)).toEqual(live.slice(n).map((c) => c.id));
          // A holder holds until its own claim ends: no live claim that held ever waits again.
          for (const c of view.holders) held.add(c.lease);
          for (const c of view.waiters) expect(held.has(c.lease)).toBe(false);
        }
      }),
    );
  });
});

describe("layout and codec", () => {
  it("a claim key round-trips through semaphoreClaimOf", () => {
    const key = semaphoreKey("db/pool", leaseId(0xabcn));
    expect(str(key)).toBe("leasehold/semaphores/db/pool\u00000000000000000abc");
    const kv = {
      key,
      createRevision: revision(4),
      modRevision: revision(4),
      version: 1,
      value: b("3 me too"),
      lease: leaseId(0xabcn),
    };
    expect(semaphoreClaimOf(kv)).toEqual({
      semaphore: "db/pool",
      holder: "me too",
      lease: leaseId(0xabcn),
      permits: 3,
      token: 4,
    });
    for (const value of ["03 me", "3", "3 ", " 3 me", `${SEMAPHORE_PERMITS_MAX + 1} me`, "x me"])
      expect(semaphoreClaimOf({ ...kv, value: b(value) })).toBeUndefined();
    expect(semaphoreClaimOf({ ...kv, lease: leaseId(1n) })).toBeUndefined();
  });

  it("the commands round-trip through the codec; bad names and permits do not decode", () => {
    for (const cmd of [acquire("s", "a", 3n, 4, true, { clientId: "c", seq: 2 }), release("s", 3n, "a")])
      expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
    const base = {
      v: 1,
      type: "semaphoreAcquire",
      semaphore: "s",
      holder: "a",
      id: "1",
      ttlSeconds: 5,
      wait: false,
    };
    for (const bad of [
      { ...base, permits: 0 },
      { ...base, permits: SEMAPHORE_PERMITS_MAX + 1 },
      { ...base, permits: 1.5 },
      { ...base, permits: 1, semaphore: "" },
      { ...base, permits: 1, holder: "" },
    ]) {
      expect(tryDecodeCommand(b(JSON.stringify(bad))).ok).toBe(false);
    }
  });

  it("a snapshot keeps the claims", () => {
    const h = new Harness();
    h.run(acquire("s", "a", 1n, 1));
    h.run(acquire("s", "b", 2n, 1, true));
    const copy = StateMachine.restore(h.m.snapshot());
    expect(copy.semaphoreClaims("s")).toEqual(h.m.semaphoreClaims("s"));
  });
});
