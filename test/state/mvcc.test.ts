/**
 * Unit tests pinning the etcd v3 semantics of the MVCC store (src/state/mvcc.ts)
 * and its byte helpers (src/state/bytes.ts): one test per rule, the subtle ones
 * spelled out with the etcd behaviour they follow.
 */

import { describe, expect, it } from "vitest";
import {
  ByteReader,
  ByteWriter,
  base64ToBytes,
  bytesEqual,
  bytesToBase64,
  bytesToKeyString,
  compareBytes,
  keyStringToBytes,
  prefixEnd,
  RANGE_END_TO_END,
} from "../../src/state/bytes.ts";
import { DEFAULT_LIMITS } from "../../src/state/limits.ts";
import type {
  Compare,
  KeyRange,
  PutRequest,
  RangeRequest,
  RequestOp,
  TxnRequest,
  WriteOptions,
} from "../../src/state/mvcc.ts";
import { checkTxnRequest, describeEvent, MvccStore, VALUE_STRING_BYTES_MAX } from "../../src/state/mvcc.ts";
import type { KeyValue, LeaseId } from "../../src/state/types.ts";
import { leaseId, NO_LEASE, revision } from "../../src/state/types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
/** UTF-8 bytes of `s`. */
const b = (s: string): Uint8Array => enc.encode(s);
const text = (u: Uint8Array): string => dec.decode(u);
const rev = revision;
const L = (n: number): LeaseId => leaseId(BigInt(n));

/** Leases 1..9 exist. */
const LEASES: WriteOptions = { leaseExists: (id) => id >= 1n && id <= 9n };

function mustPut(s: MvccStore, key: string, value: string, extra: Partial<PutRequest> = {}) {
  const r = s.put({ key: b(key), value: b(value), ...extra }, LEASES);
  if (!r.ok) throw new Error(`put ${key}: ${r.error}`);
  return r;
}

function rangeOf(s: MvccStore, req: RangeRequest) {
  const r = s.range(req);
  if (!r.ok) throw new Error(`range: ${r.error}`);
  return r;
}

/** The keys a range returns, as text. */
function keysOf(s: MvccStore, req: RangeRequest): string[] {
  return rangeOf(s, req).kvs.map((kv) => text(kv.key));
}

function get(s: MvccStore, key: string, at?: number): KeyValue | undefined {
  return rangeOf(s, { key: b(key), revision: at === undefined ? undefined : rev(at) }).kvs[0];
}

const putOp = (key: string, value = "v", extra: Partial<PutRequest> = {}): RequestOp => ({
  type: "put",
  request: { key: b(key), value: b(value), ...extra },
});
const delOp = (key: string, rangeEnd?: Uint8Array): RequestOp => ({
  type: "deleteRange",
  request: { key: b(key), rangeEnd },
});
const rangeOp = (req: RangeRequest): RequestOp => ({ type: "range", request: req });
const txnOp = (request: TxnRequest): RequestOp => ({ type: "txn", request });

/** A store holding a..e with values 5..1 (so value order is the reverse of key order), revisions 2..6. */
function fiveKeys(): MvccStore {
  const s = new MvccStore();
  for (const [i, k] of ["a", "b", "c", "d", "e"].entries()) mustPut(s, k, String(5 - i));
  return s;
}

describe("bytes", () => {
  it("compares bytewise, shorter prefix first", () => {
    expect(compareBytes(b("a"), b("b"))).toBeLessThan(0);
    expect(compareBytes(b("ab"), b("a"))).toBeGreaterThan(0);
    expect(compareBytes(Uint8Array.of(0xff), Uint8Array.of(0x00, 0xff))).toBeGreaterThan(0);
    expect(compareBytes(b("abc"), b("abc"))).toBe(0);
    expect(bytesEqual(b("abc"), b("abc"))).toBe(true);
    expect(bytesEqual(b("abc"), b("abd"))).toBe(false);
  });

  it("prefixEnd increments the last byte below 0xff and drops trailing 0xff (etcd GetPrefixRangeEnd)", () => {
    expect(prefixEnd(b("a"))).toEqual(b("b"));
    expect(prefixEnd(b("/foo/"))).toEqual(b("/foo0"));
    expect(prefixEnd(Uint8Array.of(0x61, 0xff))).toEqual(b("b"));
    expect(prefixEnd(Uint8Array.of(0x61, 0xff, 0x01))).toEqual(Uint8Array.of(0x61, 0xff, 0x02));
    expect(prefixEnd(Uint8Array.of(0xff, 0xff))).toEqual(RANGE_END_TO_END);
    expect(prefixEnd(new Uint8Array(0))).toEqual(RANGE_END_TO_END);
    const key = Uint8Array.of(0x61, 0xff);
    prefixEnd(key);
    expect(key).toEqual(Uint8Array.of(0x61, 0xff)); // input untouched
  });

  it("key strings keep bytewise order and round-trip", () => {
    const keys = [
      Uint8Array.of(0xff),
      Uint8Array.of(0),
      Uint8Array.of(0x61, 0xff),
      b("a"),
      Uint8Array.of(0x80, 1),
    ];
    const byBytes = [...keys].sort(compareBytes).map(bytesToKeyString);
    const byString = keys.map(bytesToKeyString).sort();
    expect(byString).toEqual(byBytes);
    for (const k of keys) expect(keyStringToBytes(bytesToKeyString(k))).toEqual(k);
    const long = new Uint8Array(20_000).map((_, i) => i & 0xff);
    expect(keyStringToBytes(bytesToKeyString(long))).toEqual(long);
  });

  it("base64 matches RFC 4648 vectors and rejects non-canonical text", () => {
    const vectors: [string, string][] = [
      ["", ""],
      ["f", "Zg=="],
      ["fo", "Zm8="],
      ["foo", "Zm9v"],
      ["foob", "Zm9vYg=="],
      ["fooba", "Zm9vYmE="],
      ["foobar", "Zm9vYmFy"],
    ];
    for (const [plain, coded] of vectors) {
      expect(bytesToBase64(b(plain))).toBe(coded);
      expect(base64ToBytes(coded)).toEqual(b(plain));
    }
    const all = new Uint8Array(256).map((_, i) => i);
    expect(base64ToBytes(bytesToBase64(all))).toEqual(all);
    for (const bad of ["Zg=", "Z===", "Zh==", "Zm9v!A==", "Zg==Zg==", "=Zg="])
      expect(base64ToBytes(bad)).toBeUndefined();
  });
});

describe("limits", () => {
  it("has etcd's defaults", () => {
    expect(DEFAULT_LIMITS.requestBytesMax).toBe(1.5 * 1024 * 1024);
    expect(DEFAULT_LIMITS.txnOpsMax).toBe(128);
    expect(DEFAULT_LIMITS.watchBatchRevisionsMax).toBe(1000);
  });
});

