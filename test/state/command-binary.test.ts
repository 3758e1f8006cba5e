/**
 * The command codec's binary format (version 2, src/state/command.ts):
 *
 * - Round trip: decodeCommand(encodeCommand(c)) strictly equals c for random
 *   commands of every binary type (nested txns, every compare target and
 *   result, every optional field absent / false / 0 / empty, int64 and safe
 *   integer extremes, sessions and auth with any Unicode), in one buffer of
 *   the exact size, and the encoding is canonical.
 * - Version 1 still decodes: the same random commands written as the JSON of
 *   the old encoder (rebuilt here from its spec) and literal old entries
 *   decode to the same commands.
 * - Garbage: random bytes, every truncation, bit flips and byte changes of
 *   valid encodings only ever fail with CommandDecodeError (and apply as a
 *   decodeError, never an assertion); what decodes re-encodes to the same bytes.
 * - Each validation is refused with the field's path, as the JSON decoder does.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ClientSession, Command, CommandAuth } from "../../src/state/command.ts";
import {
  binaryCommandType,
  COMMAND_TXN_DEPTH_MAX,
  CommandDecodeError,
  commandRequestBytes,
  decodeCommand,
  encodeCommand,
  tryDecodeCommand,
} from "../../src/state/command.ts";
import { MAX_LEASE_ID, MAX_LEASE_TTL_SECONDS } from "../../src/state/lease.ts";
import { MAX_CHECKPOINTS_PER_BATCH, MAX_LEASES_PER_REVOKE_BATCH } from "../../src/state/lessor.ts";
import { StateMachine } from "../../src/state/machine.ts";
import type {
  Compare,
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  RequestOp,
  TxnRequest,
} from "../../src/state/mvcc.ts";
import { leaseId, revision } from "../../src/state/types.ts";

const RUNS = 300;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

// ---------------------------------------------------------------------------
// Arbitraries.

const bytesArb = fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.uint8Array({ minLength: 100, maxLength: 300 }));
const keyArb = fc.uint8Array({ maxLength: 6 });
const int64Arb = fc.bigInt({ min: INT64_MIN, max: INT64_MAX }).map(leaseId);
const tableLeaseArb = fc.bigInt({ min: 0n, max: MAX_LEASE_ID }).map(leaseId);
/** Safe integers, small ones often (varint widths) and the extremes. */
const intArb = fc.oneof(
  fc.integer({ min: -200, max: 200 }),
  fc.maxSafeInteger(),
  fc.constantFrom(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, -64, 63, 64, -65, 8191, 8192),
);
const natArb = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.maxSafeNat(),
  fc.constant(Number.MAX_SAFE_INTEGER),
);
const revArb = natArb.map(revision);
/** Text of any Unicode (astral included), within `unitsMax` UTF-16 units. */
const textArb = (minLength: number, unitsMax: number): fc.Arbitrary<string> =>
  fc
    .oneof(
      fc.string({ minLength, maxLength: unitsMax }),
      fc.string({ unit: "binary", minLength, maxLength: unitsMax / 2 }),
      fc.constantFrom("\uFEFFbom", "é", "日本", "😀x"),
    )
    .filter((s) => s.length >= minLength && s.length <= unitsMax);
const sessionArb: fc.Arbitrary<ClientSession> = fc.record(
  { clientId: textArb(1, 128), seq: natArb.filter((n) => n >= 1) },
  { noNullPrototype: true },
);
const authArb: fc.Arbitrary<CommandAuth> = fc.record(
  { user: textArb(1, 40), revision: natArb.filter((n) => n >= 1) },
  { noNullPrototype: true },
);

