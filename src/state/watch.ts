/**
 * The watch hub: etcd v3 Watch semantics (api/etcdserverpb/rpc.proto
 * WatchCreateRequest / WatchResponse) over the MVCC store, as a deterministic
 * engine with an outbox per watcher. Written from the semantics, not from
 * etcd's code.
 *
 * Contract:
 * - Inputs: `create`, `cancel`, `close`, `requestProgress`, `progress`, and
 *   `onWrite(events, revision)`, which the apply layer calls right after every
 *   MVCC write, before anything else touches the hub. Outputs: the responses
 *   `drain(watchId, responsesMax)` hands out, per watcher, in order. The hub
 *   performs no I/O and reads no clock: the server decides when to send
 *   periodic progress (etcd: every 10 min) and when a stream can take more.
 * - Guarantees, per watcher: events in revision order, and in op order within
 *   a revision; each matching event exactly once; no revision skipped between
 *   the start revision and the end (cancel, or cancel for compaction, which
 *   says where the client must restart). A start in the past replays the
 *   MVCC history, then the live stream, with no gap and no duplicate.
 * - A response holds whole revisions only (no fragments): up to
 *   `responseEventsMax` events, except that one revision bigger than that
 *   goes alone in one response. Its `revision` (etcd header.revision) is the
 *   revision through which the watcher has now seen everything: the last
 *   event's revision for events, the hub's current revision for created,
 *   progress and cancel responses.
 * - Watch ids are hub-wide, assigned 0, 1, 2, ... (etcd's auto ids) and never
 *   reused. Client-chosen ids (WatchCreateRequest.watch_id), ids per stream,
 *   fragments and the stream-wide progress answer (watch_id -1) belong to the
 *   stream layer, which maps its ids to these.
 *
 * States of a watcher (etcd's synced / unsynced watcher groups):
 * - synced: takes live events from onWrite (those at revisions >= its
 *   `nextRevision`, which is above the current one only for a start in the
 *   future, as etcd's minRev).
 * - unsynced: a start in the past, or a slow watcher whose queue was full.
 *   Every event below `nextRevision` is queued or delivered; onWrite skips it.
 *   When its queue is empty, `drain` reads the history from `nextRevision`
 *   (MvccStore.eventsSince, at most `catchUpRevisionsMax` revisions and about
 *   `queueEventsMax` events per read) and the watcher is synced again once it
 *   reaches the current revision. If the history it needs was compacted
 *   (nextRevision < compacted revision, eventsSince's rule), the queued
 *   events are delivered, then a cancel carrying the compact revision
 *   (etcd: compact_revision set, canceled).
 * - canceled: only its final response is left to drain; then it is forgotten.
 *
 * Slow watchers: a queue holds at most `queueEventsMax` events (a single
 * revision bigger than that is admitted into an empty queue, so a huge lease
 * revoke still gets through). When a live revision does not fit, the watcher
 * becomes unsynced: that revision and the following ones are not queued, and
 * are read back from history once the consumer has drained the queue. So the
 * memory held for a slow watcher is bounded, and it costs nothing per write
 * while it is behind.
 *
 * Requests (validated here, as etcd's watch stream does):
 * - An empty key means "\0", the smallest key (etcd v3rpc watch.go): alone it
 *   watches the key "\0"; with range end "\0" it watches every key.
 * - A range end of "\0" watches every key >= key; another range end <= key is
 *   an empty range: error "emptyRange" (etcd "mvcc: watcher range is empty").
 * - startRevision 0 (or absent): from the next revision; in the past: replay;
 *   in the future: wait for it (etcd does the same); negative: error
 *   "invalidStartRevision" (leasehold's own; etcd has no such check).
 * - More than `watchersMax` watchers (canceled ones count until drained):
 *   error "tooManyWatchers" (leasehold's own limit; etcd has none).
 *
 * Cost: onWrite with E events visits, per event, the watchers of that exact
 * key (a Map lookup) and every range watcher (a string comparison each), so
 * O(E × (1 + R) + matches) with R <= watchersMax range watchers. Watchers
 * behind (unsynced) cost nothing per write. Iteration is in creation order
 * (Map and Set insertion order), so every replica's hub does the same.
 */

