/**
 * The write-ahead log: Raft entries, hard states and snapshot markers in
 * append-only segment files, `wal/<seq>-<firstIndex>.wal` (16 hex digits each;
 * `firstIndex` is the index the next entry had when the segment was created).
 *
 * Segment file (big-endian): magic "LHWL", u32 version (1), u64 seq, then
 * records (record.ts: length, type, header CRC-32, payload CRC-32, payload):
 *   1 state      u64 snapIndex, u64 snapTerm, u64 lastIndex, HardState (codec):
 *                the log's state when the segment began; always the first
 *                record, and only there. Older segments can then be deleted.
 *   2 entry      one Entry (codec); its index must be lastIndex + 1
 *   3 hardState  HardState (codec)
 *   4 snapshot   u64 index, u64 term, u8 replace: a snapshot file with this
 *                index and term is durable. replace=0 (compaction): entries up
 *                to index are covered; replace=1 (a snapshot from the leader):
 *                the whole log is replaced, it now ends at index.
 *   5 truncate   u64 after: entries above `after` are discarded (a leader
 *                overwrote a suffix); the entries that follow replace them.
 *
 * Writing: records are appended with one write per segment touched, and the
 * caller syncs once per batch (group commit). A segment rolls over at a record
 * boundary once it would pass `segmentBytesMax`: the full segment is cut to the
 * end of its last record (its zero tail removed, below) and fdatasync'ed, and
 * the next one is created complete with its state record (written as `.tmp`,
 * fsynced, renamed, directory fsynced). So every segment but the last is synced
 * whole and ends with its last record, and every segment file starts with a
 * valid header and state record.
 *
 * Preallocation: the last segment is kept zero-filled ahead of its append
 * position, up to the next multiple of `preallocateBytes` (PREALLOC_CHUNK_BYTES,
 * 1 MiB, by default; 0 turns it off), capped at `segmentBytesMax`. A new
 * segment is created with zeros up to the first chunk; an append that passes
 * the allocated end writes its records and then real zeros (files.ts
 * writeZeros) up to the next chunk boundary, and the caller's one fdatasync
 * covers both. So the file size, and with it the inode, changes at about one
 * sync per chunk of log; the other syncs overwrite allocated blocks and only
 * flush data (on ext4 a size change costs a journal commit, which stalls when
 * other writers load the journal; etcd preallocates its segments likewise).
 * Invariant: end <= allocated, and the bytes in [end, allocated) are zero.
 * Known limit: inside the allocation a power loss during a sync may persist a
 * later sector of the unsynced write and not an earlier one (no size change
 * orders them any more); replay then finds a bad record with data after it and
 * refuses to start (StorageCorruptionError) rather than guess that it was torn.
 *
 * Replay (recovery rules): segments must have consecutive seqs; each starts
 * with a state record equal to the state the previous segments replay to (the
 * oldest one seeds it). Records must verify and apply without a gap (applyOp).
 * A torn tail (record.ts) is allowed in the last segment only: a zero tail (the
 * preallocated space, or a file a crash extended with zeros) is kept as the
 * allocation, since overwriting zeros is what appending does anyway; any other
 * torn tail (part of a record, with or without zeros after it) is cut off and
 * the segment synced. Either way appending resumes at the end of the last
 * verified record, never at the file size. A torn tail anywhere else (a zero
 * tail included) and any other damage make replay throw StorageCorruptionError
 * naming the file and byte offset. Replay may start at a segment whose
 * predecessors were deleted (below a snapshot), so entries up to `base` may be
 * unknown while replaying; at the end the WAL must hold every entry above its
 * last snapshot marker (base = snapIndex: none missing at the front), and the
 * hard state's commit index must not pass the last entry.
 */

import {
  closeSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
} from "node:fs";
import { join } from "node:path";
import type { Entry, HardState, LogIndex, Term } from "../raft/index.ts";
import {
  assert,
  assertNever,
  CodecError,
  decodeEntry,
  decodeHardState,
  encodeEntry,
  encodeHardState,
  logIndex,
  memberId,
  term,
} from "../raft/index.ts";
import { StorageCorruptionError } from "./errors.ts";
import type { IoCounters } from "./files.ts";
import { hex16, syncDir, syncFile, writeFully, writeZeros, zeroFrom } from "./files.ts";
import type { RecordToFrame } from "./record.ts";
import {
  frameRecord,
  frameRecords,
  RECORD_HEADER_BYTES,
  RECORD_PAYLOAD_BYTES_MAX,
  scanRecords,
} from "./record.ts";

