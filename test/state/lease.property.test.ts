/**
 * Property tests of the lease table and the lessor against small, dumb models:
 *
 * 1. LeaseTable vs a model of maps: random grant / attach / detach / store
 *    changes / checkpoint / revoke; revoke returns exactly the keys attached,
 *    in bytewise order; two tables fed the same commands agree; the snapshot
 *    round trip (through JSON) is indistinguishable.
 * 2. Lessor expiry order: with random grants and keepalives, `due` hands out
 *    exactly the leases whose deadline passed, sorted by (deadline, id), in
 *    batches of any size, each once.
 * 3. Leader hand-over: an old leader serves keepalives and checkpoints, loses
 *    quorum, keeps answering keepalives for up to Δ after the new leader starts;
 *    some of its proposals commit, some do not. The new leader's deadlines are
 *    never below any promise made and stay within the bound in lessor.ts.
 *
 * Contract: the models sort keys by comparing bytes and compute deadlines with
 * plain arithmetic, sharing no trick with the code under test.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteReader, ByteWriter } from "../../src/state/bytes.ts";
import { LeaseTable } from "../../src/state/lease.ts";
import type { LeaseCheckpoint, LeaseRef } from "../../src/state/lessor.ts";
import { Lessor } from "../../src/state/lessor.ts";
import type { LeaseId } from "../../src/state/types.ts";
import { leaseId, NO_LEASE } from "../../src/state/types.ts";

const RUNS = 150;

/** Bytewise order of byte arrays, a prefix first (etcd's key order). */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

const KEYS: readonly Uint8Array[] = [
  new Uint8Array([]),
  new Uint8Array([0x61]),
  new Uint8Array([0x61, 0x00]),
  new Uint8Array([0x61, 0x62]),
  new Uint8Array([0x62]),
  new Uint8Array([0x7f]),
  new Uint8Array([0x80]),
  new Uint8Array([0xff, 0xff]),
  new Uint8Array([0x00]),
];

type TableOp =
  | { readonly op: "grant"; readonly id: number; readonly ttl: number }
  | { readonly op: "attach"; readonly key: number; readonly lease: number }
  | { readonly op: "detach"; readonly key: number }
  | { readonly op: "store"; readonly key: number; readonly lease: number; readonly none: boolean }
  | { readonly op: "checkpoint"; readonly lease: number; readonly fraction: number }
  | { readonly op: "revoke"; readonly id: number };

