/**
 * Counters in the state machine (src/state/counters.ts, machine.ts counterAdd /
 * counterCas): one entry per operation, int64 bounds that refuse and change
 * nothing, a stored value that is not a number refused rather than reset, the
 * key layout the etcd API sees, and retries that apply once.
 */

import { describe, expect, it } from "vitest";
import type { ClientSession, Command } from "../../src/state/command.ts";
import { decodeCommand, encodeCommand, tryDecodeCommand } from "../../src/state/command.ts";
import {
  COUNTER_MAX,
  COUNTER_MIN,
  counterKey,
  counterNameProblem,
  parseCounter,
} from "../../src/state/counters.ts";
import type { ApplyResult, CommandResult } from "../../src/state/machine.ts";
import { StateMachine } from "../../src/state/machine.ts";
import { leaseId } from "../../src/state/types.ts";

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (u: Uint8Array): string => new TextDecoder().decode(u);

class Harness {
  m = new StateMachine();
  private next = 1;
  run(cmd: Command): ApplyResult {
    return this.m.apply(this.next++, encodeCommand(cmd));
  }
  put(key: string, value: string, lease?: bigint): void {
    const r = this.run({
      type: "put",
      request: { key: b(key), value: b(value), ...(lease === undefined ? {} : { lease: leaseId(lease) }) },
    }).result;
    expect(r.kind).toBe("put");
  }
  stored(name: string): { value: string; lease: bigint; modRevision: number } | undefined {
    const r = this.m.range({ key: counterKey(name) });
    if (!r.ok) throw new Error(r.error);
    const kv = r.kvs[0];
    return kv === undefined
      ? undefined
      : { value: str(kv.value), lease: kv.lease, modRevision: kv.modRevision };
  }
}

const add = (counter: string, delta: bigint, session?: ClientSession): Command => ({
  type: "counterAdd",
  counter,
  delta,
  ...(session === undefined ? {} : { session }),
});
const cas = (counter: string, expected: bigint, value: bigint): Command => ({
  type: "counterCas",
  counter,
  expected,
  value,
});

function added(r: CommandResult): Extract<CommandResult, { kind: "counterAdd" }> {
  if (r.kind !== "counterAdd") throw new Error(`expected a counterAdd result, got ${r.kind}`);
  return r;
}
function casResult(r: CommandResult): Extract<CommandResult, { kind: "counterCas" }> {
  if (r.kind !== "counterCas") throw new Error(`expected a counterCas result, got ${r.kind}`);
  return r;
}

describe("counterAdd", () => {
  it("a counter never written reads 0; each Add is one revision writing the decimal text", () => {
    const h = new Harness();
    expect(h.m.counterValue("hits")).toEqual({ ok: true, value: 0n });
    const rev = h.m.currentRevision();
    const r1 = added(h.run(add("hits", 5n)).result);
    expect(r1).toMatchObject({ outcome: "added", value: 5n, header: { revision: rev + 1 } });
    const r2 = added(h.run(add("hits", -7n)).result);
    expect(r2).toMatchObject({ outcome: "added", value: -2n, header: { revision: rev + 2 } });
    expect(h.stored("hits")).toEqual({ value: "-2", lease: 0n, modRevision: rev + 2 });
    expect(h.m.counterValue("hits")).toEqual({ ok: true, value: -2n });
    // Add 0 writes too (one event per Add for watchers).
    expect(added(h.run(add("hits", 0n)).result).header.revision).toBe(rev + 3);
    // The key is exactly leasehold/counters/<name>: etcd's view.
    expect(str(counterKey("a/b"))).toBe("leasehold/counters/a/b");
  });

  it("refuses an Add that leaves int64 and changes nothing, at either end", () => {
    const h = new Harness();
    h.run(add("big", COUNTER_MAX));
    const rev = h.m.currentRevision();
    expect(added(h.run(add("big", 1n)).result)).toMatchObject({
      outcome: "overflow",
      value: COUNTER_MAX,
      header: { revision: rev },
    });
    expect(h.stored("big")?.value).toBe("9223372036854775807");
    h.run(add("small", COUNTER_MIN));
    expect(h.stored("small")?.value).toBe("-9223372036854775808");
    expect(added(h.run(add("small", -1n)).result).outcome).toBe("overflow");
    expect(added(h.run(add("small", COUNTER_MAX)).result).value).toBe(-1n);
    expect(h.m.currentRevision()).toBe(rev + 2);
  });

  it("a stored value that is not canonical decimal int64 is refused, never reset", () => {
    const h = new Harness();
    for (const text of ["abc", "", "007", "-0", "+5", " 5", "5 ", "1.5", "9223372036854775808", "٣"]) {
      h.put("leasehold/counters/x", text);
      const rev = h.m.currentRevision();
      const r = added(h.run(add("x", 1n)).result);
      expect(r).toMatchObject({ outcome: "notNumber", header: { revision: rev } });
      expect(str(r.stored!)).toBe(text);
      expect(casResult(h.run(cas("x", 0n, 1n)).result).outcome).toBe("notNumber");
      expect(h.m.counterValue("x").ok).toBe(false);
      expect(h.stored("x")?.value).toBe(text);
      expect(h.m.currentRevision()).toBe(rev);
    }
    // A number written through the etcd API is a counter again.
    h.put("leasehold/counters/x", "-12");
    expect(added(h.run(add("x", 2n)).result).value).toBe(-10n);
  });

  it("the stored bytes in a refusal are bounded", () => {
    const h = new Harness();
    h.put("leasehold/counters/long", "z".repeat(1000));
    expect(added(h.run(add("long", 1n)).result).stored).toHaveLength(64);
  });

  it("keeps a lease attached to the counter key through the etcd API", () => {
    const h = new Harness();
    h.run({ type: "leaseGrant", id: leaseId(9n), ttlSeconds: 30 });
    h.put("leasehold/counters/eph", "1", 9n);
    h.run(add("eph", 1n));
    expect(h.stored("eph")).toMatchObject({ value: "2", lease: 9n });
    h.run({ type: "leaseRevoke", id: leaseId(9n) });
    expect(h.stored("eph")).toBeUndefined();
    expect(h.m.counterValue("eph")).toEqual({ ok: true, value: 0n });
  });

  it("a retry with the same session applies once, also after a snapshot restore", () => {
    const h = new Harness();
    const s: ClientSession = { clientId: "c1", seq: 1 };
    expect(added(h.run(add("once", 10n, s)).result).value).toBe(10n);
    const retry = h.run(add("once", 10n, s));
    expect(retry.replayed).toBe(true);
    expect(added(retry.result).value).toBe(10n);
    expect(h.stored("once")?.value).toBe("10");
    h.m = StateMachine.restore(h.m.snapshot());
    const again = h.run(add("once", 10n, s));
    expect(again.replayed).toBe(true);
    expect(added(again.result).value).toBe(10n);
    expect(h.m.counterValue("once")).toEqual({ ok: true, value: 10n });
  });

  it("is refused while NOSPACE or CORRUPT is raised", () => {
    const h = new Harness();
    h.run({ type: "alarm", action: "activate", member: 1n, alarm: "nospace" });
    expect(h.run(add("q", 1n)).result).toMatchObject({ kind: "failed", error: "noSpace" });
    expect(h.run(cas("q", 0n, 1n)).result).toMatchObject({ kind: "failed", error: "noSpace" });
    h.run({ type: "alarm", action: "deactivate", member: 1n, alarm: "nospace" });
    h.run({ type: "alarm", action: "activate", member: 1n, alarm: "corrupt" });
    expect(h.run(add("q", 1n)).result).toMatchObject({ kind: "failed", error: "corrupt" });
    expect(h.stored("q")).toBeUndefined();
  });
});

