/**
 * A compact, versioned binary codec for the Raft vocabulary (src/raft/types.ts):
 * Entry, HardState, ConfState, SnapshotMeta, Snapshot and every Message. Used by
 * the write-ahead log (src/storage/) and by peer links; pure (no Buffer, no I/O).
 *
 * Format, version 1. Every encoded value starts with two bytes, the codec version
 * (1) and the kind of value (entry 1, hardState 2, confState 3, snapshotMeta 4,
 * snapshot 5, message 6), then its fields in declaration order:
 *   n     unsigned LEB128 varint of a safe integer (at most 8 bytes, canonical:
 *         no trailing zero groups, at most 2^53 - 1); all terms, indexes, ids,
 *         counts, lengths and heartbeat contexts
 *   bool  one byte, 0 or 1
 *   bytes n length, then the bytes;  string: bytes of UTF-8 (well-formed only)
 *   Entry        term, index, kind byte (0 normal, 1 conf), data
 *   HardState    term, vote, commit
 *   ConfState    n voters, ids; n learners, ids
 *   SnapshotMeta index, term, ConfState;   Snapshot: SnapshotMeta, data
 *   Message      type tag byte (app 1, appResp 2, vote 3, preVote 4, voteResp 5,
 *                preVoteResp 6, heartbeat 7, heartbeatResp 8, snap 9, timeoutNow 10,
 *                readIndex 11, readIndexResp 12), from, to, term, then the
 *                variant's own fields in declaration order (MsgApp: prevIndex,
 *                prevTerm, n entries, each Entry without the two header bytes,
 *                commit).
 *
 * Contract: decode(encode(v)) equals v field by field (numbers stay numbers,
 * empty arrays stay empty, data is copied, never a view of the input). Decoding
 * is the gateway for bytes from disk and from peers (CONVENTIONS 9): it checks
 * every byte, consumes the whole input, and checks the invariants the core
 * relies on (below); anything else throws a CodecError with a stable `code` and
 * the byte offset where the problem starts. Encoding a value that breaks those
 * invariants is a bug in the caller and fails an assertion, so what one member
 * writes another always accepts.
 *
 * Invariants checked on both paths: entries have index >= 1 and term >= 1, and a
 * conf entry's data is a well-formed ConfChange (confchange.ts); member ids in a
 * ConfState are non-zero, unique, voters and learners disjoint; a snapshot is at
 * index 0 exactly when its term is 0, and one sent in MsgSnap is at index >= 1
 * with a term no newer than the message's; a message has non-zero, distinct
 * `from` and `to`; MsgApp's entries follow prevIndex contiguously with
 * non-decreasing terms between prevTerm and the message term; prevIndex (and a
 * vote's lastIndex) is 0 exactly when the matching term is 0.
 */

import { assert, assertNever } from "./assert.ts";
import type {
  ConfState,
  Entry,
  HardState,
  LogIndex,
  MemberId,
  Message,
  MessageType,
  Snapshot,
  SnapshotMeta,
  Term,
} from "./types.ts";
import { logIndex, memberId, term } from "./types.ts";

/** The format version written as the first byte of every encoded value. */
export const CODEC_VERSION = 1;

/** Stable codes of decoding failures; part of the contract (tests and logs match on them). */
export type CodecErrorCode =
  /** The input ends inside a value (or a length/count claims more bytes than remain). */
  | "truncated"
  /** Bytes remain after a complete value. */
  | "trailingBytes"
  /** The first byte is not a version this codec reads. */
  | "badVersion"
  /** The value is of another kind than the one asked for (an Entry where a Message was expected). */
  | "badKind"
  /** An unknown message type or entry kind. */
  | "badTag"
  /** A varint longer than 8 bytes, not in canonical form, or above 2^53 - 1. */
  | "badVarint"
  /** A boolean byte other than 0 or 1. */
  | "badBool"
  /** A string that is not well-formed UTF-8. */
  | "badUtf8"
  /** Well-formed bytes that break an invariant of the type (see the file header). */
  | "badValue";

