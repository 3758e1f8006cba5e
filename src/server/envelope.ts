/**
 * What members say to each other over the peer transport: Raft messages, and
 * the requests a follower hands to the leader because only the leader can
 * serve them (proposals, keepalives and TTL queries are answered from the
 * leader's lessor). Binary, little-endian, one envelope per transport payload:
 *
 *   u8 kind, then
 *   RAFT          f64 sentAt, f64 echo, the Raft message (src/raft/codec.ts): sentAt is the
 *                 sender's monotonic clock when it sent; echo is the latest sentAt the sender
 *                 received from the addressee (-1: none), i.e. a time on the addressee's own
 *                 clock before which the sender had heard from it (quorum-contact.ts)
 *   PROPOSE       u32 reqId, the entry data (rest)
 *   PROPOSED      u32 reqId, u8 status (0 proposed at `index` in `term`, 1 not leader), f64 index, f64 leader, f64 term
 *   KEEPALIVE     u32 reqId, i64 lease
 *   KEEPALIVE_ANS u32 reqId, u8 (0 ttl, 1 not leader), f64 ttl or leader
 *   TTL           u32 reqId, i64 lease
 *   TTL_ANS       u32 reqId, u8 (0 ok, 1 not found, 2 not leader), f64 granted s, f64 remaining ms, f64 leader
 *   PROPOSE_CONF  u32 reqId, the conf change's entry data (rest; raft/confchange.ts)
 *   CONF_ANS      u32 reqId, u8 (0 proposed, 1 not leader, 2 busy: try again, 3 learner not ready,
 *                 4 member not found, 5 member exists, 6 peer URL exists, 7 too many learners, 8 not a learner),
 *                 f64 index, f64 term, f64 leader
 *   REMOVED       nothing (the receiver was removed from the cluster)
 *   RENEWED       u32 count, count × i64 lease: leases the leader renewed since its last
 *                 RENEWED (only those holding a leasehold.v1 claim; 1..RENEWED_LEASES_MAX),
 *                 so every member can report the renewals (lease events) it never sees
 *   BATCH         repeated: u32 length, one envelope of another kind than RAFT and BATCH
 *                 (the small envelopes of one turn of the sender's loop, in order; at most
 *                 BATCH_ENVELOPES_MAX)
 *
 * Decoding validates lengths and kinds and throws EnvelopeError; a peer that
 * sends garbage is logged and ignored, never trusted.
 */

import type { Message } from "../raft/index.ts";
import { decodeMessage, encodeMessageAfter } from "../raft/index.ts";

export class EnvelopeError extends Error {
  override readonly name = "EnvelopeError";
}

export type Envelope =
  | { readonly kind: "raft"; readonly sentAt: number; readonly echo: number; readonly message: Message }
  | { readonly kind: "propose"; readonly reqId: number; readonly data: Uint8Array }
  | {
      readonly kind: "proposed";
      readonly reqId: number;
      readonly ok: boolean;
      readonly index: number;
      readonly leader: number;
      /** The term of the entry at `index` (same index and term: the same entry, by log matching). */
      readonly term: number;
    }
  | { readonly kind: "keepAlive"; readonly reqId: number; readonly lease: bigint }
  | {
      readonly kind: "keepAliveAnswer";
      readonly reqId: number;
      readonly ok: boolean;
      /** TTL in seconds when ok, else the leader hint. */
      readonly value: number;
    }
  | { readonly kind: "ttl"; readonly reqId: number; readonly lease: bigint }
  | {
      readonly kind: "ttlAnswer";
      readonly reqId: number;
      readonly status: "ok" | "notFound" | "notLeader";
      readonly grantedSeconds: number;
      /** Milliseconds left on the leader's clock (-1: not found). */
      readonly remainingMs: number;
      readonly leader: number;
    }
  | { readonly kind: "proposeConf"; readonly reqId: number; readonly data: Uint8Array }
  /** Small envelopes sent together (never RAFT nor BATCH inside). */
  | { readonly kind: "batch"; readonly items: readonly Envelope[] }
  /** "You were removed from the cluster": the answer to any message from a removed member. */
  | { readonly kind: "removed" }
  /** Leases the leader renewed lately (keepalives are not logged; lease events want them). */
  | { readonly kind: "renewed"; readonly leases: readonly bigint[] }
  | {
      readonly kind: "confAnswer";
      readonly reqId: number;
      readonly status: ConfAnswerStatus;
      readonly index: number;
      readonly term: number;
      readonly leader: number;
    };