import { assert, assertNever } from "../raft/index.ts";
import { bytesToKeyString, compareBytes, isRangeEndToEnd } from "./bytes.ts";
import type { KeyRange, MvccStore } from "./mvcc.ts";
import { describeEvent } from "./mvcc.ts";
import type { KvEvent, Revision } from "./types.ts";
import { revision as asRevision } from "./types.ts";

/** Most watchers one hub holds (canceled ones count until their cancel is drained). */
export const WATCH_WATCHERS_MAX = 10_000;
/** Most events queued for one watcher before it falls back to catching up from history. */
export const WATCH_QUEUE_EVENTS_MAX = 10_000;
/** Most events in one response (whole revisions only; one bigger revision goes alone). */
export const WATCH_RESPONSE_EVENTS_MAX = 1_000;

/** A watch id: int64 on the etcd wire, hence a bigint; assigned by the hub from 0. */
export type WatchId = bigint & { readonly __brand: "WatchId" };
export const watchId = (n: bigint): WatchId => n as WatchId;

/** etcd WatchCreateRequest.FilterType: drop put events, or delete events. */
export type WatchFilter = "noPut" | "noDelete";

/** etcd WatchCreateRequest (without watch_id and fragment, which the stream layer owns). */
export interface WatchCreateRequest {
  /** May be empty: means "\0" (see the header). */
  readonly key: Uint8Array;
  /** Absent or empty: the single key; "\0": every key >= key; else [key, rangeEnd). */
  readonly rangeEnd?: Uint8Array | undefined;
  /** 0 or absent: from the next revision. */
  readonly startRevision?: Revision | undefined;
  readonly filters?: readonly WatchFilter[] | undefined;
  /** Fill `prevKv` in events (else it is always undefined). */
  readonly prevKv?: boolean | undefined;
  /** Receive the periodic progress notifications of `progress()`. */
  readonly progressNotify?: boolean | undefined;
}

/**
 * Why a watch was not created; the stream layer answers with created and
 * canceled set and this reason:
 * - emptyRange: "mvcc: watcher range is empty" (etcd ErrEmptyWatcherRange)
 * - tooManyWatchers, invalidStartRevision: leasehold's own (see the header).
 */
export type WatchCreateError = "emptyRange" | "tooManyWatchers" | "invalidStartRevision";

export type WatchCreateResult =
  | { readonly ok: true; readonly watchId: WatchId }
  | { readonly ok: false; readonly error: WatchCreateError };

/**
 * etcd WatchResponse, with proto3 zero values for what does not apply.
 * A progress notification has no flag set and no events.
 */
export interface WatchResponse {
  readonly watchId: WatchId;
  /** header.revision: see the header for what it promises. */
  readonly revision: Revision;
  readonly created: boolean;
  readonly canceled: boolean;
  /** Non-zero only on a cancel for compaction: restart from here. */
  readonly compactRevision: Revision;
  readonly cancelReason: string;
  readonly events: readonly KvEvent[];
}

/** Per-hub settings; defaults are the named constants above. */
export interface WatchHubOptions {
  readonly watchersMax?: number | undefined;
  readonly queueEventsMax?: number | undefined;
  readonly responseEventsMax?: number | undefined;
  /** Revisions per history read; absent: the store's watchBatchRevisionsMax. */
  readonly catchUpRevisionsMax?: number | undefined;
}

/** Options of `WatchHub.drain`. */
export interface WatchDrainOptions {
  /** Hand out only responses at revisions up to this one (absent: everything). */
  readonly revisionMax?: number | undefined;
}

/** What `status` reports about one watcher (tests, metrics, the stream layer). */
export interface WatchStatus {
  readonly state: "synced" | "unsynced" | "canceled";
  readonly nextRevision: Revision;
  readonly queuedEvents: number;
  readonly queuedResponses: number;
}

type Item =
  | { readonly kind: "events"; readonly revision: Revision; readonly events: readonly KvEvent[] }
  | { readonly kind: "created"; readonly revision: Revision }
  | { readonly kind: "progress"; readonly revision: Revision }
  | {
      readonly kind: "canceled";
      readonly revision: Revision;
      readonly compactRevision: Revision;
      readonly reason: string;
    };

