/**
 * The leader's lease clock: deadlines, keepalives, expiry and checkpoints
 * (ARCHITECTURE "Leases", rules 1–4 and 8). NOT replicated state. It runs only
 * on the leader, takes the monotonic time as `nowMs` on every call and never
 * reads a clock. It never mutates the LeaseTable: it reads it once in
 * `becomeLeader`, then learns of every committed change through `onGrant`,
 * `onRevoke` and `onCheckpointApplied`, and hands back what to propose (lease
 * ids to revoke, checkpoints to write). Proposing is the caller's job.
 *
 * Notation: L = a lease's TTL, Δ = `electionTimeoutMs`, C =
 * `checkpointIntervalMs`, S = `spreadLeasesPerSecond`. A "promise" is what a
 * holder was told: a keepalive answered at leader time t promises t + L (the
 * holder, by rule 5, believes less: sendTime + L·(1 − ρ) ≤ t + L). A lease's
 * deadline is never below any promise made for it.
 *
 * ## Expiry
 * One queue ordered by (time, id) — an indexed binary heap, not a timer per
 * lease. `due(now, max)` returns the leases whose deadline passed, earliest
 * first, at most `max` (one revoke proposal); there is no rate limit, so N
 * leases falling due together take ceil(N / max) calls and O(N log N) work.
 * A returned lease is marked revoking and re-queued at now + `revokeRetryMs`:
 * it is not returned again unless its revoke has not been applied by then (a
 * proposal lost, e.g. dropped while a leadership transfer was under way).
 * Revoking a lease twice is harmless: the second revoke finds nothing.
 * A lease whose deadline passed cannot be renewed; a keepalive then answers
 * "expired" (etcd answers TTL 0 once the revoke is through).
 *
 * ## Keepalive
 * Sets deadline := max(deadline, now + L) — never earlier, so a deadline a
 * new leader extended is not shortened by the first keepalive — and answers L.
 * Unless a reduced checkpoint is in force (below): then the keepalive waits
 * for a reset to commit ("awaitCheckpoint"), as etcd's Renew does.
 *
 * ## Checkpoints: the rule
 * A checkpoint writes a lease's remaining TTL, rounded UP to whole seconds,
 * into the log. A checkpoint below L is "reduced"; one equal to L is a
 * "reset". The lessor keeps three rules:
 *  (K1) A reduced checkpoint is due for a lease when L > C (C whole seconds)
 *       and its remaining time (deadline − now, 0 once passed) has dropped C
 *       below the newest checkpoint written for it (L if none): i.e. at
 *       deadline − newest + C. Leases with L ≤ C are never checkpointed. At
 *       most one checkpoint per lease is in flight from `checkpointsDue` (the
 *       next waits for the apply). A lease already due for expiry still gets
 *       its checkpoint (0 s if expired), so a lost revoke does not bring it
 *       back with a full TTL; normally it has none due (its newest is ≤ C).
 *  (K2) From the moment a reduced checkpoint is handed out until a reset has
 *       been APPLIED (committed) with no reduced checkpoint still in flight,
 *       no keepalive is answered for that lease: `keepAlive` returns
 *       "awaitCheckpoint" and, once, the reset to propose. Applying the reset
 *       serves the waiting keepalive (deadline := max(deadline, now + L)).
 *  (K3) A new leader (`becomeLeader`, called once it has applied every entry
 *       of earlier terms, i.e. after its own first entry) sets, with R the
 *       table's remaining TTL:
 *         R < L (reduced):  deadline = now + R
 *         R = L:            deadline = now + L + Δ
 *       then spreads the burst (below).
 *
 * ## Why this is safe: a new leader never grants less than was promised
 * Raft with check-quorum and pre-vote (src/raft): a member votes only after it
 * has heard nothing from the leader for an election timeout, and a leader
 * checks every election timeout whether it heard from a quorum since the last
 * check, so it steps down at most 2Δ after its last contact with a quorum,
 * while that quorum waits Δ from the same contact before electing anyone. A
 * deposed leader therefore answers keepalives for at most Δ (plus a tick)
 * after the new leader is elected, and the new one's becomeLeader comes later
 * still. Leadership transfer must stop keepalive
 * answers on the old leader (the server's job; raft already refuses proposals).
 *  - Table shows R = L: the old leader's last answer was at t ≤ now + Δ, so
 *    every promise is ≤ now + Δ + L = the new deadline.
 *  - Table shows R < L, written by a checkpoint handed out at t_cp with R ≥
 *    (deadline at t_cp) − t_cp. By K2 no keepalive was answered after t_cp: a
 *    reset would have had to commit first, and a committed reset is in the new
 *    leader's log and applied before becomeLeader, so the table would show L.
 *    Every promise is ≤ deadline(t_cp) ≤ t_cp + R < now + R.
 *  Rounding R up to seconds only lengthens. Checkpoints of one lease are
 *  applied in the order proposed (one leader's proposals keep their order), so
 *  the table never shows an older, smaller R after a newer reset.
 *  Is "every lease at now + L" (the seed rule) safe? Only if the old leader
 *  has stopped answering before the new one starts; with the stale window
 *  above it must be now + L + Δ (etcd extends by the election timeout too).
 *  Without checkpoints that rule is always safe — it only extends. The
 *  checkpoints exist to bound HOW MUCH it extends for long TTLs.
 *
 * ## The bound
 * Assume the old leader called `checkpointsDue` at least once a second, until
 * it returned less than a full batch, and got everything it handed out
 * (checkpoints, resets) committed; let t_s be the last time that held,
 * g = now − t_s the failover gap at becomeLeader, and D the old leader's
 * deadline for the lease when it stopped (≥ every promise), where a keepalive
 * that waited for a reset which did commit counts as served when it asked
 * (the holder asked for that renewal, and the log granted it). Then, before
 * spreading (which adds at most floor((n − 1) / S) s, below):
 *
 *     promise ≤ D ≤ new deadline ≤ max(D, t_s) + g + Δ + min(L, C + 1 s)
 *
 * Why: R = L and L > C: if the reset came after t_s, the keepalive that asked
 * for it did too and D ≥ its time + L; otherwise no reduced checkpoint was
 * due at t_s, so D > t_s + L − C (the window [D − L + C, D) in which one is
 * due is ≥ 1 s long, C and L being whole seconds, so a drain falls in it; an
 * expired lease is checkpointed to 0 s). L ≤ C: trivially. R < L: the last
 * checkpoint is at most C old at t_s, overstates the remaining by < 1 s, and
 * no Δ is added. So a lease outlives its promise by at most one election
 * timeout plus min(TTL, C + 1 s) plus the time without a working leader. With
 * the default C = 5 min, leases up to 5 min never write a checkpoint; a 1 h
 * lease is extended by ≤ 5 min + 1 s + Δ + g per leader change, not by
 * another hour (etcd #9395, #9888). test/state/lease.property.test.ts checks
 * both inequalities on random histories with lost and late commits and stale
 * keepalive answers. The price: for a lease with L > C that went C without a
 * keepalive, the next keepalive costs one log entry and waits for it (etcd's
 * Renew does the same).
 *
 * ## Spreading the post-election burst
 * After (K3), leases seeded with the same deadline would all fall due at
 * once. Sorted by (deadline, id), the i-th gets
 *     d'_i = max(d_i, d'_{i−S} + 1000 ms),
 * so at most S leases fall due in any 1-second window, fewer than S + 1 leases
 * are never moved, and by induction d'_i ≤ d_i + floor(i / S) s. A lease
 * therefore expires no earlier than T (its deadline by K3, ≥ every promise)
 * and no later than T + floor((n − 1) / S) seconds, n the number of leases.
 * This spreading applies to this burst only; expiry itself has no rate limit.
 *
 * ## Caller contract
 * - Call `becomeLeader` after applying all entries of earlier terms; call
 *   `stepDown` when leadership is lost; afterwards everything answers
 *   "notLeader" or nothing until the next `becomeLeader`.
 * - Report every applied grant, revoke and checkpoint while leader
 *   (`onGrant`, `onRevoke`, `onCheckpointApplied`).
 * - Revokes and checkpoints name the incarnation (`LeaseRef.grantIndex`):
 *   propose them so (`table.revoke(id, {grantIndex})`,
 *   `table.checkpoint(id, s, {grantIndex})`), so that one decided for a lease
 *   does nothing to a later grant of the same id.
 * - Propose every checkpoint handed out, in the order handed out; if a
 *   proposal is refused before it enters the log, call `onCheckpointDropped`
 *   at once (before proposing anything newer for that lease).
 * - Clock drift: each duration is measured by one monotonic clock whose rate
 *   error is bounded by ρ, which the holder's (1 − ρ) factor absorbs.
 */

