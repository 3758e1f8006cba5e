/**
 * WatchStream (src/api/watch-stream.ts) on a fake call over a real hub and
 * MVCC store, for the rules that depend on timing on a real server: the
 * progress_notify tick and its elision after events (etcd sendLoop's
 * progress map), and what a full write buffer holds back. Ticks are called
 * by hand (the stream's own timer is set far away); nothing sleeps.
 */

import { EventEmitter } from "node:events";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import type { WireMessage } from "../../src/api/index.ts";
import { WatchStream } from "../../src/api/watch-stream.ts";
import { MvccStore } from "../../src/state/mvcc.ts";
import { WatchHub } from "../../src/state/watch.ts";

type W = WireMessage;
const b = (s: string): Buffer => Buffer.from(s);

/** The call as the stream uses it: data in, write out (false once `bufferMax` messages wait), drain. */
class FakeCall extends EventEmitter {
  readonly sent: W[] = [];
  destroyed = false;
  /** Messages written since the last `flush`; write returns false at this many. */
  pending = 0;
  constructor(readonly bufferMax = Number.POSITIVE_INFINITY) {
    super();
  }
  write(m: W): boolean {
    this.sent.push(m);
    this.pending++;
    return this.pending < this.bufferMax;
  }
  /** The client read everything: 'drain'. */
  flush(): void {
    this.pending = 0;
    this.emit("drain");
  }
  /** A request as proto-loader decodes it: the oneof named by `request_union`. */
  request(m: W): void {
    this.emit("data", { ...m, request_union: Object.keys(m)[0] });
  }
  /** What was sent since the last call, one line each. */
  take(): string[] {
    return this.sent.splice(0).map(line);
  }
}

function line(m: W): string {
  const parts = [`watch ${m.watch_id} rev=${(m.header as W).revision}`];
  if (m.created) parts.push("created");
  if (m.canceled) parts.push("canceled");
  const events = (m.events as W[] | undefined) ?? [];
  if (events.length > 0) {
    parts.push(`[${events.map((e) => `${String((e.kv as W).key)}@${(e.kv as W).mod_revision}`).join("; ")}]`);
  }
  return parts.join(" ");
}

/** A store, its hub, one stream on a fake call; writes go to the hub and then to the stream, as the server does. */
function fixture(bufferMax?: number) {
  const store = new MvccStore();
  const hub = new WatchHub(store);
  const call = new FakeCall(bufferMax);
  const stream = new WatchStream(call as unknown as ServerDuplexStream<W, W>, {
    hub,
    header: (rev) => ({ revision: String(rev) }),
    progressNotifyIntervalMs: 1e9,
    random: () => 0,
    log: (_level, msg) => {
      throw new Error(msg);
    },
  });
  const put = (key: string): number => {
    const r = store.put({ key: b(key), value: b("v") });
    if (!r.ok) throw new Error(r.error);
    hub.onWrite(r.events, r.revision);
    stream.drain();
    return r.revision;
  };
  return { hub, call, stream, put };
}

describe("progress_notify ticks", () => {
  it("first tick: progress; a tick after events is skipped; the next one sends again; watchers without progress_notify get none", () => {
    const { call, stream, put } = fixture();
    call.request({
      create_request: { key: b("a"), start_revision: "0", watch_id: "0", progress_notify: true },
    });
    call.request({ create_request: { key: b("a"), start_revision: "0", watch_id: "0" } });
    expect(call.take()).toEqual(["watch 0 rev=1 created", "watch 1 rev=1 created"]);
    stream.progressTick();
    expect(call.take()).toEqual(["watch 0 rev=1"]);
    put("a");
    expect(call.take()).toEqual(["watch 0 rev=2 [a@2]", "watch 1 rev=2 [a@2]"]);
    stream.progressTick(); // events went out since the last tick: elided
    expect(call.take()).toEqual([]);
    put("other");
    stream.progressTick();
    expect(call.take()).toEqual(["watch 0 rev=3"]);
    stream.progressTick();
    expect(call.take()).toEqual(["watch 0 rev=3"]);
    stream.closeAll();
  });

  it("no tick progress for a watcher waiting for a future start, until the store reaches it", () => {
    const { call, stream, put } = fixture();
    put("x");
    call.request({
      create_request: { key: b("a"), start_revision: "5", watch_id: "0", progress_notify: true },
    });
    expect(call.take()).toEqual(["watch 0 rev=2 created"]);
    put("x");
    put("x");
    stream.progressTick();
    expect(call.take()).toEqual([]);
    put("x");
    stream.progressTick();
    expect(call.take()).toEqual(["watch 0 rev=5"]);
    stream.closeAll();
  });
});

describe("a full write buffer", () => {
  it("holds the hub's events back until drain; a cancel is answered at once and drops what was held", () => {
    const { hub, call, put } = fixture(2);
    call.request({ create_request: { key: b("k"), start_revision: "0", watch_id: "0" } });
    put("k"); // second message: the buffer is full now
    put("k");
    put("k");
    expect(call.take()).toEqual(["watch 0 rev=1 created", "watch 0 rev=2 [k@2]"]);
    expect(hub.status(hub.ready()[0]!)?.queuedEvents).toBe(2);
    call.flush();
    expect(call.take()).toEqual(["watch 0 rev=4 [k@3; k@4]"]);
    call.flush();
    put("k");
    put("k");
    put("k");
    expect(call.take()).toEqual(["watch 0 rev=5 [k@5]", "watch 0 rev=6 [k@6]"]);
    call.request({ cancel_request: { watch_id: "0" } });
    expect(call.take()).toEqual(["watch 0 rev=7 canceled"]);
    call.flush();
    expect(call.take()).toEqual([]);
    expect(hub.watcherCount()).toBe(0);
  });

  it("a progress request while events are held: answered after the events before it and before the ones after it", () => {
    const { call, put } = fixture(2);
    call.request({ create_request: { key: b("k"), start_revision: "0", watch_id: "0" } });
    call.request({ create_request: { key: b("j"), start_revision: "0", watch_id: "0" } });
    put("k"); // held: the buffer is full
    put("j");
    call.request({ progress_request: {} });
    put("k");
    expect(call.take()).toEqual(["watch 0 rev=1 created", "watch 1 rev=1 created"]);
    call.flush();
    expect(call.take()).toEqual(["watch 0 rev=2 [k@2]", "watch 1 rev=3 [j@3]"]);
    call.flush();
    expect(call.take()).toEqual(["watch -1 rev=3", "watch 0 rev=4 [k@4]"]);
  });

  it("a watcher created while the buffer is full: its created response is not lost when it is canceled at once", () => {
    const { call, put } = fixture(1);
    put("z");
    call.request({ create_request: { key: b("k"), start_revision: "0", watch_id: "0" } });
    call.request({ create_request: { key: b("k"), start_revision: "0", watch_id: "0" } });
    call.request({ cancel_request: { watch_id: "1" } });
    expect(call.take()).toEqual(["watch 0 rev=2 created", "watch 1 rev=2 created", "watch 1 rev=2 canceled"]);
  });
});
