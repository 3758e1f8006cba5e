/**
 * Byte-string helpers for MVCC keys and values (etcd keys are arbitrary bytes,
 * ordered bytewise).
 *
 * Contract: pure functions; inputs are never mutated and outputs are fresh
 * arrays. Besides them, ByteWriter and ByteReader: the binary encoding of
 * state snapshots (format 2). The "key string" form maps each byte to one UTF-16 code unit
 * (0..255), so JS string order (`<`, `Array.prototype.sort()`) equals bytewise
 * order. That makes it a B-tree key and a Set/Map key for byte strings.
 */

import { assert } from "../raft/index.ts";

/** The empty byte string. Shared: never mutate it. */
export const EMPTY_BYTES: Uint8Array = new Uint8Array(0);

/**
 * etcd's range end meaning "to the end of the key space" (a single zero byte):
 * `[key, "\0")` is every key >= key, and `["\0", "\0")` is every key.
 */
export const RANGE_END_TO_END: Uint8Array = Uint8Array.of(0);

/** Bytewise comparison: negative, zero or positive as `a` sorts before, equal to, or after `b`. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** Whether `a` and `b` hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether `rangeEnd` is etcd's "to the end" marker, a single zero byte. */
export function isRangeEndToEnd(rangeEnd: Uint8Array): boolean {
  return rangeEnd.length === 1 && rangeEnd[0] === 0;
}

/**
 * The range end that selects every key starting with `key` (etcd's
 * GetPrefixRangeEnd): drop trailing 0xff bytes and increment the last byte
 * left. When nothing is left (empty or all-0xff key) the answer is "\0", i.e.
 * to the end of the key space.
 */
export function prefixEnd(key: Uint8Array): Uint8Array {
  for (let i = key.length - 1; i >= 0; i--) {
    if (key[i]! < 0xff) {
      // A copy even for a Node Buffer, whose own slice() is a view: the caller's key stays as it was.
      const end = Uint8Array.prototype.slice.call(key, 0, i + 1);
      end[i] = key[i]! + 1;
      return end;
    }
  }
  return RANGE_END_TO_END.slice();
}

/** Bytes per String.fromCharCode call: well under any engine's argument limit. */
const CHARS_PER_CALL = 8192;

/** The key string of `bytes`: one char (code 0..255) per byte; string order equals bytewise order. */
export function bytesToKeyString(bytes: Uint8Array): string {
  // `apply` takes the typed array as it is; a spread (`...bytes`) runs the iterator, about 8x slower.
  if (bytes.length <= CHARS_PER_CALL) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  let out = "";
  for (let i = 0; i < bytes.length; i += CHARS_PER_CALL) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + CHARS_PER_CALL) as unknown as number[]);
  }
  return out;
}

/** The bytes of a key string made by bytesToKeyString. */
export function keyStringToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  let all = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    all |= c;
    out[i] = c;
  }
  if (all > 0xff) assert(false, `bytes: ${JSON.stringify(s)} has a char that is not a byte`);
  return out;
}

const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/** Char code -> 6-bit value, -1 for characters outside the alphabet. */
const BASE64_VALUE: readonly number[] = (() => {
  const v = new Array<number>(128).fill(-1);
  for (let i = 0; i < BASE64_ALPHABET.length; i++) v[BASE64_ALPHABET.charCodeAt(i)] = i;
  return v;
})();

/** Standard base64 (RFC 4648 §4, with padding) of `bytes`, for JSON snapshots. */
export function bytesToBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    parts.push(
      BASE64_ALPHABET[n >> 18]! + BASE64_ALPHABET[(n >> 12) & 63]! + BASE64_ALPHABET[(n >> 6) & 63]!,
      BASE64_ALPHABET[n & 63]!,
    );
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    parts.push(`${BASE64_ALPHABET[n >> 18]!}${BASE64_ALPHABET[(n >> 12) & 63]!}==`);
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    parts.push(
      `${BASE64_ALPHABET[n >> 18]!}${BASE64_ALPHABET[(n >> 12) & 63]!}${BASE64_ALPHABET[(n >> 6) & 63]!}=`,
    );
  }
  return parts.join("");
}

