/**
 * The order in which a member writes and sends (member.ts processReady),
 * in-process with recording storage and transport stubs:
 * - a candidate's vote requests leave only after its term and vote are on
 *   disk (the Ready contract);
 * - a leader's appends leave BEFORE its own write of the same entries, and
 *   the transport is told to write them out first (Raft thesis §10.2.1), so
 *   the followers' writes overlap the leader's;
 * - an entry commits with one follower's ack and the leader's own written
 *   copy (a quorum of three), not before the ack.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import type { Entry, HardState, Message, Snapshot } from "../../src/raft/index.ts";
import { bootstrapState, logIndex, memberId, term } from "../../src/raft/index.ts";
import { decodeEnvelope, encodeEnvelope } from "../../src/server/envelope.ts";
import { Member } from "../../src/server/member.ts";
import { leaseId } from "../../src/state/index.ts";

const running: Member[] = [];
afterEach(() => {
  for (const m of running.splice(0)) m.stop();
});

type Event =
  | { readonly what: "save"; readonly hard: HardState | undefined; readonly entries: number }
  | { readonly what: "send"; readonly to: number; readonly message: Message }
  | { readonly what: "flush" };

/** Member 1 of voters 1, 2, 3, with every save, send and flush recorded in order. */
function recorded(): {
  m: Member;
  events: Event[];
  sent: (pred: (m: Message) => boolean) => Promise<Message>;
} {
  const events: Event[] = [];
  const waiters: { pred: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  const m = new Member(
    // A heartbeat of 10 s: no tick fires during the test; the test drives the election.
    { id: memberId(1), heartbeatMs: 10_000, electionMs: 100_000, snapshotCount: 1000 },
    bootstrapState([memberId(1), memberId(2), memberId(3)]),
    {
      save: (hard: HardState | undefined, entries: readonly Entry[], _snap: Snapshot | undefined) =>
        events.push({ what: "save", hard, entries: entries.length }),
      saveSnapshot: () => {},
    },
    {
      send: (to, payload) => {
        const e = decodeEnvelope(payload);
        const items = e.kind === "batch" ? e.items : [e];
        for (const item of items) {
          if (item.kind !== "raft") continue;
          events.push({ what: "send", to, message: item.message });
          for (const w of [...waiters]) {
            if (!w.pred(item.message)) continue;
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(item.message);
          }
        }
        return true;
      },
      flush: () => events.push({ what: "flush" }),
    },
  );
  running.push(m);
  const sent = (pred: (m: Message) => boolean) =>
    new Promise<Message>((resolve) => {
      const already = events.find(
        (e): e is Extract<Event, { what: "send" }> => e.what === "send" && pred(e.message),
      );
      if (already !== undefined) resolve(already.message);
      else waiters.push({ pred, resolve });
    });
  return { m, events, sent };
}

const raft = (message: Message) => encodeEnvelope({ kind: "raft", sentAt: 0, echo: -1, message });

/** Member 2 of voters 1, 2, 3, a follower of member 1 in term 1, sending through `send`. */
function followerOfOne(send: (to: number, payload: Uint8Array) => boolean, requestTimeoutMs: number): Member {
  const m = new Member(
    { id: memberId(2), heartbeatMs: 10_000, electionMs: 100_000, snapshotCount: 1000, requestTimeoutMs },
    bootstrapState([memberId(1), memberId(2), memberId(3)]),
    { save: () => {}, saveSnapshot: () => {} },
    { send },
  );
  running.push(m);
  m.receive(
    memberId(1),
    raft({
      type: "heartbeat",
      from: memberId(1),
      to: memberId(2),
      term: term(1),
      commit: logIndex(0),
      context: 0,
    }),
  );
  return m;
}

describe("member write and send order", () => {
  it("votes leave after the vote is on disk; a leader's appends leave before its own write, flushed first", async () => {
    const { m, events, sent } = recorded();
    m.start();
    m.raft.campaignNow();
    // Pre-vote (no term change), then the real vote: grant both from member 2.
    const pre = await sent((x) => x.type === "preVote" && x.to === 2);
    m.receive(
      memberId(2),
      raft({ type: "preVoteResp", from: memberId(2), to: memberId(1), term: pre.term, reject: false }),
    );
    const vote = await sent((x) => x.type === "vote" && x.to === 2);
    const voteAt = events.findIndex((e) => e.what === "send" && e.message === vote);
    const savedVote = events.findIndex(
      (e) => e.what === "save" && e.hard !== undefined && e.hard.term === vote.term && e.hard.vote === 1,
    );
    expect(savedVote, "the vote is written").toBeGreaterThanOrEqual(0);
    expect(savedVote, "before the vote request leaves").toBeLessThan(voteAt);

    m.receive(
      memberId(2),
      raft({ type: "voteResp", from: memberId(2), to: memberId(1), term: vote.term, reject: false }),
    );
    // The new leader's no-op entry: its append to 2 leaves, is flushed, and only then is it written here.
    const app = await sent((x) => x.type === "app" && x.to === 2 && x.entries.length > 0);
    const appAt = events.findIndex((e) => e.what === "send" && e.message === app);
    const flushAt = events.findIndex((e, i) => i > appAt && e.what === "flush");
    const writeAt = events.findIndex((e, i) => i > appAt && e.what === "save" && e.entries > 0);
    expect(flushAt, "the transport is flushed after the append").toBeGreaterThan(appAt);
    expect(writeAt, "and the leader writes the entry after that").toBeGreaterThan(flushAt);
    expect(events.slice(0, appAt).some((e) => e.what === "save" && e.entries > 0)).toBe(false);

    // Committed only with a follower's ack AND the leader's own durable copy (written above).
    const noop = app.type === "app" ? app.entries[0]! : undefined;
    expect(m.raft.log.committed).toBeLessThan(noop!.index);
    m.receive(
      memberId(2),
      raft({
        type: "appResp",
        from: memberId(2),
        to: memberId(1),
        term: vote.term,
        reject: false,
        index: noop!.index,
        hintIndex: logIndex(0),
        hintTerm: term(0),
      }),
    );
    await m.read(false, () => undefined);
    await new Promise<void>((r) => setImmediate(r));
    expect(m.raft.log.committed).toBe(noop!.index);
  });

  it("a follower hears of renewals (RENEWED) from its leader only", () => {
    const m = followerOfOne(() => true, 2000);
    const kept: bigint[] = [];
    m.leaseKept = (lease) => {
      kept.push(lease);
      return true;
    };
    // Member 3 is not the leader (a deposed one, or confused): ignored.
    m.receive(memberId(3), encodeEnvelope({ kind: "renewed", leases: [7n] }));
    expect(kept).toEqual([]);
    m.receive(memberId(1), encodeEnvelope({ kind: "renewed", leases: [5n, 6n] }));
    expect(kept).toEqual([leaseId(5n), leaseId(6n)]);
  });

  it("a follower's forwarded requests leave in one BATCH per turn; nothing leaves once it is stopped", async () => {
    const sends: { to: number; kinds: string[] }[] = [];
    const m = followerOfOne((to, payload) => {
      const e = decodeEnvelope(payload);
      sends.push({ to, kinds: e.kind === "batch" ? e.items.map((i) => i.kind) : [e.kind] });
      return true;
    }, 2000);
    await new Promise<void>((r) => setImmediate(r));
    const put = (k: string) =>
      m
        .write({ type: "put", request: { key: new TextEncoder().encode(k), value: new Uint8Array(0) } })
        .catch(() => {});
    const writes = [put("a"), put("b"), put("c")];
    await new Promise<void>((r) => setImmediate(r));
    const forwarded = sends.filter((s) => s.kinds.includes("propose"));
    expect(forwarded).toEqual([{ to: 1, kinds: ["propose", "propose", "propose"] }]);

    sends.length = 0;
    const late = put("d");
    m.stop();
    await new Promise<void>((r) => setImmediate(r));
    expect(sends).toEqual([]);
    await Promise.all([...writes, late]);
  });
});

describe("request deadlines", () => {
  it("a call the leader never answers times out at its deadline, oldest first; stop() fails the rest at once", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    try {
      const m = followerOfOne(() => true, 1000);
      const outcome = (p: Promise<unknown>) =>
        p.then(
          () => "answered",
          (e: Error) => e.message,
        );
      const put = (k: string) =>
        outcome(
          m.write({ type: "put", request: { key: new TextEncoder().encode(k), value: new Uint8Array(0) } }),
        );
      const first = put("a");
      await vi.advanceTimersByTimeAsync(400);
      const second = put("b");
      const settled: string[] = [];
      void first.then((r) => settled.push(`first: ${r}`));
      void second.then((r) => settled.push(`second: ${r}`));
      await vi.advanceTimersByTimeAsync(590); // t = 990: nothing due yet
      expect(settled).toEqual([]);
      await vi.advanceTimersByTimeAsync(20); // t = 1010: the first is due, the second (1400) is not
      expect(settled).toEqual(["first: etcdserver: request timed out (write)"]);
      const renewal = outcome(m.keepAlive(leaseId(7n)));
      m.stop();
      // A forwarded write's outcome is unknown once its leader is gone (it may have been proposed).
      expect(await second).toBe("etcdserver: request timed out, possibly due to previous leader failure");
      expect(await renewal).toBe("etcdserver: server stopped");
    } finally {
      vi.useRealTimers();
    }
  });
});
