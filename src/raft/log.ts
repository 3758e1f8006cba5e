/**
 * The Raft log as the core sees it: a compacted prefix (described by the last
 * snapshot) followed by the entries still held in memory.
 *
 * Contract: the log holds every entry above the snapshot. `persisted` tracks
 * the highest index known durable on this member; entries above `handed` have
 * not yet been given to the host in a Ready. The host owns durability; the
 * core only tracks what it was told.
 *
 * Memory: the log keeps its own Entry objects, whose data it copies into
 * shared chunks of DATA_CHUNK_BYTES (`EntryData`): a small entry then costs
 * the object and a view (about 150 bytes) instead of also an ArrayBuffer of
 * its own (about 90 more, the data on the V8 heap with it), and never keeps
 * alive the larger buffer its data came in (a decoded message). A log holds
 * up to a snapshot interval of entries (100,000 by default), all promoted to
 * V8's old generation, so the difference shows in the heap's high-water
 * mark. Entries leave the log in index order (compaction), so a chunk is
 * freed with its last entry. Copied bytes are never written again: an Entry
 * handed out never changes, whatever the log does afterwards.
 */

import { assert } from "./assert.ts";
import type { ConfState, Entry, LogIndex, Snapshot, Term } from "./types.ts";
import { term as asTerm, logIndex } from "./types.ts";

/** Bytes per shared data chunk. */
const DATA_CHUNK_BYTES = 65_536;
/** Data longer than this gets a buffer of its own (at most this much of a chunk is left unused). */
const DATA_SHARED_BYTES_MAX = 4096;
/** The data of every entry without any: shared, never written. */
const NO_DATA = new Uint8Array(0);

/** Copies entry data into shared chunks (see the file header); a chunk is only ever appended to. */
class EntryData {
  /** The chunk being filled (none until the first copy). */
  private chunk = NO_DATA;
  private used = 0;

  copy(data: Uint8Array): Uint8Array {
    const n = data.length;
    if (n === 0) return NO_DATA;
    if (n > DATA_SHARED_BYTES_MAX) return new Uint8Array(data); // a copy (a Buffer's slice() is a view)
    if (this.used + n > this.chunk.length) {
      this.chunk = new Uint8Array(DATA_CHUNK_BYTES);
      this.used = 0;
    }
    const out = this.chunk.subarray(this.used, this.used + n);
    out.set(data);
    this.used += n;
    return out;
  }
}

export class RaftLog {
  /** The last compacted snapshot; its index/term bound the log from below. */
  snapshot: Snapshot;
  /** Entries snapshot.meta.index+1 .. lastIndex. Invariant: entries[i].index === firstIndex + i. */
  private entries: Entry[];
  /** Invariant: snapshotIndex <= applied <= committed <= lastIndex (applied may lag the snapshot only transiently). */
  committed: LogIndex;
  /** Highest index whose committed entry was handed to the host for applying. */
  applying: LogIndex;
  /** Highest index the host confirmed applied (via advance). */
  applied: LogIndex;
  /** Highest index handed to the host for persisting. Invariant: persisted <= handed <= lastIndex. */
  handed: LogIndex;
  /** Highest index known durable locally. */
  persisted: LogIndex;
  /** A snapshot received from the leader that the host has not yet persisted. */
  pendingSnapshot: Snapshot | undefined;
  private readonly data = new EntryData();

  constructor(snapshot: Snapshot, entries: readonly Entry[], committed: LogIndex, applied: LogIndex) {
    this.snapshot = snapshot;
    this.entries = entries.map((e) => this.own(e));
    for (let i = 0; i < this.entries.length; i++) {
      assert(this.entries[i]!.index === snapshot.meta.index + 1 + i, "log: entries must be contiguous");
    }
    const last = this.lastIndex();
    assert(committed <= last, `log: commit ${committed} beyond last index ${last}`);
    this.committed = logIndex(Math.max(committed, snapshot.meta.index));
    this.applied = logIndex(Math.max(applied, snapshot.meta.index));
    assert(this.applied <= this.committed, "log: applied beyond committed");
    this.applying = this.applied;
    this.handed = last;
    this.persisted = last;
    this.pendingSnapshot = undefined;
  }

  firstIndex(): LogIndex {
    return logIndex(this.snapshot.meta.index + 1);
  }

  lastIndex(): LogIndex {
    return logIndex(this.snapshot.meta.index + this.entries.length);
  }

  lastTerm(): Term {
    return this.term(this.lastIndex())!;
  }

  /** The term of the entry at `index`, or undefined if compacted away or beyond the end. */
  term(index: LogIndex): Term | undefined {
    const snapIndex = this.snapshot.meta.index;
    if (index === snapIndex) return this.snapshot.meta.term;
    if (index < snapIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - snapIndex - 1]!.term;
  }

  /** The entry at `index`, which must be in memory. */
  entryAt(index: LogIndex): Entry {
    const e = this.entries[index - this.snapshot.meta.index - 1];
    if (e === undefined || e.index !== index) assert(false, `log: no entry ${index} in memory`);
    return e;
  }

