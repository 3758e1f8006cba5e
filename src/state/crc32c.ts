/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum etcd's
 * Maintenance.Hash and HashKV use (Go's crc32.MakeTable(crc32.Castagnoli)).
 * Written here because the deterministic core imports no node builtin
 * (CONVENTIONS 1); a table-driven byte loop is fast enough for an admin call.
 *
 * Contract: `crc32c(bytes)` equals `crc32cUpdate(crc32cUpdate(0, a), b)` for
 * bytes = a ++ b; the value is an unsigned 32-bit integer. The check value of
 * the ASCII text "123456789" is 0xE3069283 (RFC 3720 B.4).
 */

const TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** The CRC-32C of `prefix ++ bytes`, given `crc` = the CRC-32C of `prefix` (0 for none). */
export function crc32cUpdate(crc: number, bytes: Uint8Array): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** The CRC-32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  return crc32cUpdate(0, bytes);
}

/**
 * An incremental CRC-32C over a canonical byte encoding of mixed values
 * (the hash of a key space, of a state): numbers as 8 bytes big-endian
 * (safe integers), bigints as 8 bytes of their two's complement, bytes with
 * their length first so that concatenations cannot collide by shifting.
 */
export class Crc32cWriter {
  private crc = 0;
  private readonly scratch = new Uint8Array(8);
  private readonly view = new DataView(this.scratch.buffer);

  /** Writes `bytes` as they are (no length). */
  raw(bytes: Uint8Array): this {
    this.crc = crc32cUpdate(this.crc, bytes);
    return this;
  }

  /** Writes a safe integer as 8 bytes. */
  int(n: number): this {
    this.view.setBigInt64(0, BigInt(n));
    return this.raw(this.scratch);
  }

  /** Writes an int64 or uint64 as 8 bytes. */
  int64(n: bigint): this {
    this.view.setBigUint64(0, BigInt.asUintN(64, n));
    return this.raw(this.scratch);
  }

  /** Writes the length, then the bytes. */
  bytes(b: Uint8Array): this {
    return this.int(b.length).raw(b);
  }

  /** The CRC-32C of everything written. */
  value(): number {
    return this.crc;
  }
}
