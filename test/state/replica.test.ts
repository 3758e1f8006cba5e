/**
 * The replica layer on its own, with a scripted Raft view and clock: when the
 * lessor takes up and drops its duties, keepalives answered from memory (and
 * refused by a follower or during a transfer), expiry proposals on tick, and
 * keepalives that wait for a checkpoint reset (lessor rule K2).
 */

import { describe, expect, it } from "vitest";
import type { MemberId } from "../../src/raft/index.ts";
import { memberId, NO_MEMBER } from "../../src/raft/index.ts";
import type { Command, KeepAliveAnswer, RaftView } from "../../src/state/index.ts";
import { encodeCommand, Lessor, leaseId, Replica } from "../../src/state/index.ts";

class FakeRaft implements RaftView {
  role = "follower";
  term = 1;
  lead: MemberId = NO_MEMBER;
  leadTransferee: MemberId = NO_MEMBER;
  last = 0;
  log = { lastIndex: () => this.last, applied: 0 };
}

function setup(checkpointIntervalMs = 300_000) {
  const raft = new FakeRaft();
  const proposed: Command[] = [];
  let accept = true;
  const replica = new Replica({
    machine: { minLeaseTtlSeconds: 1 },
    lessor: new Lessor({ electionTimeoutMs: 100, checkpointIntervalMs, revokeRetryMs: 500 }),
    propose: (c) => {
      if (accept) proposed.push(c);
      return accept;
    },
  });
  let index = 0;
  const apply = (c: Command, now: number) => {
    index++;
    raft.last = Math.max(raft.last, index);
    raft.log.applied = index;
    return replica.apply(index, encodeCommand(c), now);
  };
  const lead = (now: number) => {
    raft.role = "leader";
    raft.term++;
    raft.lead = memberId(1);
    raft.last = index + 1; // the new leader's empty entry
    return replica.syncLeadership(raft, now);
  };
  const keepAlive = (id: bigint, now: number) => {
    const answers: KeepAliveAnswer[] = [];
    replica.keepAlive(raft, leaseId(id), now, (a) => answers.push(a));
    return answers;
  };
  /** Leads, applies its own first entry, and takes up the lease duties. */
  const takeOver = (now: number) => {
    lead(now);
    raft.log.applied = raft.last;
    replica.syncLeadership(raft, now);
  };
  return { raft, replica, proposed, apply, lead, takeOver, keepAlive, refuse: () => (accept = false) };
}

