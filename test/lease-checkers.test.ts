/**
 * The simulator's lease and watch checkers on hand-made observations: each
 * rule accepts a correct story and reports the broken one.
 */

import { describe, expect, it } from "vitest";
import { EXPIRY_SLACK_MS, LeaseChecker, leaseKey, WatchChecker } from "../src/sim/lease-checkers.ts";
import type { KvEvent } from "../src/state/index.ts";
import { leaseId, NO_LEASE, revision } from "../src/state/index.ts";

const enc = new TextEncoder();

function put(key: string, rev: number, value = "v"): KvEvent {
  return {
    type: "put",
    kv: {
      key: enc.encode(key),
      createRevision: revision(rev),
      modRevision: revision(rev),
      version: 1,
      value: enc.encode(value),
      lease: NO_LEASE,
    },
    prevKv: undefined,
  };
}

describe("LeaseChecker", () => {
  const L = leaseKey(leaseId(7n), 3);

  it("names a lease incarnation by id and grant index", () => {
    expect(L).toBe("7@3");
  });

  it("accepts an expiry after the holder's belief ended", () => {
    const c = new LeaseChecker(100, 0.01);
    c.granted(L, 1001, 0, 990, 1000);
    c.expired(L, 1000);
    expect(c.violations).toEqual([]);
    expect(c.maxExpiryLatenessMs).toBe(0);
  });

  it("reports an expiry while the holder still believed in the lease (renewed)", () => {
    const c = new LeaseChecker(100, 0.01);
    c.granted(L, 1001, 0, 990, 1000);
    c.keepAliveSent(L, 500);
    c.renewed(L, 1490);
    c.expired(L, 1200);
    expect(c.violations[0]).toMatch(/premature expiry: lease 7@3 revoked at 1200.000ms while client 1001/);
  });

  it("accepts an expiry right after the holder released the lease", () => {
    const c = new LeaseChecker(100, 0.01);
    c.granted(L, 1001, 0, 990, 1000);
    c.released(L, 100);
    c.expired(L, 101);
    expect(c.violations).toEqual([]);
  });

  it("reports two clients holding one resource at once, not one after the other", () => {
    const c = new LeaseChecker(100, 0.01);
    c.holdStart(1001, "res/0", "1@1", 10);
    c.holdEnd(1001, "res/0");
    c.holdStart(1002, "res/0", "2@2", 20);
    expect(c.violations).toEqual([]);
    c.holdStart(1003, "res/0", "3@3", 30);
    expect(c.violations[0]).toMatch(
      /lease exclusivity: client 1003 took res\/0 .* while client 1002 held it/,
    );
  });

  it("bounded expiry at the end: a live lease past its bound needs a hand-out within the bound", () => {
    const bound = 1000 * 1.01 + 100 * 1.01 + EXPIRY_SLACK_MS;
    const live = [{ lease: L, ttlMs: 1000 }];
    const inTime = new LeaseChecker(100, 0.01);
    inTime.applied(L, 0, 1000);
    inTime.expiryHandedOut(L, bound - 1);
    inTime.checkEnd(5000, live);
    expect(inTime.violations).toEqual([]);

    const late = new LeaseChecker(100, 0.01);
    late.applied(L, 0, 1000);
    late.expiryHandedOut(L, bound + 1);
    late.checkEnd(5000, live);
    expect(late.violations[0]).toMatch(/bounded expiry: lease 7@3/);

    // Measured from the final leader's takeover when that came later, and from the last renewal.
    const takeover = new LeaseChecker(100, 0.01);
    takeover.applied(L, 0, 1000);
    takeover.tookOver(4000);
    takeover.checkEnd(4000 + bound - 1, live);
    expect(takeover.violations).toEqual([]);
    const renewed = new LeaseChecker(100, 0.01);
    renewed.applied(L, 0, 1000);
    renewed.renewedByLeader(L, 3000);
    renewed.checkEnd(3000 + bound - 1, live);
    expect(renewed.violations).toEqual([]);
    renewed.checkEnd(3000 + bound + 1, live);
    expect(renewed.violations[0]).toMatch(/bounded expiry/);
  });

  it("bounded expiry at each expiry: the first hand-out after the last renewal must come in time", () => {
    const bound = 1000 * 1.01 + 100 * 1.01 + EXPIRY_SLACK_MS;
    const ok = new LeaseChecker(100, 0.01);
    ok.applied(L, 0, 1000);
    ok.renewedByLeader(L, 500);
    ok.expiryHandedOut(L, 400); // before the renewal: superseded
    ok.expiryHandedOut(L, 500 + bound - 1);
    ok.expired(L, 500 + bound + 30);
    expect(ok.violations).toEqual([]);

    const late = new LeaseChecker(100, 0.01);
    late.applied(L, 0, 1000);
    late.expiryHandedOut(L, bound + 700);
    late.expired(L, bound + 720);
    expect(late.violations[0]).toMatch(/bounded expiry: lease 7@3 \(ttl 1000ms\) handed out for revocation/);
  });
});

describe("WatchChecker", () => {
  it("accepts every matching event in order, then a progress notification", () => {
    const w = new WatchChecker();
    w.observeApply(1, 2, [put("k1", 2)]);
    w.observeApply(1, 3, [put("x", 3)]);
    w.observeApply(1, 4, [put("k2", 4)]);
    w.addWatcher(2001, "k");
    w.created(2001, 1);
    w.events(2001, [put("k1", 2)]);
    w.events(2001, [put("k2", 4)]);
    w.progress(2001, 4);
    expect(w.violations).toEqual([]);
    expect(w.resumeFrom(2001)).toBe(5);
    expect(w.delivered).toBe(2);
  });

  it("reports a skipped event, a duplicate, and a progress notification past a missing event", () => {
    const skip = new WatchChecker();
    skip.observeApply(1, 2, [put("k1", 2)]);
    skip.observeApply(1, 3, [put("k2", 3)]);
    skip.addWatcher(2001, "k");
    skip.created(2001, 1);
    skip.events(2001, [put("k2", 3)]);
    expect(skip.violations[0]).toMatch(/watch completeness: client 2001/);

    const dup = new WatchChecker();
    dup.observeApply(1, 2, [put("k1", 2)]);
    dup.addWatcher(2001, "k");
    dup.created(2001, 1);
    dup.events(2001, [put("k1", 2)]);
    dup.events(2001, [put("k1", 2)]);
    expect(dup.violations[0]).toMatch(/watch completeness/);

    const progress = new WatchChecker();
    progress.observeApply(1, 2, [put("k1", 2)]);
    progress.addWatcher(2001, "k");
    progress.created(2001, 1);
    progress.progress(2001, 2);
    expect(progress.violations[0]).toMatch(/progress notification at 2 but never got/);
  });

  it("allows the gap a compaction cancel announced", () => {
    const w = new WatchChecker();
    for (let r = 2; r <= 5; r++) w.observeApply(1, r, [put("k", r)]);
    w.addWatcher(2001, "k");
    w.created(2001, 1);
    w.compacted(2001, 4);
    w.events(2001, [put("k", 4), put("k", 5)]);
    expect(w.violations).toEqual([]);
    expect(w.gaps).toBe(1);
  });

  it("reports replicas producing different events at one revision", () => {
    const w = new WatchChecker();
    w.observeApply(1, 2, [put("k", 2, "a")]);
    w.observeApply(2, 2, [put("k", 2, "a")]);
    expect(w.violations).toEqual([]);
    w.observeApply(3, 2, [put("k", 2, "b")]);
    expect(w.violations[0]).toMatch(/replica divergence: member 3 produced at revision 2/);
  });
});