const putReqArb: fc.Arbitrary<PutRequest> = fc.record(
  {
    key: keyArb,
    value: bytesArb,
    lease: int64Arb,
    prevKv: fc.boolean(),
    ignoreValue: fc.boolean(),
    ignoreLease: fc.boolean(),
  },
  { requiredKeys: ["key", "value"], noNullPrototype: true },
);
const delReqArb: fc.Arbitrary<DeleteRangeRequest> = fc.record(
  { key: keyArb, rangeEnd: keyArb, prevKv: fc.boolean() },
  { requiredKeys: ["key"], noNullPrototype: true },
);
const rangeReqArb: fc.Arbitrary<RangeRequest> = fc.record(
  {
    key: keyArb,
    rangeEnd: keyArb,
    limit: intArb,
    revision: revArb,
    minModRevision: revArb,
    maxModRevision: revArb,
    minCreateRevision: revArb,
    maxCreateRevision: revArb,
    sortOrder: fc.constantFrom("none", "ascend", "descend" as const),
    sortTarget: fc.constantFrom("key", "version", "create", "mod", "value" as const),
    keysOnly: fc.boolean(),
    countOnly: fc.boolean(),
  },
  { requiredKeys: ["key"], noNullPrototype: true },
);
const compareArb: fc.Arbitrary<Compare> = fc
  .tuple(
    fc.record({ key: keyArb, rangeEnd: keyArb }, { requiredKeys: ["key"], noNullPrototype: true }),
    fc.constantFrom("equal", "notEqual", "greater", "less" as const),
  )
  .chain(([range, result]) => {
    const base = { ...range, result };
    return fc.oneof(
      bytesArb.map((value): Compare => ({ ...base, target: "value", value })),
      intArb.map((version): Compare => ({ ...base, target: "version", version })),
      intArb.map((n): Compare => ({ ...base, target: "create", createRevision: revision(n) })),
      intArb.map((n): Compare => ({ ...base, target: "mod", modRevision: revision(n) })),
      int64Arb.map((lease): Compare => ({ ...base, target: "lease", lease })),
    );
  });
const { txn: txnArb } = fc.letrec<{ txn: TxnRequest; op: RequestOp }>((tie) => ({
  op: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    rangeReqArb.map((request): RequestOp => ({ type: "range", request })),
    putReqArb.map((request): RequestOp => ({ type: "put", request })),
    delReqArb.map((request): RequestOp => ({ type: "deleteRange", request })),
    tie("txn").map((request): RequestOp => ({ type: "txn", request: request as TxnRequest })),
  ),
  txn: fc.record(
    {
      compare: fc.array(compareArb, { maxLength: 3 }),
      success: fc.array(tie("op") as fc.Arbitrary<RequestOp>, { maxLength: 3 }),
      failure: fc.array(tie("op") as fc.Arbitrary<RequestOp>, { maxLength: 3 }),
    },
    { requiredKeys: [], noNullPrototype: true },
  ),
}));

/** A client command's body with an optional session and auth (absent keys stay absent). */
const client = <B extends object>(body: fc.Arbitrary<B>) =>
  fc
    .tuple(
      body,
      fc.record({ session: sessionArb, auth: authArb }, { requiredKeys: [], noNullPrototype: true }),
    )
    .map(([b, tail]) => ({ ...b, ...tail }) as unknown as Command);

const checkpointArb = fc.record(
  {
    id: tableLeaseArb,
    remainingTtlSeconds: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constant(MAX_LEASE_TTL_SECONDS)),
    grantIndex: natArb,
  },
  { noNullPrototype: true },
);

/** Every command type written in version 2. */
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  client(putReqArb.map((request) => ({ type: "put", request }))),
  client(delReqArb.map((request) => ({ type: "deleteRange", request }))),
  client(txnArb.map((request) => ({ type: "txn", request }))),
  client(revArb.map((r) => ({ type: "compact", revision: r }))),
  client(
    fc.record(
      { type: fc.constant("leaseGrant"), id: tableLeaseArb, ttlSeconds: intArb },
      { noNullPrototype: true },
    ),
  ),
  client(
    fc.record(
      { type: fc.constant("leaseRevoke"), id: tableLeaseArb, grantIndex: natArb },
      { requiredKeys: ["type", "id"], noNullPrototype: true },
    ),
  ),
  fc
    .array(checkpointArb, { maxLength: 5 })
    .map((checkpoints): Command => ({ type: "leaseCheckpoint", checkpoints })),
  fc
    .array(fc.record({ id: tableLeaseArb, grantIndex: natArb }, { noNullPrototype: true }), { maxLength: 5 })
    .map((leases): Command => ({ type: "leaseExpire", leases })),
);