import { assert } from "../raft/index.ts";
import type { LeaseInfo, LeaseTable } from "./lease.ts";
import { compareIds } from "./lease.ts";
import type { LeaseId } from "./types.ts";

/** At most this many leases in one `due` batch (one revoke proposal). */
export const MAX_LEASES_PER_REVOKE_BATCH = 10_000;
/** At most this many checkpoints in one `checkpointsDue` batch (one proposal; etcd uses 1000 too). */
export const MAX_CHECKPOINTS_PER_BATCH = 1_000;
/** Default Δ: etcd's default election timeout. Pass the real one (plus a tick). */
export const DEFAULT_ELECTION_TIMEOUT_MS = 1_000;
/** Default C: etcd's default lease checkpoint interval. */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 300_000;
/** A revoke not applied this long after `due` returned it is returned again. */
export const DEFAULT_REVOKE_RETRY_MS = 3_000;
/** Default S: leases allowed to fall due per second in the post-election burst. */
export const DEFAULT_SPREAD_LEASES_PER_SECOND = 5_000;
/** Checkpoints in flight per lease: one reduced one and one reset at most. */
const IN_FLIGHT_MAX = 2;

export interface LessorOptions {
  /** Δ: how long a deposed leader may still answer keepalives after a new one is elected. */
  readonly electionTimeoutMs?: number;
  /** C: see K1 in the file header. A positive whole number of seconds. */
  readonly checkpointIntervalMs?: number;
  readonly revokeRetryMs?: number;
  /** S: see "Spreading" in the file header. */
  readonly spreadLeasesPerSecond?: number;
}

