/**
 * Unit tests of the replicated lease table (src/state/lease.ts): grant rules as
 * etcd has them, deterministic id choice, revoke, key attachment and its cost,
 * checkpoints, incarnations, snapshot round trip.
 */

import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/raft/assert.ts";
import {
  DEFAULT_MIN_LEASE_TTL_SECONDS,
  describeLease,
  LeaseTable,
  MAX_LEASE_ID,
  MAX_LEASE_TTL_SECONDS,
} from "../../src/state/lease.ts";
import type { LeaseId } from "../../src/state/types.ts";
import { leaseId, NO_LEASE } from "../../src/state/types.ts";

const enc = new TextEncoder();
const key = (s: string): Uint8Array => enc.encode(s);
const L = (n: number): LeaseId => leaseId(BigInt(n));
const text = (keys: readonly Uint8Array[] | undefined): string[] | undefined =>
  keys?.map((k) => new TextDecoder().decode(k));

/** A table with leases 1..n granted at indexes 1..n. */
function tableWith(n: number, ttlSeconds = 10): LeaseTable {
  const t = new LeaseTable();
  for (let i = 1; i <= n; i++) expect(t.grant(L(i), ttlSeconds, { index: i }).ok).toBe(true);
  return t;
}

describe("grant", () => {
  it("grants with the given id and TTL; the lease starts un-checkpointed", () => {
    const t = new LeaseTable();
    expect(t.grant(L(7), 30, { index: 4 })).toEqual({ ok: true, id: L(7), ttlSeconds: 30 });
    expect(t.get(L(7))).toEqual({ id: L(7), ttlSeconds: 30, remainingTtlSeconds: 30, grantIndex: 4 });
    expect(t.has(L(7))).toBe(true);
    expect(t.size).toBe(1);
    expect(t.get(L(8))).toBeUndefined();
  });

  it("refuses a duplicate id and leaves the lease as it was", () => {
    const t = new LeaseTable();
    t.grant(L(7), 30, { index: 1 });
    expect(t.grant(L(7), 60, { index: 2 })).toEqual({ ok: false, reason: "exists" });
    expect(t.get(L(7))).toEqual({ id: L(7), ttlSeconds: 30, remainingTtlSeconds: 30, grantIndex: 1 });
  });

  it("raises a TTL below the minimum (zero and negative too) to the minimum, as etcd does", () => {
    const t = new LeaseTable();
    expect(DEFAULT_MIN_LEASE_TTL_SECONDS).toBe(2);
    expect(t.grant(L(1), 1, { index: 1 })).toEqual({ ok: true, id: L(1), ttlSeconds: 2 });
    expect(t.grant(L(2), 0, { index: 2 })).toEqual({ ok: true, id: L(2), ttlSeconds: 2 });
    expect(t.grant(L(3), -5, { index: 3 })).toEqual({ ok: true, id: L(3), ttlSeconds: 2 });
    expect(t.grant(L(4), 2, { index: 4 })).toEqual({ ok: true, id: L(4), ttlSeconds: 2 });
    const strict = new LeaseTable({ minTtlSeconds: 5 });
    expect(strict.grant(L(1), 3, { index: 1 })).toEqual({ ok: true, id: L(1), ttlSeconds: 5 });
    expect(strict.get(L(1))?.remainingTtlSeconds).toBe(5);
  });

  it("refuses a TTL above 9,000,000,000 s, checked before existence (etcd's order)", () => {
    const t = new LeaseTable();
    expect(t.grant(L(1), MAX_LEASE_TTL_SECONDS, { index: 1 })).toEqual({
      ok: true,
      id: L(1),
      ttlSeconds: MAX_LEASE_TTL_SECONDS,
    });
    expect(t.grant(L(2), MAX_LEASE_TTL_SECONDS + 1, { index: 2 })).toEqual({
      ok: false,
      reason: "ttlTooLarge",
    });
    expect(t.grant(L(1), MAX_LEASE_TTL_SECONDS + 1, { index: 3 })).toEqual({
      ok: false,
      reason: "ttlTooLarge",
    });
    expect(t.has(L(2))).toBe(false);
  });

  it("rejects ids outside the positive int64 range and non-integer TTLs as bugs", () => {
    const t = new LeaseTable();
    expect(() => t.grant(leaseId(-1n), 10, { index: 1 })).toThrow(AssertionError);
    expect(() => t.grant(leaseId(MAX_LEASE_ID + 1n), 10, { index: 1 })).toThrow(AssertionError);
    expect(() => t.grant(L(1), 1.5, { index: 1 })).toThrow(AssertionError);
    expect(t.grant(leaseId(MAX_LEASE_ID), 10, { index: 1 }).ok).toBe(true);
  });
});

