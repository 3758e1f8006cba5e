/**
 * Unit tests of the apply layer: every command kind, lease revocation and
 * expiry (the keys go in one revision, one delete event per key), leases
 * moving between keys, client sessions (retry, stale, expiry, eviction), and
 * malformed entry data.
 */

import { describe, expect, it } from "vitest";
import { memberId } from "../../src/raft/index.ts";
import type { ClientCommand, Command } from "../../src/state/command.ts";
import {
  CommandDecodeError,
  decodeCommand,
  encodeCommand,
  tryDecodeCommand,
} from "../../src/state/command.ts";
import type { ApplyResult, StateMachineOptions } from "../../src/state/machine.ts";
import { StateMachine } from "../../src/state/machine.ts";
import { encodeMemberContext } from "../../src/state/members.ts";
import { leaseId, NO_LEASE, revision } from "../../src/state/types.ts";

const text = new TextEncoder();
const b = (s: string): Uint8Array => text.encode(s);
const str = (u: Uint8Array): string => new TextDecoder().decode(u);

/** A machine and the next index to apply at. */
class Harness {
  readonly m: StateMachine;
  private next = 1;
  constructor(options: StateMachineOptions = {}) {
    this.m = new StateMachine(options);
  }
  run(cmd: Command): ApplyResult {
    return this.m.apply(this.next++, encodeCommand(cmd));
  }
  raw(data: Uint8Array): ApplyResult {
    return this.m.apply(this.next++, data);
  }
  keys(): string[] {
    const r = this.m.range({ key: b("\0"), rangeEnd: b("\0") });
    if (!r.ok) throw new Error(r.error);
    return r.kvs.map((kv) => str(kv.key));
  }
}

const put = (key: string, value: string, lease = NO_LEASE): ClientCommand => ({
  type: "put",
  request: { key: b(key), value: b(value), lease },
});
const grant = (id: bigint, ttlSeconds = 10): ClientCommand => ({
  type: "leaseGrant",
  id: leaseId(id),
  ttlSeconds,
});