describe("revisions and versions", () => {
  it("starts at revision 1 as etcd does; each put takes the next revision", () => {
    const s = new MvccStore();
    expect(s.currentRevision()).toBe(1);
    expect(s.compactedRevision()).toBe(-1);
    expect(mustPut(s, "a", "1").revision).toBe(2);
    expect(mustPut(s, "b", "1").revision).toBe(3);
    expect(s.currentRevision()).toBe(3);
  });

  it("a put of an existing key bumps version and modRevision and keeps createRevision", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    mustPut(s, "other", "x");
    mustPut(s, "a", "1"); // same value: still a write
    expect(get(s, "a")).toMatchObject({ createRevision: 2, modRevision: 4, version: 2, value: b("1") });
  });

  it("delete then re-put resets version to 1 and createRevision to the new revision", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    mustPut(s, "a", "2");
    expect(s.deleteRange({ key: b("a") })).toMatchObject({ ok: true, deleted: 1, revision: 4 });
    mustPut(s, "a", "3");
    expect(get(s, "a")).toMatchObject({ createRevision: 5, modRevision: 5, version: 1 });
    expect(get(s, "a", 3)).toMatchObject({ createRevision: 2, modRevision: 3, version: 2 });
    expect(get(s, "a", 4)).toBeUndefined();
  });

  it("a delete that matches nothing takes no revision and produces no event", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    const r = s.deleteRange({ key: b("x"), rangeEnd: b("z") });
    expect(r).toMatchObject({ ok: true, deleted: 0, revision: 2, events: [], leaseChanges: [] });
    expect(s.currentRevision()).toBe(2);
  });

  it("a delete returns tombstone events with prevKv, and prevKvs only when asked", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1", { lease: L(1) });
    mustPut(s, "b", "2");
    const quiet = s.deleteRange({ key: b("b") });
    expect(quiet.ok && quiet.prevKvs).toEqual([]);
    const r = s.deleteRange({ key: b("a"), rangeEnd: b("z"), prevKv: true });
    if (!r.ok) throw new Error(r.error);
    expect(r.deleted).toBe(1);
    expect(r.prevKvs.map((kv) => text(kv.value))).toEqual(["1"]);
    expect(r.events).toEqual([
      {
        type: "delete",
        kv: {
          key: b("a"),
          createRevision: 0,
          modRevision: 5,
          version: 0,
          value: new Uint8Array(0),
          lease: NO_LEASE,
        },
        prevKv: { key: b("a"), createRevision: 2, modRevision: 2, version: 1, value: b("1"), lease: L(1) },
      },
    ]);
  });

  it("put returns prevKv only when asked; its event always carries it", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    const quiet = mustPut(s, "a", "2");
    expect(quiet.prevKv).toBeUndefined();
    expect(quiet.events[0]?.prevKv?.value).toEqual(b("1"));
    expect(mustPut(s, "a", "3", { prevKv: true }).prevKv?.value).toEqual(b("2"));
    expect(mustPut(s, "new", "1", { prevKv: true }).prevKv).toBeUndefined();
  });

  it("stores copies: mutating the request's bytes afterwards changes nothing", () => {
    const s = new MvccStore();
    const key = b("k");
    const value = b("v");
    s.put({ key, value });
    key[0] = 0x7a;
    value[0] = 0x7a;
    expect(get(s, "k")?.value).toEqual(b("v"));
  });
});

