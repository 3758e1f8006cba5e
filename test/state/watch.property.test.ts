/**
 * Property test of the watch hub (src/state/watch.ts) against a plain model:
 * the list of every event ever written (kept by the test, untouched by
 * compaction). For random writes, compactions, watch creations at random
 * start revisions (now, past, compacted, future), random drains, cancels and
 * progress requests, with tiny queue, response and catch-up limits so that
 * every slow-watcher path runs, each watcher must see exactly the model's
 * events in its range from its start, filtered, in order, once; or a prefix
 * of them in whole revisions ended by a cancel (its own, or for a compaction
 * that really lost the next event). Progress notifications must never claim
 * a revision whose events were not all delivered.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { prefixEnd, RANGE_END_TO_END } from "../../src/state/bytes.ts";
import { MvccStore } from "../../src/state/mvcc.ts";
import type { KvEvent } from "../../src/state/types.ts";
import { revision } from "../../src/state/types.ts";
import type { WatchCreateRequest, WatchFilter, WatchId, WatchResponse } from "../../src/state/watch.ts";
import { WatchHub } from "../../src/state/watch.ts";

const RUNS = 200;
const KEYS = ["a", "ab", "b", "c"] as const;
const QUEUE_EVENTS_MAX = 3;
/** The most events one generated write makes (a delete of every key). */
const REVISION_EVENTS_MAX = KEYS.length;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Coverage probes: each rare path must have run at least once over all runs. */
const probes = { overflows: 0, compactCancels: 0, clientCancels: 0, progress: 0, pastStarts: 0 };

type RangeKind = "key" | "prefix" | "range" | "fromKey";

type Command =
  | { readonly c: "put"; readonly key: number }
  | { readonly c: "txn"; readonly keys: readonly number[] }
  | { readonly c: "delete"; readonly key: number; readonly toEnd: boolean }
  | { readonly c: "compact"; readonly fraction: number }
  | {
      readonly c: "watch";
      readonly key: number;
      readonly kind: RangeKind;
      readonly start: number | "now";
      readonly filters: readonly WatchFilter[];
      readonly prevKv: boolean;
    }
  | { readonly c: "drain"; readonly watcher: number; readonly max: number }
  | { readonly c: "cancel"; readonly watcher: number }
  | { readonly c: "progress" }
  | { readonly c: "requestProgress"; readonly watcher: number };

const key = fc.nat(KEYS.length - 1);
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: key.map((k) => ({ c: "put" as const, key: k })) },
  {
    weight: 2,
    arbitrary: fc
      .uniqueArray(key, { minLength: 1, maxLength: 3 })
      .map((keys) => ({ c: "txn" as const, keys })),
  },
  { weight: 2, arbitrary: fc.record({ c: fc.constant("delete" as const), key, toEnd: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc
      .double({ min: 0, max: 1, noNaN: true })
      .map((f) => ({ c: "compact" as const, fraction: f })),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      c: fc.constant("watch" as const),
      key,
      kind: fc.constantFrom<RangeKind>("key", "prefix", "range", "fromKey"),
      start: fc.oneof(fc.constant("now" as const), fc.nat(40)),
      filters: fc.subarray<WatchFilter>(["noPut", "noDelete"]),
      prevKv: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      c: fc.constant("drain" as const),
      watcher: fc.nat(),
      max: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ c: fc.constant("cancel" as const), watcher: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ c: "progress" as const }) },
  { weight: 1, arbitrary: fc.record({ c: fc.constant("requestProgress" as const), watcher: fc.nat() }) },
);

/** What the test knows about one watcher. */
interface Tracked {
  readonly id: WatchId;
  readonly lo: string;
  /** Exclusive; undefined: to the end; null: the single key lo. */
  readonly hi: string | undefined | null;
  readonly start: number;
  readonly filters: readonly WatchFilter[];
  readonly prevKv: boolean;
  readonly createdAt: number;
  readonly responses: WatchResponse[];
  canceledByClient: boolean;
}

function rangeOf(k: string, kind: RangeKind): Pick<WatchCreateRequest, "key" | "rangeEnd"> {
  switch (kind) {
    case "key":
      return { key: enc.encode(k) };
    case "prefix":
      return { key: enc.encode(k), rangeEnd: prefixEnd(enc.encode(k)) };
    case "range":
      return { key: enc.encode(k), rangeEnd: enc.encode("b~") };
    case "fromKey":
      return { key: enc.encode(k), rangeEnd: RANGE_END_TO_END };
  }
}

