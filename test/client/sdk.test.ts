/**
 * The SDK suite (src/client/client.ts), run unchanged against the three ways
 * to get a LeaseholdClient: `open()` in memory, `open({ dataDir })`, and
 * `connect()` to a 3-member cluster of real processes on 127.0.0.1 (with a
 * dead endpoint listed first, so every call starts with a failover).
 *
 * Nothing sleeps: waits end on answers (a waiter is seen queued through
 * `holding()` before the holder lets go).
 */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type LeaseholdClient } from "../../src/client/client.ts";
import {
  BeforeDeadlineError,
  CancelledError,
  LeaseholdClientError,
  PermitsMismatchError,
  ResourceHeldError,
  SemaphoreFullError,
  StaleFenceError,
} from "../../src/client/errors.ts";
import { FenceGuard } from "../../src/client/fence-guard.ts";
import { open } from "../../src/embedded/index.ts";
import { freePort, killAll, removeDir, startMember, tempDir } from "../support/process.ts";

interface Mode {
  readonly name: string;
  start(): Promise<{ client: () => Promise<LeaseholdClient>; stop(): Promise<void> }>;
}

const modes: Mode[] = [
  {
    name: "embedded, in memory",
    async start() {
      const first = await open({ holder: "first" });
      return {
        client: async () => connect({ endpoints: [`127.0.0.1:${first.port}`] }),
        stop: () => first.close(),
      };
    },
  },
  {
    name: "embedded, with a data directory",
    async start() {
      const dir = tempDir("sdk-embedded");
      const first = await open({ dataDir: dir, holder: "first" });
      return {
        client: async () => connect({ endpoints: [`127.0.0.1:${first.port}`] }),
        stop: async () => {
          await first.close();
          removeDir(dir);
        },
      };
    },
  },
  {
    name: "a 3-member cluster",
    async start() {
      const dir = tempDir("sdk-cluster");
      const names = ["a", "b", "c"];
      const peer = await Promise.all(names.map(() => freePort()));
      const client = await Promise.all(names.map(() => freePort()));
      const dead = await freePort();
      const cluster = names.map((n, i) => `${n}=http://127.0.0.1:${peer[i]}`).join(",");
      await Promise.all(
        names.map((n, i) =>
          startMember(n, `${dir}/${n}`, client[i]!, [
            "--listen-peer-urls",
            `http://127.0.0.1:${peer[i]}`,
            "--initial-advertise-peer-urls",
            `http://127.0.0.1:${peer[i]}`,
            "--initial-cluster",
            cluster,
            "--heartbeat-interval",
            "100",
            "--election-timeout",
            "1000",
          ]),
        ),
      );
      const endpoints = [`127.0.0.1:${dead}`, ...client.map((p) => `127.0.0.1:${p}`)];
      return {
        client: async () => connect({ endpoints, timeoutMs: 10_000 }),
        stop: async () => {
          await killAll();
          removeDir(dir);
        },
      };
    },
  },
];

