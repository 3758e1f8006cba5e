/**
 * Durable storage (src/storage/): what is saved comes back after a restart;
 * a torn final write is cut at every byte offset; damage anywhere else is
 * refused with the file and byte offset; snapshots, suffix overwrites, segment
 * rollover and group commit (one fsync per save) behave as documented.
 *
 * Contract: every test works in its own temporary directory and removes it.
 */

import { copyFileSync, mkdirSync, readFileSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Entry, HardState } from "../../src/raft/index.ts";
import { AssertionError, encodeEntry } from "../../src/raft/index.ts";
import { openStorage } from "../../src/storage/index.ts";
import { frameRecord, scanRecords } from "../../src/storage/record.ts";
import { writeSnapshotFile } from "../../src/storage/snapfile.ts";
import {
  both,
  corruption,
  entries,
  entry,
  hard,
  Model,
  removeDir,
  reopen,
  segmentFiles,
  snap,
  snapshotFiles,
  tempDir,
} from "./support.ts";

let dir: string;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => {
  removeDir(dir);
});

describe("storage: save and recover", () => {
  it("creates an empty member in a new directory, and finds it empty again", () => {
    const model = new Model();
    const sub = join(dir, "data", "member-1");
    reopen(sub, model).storage.close();
    expect(segmentFiles(sub)).toEqual(["0000000000000001-0000000000000001.wal"]);
    reopen(sub, model).storage.close();
  });

  it("gives back entries and the hard state after a restart", () => {
    const model = new Model();
    const o = reopen(dir, model);
    both(o, model, hard(1, 1, 0), entries(1, 3, 1));
    both(o, model, hard(1, 1, 3), entries(4, 5, 1));
    both(o, model, undefined, [{ ...entry(6, 1), kind: "normal", data: new Uint8Array(0) }]);
    o.storage.close();
    reopen(dir, model).storage.close();
  });

  it("replaces an overwritten suffix, also at the last index, also after a restart", () => {
    const model = new Model();
    let o = reopen(dir, model);
    both(o, model, hard(1, 1, 2), entries(1, 10, 1));
    both(o, model, hard(2, 2, 2), entries(6, 8, 2));
    both(o, model, undefined, entries(8, 8, 3));
    o.storage.close();
    o = reopen(dir, model);
    expect(o.initial.entries.map((e) => `${e.term}/${e.index}`).join(" ")).toBe(
      "1/1 1/2 1/3 1/4 1/5 2/6 2/7 3/8",
    );
    both(o, model, hard(4, 4, 2), entries(3, 4, 4));
    both(o, model, undefined, entries(5, 6, 4));
    o.storage.close();
    reopen(dir, model).storage.close();
  });

  it("does not fsync a save whose only change is the commit index, and still recovers it", () => {
    const model = new Model();
    const o = reopen(dir, model);
    both(o, model, hard(2, 1, 0), entries(1, 4, 2));
    const before = o.storage.stats();
    both(o, model, hard(2, 1, 3), []);
    both(o, model, hard(2, 1, 4), []);
    expect(o.storage.stats().fsyncs - before.fsyncs).toBe(0);
    // A vote or term change is synced, commit or not.
    both(o, model, hard(3, 2, 4), []);
    expect(o.storage.stats().fsyncs - before.fsyncs).toBe(1);
    o.storage.close();
    reopen(dir, model).storage.close();
  });

  it("takes one fsync per save that has something to persist, none for an empty one", () => {
    const model = new Model();
    const o = reopen(dir, model);
    const before = o.storage.stats();
    both(o, model, hard(1, 1, 0), []);
    both(o, model, undefined, entries(1, 5, 1));
    both(o, model, undefined, []);
    both(o, model, hard(1, 1, 5), entries(6, 6, 1));
    both(o, model, undefined, []);
    both(o, model, undefined, entries(4, 7, 2));
    const after = o.storage.stats();
    expect(after.fsyncs - before.fsyncs).toBe(4);
    expect(after.saves - before.saves).toBe(4);
    expect(after.bytesWritten).toBeGreaterThan(before.bytesWritten);
    o.storage.close();
    reopen(dir, model).storage.close();
  });

  it("refuses a save that would leave a gap, as a bug", () => {
    const o = openStorage(dir);
    o.storage.save(undefined, entries(1, 2, 1), undefined);
    expect(() => o.storage.save(undefined, entries(4, 4, 1), undefined)).toThrow(AssertionError);
    o.storage.close();
  });
});

