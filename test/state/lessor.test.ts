/**
 * Unit tests of the leader's lessor (src/state/lessor.ts), with explicit
 * `nowMs` values: keepalive, expiry batches, leader hand-over (K3), spreading,
 * checkpoints (K1, K2), incarnations, step-down.
 */

import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/raft/assert.ts";
import { LeaseTable } from "../../src/state/lease.ts";
import type { LeaseCheckpoint, LessorOptions } from "../../src/state/lessor.ts";
import { Lessor, MAX_LEASES_PER_REVOKE_BATCH, TimeQueue } from "../../src/state/lessor.ts";
import type { LeaseId } from "../../src/state/types.ts";
import { leaseId } from "../../src/state/types.ts";

const L = (n: number): LeaseId => leaseId(BigInt(n));
const ids = (refs: readonly { readonly id: LeaseId }[]): LeaseId[] => refs.map((r) => r.id);

const OPTS: LessorOptions = { electionTimeoutMs: 1_000, checkpointIntervalMs: 10_000, revokeRetryMs: 3_000 };

/** A table and a leader lessor; `grant` goes through both as the apply path would. */
function setup(options: LessorOptions = OPTS, startMs = 0) {
  const table = new LeaseTable();
  const lessor = new Lessor(options);
  lessor.becomeLeader(startMs, table);
  let index = 0;
  const grant = (id: number, ttlSeconds: number, nowMs: number): LeaseId => {
    const r = table.grant(L(id), ttlSeconds, { index: ++index });
    if (!r.ok) throw new Error(r.reason);
    lessor.onGrant(table.get(r.id)!, nowMs);
    return r.id;
  };
  /** Applies checkpoints as the apply path would: table first, then the lessor. */
  const apply = (cps: readonly LeaseCheckpoint[], nowMs: number): void => {
    for (const cp of cps) {
      table.checkpoint(cp.id, cp.remainingTtlSeconds, cp);
      lessor.onCheckpointApplied(cp, nowMs);
    }
  };
  return { table, lessor, grant, apply };
}

describe("keepalive", () => {
  it("a grant runs until now + TTL; a keepalive resets the deadline to now + TTL", () => {
    const { lessor, grant } = setup();
    grant(1, 10, 1_000);
    expect(lessor.deadlineMs(L(1))).toBe(11_000);
    expect(lessor.keepAlive(L(1), 4_000)).toEqual({ kind: "renewed", ttlSeconds: 10 });
    expect(lessor.deadlineMs(L(1))).toBe(14_000);
    expect(lessor.remainingMs(L(1), 5_500)).toEqual({ kind: "ok", remainingMs: 8_500 });
    expect(lessor.due(13_999)).toEqual([]);
    expect(ids(lessor.due(14_000))).toEqual([L(1)]);
  });

  it("an unknown lease answers notFound (TTL 0 on the wire)", () => {
    const { lessor } = setup();
    expect(lessor.keepAlive(L(9), 0)).toEqual({ kind: "notFound" });
    expect(lessor.remainingMs(L(9), 0)).toEqual({ kind: "notFound" });
  });

  it("a revoked lease answers notFound; an expired one answers expired and is not renewed", () => {
    const { lessor, grant } = setup();
    grant(1, 5, 0);
    grant(2, 5, 0);
    lessor.onRevoke(L(1));
    expect(lessor.keepAlive(L(1), 1_000)).toEqual({ kind: "notFound" });
    expect(lessor.keepAlive(L(2), 5_000)).toEqual({ kind: "expired" }); // at the deadline: too late
    expect(lessor.deadlineMs(L(2))).toBe(5_000);
    expect(ids(lessor.due(5_000))).toEqual([L(2)]);
    expect(lessor.keepAlive(L(2), 5_001)).toEqual({ kind: "expired" });
    expect(lessor.remainingMs(L(2), 5_001)).toEqual({ kind: "ok", remainingMs: 0 });
  });

  it("never moves a deadline earlier", () => {
    const table = new LeaseTable();
    table.grant(L(1), 10, { index: 1 });
    const lessor = new Lessor(OPTS);
    lessor.becomeLeader(0, table);
    expect(lessor.deadlineMs(L(1))).toBe(11_000); // now + TTL + Δ
    expect(lessor.keepAlive(L(1), 500)).toEqual({ kind: "renewed", ttlSeconds: 10 });
    expect(lessor.deadlineMs(L(1))).toBe(11_000);
    lessor.keepAlive(L(1), 2_000);
    expect(lessor.deadlineMs(L(1))).toBe(12_000);
  });
});

