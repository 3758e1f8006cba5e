/**
 * Property tests of the majority math (src/raft/quorum.ts) against a brute-force
 * model: a quorum of n voters is any floor(n/2)+1 of them (Raft §5.2, §5.3), and
 * the commit index is the highest index such a quorum has matched.
 *
 * Contract: the model counts, it never sorts, so it shares no trick with the
 * code under test.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { committedIndex, hasQuorum, voteOutcome } from "../../src/raft/quorum.ts";
import type { LogIndex, MemberId } from "../../src/raft/types.ts";
import { logIndex, memberId } from "../../src/raft/types.ts";

const RUNS = 500;

/** The number of voters that make a majority of `n`. */
function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** How many of `values` are at least `i`. */
function countAtLeast(values: readonly number[], i: number): number {
  return values.filter((v) => v >= i).length;
}

/** The model: the largest candidate index that a majority has matched (0 if none). */
function modelCommitted(values: readonly number[]): number {
  let best = 0;
  for (const candidate of values) {
    if (candidate > best && countAtLeast(values, candidate) >= majority(values.length)) best = candidate;
  }
  return best;
}

/** 1..9 distinct voters (an odd and an even cluster size both occur often). */
const votersArb: fc.Arbitrary<MemberId[]> = fc
  .uniqueArray(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 9 })
  .map((ids) => ids.map(memberId));

/** Voters with a match index each, aligned by position. */
const matchedArb = votersArb.chain((voters) =>
  fc.record({
    voters: fc.constant(voters),
    matches: fc.array(fc.nat({ max: 30 }), { minLength: voters.length, maxLength: voters.length }),
  }),
);

/** A lookup in the shape committedIndex takes; a non-voter is never asked about. */
function matchFn(voters: readonly MemberId[], matches: readonly number[]): (id: MemberId) => LogIndex {
  const byId = new Map(voters.map((v, i) => [v, logIndex(matches[i]!)] as const));
  return (id) => {
    const m = byId.get(id);
    if (m === undefined) throw new Error(`committedIndex asked about non-voter ${id}`);
    return m;
  };
}

describe("committedIndex", () => {
  it("is the largest index that a majority of voters has matched", () => {
    fc.assert(
      fc.property(matchedArb, ({ voters, matches }) => {
        expect(committedIndex(voters, matchFn(voters, matches))).toBe(modelCommitted(matches));
      }),
      { numRuns: RUNS },
    );
  });

  it("is held by a majority, and the next index is not", () => {
    fc.assert(
      fc.property(matchedArb, ({ voters, matches }) => {
        const c = committedIndex(voters, matchFn(voters, matches));
        const q = majority(voters.length);
        expect(countAtLeast(matches, c)).toBeGreaterThanOrEqual(q);
        expect(countAtLeast(matches, c + 1)).toBeLessThan(q);
        // Never beyond what the voters hold at all.
        expect(c).toBeLessThanOrEqual(Math.max(...matches));
      }),
      { numRuns: RUNS },
    );
  });

  it("does not depend on the order of the voters", () => {
    fc.assert(
      fc.property(matchedArb, fc.nat(), ({ voters, matches }, rot) => {
        const k = rot % voters.length;
        const rotV = [...voters.slice(k), ...voters.slice(0, k)];
        const rotM = [...matches.slice(k), ...matches.slice(0, k)];
        const reversedV = voters.slice().reverse();
        const reversedM = matches.slice().reverse();
        const c = committedIndex(voters, matchFn(voters, matches));
        expect(committedIndex(rotV, matchFn(rotV, rotM))).toBe(c);
        expect(committedIndex(reversedV, matchFn(reversedV, reversedM))).toBe(c);
      }),
      { numRuns: RUNS },
    );
  });

  it("is monotonic in each voter's match index", () => {
    fc.assert(
      fc.property(matchedArb, fc.nat(), fc.nat({ max: 30 }), ({ voters, matches }, pick, bump) => {
        const who = pick % voters.length;
        const raised = matches.slice();
        raised[who] = raised[who]! + bump;
        const before = committedIndex(voters, matchFn(voters, matches));
        const after = committedIndex(voters, matchFn(voters, raised));
        expect(after).toBeGreaterThanOrEqual(before);
        // One voter moving can move the commit index at most up to its own new match.
        if (after > before) expect(after).toBeLessThanOrEqual(raised[who]!);
      }),
      { numRuns: RUNS },
    );
  });

  it("is 0 for an empty voter set and the voter's own match for a single voter", () => {
    expect(committedIndex([], () => logIndex(7))).toBe(0);
    fc.assert(
      fc.property(fc.nat({ max: 1000 }), (m) => {
        expect(committedIndex([memberId(1)], () => logIndex(m))).toBe(m);
      }),
    );
  });
});