interface Watcher {
  readonly id: WatchId;
  /** Normalized: key not empty; rangeEnd absent (one key), "\0" (to the end) or > key. */
  readonly range: KeyRange;
  readonly lo: string;
  /** Exclusive upper bound as a key string; undefined: to the end (unused when single). */
  readonly hi: string | undefined;
  readonly single: boolean;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly prevKv: boolean;
  readonly progressNotify: boolean;
  state: WatchStatus["state"];
  /**
   * Invariant: unsynced: every matching event below it is queued or delivered,
   * none at or above it; synced: live events below it are skipped (a future start).
   */
  nextRevision: Revision;
  /** FIFO from `head`. Invariant: queuedEvents = events in queue[head..]. */
  queue: Item[];
  head: number;
  queuedEvents: number;
  /** A progress request arrived while unsynced: answer once synced (etcd 3.6 defers it too). */
  progressRequested: boolean;
}

/** The watch engine of one member. See the file header for the contract. */
export class WatchHub {
  private readonly store: MvccStore;
  private readonly watchersMax: number;
  private readonly queueEventsMax: number;
  private readonly responseEventsMax: number;
  private readonly catchUpRevisionsMax: number | undefined;
  /** Every watcher not yet forgotten, in creation order. */
  private readonly watchers = new Map<WatchId, Watcher>();
  /** Synced or unsynced single-key watchers by key string. */
  private readonly byKey = new Map<string, Set<Watcher>>();
  /** Synced or unsynced range watchers, in creation order. */
  private readonly ranged = new Set<Watcher>();
  /** The last revision onWrite saw. Invariant: equals store.currentRevision() between calls. */
  private seen: Revision;
  private nextId = 0n;
  /** Times a watcher fell behind because its queue was full (for metrics and tests). */
  private overflowCount = 0;

  constructor(store: MvccStore, options: WatchHubOptions = {}) {
    this.store = store;
    this.watchersMax = options.watchersMax ?? WATCH_WATCHERS_MAX;
    this.queueEventsMax = options.queueEventsMax ?? WATCH_QUEUE_EVENTS_MAX;
    this.responseEventsMax = options.responseEventsMax ?? WATCH_RESPONSE_EVENTS_MAX;
    this.catchUpRevisionsMax = options.catchUpRevisionsMax;
    for (const n of [this.watchersMax, this.queueEventsMax, this.responseEventsMax]) {
      assert(Number.isSafeInteger(n) && n >= 1, `watch: bad limit ${n}`);
    }
    const c = this.catchUpRevisionsMax;
    assert(c === undefined || (Number.isSafeInteger(c) && c >= 1), `watch: bad catchUpRevisionsMax ${c}`);
    this.seen = store.currentRevision();
  }

  /** The revision the hub has seen through onWrite. */
  currentRevision(): Revision {
    return this.seen;
  }

  /** Watchers held, canceled ones included until drained. */
  watcherCount(): number {
    return this.watchers.size;
  }

  /** How many times a watcher's queue was full and it fell back to history. */
  overflows(): number {
    return this.overflowCount;
  }

  /**
   * etcd WatchCreateRequest. On success a created response is queued first;
   * a start below the compacted revision is followed at once by a cancel
   * carrying the compact revision (etcd sends both).
   */
  create(req: WatchCreateRequest): WatchCreateResult {
    this.assertInStep();
    const start = req.startRevision ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) return { ok: false, error: "invalidStartRevision" };
    const key = req.key.length === 0 ? Uint8Array.of(0) : req.key;
    const end = req.rangeEnd !== undefined && req.rangeEnd.length > 0 ? req.rangeEnd : undefined;
    if (end !== undefined && !isRangeEndToEnd(end) && compareBytes(key, end) >= 0) {
      return { ok: false, error: "emptyRange" };
    }
    if (this.watchers.size >= this.watchersMax) return { ok: false, error: "tooManyWatchers" };

