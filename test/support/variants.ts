/**
 * Raft and Lessor variants with planted bugs, built by overriding one rule of
 * the real code. The simulator must catch each of them (issue 2 §4, issue 3
 * §7); the production classes have no switch that enables any of them.
 */

import { NO_MEMBER, Raft } from "../../src/raft/index.ts";
import { committedIndex } from "../../src/raft/quorum.ts";
import type { HardState, MsgVote } from "../../src/raft/types.ts";
import type { LessorFactory, RaftFactory } from "../../src/sim/simulator.ts";
import type { LeaseId, LeaseInfo, LeaseRef } from "../../src/state/index.ts";
import { Lessor } from "../../src/state/index.ts";

/** (a) Commits any entry a majority holds, even one from an earlier term (Raft paper Figure 8). */
class CommitsPriorTerm extends Raft {
  protected override maybeCommit(): boolean {
    const mci = committedIndex(this.conf.voters, (id) => this.matchOf(id));
    if (mci <= this.log.committed) return false;
    this.commitTo(mci);
    return true;
  }
}

/** (b) Grants votes without the election restriction (§5.4.1). */
class VotesWithoutLogCheck extends Raft {
  protected override candidateUpToDate(_m: MsgVote): boolean {
    return true;
  }
}

/** (c) Answers votes but never persists whom it voted for. */
class ForgetsVote extends Raft {
  protected override hardStateForReady(): HardState {
    return { ...this.hardState(), vote: NO_MEMBER };
  }
}

export const plantedBugs: Record<
  "commitPriorTerm" | "voteWithoutLogCheck" | "voteNotPersisted",
  RaftFactory
> = {
  commitPriorTerm: (c, i) => new CommitsPriorTerm(c, i),
  voteWithoutLogCheck: (c, i) => new VotesWithoutLogCheck(c, i),
  voteNotPersisted: (c, i) => new ForgetsVote(c, i),
};

/**
 * Remembers, on every member, when each grant was applied by its own clock:
 * the deadline a follower would compute, never seeing a keepalive (those are
 * answered by the leader from memory).
 */
class FollowerView extends Lessor {
  protected readonly seen = new Map<LeaseId, { grantIndex: number; deadlineMs: number }>();

  override onGrant(lease: LeaseInfo, nowMs: number): void {
    if (!this.isLeader)
      this.seen.set(lease.id, { grantIndex: lease.grantIndex, deadlineMs: nowMs + lease.ttlSeconds * 1000 });
    super.onGrant(lease, nowMs);
  }

  override onRevoke(id: LeaseId): void {
    this.seen.delete(id);
    super.onRevoke(id);
  }
}

/** (d) A follower expires leases on its own clock (and hands the revokes to the leader). */
class FollowerExpires extends FollowerView {
  override due(nowMs: number, max?: number): LeaseRef[] {
    if (this.isLeader) return super.due(nowMs, max);
    const out: LeaseRef[] = [];
    for (const [id, t] of this.seen) {
      if (t.deadlineMs > nowMs) continue;
      out.push({ id, grantIndex: t.grantIndex });
      this.seen.delete(id);
    }
    return out;
  }
}

/** (e) A new leader keeps the deadlines it saw as a follower, without extending them (rule 4). */
class KeepsOldDeadlines extends FollowerView {
  protected override takeoverDeadlineMs(info: LeaseInfo, nowMs: number): number {
    return this.seen.get(info.id)?.deadlineMs ?? nowMs + info.remainingTtlSeconds * 1000;
  }
}

/** (f) Hands expired leases out for revocation 700 ms after their deadline (a slow expiry loop). */
class ExpiresLate extends Lessor {
  override due(nowMs: number, max?: number): LeaseRef[] {
    return super.due(nowMs - 700, max);
  }
}

export const plantedLessorBugs: Record<
  "followerExpires" | "newLeaderKeepsOldDeadlines" | "expiresLate",
  LessorFactory
> = {
  followerExpires: (o) => new FollowerExpires(o),
  newLeaderKeepsOldDeadlines: (o) => new KeepsOldDeadlines(o),
  expiresLate: (o) => new ExpiresLate(o),
};