/** Malformed input: an operating error at the gateway, never a bug in the core. */
export class CodecError extends Error {
  override readonly name = "CodecError";
  readonly code: CodecErrorCode;
  /** Offset in the input where the offending field starts. */
  readonly offset: number;

  constructor(code: CodecErrorCode, offset: number, detail: string) {
    super(`codec: ${code} at byte ${offset}: ${detail}`);
    this.code = code;
    this.offset = offset;
  }
}

const KIND = { entry: 1, hardState: 2, confState: 3, snapshotMeta: 4, snapshot: 5, message: 6 } as const;
type ValueKind = keyof typeof KIND;

const MSG_TAG: Readonly<Record<MessageType, number>> = {
  app: 1,
  appResp: 2,
  vote: 3,
  preVote: 4,
  voteResp: 5,
  preVoteResp: 6,
  heartbeat: 7,
  heartbeatResp: 8,
  snap: 9,
  timeoutNow: 10,
  readIndex: 11,
  readIndexResp: 12,
};
const MSG_TYPE_BY_TAG: ReadonlyMap<number, MessageType> = new Map(
  (Object.entries(MSG_TAG) as [MessageType, number][]).map(([type, tag]) => [tag, type]),
);

/** Bytes of a ConfChange header inside conf entry data (kind byte + u64 member), confchange.ts. */
const CONF_CHANGE_HEADER_BYTES = 9;
const CONF_CHANGE_KIND_MAX = 3;
const U32 = 0x1_0000_0000;
/** 2^53 - 1 needs 53 bits: eight 7-bit groups. */
const VARINT_BYTES_MAX = 8;

const utf8Encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF, so strings round-trip exactly.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------- invariants

/** What is wrong with `e`, or undefined. Shared by the encode (assert) and decode (CodecError) paths. */
function entryProblem(e: Entry): string | undefined {
  if (e.index < 1) return `entry index ${e.index} < 1`;
  if (e.term < 1) return `entry ${e.index} has term ${e.term} < 1`;
  if (e.kind === "conf") {
    const d = e.data;
    if (d.length < CONF_CHANGE_HEADER_BYTES) return `conf entry ${e.index}: data shorter than a change`;
    if (d[0]! < 1 || d[0]! > CONF_CHANGE_KIND_MAX)
      return `conf entry ${e.index}: unknown change kind ${d[0]}`;
    const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
    const member = view.getUint32(1) * U32 + view.getUint32(5);
    if (!Number.isSafeInteger(member) || member === 0) return `conf entry ${e.index}: bad member id`;
  }
  return undefined;
}

function confProblem(c: ConfState): string | undefined {
  const seen = new Set<number>();
  for (const id of [...c.voters, ...c.learners]) {
    if (id === 0) return "member id 0 in a configuration";
    if (seen.has(id)) return `member ${id} listed twice in a configuration`;
    seen.add(id);
  }
  return undefined;
}

function metaProblem(m: SnapshotMeta): string | undefined {
  if ((m.index === 0) !== (m.term === 0)) return `snapshot at index ${m.index} with term ${m.term}`;
  return confProblem(m.conf);
}

function entriesProblem(m: {
  prevIndex: LogIndex;
  prevTerm: Term;
  term: Term;
  entries: readonly Entry[];
}): string | undefined {
  let prevTerm: number = m.prevTerm;
  for (let i = 0; i < m.entries.length; i++) {
    const e = m.entries[i]!;
    if (e.index !== m.prevIndex + 1 + i) return `entry ${e.index} does not follow ${m.prevIndex + i}`;
    if (e.term < prevTerm) return `entry ${e.index} has term ${e.term} below ${prevTerm}`;
    if (e.term > m.term) return `entry ${e.index} has term ${e.term} above the message term ${m.term}`;
    prevTerm = e.term;
  }
  return undefined;
}

