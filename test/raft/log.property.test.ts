/**
 * Property tests of RaftLog (src/raft/log.ts) against a model that is a plain
 * array of { index, term }: conflict resolution on the follower path (Raft paper
 * Figure 2, AppendEntries steps 3-4), the up-to-date rule (§5.4.1), byte-limited
 * slices and compaction.
 *
 * Contract: generated appends respect Raft's assumptions. The incoming entries
 * follow a prevIndex the follower holds (or has compacted), agree with the
 * existing log up to the committed index (Leader Completeness, §5.4), and carry
 * non-decreasing terms no lower than the term at prevIndex.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/raft/assert.ts";
import type { Entry, Snapshot } from "../../src/raft/index.ts";
import { emptySnapshot, logIndex, memberId, term } from "../../src/raft/index.ts";
import { RaftLog } from "../../src/raft/log.ts";

const RUNS = 400;
const CONF = { voters: [memberId(1), memberId(2), memberId(3)], learners: [] };

/** The model of a log: position k holds the entry at index k+1. */
interface ModelEntry {
  readonly index: number;
  readonly term: number;
}

/** One generated case: an existing log, its bookkeeping indexes, and an incoming append. */
interface Scenario {
  /** Terms of entries 1..n, non-decreasing. */
  readonly terms: readonly number[];
  /** Data bytes per entry index (cycled), so slices have something to limit. */
  readonly sizes: readonly number[];
  /** Invariant: snap <= applied <= committed <= terms.length. */
  readonly snap: number;
  readonly applied: number;
  readonly committed: number;
  /** Invariant: snap <= persisted <= handed <= terms.length. */
  readonly handed: number;
  readonly persisted: number;
  /** The append: entries prevIndex+1 .. prevIndex+incoming.length. */
  readonly prevIndex: number;
  readonly incoming: readonly number[];
}

/** Running sums of small increments: a non-decreasing term sequence starting at `base`. */
function climb(base: number, incs: readonly number[]): number[] {
  const out: number[] = [];
  let t = base;
  for (const inc of incs) {
    t += inc;
    out.push(t);
  }
  return out;
}

/** Picks a value in [lo, hi] from an unbounded natural number. */
function within(pick: number, lo: number, hi: number): number {
  return lo + (pick % (hi - lo + 1));
}

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    incs: fc.array(fc.nat({ max: 2 }), { maxLength: 12 }),
    sizes: fc.array(fc.nat({ max: 6 }), { minLength: 1, maxLength: 8 }),
    commitPick: fc.nat(),
    appliedPick: fc.nat(),
    snapPick: fc.nat(),
    handedPick: fc.nat(),
    persistedPick: fc.nat(),
    prevPick: fc.nat(),
    agreeExtra: fc.nat({ max: 12 }),
    tailIncs: fc.array(fc.nat({ max: 2 }), { maxLength: 8 }),
  })
  .map((r): Scenario => {
    const terms = climb(1, r.incs);
    const n = terms.length;
    const committed = within(r.commitPick, 0, n);
    const applied = within(r.appliedPick, 0, committed);
    const snap = within(r.snapPick, 0, applied);
    const handed = within(r.handedPick, snap, n);
    const persisted = within(r.persistedPick, snap, handed);
    const prevIndex = within(r.prevPick, 0, n);
    // Copy the existing log at least up to the committed index (those entries can never
    // conflict), optionally further; then continue with fresh, non-decreasing terms.
    const copies = Math.min(n - prevIndex, Math.max(0, committed - prevIndex) + r.agreeExtra);
    const copied = terms.slice(prevIndex, prevIndex + copies);
    const base = prevIndex + copies === 0 ? 1 : terms[prevIndex + copies - 1]!;
    const incoming = [...copied, ...climb(base, r.tailIncs)];
    return { terms, sizes: r.sizes, snap, applied, committed, handed, persisted, prevIndex, incoming };
  });

/** An entry whose data bytes tell its index, term and source (`salt`) apart from any other's. */
function mkEntry(index: number, t: number, size: number, salt = 0): Entry {
  const data = Uint8Array.from({ length: size }, (_, i) => (index * 31 + t * 7 + salt * 101 + i) & 255);
  return { index: logIndex(index), term: term(t), kind: "normal", data };
}