/** One incarnation of a lease id: the id and the Raft index of the grant (see lease.ts). */
export interface LeaseRef {
  readonly id: LeaseId;
  readonly grantIndex: number;
}

/** A checkpoint to propose: the lease's remaining TTL, whole seconds rounded up, for one incarnation. */
export interface LeaseCheckpoint extends LeaseRef {
  readonly remainingTtlSeconds: number;
}

/** The outcome of `keepAlive`. */
export type KeepAliveOutcome =
  /** Deadline reset; answer the holder with this TTL. */
  | { readonly kind: "renewed"; readonly ttlSeconds: number }
  /** No such lease: answer TTL 0 (etcd). */
  | { readonly kind: "notFound" }
  /** Its deadline passed and a revoke is due or under way: answer TTL 0 (etcd, after the revoke). */
  | { readonly kind: "expired" }
  /**
   * A reduced checkpoint is in force (K2): propose `propose` if set (a reset,
   * set only when none is in flight), and call keepAlive again once a
   * checkpoint of this lease has been applied.
   */
  | { readonly kind: "awaitCheckpoint"; readonly propose: LeaseCheckpoint | undefined }
  | { readonly kind: "notLeader" };

/** The outcome of `remainingMs`. */
export type RemainingOutcome =
  | { readonly kind: "ok"; readonly remainingMs: number }
  | { readonly kind: "notFound" }
  | { readonly kind: "notLeader" };

