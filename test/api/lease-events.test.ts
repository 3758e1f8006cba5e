/**
 * The lease event hub (src/api/lease-events.ts) fed by a real state machine,
 * entry by entry, as Member.entryApplied feeds it: which events each kind of
 * entry makes, in order, with the claim and revision, the prefix filter, and
 * nothing for replayed (session retry) entries.
 */

import { describe, expect, it } from "vitest";
import type { LeaseEvent } from "../../src/api/lease-events.ts";
import { LeaseEventHub } from "../../src/api/lease-events.ts";
import type { Command } from "../../src/state/command.ts";
import { encodeCommand } from "../../src/state/command.ts";
import { StateMachine } from "../../src/state/machine.ts";
import { resourceKey } from "../../src/state/resources.ts";
import { leaseId } from "../../src/state/types.ts";

function setup(prefix = "") {
  const m = new StateMachine();
  const hub = new LeaseEventHub(() => m);
  const seen: string[] = [];
  const unsubscribe = hub.subscribe(prefix, (e: LeaseEvent) =>
    seen.push(`${e.type} ${e.claim.resource} ${e.claim.holder} @${e.revision}`),
  );
  let index = 1;
  const run = (cmd: Command) => {
    const res = m.apply(index++, encodeCommand(cmd));
    hub.applied(res);
    return res;
  };
  return { m, hub, seen, run, unsubscribe };
}

const acquire = (resource: string, holder: string, id: bigint, wait = false): Command => ({
  type: "acquire",
  resource,
  holder,
  id: leaseId(id),
  ttlSeconds: 10,
  wait,
});

describe("lease events", () => {
  it("grant, queue, release, and the waiter's grant at the same revision (the store starts at revision 1)", () => {
    const { seen, run } = setup();
    run(acquire("db", "a", 1n));
    run(acquire("db", "b", 2n, true));
    run({ type: "release", resource: "db", id: leaseId(1n), holder: "a" });
    expect(seen).toEqual(["grant db a @2", "queue db b @3", "release db a @4", "grant db b @4"]);
  });

  it("expiry and revoke say so; losing a waiter grants nobody; a delete through the etcd API is a revoke", () => {
    const { m, seen, run } = setup();
    run(acquire("db", "a", 1n));
    run(acquire("db", "b", 2n, true));
    run(acquire("db", "c", 3n, true));
    seen.length = 0;
    run({ type: "leaseRevoke", id: leaseId(2n) }); // a waiter: the holder stays
    expect(seen).toEqual(["revoke db b @5"]);
    const grantIndex = m.lease(leaseId(1n))!.grantIndex;
    run({ type: "leaseExpire", leases: [{ id: leaseId(1n), grantIndex }] });
    expect(seen.slice(1)).toEqual(["expire db a @6", "grant db c @6"]);
    run({ type: "deleteRange", request: { key: resourceKey("db", leaseId(3n)) } });
    expect(seen.slice(3)).toEqual(["revoke db c @7"]);
  });

  it("a lock-delay: the expiry is reported, and the first waiter's grant comes when the delay ends", () => {
    const { m, seen, run } = setup();
    run({ ...(acquire("db", "a", 1n) as Extract<Command, { type: "acquire" }>), lockDelaySeconds: 5 });
    run(acquire("db", "b", 2n, true));
    run({ type: "leaseExpire", leases: [{ id: leaseId(1n), grantIndex: m.lease(leaseId(1n))!.grantIndex }] });
    const delay = m.lockDelay("db")!;
    run({ type: "leaseExpire", leases: [{ id: delay.lease, grantIndex: m.lease(delay.lease)!.grantIndex }] });
    expect(seen).toEqual(["grant db a @2", "queue db b @3", "expire db a @4", "grant db b @5"]);
  });

  it("a release request is reported to the holding it names, with who asked and why", () => {
    const { seen, run } = setup();
    run(acquire("db", "a", 1n));
    run({
      type: "requestRelease",
      resource: "db",
      requester: "ops",
      reason: "drain",
      id: leaseId(9n),
      deadlineSeconds: 30,
    });
    expect(seen).toEqual(["grant db a @2", "releaseRequested db a @3"]);
  });

  it("renewals reported by the member, the prefix filter, unsubscribe, and nothing for a session replay", () => {
    const { seen, run, hub, unsubscribe } = setup("jobs/");
    run(acquire("db", "a", 1n)); // not under the prefix
    const session = { clientId: "c1", seq: 1 };
    const first: Command = {
      type: "acquire",
      resource: "jobs/1",
      holder: "w",
      id: leaseId(2n),
      ttlSeconds: 10,
      wait: false,
      session,
    };
    run(first);
    run(first); // a retry: answered from the session table
    run({ ...first, holder: "v", id: leaseId(4n), wait: true, session: undefined }); // queued behind w
    expect(hub.kept(leaseId(4n))).toBe(true); // a claim's lease: shared with the others, but a waiting claim's renewal is no news
    expect(hub.kept(leaseId(2n))).toBe(true); // the holding's lease: reported, and shared with the followers
    expect(hub.kept(leaseId(99n))).toBe(false); // no such lease: nothing
    expect(seen).toEqual(["grant jobs/1 w @3", "queue jobs/1 v @4", "renew jobs/1 w @4"]);
    unsubscribe?.();
    run({ type: "release", resource: "jobs/1", id: leaseId(2n), holder: "w" });
    expect(seen).toHaveLength(3);
    expect(hub.size).toBe(0);
  });
});