describe("due", () => {
  it("returns the leases whose deadline passed, earliest first, ties by id, in batches", () => {
    const { lessor, grant } = setup();
    grant(5, 3, 0); // 3000
    grant(2, 4, 0); // 4000
    grant(9, 2, 1_000); // 3000
    grant(1, 2, 1_000); // 3000
    grant(7, 10, 0); // 10000
    expect(lessor.due(2_999)).toEqual([]);
    expect(ids(lessor.due(5_000, 2))).toEqual([L(1), L(5)]);
    expect(ids(lessor.due(5_000, 2))).toEqual([L(9), L(2)]);
    expect(lessor.due(5_000, 2)).toEqual([]); // none twice
    expect(lessor.due(5_000)).toEqual([]);
  });

  it("names the incarnation in each revoke", () => {
    const { lessor, grant } = setup();
    grant(4, 2, 0);
    expect(lessor.due(2_000)).toEqual([{ id: L(4), grantIndex: 1 }]);
  });

  it("returns a lease again only if its revoke was not applied within the retry time", () => {
    const { lessor, grant } = setup();
    grant(1, 2, 0);
    grant(2, 2, 0);
    expect(ids(lessor.due(2_000))).toEqual([L(1), L(2)]);
    lessor.onRevoke(L(1));
    expect(lessor.due(4_999)).toEqual([]);
    expect(ids(lessor.due(5_000))).toEqual([L(2)]);
    expect(lessor.due(5_000)).toEqual([]);
    lessor.onRevoke(L(2));
    expect(lessor.due(100_000)).toEqual([]);
    expect(lessor.size).toBe(0);
  });

  it("20,000 leases falling due at once all come out within 3 calls at the same time", () => {
    const { lessor, grant } = setup();
    const n = 20_000;
    for (let i = 1; i <= n; i++) grant(i, 30, 0);
    const batches: LeaseId[][] = [];
    for (let call = 0; call < 3; call++) batches.push(ids(lessor.due(30_000)));
    expect(batches.map((b) => b.length)).toEqual([
      MAX_LEASES_PER_REVOKE_BATCH,
      n - MAX_LEASES_PER_REVOKE_BATCH,
      0,
    ]);
    const all = batches.flat();
    expect(all).toEqual(Array.from({ length: n }, (_, i) => L(i + 1)));
  });

  it("rejects a batch size below one", () => {
    const { lessor } = setup();
    expect(() => lessor.due(0, 0)).toThrow(AssertionError);
  });
});