/**
 * The lessor's state of one lease. It is also the item of both time queues
 * (the queue keeps its position here), so a lease costs this one object, a
 * map entry and a slot in each queue: no entry objects, no index maps.
 */
interface Tracked {
  readonly id: LeaseId;
  readonly grantIndex: number;
  readonly ttlMs: number;
  /** Invariant: ≥ every promise made for this lease. Never decreases. */
  deadlineMs: number;
  /** Set when `due` returned the lease; it stays until onRevoke. */
  revokeHandedOutAtMs: number | undefined;
  /** The table's remaining TTL (ms) as last applied. */
  appliedRemainingMs: number;
  /**
   * Checkpoints handed out and not yet applied, oldest first (ms). Replaced,
   * never mutated (NONE_IN_FLIGHT is shared). Invariant: length ≤ IN_FLIGHT_MAX.
   */
  inFlightMs: readonly number[];
  /** A keepalive waits for the reset in flight (K2). */
  renewWaiting: boolean;
  /** Position in `expiry` (-1: not queued). */
  expiryPos: number;
  /** Position in `checkpoints` (-1: not queued). */
  checkpointPos: number;
}

/** The in-flight list of a lease with no checkpoint in flight: shared by all of them. */
const NONE_IN_FLIGHT: readonly number[] = Object.freeze([]);

/** Where a Tracked keeps its position in each queue. */
const EXPIRY_SLOT: QueueSlot<Tracked> = {
  get: (t) => t.expiryPos,
  set: (t, pos) => {
    t.expiryPos = pos;
  },
};
const CHECKPOINT_SLOT: QueueSlot<Tracked> = {
  get: (t) => t.checkpointPos,
  set: (t, pos) => {
    t.checkpointPos = pos;
  },
};

/** The leader's lease duties. See the file header for the rules and the contract. */
export class Lessor {
  readonly electionTimeoutMs: number;
  readonly checkpointIntervalMs: number;
  readonly revokeRetryMs: number;
  readonly spreadLeasesPerSecond: number;
  private leader = false;
  private readonly leases = new Map<LeaseId, Tracked>();
  /** Keyed by deadline, or by the retry time for a lease being revoked. */
  private readonly expiry = new TimeQueue(EXPIRY_SLOT);
  /** Keyed by the time the next reduced checkpoint is due (K1); only leases eligible for one. */
  private readonly checkpoints = new TimeQueue(CHECKPOINT_SLOT);

  constructor(options: LessorOptions = {}) {
    this.electionTimeoutMs = options.electionTimeoutMs ?? DEFAULT_ELECTION_TIMEOUT_MS;
    this.checkpointIntervalMs = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.revokeRetryMs = options.revokeRetryMs ?? DEFAULT_REVOKE_RETRY_MS;
    this.spreadLeasesPerSecond = options.spreadLeasesPerSecond ?? DEFAULT_SPREAD_LEASES_PER_SECOND;
    assert(this.electionTimeoutMs >= 0, "lessor: negative election timeout");
    assert(
      Number.isSafeInteger(this.checkpointIntervalMs / 1_000) && this.checkpointIntervalMs >= 1_000,
      "lessor: checkpoint interval must be a positive number of whole seconds",
    );
    assert(this.revokeRetryMs > 0, "lessor: revoke retry must be positive");
    assert(
      Number.isSafeInteger(this.spreadLeasesPerSecond) && this.spreadLeasesPerSecond >= 1,
      "lessor: bad spread",
    );
  }

  get isLeader(): boolean {
    return this.leader;
  }

  /** Number of leases tracked (0 when not leader). */
  get size(): number {
    return this.leases.size;
  }

