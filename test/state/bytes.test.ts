/**
 * ByteWriter / ByteReader (src/state/bytes.ts): the binary encoding of
 * snapshot format 2. Varints at every length boundary up to 2^53, 64-bit
 * values at the ends of their range, byte and key strings, and what must
 * fail an assertion.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/raft/assert.ts";
import { ByteReader, ByteWriter, bytesToKeyString, prefixEnd } from "../../src/state/bytes.ts";

describe("ByteWriter and ByteReader", () => {
  it("read back every value written, at the varint length boundaries", () => {
    const uints = [
      0,
      1,
      127,
      128,
      16_383,
      16_384,
      2 ** 31 - 1,
      2 ** 31,
      2 ** 32,
      2 ** 49,
      Number.MAX_SAFE_INTEGER,
    ];
    const u64s = [0n, 1n, 255n, 256n, 2n ** 32n, (1n << 63n) - 1n, (1n << 64n) - 1n];
    const w = new ByteWriter(1); // grows from one byte
    for (const v of uints) w.uint(v);
    for (const v of u64s) w.u64(v);
    w.u8(0)
      .u8(255)
      .bytes(Uint8Array.of(1, 2, 3))
      .bytes(new Uint8Array(0))
      .keyString("\u0000a\u00ff");
    const r = new ByteReader(w.finish());
    expect(uints.map(() => r.uint())).toEqual(uints);
    expect(u64s.map(() => r.u64())).toEqual(u64s);
    expect([r.u8(), r.u8()]).toEqual([0, 255]);
    expect(r.bytes()).toEqual(Uint8Array.of(1, 2, 3));
    expect(r.bytes()).toEqual(new Uint8Array(0));
    expect(r.done).toBe(false);
    expect(r.keyString()).toBe("\u0000a\u00ff");
    expect(r.done).toBe(true);
    expect(() => r.u8()).toThrow(AssertionError);
  });

  it("a varint takes ceil(bits / 7) bytes; finish() returns exactly the bytes written", () => {
    expect(new ByteWriter().uint(127).finish()).toEqual(Uint8Array.of(127));
    expect(new ByteWriter().uint(128).finish()).toEqual(Uint8Array.of(0x80, 1));
    expect(new ByteWriter().uint(Number.MAX_SAFE_INTEGER).finish().length).toBe(8);
    expect(new ByteWriter().u64(1n).finish()).toEqual(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1));
  });

  it("round-trips random sequences", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ t: fc.constant("uint" as const), v: fc.maxSafeNat() }),
            fc.record({ t: fc.constant("u64" as const), v: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
            fc.record({ t: fc.constant("bytes" as const), v: fc.uint8Array({ maxLength: 40 }) }),
          ),
          { maxLength: 30 },
        ),
        (items) => {
          const w = new ByteWriter(2);
          for (const it of items) {
            if (it.t === "uint") w.uint(it.v);
            else if (it.t === "u64") w.u64(it.v);
            else w.keyString(bytesToKeyString(it.v));
          }
          const r = new ByteReader(w.finish());
          for (const it of items) {
            if (it.t === "uint") expect(r.uint()).toBe(it.v);
            else if (it.t === "u64") expect(r.u64()).toBe(it.v);
            else expect(r.bytes()).toEqual(it.v);
          }
          expect(r.done).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses what it cannot encode, and input that is not its encoding", () => {
    expect(() => new ByteWriter().uint(-1)).toThrow(AssertionError);
    expect(() => new ByteWriter().uint(1.5)).toThrow(AssertionError);
    expect(() => new ByteWriter().uint(2 ** 53)).toThrow(AssertionError);
    expect(() => new ByteWriter().u64(-1n)).toThrow(AssertionError);
    expect(() => new ByteWriter().u64(1n << 64n)).toThrow(AssertionError);
    expect(() => new ByteWriter().u8(256)).toThrow(AssertionError);
    expect(() => new ByteWriter().keyString("\u0100")).toThrow(AssertionError);
    expect(() => new ByteReader(Uint8Array.of(0x80)).uint()).toThrow(AssertionError); // cut short
    expect(() => new ByteReader(new Uint8Array(9).fill(0xff)).uint()).toThrow(AssertionError); // too long
    expect(() => new ByteReader(Uint8Array.of(5, 1, 2)).bytes()).toThrow(AssertionError); // past the end
    // Eight bytes of varint that say more than 2^53.
    expect(() =>
      new ByteReader(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)).uint(),
    ).toThrow(AssertionError);
  });
});

describe("prefixEnd", () => {
  it("increments the last byte below 0xff and never writes into its input, a Node Buffer included", () => {
    const key = Buffer.from([0x61, 0x62, 0xff]);
    const end = prefixEnd(key);
    expect([...end]).toEqual([0x61, 0x63]);
    expect([...key]).toEqual([0x61, 0x62, 0xff]);
    expect([...prefixEnd(new Uint8Array([0xff, 0xff]))]).toEqual([0]);
  });
});
