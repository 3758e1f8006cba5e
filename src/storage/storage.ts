/**
 * Durable Raft storage for one member: the write-ahead log (wal.ts) plus
 * snapshot files (snapfile.ts) in one data directory:
 *   <dir>/wal/<seq>-<firstIndex>.wal    log segments
 *   <dir>/snap/<index>-<term>.snap      the newest snapshots (1 or 2 kept)
 *
 * The API is synchronous (writeSync, fdatasyncSync, renameSync): a member
 * persists one Ready at a time and must not send or apply before it is durable
 * (the Ready contract in src/raft/types.ts), so there is nothing to overlap with
 * it; the host's event loop is blocked for the duration of the fsync.
 *
 * Ready path: `save(hardState, entries, snapshot)` writes, in the order of the
 * Ready contract, the snapshot (its file, durably, then a WAL marker that
 * replaces the log), the entries (after a truncate record when they overwrite a
 * stored suffix) and the hard state, then makes the WAL durable with ONE
 * fdatasync (group commit). A Ready with nothing to persist costs no fsync, and
 * neither does one whose only change is the commit index (etcd's rule: the
 * commit index need not be durable; after a crash a member may restart with an
 * older one, every entry up to it being in the log, and learns the rest from
 * the leader). Term and vote changes, entries and snapshots are always synced.
 *
 * Compaction: `saveSnapshot(snapshot)` (after Raft.compact) writes the file
 * durably, marks it in the WAL (entries above it stay), syncs, then deletes WAL
 * segments wholly below it and all but the newest snapshot files.
 *
 * Recovery (`openStorage`): replay the WAL (wal.ts rules: a torn last record is
 * cut, any other damage throws StorageCorruptionError naming file and offset);
 * the current snapshot is the one named by the WAL's last snapshot marker, and
 * its file must exist and verify. A snapshot file newer than that marker (a crash
 * between the rename and the marker) is deleted: its Ready was never
 * acknowledged, and keeping it could pair a leader's snapshot with a log it
 * was meant to replace. The result is the Raft core's initial state.
 *
 * Fsyncs are counted in stats(): one per save() that must be durable; a
 * snapshot file adds two (file, directory), a segment rollover three (the full
 * segment, the new segment's file, the directory), deleting segments one (the
 * directory), and recovery one per directory created or torn tail cut.
 */

import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Entry, HardState, RaftInitialState, Snapshot } from "../raft/index.ts";
import { assert, emptySnapshot, logIndex, NO_MEMBER, term } from "../raft/index.ts";
import { StorageCorruptionError, StorageFailedError } from "./errors.ts";
import type { IoCounters } from "./files.ts";
import { syncDir } from "./files.ts";
import {
  listSnapshotFiles,
  pruneSnapshotFiles,
  readSnapshotFile,
  removeTempFiles,
  snapshotFileName,
  writeSnapshotFile,
} from "./snapfile.ts";
import type { WalOp } from "./wal.ts";
import { SEGMENT_BYTES_MAX_DEFAULT, Wal } from "./wal.ts";

/** Tuning of one storage; every field has a default. */
export interface StorageOptions {
  /** A segment rolls over once the next record would take it past this size (default 64 MiB). */
  readonly segmentBytesMax?: number;
  /** Snapshot files kept: the current one, and with 2 (the default) the one before it. */
  readonly snapshotsKept?: 1 | 2;
  /** Told how long each WAL fsync took, in seconds (the metrics' etcd_disk_wal_fsync_duration_seconds). */
  readonly onWalSync?: ((seconds: number) => void) | undefined;
  /** The last WAL segment is zero-filled ahead of appends in chunks of this (default 1 MiB; 0: off). See wal.ts. */
  readonly preallocateBytes?: number;
}

