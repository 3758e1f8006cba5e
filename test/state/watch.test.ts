/**
 * Unit tests pinning the watch hub (src/state/watch.ts): one test per rule of
 * etcd's Watch semantics as the file header states them, plus the slow-watcher
 * paths (overflow then catch-up from history; overflow then compaction).
 * Responses are compared through describeWatchResponse, so a failure reads as
 * a trace.
 */

import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/raft/index.ts";
import { prefixEnd, RANGE_END_TO_END } from "../../src/state/bytes.ts";
import { MvccStore } from "../../src/state/mvcc.ts";
import { revision } from "../../src/state/types.ts";
import type { WatchCreateRequest, WatchHubOptions, WatchId, WatchResponse } from "../../src/state/watch.ts";
import { describeWatchResponse, WATCH_QUEUE_EVENTS_MAX, WatchHub, watchId } from "../../src/state/watch.ts";

const enc = new TextEncoder();
const b = (s: string): Uint8Array => enc.encode(s);
const rev = revision;

/** A store and a hub wired as the apply layer wires them: every write goes to onWrite. */
class Fixture {
  readonly store = new MvccStore();
  readonly hub: WatchHub;
  constructor(options: WatchHubOptions = {}) {
    this.hub = new WatchHub(this.store, options);
  }
  put(key: string, value = "v"): void {
    const r = this.store.put({ key: b(key), value: b(value) });
    if (!r.ok) throw new Error(r.error);
    this.hub.onWrite(r.events, r.revision);
  }
  del(key: string, rangeEnd?: Uint8Array): void {
    const r = this.store.deleteRange({ key: b(key), rangeEnd });
    if (!r.ok) throw new Error(r.error);
    this.hub.onWrite(r.events, r.revision);
  }
  /** One txn putting every key: one revision, events in op order. */
  putAll(...keys: string[]): void {
    const r = this.store.txn({
      success: keys.map((k) => ({ type: "put" as const, request: { key: b(k), value: b("t") } })),
    });
    if (!r.ok) throw new Error(r.error);
    this.hub.onWrite(r.events, r.revision);
  }
  watch(req: Partial<WatchCreateRequest> & { key: Uint8Array }): WatchId {
    const r = this.hub.create(req);
    if (!r.ok) throw new Error(r.error);
    return r.watchId;
  }
  /** Everything the watcher has to deliver, described. */
  drain(id: WatchId, max = 1000): string[] {
    return this.hub.drain(id, max).map(describeWatchResponse);
  }
  /** Only the events, as "put a@4" / "del a@5". */
  drainEvents(id: WatchId, max = 1000): string[] {
    return eventsOf(this.hub.drain(id, max));
  }
}

function eventsOf(responses: readonly WatchResponse[]): string[] {
  return responses.flatMap((r) =>
    r.events.map(
      (ev) =>
        `${ev.type === "put" ? "put" : "del"} ${new TextDecoder().decode(ev.kv.key)}@${ev.kv.modRevision}`,
    ),
  );
}

