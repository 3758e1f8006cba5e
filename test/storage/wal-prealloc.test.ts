/**
 * WAL segment preallocation (src/storage/wal.ts, header "Preallocation"): the
 * last segment is zero-filled ahead of its append position in whole chunks, so
 * most syncs do not change the file size; a full segment is cut to its last
 * record before its final sync; recovery keeps a zero tail as the allocation,
 * cuts any other torn tail, and appends at the end of the last record, never at
 * the file size.
 *
 * Contract: real files, each test in its own temporary directory, removed after.
 * The layout checks read the segment files back with the record scanner, so an
 * append at the wrong offset (a zero hole between records) shows as a scan that
 * stops early.
 */

import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeEntry } from "../../src/raft/index.ts";
import type { IoCounters } from "../../src/storage/files.ts";
import { openStorage } from "../../src/storage/index.ts";
import { frameRecord, RECORD_HEADER_BYTES, scanRecords } from "../../src/storage/record.ts";
import { PREALLOC_CHUNK_BYTES, Wal } from "../../src/storage/wal.ts";
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
  tempDir,
} from "./support.ts";

const SEGMENT_HEADER_BYTES = 16;
const ENTRY_RECORD = 2;

let dir: string;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => {
  removeDir(dir);
});

/** A segment file as the scanner sees it. */
interface Layout {
  readonly size: number;
  /** End of the last verified record. */
  readonly end: number;
  readonly records: number;
  /** Only zero bytes from `end` to `size`. */
  readonly zerosAfter: boolean;
}

function layout(path: string): Layout {
  const buf = readFileSync(path);
  const { records } = scanRecords(buf, SEGMENT_HEADER_BYTES);
  const last = records[records.length - 1]!;
  const end = last.offset + RECORD_HEADER_BYTES + last.payload.length;
  return {
    size: buf.length,
    end,
    records: records.length,
    zerosAfter: buf.subarray(end).every((b) => b === 0),
  };
}

function walPath(d: string, name: string): string {
  return join(d, "wal", name);
}

function lastSegment(d: string): string {
  const names = segmentFiles(d);
  return walPath(d, names[names.length - 1]!);
}

/**
 * The layout every WAL must have between writes: every segment but the last
 * ends with its last record; the last holds records, then only zeros up to a
 * size that is the records' end, a multiple of a chunk size it was written
 * with (`chunks`; a zero tail is kept across a reopen with another), or the
 * segment cap.
 */
function expectLayout(d: string, chunks: readonly number[], segmentBytesMax: number): void {
  const names = segmentFiles(d);
  for (const [k, name] of names.entries()) {
    const l = layout(walPath(d, name));
    expect(l.zerosAfter, name).toBe(true);
    if (k < names.length - 1) {
      expect(l.size, `${name} is not the last: no zero tail`).toBe(l.end);
    } else {
      const allowed =
        l.size === l.end || chunks.some((c) => c > 0 && l.size % c === 0) || l.size === segmentBytesMax;
      expect(allowed, `${name}: size ${l.size}, records end ${l.end}, chunks ${chunks}`).toBe(true);
      expect(l.size, `${name}: preallocation is capped at the segment size`).toBeLessThanOrEqual(
        Math.max(segmentBytesMax, l.end),
      );
    }
  }
}

describe("wal preallocation: appending", () => {
  it("creates a segment preallocated to the first chunk and grows it by whole chunks, one sync per save", () => {
    const chunk = 4096;
    const options = { preallocateBytes: chunk };
    const model = new Model();
    const o = reopen(dir, model, options);
    const path = lastSegment(dir);
    expect(statSync(path).size).toBe(chunk);
    const sizes = new Set<number>();
    let grew = 0;
    for (let i = 1; i <= 200; i++) {
      const before = o.storage.stats().fsyncs;
      const sizeBefore = statSync(path).size;
      both(o, model, hard(1, 1, i - 1), [entry(i, 1, 60)]);
      expect(o.storage.stats().fsyncs - before).toBe(1);
      const l = layout(path);
      expect(l.size % chunk).toBe(0);
      expect(l.size).toBeGreaterThan(l.end);
      expect(l.zerosAfter).toBe(true);
      // The file grows only when the records pass the allocated end, and then by at most one chunk past them.
      if (l.size !== sizeBefore) {
        grew++;
        expect(l.end).toBeGreaterThan(sizeBefore);
        expect(l.size - l.end).toBeLessThanOrEqual(chunk);
      }
      sizes.add(l.size);
    }
    const recordsEnd = layout(path).end;
    expect(recordsEnd).toBeGreaterThan(4 * chunk);
    // One size change per chunk of log, not one per save.
    expect(grew).toBe(Math.floor(recordsEnd / chunk));
    expect(sizes.size).toBe(grew + 1);
    o.storage.close();
    expect(statSync(path).size % chunk).toBe(0);
    reopen(dir, model, options).storage.close();
  });

  it("defaults to 1 MiB chunks, and counts zero fill apart from record bytes", () => {
    const walDir = join(dir, "wal-direct");
    const io: IoCounters = { fsyncs: 0, bytesWritten: 0, zeroBytesWritten: 0 };
    mkdirSync(walDir);
    const wal = Wal.create(walDir, { segmentBytesMax: 64 * 1024 * 1024 }, io);
    const created = wal.openSegment;
    expect(created.allocated).toBe(PREALLOC_CHUNK_BYTES);
    expect(statSync(created.path).size).toBe(PREALLOC_CHUNK_BYTES);
    expect(io.bytesWritten).toBe(created.end);
    expect(io.zeroBytesWritten).toBe(PREALLOC_CHUNK_BYTES - created.end);
    const zerosBefore = io.zeroBytesWritten;
    wal.append([{ type: "entry", entry: entry(1, 1, 100) }]);
    wal.sync();
    expect(io.zeroBytesWritten).toBe(zerosBefore); // within the allocation: no zero fill
    expect(io.bytesWritten).toBe(wal.openSegment.end);
    expect(wal.openSegment.allocated).toBe(PREALLOC_CHUNK_BYTES);
    wal.close();
  });
});

