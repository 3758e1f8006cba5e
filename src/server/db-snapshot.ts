/**
 * The snapshot file of a member's state: what Maintenance.Snapshot streams,
 * what `etcdctl snapshot save` writes to disk unchanged, and what
 * `leasehold snapshot restore` reads (restore.ts).
 *
 * etcd streams its bbolt file and appends the SHA-256 of it; etcdctl keeps
 * the stream as it came and accepts it only if its size is a multiple of
 * 512 plus 32 (clientv3/snapshot hasChecksum: bbolt files are page-aligned).
 * leasehold streams this format instead, laid out to pass the same check:
 *
 *   0      8 bytes  magic "LHDBSNAP"
 *   8      u32      format version (1)
 *   12     u32      H: header length
 *   16     u32, u32 D: state length (high, low)
 *   24     H bytes  header: UTF-8 JSON (DbSnapshotHeader)
 *   24+H   D bytes  the state machine's snapshot (StateMachine.snapshot)
 *   ...             zero bytes up to a multiple of 512
 *   end    32 bytes SHA-256 of everything before it (as etcd appends)
 *
 * Contract: `decodeDbSnapshot` is the gateway for files from users: it checks
 * the checksum (unless told to skip it, as etcdctl's --skip-hash-check), the
 * magic (naming an etcd bbolt file as such: leasehold cannot read those),
 * the version, the lengths and the header, and fails with a
 * `DbSnapshotError` (stable code "DB_SNAPSHOT") saying what is wrong. The
 * state inside is trusted once the checksum matched.
 */

import { createHash } from "node:crypto";

/** etcdctl's alignment: a saved snapshot is N × 512 bytes plus the 32-byte checksum. */
export const DB_SNAPSHOT_BLOCK_BYTES = 512;
/** The length of the trailing SHA-256. */
export const DB_SNAPSHOT_CHECKSUM_BYTES = 32;
const MAGIC = "LHDBSNAP";
const VERSION = 1;
const FIXED_BYTES = 24;
/** Longest header accepted: it holds a few ids and numbers. */
const HEADER_BYTES_MAX = 64 * 1024;
/** bbolt's meta page magic (little-endian u32 at offset 16 of a bbolt file): an etcd snapshot. */
const BOLT_MAGIC = 0xed0cdaed;

/** Where and when a snapshot was taken; for the restore's log and `snapshot status`. */
export interface DbSnapshotHeader {
  /** The member that streamed it, in hex (etcd's way of printing ids). */
  readonly memberId: string;
  /** Its cluster, decimal. */
  readonly clusterId: string;
  /** The key space's revision and compacted revision at the snapshot. */
  readonly revision: number;
  readonly compactRevision: number;
  /** The Raft index of the last entry in it. */
  readonly appliedIndex: number;
}

/** A file that is not a leasehold snapshot, or a damaged one. */
export class DbSnapshotError extends Error {
  override readonly name = "DbSnapshotError";
  readonly code = "DB_SNAPSHOT";
}

/** The SHA-256 of `body`: the stream's last 32 bytes. */
export function dbSnapshotChecksum(body: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(body).digest());
}

/** The file without its checksum: header, state and padding (a multiple of 512 bytes). */
export function encodeDbSnapshot(header: DbSnapshotHeader, state: Uint8Array): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const used = FIXED_BYTES + h.length + state.length;
  const total = Math.ceil(used / DB_SNAPSHOT_BLOCK_BYTES) * DB_SNAPSHOT_BLOCK_BYTES;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  out.set(new TextEncoder().encode(MAGIC), 0);
  v.setUint32(8, VERSION);
  v.setUint32(12, h.length);
  v.setUint32(16, Math.floor(state.length / 0x1_0000_0000));
  v.setUint32(20, state.length >>> 0);
  out.set(h, FIXED_BYTES);
  out.set(state, FIXED_BYTES + h.length);
  return out;
}

/** What a snapshot file holds. */
export interface DecodedDbSnapshot {
  readonly header: DbSnapshotHeader;
  /** The state machine's snapshot (StateMachine.snapshot's bytes). */
  readonly state: Uint8Array;
  /** Whether the file carried a checksum (and it matched). */
  readonly checked: boolean;
}

/** Reads a snapshot file's bytes; throws DbSnapshotError (see the header). */
export function decodeDbSnapshot(
  file: Uint8Array,
  options: { skipHashCheck?: boolean } = {},
): DecodedDbSnapshot {
  const hasHash = file.length % DB_SNAPSHOT_BLOCK_BYTES === DB_SNAPSHOT_CHECKSUM_BYTES;
  let body = file;
  if (hasHash) {
    body = file.subarray(0, file.length - DB_SNAPSHOT_CHECKSUM_BYTES);
    const want = Buffer.from(file.subarray(body.length));
    const got = Buffer.from(dbSnapshotChecksum(body));
    if (!options.skipHashCheck && !want.equals(got))
      throw new DbSnapshotError(
        `expected sha256 ${want.toString("hex")}, got ${got.toString("hex")}: the file is damaged`,
      );
  } else if (!options.skipHashCheck) {
    throw new DbSnapshotError("snapshot missing hash but --skip-hash-check=false");
  }
  checkMagic(body);
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const version = v.getUint32(8);
  if (version !== VERSION) throw new DbSnapshotError(`unknown snapshot format version ${version}`);
  const headerBytes = v.getUint32(12);
  const stateBytes = v.getUint32(16) * 0x1_0000_0000 + v.getUint32(20);
  if (headerBytes > HEADER_BYTES_MAX || FIXED_BYTES + headerBytes + stateBytes > body.length)
    throw new DbSnapshotError(
      `the snapshot says it holds ${headerBytes} + ${stateBytes} bytes, the file has ${body.length}: it is truncated`,
    );
  const header = parseHeader(body.subarray(FIXED_BYTES, FIXED_BYTES + headerBytes));
  const start = FIXED_BYTES + headerBytes;
  return {
    header,
    state: body.subarray(start, start + stateBytes),
    checked: hasHash && !options.skipHashCheck,
  };
}

function checkMagic(body: Uint8Array): void {
  const magic = new TextDecoder().decode(body.subarray(0, MAGIC.length));
  if (body.length >= FIXED_BYTES && magic === MAGIC) return;
  if (body.length >= 20 && new DataView(body.buffer, body.byteOffset).getUint32(16, true) === BOLT_MAGIC)
    throw new DbSnapshotError(
      "this is an etcd (bbolt) snapshot: leasehold restores only snapshots saved from a leasehold member",
    );
  throw new DbSnapshotError("not a leasehold snapshot (no LHDBSNAP magic)");
}

function parseHeader(bytes: Uint8Array): DbSnapshotHeader {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new DbSnapshotError(`the snapshot's header is not JSON (${(e as Error).message})`);
  }
  const o = v as Record<string, unknown>;
  const ok =
    typeof o === "object" &&
    o !== null &&
    typeof o.memberId === "string" &&
    typeof o.clusterId === "string" &&
    [o.revision, o.compactRevision, o.appliedIndex].every((n) => Number.isSafeInteger(n));
  if (!ok) throw new DbSnapshotError("the snapshot's header lacks its ids or revisions");
  return {
    memberId: o.memberId as string,
    clusterId: o.clusterId as string,
    revision: o.revision as number,
    compactRevision: o.compactRevision as number,
    appliedIndex: o.appliedIndex as number,
  };
}
