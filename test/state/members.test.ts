/**
 * The replicated member table: conf changes with their contexts, publish and
 * update commands, removed ids, agreement with Raft's ConfState rule, and the
 * round trip through the machine's snapshot.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ConfChange, ConfState } from "../../src/raft/index.ts";
import { applyConfChange, memberId } from "../../src/raft/index.ts";
import {
  decodeCommand,
  decodeMemberContext,
  encodeCommand,
  encodeMemberContext,
  MemberTable,
  StateMachine,
  tryDecodeCommand,
} from "../../src/state/index.ts";

const ctx = (name: string, ...peerUrls: string[]) => encodeMemberContext({ name, peerUrls });
const none = new Uint8Array(0);
const add = (id: number, context: Uint8Array = none): ConfChange => ({
  kind: "addVoter",
  member: memberId(id),
  context,
});
const learner = (id: number, context: Uint8Array = none): ConfChange => ({
  kind: "addLearner",
  member: memberId(id),
  context,
});
const remove = (id: number): ConfChange => ({ kind: "remove", member: memberId(id), context: none });

describe("MemberTable", () => {
  it("adds members with the name and peer URLs of the change's context", () => {
    const t = new MemberTable();
    t.applyConfChange(add(2, ctx("b", "http://127.0.0.1:2")));
    t.applyConfChange(add(1, ctx("a", "http://127.0.0.1:1")));
    expect(t.list()).toEqual([
      { id: 1, name: "a", peerUrls: ["http://127.0.0.1:1"], clientUrls: [], isLearner: false },
      { id: 2, name: "b", peerUrls: ["http://127.0.0.1:2"], clientUrls: [], isLearner: false },
    ]);
  });

  it("promotes a learner without losing its name and URLs, and never demotes a voter", () => {
    const t = new MemberTable();
    t.applyConfChange(add(1, ctx("a", "http://h:1")));
    t.applyConfChange(learner(7, ctx("", "http://h:7")));
    expect(t.publish(memberId(7), "g", ["http://h:17"])).toBe(true);
    t.applyConfChange(add(7));
    expect(t.get(memberId(7))).toEqual({
      id: 7,
      name: "g",
      peerUrls: ["http://h:7"],
      clientUrls: ["http://h:17"],
      isLearner: false,
    });
    t.applyConfChange(learner(7));
    expect(t.get(memberId(7))?.isLearner).toBe(false);
  });

  it("remembers removed ids and never removes the last voter", () => {
    const t = new MemberTable();
    t.applyConfChange(add(1));
    t.applyConfChange(add(2));
    t.applyConfChange(remove(2));
    expect(t.isRemoved(2)).toBe(true);
    expect(t.get(memberId(2))).toBeUndefined();
    t.applyConfChange(remove(1));
    expect(t.get(memberId(1))).toBeDefined();
    expect(t.isRemoved(1)).toBe(false);
    expect(t.publish(memberId(2), "x", [])).toBe(false);
    expect(t.update(memberId(2), ["http://h:9"])).toBe(false);
  });

  it("agrees with Raft's ConfState on who votes and who learns, for any sequence of changes", () => {
    const change = fc.record({
      kind: fc.constantFrom("addVoter", "addLearner", "remove"),
      member: fc.integer({ min: 1, max: 5 }),
    });
    fc.assert(
      fc.property(fc.array(change, { maxLength: 30 }), (changes) => {
        const t = new MemberTable();
        let conf: ConfState = { voters: [], learners: [] };
        for (const c of changes) {
          const cc = { kind: c.kind, member: memberId(c.member), context: none } as ConfChange;
          conf = applyConfChange(conf, cc);
          t.applyConfChange(cc);
        }
        const list = t.list();
        expect(list.filter((m) => !m.isLearner).map((m) => m.id)).toEqual(conf.voters);
        expect(list.filter((m) => m.isLearner).map((m) => m.id)).toEqual(conf.learners);
      }),
    );
  });

  it("reads an empty or malformed context as no context", () => {
    expect(decodeMemberContext(none)).toBeUndefined();
    expect(decodeMemberContext(new TextEncoder().encode("{nope"))).toBeUndefined();
    expect(decodeMemberContext(new TextEncoder().encode('{"name":3,"peerUrls":[1]}'))).toEqual({
      name: "",
      peerUrls: [],
    });
  });
});

describe("member commands in the state machine", () => {
  it("publish and update change the table, survive a snapshot, and fail for a stranger", () => {
    const m = new StateMachine();
    m.applyConfChange(1, add(1, ctx("a", "http://h:1")));
    m.applyConfChange(2, learner(2, ctx("", "http://h:2")));
    const pub = m.apply(
      3,
      encodeCommand({ type: "memberPublish", member: 2, name: "b", clientUrls: ["http://h:12"] }),
    );
    expect(pub.result.kind).toBe("member");
    const upd = m.apply(4, encodeCommand({ type: "memberUpdate", member: 1, peerUrls: ["http://h:11"] }));
    expect(upd.result.kind).toBe("member");
    const stranger = m.apply(
      5,
      encodeCommand({ type: "memberPublish", member: 9, name: "z", clientUrls: [] }),
    );
    expect(stranger.result).toMatchObject({ kind: "failed", error: "memberNotFound" });
    m.applyConfChange(6, remove(2));
    const restored = StateMachine.restore(m.snapshot());
    expect(restored.memberList()).toEqual(m.memberList());
    expect(restored.memberList()).toEqual([
      { id: 1, name: "a", peerUrls: ["http://h:11"], clientUrls: [], isLearner: false },
    ]);
    expect(restored.memberRemoved(2)).toBe(true);
    expect(restored.appliedIndex()).toBe(6);
  });

  it("round-trips the member commands and rejects malformed ones by field", () => {
    const pub = { type: "memberPublish", member: 5, name: "e", clientUrls: ["http://h:1"] } as const;
    expect(decodeCommand(encodeCommand(pub))).toEqual(pub);
    const upd = { type: "memberUpdate", member: 5, peerUrls: ["http://h:2"] } as const;
    expect(decodeCommand(encodeCommand(upd))).toEqual(upd);
    const bad = (json: string) => {
      const r = tryDecodeCommand(new TextEncoder().encode(json));
      return r.ok ? "decoded" : r.error.path;
    };
    expect(bad('{"v":1,"type":"memberPublish","member":0,"name":"e","clientUrls":[]}')).toBe("$.member");
    expect(bad('{"v":1,"type":"memberPublish","member":1,"name":7,"clientUrls":[]}')).toBe("$.name");
    expect(bad('{"v":1,"type":"memberUpdate","member":1,"peerUrls":"x"}')).toBe("$.peerUrls");
    expect(
      bad('{"v":1,"type":"memberUpdate","member":1,"peerUrls":[],"session":{"clientId":"c","seq":1}}'),
    ).toBe("$.session");
  });
});