function messageProblem(m: Message): string | undefined {
  if (m.from === 0 || m.to === 0) return `message ${m.from}->${m.to} without a member id`;
  if (m.from === m.to) return `message from ${m.from} to itself`;
  switch (m.type) {
    case "app":
      if ((m.prevIndex === 0) !== (m.prevTerm === 0)) return `app prev ${m.prevTerm}/${m.prevIndex}`;
      return entriesProblem(m);
    case "vote":
    case "preVote":
      if ((m.lastIndex === 0) !== (m.lastTerm === 0)) return `${m.type} last ${m.lastTerm}/${m.lastIndex}`;
      return undefined;
    case "snap":
      if (m.snapshot.meta.index === 0) return "snap message with an empty snapshot";
      if (m.snapshot.meta.term > m.term) return "snap message with a snapshot newer than its term";
      return undefined;
    case "appResp":
    case "voteResp":
    case "preVoteResp":
    case "heartbeat":
    case "heartbeatResp":
    case "timeoutNow":
    case "readIndex":
    case "readIndexResp":
      return undefined;
    default:
      return assertNever(m, "message");
  }
}

// ---------------------------------------------------------------- writing

/**
 * A growable byte buffer. Every number written must be a non-negative safe
 * integer (asserted). Sized up front by the caller's bound (`sizeBound`), so a
 * hot-path encode allocates once; `headroom` bytes at the front are left zero
 * for a caller's own header (the member's envelope), saving it a copy.
 * Assertion messages are built only when an assertion fails.
 */
class Writer {
  private buf: Uint8Array;
  private len: number;

