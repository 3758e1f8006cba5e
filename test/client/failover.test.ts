/**
 * The SDK's streams survive losing the member they talk to: an in-process
 * member reached through two TCP proxies we can cut (two endpoints, the same
 * member); the one the client uses is cut mid-stream:
 * - watch() opens again on the other endpoint from the revision after the
 *   last one it yielded: the change made while it was cut off arrives, and
 *   nothing arrives twice;
 * - the client's one KeepAlive stream breaks, and the next renewal goes to
 *   the other endpoint: the lease stays valid and its deadline moves on;
 * - serverStream() (here etcd's Election.Observe) opens again there and
 *   goes on (a reopened Observe answers the current leader first).
 *
 * Nothing sleeps: every step waits for an answer or an event.
 */

import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connect, type LeaseholdClient, type WatchEvent } from "../../src/client/client.ts";
import { open } from "../../src/embedded/index.ts";

let member: LeaseholdClient & { port: number };
const proxies: Proxy[] = [];

interface Proxy {
  readonly endpoint: string;
  /** Stops listening and drops every connection through it. */
  cut(): void;
}

beforeAll(async () => {
  member = await open();
});

afterAll(async () => {
  for (const p of proxies) p.cut();
  await member?.close();
});

/** A TCP proxy on a free port to the member. */
async function proxy(): Promise<Proxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = netConnect(member.port, "127.0.0.1");
    sockets.add(inbound).add(outbound);
    inbound.pipe(outbound).pipe(inbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on("error", drop).on("close", drop);
    outbound.on("error", drop).on("close", drop);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const p: Proxy = {
    endpoint: `127.0.0.1:${(server.address() as { port: number }).port}`,
    cut: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
  proxies.push(p);
  return p;
}

it("watch and keepalive move to the other endpoint when theirs dies, missing and repeating nothing", async () => {
  const pair = [await proxy(), await proxy()];
  const client = await connect({ endpoints: pair.map((p) => p.endpoint), timeoutMs: 10_000 });
  try {
    const r0 = await client.put("fo/0", "before"); // leader discovery: the first endpoint, the proxy
    // Leader discovery picked one of the two (both reach the same member): that one will be cut.
    const cutOff = pair.find((p) => p.endpoint === client.endpoint)!;
    const other = pair.find((p) => p !== cutOff)!;
    const lease = await client.acquire("fo-res", { ttl: 30, holder: "fo" });
    await lease.renew(); // the KeepAlive stream is open, through the proxy

    const stop = new AbortController();
    const seen: WatchEvent[] = [];
    const waiting: { n: number; resolve: () => void }[] = [];
    const watching = (async () => {
      for await (const e of client.watch("fo/", {
        prefix: true,
        startRevision: r0 + 1,
        signal: stop.signal,
      })) {
        seen.push(e);
        for (const w of waiting) if (seen.length >= w.n) w.resolve();
        if (e.key === "fo/3") stop.abort();
      }
    })();
    /** Resolves once `n` events were seen; rejects if the watch ends first. */
    const seenCount = (n: number) =>
      Promise.race([
        new Promise<void>((resolve) => {
          if (seen.length >= n) resolve();
          else waiting.push({ n, resolve });
        }),
        watching.then(() => {
          throw new Error(`the watch ended after ${seen.length} events`);
        }),
      ]);
    const w1 = await member.put("fo/1", "one");
    await seenCount(1);

    cutOff.cut();
    const w2 = await member.put("fo/2", "two"); // while the watch is cut off
    const before = lease.validUntil();
    await lease.renew(); // fails on the dead stream...
    await lease.renew(); // ...and goes through on the other endpoint
    expect(lease.state).toBe("valid");
    expect(lease.validUntil()).toBeGreaterThan(before);
    expect(client.endpoint).toBe(other.endpoint);

    await seenCount(2);
    const w3 = await member.put("fo/3", "three");
    await watching;
    expect(seen.map((e) => [e.key, e.revision])).toEqual([
      ["fo/1", w1],
      ["fo/2", w2],
      ["fo/3", w3],
    ]);
    await lease.release();
  } finally {
    await client.close();
  }
});

it("serverStream (etcd Election.Observe) opens again on the other endpoint and goes on", async () => {
  const pair = [await proxy(), await proxy()];
  const client = await connect({ endpoints: pair.map((p) => p.endpoint), timeoutMs: 10_000 });
  try {
    const name = Buffer.from("fo-election");
    const grant = await member.call("etcdserverpb.Lease", "LeaseGrant", { TTL: 60 }, {});
    const campaign = (value: string) =>
      member.call(
        "v3electionpb.Election",
        "Campaign",
        { name, lease: grant.ID, value: Buffer.from(value) },
        {},
      );
    const first = await campaign("one");
    const stop = new AbortController();
    const seen: string[] = [];
    let cut = "";
    for await (const r of client.serverStream(
      "v3electionpb.Election",
      "Observe",
      { name },
      { signal: stop.signal },
    )) {
      seen.push(Buffer.from((r.kv as { value: Buffer }).value).toString());
      if (seen.length === 1) {
        // The stream breaks; the other endpoint answers next.
        cut = client.endpoint;
        pair.find((p) => p.endpoint === cut)!.cut();
      } else if (seen.length === 2) {
        // Reopened: the current leader again. Now a change, seen live.
        await member.call(
          "v3electionpb.Election",
          "Proclaim",
          { leader: first.leader, value: Buffer.from("two") },
          {},
        );
      } else stop.abort();
    }
    expect(seen).toEqual(["one", "one", "two"]);
    expect(client.endpoint).toBe(pair.find((p) => p.endpoint !== cut)!.endpoint);
  } finally {
    await client.close();
  }
});

it("a subscription ended before it was read (return() on events()) cancels its stream", async () => {
  const client = await connect({ endpoints: [`127.0.0.1:${member.port}`] });
  try {
    // Watch the stream the client opens for Events (a private method: the stream is not exposed).
    let cancelled = 0;
    const c = client as unknown as { client(e: string, s: string): Record<string, unknown> };
    const orig = c.client.bind(client);
    c.client = (e, s) => {
      const svc = orig(e, s);
      if (s !== "leasehold.v1.Leases") return svc;
      return new Proxy(svc, {
        get: (t, p) =>
          p !== "Events"
            ? Reflect.get(t, p)
            : (...args: unknown[]) => {
                const stream = (t.Events as (...a: unknown[]) => { cancel(): void }).apply(t, args);
                const cancel = stream.cancel.bind(stream);
                stream.cancel = () => {
                  cancelled++;
                  cancel();
                };
                return stream;
              },
      });
    };
    const sub = client.events("fo-unread/");
    await sub.ready;
    expect(cancelled).toBe(0);
    await sub.return(undefined);
    expect(cancelled).toBe(1);
    expect(await sub.next()).toEqual({ done: true, value: undefined });
  } finally {
    await client.close();
  }
});

it("leader discovery does not wait for an endpoint that never answers when the leader answered", async () => {
  // Accepts connections and never says a word: a blackholed member.
  const silent = createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const blackhole = `127.0.0.1:${(silent.address() as { port: number }).port}`;
  const client = await connect({ endpoints: [blackhole, `127.0.0.1:${member.port}`] });
  try {
    // Shorter than discovery's own bound (1 s): waiting for the blackhole would spend it all.
    expect(await client.put("fo/discovery", "x", { timeoutMs: 500 })).toBeGreaterThan(0);
    expect(client.endpoint).toBe(`127.0.0.1:${member.port}`);
  } finally {
    await client.close();
    silent.close();
  }
});