describe("storage: snapshots", () => {
  it("compaction: snapshot plus later entries come back; two snapshot files are kept", () => {
    const model = new Model();
    let o = reopen(dir, model);
    both(o, model, hard(1, 1, 20), entries(1, 20, 1));
    for (const i of [5, 10, 15]) {
      o.storage.saveSnapshot(snap(i, 1));
      model.compact(snap(i, 1));
    }
    o.storage.saveSnapshot(snap(12, 1)); // older than the stored one: ignored
    expect(snapshotFiles(dir)).toEqual([
      "000000000000000a-0000000000000001.snap",
      "000000000000000f-0000000000000001.snap",
    ]);
    both(o, model, hard(2, 1, 22), entries(21, 22, 2));
    o.storage.close();
    o = reopen(dir, model);
    expect(o.initial.snapshot.meta.index).toBe(15);
    expect(o.initial.entries[0]!.index).toBe(16);
    expect(o.initial.applied).toBe(15);
    o.storage.close();
  });

  it("a leader's snapshot replaces the whole log, even entries above it", () => {
    const model = new Model();
    let o = reopen(dir, model);
    both(o, model, hard(1, 1, 3), entries(1, 30, 1));
    both(o, model, hard(3, 0, 20), [], snap(20, 2));
    both(o, model, undefined, entries(21, 22, 3));
    o.storage.close();
    o = reopen(dir, model);
    expect(o.initial.entries.map((e) => e.index)).toEqual([21, 22]);
    both(o, model, hard(4, 0, 40), entries(41, 41, 4), snap(40, 4));
    o.storage.close();
    reopen(dir, model).storage.close();
  });

  it("ignores and deletes a snapshot file whose WAL marker was never written", () => {
    const model = new Model();
    const o = reopen(dir, model);
    both(o, model, hard(1, 1, 10), entries(1, 10, 1));
    o.storage.close();
    // A crash between the snapshot file's rename and its WAL marker.
    writeSnapshotFile(join(dir, "snap"), snap(50, 3), { fsyncs: 0, bytesWritten: 0, zeroBytesWritten: 0 });
    reopen(dir, model).storage.close();
    expect(snapshotFiles(dir)).toEqual([]);
  });

  it("refuses to start when the snapshot the WAL names is missing or damaged", () => {
    const o = openStorage(dir);
    o.storage.save(hard(1, 1, 10), entries(1, 10, 1), undefined);
    o.storage.saveSnapshot(snap(8, 1));
    o.storage.close();
    const name = snapshotFiles(dir)[0]!;
    const path = join(dir, "snap", name);
    const bytes = readFileSync(path);
    bytes[bytes.length - 1]! ^= 0x01;
    writeFileSync(path, bytes);
    const damaged = corruption(() => openStorage(dir));
    expect(damaged.file).toBe(path);
    expect(damaged.message).toContain("snapshot checksum mismatch");
    unlinkSync(path);
    const missing = corruption(() => openStorage(dir));
    expect(missing.message).toContain("snapshot 1/8, named by the WAL's last marker, is missing");
  });
});

describe("storage: segments", () => {
  it("rolls over at the size limit, names segments by first index, deletes those below a snapshot", () => {
    const options = { segmentBytesMax: 256 };
    const model = new Model();
    let o = reopen(dir, model, options);
    for (let i = 1; i <= 40; i++) both(o, model, hard(1, 1, i - 1), [entry(i, 1, 16)]);
    const names = segmentFiles(dir);
    expect(names.length).toBeGreaterThan(5);
    expect(o.storage.stats().segments).toBe(names.length);
    for (const [k, name] of names.entries())
      expect(name.startsWith((k + 1).toString(16).padStart(16, "0"))).toBe(true);
    o.storage.close();
    o = reopen(dir, model, options);
    // Overwrite across the newest segment boundary, then compact past the old segments.
    both(o, model, hard(2, 2, 30), entries(31, 45, 2));
    o.storage.saveSnapshot(snap(38, 2));
    model.compact(snap(38, 2));
    const left = segmentFiles(dir);
    expect(left.length).toBeLessThan(names.length);
    const firstIndex = Number.parseInt(left[0]!.slice(17, 33), 16);
    expect(firstIndex).toBeLessThanOrEqual(39);
    o.storage.close();
    reopen(dir, model, options).storage.close();
    // Reopening with another limit reads the same log.
    reopen(dir, model, { segmentBytesMax: 1 << 20 }).storage.close();
  });

  it("puts a record larger than the limit in a segment of its own", () => {
    const options = { segmentBytesMax: 64 };
    const model = new Model();
    const o = reopen(dir, model, options);
    both(o, model, undefined, [entry(1, 1, 200), entry(2, 1, 200)]);
    o.storage.close();
    expect(segmentFiles(dir).length).toBe(2);
    reopen(dir, model, options).storage.close();
  });
});