describe.each(modes)("the SDK against $name", (mode) => {
  let stop: () => Promise<void>;
  let newClient: () => Promise<LeaseholdClient>;
  let alice: LeaseholdClient;
  let bob: LeaseholdClient;

  beforeAll(async () => {
    const started = await mode.start();
    stop = started.stop;
    newClient = started.client;
    alice = await newClient();
    bob = await newClient();
  }, 30_000);

  afterAll(async () => {
    await alice?.close();
    await bob?.close();
    await stop?.();
  });

  it("acquires a free resource; a second holder is refused with the holder named", async () => {
    const lease = await alice.acquire("sdk/a", { ttl: 30, holder: "alice" });
    expect(lease.state).toBe("valid");
    expect(lease.fencingToken).toBeGreaterThan(0);
    expect(lease.signal.aborted).toBe(false);
    const err = await bob.acquire("sdk/a", { ttl: 30, holder: "bob" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResourceHeldError);
    expect(err).toMatchObject({ holder: "alice", leaseId: lease.id, fencingToken: lease.fencingToken });
    expect((err as ResourceHeldError).remainingMs).toBeGreaterThan(20_000);
    const seen = await bob.holding("sdk/a");
    expect(seen.holder).toMatchObject({ holder: "alice", fencingToken: lease.fencingToken });
    await lease.release();
    expect(lease.state).toBe("released");
    expect((await bob.holding("sdk/a")).holder).toBeUndefined();
  });

  it("renews on request (validUntil moves forward) and releases with `await using`", async () => {
    let token: number;
    {
      await using lease = await alice.acquire("sdk/b", { ttl: 20, holder: "alice" });
      const before = lease.validUntil();
      await lease.renew();
      expect(lease.validUntil()).toBeGreaterThanOrEqual(before);
      token = lease.fencingToken;
    }
    const next = await bob.acquire("sdk/b", { ttl: 20, holder: "bob" });
    expect(next.fencingToken).toBeGreaterThan(token);
    await next.release();
  });

  it("fences: the current token writes, a stale one is refused, and a FenceGuard agrees", async () => {
    const guard = new FenceGuard();
    const a = await alice.acquire("sdk/store", { ttl: 30, holder: "alice" });
    guard.check(a.fencingToken, "sdk/store");
    await alice.fencedPut("sdk/store", a.fencingToken, "sdk/data", "from alice");
    await a.release();
    const b = await bob.acquire("sdk/store", { ttl: 30, holder: "bob" });
    guard.check(b.fencingToken, "sdk/store");
    const stale = await alice
      .fencedPut("sdk/store", a.fencingToken, "sdk/data", "late")
      .catch((e: unknown) => e);
    expect(stale).toBeInstanceOf(StaleFenceError);
    expect(() => guard.check(a.fencingToken, "sdk/store")).toThrow(StaleFenceError);
    expect(await alice.checkFence("sdk/store", a.fencingToken)).toBe(false);
    expect(await alice.checkFence("sdk/store", b.fencingToken)).toBe(true);
    expect(await bob.get("sdk/data")).toBe("from alice");
    await b.release();
  });

  it("a waiting acquire holds once the holder releases; an aborted wait leaves nothing behind", async () => {
    const a = await alice.acquire("sdk/q", { ttl: 30, holder: "alice" });
    const waiting = bob.acquire("sdk/q", { ttl: 30, holder: "bob", wait: true });
    const ctl = new AbortController();
    const aborted = alice.acquire("sdk/q", { ttl: 30, holder: "carol", wait: true, signal: ctl.signal });
    while ((await alice.holding("sdk/q")).waiters.length < 2) {
      // queued on the server: seen through Get, not through time
    }
    ctl.abort();
    expect(await aborted.catch((e: unknown) => e)).toBeInstanceOf(LeaseholdClientError);
    while ((await alice.holding("sdk/q")).waiters.length > 1) {
      // the aborted waiter's claim is revoked by the server
    }
    await a.release();
    const b = await waiting;
    expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
    expect((await alice.holding("sdk/q")).waiters).toEqual([]);
    await b.release();
  });

  it("lists holders by prefix and reads and writes plain keys through the etcd API", async () => {
    const x = await alice.acquire("sdk/list/x", { ttl: 30, holder: "alice" });
    const y = await bob.acquire("sdk/list/y", { ttl: 30, holder: "bob" });
    expect((await alice.list("sdk/list/")).map((h) => `${h.resource}=${h.holder}`)).toEqual([
      "sdk/list/x=alice",
      "sdk/list/y=bob",
    ]);
    await x.release();
    await y.release();
    await alice.put("sdk/k", "v1");
    expect(await bob.get("sdk/k")).toBe("v1");
    expect(await bob.delete("sdk/k")).toBe(1);
    expect(await alice.get("sdk/k")).toBeUndefined();
  });

  it("semaphores: `permits` holders at once, the next one refused or queued, tokens growing", async () => {
    const one = await alice.semaphore("sdk/sem", { ttl: 30, permits: 2, holder: "one" });
    const two = await bob.semaphore("sdk/sem", { ttl: 30, permits: 2, holder: "two" });
    expect(two.fencingToken).toBeGreaterThan(one.fencingToken);
    const full = await bob
      .semaphore("sdk/sem", { ttl: 30, permits: 2, holder: "three" })
      .catch((e: unknown) => e);
    expect(full).toBeInstanceOf(SemaphoreFullError);
    const mismatch = await bob.semaphore("sdk/sem", { ttl: 30, permits: 3 }).catch((e: unknown) => e);
    expect(mismatch).toBeInstanceOf(PermitsMismatchError);
    const third = bob.semaphore("sdk/sem", { ttl: 30, permits: 2, holder: "three", wait: true });
    await one.renew();
    await one.release();
    const t = await third;
    expect(t.state).toBe("valid");
    expect(t.fencingToken).toBeGreaterThan(two.fencingToken);
    await two.release();
    await t.release();
  });

  it("lock() waits its turn (FIFO) and counters add atomically under concurrency", async () => {
    const held = await alice.lock("sdk/lock", { ttl: 30, holder: "first" });
    const next = bob.lock("sdk/lock", { ttl: 30, holder: "second" });
    while ((await bob.holding("sdk/lock")).waiters.length === 0) {
      // queued behind the holder, seen through Get
    }
    await held.release();
    await (await next).release();
    const c = alice.counter("sdk/hits");
    const before = await c.get();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? alice : bob).counter("sdk/hits").add(1)),
    );
    expect(new Set(results).size).toBe(20); // every add saw its own value: none lost, none doubled
    expect(await c.get()).toBe(before + 20n);
    expect(await c.compareAndSet(before, 0)).toEqual({ succeeded: false, value: before + 20n });
    expect(await c.compareAndSet(before + 20n, -5)).toEqual({ succeeded: true, value: -5n });
  });

  it("watch() yields puts and deletes under a prefix until its signal aborts", async () => {
    const ctl = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const e of alice.watch("sdk/w/", { prefix: true, signal: ctl.signal })) {
        seen.push(`${e.type} ${e.key} ${e.value}`);
        if (e.type === "delete") ctl.abort();
      }
    })();
    // The watch is created asynchronously: write until the first event shows up, then the rest.
    while (seen.length === 0) await bob.put("sdk/w/a", "1");
    await bob.put("sdk/w/b", "2");
    await bob.delete("sdk/w/a");
    await done;
    expect(seen.slice(-2)).toEqual(["put sdk/w/b 2", "delete sdk/w/a "]);
  });

  it("events() reports grant, queue, renew, release and the waiter's grant, in order", async () => {
    const ctl = new AbortController();
    const seen: string[] = [];
    let wake: (() => void) | undefined;
    const events = alice.events("sdk/ev/", { signal: ctl.signal });
    const done = (async () => {
      for await (const e of events) {
        seen.push(`${e.type} ${e.holding.resource} ${e.holding.holder}`);
        wake?.();
      }
    })();
    const until = async (line: string) => {
      while (!seen.includes(line)) await new Promise<void>((r) => (wake = r));
    };
    expect(await events.ready).toBeGreaterThan(0); // subscribed: everything from here on is reported
    const a = await alice.acquire("sdk/ev/r", { ttl: 30, holder: "alice" });
    const waiting = bob.acquire("sdk/ev/r", { ttl: 30, holder: "bob", wait: true });
    await until("queue sdk/ev/r bob");
    await a.renew();
    await until("renew sdk/ev/r alice");
    await a.release();
    const b = await waiting;
    await until("grant sdk/ev/r bob");
    expect(seen).toEqual([
      "grant sdk/ev/r alice",
      "queue sdk/ev/r bob",
      "renew sdk/ev/r alice",
      "release sdk/ev/r alice",
      "grant sdk/ev/r bob",
      ...seen.slice(5).filter((l) => l.startsWith("renew sdk/ev/r bob")),
    ]);
    ctl.abort();
    await done;
    await b.release();
  });

  it("request-release: the holder hears of it; revoke waits for the deadline, then ends the holding", async () => {
    const held = await alice.acquire("sdk/rr", { ttl: 30, holder: "alice" });
    const ctl = new AbortController();
    const heard: string[] = [];
    let heardIt: (() => void) | undefined;
    const events = alice.events("sdk/rr", { signal: ctl.signal });
    const done = (async () => {
      for await (const e of events) {
        if (e.type === "releaseRequested") heard.push(`${e.request?.requester}: ${e.request?.reason}`);
        heardIt?.();
      }
    })();
    await events.ready;
    await bob.requestRelease("sdk/rr", { deadlineSeconds: 60, reason: "maintenance", requester: "ops" });
    while (heard.length === 0) await new Promise<void>((r) => (heardIt = r));
    expect(heard).toEqual(["ops: maintenance"]);
    const early = await bob.revoke("sdk/rr", held.id).catch((e: unknown) => e);
    expect(early).toBeInstanceOf(BeforeDeadlineError);
    expect(early).toMatchObject({ requester: "ops" });
    // The deadline is a lease: ending it (as its expiry would) makes the deadline pass.
    const deadlineKey = Buffer.concat([
      Buffer.from("leasehold/release-deadlines/sdk/rr\u0000"),
      Buffer.from(held.id.toString(16).padStart(16, "0")),
    ]);
    const kv = (await bob.call("etcdserverpb.KV", "Range", { key: deadlineKey }, {})).kvs as {
      lease: string;
    }[];
    await bob.call("etcdserverpb.Lease", "LeaseRevoke", { ID: kv[0]!.lease }, {});
    await bob.revoke("sdk/rr", held.id);
    expect((await bob.holding("sdk/rr")).holder).toBeUndefined();
    ctl.abort();
    await done;
    expect(await bob.revoke("sdk/rr", held.id).catch((e: unknown) => e)).toBeInstanceOf(LeaseholdClientError);
  });

  it("election: candidates lead in turn with growing fencing tokens; observe() reports each leader", async () => {
    const election = alice.election("sdk/elect");
    const ctl = new AbortController();
    const leaders: string[] = [];
    let wake: (() => void) | undefined;
    const observed = election.observe({ signal: ctl.signal });
    const watching = (async () => {
      for await (const h of observed) {
        leaders.push(h.holder);
        wake?.();
      }
    })();
    await observed.ready;
    const first = await election.campaign("first", { ttl: 30 });
    const second = bob.election("sdk/elect").campaign("second", { ttl: 30 });
    while ((await bob.holding("sdk/elect")).waiters.length === 0) {
      // "second" is queued behind the leader
    }
    expect((await bob.election("sdk/elect").leader())?.holder).toBe("first");
    await first.release();
    const term2 = await second;
    expect(term2.fencingToken).toBeGreaterThan(first.fencingToken);
    while (!leaders.includes("second")) await new Promise<void>((r) => (wake = r));
    expect(leaders).toEqual(["first", "second"]);
    ctl.abort();
    await watching;
    await term2.release();
  });

  it("leader discovery: status() names one leader, and a client listing it last still calls it first", async () => {
    const statuses = await alice.status();
    const answered = statuses.filter((s) => s.error === undefined);
    expect(answered.length).toBeGreaterThanOrEqual(1);
    const leader = answered[0]!.leader!;
    expect(leader).not.toBe(0n);
    for (const s of answered) expect(s.leader).toBe(leader);
    const leaderEndpoint = answered.find((s) => s.memberId === leader)!.endpoint;
    const others = statuses.map((s) => s.endpoint).filter((e) => e !== leaderEndpoint);
    const c = await connect({ endpoints: [...others, leaderEndpoint], timeoutMs: 10_000 });
    try {
      await c.put("sdk/discovery", "x");
      expect(c.endpoint).toBe(leaderEndpoint);
    } finally {
      await c.close();
    }
  });

  it("every member reports a renewal, whichever member it came through (the leader shares them)", async () => {
    const endpoints = (await alice.status()).filter((s) => s.error === undefined).map((s) => s.endpoint);
    const lease = await alice.acquire("sdk/renew-everywhere", { ttl: 30, holder: "alice" });
    const ctl = new AbortController();
    const watchers = await Promise.all(
      endpoints.map(async (endpoint) => {
        const c = await connect({ endpoints: [endpoint], timeoutMs: 10_000 });
        const events = c.events("sdk/renew-everywhere", { signal: ctl.signal });
        await events.ready;
        const renewed = (async () => {
          for await (const e of events) if (e.type === "renew") return e.holding.holder;
          return "the stream ended";
        })();
        return { c, renewed };
      }),
    );
    await lease.renew(); // through alice's one member (the leader); every member's stream hears of it
    expect(await Promise.all(watchers.map((w) => w.renewed))).toEqual(endpoints.map(() => "alice"));
    ctl.abort();
    await Promise.all(watchers.map((w) => w.c.close()));
    await lease.release();
  });

  it("a call on a closed client fails at once with a typed error", async () => {
    const c = await newClient();
    await c.close();
    await expect(c.get("sdk/k")).rejects.toBeInstanceOf(CancelledError);
  });
});
