/**
 * The peer wire protocol, version 1: pure encoders and incremental decoders for
 * the handshake and the frames after it. No sockets here (peer-transport.ts and
 * link.ts do the I/O); bytes from a peer are checked here once, at the gateway
 * (CONVENTIONS 9). All integers are big-endian; u64 values are safe integers.
 *
 *   request   dialer -> acceptor, once:
 *             magic u32 "LHPT" | version u16 | from u64 | to u64 | clusterIdLength u16 | clusterId UTF-8
 *   response  acceptor -> dialer, once:
 *             magic u32 "LHPT" | version u16 | status u8 (0 accepted, 1 rejected) | reasonLength u16 | reason UTF-8
 *   frames    dialer -> acceptor, after an accepted response, until the connection ends:
 *             length u32 | flags u8 (bit 0 FINAL, the rest zero) | `length` payload bytes
 *
 * A message is the concatenation of the payloads of consecutive frames up to and
 * including one with FINAL set; every frame but the last of a message carries at
 * least one byte, none carries more than `FRAME_PAYLOAD_BYTES_MAX`. The response
 * layout is frozen across protocol versions, so a member can always be told why
 * a peer refused it.
 *
 * The second kind of connection, the membership query (etcd's GET /members on
 * the peer listener), lets a member that is joining learn the cluster from any
 * existing member. The acceptor tells the kinds apart by the first 4 bytes.
 *
 *   query     dialer -> acceptor, once:
 *             magic u32 "LHPQ" | version u16
 *   answer    acceptor -> dialer, once, then the acceptor closes:
 *             magic u32 "LHPQ" | version u16 | status u8 (0 ok, 1 refused) | length u32 | `length` body bytes
 *
 * The body is the host's membership document when ok (opaque here, at most
 * `MEMBERSHIP_BYTES_MAX` bytes), a UTF-8 reason when refused (at most
 * `REASON_BYTES_MAX`). Bytes after the query are ignored. The answer layout is
 * frozen too: a refusal is read whatever its version, an ok answer must carry
 * the dialer's version. An acceptor that refuses the connection before it reads
 * the query (an untrusted client certificate) answers with a member handshake
 * response (LHPT, rejected), and the query's dialer reads its reason from that.
 */

import type { MemberId } from "../raft/index.ts";
import { assert } from "../raft/index.ts";

/** "LHPT": leasehold peer transport. */
export const WIRE_MAGIC = 0x4c48_5054;
/** "LHPQ": leasehold peer membership query. */
export const QUERY_MAGIC = 0x4c48_5051;
/**
 * The protocol version this code speaks; peers of another version are refused
 * at the hello. 2: BATCH envelopes and binary commands in entries (a member of
 * version 1 could not read them, and applying an entry it cannot decode as a
 * failed command would set its state apart from the others').
 */
export const WIRE_VERSION = 2;
/** Largest payload in one frame: 1 MiB. A bigger message is split into several frames. */
export const FRAME_PAYLOAD_BYTES_MAX = 1024 * 1024;
/** Bytes of a frame header: length u32 + flags u8. */
export const FRAME_HEADER_BYTES = 5;
/** Flag: this frame ends its message. */
export const FRAME_FINAL = 0x01;
/** Longest cluster id, in UTF-8 bytes. */
export const CLUSTER_ID_BYTES_MAX = 255;
/** Longest rejection reason, in UTF-8 bytes (longer ones are cut). */
export const REASON_BYTES_MAX = 1024;

/**
 * Largest membership document in a query answer: 4 MiB, checked by the acceptor
 * before it answers and by the dialer before it reads the body. A member list of
 * thousands of members with several URLs each stays far below it.
 */
export const MEMBERSHIP_BYTES_MAX = 4 * 1024 * 1024;

/** Fixed part of a request, before the cluster id: magic, version, from, to, length. */
const REQUEST_FIXED_BYTES = 4 + 2 + 8 + 8 + 2;
/** Fixed part of a response, before the reason: magic, version, status, length. */
const RESPONSE_FIXED_BYTES = 4 + 2 + 1 + 2;
/** A membership query: magic, version. */
export const QUERY_BYTES = 4 + 2;
/** Fixed part of a membership answer, before the body: magic, version, status, length. */
const ANSWER_FIXED_BYTES = 4 + 2 + 1 + 4;
const U32 = 0x1_0000_0000;