/** Preallocation for buildLog: small chunks, so its segment ends in a zero tail a few hundred bytes long. */
const SMALL_PREALLOC = { preallocateBytes: 512 };

/**
 * Builds a WAL with one segment whose records exercise entries, overwrite and
 * hard states; the segment is preallocated (SMALL_PREALLOC), so zeros follow
 * the records.
 */
function buildLog(d: string): { model: Model; states: Model[]; segment: string } {
  const model = new Model();
  const o = reopen(d, model, SMALL_PREALLOC);
  // The records the storage writes, in order, as the model states after each of them.
  const states: Model[] = [clone(model)];
  const step = (hs: HardState | undefined, es: Entry[]): void => {
    const first = es[0]?.index;
    if (first !== undefined && first <= model.lastIndex()) {
      model.entries = model.entries.filter((e) => e.index < first);
      states.push(clone(model));
    }
    for (const e of es) {
      model.save(undefined, [e], undefined);
      states.push(clone(model));
    }
    if (hs !== undefined) {
      model.save(hs, [], undefined);
      states.push(clone(model));
    }
    o.storage.save(hs, es, undefined);
  };
  step(hard(1, 1, 0), entries(1, 2, 1));
  step(undefined, entries(3, 3, 1));
  step(hard(2, 2, 2), [entry(3, 2), entry(4, 2, 30)]);
  step(hard(2, 2, 4), []);
  step(undefined, entries(5, 6, 2));
  o.storage.close();
  return { model, states, segment: join(d, "wal", segmentFiles(d)[0]!) };
}

/** Where the last verified record of a segment file ends (the preallocated zeros start there). */
function recordsEnd(file: Uint8Array): number {
  const { records } = scanRecords(file, 16);
  const last = records[records.length - 1]!;
  return last.offset + 13 + last.payload.length;
}

function clone(m: Model): Model {
  const c = new Model();
  c.hardState = m.hardState;
  c.snapshot = m.snapshot;
  c.entries = m.entries.slice();
  return c;
}

