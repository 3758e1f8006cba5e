/**
 * Alarms in the state machine (src/state/alarm.ts, machine.ts): the table,
 * the "alarm" command's codec, the space quota's cost of a command (etcd's
 * quota.go), and what an active alarm refuses at apply on every replica
 * (etcd's applierV3Capped for NOSPACE, applierV3Corrupt for CORRUPT); and
 * alarms in snapshots (an old snapshot without them restores with none).
 */

import { describe, expect, it } from "vitest";
import { AlarmTable, QUOTA_KV_OVERHEAD_BYTES, quotaCostBytes } from "../../src/state/alarm.ts";
import type { Command } from "../../src/state/command.ts";
import { decodeCommand, encodeCommand, tryDecodeCommand } from "../../src/state/command.ts";
import type { ApplyResult } from "../../src/state/machine.ts";
import { StateMachine } from "../../src/state/machine.ts";
import { leaseId, NO_LEASE, revision } from "../../src/state/types.ts";

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

class Harness {
  m = new StateMachine();
  next = 1;
  run(cmd: Command): ApplyResult {
    return this.m.apply(this.next++, encodeCommand(cmd));
  }
  noop(): void {
    this.m.apply(this.next++, new Uint8Array(0));
  }
}

const put = (key: string, value = "v", lease = NO_LEASE): Command => ({
  type: "put",
  request: { key: b(key), value: b(value), lease },
});
const alarm = (action: "activate" | "deactivate", member: bigint, type: "nospace" | "corrupt"): Command => ({
  type: "alarm",
  action,
  member,
  alarm: type,
});
const failedWith = (r: ApplyResult): string | undefined =>
  r.result.kind === "failed" ? r.result.error : undefined;

describe("AlarmTable", () => {
  it("holds one alarm per member and type, lists them sorted, and clears them", () => {
    const t = new AlarmTable();
    expect(t.activate(7n, "corrupt")).toEqual({ alarm: { member: 7n, alarm: "corrupt" }, raised: true });
    t.activate(2n ** 64n - 1n, "nospace");
    t.activate(7n, "nospace");
    expect(t.activate(7n, "nospace").raised).toBe(false);
    expect(t.list()).toEqual([
      { member: 7n, alarm: "nospace" },
      { member: 7n, alarm: "corrupt" },
      { member: 2n ** 64n - 1n, alarm: "nospace" },
    ]);
    expect(t.list("corrupt")).toEqual([{ member: 7n, alarm: "corrupt" }]);
    expect(t.deactivate(7n, "corrupt")).toEqual({ member: 7n, alarm: "corrupt" });
    expect(t.deactivate(7n, "corrupt")).toBeUndefined();
    expect(t.has("corrupt")).toBe(false);
    expect(AlarmTable.restore(t.snapshot()).list()).toEqual(t.list());
    expect(AlarmTable.restore(undefined).size).toBe(0);
  });
});

describe("the alarm command", () => {
  it("round-trips through the codec with a uint64 member id as a decimal string", () => {
    const cmd = alarm("deactivate", 18446744073709551615n, "nospace");
    const text = new TextDecoder().decode(encodeCommand(cmd));
    expect(JSON.parse(text)).toEqual({
      v: 1,
      type: "alarm",
      action: "deactivate",
      member: "18446744073709551615",
      alarm: "nospace",
    });
    expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
  });

  it("refuses malformed fields", () => {
    const bad = (fields: Record<string, unknown>): string => {
      const o = { v: 1, type: "alarm", action: "activate", member: "1", alarm: "nospace", ...fields };
      const r = tryDecodeCommand(b(JSON.stringify(o)));
      return r.ok ? "accepted" : r.error.path;
    };
    expect(bad({})).toBe("accepted");
    expect(bad({ member: "18446744073709551616" })).toBe("$.member");
    expect(bad({ member: "-1" })).toBe("$.member");
    expect(bad({ member: 1 })).toBe("$.member");
    expect(bad({ member: "01" })).toBe("$.member");
    expect(bad({ alarm: "none" })).toBe("$.alarm");
    expect(bad({ action: "get" })).toBe("$.action");
    expect(bad({ extra: true })).toBe("$.extra");
  });
});

describe("quotaCostBytes (etcd quota.go)", () => {
  it("charges puts, txns with puts (the larger branch, nested puts too) and lease grants", () => {
    expect(quotaCostBytes(put("key", "value"))).toBe(QUOTA_KV_OVERHEAD_BYTES + 3 + 5);
    expect(quotaCostBytes({ type: "leaseGrant", id: leaseId(0n), ttlSeconds: 5 })).toBe(64);
    expect(quotaCostBytes({ type: "deleteRange", request: { key: b("k") } })).toBe(0);
    expect(quotaCostBytes({ type: "compact", revision: revision(1) })).toBe(0);
    expect(quotaCostBytes({ type: "leaseRevoke", id: leaseId(1n) })).toBe(0);
    const p = (k: string) => ({ type: "put" as const, request: { key: b(k), value: b("") } });
    const readOnly: Command = {
      type: "txn",
      request: { success: [{ type: "range", request: { key: b("k") } }] },
    };
    expect(quotaCostBytes(readOnly)).toBe(0);
    const txn: Command = {
      type: "txn",
      request: {
        success: [p("a")],
        failure: [p("b"), { type: "txn", request: { failure: [p("c")] } }],
      },
    };
    expect(quotaCostBytes(txn)).toBe(2 * (QUOTA_KV_OVERHEAD_BYTES + 1));
  });
});