  /** Takes up lease duties: every lease in `table` gets its deadline by K3, then the burst is spread. */
  becomeLeader(nowMs: number, table: LeaseTable): void {
    assert(!this.leader, "lessor: becomeLeader while leader (stepDown first)");
    assert(this.leases.size === 0, "lessor: state left over from an earlier term");
    this.leader = true;
    const seeded: Tracked[] = [];
    for (const id of table.ids()) {
      const info = table.get(id)!;
      seeded.push(this.track(info, this.takeoverDeadlineMs(info, nowMs)));
    }
    seeded.sort((a, b) => a.deadlineMs - b.deadlineMs || compareIds(a.id, b.id));
    const s = this.spreadLeasesPerSecond;
    for (let i = s; i < seeded.length; i++) {
      const t = seeded[i]!;
      t.deadlineMs = Math.max(t.deadlineMs, seeded[i - s]!.deadlineMs + 1_000);
    }
    for (const t of seeded) {
      this.expiry.set(t, t.deadlineMs);
      this.scheduleCheckpoint(t);
    }
  }

  /**
   * K3: the deadline a new leader gives a lease the table shows as `info`:
   * now + R when checkpointed below its TTL, else now + L + Δ. (Protected so
   * that the simulator's planted-bug variants can replace the rule.)
   */
  protected takeoverDeadlineMs(info: LeaseInfo, nowMs: number): number {
    const ttlMs = info.ttlSeconds * 1000;
    const remainingMs = info.remainingTtlSeconds * 1000;
    return remainingMs < ttlMs ? nowMs + remainingMs : nowMs + ttlMs + this.electionTimeoutMs;
  }

  /** Drops every lease duty (leadership lost). */
  stepDown(): void {
    this.leader = false;
    this.leases.clear();
    this.expiry.clear();
    this.checkpoints.clear();
  }

  /**
   * A grant was applied at `nowMs` (`lease` as the table has it now): the
   * lease runs until now + TTL. Ignored when not leader.
   */
  onGrant(lease: LeaseInfo, nowMs: number): void {
    if (!this.leader) return;
    assert(!this.leases.has(lease.id), `lessor: grant of tracked lease ${lease.id}`);
    assert(lease.remainingTtlSeconds === lease.ttlSeconds, `lessor: fresh lease ${lease.id} checkpointed`);
    const t = this.track(lease, nowMs + lease.ttlSeconds * 1000);
    this.expiry.set(t, t.deadlineMs);
    this.scheduleCheckpoint(t);
  }

  /** A revoke (expiry or client request) was applied. Ignored for unknown leases or when not leader. */
  onRevoke(id: LeaseId): void {
    if (!this.leader) return;
    const t = this.leases.get(id);
    if (t === undefined) return;
    this.leases.delete(id);
    this.expiry.delete(t);
    this.checkpoints.delete(t);
  }

  /**
   * Checkpoint `cp` was applied at `nowMs` (it is the oldest one in flight for
   * its lease). A reset that a keepalive waits for renews the lease (K2).
   * Ignored for a revoked lease or another incarnation, as the table ignores it.
   */
  onCheckpointApplied(cp: LeaseCheckpoint, nowMs: number): void {
    if (!this.leader) return;
    const t = this.find(cp);
    if (t === undefined) return;
    const remainingMs = cp.remainingTtlSeconds * 1000;
    assert(
      t.inFlightMs[0] === remainingMs,
      `lessor: checkpoint ${cp.remainingTtlSeconds}s of ${cp.id} not handed out`,
    );
    t.inFlightMs = t.inFlightMs.length === 1 ? NONE_IN_FLIGHT : t.inFlightMs.slice(1);
    t.appliedRemainingMs = remainingMs;
    if (t.renewWaiting && this.mayRenew(t) && t.revokeHandedOutAtMs === undefined && nowMs < t.deadlineMs) {
      t.renewWaiting = false;
      this.renew(t, nowMs);
    }
    this.scheduleCheckpoint(t);
  }