describe("becomeLeader", () => {
  it("seeds un-checkpointed leases at now + TTL + Δ and checkpointed ones at now + remaining", () => {
    const table = new LeaseTable();
    table.grant(L(1), 10, { index: 1 });
    table.grant(L(2), 60, { index: 2 });
    table.checkpoint(L(2), 25, { grantIndex: 2 });
    table.grant(L(3), 60, { index: 3 });
    table.checkpoint(L(3), 60, { grantIndex: 3 }); // a reset: as if never checkpointed
    const lessor = new Lessor(OPTS);
    lessor.becomeLeader(100_000, table);
    expect(lessor.deadlineMs(L(1))).toBe(100_000 + 10_000 + 1_000);
    expect(lessor.deadlineMs(L(2))).toBe(100_000 + 25_000);
    expect(lessor.deadlineMs(L(3))).toBe(100_000 + 60_000 + 1_000);
  });

  it("never grants less than the old leader promised, even to its stale keepalive answers", () => {
    // The old leader: leases kept alive at various times, one long lease checkpointed.
    const old = setup();
    old.grant(1, 10, 0);
    old.grant(2, 60, 0);
    old.grant(3, 5, 0);
    const promises = new Map<LeaseId, number>([
      [L(1), 10_000],
      [L(2), 60_000],
      [L(3), 5_000],
    ]);
    const keepAlive = (id: LeaseId, t: number): void => {
      const r = old.lessor.keepAlive(id, t);
      if (r.kind === "renewed") promises.set(id, Math.max(promises.get(id)!, t + r.ttlSeconds * 1_000));
    };
    keepAlive(L(1), 3_000);
    keepAlive(L(3), 3_000);
    old.apply(old.lessor.checkpointsDue(10_000), 10_000); // lease 2: 50 s left
    expect(old.table.get(L(2))?.remainingTtlSeconds).toBe(50);
    keepAlive(L(2), 11_000); // must not be answered: a reduced checkpoint is in force
    expect(promises.get(L(2))).toBe(60_000);
    // Leadership is lost at 12 s; the new leader starts at 14 s; the old one answers until 15 s.
    keepAlive(L(1), 14_900);
    keepAlive(L(3), 14_999);
    const fresh = new Lessor(OPTS);
    fresh.becomeLeader(14_000, old.table);
    for (const [id, promise] of promises) {
      expect(fresh.deadlineMs(id)).toBeGreaterThanOrEqual(promise);
      expect(fresh.deadlineMs(id)).toBeGreaterThanOrEqual(old.lessor.deadlineMs(id)!);
    }
    expect(fresh.deadlineMs(L(2))).toBe(14_000 + 50_000); // bounded by the checkpoint, not a fresh minute
  });

  it("spreads a burst: at most S per second, fewer than S + 1 never moved, delay ≤ floor((n−1)/S) s", () => {
    const S = 100;
    const table = new LeaseTable();
    const n = 350;
    for (let i = 1; i <= n; i++) table.grant(L(i), 10, { index: i });
    // A few leases elsewhere, checkpointed to other remaining times.
    for (let i = n + 1; i <= n + 20; i++) {
      table.grant(L(i), 60, { index: i });
      table.checkpoint(L(i), 10 + (i % 3), { grantIndex: i });
    }
    const lessor = new Lessor({ ...OPTS, spreadLeasesPerSecond: S });
    lessor.becomeLeader(0, table);
    const seeded = (id: LeaseId): number => {
      const info = table.get(id)!;
      return info.remainingTtlSeconds < info.ttlSeconds
        ? info.remainingTtlSeconds * 1_000
        : info.ttlSeconds * 1_000 + 1_000;
    };
    const all = table.ids();
    const deadlines = all.map((id) => lessor.deadlineMs(id)!).sort((a, b) => a - b);
    for (const id of all) {
      const d = lessor.deadlineMs(id)!;
      expect(d).toBeGreaterThanOrEqual(seeded(id));
      expect(d - seeded(id)).toBeLessThanOrEqual(Math.floor((all.length - 1) / S) * 1_000);
    }
    for (let i = S; i < deadlines.length; i++)
      expect(deadlines[i]! - deadlines[i - S]!).toBeGreaterThanOrEqual(1_000);
    // Under S + 1 leases: no spreading at all.
    const small = new LeaseTable();
    for (let i = 1; i <= S; i++) small.grant(L(i), 10, { index: i });
    const smallLessor = new Lessor({ ...OPTS, spreadLeasesPerSecond: S });
    smallLessor.becomeLeader(0, small);
    for (const id of small.ids()) expect(smallLessor.deadlineMs(id)).toBe(11_000);
  });

  it("the spread leases still all come out of due() without a rate limit", () => {
    const table = new LeaseTable();
    for (let i = 1; i <= 12_000; i++) table.grant(L(i), 10, { index: i });
    const lessor = new Lessor(OPTS); // S = 5000: delays of 0, 1 and 2 s
    lessor.becomeLeader(0, table);
    expect(lessor.due(10_999)).toEqual([]);
    expect(lessor.due(11_000).length).toBe(5_000);
    expect(lessor.due(12_000).length).toBe(5_000);
    expect(lessor.due(13_000).length).toBe(2_000);
  });

  it("requires stepping down first", () => {
    const { lessor, table } = setup();
    expect(() => lessor.becomeLeader(0, table)).toThrow(AssertionError);
  });
});

