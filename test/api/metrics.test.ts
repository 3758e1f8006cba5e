/**
 * A member's Prometheus metrics (src/api/metrics.ts) against in-process
 * members: each MemberMetrics has its own registry; gauges read the member
 * at scrape time; events are counted through Member.observer (applies,
 * leader changes, failed proposals, renewals) and the storage's WAL hook
 * (fsync durations). Values are read from the text a scrape returns, as
 * Prometheus would. Nothing sleeps: writes are awaited.
 */

import { register as globalRegistry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { MemberMetrics } from "../../src/api/metrics.ts";
import { bootstrapState, memberId } from "../../src/raft/index.ts";
import { Member } from "../../src/server/member.ts";
import type { ApplyResult } from "../../src/state/index.ts";
import { leaseId } from "../../src/state/index.ts";
import { openStorage } from "../../src/storage/index.ts";
import { entry, hard, removeDir, tempDir } from "../storage/support.ts";

const B = (s: string): Uint8Array => new TextEncoder().encode(s);

const members: Member[] = [];
afterEach(() => {
  for (const m of members.splice(0)) m.stop();
});

/** A member (a cluster of one, in memory) with its metrics attached; started unless told not to. */
function newMember(id = 1, start = true): { member: Member; metrics: MemberMetrics } {
  const mid = memberId(id);
  const member = new Member(
    { id: mid, heartbeatMs: 10, electionMs: 50, snapshotCount: 1_000_000 },
    bootstrapState([mid]),
    { save: () => {}, saveSnapshot: () => {} },
    { send: () => false },
  );
  members.push(member);
  const metrics = new MemberMetrics();
  metrics.attach({ member, dbSize: () => 1234 });
  if (start) member.start();
  return { member, metrics };
}

/** One sample's value from a scrape (`name` may carry labels: `x{a="b"}`). */
async function sample(metrics: MemberMetrics, name: string): Promise<number> {
  const text = await metrics.text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no sample ${name} in:\n${text}`);
  return Number(line.slice(name.length + 1));
}

const put = (m: Member, key: string) =>
  m.write({ type: "put", request: { key: B(key), value: B("v"), lease: leaseId(0n) } });

describe("MemberMetrics", () => {
  it("has a registry of its own: two members in one process keep their own figures", async () => {
    const a = newMember(1);
    const b = newMember(2);
    await put(a.member, "x");
    await put(a.member, "y");
    await put(b.member, "z");
    const applyCount = 'etcd_server_apply_duration_seconds_count{version="v3",op="Put",success="true"}';
    expect(await sample(a.metrics, applyCount)).toBe(2);
    expect(await sample(b.metrics, applyCount)).toBe(1);
    expect(await sample(a.metrics, 'etcd_server_id{server_id="1"}')).toBe(1);
    expect(await sample(b.metrics, 'etcd_server_id{server_id="2"}')).toBe(1);
    expect(globalRegistry.getSingleMetric("etcd_server_has_leader")).toBeUndefined();
  });

  it("reads the member's state at scrape time", async () => {
    const { member, metrics } = newMember(1, false);
    expect(await sample(metrics, "etcd_server_has_leader")).toBe(0);
    expect(await sample(metrics, "etcd_server_is_leader")).toBe(0);
    member.start();
    await put(member, "k");
    expect(await sample(metrics, "etcd_server_has_leader")).toBe(1);
    expect(await sample(metrics, "etcd_server_is_leader")).toBe(1);
    expect(await sample(metrics, "etcd_server_is_learner")).toBe(0);
    expect(await sample(metrics, "etcd_server_proposals_committed_total")).toBe(member.raft.log.committed);
    expect(await sample(metrics, "etcd_server_proposals_applied_total")).toBe(member.raft.log.applied);
    expect(await sample(metrics, "etcd_server_proposals_pending")).toBe(0);
    expect(await sample(metrics, "leasehold_raft_term")).toBe(member.raft.term);
    expect(await sample(metrics, "etcd_debugging_mvcc_current_revision")).toBe(
      Number(member.machine.currentRevision()),
    );
    expect(await sample(metrics, "etcd_mvcc_db_total_size_in_bytes")).toBe(1234);
    expect(await sample(metrics, "etcd_debugging_mvcc_db_total_size_in_bytes")).toBe(1234);
    expect(await sample(metrics, "etcd_debugging_mvcc_watcher_total")).toBe(0);
    const w = member.replica.hub.create({ key: B("k") });
    expect(w.ok).toBe(true);
    expect(await sample(metrics, "etcd_debugging_mvcc_watcher_total")).toBe(1);
    expect(await sample(metrics, 'etcd_server_version{server_version="3.4.0"}')).toBe(1);
    expect(await sample(metrics, 'etcd_cluster_version{cluster_version="3.4"}')).toBe(1);
  });

  it("counts leader changes, pending and failed proposals", async () => {
    const { member, metrics } = newMember();
    await put(member, "k");
    expect(await sample(metrics, "etcd_server_leader_changes_seen_total")).toBe(1);
    expect(await sample(metrics, "etcd_server_proposals_failed_total")).toBe(0);
    const pending = put(member, "never");
    expect(await sample(metrics, "etcd_server_proposals_pending")).toBe(1);
    member.stop(); // fails every waiting call
    await expect(pending).rejects.toThrow("etcdserver: server stopped");
    expect(await sample(metrics, "etcd_server_proposals_failed_total")).toBe(1);
    expect(await sample(metrics, "etcd_server_proposals_pending")).toBe(0);
  });

  it("counts leases granted, revoked and renewed, and the granted TTLs", async () => {
    const { member, metrics } = newMember();
    await member.write({ type: "leaseGrant", id: leaseId(7n), ttlSeconds: 30 });
    await member.write({ type: "leaseGrant", id: leaseId(8n), ttlSeconds: 300 });
    expect(await member.keepAlive(leaseId(7n))).toBe(30);
    expect(await member.keepAlive(leaseId(9n))).toBe(0); // no such lease: not a renewal
    await member.write({ type: "leaseRevoke", id: leaseId(7n) });
    expect(await sample(metrics, "etcd_debugging_lease_granted_total")).toBe(2);
    expect(await sample(metrics, "etcd_debugging_lease_revoked_total")).toBe(1);
    expect(await sample(metrics, "etcd_debugging_lease_renewed_total")).toBe(1);
    expect(await sample(metrics, "etcd_debugging_lease_ttl_total_count")).toBe(2);
    expect(await sample(metrics, "etcd_debugging_lease_ttl_total_sum")).toBe(330);
    expect(await sample(metrics, 'etcd_debugging_lease_ttl_total_bucket{le="32"}')).toBe(1);
    const grants = 'etcd_server_apply_duration_seconds_count{version="v3",op="LeaseGrant",success="true"}';
    expect(await sample(metrics, grants)).toBe(2);
  });

  it("counts expired leases on the leader only (etcd counts them where the lessor revokes)", async () => {
    const expired = (revoked: number): ApplyResult =>
      ({
        index: 1,
        result: { kind: "leaseExpire", header: { revision: 1 }, revoked, deleted: 0 },
        replayed: false,
        events: [],
        leaseGrants: [],
        leaseRevokes: Array.from({ length: revoked }, (_, i) => leaseId(BigInt(i + 1))),
        leaseCheckpoints: [],
      }) as unknown as ApplyResult;
    const leader = newMember(1);
    await put(leader.member, "k");
    leader.member.observer.applied?.(expired(3), 0.001);
    expect(await sample(leader.metrics, "etcd_debugging_server_lease_expired_total")).toBe(3);
    expect(await sample(leader.metrics, "etcd_debugging_lease_revoked_total")).toBe(3);
    const follower = newMember(2, false);
    follower.member.observer.applied?.(expired(2), 0.001);
    expect(await sample(follower.metrics, "etcd_debugging_server_lease_expired_total")).toBe(0);
    expect(await sample(follower.metrics, "etcd_debugging_lease_revoked_total")).toBe(2);
  });

  it("observes each WAL fsync through the storage's hook", async () => {
    const metrics = new MemberMetrics();
    const dir = tempDir();
    try {
      const { storage } = openStorage(dir, { onWalSync: (s) => metrics.observeWalFsync(s) });
      const before = await sample(metrics, "etcd_disk_wal_fsync_duration_seconds_count");
      storage.save(hard(1, 1, 0), [entry(1, 1)], undefined);
      storage.save(hard(1, 1, 0), [entry(2, 1)], undefined);
      expect(await sample(metrics, "etcd_disk_wal_fsync_duration_seconds_count")).toBe(before + 2);
      expect(await sample(metrics, 'etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}')).toBe(
        before + 2,
      );
      storage.close();
    } finally {
      removeDir(dir);
    }
  });

  it("counts /health answers; refuses a second attach; process metrics only when asked", async () => {
    const { member, metrics } = newMember();
    metrics.observeHealth(true);
    metrics.observeHealth(false);
    metrics.observeHealth(true);
    expect(await sample(metrics, "etcd_server_health_success")).toBe(2);
    expect(await sample(metrics, "etcd_server_health_failures")).toBe(1);
    expect(() => metrics.attach({ member, dbSize: () => 0 })).toThrow("metrics: attached twice");
    expect(await metrics.text()).not.toContain("process_cpu_seconds_total");
    expect(metrics.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    const withProcess = new MemberMetrics({ processMetrics: true });
    expect(await withProcess.text()).toContain("process_cpu_seconds_total");
  });
});
