/**
 * Property tests of the Raft codec (src/raft/codec.ts): every value of every
 * type round-trips exactly; every accepted byte string is the canonical encoding
 * of what it decodes to (so garbage is either refused with a CodecError or is a
 * valid encoding); every proper prefix of an encoding is refused as truncated.
 *
 * Contract: the arbitraries are built from the type definitions in
 * src/raft/types.ts and respect the invariants the codec documents (they are
 * what the Raft core produces); values outside them are covered by the
 * assertion tests at the end.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  LogIndex,
  MemberId,
  Message,
  Snapshot,
  SnapshotMeta,
  Term,
} from "../../src/raft/index.ts";
import {
  AssertionError,
  CodecError,
  decodeConfState,
  decodeEntry,
  decodeHardState,
  decodeMessage,
  decodeSnapshot,
  decodeSnapshotMeta,
  encodeConfChange,
  encodeConfState,
  encodeEntry,
  encodeHardState,
  encodeMessage,
  encodeSnapshot,
  encodeSnapshotMeta,
  logIndex,
  memberId,
  term,
} from "../../src/raft/index.ts";

const RUNS = 300;

// ---------------------------------------------------------------- arbitraries

/** Small values most of the time (the common case), the whole safe range sometimes. */
const nat = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 1, arbitrary: fc.maxSafeNat() },
);
const pos = nat.map((n) => Math.max(n, 1));
const anyTerm = nat.map(term);
const anyIndex = nat.map(logIndex);
const anyId = nat.map(memberId);
const id = pos.map(memberId);
const bytes = fc.oneof(fc.uint8Array({ maxLength: 0 }), fc.uint8Array({ maxLength: 64 }));
/** Strings with multi-byte characters, surrogate pairs and a leading BOM now and then. */
const requestId = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.string({ unit: "binary", maxLength: 20 }).filter(isWellFormed),
  fc.string({ maxLength: 8 }).map((s) => `\uFEFF${s}`),
);

/** No lone UTF-16 surrogate: the strings UTF-8 can carry. */
function isWellFormed(s: string): boolean {
  return !/\p{Surrogate}/u.test(s);
}

const confChange: fc.Arbitrary<ConfChange> = fc.record(
  {
    kind: fc.constantFrom("addVoter", "addLearner", "remove"),
    member: id,
    context: bytes,
  },
  { noNullPrototype: true },
);

/** An entry at a given index and term (index, term >= 1). */
const entryAt = (index: number, t: number): fc.Arbitrary<Entry> =>
  fc.oneof(
    bytes.map((data): Entry => ({ term: term(t), index: logIndex(index), kind: "normal", data })),
    confChange.map(
      (cc): Entry => ({ term: term(t), index: logIndex(index), kind: "conf", data: encodeConfChange(cc) }),
    ),
  );

const entry: fc.Arbitrary<Entry> = fc.tuple(pos, pos).chain(([i, t]) => entryAt(i, t));

const hardState: fc.Arbitrary<HardState> = fc.record(
  { term: anyTerm, vote: anyId, commit: anyIndex },
  { noNullPrototype: true },
);

const confState: fc.Arbitrary<ConfState> = fc
  .tuple(fc.uniqueArray(id, { maxLength: 9 }), fc.nat())
  .map(([ids, split]) => {
    const k = ids.length === 0 ? 0 : split % (ids.length + 1);
    return { voters: ids.slice(0, k), learners: ids.slice(k) };
  });

/** (index, term) that are both 0 or both >= 1, as in a log position. */
const position = fc.oneof(fc.constant([0, 0] as const), fc.tuple(pos, pos));

const snapshotMeta: fc.Arbitrary<SnapshotMeta> = fc
  .tuple(position, confState)
  .map(([[i, t], conf]) => ({ index: logIndex(i), term: term(t), conf }));

const snapshot: fc.Arbitrary<Snapshot> = fc.record(
  { meta: snapshotMeta, data: bytes },
  { noNullPrototype: true },
);

/** Distinct, non-zero sender and recipient and any term. */
const base = fc
  .tuple(id, id, anyTerm)
  .filter(([from, to]) => from !== to)
  .map(([from, to, t]) => ({ from, to, term: t }));

