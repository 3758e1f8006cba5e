/**
 * The Election service (src/api/election.ts, src/api/recipes.ts) against a
 * real in-process member and ApiServer over loopback, with proto-loader
 * clients. What is expected is etcd 3.4's v3election server (checked against
 * etcd 3.4.23: LeaderKey shape, headers, Observe's responses, error texts and
 * codes), except that a candidate whose key is lost while it waits fails
 * ("election: not leader") where etcd 3.4 would make it leader.
 *
 * Nothing sleeps: that a response did NOT come is shown by a later response
 * arriving first (a stream delivers in order), a waiting candidate's key is
 * seen arriving through a Watch stream.
 */

import { Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { electionObservers } from "../../src/api/election.ts";
import type { WireMessage } from "../../src/api/index.ts";
import { recipeWaiters } from "../../src/api/recipes.ts";
import { B, DEADLINE_MS, type Pending, RecipeNode, S } from "./recipe-node.ts";

type W = WireMessage;
interface Readable extends NodeJS.EventEmitter {
  cancel(): void;
}

/** The harness member, with the Election service's calls. */
class Node extends RecipeNode {
  constructor() {
    super(serverLog);
  }

  campaign(name: string, lease: string, value: string): Pending {
    return this.call("v3electionpb.Election", "Campaign", { name: B(name), lease, value: B(value) });
  }

  election(method: string, req: W): Promise<W> {
    return this.unary("v3electionpb.Election", method, req);
  }

  observe(name: string): Stream {
    const c = this.client("v3electionpb.Election") as unknown as {
      Observe: (req: W, md: Metadata) => Readable;
    };
    return new Stream(c.Observe({ name: B(name) }, new Metadata()));
  }

  async put(key: string, value = "v"): Promise<number> {
    return rev(await this.unary("etcdserverpb.KV", "Put", { key: B(key), value: B(value) }));
  }
}

/** A server stream whose messages are awaited one at a time, each with a deadline. */
class Stream {
  private readonly queue: W[] = [];
  private waiter: (() => void) | undefined;
  readonly status: Promise<{ code: number; details: string }>;

  constructor(readonly call: Readable) {
    call.on("data", (m: W) => {
      this.queue.push(m);
      const w = this.waiter;
      this.waiter = undefined;
      w?.();
    });
    call.on("error", () => {});
    this.status = new Promise((resolve) =>
      call.on("status", (s: { code: number; details: string }) => resolve(s)),
    );
  }

  async next(): Promise<W> {
    while (this.queue.length === 0) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no message within the deadline")), DEADLINE_MS);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.queue.shift()!;
  }

  /** The next message as `key=value rev=<header> create=<c> mod=<m>`. */
  async nextLine(): Promise<string> {
    return line(await this.next());
  }
}

interface Duplex extends NodeJS.EventEmitter {
  write(msg: W): boolean;
  cancel(): void;
}

/** The puts and deletes under a prefix, one line each ("put k@rev", "delete k@rev"), awaited in order. */
class KeyEvents {
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private readonly call: Duplex;
  readonly created: Promise<void>;

  constructor(node: Node, prefix: string) {
    const c = node.client("etcdserverpb.Watch") as unknown as { Watch: (md: Metadata) => Duplex };
    this.call = c.Watch(new Metadata());
    this.call.on("error", () => {});
    this.created = new Promise((resolve) => {
      this.call.on("data", (m: W) => {
        if (m.created === true) resolve();
        for (const e of m.events as W[]) {
          const kv = e.kv as W;
          this.lines.push(`${e.type === 0 ? "put" : "delete"} ${S(kv.key)}@${kv.mod_revision}`);
        }
        const w = this.waiter;
        this.waiter = undefined;
        w?.();
      });
    });
    const end = Buffer.from(prefix);
    end[end.length - 1]! += 1;
    this.call.write({ create_request: { key: B(prefix), range_end: end } });
  }

  async next(): Promise<string> {
    while (this.lines.length === 0) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no event within the deadline")), DEADLINE_MS);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.lines.shift()!;
  }

  close(): void {
    this.call.cancel();
  }
}

async function watchElection(name: string): Promise<KeyEvents> {
  const ev = new KeyEvents(node, `${name}/`);
  await ev.created;
  return ev;
}

/**
 * Until `done()`: each try waits for one round trip on the shared connection,
 * which the server handles after anything the client sent before (a cancel).
 */
async function afterRoundTrips(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) await node.get("warmup");
  expect(done()).toBe(true);
}

