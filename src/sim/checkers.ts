/**
 * Raft safety checkers run by the simulator after every event (Raft paper
 * Figure 3): election safety, log matching, leader completeness, state machine
 * safety, and a commit index that never moves back. Each records violations as
 * text; the simulator stops at the first one.
 */

import type { Entry, LogIndex, MemberId, Raft, Term } from "../raft/index.ts";
import { describeEntry, logIndex } from "../raft/index.ts";

const keys = new WeakMap<Entry, string>();

/** A comparable identity for an entry's content (cached: entries are immutable). */
function entryKey(e: Entry): string {
  let k = keys.get(e);
  if (k === undefined) {
    k = `${e.term}|${e.index}|${e.kind}|${Buffer.from(e.data).toString("base64")}`;
    keys.set(e, k);
  }
  return k;
}

export class SafetyChecker {
  readonly violations: string[] = [];
  /** term -> the member that led it. */
  private leaders = new Map<number, MemberId>();
  /** index -> key of the entry known committed there. */
  private committed = new Map<number, { key: string; text: string }>();
  private committedMax = 0;
  /** (member, term) pairs whose log was checked for completeness on becoming leader. */
  private completenessChecked = new Set<string>();
  /** Highest commit index seen per member incarnation, and durable commit per member. */
  private commitSeen = new Map<string, number>();
  private durableCommit = new Map<MemberId, number>();
  /** Per member incarnation: committed entries already compared. */
  private verifiedTo = new Map<string, number>();

  private fail(msg: string): void {
    if (this.violations.length < 10) this.violations.push(msg);
  }

  /** After every event, for each live member. */
  observe(raft: Raft, incarnation: number): void {
    if (raft.role === "leader") {
      const prev = this.leaders.get(raft.term);
      if (prev === undefined) this.leaders.set(raft.term, raft.id);
      else if (prev !== raft.id)
        this.fail(`election safety: members ${prev} and ${raft.id} both led term ${raft.term}`);
      const k = `${raft.id}/${raft.term}`;
      if (!this.completenessChecked.has(k)) {
        this.completenessChecked.add(k);
        this.checkCompleteness(raft);
      }
    }
    const ck = `${raft.id}/${incarnation}`;
    const seen = this.commitSeen.get(ck) ?? 0;
    if (raft.log.committed < seen) {
      this.fail(`commit moved back: member ${raft.id} from ${seen} to ${raft.log.committed}`);
    }
    this.commitSeen.set(ck, raft.log.committed);
    this.recordCommitted(raft, ck);
  }

  /** The commit index a member persisted must never decrease across restarts. */
  observeDurableCommit(id: MemberId, commit: LogIndex): void {
    const prev = this.durableCommit.get(id) ?? 0;
    if (commit < prev) this.fail(`durable commit moved back: member ${id} from ${prev} to ${commit}`);
    else this.durableCommit.set(id, commit);
  }

  /** A member applied `e`: it must be what every other member applied at that index. */
  observeApply(id: MemberId, e: Entry): void {
    const key = entryKey(e);
    const known = this.committed.get(e.index);
    if (known === undefined) {
      this.committed.set(e.index, { key, text: describeEntry(e) });
      if (e.index > this.committedMax) this.committedMax = e.index;
    } else if (known.key !== key) {
      this.fail(
        `state machine safety: member ${id} applied ${describeEntry(e)} at ${e.index}, others applied ${known.text}`,
      );
    }
  }

  /** Every entry a member holds as committed must equal what is known committed at that index. */
  private recordCommitted(raft: Raft, ck: string): void {
    const hi = Math.min(raft.log.committed, raft.log.lastIndex());
    const from = Math.max(raft.log.firstIndex(), (this.verifiedTo.get(ck) ?? 0) + 1);
    for (let i = from; i <= hi; i++) {
      const e = raft.log.entryAt(logIndex(i));
      const key = entryKey(e);
      const known = this.committed.get(i);
      if (known === undefined) {
        this.committed.set(i, { key, text: describeEntry(e) });
        if (i > this.committedMax) this.committedMax = i;
      } else if (known.key !== key) {
        this.fail(
          `state machine safety: member ${raft.id} committed ${describeEntry(e)} at ${i}, known ${known.text}`,
        );
        return;
      }
    }
    if (hi >= from) this.verifiedTo.set(ck, hi);
  }

  /** Leader completeness (§5.4): a new leader's log holds every committed entry. */
  private checkCompleteness(raft: Raft): void {
    const first = raft.log.firstIndex();
    const last = raft.log.lastIndex();
    for (let i = this.committedMax; i >= 1; i--) {
      if (i < first - 1) break; // compacted into the snapshot, which holds only committed state
      const c = this.committed.get(i);
      if (c === undefined) continue;
      if (i > last) {
        this.fail(`leader completeness: leader ${raft.id} of term ${raft.term} lacks committed index ${i}`);
        return;
      }
      if (i < first) continue;
      const e = raft.log.entryAt(logIndex(i));
      if (entryKey(e) !== c.key) {
        this.fail(
          `leader completeness: leader ${raft.id} of term ${raft.term} has ${describeEntry(e)} at ${i}, committed was ${c.text}`,
        );
        return;
      }
    }
  }

  /** Log matching (§5.3): two logs with the same (index, term) agree on every entry up to it. */
  checkLogMatching(rafts: readonly Raft[]): void {
    for (let a = 0; a < rafts.length; a++) {
      for (let b = a + 1; b < rafts.length; b++) this.checkPair(rafts[a]!, rafts[b]!);
    }
  }

  private checkPair(x: Raft, y: Raft): void {
    const lo = Math.max(x.log.firstIndex(), y.log.firstIndex());
    const hi = Math.min(x.log.lastIndex(), y.log.lastIndex());
    let top = -1;
    for (let i = hi; i >= lo; i--) {
      if (x.log.term(logIndex(i)) === y.log.term(logIndex(i))) {
        top = i;
        break;
      }
    }
    for (let i = top; i >= lo; i--) {
      const ex = x.log.entryAt(logIndex(i));
      const ey = y.log.entryAt(logIndex(i));
      if (ex !== ey && entryKey(ex) !== entryKey(ey)) {
        this.fail(
          `log matching: members ${x.id} and ${y.id} agree at ${top} but differ at ${i}: ${describeEntry(ex)} vs ${describeEntry(ey)}`,
        );
        return;
      }
    }
  }

  leaderOf(t: Term): MemberId | undefined {
    return this.leaders.get(t);
  }
}