describe("range", () => {
  it("selects a single key, [key, end), a prefix, from-key and all keys", () => {
    const s = new MvccStore();
    for (const k of ["a", "ab", "abc", "b", "c"]) mustPut(s, k, "v");
    expect(keysOf(s, { key: b("ab") })).toEqual(["ab"]);
    expect(keysOf(s, { key: b("zz") })).toEqual([]);
    expect(keysOf(s, { key: b("ab"), rangeEnd: b("b") })).toEqual(["ab", "abc"]);
    expect(keysOf(s, { key: b("a"), rangeEnd: prefixEnd(b("a")) })).toEqual(["a", "ab", "abc"]);
    expect(keysOf(s, { key: b("abc"), rangeEnd: RANGE_END_TO_END })).toEqual(["abc", "b", "c"]);
    expect(keysOf(s, { key: Uint8Array.of(0), rangeEnd: RANGE_END_TO_END })).toEqual([
      "a",
      "ab",
      "abc",
      "b",
      "c",
    ]);
    expect(keysOf(s, { key: b("b"), rangeEnd: b("a") })).toEqual([]); // end before start: empty
    expect(keysOf(s, { key: b("b"), rangeEnd: new Uint8Array(0) })).toEqual(["b"]); // empty end: single key
  });

  it("a prefix with trailing 0xff bytes, and an all-0xff prefix meaning to the end", () => {
    const s = new MvccStore();
    const keys = [
      Uint8Array.of(0x61),
      Uint8Array.of(0x61, 0xff),
      Uint8Array.of(0x61, 0xff, 0x00),
      Uint8Array.of(0x61, 0xff, 0xff),
      Uint8Array.of(0x62),
      Uint8Array.of(0xff),
      Uint8Array.of(0xff, 0xff, 0x01),
    ];
    for (const k of keys) s.put({ key: k, value: b("v") });
    const under = (prefix: Uint8Array) =>
      rangeOf(s, { key: prefix, rangeEnd: prefixEnd(prefix) }).kvs.map((kv) => [...kv.key]);
    expect(under(Uint8Array.of(0x61, 0xff))).toEqual([
      [0x61, 0xff],
      [0x61, 0xff, 0x00],
      [0x61, 0xff, 0xff],
    ]);
    expect(under(Uint8Array.of(0xff))).toEqual([[0xff], [0xff, 0xff, 0x01]]);
    expect(under(Uint8Array.of(0xff, 0xff))).toEqual([[0xff, 0xff, 0x01]]);
  });

  it("count is every key in range; limit cuts kvs and sets more", () => {
    const s = fiveKeys();
    expect(rangeOf(s, { key: b("a"), rangeEnd: b("z"), limit: 2 })).toMatchObject({ count: 5, more: true });
    expect(keysOf(s, { key: b("a"), rangeEnd: b("z"), limit: 2 })).toEqual(["a", "b"]);
    expect(rangeOf(s, { key: b("a"), rangeEnd: b("z"), limit: 5 })).toMatchObject({ count: 5, more: false });
    expect(rangeOf(s, { key: b("a"), rangeEnd: b("z"), limit: 6 }).kvs).toHaveLength(5);
    expect(rangeOf(s, { key: b("a"), rangeEnd: b("z"), limit: -1 }).kvs).toHaveLength(5); // <= 0: no limit
    expect(rangeOf(s, { key: b("c"), rangeEnd: b("z"), limit: 1 })).toMatchObject({ count: 3, more: true });
  });

  it("sorts by any target in either order; ties stay in key order", () => {
    const s = fiveKeys(); // values: a=5 b=4 c=3 d=2 e=1
    mustPut(s, "c", "3"); // c: version 2, mod 7
    const all = { key: b("a"), rangeEnd: b("z") };
    expect(keysOf(s, { ...all, sortTarget: "value", sortOrder: "ascend" })).toEqual([
      "e",
      "d",
      "c",
      "b",
      "a",
    ]);
    expect(keysOf(s, { ...all, sortTarget: "value", sortOrder: "descend" })).toEqual([
      "a",
      "b",
      "c",
      "d",
      "e",
    ]);
    expect(keysOf(s, { ...all, sortTarget: "key", sortOrder: "descend" })).toEqual(["e", "d", "c", "b", "a"]);
    expect(keysOf(s, { ...all, sortTarget: "mod", sortOrder: "descend" })).toEqual(["c", "e", "d", "b", "a"]);
    expect(keysOf(s, { ...all, sortTarget: "create", sortOrder: "ascend" })).toEqual([
      "a",
      "b",
      "c",
      "d",
      "e",
    ]);
    expect(keysOf(s, { ...all, sortTarget: "version", sortOrder: "descend" })).toEqual([
      "c",
      "a",
      "b",
      "d",
      "e",
    ]);
    expect(keysOf(s, { ...all, sortTarget: "version", sortOrder: "ascend" })).toEqual([
      "a",
      "b",
      "d",
      "e",
      "c",
    ]);
    // With a sort order, everything is sorted before the limit applies.
    expect(keysOf(s, { ...all, sortTarget: "value", sortOrder: "ascend", limit: 2 })).toEqual(["e", "d"]);
  });

  it("a sort target with sortOrder none sorts ascending, but only the first limit+1 keys (etcd)", () => {
    const s = fiveKeys();
    const all = { key: b("a"), rangeEnd: b("z") };
    expect(keysOf(s, { ...all, sortTarget: "value" })).toEqual(["e", "d", "c", "b", "a"]);
    // etcd fetches a, b, c (limit+1) in key order, sorts them by value (c, b, a) and keeps 2.
    expect(rangeOf(s, { ...all, sortTarget: "value", limit: 2 })).toMatchObject({ more: true, count: 5 });
    expect(keysOf(s, { ...all, sortTarget: "value", limit: 2 })).toEqual(["c", "b"]);
  });

  it("min/max mod/create filters apply after counting: count ignores them, more does not", () => {
    const s = fiveKeys(); // a..e created at 2..6
    mustPut(s, "a", "again"); // a: create 2, mod 7
    const all = { key: b("a"), rangeEnd: b("z") };
    expect(keysOf(s, { ...all, minModRevision: rev(5) })).toEqual(["a", "d", "e"]);
    expect(keysOf(s, { ...all, maxModRevision: rev(3) })).toEqual(["b"]);
    expect(keysOf(s, { ...all, minCreateRevision: rev(3), maxCreateRevision: rev(4) })).toEqual(["b", "c"]);
    expect(rangeOf(s, { ...all, minCreateRevision: rev(3), maxCreateRevision: rev(4) }).count).toBe(5);
    // With filters, everything is fetched and filtered, then the limit applies.
    expect(rangeOf(s, { ...all, minModRevision: rev(5), limit: 2 })).toMatchObject({ count: 5, more: true });
    expect(keysOf(s, { ...all, minModRevision: rev(5), limit: 2 })).toEqual(["a", "d"]);
    expect(rangeOf(s, { ...all, minModRevision: rev(5), limit: 3 })).toMatchObject({ count: 5, more: false });
  });

  it("countOnly returns the count alone; keysOnly empties values", () => {
    const s = fiveKeys();
    expect(rangeOf(s, { key: b("b"), rangeEnd: b("z"), countOnly: true, limit: 1 })).toEqual({
      ok: true,
      kvs: [],
      more: false,
      count: 4,
      revision: 6,
    });
    const r = rangeOf(s, { key: b("b"), rangeEnd: b("d"), keysOnly: true });
    expect(r.kvs.map((kv) => [text(kv.key), kv.value.length, kv.version])).toEqual([
      ["b", 0, 1],
      ["c", 0, 1],
    ]);
    expect(get(s, "b")?.value).toEqual(b("4")); // stored value untouched
  });

  it("reads at a past revision; the response carries the current revision", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    mustPut(s, "b", "1");
    mustPut(s, "a", "2");
    s.deleteRange({ key: b("b") });
    expect(rangeOf(s, { key: b("a"), rangeEnd: b("z"), revision: rev(3) })).toMatchObject({
      count: 2,
      revision: 5,
    });
    expect(keysOf(s, { key: b("a"), rangeEnd: b("z"), revision: rev(4) })).toEqual(["a", "b"]);
    expect(keysOf(s, { key: b("a"), rangeEnd: b("z"), revision: rev(5) })).toEqual(["a"]);
    expect(get(s, "a", 3)?.value).toEqual(b("1"));
    expect(get(s, "a", 4)?.value).toEqual(b("2"));
    expect(keysOf(s, { key: b("a"), rangeEnd: b("z"), revision: rev(3), sortOrder: "descend" })).toEqual([
      "b",
      "a",
    ]);
  });

  it("a revision beyond the current one is futureRevision; an empty key is emptyKey", () => {
    const s = new MvccStore();
    // etcd: an empty store is at revision 1, readable (no kvs); 2 is in the future.
    expect(s.range({ key: b("a"), revision: rev(1) })).toEqual({
      ok: true,
      kvs: [],
      more: false,
      count: 0,
      revision: 1,
    });
    expect(s.range({ key: b("a"), revision: rev(0) })).toEqual({
      ok: true,
      kvs: [],
      more: false,
      count: 0,
      revision: 1,
    });
    expect(s.range({ key: b("a"), revision: rev(2) })).toEqual({ ok: false, error: "futureRevision" });
    mustPut(s, "a", "1");
    expect(s.range({ key: b("a"), revision: rev(2) }).ok).toBe(true);
    expect(s.range({ key: b("a"), revision: rev(1) })).toMatchObject({
      ok: true,
      kvs: [],
      count: 0,
      revision: 2,
    });
    expect(s.range({ key: new Uint8Array(0) })).toEqual({ ok: false, error: "emptyKey" });
  });
});