describe("an active NOSPACE alarm (etcd applierV3Capped)", () => {
  it("refuses puts, txns that put and lease grants on every replica; reads, deletes, compaction and revokes run", () => {
    const h = new Harness();
    h.run(put("a"));
    h.run({ type: "leaseGrant", id: leaseId(5n), ttlSeconds: 10 });
    const raised = h.run(alarm("activate", 9n, "nospace"));
    expect(raised.result).toMatchObject({ kind: "alarm", alarms: [{ member: 9n, alarm: "nospace" }] });
    expect(h.m.alarmList()).toEqual([{ member: 9n, alarm: "nospace" }]);
    const rev = h.m.currentRevision();

    expect(failedWith(h.run(put("b")))).toBe("noSpace");
    expect(failedWith(h.run({ type: "leaseGrant", id: leaseId(0n), ttlSeconds: 10 }))).toBe("noSpace");
    const nestedPut: Command = {
      type: "txn",
      request: {
        success: [
          { type: "txn", request: { success: [{ type: "put", request: { key: b("c"), value: b("") } }] } },
        ],
      },
    };
    expect(failedWith(h.run(nestedPut))).toBe("noSpace");
    expect(h.m.currentRevision()).toBe(rev);

    const readTxn = h.run({
      type: "txn",
      request: { success: [{ type: "range", request: { key: b("a") } }] },
    });
    expect(readTxn.result.kind).toBe("txn");
    expect(h.run({ type: "deleteRange", request: { key: b("a") } }).result.kind).toBe("deleteRange");
    expect(h.run({ type: "compact", revision: revision(2) }).result.kind).toBe("compact");
    expect(h.run({ type: "leaseRevoke", id: leaseId(5n) }).result.kind).toBe("leaseRevoke");

    // Another member's NOSPACE keeps the store capped until every one is cleared.
    h.run(alarm("activate", 3n, "nospace"));
    expect(h.run(alarm("deactivate", 9n, "nospace")).result).toMatchObject({
      alarms: [{ member: 9n, alarm: "nospace" }],
    });
    expect(failedWith(h.run(put("b")))).toBe("noSpace");
    expect(h.run(alarm("deactivate", 9n, "nospace")).result).toMatchObject({ kind: "alarm", alarms: [] });
    h.run(alarm("deactivate", 3n, "nospace"));
    expect(h.run(put("b")).result.kind).toBe("put");
  });
});

describe("an active CORRUPT alarm (etcd applierV3Corrupt)", () => {
  it("refuses client writes, compaction, grants and revokes; the leader's expiry still runs", () => {
    const h = new Harness();
    h.run({ type: "leaseGrant", id: leaseId(5n), ttlSeconds: 10 });
    h.run(put("a", "v", leaseId(5n)));
    h.run(alarm("activate", 1n, "corrupt"));
    h.run(alarm("activate", 1n, "nospace"));
    for (const cmd of [
      put("b"),
      { type: "deleteRange", request: { key: b("a") } },
      { type: "txn", request: {} },
      { type: "compact", revision: revision(2) },
      { type: "leaseGrant", id: leaseId(6n), ttlSeconds: 10 },
      { type: "leaseRevoke", id: leaseId(5n) },
    ] as Command[])
      expect(failedWith(h.run(cmd))).toBe("corrupt");
    const grantIndex = h.m.lease(leaseId(5n))!.grantIndex;
    const expired = h.run({ type: "leaseExpire", leases: [{ id: leaseId(5n), grantIndex }] });
    expect(expired.result).toMatchObject({ kind: "leaseExpire", revoked: 1, deleted: 1 });
  });
});

describe("alarms in snapshots", () => {
  it("are restored with the state; a snapshot without them restores with none", () => {
    const h = new Harness();
    h.run(put("a"));
    h.run(alarm("activate", 4n, "nospace"));
    const restored = StateMachine.restore(h.m.snapshot());
    expect(restored.alarmList()).toEqual([{ member: 4n, alarm: "nospace" }]);
    expect(failedWith(restored.apply(h.next, encodeCommand(put("b"))))).toBe("noSpace");

    // A format-1 (JSON) snapshot from before alarms existed.
    const old = JSON.parse(new TextDecoder().decode(StateMachine.snapshotToJson(h.m.snapshot()))) as Record<
      string,
      unknown
    >;
    delete old.alarms;
    const fromOld = StateMachine.restore(new TextEncoder().encode(JSON.stringify(old)));
    expect(fromOld.alarmList()).toEqual([]);
    expect(fromOld.apply(h.next, encodeCommand(put("b"))).result.kind).toBe("put");
  });
});
