/**
 * The etcd3 npm client's leases and watches against leasehold and against a
 * real etcd 3.4, side by side (issue 5 §2): a lease granted, keys attached,
 * kept alive ('keepaliveSucceeded'), revoked (its keys vanish); the 'lost'
 * event when another client revokes the lease, seen by keepaliveOnce, by a
 * put on the lease and by the keepalive loop; watches on a key and on a
 * prefix with put and delete events in order, previous values, filters,
 * replay from a start revision, and cancel. Same expectations on both
 * servers; the normalized transcripts must be equal (see differential.ts).
 *
 * No test waits on the clock for something to happen: each awaits the event
 * it expects with a bound. The keepalive-loop test relies on etcd3's own
 * timer (a keepalive every TTL/3 s: 333 ms for a 1 s lease).
 */

import { EtcdLeaseInvalidError, type IKeyValue, type IWatchResponse, type Lease } from "etcd3";
import { expect } from "vitest";
import type { Transcript } from "./differential.ts";
import { differentialSuite, EventQueue, nextEvent, onlyEvents, rejection } from "./differential.ts";

/** A lease error with the lease id in its message replaced by the transcript's alias. */
function leaseError(log: Transcript, e: Error, id: string): { error: string; message: string } {
  return { error: e.constructor.name, message: e.message.replace(id, log.id("lease", id)) };
}

/** One watch event as etcd3 delivers it, flattened. */
interface SeenEvent {
  readonly type: string;
  readonly kv: IKeyValue;
  readonly prev_kv: IKeyValue | null;
}

/** Watch events in order, across the responses that carried them. */
function eventsOf(watcher: NodeJS.EventEmitter): EventQueue<SeenEvent> {
  const queue = new EventQueue<SeenEvent>(watcher, "event", (e: SeenEvent) => e);
  watcher.on("data", (res: IWatchResponse) => {
    for (const e of res.events) watcher.emit("event", { type: e.type, kv: e.kv, prev_kv: e.prev_kv ?? null });
  });
  return queue;
}

const brief = (e: SeenEvent) => `${e.type} ${e.kv.key.toString()}=${e.kv.value.toString()}`;

async function granted(lease: Lease): Promise<string> {
  return await lease.grant();
}