describe("put flags and leases", () => {
  it("ignoreValue keeps the value, ignoreLease keeps the lease", () => {
    const s = new MvccStore();
    mustPut(s, "a", "keep", { lease: L(1) });
    mustPut(s, "a", "", { ignoreValue: true, lease: L(2) });
    expect(get(s, "a")).toMatchObject({ value: b("keep"), lease: L(2), version: 2 });
    mustPut(s, "a", "new", { ignoreLease: true });
    expect(get(s, "a")).toMatchObject({ value: b("new"), lease: L(2), version: 3 });
    mustPut(s, "a", "", { ignoreValue: true, ignoreLease: true });
    expect(get(s, "a")).toMatchObject({ value: b("new"), lease: L(2), version: 4 });
  });

  it("ignoreValue/ignoreLease on a missing key is keyNotFound, and changes nothing", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    expect(s.put({ key: b("x"), value: new Uint8Array(0), ignoreValue: true })).toEqual({
      ok: false,
      error: "keyNotFound",
    });
    expect(s.put({ key: b("x"), value: b("v"), ignoreLease: true })).toEqual({
      ok: false,
      error: "keyNotFound",
    });
    expect(s.currentRevision()).toBe(2);
  });

  it("a value with ignoreValue or a lease with ignoreLease is rejected up front (etcd gateway checks)", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    expect(s.put({ key: b("a"), value: b("x"), ignoreValue: true })).toEqual({
      ok: false,
      error: "valueProvided",
    });
    expect(s.put({ key: b("a"), value: b("x"), lease: L(1), ignoreLease: true }, LEASES)).toEqual({
      ok: false,
      error: "leaseProvided",
    });
    expect(s.put({ key: new Uint8Array(0), value: b("x") })).toEqual({ ok: false, error: "emptyKey" });
  });

  it("a put naming an unknown lease is leaseNotFound, checked before keyNotFound (etcd Put)", () => {
    const s = new MvccStore();
    expect(s.put({ key: b("a"), value: b("1"), lease: L(42) }, LEASES)).toEqual({
      ok: false,
      error: "leaseNotFound",
    });
    expect(s.put({ key: b("a"), value: b("1"), lease: L(1) })).toEqual({ ok: false, error: "leaseNotFound" }); // default: no leases
    expect(s.put({ key: b("a"), value: new Uint8Array(0), lease: L(42), ignoreValue: true }, LEASES)).toEqual(
      {
        ok: false,
        error: "leaseNotFound",
      },
    );
    expect(s.currentRevision()).toBe(1);
  });

  it("reports lease attachments a write changes", () => {
    const s = new MvccStore();
    expect(mustPut(s, "a", "1", { lease: L(1) }).leaseChanges).toEqual([
      { key: b("a"), keyString: "a", from: NO_LEASE, to: L(1) },
    ]);
    expect(mustPut(s, "a", "2", { lease: L(1) }).leaseChanges).toEqual([]);
    expect(mustPut(s, "a", "3", { lease: L(2) }).leaseChanges).toEqual([
      { key: b("a"), keyString: "a", from: L(1), to: L(2) },
    ]);
    expect(mustPut(s, "a", "4", { ignoreLease: true }).leaseChanges).toEqual([]);
    expect(mustPut(s, "a", "5").leaseChanges).toEqual([
      { key: b("a"), keyString: "a", from: L(2), to: NO_LEASE },
    ]);
    expect(mustPut(s, "b", "1").leaseChanges).toEqual([]);
    mustPut(s, "a", "6", { lease: L(3) });
    const d = s.deleteRange({ key: b("a"), rangeEnd: b("c") });
    expect(d.ok && d.leaseChanges).toEqual([{ key: b("a"), keyString: "a", from: L(3), to: NO_LEASE }]);
  });
});

