/**
 * Membership changes, one member at a time (thesis §4.1): the encoding of a
 * change inside a `conf` log entry, and its effect on a ConfState.
 *
 * A change takes effect when its entry is applied; the leader allows at most
 * one unapplied change (pendingConfIndex), which with single-member changes
 * keeps every two consecutive majorities overlapping.
 */

import { assert } from "./assert.ts";
import type { ConfChange, ConfState, MemberId } from "./types.ts";
import { memberId } from "./types.ts";

const KIND_CODES = { addVoter: 1, addLearner: 2, remove: 3 } as const;
const HEADER_BYTES = 1 + 8;
const U32 = 0x1_0000_0000;

/** Encodes a change as entry data: kind byte, member id (u64 big-endian), context bytes. */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  assert(
    Number.isSafeInteger(cc.member) && cc.member > 0,
    "confchange: member id must be a positive safe integer",
  );
  const out = new Uint8Array(HEADER_BYTES + cc.context.length);
  const view = new DataView(out.buffer);
  out[0] = KIND_CODES[cc.kind];
  view.setUint32(1, Math.floor(cc.member / U32));
  view.setUint32(5, cc.member % U32);
  out.set(cc.context, HEADER_BYTES);
  return out;
}

/** Decodes entry data written by encodeConfChange. Entries come from our own log: malformed is a bug. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  assert(data.length >= HEADER_BYTES, "confchange: entry too short");
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const member = memberId(view.getUint32(1) * U32 + view.getUint32(5));
  const context = data.slice(HEADER_BYTES);
  switch (data[0]) {
    case 1:
      return { kind: "addVoter", member, context };
    case 2:
      return { kind: "addLearner", member, context };
    case 3:
      return { kind: "remove", member, context };
    default:
      assert(false, `confchange: unknown kind ${data[0]}`);
  }
}

/**
 * The membership after applying `cc`. Adding a learner that is a voter, or
 * removing an unknown member, leaves the configuration unchanged (the host
 * validates requests before proposing; a no-op keeps replicas identical anyway).
 */
export function applyConfChange(conf: ConfState, cc: ConfChange): ConfState {
  const voters = conf.voters.filter((v) => v !== cc.member);
  const learners = conf.learners.filter((v) => v !== cc.member);
  const isVoter = conf.voters.includes(cc.member);
  switch (cc.kind) {
    case "addVoter":
      voters.push(cc.member);
      break;
    case "addLearner":
      if (isVoter) return conf;
      learners.push(cc.member);
      break;
    case "remove":
      // Never remove the last voter: the group could make no progress again.
      if (isVoter && voters.length === 0) return conf;
      break;
  }
  return { voters: sortIds(voters), learners: sortIds(learners) };
}

function sortIds(ids: MemberId[]): MemberId[] {
  return ids.sort((a, b) => a - b);
}
