/**
 * The leader's evidence, in real time, that it still leads: for each voter,
 * the latest time (on the leader's own monotonic clock) such that the voter
 * was still following it in its current term after that time: the send time
 * of the leader's message the voter had last received when it replied (peers
 * echo it: envelope.ts). A keepalive is answered from the lessor's memory only
 * while a quorum (this member included) is fresh within one election timeout.
 *
 * Why: Raft's check-quorum counts ticks, and ticks are timers. An event loop
 * that stalls (a long GC, a slow disk under a synchronous fsync) delays the
 * ticks, so a leader cut off during the stall would go on answering
 * keepalives after it resumes, for up to an election timeout of ticks, while
 * the majority elected a successor long ago in real time. The lessor's bound
 * (a deposed leader answers for at most Δ = election timeout + a tick after
 * the successor's election, which the successor's takeover adds to every
 * deadline) needs that window measured on the monotonic clock. Followers that
 * voted for a successor answer with the higher term (which deposes this
 * member at once) or not at all; so once a quorum has moved on, at most one
 * election timeout passes before this check fails.
 */

import type { MemberId } from "../raft/index.ts";

export class QuorumContact {
  private readonly heard = new Map<MemberId, { term: number; atMs: number }>();

  /**
   * `from` sent a message of `term` after it had heard from this member at
   * `atMs` (this member's monotonic clock: the echo of its own send time).
   */
  note(from: MemberId, term: number, atMs: number): void {
    this.heard.set(from, { term, atMs });
  }

  /** Whether `self` and the voters heard from in `term` within `windowMs` before `nowMs` make a quorum of `voters`. */
  hasQuorum(
    self: MemberId,
    voters: readonly MemberId[],
    term: number,
    nowMs: number,
    windowMs: number,
  ): boolean {
    let fresh = 0;
    for (const v of voters) {
      if (v === self) {
        fresh++;
        continue;
      }
      const h = this.heard.get(v);
      if (h !== undefined && h.term === term && nowMs - h.atMs <= windowMs) fresh++;
    }
    return fresh >= Math.floor(voters.length / 2) + 1;
  }
}
