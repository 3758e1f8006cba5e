/**
 * KeepAliveChannel (src/client/keepalive-stream.ts) against a scripted fake
 * stream: renewals share one stream and are matched by seq whatever the order
 * of the answers; refusals arrive typed and leave the stream alone; a
 * retryable answer, a failed stream, or a renewal abandoned on a stream that
 * answered nothing since breaks it, fails over (onBroken) and the next
 * renewal opens a new one.
 */

import { EventEmitter } from "node:events";
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import type { WireMessage } from "../../src/api/index.ts";
import {
  CancelledError,
  DeadlineExceededError,
  EtcdError,
  isRetryable,
  NotHolderError,
  UnavailableError,
} from "../../src/client/errors.ts";
import { type KeepAliveCall, KeepAliveChannel } from "../../src/client/keepalive-stream.ts";

type W = WireMessage;

class FakeCall extends EventEmitter implements KeepAliveCall {
  readonly sent: W[] = [];
  cancelled = false;
  write(m: W): boolean {
    this.sent.push(m);
    return true;
  }
  cancel(): void {
    this.cancelled = true;
    this.emit(
      "error",
      Object.assign(new Error("1 CANCELLED"), { code: status.CANCELLED, details: "Cancelled" }),
    );
  }
  answer(seq: unknown, fields: W): void {
    this.emit("data", { seq: String(seq), ...fields });
  }
}

function setup() {
  const calls: FakeCall[] = [];
  const broken: string[] = [];
  const channel = new KeepAliveChannel(
    () => {
      const call = new FakeCall();
      calls.push(call);
      return { call, endpoint: `e${calls.length}` };
    },
    (endpoint) => broken.push(endpoint),
  );
  return { calls, broken, channel };
}

const never = new AbortController().signal;