describe("counterCas", () => {
  it("sets only when the counter is the expected value; an absent counter is 0", () => {
    const h = new Harness();
    const rev = h.m.currentRevision();
    expect(casResult(h.run(cas("c", 1n, 5n)).result)).toMatchObject({
      outcome: "notSet",
      value: 0n,
      header: { revision: rev },
    });
    expect(h.stored("c")).toBeUndefined();
    expect(casResult(h.run(cas("c", 0n, 5n)).result)).toMatchObject({
      outcome: "set",
      value: 5n,
      header: { revision: rev + 1 },
    });
    expect(casResult(h.run(cas("c", 0n, 9n)).result)).toMatchObject({ outcome: "notSet", value: 5n });
    expect(casResult(h.run(cas("c", 5n, COUNTER_MIN)).result)).toMatchObject({
      outcome: "set",
      value: COUNTER_MIN,
    });
    expect(h.stored("c")?.value).toBe("-9223372036854775808");
    expect(h.m.currentRevision()).toBe(rev + 2);
  });
});

describe("layout and codec", () => {
  it("parses canonical decimal int64 text only", () => {
    expect(parseCounter(b("0"))).toBe(0n);
    expect(parseCounter(b("-9223372036854775808"))).toBe(COUNTER_MIN);
    expect(parseCounter(b("9223372036854775807"))).toBe(COUNTER_MAX);
    for (const bad of ["", "-", "00", "-0", "01", "+1", "1e3", "0x10", "-9223372036854775809"])
      expect(parseCounter(b(bad))).toBeUndefined();
  });

  it("counter names: 1 to 512 UTF-8 bytes, no NUL", () => {
    expect(counterNameProblem("")).toBe("the counter name is empty");
    expect(counterNameProblem("a\u0000b")).toMatch(/NUL/);
    expect(counterNameProblem("x".repeat(512))).toBeUndefined();
    expect(counterNameProblem("x".repeat(513))).toMatch(/over 512/);
  });

  it("the commands round-trip through the codec; bad names and out-of-int64 numbers do not decode", () => {
    const cmds: Command[] = [
      add("n", COUNTER_MIN, { clientId: "c", seq: 3 }),
      add("é/1", COUNTER_MAX),
      cas("n", -1n, 0n),
    ];
    for (const cmd of cmds) expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
    const json = (o: object): Uint8Array => b(JSON.stringify({ v: 1, ...o }));
    for (const bad of [
      { type: "counterAdd", counter: "", delta: "1" },
      { type: "counterAdd", counter: "a\u0000", delta: "1" },
      { type: "counterAdd", counter: "a", delta: "9223372036854775808" },
      { type: "counterAdd", counter: "a", delta: 1 },
      { type: "counterCas", counter: "a", expected: "1" },
      { type: "counterCas", counter: "a", expected: "1", value: "2", extra: true },
    ]) {
      expect(tryDecodeCommand(json(bad)).ok).toBe(false);
    }
  });
});