/** Default segment size before rollover. */
export const SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** Default preallocation chunk of the last segment (header: Preallocation). */
export const PREALLOC_CHUNK_BYTES = 1024 * 1024;

const MAGIC = 0x4c48574c; // "LHWL"
const VERSION = 1;
const SEGMENT_HEADER_BYTES = 16;
const SEGMENT_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;
const REC = { state: 1, entry: 2, hardState: 3, snapshot: 4, truncate: 5 } as const;

/** One change to the log, as written to (and replayed from) the WAL. */
export type WalOp =
  | { readonly type: "entry"; readonly entry: Entry }
  | { readonly type: "hardState"; readonly hardState: HardState }
  | { readonly type: "snapshot"; readonly index: LogIndex; readonly term: Term; readonly replace: boolean }
  | { readonly type: "truncate"; readonly after: LogIndex };

/** The log as the WAL describes it. Invariant: snapIndex <= base <= lastIndex. */
export interface LogState {
  snapIndex: number;
  snapTerm: number;
  /** Entries up to `base` are not in the WAL: covered by the snapshot, or in removed segments. */
  base: number;
  lastIndex: number;
  hardState: HardState;
  /** Entries base+1..lastIndex while replaying; undefined while appending (the Raft core holds them). */
  entries: Entry[] | undefined;
}

/** What is wrong with applying `op` to `s`, or undefined after applying it. */
export function applyOp(s: LogState, op: WalOp): string | undefined {
  switch (op.type) {
    case "entry":
      if (op.entry.index !== s.lastIndex + 1) return `entry ${op.entry.index} after ${s.lastIndex}: a gap`;
      s.entries?.push(op.entry);
      s.lastIndex++;
      return undefined;
    case "hardState":
      s.hardState = op.hardState;
      return undefined;
    case "truncate":
      if (op.after < s.snapIndex || op.after >= s.lastIndex) {
        return `truncate after ${op.after}, outside [${s.snapIndex}, ${s.lastIndex})`;
      }
      if (op.after >= s.base) {
        s.entries?.splice(op.after - s.base);
      } else {
        // Replaying from a segment whose predecessors were deleted: the entries up to `after` were in
        // them. Legitimate only if a later snapshot marker covers them (checked at the end of replay).
        if (s.entries) s.entries = [];
        s.base = op.after;
      }
      s.lastIndex = op.after;
      return undefined;
    case "snapshot":
      if (op.index <= s.snapIndex) return `snapshot ${op.index} not after snapshot ${s.snapIndex}`;
      if (op.replace) {
        if (s.entries) s.entries = [];
        s.base = op.index;
        s.lastIndex = op.index;
      } else {
        if (op.index > s.lastIndex) return `compaction to ${op.index} beyond the last index ${s.lastIndex}`;
        if (op.index > s.base) {
          const covered = s.entries?.[op.index - s.base - 1];
          if (covered !== undefined && covered.term !== op.term) {
            return `compaction to ${op.term}/${op.index} but entry ${op.index} has term ${covered.term}`;
          }
          s.entries?.splice(0, op.index - s.base);
          s.base = op.index;
        }
      }
      s.snapIndex = op.index;
      s.snapTerm = op.term;
      return undefined;
    default:
      return assertNever(op, "wal op");
  }
}

/** Segment sizing. */
export interface WalOptions {
  readonly segmentBytesMax: number;
  /**
   * The last segment is zero-filled ahead of the append position up to the next
   * multiple of this (header: Preallocation); 0 turns preallocation off.
   * Default PREALLOC_CHUNK_BYTES.
   */
  readonly preallocateBytes?: number | undefined;
  /** Told how long each sync() fsync took, in seconds (etcd_disk_wal_fsync_duration_seconds). */
  readonly onSync?: ((seconds: number) => void) | undefined;
}

interface Segment {
  readonly seq: number;
  /** The log's last index when the segment began (its state record's lastIndex). */
  readonly startLast: number;
  readonly path: string;
}

