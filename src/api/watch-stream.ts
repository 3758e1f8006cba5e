/**
 * One etcd v3 Watch stream (a bidi `Watch` call): the client's watchers under
 * the stream's own ids, mapped to watchers on the member's hub
 * (src/state/watch.ts), and the stream-only parts of etcd's protocol.
 * Behaviour is etcd 3.4's server, release-3.4 branch (etcdserver/api/v3rpc/
 * watch.go; mvcc/watcher.go; mvcc/watchable_store.go), written from it:
 *
 * - Ids: watch_id 0 asks for one: the next id not in use on the stream,
 *   counting from 0 (an id the client picked is skipped). A client-picked id
 *   in use is refused, "mvcc: duplicate watch ID provided on the WatchStream".
 * - A refused create is answered `created` and `canceled` at once, with
 *   watch_id -1 and the reason: empty range ("mvcc: watcher range is
 *   empty"), duplicate id, a negative start_revision (etcd's Compacted
 *   message, since v3.4.38), a range the caller may not read while auth is
 *   on (etcd's isWatchPermitted, checked after the start and before the
 *   range: "rpc error: code = PermissionDenied desc = etcdserver: permission
 *   denied", or the invalid-token, old-revision or empty-user text). A check
 *   that waits (the caller's token names an entry not applied here yet)
 *   holds the stream's later requests until it is done, so answers keep
 *   their order. Unknown filter values are ignored.
 * - A start below the compacted revision creates the watcher (`created`),
 *   then cancels it with compact_revision set, no cancel_reason and header
 *   revision 0 (mvcc sends that response with no revision). Its id stays
 *   taken until the client cancels it (etcd keeps it in watchStream.watchers).
 * - Cancel of an id in use: `canceled` at the current revision, sent at once;
 *   events not yet sent for it are dropped. Unknown id: no answer.
 * - progress_request: if every watcher on the stream is synced (and none
 *   waits for a start revision in the future), one response with watch_id
 *   -1 at the current revision, after everything already due for those
 *   watchers; otherwise no answer (3.4.25's progressIfSync: an answer never
 *   overtakes events). With no watchers, the answer at once, as etcd 3.4.23
 *   (Debian's, the reference) gives it; etcd ≤ 3.4.24 answered every
 *   request at once, even ahead of events.
 * - progress_notify: every interval (10 min and up to 10% jitter), a
 *   progress response (the watcher's id, current revision) to each such
 *   watcher that is synced, unless an events response went to it since the
 *   previous tick (sendLoop's progressTicker).
 * - The client's half-close (io.EOF in recvLoop) ends nothing: the stream
 *   and its watchers live until the client cancels the call.
 *
 * Backpressure: when the call's write buffer is full (write() returns false)
 * the stream stops pulling from the hub until 'drain'. The hub keeps each
 * watcher's place (a full queue falls back to history), so a slow client
 * costs the member bounded memory and still gets every event, in order.
 * Control answers to the client's own requests (refusals, cancels) are
 * written even then: one small message per request.
 */

import type { ServerDuplexStream, ServiceError } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { assert } from "../raft/index.ts";
import type { Revision, WatchFilter, WatchHub, WatchId, WatchResponse } from "../state/index.ts";
import { revision, WATCH_WATCHERS_MAX } from "../state/index.ts";
import { eventToWire } from "./convert.ts";
import { WATCH_CANCEL_REASONS } from "./errors.ts";
import type { WireMessage } from "./proto.ts";
import { int64FromWire } from "./proto.ts";

type W = WireMessage;

/** etcd's progressReportInterval: 10 minutes (plus jitter, see the header). */
export const WATCH_PROGRESS_NOTIFY_INTERVAL_MS = 10 * 60 * 1000;
/** Ids one stream holds, compacted ones not yet canceled by the client included (leasehold's own limit). */
export const WATCH_STREAM_WATCHERS_MAX = WATCH_WATCHERS_MAX;
/**
 * Stream-wide progress answers waiting behind a full write buffer; more
 * requests are not answered (etcd drops them too when its channel is full).
 */
export const WATCH_STREAM_PROGRESS_OWED_MAX = 16;
/** cancel_reason when a limit refuses a create (leasehold's own; etcd has no limit). */
export const WATCH_TOO_MANY_WATCHERS_REASON = "leasehold: too many watchers";

