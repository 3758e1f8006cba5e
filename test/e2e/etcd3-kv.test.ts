/**
 * The etcd3 npm client against leasehold and against a real etcd 3.4, side by
 * side (issue 5 §2): KV reads and writes with every value type, ranges with
 * prefix, sort, limit, count and keys-only, deletes with previous values,
 * transactions built with `client.if(...).then(...).else(...)`, the errors
 * etcd3 maps from etcd's messages, and compaction (last: it removes history).
 * Each scenario asserts the same expectations on both servers, and the two
 * normalized transcripts must be equal (see differential.ts).
 */

import {
  EtcdLeaseInvalidError,
  GRPCInvalidArgumentError,
  GRPCOutOfRangeError,
  type IRangeResponse,
  type IWatchResponse,
} from "etcd3";
import { expect } from "vitest";
import { differentialSuite, EventQueue, rejection } from "./differential.ts";

const text = (b: Buffer | undefined) => b?.toString() ?? null;

differentialSuite({}, (scenario) => {
  scenario("kv: put and get string, number, buffer, json and empty values", async ({ client }, log) => {
    await log.baseFrom(client);
    const p = "kv1/";
    const bytes = Buffer.from([0, 1, 0xfe, 0xff]);
    log.add("put string", await client.put(`${p}s`).value("hello"));
    log.add("put number", await client.put(`${p}n`).value(42));
    log.add("put buffer", await client.put(`${p}b`).value(bytes));
    await client.put(`${p}j`).value(JSON.stringify({ a: [1, "two"] }));
    await client.put(`${p}empty`).value("");
    expect(await client.get(`${p}s`).string()).toBe("hello");
    expect(await client.get(`${p}n`).number()).toBe(42);
    expect(await client.get(`${p}b`).buffer()).toEqual(bytes);
    expect(await client.get(`${p}j`).json()).toEqual({ a: [1, "two"] });
    expect(await client.get(`${p}empty`).string()).toBe("");
    expect(await client.get(`${p}missing`).string()).toBeNull();
    expect(await client.get(`${p}s`).exists()).toBe(true);
    expect(await client.get(`${p}missing`).exists()).toBe(false);

    const prev = await client.put(`${p}s`).value("world").getPrevious();
    expect(text(prev.value)).toBe("hello");
    log.add("put with previous", prev);
    const got = await client.get(`${p}s`).exec();
    expect(got.kvs).toHaveLength(1);
    expect(got.kvs[0]!.version).toBe("2");
    expect(got.count).toBe("1");
    log.add("get", got);
    log.add("get empty value", await client.get(`${p}empty`).exec());
    log.add("get missing", await client.get(`${p}missing`).exec());
    // A read at an older revision sees the older value.
    const old = await client.get(`${p}s`).revision(got.kvs[0]!.create_revision).string();
    expect(old).toBe("hello");
  });

  scenario(
    "kv: getAll with prefix, range, sort, limit, count, keys-only, revision",
    async ({ client }, log) => {
      await log.baseFrom(client);
      const p = "kv2/";
      const order = [
        ["c", "3"],
        ["a", "5"],
        ["e", "1"],
        ["b", "4"],
        ["d", "2"],
      ] as const;
      let third = "";
      for (const [k, v] of order) {
        const res = await client.put(`${p}${k}`).value(v);
        if (k === "e") third = res.header.revision;
      }
      await client.put("kv2").value("not in the prefix");
      await client.put("kv3/a").value("not in the prefix");
      const keys = (s: string) => s.split("").map((k) => `${p}${k}`);

      expect(await client.getAll().prefix(p).strings()).toEqual({
        "kv2/a": "5",
        "kv2/b": "4",
        "kv2/c": "3",
        "kv2/d": "2",
        "kv2/e": "1",
      });
      expect(await client.getAll().prefix(p).numbers()).toEqual({
        "kv2/a": 5,
        "kv2/b": 4,
        "kv2/c": 3,
        "kv2/d": 2,
        "kv2/e": 1,
      });
      expect(await client.getAll().prefix(p).keys()).toEqual(keys("abcde"));
      expect(await client.getAll().prefix(p).sort("Key", "Descend").keys()).toEqual(keys("edcba"));
      expect(await client.getAll().prefix(p).sort("Value", "Ascend").keys()).toEqual(keys("edcba"));
      expect(await client.getAll().prefix(p).sort("Create", "Descend").keys()).toEqual(keys("dbeac"));
      expect(await client.getAll().prefix(p).sort("Mod", "Ascend").keys()).toEqual(keys("caebd"));
      expect(
        await client
          .getAll()
          .inRange({ start: `${p}b`, end: `${p}d` })
          .keys(),
      ).toEqual(keys("bc"));
      expect(await client.getAll().prefix(p).revision(third).keys()).toEqual(keys("ace"));
      expect(await client.getAll().prefix(p).count()).toBe(5);

      const limited = await client.getAll().prefix(p).sort("Value", "Descend").limit(2).exec();
      expect(limited.kvs.map((kv) => text(kv.key))).toEqual(keys("ab"));
      expect(limited.more).toBe(true);
      expect(limited.count).toBe("5");
      log.add("limit 2, sorted by value", limited);

      const all = await client.getAll().prefix(p).limit(5).exec();
      expect(all.more).toBe(false);
      log.add("limit 5", all);

      const keysOnly = await client.kv.range({
        key: Buffer.from(p),
        range_end: Buffer.from("kv20"),
        keys_only: true,
      });
      expect(keysOnly.kvs.map((kv) => text(kv.value))).toEqual(["", "", "", "", ""]);
      log.add("keys only", keysOnly);
      const countOnly = await client.kv.range({
        key: Buffer.from(p),
        range_end: Buffer.from("kv20"),
        count_only: true,
      });
      expect(countOnly.kvs).toEqual([]);
      expect(countOnly.count).toBe("5");
      log.add("count only", countOnly);

      const modFiltered = await client.getAll().prefix(p).minCreateRevision(third).keys();
      expect(modFiltered).toEqual(keys("bde"));
    },
  );

  scenario("kv: delete a key, a prefix and a range, with previous key-values", async ({ client }, log) => {
    await log.baseFrom(client);
    const p = "kv3/";
    for (const k of ["a", "b", "c", "d", "x"]) await client.put(`${p}${k}`).value(`v${k}`);
    const prev = await client.delete().key(`${p}a`).getPrevious();
    expect(prev.map((kv) => text(kv.key))).toEqual([`${p}a`]);
    log.add("delete key, previous", prev);

    const range = await client
      .delete()
      .range(client.range({ start: `${p}b`, end: `${p}d` }))
      .exec();
    expect(range.deleted).toBe("2");
    log.add("delete range", range);

    const raw = await client.kv.deleteRange({
      key: Buffer.from(p),
      range_end: Buffer.from("kv30"),
      prev_kv: true,
    });
    expect(raw.deleted).toBe("2");
    expect(raw.prev_kvs.map((kv) => text(kv.value))).toEqual(["vd", "vx"]);
    log.add("delete prefix with prev_kv", raw);

    const none = await client.delete().key(`${p}a`).exec();
    expect(none.deleted).toBe("0");
    log.add("delete missing", none);
    expect(await client.getAll().prefix(p).count()).toBe(0);
  });

  scenario("txn: if/then/else on value, version, create and mod revisions", async ({ client }, log) => {
    await log.baseFrom(client);
    const p = "kv4/";
    await client.put(`${p}k`).value("v1");

    const ok = await client
      .if(`${p}k`, "Value", "==", "v1")
      .then(client.put(`${p}k`).value("v2"), client.get(`${p}other`))
      .else(client.get(`${p}k`))
      .commit();
    expect(ok.succeeded).toBe(true);
    expect(ok.responses.map((r) => (r as { response?: string }).response)).toEqual([
      "response_put",
      "response_range",
    ]);
    log.add("then branch", ok);

    const failed = await client
      .if(`${p}k`, "Value", "==", "v1")
      .then(client.put(`${p}k`).value("v3"))
      .else(client.get(`${p}k`))
      .commit();
    expect(failed.succeeded).toBe(false);
    expect(text(failed.responses[0]!.response_range!.kvs[0]!.value)).toBe("v2");
    log.add("else branch", failed);

    const many = await client
      .if(`${p}k`, "Version", ">", 1)
      .and(`${p}missing`, "Create", "==", 0)
      .and(`${p}k`, "Mod", "<", Number(failed.header.revision) + 1)
      .and(`${p}k`, "Value", "!=", "nope")
      .then(client.delete().key(`${p}k`), client.put(`${p}new`).value("n"))
      .commit();
    expect(many.succeeded).toBe(true);
    expect(many.responses[0]!.response_delete_range!.deleted).toBe("1");
    log.add("four compares, delete and put", many);
    expect(await client.get(`${p}k`).exists()).toBe(false);

    // A failed compare with no else branch changes nothing and keeps the revision.
    const noop = await client
      .if(`${p}new`, "Value", "==", "x")
      .then(client.put(`${p}new`).value("y"))
      .commit();
    expect(noop.succeeded).toBe(false);
    expect(noop.header.revision).toBe(many.header.revision);
    log.add("failed compare, no else", noop);

    // Nested transaction (etcd >= 3.3), through the raw KV client.
    const nested = await client.kv.txn({
      compare: [],
      success: [
        {
          request_txn: {
            compare: [
              { key: Buffer.from(`${p}new`), target: "Value", result: "Equal", value: Buffer.from("n") },
            ],
            success: [{ request_put: { key: Buffer.from(`${p}nested`), value: Buffer.from("yes") } }],
            failure: [],
          },
        },
      ],
      failure: [],
    });
    expect(nested.succeeded).toBe(true);
    expect(nested.responses[0]!.response_txn!.succeeded).toBe(true);
    log.add("nested txn", nested);
    expect(await client.get(`${p}nested`).string()).toBe("yes");
  });

  scenario("errors: etcd3's typed errors from etcd's messages and codes", async ({ client }, log) => {
    await log.baseFrom(client);
    const p = "kv5/";
    const record = (label: string, e: Error) => log.add(label, e);

    const emptyKey = await rejection(client.put("").value("x").exec());
    expect(emptyKey).toBeInstanceOf(GRPCInvalidArgumentError);
    expect(emptyKey.message).toContain("etcdserver: key is not provided");
    record("empty key", emptyKey);

    const noLease = await rejection(client.put(`${p}k`).value("x").lease("123456789").exec());
    expect(noLease).toBeInstanceOf(EtcdLeaseInvalidError);
    expect(noLease.message).toContain("etcdserver: requested lease not found");
    record("put with an unknown lease", noLease);

    const revokeUnknown = await rejection(client.leaseClient.leaseRevoke({ ID: "123456789" }));
    expect(revokeUnknown).toBeInstanceOf(EtcdLeaseInvalidError);
    record("revoke an unknown lease", revokeUnknown);

    const duplicate = await rejection(
      client
        .if(`${p}k`, "Create", "==", 0)
        .then(client.put(`${p}k`).value("1"), client.put(`${p}k`).value("2"))
        .commit(),
    );
    expect(duplicate).toBeInstanceOf(GRPCInvalidArgumentError);
    expect(duplicate.message).toContain("etcdserver: duplicate key given in txn request");
    record("duplicate key in txn", duplicate);

    const ops = Array.from({ length: 129 }, (_, i) => client.put(`${p}op${i}`).value("x"));
    const tooMany = await rejection(
      client
        .if(`${p}k`, "Create", "==", 0)
        .then(...ops)
        .commit(),
    );
    expect(tooMany).toBeInstanceOf(GRPCInvalidArgumentError);
    expect(tooMany.message).toContain("etcdserver: too many operations in txn request");
    record("129 ops in txn", tooMany);

    const head = await client.get(`${p}k`).exec();
    const future = await rejection(
      client
        .get(`${p}k`)
        .revision(Number(head.header.revision) + 1000)
        .exec(),
    );
    expect(future).toBeInstanceOf(GRPCOutOfRangeError);
    expect(future.message).toContain("etcdserver: mvcc: required revision is a future revision");
    record("read at a future revision", future);

    const ttl = await client.leaseClient.leaseTimeToLive({ ID: "123456789" });
    expect(ttl.TTL).toBe("-1");
    log.add("time-to-live of an unknown lease", ttl);
  });

  scenario(
    "compaction: reads and watches below the compacted revision fail",
    async ({ client, connect }, log) => {
      await log.baseFrom(client);
      const k = "kv6/k";
      const r1 = (await client.put(k).value("v1")).header.revision;
      const r2 = (await client.put(k).value("v2")).header.revision;
      const r3 = (await client.put(k).value("v3")).header.revision;
      log.add("compact", await client.kv.compact({ revision: r2, physical: true }));

      const below = await rejection(client.get(k).revision(r1).exec());
      expect(below).toBeInstanceOf(GRPCOutOfRangeError);
      expect(below.message).toContain("etcdserver: mvcc: required revision has been compacted");
      log.add("read below", below);
      expect(await client.get(k).revision(r2).string()).toBe("v2");
      expect(await client.get(k).revision(r3).string()).toBe("v3");

      const again = await rejection(client.kv.compact({ revision: r1 }));
      expect(again).toBeInstanceOf(GRPCOutOfRangeError);
      expect(again.message).toContain("etcdserver: mvcc: required revision has been compacted");
      log.add("compact again below", again);
      const ahead = await rejection(client.kv.compact({ revision: Number(r3) + 100 }));
      expect(ahead).toBeInstanceOf(GRPCOutOfRangeError);
      expect(ahead.message).toContain("etcdserver: mvcc: required revision is a future revision");
      log.add("compact ahead", ahead);

      // etcd3's watcher: created, then canceled with the compact revision; etcd3 emits 'error'.
      const watcher = client.watch().key(k).startRevision(r1).watcher();
      const errors = new EventQueue<Error>(watcher, "error", (e: Error) => e);
      const connected = new EventQueue<IWatchResponse>(watcher, "connected", (r: IWatchResponse) => r);
      log.add("watcher connected", await connected.next());
      const canceled = await errors.next();
      expect(canceled.message).toMatch(/^Watcher canceled: /);
      log.add("watcher error", canceled);

      // The raw watch stream shows the compact revision. (On another client: the
      // canceled watcher's stream error makes etcd3 reset this client's channels.)
      const stream = await connect().watchClient.watch();
      const responses = new EventQueue<IWatchResponse>(
        stream as unknown as NodeJS.EventEmitter,
        "data",
        (r: IWatchResponse) => r,
      );
      stream.write({ create_request: { key: Buffer.from(k), start_revision: r1 } });
      const created = await responses.next();
      expect(created.created).toBe(true);
      const cancel = created.canceled ? created : await responses.next();
      expect(cancel.canceled).toBe(true);
      expect(cancel.compact_revision).toBe(r2);
      log.add("raw: created", created);
      if (cancel !== created) log.add("raw: canceled", cancel);
      stream.end();
      const rangeAfter: IRangeResponse = await client.get(k).exec();
      expect(text(rangeAfter.kvs[0]!.value)).toBe("v3");
    },
  );
});
