/**
 * Raft core types: the vocabulary shared by the state machine, the log and the
 * hosts that drive them (the server loop, the simulator).
 *
 * Contract: everything here is plain data. Messages, entries and Ready values
 * are never mutated after they leave the core; hosts may serialize them.
 */

/** A Raft term (Raft paper §5.1). Branded so it is never confused with an index. */
export type Term = number & { readonly __brand: "Term" };
/** A position in the replicated log (1-based; 0 means "before the first entry"). */
export type LogIndex = number & { readonly __brand: "LogIndex" };
/** A member id, unique in the cluster for all time; 0 means "none". */
export type MemberId = number & { readonly __brand: "MemberId" };

/** Casts for the branded primitives; the only places a bare number becomes one. */
export const term = (n: number): Term => n as Term;
export const logIndex = (n: number): LogIndex => n as LogIndex;
export const memberId = (n: number): MemberId => n as MemberId;
export const NO_MEMBER = memberId(0);

/** What an entry carries: an application command, or a membership change. */
export type EntryKind = "normal" | "conf";

/** One log entry. An empty `normal` entry is appended by every new leader (§5.4.2, thesis §3.6.2). */
export interface Entry {
  readonly term: Term;
  readonly index: LogIndex;
  readonly kind: EntryKind;
  readonly data: Uint8Array;
}

/** What must survive a crash besides the log: Raft paper Figure 2 "persistent state". */
export interface HardState {
  readonly term: Term;
  readonly vote: MemberId;
  readonly commit: LogIndex;
}

/** The membership: voters decide, learners only receive the log. Disjoint sets. */
export interface ConfState {
  readonly voters: readonly MemberId[];
  readonly learners: readonly MemberId[];
}

/** Identifies the state a snapshot captures. */
export interface SnapshotMeta {
  readonly index: LogIndex;
  readonly term: Term;
  readonly conf: ConfState;
}

/** A snapshot of the application state machine plus the metadata raft needs. */
export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

/** A single-member change (thesis §4.1): at most one is pending at a time. */
export type ConfChange =
  | { readonly kind: "addVoter"; readonly member: MemberId; readonly context: Uint8Array }
  | { readonly kind: "addLearner"; readonly member: MemberId; readonly context: Uint8Array }
  | { readonly kind: "remove"; readonly member: MemberId; readonly context: Uint8Array };

/** Fields every peer message carries. */
interface MessageBase {
  readonly from: MemberId;
  readonly to: MemberId;
  /** Sender's term; 0 only for local messages that carry no term. */
  readonly term: Term;
}

/** Append entries (Figure 2), also used to probe and to carry the leader's commit index. */
export interface MsgApp extends MessageBase {
  readonly type: "app";
  /** Index and term of the entry just before `entries`. */
  readonly prevIndex: LogIndex;
  readonly prevTerm: Term;
  readonly entries: readonly Entry[];
  readonly commit: LogIndex;
}

/**
 * Answer to MsgApp. On success `index` is the last index now known to match.
 * On rejection `index` is the rejected prevIndex and (hintIndex, hintTerm) is the
 * follower's best guess of where the logs may agree (fast backtracking, thesis §5.3).
 */
export interface MsgAppResp extends MessageBase {
  readonly type: "appResp";
  readonly reject: boolean;
  readonly index: LogIndex;
  readonly hintIndex: LogIndex;
  readonly hintTerm: Term;
}

/** RequestVote (and PreVote, thesis §9.6). `term` is the term campaigned for. */
export interface MsgVote extends MessageBase {
  readonly type: "vote" | "preVote";
  readonly lastIndex: LogIndex;
  readonly lastTerm: Term;
  /** Set when the campaign follows a leader transfer: voters ignore their leader lease. */
  readonly transfer: boolean;
}

export interface MsgVoteResp extends MessageBase {
  readonly type: "voteResp" | "preVoteResp";
  readonly reject: boolean;
}

/**
 * Leader heartbeat. `commit` is capped at what the follower is known to have.
 * `context` is a ReadIndex round id (0 = none).
 */
export interface MsgHeartbeat extends MessageBase {
  readonly type: "heartbeat";
  readonly commit: LogIndex;
  readonly context: number;
}

export interface MsgHeartbeatResp extends MessageBase {
  readonly type: "heartbeatResp";
  readonly context: number;
}

/** Install snapshot (thesis §5.1), sent when the follower needs compacted entries. */
export interface MsgSnap extends MessageBase {
  readonly type: "snap";
  readonly snapshot: Snapshot;
}

/** Leader transfer: the recipient campaigns at once (thesis §3.10). */
export interface MsgTimeoutNow extends MessageBase {
  readonly type: "timeoutNow";
}

/** A follower asking its leader for a read index on behalf of a local read. */
export interface MsgReadIndex extends MessageBase {
  readonly type: "readIndex";
  readonly requestId: string;
}

/** The leader's answer; index 0 with `reject` when it could not serve. */
export interface MsgReadIndexResp extends MessageBase {
  readonly type: "readIndexResp";
  readonly requestId: string;
  readonly index: LogIndex;
  readonly reject: boolean;
}

/** Every message members exchange. */
export type Message =
  | MsgApp
  | MsgAppResp
  | MsgVote
  | MsgVoteResp
  | MsgHeartbeat
  | MsgHeartbeatResp
  | MsgSnap
  | MsgTimeoutNow
  | MsgReadIndex
  | MsgReadIndexResp;

export type MessageType = Message["type"];

/** A member's role. `preCandidate` runs the pre-vote round (thesis §9.6). */
export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/** Volatile state the host may display; not persisted. */
export interface SoftState {
  readonly role: Role;
  readonly leader: MemberId;
  readonly term: Term;
}

/**
 * A linearizable read may be served once the local applied index reaches `index`
 * (ReadIndex, thesis §6.4). A rejected request (no leader, leader not yet
 * committed in its term, leadership lost) has `index` 0 and `rejected` set.
 */
export interface ReadState {
  readonly requestId: string;
  readonly index: LogIndex;
  readonly rejected: boolean;
}

/**
 * Everything the host must do, in this order (the Ready contract):
 * 1. persist `snapshot` (if any: it replaces the whole stored log, including
 *    entries above its index), then `entries` (replacing any stored entries with
 *    index >= entries[0].index) and `hardState` (if any), durably;
 * 2. send `messages`;
 * 3. restore `snapshot` into the state machine (if any), then apply
 *    `committedEntries` in order;
 * 4. call `advance(ready)`.
 */
export interface Ready {
  readonly softState: SoftState;
  /** Present only when it changed since the last Ready. */
  readonly hardState: HardState | undefined;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | undefined;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
}

/** A seeded source of randomness, passed in (the core has none of its own). */
export interface Rng {
  /** A uniformly distributed integer in [0, n). */
  int(n: number): number;
}

/** Why a proposal or request was not accepted; the host tells its caller. */
export type ProposeResult =
  | { readonly ok: true; readonly index: LogIndex; readonly term: Term }
  | {
      readonly ok: false;
      readonly reason: "notLeader" | "transferring" | "confChangePending" | "tooLarge";
      readonly leader: MemberId;
    };