describe("txn", () => {
  const versionIs = (key: string, version: number, result: Compare["result"] = "equal"): Compare => ({
    key: b(key),
    target: "version",
    version,
    result,
  });

  it("runs success when every compare holds, failure otherwise", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    const req = (cmp: Compare[]): TxnRequest => ({
      compare: cmp,
      success: [putOp("s")],
      failure: [putOp("f")],
    });
    const ok = s.txn(req([versionIs("a", 1), versionIs("missing", 0)]));
    expect(ok).toMatchObject({ ok: true, succeeded: true, revision: 3 });
    const no = s.txn(req([versionIs("a", 1), versionIs("a", 5)]));
    expect(no).toMatchObject({ ok: true, succeeded: false, revision: 4 });
    expect(keysOf(s, { key: b("f"), rangeEnd: b("t") })).toEqual(["f", "s"]);
  });

  it("all writes share one revision; events and responses come in op order", () => {
    const s = new MvccStore();
    mustPut(s, "x", "0");
    const r = s.txn({ success: [putOp("b", "1"), delOp("x"), putOp("a", "2"), rangeOp({ key: b("a") })] });
    if (!r.ok) throw new Error(r.error);
    expect(r.revision).toBe(3);
    expect(r.events.map(describeEvent)).toEqual([
      'put "b" rev=3 create=3 ver=1 lease=0 "1"',
      'delete "x" rev=3',
      'put "a" rev=3 create=3 ver=1 lease=0 "2"',
    ]);
    expect(r.responses.map((op) => op.type)).toEqual(["put", "deleteRange", "put", "range"]);
    const last = r.responses[3];
    expect(last?.type === "range" && last.response.kvs.map((kv) => text(kv.value))).toEqual(["2"]); // sees the earlier put
    expect(last?.type === "range" && last.response.revision).toBe(3);
  });

  it("a read-only txn and a txn whose deletes match nothing take no revision", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    expect(s.txn({ success: [rangeOp({ key: b("a") })] })).toMatchObject({
      ok: true,
      revision: 2,
      events: [],
    });
    expect(s.txn({ success: [delOp("zz")] })).toMatchObject({ ok: true, revision: 2, events: [] });
    expect(s.txn({})).toMatchObject({ ok: true, succeeded: true, revision: 2 });
    expect(s.currentRevision()).toBe(2);
  });

  it("compares value, version, create, mod and lease with = != < >", () => {
    const s = new MvccStore();
    mustPut(s, "a", "m", { lease: L(3) }); // rev 2
    mustPut(s, "a", "m"); // rev 3: version 2, lease none
    mustPut(s, "l", "x", { lease: L(5) }); // rev 4
    const holds = (c: Compare) => {
      const r = s.txn({ compare: [c] });
      if (!r.ok) throw new Error(r.error);
      return r.succeeded;
    };
    const a = b("a");
    expect(holds({ key: a, target: "value", value: b("m"), result: "equal" })).toBe(true);
    expect(holds({ key: a, target: "value", value: b("l"), result: "greater" })).toBe(true);
    expect(holds({ key: a, target: "value", value: b("ma"), result: "less" })).toBe(true);
    expect(holds({ key: a, target: "value", value: b("m"), result: "notEqual" })).toBe(false);
    expect(holds({ key: a, target: "version", version: 2, result: "equal" })).toBe(true);
    expect(holds({ key: a, target: "version", version: 1, result: "greater" })).toBe(true);
    expect(holds({ key: a, target: "create", createRevision: rev(2), result: "equal" })).toBe(true);
    expect(holds({ key: a, target: "mod", modRevision: rev(3), result: "equal" })).toBe(true);
    expect(holds({ key: a, target: "mod", modRevision: rev(4), result: "less" })).toBe(true);
    expect(holds({ key: a, target: "lease", lease: NO_LEASE, result: "equal" })).toBe(true);
    expect(holds({ key: b("l"), target: "lease", lease: L(5), result: "equal" })).toBe(true);
    expect(holds({ key: b("l"), target: "lease", lease: L(4), result: "greater" })).toBe(true);
  });

  it("an absent key compares as zeros, except that a value compare is always false", () => {
    const s = new MvccStore();
    const holds = (c: Compare) => (s.txn({ compare: [c] }) as { succeeded: boolean }).succeeded;
    const x = b("x");
    expect(holds({ key: x, target: "version", version: 0, result: "equal" })).toBe(true);
    expect(holds({ key: x, target: "create", createRevision: rev(0), result: "equal" })).toBe(true);
    expect(holds({ key: x, target: "mod", modRevision: rev(1), result: "less" })).toBe(true);
    expect(holds({ key: x, target: "lease", lease: NO_LEASE, result: "equal" })).toBe(true);
    expect(holds({ key: x, target: "value", value: new Uint8Array(0), result: "equal" })).toBe(false);
    expect(holds({ key: x, target: "value", value: b("v"), result: "notEqual" })).toBe(false);
  });

  it("a compare with a range end must hold for every key in the range (zeros when none)", () => {
    const s = new MvccStore();
    mustPut(s, "p/1", "v");
    mustPut(s, "p/2", "v");
    const prefix = { key: b("p/"), rangeEnd: prefixEnd(b("p/")) };
    const holds = (c: Compare) => (s.txn({ compare: [c] }) as { succeeded: boolean }).succeeded;
    expect(holds({ ...prefix, target: "value", value: b("v"), result: "equal" })).toBe(true);
    expect(holds({ ...prefix, target: "create", createRevision: rev(3), result: "less" })).toBe(false);
    expect(holds({ ...prefix, target: "create", createRevision: rev(4), result: "less" })).toBe(true);
    const none = { key: b("q/"), rangeEnd: prefixEnd(b("q/")) };
    expect(holds({ ...none, target: "version", version: 0, result: "equal" })).toBe(true);
    expect(holds({ ...none, target: "value", value: b("v"), result: "notEqual" })).toBe(false);
  });

  it("nested txns run in the same revision; their compares see the state before the txn", () => {
    const s = new MvccStore();
    mustPut(s, "k", "0");
    const r = s.txn({
      success: [
        putOp("k", "1"),
        txnOp({
          // Sees k at version 1 (before the outer put), so succeeds.
          compare: [versionIs("k", 1)],
          success: [putOp("n", "yes"), rangeOp({ key: b("k") })],
          failure: [putOp("n", "no")],
        }),
      ],
    });
    if (!r.ok) throw new Error(r.error);
    expect(r.revision).toBe(3);
    expect(get(s, "n")?.value).toEqual(b("yes"));
    const nested = r.responses[1];
    if (nested?.type !== "txn") throw new Error("expected a txn response");
    expect(nested.response.succeeded).toBe(true);
    const inner = nested.response.responses[1];
    // A range op, unlike a compare, sees the writes before it.
    expect(inner?.type === "range" && inner.response.kvs[0]?.value).toEqual(b("1"));
  });

  it("a range op at an explicit revision inside a write txn reads that revision", () => {
    const s = new MvccStore();
    mustPut(s, "k", "0");
    const r = s.txn({ success: [putOp("k", "1"), rangeOp({ key: b("k"), revision: rev(2) })] });
    const op = r.ok ? r.responses[1] : undefined;
    expect(op?.type === "range" && op.response.kvs[0]?.value).toEqual(b("0"));
    expect(s.txn({ success: [putOp("k", "2"), rangeOp({ key: b("k"), revision: rev(4) })] })).toEqual({
      ok: false,
      error: "futureRevision",
    });
  });

  it("errors in the executed path come before any change; the other branch is not checked", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    const future = rangeOp({ key: b("a"), revision: rev(9) });
    expect(s.txn({ success: [putOp("b"), future] })).toEqual({ ok: false, error: "futureRevision" });
    expect(s.txn({ success: [putOp("b")], failure: [future] })).toMatchObject({ ok: true, succeeded: true });
    expect(s.currentRevision()).toBe(3);
    expect(s.txn({ success: [putOp("c"), putOp("d", "", { ignoreValue: true })] })).toEqual({
      ok: false,
      error: "keyNotFound",
    });
    const leased = txnOp({ success: [putOp("e", "v", { lease: L(77) })] });
    expect(s.txn({ success: [putOp("c"), leased] }, LEASES)).toEqual({ ok: false, error: "leaseNotFound" });
    expect(
      s.txn({ success: [putOp("c"), txnOp({ success: [putOp("e", "v", { lease: L(7) })] })] }, LEASES),
    ).toMatchObject({
      ok: true,
      revision: 4,
    });
    expect(s.currentRevision()).toBe(4);
  });

  it("duplicate keys: a key put twice, or put and deleted, in one branch", () => {
    const s = new MvccStore();
    const check = (success: RequestOp[]) => s.txn({ success });
    const dup = { ok: false, error: "duplicateKey" };
    expect(check([putOp("a"), putOp("a")])).toEqual(dup);
    expect(check([putOp("b"), delOp("a", b("c"))])).toEqual(dup);
    expect(check([delOp("b"), putOp("b")])).toEqual(dup);
    expect(check([putOp("b"), delOp("a", prefixEnd(b("a")))])).toMatchObject({ ok: true }); // "b" is not under "a"
    expect(check([delOp("a", b("c")), delOp("b", b("d")), delOp("b")])).toMatchObject({ ok: true }); // deletes may overlap
    expect(s.txn({ success: [putOp("a")], failure: [putOp("a")] })).toMatchObject({ ok: true }); // different branches
  });

  it("duplicate keys across nested txns follow etcd's checkIntervals", () => {
    const s = new MvccStore();
    const check = (success: RequestOp[]) => s.txn({ success });
    const dup = { ok: false, error: "duplicateKey" };
    // A nested put clashes with a put or delete of the enclosing level.
    expect(check([putOp("a"), txnOp({ success: [putOp("a")] })])).toEqual(dup);
    expect(check([delOp("a"), txnOp({ failure: [putOp("a")] })])).toEqual(dup);
    // A nested delete clashes with a put of the enclosing level.
    expect(check([putOp("a"), txnOp({ success: [delOp("a", b("b"))] })])).toEqual(dup);
    // One nested txn's then and else may put the same key; two nested txns may not.
    expect(check([txnOp({ success: [putOp("a")], failure: [putOp("a")] })])).toMatchObject({ ok: true });
    expect(check([txnOp({ success: [putOp("a")] }), txnOp({ failure: [putOp("a")] })])).toEqual(dup);
    // A nested delete before a sibling's put clashes...
    expect(check([txnOp({ success: [delOp("a")] }), txnOp({ success: [putOp("a")] })])).toEqual(dup);
    // ...but a nested put before a sibling's delete does not (etcd checks puts against the deletes seen so far):
    // the key is put, then deleted, in one revision.
    const r = check([txnOp({ success: [putOp("z", "1")] }), txnOp({ success: [delOp("z")] })]);
    if (!r.ok) throw new Error(r.error);
    expect(r.events.map(describeEvent)).toEqual([
      'put "z" rev=3 create=3 ver=1 lease=0 "1"',
      'delete "z" rev=3',
    ]);
    expect(get(s, "z")).toBeUndefined();
    expect(s.eventsSince(rev(3), { key: b("z") })).toMatchObject({ ok: true, events: r.events });
  });

  it("a from-key delete covers every key after it in the duplicate check (closes etcd-io/etcd#22445)", () => {
    const s = new MvccStore();
    const dup = { ok: false, error: "duplicateKey" };
    expect(s.txn({ success: [delOp("a", RANGE_END_TO_END), putOp("zzz")] })).toEqual(dup);
    expect(
      s.txn({
        success: [
          { type: "deleteRange", request: { key: Uint8Array.of(0), rangeEnd: RANGE_END_TO_END } },
          putOp("a"),
        ],
      }),
    ).toEqual(dup);
    expect(s.txn({ success: [delOp("b", RANGE_END_TO_END), putOp("a")] })).toMatchObject({ ok: true });
  });

  it("too many ops: the largest list over txnOpsMax; nested txns get what the parent leaves", () => {
    const s = new MvccStore();
    const puts = (n: number, p: string) => Array.from({ length: n }, (_, i) => putOp(`${p}${i}`));
    expect(s.txn({ success: puts(129, "k") })).toEqual({ ok: false, error: "tooManyOps" });
    expect(s.txn({ success: puts(128, "k"), failure: puts(128, "f") })).toMatchObject({ ok: true }); // not summed
    const compares = Array.from({ length: 129 }, () => versionIs("a", 0));
    expect(s.txn({ compare: compares })).toEqual({ ok: false, error: "tooManyOps" });
    // Parent has 100 ops, so a nested txn may have 28.
    const withNested = (n: number) =>
      s.txn({ success: [...puts(99, "p"), txnOp({ success: puts(n, "n") })] });
    expect(withNested(28)).toMatchObject({ ok: true });
    expect(withNested(29)).toEqual({ ok: false, error: "tooManyOps" });
    expect(checkTxnRequest({ success: puts(3, "x") }, { txnOpsMax: 2 })).toBe("tooManyOps");
  });

  it("empty keys and ignore-flag misuse anywhere in the request are rejected, checked before duplicates", () => {
    const s = new MvccStore();
    const empty = { ok: false, error: "emptyKey" };
    expect(
      s.txn({ compare: [{ key: new Uint8Array(0), target: "version", version: 0, result: "equal" }] }),
    ).toEqual(empty);
    expect(s.txn({ failure: [txnOp({ success: [delOp("")] })] })).toEqual(empty);
    expect(s.txn({ success: [putOp("a"), putOp("a"), rangeOp({ key: new Uint8Array(0) })] })).toEqual(empty);
    expect(s.txn({ success: [putOp("a", "v", { ignoreValue: true })] })).toEqual({
      ok: false,
      error: "valueProvided",
    });
  });
});