  constructor(capacity: number, headroom = 0) {
    this.buf = new Uint8Array(Math.max(capacity + headroom, 16));
    this.len = headroom;
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  /** `suffix` is appended to `what` in the failure message only (no string is built on success). */
  uvarint(n: number, what: string, suffix = ""): void {
    if (!(Number.isSafeInteger(n) && n >= 0))
      assert(false, `codec: ${what}${suffix} must be a non-negative safe integer, got ${n}`);
    this.reserve(VARINT_BYTES_MAX);
    const buf = this.buf;
    let len = this.len;
    while (n >= 0x80) {
      buf[len++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    buf[len++] = n;
    this.len = len;
  }

  bool(b: boolean): void {
    this.byte(b ? 1 : 0);
  }

  bytes(data: Uint8Array, what: string): void {
    this.uvarint(data.length, what, " length");
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
  }

  string(s: string, what: string): void {
    if (!isWellFormed(s))
      assert(false, `codec: ${what} has a lone surrogate and cannot round-trip through UTF-8`);
    this.bytes(utf8Encoder.encode(s), what);
  }

  /** The bytes written (headroom included): a view when the bound was tight, else a copy (no large tail kept alive). */
  finish(): Uint8Array {
    if (this.len === this.buf.length) return this.buf;
    if (this.buf.length - this.len <= 64) return this.buf.subarray(0, this.len);
    return this.buf.slice(0, this.len);
  }
}

/** Bytes of a varint-coded length plus a few fixed fields per entry, generously (a bound, not exact). */
const ENTRY_OVERHEAD_BOUND = 3 * VARINT_BYTES_MAX + 1;

/** An upper bound (usually tight) on what `m` encodes to, kind header included. */
function messageSizeBound(m: Message): number {
  let n = 2 + 1 + 3 * VARINT_BYTES_MAX;
  switch (m.type) {
    case "app":
      n += 4 * VARINT_BYTES_MAX;
      for (const e of m.entries) n += ENTRY_OVERHEAD_BOUND + e.data.length;
      return n;
    case "snap":
      return (
        n +
        4 * VARINT_BYTES_MAX +
        (m.snapshot.meta.conf.voters.length + m.snapshot.meta.conf.learners.length) * VARINT_BYTES_MAX +
        m.snapshot.data.length
      );
    case "readIndex":
    case "readIndexResp":
      return n + 2 * VARINT_BYTES_MAX + 3 * m.requestId.length + 1;
    default:
      // Heartbeats, responses and votes take 20-odd bytes: start at 40 (the Writer grows if one needs
      // more) so that with a caller's header the buffer stays within V8's on-heap typed-array size.
      return 40;
  }
}

/** No lone UTF-16 surrogate (String.prototype.isWellFormed is ES2024). */
function isWellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

function start(kind: ValueKind, capacity = 64, headroom = 0): Writer {
  const w = new Writer(capacity, headroom);
  w.byte(CODEC_VERSION);
  w.byte(KIND[kind]);
  return w;
}

function writeEntry(w: Writer, e: Entry): void {
  const problem = entryProblem(e);
  if (problem !== undefined) assert(false, `codec: cannot encode: ${problem}`);
  w.uvarint(e.term, "entry term");
  w.uvarint(e.index, "entry index");
  w.byte(e.kind === "conf" ? 1 : 0);
  w.bytes(e.data, "entry data");
}

function writeHardState(w: Writer, hs: HardState): void {
  w.uvarint(hs.term, "hard state term");
  w.uvarint(hs.vote, "hard state vote");
  w.uvarint(hs.commit, "hard state commit");
}

function writeIds(w: Writer, ids: readonly MemberId[], what: string): void {
  w.uvarint(ids.length, what, " count");
  for (const id of ids) w.uvarint(id, what);
}

function writeConf(w: Writer, c: ConfState): void {
  const problem = confProblem(c);
  assert(problem === undefined, `codec: cannot encode: ${problem}`);
  writeIds(w, c.voters, "voter");
  writeIds(w, c.learners, "learner");
}

function writeMeta(w: Writer, m: SnapshotMeta): void {
  const problem = metaProblem(m);
  assert(problem === undefined, `codec: cannot encode: ${problem}`);
  w.uvarint(m.index, "snapshot index");
  w.uvarint(m.term, "snapshot term");
  writeConf(w, m.conf);
}

function writeSnapshot(w: Writer, s: Snapshot): void {
  writeMeta(w, s.meta);
  w.bytes(s.data, "snapshot data");
}

function writeMessage(w: Writer, m: Message): void {
  const problem = messageProblem(m);
  if (problem !== undefined) assert(false, `codec: cannot encode: ${problem}`);
  w.byte(MSG_TAG[m.type]);
  w.uvarint(m.from, "from");
  w.uvarint(m.to, "to");
  w.uvarint(m.term, "term");
  switch (m.type) {
    case "app":
      w.uvarint(m.prevIndex, "prevIndex");
      w.uvarint(m.prevTerm, "prevTerm");
      w.uvarint(m.entries.length, "entry count");
      for (const e of m.entries) writeEntry(w, e);
      w.uvarint(m.commit, "commit");
      return;
    case "appResp":
      w.bool(m.reject);
      w.uvarint(m.index, "index");
      w.uvarint(m.hintIndex, "hintIndex");
      w.uvarint(m.hintTerm, "hintTerm");
      return;
    case "vote":
    case "preVote":
      w.uvarint(m.lastIndex, "lastIndex");
      w.uvarint(m.lastTerm, "lastTerm");
      w.bool(m.transfer);
      return;
    case "voteResp":
    case "preVoteResp":
      w.bool(m.reject);
      return;
    case "heartbeat":
      w.uvarint(m.commit, "commit");
      w.uvarint(m.context, "context");
      return;
    case "heartbeatResp":
      w.uvarint(m.context, "context");
      return;
    case "snap":
      writeSnapshot(w, m.snapshot);
      return;
    case "timeoutNow":
      return;
    case "readIndex":
      w.string(m.requestId, "requestId");
      return;
    case "readIndexResp":
      w.string(m.requestId, "requestId");
      w.uvarint(m.index, "index");
      w.bool(m.reject);
      return;
    default:
      assertNever(m, "message");
  }
}

// ---------------------------------------------------------------- reading

/** A cursor over untrusted bytes; every read is bounds-checked and fails with a CodecError. */
class Reader {
  pos = 0;
  /**
   * `ownsBuffer`: `buf` is a private copy nobody else holds, so bytes fields
   * are views into it (one allocation per decoded value instead of one per
   * field); otherwise each bytes field is its own copy.
   */
  constructor(
    private readonly buf: Uint8Array,
    private readonly ownsBuffer = false,
  ) {}

  fail(code: CodecErrorCode, detail: string, at: number = this.pos): never {
    throw new CodecError(code, at, detail);
  }

  remaining(): number {
    return this.buf.length - this.pos;
  }

  byte(what: string): number {
    if (this.pos >= this.buf.length) this.fail("truncated", `input ends before ${what}`);
    return this.buf[this.pos++]!;
  }

  /** `suffix` is appended to `what` in failure messages only (no string is built on success). */
  uvarint(what: string, suffix = ""): number {
    const at = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (this.pos >= this.buf.length) this.fail("truncated", `input ends before ${what}${suffix}`);
      const b = this.buf[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (b === 0 && i > 0) this.fail("badVarint", `${what}${suffix} is not in canonical form`, at);
        // Sums below 2^53 are exact; anything larger rounds to at least 2^53.
        if (value > Number.MAX_SAFE_INTEGER) this.fail("badVarint", `${what}${suffix} is above 2^53 - 1`, at);
        return value;
      }
      scale *= 0x80;
    }
    return this.fail("badVarint", `${what}${suffix} is longer than ${VARINT_BYTES_MAX} bytes`, at);
  }

  bool(what: string): boolean {
    const at = this.pos;
    const b = this.byte(what);
    if (b > 1) this.fail("badBool", `${what} is ${b}, not 0 or 1`, at);
    return b === 1;
  }

  /** A count of items that take at least one byte each: never more than the bytes left. */
  count(what: string, suffix = ""): number {
    const at = this.pos;
    const n = this.uvarint(what, suffix);
    if (n > this.remaining())
      this.fail("truncated", `${what}${suffix} ${n} exceeds the ${this.remaining()} bytes left`, at);
    return n;
  }

  bytes(what: string): Uint8Array {
    const at = this.pos;
    const n = this.uvarint(what, " length");
    if (n > this.remaining()) this.fail("truncated", `${what} of ${n} bytes, ${this.remaining()} left`, at);
    let out: Uint8Array;
    if (this.ownsBuffer) {
      out = this.buf.subarray(this.pos, this.pos + n);
    } else {
      // A plain Uint8Array copy: `slice` on a subclass (Node's Buffer) may return a view or the subclass.
      out = new Uint8Array(n);
      out.set(this.buf.subarray(this.pos, this.pos + n));
    }
    this.pos += n;
    return out;
  }

  string(what: string): string {
    const at = this.pos;
    const raw = this.bytes(what);
    try {
      return utf8Decoder.decode(raw);
    } catch (err) {
      if (err instanceof TypeError) return this.fail("badUtf8", `${what} is not well-formed UTF-8`, at);
      throw err;
    }
  }

  check(problem: string | undefined, at: number): void {
    if (problem !== undefined) this.fail("badValue", problem, at);
  }

  end(): void {
    if (this.pos !== this.buf.length) this.fail("trailingBytes", `${this.remaining()} bytes after the value`);
  }
}

function open(bytes: Uint8Array, kind: ValueKind, ownsBuffer = false): Reader {
  const r = new Reader(bytes, ownsBuffer);
  const version = r.byte("the version");
  if (version !== CODEC_VERSION)
    r.fail("badVersion", `version ${version}, this codec reads ${CODEC_VERSION}`, 0);
  const k = r.byte("the value kind");
  if (k !== KIND[kind]) r.fail("badKind", `value kind ${k}, expected ${KIND[kind]} (${kind})`, 1);
  return r;
}

function readEntry(r: Reader): Entry {
  const at = r.pos;
  const t = term(r.uvarint("entry term"));
  const index = logIndex(r.uvarint("entry index"));
  const kindAt = r.pos;
  const k = r.byte("entry kind");
  if (k > 1) r.fail("badTag", `entry kind ${k}`, kindAt);
  const e: Entry = { term: t, index, kind: k === 1 ? "conf" : "normal", data: r.bytes("entry data") };
  r.check(entryProblem(e), at);
  return e;
}

function readHardState(r: Reader): HardState {
  return {
    term: term(r.uvarint("hard state term")),
    vote: memberId(r.uvarint("hard state vote")),
    commit: logIndex(r.uvarint("hard state commit")),
  };
}

function readIds(r: Reader, what: string): MemberId[] {
  const n = r.count(what, " count");
  const ids: MemberId[] = [];
  for (let i = 0; i < n; i++) ids.push(memberId(r.uvarint(what)));
  return ids;
}

function readConf(r: Reader): ConfState {
  const at = r.pos;
  const c: ConfState = { voters: readIds(r, "voter"), learners: readIds(r, "learner") };
  r.check(confProblem(c), at);
  return c;
}

function readMeta(r: Reader): SnapshotMeta {
  const at = r.pos;
  const index = logIndex(r.uvarint("snapshot index"));
  const t = term(r.uvarint("snapshot term"));
  const m: SnapshotMeta = { index, term: t, conf: readConf(r) };
  r.check(metaProblem(m), at);
  return m;
}

function readSnapshot(r: Reader): Snapshot {
  const meta = readMeta(r);
  return { meta, data: r.bytes("snapshot data") };
}

function readMessage(r: Reader): Message {
  const at = r.pos;
  const tag = r.byte("message type");
  const type = MSG_TYPE_BY_TAG.get(tag);
  if (type === undefined) r.fail("badTag", `message type ${tag}`, at);
  const from = memberId(r.uvarint("from"));
  const to = memberId(r.uvarint("to"));
  const t = term(r.uvarint("term"));
  const m = readMessageBody(r, type, { from, to, term: t });
  r.check(messageProblem(m), at);
  return m;
}

function readMessageBody(
  r: Reader,
  type: MessageType,
  base: { from: MemberId; to: MemberId; term: Term },
): Message {
  switch (type) {
    case "app": {
      const prevIndex = logIndex(r.uvarint("prevIndex"));
      const prevTerm = term(r.uvarint("prevTerm"));
      const n = r.count("entry count");
      const entries: Entry[] = [];
      for (let i = 0; i < n; i++) entries.push(readEntry(r));
      return { type, ...base, prevIndex, prevTerm, entries, commit: logIndex(r.uvarint("commit")) };
    }
    case "appResp":
      return {
        type,
        ...base,
        reject: r.bool("reject"),
        index: logIndex(r.uvarint("index")),
        hintIndex: logIndex(r.uvarint("hintIndex")),
        hintTerm: term(r.uvarint("hintTerm")),
      };
    case "vote":
    case "preVote":
      return {
        type,
        ...base,
        lastIndex: logIndex(r.uvarint("lastIndex")),
        lastTerm: term(r.uvarint("lastTerm")),
        transfer: r.bool("transfer"),
      };
    case "voteResp":
    case "preVoteResp":
      return { type, ...base, reject: r.bool("reject") };
    case "heartbeat":
      return { type, ...base, commit: logIndex(r.uvarint("commit")), context: r.uvarint("context") };
    case "heartbeatResp":
      return { type, ...base, context: r.uvarint("context") };
    case "snap":
      return { type, ...base, snapshot: readSnapshot(r) };
    case "timeoutNow":
      return { type, ...base };
    case "readIndex":
      return { type, ...base, requestId: r.string("requestId") };
    case "readIndexResp":
      return {
        type,
        ...base,
        requestId: r.string("requestId"),
        index: logIndex(r.uvarint("index")),
        reject: r.bool("reject"),
      };
    default:
      return assertNever(type, "message type");
  }
}

// ---------------------------------------------------------------- public surface

/** Encodes one log entry. Asserts the entry invariants in the file header. */
export function encodeEntry(e: Entry): Uint8Array {
  const w = start("entry", 2 + ENTRY_OVERHEAD_BOUND + e.data.length);
  writeEntry(w, e);
  return w.finish();
}

/** Decodes what encodeEntry wrote; throws CodecError on anything else. */
export function decodeEntry(bytes: Uint8Array): Entry {
  const r = open(bytes, "entry");
  const e = readEntry(r);
  r.end();
  return e;
}

/** Encodes Raft's persistent state (term, vote, commit). */
export function encodeHardState(hs: HardState): Uint8Array {
  const w = start("hardState");
  writeHardState(w, hs);
  return w.finish();
}

/** Decodes what encodeHardState wrote; throws CodecError on anything else. */
export function decodeHardState(bytes: Uint8Array): HardState {
  const r = open(bytes, "hardState");
  const hs = readHardState(r);
  r.end();
  return hs;
}

/** Encodes a membership. Asserts non-zero, unique ids and disjoint voters and learners. */
export function encodeConfState(c: ConfState): Uint8Array {
  const w = start("confState");
  writeConf(w, c);
  return w.finish();
}

/** Decodes what encodeConfState wrote; throws CodecError on anything else. */
export function decodeConfState(bytes: Uint8Array): ConfState {
  const r = open(bytes, "confState");
  const c = readConf(r);
  r.end();
  return c;
}

/** Encodes a snapshot's metadata (index, term, membership). */
export function encodeSnapshotMeta(m: SnapshotMeta): Uint8Array {
  const w = start("snapshotMeta");
  writeMeta(w, m);
  return w.finish();
}

/** Decodes what encodeSnapshotMeta wrote; throws CodecError on anything else. */
export function decodeSnapshotMeta(bytes: Uint8Array): SnapshotMeta {
  const r = open(bytes, "snapshotMeta");
  const m = readMeta(r);
  r.end();
  return m;
}

/** Encodes a snapshot: its metadata and the state machine's bytes. */
export function encodeSnapshot(s: Snapshot): Uint8Array {
  const w = start(
    "snapshot",
    64 + s.data.length + 10 * (s.meta.conf.voters.length + s.meta.conf.learners.length),
  );
  writeSnapshot(w, s);
  return w.finish();
}

/** Decodes what encodeSnapshot wrote; throws CodecError on anything else. */
export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  const r = open(bytes, "snapshot");
  const s = readSnapshot(r);
  r.end();
  return s;
}

/** Encodes any peer message, entries and snapshot included. Asserts the message invariants. */
export function encodeMessage(m: Message): Uint8Array {
  return encodeMessageAfter(m, 0);
}

/**
 * encodeMessage's bytes after `headroom` zero bytes, for a caller that frames
 * the message with its own header (written into the headroom): one buffer, no
 * copy. `decodeMessage(out.subarray(headroom))` reads it back.
 */
export function encodeMessageAfter(m: Message, headroom: number): Uint8Array {
  const w = start("message", messageSizeBound(m), headroom);
  writeMessage(w, m);
  return w.finish();
}

/** Decodes what encodeMessage wrote; throws CodecError on anything else. */
export function decodeMessage(bytes: Uint8Array): Message {
  // One copy of the whole message, entries' data viewing into it: one allocation instead of one per entry
  // (they live and die together in the log). A small message has no large field: copy per field.
  const r = bytes.length > 256 ? open(new Uint8Array(bytes), "message", true) : open(bytes, "message");
  const m = readMessage(r);
  r.end();
  return m;
}