function line(m: W): string {
  const kv = m.kv as W;
  return `${S(kv.key)}=${S(kv.value)} rev=${rev(m)} create=${kv.create_revision} mod=${kv.mod_revision}`;
}

const hex = (lease: string): string => BigInt(lease).toString(16);
const rev = (w: W): number => Number((w.header as W).revision);

/** Awaits `p`, which must fail; answers its gRPC code and message. */
async function failure(p: Promise<W>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as ServiceError;
    return { code: err.code, details: err.details };
  }
  throw new Error("expected the call to fail");
}

/** What the servers logged above info: nothing is expected (an unexpected error is logged). */
const serverLog: string[] = [];
let node: Node;
let n = 0;
/** An election name of its own for each test. */
const fresh = (): string => `elect${++n}`;

beforeAll(async () => {
  node = await new Node().start();
  await node.put("warmup"); // waits for the election
});
afterAll(async () => {
  await node?.stop();
});
afterEach(() => {
  expect(serverLog.splice(0)).toEqual([]);
  expect(recipeWaiters()).toBe(0);
});

describe("Campaign and Leader", () => {
  it("Campaign answers the txn's header and LeaderKey{name, key name/<lease hex>, rev = create revision, lease}; Leader answers the key", async () => {
    const name = fresh();
    const lease = await node.grant();
    const res = await node.campaign(name, lease, "v1").answer;
    const leader = res.leader as W;
    expect(S(leader.name)).toBe(name);
    expect(S(leader.key)).toBe(`${name}/${hex(lease)}`);
    expect(leader.rev).toBe(String(rev(res)));
    expect(leader.lease).toBe(lease);
    const l = await node.election("Leader", { name: B(name) });
    expect(line(l)).toBe(`${name}/${hex(lease)}=v1 rev=${rev(res)} create=${rev(res)} mod=${rev(res)}`);
    expect((l.kv as W).lease).toBe(lease);
  });

  it("Leader with no candidate: 'election: no leader', code Unknown", async () => {
    expect(await failure(node.election("Leader", { name: B(fresh()) }))).toEqual({
      code: 2,
      details: "election: no leader",
    });
  });

  it("the same lease campaigning again with another value proclaims it; the answer keeps the first create revision and the campaign txn's header", async () => {
    const name = fresh();
    const lease = await node.grant();
    const first = await node.campaign(name, lease, "v1").answer;
    const again = await node.campaign(name, lease, "v2").answer;
    expect((again.leader as W).rev).toBe((first.leader as W).rev);
    expect(rev(again)).toBe(rev(first));
    const l = await node.election("Leader", { name: B(name) });
    expect(line(l)).toBe(
      `${name}/${hex(lease)}=v2 rev=${rev(first) + 1} create=${rev(first)} mod=${rev(first) + 1}`,
    );
  });

  it("lease 0 campaigns with a new 60-second lease; an unknown lease is refused like etcd ('etcdserver: requested lease not found', Unknown)", async () => {
    const res = await node.campaign(fresh(), "0", "x").answer;
    const lease = (res.leader as W).lease as string;
    expect(lease).not.toBe("0");
    const ttl = await node.unary("etcdserverpb.Lease", "LeaseTimeToLive", { ID: lease });
    expect(ttl.grantedTTL).toBe("60");
    expect(await failure(node.campaign(fresh(), "999999", "x").answer)).toEqual({
      code: 2,
      details: "etcdserver: requested lease not found",
    });
  });

  it("a second candidate waits until the leader resigns; then it leads", async () => {
    const name = fresh();
    const [la, lb] = [await node.grant(), await node.grant()];
    const events = await watchElection(name);
    const a = await node.campaign(name, la, "a").answer;
    await events.next();
    const b = node.campaign(name, lb, "b");
    expect(await events.next()).toMatch(`put ${name}/${hex(lb)}@`);
    events.close();
    // b waits: the leader is still a.
    const watch = node.observe(name);
    expect(await watch.nextLine()).toMatch(`${name}/${hex(la)}=a `);
    const resigned = await node.election("Resign", { leader: a.leader });
    const rb = await b.answer;
    expect(S((rb.leader as W).key)).toBe(`${name}/${hex(lb)}`);
    expect(Number((rb.leader as W).rev)).toBeLessThan(rev(resigned));
    expect(await watch.nextLine()).toBe(
      `${name}/${hex(lb)}=b rev=${rev(resigned)} create=${(rb.leader as W).rev} mod=${(rb.leader as W).rev}`,
    );
    watch.call.cancel();
    await node.election("Resign", { leader: rb.leader });
  });
});

