/**
 * One member's application layer: the replicated state machine, its watch hub
 * and the leader's lessor, kept in step with Raft. The simulator and the
 * member process both drive this class, so what the simulator proves about
 * lease duties is what the server runs. Deterministic: time comes in as
 * `nowMs` (the member's monotonic clock), proposals go out through the
 * `propose` callback, and keepalive answers through the callback the caller
 * passes with each keepalive.
 *
 * Contract (the host's side):
 * - `apply(index, data, nowMs)` for every committed normal entry, in order,
 *   after `restore(snapshot data)` when Raft hands over a snapshot.
 * - `syncLeadership(raft, nowMs)` after every Raft step, tick and apply (it is
 *   idempotent): the lessor takes up its duties once the member leads AND has
 *   applied its own first entry of the term (so every entry of earlier terms:
 *   lessor.ts "Caller contract"), and drops them the moment it stops leading.
 * - `tick(nowMs)` on every Raft tick: proposes the expiry of due leases (one
 *   proposal per batch) and the checkpoints due.
 * - `keepAlive(raft, id, nowMs, answer)`: answered from the lessor's
 *   memory, never through the log, and only by the leader that is not handing
 *   leadership over (the successor's clock takes over: lessor.ts). `answer` is
 *   called exactly once, now or when a checkpoint it waits for is applied
 *   (lessor rule K2), or with notLeader/expired if leadership or the lease is
 *   lost meanwhile.
 */

import type { ConfChange, MemberId } from "../raft/index.ts";
import { assertNever, NO_MEMBER } from "../raft/index.ts";
import type { Command } from "./command.ts";
import type { Lessor } from "./lessor.ts";
import type { ApplyResult, StateMachineOptions } from "./machine.ts";
import { StateMachine } from "./machine.ts";
import type { LeaseId } from "./types.ts";
import type { WatchHub, WatchHubOptions } from "./watch.ts";

/** What the replica needs to know of the member's Raft instance. */
export interface RaftView {
  readonly role: string;
  readonly term: number;
  readonly lead: MemberId;
  readonly leadTransferee: MemberId;
  readonly log: { lastIndex(): number; readonly applied: number };
}

/** The answer to a keepalive: a TTL (0: the lease is gone or expired, as etcd answers), or not the leader. */
export type KeepAliveAnswer =
  | { readonly kind: "ttl"; readonly ttlSeconds: number }
  | { readonly kind: "notLeader"; readonly leader: MemberId };

export interface ReplicaOptions {
  readonly machine?: StateMachineOptions | undefined;
  readonly hub?: WatchHubOptions | undefined;
  /** The lessor (a fresh one: it holds nothing until this member leads). */
  readonly lessor: Lessor;
  /** Proposes a command through Raft; false when Raft refused it (not leader, transferring). */
  readonly propose: (command: Command) => boolean;
}

/** What changed in the lessor's role at a `syncLeadership` call. */
export type LeadershipChange = "tookOver" | "steppedDown" | undefined;

export class Replica {
  machine: StateMachine;
  hub: WatchHub;
  readonly lessor: Lessor;
  private readonly options: ReplicaOptions;
  /** The term this member leads (0: none) and the index of its first entry in it. */
  private leadTerm = 0;
  private leadStartIndex = 0;
  private lead: MemberId = NO_MEMBER;
  /** Raft is handing leadership over (as of the last sync): no keepalive is answered. */
  private transferring = false;
  /** Keepalives waiting for a checkpoint of their lease to be applied (K2). */
  private readonly waiting = new Map<LeaseId, ((a: KeepAliveAnswer) => void)[]>();

  constructor(options: ReplicaOptions) {
    this.options = options;
    this.machine = new StateMachine(options.machine);
    this.hub = this.machine.createWatchHub(options.hub);
    this.lessor = options.lessor;
  }

  /** Replaces the whole state with a snapshot's (empty data: the empty state). A new key space: a new hub. */
  restore(data: Uint8Array): void {
    this.machine =
      data.length === 0
        ? new StateMachine(this.options.machine)
        : StateMachine.restore(data, this.options.machine);
    this.hub = this.machine.createWatchHub(this.options.hub);
  }