describe("StateMachine: commands", () => {
  it("put, deleteRange, txn and compact answer etcd-shaped results with events", () => {
    const h = new Harness();
    const p = h.run(put("a", "1"));
    expect(p.result).toEqual({ kind: "put", header: { revision: 2 } });
    expect(p.events.map((e) => e.type)).toEqual(["put"]);
    const p2 = h.run({ type: "put", request: { key: b("a"), value: b("2"), prevKv: true } });
    expect(p2.result.kind === "put" && str(p2.result.prevKv!.value)).toBe("1");
    h.run(put("b", "1"));
    const t = h.run({
      type: "txn",
      request: {
        compare: [{ key: b("a"), result: "equal", target: "value", value: b("2") }],
        success: [
          { type: "put", request: { key: b("c"), value: b("x") } },
          { type: "range", request: { key: b("a"), rangeEnd: b("z") } },
        ],
      },
    });
    expect(t.result.kind).toBe("txn");
    if (t.result.kind !== "txn") return;
    expect(t.result.succeeded).toBe(true);
    expect(t.result.header.revision).toBe(5);
    const range = t.result.responses[1]!;
    expect(range.type === "range" && range.response.count).toBe(3);
    const d = h.run({ type: "deleteRange", request: { key: b("a"), rangeEnd: b("c"), prevKv: true } });
    expect(d.result).toMatchObject({ kind: "deleteRange", header: { revision: 6 }, deleted: 2 });
    expect(d.events.map((e) => `${e.type} ${str(e.kv.key)}`)).toEqual(["delete a", "delete b"]);
    expect(h.run({ type: "compact", revision: revision(4) }).result).toEqual({
      kind: "compact",
      header: { revision: 6 },
    });
    expect(h.m.compactedRevision()).toBe(4);
    expect(h.run({ type: "compact", revision: revision(3) }).result).toMatchObject({
      kind: "failed",
      error: "compacted",
    });
    expect(h.m.range({ key: b("a"), revision: revision(3) })).toMatchObject({
      ok: false,
      error: "compacted",
    });
    expect(h.m.appliedIndex()).toBe(7);
  });

  it("txn request errors are outcomes that change nothing", () => {
    const h = new Harness({ limits: { requestBytesMax: 1 << 20, txnOpsMax: 2, watchBatchRevisionsMax: 10 } });
    const ops = ["a", "b", "c"].map((k) => ({ type: "put" as const, request: { key: b(k), value: b("") } }));
    expect(h.run({ type: "txn", request: { success: ops } }).result).toMatchObject({ error: "tooManyOps" });
    const dup = [ops[0]!, ops[0]!];
    expect(h.run({ type: "txn", request: { success: dup } }).result).toMatchObject({ error: "duplicateKey" });
    expect(h.m.currentRevision()).toBe(1);
  });

  it("lease grant: chosen ids, duplicates and too large TTLs", () => {
    const h = new Harness();
    const g = h.run(grant(7n, 1));
    expect(g.result).toEqual({ kind: "leaseGrant", header: { revision: 1 }, id: 7n, ttlSeconds: 2 });
    expect(g.leaseGrants).toEqual([{ id: 7n, ttlSeconds: 2, remainingTtlSeconds: 2, grantIndex: 1 }]);
    expect(h.run(grant(7n)).result).toMatchObject({ kind: "failed", error: "leaseExists" });
    expect(h.run(grant(8n, 9_000_000_001)).result).toMatchObject({ kind: "failed", error: "ttlTooLarge" });
    const auto = h.run(grant(0n));
    expect(auto.result.kind === "leaseGrant" && auto.result.id > 0n).toBe(true);
    expect(h.m.leaseIds()).toHaveLength(2);
  });

  it("a put with an unknown lease fails and changes nothing", () => {
    const h = new Harness();
    const before = h.m.snapshot();
    const r = h.run(put("k", "v", leaseId(99n)));
    expect(r.result).toEqual({
      kind: "failed",
      header: { revision: 1 },
      command: "put",
      error: "leaseNotFound",
    });
    expect(r.events).toEqual([]);
    const after = StateMachine.restore(h.m.snapshot());
    expect(after.currentRevision()).toBe(1);
    expect(str(h.m.snapshot()).replace(/"appliedIndex":\d+/, "")).toBe(
      str(before).replace(/"appliedIndex":\d+/, ""),
    );
  });

  it("revoke deletes exactly the lease's keys in one revision, one delete event per key", () => {
    const h = new Harness();
    h.run(grant(1n));
    h.run(grant(2n));
    h.run(put("x", "1", leaseId(1n)));
    h.run(put("b", "1", leaseId(1n)));
    h.run(put("m", "1", leaseId(2n)));
    h.run(put("free", "1"));
    const r = h.run({ type: "leaseRevoke", id: leaseId(1n) });
    expect(r.result).toEqual({ kind: "leaseRevoke", header: { revision: 6 }, deleted: 2 });
    expect(r.events.map((e) => `${e.type} ${str(e.kv.key)} ${e.kv.modRevision}`)).toEqual([
      "delete b 6",
      "delete x 6",
    ]);
    expect(r.leaseRevokes).toEqual([1n]);
    expect(h.keys()).toEqual(["free", "m"]);
    expect(h.m.leaseIds()).toEqual([2n]);
    expect(h.run({ type: "leaseRevoke", id: leaseId(1n) }).result).toMatchObject({ error: "leaseNotFound" });
    // A lease without keys takes no revision.
    h.run(grant(3n));
    expect(h.run({ type: "leaseRevoke", id: leaseId(3n) }).result).toMatchObject({ header: { revision: 6 } });
  });

  it("re-putting a key moves it between leases; deleting it detaches it", () => {
    const h = new Harness();
    h.run(grant(1n));
    h.run(grant(2n));
    h.run(put("k", "1", leaseId(1n)));
    h.run(put("k", "2", leaseId(2n)));
    expect(h.m.leaseTimeToLive(leaseId(1n), { keys: true })!.keys).toEqual([]);
    expect(h.m.leaseTimeToLive(leaseId(2n), { keys: true })!.keys.map(str)).toEqual(["k"]);
    expect(h.run({ type: "leaseRevoke", id: leaseId(1n) }).result).toMatchObject({ deleted: 0 });
    expect(h.keys()).toEqual(["k"]);
    h.run({ type: "deleteRange", request: { key: b("k") } });
    expect(h.m.leaseTimeToLive(leaseId(2n), { keys: true })!.keys).toEqual([]);
    h.run(put("k", "3", leaseId(2n)));
    h.run(put("k", "4"));
    expect(h.run({ type: "leaseRevoke", id: leaseId(2n) }).result).toMatchObject({ deleted: 0 });
    expect(h.keys()).toEqual(["k"]);
  });

  it("leaseExpire revokes the batch's live incarnations in one revision", () => {
    const h = new Harness();
    h.run(grant(1n)); // index 1
    h.run(grant(2n)); // index 2
    h.run(grant(3n)); // index 3
    h.run(put("a", "", leaseId(1n)));
    h.run(put("c", "", leaseId(2n)));
    h.run(put("b", "", leaseId(2n)));
    h.run(put("d", "", leaseId(3n)));
    const r = h.run({
      type: "leaseExpire",
      leases: [
        { id: leaseId(2n), grantIndex: 2 },
        { id: leaseId(1n), grantIndex: 1 },
        { id: leaseId(3n), grantIndex: 99 }, // another incarnation: untouched
        { id: leaseId(4n), grantIndex: 4 }, // gone
      ],
    });
    expect(r.result).toEqual({ kind: "leaseExpire", header: { revision: 6 }, revoked: 2, deleted: 3 });
    expect(r.events.map((e) => `${e.type} ${str(e.kv.key)} ${e.kv.modRevision}`)).toEqual([
      "delete a 6",
      "delete b 6",
      "delete c 6",
    ]);
    expect(r.leaseRevokes).toEqual([2n, 1n]);
    expect(h.keys()).toEqual(["d"]);
    expect(h.m.leaseIds()).toEqual([3n]);
    // A leader's revoke of a stale incarnation finds nothing.
    expect(h.run({ type: "leaseRevoke", id: leaseId(3n), grantIndex: 1 }).result).toMatchObject({
      error: "leaseNotFound",
    });
  });

  it("checkpoints: applied, ignored for other incarnations, rejected above the TTL", () => {
    const h = new Harness();
    h.run(grant(1n, 60));
    const r = h.run({
      type: "leaseCheckpoint",
      checkpoints: [
        { id: leaseId(1n), remainingTtlSeconds: 30, grantIndex: 1 },
        { id: leaseId(1n), remainingTtlSeconds: 10, grantIndex: 7 },
        { id: leaseId(5n), remainingTtlSeconds: 10, grantIndex: 1 },
        { id: leaseId(1n), remainingTtlSeconds: 61, grantIndex: 1 },
      ],
    });
    expect(r.result).toMatchObject({ kind: "leaseCheckpoint", applied: 1, ignored: 2, rejected: 1 });
    expect(r.leaseCheckpoints).toHaveLength(3);
    expect(h.m.lease(leaseId(1n))!.remainingTtlSeconds).toBe(30);
  });

  it("empty data is a no-op; indexes must increase", () => {
    const h = new Harness();
    expect(h.raw(new Uint8Array(0)).result).toEqual({ kind: "noop", header: { revision: 1 } });
    expect(() => h.m.apply(1, new Uint8Array(0))).toThrow(/apply 1 after 1/);
  });
});