  /** `cp`, the newest checkpoint handed out for its lease, was refused by Raft and never entered the log. */
  onCheckpointDropped(cp: LeaseCheckpoint): void {
    if (!this.leader) return;
    const t = this.find(cp);
    if (t === undefined) return;
    const dropped = t.inFlightMs[t.inFlightMs.length - 1];
    assert(
      dropped === cp.remainingTtlSeconds * 1000,
      `lessor: dropped checkpoint of ${cp.id} is not the newest`,
    );
    t.inFlightMs = t.inFlightMs.length === 1 ? NONE_IN_FLIGHT : t.inFlightMs.slice(0, -1);
    if (dropped === t.ttlMs) t.renewWaiting = false; // the waiting keepalive retries and re-proposes
    this.scheduleCheckpoint(t);
  }

  /** A keepalive for `id` arrived at `nowMs`. See KeepAliveOutcome. */
  keepAlive(id: LeaseId, nowMs: number): KeepAliveOutcome {
    if (!this.leader) return { kind: "notLeader" };
    const t = this.leases.get(id);
    if (t === undefined) return { kind: "notFound" };
    if (t.revokeHandedOutAtMs !== undefined || nowMs >= t.deadlineMs) return { kind: "expired" };
    if (!this.mayRenew(t)) {
      t.renewWaiting = true;
      if (t.inFlightMs[t.inFlightMs.length - 1] === t.ttlMs)
        return { kind: "awaitCheckpoint", propose: undefined };
      t.inFlightMs = [...t.inFlightMs, t.ttlMs];
      assert(t.inFlightMs.length <= IN_FLIGHT_MAX, `lessor: too many checkpoints in flight for ${id}`);
      this.scheduleCheckpoint(t);
      const propose = { id, grantIndex: t.grantIndex, remainingTtlSeconds: t.ttlMs / 1000 };
      return { kind: "awaitCheckpoint", propose };
    }
    this.renew(t, nowMs);
    this.scheduleCheckpoint(t);
    return { kind: "renewed", ttlSeconds: t.ttlMs / 1000 };
  }

  /** Time left until `id`'s deadline (0 once it passed), for LeaseTimeToLive. */
  remainingMs(id: LeaseId, nowMs: number): RemainingOutcome {
    if (!this.leader) return { kind: "notLeader" };
    const t = this.leases.get(id);
    if (t === undefined) return { kind: "notFound" };
    const remainingMs = t.revokeHandedOutAtMs === undefined ? Math.max(0, t.deadlineMs - nowMs) : 0;
    return { kind: "ok", remainingMs };
  }

  /** `id`'s deadline on this leader's monotonic clock (for tests, traces and the simulator's checks). */
  deadlineMs(id: LeaseId): number | undefined {
    return this.leases.get(id)?.deadlineMs;
  }

  /**
   * The leases whose deadline passed by `nowMs`, earliest first, at most
   * `max`: one revoke proposal (each revoke names the incarnation, so it does
   * not touch a re-grant of the id). Each is marked revoking and not returned
   * again until `revokeRetryMs` later, unless `onRevoke` comes first.
   */
  due(nowMs: number, max: number = MAX_LEASES_PER_REVOKE_BATCH): LeaseRef[] {
    assert(Number.isSafeInteger(max) && max >= 1, `lessor: bad batch size ${max}`);
    if (!this.leader) return [];
    const out: LeaseRef[] = [];
    while (out.length < max) {
      const t = this.expiry.peek();
      if (t === undefined) break;
      const atMs = this.expiry.peekAtMs();
      if (atMs > nowMs) break;
      assert(t.deadlineMs <= atMs, `lessor: lease ${t.id} queued before its deadline`);
      t.revokeHandedOutAtMs = nowMs;
      this.expiry.set(t, nowMs + this.revokeRetryMs);
      out.push({ id: t.id, grantIndex: t.grantIndex });
    }
    return out;
  }

