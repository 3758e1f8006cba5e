/**
 * The peer envelope codec: every kind round-trips, and bytes a peer could
 * send (truncated, padded, unknown kinds or statuses) are refused with an
 * EnvelopeError, never trusted or thrown as anything else.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { logIndex, memberId, term } from "../../src/raft/index.ts";
import type { Envelope } from "../../src/server/envelope.ts";
import { decodeEnvelope, EnvelopeError, encodeEnvelope } from "../../src/server/envelope.ts";

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
  { kind: "ttlAnswer", reqId: 13, status: "notFound", grantedSeconds: 0, remainingSeconds: -1, leader: 3 },
  { kind: "proposeConf", reqId: 14, data: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 9]) },
  { kind: "confAnswer", reqId: 15, status: "learnerNotReady", index: 0, term: 0, leader: 4 },
  { kind: "confAnswer", reqId: 16, status: "ok", index: 77, term: 3, leader: 4 },
  { kind: "removed" },
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