export class Wal {
  private readonly dir: string;
  private readonly opts: WalOptions;
  private readonly io: IoCounters;
  /** Oldest first. Invariant: seqs consecutive; the last is open for appending as `fd`. */
  private readonly segments: Segment[];
  private fd: number;
  /** End of the current segment's last record: the next record goes here. Invariant: end <= allocated. */
  private end: number;
  /** The current segment's file size; the bytes in [end, allocated) are zero. */
  private allocated: number;
  /** Bytes of the current segment's header and state record. */
  private startSize: number;
  /** Written since the last sync. */
  private dirty = false;
  private readonly mirror: LogState;

  private constructor(dir: string, opts: WalOptions, io: IoCounters, segments: Segment[], open: OpenSegment) {
    this.dir = dir;
    this.opts = opts;
    this.io = io;
    this.segments = segments;
    this.fd = open.fd;
    this.end = open.end;
    this.allocated = open.allocated;
    this.startSize = open.startSize;
    this.mirror = { ...open.state, entries: undefined };
  }

  /** A new WAL in the empty directory `dir`: one segment for an empty log. */
  static create(dir: string, opts: WalOptions, io: IoCounters): Wal {
    const state: LogState = {
      snapIndex: 0,
      snapTerm: 0,
      base: 0,
      lastIndex: 0,
      hardState: { term: term(0), vote: memberId(0), commit: logIndex(0) },
      entries: undefined,
    };
    const { segment, open } = createSegment(dir, 1, state, opts, io);
    return new Wal(dir, opts, io, [segment], open);
  }

  /**
   * Replays the WAL in `dir` (recovery rules in the header), cutting a torn tail
   * off the last segment. Undefined when the directory holds no segment.
   */
  static replay(dir: string, opts: WalOptions, io: IoCounters): { wal: Wal; state: LogState } | undefined {
    const segments = listSegments(dir);
    if (segments.length === 0) return undefined;
    let r: SegmentReplay | undefined;
    for (let k = 0; k < segments.length; k++) {
      r = replaySegment(segments[k]!, r?.state, k === segments.length - 1);
    }
    assert(r !== undefined, "wal: replay of a non-empty WAL has a state");
    const { state } = r;
    const first = segments[0]!;
    if (state.base !== state.snapIndex) {
      throw new StorageCorruptionError(
        first.path,
        SEGMENT_HEADER_BYTES,
        `entries ${state.snapIndex + 1}..${state.base} are missing (the log starts after them)`,
      );
    }
    if (state.hardState.commit > state.lastIndex) {
      throw new StorageCorruptionError(
        segments[segments.length - 1]!.path,
        0,
        `hard state commit ${state.hardState.commit} beyond the last entry ${state.lastIndex}`,
      );
    }
    // Only now that everything verified: cut a torn tail that is not all zeros, and open for appending.
    const open = openForAppend(segments[segments.length - 1]!, r, io);
    return { wal: new Wal(dir, opts, io, segments, open), state };
  }

  get lastIndex(): number {
    return this.mirror.lastIndex;
  }

