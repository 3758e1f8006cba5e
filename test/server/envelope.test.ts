/**
 * The peer envelope codec: every kind round-trips, and bytes a peer could
 * send (truncated, padded, unknown kinds or statuses) are refused with an
 * EnvelopeError, never trusted or thrown as anything else.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { logIndex, memberId, term } from "../../src/raft/index.ts";
import type { Envelope } from "../../src/server/envelope.ts";
import {
  BATCH_ENVELOPES_MAX,
  decodeEnvelope,
  EnvelopeError,
  encodeBatch,
  encodeEnvelope,
  RENEWED_LEASES_MAX,
} from "../../src/server/envelope.ts";

const samples: Envelope[] = [
  {
    kind: "raft",
    sentAt: 1234.5,
    echo: -1,
    message: {
      type: "heartbeat",
      from: memberId(1),
      to: memberId(2),
      term: term(3),
      commit: logIndex(9),
      context: 0,
    },
  },
  { kind: "propose", reqId: 7, data: new Uint8Array([1, 2, 3]) },
  { kind: "proposed", reqId: 8, ok: true, index: 1234, leader: 2 ** 40 + 3, term: 9 },
  { kind: "proposed", reqId: 9, ok: false, index: 0, leader: 5, term: 0 },
  { kind: "keepAlive", reqId: 10, lease: 2n ** 62n + 1n },
  { kind: "keepAliveAnswer", reqId: 11, ok: true, value: 30 },
  { kind: "ttl", reqId: 12, lease: 5n },
  { kind: "ttlAnswer", reqId: 13, status: "notFound", grantedSeconds: 0, remainingMs: -1, leader: 3 },
  { kind: "proposeConf", reqId: 14, data: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 9]) },
  { kind: "confAnswer", reqId: 15, status: "learnerNotReady", index: 0, term: 0, leader: 4 },
  { kind: "confAnswer", reqId: 16, status: "ok", index: 77, term: 3, leader: 4 },
  { kind: "removed" },
  { kind: "renewed", leases: [1n, 2n ** 62n + 7n, 42n] },
];

describe("peer envelopes", () => {
  it("round-trips every kind", () => {
    for (const e of samples) expect(decodeEnvelope(encodeEnvelope(e))).toEqual(e);
  });

  it("refuses truncated or padded fixed-size envelopes, unknown kinds and statuses", () => {
    for (const e of samples) {
      const bytes = encodeEnvelope(e);
      if (e.kind === "propose" || e.kind === "proposeConf") continue; // variable length: any tail is data
      if (e.kind === "raft") {
        expect(() => decodeEnvelope(bytes.subarray(0, 16))).toThrow(EnvelopeError);
        continue;
      }
      expect(() => decodeEnvelope(bytes.subarray(0, bytes.length - 1))).toThrow(EnvelopeError);
      expect(() => decodeEnvelope(Uint8Array.of(...bytes, 0))).toThrow(EnvelopeError);
    }
    expect(() => decodeEnvelope(new Uint8Array(0))).toThrow(EnvelopeError);
    expect(() => decodeEnvelope(Uint8Array.of(200))).toThrow(EnvelopeError);
    const conf = encodeEnvelope(samples.find((e) => e.kind === "confAnswer")!);
    conf[5] = 9;
    expect(() => decodeEnvelope(conf)).toThrow(/conf status 9/);
  });

  it("a BATCH carries every small kind in order; RAFT, BATCH, empty, cut or overlong items are refused", () => {
    const small = samples.filter((e) => e.kind !== "raft");
    const batch = encodeBatch(small.map(encodeEnvelope));
    expect(decodeEnvelope(batch)).toEqual({ kind: "batch", items: small });
    expect(decodeEnvelope(encodeEnvelope({ kind: "batch", items: small }))).toEqual({
      kind: "batch",
      items: small,
    });
    const raft = encodeEnvelope(samples[0]!);
    expect(() => encodeBatch([raft])).toThrow(EnvelopeError);
    expect(() => encodeBatch([])).toThrow(EnvelopeError);
    expect(() => encodeBatch([batch])).toThrow(EnvelopeError);
    const hand = (...items: Uint8Array[]): Uint8Array => {
      const parts = items.flatMap((b) => [Uint8Array.of(b.length, 0, 0, 0), b]);
      return Uint8Array.of(11, ...parts.flatMap((p) => [...p]));
    };
    expect(() => decodeEnvelope(hand(raft))).toThrow(/RAFT or BATCH/);
    expect(() => decodeEnvelope(hand(hand(encodeEnvelope(small[0]!))))).toThrow(/RAFT or BATCH/);
    expect(() => decodeEnvelope(Uint8Array.of(11))).toThrow(/empty batch/);
    expect(() => decodeEnvelope(batch.subarray(0, batch.length - 1))).toThrow(EnvelopeError);
    expect(() => decodeEnvelope(Uint8Array.of(...batch, 1, 0))).toThrow(/cut short/);
    expect(() => decodeEnvelope(Uint8Array.of(11, 0, 0, 0, 0))).toThrow(/item of 0 bytes/);
    const removed = encodeEnvelope({ kind: "removed" });
    const many = new Array<Uint8Array>(BATCH_ENVELOPES_MAX).fill(removed);
    expect(decodeEnvelope(encodeBatch(many))).toEqual({
      kind: "batch",
      items: many.map(() => ({ kind: "removed" })),
    });
    expect(() => encodeBatch([...many, removed])).toThrow(EnvelopeError);
    expect(() => decodeEnvelope(hand(...many, removed))).toThrow(/batch too long/);
  });

  it("RENEWED carries 1 to RENEWED_LEASES_MAX leases; a count that disagrees with the length is refused", () => {
    expect(() => encodeEnvelope({ kind: "renewed", leases: [] })).toThrow(EnvelopeError);
    const most = Array.from({ length: RENEWED_LEASES_MAX }, (_, i) => BigInt(i + 1));
    expect(decodeEnvelope(encodeEnvelope({ kind: "renewed", leases: most }))).toEqual({
      kind: "renewed",
      leases: most,
    });
    expect(() => encodeEnvelope({ kind: "renewed", leases: [...most, 0n] })).toThrow(EnvelopeError);
    const bytes = encodeEnvelope({ kind: "renewed", leases: [5n, 6n] });
    bytes[1] = 3; // claims 3 leases, carries 2
    expect(() => decodeEnvelope(bytes)).toThrow(/renewed of 21 bytes, want 29/);
    bytes[1] = 0;
    expect(() => decodeEnvelope(bytes)).toThrow(/renewed of 0 leases/);
  });

  it("never throws anything but EnvelopeError on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeEnvelope(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(EnvelopeError);
        }
      }),
    );
  });
});