  /**
   * The reduced checkpoints due by `nowMs` (K1), earliest first, at most
   * `max`: one proposal. Each is in flight from now on (K2).
   */
  checkpointsDue(nowMs: number, max: number = MAX_CHECKPOINTS_PER_BATCH): LeaseCheckpoint[] {
    assert(Number.isSafeInteger(max) && max >= 1, `lessor: bad batch size ${max}`);
    if (!this.leader) return [];
    const out: LeaseCheckpoint[] = [];
    while (out.length < max) {
      const t = this.checkpoints.peek();
      if (t === undefined || this.checkpoints.peekAtMs() > nowMs) break;
      this.checkpoints.delete(t);
      assert(t.inFlightMs.length === 0, `lessor: checkpoint of ${t.id} queued while one is in flight`);
      const seconds = Math.max(0, Math.ceil((t.deadlineMs - nowMs) / 1000));
      assert(seconds * 1000 < t.ttlMs, `lessor: reduced checkpoint of ${t.id} not below its TTL`);
      t.inFlightMs = [seconds * 1000];
      out.push({ id: t.id, grantIndex: t.grantIndex, remainingTtlSeconds: seconds });
    }
    return out;
  }

  /** One line per lease, ascending ids, deterministic (CONVENTIONS 12). */
  describe(nowMs: number): string {
    const ids = [...this.leases.keys()].sort(compareIds);
    return ids
      .map((id) => {
        const t = this.leases.get(id)!;
        const state = t.revokeHandedOutAtMs !== undefined ? " revoking" : this.mayRenew(t) ? "" : " reduced";
        const inFlight =
          t.inFlightMs.length > 0 ? ` inFlight=${t.inFlightMs.map((ms) => ms / 1000).join(",")}s` : "";
        return `lease ${id} ttl=${t.ttlMs / 1000}s left=${t.deadlineMs - nowMs}ms${state}${inFlight}`;
      })
      .join("\n");
  }

  private track(lease: LeaseInfo, deadlineMs: number): Tracked {
    const ttlMs = lease.ttlSeconds * 1000;
    assert(Number.isSafeInteger(ttlMs) && ttlMs > 0, `lessor: bad TTL for ${lease.id}`);
    const t: Tracked = {
      id: lease.id,
      grantIndex: lease.grantIndex,
      ttlMs,
      deadlineMs,
      revokeHandedOutAtMs: undefined,
      appliedRemainingMs: lease.remainingTtlSeconds * 1000,
      inFlightMs: NONE_IN_FLIGHT,
      renewWaiting: false,
      expiryPos: -1,
      checkpointPos: -1,
    };
    this.leases.set(lease.id, t);
    return t;
  }

  /** The tracked lease `ref` names, unless that incarnation is gone. */
  private find(ref: LeaseRef): Tracked | undefined {
    const t = this.leases.get(ref.id);
    return t !== undefined && t.grantIndex === ref.grantIndex ? t : undefined;
  }

  /** K2: a keepalive may be answered only if the table shows the full TTL and no reduced checkpoint is in flight. */
  private mayRenew(t: Tracked): boolean {
    return t.appliedRemainingMs === t.ttlMs && t.inFlightMs.every((ms) => ms === t.ttlMs);
  }

  private renew(t: Tracked, nowMs: number): void {
    t.deadlineMs = Math.max(t.deadlineMs, nowMs + t.ttlMs);
    this.expiry.set(t, t.deadlineMs);
  }

  /** Puts `t` in the checkpoint queue at its K1 time if it is eligible, else takes it out. */
  private scheduleCheckpoint(t: Tracked): void {
    // With nothing in flight, the newest checkpoint written is the applied one (L if none).
    const newestMs = t.appliedRemainingMs;
    const eligible = t.inFlightMs.length === 0 && newestMs > this.checkpointIntervalMs;
    if (eligible) this.checkpoints.set(t, t.deadlineMs - newestMs + this.checkpointIntervalMs);
    else this.checkpoints.delete(t);
  }
}

/** Where a queue item keeps its position in one queue (-1: not in it). */
export interface QueueSlot<T> {
  get(item: T): number;
  set(item: T, pos: number): void;
}