/** How the leader took a membership change: proposed, not the leader, busy (another change pending), or a promotion of a learner that is behind. */
export type ConfAnswerStatus =
  | "ok"
  | "notLeader"
  | "busy"
  | "learnerNotReady"
  | "memberNotFound"
  | "memberExists"
  | "peerUrlExists"
  | "tooManyLearners"
  | "memberNotLearner";
const CONF_STATUS: readonly ConfAnswerStatus[] = [
  "ok",
  "notLeader",
  "busy",
  "learnerNotReady",
  "memberNotFound",
  "memberExists",
  "peerUrlExists",
  "tooManyLearners",
  "memberNotLearner",
];

const KIND = {
  raft: 1,
  propose: 2,
  proposed: 3,
  keepAlive: 4,
  keepAliveAnswer: 5,
  ttl: 6,
  ttlAnswer: 7,
  proposeConf: 8,
  confAnswer: 9,
  removed: 10,
  batch: 11,
  renewed: 12,
} as const;

/** Most leases in one RENEWED (a sender splits longer lists). */
export const RENEWED_LEASES_MAX = 8192;

/** Most envelopes in one BATCH (a sender splits longer runs). */
export const BATCH_ENVELOPES_MAX = 4096;

/** kind, sentAt, echo. */
const RAFT_HEADER_BYTES = 17;

const TTL_STATUS = ["ok", "notFound", "notLeader"] as const;

/** One BATCH of already encoded small envelopes (1..BATCH_ENVELOPES_MAX, none RAFT or BATCH). */
export function encodeBatch(items: readonly Uint8Array[]): Uint8Array {
  if (items.length === 0 || items.length > BATCH_ENVELOPES_MAX)
    throw new EnvelopeError(`envelope: a batch of ${items.length} envelopes`);
  let size = 1;
  for (const b of items) size += 4 + b.length;
  const out = new Uint8Array(size);
  out[0] = KIND.batch;
  let at = 1;
  for (const b of items) {
    if (b[0] === KIND.raft || b[0] === KIND.batch)
      throw new EnvelopeError("envelope: RAFT or BATCH inside a batch");
    // u32 little-endian, by hand: no DataView over what may be a small on-heap array.
    out[at] = b.length & 0xff;
    out[at + 1] = (b.length >>> 8) & 0xff;
    out[at + 2] = (b.length >>> 16) & 0xff;
    out[at + 3] = (b.length >>> 24) & 0xff;
    out.set(b, at + 4);
    at += 4 + b.length;
  }
  return out;
}

