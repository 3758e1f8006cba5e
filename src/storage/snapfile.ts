/**
 * Snapshot files: one file per snapshot, `snap/<index>-<term>.snap` (16 hex
 * digits each), written atomically and verified on read.
 *
 * File format (big-endian):
 *   0   4 bytes  magic "LHSN"
 *   4   u32      format version (1)
 *   8   u32      body length
 *   12  u32      CRC-32 (zlib's) of the body
 *   16           body: the snapshot in the Raft codec (encodeSnapshot)
 *
 * Contract: a file with a final name is complete and synced (written as
 * `<name>.tmp`, fsynced, renamed, directory fsynced). Which snapshot is current
 * is decided by the WAL's snapshot marker, not by the files present (see
 * storage.ts): a file may exist whose marker never made it to the WAL.
 */

import { closeSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { Snapshot } from "../raft/index.ts";
import { CodecError, decodeSnapshot, encodeSnapshot } from "../raft/index.ts";
import { StorageCorruptionError } from "./errors.ts";
import type { IoCounters } from "./files.ts";
import { hex16, syncDir, syncFile, writeFully } from "./files.ts";

const MAGIC = 0x4c48534e; // "LHSN"
const VERSION = 1;
const HEADER_BYTES = 16;
const NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

/** A snapshot file found in the directory. */
export interface SnapshotFile {
  readonly name: string;
  readonly index: number;
  readonly term: number;
}

export function snapshotFileName(index: number, term: number): string {
  return `${hex16(index)}-${hex16(term)}.snap`;
}

/** The snapshot files in `dir`, oldest (lowest index) first. Other names are not ours and are left alone. */
export function listSnapshotFiles(dir: string): SnapshotFile[] {
  const out: SnapshotFile[] = [];
  for (const name of readdirSync(dir)) {
    const m = NAME.exec(name);
    if (m) out.push({ name, index: Number.parseInt(m[1]!, 16), term: Number.parseInt(m[2]!, 16) });
  }
  return out.sort((a, b) => a.index - b.index || a.term - b.term);
}

/** Writes `snap` durably under its final name (replacing a file of the same name). */
export function writeSnapshotFile(dir: string, snap: Snapshot, io: IoCounters): void {
  const body = encodeSnapshot(snap);
  const file = new Uint8Array(HEADER_BYTES + body.length);
  const view = new DataView(file.buffer);
  view.setUint32(0, MAGIC);
  view.setUint32(4, VERSION);
  view.setUint32(8, body.length);
  view.setUint32(12, crc32(body));
  file.set(body, HEADER_BYTES);
  const name = snapshotFileName(snap.meta.index, snap.meta.term);
  const tmp = join(dir, `${name}.tmp`);
  const fd = openSync(tmp, "w");
  try {
    writeFully(fd, file, 0, io);
    syncFile(fd, io);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
  syncDir(dir, io);
}

/** Reads and verifies one snapshot file; its contents must match its name. */
export function readSnapshotFile(dir: string, f: SnapshotFile): Snapshot {
  const path = join(dir, f.name);
  const buf = readFileSync(path);
  const bad = (offset: number, detail: string) => new StorageCorruptionError(path, offset, detail);
  if (buf.length < HEADER_BYTES) throw bad(0, `${buf.length} bytes, short of the snapshot header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(0) !== MAGIC) throw bad(0, "not a snapshot file (bad magic)");
  if (view.getUint32(4) !== VERSION) throw bad(4, `snapshot format version ${view.getUint32(4)}`);
  const length = view.getUint32(8);
  if (buf.length !== HEADER_BYTES + length)
    throw bad(8, `body length ${length}, file has ${buf.length - 16}`);
  const body = buf.subarray(HEADER_BYTES);
  if (crc32(body) !== view.getUint32(12)) throw bad(HEADER_BYTES, "snapshot checksum mismatch");
  let snap: Snapshot;
  try {
    snap = decodeSnapshot(body);
  } catch (err) {
    if (err instanceof CodecError) throw bad(HEADER_BYTES + err.offset, err.message);
    throw err;
  }
  if (snap.meta.index !== f.index || snap.meta.term !== f.term) {
    throw bad(
      HEADER_BYTES,
      `holds snapshot ${snap.meta.term}/${snap.meta.index}, named ${f.term}/${f.index}`,
    );
  }
  return snap;
}

/** Removes snapshot files: everything newer than `current`, and all but the `keep` newest up to it. */
export function pruneSnapshotFiles(dir: string, current: number, keep: number): void {
  const files = listSnapshotFiles(dir);
  const kept = files.filter((f) => f.index <= current).slice(-keep);
  for (const f of files) if (!kept.includes(f)) unlinkSync(join(dir, f.name));
}

/** Removes leftover `*.tmp` files of interrupted writes. */
export function removeTempFiles(dir: string): void {
  for (const name of readdirSync(dir)) if (name.endsWith(".tmp")) unlinkSync(join(dir, name));
}