const tableOpArb: fc.Arbitrary<TableOp> = fc.oneof(
  fc.record({
    op: fc.constant("grant" as const),
    id: fc.integer({ min: 0, max: 6 }),
    ttl: fc.constantFrom(-3, 0, 1, 2, 7, 60),
  }),
  fc.record({ op: fc.constant("attach" as const), key: fc.nat(KEYS.length - 1), lease: fc.nat() }),
  fc.record({ op: fc.constant("detach" as const), key: fc.nat(KEYS.length - 1) }),
  fc.record({
    op: fc.constant("store" as const),
    key: fc.nat(KEYS.length - 1),
    lease: fc.nat(),
    none: fc.boolean(),
  }),
  fc.record({
    op: fc.constant("checkpoint" as const),
    lease: fc.nat(),
    fraction: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
  fc.record({ op: fc.constant("revoke" as const), id: fc.integer({ min: 0, max: 6 }) }),
);

interface ModelLease {
  ttl: number;
  remaining: number;
  grantIndex: number;
}

describe("LeaseTable against a model", () => {
  it("revoke returns exactly the attached keys; replicas agree; snapshots round-trip", () => {
    fc.assert(
      fc.property(fc.array(tableOpArb, { maxLength: 80 }), (ops) => {
        const table = new LeaseTable();
        const replica = new LeaseTable();
        const leases = new Map<LeaseId, ModelLease>();
        const keyLease = new Map<number, LeaseId>(); // KEYS index -> lease
        const live = (): LeaseId[] => [...leases.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        const pickLive = (n: number): LeaseId | undefined => {
          const all = live();
          return all.length === 0 ? undefined : all[n % all.length];
        };
        let index = 0;
        for (const o of ops) {
          index++;
          switch (o.op) {
            case "grant": {
              const id = leaseId(BigInt(o.id));
              const r = table.grant(id, o.ttl, { index });
              expect(replica.grant(id, o.ttl, { index })).toEqual(r);
              if (id !== NO_LEASE && leases.has(id)) {
                expect(r).toEqual({ ok: false, reason: "exists" });
              } else {
                expect(r.ok).toBe(true);
                if (!r.ok) break;
                if (id !== NO_LEASE) expect(r.id).toBe(id);
                expect(r.id > 0n && !leases.has(r.id)).toBe(true);
                const ttl = Math.max(o.ttl, 2);
                expect(r.ttlSeconds).toBe(ttl);
                leases.set(r.id, { ttl, remaining: ttl, grantIndex: index });
              }
              break;
            }
            case "attach": {
              const id = pickLive(o.lease);
              if (id === undefined) break;
              const before = keyLease.get(o.key) ?? NO_LEASE;
              expect(table.attach(KEYS[o.key]!, id)).toBe(before);
              replica.attach(KEYS[o.key]!, id);
              keyLease.set(o.key, id);
              break;
            }
            case "detach": {
              const before = keyLease.get(o.key) ?? NO_LEASE;
              expect(table.detach(KEYS[o.key]!)).toBe(before);
              replica.detach(KEYS[o.key]!);
              keyLease.delete(o.key);
              break;
            }
            case "store": {
              const to = o.none ? NO_LEASE : pickLive(o.lease);
              if (to === undefined) break;
              const change = [{ key: KEYS[o.key]!, from: keyLease.get(o.key) ?? NO_LEASE, to }];
              table.applyLeaseChanges(change);
              replica.applyLeaseChanges(change);
              if (to === NO_LEASE) keyLease.delete(o.key);
              else keyLease.set(o.key, to);
              break;
            }
            case "checkpoint": {
              const id = pickLive(o.lease);
              if (id === undefined) break;
              const m = leases.get(id)!;
              const remaining = Math.floor(o.fraction * m.ttl);
              expect(table.checkpoint(id, remaining, m)).toEqual({ ok: true });
              replica.checkpoint(id, remaining, m);
              m.remaining = remaining;
              break;
            }
            case "revoke": {
              const id = leaseId(BigInt(o.id));
              const r = table.revoke(id);
              expect(replica.revoke(id)).toEqual(r);
              if (!leases.has(id)) {
                expect(r).toEqual({ ok: false, reason: "notFound" });
                break;
              }
              const expected = [...keyLease.entries()]
                .filter(([, l]) => l === id)
                .map(([k]) => KEYS[k]!)
                .sort(compareBytes);
              expect(r).toEqual({ ok: true, keys: expected });
              for (const [k, l] of [...keyLease.entries()]) if (l === id) keyLease.delete(k);
              leases.delete(id);
              break;
            }
          }
        }
        const check = (t: LeaseTable): void => {
          expect(t.ids()).toEqual(live());
          for (const id of live()) {
            const m = leases.get(id)!;
            expect(t.get(id)).toEqual({
              id,
              ttlSeconds: m.ttl,
              remainingTtlSeconds: m.remaining,
              grantIndex: m.grantIndex,
            });
            const keys = [...keyLease.entries()].filter(([, l]) => l === id).map(([k]) => KEYS[k]!);
            expect(t.keysOf(id)).toEqual(keys.sort(compareBytes));
          }
          KEYS.forEach((k, i) => {
            expect(t.leaseOf(k)).toBe(keyLease.get(i) ?? NO_LEASE);
          });
        };
        check(table);
        expect(replica.snapshot()).toEqual(table.snapshot());
        const restored = LeaseTable.restore(JSON.parse(JSON.stringify(table.snapshot())));
        check(restored);
        expect(restored.snapshot()).toEqual(table.snapshot());
        // Format 2 (binary) makes the same table.
        const w = new ByteWriter(16);
        table.writeSnapshot(w);
        const r = new ByteReader(w.finish());
        const fromBinary = LeaseTable.readSnapshot(r);
        expect(r.done).toBe(true);
        check(fromBinary);
        expect(fromBinary.snapshot()).toEqual(table.snapshot());
        // The same next command has the same outcome on the original and the restored table.
        expect(restored.grant(NO_LEASE, 5, { index: index + 1 })).toEqual(
          table.grant(NO_LEASE, 5, { index: index + 1 }),
        );
      }),
      { numRuns: RUNS },
    );
  });
});

type ExpiryOp =
  | { readonly op: "grant"; readonly dt: number; readonly ttl: number }
  | { readonly op: "keepAlive"; readonly dt: number; readonly lease: number };

const expiryOpArb: fc.Arbitrary<ExpiryOp> = fc.oneof(
  fc.record({ op: fc.constant("grant" as const), dt: fc.nat(1_500), ttl: fc.integer({ min: 2, max: 8 }) }),
  fc.record({ op: fc.constant("keepAlive" as const), dt: fc.nat(1_500), lease: fc.nat() }),
);

describe("Lessor expiry order", () => {
  it("due() hands out exactly the passed deadlines, sorted by (deadline, id), each once", () => {
    fc.assert(
      fc.property(
        fc.array(expiryOpArb, { maxLength: 60 }),
        fc.integer({ min: 1, max: 7 }),
        fc.nat(20_000),
        (ops, batch, midMs) => {
          const table = new LeaseTable();
          // C above every TTL: no checkpoints, keepalives are always answered.
          const lessor = new Lessor({ checkpointIntervalMs: 60_000 });
          lessor.becomeLeader(0, table);
          const deadlines = new Map<LeaseId, number>();
          let now = 0;
          let next = 1;
          for (const o of ops) {
            now += o.dt;
            if (o.op === "grant") {
              const r = table.grant(leaseId(BigInt(next++)), o.ttl, { index: next });
              if (!r.ok) throw new Error(r.reason);
              lessor.onGrant(table.get(r.id)!, now);
              deadlines.set(r.id, now + o.ttl * 1_000);
            } else if (deadlines.size > 0) {
              const ids = [...deadlines.keys()];
              const id = ids[o.lease % ids.length]!;
              const ttlMs = table.get(id)!.ttlSeconds * 1_000;
              const r = lessor.keepAlive(id, now);
              if (now >= deadlines.get(id)!) {
                expect(r).toEqual({ kind: "expired" });
              } else {
                expect(r).toEqual({ kind: "renewed", ttlSeconds: ttlMs / 1_000 });
                deadlines.set(id, Math.max(deadlines.get(id)!, now + ttlMs));
              }
            }
          }
          const order = (upTo: number): LeaseId[] =>
            [...deadlines.entries()]
              .filter(([, d]) => d <= upTo)
              .sort(([a, da], [b, db]) => da - db || (a < b ? -1 : 1))
              .map(([id]) => id);
          const drain = (at: number): LeaseId[] => {
            const out: LeaseId[] = [];
            for (;;) {
              const got = lessor.due(at, batch);
              expect(got.length).toBeLessThanOrEqual(batch);
              if (got.length === 0) return out;
              out.push(...got.map((r) => r.id));
            }
          };
          const mid = now + midMs - 10_000;
          const first = drain(mid);
          expect(first).toEqual(order(mid));
          expect(drain(mid)).toEqual([]); // handed out once
          for (const id of first) lessor.onRevoke(id); // the revokes applied
          const end = now + 10_000;
          expect(drain(end)).toEqual(order(end).filter((id) => !first.includes(id)));
        },
      ),
      { numRuns: RUNS },
    );
  });
});

// --- Leader hand-over -------------------------------------------------------------------

const DELTA_MS = 1_000;
const C_MS = 10_000;
const HANDOVER_OPTS = {
  electionTimeoutMs: DELTA_MS,
  checkpointIntervalMs: C_MS,
  spreadLeasesPerSecond: 1_000_000,
};

type Entry =
  | { readonly kind: "checkpoint"; readonly cp: LeaseCheckpoint }
  | { readonly kind: "revoke"; readonly ref: LeaseRef };

type NormalStep =
  | { readonly op: "idle"; readonly dt: number }
  | { readonly op: "grant"; readonly dt: number; readonly ttl: number }
  | { readonly op: "keepAlive"; readonly dt: number; readonly lease: number };

type FailureStep =
  | { readonly op: "keepAlive"; readonly dt: number; readonly lease: number }
  | { readonly op: "duties"; readonly dt: number }
  | { readonly op: "commit"; readonly dt: number; readonly count: number };

interface Phase {
  readonly normal: readonly NormalStep[];
  readonly failure: readonly FailureStep[];
  readonly gapMs: number;
  readonly extraCommits: number;
  readonly stale: readonly { readonly dt: number; readonly lease: number }[];
}

const normalStepArb: fc.Arbitrary<NormalStep> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ op: fc.constant("idle" as const), dt: fc.nat(1_000) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("grant" as const),
      dt: fc.nat(1_000),
      ttl: fc.constantFrom(2, 5, 10, 11, 25, 40),
    }),
  },
  // Small lease indexes: the oldest few leases are kept alive, the rest go idle and get checkpointed.
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("keepAlive" as const), dt: fc.nat(1_000), lease: fc.nat(3) }),
  },
);