/** What a dialer says about itself in its first bytes. */
export interface Hello {
  readonly version: number;
  readonly from: MemberId;
  readonly to: MemberId;
  readonly clusterId: string;
}

/**
 * Why an acceptor refused a connection. Stable codes: they appear in logs on
 * both sides and in the response's reason text.
 */
export type HandshakeRejectReason =
  | "bad-magic"
  | "bad-version"
  | "malformed"
  | "cluster-mismatch"
  | "wrong-member"
  | "unknown-member"
  | "untrusted-certificate"
  | "timeout";

/** The result of reading a handshake from the bytes received so far. */
export type ReadResult<T> =
  | { readonly kind: "incomplete" }
  | { readonly kind: "ok"; readonly value: T; readonly rest: Uint8Array }
  | { readonly kind: "error"; readonly reason: HandshakeRejectReason; readonly detail: string };

/** What an acceptor answered. */
export type HandshakeResponse =
  | { readonly status: "accepted" }
  | { readonly status: "rejected"; readonly reason: string };

const utf8 = new TextEncoder();
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

function isMemberId(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0;
}

function putU64(view: DataView, at: number, n: number): void {
  if (!(Number.isSafeInteger(n) && n >= 0))
    assert(false, `wire: u64 must be a non-negative safe integer, got ${n}`);
  view.setUint32(at, Math.floor(n / U32));
  view.setUint32(at + 4, n % U32);
}

function getU64(view: DataView, at: number): number {
  return view.getUint32(at) * U32 + view.getUint32(at + 4);
}

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function unsupportedVersion(version: number): ReadResult<never> {
  return {
    kind: "error",
    reason: "bad-version",
    detail: `peer protocol version ${version} is not supported (this member speaks ${WIRE_VERSION})`,
  };
}

/** `a` then `b`, for handshake bytes that arrive in pieces (small: at most a few hundred bytes). */
export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** The request a dialer sends first. */
export function encodeHello(hello: Hello): Uint8Array {
  assert(isMemberId(hello.from) && isMemberId(hello.to), "wire: hello member ids must be positive");
  const cluster = utf8.encode(hello.clusterId);
  assert(cluster.length <= CLUSTER_ID_BYTES_MAX, "wire: cluster id longer than 255 bytes");
  const out = new Uint8Array(REQUEST_FIXED_BYTES + cluster.length);
  const view = viewOf(out);
  view.setUint32(0, WIRE_MAGIC);
  view.setUint16(4, hello.version);
  putU64(view, 6, hello.from);
  putU64(view, 14, hello.to);
  view.setUint16(22, cluster.length);
  out.set(cluster, REQUEST_FIXED_BYTES);
  return out;
}

/**
 * Reads a request from the first bytes of a connection. Checks the shape only
 * (magic, version, member ids, cluster id encoding); whether this member takes
 * the connection is the acceptor's decision.
 */
export function readHello(bytes: Uint8Array): ReadResult<Hello> {
  const view = viewOf(bytes);
  if (bytes.length >= 4 && view.getUint32(0) !== WIRE_MAGIC) {
    return { kind: "error", reason: "bad-magic", detail: "not a leasehold peer connection (bad magic)" };
  }
  if (bytes.length < 6) return { kind: "incomplete" };
  const version = view.getUint16(4);
  if (version !== WIRE_VERSION) return unsupportedVersion(version);
  if (bytes.length < REQUEST_FIXED_BYTES) return { kind: "incomplete" };
  const from = getU64(view, 6);
  const to = getU64(view, 14);
  const clusterBytes = view.getUint16(22);
  if (!isMemberId(from) || !isMemberId(to)) {
    return {
      kind: "error",
      reason: "malformed",
      detail: `bad member id in handshake (from ${from}, to ${to})`,
    };
  }
  if (clusterBytes > CLUSTER_ID_BYTES_MAX) {
    return { kind: "error", reason: "malformed", detail: `cluster id of ${clusterBytes} bytes is too long` };
  }
  const end = REQUEST_FIXED_BYTES + clusterBytes;
  if (bytes.length < end) return { kind: "incomplete" };
  let clusterId: string;
  try {
    clusterId = fatalUtf8.decode(bytes.subarray(REQUEST_FIXED_BYTES, end));
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    return { kind: "error", reason: "malformed", detail: "cluster id is not valid UTF-8" };
  }
  const value: Hello = { version, from: from as MemberId, to: to as MemberId, clusterId };
  return { kind: "ok", value, rest: bytes.subarray(end) };
}