/** clientv3.InvalidWatchID: the id of refusals and of stream-wide progress. */
const INVALID_WATCH_ID = -1n;
/** WatchCreateRequest.FilterType by number; others are ignored (FiltersFromRequest). */
const WATCH_FILTERS: readonly WatchFilter[] = ["noPut", "noDelete"];

/** What a stream needs from the server. */
export interface WatchStreamOptions {
  /** The member's hub at the stream's start (a restore replaces it and ends the stream). */
  readonly hub: WatchHub;
  /** etcd's ResponseHeader at a revision. */
  readonly header: (rev: number) => W;
  /** The progress_notify interval before jitter; etcd's default is WATCH_PROGRESS_NOTIFY_INTERVAL_MS. */
  readonly progressNotifyIntervalMs: number;
  /** A number in [0, 1) for the interval's jitter (Math.random in production). */
  readonly random: () => number;
  readonly log?: ((level: "info" | "warn" | "error", msg: string) => void) | undefined;
  /**
   * The auth check of a create on [key, rangeEnd) (server.ts: AuthGate.watchRefusal):
   * the cancel_reason when the caller may not watch it, undefined when it may,
   * or a promise of either. Absent: every create is allowed.
   */
  readonly authorize?:
    | ((
        key: Uint8Array,
        rangeEnd: Uint8Array | undefined,
      ) => string | undefined | Promise<string | undefined>)
    | undefined;
}

/** One watcher as the stream knows it. */
interface StreamWatcher {
  /** The stream's id (int64 on the wire). */
  readonly id: bigint;
  /** The hub's watcher; undefined once its cancel for compaction went out (the id stays taken). */
  hubId: WatchId | undefined;
  /** The request's start_revision (0: next); progress waits until the store reaches it. */
  readonly startRevision: number;
  readonly prevKv: boolean;
  /** etcd's progress[id]: undefined without progress_notify; false after events until the next tick. */
  progressDue: boolean | undefined;
}

/** One Watch call. See the file header for the contract. */
export class WatchStream {
  private readonly call: ServerDuplexStream<W, W>;
  private readonly options: WatchStreamOptions;
  private readonly hub: WatchHub;
  /** By stream id, in creation order. */
  private readonly byId = new Map<bigint, StreamWatcher>();
  /** Watchers still on the hub. Invariant: exactly the byId entries with a hubId. */
  private readonly byHub = new Map<WatchId, StreamWatcher>();
  /** etcd's watchStream.nextID: where the search for a free auto id starts. */
  private nextAutoId = 0n;
  /** Revisions of stream-wide progress answers not yet sent, oldest first. */
  private readonly owedProgress: Revision[] = [];
  /** The call's write buffer is full: pull nothing from the hub until 'drain'. */
  private paused = false;
  private ended = false;
  private readonly ticker: ReturnType<typeof setInterval>;

  constructor(call: ServerDuplexStream<W, W>, options: WatchStreamOptions) {
    assert(options.progressNotifyIntervalMs > 0, "watch: progress interval must be positive");
    this.call = call;
    this.options = options;
    this.hub = options.hub;
    const interval = options.progressNotifyIntervalMs;
    // GetProgressReportInterval: interval + rand(interval / 10), once per stream.
    const jitter = Math.floor(options.random() * Math.floor(interval / 10));
    this.ticker = setInterval(() => this.progressTick(), interval + jitter);
    this.ticker.unref();
    call.on("data", (w: W) => this.request(w));
    call.on("drain", () => {
      this.paused = false;
      this.pump();
    });
    // A half-close ends nothing (recvLoop returns nil on io.EOF; Watch waits for the context).
    call.on("error", () => {});
  }

  /** Sends what the hub has for this stream's watchers (the server calls it after every apply). */
  drain(): void {
    this.pump();
  }

  /**
   * One progress_notify tick (the timer calls it; tests may too): a
   * progress response to every progress_notify watcher that is synced and
   * got no events since the previous tick.
   */
  progressTick(): void {
    if (this.ended) return;
    for (const w of this.byId.values()) {
      if (w.progressDue === undefined) continue;
      if (w.progressDue && w.hubId !== undefined && this.caughtUp(w)) this.hub.requestProgress(w.hubId);
      w.progressDue = true;
    }
    this.pump();
  }