describe("creating a watch", () => {
  it("from now (start 0): a created response at the current revision, then only later writes", () => {
    const f = new Fixture();
    f.put("a");
    const id = f.watch({ key: b("a") });
    expect(id).toBe(watchId(0n));
    f.put("a", "x");
    expect(f.drain(id)).toEqual([
      "watch 0 rev=2 created",
      'watch 0 rev=3 [put "a" rev=3 create=2 ver=2 lease=0 "x"]',
    ]);
    expect(f.hub.status(id)?.state).toBe("synced");
  });

  it("ids are assigned 0, 1, 2, ... and never reused", () => {
    const f = new Fixture();
    const a = f.watch({ key: b("a") });
    f.hub.close(a);
    expect(f.watch({ key: b("a") })).toBe(watchId(1n));
  });

  it("from a past revision: the history, then the live stream, without gap or duplicate", () => {
    const f = new Fixture();
    f.put("a"); // 2
    f.put("b"); // 3
    f.put("a"); // 4
    const id = f.watch({ key: b("a"), startRevision: rev(3) });
    expect(f.hub.status(id)?.state).toBe("unsynced");
    f.put("a"); // 5: written while the watcher is behind
    f.del("a"); // 6
    expect(f.drainEvents(id)).toEqual(["put a@4", "put a@5", "del a@6"]);
    expect(f.hub.status(id)?.state).toBe("synced");
    f.put("a"); // 7
    expect(f.drainEvents(id)).toEqual(["put a@7"]);
  });

  it("from revision 1 on a fresh store (etcd's first revision): every event", () => {
    const f = new Fixture();
    const id = f.watch({ key: b("a"), rangeEnd: b("z"), startRevision: rev(1) });
    expect(f.hub.status(id)?.state).toBe("unsynced");
    f.put("a"); // 2
    f.put("b"); // 3
    expect(f.drain(id)).toEqual([
      "watch 0 rev=1 created",
      'watch 0 rev=3 [put "a" rev=2 create=2 ver=1 lease=0 "v"; put "b" rev=3 create=3 ver=1 lease=0 "v"]',
    ]);
    expect(f.hub.status(id)?.state).toBe("synced");
  });

  it("from exactly the compacted revision works (eventsSince's rule)", () => {
    const f = new Fixture();
    for (let i = 0; i < 4; i++) f.put("a");
    expect(f.store.compact(rev(4)).ok).toBe(true);
    const id = f.watch({ key: b("a"), startRevision: rev(4) });
    expect(f.drainEvents(id)).toEqual(["put a@4", "put a@5"]);
  });

  it("from below the compacted revision: created, then canceled with the compact revision", () => {
    const f = new Fixture();
    for (let i = 0; i < 4; i++) f.put("a");
    expect(f.store.compact(rev(4)).ok).toBe(true);
    const id = f.watch({ key: b("a"), startRevision: rev(3) });
    expect(f.hub.status(id)?.state).toBe("canceled");
    f.put("a");
    expect(f.drain(id)).toEqual(["watch 0 rev=5 created", "watch 0 rev=5 canceled compact=4"]);
    expect(f.hub.status(id)).toBeUndefined();
    expect(f.hub.watcherCount()).toBe(0);
  });

  it("from a future revision: nothing until that revision", () => {
    const f = new Fixture();
    f.put("a");
    const id = f.watch({ key: b("a"), startRevision: rev(4) });
    f.put("a"); // 3
    f.put("a"); // 4
    expect(f.drainEvents(id)).toEqual(["put a@4"]);
  });

  it("validates: empty range, negative start, too many watchers", () => {
    const f = new Fixture({ watchersMax: 2 });
    expect(f.hub.create({ key: b("b"), rangeEnd: b("a") })).toEqual({ ok: false, error: "emptyRange" });
    expect(f.hub.create({ key: b("a"), rangeEnd: b("a") })).toEqual({ ok: false, error: "emptyRange" });
    expect(f.hub.create({ key: b("a"), startRevision: rev(-1) })).toEqual({
      ok: false,
      error: "invalidStartRevision",
    });
    f.watch({ key: b("a") });
    const second = f.watch({ key: b("a") });
    expect(f.hub.create({ key: b("a") })).toEqual({ ok: false, error: "tooManyWatchers" });
    // A canceled watcher counts until its cancel is drained.
    f.hub.cancel(second);
    expect(f.hub.create({ key: b("a") })).toEqual({ ok: false, error: "tooManyWatchers" });
    f.hub.drain(second, 10);
    expect(f.hub.create({ key: b("a") }).ok).toBe(true);
  });
});

