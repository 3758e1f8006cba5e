/**
 * The leader's checks of membership changes (member.ts proposeConfLocal),
 * in-process on one member with storage and transport stubs: every change is
 * checked against the leader's own member table before it is proposed, so a
 * change that raced another one through a different member is refused with
 * etcd's reason instead of undoing it (a removed member promoted back, two
 * learners, one peer URL twice). And a snapshot the transport refuses is
 * reported to Raft without being encoded again for every probe.
 */

import { afterEach, describe, expect, it } from "vitest";
import type { ConfChange } from "../../src/raft/index.ts";
import { bootstrapState, logIndex, memberId, term } from "../../src/raft/index.ts";
import { decodeEnvelope, encodeEnvelope } from "../../src/server/envelope.ts";
import { Member, MemberError } from "../../src/server/member.ts";
import { encodeMemberContext } from "../../src/state/index.ts";

const running: Member[] = [];
afterEach(() => {
  for (const m of running.splice(0)) m.stop();
});

async function leader(): Promise<Member> {
  const self = memberId(1);
  const m = new Member(
    { id: self, heartbeatMs: 10, electionMs: 100, snapshotCount: 1000, requestTimeoutMs: 2000 },
    bootstrapState([self], () => encodeMemberContext({ name: "a", peerUrls: ["http://h:1"] })),
    { save: () => {}, saveSnapshot: () => {} },
    { send: () => true },
  );
  running.push(m);
  m.start();
  m.raft.campaignNow();
  // A single voter wins at once; the no-op of its term commits with it.
  await m.read(true, () => undefined);
  return m;
}

const add = (id: number, url: string, learner = false): ConfChange => ({
  kind: learner ? "addLearner" : "addVoter",
  member: memberId(id),
  context: encodeMemberContext({ name: "", peerUrls: [url] }),
});
const promote = (id: number): ConfChange => ({
  kind: "addVoter",
  member: memberId(id),
  context: new Uint8Array(0),
});
const remove = (id: number): ConfChange => ({
  kind: "remove",
  member: memberId(id),
  context: new Uint8Array(0),
});

async function refusal(m: Member, cc: ConfChange): Promise<string> {
  try {
    await m.changeMembership(cc);
    return "accepted";
  } catch (e) {
    expect(e).toBeInstanceOf(MemberError);
    return (e as MemberError).code;
  }
}

describe("membership changes checked by the leader", () => {
  it("refuses what the member table forbids, with etcd's reasons", async () => {
    const m = await leader();
    await m.changeMembership(add(2, "http://h:2", true));
    expect(await refusal(m, add(3, "http://h:3", true))).toBe("tooManyLearners");
    expect(await refusal(m, add(4, "http://h:2"))).toBe("peerUrlExists");
    expect(await refusal(m, add(2, "http://h:9"))).toBe("memberExists");
    expect(await refusal(m, promote(9))).toBe("memberNotFound");
    expect(await refusal(m, promote(1))).toBe("memberNotLearner");
    // The learner has nothing of the log yet: not ready to vote.
    expect(await refusal(m, promote(2))).toBe("learnerNotReady");
    await m.changeMembership(remove(2));
    // Removed for good: neither promoted back nor added again under its id.
    expect(await refusal(m, promote(2))).toBe("memberNotFound");
    expect(await refusal(m, add(2, "http://h:2", true))).toBe("memberExists");
    expect(await refusal(m, remove(2))).toBe("memberNotFound");
    expect(m.machine.memberList().map((r) => r.id)).toEqual([1]);
    expect(m.raft.conf).toEqual({ voters: [1], learners: [] });
  });
});

describe("snapshots the transport refuses", () => {
  it("are reported to Raft and not encoded again for an election timeout", async () => {
    const self = memberId(1);
    let clock = 0;
    const snapshotsTried: number[] = [];
    const m = new Member(
      {
        id: self,
        heartbeatMs: 10,
        electionMs: 100,
        snapshotCount: 3,
        requestTimeoutMs: 2000,
        now: () => clock,
      },
      bootstrapState([self], () => encodeMemberContext({ name: "a", peerUrls: ["http://h:1"] })),
      { save: () => {}, saveSnapshot: () => {} },
      {
        send: (_to, payload) => {
          const e = decodeEnvelope(payload);
          if (e.kind !== "raft" || e.message.type !== "snap") return true;
          snapshotsTried.push(clock);
          return false; // e.g. larger than a peer message may be
        },
      },
    );
    running.push(m);
    m.start();
    m.raft.campaignNow();
    await m.read(true, () => undefined);
    await m.changeMembership(add(2, "http://h:2", true));
    for (let i = 0; i < 5; i++)
      await m.write({ type: "put", request: { key: bytes(`k${i}`), value: bytes("v") } });
    expect(m.raft.log.snapshot.meta.index).toBeGreaterThan(0); // compacted: the learner needs a snapshot
    // The learner says it has nothing: the leader must send a snapshot, which the transport refuses.
    const reject = (): void =>
      m.receive(
        memberId(2),
        encodeEnvelope({
          kind: "raft",
          sentAt: 0,
          echo: -1,
          message: {
            type: "appResp",
            from: memberId(2),
            to: self,
            term: m.raft.term,
            reject: true,
            index: logIndex(m.raft.progress(memberId(2))!.next - 1), // the probe it answers
            hintIndex: logIndex(0),
            hintTerm: term(0),
          },
        }),
      );
    reject();
    await m.read(true, () => undefined);
    expect(snapshotsTried).toEqual([0]);
    reject(); // within the election timeout: reported, not encoded again
    await m.read(true, () => undefined);
    expect(snapshotsTried).toEqual([0]);
    clock = 150;
    reject();
    await m.read(true, () => undefined);
    expect(snapshotsTried).toEqual([0, 150]);
  });
});

const bytes = (s: string) => new TextEncoder().encode(s);