describe("Proclaim and Resign", () => {
  it("the leader proclaims a new value; a stale LeaderKey gets 'election: not leader'; no LeaderKey: '\"leader\" field must be provided' (all Unknown)", async () => {
    const name = fresh();
    const lease = await node.grant();
    const res = await node.campaign(name, lease, "v1").answer;
    const p = await node.election("Proclaim", { leader: res.leader, value: B("v2") });
    expect(rev(p)).toBe(rev(res) + 1);
    expect(S(((await node.election("Leader", { name: B(name) })).kv as W).value)).toBe("v2");

    const stale = { ...(res.leader as W), rev: String(rev(res) - 1) };
    expect(await failure(node.election("Proclaim", { leader: stale, value: B("v3") }))).toEqual({
      code: 2,
      details: "election: not leader",
    });
    expect(await failure(node.election("Proclaim", { value: B("v3") }))).toEqual({
      code: 2,
      details: '"leader" field must be provided',
    });
    expect(await failure(node.election("Resign", {}))).toEqual({
      code: 2,
      details: '"leader" field must be provided',
    });
    // A stale Resign deletes nothing and still answers a header.
    const r = await node.election("Resign", { leader: stale });
    expect(rev(r)).toBe(rev(p));
    expect(await node.get(`${name}/${hex(lease)}`)).toBeDefined();
    const done = await node.election("Resign", { leader: res.leader });
    expect(rev(done)).toBe(rev(p) + 1);
    expect(await failure(node.election("Leader", { name: B(name) }))).toEqual({
      code: 2,
      details: "election: no leader",
    });
    // After resigning, proclaiming is refused.
    expect(await failure(node.election("Proclaim", { leader: res.leader, value: B("v4") }))).toEqual({
      code: 2,
      details: "election: not leader",
    });
  });
});