// ---------------------------------------------------------------------------
// The version-1 encoder, rebuilt from its spec (file header of command.ts):
// what every entry written before version 2 looks like.

type Json = string | number | boolean | Json[] | { [k: string]: Json };
const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");

/** `o` without its undefined fields, bytes as base64 and bigints as decimal strings, recursively. */
function legacy(v: unknown): Json {
  if (v instanceof Uint8Array) return b64(v);
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return v.map(legacy);
  if (typeof v === "object" && v !== null) {
    const o: { [k: string]: Json } = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = legacy(x);
    return o;
  }
  return v as Json;
}

function legacyEncode(cmd: Command): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ v: 1, ...(legacy(cmd) as object) }));
}

// ---------------------------------------------------------------------------
// Helpers.

const te = new TextEncoder();
const b = (s: string): Uint8Array => te.encode(s);

/** The path the decoder refuses `data` at ("accepted" when it decodes). */
function refusedAt(data: Uint8Array): string {
  const r = tryDecodeCommand(data);
  return r.ok ? "accepted" : r.error.path;
}

function refusal(data: Uint8Array): CommandDecodeError {
  const r = tryDecodeCommand(data);
  if (r.ok) throw new Error(`accepted: ${JSON.stringify(legacy(r.command))}`);
  return r.error;
}

/** decodeCommand's outcome as a value; throws whatever is not a CommandDecodeError. */
function decodesOrRefuses(data: Uint8Array): Command | undefined {
  try {
    return decodeCommand(data);
  } catch (e) {
    expect(e).toBeInstanceOf(CommandDecodeError);
    return undefined;
  }
}

function nestedTxn(depth: number): TxnRequest {
  let request: TxnRequest = {};
  for (let i = 1; i < depth; i++) request = { success: [{ type: "txn", request }] };
  return request;
}

// ---------------------------------------------------------------------------