describe("deleteKeys (lease revoke)", () => {
  it("deletes the present keys in one revision, one event each, in key order", () => {
    const s = new MvccStore();
    mustPut(s, "b", "1", { lease: L(1) });
    mustPut(s, "a", "1", { lease: L(1) });
    mustPut(s, "c", "1");
    const r = s.deleteKeys([b("b"), b("missing"), b("a"), b("b")]);
    expect(r.revision).toBe(5);
    expect(r.deleted).toBe(2);
    expect(r.events.map(describeEvent)).toEqual(['delete "a" rev=5', 'delete "b" rev=5']);
    expect(r.leaseChanges).toEqual([
      { key: b("a"), keyString: "a", from: L(1), to: NO_LEASE },
      { key: b("b"), keyString: "b", from: L(1), to: NO_LEASE },
    ]);
    expect(keysOf(s, { key: b("a"), rangeEnd: b("z") })).toEqual(["c"]);
  });

  it("takes no revision when none of the keys exists", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    expect(s.deleteKeys([b("x"), b("y")])).toEqual({ revision: 2, deleted: 0, events: [], leaseChanges: [] });
    expect(s.deleteKeys([])).toMatchObject({ revision: 2, deleted: 0 });
  });
});

describe("compaction", () => {
  /** Revisions: 2 put a, 3 put b, 4 put a, 5 delete b, 6 put c. */
  function history(): MvccStore {
    const s = new MvccStore();
    mustPut(s, "a", "1");
    mustPut(s, "b", "1");
    mustPut(s, "a", "2");
    s.deleteRange({ key: b("b") });
    mustPut(s, "c", "1");
    return s;
  }
  const all: KeyRange = { key: b("a"), rangeEnd: b("z") };

  it("reads below the compacted revision fail; at and above it answer as before", () => {
    const s = history();
    const before = [4, 5, 6].map((r) => rangeOf(s, { ...all, revision: rev(r) }));
    expect(s.compact(rev(4))).toEqual({ ok: true, revision: 6 });
    expect(s.compactedRevision()).toBe(4);
    expect(s.range({ ...all, revision: rev(3) })).toEqual({ ok: false, error: "compacted" });
    expect([4, 5, 6].map((r) => rangeOf(s, { ...all, revision: rev(r) }))).toEqual(before);
    expect(keysOf(s, { ...all, revision: rev(4) })).toEqual(["a", "b"]);
    s.checkInvariants();
  });

  it("compacting at or below the compacted revision is compacted; beyond the current one is futureRevision", () => {
    const s = history();
    expect(s.compact(rev(-1))).toEqual({ ok: false, error: "compacted" }); // etcd: rev <= compactMainRev (-1)
    expect(s.compact(rev(7))).toEqual({ ok: false, error: "futureRevision" });
    expect(s.compact(rev(3)).ok).toBe(true);
    expect(s.compact(rev(3))).toEqual({ ok: false, error: "compacted" });
    expect(s.compact(rev(2))).toEqual({ ok: false, error: "compacted" });
    expect(s.compact(rev(6)).ok).toBe(true); // up to the current revision
    expect(keysOf(s, all)).toEqual(["a", "c"]);
  });

  it("a fresh store is compacted at -1, as etcd's compactMainRev: Compact(0) and Compact(1) succeed once", () => {
    const s = new MvccStore();
    expect(s.compactedRevision()).toBe(-1);
    expect(s.compact(rev(2))).toEqual({ ok: false, error: "futureRevision" });
    expect(s.compact(rev(1))).toEqual({ ok: true, revision: 1 });
    expect(s.compactedRevision()).toBe(1);
    expect(s.compact(rev(1))).toEqual({ ok: false, error: "compacted" });
    expect(s.compact(rev(0))).toEqual({ ok: false, error: "compacted" });
    expect(s.range({ key: b("a"), revision: rev(1) })).toEqual({
      ok: true,
      kvs: [],
      more: false,
      count: 0,
      revision: 1,
    });
    expect(s.eventsSince(rev(1), all)).toEqual({ ok: true, events: [], nextRevision: 2 });
    s.checkInvariants();
    const z = new MvccStore();
    expect(z.compact(rev(0))).toEqual({ ok: true, revision: 1 });
    expect(z.compactedRevision()).toBe(0);
    expect(z.compact(rev(0))).toEqual({ ok: false, error: "compacted" });
    expect(z.compact(rev(1))).toEqual({ ok: true, revision: 1 });
    z.checkInvariants();
  });

  it("a txn range below the compacted revision fails the whole txn", () => {
    const s = history();
    s.compact(rev(5));
    expect(s.txn({ success: [putOp("x"), rangeOp({ key: b("a"), revision: rev(4) })] })).toEqual({
      ok: false,
      error: "compacted",
    });
    expect(s.currentRevision()).toBe(6);
  });

  it("keeps versions still readable: a key unchanged since long before the compaction point", () => {
    const s = new MvccStore();
    mustPut(s, "old", "v");
    for (let i = 0; i < 5; i++) mustPut(s, "hot", String(i));
    s.compact(rev(6));
    expect(get(s, "old", 6)).toMatchObject({ modRevision: 2, value: b("v") });
    expect(get(s, "hot", 6)?.value).toEqual(b("3"));
    s.compact(rev(7));
    expect(get(s, "old", 7)).toMatchObject({ modRevision: 2 });
  });
});