/** Counters since the storage was opened (recovery included), for benchmarks and status. */
export interface StorageStats {
  /** fsync/fdatasync calls on files and directories. */
  readonly fsyncs: number;
  readonly bytesWritten: number;
  /** save() calls that had something to persist. */
  readonly saves: number;
  readonly segments: number;
}

/** An opened storage and what the Raft core starts from (`new Raft(config, initial)`). */
export interface OpenedStorage {
  readonly storage: Storage;
  /** The recovered hard state, snapshot and entries above it; `applied` is the snapshot's index. */
  readonly initial: RaftInitialState;
}

/** Opens (creating if absent) the data directory `dir` and recovers its state. */
export function openStorage(dir: string, options: StorageOptions = {}): OpenedStorage {
  const io: IoCounters = { fsyncs: 0, bytesWritten: 0, zeroBytesWritten: 0 };
  const walDir = join(dir, "wal");
  const snapDir = join(dir, "snap");
  for (const d of [dir, walDir, snapDir]) ensureDir(d, io);
  removeTempFiles(walDir);
  removeTempFiles(snapDir);
  const walOpts = {
    segmentBytesMax: options.segmentBytesMax ?? SEGMENT_BYTES_MAX_DEFAULT,
    onSync: options.onWalSync,
    preallocateBytes: options.preallocateBytes,
  };
  assert(walOpts.segmentBytesMax > 0, "storage: segmentBytesMax must be positive");
  const keep = options.snapshotsKept ?? 2;

  const replayed = Wal.replay(walDir, walOpts, io);
  if (replayed === undefined) {
    if (listSnapshotFiles(snapDir).length > 0) {
      throw new StorageCorruptionError(walDir, 0, "snapshot files but no WAL segment");
    }
    const wal = Wal.create(walDir, walOpts, io);
    const initial: RaftInitialState = {
      hardState: { term: term(0), vote: NO_MEMBER, commit: logIndex(0) },
      snapshot: emptySnapshot({ voters: [], learners: [] }),
      entries: [],
      applied: logIndex(0),
    };
    return { storage: new Storage(snapDir, wal, io, keep, initial.hardState), initial };
  }
  const { wal, state } = replayed;
  let snapshot = emptySnapshot({ voters: [], learners: [] });
  if (state.snapIndex > 0) {
    const file = listSnapshotFiles(snapDir).find((f) => f.index === state.snapIndex);
    if (file === undefined || file.term !== state.snapTerm) {
      wal.close();
      throw new StorageCorruptionError(
        join(snapDir, snapshotFileName(state.snapIndex, state.snapTerm)),
        0,
        `snapshot ${state.snapTerm}/${state.snapIndex}, named by the WAL's last marker, is missing`,
      );
    }
    try {
      snapshot = readSnapshotFile(snapDir, file);
    } catch (err) {
      wal.close();
      throw err;
    }
  }
  pruneSnapshotFiles(snapDir, state.snapIndex, keep);
  const initial: RaftInitialState = {
    hardState: state.hardState,
    snapshot,
    entries: state.entries ?? [],
    applied: snapshot.meta.index,
  };
  return { storage: new Storage(snapDir, wal, io, keep, initial.hardState), initial };
}

/** One member's durable log, hard state and snapshots. Not safe for two processes at once. */
export class Storage {
  private readonly snapDir: string;
  private readonly wal: Wal;
  private readonly io: IoCounters;
  private readonly keep: number;
  private saves = 0;
  private failed: unknown;
  private closed = false;
  /** The term and vote of the last hard state written (always durable). */
  private term: number;
  private vote: number;
  /** A commit-only hard state was written and not yet synced. */
  private unsynced = false;

  /** Use openStorage(). */
  constructor(snapDir: string, wal: Wal, io: IoCounters, keep: number, hardState: HardState) {
    this.snapDir = snapDir;
    this.wal = wal;
    this.io = io;
    this.keep = keep;
    this.term = hardState.term;
    this.vote = hardState.vote;
  }

