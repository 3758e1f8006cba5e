/**
 * The start of a gRPC (HTTP/2) connection, looked at before Node's HTTP/2
 * server sees it, to accept what etcdctl 3.4 sends and nghttp2 refuses.
 *
 * Why: etcdctl 3.4 (grpc-go 1.26) dials some commands (`endpoint status`,
 * `endpoint hashkv`, `--cluster`, ...) with a passthrough target, and then
 * sends the endpoint as typed, `http://127.0.0.1:2379`, as the `:authority`
 * header. nghttp2 (inside Node) checks authority characters and resets the
 * stream with PROTOCOL_ERROR on the '/'; Go's server accepts it; Node has no
 * option to turn the check off.
 *
 * What: the first HEADERS frame of the connection is rewritten in place:
 * an `:authority` literal that starts with `http://` or `https://` gets its
 * two slashes replaced by dots (`http:..127.0.0.1:2379`), raw or Huffman
 * coded ('/' and '.' both have 6-bit codes, RFC 7541 Appendix B), so every
 * length, and the HPACK dynamic table both ends keep, stays the same. Later
 * requests on the connection name the (rewritten) table entry by index. The
 * server ignores :authority.
 *
 * How: grpc-go waits for the server's SETTINGS before it sends a request, so
 * the front sends an empty SETTINGS frame itself, removes the client's ACK of
 * it from the byte stream (Node's session would take it for an ACK of its
 * own and fail), and hands the connection over, bytes unchanged otherwise,
 * once the first HEADERS frame was seen and the ACK removed, or when the
 * client sends nothing for `HANDSHAKE_IDLE_MS` after the ACK (a client that
 * connects before its first call).
 */

const PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const TYPE_HEADERS = 0x1;
const TYPE_SETTINGS = 0x4;
const FLAG_ACK = 0x1;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** An empty SETTINGS frame: the server preface the front sends. */
export const EMPTY_SETTINGS = Buffer.from([0, 0, 0, TYPE_SETTINGS, 0, 0, 0, 0, 0]);

/** How long the handshake waits for a first request after the client's ACK. */
export const HANDSHAKE_IDLE_MS = 20;

export type HandshakeStep =
  /** Send EMPTY_SETTINGS to the client now (once). */
  | "sendSettings"
  /** Need more bytes. */
  | "more"
  /** Hand the connection over with `bytes()` put back in front. */
  | "handOver"
  /** The ACK was removed; hand over if no request comes within HANDSHAKE_IDLE_MS. */
  | "idle";

export class H2Handshake {
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes parsed so far (the preface and whole frames). */
  private pos = 0;
  private settingsSent = false;
  private ackRemoved = false;
  private headersSeen = false;

  /** Takes the next bytes from the client; says what to do. */
  push(chunk: Buffer): HandshakeStep {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.pos === 0) {
      if (this.buf.length < PREFACE_BYTES) return "more";
      this.pos = PREFACE_BYTES;
    }
    while (this.buf.length - this.pos >= FRAME_HEADER_BYTES) {
      const length = this.buf.readUIntBE(this.pos, 3);
      const end = this.pos + FRAME_HEADER_BYTES + length;
      if (this.buf.length < end) break;
      const type = this.buf[this.pos + 3]!;
      const flags = this.buf[this.pos + 4]!;
      if (type === TYPE_SETTINGS && (flags & FLAG_ACK) !== 0 && this.settingsSent && !this.ackRemoved) {
        this.buf = Buffer.concat([this.buf.subarray(0, this.pos), this.buf.subarray(end)]);
        this.ackRemoved = true;
        continue;
      }
      if (type === TYPE_HEADERS && !this.headersSeen) {
        this.headersSeen = true;
        rewriteHeadersFrame(this.buf.subarray(this.pos, end), flags);
      }
      this.pos = end;
    }
    if (!this.settingsSent) {
      this.settingsSent = true;
      return "sendSettings";
    }
    if (this.ackRemoved) return this.headersSeen ? "handOver" : "idle";
    return "more";
  }

  /** Whether the client's ACK of EMPTY_SETTINGS was removed (handing over is safe). */
  get safe(): boolean {
    return this.ackRemoved;
  }

  /** Everything received, less the removed ACK, with the first HEADERS rewritten. */
  bytes(): Buffer {
    return this.buf;
  }
}