describe("eventsSince", () => {
  function store(): MvccStore {
    const s = new MvccStore();
    mustPut(s, "a", "1"); // 2
    mustPut(s, "b/1", "1"); // 3
    s.txn({ success: [putOp("b/2", "1"), putOp("c", "1")] }); // 4
    s.deleteRange({ key: b("b/"), rangeEnd: prefixEnd(b("b/")) }); // 5
    mustPut(s, "a", "2"); // 6
    return s;
  }
  const describeAll = (r: ReturnType<MvccStore["eventsSince"]>) => (r.ok ? r.events.map(describeEvent) : r);

  it("returns the events from a revision on, for a key, a prefix or everything, in order", () => {
    const s = store();
    expect(describeAll(s.eventsSince(rev(2), { key: b("a") }))).toEqual([
      'put "a" rev=2 create=2 ver=1 lease=0 "1"',
      'put "a" rev=6 create=2 ver=2 lease=0 "2"',
    ]);
    expect(describeAll(s.eventsSince(rev(4), { key: b("b/"), rangeEnd: prefixEnd(b("b/")) }))).toEqual([
      'put "b/2" rev=4 create=4 ver=1 lease=0 "1"',
      'delete "b/1" rev=5',
      'delete "b/2" rev=5',
    ]);
    const everything = s.eventsSince(rev(0), { key: Uint8Array.of(0), rangeEnd: RANGE_END_TO_END });
    expect(everything.ok && everything.events.map((e) => e.kv.modRevision)).toEqual([2, 3, 4, 4, 5, 5, 6]);
    expect(everything.ok && everything.nextRevision).toBe(7);
    expect(s.eventsSince(rev(10), { key: b("a") })).toEqual({ ok: true, events: [], nextRevision: 10 });
  });

  it("hands out at most revisionsMax whole revisions and says where to resume", () => {
    const s = store();
    const all = { key: Uint8Array.of(0), rangeEnd: RANGE_END_TO_END };
    const first = s.eventsSince(rev(3), all, 2);
    expect(first.ok && first.events.map((e) => e.kv.modRevision)).toEqual([3, 4, 4]);
    expect(first.ok && first.nextRevision).toBe(5);
    const second = s.eventsSince(rev(5), all, 2);
    expect(second.ok && second.events.map((e) => e.kv.modRevision)).toEqual([5, 5, 6]);
    expect(second.ok && second.nextRevision).toBe(7);
  });

  it("fails below the compacted revision and works from exactly it (etcd: minRev < compactRev)", () => {
    const s = store();
    s.compact(rev(5));
    expect(s.eventsSince(rev(4), { key: b("a") })).toEqual({
      ok: false,
      error: "compacted",
      compactRevision: 5,
    });
    const r = s.eventsSince(rev(5), { key: b("b/"), rangeEnd: prefixEnd(b("b/")) });
    expect(describeAll(r)).toEqual(['delete "b/1" rev=5', 'delete "b/2" rev=5']);
    expect(r.ok && r.events[1]?.prevKv?.modRevision).toBe(4); // prevKv survives compaction at 5
  });
});