/** Voters plus a vote map that may hold votes from non-voters (which must not count). */
const votesArb = votersArb.chain((voters) =>
  fc.record({
    voters: fc.constant(voters),
    // Per voter: no answer yet, granted, or rejected.
    answers: fc.array(fc.constantFrom<boolean | undefined>(undefined, true, false), {
      minLength: voters.length,
      maxLength: voters.length,
    }),
    strangers: fc.array(fc.tuple(fc.integer({ min: 41, max: 60 }), fc.boolean()), { maxLength: 5 }),
  }),
);

describe("voteOutcome", () => {
  it("is won iff a majority granted, lost iff a majority rejected, pending otherwise", () => {
    fc.assert(
      fc.property(votesArb, ({ voters, answers, strangers }) => {
        const votes = new Map<MemberId, boolean>();
        for (const [id, granted] of strangers) votes.set(memberId(id), granted);
        voters.forEach((v, i) => {
          const a = answers[i];
          if (a !== undefined) votes.set(v, a);
        });
        const q = majority(voters.length);
        const granted = answers.filter((a) => a === true).length;
        const rejected = answers.filter((a) => a === false).length;
        // Never both: two majorities of the same voters would have to share a voter.
        expect(granted >= q && rejected >= q).toBe(false);
        const expected = granted >= q ? "won" : rejected >= q ? "lost" : "pending";
        expect(voteOutcome(voters, votes)).toBe(expected);
      }),
      { numRuns: RUNS },
    );
  });

  it("stays decided once decided: more answers never flip won and lost", () => {
    fc.assert(
      fc.property(votesArb, fc.boolean(), ({ voters, answers }, fill) => {
        const votes = new Map<MemberId, boolean>();
        voters.forEach((v, i) => {
          const a = answers[i];
          if (a !== undefined) votes.set(v, a);
        });
        const before = voteOutcome(voters, votes);
        // Everyone who had not answered now answers `fill`.
        for (const v of voters) if (!votes.has(v)) votes.set(v, fill);
        const after = voteOutcome(voters, votes);
        if (before !== "pending") expect(after).toBe(before);
        // With every voter answered, only an even split (possible for an even n) is undecided.
        if (voters.length % 2 === 1) expect(after).not.toBe("pending");
      }),
      { numRuns: RUNS },
    );
  });

  it("is pending with no votes at all", () => {
    fc.assert(
      fc.property(votersArb, (voters) => {
        expect(voteOutcome(voters, new Map())).toBe("pending");
      }),
      { numRuns: 50 },
    );
  });
});

describe("hasQuorum", () => {
  it("is true iff at least a majority of voters acked, whatever non-voters did", () => {
    fc.assert(
      fc.property(
        votersArb.chain((voters) =>
          fc.record({
            voters: fc.constant(voters),
            acks: fc.array(fc.boolean(), { minLength: voters.length, maxLength: voters.length }),
          }),
        ),
        ({ voters, acks }) => {
          const acked = new Set(voters.filter((_, i) => acks[i]));
          const count = acks.filter((a) => a).length;
          expect(hasQuorum(voters, (id) => acked.has(id))).toBe(count >= majority(voters.length));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("agrees with committedIndex: a quorum holding index i means commit >= i", () => {
    fc.assert(
      fc.property(matchedArb, fc.nat({ max: 31 }), ({ voters, matches }, i) => {
        const byId = new Map(voters.map((v, k) => [v, matches[k]!] as const));
        const quorumAtI = hasQuorum(voters, (id) => byId.get(id)! >= i);
        expect(quorumAtI).toBe(committedIndex(voters, matchFn(voters, matches)) >= i);
      }),
      { numRuns: RUNS },
    );
  });

  it("is false for an empty voter set", () => {
    expect(hasQuorum([], () => true)).toBe(false);
  });
});
