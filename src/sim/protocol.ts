/**
 * What simulated clients and members say to each other: the simulator's
 * stand-in for the gRPC API of a later issue, over the simulated network.
 *
 * - `cmd`: a client command (with its session) proposed through Raft; the
 *   member that proposed it answers with the result once it applied the entry
 *   at the index it proposed it at, or `fail` if another entry landed there
 *   (the client retries with the same session seq: applied at most once).
 * - `read`: a linearizable read of one key (ReadIndex), answered from the
 *   member's state once it applied through the read index.
 * - `keepAlive`: answered by the leader's lessor from memory (no log entry),
 *   with the TTL, 0 for an expired or unknown lease (etcd), or held until a
 *   checkpoint commits (lessor rule K2).
 * - `watch` opens a stream on the member; `progress` asks for a progress
 *   notification on it. Stream responses travel in order and are never
 *   dropped; a stream that breaks (member crash, partition, state replaced by
 *   a snapshot) ends with `watchBroken` and the client opens another.
 */

import type { MemberId } from "../raft/index.ts";
import type { ClientCommand, CommandResult, ExpireItem, LeaseId, WatchResponse } from "../state/index.ts";

export type ClientRequest = { readonly reqId: string; readonly client: number } & (
  | { readonly kind: "cmd"; readonly command: ClientCommand }
  | { readonly kind: "read"; readonly key: string }
  | { readonly kind: "keepAlive"; readonly lease: LeaseId }
  | { readonly kind: "watch"; readonly prefix: string; readonly startRevision: number }
  | { readonly kind: "progress"; readonly stream: string }
);

export type ClientResponse = { readonly reqId: string } /**
 * `index`: where the answering member applied the entry; `grantIndex`: for a leaseGrant result, the
 * index of the grant of the lease it names (absent if that lease is gone already).
 */ & (
  | {
      readonly kind: "applied";
      readonly index: number;
      readonly result: CommandResult;
      readonly grantIndex?: number | undefined;
    }
  | { readonly kind: "read"; readonly value: string | undefined; readonly revision: number }
  | { readonly kind: "keepAlive"; readonly ttlSeconds: number }
  | { readonly kind: "notLeader"; readonly leader: MemberId }
  | { readonly kind: "fail" }
  | { readonly kind: "watch"; readonly responses: readonly WatchResponse[] }
  | { readonly kind: "watchBroken" }
);

/** A member handing a lease duty to the member it believes leads (a correct lessor never does: only the leader has duties). */
export interface DutyForward {
  readonly leases: readonly ExpireItem[];
}