describe("stepDown", () => {
  it("forgets everything; afterwards keepalive answers notLeader and nothing falls due", () => {
    const { lessor, table, grant } = setup();
    grant(1, 10, 0);
    lessor.stepDown();
    expect(lessor.isLeader).toBe(false);
    expect(lessor.size).toBe(0);
    expect(lessor.keepAlive(L(1), 1_000)).toEqual({ kind: "notLeader" });
    expect(lessor.remainingMs(L(1), 1_000)).toEqual({ kind: "notLeader" });
    expect(lessor.due(1_000_000)).toEqual([]);
    expect(lessor.checkpointsDue(1_000_000)).toEqual([]);
    lessor.onGrant({ id: L(2), ttlSeconds: 5, remainingTtlSeconds: 5, grantIndex: 9 }, 0); // ignored
    expect(lessor.size).toBe(0);
    lessor.becomeLeader(50_000, table);
    expect(lessor.deadlineMs(L(1))).toBe(61_000);
  });
});

describe("checkpoints", () => {
  it("K1: a lease with TTL > C is checkpointed each time its remaining drops C below the last one", () => {
    const { lessor, grant, apply, table } = setup();
    grant(1, 60, 0); // deadline 60 s
    grant(2, 10, 0); // TTL ≤ C: never checkpointed
    expect(lessor.checkpointsDue(9_999)).toEqual([]);
    const first = lessor.checkpointsDue(10_000);
    expect(first).toEqual([{ id: L(1), grantIndex: 1, remainingTtlSeconds: 50 }]);
    expect(lessor.checkpointsDue(25_000)).toEqual([]); // one in flight at a time
    apply(first, 10_500);
    expect(table.get(L(1))?.remainingTtlSeconds).toBe(50);
    expect(lessor.checkpointsDue(19_999)).toEqual([]);
    expect(lessor.checkpointsDue(20_500)).toEqual([{ id: L(1), grantIndex: 1, remainingTtlSeconds: 40 }]);
  });

  it("rounds the remaining TTL up to whole seconds", () => {
    const { lessor, grant } = setup();
    grant(1, 60, 0);
    expect(lessor.checkpointsDue(10_001)).toEqual([{ id: L(1), grantIndex: 1, remainingTtlSeconds: 50 }]);
  });

  it("a lease kept alive within C is never checkpointed", () => {
    const { lessor, grant } = setup();
    grant(1, 60, 0);
    for (let t = 5_000; t <= 120_000; t += 5_000) {
      expect(lessor.checkpointsDue(t)).toEqual([]);
      expect(lessor.keepAlive(L(1), t).kind).toBe("renewed");
    }
  });

  it("K2: after a reduced checkpoint a keepalive waits for a reset, which then renews the lease", () => {
    const { lessor, grant, apply, table } = setup();
    grant(1, 60, 0);
    const reduced = lessor.checkpointsDue(10_000);
    // In flight, not yet applied: the keepalive must already wait.
    const wait1 = lessor.keepAlive(L(1), 10_100);
    expect(wait1).toEqual({
      kind: "awaitCheckpoint",
      propose: { id: L(1), grantIndex: 1, remainingTtlSeconds: 60 },
    });
    expect(lessor.keepAlive(L(1), 10_200)).toEqual({ kind: "awaitCheckpoint", propose: undefined });
    expect(lessor.deadlineMs(L(1))).toBe(60_000);
    apply(reduced, 10_300);
    expect(lessor.keepAlive(L(1), 10_400)).toEqual({ kind: "awaitCheckpoint", propose: undefined });
    if (wait1.kind !== "awaitCheckpoint" || wait1.propose === undefined) throw new Error("no reset");
    apply([wait1.propose], 10_500); // the reset commits: the waiting keepalive is served
    expect(table.get(L(1))?.remainingTtlSeconds).toBe(60);
    expect(lessor.deadlineMs(L(1))).toBe(70_500);
    expect(lessor.keepAlive(L(1), 10_600)).toEqual({ kind: "renewed", ttlSeconds: 60 });
    expect(lessor.deadlineMs(L(1))).toBe(70_600);
    expect(lessor.checkpointsDue(20_599)).toEqual([]);
  });

  it("a new leader makes keepalives of a checkpointed lease wait for a reset too", () => {
    const table = new LeaseTable();
    table.grant(L(1), 60, { index: 1 });
    table.checkpoint(L(1), 30, { grantIndex: 1 });
    const lessor = new Lessor(OPTS);
    lessor.becomeLeader(0, table);
    const r = lessor.keepAlive(L(1), 100);
    expect(r).toEqual({
      kind: "awaitCheckpoint",
      propose: { id: L(1), grantIndex: 1, remainingTtlSeconds: 60 },
    });
    expect(lessor.deadlineMs(L(1))).toBe(30_000);
  });

  it("a dropped checkpoint is taken back: the lease can be checkpointed or reset again", () => {
    const { lessor, grant } = setup();
    grant(1, 60, 0);
    const [cp] = lessor.checkpointsDue(10_000);
    lessor.onCheckpointDropped(cp!);
    expect(lessor.keepAlive(L(1), 10_100)).toEqual({ kind: "renewed", ttlSeconds: 60 });
    const [again] = lessor.checkpointsDue(20_100);
    expect(again).toEqual({ id: L(1), grantIndex: 1, remainingTtlSeconds: 50 });
    const wait = lessor.keepAlive(L(1), 20_200);
    if (wait.kind !== "awaitCheckpoint" || wait.propose === undefined) throw new Error("no reset");
    lessor.onCheckpointDropped(wait.propose);
    expect(lessor.keepAlive(L(1), 20_300)).toEqual({ kind: "awaitCheckpoint", propose: wait.propose });
  });

  it("a checkpoint decided for an earlier incarnation does nothing to a re-grant of the id", () => {
    const { lessor, grant, table, apply } = setup();
    grant(1, 60, 0);
    const cps = lessor.checkpointsDue(10_000);
    // A client revokes the lease and grants the id again before the checkpoint applies.
    table.revoke(L(1));
    lessor.onRevoke(L(1));
    grant(1, 60, 10_100);
    apply(cps, 10_200);
    expect(table.get(L(1))?.remainingTtlSeconds).toBe(60);
    expect(lessor.keepAlive(L(1), 10_300)).toEqual({ kind: "renewed", ttlSeconds: 60 });
  });

  it("an expired lease whose revoke is pending still gets its checkpoint (0 s once passed)", () => {
    const { lessor, grant, apply } = setup();
    grant(1, 60, 0);
    const reduced = lessor.checkpointsDue(10_000);
    const wait = lessor.keepAlive(L(1), 10_100);
    if (wait.kind !== "awaitCheckpoint" || wait.propose === undefined) throw new Error("no reset");
    apply(reduced, 10_200);
    // The reset commits only after the deadline: nothing to renew, so the table shows the full TTL...
    apply([wait.propose], 61_000);
    expect(lessor.deadlineMs(L(1))).toBe(60_000);
    expect(ids(lessor.due(61_000))).toEqual([L(1)]);
    // ...and a checkpoint brings it down again, so a lost revoke cannot revive it for a full TTL.
    expect(lessor.checkpointsDue(61_000)).toEqual([{ id: L(1), grantIndex: 1, remainingTtlSeconds: 0 }]);
  });

  it("an applied checkpoint that was not handed out is a bug", () => {
    const { lessor, grant } = setup();
    grant(1, 60, 0);
    expect(() => lessor.onCheckpointApplied({ id: L(1), grantIndex: 1, remainingTtlSeconds: 7 }, 0)).toThrow(
      AssertionError,
    );
  });

  it("batches at most `max` per call, earliest first", () => {
    const { lessor, grant } = setup();
    for (let i = 1; i <= 5; i++) grant(i, 60, i * 100);
    expect(ids(lessor.checkpointsDue(20_000, 2))).toEqual([L(1), L(2)]);
    expect(ids(lessor.checkpointsDue(20_000, 2))).toEqual([L(3), L(4)]);
    expect(ids(lessor.checkpointsDue(20_000, 2))).toEqual([L(5)]);
  });
});