export function encodeEnvelope(e: Envelope): Uint8Array {
  switch (e.kind) {
    case "batch":
      return encodeBatch(e.items.map(encodeEnvelope));
    case "raft": {
      const out = encodeMessageAfter(e.message, RAFT_HEADER_BYTES);
      SCRATCH_VIEW.setUint8(0, KIND.raft);
      SCRATCH_VIEW.setFloat64(1, e.sentAt, true);
      SCRATCH_VIEW.setFloat64(9, e.echo, true);
      out.set(SCRATCH.subarray(0, RAFT_HEADER_BYTES), 0);
      return out;
    }
    case "propose":
    case "proposeConf": {
      const out = new Uint8Array(5 + e.data.length);
      const v = view(out);
      v.setUint8(0, KIND[e.kind]);
      v.setUint32(1, e.reqId, true);
      out.set(e.data, 5);
      return out;
    }
    case "proposed": {
      const v = SCRATCH_VIEW;
      v.setUint8(0, KIND.proposed);
      v.setUint32(1, e.reqId, true);
      v.setUint8(5, e.ok ? 0 : 1);
      v.setFloat64(6, e.index, true);
      v.setFloat64(14, e.leader, true);
      v.setFloat64(22, e.term, true);
      return SCRATCH.slice(0, 30);
    }
    case "keepAlive":
    case "ttl": {
      const v = SCRATCH_VIEW;
      v.setUint8(0, KIND[e.kind]);
      v.setUint32(1, e.reqId, true);
      v.setBigInt64(5, e.lease, true);
      return SCRATCH.slice(0, 13);
    }
    case "keepAliveAnswer": {
      const v = SCRATCH_VIEW;
      v.setUint8(0, KIND.keepAliveAnswer);
      v.setUint32(1, e.reqId, true);
      v.setUint8(5, e.ok ? 0 : 1);
      v.setFloat64(6, e.value, true);
      return SCRATCH.slice(0, 14);
    }
    case "ttlAnswer": {
      const v = SCRATCH_VIEW;
      v.setUint8(0, KIND.ttlAnswer);
      v.setUint32(1, e.reqId, true);
      v.setUint8(5, TTL_STATUS.indexOf(e.status));
      v.setFloat64(6, e.grantedSeconds, true);
      v.setFloat64(14, e.remainingMs, true);
      v.setFloat64(22, e.leader, true);
      return SCRATCH.slice(0, 30);
    }
    case "removed":
      return Uint8Array.of(KIND.removed);
    case "renewed": {
      const n = e.leases.length;
      if (n === 0 || n > RENEWED_LEASES_MAX) throw new EnvelopeError(`envelope: renewed of ${n} leases`);
      const out = new Uint8Array(5 + 8 * n);
      const v = view(out);
      v.setUint8(0, KIND.renewed);
      v.setUint32(1, n, true);
      for (let i = 0; i < n; i++) v.setBigInt64(5 + 8 * i, e.leases[i]!, true);
      return out;
    }
    case "confAnswer": {
      const v = SCRATCH_VIEW;
      v.setUint8(0, KIND.confAnswer);
      v.setUint32(1, e.reqId, true);
      v.setUint8(5, CONF_STATUS.indexOf(e.status));
      v.setFloat64(6, e.index, true);
      v.setFloat64(14, e.term, true);
      v.setFloat64(22, e.leader, true);
      return SCRATCH.slice(0, 30);
    }
  }
}