describe("grant with id 0 (the table chooses)", () => {
  const pick = (t: LeaseTable, index: number): LeaseId => {
    const r = t.grant(NO_LEASE, 10, { index });
    if (!r.ok) throw new Error(`grant failed: ${r.reason}`);
    return r.id;
  };

  it("chooses a positive int64", () => {
    const t = new LeaseTable();
    for (let i = 0; i < 200; i++) {
      const id = pick(t, i);
      expect(id > 0n && id <= MAX_LEASE_ID).toBe(true);
    }
    expect(t.size).toBe(200);
  });

  it("chooses the same ids on two tables fed the same commands", () => {
    const a = new LeaseTable();
    const b = new LeaseTable();
    const commands: Array<[LeaseId, number]> = [
      [NO_LEASE, 5],
      [L(42), 6],
      [NO_LEASE, 7],
      [NO_LEASE, 7], // two grants in one entry: the second re-mixes
      [NO_LEASE, 1_000_000],
    ];
    const ra = commands.map(([id, index]) => a.grant(id, 10, { index }));
    const rb = commands.map(([id, index]) => b.grant(id, 10, { index }));
    expect(ra).toEqual(rb);
    expect(a.snapshot()).toEqual(b.snapshot());
    const chosen = ra.flatMap((r) => (r.ok ? [r.id] : []));
    expect(new Set(chosen).size).toBe(5);
  });

  it("depends on the index only, and skips an id already in use", () => {
    const fresh = new LeaseTable();
    const first = pick(fresh, 9);
    expect(pick(new LeaseTable(), 9)).toBe(first);
    expect(pick(new LeaseTable(), 10)).not.toBe(first);
    // The id index 9 would pick is taken by an explicit grant: the table re-mixes, deterministically.
    const taken1 = new LeaseTable();
    const taken2 = new LeaseTable();
    taken1.grant(first, 10, { index: 1 });
    taken2.grant(first, 10, { index: 1 });
    const second = pick(taken1, 9);
    expect(second).not.toBe(first);
    expect(pick(taken2, 9)).toBe(second);
  });
});

describe("revoke", () => {
  it("returns exactly the attached keys, sorted bytewise, and removes lease and attachments", () => {
    const t = tableWith(2);
    const keys = [
      key("b"),
      key("a/2"),
      new Uint8Array([0xff]),
      key("a"),
      new Uint8Array([0x80, 0x00]),
      key("a/10"),
      new Uint8Array([]),
    ];
    for (const k of keys) t.attach(k, L(1));
    t.attach(key("other"), L(2));
    const r = t.revoke(L(1));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.keys.map((k) => [...k])).toEqual([
      [],
      [0x61],
      [0x61, 0x2f, 0x31, 0x30],
      [0x61, 0x2f, 0x32],
      [0x62],
      [0x80, 0x00],
      [0xff],
    ]);
    expect(t.has(L(1))).toBe(false);
    for (const k of keys) expect(t.leaseOf(k)).toBe(NO_LEASE);
    expect(t.leaseOf(key("other"))).toBe(L(2));
    expect(t.keysOf(L(1))).toBeUndefined();
  });

  it("answers notFound for an unknown or already revoked lease", () => {
    const t = tableWith(1);
    expect(t.revoke(L(2))).toEqual({ ok: false, reason: "notFound" });
    expect(t.revoke(L(1))).toEqual({ ok: true, keys: [] });
    expect(t.revoke(L(1))).toEqual({ ok: false, reason: "notFound" });
  });

  it("an expiry revoke names its incarnation and spares a re-grant of the same id", () => {
    const t = new LeaseTable();
    t.grant(L(5), 10, { index: 3 });
    expect(t.revoke(L(5), { grantIndex: 3 }).ok).toBe(true);
    t.grant(L(5), 10, { index: 8 }); // a client re-grants the id
    t.attach(key("k"), L(5));
    expect(t.revoke(L(5), { grantIndex: 3 })).toEqual({ ok: false, reason: "notFound" });
    expect(t.leaseOf(key("k"))).toBe(L(5));
    expect(t.revoke(L(5), { grantIndex: 8 }).ok).toBe(true);
  });
});

