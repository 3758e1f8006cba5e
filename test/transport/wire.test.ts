/**
 * The wire format without sockets: handshake round trips and refusals, frames
 * reassembled from arbitrary splits of the stream, protocol errors, and the
 * backoff's bounds.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { memberId } from "../../src/raft/index.ts";
import { nextBackoffMs } from "../../src/transport/index.ts";
import {
  encodeHello,
  encodeResponse,
  FRAME_HEADER_BYTES,
  FRAME_PAYLOAD_BYTES_MAX,
  FrameDecoder,
  readHello,
  readResponse,
  WIRE_VERSION,
  writeFrameHeader,
} from "../../src/transport/wire.ts";
import { pattern, sameBytes } from "./helpers.ts";

/** Encodes `messages` as frames of at most `chunkBytes` payload bytes, as the sender does. */
function encodeFrames(messages: readonly Uint8Array[], chunkBytes: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const m of messages) {
    let at = 0;
    do {
      const take = Math.min(chunkBytes, m.length - at);
      const frame = new Uint8Array(FRAME_HEADER_BYTES + take);
      writeFrameHeader(frame, 0, take, at + take === m.length);
      frame.set(m.subarray(at, at + take), FRAME_HEADER_BYTES);
      parts.push(frame);
      at += take;
    } while (at < m.length);
  }
  return Buffer.concat(parts);
}

/** Feeds `stream` to a decoder cut at `cuts` (offsets); returns the messages and the first error. */
function decodeInPieces(stream: Uint8Array, cuts: readonly number[], messageBytesMax = 1 << 26) {
  const decoder = new FrameDecoder(messageBytesMax);
  const messages: Uint8Array[] = [];
  let error: string | null = null;
  let from = 0;
  for (const to of [...[...cuts].sort((a, b) => a - b), stream.length]) {
    const r = decoder.push(stream.subarray(from, Math.max(from, to)));
    messages.push(...r.messages);
    error ??= r.error;
    from = Math.max(from, to);
  }
  return { messages, error };
}

const hello = { version: WIRE_VERSION, from: memberId(7), to: memberId(2 ** 40 + 3), clusterId: "prod-ø" };

describe("handshake", () => {
  it("round-trips a hello, byte by byte, and keeps what follows it", () => {
    const bytes = Buffer.concat([encodeHello(hello), Buffer.from([9, 9])]);
    for (let n = 0; n < bytes.length - 2; n++)
      expect(readHello(bytes.subarray(0, n)).kind).toBe("incomplete");
    const r = readHello(bytes);
    expect(r.kind === "ok" && r.value).toEqual(hello);
    expect(r.kind === "ok" && [...r.rest]).toEqual([9, 9]);
  });

  it.each([
    ["bad-magic", (b: Uint8Array) => b.set([0x47, 0x45, 0x54, 0x20], 0)], // "GET "
    ["bad-version", (b: Uint8Array) => b.set([0, 2], 4)],
    ["malformed", (b: Uint8Array) => b.fill(0, 6, 14)], // member id 0
    ["malformed", (b: Uint8Array) => b.set([0x20, 0, 0, 0], 6)], // id above 2^53
    ["malformed", (b: Uint8Array) => b.set([0xff], b.length - 1)], // invalid UTF-8
  ])("refuses a hello with %s", (reason, spoil) => {
    const bytes = encodeHello(hello).slice();
    spoil(bytes);
    const r = readHello(bytes);
    expect(r.kind === "error" && r.reason).toBe(reason);
  });

  it("says which version it speaks when the peer speaks another", () => {
    const bytes = encodeHello(hello).slice();
    bytes.set([0, 9], 4);
    const r = readHello(bytes);
    expect(r.kind === "error" && r.detail).toBe(
      "peer protocol version 9 is not supported (this member speaks 1)",
    );
  });

  it("round-trips responses and cuts an overlong reason", () => {
    const accepted = readResponse(encodeResponse({ status: "accepted" }));
    expect(accepted.kind === "ok" && accepted.value).toEqual({ status: "accepted" });
    const rejected = readResponse(encodeResponse({ status: "rejected", reason: "cluster-mismatch: x" }));
    expect(rejected.kind === "ok" && rejected.value).toEqual({
      status: "rejected",
      reason: "cluster-mismatch: x",
    });
    const long = readResponse(encodeResponse({ status: "rejected", reason: "r".repeat(5000) }));
    expect(long.kind === "ok" && long.value.status === "rejected" && long.value.reason.length).toBe(1024);
  });
});