/** The acceptor's answer. A reason longer than `REASON_BYTES_MAX` is cut. */
export function encodeResponse(response: HandshakeResponse): Uint8Array {
  let reason = response.status === "rejected" ? utf8.encode(response.reason) : new Uint8Array(0);
  if (reason.length > REASON_BYTES_MAX) reason = reason.subarray(0, REASON_BYTES_MAX);
  const out = new Uint8Array(RESPONSE_FIXED_BYTES + reason.length);
  const view = viewOf(out);
  view.setUint32(0, WIRE_MAGIC);
  view.setUint16(4, WIRE_VERSION);
  view.setUint8(6, response.status === "accepted" ? 0 : 1);
  view.setUint16(7, reason.length);
  out.set(reason, RESPONSE_FIXED_BYTES);
  return out;
}

/** Reads the acceptor's answer from the first bytes it sent back. */
export function readResponse(bytes: Uint8Array): ReadResult<HandshakeResponse> {
  const view = viewOf(bytes);
  if (bytes.length >= 4 && view.getUint32(0) !== WIRE_MAGIC) {
    return { kind: "error", reason: "bad-magic", detail: "the peer's answer is not a leasehold handshake" };
  }
  if (bytes.length < RESPONSE_FIXED_BYTES) return { kind: "incomplete" };
  const status = view.getUint8(6);
  const reasonBytes = view.getUint16(7);
  if (status > 1 || reasonBytes > REASON_BYTES_MAX) {
    return { kind: "error", reason: "malformed", detail: "malformed handshake response" };
  }
  const end = RESPONSE_FIXED_BYTES + reasonBytes;
  if (bytes.length < end) return { kind: "incomplete" };
  // A cut reason may end inside a character: decode leniently, it is only shown.
  const reason = new TextDecoder().decode(bytes.subarray(RESPONSE_FIXED_BYTES, end));
  const value: HandshakeResponse = status === 0 ? { status: "accepted" } : { status: "rejected", reason };
  return { kind: "ok", value, rest: bytes.subarray(end) };
}

/** Which kind of connection an acceptor is reading, as far as its first bytes tell. */
export type ConnectionKind = "incomplete" | "member" | "query";

/**
 * Tells a membership query from everything else by the first 4 bytes: "query"
 * for magic LHPQ; "member" for anything else (`readHello` reads it, and refuses
 * a bad magic); "incomplete" until 4 bytes have arrived.
 */
export function connectionKind(bytes: Uint8Array): ConnectionKind {
  if (bytes.length < 4) return "incomplete";
  return viewOf(bytes).getUint32(0) === QUERY_MAGIC ? "query" : "member";
}

/** The membership query a dialer sends: magic LHPQ, then the version it speaks. */
export function encodeQuery(): Uint8Array {
  const out = new Uint8Array(QUERY_BYTES);
  const view = viewOf(out);
  view.setUint32(0, QUERY_MAGIC);
  view.setUint16(4, WIRE_VERSION);
  return out;
}

/** Reads a membership query from the first bytes of a connection; its value is the version. */
export function readQuery(bytes: Uint8Array): ReadResult<number> {
  const view = viewOf(bytes);
  if (bytes.length >= 4 && view.getUint32(0) !== QUERY_MAGIC) {
    return { kind: "error", reason: "bad-magic", detail: "not a membership query (bad magic)" };
  }
  if (bytes.length < QUERY_BYTES) return { kind: "incomplete" };
  const version = view.getUint16(4);
  if (version !== WIRE_VERSION) return unsupportedVersion(version);
  return { kind: "ok", value: version, rest: bytes.subarray(QUERY_BYTES) };
}

/** What an acceptor answered to a membership query. */
export type MembershipAnswer =
  | { readonly status: "ok"; readonly membership: Uint8Array }
  | { readonly status: "refused"; readonly reason: string };

/**
 * The acceptor's whole answer to a membership query. The document must be at
 * most `MEMBERSHIP_BYTES_MAX` bytes (the acceptor checks before it calls this);
 * a reason longer than `REASON_BYTES_MAX` is cut.
 */
