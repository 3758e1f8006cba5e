/**
 * The few file operations storage needs, synchronous, with every fsync counted
 * (so a benchmark can report fsyncs per second) and every write completed.
 *
 * Contract: a file or directory entry is durable only after the matching
 * `syncFile` / `syncDir`; a name appears atomically with `renameSync` after the
 * temporary file's data is synced (write temp, fsync, rename, fsync directory).
 *
 * `writeZeros` preallocates by writing real zero bytes (not ftruncate, not
 * fallocate): a sparse or unwritten region would still need block allocation or
 * extent conversion, i.e. a filesystem journal commit, at the fdatasync after
 * the first real write into it. Overwriting written blocks inside the file's
 * size needs no metadata, so that fdatasync only flushes data blocks.
 */

import { closeSync, fdatasyncSync, fsyncSync, openSync, writeSync } from "node:fs";
import { assert } from "../raft/index.ts";

/** Counters shared by the WAL and the snapshot files of one storage. */
export interface IoCounters {
  /** fsync and fdatasync calls on files and directories. */
  fsyncs: number;
  /** Bytes handed to write(2) as data (records, headers, snapshots), zero fill excluded. */
  bytesWritten: number;
  /** Zero bytes written to preallocate WAL segments (writeZeros). */
  zeroBytesWritten: number;
}

/** Writes all of `data` at `position` (write(2) may write less than asked). */
export function writeFully(fd: number, data: Uint8Array, position: number, io: IoCounters): void {
  let done = 0;
  while (done < data.length) {
    done += writeSync(fd, data, done, data.length - done, position + done);
  }
  io.bytesWritten += data.length;
}

/** The largest single zero write; longer fills are written in pieces of this size. */
const ZERO_BLOCK_BYTES = 1024 * 1024;
let zeroBlock: Uint8Array | undefined;

/**
 * Writes `length` zero bytes at `position` (preallocation: see the header), counted
 * in `zeroBytesWritten`, not `bytesWritten`.
 */
export function writeZeros(fd: number, position: number, length: number, io: IoCounters): void {
  assert(length >= 0 && Number.isSafeInteger(length), `storage: zero fill of ${length} bytes`);
  if (length === 0) return;
  zeroBlock ??= new Uint8Array(ZERO_BLOCK_BYTES);
  let done = 0;
  while (done < length) {
    const n = Math.min(length - done, zeroBlock.length);
    let written = 0;
    while (written < n) written += writeSync(fd, zeroBlock, written, n - written, position + done + written);
    done += n;
  }
  io.zeroBytesWritten += length;
}

/** fdatasync: the file's data and the metadata needed to read it (its size). */
export function syncFile(fd: number, io: IoCounters): void {
  fdatasyncSync(fd);
  io.fsyncs++;
}

/** fsync of a directory, so the names created, renamed or removed in it are durable. */
export function syncDir(dir: string, io: IoCounters): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
    io.fsyncs++;
  } finally {
    closeSync(fd);
  }
}

/** Fixed-width hexadecimal for file names, so names sort in numeric order. */
export function hex16(n: number): string {
  return n.toString(16).padStart(16, "0");
}

/** True when every byte of `buf` from `from` on is zero (a zero-filled tail after a crash). */
export function zeroFrom(buf: Uint8Array, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}