const failureStepArb: fc.Arbitrary<FailureStep> = fc.oneof(
  fc.record({ op: fc.constant("keepAlive" as const), dt: fc.nat(800), lease: fc.nat(5) }),
  fc.record({ op: fc.constant("duties" as const), dt: fc.nat(800) }),
  fc.record({ op: fc.constant("commit" as const), dt: fc.nat(800), count: fc.integer({ min: 1, max: 4 }) }),
);

const phaseArb: fc.Arbitrary<Phase> = fc.record({
  normal: fc.array(normalStepArb, { minLength: 1, maxLength: 120, size: "max" }),
  failure: fc.array(failureStepArb, { maxLength: 8, size: "max" }),
  gapMs: fc.oneof(fc.nat(300), fc.nat(4_000)),
  extraCommits: fc.nat(6),
  stale: fc.array(fc.record({ dt: fc.nat(DELTA_MS / 4), lease: fc.nat(5) }), { maxLength: 4 }),
});

/** Fails the property with a message; cheaper than expect() in the hot loop. */
function check(cond: boolean, msg: () => string): void {
  if (!cond) throw new Error(msg());
}

/** Coverage probes: the interesting paths the hand-over property must have taken. */
const seen = {
  renewed: 0,
  awaitCheckpoint: 0,
  staleRenewed: 0,
  extraCommits: 0,
  reducedAtHandover: 0,
  askedAtHandover: 0,
};