/** The bytes of padded standard base64 text, or undefined if `text` is not exactly that. */
export function base64ToBytes(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0) return undefined;
  const pad = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const c = text.charCodeAt(i + j);
      const isPad = c === 61 && i + 4 === text.length && j >= 4 - pad;
      const v = isPad ? 0 : c < 128 ? BASE64_VALUE[c]! : -1;
      if (v < 0) return undefined;
      n = (n << 6) | v;
    }
    if (o < out.length) out[o++] = (n >> 16) & 0xff;
    if (o < out.length) out[o++] = (n >> 8) & 0xff;
    if (o < out.length) out[o++] = n & 0xff;
  }
  // Canonical form only: the bits that padding drops must be zero (the last
  // group's low 4 bits with "==", low 2 bits with "=").
  if (pad > 0) {
    const last = BASE64_VALUE[text.charCodeAt(text.length - pad - 1)]!;
    if ((last & (pad === 2 ? 0x0f : 0x03)) !== 0) return undefined;
  }
  return out;
}

/**
 * A growable buffer for binary encodings (state snapshots, format 2): bytes,
 * unsigned LEB128 varints of safe integers, fixed 64-bit big-endian values,
 * and length-prefixed byte strings. Deterministic: the same calls write the
 * same bytes. Its values are read back by ByteReader.
 */
export class ByteWriter {
  private buf: Uint8Array;
  private len = 0;

  constructor(initialBytes = 65_536) {
    assert(Number.isSafeInteger(initialBytes) && initialBytes > 0, `bytes: bad initial size ${initialBytes}`);
    this.buf = new Uint8Array(initialBytes);
  }

  u8(v: number): this {
    assert(Number.isInteger(v) && v >= 0 && v <= 0xff, `bytes: ${v} is not a byte`);
    this.ensure(1);
    this.buf[this.len++] = v;
    return this;
  }

  /** A safe integer ≥ 0 as unsigned LEB128 (1 to 8 bytes). */
  uint(v: number): this {
    assert(Number.isSafeInteger(v) && v >= 0, `bytes: ${v} is not a safe unsigned integer`);
    this.ensure(8);
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.len++] = v;
    return this;
  }

  /** 0 ≤ v < 2^64, as 8 bytes big-endian. */
  u64(v: bigint): this {
    assert(v >= 0n && v < 1n << 64n, `bytes: ${v} is not an unsigned 64-bit integer`);
    this.ensure(8);
    const hi = Number(v >> 32n);
    const lo = Number(v & 0xffff_ffffn);
    for (const word of [hi, lo]) {
      this.buf[this.len++] = word >>> 24;
      this.buf[this.len++] = (word >>> 16) & 0xff;
      this.buf[this.len++] = (word >>> 8) & 0xff;
      this.buf[this.len++] = word & 0xff;
    }
    return this;
  }

  /** `b` with its length first. */
  bytes(b: Uint8Array): this {
    this.uint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  /** A key string (one char per byte, bytesToKeyString) as `bytes` writes its bytes. */
  keyString(s: string): this {
    this.uint(s.length);
    this.ensure(s.length);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) assert(false, `bytes: char ${c} at ${i} is not a byte`);
      this.buf[this.len++] = c;
    }
    return this;
  }

  /** The bytes written, in a buffer of their own size. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    grown.set(this.buf.subarray(0, this.len));
    this.buf = grown;
  }
}

/**
 * Reads what a ByteWriter wrote. The input was checked at the boundary
 * (checksums): reading past the end or a malformed varint fails an assertion.
 */
export class ByteReader {
  private pos: number;

  constructor(
    private readonly buf: Uint8Array,
    start = 0,
  ) {
    this.pos = start;
  }

  /** Whether every byte was read. */
  get done(): boolean {
    return this.pos === this.buf.length;
  }

  u8(): number {
    assert(this.pos < this.buf.length, "bytes: read past the end");
    return this.buf[this.pos++]!;
  }

  uint(): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.u8();
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        assert(Number.isSafeInteger(v), "bytes: varint beyond 2^53");
        return v;
      }
      scale *= 0x80;
    }
    assert(false, "bytes: varint longer than 8 bytes");
  }

  u64(): bigint {
    let v = 0n;
    for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(this.u8());
    return v;
  }

  /** Length-prefixed bytes, as a view of the input (copy what is kept). */
  bytes(): Uint8Array {
    const n = this.uint();
    assert(this.pos + n <= this.buf.length, "bytes: read past the end");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Length-prefixed bytes as a key string (bytesToKeyString). */
  keyString(): string {
    return bytesToKeyString(this.bytes());
  }
}