describe("wal preallocation: recovery", () => {
  it("append, reopen, append, reopen: every record in order, appended at the end of the last record", () => {
    const chunk = 1024;
    const options = { preallocateBytes: chunk };
    const model = new Model();
    let next = 1;
    for (let round = 0; round < 6; round++) {
      const o = reopen(dir, model, options);
      const sizeAtOpen = statSync(lastSegment(dir)).size;
      const endAtOpen = layout(lastSegment(dir)).end;
      if (round > 0) expect(sizeAtOpen).toBeGreaterThan(endAtOpen); // the zero tail was kept, not cut
      for (let k = 0; k < 3; k++) {
        both(o, model, hard(round + 1, 1, next - 1), entries(next, next + 1, round + 1));
        next += 2;
      }
      const l = layout(lastSegment(dir));
      // Contiguous: the scanner reads every record written (state record, then entries and hard states).
      expect(l.records).toBe(1 + 3 * (round + 1) * 3);
      expect(l.zerosAfter).toBe(true);
      o.storage.close();
    }
    const o = reopen(dir, model, options);
    expect(o.initial.entries.map((e) => e.index)).toEqual(Array.from({ length: next - 1 }, (_, i) => i + 1));
    o.storage.close();
  });

  it("a crash-like file (records, a torn partial record, zeros to the allocated size) recovers the records before it", () => {
    const chunk = 2048;
    const options = { preallocateBytes: chunk };
    const base = new Model();
    const o = reopen(dir, base, options);
    both(o, base, hard(1, 1, 0), entries(1, 5, 1));
    both(o, base, hard(1, 1, 5), entries(6, 8, 1));
    o.storage.close();
    const path = lastSegment(dir);
    const clean = readFileSync(path);
    const { end, size } = layout(path);
    const torn = frameRecord(ENTRY_RECORD, encodeEntry(entry(9, 1, 40)));
    // Cut inside the header (the new rule: a bad header followed only by zeros), at its end, inside the payload.
    for (const written of [1, 5, 9, RECORD_HEADER_BYTES - 1, RECORD_HEADER_BYTES, 20, torn.length - 1]) {
      const bytes = Buffer.from(clean);
      bytes.set(torn.subarray(0, written), end);
      writeFileSync(path, bytes);
      expect(statSync(path).size).toBe(size);
      const model = new Model();
      model.save(base.hardState, base.entries, undefined);
      const r = reopen(dir, model, options);
      // The torn bytes were cut (synced), so nothing non-zero lies past the records.
      expect(layout(path)).toMatchObject({ end, zerosAfter: true });
      both(r, model, hard(2, 1, 8), [entry(9, 2, 40)]);
      r.storage.close();
      const l = layout(path);
      expect(l.size % chunk).toBe(0);
      expect(l.zerosAfter).toBe(true);
      reopen(dir, model, options).storage.close();
      writeFileSync(path, clean);
    }
  });

  it("a torn record with data after it is still corruption, zeros or not", () => {
    const options = { preallocateBytes: 2048 };
    const o = openStorage(dir, options);
    o.storage.save(hard(1, 1, 0), entries(1, 5, 1), undefined);
    o.storage.close();
    const path = lastSegment(dir);
    const bytes = readFileSync(path);
    const { end } = layout(path);
    const torn = frameRecord(ENTRY_RECORD, encodeEntry(entry(6, 1, 40)));
    bytes.set(torn.subarray(0, 7), end); // half a header ...
    bytes.set(torn, end + 200); // ... then a whole record further on: not the last write
    writeFileSync(path, bytes);
    const err = corruption(() => openStorage(dir, options));
    expect(err.file).toBe(path);
    expect(err.offset).toBe(end);
  });

  it("rollover cuts the full segment to its last record before its sync; replay accepts every segment", () => {
    const options = { segmentBytesMax: 1000, preallocateBytes: 256 };
    const model = new Model();
    let o = reopen(dir, model, options);
    for (let i = 1; i <= 60; i++) both(o, model, hard(1, 1, i - 1), [entry(i, 1, 24)]);
    const names = segmentFiles(dir);
    expect(names.length).toBeGreaterThan(3);
    for (const name of names.slice(0, -1)) {
      const l = layout(walPath(dir, name));
      expect(l.size, name).toBe(l.end);
      expect(l.size).toBeLessThanOrEqual(options.segmentBytesMax);
    }
    expectLayout(dir, [options.preallocateBytes], options.segmentBytesMax);
    o.storage.close();
    o = reopen(dir, model, options);
    o.storage.close();
  });

  it("a zero tail in a segment that is not the last is corruption", () => {
    const options = { segmentBytesMax: 600, preallocateBytes: 256 };
    const o = openStorage(dir, options);
    for (let i = 1; i <= 30; i++) o.storage.save(hard(1, 1, i - 1), [entry(i, 1, 24)], undefined);
    o.storage.close();
    const names = segmentFiles(dir);
    expect(names.length).toBeGreaterThan(2);
    const first = walPath(dir, names[0]!);
    const size = statSync(first).size;
    writeFileSync(first, Buffer.concat([readFileSync(first), Buffer.alloc(256)]));
    const err = corruption(() => openStorage(dir, options));
    expect(err.file).toBe(first);
    expect(err.offset).toBe(size);
    expect(err.message).toContain("in a segment that is not the last");
  });

  it("preallocation off (0): every segment ends at its last record, as before, and reopens", () => {
    const options = { segmentBytesMax: 800, preallocateBytes: 0 };
    const model = new Model();
    let o = reopen(dir, model, options);
    expect(layout(lastSegment(dir))).toMatchObject({ zerosAfter: true });
    expect(statSync(lastSegment(dir)).size).toBe(layout(lastSegment(dir)).end);
    for (let i = 1; i <= 40; i++) both(o, model, hard(1, 1, i - 1), [entry(i, 1, 24)]);
    expect(segmentFiles(dir).length).toBeGreaterThan(2);
    const noZeroTail = (): void => {
      for (const name of segmentFiles(dir)) {
        const l = layout(walPath(dir, name));
        expect(l.size, name).toBe(l.end);
      }
    };
    noZeroTail();
    o.storage.close();
    o = reopen(dir, model, options);
    both(o, model, hard(2, 1, 40), entries(41, 43, 2));
    noZeroTail();
    o.storage.close();
    // The same log reopens with preallocation on, and off again after that.
    o = reopen(dir, model, { segmentBytesMax: 800, preallocateBytes: 512 });
    both(o, model, undefined, entries(44, 45, 2));
    o.storage.close();
    reopen(dir, model, options).storage.close();
  });
});