describe("describe", () => {
  it("is one deterministic line per lease, in id order", () => {
    const { lessor, grant } = setup();
    grant(2, 60, 0);
    grant(1, 5, 0);
    lessor.checkpointsDue(10_000);
    expect(lessor.describe(10_000)).toBe(
      ["lease 1 ttl=5s left=-5000ms", "lease 2 ttl=60s left=50000ms reduced inFlight=50s"].join("\n"),
    );
  });
});

describe("TimeQueue", () => {
  interface Item {
    readonly id: LeaseId;
    pos: number;
  }
  const slot = {
    get: (x: Item) => x.pos,
    set: (x: Item, pos: number) => {
      x.pos = pos;
    },
  };
  const item = (n: number): Item => ({ id: L(n), pos: -1 });

  it("orders by time then id and supports re-keying and removal", () => {
    const q = new TimeQueue(slot);
    const [i1, i2, i3, i4, i99] = [item(1), item(2), item(3), item(4), item(99)];
    q.set(i3, 50);
    q.set(i1, 50);
    q.set(i2, 10);
    q.set(i4, 5);
    q.set(i4, 70); // later
    q.set(i3, 1); // earlier
    q.delete(i2);
    q.delete(i99);
    expect(i2.pos).toBe(-1);
    expect(q.has(i3)).toBe(true);
    const order: LeaseId[] = [];
    while (q.size > 0) {
      expect(q.peekAtMs()).toBe(q.peek() === i4 ? 70 : q.peek() === i1 ? 50 : 1);
      const top = q.peek()!;
      order.push(top.id);
      q.delete(top);
    }
    expect(order).toEqual([L(3), L(1), L(4)]);
    expect(q.peekAtMs()).toBe(Number.POSITIVE_INFINITY);
  });

  it("matches a sorted list through random sets and deletes, growing past its initial capacity", () => {
    const items = Array.from({ length: 200 }, (_, i) => item(i + 1));
    const q = new TimeQueue(slot);
    const model = new Map<Item, number>();
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    for (let step = 0; step < 5_000; step++) {
      const x = items[next(items.length)]!;
      if (next(3) === 0) {
        q.delete(x);
        model.delete(x);
      } else {
        const at = next(50);
        q.set(x, at);
        model.set(x, at);
      }
      expect(q.size).toBe(model.size);
      for (const [y, at] of model) expect(q.has(y) && y.pos >= 0 && at >= 0).toBe(true);
    }
    const expected = [...model].sort((a, b) => a[1] - b[1] || Number(a[0].id - b[0].id)).map(([y]) => y.id);
    const order: LeaseId[] = [];
    while (q.size > 0) {
      order.push(q.peek()!.id);
      q.delete(q.peek()!);
    }
    expect(order).toEqual(expected);
    q.set(items[0]!, 1);
    q.clear();
    expect(q.size).toBe(0);
    expect(items[0]!.pos).toBe(-1);
  });
});