/** The model: every event written, filtered the plainest way. */
function expectedFor(t: Tracked, all: readonly KvEvent[]): KvEvent[] {
  return all.filter((ev) => {
    const k = dec.decode(ev.kv.key);
    const inRange = t.hi === null ? k === t.lo : k >= t.lo && (t.hi === undefined || k < t.hi);
    const dropped = ev.type === "put" ? t.filters.includes("noPut") : t.filters.includes("noDelete");
    return ev.kv.modRevision >= t.start && inRange && !dropped;
  });
}

function run(commands: readonly Command[]): void {
  const store = new MvccStore({
    limits: { requestBytesMax: 1 << 20, txnOpsMax: 8, watchBatchRevisionsMax: 2 },
  });
  const hub = new WatchHub(store, { queueEventsMax: QUEUE_EVENTS_MAX, responseEventsMax: 2, watchersMax: 6 });
  const all: KvEvent[] = [];
  const watchers: Tracked[] = [];
  const write = (events: readonly KvEvent[], rev: number): void => {
    all.push(...events);
    hub.onWrite(events, revision(rev));
  };
  const live = (): Tracked[] => watchers.filter((t) => hub.status(t.id) !== undefined);
  const drain = (t: Tracked, max: number): void => {
    const got = hub.drain(t.id, max);
    expect(got.length).toBeLessThanOrEqual(max);
    for (const r of got) {
      checkProgress(t, r, all);
      t.responses.push(r);
    }
  };

  for (const cmd of commands) {
    switch (cmd.c) {
      case "put": {
        const r = store.put({ key: enc.encode(KEYS[cmd.key]!), value: enc.encode(`v${all.length}`) });
        if (!r.ok) throw new Error(r.error);
        write(r.events, r.revision);
        break;
      }
      case "txn": {
        const r = store.txn({
          success: cmd.keys.map((k) => ({
            type: "put" as const,
            request: { key: enc.encode(KEYS[k]!), value: enc.encode("t") },
          })),
        });
        if (!r.ok) throw new Error(r.error);
        write(r.events, r.revision);
        break;
      }
      case "delete": {
        const r = store.deleteRange({
          key: enc.encode(KEYS[cmd.key]!),
          rangeEnd: cmd.toEnd ? RANGE_END_TO_END : undefined,
        });
        if (!r.ok) throw new Error(r.error);
        write(r.events, r.revision);
        break;
      }
      case "compact": {
        const lo = store.compactedRevision();
        const hi = store.currentRevision();
        if (hi > lo)
          expect(store.compact(revision(lo + 1 + Math.floor(cmd.fraction * (hi - lo - 1)))).ok).toBe(true);
        break;
      }
      case "watch": {
        const k = KEYS[cmd.key]!;
        const start = cmd.start === "now" ? 0 : cmd.start % (hub.currentRevision() + 3);
        const r = hub.create({
          ...rangeOf(k, cmd.kind),
          startRevision: revision(start),
          filters: cmd.filters,
          prevKv: cmd.prevKv,
        });
        if (!r.ok) {
          if (cmd.kind === "range" && k >= "b~") expect(r.error).toBe("emptyRange");
          else expect([r.error, hub.watcherCount()]).toEqual(["tooManyWatchers", 6]);
          break;
        }
        const hi =
          cmd.kind === "key"
            ? null
            : cmd.kind === "prefix"
              ? `${k.slice(0, -1)}${String.fromCharCode(k.charCodeAt(k.length - 1) + 1)}`
              : cmd.kind === "range"
                ? "b~"
                : undefined;
        watchers.push({
          id: r.watchId,
          lo: k,
          hi,
          start: start === 0 ? hub.currentRevision() + 1 : start,
          filters: cmd.filters,
          prevKv: cmd.prevKv,
          createdAt: hub.currentRevision(),
          responses: [],
          canceledByClient: false,
        });
        break;
      }
      case "drain": {
        const ws = live();
        if (ws.length > 0) drain(ws[cmd.watcher % ws.length]!, cmd.max);
        break;
      }
      case "cancel": {
        const ws = live().filter((t) => hub.status(t.id)?.state !== "canceled");
        if (ws.length === 0) break;
        const t = ws[cmd.watcher % ws.length]!;
        expect(hub.cancel(t.id)).toBe(true);
        t.canceledByClient = true;
        break;
      }
      case "progress":
        hub.progress();
        break;
      case "requestProgress": {
        const ws = live();
        if (ws.length > 0) hub.requestProgress(ws[cmd.watcher % ws.length]!.id);
        break;
      }
    }
    for (const t of live()) {
      expect(hub.status(t.id)!.queuedEvents).toBeLessThanOrEqual(
        Math.max(QUEUE_EVENTS_MAX, REVISION_EVENTS_MAX),
      );
    }
    store.checkInvariants();
  }

  // Drain everything; each step makes progress, so this ends.
  for (let rounds = 0; hub.ready().length > 0; rounds++) {
    expect(rounds).toBeLessThan(10_000);
    for (const id of hub.ready()) drain(watchers.find((t) => t.id === id)!, 2);
  }
  for (const t of watchers) checkWatcher(t, all, store.compactedRevision(), hub.status(t.id) === undefined);
  probes.overflows += hub.overflows();
  for (const t of watchers) {
    if (t.start <= t.createdAt) probes.pastStarts++;
    for (const r of t.responses) {
      if (r.canceled) probes[r.compactRevision !== 0 ? "compactCancels" : "clientCancels"]++;
      else if (!r.created && r.events.length === 0) probes.progress++;
    }
  }
}