  /** Forgets every watcher and stops the timer (the call is gone). */
  closeAll(): void {
    clearInterval(this.ticker);
    for (const hubId of this.byHub.keys()) this.hub.close(hubId);
    this.byHub.clear();
    this.byId.clear();
    this.owedProgress.length = 0;
    this.ended = true;
  }

  /** Ends the call: OK, or the error status `code` with `details`. */
  end(code: status, details: string): void {
    if (this.ended) return;
    this.closeAll();
    if (code === status.OK) this.call.end();
    else {
      const e = new Error(details) as ServiceError;
      e.code = code;
      e.details = details;
      this.call.emit("error", e);
    }
  }

  // ---------------------------------------------------------------- requests

  private request(w: W): void {
    if (this.ended) return;
    try {
      switch (w.request_union) {
        case "create_request":
          if (w.create_request != null) this.create(w.create_request as W);
          break;
        case "cancel_request":
          if (w.cancel_request != null) this.cancel(int64FromWire((w.cancel_request as W).watch_id));
          break;
        case "progress_request":
          if (w.progress_request != null) this.requestProgressAll();
          break;
        default:
          // etcd ignores a request it does not know ("we probably should not shutdown the entire stream").
          break;
      }
      this.pump();
    } catch (e) {
      this.options.log?.("error", `watch: unexpected ${(e as Error)?.stack ?? String(e)}`);
      this.end(status.INTERNAL, "etcdserver: internal error");
    }
  }

  private create(w: W): void {
    const start = int64FromWire(w.start_revision);
    // etcd rejects a negative start before anything else (v3.4.38).
    if (start < 0n) {
      this.refuse(WATCH_CANCEL_REASONS.Compacted);
      return;
    }
    const key = w.key instanceof Uint8Array ? new Uint8Array(w.key) : new Uint8Array(0);
    const end =
      w.range_end instanceof Uint8Array && w.range_end.length > 0 ? new Uint8Array(w.range_end) : undefined;
    const verdict = this.options.authorize?.(key, end);
    if (!(verdict instanceof Promise)) {
      if (verdict === undefined) this.open(w, start, key, end);
      else this.refuse(verdict);
      return;
    }
    // Later requests wait for this one's answer.
    this.call.pause();
    verdict
      .then((reason) => {
        if (this.ended) return;
        if (reason === undefined) this.open(w, start, key, end);
        else this.refuse(reason);
        this.pump();
        this.call.resume();
      })
      .catch((e: unknown) => {
        this.options.log?.("error", `watch: unexpected ${(e as Error)?.stack ?? String(e)}`);
        this.end(status.INTERNAL, "etcdserver: internal error");
      });
  }

  /** The rest of a create the caller may make. */
  private open(w: W, start: bigint, key: Uint8Array, end: Uint8Array | undefined): void {
    const hub = this.hub;
    // A start past 2^53 is "far in the future" all the same.
    const startRevision = start > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(start);
    const filters: WatchFilter[] = [];
    for (const f of Array.isArray(w.filters) ? (w.filters as unknown[]) : []) {
      const name = typeof f === "number" ? WATCH_FILTERS[f] : undefined;
      if (name !== undefined) filters.push(name);
    }
    const prevKv = w.prev_kv === true;
    // mvcc watchStream.Watch checks the range before the id.
    const res = hub.create({
      key,
      rangeEnd: end,
      startRevision: revision(startRevision),
      filters,
      prevKv,
      progressNotify: w.progress_notify === true,
    });
    if (!res.ok) {
      this.refuse(
        res.error === "emptyRange"
          ? WATCH_CANCEL_REASONS.EmptyWatcherRange
          : res.error === "tooManyWatchers"
            ? WATCH_TOO_MANY_WATCHERS_REASON
            : WATCH_CANCEL_REASONS.Compacted,
      );
      return;
    }
    const asked = int64FromWire(w.watch_id);
    const refusal =
      asked !== 0n && this.byId.has(asked)
        ? WATCH_CANCEL_REASONS.DuplicateWatchId
        : this.byId.size >= WATCH_STREAM_WATCHERS_MAX
          ? WATCH_TOO_MANY_WATCHERS_REASON
          : undefined;
    if (refusal !== undefined) {
      hub.close(res.watchId);
      this.refuse(refusal);
      return;
    }
    let id = asked;
    if (id === 0n) {
      while (this.byId.has(this.nextAutoId)) this.nextAutoId++;
      id = this.nextAutoId++;
    }
    const sw: StreamWatcher = {
      id,
      hubId: res.watchId,
      startRevision,
      prevKv,
      progressDue: w.progress_notify === true ? true : undefined,
    };
    this.byId.set(id, sw);
    this.byHub.set(res.watchId, sw);
  }