  /** Applies one committed normal entry; feeds the hub and the lessor. */
  apply(index: number, data: Uint8Array, nowMs: number): ApplyResult {
    const res = this.machine.apply(index, data);
    if (res.events.length > 0) this.hub.onWrite(res.events, this.machine.currentRevision());
    for (const g of res.leaseGrants) this.lessor.onGrant(g, nowMs);
    for (const id of res.leaseRevokes) {
      this.lessor.onRevoke(id);
      this.answerWaiting(id, { kind: "ttl", ttlSeconds: 0 });
    }
    for (const cp of res.leaseCheckpoints) {
      this.lessor.onCheckpointApplied(cp, nowMs);
      this.retryWaiting(cp.id, nowMs);
    }
    return res;
  }

  /** Applies one committed membership change (a conf entry) to the member table. */
  applyConfChange(index: number, cc: ConfChange): void {
    this.machine.applyConfChange(index, cc);
  }

  /** Brings the lessor's role in step with Raft's (see the contract). */
  syncLeadership(raft: RaftView, nowMs: number): LeadershipChange {
    this.lead = raft.lead;
    this.transferring = raft.leadTransferee !== NO_MEMBER;
    const leading = raft.role === "leader";
    let change: LeadershipChange;
    if (leading && this.leadTerm !== raft.term) {
      if (this.lessor.isLeader) change = this.stepDown();
      this.leadTerm = raft.term;
      this.leadStartIndex = raft.log.lastIndex();
    }
    if (!leading) {
      this.leadTerm = 0;
      if (this.lessor.isLeader) change = this.stepDown();
    }
    if (leading && !this.lessor.isLeader && raft.log.applied >= this.leadStartIndex) {
      this.lessor.becomeLeader(nowMs, this.machine.leaseTable());
      change = "tookOver";
    }
    return change;
  }

  private stepDown(): LeadershipChange {
    this.lessor.stepDown();
    for (const id of [...this.waiting.keys()])
      this.answerWaiting(id, { kind: "notLeader", leader: this.lead });
    return "steppedDown";
  }

  /** Lease duties of one tick: expire what is due, write the checkpoints that are due. */
  tick(nowMs: number): void {
    const due = this.lessor.due(nowMs);
    if (due.length > 0) this.options.propose({ type: "leaseExpire", leases: due });
    const cps = this.lessor.checkpointsDue(nowMs);
    if (cps.length > 0 && !this.options.propose({ type: "leaseCheckpoint", checkpoints: cps })) {
      for (const cp of cps) this.lessor.onCheckpointDropped(cp);
    }
  }

  /** A keepalive for `id` (see the contract). */
  keepAlive(raft: RaftView, id: LeaseId, nowMs: number, answer: (a: KeepAliveAnswer) => void): void {
    this.syncLeadership(raft, nowMs);
    this.answerKeepAlive(id, nowMs, answer);
  }

  private answerKeepAlive(id: LeaseId, nowMs: number, answer: (a: KeepAliveAnswer) => void): void {
    if (!this.lessor.isLeader || this.transferring) {
      answer({ kind: "notLeader", leader: this.lead });
      return;
    }
    const out = this.lessor.keepAlive(id, nowMs);
    switch (out.kind) {
      case "renewed":
        answer({ kind: "ttl", ttlSeconds: out.ttlSeconds });
        return;
      case "expired":
      case "notFound":
        answer({ kind: "ttl", ttlSeconds: 0 });
        return;
      case "notLeader":
        answer({ kind: "notLeader", leader: this.lead });
        return;
      case "awaitCheckpoint": {
        if (out.propose !== undefined) {
          if (!this.options.propose({ type: "leaseCheckpoint", checkpoints: [out.propose] })) {
            this.lessor.onCheckpointDropped(out.propose);
            answer({ kind: "notLeader", leader: this.lead });
            return;
          }
        }
        const list = this.waiting.get(id) ?? [];
        list.push(answer);
        this.waiting.set(id, list);
        return;
      }
      default:
        assertNever(out, "keepalive outcome");
    }
  }

  /** Keepalives waiting on the lessor (tests and metrics). */
  waitingKeepAlives(): number {
    let n = 0;
    for (const list of this.waiting.values()) n += list.length;
    return n;
  }

  private retryWaiting(id: LeaseId, nowMs: number): void {
    const list = this.waiting.get(id);
    if (list === undefined) return;
    this.waiting.delete(id);
    for (const answer of list) this.answerKeepAlive(id, nowMs, answer);
  }

  private answerWaiting(id: LeaseId, a: KeepAliveAnswer): void {
    const list = this.waiting.get(id);
    if (list === undefined) return;
    this.waiting.delete(id);
    for (const answer of list) answer(a);
  }
}