describe("key attachment", () => {
  it("attaches, moves a key between leases, and detaches", () => {
    const t = tableWith(2);
    expect(t.attach(key("k"), L(1))).toBe(NO_LEASE);
    expect(t.leaseOf(key("k"))).toBe(L(1));
    expect(t.attach(key("k"), L(1))).toBe(L(1)); // no-op
    expect(t.attach(key("k"), L(2))).toBe(L(1)); // moved
    expect(t.leaseOf(key("k"))).toBe(L(2));
    expect(text(t.keysOf(L(1)))).toEqual([]);
    expect(text(t.keysOf(L(2)))).toEqual(["k"]);
    expect(t.keyCount(L(2))).toBe(1);
    expect(t.detach(key("k"))).toBe(L(2));
    expect(t.detach(key("k"))).toBe(NO_LEASE);
    expect(t.leaseOf(key("k"))).toBe(NO_LEASE);
    expect(text(t.keysOf(L(2)))).toEqual([]);
    expect(t.keysOf(L(3))).toBeUndefined();
  });

  it("does not alias the caller's key bytes", () => {
    const t = tableWith(1);
    const k = key("abc");
    t.attach(k, L(1));
    k[0] = 0x7a;
    expect(text(t.keysOf(L(1)))).toEqual(["abc"]);
  });

  it("handles keys longer than one encoding chunk", () => {
    const t = tableWith(1);
    const big = new Uint8Array(20_000).map((_, i) => i % 251);
    t.attach(big, L(1));
    expect(t.leaseOf(big)).toBe(L(1));
    expect(t.keysOf(L(1))).toEqual([big]);
  });

  it("attaching to a lease that does not exist is a bug", () => {
    const t = tableWith(1);
    expect(() => t.attach(key("k"), L(9))).toThrow(AssertionError);
    expect(() => t.attach(key("k"), NO_LEASE)).toThrow(AssertionError);
  });

  it("applies the MVCC store's lease changes: put with lease, move, delete", () => {
    const t = tableWith(2);
    t.applyLeaseChanges([
      { key: key("a"), from: NO_LEASE, to: L(1) },
      { key: key("b"), from: NO_LEASE, to: L(1) },
    ]);
    t.applyLeaseChanges([{ key: key("a"), from: L(1), to: L(2) }]);
    t.applyLeaseChanges([{ key: key("b"), from: L(1), to: NO_LEASE }]);
    expect(t.leaseOf(key("a"))).toBe(L(2));
    expect(t.leaseOf(key("b"))).toBe(NO_LEASE);
    expect(text(t.keysOf(L(1)))).toEqual([]);
  });

  it("accepts the store's deletes of a lease's keys right after the lease's revoke", () => {
    const t = tableWith(1);
    t.attach(key("a"), L(1));
    const r = t.revoke(L(1));
    expect(r.ok).toBe(true);
    t.applyLeaseChanges([{ key: key("a"), from: L(1), to: NO_LEASE }]);
    expect(t.leaseOf(key("a"))).toBe(NO_LEASE);
  });

  it("a change whose `from` is not the key's lease is a bug", () => {
    const t = tableWith(2);
    t.attach(key("a"), L(1));
    expect(() => t.applyLeaseChanges([{ key: key("a"), from: L(2), to: NO_LEASE }])).toThrow(AssertionError);
    expect(() => t.applyLeaseChanges([{ key: key("z"), from: L(1), to: L(2) }])).toThrow(AssertionError);
  });
});

/**
 * Counts calls to Map and Set methods while `fn` runs: lookups and updates
 * separately from anything that iterates. Patches the prototypes for the
 * duration of one synchronous call only.
 */
function countCollectionCalls(fn: () => void): { lookups: number; iterations: number } {
  const counts = { lookups: 0, iterations: 0 };
  const lookups = ["get", "set", "has", "delete", "add", "clear"];
  const iterations: (string | symbol)[] = ["forEach", "keys", "values", "entries", Symbol.iterator];
  const restore: Array<() => void> = [];
  for (const proto of [Map.prototype, Set.prototype] as unknown as Record<string | symbol, unknown>[]) {
    for (const name of [...lookups, ...iterations]) {
      const original = proto[name];
      if (typeof original !== "function") continue;
      const counter = lookups.includes(name as string) ? "lookups" : "iterations";
      proto[name] = function (this: unknown, ...args: unknown[]) {
        counts[counter]++;
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      };
      restore.push(() => {
        proto[name] = original;
      });
    }
  }
  try {
    fn();
  } finally {
    for (const r of restore) r();
  }
  return counts;
}