describe("matching", () => {
  function seen(req: Partial<WatchCreateRequest> & { key: Uint8Array }): string[] {
    const f = new Fixture();
    const id = f.watch(req);
    for (const k of ["a", "ab", "abc", "b", "c"]) f.put(k);
    const r = f.store.put({ key: Uint8Array.of(0), value: b("z") });
    if (!r.ok) throw new Error(r.error);
    f.hub.onWrite(r.events, r.revision);
    return f.drainEvents(id).map((s) => s.replace("\0", "\\0"));
  }

  it("one key", () => {
    expect(seen({ key: b("ab") })).toEqual(["put ab@3"]);
  });
  it("a range [key, rangeEnd)", () => {
    expect(seen({ key: b("ab"), rangeEnd: b("b") })).toEqual(["put ab@3", "put abc@4"]);
  });
  it("a prefix", () => {
    expect(seen({ key: b("a"), rangeEnd: prefixEnd(b("a")) })).toEqual(["put a@2", "put ab@3", "put abc@4"]);
  });
  it("from a key (range end \\0)", () => {
    expect(seen({ key: b("b"), rangeEnd: RANGE_END_TO_END })).toEqual(["put b@5", "put c@6"]);
  });
  it("every key: key \\0, range end \\0; an empty key with range end \\0 means the same", () => {
    const all = ["put a@2", "put ab@3", "put abc@4", "put b@5", "put c@6", "put \\0@7"].sort();
    expect(seen({ key: Uint8Array.of(0), rangeEnd: RANGE_END_TO_END }).sort()).toEqual(all);
    expect(seen({ key: new Uint8Array(0), rangeEnd: RANGE_END_TO_END }).sort()).toEqual(all);
  });
  it("an empty key alone watches the key \\0 (etcd: the smallest key)", () => {
    expect(seen({ key: new Uint8Array(0) })).toEqual(["put \\0@7"]);
  });
  it("matching is the same from history as live", () => {
    const f = new Fixture();
    for (const k of ["a", "ab", "abc", "b", "c"]) f.put(k);
    const id = f.watch({ key: b("a"), rangeEnd: prefixEnd(b("a")), startRevision: rev(2) });
    expect(f.drainEvents(id)).toEqual(["put a@2", "put ab@3", "put abc@4"]);
  });
});

describe("options", () => {
  it("prevKv: filled only when asked, live and from history", () => {
    const f = new Fixture();
    f.put("a", "1");
    const plain = f.watch({ key: b("a") });
    const withPrev = f.watch({ key: b("a"), prevKv: true });
    const pastWithPrev = f.watch({ key: b("a"), prevKv: true, startRevision: rev(2) });
    f.put("a", "2");
    f.del("a");
    const [p, w, h] = [plain, withPrev, pastWithPrev].map((id) =>
      f.hub.drain(id, 10).flatMap((r) => r.events),
    );
    expect(p!.map((ev) => ev.prevKv)).toEqual([undefined, undefined]);
    expect(w!.map((ev) => ev.prevKv?.modRevision)).toEqual([2, 3]);
    expect(h!.map((ev) => ev.prevKv?.modRevision)).toEqual([undefined, 2, 3]);
    expect(w![1]!.prevKv?.value).toEqual(b("2"));
  });

  it("filters noPut and noDelete, live and from history", () => {
    const f = new Fixture();
    const noPut = f.watch({ key: b("a"), filters: ["noPut"] });
    const noDelete = f.watch({ key: b("a"), filters: ["noDelete"] });
    const both = f.watch({ key: b("a"), filters: ["noPut", "noDelete"] });
    f.put("a");
    f.del("a");
    f.put("a");
    const pastNoPut = f.watch({ key: b("a"), filters: ["noPut"], startRevision: rev(2) });
    expect(f.drainEvents(noPut)).toEqual(["del a@3"]);
    expect(f.drainEvents(noDelete)).toEqual(["put a@2", "put a@4"]);
    expect(f.drainEvents(both)).toEqual([]);
    expect(f.drainEvents(pastNoPut)).toEqual(["del a@3"]);
  });
});

describe("cancel and close", () => {
  it("cancel drops queued events, keeps an undrained created, ends with a canceled response", () => {
    const f = new Fixture();
    const early = f.watch({ key: b("a") });
    f.hub.cancel(early);
    expect(f.drain(early)).toEqual(["watch 0 rev=1 created", "watch 0 rev=1 canceled"]);
    const id = f.watch({ key: b("a") });
    f.drain(id);
    f.put("a");
    expect(f.hub.cancel(id, "bye")).toBe(true);
    expect(f.hub.cancel(id)).toBe(false);
    f.put("a");
    expect(f.drain(id)).toEqual(['watch 1 rev=2 canceled reason="bye"']);
    expect(f.hub.status(id)).toBeUndefined();
    expect(f.hub.cancel(id)).toBe(false);
    expect(f.drain(id)).toEqual([]);
  });

  it("close forgets at once, without a response", () => {
    const f = new Fixture();
    const id = f.watch({ key: b("a"), rangeEnd: b("b") });
    expect(f.hub.close(id)).toBe(true);
    f.put("a");
    expect(f.hub.ready()).toEqual([]);
    expect(f.hub.close(id)).toBe(false);
  });
});