describe("command codec, version 2: round trip", () => {
  it("decodes every command to exactly what was encoded, from one buffer of the exact size", () => {
    fc.assert(
      fc.property(commandArb, (cmd) => {
        const data = encodeCommand(cmd);
        expect(data[0]).toBe(0x02);
        expect(binaryCommandType(data)).toBe(cmd.type);
        expect(data.byteOffset).toBe(0);
        expect(data.buffer.byteLength).toBe(data.length);
        expect(decodeCommand(data)).toStrictEqual(cmd);
      }),
      { numRuns: RUNS },
    );
  });

  it("keeps explicit false, 0 and empty bytes present, and absent fields absent", () => {
    const empty = new Uint8Array(0);
    const cmds: Command[] = [
      {
        type: "put",
        request: {
          key: empty,
          value: empty,
          lease: leaseId(0n),
          prevKv: false,
          ignoreValue: false,
          ignoreLease: false,
        },
      },
      { type: "put", request: { key: b("k"), value: empty } },
      { type: "deleteRange", request: { key: empty, rangeEnd: empty, prevKv: false } },
      { type: "txn", request: {} },
      { type: "txn", request: { compare: [], success: [], failure: [] } },
      {
        type: "txn",
        request: {
          success: [
            {
              type: "range",
              request: {
                key: empty,
                rangeEnd: empty,
                limit: 0,
                revision: revision(0),
                keysOnly: false,
                countOnly: false,
              },
            },
          ],
        },
      },
      { type: "compact", revision: revision(0) },
      { type: "leaseGrant", id: leaseId(0n), ttlSeconds: 0 },
      { type: "leaseRevoke", id: leaseId(0n), grantIndex: 0 },
      { type: "leaseRevoke", id: leaseId(1n) },
      { type: "leaseCheckpoint", checkpoints: [] },
      { type: "leaseExpire", leases: [] },
    ];
    for (const cmd of cmds) {
      const back = decodeCommand(encodeCommand(cmd));
      expect(back).toStrictEqual(cmd);
      expect(Object.keys(back).sort()).toEqual(Object.keys(cmd).sort());
    }
    const put = decodeCommand(encodeCommand(cmds[1]!));
    expect(put.type === "put" && Object.keys(put.request).sort()).toEqual(["key", "value"]);
  });

  it("is canonical: whatever decodes re-encodes to the same bytes", () => {
    fc.assert(
      fc.property(commandArb, (cmd) => {
        const data = encodeCommand(cmd);
        expect(encodeCommand(decodeCommand(data))).toEqual(data);
      }),
      { numRuns: 100 },
    );
  });

  it("bytes fields are views of the entry data, plain Uint8Arrays even when the input is a Buffer", () => {
    const data = encodeCommand({ type: "put", request: { key: b("key"), value: b("value") } });
    const fromBuffer = decodeCommand(Buffer.from(data));
    expect(fromBuffer.type === "put" && fromBuffer.request.key.constructor).toBe(Uint8Array);
    const cmd = decodeCommand(data);
    expect(cmd.type === "put" && cmd.request.value.buffer).toBe(data.buffer);
  });

  it("writes version 1 for what version 2 cannot carry, which then fails as it always did", () => {
    const lone = "a\uD800b";
    const withLone: Command = {
      type: "put",
      request: { key: b("k"), value: b("v") },
      session: { clientId: lone, seq: 1 },
    };
    const data = encodeCommand(withLone);
    expect(data[0]).toBe(0x7b); // "{"
    expect(decodeCommand(data)).toStrictEqual(withLone);
    const authLone: Command = {
      type: "compact",
      revision: revision(3),
      auth: { user: "\uDC00", revision: 2 },
    };
    expect(encodeCommand(authLone)[0]).toBe(0x7b);
    expect(decodeCommand(encodeCommand(authLone))).toStrictEqual(authLone);

    const refusedAsJson = (cmd: Command): string => {
      const d = encodeCommand(cmd);
      expect(d[0]).toBe(0x7b);
      return refusedAt(d);
    };
    expect(refusedAsJson({ type: "leaseGrant", id: leaseId(1n), ttlSeconds: 1.5 })).toBe("$.ttlSeconds");
    expect(refusedAsJson({ type: "compact", revision: revision(-1) })).toBe("$.revision");
    expect(
      refusedAsJson({ type: "put", request: { key: b("k"), value: b(""), lease: leaseId(1n << 64n) } }),
    ).toBe("$.request.lease");
    expect(
      refusedAsJson({
        type: "txn",
        request: { success: [{ type: "range", request: { key: b("a"), revision: revision(-5) } }] },
      }),
    ).toBe("$.request.success[0].request.revision");
    expect(refusedAsJson({ type: "leaseRevoke", id: leaseId(1n), grantIndex: 2 ** 53 })).toBe("$.grantIndex");
  });

  it("keeps the member, alarm and auth commands in version 1", () => {
    const cmds: Command[] = [
      { type: "memberPublish", member: 1, name: "a", clientUrls: ["http://h:1"] },
      { type: "alarm", action: "activate", member: 7n, alarm: "nospace" },
      { type: "authEnable" },
      { type: "authUserAdd", user: "u", passwordHash: "abc" },
    ];
    for (const cmd of cmds) {
      const data = encodeCommand(cmd);
      expect(data[0]).toBe(0x7b);
      expect(binaryCommandType(data)).toBeUndefined();
      expect(decodeCommand(data)).toStrictEqual(cmd);
    }
  });

  it("counts a binary entry's own bytes against the request limit, and JSON's base64 as 3/4", () => {
    const value = new Uint8Array(1_600_000);
    const data = encodeCommand({ type: "put", request: { key: b("big"), value } });
    expect(commandRequestBytes(data)).toBe(data.length);
    expect(data.length).toBeGreaterThan(1_600_000);
    expect(data.length).toBeLessThan(1_600_016);
    const json = legacyEncode({ type: "put", request: { key: b("big"), value } });
    expect(commandRequestBytes(json)).toBe(Math.ceil((json.length * 3) / 4));
  });

  it("is compact: a put of a 16-byte key and a 256-byte value takes 279 bytes, a leaseGrant 12", () => {
    const put = encodeCommand({
      type: "put",
      request: { key: new Uint8Array(16), value: new Uint8Array(256) },
    });
    expect(put.length).toBe(3 + 1 + 1 + 16 + 2 + 256);
    expect(encodeCommand({ type: "leaseGrant", id: leaseId(0n), ttlSeconds: 60 }).length).toBe(3 + 8 + 1);
  });
});