  /**
   * Persists one Ready: `snapshot` (replacing the whole log), then `entries`
   * (replacing stored entries from entries[0].index on), then `hardState`, and
   * returns once all of it is durable (one fdatasync of the WAL), except a
   * change of the commit index alone, which is written and not synced (see
   * the file header). Entries that would leave a gap, or overwrite what a
   * snapshot covers, are a bug (assertion).
   */
  save(hardState: HardState | undefined, entries: readonly Entry[], snapshot: Snapshot | undefined): void {
    this.checkUsable();
    const ops: WalOp[] = [];
    if (snapshot !== undefined) {
      ops.push({ type: "snapshot", index: snapshot.meta.index, term: snapshot.meta.term, replace: true });
    }
    if (entries.length > 0) {
      const first = entries[0]!.index;
      const last = snapshot !== undefined ? snapshot.meta.index : this.wal.lastIndex;
      if (first <= last) ops.push({ type: "truncate", after: logIndex(first - 1) });
      for (const entry of entries) ops.push({ type: "entry", entry });
    }
    if (hardState !== undefined) ops.push({ type: "hardState", hardState });
    if (ops.length === 0) return;
    const mustSync =
      snapshot !== undefined ||
      entries.length > 0 ||
      (hardState !== undefined && (hardState.term !== this.term || hardState.vote !== this.vote));
    this.guard(() => {
      if (snapshot !== undefined) {
        assert(
          snapshot.meta.index > this.wal.snapIndex,
          "storage: a Ready snapshot must be newer than the stored one",
        );
        writeSnapshotFile(this.snapDir, snapshot, this.io);
      }
      this.wal.append(ops);
      if (mustSync) this.wal.sync();
      this.unsynced = !mustSync;
      if (hardState !== undefined) {
        this.term = hardState.term;
        this.vote = hardState.vote;
      }
      this.saves++;
      if (snapshot !== undefined) this.dropCovered();
    });
  }

  /**
   * Persists a snapshot the host took after Raft.compact(): entries above it
   * stay. A snapshot not newer than the stored one is ignored.
   */
  saveSnapshot(snapshot: Snapshot): void {
    this.checkUsable();
    if (snapshot.meta.index <= this.wal.snapIndex) return;
    this.guard(() => {
      assert(snapshot.meta.index <= this.wal.lastIndex, "storage: a compaction beyond the stored log");
      writeSnapshotFile(this.snapDir, snapshot, this.io);
      this.wal.append([
        { type: "snapshot", index: snapshot.meta.index, term: snapshot.meta.term, replace: false },
      ]);
      this.wal.sync();
      this.unsynced = false;
      this.dropCovered();
    });
  }

  stats(): StorageStats {
    return {
      fsyncs: this.io.fsyncs,
      bytesWritten: this.io.bytesWritten,
      saves: this.saves,
      segments: this.wal.segmentCount,
    };
  }

  /** Closes the open segment, syncing a commit index written without a sync. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.unsynced && this.failed === undefined) this.wal.sync();
    this.wal.close();
  }

  private dropCovered(): void {
    this.wal.removeSegmentsCoveredBy(this.wal.snapIndex);
    pruneSnapshotFiles(this.snapDir, this.wal.snapIndex, this.keep);
  }

  private checkUsable(): void {
    assert(!this.closed, "storage: used after close()");
    if (this.failed !== undefined) throw new StorageFailedError(this.failed);
  }

  /** Runs a write; if it throws, what is on disk is unknown and this storage refuses further writes. */
  private guard(write: () => void): void {
    try {
      write();
    } catch (err) {
      this.failed = err;
      throw err;
    }
  }
}

/** Creates `dir` (and missing parents) if absent; the new entry in its parent is synced. */
function ensureDir(dir: string, io: IoCounters): void {
  if (existsSync(dir)) return;
  mkdirSync(dir, { recursive: true });
  syncDir(dirname(dir), io);
}
