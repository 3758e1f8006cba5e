/**
 * One member's Prometheus metrics (prom-client), served as text on the
 * client port's /metrics (gateway.ts). Names, types, help texts and buckets
 * are etcd 3.4's where etcd has the metric (etcdserver/metrics.go,
 * wal/metrics.go, lease/metrics.go, mvcc/metrics.go, release-3.4), so etcd
 * dashboards and alerts work unchanged.
 *
 * Contract:
 * - Each `MemberMetrics` has its own Registry (never prom-client's global
 *   one): several members in one process do not collide.
 * - State is read at scrape time (gauges with a collect callback): leader,
 *   raft indexes and term, pending proposals, db size, revisions, watchers.
 *   Only events are counted as they happen, through `Member.observer`
 *   (applies, leader changes, failed proposals, lease renewals) and the
 *   calls below (WAL fsyncs, /health answers).
 * - Counted where etcd counts: leases granted and revoked on every member
 *   (at apply), renewals and expiries on the leader only.
 * - Not etcd 3.4's: `etcd_server_apply_duration_seconds` is etcd 3.5's
 *   histogram (3.4 has none); `leasehold_raft_term` is leasehold's own (etcd
 *   exports no term).
 */

import { Counter, collectDefaultMetrics, exponentialBuckets, Gauge, Histogram, Registry } from "prom-client";
import { assert, NO_MEMBER } from "../raft/index.ts";
import type { Member } from "../server/member.ts";
import type { ApplyResult } from "../state/index.ts";
import { REPORTED_VERSION } from "./maintenance.ts";

/** What the scrape-time gauges read. */
export interface MetricsSource {
  readonly member: Member;
  /** The state's size in bytes (what Status reports as dbSize). */
  readonly dbSize: () => number;
}

export interface MemberMetricsOptions {
  /**
   * Also export prom-client's process and Node.js metrics (process_*,
   * nodejs_*; etcd exports Go's process_* and go_*). Off by default: tests
   * run many members in one process, and these watch the event loop.
   */
  readonly processMetrics?: boolean;
}

/** etcd's op names for the apply histogram (etcd 3.5 apply.go), by command type. */
const APPLY_OP_NAMES: Readonly<Record<string, string>> = {
  compact: "Compaction",
};

/** The op label of an applied entry: etcd's name where it has one, else the command type capitalized. */
function applyOp(result: ApplyResult["result"]): string {
  const type = result.kind === "failed" ? result.command : result.kind;
  return APPLY_OP_NAMES[type] ?? type.charAt(0).toUpperCase() + type.slice(1);
}

/** A member's metrics; see the header. */
export class MemberMetrics {
  readonly registry = new Registry();
  private source: MetricsSource | undefined;
  private readonly walFsync: Histogram;
  private readonly applyDuration: Histogram<"version" | "op" | "success">;
  private readonly applyChildren = new Map<string, { observe(seconds: number): void }>();
  private readonly leaderChanges: Counter;
  private readonly proposalsFailed: Counter;
  private readonly leasesGranted: Counter;
  private readonly leasesRevoked: Counter;
  private readonly leasesRenewed: Counter;
  private readonly leasesExpired: Counter;
  private readonly leaseTtl: Histogram;
  private readonly healthSuccess: Counter;
  private readonly healthFailures: Counter;