describe("attach cost does not grow with the keys already on the lease", () => {
  it("the 100,001st key costs the same Map/Set calls as the first, and none iterate", () => {
    const t = tableWith(3);
    for (let i = 0; i < 100_000; i++) t.attach(key(`k${i}`), L(1));
    expect(t.keyCount(L(1))).toBe(100_000);

    t.attach(key("two-a"), L(2));
    t.attach(key("two-b"), L(2));
    const first = countCollectionCalls(() => t.attach(key("fresh-a"), L(2))); // lease 2 had two keys
    const later = countCollectionCalls(() => t.attach(key("fresh-b"), L(1))); // lease 1 had 100,000
    expect(later).toEqual(first);
    expect(later.iterations).toBe(0);
    expect(later.lookups).toBeLessThanOrEqual(6);

    // Moving a key off the big lease and back costs the same as moving between small ones.
    t.attach(key("three-a"), L(3));
    t.attach(key("three-b"), L(3));
    const moveSmall = countCollectionCalls(() => t.attach(key("two-a"), L(3)));
    const moveOffBig = countCollectionCalls(() => t.attach(key("k5"), L(3)));
    const moveOntoBig = countCollectionCalls(() => t.attach(key("k5"), L(1)));
    expect(moveOffBig).toEqual(moveSmall);
    expect(moveOntoBig).toEqual(moveSmall);
    expect(moveSmall.iterations).toBe(0);

    const detachBig = countCollectionCalls(() => t.detach(key("k7")));
    const detachSmall = countCollectionCalls(() => t.detach(key("three-a")));
    expect(detachBig).toEqual(detachSmall);
    expect(detachBig.iterations).toBe(0);
    expect(t.keyCount(L(1))).toBe(100_000);
  });

  it("the counter does see iteration (so a zero above means something)", () => {
    const t = tableWith(1);
    t.attach(key("a"), L(1));
    t.attach(key("b"), L(1));
    expect(countCollectionCalls(() => t.keysOf(L(1))).iterations).toBeGreaterThan(0);
  });

  it("a lease with no key or one key allocates no Set; the second key brings one, and losing it goes back", () => {
    const t = tableWith(2);
    expect(countCollectionCalls(() => t.attach(key("a"), L(1)))).toEqual({ lookups: 3, iterations: 0 }); // keyLease only
    expect(countCollectionCalls(() => t.keysOf(L(1))).iterations).toBe(0);
    t.attach(key("b"), L(1));
    expect(countCollectionCalls(() => t.keysOf(L(1))).iterations).toBeGreaterThan(0);
    // Moving "a" to lease 2 leaves lease 1 one key: inline again, read without iterating.
    t.attach(key("a"), L(2));
    expect(countCollectionCalls(() => t.keysOf(L(1))).iterations).toBe(0);
    expect(t.keysOf(L(1))).toEqual([key("b")]);
    expect(t.keysOf(L(2))).toEqual([key("a")]);
    expect(t.keyCount(L(1))).toBe(1);
    t.detach(key("b"));
    expect(t.keysOf(L(1))).toEqual([]);
    expect(t.keyCount(L(1))).toBe(0);
    // Every shape survives a snapshot: none, one inline, several in a Set.
    t.attach(key("c"), L(2));
    t.attach(key("d"), L(2));
    const back = LeaseTable.restore(t.snapshot());
    expect(back.snapshot()).toEqual(t.snapshot());
    expect(back.keysOf(L(2))).toEqual([key("a"), key("c"), key("d")]);
    expect(back.revoke(L(2))).toEqual({ ok: true, keys: [key("a"), key("c"), key("d")] });
    expect(back.revoke(L(1))).toEqual({ ok: true, keys: [] });
    expect(back.leaseOf(key("c"))).toBe(NO_LEASE);
  });
});