describe("progress notifications", () => {
  it("progress() reaches synced watchers that asked for it, coalesced, after queued events", () => {
    const f = new Fixture();
    const notify = f.watch({ key: b("a"), progressNotify: true });
    const quiet = f.watch({ key: b("a") });
    f.drain(notify);
    f.drain(quiet);
    f.put("b"); // 2: not theirs
    f.hub.progress();
    f.put("a"); // 3
    f.hub.progress();
    f.put("b"); // 4
    f.hub.progress();
    f.hub.progress();
    expect(f.drain(notify)).toEqual([
      "watch 0 rev=2 progress",
      'watch 0 rev=3 [put "a" rev=3 create=3 ver=1 lease=0 "v"]',
      "watch 0 rev=4 progress",
    ]);
    expect(f.drain(quiet)).toEqual(['watch 1 rev=3 [put "a" rev=3 create=3 ver=1 lease=0 "v"]']);
  });

  it("progress() skips a watcher that is behind", () => {
    const f = new Fixture();
    f.put("a");
    const id = f.watch({ key: b("a"), progressNotify: true, startRevision: rev(2) });
    f.hub.progress();
    expect(f.drain(id)).toEqual([
      "watch 0 rev=2 created",
      'watch 0 rev=2 [put "a" rev=2 create=2 ver=1 lease=0 "v"]',
    ]);
  });

  it("requestProgress: at once when synced, deferred until caught up when behind", () => {
    const f = new Fixture();
    f.put("a");
    f.put("b");
    const synced = f.watch({ key: b("a") });
    const behind = f.watch({ key: b("a"), startRevision: rev(2) });
    expect(f.hub.requestProgress(synced)).toBe(true);
    expect(f.hub.requestProgress(behind)).toBe(true);
    expect(f.hub.requestProgress(watchId(99n))).toBe(false);
    expect(f.drain(synced)).toEqual(["watch 0 rev=3 created", "watch 0 rev=3 progress"]);
    expect(f.drain(behind)).toEqual([
      "watch 1 rev=3 created",
      'watch 1 rev=2 [put "a" rev=2 create=2 ver=1 lease=0 "v"]',
      "watch 1 rev=3 progress",
    ]);
  });
});

describe("ordering and batching", () => {
  it("a txn's events reach a watcher in op order, in one response at the txn's revision", () => {
    const f = new Fixture();
    const id = f.watch({ key: b("a"), rangeEnd: b("z") });
    f.putAll("c", "a", "b");
    const rs = f.hub.drain(id, 10);
    expect(rs.map((r) => [r.revision, r.events.length])).toEqual([
      [1, 0],
      [2, 3],
    ]);
    expect(eventsOf(rs)).toEqual(["put c@2", "put a@2", "put b@2"]);
  });

  it("responses hold whole revisions, at most responseEventsMax events unless one revision is bigger", () => {
    const f = new Fixture({ responseEventsMax: 3 });
    const id = f.watch({ key: b("a"), rangeEnd: b("z") });
    f.drain(id);
    f.putAll("a", "b"); // 2
    f.putAll("c", "d"); // 3
    f.put("e"); // 4
    f.putAll("f", "g", "h", "i"); // 5: bigger than the batch, alone
    f.put("j"); // 6
    const rs = f.hub.drain(id, 10);
    expect(rs.map((r) => `${r.revision}:${r.events.length}`)).toEqual(["2:2", "4:3", "5:4", "6:1"]);
  });

  it("drain hands out at most responsesMax responses and keeps the rest", () => {
    const f = new Fixture();
    const id = f.watch({ key: b("a"), rangeEnd: b("z"), startRevision: rev(2) });
    f.put("a");
    f.put("b");
    expect(f.hub.drain(id, 1).map(describeWatchResponse)).toEqual(["watch 0 rev=1 created"]);
    expect(f.hub.ready()).toEqual([id]);
    expect(f.drainEvents(id, 1)).toEqual(["put a@2", "put b@3"]);
    expect(f.hub.ready()).toEqual([]);
  });
});