    const filters = req.filters ?? [];
    const id = watchId(this.nextId++);
    const synced = start === 0 || start > this.seen;
    const w: Watcher = {
      id,
      range: { key, rangeEnd: end },
      lo: bytesToKeyString(key),
      hi: end === undefined || isRangeEndToEnd(end) ? undefined : bytesToKeyString(end),
      single: end === undefined,
      noPut: filters.includes("noPut"),
      noDelete: filters.includes("noDelete"),
      prevKv: req.prevKv ?? false,
      progressNotify: req.progressNotify ?? false,
      state: synced ? "synced" : "unsynced",
      nextRevision: asRevision(start === 0 ? this.seen + 1 : start),
      queue: [],
      head: 0,
      queuedEvents: 0,
      progressRequested: false,
    };
    this.watchers.set(id, w);
    this.push(w, { kind: "created", revision: this.seen });
    const compacted = this.store.compactedRevision();
    if (!synced && start < compacted) {
      this.finish(w, compacted, "");
    } else {
      this.index(w);
    }
    return { ok: true, watchId: id };
  }

  /**
   * etcd WatchCancelRequest: drops the queued events and progress (a created
   * response not yet drained stays: the client must learn the id first),
   * queues the canceled response (with `reason` as cancel_reason). False
   * when there is no such watcher or it is already canceled.
   */
  cancel(id: WatchId, reason = ""): boolean {
    const w = this.watchers.get(id);
    if (w === undefined || w.state === "canceled") return false;
    w.queue = w.queue.slice(w.head).filter((item) => item.kind === "created");
    w.head = 0;
    w.queuedEvents = 0;
    this.finish(w, asRevision(0), reason);
    return true;
  }

  /** Forgets a watcher at once, with no response (its stream is gone). False when unknown. */
  close(id: WatchId): boolean {
    const w = this.watchers.get(id);
    if (w === undefined) return false;
    this.forget(w);
    return true;
  }

  /**
   * The events of one write, all at `revision`, in op order, called right
   * after the store applied it. A write that changed nothing may be passed
   * with no events and the unchanged revision; it is ignored.
   */
  onWrite(events: readonly KvEvent[], revision: Revision): void {
    if (events.length === 0) {
      assert(revision === this.seen, `watch: empty write at ${revision}, hub at ${this.seen}`);
      return;
    }
    assert(revision === this.seen + 1, `watch: write at ${revision} after ${this.seen}: a write was missed`);
    assert(this.store.currentRevision() === revision, "watch: onWrite does not match the store");
    this.seen = revision;
    const batches = new Map<Watcher, KvEvent[]>();
    const take = (w: Watcher, ev: KvEvent): void => {
      if (w.state !== "synced" || revision < w.nextRevision || this.filtered(w, ev)) return;
      const batch = batches.get(w);
      if (batch === undefined) batches.set(w, [ev]);
      else batch.push(ev);
    };
    for (const ev of events) {
      assert(ev.kv.modRevision === revision, `watch: event at ${ev.kv.modRevision} in write ${revision}`);
      const k = bytesToKeyString(ev.kv.key);
      const exact = this.byKey.get(k);
      if (exact !== undefined) for (const w of exact) take(w, ev);
      for (const w of this.ranged) if (k >= w.lo && (w.hi === undefined || k < w.hi)) take(w, ev);
    }
    for (const [w, batch] of batches) {
      if (w.queuedEvents > 0 && w.queuedEvents + batch.length > this.queueEventsMax) {
        // Full: fall behind; this revision and the next ones come back from history.
        w.state = "unsynced";
        w.nextRevision = revision;
        this.overflowCount++;
        continue;
      }
      this.push(w, { kind: "events", revision, events: batch });
    }
  }

  /**
   * Periodic progress (etcd progress_notify): queues a progress notification
   * at the current revision for every synced watcher that asked for them.
   */
  progress(): void {
    this.assertInStep();
    for (const w of this.watchers.values()) {
      if (w.state === "synced" && w.progressNotify) this.pushProgress(w);
    }
  }

  /**
   * etcd WatchProgressRequest for one watcher: a progress notification now if
   * it is synced, else as soon as it has caught up. False when there is no
   * such watcher or it is canceled.
   */
  requestProgress(id: WatchId): boolean {
    this.assertInStep();
    const w = this.watchers.get(id);
    if (w === undefined || w.state === "canceled") return false;
    if (w.state === "synced") this.pushProgress(w);
    else w.progressRequested = true;
    return true;
  }

  /** Watchers with something to drain (queued responses, or history to catch up on), in creation order. */
  ready(): WatchId[] {
    const out: WatchId[] = [];
    for (const w of this.watchers.values()) {
      if (w.head < w.queue.length || w.state === "unsynced") out.push(w.id);
    }
    return out;
  }

  /**
   * Up to `responsesMax` responses for one watcher, in order; reads history
   * for an unsynced watcher whose queue is empty. After the canceled
   * response the watcher is forgotten. Unknown id: nothing.
   *
   * With `revisionMax`, only what the watcher has for revisions up to it:
   * the stream layer uses it to send everything through a revision before a
   * stream-wide progress notification for that revision (etcd sends that one
   * through the same channel as the events, so it comes after them).
   */
  drain(id: WatchId, responsesMax: number, options: WatchDrainOptions = {}): WatchResponse[] {
    assert(
      Number.isSafeInteger(responsesMax) && responsesMax >= 1,
      `watch: bad responsesMax ${responsesMax}`,
    );
    this.assertInStep();
    const w = this.watchers.get(id);
    const out: WatchResponse[] = [];
    if (w === undefined) return out;
    const revisionMax = options.revisionMax ?? Number.MAX_SAFE_INTEGER;
    while (out.length < responsesMax) {
      if (w.head === w.queue.length && w.state === "unsynced" && w.nextRevision <= revisionMax) {
        this.catchUp(w);
      }
      const item = w.queue[w.head];
      if (item === undefined || item.revision > revisionMax) break;
      if (item.kind === "events") {
        out.push(this.takeEvents(w, revisionMax));
        continue;
      }
      w.head++;
      out.push(controlResponse(w.id, item));
      if (item.kind === "canceled") {
        this.forget(w);
        break;
      }
    }
    if (w.head > 0 && w.head === w.queue.length) {
      w.queue = [];
      w.head = 0;
    }
    assert(w.queuedEvents >= 0, "watch: negative queued events");
    return out;
  }

  /** One watcher's state, or undefined when there is none. */
  status(id: WatchId): WatchStatus | undefined {
    const w = this.watchers.get(id);
    if (w === undefined) return undefined;
    return {
      state: w.state,
      nextRevision: w.nextRevision,
      queuedEvents: w.queuedEvents,
      queuedResponses: w.queue.length - w.head,
    };
  }

  // -- internals -------------------------------------------------------------

  /** The apply layer calls onWrite after every write before anything else: the hub is never behind the store. */
  private assertInStep(): void {
    assert(this.store.currentRevision() === this.seen, `watch: hub at ${this.seen}, store ahead`);
  }

  private filtered(w: Watcher, ev: KvEvent): boolean {
    return ev.type === "put" ? w.noPut : w.noDelete;
  }

  private index(w: Watcher): void {
    if (!w.single) {
      this.ranged.add(w);
      return;
    }
    let set = this.byKey.get(w.lo);
    if (set === undefined) {
      set = new Set();
      this.byKey.set(w.lo, set);
    }
    set.add(w);
  }

  private unindex(w: Watcher): void {
    if (!w.single) {
      this.ranged.delete(w);
      return;
    }
    const set = this.byKey.get(w.lo);
    if (set === undefined) return;
    set.delete(w);
    if (set.size === 0) this.byKey.delete(w.lo);
  }

  private forget(w: Watcher): void {
    this.unindex(w);
    this.watchers.delete(w.id);
  }

  /** Ends a watcher: no more events; its canceled response goes after what is queued. */
  private finish(w: Watcher, compactRevision: Revision, reason: string): void {
    assert(w.state !== "canceled", "watch: canceled twice");
    this.unindex(w);
    w.state = "canceled";
    w.progressRequested = false;
    this.push(w, { kind: "canceled", revision: this.seen, compactRevision, reason });
  }

  private push(w: Watcher, item: Item): void {
    if (item.kind === "events") {
      assert(item.events.length > 0, "watch: empty event batch");
      w.queuedEvents += item.events.length;
    }
    w.queue.push(item);
  }

  /** Consecutive progress notifications say the same thing: keep only the newest. */
  private pushProgress(w: Watcher): void {
    assert(w.state === "synced", "watch: progress for a watcher behind");
    const last = w.queue[w.queue.length - 1];
    if (w.head < w.queue.length && last?.kind === "progress") w.queue.pop();
    this.push(w, { kind: "progress", revision: this.seen });
  }

  /**
   * Reads the history from nextRevision into the (empty) queue, whole
   * revisions, about queueEventsMax events at most; synced again once at
   * the current revision; canceled with the compact revision if compacted.
   */
  private catchUp(w: Watcher): void {
    assert(w.state === "unsynced" && w.head === w.queue.length, "watch: catch-up with a queue");
    const r = this.store.eventsSince(w.nextRevision, w.range, this.catchUpRevisionsMax);
    if (!r.ok) {
      this.finish(w, r.compactRevision, "");
      return;
    }
    let next = r.nextRevision;
    let i = 0;
    while (i < r.events.length) {
      const rev = r.events[i]!.kv.modRevision;
      assert(rev >= w.nextRevision, "watch: history before the watcher's position");
      const batch: KvEvent[] = [];
      for (; i < r.events.length && r.events[i]!.kv.modRevision === rev; i++) {
        const ev = r.events[i]!;
        if (!this.filtered(w, ev)) batch.push(ev);
      }
      if (batch.length === 0) continue;
      if (w.queuedEvents > 0 && w.queuedEvents + batch.length > this.queueEventsMax) {
        next = rev;
        break;
      }
      this.push(w, { kind: "events", revision: rev, events: batch });
    }
    assert(next > w.nextRevision || r.events.length === 0, "watch: catch-up made no progress");
    w.nextRevision = next;
    if (next > this.seen) {
      assert(next === this.seen + 1, "watch: caught up past the current revision");
      w.state = "synced";
      if (w.progressRequested) {
        w.progressRequested = false;
        this.pushProgress(w);
      }
    }
  }

  /** One response from the queued event batches at the head: whole revisions, responseEventsMax when possible. */
  private takeEvents(w: Watcher, revisionMax: number): WatchResponse {
    const events: KvEvent[] = [];
    let last = asRevision(0);
    for (;;) {
      const item = w.queue[w.head];
      if (item === undefined || item.kind !== "events" || item.revision > revisionMax) break;
      if (events.length > 0 && events.length + item.events.length > this.responseEventsMax) break;
      assert(item.revision > last, "watch: queued revisions out of order");
      w.head++;
      w.queuedEvents -= item.events.length;
      for (const ev of item.events) {
        events.push(
          w.prevKv || ev.prevKv === undefined ? ev : { type: ev.type, kv: ev.kv, prevKv: undefined },
        );
      }
      last = item.revision;
    }
    return {
      watchId: w.id,
      revision: last,
      created: false,
      canceled: false,
      compactRevision: asRevision(0),
      cancelReason: "",
      events,
    };
  }
}