describe("frames", () => {
  it("reassembles any messages from any split of the stream (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }),
        fc.integer({ min: 1, max: 64 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (messages, chunkBytes, rawCuts) => {
          const stream = encodeFrames(messages, chunkBytes);
          const cuts = rawCuts.map((c) => c % (stream.length + 1));
          const r = decodeInPieces(stream, cuts);
          expect(r.error).toBeNull();
          expect(r.messages.map((m) => [...m])).toEqual(messages.map((m) => [...m]));
        },
      ),
    );
  });

  it("reassembles a 9 MiB message from 1 MiB frames fed in 64 KiB pieces", () => {
    const big = pattern(9 * FRAME_PAYLOAD_BYTES_MAX + 17, 1);
    const stream = encodeFrames([big, new Uint8Array([1, 2, 3])], FRAME_PAYLOAD_BYTES_MAX);
    const cuts = Array.from({ length: Math.floor(stream.length / 65_536) }, (_, i) => (i + 1) * 65_536);
    const r = decodeInPieces(stream, cuts);
    expect(r.error).toBeNull();
    expect(r.messages).toHaveLength(2);
    expect(sameBytes(r.messages[0]!, big)).toBe(true);
    expect([...r.messages[1]!]).toEqual([1, 2, 3]);
  });

  /** A raw frame header. */
  const header = (length: number, flags: number): Uint8Array => {
    const h = new Uint8Array(FRAME_HEADER_BYTES);
    new DataView(h.buffer).setUint32(0, length);
    h[4] = flags;
    return h;
  };

  it.each([
    ["a frame above 1 MiB", header(FRAME_PAYLOAD_BYTES_MAX + 1, 1), `frame of 1048577 bytes exceeds 1048576`],
    ["unknown flags", header(1, 0x81), "frame with unknown flags 0x81"],
    ["an empty frame inside a message", header(0, 0), "empty frame in the middle of a message"],
  ])("stops at %s", (_what, bytes, error) => {
    const r = new FrameDecoder(1 << 26).push(bytes);
    expect(r.error).toBe(error);
  });

  it("stops at a message above messageBytesMax and stays stopped, after delivering what came before", () => {
    const stream = encodeFrames([new Uint8Array(10), new Uint8Array(101)], 50);
    const decoder = new FrameDecoder(100);
    const r = decoder.push(stream);
    expect(r.messages).toHaveLength(1);
    expect(r.error).toBe("message exceeds 100 bytes");
    expect(decoder.push(encodeFrames([new Uint8Array(1)], 50))).toEqual({
      messages: [],
      error: "message exceeds 100 bytes",
    });
  });
});

describe("backoff", () => {
  it("stays within [initial, max] and grows from the floor (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 0, max: 5000 }),
        fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), {
          minLength: 1,
          maxLength: 30,
        }),
        (initialMs, extraMs, draws) => {
          const bounds = { initialMs, maxMs: initialMs + extraMs };
          let previous = initialMs;
          for (const r of draws) {
            const next = nextBackoffMs(previous, r, bounds);
            expect(next).toBeGreaterThanOrEqual(bounds.initialMs);
            expect(next).toBeLessThanOrEqual(Math.min(bounds.maxMs, Math.max(initialMs, previous) * 3));
            previous = next;
          }
        },
      ),
    );
  });

  it("reaches the ceiling when the draws are high and the floor when they are zero", () => {
    const bounds = { initialMs: 50, maxMs: 2000 };
    let waitMs = 50;
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      waitMs = nextBackoffMs(waitMs, 0.999, bounds);
      waits.push(waitMs);
    }
    // 50 + 0.999 * (min(2000, 3 * previous) - 50), rounded.
    expect(waits).toEqual([150, 450, 1349, 1998, 1998, 1998]);
    expect(nextBackoffMs(2000, 0, bounds)).toBe(50);
  });
});