describe("wal preallocation: random saves, compactions and restarts", () => {
  it("recover the model, and the files keep the preallocation layout", () => {
    let run = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(0, 64, 300, 4096),
        fc.constantFrom(300, 1000, 1 << 20),
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant("save" as const),
              n: fc.integer({ min: 1, max: 6 }),
              size: fc.nat(90),
            }),
            fc.record({ kind: fc.constant("compact" as const) }),
            fc.record({ kind: fc.constant("restart" as const), chunk: fc.constantFrom(0, 64, 4096) }),
          ),
          { minLength: 1, maxLength: 30 },
        ),
        (firstChunk, segmentBytesMax, commands) => {
          const d = join(dir, `run-${run++}`);
          let options = { segmentBytesMax, preallocateBytes: firstChunk };
          const chunks = [firstChunk];
          const model = new Model();
          let o = openStorage(d, options);
          for (const c of commands) {
            const last = model.lastIndex();
            if (c.kind === "save") {
              const es = Array.from({ length: c.n }, (_, i) => entry(last + 1 + i, 1, c.size));
              both(o, model, hard(1, 1, last), es);
            } else if (c.kind === "compact") {
              const index = model.hardState.commit;
              if (index > model.snapshot.meta.index) {
                o.storage.saveSnapshot(snap(index, 1));
                model.compact(snap(index, 1));
              }
            } else {
              o.storage.close();
              options = { segmentBytesMax, preallocateBytes: c.chunk };
              chunks.push(c.chunk);
              o = reopen(d, model, options);
            }
            expectLayout(d, chunks, segmentBytesMax);
          }
          o.storage.close();
          reopen(d, model, options).storage.close();
          removeDir(d);
        },
      ),
      { numRuns: 60 },
    );
  });
});