describe("StateMachine: malformed entries", () => {
  const garbage: [string, Uint8Array][] = [
    ["not UTF-8", Uint8Array.of(0xff, 0xfe, 0x00)],
    ["not JSON", b("{put")],
    ["not an object", b("[1,2]")],
    ["unknown version", b('{"v":2,"type":"put"}')],
    ["unknown type", b('{"v":1,"type":"explode"}')],
    ["unknown field", b('{"v":1,"type":"compact","revision":1,"extra":true}')],
    ["bad base64", b('{"v":1,"type":"put","request":{"key":"!!","value":""}}')],
    ["missing field", b('{"v":1,"type":"put","request":{"key":"YQ=="}}')],
    ["negative revision", b('{"v":1,"type":"compact","revision":-1}')],
    ["lease id too large", b('{"v":1,"type":"leaseGrant","id":"9223372036854775808","ttlSeconds":5}')],
    ["lease id not decimal", b('{"v":1,"type":"leaseGrant","id":"0x10","ttlSeconds":5}')],
    [
      "session on a leader command",
      b('{"v":1,"type":"leaseExpire","leases":[],"session":{"clientId":"c","seq":1}}'),
    ],
    ["seq 0", b('{"v":1,"type":"compact","revision":1,"session":{"clientId":"c","seq":0}}')],
    [
      "range revision negative in a txn",
      b(
        '{"v":1,"type":"txn","request":{"success":[{"type":"range","request":{"key":"YQ==","revision":-5}}]}}',
      ),
    ],
    ["fractional ttl", b('{"v":1,"type":"leaseGrant","id":"1","ttlSeconds":1.5}')],
  ];

  it.each(garbage)("%s: a decode error, state unchanged", (_name, data) => {
    const h = new Harness();
    h.run(grant(1n));
    h.run(put("k", "v", leaseId(1n)));
    const before = h.m.snapshot();
    const r = h.raw(data);
    expect(r.result.kind).toBe("decodeError");
    expect(r.events).toEqual([]);
    expect(h.m.appliedIndex()).toBe(3);
    const strip = (s: Uint8Array) => str(s).replace(/"appliedIndex":\d+/, "");
    expect(strip(h.m.snapshot())).toBe(strip(before));
    expect(tryDecodeCommand(data).ok).toBe(false);
    expect(() => decodeCommand(data)).toThrow(CommandDecodeError);
  });

  it("deeply nested txns are refused by the decoder", () => {
    let request: object = {};
    for (let i = 0; i < 200; i++) request = { success: [{ type: "txn", request }] };
    const r = tryDecodeCommand(b(JSON.stringify({ v: 1, type: "txn", request })));
    expect(r.ok === false && r.error.detail).toMatch(/nested deeper/);
  });
});