differentialSuite({}, (scenario) => {
  scenario("lease: grant, attach keys, keepalive, time-to-live, revoke deletes the keys", async (t, log) => {
    const { client } = t;
    await log.baseFrom(client);
    const p = "ls1/";
    const lease = client.lease(30);
    const keptAlive = nextEvent<[{ TTL: string; ID: string }]>(lease, "keepaliveSucceeded");
    const id = await granted(lease);
    log.id("lease", id);
    await lease.put(`${p}a`).value("1");
    await lease.put(`${p}b`).value("2");
    const [ka] = await keptAlive;
    expect(ka.TTL).toBe("30");
    expect(ka.ID).toBe(id);
    log.add("keepalive", ka);

    const held = await client.get(`${p}a`).exec();
    expect(held.kvs[0]!.lease).toBe(id);
    log.add("key on the lease", held);

    const ttl = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
    expect(ttl.grantedTTL).toBe("30");
    expect(Number(ttl.TTL)).toBeGreaterThanOrEqual(29);
    expect(Number(ttl.TTL)).toBeLessThanOrEqual(30);
    // etcd lists a lease's keys in no set order.
    const keys = ttl.keys.map(String).sort();
    expect(keys).toEqual([`${p}a`, `${p}b`]);
    log.add("time-to-live (remaining TTL not recorded)", { ...ttl, TTL: "29..30", keys });

    const listed = await client.leaseClient.leaseLeases();
    expect(listed.leases.map((l) => l.ID)).toContain(id);

    await lease.revoke();
    expect(lease.revoked()).toBe(true);
    expect(await client.getAll().prefix(p).keys()).toEqual([]);
    const after = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
    expect(after.TTL).toBe("-1");
    log.add("time-to-live after revoke", after);
    const listedAfter = await client.leaseClient.leaseLeases();
    expect(listedAfter.leases.map((l) => l.ID)).not.toContain(id);
    log.add("revision after revoke", { header: (await client.get(`${p}a`).exec()).header });
  });

  scenario("lease: a TTL below the minimum is raised to it", async ({ client }, log) => {
    const res = await client.leaseClient.leaseGrant({ TTL: 1 });
    log.add("grant TTL 1", res);
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: res.ID });
    expect(ttl.grantedTTL).toBe(res.TTL);
    await client.leaseClient.leaseRevoke({ ID: res.ID });
  });

  scenario("lease: 'lost' when another client revokes it (keepaliveOnce sees TTL 0)", async (t, log) => {
    const lease = t.client.lease(30, { autoKeepAlive: false });
    const id = await granted(lease);
    log.id("lease", id);
    const once = await lease.keepaliveOnce();
    expect(once.TTL).toBe("30");
    log.add("keepaliveOnce", once);
    await lease.put("ls2/k").value("x");

    await t.connect().leaseClient.leaseRevoke({ ID: id });
    expect(await t.client.get("ls2/k").exists()).toBe(false);

    const lost = nextEvent<[Error]>(lease, "lost");
    const err = await rejection(lease.keepaliveOnce());
    expect(err).toBeInstanceOf(EtcdLeaseInvalidError);
    const [lostErr] = await lost;
    expect(lostErr).toBe(err);
    expect(lease.revoked()).toBe(true);
    log.add("keepaliveOnce after revoke", leaseError(log, err, id));
  });

  scenario("lease: 'lost' when a put on a lease another client revoked fails", async (t, log) => {
    const lease = t.client.lease(30, { autoKeepAlive: false });
    const id = await granted(lease);
    log.id("lease", id);
    await t.connect().leaseClient.leaseRevoke({ ID: id });
    const lost = nextEvent<[Error]>(lease, "lost");
    const err = await rejection(lease.put("ls3/k").value("x").exec());
    expect(err).toBeInstanceOf(EtcdLeaseInvalidError);
    expect(err.message).toContain("etcdserver: requested lease not found");
    const [lostErr] = await lost;
    expect(lostErr).toBe(err);
    log.add("put on the revoked lease", err);
  });

  scenario(
    "lease: the keepalive loop keeps it alive, then reports 'lost' once revoked elsewhere",
    async (t, log) => {
      // A 1 s lease: etcd3 sends a keepalive every 333 ms; the servers raise the TTL to their minimum.
      const lease = t.client.lease(1);
      const kept = new EventQueue<{ TTL: string }>(lease, "keepaliveSucceeded", (r: { TTL: string }) => r);
      const lost = new EventQueue<Error>(lease, "lost", (e: Error) => e);
      const id = await granted(lease);
      log.id("lease", id);
      await lease.put("ls4/k").value("x");
      const [first, second] = await kept.take(2, 3_000);
      expect(first!.TTL).toBe(second!.TTL);
      log.add("keepalive TTL", first!.TTL);
      expect(await t.client.get("ls4/k").exists()).toBe(true);

      await t.connect().leaseClient.leaseRevoke({ ID: id });
      const err = await lost.next(3_000);
      expect(err).toBeInstanceOf(EtcdLeaseInvalidError);
      expect(lease.revoked()).toBe(true);
      log.add("lost", leaseError(log, err, id));
      expect(await t.client.get("ls4/k").exists()).toBe(false);
    },
  );

  scenario(
    "watch: put and delete events on a prefix in order, with previous values; cancel",
    async (t, log) => {
      const { client } = t;
      await log.baseFrom(client);
      const p = "wt1/";
      const watcher = await client.watch().prefix(p).withPreviousKV().create();
      const events = eventsOf(watcher);
      const puts = new EventQueue<string>(watcher, "put", (kv: IKeyValue) => kv.key.toString());
      const deletes = new EventQueue<string>(watcher, "delete", (kv: IKeyValue) => kv.key.toString());
      await client.put(`${p}a`).value("1");
      await client.put(`${p}a`).value("2");
      await client.put("wt1").value("outside the prefix");
      await client.put(`${p}b`).value("3");
      await client.delete().key(`${p}a`);
      await client.put(`${p}c`).value("4");
      const seen = await events.take(5);
      expect(seen.map(brief)).toEqual([
        "Put wt1/a=1",
        "Put wt1/a=2",
        "Put wt1/b=3",
        "Delete wt1/a=",
        "Put wt1/c=4",
      ]);
      expect(seen[1]!.prev_kv!.value.toString()).toBe("1");
      expect(seen[3]!.prev_kv!.value.toString()).toBe("2");
      expect(await puts.take(4)).toEqual(["wt1/a", "wt1/a", "wt1/b", "wt1/c"]);
      expect(await deletes.take(1)).toEqual(["wt1/a"]);
      log.add("events", seen);

      const ended = nextEvent(watcher, "end");
      await watcher.cancel();
      await ended;
      // Nothing more reaches the canceled watcher: a second watcher from the
      // revision of the next write receives that write, and the first does not.
      const r = (await client.put(`${p}d`).value("5")).header.revision;
      const second = await t.connect().watch().prefix(p).startRevision(r).create();
      const later = eventsOf(second);
      expect((await later.take(1)).map(brief)).toEqual(["Put wt1/d=5"]);
      expect(events.pending).toEqual([]);
      await second.cancel();
    },
  );

  scenario("watch: a start revision replays history, then live events follow", async ({ client }, log) => {
    await log.baseFrom(client);
    const k = "wt2/k";
    const r1 = (await client.put(k).value("1")).header.revision;
    await client.put(k).value("2");
    await client.delete().key(k);
    await client.put(k).value("3");
    const watcher = await client.watch().key(k).startRevision(r1).create();
    const events = eventsOf(watcher);
    const replayed = await events.take(4);
    expect(replayed.map(brief)).toEqual(["Put wt2/k=1", "Put wt2/k=2", "Delete wt2/k=", "Put wt2/k=3"]);
    await client.put(`${k}2`).value("a sibling key, not watched");
    await client.put(k).value("4");
    const live = await events.take(1);
    expect(live.map(brief)).toEqual(["Put wt2/k=4"]);
    expect(events.pending).toEqual([]);
    log.add("replayed", replayed);
    log.add("live", live);
    await watcher.cancel();
  });

  scenario(
    "watch: a put filter leaves out deletes, a delete filter leaves out puts",
    async ({ client }, log) => {
      await log.baseFrom(client);
      const p = "wt3/";
      const putsOnly = await onlyEvents(client.watch().prefix(p), "put").create();
      const deletesOnly = await onlyEvents(client.watch().prefix(p), "delete").create();
      const puts = eventsOf(putsOnly);
      const deletes = eventsOf(deletesOnly);
      await client.put(`${p}a`).value("1");
      await client.delete().key(`${p}a`);
      await client.put(`${p}b`).value("2");
      await client.delete().key(`${p}b`);
      const p2 = await puts.take(2);
      const d2 = await deletes.take(2);
      expect(p2.map(brief)).toEqual(["Put wt3/a=1", "Put wt3/b=2"]);
      expect(d2.map(brief)).toEqual(["Delete wt3/a=", "Delete wt3/b="]);
      log.add("puts only", p2);
      log.add("deletes only", d2);
      await putsOnly.cancel();
      await deletesOnly.cancel();
    },
  );
});