describe("storage: recovery from a torn write and from damage", () => {
  it("cut at every byte offset, with or without the zero tail after it: recovers to the last complete record, and appends after it", () => {
    const { states, segment } = buildLog(dir);
    const full = readFileSync(segment);
    const { records } = scanRecords(full, 16);
    expect(records.length).toBe(states.length); // the state record, then one per model step
    const end = recordsEnd(full);
    expect(full.length).toBeGreaterThan(end); // preallocated
    const stateEnd = records[1]!.offset;
    const name = segmentFiles(dir)[0]!;
    for (let cut = 0; cut <= end; cut++) {
      // A write cut short at `cut`: the file ends there (not preallocated), or the preallocated zeros follow.
      for (const zeroTail of [false, true]) {
        const d = join(dir, `cut-${cut}-${zeroTail}`);
        mkdirSync(join(d, "wal"), { recursive: true });
        const bytes = zeroTail
          ? Buffer.concat([full.subarray(0, cut), Buffer.alloc(full.length - cut)])
          : full.subarray(0, cut);
        writeFileSync(join(d, "wal", name), bytes);
        // Zeros that were zeros anyway change nothing: the file is the one cut at the next non-zero byte.
        let same = cut;
        while (zeroTail && same < full.length && full[same] === 0) same++;
        if (same < stateEnd) {
          // A segment is created complete with its state record: shorter is damage, not a torn write.
          corruption(() => openStorage(d, SMALL_PREALLOC));
          continue;
        }
        const complete = records.filter((r) => r.offset + 13 + r.payload.length <= same).length;
        const expected = clone(states[complete - 1]!);
        const o = reopen(d, expected, SMALL_PREALLOC);
        const next = entry(expected.lastIndex() + 1, 7);
        o.storage.save(hard(7, 0, expected.hardState.commit), [next], undefined);
        expected.save(hard(7, 0, expected.hardState.commit), [next], undefined);
        o.storage.close();
        reopen(d, expected, SMALL_PREALLOC).storage.close();
        removeDir(d);
      }
    }
  });

  it("keeps a zero-filled tail (a file extended by the crash) and appends after the last record", () => {
    const { model, segment } = buildLog(dir);
    const grown = readFileSync(segment).length + 4096;
    writeFileSync(segment, Buffer.concat([readFileSync(segment), Buffer.alloc(4096)]));
    const o = reopen(dir, model);
    expect(readFileSync(segment).length).toBe(grown);
    both(o, model, hard(3, 1, 6), entries(7, 8, 3));
    o.storage.close();
    expect(readFileSync(segment).length).toBe(grown); // written into the zeros, not after them
    reopen(dir, model).storage.close();
  });

  it("a flipped byte anywhere in a middle record is refused, naming the file and the record's offset", () => {
    const { segment } = buildLog(dir);
    const full = readFileSync(segment);
    const { records } = scanRecords(full, 16);
    const victim = records[4]!;
    const end = victim.offset + 13 + victim.payload.length;
    for (let at = victim.offset; at < end; at++) {
      const bytes = Buffer.from(full);
      bytes[at]! ^= 0x20;
      writeFileSync(segment, bytes);
      const err = corruption(() => openStorage(dir));
      expect(err.file).toBe(segment);
      expect(err.offset).toBe(victim.offset);
      expect(err.code).toBe("storage.corrupt");
      expect(err.message).toContain(`${segment} at byte ${victim.offset}:`);
    }
  });

  it("damage in the segment header or state record is refused", () => {
    const { segment } = buildLog(dir);
    const full = readFileSync(segment);
    // Byte flipped -> offset reported: magic, version, seq, state record header, state payload.
    for (const [at, offset] of [
      [0, 0],
      [5, 4],
      [9, 8],
      [16, 16],
      [30, 16],
    ] as const) {
      const bytes = Buffer.from(full);
      bytes[at]! ^= 0x01;
      writeFileSync(segment, bytes);
      const err = corruption(() => openStorage(dir));
      expect(err.file).toBe(segment);
      expect(err.offset).toBe(offset);
    }
  });

  it("a record with valid checksums that leaves a gap in the indexes is refused", () => {
    const { segment } = buildLog(dir);
    const full = readFileSync(segment);
    const size = recordsEnd(full);
    const gap = frameRecord(2, encodeEntry(entry(9, 2)));
    full.set(gap, size); // into the preallocated zeros, where the next append would go
    writeFileSync(segment, full);
    const err = corruption(() => openStorage(dir));
    expect(err.offset).toBe(size);
    expect(err.message).toContain("entry 9 after 6: a gap");
  });

  it("damage in a segment that is not the last is refused, even at its end", () => {
    const options = { segmentBytesMax: 200 };
    const o = openStorage(dir, options);
    for (let i = 1; i <= 20; i++) o.storage.save(hard(1, 1, i - 1), [entry(i, 1)], undefined);
    o.storage.close();
    const names = segmentFiles(dir);
    expect(names.length).toBeGreaterThan(2);
    const second = join(dir, "wal", names[1]!);
    const size = readFileSync(second).length;
    const saved = readFileSync(second);
    truncateSync(second, size - 3);
    const torn = corruption(() => openStorage(dir, options));
    expect(torn.file).toBe(second);
    expect(torn.message).toContain("in a segment that is not the last");
    writeFileSync(second, saved);
    openStorage(dir, options).storage.close();
    // A missing segment in the middle.
    const copy = join(dir, "moved.wal.bak");
    copyFileSync(second, copy);
    unlinkSync(second);
    const missing = corruption(() => openStorage(dir, options));
    expect(missing.message).toContain("segment 2 is missing before it");
  });
});