describe("command codec, version 1 still decodes", () => {
  it("the old encoder's JSON of every command decodes to the command, as its version-2 bytes do", () => {
    fc.assert(
      fc.property(commandArb, (cmd) => {
        const json = legacyEncode(cmd);
        expect(json[0]).toBe(0x7b);
        expect(decodeCommand(json)).toStrictEqual(cmd);
        expect(decodeCommand(json)).toStrictEqual(decodeCommand(encodeCommand(cmd)));
      }),
      { numRuns: RUNS },
    );
  });

  it("literal entries of an old log decode", () => {
    const entries: [string, Command][] = [
      [
        '{"v":1,"type":"put","request":{"key":"Zm9v","value":"YmFy","lease":"7587870012345678901","prevKv":true}}',
        {
          type: "put",
          request: { key: b("foo"), value: b("bar"), lease: leaseId(7587870012345678901n), prevKv: true },
        },
      ],
      [
        '{"v":1,"type":"txn","request":{"compare":[{"key":"YQ==","result":"equal","target":"create","createRevision":0}],"success":[{"type":"put","request":{"key":"YQ==","value":""}}],"failure":[{"type":"range","request":{"key":"YQ==","sortOrder":"ascend","sortTarget":"create","limit":1}}]},"session":{"clientId":"c1","seq":4},"auth":{"user":"root","revision":2}}',
        {
          type: "txn",
          request: {
            compare: [{ key: b("a"), result: "equal", target: "create", createRevision: revision(0) }],
            success: [{ type: "put", request: { key: b("a"), value: new Uint8Array(0) } }],
            failure: [
              {
                type: "range",
                request: { key: b("a"), sortOrder: "ascend", sortTarget: "create", limit: 1 },
              },
            ],
          },
          session: { clientId: "c1", seq: 4 },
          auth: { user: "root", revision: 2 },
        },
      ],
      [
        '{"v":1,"type":"leaseGrant","id":"0","ttlSeconds":60}',
        { type: "leaseGrant", id: leaseId(0n), ttlSeconds: 60 },
      ],
      [
        '{"v":1,"type":"leaseExpire","leases":[{"id":"5","grantIndex":9}]}',
        { type: "leaseExpire", leases: [{ id: leaseId(5n), grantIndex: 9 }] },
      ],
      [
        '{"v":1,"type":"leaseCheckpoint","checkpoints":[{"id":"5","remainingTtlSeconds":30,"grantIndex":9}]}',
        {
          type: "leaseCheckpoint",
          checkpoints: [{ id: leaseId(5n), remainingTtlSeconds: 30, grantIndex: 9 }],
        },
      ],
    ];
    for (const [text, cmd] of entries) expect(decodeCommand(b(text))).toStrictEqual(cmd);
    // Anything not starting with the version-2 byte is read as JSON, exactly as before.
    expect(decodeCommand(b(' {"v":1,"type":"compact","revision":3}'))).toEqual({
      type: "compact",
      revision: 3,
    });
    expect(refusedAt(b('{"v":2,"type":"put"}'))).toBe("$.v");
    expect(refusal(b("\x03garbage")).detail).toMatch(/not JSON/);
  });
});

