/**
 * The leader's view of one follower (thesis §3.5, etcd-raft's tracker):
 * what it has matched, what to send next, and how fast.
 *
 * - probe: one append in flight at a time until the follower's log position is found;
 * - replicate: pipelined appends, at most `inflightMax` messages unacknowledged;
 * - snapshot: a snapshot was sent; nothing else until it is acknowledged or
 *   given up on (the host reports failure, or a timeout in ticks passes).
 */

import { assert } from "./assert.ts";
import type { LogIndex } from "./types.ts";
import { logIndex } from "./types.ts";

export type ProgressState = "probe" | "replicate" | "snapshot";

/** A bounded FIFO of the last indexes of in-flight appends (the pipelining window). */
export class Inflights {
  private readonly buf: number[];
  private start = 0;
  count = 0;

  constructor(readonly sizeMax: number) {
    assert(sizeMax > 0, "inflights: size must be positive");
    this.buf = new Array<number>(sizeMax).fill(0);
  }

  full(): boolean {
    return this.count === this.sizeMax;
  }

  add(lastIndex: LogIndex): void {
    assert(!this.full(), "inflights: add to a full window");
    this.buf[(this.start + this.count) % this.sizeMax] = lastIndex;
    this.count++;
  }

  /** Frees every in-flight message whose last index is <= `index`. */
  freeTo(index: LogIndex): void {
    while (this.count > 0 && this.buf[this.start]! <= index) {
      this.start = (this.start + 1) % this.sizeMax;
      this.count--;
    }
  }

  /** Frees the oldest in-flight message (it was probably lost). */
  freeFirst(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.sizeMax;
    this.count--;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

export class Progress {
  /** Highest index known replicated on the follower. Invariant: match < next. */
  match: LogIndex;
  next: LogIndex;
  state: ProgressState = "probe";
  /** In probe state: an append was sent and not yet answered (or a heartbeat interval passed). */
  probeSent = false;
  /** In snapshot state: the index of the snapshot sent. */
  pendingSnapshot: LogIndex = logIndex(0);
  /** Ticks spent in snapshot state; past the limit we fall back to probing. */
  snapshotTicks = 0;
  /** Heard from this member since the last check-quorum round. */
  recentActive = false;
  readonly inflights: Inflights;
  /** Learners receive the log but do not vote; promotion flips this in place. */
  isLearner: boolean;
  /** The commit index carried by the last append sent (a batched broadcast skips a follower that has it). */
  commitSent: LogIndex = logIndex(0);

  constructor(next: LogIndex, inflightMax: number, isLearner: boolean) {
    this.match = logIndex(0);
    this.next = next;
    this.inflights = new Inflights(inflightMax);
    this.isLearner = isLearner;
  }

  becomeProbe(): void {
    // After a snapshot, probing starts right after it.
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = logIndex(Math.max(this.match + 1, pending + 1));
    } else {
      this.resetState("probe");
      this.next = logIndex(this.match + 1);
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = logIndex(this.match + 1);
  }

  becomeSnapshot(index: LogIndex): void {
    this.resetState("snapshot");
    this.pendingSnapshot = index;
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = logIndex(0);
    this.snapshotTicks = 0;
    this.inflights.reset();
  }

  /** Records a successful append up to `index`; returns whether anything advanced. */
  maybeUpdate(index: LogIndex): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < index + 1) this.next = logIndex(index + 1);
    return updated;
  }

  /** Optimistically advances `next` after sending entries up to `last` (replicate state). */
  sentEntries(last: LogIndex): void {
    if (this.state === "replicate") {
      this.next = logIndex(last + 1);
      this.inflights.add(last);
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  /**
   * A rejection of an append at `rejected`; `hint` is the follower's suggested
   * next probe point. Returns false if the rejection is stale (out of order).
   */
  maybeDecrTo(rejected: LogIndex, hint: LogIndex): boolean {
    if (this.state === "replicate") {
      // Stale if we already know the follower matched beyond it.
      if (rejected <= this.match) return false;
      this.next = logIndex(this.match + 1);
      return true;
    }
    // Probe: only the rejection of the probe we sent (next-1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = logIndex(Math.max(Math.min(rejected, hint + 1), this.match + 1, 1));
    this.probeSent = false;
    return true;
  }

  /** Whether the leader must hold off sending appends to this follower. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