describe("Replica", () => {
  it("takes up lease duties only after applying its first entry of the term, drops them on losing it", () => {
    const t = setup();
    t.apply({ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 2 }, 0);
    expect(t.lead(10)).toBeUndefined(); // its empty entry is not applied yet
    expect(t.keepAlive(7n, 10)).toEqual([{ kind: "notLeader", leader: 1 }]);
    t.raft.log.applied = t.raft.last;
    expect(t.replica.syncLeadership(t.raft, 20)).toBe("tookOver");
    expect(t.keepAlive(7n, 30)).toEqual([{ kind: "ttl", ttlSeconds: 2 }]);
    t.raft.role = "follower";
    expect(t.replica.syncLeadership(t.raft, 40)).toBe("steppedDown");
    expect(t.keepAlive(7n, 50)).toEqual([{ kind: "notLeader", leader: 1 }]);
  });

  it("answers TTL 0 for an unknown lease, and nothing during a leadership transfer", () => {
    const t = setup();
    t.takeOver(0);
    expect(t.keepAlive(99n, 1)).toEqual([{ kind: "ttl", ttlSeconds: 0 }]);
    t.raft.leadTransferee = memberId(2);
    expect(t.keepAlive(99n, 2)).toEqual([{ kind: "notLeader", leader: 1 }]);
  });

  it("proposes the expiry of a lease whose deadline passed, in one batch", () => {
    const t = setup();
    t.takeOver(0);
    t.apply({ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 1 }, 100);
    t.apply({ type: "leaseGrant", id: leaseId(8n), ttlSeconds: 1 }, 100);
    t.replica.tick(1099);
    expect(t.proposed).toEqual([]);
    t.replica.tick(1100);
    expect(t.proposed).toHaveLength(1);
    const c = t.proposed[0]!;
    expect(c.type === "leaseExpire" && c.leases.map((l) => l.id)).toEqual([7n, 8n]);
    expect(t.keepAlive(7n, 1101)).toEqual([{ kind: "ttl", ttlSeconds: 0 }]);
  });

  it("holds a keepalive until the checkpoint reset it proposed is applied (K2)", () => {
    const t = setup(1_000);
    t.takeOver(0);
    t.apply({ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 3 }, 0);
    // One second in, a reduced checkpoint (2 s left) is due and proposed.
    t.replica.tick(1_000);
    const reduced = t.proposed.pop()!;
    expect(reduced).toEqual({
      type: "leaseCheckpoint",
      checkpoints: [{ id: 7n, grantIndex: 1, remainingTtlSeconds: 2 }],
    });
    t.apply(reduced, 1_010);
    // Now a keepalive must wait for a reset (3 s) to commit; it proposes it once.
    expect(t.keepAlive(7n, 1_100)).toEqual([]);
    const reset = t.proposed.pop()!;
    expect(reset).toEqual({
      type: "leaseCheckpoint",
      checkpoints: [{ id: 7n, grantIndex: 1, remainingTtlSeconds: 3 }],
    });
    expect(t.replica.waitingKeepAlives()).toBe(1);
    const answers: KeepAliveAnswer[] = [];
    t.replica.keepAlive(t.raft, leaseId(7n), 1_150, (a) => answers.push(a));
    expect(t.proposed).toEqual([]); // the reset is already in flight
    t.apply(reset, 1_200);
    expect(answers).toEqual([{ kind: "ttl", ttlSeconds: 3 }]);
    expect(t.replica.waitingKeepAlives()).toBe(0);
  });

  it("answers waiting keepalives notLeader when it steps down, TTL 0 when the lease is revoked", () => {
    const t = setup(1_000);
    t.takeOver(0);
    t.apply({ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 3 }, 0);
    t.apply({ type: "leaseGrant", id: leaseId(8n), ttlSeconds: 3 }, 0);
    t.replica.tick(1_000);
    t.apply(t.proposed.pop()!, 1_010);
    const a7: KeepAliveAnswer[] = [];
    const a8: KeepAliveAnswer[] = [];
    t.replica.keepAlive(t.raft, leaseId(7n), 1_100, (a) => a7.push(a));
    t.replica.keepAlive(t.raft, leaseId(8n), 1_100, (a) => a8.push(a));
    t.apply({ type: "leaseRevoke", id: leaseId(7n) }, 1_150);
    expect(a7).toEqual([{ kind: "ttl", ttlSeconds: 0 }]);
    t.raft.role = "follower";
    t.replica.syncLeadership(t.raft, 1_200);
    expect(a8).toEqual([{ kind: "notLeader", leader: 1 }]);
  });

  it("answers notLeader when Raft refuses the checkpoint reset a keepalive needs", () => {
    const t = setup(1_000);
    t.takeOver(0);
    t.apply({ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 3 }, 0);
    t.replica.tick(1_000);
    t.apply(t.proposed.pop()!, 1_010);
    t.refuse();
    expect(t.keepAlive(7n, 1_100)).toEqual([{ kind: "notLeader", leader: 1 }]);
    expect(t.replica.waitingKeepAlives()).toBe(0);
  });

  it("restores a snapshot into a new key space with a new watch hub", () => {
    const t = setup();
    t.apply({ type: "put", request: { key: new TextEncoder().encode("a"), value: new Uint8Array([1]) } }, 0);
    const data = t.replica.machine.snapshot();
    const hub = t.replica.hub;
    t.replica.restore(data);
    expect(t.replica.hub).not.toBe(hub);
    expect(t.replica.machine.currentRevision()).toBe(2);
    t.replica.restore(new Uint8Array(0));
    expect(t.replica.machine.currentRevision()).toBe(1);
  });
});