  matchTerm(index: LogIndex, t: Term): boolean {
    return this.term(index) === t;
  }

  /** Is a candidate's log at least as up to date as ours (Raft §5.4.1)? */
  isUpToDate(lastIndex: LogIndex, lastTerm: Term): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi), at most `bytesMax` of data (always at least one when lo < hi). */
  slice(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    if (lo < this.firstIndex()) assert(false, `log: slice from compacted index ${lo}`);
    assert(hi <= this.lastIndex() + 1, "log: slice beyond the end");
    const out: Entry[] = [];
    let bytes = 0;
    const base = this.snapshot.meta.index + 1;
    for (let i = lo; i < hi; i++) {
      const e = this.entries[i - base]!;
      bytes += e.data.length;
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  /** Appends entries that follow the current last index (leader path). */
  append(entries: readonly Entry[]): void {
    for (const e of entries) {
      assert(e.index === this.lastIndex() + 1, "log: append must be contiguous");
      this.entries.push(this.own(e));
    }
  }

  /**
   * Follower path: entries follow prevIndex, which is known to match. Skips
   * entries already present with the same term; truncates from the first
   * conflict (Figure 2, AppendEntries step 3). Never truncates committed entries.
   * Returns the last index of the new entries.
   */
  maybeAppend(prevIndex: LogIndex, entries: readonly Entry[]): LogIndex {
    let i = 0;
    for (; i < entries.length; i++) {
      const e = entries[i]!;
      const have = this.term(e.index);
      if (have === undefined && e.index <= this.snapshot.meta.index) continue; // compacted: committed, so it matches
      if (have !== e.term) break;
    }
    if (i < entries.length) {
      const first = entries[i]!;
      assert(first.index > this.committed, `log: conflict at committed index ${first.index}`);
      this.truncateFrom(first.index);
      this.append(entries.slice(i));
    }
    return logIndex(prevIndex + entries.length);
  }

  /** The log's own copy of `e`, its data in a shared chunk. */
  private own(e: Entry): Entry {
    return { term: e.term, index: e.index, kind: e.kind, data: this.data.copy(e.data) };
  }

  private truncateFrom(index: LogIndex): void {
    const keep = index - this.snapshot.meta.index - 1;
    assert(keep >= 0, "log: truncate into the snapshot");
    if (keep < this.entries.length) this.entries.length = keep;
    const before = logIndex(index - 1);
    if (this.handed > before) this.handed = before;
    if (this.persisted > before) this.persisted = before;
  }

  commitTo(index: LogIndex): void {
    if (index <= this.committed) return;
    if (index > this.lastIndex()) assert(false, `log: commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Committed entries not yet handed out for applying, at most `bytesMax` of data. */
  nextCommitted(bytesMax: number): Entry[] {
    const lo = logIndex(Math.max(this.applying + 1, this.firstIndex()));
    const hi = logIndex(this.committed + 1);
    if (lo >= hi || this.pendingSnapshot) return [];
    return this.slice(lo, hi, bytesMax);
  }

  hasNextCommitted(): boolean {
    return this.pendingSnapshot === undefined && this.committed > this.applying;
  }

  unhanded(): Entry[] {
    const lo = logIndex(this.handed + 1);
    const hi = logIndex(this.lastIndex() + 1);
    if (lo >= hi) return [];
    return this.slice(lo, hi, Number.POSITIVE_INFINITY);
  }

  /** The host persisted entries up to (index, term); ignored if the log changed since. */
  stableTo(index: LogIndex, t: Term): void {
    if (this.matchTerm(index, t) && index > this.persisted) this.persisted = index;
  }

  /** Replaces the whole log with a snapshot from the leader (thesis §5.1); the host must persist and apply it. */
  restore(snap: Snapshot): void {
    const idx = snap.meta.index;
    assert(idx > this.committed, "log: restoring a snapshot that is not ahead of the commit index");
    this.snapshot = snap;
    this.entries = [];
    this.committed = idx;
    this.applying = idx;
    this.handed = idx;
    this.persisted = idx;
    this.pendingSnapshot = snap;
  }

  /** Discards entries up to snap.meta.index, which must be applied already. */
  compactTo(snap: Snapshot): void {
    const idx = snap.meta.index;
    if (idx <= this.snapshot.meta.index) return;
    assert(idx <= this.applied, `log: compact ${idx} beyond applied ${this.applied}`);
    assert(this.matchTerm(idx, snap.meta.term), "log: compacting to a snapshot whose term does not match");
    const drop = idx - this.snapshot.meta.index;
    this.entries.splice(0, drop);
    this.snapshot = snap;
  }
}

/**
 * A snapshot at index 0, term 0 with the given membership. Clusters start from
 * `bootstrapState` (membership in the log); a non-empty `conf` here suits only
 * tests of a fixed group that no member ever joins later.
 */
export function emptySnapshot(conf: ConfState): Snapshot {
  return {
    meta: {
      index: logIndex(0),
      term: asTerm(0),
      conf: { voters: conf.voters.slice(), learners: conf.learners.slice() },
    },
    data: new Uint8Array(0),
  };
}