describe("a candidate's key lost while it waits (the lock bug, applied to elections)", () => {
  it("its lease revoked: Campaign fails with 'election: not leader' at once, and the next candidate leads after the leader resigns", async () => {
    const name = fresh();
    const [la, lb, lc] = [await node.grant(), await node.grant(), await node.grant()];
    const events = await watchElection(name);
    const a = await node.campaign(name, la, "a").answer;
    await events.next();
    const b = node.campaign(name, lb, "b");
    expect(await events.next()).toMatch(`put ${name}/${hex(lb)}@`);
    const c = node.campaign(name, lc, "c");
    expect(await events.next()).toMatch(`put ${name}/${hex(lc)}@`);
    await node.revoke(lb);
    expect(await failure(b.answer)).toEqual({ code: 2, details: "election: not leader" });
    const resigned = await node.election("Resign", { leader: a.leader });
    const rc = await c.answer;
    expect(S((rc.leader as W).key)).toBe(`${name}/${hex(lc)}`);
    const l = await node.election("Leader", { name: B(name) });
    expect(rev(l)).toBeGreaterThanOrEqual(rev(resigned));
    expect(S((l.kv as W).key)).toBe(`${name}/${hex(lc)}`);
    await node.election("Resign", { leader: rc.leader });
    events.close();
  });

  it("a cancelled Campaign resigns: its key is deleted", async () => {
    const name = fresh();
    const [la, lb] = [await node.grant(), await node.grant()];
    const events = await watchElection(name);
    const a = await node.campaign(name, la, "a").answer;
    await events.next();
    const b = node.campaign(name, lb, "b");
    expect(await events.next()).toMatch(`put ${name}/${hex(lb)}@`);
    b.call.cancel();
    expect((await failure(b.answer)).code).toBe(1);
    expect(await events.next()).toMatch(`delete ${name}/${hex(lb)}@`);
    expect(recipeWaiters()).toBe(0);
    await node.election("Resign", { leader: a.leader });
    events.close();
  });
});

describe("Observe (concurrency Election.observe, streamed)", () => {
  it("one response per leader and per proclaimed value, none for waiting candidates; a new leader after a resign; ends on cancel", async () => {
    const name = fresh();
    const [la, lb] = [await node.grant(), await node.grant()];
    const obs = node.observe(name);
    // No leader: nothing until the first put under the prefix.
    const a = await node.campaign(name, la, "a1").answer;
    const ra = rev(a);
    expect(await obs.nextLine()).toBe(`${name}/${hex(la)}=a1 rev=${ra} create=${ra} mod=${ra}`);
    const p1 = rev(await node.election("Proclaim", { leader: a.leader, value: B("a2") }));
    expect(await obs.nextLine()).toBe(`${name}/${hex(la)}=a2 rev=${p1} create=${ra} mod=${p1}`);
    // A proclaim of the same value is a put too: it is reported.
    const p2 = rev(await node.election("Proclaim", { leader: a.leader, value: B("a2") }));
    const events = await watchElection(name);
    const b = node.campaign(name, lb, "b1");
    expect(await events.next()).toMatch(`put ${name}/${hex(lb)}@`);
    events.close();
    // A put elsewhere under the prefix (a waiting candidate) is not reported: the next line is p2's, then the resign's.
    expect(await obs.nextLine()).toBe(`${name}/${hex(la)}=a2 rev=${p2} create=${ra} mod=${p2}`);
    const resigned = rev(await node.election("Resign", { leader: a.leader }));
    const rb = await b.answer;
    const cb = Number((rb.leader as W).rev);
    expect(await obs.nextLine()).toBe(`${name}/${hex(lb)}=b1 rev=${resigned} create=${cb} mod=${cb}`);
    // The leader's lease expires (revoked): no leader; the next campaign is reported.
    await node.revoke(lb);
    const la2 = await node.grant();
    const a2 = await node.campaign(name, la2, "again").answer;
    expect(await obs.nextLine()).toBe(
      `${name}/${hex(la2)}=again rev=${rev(a2)} create=${rev(a2)} mod=${rev(a2)}`,
    );
    expect(electionObservers()).toBe(1);
    obs.call.cancel();
    expect((await obs.status).code).toBe(1);
    await node.election("Resign", { leader: a2.leader });
    // The stream is gone on the server too: no observer (and its hub watcher) is left behind.
    await afterRoundTrips(() => electionObservers() === 0);
  });

  it("with a leader already elected, the first response is it, at the read's revision", async () => {
    const name = fresh();
    const lease = await node.grant();
    const a = await node.campaign(name, lease, "x").answer;
    const now = await node.put("elsewhere");
    const obs = node.observe(name);
    expect(await obs.nextLine()).toBe(`${name}/${hex(lease)}=x rev=${now} create=${rev(a)} mod=${rev(a)}`);
    obs.call.cancel();
    await node.election("Resign", { leader: a.leader });
  });
});