  /** A create etcd refuses: created and canceled at once, watch_id -1. */
  private refuse(reason: string): void {
    this.send({
      header: this.options.header(this.hub.currentRevision()),
      watch_id: String(INVALID_WATCH_ID),
      created: true,
      canceled: true,
      cancel_reason: reason,
    });
  }

  private cancel(id: bigint): void {
    const w = this.byId.get(id);
    if (w === undefined) return; // ErrWatcherNotExist: etcd answers nothing.
    this.byId.delete(id);
    if (w.hubId !== undefined) {
      const hubId = w.hubId;
      this.byHub.delete(hubId);
      this.hub.cancel(hubId);
      // After cancel the hub holds at most its created response (if not yet sent) and a
      // cancel; the created one still goes first, the rest is replaced by etcd's answer.
      for (let i = 0; i < 4 && this.hub.status(hubId) !== undefined; i++) {
        for (const r of this.hub.drain(hubId, 4)) if (r.created) this.deliver(w, r);
      }
      assert(this.hub.status(hubId) === undefined, "watch: a canceled watcher left on the hub");
    }
    this.send({
      header: this.options.header(this.hub.currentRevision()),
      watch_id: String(id),
      canceled: true,
    });
  }

  /** etcd's RequestProgressAll: answered only when every watcher is caught up. */
  private requestProgressAll(): void {
    for (const w of this.byId.values()) if (!this.caughtUp(w)) return;
    if (this.owedProgress.length >= WATCH_STREAM_PROGRESS_OWED_MAX) return;
    this.owedProgress.push(this.hub.currentRevision());
  }

  /** etcd progressIfSync for one watcher: in the synced group and the store at its start revision. */
  private caughtUp(w: StreamWatcher): boolean {
    if (w.hubId === undefined) return false;
    const st = this.hub.status(w.hubId);
    if (st === undefined || st.state !== "synced") return false;
    return w.startRevision === 0 || this.hub.currentRevision() >= w.startRevision;
  }

  // ---------------------------------------------------------------- sending

  /**
   * Moves responses from the hub to the call until the buffer is full:
   * first everything through the oldest owed progress revision, then that
   * progress answer, and so on; then everything.
   */
  private pump(): void {
    while (!this.ended && !this.paused) {
      const barrier = this.owedProgress[0];
      if (!this.drainWatchers(barrier)) return;
      if (barrier === undefined) return;
      this.owedProgress.shift();
      this.send({ header: this.options.header(barrier), watch_id: String(INVALID_WATCH_ID) });
    }
  }

  /** Drains every watcher (through `revisionMax` if given); false when the buffer filled first. */
  private drainWatchers(revisionMax: Revision | undefined): boolean {
    for (const [hubId, w] of this.byHub) {
      for (;;) {
        if (this.paused || this.ended) return false;
        const [r] = this.hub.drain(hubId, 1, { revisionMax });
        if (r === undefined) break;
        this.deliver(w, r);
      }
    }
    return !this.paused && !this.ended;
  }

  /** One hub response on the wire, under the stream's id. */
  private deliver(w: StreamWatcher, r: WatchResponse): void {
    const compacted = r.compactRevision > 0;
    // mvcc's cancel for compaction carries no revision: etcd's header says 0.
    const out: W = { header: this.options.header(compacted ? 0 : r.revision), watch_id: String(w.id) };
    if (r.created) out.created = true;
    if (r.canceled) out.canceled = true;
    if (compacted) out.compact_revision = String(r.compactRevision);
    if (r.cancelReason !== "") out.cancel_reason = r.cancelReason;
    if (r.events.length > 0) {
      out.events = r.events.map((e) => eventToWire(e, w.prevKv));
      if (w.progressDue !== undefined) w.progressDue = false;
    }
    this.send(out);
    if (r.canceled && w.hubId !== undefined) {
      // Only the hub cancels on its own (for compaction): the id stays taken until the client cancels it.
      this.byHub.delete(w.hubId);
      w.hubId = undefined;
    }
  }

  private send(w: W): void {
    if (this.ended || this.call.destroyed) return;
    if (!this.call.write(w)) this.paused = true;
  }
}
