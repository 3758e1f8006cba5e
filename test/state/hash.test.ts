/**
 * What Maintenance.Hash / HashKV / Status and `snapshot restore` read from
 * the state machine: CRC-32C, the key space's hash at a revision (equal on
 * replicas that applied the same commands, stable for a past revision,
 * etcd's errors at the edges), the whole-state hash (blind to the applied
 * index), the quota's size (grows with writes, shrinks with compaction,
 * survives a snapshot), and the restore of a snapshot as a new cluster.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { memberId } from "../../src/raft/index.ts";
import type { Command } from "../../src/state/command.ts";
import { encodeCommand } from "../../src/state/command.ts";
import { Crc32cWriter, crc32c, crc32cUpdate } from "../../src/state/crc32c.ts";
import { StateMachine } from "../../src/state/machine.ts";
import { encodeMemberContext } from "../../src/state/members.ts";
import { MVCC_CHANGE_OVERHEAD_BYTES } from "../../src/state/mvcc.ts";
import { leaseId, NO_LEASE, revision } from "../../src/state/types.ts";

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

function applyAll(cmds: readonly Command[], m = new StateMachine()): StateMachine {
  let i = m.appliedIndex();
  for (const c of cmds) m.apply(++i, encodeCommand(c));
  return m;
}

const put = (key: string, value = "v", lease = NO_LEASE): Command => ({
  type: "put",
  request: { key: b(key), value: b(value), lease },
});
const del = (key: string): Command => ({ type: "deleteRange", request: { key: b(key) } });
const compact = (rev: number): Command => ({ type: "compact", revision: revision(rev) });

function hashAt(m: StateMachine, rev: number): number | string {
  const r = m.hashKv(revision(rev));
  return r.ok ? r.hash : r.error;
}

describe("crc32c", () => {
  it("is CRC-32C (RFC 3720's check value) and composes", () => {
    expect(crc32c(b("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32cUpdate(crc32c(b("1234")), b("56789"))).toBe(0xe3069283);
    // Length-prefixed bytes: "ab"+"c" and "a"+"bc" hash differently.
    expect(new Crc32cWriter().bytes(b("ab")).bytes(b("c")).value()).not.toBe(
      new Crc32cWriter().bytes(b("a")).bytes(b("bc")).value(),
    );
  });
});

describe("hashKv", () => {
  const history: Command[] = [put("a", "1"), put("b", "2"), put("a", "3"), del("b"), put("c", "4")];

  it("is equal on replicas that applied the same commands, and differs when one value differs", () => {
    const one = applyAll(history);
    const two = applyAll(history);
    const other = applyAll([...history.slice(0, 4), put("c", "5")]);
    expect(hashAt(one, 0)).toBe(hashAt(two, 0));
    expect(hashAt(one, 0)).not.toBe(hashAt(other, 0));
    // Same final key space, different history: HashKV covers the history too.
    expect(hashAt(applyAll([put("c", "4")]), 0)).not.toBe(hashAt(one, 0));
    // ...but a restored replica is the same replica.
    expect(hashAt(StateMachine.restore(one.snapshot()), 0)).toBe(hashAt(one, 0));
  });

  it("of a past revision does not change with later writes; 0 is the current revision", () => {
    const m = applyAll(history.slice(0, 3));
    const at4 = hashAt(m, 4);
    expect(hashAt(m, 0)).toBe(at4);
    applyAll(history.slice(3), m);
    expect(hashAt(m, 4)).toBe(at4);
    expect(hashAt(m, 0)).not.toBe(at4);
    expect(hashAt(m, 3)).not.toBe(at4);
    const r = m.hashKv(revision(0));
    expect(r).toMatchObject({ ok: true, revision: 6, currentRevision: 6, compactRevision: -1 });
  });

  it("answers etcd's errors: compacted at or below the compacted revision, future above the current one", () => {
    const m = applyAll([...history, compact(4)]);
    expect(hashAt(m, 4)).toBe("compacted");
    expect(hashAt(m, 3)).toBe("compacted");
    expect(typeof hashAt(m, 5)).toBe("number");
    expect(hashAt(m, 6)).toBe(hashAt(m, 0));
    expect(hashAt(m, 7)).toBe("futureRevision");
    expect(m.hashKv(revision(0))).toMatchObject({ ok: true, compactRevision: 4 });
  });

  it("ignores failed commands and no-ops (the fuzz test's 'state unchanged' check)", () => {
    const m = applyAll(history);
    const before = hashAt(m, 0);
    const stateBefore = m.stateHash();
    let i = m.appliedIndex();
    m.apply(++i, new Uint8Array(0));
    m.apply(++i, b("{not json"));
    m.apply(++i, encodeCommand(put("x", "y", leaseId(99n)))); // lease not found
    m.apply(++i, encodeCommand(compact(100))); // future revision
    m.apply(++i, encodeCommand(del("nothing")));
    expect(hashAt(m, 0)).toBe(before);
    expect(m.stateHash()).toBe(stateBefore);
    m.apply(++i, encodeCommand(put("x", "y")));
    expect(hashAt(m, 0)).not.toBe(before);
    expect(m.stateHash()).not.toBe(stateBefore);
  });
});

describe("stateHash", () => {
  it("covers leases and alarms as well as the key space", () => {
    const m = applyAll([put("a")]);
    const h0 = m.stateHash();
    applyAll([{ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 30 }], m);
    const h1 = m.stateHash();
    expect(h1).not.toBe(h0);
    applyAll([{ type: "alarm", action: "activate", member: 1n, alarm: "nospace" }], m);
    expect(m.stateHash()).not.toBe(h1);
    expect(hashAt(m, 0)).toBe(hashAt(applyAll([put("a")]), 0));
  });
});

describe("sizeBytes (what the space quota counts)", () => {
  it("adds key, value and the overhead per kept change, gives history back at compaction, and survives a snapshot", () => {
    const m = new StateMachine();
    expect(m.sizeBytes()).toBe(0);
    applyAll([put("key", "value")], m);
    const one = 3 + 5 + MVCC_CHANGE_OVERHEAD_BYTES;
    expect(m.sizeBytes()).toBe(one);
    applyAll([put("key", "value")], m);
    expect(m.sizeBytes()).toBe(2 * one);
    applyAll([del("key")], m); // a tombstone: key and overhead
    expect(m.sizeBytes()).toBe(2 * one + 3 + MVCC_CHANGE_OVERHEAD_BYTES);
    applyAll([{ type: "leaseGrant", id: leaseId(3n), ttlSeconds: 30 }], m);
    expect(m.sizeBytes()).toBe(2 * one + 3 + MVCC_CHANGE_OVERHEAD_BYTES + 64);
    expect(StateMachine.restore(m.snapshot()).sizeBytes()).toBe(m.sizeBytes());
    // A compaction keeps what a read at its revision sees: the version before a tombstone at it too.
    applyAll([compact(m.currentRevision())], m);
    expect(m.sizeBytes()).toBe(one + 3 + MVCC_CHANGE_OVERHEAD_BYTES + 64);
    applyAll([put("z", "")], m);
    applyAll([compact(m.currentRevision())], m);
    expect(m.sizeBytes()).toBe(1 + MVCC_CHANGE_OVERHEAD_BYTES + 64); // "key" is gone for good
  });

  it("equals the sum over what is kept, whatever the commands (the store's invariant check recounts it)", () => {
    const cmd = fc.oneof(
      fc
        .record({ k: fc.constantFrom("a", "b", "c"), v: fc.string({ maxLength: 4 }) })
        .map(({ k, v }) => put(k, v)),
      fc.constantFrom("a", "b", "c").map(del),
      fc.nat({ max: 12 }).map(compact),
    );
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 30 }), (cmds) => {
        const m = applyAll(cmds);
        const restored = StateMachine.restore(m.snapshot()); // restore runs the MVCC invariant check
        expect(restored.sizeBytes()).toBe(m.sizeBytes());
        expect(hashAt(restored, 0)).toBe(hashAt(m, 0));
      }),
      { numRuns: 200 },
    );
  });
});

describe("restoreAsNewCluster (etcd snapshot restore)", () => {
  it("keeps the key space, leases with their full TTL and alarms; drops the old members and sessions", () => {
    const old = new StateMachine();
    let i = 0;
    const run = (c: Command) => old.apply(++i, encodeCommand(c));
    run({ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 30 });
    run(put("held", "x", leaseId(7n)));
    run({
      type: "leaseCheckpoint",
      checkpoints: [{ id: leaseId(7n), remainingTtlSeconds: 5, grantIndex: 1 }],
    });
    run({ type: "put", request: { key: b("s"), value: b("1") }, session: { clientId: "c1", seq: 1 } });
    run({ type: "alarm", action: "activate", member: 99n, alarm: "nospace" });
    expect(old.lease(leaseId(7n))?.remainingTtlSeconds).toBe(5);
    expect(old.sessionCount()).toBe(1);

    const founders = [2, 1].map((id) => ({
      kind: "addVoter" as const,
      member: memberId(id),
      context: encodeMemberContext({ name: `m${id}`, peerUrls: [`http://h:${id}`] }),
    }));
    const m = StateMachine.restoreAsNewCluster(old.snapshot(), founders);
    expect(m.appliedIndex()).toBe(2);
    expect(hashAt(m, 0)).toBe(hashAt(old, 0));
    expect(m.lease(leaseId(7n))).toEqual({ id: 7n, ttlSeconds: 30, remainingTtlSeconds: 30, grantIndex: 2 });
    expect(m.leaseTimeToLive(leaseId(7n), { keys: true })?.keys).toEqual([b("held")]);
    expect(m.sessionCount()).toBe(0);
    expect(m.alarmList()).toEqual([{ member: 99n, alarm: "nospace" }]);
    expect(m.memberList().map((r) => [r.id, r.name, r.peerUrls])).toEqual([
      [1, "m1", ["http://h:1"]],
      [2, "m2", ["http://h:2"]],
    ]);
    // The result is an ordinary state: it applies the next index.
    expect(
      m.apply(3, encodeCommand({ type: "alarm", action: "deactivate", member: 99n, alarm: "nospace" }))
        .result,
    ).toMatchObject({ kind: "alarm" });
    expect(m.apply(4, encodeCommand(put("new"))).result.kind).toBe("put");
  });
});