export function encodeMembershipAnswer(answer: MembershipAnswer): Uint8Array {
  let body: Uint8Array;
  if (answer.status === "ok") {
    body = answer.membership;
    assert(body.length <= MEMBERSHIP_BYTES_MAX, "wire: membership document above MEMBERSHIP_BYTES_MAX");
  } else {
    body = utf8.encode(answer.reason);
    if (body.length > REASON_BYTES_MAX) body = body.subarray(0, REASON_BYTES_MAX);
  }
  const out = new Uint8Array(ANSWER_FIXED_BYTES + body.length);
  const view = viewOf(out);
  view.setUint32(0, QUERY_MAGIC);
  view.setUint16(4, WIRE_VERSION);
  view.setUint8(6, answer.status === "ok" ? 0 : 1);
  view.setUint32(7, body.length);
  out.set(body, ANSWER_FIXED_BYTES);
  return out;
}

/**
 * Reads the answer to a membership query, fed in arbitrary pieces. The header is
 * checked before the body is read, so memory is bounded by `MEMBERSHIP_BYTES_MAX`
 * and the body is copied once. Also reads a member handshake response (LHPT)
 * that rejected the connection before the query was read, as a refusal. After an
 * error the decoder is spent; after an answer it must not be fed again.
 */
export class MembershipAnswerDecoder {
  /** Bytes of the header so far; a member handshake response is read whole from here. */
  private head: Uint8Array = new Uint8Array(0);
  /** The body being filled, once the header is read and checked. */
  private body: Uint8Array | null = null;
  private bodyFilled = 0;
  private refusal = false;
  private done = false;
  private failed: ReadResult<never> | null = null;

  /** Takes the next bytes from the acceptor. */
  push(data: Uint8Array): ReadResult<MembershipAnswer> {
    assert(!this.done, "wire: membership answer decoder fed after its answer");
    if (this.failed !== null) return this.failed;
    if (this.body === null) {
      this.head = concatBytes(this.head, data);
      const header = this.readHeader();
      if (header.kind === "error") this.failed = header;
      if (header.kind !== "ok") return header;
      if (header.value !== null) {
        this.done = true;
        return { kind: "ok", value: header.value, rest: header.rest };
      }
      data = header.rest;
      this.head = new Uint8Array(0);
    }
    const body = this.body;
    assert(body !== null, "wire: no membership answer body after its header");
    const n = Math.min(body.length - this.bodyFilled, data.length);
    body.set(data.subarray(0, n), this.bodyFilled);
    this.bodyFilled += n;
    if (this.bodyFilled < body.length) return { kind: "incomplete" };
    this.done = true;
    const value: MembershipAnswer = this.refusal
      ? { status: "refused", reason: new TextDecoder().decode(body) } // a cut reason: decode leniently
      : { status: "ok", membership: body };
    return { kind: "ok", value, rest: data.subarray(n) };
  }

  /**
   * Reads the header from `head`: ok with a whole answer (a member handshake
   * rejection), or ok with null once `body` is allocated and the rest is body bytes.
   */
  private readHeader(): ReadResult<MembershipAnswer | null> {
    const bytes = this.head;
    if (bytes.length < 4) return { kind: "incomplete" };
    const view = viewOf(bytes);
    const magic = view.getUint32(0);
    if (magic === WIRE_MAGIC) {
      const r = readResponse(bytes);
      if (r.kind !== "ok") return r;
      if (r.value.status === "accepted") {
        return { kind: "error", reason: "malformed", detail: "the peer accepted a member handshake" };
      }
      return { kind: "ok", value: { status: "refused", reason: r.value.reason }, rest: r.rest };
    }
    if (magic !== QUERY_MAGIC) {
      return { kind: "error", reason: "bad-magic", detail: "the peer's answer is not a membership answer" };
    }
    if (bytes.length < ANSWER_FIXED_BYTES) return { kind: "incomplete" };
    const version = view.getUint16(4);
    const status = view.getUint8(6);
    const length = view.getUint32(7);
    if (status > 1) {
      return { kind: "error", reason: "malformed", detail: `unknown membership answer status ${status}` };
    }
    if (status === 0 && version !== WIRE_VERSION) return unsupportedVersion(version);
    const lengthMax = status === 0 ? MEMBERSHIP_BYTES_MAX : REASON_BYTES_MAX;
    if (length > lengthMax) {
      const what = status === 0 ? "membership document" : "refusal reason";
      return {
        kind: "error",
        reason: "malformed",
        detail: `${what} of ${length} bytes exceeds ${lengthMax}`,
      };
    }
    this.refusal = status === 1;
    this.body = new Uint8Array(length);
    this.bodyFilled = 0;
    return { kind: "ok", value: null, rest: bytes.subarray(ANSWER_FIXED_BYTES) };
  }
}

