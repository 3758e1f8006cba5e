/**
 * The initial state of a member. A new cluster writes its membership into the
 * log itself (one committed addVoter entry per founding member, term 1), the
 * way etcd-raft bootstraps: a member that joins later learns the whole
 * configuration history by replicating the log from index 1, with no special
 * case for "the configuration before the first entry".
 */

import { encodeConfChange } from "./confchange.ts";
import { emptySnapshot } from "./log.ts";
import type { RaftInitialState } from "./raft.ts";
import type { Entry, MemberId } from "./types.ts";
import { logIndex, NO_MEMBER, term } from "./types.ts";

/**
 * The state every founding member of a new cluster starts from (identical on
 * all of them, so `context` must be a function of the member alone: the host
 * puts the member's name and peer URLs there).
 */
export function bootstrapState(
  voters: readonly MemberId[],
  context: (member: MemberId) => Uint8Array = () => new Uint8Array(0),
): RaftInitialState {
  const sorted = [...voters].sort((a, b) => a - b);
  const entries: Entry[] = sorted.map((member, i) => ({
    term: term(1),
    index: logIndex(i + 1),
    kind: "conf",
    data: encodeConfChange({ kind: "addVoter", member, context: context(member) }),
  }));
  return {
    hardState: { term: term(1), vote: NO_MEMBER, commit: logIndex(entries.length) },
    snapshot: emptySnapshot({ voters: [], learners: [] }),
    entries,
    applied: logIndex(0),
  };
}

/** The state of a member that will be added to an existing cluster: nothing at all. */
export function joiningState(): RaftInitialState {
  return {
    hardState: { term: term(0), vote: NO_MEMBER, commit: logIndex(0) },
    snapshot: emptySnapshot({ voters: [], learners: [] }),
    entries: [],
    applied: logIndex(0),
  };
}
