/**
 * Helpers for the storage tests: temporary data directories, short constructors
 * for raft values, and a dumb in-memory model of what storage must recover (the
 * Ready contract: a snapshot replaces the log, entries replace the stored suffix
 * from their first index, compaction drops the covered prefix).
 */

import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import type { Entry, HardState, MemberId, RaftInitialState, Snapshot } from "../../src/raft/index.ts";
import { emptySnapshot, logIndex, memberId, term } from "../../src/raft/index.ts";
import type { OpenedStorage, StorageOptions } from "../../src/storage/index.ts";
import { openStorage, StorageCorruptionError } from "../../src/storage/index.ts";

/** A fresh directory under the OS temp dir; pass it to `removeDir` when done. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "leasehold-storage-"));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** An entry whose data names its index and term, so mix-ups show. */
export function entry(index: number, t: number, size = 4): Entry {
  const data = new TextEncoder().encode(`${t}/${index}:`.padEnd(size, "x"));
  return { term: term(t), index: logIndex(index), kind: "normal", data };
}

/** Entries from..to (inclusive), all of term `t`. */
export function entries(from: number, to: number, t: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, t));
  return out;
}

export function hard(t: number, vote: number, commit: number): HardState {
  return { term: term(t), vote: memberId(vote), commit: logIndex(commit) };
}

export function snap(index: number, t: number, voters: number[] = [1, 2, 3]): Snapshot {
  return {
    meta: {
      index: logIndex(index),
      term: term(t),
      conf: { voters: voters.map((v) => memberId(v) as MemberId), learners: [] },
    },
    data: new TextEncoder().encode(`state@${index}`),
  };
}

/** The segment file names in `dir/wal`, oldest first. */
export function segmentFiles(dir: string): string[] {
  return readdirSync(join(dir, "wal"))
    .filter((n) => n.endsWith(".wal"))
    .sort();
}

export function snapshotFiles(dir: string): string[] {
  return readdirSync(join(dir, "snap"))
    .filter((n) => n.endsWith(".snap"))
    .sort();
}

/** What a member's storage must give back after a restart. */
export class Model {
  hardState: HardState = hard(0, 0, 0);
  snapshot: Snapshot = emptySnapshot({ voters: [], learners: [] });
  entries: Entry[] = [];

  lastIndex(): number {
    return this.snapshot.meta.index + this.entries.length;
  }

  termAt(index: number): number {
    if (index === this.snapshot.meta.index) return this.snapshot.meta.term;
    return this.entries[index - this.snapshot.meta.index - 1]!.term;
  }

  save(hs: HardState | undefined, es: readonly Entry[], s: Snapshot | undefined): void {
    if (s !== undefined) {
      this.snapshot = s;
      this.entries = [];
    }
    if (es.length > 0) {
      const first = es[0]!.index;
      this.entries = this.entries.filter((e) => e.index < first).concat(es);
    }
    if (hs !== undefined) this.hardState = hs;
  }

  compact(s: Snapshot): void {
    if (s.meta.index <= this.snapshot.meta.index) return;
    this.entries = this.entries.filter((e) => e.index > s.meta.index);
    this.snapshot = s;
  }

  initial(): RaftInitialState {
    return {
      hardState: this.hardState,
      snapshot: this.snapshot,
      entries: this.entries,
      applied: this.snapshot.meta.index,
    };
  }
}

/** Opens `d` and checks that it recovers exactly what `model` holds. */
export function reopen(d: string, model: Model, options?: StorageOptions): OpenedStorage {
  const opened = openStorage(d, options);
  expect(opened.initial).toEqual(model.initial());
  return opened;
}

/** Saves one Ready into both the storage and the model. */
export function both(
  o: OpenedStorage,
  model: Model,
  hs: HardState | undefined,
  es: Entry[],
  s?: Snapshot,
): void {
  o.storage.save(hs, es, s);
  model.save(hs, es, s);
}

/** The error `f` throws, which must be a StorageCorruptionError. */
export function corruption(f: () => unknown): StorageCorruptionError {
  try {
    f();
  } catch (err) {
    if (err instanceof StorageCorruptionError) return err;
    throw err;
  }
  throw new Error("expected a StorageCorruptionError, recovery succeeded");
}
