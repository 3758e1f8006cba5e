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
  connectionKind,
  encodeHello,
  encodeMembershipAnswer,
  encodeQuery,
  encodeResponse,
  FRAME_HEADER_BYTES,
  FRAME_PAYLOAD_BYTES_MAX,
  FrameDecoder,
  MEMBERSHIP_BYTES_MAX,
  type MembershipAnswer,
  MembershipAnswerDecoder,
  type ReadResult,
  readHello,
  readQuery,
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
    ["bad-version", (b: Uint8Array) => b.set([0, 3], 4)],
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
      "peer protocol version 9 is not supported (this member speaks 2)",
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

describe("membership query", () => {
  it("round-trips a query, byte by byte, and keeps what follows it", () => {
    const bytes = Buffer.concat([encodeQuery(), Buffer.from([7])]);
    expect([...bytes.subarray(0, 6)]).toEqual([0x4c, 0x48, 0x50, 0x51, 0, WIRE_VERSION]); // "LHPQ" v1
    for (let n = 0; n < 6; n++) {
      expect(readQuery(bytes.subarray(0, n)).kind).toBe("incomplete");
      expect(connectionKind(bytes.subarray(0, n))).toBe(n < 4 ? "incomplete" : "query");
    }
    const r = readQuery(bytes);
    expect(r.kind === "ok" && r.value).toBe(WIRE_VERSION);
    expect(r.kind === "ok" && [...r.rest]).toEqual([7]);
  });

  it("tells a query from a member handshake and from anything else by the first 4 bytes", () => {
    expect(connectionKind(encodeHello(hello))).toBe("member");
    expect(connectionKind(Buffer.from("GET / HTTP/1.1"))).toBe("member"); // readHello refuses it
    expect(connectionKind(Buffer.from("LHPQ"))).toBe("query");
    expect(connectionKind(Buffer.from("LHP"))).toBe("incomplete");
  });

  it("refuses a query with a bad magic or another version, saying which version it speaks", () => {
    const badMagic = encodeQuery().slice();
    badMagic[3] = 0x54; // "LHPT"
    const m = readQuery(badMagic);
    expect(m.kind === "error" && [m.reason, m.detail]).toEqual([
      "bad-magic",
      "not a membership query (bad magic)",
    ]);
    const badVersion = encodeQuery().slice();
    badVersion.set([0, 3], 4);
    const v = readQuery(badVersion);
    expect(v.kind === "error" && [v.reason, v.detail]).toEqual([
      "bad-version",
      "peer protocol version 3 is not supported (this member speaks 2)",
    ]);
  });
});