  constructor(options: MemberMetricsOptions = {}) {
    const registers = [this.registry];
    const counter = (name: string, help: string): Counter => new Counter({ name, help, registers });
    this.gauges();
    this.leaderChanges = counter(
      "etcd_server_leader_changes_seen_total",
      "The number of leader changes seen.",
    );
    this.proposalsFailed = counter(
      "etcd_server_proposals_failed_total",
      "The total number of failed proposals seen.",
    );
    this.healthSuccess = counter(
      "etcd_server_health_success",
      "The total number of successful health checks",
    );
    this.healthFailures = counter("etcd_server_health_failures", "The total number of failed health checks");
    this.leasesGranted = counter("etcd_debugging_lease_granted_total", "The total number of granted leases.");
    this.leasesRevoked = counter("etcd_debugging_lease_revoked_total", "The total number of revoked leases.");
    this.leasesRenewed = counter(
      "etcd_debugging_lease_renewed_total",
      "The number of renewed leases seen by the leader.",
    );
    this.leasesExpired = counter(
      "etcd_debugging_server_lease_expired_total",
      "The total number of expired leases.",
    );
    this.leaseTtl = new Histogram({
      name: "etcd_debugging_lease_ttl_total",
      help: "Bucketed histogram of lease TTLs.",
      buckets: exponentialBuckets(1, 2, 24),
      registers,
    });
    this.walFsync = new Histogram({
      name: "etcd_disk_wal_fsync_duration_seconds",
      help: "The latency distributions of fsync called by WAL.",
      buckets: exponentialBuckets(0.001, 2, 14),
      registers,
    });
    this.applyDuration = new Histogram({
      name: "etcd_server_apply_duration_seconds",
      help: "The latency distributions of v2 apply called by backend.",
      buckets: exponentialBuckets(0.0001, 2, 20),
      labelNames: ["version", "op", "success"],
      registers,
    });
    if (options.processMetrics === true) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Binds the scrape-time gauges to `source` and counts the member's events
   * (sets `member.observer`). Once per MemberMetrics.
   */
  attach(source: MetricsSource): void {
    assert(this.source === undefined, "metrics: attached twice");
    this.source = source;
    const member = source.member;
    member.observer = {
      applied: (res, seconds) => this.applied(member, res, seconds),
      leaderChanged: (leader) => {
        if (leader !== NO_MEMBER) this.leaderChanges.inc();
      },
      proposalFailed: () => this.proposalsFailed.inc(),
      leaseRenewed: () => this.leasesRenewed.inc(),
    };
  }

  /** One WAL fsync took `seconds` (pass to openStorage as `onWalSync`). */
  observeWalFsync(seconds: number): void {
    this.walFsync.observe(seconds);
  }

  /** One /health answer (etcd_server_health_success / _failures). */
  observeHealth(healthy: boolean): void {
    (healthy ? this.healthSuccess : this.healthFailures).inc();
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The Content-Type of `text()`. */
  get contentType(): string {
    return this.registry.contentType;
  }

  private applied(member: Member, res: ApplyResult, seconds: number): void {
    const r = res.result;
    const op = applyOp(r);
    const success = r.kind !== "failed" && r.kind !== "decodeError";
    // One child per label set, looked up by a plain key: Histogram.observe(labels) hashes the
    // labels on every call (2.4% of the lock profile).
    const key = success ? op : `${op}\u0000`;
    let child = this.applyChildren.get(key);
    if (child === undefined) {
      child = this.applyDuration.labels({ version: "v3", op, success: String(success) });
      this.applyChildren.set(key, child);
    }
    child.observe(seconds);
    for (const g of res.leaseGrants) {
      this.leasesGranted.inc();
      this.leaseTtl.observe(g.ttlSeconds);
    }
    if (res.leaseRevokes.length > 0) this.leasesRevoked.inc(res.leaseRevokes.length);
    if (r.kind === "leaseExpire" && r.revoked > 0 && member.isLeader) this.leasesExpired.inc(r.revoked);
  }

  /** The gauges read at scrape time. */
  private gauges(): void {
    const registers = [this.registry];
    const gauge = (name: string, help: string, read: (s: MetricsSource) => number): void => {
      const g: Gauge = new Gauge({
        name,
        help,
        registers,
        collect: () => {
          if (this.source !== undefined) g.set(read(this.source));
        },
      });
    };
    const labelled = (
      name: string,
      help: string,
      label: string,
      read: (s: MetricsSource) => string,
    ): void => {
      const g: Gauge<string> = new Gauge({
        name,
        help,
        labelNames: [label],
        registers,
        collect: () => {
          if (this.source === undefined) return;
          g.reset();
          g.set({ [label]: read(this.source) }, 1);
        },
      });
    };
    const flag = (b: boolean): number => (b ? 1 : 0);
    gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", (s) =>
      flag(s.member.leader !== NO_MEMBER),
    );
    gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", (s) =>
      flag(s.member.isLeader),
    );
    gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.", (s) =>
      flag(s.member.raft.conf.learners.includes(s.member.id)),
    );
    gauge(
      "etcd_server_proposals_committed_total",
      "The total number of consensus proposals committed.",
      (s) => s.member.raft.log.committed,
    );
    gauge(
      "etcd_server_proposals_applied_total",
      "The total number of consensus proposals applied.",
      (s) => s.member.raft.log.applied,
    );
    gauge(
      "etcd_server_proposals_pending",
      "The current number of pending proposals to commit.",
      (s) => s.member.pendingProposals,
    );
    gauge("leasehold_raft_term", "The member's current Raft term.", (s) => s.member.raft.term);
    const dbHelp = "Total size of the underlying database physically allocated in bytes.";
    gauge("etcd_mvcc_db_total_size_in_bytes", dbHelp, (s) => s.dbSize());
    gauge("etcd_debugging_mvcc_db_total_size_in_bytes", dbHelp, (s) => s.dbSize());
    gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", (s) =>
      s.member.machine.currentRevision(),
    );
    gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.", (s) =>
      s.member.machine.compactedRevision(),
    );
    gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", (s) =>
      s.member.replica.hub.watcherCount(),
    );
    labelled(
      "etcd_server_id",
      "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
      "server_id",
      (s) => s.member.id.toString(16),
    );
    labelled(
      "etcd_server_version",
      "Which version is running. 1 for 'server_version' label with current version.",
      "server_version",
      () => REPORTED_VERSION,
    );
    labelled(
      "etcd_cluster_version",
      "Which version is running. 1 for 'cluster_version' label with current cluster version",
      "cluster_version",
      () => REPORTED_VERSION.split(".").slice(0, 2).join("."),
    );
  }
}