describe("checkpoint", () => {
  it("records the remaining TTL; get reports it, the granted TTL is unchanged", () => {
    const t = tableWith(1, 60);
    expect(t.checkpoint(L(1), 42, { grantIndex: 1 })).toEqual({ ok: true });
    expect(t.get(L(1))).toEqual({ id: L(1), ttlSeconds: 60, remainingTtlSeconds: 42, grantIndex: 1 });
    expect(t.checkpoint(L(1), 60, { grantIndex: 1 })).toEqual({ ok: true }); // a reset
    expect(t.get(L(1))?.remainingTtlSeconds).toBe(60);
  });

  it("ignores an unknown lease and an earlier incarnation of the id", () => {
    const t = tableWith(1, 60);
    expect(t.checkpoint(L(2), 5, { grantIndex: 1 })).toEqual({ ok: false, reason: "notFound" });
    t.revoke(L(1));
    t.grant(L(1), 60, { index: 9 });
    expect(t.checkpoint(L(1), 5, { grantIndex: 1 })).toEqual({ ok: false, reason: "notFound" });
    expect(t.get(L(1))?.remainingTtlSeconds).toBe(60);
  });

  it("a remaining TTL above the granted one is a bug", () => {
    const t = tableWith(1, 60);
    expect(() => t.checkpoint(L(1), 61, { grantIndex: 1 })).toThrow(AssertionError);
    expect(() => t.checkpoint(L(1), -1, { grantIndex: 1 })).toThrow(AssertionError);
  });
});

describe("listing", () => {
  it("ids() is ascending, as int64s", () => {
    const t = new LeaseTable();
    for (const [i, id] of [5n, 1n << 62n, 3n, 1n << 40n, MAX_LEASE_ID].entries()) {
      t.grant(leaseId(id), 10, { index: i });
    }
    expect(t.ids()).toEqual([3n, 5n, 1n << 40n, 1n << 62n, MAX_LEASE_ID]);
  });

  it("timeToLive gives the granted TTL and, when asked, the keys", () => {
    const t = tableWith(1, 30);
    t.attach(key("y"), L(1));
    t.attach(key("x"), L(1));
    t.checkpoint(L(1), 12, { grantIndex: 1 });
    expect(t.timeToLive(L(1), { keys: false })).toEqual({ id: L(1), grantedTtlSeconds: 30, keys: [] });
    expect(text(t.timeToLive(L(1), { keys: true })?.keys)).toEqual(["x", "y"]);
    expect(t.timeToLive(L(2), { keys: true })).toBeUndefined();
  });

  it("describeLease is one deterministic line", () => {
    const t = tableWith(1, 30);
    t.attach(key("x"), L(1));
    expect(describeLease(t.get(L(1))!, t.keyCount(L(1)))).toBe("lease 1@1 ttl=30s remaining=30s keys=1");
  });
});

describe("snapshot", () => {
  it("is plain JSON and restores to an indistinguishable table", () => {
    const t = new LeaseTable({ minTtlSeconds: 3 });
    t.grant(L(9), 100, { index: 1 });
    t.grant(NO_LEASE, 1, { index: 2 });
    t.grant(leaseId(MAX_LEASE_ID), 50, { index: 3 });
    t.attach(key("b"), L(9));
    t.attach(new Uint8Array([0, 255, 16]), L(9));
    t.attach(key("c"), leaseId(MAX_LEASE_ID));
    t.checkpoint(L(9), 77, { grantIndex: 1 });

    const json = JSON.stringify(t.snapshot());
    const back = LeaseTable.restore(JSON.parse(json), { minTtlSeconds: 3 });
    expect(back.snapshot()).toEqual(t.snapshot());
    expect(back.ids()).toEqual(t.ids());
    for (const id of t.ids()) {
      expect(back.get(id)).toEqual(t.get(id));
      expect(back.keysOf(id)).toEqual(t.keysOf(id));
    }
    expect(back.leaseOf(new Uint8Array([0, 255, 16]))).toBe(L(9));
    // The same command on both gives the same outcome afterwards.
    expect(back.grant(NO_LEASE, 1, { index: 2 })).toEqual(t.grant(NO_LEASE, 1, { index: 2 }));
    expect(back.revoke(L(9))).toEqual(t.revoke(L(9)));
  });

  it("a malformed snapshot is refused", () => {
    const good = tableWith(2).snapshot();
    const swapped = { ...good, leases: [good.leases[1]!, good.leases[0]!] };
    expect(() => LeaseTable.restore(swapped)).toThrow(/out of order/);
    const badKey = { ...good, leases: [{ ...good.leases[0]!, keys: ["zz"] }] };
    expect(() => LeaseTable.restore(badKey)).toThrow(/not base64/);
    const twice = { ...good, leases: good.leases.map((l) => ({ ...l, keys: ["YQ=="] })) };
    expect(() => LeaseTable.restore(twice)).toThrow(/on two leases/);
  });
});