describe("snapshot", () => {
  it("round-trips through JSON: same answers, events, revisions, and the same future", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1", { lease: L(1) });
    mustPut(s, "b", "\u00ff\u0000");
    s.put({ key: Uint8Array.of(0xff, 0), value: Uint8Array.of(0, 1, 2) });
    mustPut(s, "a", "2");
    s.deleteRange({ key: b("b") });
    mustPut(s, "c", "1");
    s.compact(rev(5));
    const restored = MvccStore.restore(JSON.parse(JSON.stringify(s.snapshot())));
    expect(restored.currentRevision()).toBe(7);
    expect(restored.compactedRevision()).toBe(5);
    const all = { key: Uint8Array.of(0), rangeEnd: RANGE_END_TO_END };
    for (const r of [5, 6, 7]) {
      expect(restored.range({ ...all, revision: rev(r) })).toEqual(s.range({ ...all, revision: rev(r) }));
    }
    expect(restored.range({ ...all, revision: rev(4) })).toEqual({ ok: false, error: "compacted" });
    expect(restored.eventsSince(rev(5), all)).toEqual(s.eventsSince(rev(5), all));
    expect(restored.snapshot()).toEqual(s.snapshot());
    expect(mustPut(restored, "a", "3")).toEqual(mustPut(s, "a", "3"));
  });

  it("round-trips through format 2 (binary) to the store format 1 gives, and writes the same bytes again", () => {
    const s = new MvccStore();
    mustPut(s, "a", "1", { lease: L(1) });
    mustPut(s, "b", "\u00ff\u0000");
    s.put({ key: Uint8Array.of(0xff, 0), value: new Uint8Array(VALUE_STRING_BYTES_MAX + 1).fill(7) });
    const biggest = leaseId((1n << 63n) - 1n);
    expect(s.put({ key: b("a"), value: b("2"), lease: biggest }, { leaseExists: () => true }).ok).toBe(true);
    s.deleteRange({ key: b("b") });
    mustPut(s, "c", "");
    s.compact(rev(5));
    const w = new ByteWriter(8);
    s.writeSnapshot(w);
    const bytes = w.finish();
    const r = new ByteReader(bytes);
    const back = MvccStore.readSnapshot(r);
    expect(r.done).toBe(true);
    expect(back.snapshot()).toEqual(s.snapshot());
    const all = { key: Uint8Array.of(0), rangeEnd: RANGE_END_TO_END };
    for (const at of [5, 6, 7]) {
      expect(back.range({ ...all, revision: rev(at) })).toEqual(s.range({ ...all, revision: rev(at) }));
    }
    expect(back.eventsSince(rev(5), all)).toEqual(s.eventsSince(rev(5), all));
    const again = new ByteWriter();
    back.writeSnapshot(again);
    expect(again.finish()).toEqual(bytes);
    // Smaller than format 1 (JSON), here by about a third of the long value's base64 alone.
    expect(bytes.length).toBeLessThan(JSON.stringify(s.snapshot()).length);
  });

  it("a fresh store's snapshot is empty", () => {
    expect(new MvccStore().snapshot()).toEqual({
      formatVersion: 1,
      revision: 1,
      compactedRevision: -1,
      base: [],
      changes: [],
    });
    const fresh = MvccStore.restore(new MvccStore().snapshot());
    expect(fresh.currentRevision()).toBe(1);
    expect(fresh.compactedRevision()).toBe(-1);
    for (const c of [0, 1]) {
      const compacted = new MvccStore();
      expect(compacted.compact(rev(c)).ok).toBe(true);
      const back = MvccStore.restore(JSON.parse(JSON.stringify(compacted.snapshot())));
      expect(back.currentRevision()).toBe(1);
      expect(back.compactedRevision()).toBe(c);
      expect(mustPut(back, "a", "1").revision).toBe(2);
    }
  });
});

describe("describeEvent", () => {
  it("is one deterministic line per event", () => {
    const s = new MvccStore();
    const put = mustPut(s, "k", "v", { lease: L(7) });
    expect(describeEvent(put.events[0]!)).toBe('put "k" rev=2 create=2 ver=1 lease=7 "v"');
    const del = s.deleteKeys([Uint8Array.of(0x6b)]);
    expect(describeEvent(del.events[0]!)).toBe('delete "k" rev=3');
  });
});

describe("values kept as strings or as bytes", () => {
  it("a value over VALUE_STRING_BYTES_MAX reads, compares, sorts and shows as prevKv like a short one", () => {
    const s = new MvccStore();
    const long = new Uint8Array(VALUE_STRING_BYTES_MAX + 10).map((_, i) => (i * 7) & 0xff);
    const longer = long.slice();
    longer[longer.length - 1] = 0xff;
    const edge = new Uint8Array(VALUE_STRING_BYTES_MAX).fill(0x80);
    s.put({ key: b("k/long"), value: long });
    s.put({ key: b("k/edge"), value: edge });
    s.put({ key: b("k/short"), value: Uint8Array.of(0x80, 0) });
    const got = s.range({ key: b("k/long") });
    expect(got.ok && got.kvs[0]!.value).toEqual(long);
    expect(s.range({ key: b("k/edge") }).ok && s.range({ key: b("k/edge") })).toMatchObject({
      kvs: [{ value: edge }],
    });
    // Stored values are copies: changing the request's bytes later changes nothing.
    long[0] = 99;
    const again = s.range({ key: b("k/long") });
    expect(again.ok && again.kvs[0]!.value[0]).toBe(0);
    long[0] = 0;
    // Also from a Node Buffer, whose slice() would be a view of the caller's memory.
    const buffer = Buffer.alloc(VALUE_STRING_BYTES_MAX + 1, 1);
    s.put({ key: b("k/buffer"), value: buffer });
    buffer.fill(2);
    const fromBuffer = s.range({ key: b("k/buffer") });
    expect(fromBuffer.ok && fromBuffer.kvs[0]!.value.every((x) => x === 1)).toBe(true);
    s.deleteRange({ key: b("k/buffer") });
    // Sorting by value mixes both kinds: "\x00..." < "\x80\x00" < "\x80\x80..." (bytewise).
    const byValue = s.range({
      key: b("k/"),
      rangeEnd: prefixEnd(b("k/")),
      sortTarget: "value",
      sortOrder: "ascend",
    });
    expect(byValue.ok && byValue.kvs.map((kv) => new TextDecoder().decode(kv.key))).toEqual([
      "k/long",
      "k/short",
      "k/edge",
    ]);
    // Value compares against bytes, equal and not.
    const cmp = (value: Uint8Array, result: "equal" | "greater" | "less") =>
      s.txn({ compare: [{ key: b("k/long"), target: "value", result, value }] });
    expect(cmp(long, "equal")).toMatchObject({ ok: true, succeeded: true });
    expect(cmp(longer, "less")).toMatchObject({ ok: true, succeeded: true });
    expect(cmp(long.subarray(0, 5), "greater")).toMatchObject({ ok: true, succeeded: true });
    // prevKv and the put's event carry the long value.
    const p = s.put({ key: b("k/long"), value: b("short now"), prevKv: true });
    expect(p.ok && p.prevKv?.value).toEqual(long);
    expect(p.ok && p.events[0]!.prevKv?.value).toEqual(long);
    const back = MvccStore.restore(JSON.parse(JSON.stringify(s.snapshot())));
    expect(back.range({ key: b("k/long"), revision: rev(2) })).toEqual(
      s.range({ key: b("k/long"), revision: rev(2) }),
    );
    expect(s.sizeBytes()).toBe(back.sizeBytes());
    s.checkInvariants();
  });
});