/** Initial capacity of a queue's time array; it doubles as needed. */
const QUEUE_CAPACITY_MIN = 16;

/**
 * An indexed binary min-heap of items ordered by (atMs, id): set, delete and
 * re-key in O(log n), peek in O(1). Ties break by id, so the order is the
 * same on every run. Items are objects with an id; each keeps its own
 * position in the heap (`slot`), and the times sit in a Float64Array beside
 * the heap array, so an item costs two array slots and no entry object or
 * map entry. An item may be in several queues, with one slot for each.
 */
export class TimeQueue<T extends { readonly id: LeaseId }> {
  private readonly heap: T[] = [];
  /** times[i] is heap[i]'s time. Invariant: times.length ≥ heap.length. */
  private times = new Float64Array(QUEUE_CAPACITY_MIN);

  constructor(private readonly slot: QueueSlot<T>) {}

  get size(): number {
    return this.heap.length;
  }

  /** Inserts `item` at `atMs`, or moves it there. */
  set(item: T, atMs: number): void {
    const i = this.slot.get(item);
    if (i < 0) {
      const n = this.heap.length;
      if (n === this.times.length) {
        const grown = new Float64Array(n * 2);
        grown.set(this.times);
        this.times = grown;
      }
      this.heap.push(item);
      this.up(n, item, atMs);
      return;
    }
    assert(this.heap[i] === item, `time queue: item ${item.id} out of place`);
    if (atMs < this.times[i]!) this.up(i, item, atMs);
    else this.down(i, item, atMs);
  }

  /** Removes `item` if it is queued. */
  delete(item: T): void {
    const i = this.slot.get(item);
    if (i < 0) return;
    assert(this.heap[i] === item, `time queue: item ${item.id} out of place`);
    this.slot.set(item, -1);
    const last = this.heap.pop()!;
    const lastAtMs = this.times[this.heap.length]!;
    if (last === item) return;
    this.up(i, last, lastAtMs);
    const at = this.slot.get(last);
    this.down(at, last, lastAtMs);
  }

  /** The earliest item. */
  peek(): T | undefined {
    return this.heap[0];
  }

  /** The time of the earliest item (+Infinity when empty). */
  peekAtMs(): number {
    return this.heap.length === 0 ? Number.POSITIVE_INFINITY : this.times[0]!;
  }

  has(item: T): boolean {
    return this.slot.get(item) >= 0;
  }

  clear(): void {
    for (const item of this.heap) this.slot.set(item, -1);
    this.heap.length = 0;
    this.times = new Float64Array(QUEUE_CAPACITY_MIN);
  }

  /** Places (`item`, `atMs`) at `i` or above it. */
  private up(i: number, item: T, atMs: number): void {
    const h = this.heap;
    const times = this.times;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p]!;
      if (!before(atMs, item, times[p]!, parent)) break;
      h[i] = parent;
      times[i] = times[p]!;
      this.slot.set(parent, i);
      i = p;
    }
    h[i] = item;
    times[i] = atMs;
    this.slot.set(item, i);
  }

  /** Places (`item`, `atMs`) at `i` or below it. */
  private down(i: number, item: T, atMs: number): void {
    const h = this.heap;
    const times = this.times;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && before(times[r]!, h[r]!, times[l]!, h[l]!) ? r : l;
      const child = h[c]!;
      if (!before(times[c]!, child, atMs, item)) break;
      h[i] = child;
      times[i] = times[c]!;
      this.slot.set(child, i);
      i = c;
    }
    h[i] = item;
    times[i] = atMs;
    this.slot.set(item, i);
  }
}

/** Whether (aAtMs, a) comes before (bAtMs, b) in a TimeQueue: earlier, or as early with a smaller id. */
function before(
  aAtMs: number,
  a: { readonly id: LeaseId },
  bAtMs: number,
  b: { readonly id: LeaseId },
): boolean {
  return aAtMs < bAtMs || (aAtMs === bAtMs && a.id < b.id);
}