/** A MsgApp: entries follow prev contiguously, terms non-decreasing between prevTerm and the message term. */
const msgApp: fc.Arbitrary<Message> = fc
  .tuple(base, position, fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 6 }), anyIndex, nat)
  .chain(([b, [prevIndex, prevTerm], steps, commit, extra]) => {
    const terms: number[] = [];
    let t = Math.max(prevTerm, 1);
    for (const s of steps) {
      t = Math.min(t + s, Number.MAX_SAFE_INTEGER);
      terms.push(t);
    }
    const msgTerm = Math.min(Math.max(b.term, t + (extra % 4)), Number.MAX_SAFE_INTEGER);
    // Both 0, or both >= 1 (clamping keeps a non-zero prevIndex non-zero).
    const first = Math.min(prevIndex, Number.MAX_SAFE_INTEGER - terms.length) + 1;
    return fc.tuple(...terms.map((et, i) => entryAt(first + i, et))).map(
      (entries): Message => ({
        type: "app",
        ...b,
        term: term(msgTerm),
        prevIndex: logIndex(first - 1),
        prevTerm: term(prevTerm),
        entries,
        commit,
      }),
    );
  });

const message: fc.Arbitrary<Message> = fc.oneof(
  msgApp,
  fc.tuple(base, fc.boolean(), anyIndex, anyIndex, anyTerm).map(
    ([b, reject, index, hintIndex, hintTerm]): Message => ({
      type: "appResp",
      ...b,
      reject,
      index,
      hintIndex,
      hintTerm,
    }),
  ),
  fc.tuple(base, fc.constantFrom("vote", "preVote"), position, fc.boolean()).map(
    ([b, type, [i, t], transfer]): Message => ({
      type,
      ...b,
      lastIndex: logIndex(i),
      lastTerm: term(t),
      transfer,
    }),
  ),
  fc
    .tuple(base, fc.constantFrom("voteResp", "preVoteResp"), fc.boolean())
    .map(([b, type, reject]): Message => ({ type, ...b, reject })),
  fc
    .tuple(base, anyIndex, nat)
    .map(([b, commit, context]): Message => ({ type: "heartbeat", ...b, commit, context })),
  fc.tuple(base, nat).map(([b, context]): Message => ({ type: "heartbeatResp", ...b, context })),
  fc.tuple(base, pos, pos, confState, bytes).map(
    ([b, i, t, conf, data]): Message => ({
      type: "snap",
      ...b,
      term: term(Math.max(b.term, t)),
      snapshot: { meta: { index: logIndex(i), term: term(t), conf }, data },
    }),
  ),
  base.map((b): Message => ({ type: "timeoutNow", ...b })),
  fc.tuple(base, requestId).map(([b, rid]): Message => ({ type: "readIndex", ...b, requestId: rid })),
  fc
    .tuple(base, requestId, anyIndex, fc.boolean())
    .map(
      ([b, rid, index, reject]): Message => ({ type: "readIndexResp", ...b, requestId: rid, index, reject }),
    ),
);

// ---------------------------------------------------------------- the codecs under test

interface Codec<T> {
  readonly name: string;
  readonly arb: fc.Arbitrary<T>;
  readonly encode: (v: T) => Uint8Array;
  readonly decode: (b: Uint8Array) => T;
}

const codec = <T>(
  name: string,
  arb: fc.Arbitrary<T>,
  encode: (v: T) => Uint8Array,
  decode: (b: Uint8Array) => T,
): Codec<unknown> => ({ name, arb, encode, decode }) as Codec<unknown>;

const CODECS: readonly Codec<unknown>[] = [
  codec("entry", entry, encodeEntry, decodeEntry),
  codec("hardState", hardState, encodeHardState, decodeHardState),
  codec("confState", confState, encodeConfState, decodeConfState),
  codec("snapshotMeta", snapshotMeta, encodeSnapshotMeta, decodeSnapshotMeta),
  codec("snapshot", snapshot, encodeSnapshot, decodeSnapshot),
  codec("message", message, encodeMessage, decodeMessage),
];

/** Runs `f` and returns the CodecError it threw; fails the test on any other outcome. */
function codecError(f: () => unknown): CodecError {
  try {
    f();
  } catch (err) {
    if (err instanceof CodecError) return err;
    throw err;
  }
  throw new Error("expected a CodecError, decoding succeeded");
}

/** Every Uint8Array inside `v` (entry data, snapshot data, contexts). */
function arraysIn(v: unknown, out: Uint8Array[] = []): Uint8Array[] {
  if (v instanceof Uint8Array) out.push(v);
  else if (Array.isArray(v)) for (const x of v) arraysIn(x, out);
  else if (typeof v === "object" && v !== null) for (const x of Object.values(v)) arraysIn(x, out);
  return out;
}