describe("command codec, version 2: garbage", () => {
  const stateMachineTakes = (data: Uint8Array): void => {
    // Whatever decodes, applies without an assertion; what does not is a decodeError.
    const r = new StateMachine().apply(1, data);
    if (data.length > 0 && !tryDecodeCommand(data).ok) expect(r.result.kind).toBe("decodeError");
  };

  it("random bytes after the version byte decode or fail with CommandDecodeError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 10 }), (rest, tag) => {
        const data = Uint8Array.of(0x02, tag, ...rest);
        const cmd = decodesOrRefuses(data);
        if (cmd !== undefined) expect(encodeCommand(cmd)).toEqual(data);
        stateMachineTakes(data);
      }),
      { numRuns: 1000 },
    );
  });

  it("every strict prefix of an encoding fails as truncated, and a trailing byte is refused at $", () => {
    fc.assert(
      fc.property(commandArb, (cmd) => {
        const data = encodeCommand(cmd);
        for (let n = 1; n < data.length; n++) {
          const e = refusal(data.subarray(0, n));
          expect(e.detail).toMatch(/truncated/);
        }
        const longer = new Uint8Array(data.length + 1);
        longer.set(data);
        const e = refusal(longer);
        expect([e.path, e.detail]).toEqual(["$", "1 trailing bytes"]);
      }),
      { numRuns: 100 },
    );
  });

  it("bit flips and byte changes decode (to what re-encodes to them) or fail with CommandDecodeError", () => {
    fc.assert(
      fc.property(
        commandArb,
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.boolean(),
        (cmd, at, x, flip) => {
          const data = encodeCommand(cmd).slice();
          const i = 1 + (at % (data.length - 1));
          data[i] = flip ? data[i]! ^ (1 << (x % 8)) : x;
          const back = decodesOrRefuses(data);
          if (back !== undefined) expect(encodeCommand(back)).toEqual(data);
          stateMachineTakes(data);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("command codec, version 2: validation, with the field's path", () => {
  it("a txn nested deeper than COMMAND_TXN_DEPTH_MAX", () => {
    const ok = encodeCommand({ type: "txn", request: nestedTxn(COMMAND_TXN_DEPTH_MAX) });
    expect(ok[0]).toBe(0x02);
    expect(tryDecodeCommand(ok).ok).toBe(true);
    const deep = encodeCommand({ type: "txn", request: nestedTxn(COMMAND_TXN_DEPTH_MAX + 1) });
    const e = refusal(deep);
    expect(e.path).toBe(`$.request${".success[0].request".repeat(COMMAND_TXN_DEPTH_MAX)}`);
    expect(e.detail).toMatch(/nested deeper than 128/);
    // The JSON decoder refuses the same txn at the same path.
    expect(refusedAt(legacyEncode({ type: "txn", request: nestedTxn(COMMAND_TXN_DEPTH_MAX + 1) }))).toBe(
      e.path,
    );
    // And a hostile depth is refused without exhausting the stack.
    expect(refusedAt(Uint8Array.of(2, 3, 0, ...new Array<number[]>(5000).fill([2, 1, 3]).flat()))).toBe(
      e.path,
    );
  });

  it("too many checkpoints or expired leases in one command", () => {
    const item = { id: leaseId(1n), remainingTtlSeconds: 5, grantIndex: 1 };
    const cps = (n: number): Command => ({ type: "leaseCheckpoint", checkpoints: new Array(n).fill(item) });
    expect(tryDecodeCommand(encodeCommand(cps(MAX_CHECKPOINTS_PER_BATCH))).ok).toBe(true);
    const e = refusal(encodeCommand(cps(MAX_CHECKPOINTS_PER_BATCH + 1)));
    expect([e.path, e.detail]).toEqual(["$.checkpoints", "1001 items, at most 1000"]);
    const exp = (n: number): Command => ({
      type: "leaseExpire",
      leases: new Array(n).fill({ id: leaseId(1n), grantIndex: 1 }),
    });
    expect(tryDecodeCommand(encodeCommand(exp(MAX_LEASES_PER_REVOKE_BATCH))).ok).toBe(true);
    expect(refusedAt(encodeCommand(exp(MAX_LEASES_PER_REVOKE_BATCH + 1)))).toBe("$.leases");
    // A count larger than the bytes left is truncation, not an allocation.
    expect(refusal(Uint8Array.of(2, 8, 0, 0x90, 0x4e)).detail).toMatch(/truncated/);
  });

  it("lease ids out of the table's range; any int64 where a put or compare names a lease", () => {
    expect(refusedAt(encodeCommand({ type: "leaseGrant", id: leaseId(-1n), ttlSeconds: 5 }))).toBe("$.id");
    expect(refusedAt(encodeCommand({ type: "leaseRevoke", id: leaseId(INT64_MIN) }))).toBe("$.id");
    const cp = (id: bigint): Command => ({
      type: "leaseCheckpoint",
      checkpoints: [
        { id: leaseId(1n), remainingTtlSeconds: 1, grantIndex: 1 },
        { id: leaseId(id), remainingTtlSeconds: 1, grantIndex: 1 },
      ],
    });
    expect(refusedAt(encodeCommand(cp(-5n)))).toBe("$.checkpoints[1].id");
    expect(
      refusedAt(encodeCommand({ type: "leaseExpire", leases: [{ id: leaseId(-2n), grantIndex: 0 }] })),
    ).toBe("$.leases[0].id");
    expect(
      refusedAt(
        encodeCommand({ type: "put", request: { key: b("k"), value: b(""), lease: leaseId(INT64_MIN) } }),
      ),
    ).toBe("accepted");
    const cmp: Command = {
      type: "txn",
      request: { compare: [{ key: b("k"), result: "less", target: "lease", lease: leaseId(-1n) }] },
    };
    expect(decodeCommand(encodeCommand(cmp))).toStrictEqual(cmp);
  });

  it("numbers out of their ranges", () => {
    const cp: Command = {
      type: "leaseCheckpoint",
      checkpoints: [{ id: leaseId(1n), remainingTtlSeconds: MAX_LEASE_TTL_SECONDS + 1, grantIndex: 1 }],
    };
    expect(refusedAt(encodeCommand(cp))).toBe("$.checkpoints[0].remainingTtlSeconds");
    const s = (clientId: string, seq: number): Command => ({
      type: "compact",
      revision: revision(1),
      session: { clientId, seq },
    });
    expect(refusedAt(encodeCommand(s("c", 0)))).toBe("$.session.seq");
    expect(refusedAt(encodeCommand(s("", 1)))).toBe("$.session.clientId");
    expect(refusedAt(encodeCommand(s("x".repeat(129), 1)))).toBe("$.session.clientId");
    expect(refusedAt(encodeCommand(s("😀".repeat(64), 1)))).toBe("accepted"); // 128 UTF-16 units
    expect(refusedAt(encodeCommand(s("😀".repeat(65), 1)))).toBe("$.session.clientId");
    const a = (user: string, rev: number): Command => ({
      type: "compact",
      revision: revision(1),
      auth: { user, revision: rev },
    });
    expect(refusedAt(encodeCommand(a("", 1)))).toBe("$.auth.user");
    expect(refusedAt(encodeCommand(a("u", 0)))).toBe("$.auth.revision");
    // A varint above 2^53 - 1, one longer than 8 bytes, one not canonical.
    expect(refusedAt(Uint8Array.of(2, 4, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f))).toBe(
      "$.revision",
    );
    expect(refusedAt(Uint8Array.of(2, 4, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01))).toBe(
      "$.revision",
    );
    expect(refusal(Uint8Array.of(2, 4, 0, 0x85, 0x00)).detail).toMatch(/canonical/);
    const grant = encodeCommand({ type: "leaseGrant", id: leaseId(1n), ttlSeconds: Number.MIN_SAFE_INTEGER });
    expect(refusedAt(grant)).toBe("accepted");
    grant[grant.length - 1] = 0x7f; // zigzag magnitude past the safe integers
    expect(refusedAt(grant)).toBe("$.ttlSeconds");
  });

  it("unknown enums and command types", () => {
    expect(refusedAt(Uint8Array.of(2, 0, 0))).toBe("$.type");
    expect(refusedAt(Uint8Array.of(2, 9, 0))).toBe("$.type");
    expect(refusedAt(Uint8Array.of(2))).toBe("$.type");
    // txn: [2, 3, flags, txn flags = compare, 1 compare, compare byte, key "k", operand]
    const cmp = encodeCommand({
      type: "txn",
      request: { compare: [{ key: b("k"), result: "equal", target: "version", version: 1 }] },
    });
    expect([...cmp]).toEqual([2, 3, 0, 1, 1, 1, 1, 0x6b, 2]);
    const patched = (at: number, v: number): Uint8Array => {
      const d = cmp.slice();
      d[at] = v;
      return d;
    };
    expect(refusedAt(patched(5, 5))).toBe("$.request.compare[0].target");
    expect(refusedAt(patched(5, 7))).toBe("$.request.compare[0].target");
    expect(refusedAt(patched(5, (4 << 3) | 1))).toBe("$.request.compare[0].result");
    expect(refusedAt(patched(5, 0x80 | 1))).toBe("$.request.compare[0]");
    // op type and sort order in a nested txn's range.
    const ops = encodeCommand({
      type: "txn",
      request: {
        failure: [
          { type: "put", request: { key: b("p"), value: b("") } },
          {
            type: "txn",
            request: { success: [{ type: "range", request: { key: b("k"), sortOrder: "descend" } }] },
          },
        ],
      },
    });
    const at = ops.lastIndexOf(2); // the descend code, last byte
    expect(at).toBe(ops.length - 1);
    const d1 = ops.slice();
    d1[at] = 3;
    expect(refusedAt(d1)).toBe("$.request.failure[1].request.success[0].request.sortOrder");
    const d2 = ops.slice();
    d2[5] = 4; // failure[0]'s op type
    expect(refusedAt(d2)).toBe("$.request.failure[0].type");
  });

  it("flags: unknown bits, a code-3 optional boolean, a session or grantIndex where there is none", () => {
    const put = encodeCommand({ type: "put", request: { key: b("k"), value: b("v") } });
    expect([...put]).toEqual([2, 1, 0, 0, 1, 0x6b, 1, 0x76]);
    const p = (at: number, v: number): string => {
      const d = put.slice();
      d[at] = v;
      return refusedAt(d);
    };
    expect(p(3, 0b110)).toBe("$.request.prevKv");
    expect(p(3, 0b11000)).toBe("$.request.ignoreValue");
    expect(p(3, 0b1100000)).toBe("$.request.ignoreLease");
    expect(p(3, 0x80)).toBe("$.request");
    expect(p(2, 8)).toBe("$");
    expect(p(2, 4)).toBe("$.grantIndex");
    expect(refusedAt(Uint8Array.of(2, 8, 1, 0))).toBe("$.session");
    expect(refusedAt(Uint8Array.of(2, 7, 2, 0))).toBe("$.auth");
    expect(refusedAt(Uint8Array.of(2, 7, 0, 0))).toBe("accepted");
    // A session announced but missing is truncated at its first field.
    const e = refusal(Uint8Array.of(2, 4, 1, 5));
    expect([e.path, e.detail]).toEqual(["$.session.clientId", "truncated"]);
  });

  it("strings must be UTF-8", () => {
    // compact 5 with a session whose client id is the byte 0xff.
    expect(refusedAt(Uint8Array.of(2, 4, 1, 5, 1, 0xff, 1))).toBe("$.session.clientId");
    expect(refusedAt(Uint8Array.of(2, 4, 1, 5, 1, 0x63, 1))).toBe("accepted");
  });
});