/** The header of one frame carrying `payloadBytes` bytes. */
export function writeFrameHeader(into: Uint8Array, at: number, payloadBytes: number, final: boolean): void {
  assert(payloadBytes <= FRAME_PAYLOAD_BYTES_MAX, "wire: frame payload above the maximum");
  assert(final || payloadBytes > 0, "wire: an empty frame must end its message");
  const view = viewOf(into);
  view.setUint32(at, payloadBytes);
  view.setUint8(at + 4, final ? FRAME_FINAL : 0);
}

/** What one `FrameDecoder.push` produced: whole messages in order, then maybe an error. */
export interface DecodeResult {
  readonly messages: Uint8Array[];
  /** Set when the stream broke the protocol; the connection must be closed. */
  readonly error: string | null;
}

/**
 * Reassembles messages from the frames of one connection, fed in arbitrary
 * pieces. Memory is bounded: at most one message of `messageBytesMax` bytes is
 * being assembled. After an error the decoder is spent.
 */
export class FrameDecoder {
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFilled = 0;
  /** The frame being filled, or null while reading a header. */
  private frame: Uint8Array | null = null;
  private frameFilled = 0;
  private frameFinal = false;
  /** Complete frames of the message being assembled. */
  private chunks: Uint8Array[] = [];
  private chunkBytes = 0;
  private failed: string | null = null;

  constructor(private readonly messageBytesMax: number) {
    assert(Number.isSafeInteger(messageBytesMax) && messageBytesMax >= 0, "wire: bad messageBytesMax");
  }

  /** Takes the next bytes of the stream. */
  push(data: Uint8Array): DecodeResult {
    const messages: Uint8Array[] = [];
    if (this.failed !== null) return { messages, error: this.failed };
    let at = 0;
    while (at < data.length) {
      if (this.frame === null) {
        const n = Math.min(FRAME_HEADER_BYTES - this.headerFilled, data.length - at);
        this.header.set(data.subarray(at, at + n), this.headerFilled);
        this.headerFilled += n;
        at += n;
        if (this.headerFilled < FRAME_HEADER_BYTES) break;
        this.headerFilled = 0;
        const error = this.startFrame();
        if (error !== null) {
          this.failed = error;
          return { messages, error };
        }
      }
      const frame = this.frame;
      assert(frame !== null, "wire: no frame after its header");
      const n = Math.min(frame.length - this.frameFilled, data.length - at);
      frame.set(data.subarray(at, at + n), this.frameFilled);
      this.frameFilled += n;
      at += n;
      if (this.frameFilled === frame.length) this.endFrame(frame, messages);
    }
    return { messages, error: null };
  }

  /** Checks the header just read and allocates its frame; returns a protocol error or null. */
  private startFrame(): string | null {
    const view = viewOf(this.header);
    const length = view.getUint32(0);
    const flags = view.getUint8(4);
    if ((flags & ~FRAME_FINAL) !== 0) return `frame with unknown flags 0x${flags.toString(16)}`;
    if (length > FRAME_PAYLOAD_BYTES_MAX)
      return `frame of ${length} bytes exceeds ${FRAME_PAYLOAD_BYTES_MAX}`;
    const final = (flags & FRAME_FINAL) !== 0;
    if (!final && length === 0) return "empty frame in the middle of a message";
    if (this.chunkBytes + length > this.messageBytesMax) {
      return `message exceeds ${this.messageBytesMax} bytes`;
    }
    this.frame = new Uint8Array(length);
    this.frameFilled = 0;
    this.frameFinal = final;
    return null;
  }

  private endFrame(frame: Uint8Array, messages: Uint8Array[]): void {
    this.frame = null;
    if (!this.frameFinal) {
      this.chunks.push(frame);
      this.chunkBytes += frame.length;
      return;
    }
    if (this.chunks.length === 0) {
      messages.push(frame);
      return;
    }
    const whole = new Uint8Array(this.chunkBytes + frame.length);
    let at = 0;
    for (const chunk of this.chunks) {
      whole.set(chunk, at);
      at += chunk.length;
    }
    whole.set(frame, at);
    assert(at + frame.length === whole.length, "wire: reassembled message has the wrong length");
    this.chunks = [];
    this.chunkBytes = 0;
    messages.push(whole);
  }
}