describe("Lessor leader hand-over", () => {
  it("a new leader never grants less than was promised, and at most the documented bound more", () => {
    fc.assert(
      fc.property(fc.array(phaseArb, { minLength: 1, maxLength: 3 }), (phases) => {
        let table = new LeaseTable();
        let lessor = new Lessor(HANDOVER_OPTS);
        lessor.becomeLeader(0, table);
        /** The latest time each holder was promised (keepalive answer or grant + TTL). */
        const promises = new Map<LeaseId, number>();
        /** Per lease, the latest now + TTL a keepalive asked for while waiting for a reset (this term). */
        let asked = new Map<LeaseId, number>();
        let pending: Entry[] = [];
        let now = 0;
        let index = 0;
        let nextId = 1;

        const keepAlive = (l: Lessor, n: number, at: number): "renewed" | "other" => {
          const ids = table.ids();
          if (ids.length === 0) return "other";
          const id = ids[n % ids.length]!;
          const r = l.keepAlive(id, at);
          if (r.kind === "renewed") {
            seen.renewed++;
            promises.set(id, Math.max(promises.get(id) ?? 0, at + r.ttlSeconds * 1_000));
            return "renewed";
          }
          if (r.kind === "awaitCheckpoint") {
            seen.awaitCheckpoint++;
            asked.set(id, Math.max(asked.get(id) ?? 0, at + table.get(id)!.ttlSeconds * 1_000));
            if (r.propose !== undefined) pending.push({ kind: "checkpoint", cp: r.propose });
          }
          return "other";
        };
        const duties = (l: Lessor, at: number): void => {
          for (const cp of l.checkpointsDue(at)) pending.push({ kind: "checkpoint", cp });
          for (const ref of l.due(at)) pending.push({ kind: "revoke", ref });
        };
        /** Applies one committed entry to `t` and, if given, tells the leader's lessor. */
        const applyEntry = (t: LeaseTable, e: Entry, l: Lessor | undefined, at: number): void => {
          if (e.kind === "checkpoint") {
            t.checkpoint(e.cp.id, e.cp.remainingTtlSeconds, e.cp);
            l?.onCheckpointApplied(e.cp, at);
          } else if (t.revoke(e.ref.id, e.ref).ok && l !== undefined) {
            // Expiry never cuts a holder's promise short.
            const promise = promises.get(e.ref.id)!;
            check(promise <= at, () => `lease ${e.ref.id} revoked at ${at}, promised until ${promise}`);
            l.onRevoke(e.ref.id);
          }
        };
        const commit = (count: number): void => {
          for (const e of pending.splice(0, count)) applyEntry(table, e, lessor, now);
        };

        for (const phase of phases) {
          // Normal operation: every step ends with the duties drained and everything committed.
          for (const s of phase.normal) {
            now += s.dt;
            if (s.op === "grant") {
              const r = table.grant(leaseId(BigInt(nextId++)), s.ttl, { index: ++index });
              if (!r.ok) throw new Error(r.reason);
              lessor.onGrant(table.get(r.id)!, now);
              promises.set(r.id, now + r.ttlSeconds * 1_000);
            } else if (s.op === "keepAlive") {
              keepAlive(lessor, s.lease, now);
            }
            duties(lessor, now);
            commit(pending.length);
            for (const id of table.ids()) {
              const d = lessor.deadlineMs(id) ?? Number.NEGATIVE_INFINITY;
              check(d >= (promises.get(id) ?? 0), () => `lease ${id}: deadline ${d} below its promise`);
            }
          }
          const tS = now;
          // Quorum lost: the old leader goes on; some of its proposals still commit before E.
          const electedMs = tS + phase.gapMs;
          for (const s of phase.failure) {
            now = Math.min(now + s.dt, electedMs);
            if (s.op === "keepAlive") keepAlive(lessor, s.lease, now);
            else if (s.op === "duties") duties(lessor, now);
            else commit(s.count);
          }
          now = electedMs;
          // The new leader's log: all the old leader applied, plus a prefix it did not apply.
          const newTable = LeaseTable.restore(JSON.parse(JSON.stringify(table.snapshot())));
          const extra = pending.slice(0, phase.extraCommits);
          seen.extraCommits += extra.length;
          for (const e of extra) applyEntry(newTable, e, undefined, now);
          const fresh = new Lessor(HANDOVER_OPTS);
          fresh.becomeLeader(electedMs, newTable);
          // The deposed leader answers keepalives for up to Δ more, committing nothing.
          let staleMs = electedMs;
          for (const s of phase.stale) {
            staleMs = Math.min(staleMs + s.dt, electedMs + DELTA_MS);
            if (keepAlive(lessor, s.lease, staleMs) === "renewed") seen.staleRenewed++;
          }
          const gapMs = electedMs - tS;
          for (const id of newTable.ids()) {
            const info = newTable.get(id)!;
            const ttlMs = info.ttlSeconds * 1_000;
            const d = fresh.deadlineMs(id)!;
            const old = lessor.deadlineMs(id);
            check(old !== undefined, () => `lease ${id} unknown to the old leader`);
            const promise = promises.get(id) ?? 0;
            check(d >= promise, () => `lease ${id}: new deadline ${d} below the promise ${promise}`);
            check(d >= old!, () => `lease ${id}: new deadline ${d} below the old one ${old}`);
            // D: the old deadline, counting a keepalive whose reset committed as served when asked.
            const full = info.remainingTtlSeconds === info.ttlSeconds;
            if (info.remainingTtlSeconds < info.ttlSeconds) seen.reducedAtHandover++;
            if (full && asked.has(id)) seen.askedAtHandover++;
            const dOld = full ? Math.max(old!, asked.get(id) ?? 0) : old!;
            const bound = Math.max(dOld, tS) + gapMs + DELTA_MS + Math.min(ttlMs, C_MS + 1_000);
            check(d <= bound, () => `lease ${id}: new deadline ${d} above the bound ${bound}`);
          }
          lessor.stepDown();
          lessor = fresh;
          table = newTable;
          pending = [];
          asked = new Map();
        }
      }),
      { numRuns: RUNS },
    );
    // The runs reached the paths that matter (FoundationDB-style coverage probes).
    expect(seen.renewed).toBeGreaterThan(0);
    expect(seen.awaitCheckpoint).toBeGreaterThan(0);
    expect(seen.reducedAtHandover).toBeGreaterThan(0);
    expect(seen.extraCommits).toBeGreaterThan(0);
    expect(seen.staleRenewed).toBeGreaterThan(0);
  });
});