export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length === 0) throw new EnvelopeError("envelope: empty");
  const v = view(bytes);
  const need = (n: number, what: string) => {
    if (bytes.length !== n) throw new EnvelopeError(`envelope: ${what} of ${bytes.length} bytes, want ${n}`);
  };
  switch (bytes[0]) {
    case KIND.raft:
      if (bytes.length < RAFT_HEADER_BYTES) throw new EnvelopeError("envelope: short raft message");
      try {
        return {
          kind: "raft",
          sentAt: v.getFloat64(1, true),
          echo: v.getFloat64(9, true),
          message: decodeMessage(bytes.subarray(RAFT_HEADER_BYTES)),
        };
      } catch (e) {
        throw new EnvelopeError(`envelope: bad raft message: ${(e as Error).message}`);
      }
    case KIND.propose:
      if (bytes.length < 5) throw new EnvelopeError("envelope: short propose");
      return { kind: "propose", reqId: v.getUint32(1, true), data: bytes.slice(5) };
    case KIND.proposed:
      need(30, "proposed");
      return {
        kind: "proposed",
        reqId: v.getUint32(1, true),
        ok: v.getUint8(5) === 0,
        index: v.getFloat64(6, true),
        leader: v.getFloat64(14, true),
        term: v.getFloat64(22, true),
      };
    case KIND.keepAlive:
    case KIND.ttl:
      need(13, "lease request");
      return {
        kind: bytes[0] === KIND.keepAlive ? "keepAlive" : "ttl",
        reqId: v.getUint32(1, true),
        lease: v.getBigInt64(5, true),
      };
    case KIND.keepAliveAnswer:
      need(14, "keepalive answer");
      return {
        kind: "keepAliveAnswer",
        reqId: v.getUint32(1, true),
        ok: v.getUint8(5) === 0,
        value: v.getFloat64(6, true),
      };
    case KIND.ttlAnswer: {
      need(30, "ttl answer");
      const status = TTL_STATUS[v.getUint8(5)];
      if (status === undefined) throw new EnvelopeError(`envelope: ttl status ${v.getUint8(5)}`);
      return {
        kind: "ttlAnswer",
        reqId: v.getUint32(1, true),
        status,
        grantedSeconds: v.getFloat64(6, true),
        remainingMs: v.getFloat64(14, true),
        leader: v.getFloat64(22, true),
      };
    }
    case KIND.removed:
      need(1, "removed");
      return { kind: "removed" };
    case KIND.renewed: {
      if (bytes.length < 5) throw new EnvelopeError("envelope: short renewed");
      const n = v.getUint32(1, true);
      if (n === 0 || n > RENEWED_LEASES_MAX) throw new EnvelopeError(`envelope: renewed of ${n} leases`);
      need(5 + 8 * n, "renewed");
      const leases: bigint[] = [];
      for (let i = 0; i < n; i++) leases.push(v.getBigInt64(5 + 8 * i, true));
      return { kind: "renewed", leases };
    }
    case KIND.proposeConf:
      if (bytes.length < 5) throw new EnvelopeError("envelope: short conf proposal");
      return { kind: "proposeConf", reqId: v.getUint32(1, true), data: bytes.slice(5) };
    case KIND.confAnswer: {
      need(30, "conf answer");
      const status = CONF_STATUS[v.getUint8(5)];
      if (status === undefined) throw new EnvelopeError(`envelope: conf status ${v.getUint8(5)}`);
      return {
        kind: "confAnswer",
        reqId: v.getUint32(1, true),
        status,
        index: v.getFloat64(6, true),
        term: v.getFloat64(14, true),
        leader: v.getFloat64(22, true),
      };
    }
    case KIND.batch: {
      const items: Envelope[] = [];
      let at = 1;
      while (at < bytes.length) {
        if (items.length === BATCH_ENVELOPES_MAX) throw new EnvelopeError("envelope: batch too long");
        if (bytes.length - at < 4) throw new EnvelopeError("envelope: batch item length cut short");
        const n = v.getUint32(at, true);
        if (n === 0 || n > bytes.length - at - 4)
          throw new EnvelopeError(`envelope: batch item of ${n} bytes`);
        const item = bytes.subarray(at + 4, at + 4 + n);
        if (item[0] === KIND.raft || item[0] === KIND.batch)
          throw new EnvelopeError("envelope: RAFT or BATCH inside a batch");
        items.push(decodeEnvelope(item));
        at += 4 + n;
      }
      if (items.length === 0) throw new EnvelopeError("envelope: empty batch");
      return { kind: "batch", items };
    }
    default:
      throw new EnvelopeError(`envelope: unknown kind ${bytes[0]}`);
  }
}

/**
 * Where the fixed-size envelopes are written before being copied out: a DataView
 * on a small fresh Uint8Array would make V8 move that array's bytes off the heap
 * (`.buffer`), which costs more than the copy. Encoding is synchronous, so one
 * scratch buffer serves every call.
 */
const SCRATCH = new Uint8Array(64);
const SCRATCH_VIEW = new DataView(SCRATCH.buffer);

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