/** Rewrites an http(s):// `:authority` literal in a HEADERS frame (header included) in place. */
export function rewriteHeadersFrame(frame: Buffer, flags: number): void {
  let start = FRAME_HEADER_BYTES;
  let end = frame.length;
  if ((flags & FLAG_PADDED) !== 0) {
    if (frame.length <= start) return;
    end -= frame[start]!;
    start += 1;
  }
  if ((flags & FLAG_PRIORITY) !== 0) start += 5;
  if (start >= end) return;
  rewriteAuthority(frame.subarray(start, end));
}

/**
 * Walks an HPACK header block; rewrites the first `:authority` literal value
 * that starts with http:// or https:// (see the header). Stops at anything it
 * cannot parse: a block it does not understand is left as it is.
 */
export function rewriteAuthority(block: Buffer): boolean {
  let p = 0;
  while (p < block.length) {
    const b = block[p]!;
    if ((b & 0x80) !== 0) {
      const i = readInt(block, p, 7);
      if (i === undefined) return false;
      p = i.next;
      continue;
    }
    if ((b & 0xe0) === 0x20) {
      const i = readInt(block, p, 5);
      if (i === undefined) return false;
      p = i.next;
      continue;
    }
    const prefix = (b & 0x40) !== 0 ? 6 : 4;
    const index = readInt(block, p, prefix);
    if (index === undefined) return false;
    p = index.next;
    let isAuthority = index.value === 1;
    if (index.value === 0) {
      const name = readString(block, p);
      if (name === undefined) return false;
      isAuthority = !name.huffman && block.toString("latin1", name.start, name.end) === ":authority";
      p = name.end;
    }
    const value = readString(block, p);
    if (value === undefined) return false;
    if (isAuthority) return rewriteValue(block.subarray(value.start, value.end), value.huffman);
    p = value.end;
  }
  return false;
}

function readInt(buf: Buffer, at: number, prefixBits: number): { value: number; next: number } | undefined {
  const max = (1 << prefixBits) - 1;
  let value = buf[at]! & max;
  let p = at + 1;
  if (value < max) return { value, next: p };
  let shift = 0;
  for (;;) {
    if (p >= buf.length || shift > 28) return undefined;
    const b = buf[p++]!;
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return { value, next: p };
  }
}

function readString(buf: Buffer, at: number): { huffman: boolean; start: number; end: number } | undefined {
  if (at >= buf.length) return undefined;
  const len = readInt(buf, at, 7);
  if (len === undefined || len.next + len.value > buf.length) return undefined;
  return { huffman: (buf[at]! & 0x80) !== 0, start: len.next, end: len.next + len.value };
}

/** RFC 7541 Appendix B codes of the characters a scheme prefix uses: [code, bits]. */
const HUFFMAN: Readonly<Record<string, readonly [number, number]>> = {
  h: [0x27, 6],
  t: [0x9, 5],
  p: [0x2b, 6],
  s: [0x8, 5],
  ":": [0x5c, 7],
  "/": [0x18, 6],
  ".": [0x17, 6],
};

function rewriteValue(value: Buffer, huffman: boolean): boolean {
  for (const scheme of ["http", "https"]) {
    if (!huffman) {
      if (value.toString("latin1", 0, scheme.length + 3) !== `${scheme}://`) continue;
      value[scheme.length + 1] = 0x2e;
      value[scheme.length + 2] = 0x2e;
      return true;
    }
    // Bit offset where the slashes start, and whether the prefix matches.
    let bit = 0;
    let matches = true;
    for (const ch of `${scheme}:`) {
      const [code, bits] = HUFFMAN[ch]!;
      if (readBits(value, bit, bits) !== code) matches = false;
      bit += bits;
    }
    const [slash, slashBits] = HUFFMAN["/"]!;
    if (!matches || readBits(value, bit, slashBits) !== slash) continue;
    if (readBits(value, bit + slashBits, slashBits) !== slash) continue;
    const [dot] = HUFFMAN["."]!;
    writeBits(value, bit, slashBits, dot);
    writeBits(value, bit + slashBits, slashBits, dot);
    return true;
  }
  return false;
}

function readBits(buf: Buffer, bit: number, count: number): number | undefined {
  if (bit + count > buf.length * 8) return undefined;
  let v = 0;
  for (let i = 0; i < count; i++) {
    const b = bit + i;
    v = (v << 1) | ((buf[b >> 3]! >> (7 - (b & 7))) & 1);
  }
  return v;
}

function writeBits(buf: Buffer, bit: number, count: number, value: number): void {
  for (let i = 0; i < count; i++) {
    const b = bit + i;
    const on = (value >> (count - 1 - i)) & 1;
    const mask = 1 << (7 - (b & 7));
    buf[b >> 3] = on === 1 ? buf[b >> 3]! | mask : buf[b >> 3]! & ~mask;
  }
}