  get snapIndex(): number {
    return this.mirror.snapIndex;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  /** The last segment's append position (end of its last record) and file size, for tests and status. */
  get openSegment(): { readonly path: string; readonly end: number; readonly allocated: number } {
    return { path: this.segments[this.segments.length - 1]!.path, end: this.end, allocated: this.allocated };
  }

  /** Appends `ops` in order, rolling over as needed; not durable until sync(). Asserts each applies. */
  append(ops: readonly WalOp[]): void {
    let pending: RecordToFrame[] = [];
    let pendingBytes = 0;
    for (const op of ops) {
      const payload = encodeOp(op);
      if (payload.length > RECORD_PAYLOAD_BYTES_MAX)
        assert(false, `wal: a record of ${payload.length} bytes exceeds ${RECORD_PAYLOAD_BYTES_MAX}`);
      const recordBytes = RECORD_HEADER_BYTES + payload.length;
      const used = this.end + pendingBytes;
      if (used > this.startSize && used + recordBytes > this.opts.segmentBytesMax) {
        this.writeRecords(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        this.rollover();
      }
      const problem = applyOp(this.mirror, op);
      if (problem !== undefined) assert(false, `wal: cannot append: ${problem}`);
      pending.push({ type: recordType(op), payload });
      pendingBytes += recordBytes;
    }
    this.writeRecords(pending, pendingBytes);
  }

  /** Makes everything appended durable: one fdatasync, none if nothing was written. */
  sync(): void {
    if (!this.dirty) return;
    const startMs = performance.now();
    syncFile(this.fd, this.io);
    this.opts.onSync?.((performance.now() - startMs) / 1000);
    this.dirty = false;
  }

  /**
   * Deletes the oldest segments whose entries are all at or below `index` (a
   * durable snapshot's): those before the newest segment that began at or below
   * it. The last segment is never deleted. Returns how many were.
   */
  removeSegmentsCoveredBy(index: number): number {
    let cut = 0;
    for (let i = 1; i < this.segments.length; i++) if (this.segments[i]!.startLast <= index) cut = i;
    if (cut === 0) return 0;
    // Oldest first, so a crash in between leaves a run of consecutive segments.
    for (const seg of this.segments.splice(0, cut)) unlinkSync(seg.path);
    syncDir(this.dir, this.io);
    return cut;
  }

  close(): void {
    closeSync(this.fd);
  }

  /**
   * Frames `records` (`bytes` in all) into one buffer and writes it at the end
   * of the last record; when that passes the allocated end, zero-fills from the
   * records' end to the next allocation target (the same fdatasync covers both).
   */
  private writeRecords(records: readonly RecordToFrame[], bytes: number): void {
    if (records.length === 0) return;
    assert(this.end <= this.allocated, "wal: append position beyond the allocated end");
    const buf = frameRecords(records, bytes);
    const newEnd = this.end + buf.length;
    writeFully(this.fd, buf, this.end, this.io);
    if (newEnd > this.allocated) {
      const target = allocationTarget(newEnd, this.opts);
      writeZeros(this.fd, newEnd, target - newEnd, this.io);
      this.allocated = target;
    }
    this.end = newEnd;
    this.dirty = true;
  }

  /** Cuts the full segment's zero tail, syncs it whole, and opens the next one. */
  private rollover(): void {
    if (this.allocated > this.end) {
      // Before the segment's final sync: replay refuses a zero tail in any segment but the last.
      ftruncateSync(this.fd, this.end);
      this.allocated = this.end;
      this.dirty = true;
    }
    this.sync();
    closeSync(this.fd);
    const seq = this.segments[this.segments.length - 1]!.seq + 1;
    const { segment, open } = createSegment(this.dir, seq, this.mirror, this.opts, this.io);
    this.segments.push(segment);
    this.fd = open.fd;
    this.end = open.end;
    this.allocated = open.allocated;
    this.startSize = open.startSize;
  }
}

// ---------------------------------------------------------------- segments

interface OpenSegment {
  readonly fd: number;
  /** End of the last record: where appending continues. */
  readonly end: number;
  /** The file size; zeros from `end` on. */
  readonly allocated: number;
  readonly startSize: number;
  readonly state: LogState;
}

/**
 * The size to preallocate a segment to once it holds `end` bytes: the next
 * multiple of the chunk above `end`, capped at segmentBytesMax, never below
 * `end` (a record larger than a segment gets no zeros after it). `end` when
 * preallocation is off.
 */
function allocationTarget(end: number, opts: WalOptions): number {
  const chunk = opts.preallocateBytes ?? PREALLOC_CHUNK_BYTES;
  assert(Number.isSafeInteger(chunk) && chunk >= 0, `wal: preallocateBytes ${chunk}`);
  if (chunk === 0) return end;
  const next = (Math.floor(end / chunk) + 1) * chunk;
  return Math.max(end, Math.min(next, opts.segmentBytesMax));
}

function segmentName(seq: number, firstIndex: number): string {
  return `${hex16(seq)}-${hex16(firstIndex)}.wal`;
}

/**
 * Creates segment `seq` complete with its state record and preallocated zeros,
 * durably, and opens it for appending after the state record.
 */
function createSegment(
  dir: string,
  seq: number,
  state: LogState,
  opts: WalOptions,
  io: IoCounters,
): { segment: Segment; open: OpenSegment } {
  const header = new Uint8Array(SEGMENT_HEADER_BYTES);
  const view = new DataView(header.buffer);
  view.setUint32(0, MAGIC);
  view.setUint32(4, VERSION);
  view.setBigUint64(8, BigInt(seq));
  const start = Buffer.concat([header, frameRecord(REC.state, encodeState(state))]);
  const path = join(dir, segmentName(seq, state.lastIndex + 1));
  const tmp = `${path}.tmp`;
  const allocated = allocationTarget(start.length, opts);
  const fd = openSync(tmp, "w");
  try {
    writeFully(fd, start, 0, io);
    writeZeros(fd, start.length, allocated - start.length, io);
    syncFile(fd, io);
    renameSync(tmp, path);
    syncDir(dir, io);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  const snapshotOf: LogState = { ...state, entries: undefined };
  return {
    segment: { seq, startLast: state.lastIndex, path },
    open: { fd, end: start.length, allocated, startSize: start.length, state: snapshotOf },
  };
}

/** The segments in `dir`, oldest first; their seqs must be consecutive. Other names are left alone. */
function listSegments(dir: string): Segment[] {
  const out: Segment[] = [];
  for (const name of readdirSync(dir)) {
    const m = SEGMENT_NAME.exec(name);
    if (m) {
      const seq = Number.parseInt(m[1]!, 16);
      out.push({ seq, startLast: Number.parseInt(m[2]!, 16) - 1, path: join(dir, name) });
    }
  }
  out.sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < out.length; i++) {
    const seg = out[i]!;
    if (seg.seq === out[i - 1]!.seq)
      throw new StorageCorruptionError(seg.path, 0, `two segments with seq ${seg.seq}`);
    if (seg.seq !== out[i - 1]!.seq + 1) {
      throw new StorageCorruptionError(seg.path, 0, `segment ${out[i - 1]!.seq + 1} is missing before it`);
    }
  }
  return out;
}

/** The outcome of replaying one segment. */
interface SegmentReplay {
  readonly state: LogState;
  /** End of the last verified record. */
  readonly goodEnd: number;
  /** End of the state record. */
  readonly startSize: number;
  /** A torn tail follows goodEnd (only ever in the last segment). */
  readonly torn: boolean;
  /** The file's size; when `torn`, every byte from goodEnd to it is zero exactly if `zeroTail`. */
  readonly fileBytes: number;
  /** The torn tail is all zeros (preallocated space): kept as the allocation, not cut. */
  readonly zeroTail: boolean;
}

/** Replays one segment onto `prev` (undefined for the oldest). Reads only. */
function replaySegment(seg: Segment, prev: LogState | undefined, last: boolean): SegmentReplay {
  const buf = readFileSync(seg.path);
  const bad = (offset: number, detail: string) => new StorageCorruptionError(seg.path, offset, detail);
  if (buf.length < SEGMENT_HEADER_BYTES) throw bad(0, `${buf.length} bytes, short of the segment header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(0) !== MAGIC) throw bad(0, "not a WAL segment (bad magic)");
  if (view.getUint32(4) !== VERSION) throw bad(4, `WAL format version ${view.getUint32(4)}`);
  if (view.getBigUint64(8) !== BigInt(seg.seq))
    throw bad(8, `header seq ${view.getBigUint64(8)}, named ${seg.seq}`);

  const { records, end } = scanRecords(buf, SEGMENT_HEADER_BYTES);
  if (end.kind === "corrupt") throw bad(end.offset, end.reason);
  if (end.kind === "torn" && !last) throw bad(end.offset, `${end.reason}, in a segment that is not the last`);

  const first = records[0];
  if (first === undefined || first.type !== REC.state)
    throw bad(SEGMENT_HEADER_BYTES, "no state record first");
  const start = decodeState(first.payload, (detail) => bad(first.offset, detail));
  if (start.lastIndex !== seg.startLast) {
    throw bad(first.offset, `state record's last index ${start.lastIndex}, named for ${seg.startLast}`);
  }
  let state: LogState;
  if (prev === undefined) {
    state = { ...start, entries: [] };
  } else {
    const mismatch = stateMismatch(prev, start);
    if (mismatch !== undefined)
      throw bad(first.offset, `does not continue the previous segment: ${mismatch}`);
    state = prev;
  }
  for (const rec of records.slice(1)) {
    const op = decodeOp(rec.type, rec.payload, (detail) => bad(rec.offset, detail));
    const problem = applyOp(state, op);
    if (problem !== undefined) throw bad(rec.offset, problem);
  }
  const torn = end.kind === "torn";
  const goodEnd = torn ? end.offset : buf.length;
  const startSize = first.offset + RECORD_HEADER_BYTES + first.payload.length;
  return { state, goodEnd, startSize, torn, fileBytes: buf.length, zeroTail: torn && zeroFrom(buf, goodEnd) };
}

/**
 * Opens the last segment for appending at `goodEnd` (the end of its last
 * verified record, not the file size). A zero tail stays as the allocation; any
 * other torn tail is cut and the cut synced, so what follows the records is
 * zeros or nothing before anything new is written.
 */
function openForAppend(seg: Segment, r: SegmentReplay, io: IoCounters): OpenSegment {
  const fd = openSync(seg.path, "r+");
  let allocated = r.fileBytes;
  try {
    if (r.torn && !r.zeroTail) {
      ftruncateSync(fd, r.goodEnd);
      syncFile(fd, io);
      allocated = r.goodEnd;
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  assert(r.goodEnd <= allocated, "wal: the last record ends beyond the file");
  return { fd, end: r.goodEnd, allocated, startSize: r.startSize, state: r.state };
}

function stateMismatch(s: LogState, start: LogState): string | undefined {
  const a = `snapshot ${s.snapTerm}/${s.snapIndex} last ${s.lastIndex} hard ${hardText(s.hardState)}`;
  const b = `snapshot ${start.snapTerm}/${start.snapIndex} last ${start.lastIndex} hard ${hardText(start.hardState)}`;
  return a === b ? undefined : `replayed ${a}, segment starts at ${b}`;
}

function hardText(hs: HardState): string {
  return `${hs.term}/${hs.vote}/${hs.commit}`;
}

// ---------------------------------------------------------------- payloads

function recordType(op: WalOp): number {
  return REC[op.type];
}

function u64s(values: readonly number[], tail: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(values.length * 8 + tail.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => {
    view.setBigUint64(i * 8, BigInt(v));
  });
  out.set(tail, values.length * 8);
  return out;
}

function encodeState(s: LogState): Uint8Array {
  return u64s([s.snapIndex, s.snapTerm, s.lastIndex], encodeHardState(s.hardState));
}

function encodeOp(op: WalOp): Uint8Array {
  switch (op.type) {
    case "entry":
      return encodeEntry(op.entry);
    case "hardState":
      return encodeHardState(op.hardState);
    case "snapshot":
      return u64s([op.index, op.term], Uint8Array.of(op.replace ? 1 : 0));
    case "truncate":
      return u64s([op.after]);
    default:
      return assertNever(op, "wal op");
  }
}

type Bad = (detail: string) => StorageCorruptionError;

/** Reads `count` leading u64 fields, each a safe integer. */
function readU64s(payload: Uint8Array, count: number, bad: Bad): number[] {
  if (payload.length < count * 8) throw bad(`payload of ${payload.length} bytes, short of ${count} u64s`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const v = view.getBigUint64(i * 8);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`u64 field ${i} is ${v}, above 2^53 - 1`);
    out.push(Number(v));
  }
  return out;
}

function codec<T>(decode: (b: Uint8Array) => T, bytes: Uint8Array, bad: Bad): T {
  try {
    return decode(bytes);
  } catch (err) {
    if (err instanceof CodecError) throw bad(err.message);
    throw err;
  }
}

function decodeState(payload: Uint8Array, bad: Bad): LogState {
  const [snapIndex, snapTerm, lastIndex] = readU64s(payload, 3, bad) as [number, number, number];
  const hardState = codec(decodeHardState, payload.subarray(24), bad);
  if (snapIndex > lastIndex) throw bad(`state record: snapshot ${snapIndex} beyond last index ${lastIndex}`);
  return { snapIndex, snapTerm, base: lastIndex, lastIndex, hardState, entries: undefined };
}

function decodeOp(type: number, payload: Uint8Array, bad: Bad): WalOp {
  switch (type) {
    case REC.entry:
      return { type: "entry", entry: codec(decodeEntry, payload, bad) };
    case REC.hardState:
      return { type: "hardState", hardState: codec(decodeHardState, payload, bad) };
    case REC.snapshot: {
      if (payload.length !== 17 || payload[16]! > 1) throw bad("malformed snapshot marker");
      const [index, t] = readU64s(payload, 2, bad) as [number, number];
      return { type: "snapshot", index: logIndex(index), term: term(t), replace: payload[16] === 1 };
    }
    case REC.truncate: {
      if (payload.length !== 8) throw bad("malformed truncate record");
      return { type: "truncate", after: logIndex(readU64s(payload, 1, bad)[0]!) };
    }
    case REC.state:
      throw bad("a state record after the start of the segment");
    default:
      throw bad(`unknown record type ${type}`);
  }
}