describe("KeepAliveChannel", () => {
  it("renewals share one stream and are matched by seq, whatever the order of the answers", async () => {
    const { calls, channel } = setup();
    const a = channel.renew(10n, "alice", never);
    const b = channel.renew(11n, "bob", never);
    expect(calls).toHaveLength(1);
    const [ra, rb] = calls[0]!.sent;
    expect(ra).toMatchObject({ lease_id: "10", holder: "alice" });
    expect(rb).toMatchObject({ lease_id: "11", holder: "bob" });
    calls[0]!.answer(rb!.seq, { ttl: "7" });
    calls[0]!.answer(ra!.seq, { ttl: "30" });
    expect(await Promise.all([a, b])).toEqual([30, 7]);
    // Still the same stream for the next round.
    const c = channel.renew(10n, "alice", never);
    calls[0]!.answer(calls[0]!.sent[2]!.seq, { ttl: "30" });
    expect(await c).toBe(30);
    expect(calls).toHaveLength(1);
  });

  it("a refusal in the message arrives as its typed error and the stream goes on", async () => {
    const { calls, broken, channel } = setup();
    const p = channel.renew(10n, "mallory", never);
    calls[0]!.answer(calls[0]!.sent[0]!.seq, {
      error_code: status.PERMISSION_DENIED,
      error_kind: "notHolder",
      error_message: 'leasehold: lease 000000000000000a on "db" is held by "alice", not "mallory"',
    });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotHolderError);
    expect((err as Error).message).toMatch(/not "mallory"/);
    expect(broken).toEqual([]);
    expect(calls[0]!.cancelled).toBe(false);
  });

  it("a retryable answer (no leader) breaks the stream: the next renewal goes to a new one", async () => {
    const { calls, broken, channel } = setup();
    const p = channel.renew(10n, "alice", never);
    const other = channel.renew(11n, "bob", never);
    calls[0]!.answer(calls[0]!.sent[0]!.seq, {
      error_code: status.UNAVAILABLE,
      error_kind: "",
      error_message: "etcdserver: no leader",
    });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdError);
    expect(isRetryable(err)).toBe(true);
    // The other renewal on that stream fails too (retryable), and the client moves on once.
    expect(await other.catch((e: unknown) => e)).toBeInstanceOf(UnavailableError);
    expect(broken).toEqual(["e1"]);
    expect(calls[0]!.cancelled).toBe(true);
    const next = channel.renew(10n, "alice", never);
    expect(calls).toHaveLength(2);
    calls[1]!.answer(calls[1]!.sent[0]!.seq, { ttl: "30" });
    expect(await next).toBe(30);
  });

  it("a refused token breaks the stream without failing over: the next renewal opens one on the same member", async () => {
    const { calls, broken, channel } = setup();
    const p = channel.renew(10n, "alice", never);
    calls[0]!.answer(calls[0]!.sent[0]!.seq, {
      error_code: status.UNAUTHENTICATED,
      error_kind: "",
      error_message: "etcdserver: invalid auth token",
    });
    expect(await p.catch((e: unknown) => e)).toBeInstanceOf(EtcdError);
    expect(calls[0]!.cancelled).toBe(true);
    expect(broken).toEqual([]);
    channel.renew(10n, "alice", never).catch(() => {});
    expect(calls).toHaveLength(2);
    channel.close();
  });

  it("a stream that fails rejects everything in flight as unavailable", async () => {
    const { calls, broken, channel } = setup();
    const ps = [channel.renew(1n, "a", never), channel.renew(2n, "b", never)];
    calls[0]!.emit(
      "error",
      Object.assign(new Error("14 UNAVAILABLE"), { code: status.UNAVAILABLE, details: "connection reset" }),
    );
    for (const p of ps) expect(await p.catch((e: unknown) => e)).toBeInstanceOf(UnavailableError);
    expect(broken).toEqual(["e1"]);
  });

  it("an abandoned renewal breaks a stream that answered nothing since, not one that did", async () => {
    const { calls, broken, channel } = setup();
    // The stream answers another renewal after this one was sent: alive, only slow for this one.
    const slow = new AbortController();
    const p1 = channel.renew(1n, "a", slow.signal);
    const p2 = channel.renew(2n, "b", never);
    calls[0]!.answer(calls[0]!.sent[1]!.seq, { ttl: "9" });
    expect(await p2).toBe(9);
    slow.abort(new DeadlineExceededError("attempt timed out"));
    expect(((await p1.catch((e: unknown) => e)) as Error).message).toBe("attempt timed out");
    expect(broken).toEqual([]);
    // Abandoned because its lease ended (released, closed), on a silent stream: nothing wrong with the stream.
    const released = new AbortController();
    const p5 = channel.renew(5n, "e", released.signal);
    released.abort(new CancelledError("leasehold: the lease keeper stopped"));
    await expect(p5).rejects.toBeInstanceOf(CancelledError);
    expect(broken).toEqual([]);
    expect(calls[0]!.cancelled).toBe(false);
    // Timed out, silent since the renewal was sent: broken, and the client moves on.
    const silent = new AbortController();
    const p3 = channel.renew(3n, "c", silent.signal);
    const p4 = channel.renew(4n, "d", never);
    silent.abort(new DeadlineExceededError("attempt timed out"));
    await expect(p3).rejects.toThrow("attempt timed out");
    expect(await p4.catch((e: unknown) => e)).toBeInstanceOf(UnavailableError);
    expect(broken).toEqual(["e1"]);
    channel.renew(6n, "f", never).catch(() => {});
    expect(calls).toHaveLength(2);
    channel.close();
  });

  it("close cancels the stream and rejects what is in flight, without failing over", async () => {
    const { calls, broken, channel } = setup();
    const p = channel.renew(1n, "a", never);
    channel.close();
    expect(await p.catch((e: unknown) => e)).toBeInstanceOf(CancelledError);
    expect(calls[0]!.cancelled).toBe(true);
    await expect(channel.renew(1n, "a", never)).rejects.toBeInstanceOf(CancelledError);
    expect(broken).toEqual([]);
    expect(calls).toHaveLength(1);
  });
});