describe("StateMachine: sessions", () => {
  const s = (clientId: string, seq: number) => ({ clientId, seq });

  it("a retry answers the original result and applies once", () => {
    const h = new Harness();
    const first = h.run({ ...grant(0n), session: s("c1", 1) });
    const retry = h.run({ ...grant(0n), session: s("c1", 1) });
    expect(retry.replayed).toBe(true);
    expect(retry.result).toEqual(first.result);
    expect(retry.leaseGrants).toEqual([]);
    expect(h.m.leaseIds()).toHaveLength(1);
    const p = h.run({ ...put("k", "v"), session: s("c1", 2) });
    const again = h.run({ ...put("k", "v"), session: s("c1", 2) });
    expect(again.result).toEqual(p.result);
    expect(again.events).toEqual([]);
    expect(h.m.currentRevision()).toBe(2);
    // A failure is remembered too: the retry does not re-evaluate.
    const f = h.run({ ...put("j", "v", leaseId(5n)), session: s("c1", 3) });
    h.run(grant(5n));
    expect(h.run({ ...put("j", "v", leaseId(5n)), session: s("c1", 3) }).result).toEqual(f.result);
    expect(h.keys()).toEqual(["k"]);
  });

  it("a stale seq is refused; seqs may skip; clients are independent", () => {
    const h = new Harness();
    h.run({ ...put("a", "1"), session: s("c1", 1) });
    h.run({ ...put("a", "2"), session: s("c1", 5) });
    expect(h.run({ ...put("a", "3"), session: s("c1", 3) }).result).toEqual({
      kind: "sessionStale",
      header: { revision: 3 },
      lastSeq: 5,
    });
    expect(h.run({ ...put("a", "4"), session: s("c2", 1) }).result.kind).toBe("put");
    expect(h.m.currentRevision()).toBe(4);
  });

  it("sessions expire after idleEntriesMax entries; a later seq then answers sessionExpired", () => {
    const h = new Harness({ sessions: { idleEntriesMax: 3 } });
    h.run({ ...put("a", "1"), session: s("c1", 1) }); // index 1
    h.run(put("x", "")); // 2
    h.run(put("x", "")); // 3
    expect(h.run({ ...put("a", "1"), session: s("c1", 1) }).replayed).toBe(true); // 4: refreshes
    h.run(put("x", "")); // 5
    h.run(put("x", "")); // 6
    h.run(put("x", "")); // 7: 7 - 4 = 3, still alive
    expect(h.m.session("c1")?.lastSeq).toBe(1);
    h.run(put("x", "")); // 8: idle 4 > 3, expired
    expect(h.m.session("c1")).toBeUndefined();
    const r = h.run({ ...put("a", "2"), session: s("c1", 2) });
    expect(r.result).toMatchObject({ kind: "sessionExpired" });
    expect(h.m.range({ key: b("a") })).toMatchObject({ kvs: [{ version: 1 }] });
    // The documented hole: seq 1 after expiry opens a fresh session and applies again.
    expect(h.run({ ...put("a", "1"), session: s("c1", 1) }).replayed).toBe(false);
  });

  it("the table is bounded: the least recently used session is evicted first", () => {
    const h = new Harness({ sessions: { sessionsMax: 2 } });
    h.run({ ...put("a", "1"), session: s("c1", 1) });
    h.run({ ...put("a", "2"), session: s("c2", 1) });
    h.run({ ...put("a", "1"), session: s("c1", 1) }); // c1 is now the most recent
    h.run({ ...put("a", "3"), session: s("c3", 1) }); // evicts c2
    expect(h.m.sessionCount()).toBe(2);
    expect(h.m.session("c2")).toBeUndefined();
    expect(h.run({ ...put("a", "9"), session: s("c2", 2) }).result.kind).toBe("sessionExpired");
    expect(h.run({ ...put("a", "1"), session: s("c1", 1) }).replayed).toBe(true);
  });

  it("session answers survive snapshot and restore", () => {
    const h = new Harness();
    h.run(grant(1n));
    h.run({ ...put("k", "v", leaseId(1n)), session: s("c1", 1) });
    const t = h.run({
      type: "txn",
      request: { success: [{ type: "range", request: { key: b("k"), keysOnly: true } }] },
      session: s("c2", 1),
    });
    const restored = StateMachine.restore(h.m.snapshot());
    expect(restored.session("c2")!.result).toEqual(t.result);
    const retry = encodeCommand({ type: "txn", request: {}, session: s("c2", 1) });
    const r = restored.apply(4, retry);
    expect(r.replayed).toBe(true);
    expect(r.result).toEqual(t.result);
    expect(h.raw(retry)).toEqual(r);
    expect(str(restored.snapshot())).toBe(str(h.m.snapshot()));
  });
});

