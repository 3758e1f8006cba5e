/**
 * The leader's real-time quorum check before it answers keepalives: a quorum
 * of voters (itself included) must have spoken in its current term within
 * one election timeout of the monotonic clock, however late the ticks are.
 */

import { describe, expect, it } from "vitest";
import { memberId } from "../../src/raft/index.ts";
import { QuorumContact } from "../../src/server/quorum-contact.ts";

const [a, b, c, d, e] = [1, 2, 3, 4, 5].map(memberId) as [
  ReturnType<typeof memberId>,
  ReturnType<typeof memberId>,
  ReturnType<typeof memberId>,
  ReturnType<typeof memberId>,
  ReturnType<typeof memberId>,
];
const ELECTION_MS = 1000;

describe("QuorumContact", () => {
  it("a single voter is its own quorum", () => {
    expect(new QuorumContact().hasQuorum(a, [a], 3, 1e9, ELECTION_MS)).toBe(true);
  });

  it("needs a majority heard within the window, counting itself", () => {
    const q = new QuorumContact();
    expect(q.hasQuorum(a, [a, b, c], 2, 0, ELECTION_MS)).toBe(false);
    q.note(b, 2, 100);
    expect(q.hasQuorum(a, [a, b, c], 2, 100 + ELECTION_MS, ELECTION_MS)).toBe(true);
    // A stall: no tick and no message for longer than the election timeout.
    expect(q.hasQuorum(a, [a, b, c], 2, 101 + ELECTION_MS, ELECTION_MS)).toBe(false);
    q.note(c, 2, 5000);
    expect(q.hasQuorum(a, [a, b, c], 2, 5500, ELECTION_MS)).toBe(true);
  });

  it("does not count messages of another term, nor members outside the voters", () => {
    const q = new QuorumContact();
    q.note(b, 1, 100);
    q.note(c, 1, 100);
    expect(q.hasQuorum(a, [a, b, c], 2, 200, ELECTION_MS)).toBe(false);
    q.note(d, 2, 150);
    q.note(e, 2, 150);
    expect(q.hasQuorum(a, [a, b, c], 2, 200, ELECTION_MS)).toBe(false);
    expect(q.hasQuorum(a, [a, b, c, d, e], 2, 200, ELECTION_MS)).toBe(true);
  });
});
