/**
 * The etcd3 npm client's recipes against leasehold and against a real etcd
 * 3.4, side by side (issue 5 §2): its lock (a key created on a lease in a
 * transaction; etcd3 1.1.2's acquire does not queue: while the lock is held,
 * another acquire fails with EtcdLockFailedError, and a waiter watches the
 * lock key's delete and tries again), its election (campaign, observe, the
 * leader changes on resign, proclaim), and its software transactions (STM:
 * concurrent increments serialize; a conflicting write makes a transaction
 * without retries fail). These recipes run on KV, Lease and Watch only (not
 * the Lock and Election services). Same expectations on both servers; the
 * normalized transcripts must be equal (see differential.ts).
 */

import { EtcdLockFailedError, STMConflictError } from "etcd3";
import { expect } from "vitest";
import { differentialSuite, EventQueue, nextEvent, onlyEvents, rejection } from "./differential.ts";

differentialSuite({}, (scenario) => {
  scenario("lock: acquire, a contender fails while it is held, release, acquire again", async (t, log) => {
    const { client } = t;
    await log.baseFrom(client);
    const name = "rc1-lock";
    const other = t.connect();
    const mine = await client.lock(name).acquire();
    const leaseId = await mine.leaseId();
    const held = await client.get(name).exec();
    expect(held.kvs[0]!.lease).toBe(leaseId);
    log.add("lock key while held", held);

    const contended = await rejection(other.lock(name).acquire());
    expect(contended).toBeInstanceOf(EtcdLockFailedError);
    log.add("contender", contended);
    expect((await client.get(name).exec()).kvs[0]!.lease).toBe(leaseId);

    // A waiter that watches the lock key's delete gets it right after the release.
    const watcher = await onlyEvents(other.watch().key(name), "delete").create();
    const released = nextEvent(watcher, "delete");
    await mine.release();
    await released;
    await watcher.cancel();
    const theirs = await other.lock(name).acquire();
    const theirLease = await theirs.leaseId();
    expect(theirLease).not.toBe(leaseId);
    expect((await client.get(name).exec()).kvs[0]!.lease).toBe(theirLease);
    await theirs.release();
    expect(await client.get(name).exists()).toBe(false);

    // do(): held while the function runs, released after it.
    const value = await client.lock(name).do(async () => {
      expect(await other.get(name).exists()).toBe(true);
      const busy = await rejection(other.lock(name).acquire());
      expect(busy).toBeInstanceOf(EtcdLockFailedError);
      return 7;
    });
    expect(value).toBe(7);
    expect(await client.get(name).exists()).toBe(false);
    log.add("after do()", await client.get(name).exec());
  });

  scenario("election: campaign, observe, the leader changes on resign, proclaim", async (t, log) => {
    const { client } = t;
    await log.baseFrom(client);
    const name = "rc2-election";
    const first = client.election(name).campaign("alice");
    await first.wait();
    expect(await client.election(name).leader()).toBe("alice");

    const observer = await client.election(name).observe();
    expect(observer.leader()).toBe("alice");
    const changes = new EventQueue<string | undefined>(observer, "change", (v: string | undefined) => v);

    const other = t.connect();
    const second = other.election(name).campaign("bob");
    const waiting = nextEvent(second, "_isWaiting");
    const elected = nextEvent(second, "elected");
    await waiting;
    expect(await client.election(name).leader()).toBe("alice");
    log.add("campaign keys", {
      first: (await first.getCampaignKey()).replace(/[0-9]+$/, (id) => log.id("lease", id)),
      second: (await second.getCampaignKey()).replace(/[0-9]+$/, (id) => log.id("lease", id)),
    });

    await first.resign();
    expect(await changes.next()).toBe("bob");
    await elected;
    expect(await client.election(name).leader()).toBe("bob");

    await second.proclaim("bob, again");
    expect(await changes.next()).toBe("bob, again");
    expect(await client.election(name).leader()).toBe("bob, again");

    await second.resign();
    expect(await changes.next()).toBeUndefined();
    expect(await client.election(name).leader()).toBeUndefined();
    expect(changes.pending).toEqual([]);
    await observer.cancel();
    log.add("election keys at the end", await client.getAll().prefix(`election/${name}/`).exec());
  });

  scenario("stm: 10 concurrent increments of a counter serialize to 10", async (t, log) => {
    const { client } = t;
    await log.baseFrom(client);
    const counter = "rc3/counter";
    await client.put(counter).value(0);
    const increments = Array.from({ length: 10 }, () =>
      t
        .connect()
        .stm({ retries: 20 })
        .transact(async (tx) => {
          const v = await tx.get(counter).number();
          await tx.put(counter).value((v ?? 0) + 1);
          return v;
        }),
    );
    const seen = await Promise.all(increments);
    // Each transaction committed on the value it read, so they read 0..9 once each.
    expect([...seen].sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await client.get(counter).number()).toBe(10);
    const final = await client.get(counter).exec();
    expect(final.kvs[0]!.version).toBe("11");
    log.add("counter", final.kvs[0]!.value);
  });

  scenario(
    "stm: a transfer keeps the sum; a conflicting write fails a transaction without retries",
    async (t, log) => {
      const { client } = t;
      await log.baseFrom(client);
      const a = "rc4/a";
      const b = "rc4/b";
      // Both in one revision: etcd3's SerializableSnapshot STM checks that every key it
      // writes was last modified before the earliest modification it read.
      await client.if(a, "Create", "==", 0).then(client.put(a).value(100), client.put(b).value(0)).commit();
      const transfers = Array.from({ length: 5 }, () =>
        t
          .connect()
          .stm({ retries: 20 })
          .transact(async (tx) => {
            const from = (await tx.get(a).number()) ?? 0;
            const to = (await tx.get(b).number()) ?? 0;
            await tx.put(a).value(from - 10);
            await tx.put(b).value(to + 10);
          }),
      );
      await Promise.all(transfers);
      expect(await client.getAll().prefix("rc4/").numbers()).toEqual({ [a]: 50, [b]: 50 });

      const conflict = await rejection(
        client.stm({ retries: 0 }).transact(async (tx) => {
          const v = (await tx.get(a).number()) ?? 0;
          await client.put(a).value(v + 1000);
          await tx.put(a).value(v - 1);
        }),
      );
      expect(conflict).toBeInstanceOf(STMConflictError);
      log.add("conflict", conflict);
      expect(await client.get(a).number()).toBe(1050);
      log.add("accounts", await client.getAll().prefix("rc4/").exec());
    },
  );
});
