/**
 * Raft variants with planted bugs, built by overriding one protected rule of
 * the real core. The simulator must catch each of them (issue 2 §4); the
 * production class has no switch that enables any of them.
 */

import { NO_MEMBER, Raft } from "../../src/raft/index.ts";
import { committedIndex } from "../../src/raft/quorum.ts";
import type { HardState, MsgVote } from "../../src/raft/types.ts";
import type { RaftFactory } from "../../src/sim/simulator.ts";

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