describe("StateMachine: snapshot formats", () => {
  /**
   * A format-1 (JSON) snapshot as the code before format 2 wrote it: leases 7 and 9 (9 checkpointed
   * to 1800 s), keys a and c on 9, b deleted, compacted at 4, a session.
   */
  const FORMAT_1 =
    '{"formatVersion":1,"appliedIndex":10,"mvcc":{"formatVersion":1,"revision":7,"compactedRevision":4,"base":[{"key":"YQ==","createRevision":2,"modRevision":2,"version":1,"value":"MQ==","lease":"7"},{"key":"Yg==","createRevision":3,"modRevision":3,"version":1,"value":"AP+A","lease":"0"}],"changes":[{"type":"put","kv":{"key":"YQ==","createRevision":2,"modRevision":4,"version":2,"value":"Mg==","lease":"9"}},{"type":"put","kv":{"key":"Yw==","createRevision":5,"modRevision":5,"version":1,"value":"Mw==","lease":"9"}},{"type":"delete","key":"Yg==","revision":6},{"type":"put","kv":{"key":"ZA==","createRevision":7,"modRevision":7,"version":1,"value":"","lease":"0"}}]},"leases":{"version":1,"leases":[{"id":"7","ttlSeconds":60,"remainingTtlSeconds":60,"grantIndex":1,"keys":[]},{"id":"9","ttlSeconds":3600,"remainingTtlSeconds":1800,"grantIndex":2,"keys":["YQ==","Yw=="]}]},"sessions":[{"clientId":"cli","lastSeq":1,"lastIndex":9,"result":{"kind":"put","header":{"revision":7}}}],"members":{"members":[],"removed":[]},"alarms":[],"auth":{"enabled":false,"revision":1,"users":[],"roles":[],"tokens":[]}}';

  it("a format-1 snapshot restores, and format 1 is written back byte for byte", () => {
    const m = StateMachine.restore(b(FORMAT_1));
    expect(m.appliedIndex()).toBe(10);
    expect(m.currentRevision()).toBe(7);
    expect(m.compactedRevision()).toBe(4);
    const all = m.range({ key: b("\0"), rangeEnd: b("\0") });
    expect(all.ok && all.kvs.map((kv) => [str(kv.key), str(kv.value), kv.lease])).toEqual([
      ["a", "2", 9n],
      ["c", "3", 9n],
      ["d", "", 0n],
    ]);
    expect(m.leaseTimeToLive(leaseId(9n), { keys: true })?.keys.map(str)).toEqual(["a", "c"]);
    expect(m.lease(leaseId(9n))?.remainingTtlSeconds).toBe(1800);
    expect(m.session("cli")?.lastSeq).toBe(1);
    expect(m.snapshot()[0]).toBe(2);
    expect(str(StateMachine.snapshotToJson(m.snapshot()))).toBe(FORMAT_1);
    expect(str(StateMachine.snapshotToJson(b(FORMAT_1)))).toBe(FORMAT_1);
  });

  it("format 2 and its format-1 form restore the same machine, which writes the same bytes", () => {
    const h = new Harness();
    h.run(grant(1n));
    h.run(grant(2n, 3600));
    h.run(put("x/1", "a", leaseId(1n)));
    h.run(put("x/2", "\u00ff", leaseId(1n)));
    h.run(put("x/1", "b", leaseId(2n)));
    h.run({ type: "deleteRange", request: { key: b("x/2") } });
    h.run({ ...put("y", "z"), session: { clientId: "c", seq: 1 } });
    h.run({ type: "compact", revision: revision(4) });
    h.run(put("y", "zz"));
    const data = h.m.snapshot();
    const json = StateMachine.snapshotToJson(data);
    expect(data.length).toBeLessThan(json.length);
    const fromBinary = StateMachine.restore(data);
    const fromJson = StateMachine.restore(json);
    expect(fromBinary.snapshot()).toEqual(data);
    expect(fromJson.snapshot()).toEqual(data);
    expect(fromJson.stateHash()).toBe(h.m.stateHash());
    expect(fromBinary.range({ key: b("x/1"), revision: revision(4) })).toEqual(
      h.m.range({ key: b("x/1"), revision: revision(4) }),
    );
    const founders = [
      {
        kind: "addVoter" as const,
        member: memberId(1),
        context: encodeMemberContext({ name: "m1", peerUrls: ["http://h:1"] }),
      },
    ];
    expect(StateMachine.restoreAsNewCluster(data, founders).snapshot()).toEqual(
      StateMachine.restoreAsNewCluster(json, founders).snapshot(),
    );
    // The lease table restored from format 2 holds the store's key strings (one per key) and works as before.
    expect(fromBinary.leaseTimeToLive(leaseId(2n), { keys: true })?.keys.map(str)).toEqual(["x/1"]);
    expect(
      fromBinary.apply(10, encodeCommand({ type: "leaseRevoke", id: leaseId(2n) })).result,
    ).toMatchObject({
      kind: "leaseRevoke",
      deleted: 1,
    });
  });
});