function controlResponse(id: WatchId, item: Exclude<Item, { kind: "events" }>): WatchResponse {
  const base = {
    watchId: id,
    revision: item.revision,
    created: false,
    canceled: false,
    compactRevision: asRevision(0),
    cancelReason: "",
    events: [],
  };
  switch (item.kind) {
    case "created":
      return { ...base, created: true };
    case "progress":
      return base;
    case "canceled":
      return { ...base, canceled: true, compactRevision: item.compactRevision, cancelReason: item.reason };
    default:
      return assertNever(item, "watch item");
  }
}

/**
 * `watch 3 rev=7 created`, `watch 3 rev=7 progress`, `watch 3 rev=7 canceled
 * compact=5 reason="x"`, `watch 3 rev=7 [put "a" rev=7 ...; delete "b" rev=7]`
 * (a `+prev` after an event that carries its previous version): deterministic,
 * for logs, traces and tests.
 */
export function describeWatchResponse(r: WatchResponse): string {
  const head = `watch ${r.watchId} rev=${r.revision}`;
  if (r.created) return `${head} created`;
  if (r.canceled) {
    const compact = r.compactRevision !== 0 ? ` compact=${r.compactRevision}` : "";
    const reason = r.cancelReason !== "" ? ` reason=${JSON.stringify(r.cancelReason)}` : "";
    return `${head} canceled${compact}${reason}`;
  }
  if (r.events.length === 0) return `${head} progress`;
  const events = r.events.map((ev) => describeEvent(ev) + (ev.prevKv !== undefined ? " +prev" : ""));
  return `${head} [${events.join("; ")}]`;
}