describe("membership answer", () => {
  /** Feeds `bytes` to a fresh decoder in pieces cut at `cuts`: all but the last piece must leave it incomplete. */
  function decode(bytes: Uint8Array, cuts: readonly number[] = []): ReadResult<MembershipAnswer> {
    const decoder = new MembershipAnswerDecoder();
    let from = 0;
    for (const to of [...cuts].sort((a, b) => a - b)) {
      const r = decoder.push(bytes.subarray(from, to));
      expect(r.kind, `result after ${to} bytes`).toBe("incomplete");
      from = to;
    }
    return decoder.push(bytes.subarray(from));
  }

  const document = pattern(300, 5);
  const ok = encodeMembershipAnswer({ status: "ok", membership: document });
  const refused = encodeMembershipAnswer({ status: "refused", reason: "membership not available" });

  it("lays out an answer as magic, version, status, length and body", () => {
    expect([...refused.subarray(0, 11)]).toEqual([0x4c, 0x48, 0x50, 0x51, 0, 2, 1, 0, 0, 0, 24]);
    expect(Buffer.from(refused.subarray(11)).toString()).toBe("membership not available");
    expect([...ok.subarray(4, 11)]).toEqual([0, 2, 0, 0, 0, 1, 44]);
  });

  it("is incomplete when cut at any byte offset, and whole from any two pieces", () => {
    for (const bytes of [ok, refused]) {
      for (let n = 0; n < bytes.length; n++) {
        expect(decode(bytes.subarray(0, n)).kind, `cut at ${n}`).toBe("incomplete");
        const r = decode(bytes, n === 0 ? [] : [n]);
        expect(r.kind === "ok" && r.rest.length, `split at ${n}`).toBe(0);
      }
    }
    const a = decode(ok, [1, 5, 11, 12, 200]);
    expect(a.kind === "ok" && a.value.status === "ok" && sameBytes(a.value.membership, document)).toBe(true);
    const b = decode(refused, [3]);
    expect(b.kind === "ok" && b.value).toEqual({ status: "refused", reason: "membership not available" });
  });

  it("round-trips an empty document and one of exactly MEMBERSHIP_BYTES_MAX bytes fed in 64 KiB pieces", () => {
    const empty = decode(encodeMembershipAnswer({ status: "ok", membership: new Uint8Array(0) }));
    expect(empty.kind === "ok" && empty.value.status === "ok" && empty.value.membership.length).toBe(0);
    const big = pattern(MEMBERSHIP_BYTES_MAX, 8);
    const bytes = encodeMembershipAnswer({ status: "ok", membership: big });
    const cuts = Array.from({ length: Math.floor(bytes.length / 65_536) }, (_, i) => (i + 1) * 65_536);
    const r = decode(bytes, cuts);
    expect(r.kind === "ok" && r.value.status === "ok" && sameBytes(r.value.membership, big)).toBe(true);
  });

  it("keeps what follows the answer, and cuts an overlong reason", () => {
    const r = decode(Buffer.concat([refused, Buffer.from([1, 2])]));
    expect(r.kind === "ok" && [...r.rest]).toEqual([1, 2]);
    const long = decode(encodeMembershipAnswer({ status: "refused", reason: "r".repeat(5000) }));
    expect(long.kind === "ok" && long.value.status === "refused" && long.value.reason.length).toBe(1024);
  });

  it("will not encode a document above MEMBERSHIP_BYTES_MAX", () => {
    const membership = new Uint8Array(MEMBERSHIP_BYTES_MAX + 1);
    expect(() => encodeMembershipAnswer({ status: "ok", membership })).toThrow("MEMBERSHIP_BYTES_MAX");
  });

  /** An answer header with the given fields and no body. */
  const header = (fields: { magic?: number; version?: number; status?: number; length: number }) => {
    const h = new Uint8Array(11);
    const view = new DataView(h.buffer);
    view.setUint32(0, fields.magic ?? 0x4c48_5051);
    view.setUint16(4, fields.version ?? WIRE_VERSION);
    view.setUint8(6, fields.status ?? 0);
    view.setUint32(7, fields.length);
    return h;
  };

  it.each([
    ["a bad magic", Buffer.from("HTTP/1.1 400"), "bad-magic", "the peer's answer is not a membership answer"],
    [
      "a document above the limit",
      header({ length: MEMBERSHIP_BYTES_MAX + 1 }),
      "malformed",
      "membership document of 4194305 bytes exceeds 4194304",
    ],
    [
      "a reason above the limit",
      header({ status: 1, length: 1025 }),
      "malformed",
      "refusal reason of 1025 bytes exceeds 1024",
    ],
    [
      "an unknown status",
      header({ status: 2, length: 0 }),
      "malformed",
      "unknown membership answer status 2",
    ],
    [
      "a document of another version",
      header({ version: 3, length: 0 }),
      "bad-version",
      "peer protocol version 3 is not supported (this member speaks 2)",
    ],
  ])("stops at %s, from the header on, and stays stopped", (_what, bytes, reason, detail) => {
    const decoder = new MembershipAnswerDecoder();
    const r = decoder.push(bytes);
    expect(r.kind === "error" && [r.reason, r.detail]).toEqual([reason, detail]);
    expect(decoder.push(new Uint8Array(1))).toEqual(r);
  });

  it("reads a refusal of another version (the answer layout is frozen)", () => {
    const reason = Buffer.from("bad-version: speaks 2");
    const bytes = Buffer.concat([header({ version: 2, status: 1, length: reason.length }), reason]);
    const r = decode(bytes);
    expect(r.kind === "ok" && r.value).toEqual({ status: "refused", reason: "bad-version: speaks 2" });
  });

  it("reads a member handshake rejection (a refused client certificate) as a refusal", () => {
    const rejection = encodeResponse({ status: "rejected", reason: "untrusted-certificate: no certificate" });
    for (let n = 0; n < rejection.length; n++)
      expect(decode(rejection.subarray(0, n)).kind).toBe("incomplete");
    const r = decode(rejection, [2, 8]);
    expect(r.kind === "ok" && r.value).toEqual({
      status: "refused",
      reason: "untrusted-certificate: no certificate",
    });
    const accepted = decode(encodeResponse({ status: "accepted" }));
    expect(accepted.kind === "error" && accepted.detail).toBe("the peer accepted a member handshake");
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
