/**
 * Majority math (Raft §5.3, §5.2): the commit index a quorum has reached, and
 * the outcome of a vote. Pure functions over small arrays.
 */

import type { LogIndex, MemberId } from "./types.ts";
import { logIndex } from "./types.ts";

/**
 * The highest index that a majority of `voters` have matched, given each
 * voter's match index (missing = 0). With no voters, +Infinity would be wrong;
 * callers never ask with an empty set.
 */
export function committedIndex(voters: readonly MemberId[], match: (id: MemberId) => LogIndex): LogIndex {
  const n = voters.length;
  if (n === 0) return logIndex(0);
  // Insertion sort, descending: voter sets are tiny and this runs on every append response.
  const idx = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const v = match(voters[i]!);
    let j = i;
    while (j > 0 && idx[j - 1]! < v) {
      idx[j] = idx[j - 1]!;
      j--;
    }
    idx[j] = v;
  }
  return logIndex(idx[Math.floor(n / 2)]!);
}

export type VoteOutcome = "won" | "lost" | "pending";

/** Tallies votes: granted by a majority wins; rejected by a majority loses. */
export function voteOutcome(voters: readonly MemberId[], votes: ReadonlyMap<MemberId, boolean>): VoteOutcome {
  const q = Math.floor(voters.length / 2) + 1;
  let granted = 0;
  let rejected = 0;
  for (const v of voters) {
    const got = votes.get(v);
    if (got === true) granted++;
    else if (got === false) rejected++;
  }
  if (granted >= q) return "won";
  if (rejected >= q) return "lost";
  return "pending";
}

/** Whether `acked` contains a majority of `voters`. */
export function hasQuorum(voters: readonly MemberId[], acked: (id: MemberId) => boolean): boolean {
  let n = 0;
  for (const v of voters) if (acked(v)) n++;
  return n >= Math.floor(voters.length / 2) + 1;
}