function sizeOf(s: Scenario, index: number, salt: number): number {
  return s.sizes[(index + salt) % s.sizes.length]!;
}

/** The model term at `index` of a full (uncompacted) model log; index 0 has term 0. */
function modelTerm(model: readonly ModelEntry[], index: number): number | undefined {
  if (index === 0) return 0;
  return model[index - 1]?.term;
}

function snapshotAt(model: readonly ModelEntry[], index: number): Snapshot {
  if (index === 0) return emptySnapshot(CONF);
  const snap = emptySnapshot(CONF);
  return { ...snap, meta: { ...snap.meta, index: logIndex(index), term: term(modelTerm(model, index)!) } };
}

/** Builds the log a scenario describes; returns it with the entry objects it holds. */
function buildLog(s: Scenario): { log: RaftLog; existing: Entry[]; incoming: Entry[] } {
  const existing = s.terms.map((t, k) => mkEntry(k + 1, t, sizeOf(s, k + 1, 0)));
  const incoming = s.incoming.map((t, k) =>
    mkEntry(s.prevIndex + 1 + k, t, sizeOf(s, s.prevIndex + 1 + k, 3), 1),
  );
  const model = toModel(existing);
  const log = new RaftLog(
    snapshotAt(model, s.snap),
    existing.slice(s.snap),
    logIndex(s.committed),
    logIndex(s.applied),
  );
  log.handed = logIndex(s.handed);
  log.persisted = logIndex(s.persisted);
  return { log, existing, incoming };
}

function toModel(entries: readonly Entry[]): ModelEntry[] {
  return entries.map((e) => ({ index: e.index, term: e.term }));
}

/** Same length, and equal entries (term, index, kind, data bytes) in the same order. */
function expectSameEntries(actual: readonly Entry[], expected: readonly Entry[]): void {
  expect(actual.length).toBe(expected.length);
  for (let k = 0; k < actual.length; k++) expect(actual[k]).toEqual(expected[k]);
}

/** Everything the log holds in memory, in order. */
function held(log: RaftLog): Entry[] {
  return log.slice(log.firstIndex(), logIndex(log.lastIndex() + 1), Number.POSITIVE_INFINITY);
}

/**
 * The model of AppendEntries steps 3-4: the first incoming entry whose term differs
 * from the existing entry at its index (or that lies beyond the end) is the conflict;
 * keep everything before it, then take the incoming entries from it on. No conflict:
 * the log is unchanged, even if it is longer than the append (a stale append).
 */
function modelAppend(
  model: readonly ModelEntry[],
  incoming: readonly ModelEntry[],
): { result: ModelEntry[]; conflict: number | undefined } {
  const k = incoming.findIndex((e) => modelTerm(model, e.index) !== e.term);
  if (k < 0) return { result: model.slice(), conflict: undefined };
  const conflict = incoming[k]!.index;
  return { result: [...model.slice(0, conflict - 1), ...incoming.slice(k)], conflict };
}

/** Checks the log's observable state against a full model whose first `snap` entries are compacted. */
function expectMatchesModel(log: RaftLog, model: readonly ModelEntry[], snap: number): void {
  expect(log.firstIndex()).toBe(snap + 1);
  expect(log.lastIndex()).toBe(Math.max(model.length, snap));
  expect(toModel(held(log))).toEqual(model.slice(snap));
  const indexes = Array.from({ length: model.length + 3 }, (_, i) => i);
  expect(indexes.map((i) => log.term(logIndex(i)))).toEqual(
    indexes.map((i) => (i < snap ? undefined : modelTerm(model, i))),
  );
  expect(log.lastTerm()).toBe(modelTerm(model, log.lastIndex()));
}