/** A progress notification at r: every expected event at or below r was delivered before it. */
function checkProgress(t: Tracked, r: WatchResponse, all: readonly KvEvent[]): void {
  if (r.created || r.canceled || r.events.length > 0) return;
  const delivered = t.responses.reduce((n, x) => n + x.events.length, 0);
  expect(delivered).toBe(expectedFor(t, all).filter((ev) => ev.kv.modRevision <= r.revision).length);
}

function checkWatcher(t: Tracked, all: readonly KvEvent[], compactedAtEnd: number, gone: boolean): void {
  const rs = t.responses;
  expect(rs[0]).toMatchObject({ created: true, canceled: false, revision: t.createdAt });
  const last = rs[rs.length - 1]!;
  const canceled = last.canceled;
  expect(gone).toBe(canceled);
  expect(rs.slice(1, -1).every((r) => !r.created && !r.canceled)).toBe(true);

  // Events: in order, whole revisions per response, the response revision is the last event's.
  const delivered: KvEvent[] = [];
  for (const r of rs) {
    if (r.events.length === 0) continue;
    expect(r.revision).toBe(r.events[r.events.length - 1]!.kv.modRevision);
    const prev = delivered[delivered.length - 1];
    if (prev !== undefined) expect(r.events[0]!.kv.modRevision).toBeGreaterThan(prev.kv.modRevision);
    delivered.push(...r.events);
  }
  const expected = expectedFor(t, all);
  // Same kvs (equal: the store makes the KeyValues it hands out), prevKv exactly as asked.
  const shown = (evs: readonly KvEvent[], prev: boolean) =>
    evs.map((ev) => ({ type: ev.type, kv: ev.kv, prevKv: prev ? ev.prevKv : undefined }));
  expect(delivered.length).toBeLessThanOrEqual(expected.length);
  expect(shown(delivered, true)).toEqual(shown(expected.slice(0, delivered.length), t.prevKv));

  if (!canceled) {
    expect(delivered.length).toBe(expected.length);
    return;
  }
  // A cancel ends on a revision boundary: nothing of a revision is half delivered.
  const missed = expected[delivered.length];
  const lastDelivered = delivered[delivered.length - 1]?.kv.modRevision ?? 0;
  if (missed !== undefined) expect(missed.kv.modRevision).toBeGreaterThan(lastDelivered);
  if (last.compactRevision !== 0) {
    // Canceled for compaction: the watcher's position (>= its start, past what it got) was below it.
    expect(last.compactRevision).toBeLessThanOrEqual(compactedAtEnd);
    expect(last.compactRevision).toBeGreaterThan(Math.max(t.start, lastDelivered));
  } else {
    expect(t.canceledByClient).toBe(true);
  }
}

describe("watch hub against the event-list model", () => {
  it("every watcher sees exactly its events from its start, once, in order", () => {
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 60, size: "max" }), (commands) => {
        run(commands);
      }),
      { numRuns: RUNS },
    );
    for (const [probe, n] of Object.entries(probes)) expect([probe, n > 0]).toEqual([probe, true]);
  });
});