describe("slow watchers", () => {
  it("a full queue makes the watcher fall behind; it catches up from history with no gap", () => {
    const f = new Fixture({ queueEventsMax: 3, responseEventsMax: 100 });
    const slow = f.watch({ key: b("k"), rangeEnd: b("l") });
    const fast = f.watch({ key: b("k"), rangeEnd: b("l") });
    const fastSeen: string[] = [];
    for (let i = 1; i <= 10; i++) {
      f.put(`k${i % 4}`);
      fastSeen.push(...f.drainEvents(fast));
    }
    const st = f.hub.status(slow)!;
    expect(st.state).toBe("unsynced");
    expect(st.queuedEvents).toBe(3);
    expect(st.nextRevision).toBe(5);
    expect(f.hub.overflows()).toBe(1);
    // The queued three, then revisions 5.. from history in bounded reads, then live again.
    const slowSeen = f.drainEvents(slow);
    expect(slowSeen).toEqual(fastSeen);
    expect(slowSeen).toHaveLength(10);
    expect(f.hub.status(slow)?.state).toBe("synced");
    f.put("k9");
    expect(f.drainEvents(slow)).toEqual(["put k9@12"]);
  });

  it("catching up reads at most queueEventsMax events per read, whole revisions", () => {
    const f = new Fixture({ queueEventsMax: 2, responseEventsMax: 1 });
    for (let i = 0; i < 5; i++) f.put("a");
    const id = f.watch({ key: b("a"), startRevision: rev(2) });
    f.hub.drain(id, 1); // created
    f.hub.drain(id, 1); // reads revisions 2-3 into the queue, hands out 2
    expect(f.hub.status(id)).toEqual({
      state: "unsynced",
      nextRevision: 4,
      queuedEvents: 1,
      queuedResponses: 1,
    });
    expect(f.drainEvents(id)).toEqual(["put a@3", "put a@4", "put a@5", "put a@6"]);
  });

  it("falls behind, history compacted past it meanwhile: queued events, then canceled with the compact revision", () => {
    const f = new Fixture({ queueEventsMax: 2 });
    const id = f.watch({ key: b("a") });
    for (let i = 0; i < 6; i++) f.put("a");
    expect(f.hub.status(id)).toMatchObject({ state: "unsynced", nextRevision: 4, queuedEvents: 2 });
    expect(f.store.compact(rev(6)).ok).toBe(true);
    expect(f.drain(id)).toEqual([
      "watch 0 rev=1 created",
      'watch 0 rev=3 [put "a" rev=2 create=2 ver=1 lease=0 "v"; put "a" rev=3 create=2 ver=2 lease=0 "v"]',
      "watch 0 rev=7 canceled compact=6",
    ]);
    expect(f.hub.status(id)).toBeUndefined();
  });

  it("a revision bigger than the queue still gets into an empty queue", () => {
    const f = new Fixture({ queueEventsMax: 2 });
    const id = f.watch({ key: b("a"), rangeEnd: b("z") });
    f.putAll("a", "b", "c");
    expect(f.hub.status(id)).toMatchObject({ state: "synced", queuedEvents: 3 });
    f.put("d");
    expect(f.hub.status(id)?.state).toBe("unsynced");
    expect(f.drainEvents(id)).toEqual(["put a@2", "put b@2", "put c@2", "put d@3"]);
  });

  it("the default queue limit is a named constant", () => {
    expect(WATCH_QUEUE_EVENTS_MAX).toBe(10_000);
  });
});

describe("the apply-layer contract", () => {
  it("a missed write is a bug: onWrite and drain assert", () => {
    const f = new Fixture();
    const id = f.watch({ key: b("a") });
    const r1 = f.store.put({ key: b("a"), value: b("1") });
    const r2 = f.store.put({ key: b("a"), value: b("2") });
    if (!r1.ok || !r2.ok) throw new Error("put");
    expect(() => f.hub.drain(id, 1)).toThrow(AssertionError);
    expect(() => f.hub.onWrite(r2.events, r2.revision)).toThrow(AssertionError);
  });

  it("a write that changed nothing may be reported with no events", () => {
    const f = new Fixture();
    f.put("a");
    f.del("zz"); // matched nothing: no revision, no events
    expect(f.hub.currentRevision()).toBe(2);
  });
});