describe("RaftLog.maybeAppend", () => {
  it("keeps the prefix before the first conflict, then takes the incoming entries", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { log, existing, incoming } = buildLog(s);
        const before = toModel(existing);
        const { result, conflict } = modelAppend(before, toModel(incoming));

        const last = log.maybeAppend(logIndex(s.prevIndex), incoming);

        expect(last).toBe(s.prevIndex + incoming.length);
        expectMatchesModel(log, result, s.snap);
        // Retained entries are the ones that were there; new ones are the incoming ones (data included).
        for (const e of held(log)) {
          const fromIncoming = conflict !== undefined && e.index >= conflict;
          expect(e).toEqual(fromIncoming ? incoming[e.index - s.prevIndex - 1] : existing[e.index - 1]);
        }
        // Committed and applied entries are never touched.
        expect(log.committed).toBe(s.committed);
        expect(log.applied).toBe(s.applied);
        expect(toModel(held(log)).slice(0, s.committed - s.snap)).toEqual(before.slice(s.snap, s.committed));
      }),
      { numRuns: RUNS },
    );
  });

  it("drops handed and persisted below the first truncated index, and only then", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { log, existing, incoming } = buildLog(s);
        const { conflict } = modelAppend(toModel(existing), toModel(incoming));
        log.maybeAppend(logIndex(s.prevIndex), incoming);
        const truncated = conflict !== undefined && conflict <= existing.length;
        const cap = (x: number) => (truncated ? Math.min(x, conflict - 1) : x);
        expect(log.handed).toBe(cap(s.handed));
        expect(log.persisted).toBe(cap(s.persisted));
        // Invariant: persisted <= handed <= lastIndex.
        expect(log.persisted).toBeLessThanOrEqual(log.handed);
        expect(log.handed).toBeLessThanOrEqual(log.lastIndex());
      }),
      { numRuns: RUNS },
    );
  });

  it("is idempotent, and a stale or duplicated part of an applied append never truncates", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), fc.nat(), (s, aPick, bPick) => {
        const { log, incoming } = buildLog(s);
        log.maybeAppend(logIndex(s.prevIndex), incoming);
        const after = held(log);
        const marks = [log.handed, log.persisted, log.lastIndex()];

        // The same message again (a duplicate delivery).
        expect(log.maybeAppend(logIndex(s.prevIndex), incoming)).toBe(s.prevIndex + incoming.length);
        // Any contiguous part of it, arriving late (reordered behind the full one).
        const a = within(aPick, 0, incoming.length);
        const b = within(bPick, a, incoming.length);
        const part = incoming.slice(a, b);
        expect(log.maybeAppend(logIndex(s.prevIndex + a), part)).toBe(s.prevIndex + b);

        expectSameEntries(held(log), after);
        expect([log.handed, log.persisted, log.lastIndex()]).toEqual(marks);
      }),
      { numRuns: RUNS },
    );
  });

  it("leaves the log unchanged when the append is a prefix of what it holds", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), fc.nat(), (s, prevPick, lenPick) => {
        const { log, existing } = buildLog(s);
        const prev = within(prevPick, 0, existing.length);
        const copy = existing.slice(prev, within(lenPick, prev, existing.length));
        const marks = [log.handed, log.persisted];
        expect(log.maybeAppend(logIndex(prev), copy)).toBe(prev + copy.length);
        expectMatchesModel(log, toModel(existing), s.snap);
        expect([log.handed, log.persisted]).toEqual(marks);
      }),
      { numRuns: RUNS },
    );
  });

  it("refuses, with the log untouched, an append that conflicts with a committed entry", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), (s, pick) => {
        fc.pre(s.committed > s.snap);
        const { log, existing } = buildLog(s);
        // Rewrite one committed, uncompacted entry with a higher term.
        const at = within(pick, s.snap + 1, s.committed);
        const bad = existing.slice(at - 1, s.committed).map((e) => mkEntry(e.index, e.term, 0));
        bad[0] = mkEntry(at, existing[at - 1]!.term + 1, 0);
        expect(() => log.maybeAppend(logIndex(at - 1), bad)).toThrow(AssertionError);
        expectMatchesModel(log, toModel(existing), s.snap);
      }),
      { numRuns: 200 },
    );
  });
});

