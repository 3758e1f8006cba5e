/**
 * Record framing for the write-ahead log: checksummed, length-prefixed records
 * and the scan that tells a torn final write from corruption.
 *
 * A record (all integers big-endian):
 *   0  u32  payload length (at most RECORD_PAYLOAD_BYTES_MAX)
 *   4  u8   record type
 *   5  u32  header checksum: CRC-32 (IEEE, zlib's) of bytes 0..4
 *   9  u32  payload checksum: CRC-32 of the payload
 *   13      payload
 * The header has its own checksum so that a damaged length is recognised as
 * damage: without it, a flipped length bit in a middle record could point past
 * the end of the file and pass for a torn last write, silently dropping the
 * acknowledged records after it.
 *
 * The scan stops at the first record that does not verify and classifies it:
 * - "torn" when it can only be the unfinished last write: fewer than 13 bytes
 *   left; a verified header whose payload runs past the end of the file; a bad
 *   payload checksum on a record that ends exactly at the end of the file; or any
 *   bad record followed only by zero bytes: after its 13 header bytes when the
 *   header is bad, after its payload when the payload is (a file extended with
 *   zeros by a crash, or a write cut short inside a WAL segment's preallocated
 *   zero tail, wal.ts, which can leave part of a header followed by zeros);
 * - "corrupt" otherwise (a bad record with data after it, an oversized length).
 * Whether a torn tail may be cut is the caller's decision (only in the last
 * segment).
 */

import { crc32 } from "node:zlib";
import { assert } from "../raft/index.ts";
import { zeroFrom } from "./files.ts";

export const RECORD_HEADER_BYTES = 13;
/** A limit on one record (one log entry plus a few bytes); larger is refused on write and on read. */
export const RECORD_PAYLOAD_BYTES_MAX = 256 * 1024 * 1024;

/** One verified record; `payload` is a view of the scanned buffer. */
export interface RawRecord {
  readonly type: number;
  readonly payload: Uint8Array;
  /** Offset of the record's first header byte in the file. */
  readonly offset: number;
}

/** How a scan ended. `offset` is where the first bad record starts. */
export type ScanEnd =
  | { readonly kind: "clean" }
  | { readonly kind: "torn"; readonly offset: number; readonly reason: string }
  | { readonly kind: "corrupt"; readonly offset: number; readonly reason: string };

/** Header and payload of one record, ready to append. A payload over the limit is a bug in the caller. */
export function frameRecord(type: number, payload: Uint8Array): Uint8Array {
  return frameRecords([{ type, payload }], RECORD_HEADER_BYTES + payload.length);
}

/** A record to frame: its type and payload. */
export interface RecordToFrame {
  readonly type: number;
  readonly payload: Uint8Array;
}

/**
 * Several records framed one after another in one buffer of `totalBytes`
 * (the sum of RECORD_HEADER_BYTES + payload length, which the caller counted
 * anyway): one allocation and one copy per payload for a whole batch.
 */
export function frameRecords(records: readonly RecordToFrame[], totalBytes: number): Uint8Array {
  const out = new Uint8Array(totalBytes);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const { type, payload } of records) {
    if (payload.length > RECORD_PAYLOAD_BYTES_MAX)
      assert(
        false,
        `storage: a record of ${payload.length} bytes exceeds ${RECORD_PAYLOAD_BYTES_MAX} (the host bounds entries)`,
      );
    view.setUint32(at, payload.length);
    view.setUint8(at + 4, type);
    view.setUint32(at + 5, crc32(out.subarray(at, at + 5)));
    view.setUint32(at + 9, crc32(payload));
    out.set(payload, at + RECORD_HEADER_BYTES);
    at += RECORD_HEADER_BYTES + payload.length;
  }
  assert(at === totalBytes, "storage: framed records do not fill the buffer");
  return out;
}

/** Every verified record from `start` on, and how the scan ended. Pure: reads only `buf`. */
export function scanRecords(buf: Uint8Array, start: number): { records: RawRecord[]; end: ScanEnd } {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const records: RawRecord[] = [];
  let at = start;
  const stop = (kind: "torn" | "corrupt", reason: string) => ({ records, end: { kind, offset: at, reason } });
  while (at < buf.length) {
    const left = buf.length - at;
    if (left < RECORD_HEADER_BYTES) return stop("torn", `${left} bytes left, short of a record header`);
    const length = view.getUint32(at);
    if (crc32(buf.subarray(at, at + 5)) !== view.getUint32(at + 5)) {
      if (zeroFrom(buf, at)) return stop("torn", "zero-filled tail");
      if (zeroFrom(buf, at + RECORD_HEADER_BYTES))
        return stop("torn", "record header checksum mismatch, only zeros after it");
      return stop("corrupt", "record header checksum mismatch");
    }
    if (length > RECORD_PAYLOAD_BYTES_MAX) return stop("corrupt", `record length ${length} over the limit`);
    const end = at + RECORD_HEADER_BYTES + length;
    if (end > buf.length) return stop("torn", `payload of ${length} bytes runs past the end of the file`);
    const payload = buf.subarray(at + RECORD_HEADER_BYTES, end);
    if (crc32(payload) !== view.getUint32(at + 9)) {
      if (end === buf.length || zeroFrom(buf, end))
        return stop("torn", "payload checksum mismatch at the end");
      return stop("corrupt", "payload checksum mismatch with records after it");
    }
    records.push({ type: view.getUint8(at + 4), payload, offset: at });
    at = end;
  }
  return { records, end: { kind: "clean" } };
}
