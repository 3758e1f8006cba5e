/**
 * The Raft core's public surface: a pure, synchronous consensus state machine.
 * Hosts (the server loop, the simulator) drive it through `Raft` and honour
 * the Ready contract documented on the `Ready` type.
 */

export { AssertionError, assert, assertNever } from "./assert.ts";
export { bootstrapState, joiningState } from "./bootstrap.ts";
export type { CodecErrorCode } from "./codec.ts";
export {
  CODEC_VERSION,
  CodecError,
  decodeConfState,
  decodeEntry,
  decodeHardState,
  decodeMessage,
  decodeSnapshot,
  decodeSnapshotMeta,
  encodeConfState,
  encodeEntry,
  encodeHardState,
  encodeMessage,
  encodeMessageAfter,
  encodeSnapshot,
  encodeSnapshotMeta,
} from "./codec.ts";
export { applyConfChange, decodeConfChange, encodeConfChange } from "./confchange.ts";
export {
  describeConf,
  describeData,
  describeEntry,
  describeHardState,
  describeMessage,
  describeReady,
  describeSnapshot,
} from "./describe.ts";
export { emptySnapshot } from "./log.ts";
export { committedIndex, hasQuorum, voteOutcome } from "./quorum.ts";
export type { RaftConfig, RaftInitialState } from "./raft.ts";
export { Raft } from "./raft.ts";
export type {
  ConfChange,
  ConfState,
  Entry,
  EntryKind,
  HardState,
  LogIndex,
  MemberId,
  Message,
  MessageType,
  ProposeResult,
  ReadState,
  Ready,
  Rng,
  Role,
  Snapshot,
  SnapshotMeta,
  SoftState,
  Term,
} from "./types.ts";
export { logIndex, memberId, NO_MEMBER, term } from "./types.ts";
