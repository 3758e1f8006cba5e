/**
 * leasehold.v1 Counters (src/api/counters.ts) against a real in-process member
 * and ApiServer over loopback, with proto-loader clients: Add / Get /
 * CompareAndSet, concurrent Adds that lose no update, int64 overflow and a
 * value that is not a number refused without a change, the etcd API's view of
 * the same key, and a retried Add with the same session applied once.
 */

import { Metadata, status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { WireMessage } from "../../src/api/index.ts";
import { B, DEADLINE_MS, failure, RecipeNode, S } from "./recipe-node.ts";

type W = WireMessage;

const serverLog: string[] = [];
let node: RecipeNode;

beforeAll(async () => {
  node = await new RecipeNode(serverLog).start();
});
afterAll(async () => {
  await node.stop();
});
afterEach(() => {
  expect(serverLog.splice(0)).toEqual([]);
});

const INT64_MAX = "9223372036854775807";

/** A Counters call, with `md` as its metadata. */
function counters(method: string, req: W, md = new Metadata()): Promise<W> {
  const c = node.client("leasehold.v1.Counters");
  return new Promise((resolve, reject) => {
    c[method]!.call(c, req, md, { deadline: Date.now() + DEADLINE_MS }, (e, r) =>
      e ? reject(e) : resolve(r!),
    );
  });
}

const revisionOf = (r: W): number => Number((r.header as W).revision);

async function currentRevision(): Promise<number> {
  return revisionOf(await node.unary("etcdserverpb.KV", "Range", { key: B("-") }));
}

describe("Add and Get", () => {
  it("a counter never written is 0; Add answers the new value at its write's revision; etcd sees the text", async () => {
    expect((await counters("Get", { name: "c-a" })).value).toBe("0");
    const before = await currentRevision();
    const r = await counters("Add", { name: "c-a", delta: 5 });
    expect(r.value).toBe("5");
    expect(revisionOf(r)).toBe(before + 1);
    const r2 = await counters("Add", { name: "c-a", delta: "-12" });
    expect(r2.value).toBe("-7");
    const kv = await node.get("leasehold/counters/c-a");
    expect(S(kv?.value)).toBe("-7");
    expect(String(kv?.mod_revision)).toBe(String(revisionOf(r2)));
    expect((await counters("Get", { name: "c-a" })).value).toBe("-7");
  });

  it("concurrent Adds lose no update: each is one write, the answers are 1..N", async () => {
    const n = 40;
    const answers = await Promise.all(
      Array.from({ length: n }, () => counters("Add", { name: "c-race", delta: 1 })),
    );
    expect(answers.map((a) => Number(a.value)).sort((x, y) => x - y)).toEqual(
      Array.from({ length: n }, (_, i) => i + 1),
    );
    expect(new Set(answers.map(revisionOf)).size).toBe(n);
    expect((await counters("Get", { name: "c-race" })).value).toBe(String(n));
  });

  it("refuses an Add past int64 with FAILED_PRECONDITION counterOverflow and changes nothing", async () => {
    await counters("Add", { name: "c-big", delta: INT64_MAX });
    const before = await currentRevision();
    const f = await failure(counters("Add", { name: "c-big", delta: 1 }));
    expect(f.code).toBe(status.FAILED_PRECONDITION);
    expect(f.message).toBe(
      `leasehold: adding 1 to counter "c-big" (now ${INT64_MAX}) would leave int64; nothing was changed`,
    );
    expect(f.md).toMatchObject({ "leasehold-error": "counterOverflow", value: INT64_MAX });
    expect(await currentRevision()).toBe(before);
    expect((await counters("Get", { name: "c-big" })).value).toBe(INT64_MAX);
  });

  it("a value that is not a number (put through the etcd API) is refused by Add, CAS and Get, never reset", async () => {
    await node.unary("etcdserverpb.KV", "Put", { key: B("leasehold/counters/c-text"), value: B("ten") });
    const before = await currentRevision();
    for (const call of [
      () => counters("Add", { name: "c-text", delta: 1 }),
      () => counters("CompareAndSet", { name: "c-text", expected: 0, value: 1 }),
      () => counters("Get", { name: "c-text" }),
    ]) {
      const f = await failure(call());
      expect(f.code).toBe(status.FAILED_PRECONDITION);
      expect(f.md["leasehold-error"]).toBe("notCounter");
      expect(f.message).toMatch(/^leasehold: counter "c-text" holds "ten", not a decimal int64/);
    }
    expect(await currentRevision()).toBe(before);
    expect(S((await node.get("leasehold/counters/c-text"))?.value)).toBe("ten");
    // A number put there makes it a counter again.
    await node.unary("etcdserverpb.KV", "Put", { key: B("leasehold/counters/c-text"), value: B("10") });
    expect((await counters("Add", { name: "c-text", delta: 1 })).value).toBe("11");
  });

  it("rejects a bad name with INVALID_ARGUMENT", async () => {
    for (const name of ["", "a\u0000b", "x".repeat(513)]) {
      const f = await failure(counters("Add", { name, delta: 1 }));
      expect(f.code).toBe(status.INVALID_ARGUMENT);
      expect(f.message).toMatch(/^leasehold: name: the counter name /);
    }
  });
});

describe("CompareAndSet", () => {
  it("sets only from the expected value; a miss answers the current value and writes nothing", async () => {
    const set = await counters("CompareAndSet", { name: "c-cas", expected: 0, value: 7 });
    expect(set).toMatchObject({ succeeded: true, value: "7" });
    const before = await currentRevision();
    const miss = await counters("CompareAndSet", { name: "c-cas", expected: 0, value: 9 });
    expect(miss).toMatchObject({ succeeded: false, value: "7" });
    expect(revisionOf(miss)).toBe(before);
    expect(await currentRevision()).toBe(before);
    const again = await counters("CompareAndSet", { name: "c-cas", expected: 7, value: "-1" });
    expect(again).toMatchObject({ succeeded: true, value: "-1" });
    expect(S((await node.get("leasehold/counters/c-cas"))?.value)).toBe("-1");
  });
});

describe("sessions", () => {
  it("a retried Add with the same client id and seq is applied once and answered alike", async () => {
    const md = (): Metadata => {
      const m = new Metadata();
      m.set("leasehold-client-id", "counter-test-client");
      m.set("leasehold-seq", "1");
      return m;
    };
    const first = await counters("Add", { name: "c-once", delta: 3 }, md());
    const retry = await counters("Add", { name: "c-once", delta: 3 }, md());
    expect(retry.value).toBe(first.value);
    expect(revisionOf(retry)).toBe(revisionOf(first));
    expect((await counters("Get", { name: "c-once" })).value).toBe("3");
  });
});