describe("RaftLog terms and the up-to-date rule (§5.4.1)", () => {
  it("term and matchTerm agree with the model, compacted indexes have no term", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat({ max: 20 }), fc.nat({ max: 30 }), (s, i, t) => {
        const { log, existing } = buildLog(s);
        const model = toModel(existing);
        expectMatchesModel(log, model, s.snap);
        const want = i < s.snap ? undefined : modelTerm(model, i);
        expect(log.matchTerm(logIndex(i), term(t))).toBe(want === t);
        // Every entry the log holds matches its own term.
        for (const e of held(log)) expect(log.matchTerm(e.index, e.term)).toBe(true);
        expect(log.matchTerm(log.snapshot.meta.index, log.snapshot.meta.term)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it("a candidate is up to date iff its (lastTerm, lastIndex) is lexicographically >= ours", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat({ max: 20 }), fc.nat({ max: 30 }), (s, ci, ct) => {
        const { log, existing } = buildLog(s);
        const myIndex = existing.length;
        const myTerm = modelTerm(toModel(existing), myIndex)!;
        const want = ct > myTerm || (ct === myTerm && ci >= myIndex);
        expect(log.isUpToDate(logIndex(ci), term(ct))).toBe(want);
        // Our own position is always up to date; one entry shorter in the same term is not.
        expect(log.isUpToDate(logIndex(myIndex), term(myTerm))).toBe(true);
        if (myIndex > 0) expect(log.isUpToDate(logIndex(myIndex - 1), term(myTerm))).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("RaftLog.slice", () => {
  it("returns a non-empty prefix of [lo, hi) within the byte limit, as long as fits", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), fc.nat(), fc.nat({ max: 20 }), (s, loPick, hiPick, bytesMax) => {
        const { log } = buildLog(s);
        const first = log.firstIndex();
        const end = log.lastIndex() + 1;
        const lo = within(loPick, first, end);
        const hi = within(hiPick, lo, end);
        const out = log.slice(logIndex(lo), logIndex(hi), bytesMax);
        const all = held(log).slice(lo - first, hi - first);

        if (lo < hi) expect(out.length).toBeGreaterThanOrEqual(1);
        else expect(out).toEqual([]);
        expect(out.length).toBeLessThanOrEqual(hi - lo);
        expectSameEntries(out, all.slice(0, out.length));
        const bytes = (es: readonly Entry[]) => es.reduce((sum, e) => sum + e.data.length, 0);
        // Within the limit, unless a single entry is larger than the limit on its own.
        if (out.length > 1) expect(bytes(out)).toBeLessThanOrEqual(bytesMax);
        // As long as fits: stopping early means the next entry would have broken the limit.
        if (out.length < hi - lo) expect(bytes(all.slice(0, out.length + 1))).toBeGreaterThan(bytesMax);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("RaftLog.compactTo", () => {
  it("keeps terms, slices and the up-to-date answer of retained entries unchanged", () => {
    fc.assert(
      fc.property(
        scenarioArb,
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.nat({ max: 20 }),
        (s, atPick, loPick, hiPick, bytesMax) => {
          const { log, existing } = buildLog(s);
          const model = toModel(existing);
          const at = within(atPick, 0, s.applied);
          const lastIndex = log.lastIndex();
          const lastTerm = log.lastTerm();
          const end = lastIndex + 1;
          const keepFrom = Math.max(at, s.snap) + 1;
          const lo = within(loPick, keepFrom, end);
          const hi = within(hiPick, lo, end);
          const sliceBefore = log.slice(logIndex(lo), logIndex(hi), bytesMax);
          const upToDateBefore = [0, 1, 2, 3].map((d) =>
            log.isUpToDate(logIndex(lastIndex - 1 + d), term(lastTerm - 1 + (d % 2))),
          );

          log.compactTo(snapshotAt(model, at));

          // Compacting to or below the current snapshot is a no-op.
          const snap = Math.max(at, s.snap);
          expectMatchesModel(log, model, snap);
          expect(log.snapshot.meta.index).toBe(snap);
          expect(log.lastIndex()).toBe(lastIndex);
          expect(log.lastTerm()).toBe(lastTerm);
          const sliceAfter = log.slice(logIndex(lo), logIndex(hi), bytesMax);
          expectSameEntries(sliceAfter, sliceBefore);
          const upToDateAfter = [0, 1, 2, 3].map((d) =>
            log.isUpToDate(logIndex(lastIndex - 1 + d), term(lastTerm - 1 + (d % 2))),
          );
          expect(upToDateAfter).toEqual(upToDateBefore);
          expect(log.committed).toBe(s.committed);
          expect(log.applied).toBe(s.applied);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("then accepts appends that reach back into the compacted prefix like the full log would", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), (s, atPick) => {
        const { log, existing, incoming } = buildLog(s);
        const full = buildLog(s).log;
        const at = within(atPick, s.snap, s.applied);
        log.compactTo(snapshotAt(toModel(existing), at));
        const last = log.maybeAppend(logIndex(s.prevIndex), incoming);
        expect(last).toBe(full.maybeAppend(logIndex(s.prevIndex), incoming));
        const { result } = modelAppend(toModel(existing), toModel(incoming));
        expectMatchesModel(log, result, at);
        expect(toModel(held(log))).toEqual(toModel(held(full)).slice(at - s.snap));
      }),
      { numRuns: RUNS },
    );
  });

  it("refuses a snapshot whose term does not match the log, or beyond applied", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        fc.pre(s.applied > s.snap);
        const { log, existing } = buildLog(s);
        const model = toModel(existing);
        const wrong = snapshotAt(model, s.applied);
        const bad: Snapshot = { ...wrong, meta: { ...wrong.meta, term: term(wrong.meta.term + 1) } };
        expect(() => log.compactTo(bad)).toThrow(AssertionError);
        if (s.applied < existing.length) {
          expect(() => log.compactTo(snapshotAt(model, s.applied + 1))).toThrow(AssertionError);
        }
        expectMatchesModel(log, model, s.snap);
      }),
      { numRuns: 200 },
    );
  });
});

describe("RaftLog entries handed out", () => {
  it("never change, whatever the log does afterwards (truncate, append, compact, grow)", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), fc.nat({ max: 40 }), (s, atPick, more) => {
        const { log, existing, incoming } = buildLog(s);
        const handedOut = held(log);
        const copies = handedOut.map((e) => ({ ...e, data: e.data.slice() }));
        log.maybeAppend(logIndex(s.prevIndex), incoming);
        const afterAppend = held(log);
        const afterAppendCopies = afterAppend.map((e) => ({ ...e, data: e.data.slice() }));
        // Enough large entries to make the arena grow, then a compaction that moves what is left.
        const lastTerm = log.lastTerm();
        const grown = Array.from({ length: more }, (_, k) =>
          mkEntry(log.lastIndex() + 1 + k, lastTerm, 300 + k, 2),
        );
        log.append(grown);
        log.compactTo(snapshotAt(toModel(existing), within(atPick, s.snap, s.applied)));
        expect(handedOut).toEqual(copies);
        expect(afterAppend).toEqual(afterAppendCopies);
        // And the log still holds the grown entries as they were appended.
        if (more > 0) {
          const tail = log.slice(grown[0]!.index, logIndex(log.lastIndex() + 1), Number.POSITIVE_INFINITY);
          expectSameEntries(tail, grown);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe("RaftLog data copies", () => {
  it("keep an entry's bytes whatever the caller does to its buffer later, small or large, Buffer or not", () => {
    const log = new RaftLog(emptySnapshot(CONF), [], logIndex(0), logIndex(0));
    const small = Buffer.from([1, 2, 3]);
    const large = Buffer.alloc(10_000, 7);
    const plain = new Uint8Array(5_000).fill(9);
    log.append([mkEntry(1, 1, 0), { ...mkEntry(2, 1, 0), data: small }]);
    log.append([
      { ...mkEntry(3, 1, 0), data: large },
      { ...mkEntry(4, 1, 0), data: plain },
    ]);
    small.fill(0);
    large.fill(0);
    plain.fill(0);
    const held = log.slice(logIndex(1), logIndex(5), Number.POSITIVE_INFINITY);
    expect(held.map((e) => e.data.length)).toEqual([0, 3, 10_000, 5_000]);
    expect([...held[1]!.data]).toEqual([1, 2, 3]);
    expect(held[2]!.data.every((x) => x === 7)).toBe(true);
    expect(held[3]!.data.every((x) => x === 9)).toBe(true);
  });
});