// ---------------------------------------------------------------- properties

describe.each(CODECS)("codec: $name", ({ arb, encode, decode }) => {
  it("round-trips every value exactly, with data copied out of the input", () => {
    fc.assert(
      fc.property(arb, (v) => {
        const bytes = encode(v);
        const back = decode(bytes);
        expect(back).toStrictEqual(v);
        expect(encode(back)).toEqual(bytes);
        for (const a of arraysIn(back)) expect(a.buffer).not.toBe(bytes.buffer);
      }),
      { numRuns: RUNS },
    );
  });

  it("refuses every proper prefix as truncated, at an offset inside the input", () => {
    fc.assert(
      fc.property(arb, (v) => {
        const bytes = encode(v);
        for (let len = 0; len < bytes.length; len++) {
          const err = codecError(() => decode(bytes.subarray(0, len)));
          expect(err.code).toBe("truncated");
          expect(err.offset).toBeLessThanOrEqual(len);
        }
      }),
      { numRuns: 100 },
    );
  });

  it("refuses a trailing byte", () => {
    fc.assert(
      fc.property(arb, fc.integer({ min: 0, max: 255 }), (v, extra) => {
        const bytes = encode(v);
        const err = codecError(() => decode(Uint8Array.of(...bytes, extra)));
        expect(err.code).toBe("trailingBytes");
        expect(err.offset).toBe(bytes.length);
      }),
      { numRuns: 100 },
    );
  });

  it("decodes a mutated encoding only if it is the canonical encoding of the result", () => {
    fc.assert(
      fc.property(arb, fc.nat(), fc.integer({ min: 1, max: 255 }), (v, at, xor) => {
        const bytes = encode(v).slice();
        bytes[at % bytes.length]! ^= xor;
        let back: unknown;
        try {
          back = decode(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(CodecError);
          return;
        }
        expect(encode(back)).toEqual(bytes);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("codec: input of a Uint8Array subclass (as Node's Buffer)", () => {
  /** Like Buffer: a subclass whose `slice` returns a view of the same memory. */
  class ViewSlicing extends Uint8Array {
    override slice(start?: number, end?: number): Uint8Array<ArrayBuffer> {
      return this.subarray(start, end);
    }
  }
  it("still yields plain Uint8Array copies", () => {
    fc.assert(
      fc.property(snapshot, (s) => {
        const encoded = encodeSnapshot(s);
        const input = new ViewSlicing(encoded.length);
        input.set(encoded);
        const back = decodeSnapshot(input);
        expect(back).toStrictEqual(s);
        expect(Object.getPrototypeOf(back.data)).toBe(Uint8Array.prototype);
        expect(back.data.buffer).not.toBe(input.buffer);
      }),
      { numRuns: 50 },
    );
  });
});

describe("codec: garbage", () => {
  it.each(CODECS)("$name: random bytes are refused with a CodecError or are a canonical encoding", (c) => {
    const kind = c.encode(fc.sample(c.arb, { numRuns: 1, seed: 1 })[0])[1]!;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 48 }), fc.boolean(), (tail, withHeader) => {
        const bytes = withHeader ? Uint8Array.of(1, kind, ...tail) : tail;
        let back: unknown;
        try {
          back = c.decode(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(CodecError);
          return;
        }
        expect(c.encode(back)).toEqual(bytes);
      }),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------- stable codes and offsets

const e1: Entry = { term: term(2), index: logIndex(5), kind: "normal", data: Uint8Array.of(7) };

describe("codec: error codes and offsets", () => {
  it.each<[string, Uint8Array, (b: Uint8Array) => unknown, string, number]>([
    ["empty input", new Uint8Array(0), decodeEntry, "truncated", 0],
    ["unknown version", Uint8Array.of(2, 1, 2, 5, 0, 0), decodeEntry, "badVersion", 0],
    ["an entry where a message is expected", encodeEntry(e1), decodeMessage, "badKind", 1],
    ["unknown entry kind", Uint8Array.of(1, 1, 2, 5, 2, 0), decodeEntry, "badTag", 4],
    ["unknown message type", Uint8Array.of(1, 6, 13, 1, 2, 3), decodeMessage, "badTag", 2],
    ["non-canonical varint", Uint8Array.of(1, 1, 0x82, 0x00, 5, 0, 0), decodeEntry, "badVarint", 2],
    [
      "varint of 9 bytes",
      Uint8Array.of(1, 2, ...Array(8).fill(0x80), 1, 0, 0),
      decodeHardState,
      "badVarint",
      2,
    ],
    [
      "varint of 2^53",
      Uint8Array.of(1, 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0),
      decodeHardState,
      "badVarint",
      2,
    ],
    ["boolean byte 2", Uint8Array.of(1, 6, 5, 1, 2, 3, 2), decodeMessage, "badBool", 6],
    ["invalid UTF-8", Uint8Array.of(1, 6, 11, 1, 2, 3, 2, 0xc3, 0x28), decodeMessage, "badUtf8", 6],
    ["encoded surrogate", Uint8Array.of(1, 6, 11, 1, 2, 3, 3, 0xed, 0xa0, 0x80), decodeMessage, "badUtf8", 6],
    ["entry at index 0", Uint8Array.of(1, 1, 2, 0, 0, 0), decodeEntry, "badValue", 2],
    ["conf entry with short data", Uint8Array.of(1, 1, 2, 5, 1, 1, 1), decodeEntry, "badValue", 2],
    ["voter listed twice", Uint8Array.of(1, 3, 2, 4, 4, 0), decodeConfState, "badValue", 2],
    ["voter also a learner", Uint8Array.of(1, 3, 1, 4, 1, 4), decodeConfState, "badValue", 2],
    ["member id 0", Uint8Array.of(1, 3, 1, 0, 0), decodeConfState, "badValue", 2],
    ["snapshot at index 3, term 0", Uint8Array.of(1, 4, 3, 0, 0, 0), decodeSnapshotMeta, "badValue", 2],
    ["message to itself", Uint8Array.of(1, 6, 10, 1, 1, 3), decodeMessage, "badValue", 2],
    ["count beyond the input", Uint8Array.of(1, 3, 100, 1), decodeConfState, "truncated", 2],
  ])("%s", (_what, bytes, decode, code, offset) => {
    const err = codecError(() => decode(bytes));
    expect(err.code).toBe(code);
    expect(err.offset).toBe(offset);
    expect(err.message).toContain(`codec: ${code} at byte ${offset}:`);
  });

  it("refuses a MsgApp whose entries do not follow prevIndex, or outrun the message term", () => {
    // By hand: version, kind, tag, from 1, to 2, term t, prev 2/4, count, entries, commit 0.
    const app = (entries: Entry[], t = 3): Uint8Array => {
      const body = entries.flatMap((e) => [...encodeEntry(e).subarray(2)]);
      return Uint8Array.of(1, 6, 1, 1, 2, t, 4, 2, entries.length, ...body, 0);
    };
    expect(decodeMessage(app([e1])).type).toBe("app");
    expect(codecError(() => decodeMessage(app([{ ...e1, index: logIndex(6) }]))).code).toBe("badValue");
    expect(codecError(() => decodeMessage(app([{ ...e1, term: term(1) }]))).code).toBe("badValue");
    expect(codecError(() => decodeMessage(app([e1], 1))).code).toBe("badValue");
  });
});

// ---------------------------------------------------------------- the encode side asserts

describe("codec: encoding a value that breaks an invariant is a bug", () => {
  const m = (over: Partial<Message>): Message =>
    ({ type: "timeoutNow", from: memberId(1), to: memberId(2), term: term(1), ...over }) as Message;
  it.each<[string, () => unknown]>([
    ["negative term", () => encodeHardState({ term: -1 as Term, vote: memberId(0), commit: logIndex(0) })],
    [
      "fractional index",
      () => encodeHardState({ term: term(1), vote: memberId(0), commit: 1.5 as LogIndex }),
    ],
    [
      "unsafe integer",
      () => encodeHardState({ term: term(2 ** 53), vote: memberId(0), commit: logIndex(0) }),
    ],
    ["entry index 0", () => encodeEntry({ ...e1, index: logIndex(0) })],
    ["conf entry with junk data", () => encodeEntry({ ...e1, kind: "conf", data: Uint8Array.of(9) })],
    ["duplicate voter", () => encodeConfState({ voters: [memberId(1), memberId(1)], learners: [] })],
    ["message from member 0", () => encodeMessage(m({ from: 0 as MemberId }))],
    ["lone surrogate", () => encodeMessage(m({ type: "readIndex", requestId: "a\uD800" }))],
  ])("%s", (_what, f) => {
    expect(f).toThrow(AssertionError);
  });
});
