/**
 * The member process's core loop: it drives the Raft core with the real
 * monotonic clock, persists through the storage port, talks to peers through
 * the transport port, applies through the Replica (the same class the
 * simulator runs), and offers the API layer promises for writes, reads,
 * keepalives and lease TTLs.
 *
 * The loop (one Ready at a time, CONVENTIONS "Ready contract"):
 *   1. persist snapshot, entries and hard state with ONE fsync (group commit:
 *      everything proposed since the last Ready shares it);
 *   2. send the messages;
 *   3. restore the snapshot, apply committed entries, resolve the proposals
 *      and reads they answer;
 *   4. advance; then snapshot the state machine every `snapshotCount` entries.
 * Inputs (ticks, peer messages, client calls) only step Raft and schedule the
 * loop (setImmediate), so requests arriving together share one Ready.
 *
 * Writes: the leader proposes; a follower hands the entry data to the leader
 * (PROPOSE) and learns the index it got. Either way the caller waits until
 * THIS member applies that index, and is answered with the result if the
 * entry there is the one proposed, or "leader changed" if another entry won
 * the index (etcd answers the same). Linearizable reads use ReadIndex (which
 * the Raft core forwards from a follower), serializable reads the local
 * state. Keepalives and TTL queries are the leader's (its lessor's memory):
 * a follower forwards them. Every wait has a deadline (requestTimeoutMs).
 */

import type {
  ConfChange,
  Entry,
  HardState,
  MemberId,
  Message,
  RaftInitialState,
  Ready,
  Snapshot,
} from "../raft/index.ts";
import { decodeConfChange, encodeConfChange, logIndex, NO_MEMBER, Raft } from "../raft/index.ts";
import type {
  ApplyResult,
  Command,
  CommandResult,
  KeepAliveAnswer,
  LeaseId,
  StateMachine,
} from "../state/index.ts";
import {
  commandRequestBytes,
  decodeMemberContext,
  encodeCommand,
  Lessor,
  leaseId,
  Replica,
} from "../state/index.ts";
import type { ConfAnswerStatus, Envelope } from "./envelope.ts";
import {
  BATCH_ENVELOPES_MAX,
  decodeEnvelope,
  EnvelopeError,
  encodeBatch,
  encodeEnvelope,
  RENEWED_LEASES_MAX,
} from "./envelope.ts";
import { QuorumContact } from "./quorum-contact.ts";

/** The most renewals the leader shares per tick (RENEWED); a burst beyond goes unreported as events. */
const RENEWED_SHARE_MAX = 4 * RENEWED_LEASES_MAX;

/** About how many bytes of small envelopes one BATCH carries (flushOutbox). */
const BATCH_BYTES_TARGET = 256 * 1024;

/** Durable Raft state (src/storage implements it). */
export interface StoragePort {
  save(hardState: HardState | undefined, entries: readonly Entry[], snapshot: Snapshot | undefined): void;
  saveSnapshot(snapshot: Snapshot): void;
}

/** Opaque payloads to peers (src/transport implements it). */
export interface TransportPort {
  send(to: MemberId, payload: Uint8Array): boolean;
  /** Write what is queued now rather than after the current synchronous run (optional). */
  flush?(): void;
}

export interface MemberOptions {
  readonly id: MemberId;
  readonly heartbeatMs: number;
  readonly electionMs: number;
  readonly snapshotCount: number;
  /** How long a client call may wait (etcd: about 7 s for writes). */
  readonly requestTimeoutMs?: number;
  readonly minLeaseTtlSeconds?: number;
  /** Largest entry a client command may make (etcd --max-request-bytes, default 1.5 MiB). */
  readonly maxRequestBytes?: number;
  readonly now?: () => number;
  readonly log?: (level: "info" | "warn", msg: string) => void;
}

/** Events the member reports to its metrics (src/api/metrics.ts). Hooks run synchronously and must not throw. */
export interface MemberObserver {
  /** A normal entry was applied: its result and how long the apply took. */
  applied?(result: ApplyResult, seconds: number): void;
  /** The member learned a new leader (NO_MEMBER: none known). */
  leaderChanged?(leader: MemberId): void;
  /** A client write failed after it was accepted (timeout, leader change, stop). */
  proposalFailed?(): void;
  /** This member, as leader, renewed a lease for a keepalive. */
  leaseRenewed?(): void;
}

/** A client call failed; `code` names the etcd error the API layer answers with (src/api/errors.ts). */
export class MemberError extends Error {
  override readonly name = "MemberError";
  constructor(
    readonly code:
      | "noLeader"
      | "leaderChanged"
      | "leaderFailed"
      | "timeout"
      | "stopped"
      | "tooLarge"
      | "learnerNotReady"
      | "memberNotFound"
      | "memberExists"
      | "peerUrlExists"
      | "tooManyLearners"
      | "memberNotLearner",
    message: string,
  ) {
    super(message);
  }
}

export interface WriteOutcome {
  readonly result: CommandResult;
  readonly index: number;
}

export interface LeaseTtl {
  readonly grantedSeconds: number;
  /** Seconds left, rounded down (etcd's TTL field); -1 when the lease is gone. */
  readonly remainingSeconds: number;
  /** Milliseconds left on the leader's clock when it answered; -1 when the lease is gone. */
  readonly remainingMs: number;
}

/** A leader's answer in ms as LeaseTtl. */
function leaseTtlOf(grantedSeconds: number, remainingMs: number): LeaseTtl {
  return {
    grantedSeconds,
    remainingSeconds: remainingMs < 0 ? -1 : Math.floor(remainingMs / 1000),
    remainingMs: remainingMs < 0 ? -1 : remainingMs,
  };
}

/**
 * A call waiting for its outcome, with a deadline. A class rather than a bag of closures: one
 * object per request (they live across minor GCs under load, so every byte is promoted), and
 * no Timeout of its own: it sits in the member's Deadlines list until it settles.
 */
class Pending<T> {
  private done = false;
  private cleanups: (() => void)[] | undefined = undefined;
  /** Neighbours in the Deadlines list while waiting. */
  prev: Pending<never> | undefined = undefined;
  next: Pending<never> | undefined = undefined;

  constructor(
    private readonly onResolve: (v: T) => void,
    private readonly onReject: (e: Error) => void,
    /** What the call waits for, named in its timeout error. */
    readonly what: string,
    /** performance.now() after which it fails with a timeout. */
    readonly deadline: number,
    private readonly deadlines: Deadlines,
  ) {}

  resolve(v: T): void {
    if (this.done) return;
    this.finish();
    this.onResolve(v);
  }

  reject(e: Error): void {
    if (this.done) return;
    this.finish();
    this.onReject(e);
  }

  /** Resolved, rejected or timed out. */
  settled(): boolean {
    return this.done;
  }

  /** Runs `f` when the call is settled (however): forgets what the call left in the member's maps. */
  onSettled(f: () => void): void {
    if (this.done) f();
    else if (this.cleanups === undefined) this.cleanups = [f];
    else this.cleanups.push(f);
  }

  private finish(): void {
    this.done = true;
    this.deadlines.remove(this as Pending<never>);
    const fs = this.cleanups;
    if (fs === undefined) return;
    this.cleanups = undefined;
    for (const f of fs) f();
  }
}

/**
 * The deadlines of every waiting call, in one intrusive list in deadline order (every call gets
 * the same timeout, so appending keeps the order) and one timer for the earliest: O(1) to add
 * and to remove, and no Timeout object per request. A removed head leaves the timer armed; it
 * fires once for nothing and re-arms for the new head.
 */
class Deadlines {
  private head: Pending<never> | undefined = undefined;
  private tail: Pending<never> | undefined = undefined;
  private timer: ReturnType<typeof setTimeout> | undefined = undefined;
  /** The call the timer was armed for: its full timeout has run when the timer fires. */
  private armedFor: Pending<never> | undefined = undefined;

  constructor(private readonly timeout: (what: string) => Error) {}

  add(p: Pending<never>): void {
    p.prev = this.tail;
    if (this.tail === undefined) this.head = p;
    else this.tail.next = p;
    this.tail = p;
    if (this.timer === undefined) this.arm();
  }

  remove(p: Pending<never>): void {
    if (p.prev === undefined && this.head !== p) return; // not listed
    if (p.prev === undefined) this.head = p.next;
    else p.prev.next = p.next;
    if (p.next === undefined) this.tail = p.prev;
    else p.next.prev = p.prev;
    p.prev = undefined;
    p.next = undefined;
  }

  /** Fails every waiting call with `err()` and stops the timer. */
  failAll(err: () => Error): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.head !== undefined) this.head.reject(err());
  }

  private arm(): void {
    const first = this.head;
    if (first === undefined) return;
    this.armedFor = first;
    this.timer = setTimeout(() => this.fire(), Math.max(1, first.deadline - performance.now()));
  }

  private fire(): void {
    this.timer = undefined;
    const armed = this.armedFor;
    this.armedFor = undefined;
    if (armed !== undefined && !armed.settled()) armed.reject(this.timeout(armed.what));
    const now = performance.now();
    while (this.head !== undefined && this.head.deadline <= now)
      this.head.reject(this.timeout(this.head.what));
    this.arm();
  }
}

const DEFAULT_REQUEST_TIMEOUT_MS = 7_000;
/** etcd 3.4 allows one learner at a time. */
export const MAX_LEARNERS = 1;
/** etcd's default --max-request-bytes. */
export const DEFAULT_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;

export class Member {
  readonly id: MemberId;
  readonly raft: Raft;
  replica: Replica;
  private readonly storage: StoragePort;
  private readonly transport: TransportPort;
  private readonly options: MemberOptions;
  private readonly now: () => number;
  private readonly requestTimeoutMs: number;
  private readonly deadlines = new Deadlines(
    (what) => new MemberError("timeout", `etcdserver: request timed out (${what})`),
  );
  private tickTimer: ReturnType<typeof setInterval> | undefined;
  private scheduled = false;
  private stopped = false;
  /** index -> what this member proposed (or had the leader propose) there. */
  /** index -> the proposal there: its term (same index and term means the same entry) and its waiter. */
  private readonly proposals = new Map<number, { term: number; pending: Pending<WriteOutcome> }>();
  /** Forwarded requests waiting for the leader's answer, by reqId. */
  /**
   * Forwarded requests waiting for the leader's answer, by reqId: whom they
   * went to, and the answer's handler (undefined: lost, because that leader
   * is no longer the leader, or this member stopped).
   */
  private readonly forwarded = new Map<number, { to: MemberId; answer: (e: Envelope | undefined) => void }>();
  private nextReqId = 1;
  /** ReadIndex requests waiting for their read state, then for the apply. */
  private readonly reads = new Map<string, Pending<void>>();
  private readonly readsAt: { index: number; pending: Pending<void> }[] = [];
  /** Called after every Ready that applied something or replaced the state (watch streams drain). */
  onApplied: (restored: boolean) => void = () => {};
  /** Called after a membership change was applied, and after a snapshot replaced the state (cc undefined). */
  onMembershipChange: (cc: ConfChange | undefined) => void = () => {};
  /** Called once when a peer tells this member that it was removed from the cluster. */
  onRemoved: () => void = () => {};
  private removedNoticed = false;
  /** The term and vote on disk (the last hard state persisted). */
  private durableTerm: number;
  private durableVote: number;
  /** Envelopes other than Raft messages waiting for the end of the loop's turn, per peer (sendTo). */
  private readonly outbox = new Map<MemberId, Uint8Array[]>();
  /** When each voter last spoke in this member's term: the leader's real-time check before keepalives. */
  private readonly contact = new QuorumContact();
  /** The latest sentAt each peer stamped on a Raft message to this member (echoed back to it). */
  private readonly stampFrom = new Map<MemberId, number>();
  /** Per peer: no snapshot is encoded for it before this time (a send just failed). */
  private readonly snapshotRetryAt = new Map<MemberId, number>();
  /** Called when the leader changes (API streams may want to know). */
  onLeaderChange: (leader: MemberId) => void = () => {};
  /** What the metrics count (src/api/metrics.ts sets it); every hook is optional. */
  observer: MemberObserver = {};
  /** Told every applied normal entry's result, after the observer (the API's lease event hub). */
  entryApplied: ((result: ApplyResult) => void) | undefined = undefined;
  /**
   * Told every lease renewal the leader granted (here or for a follower's
   * keepalive), and on followers every one the leader shared (RENEWED): the
   * API's lease event hub. It answers whether the other members should hear
   * of it (the lease holds a claim someone may be watching).
   */
  leaseKept: ((lease: LeaseId) => boolean) | undefined = undefined;
  /** As leader: renewed leases the followers have not heard of yet (sent each tick, RENEWED). */
  private renewedToShare: bigint[] = [];
  private lastLeader: MemberId = NO_MEMBER;
  private snapshotIndex: number;

  constructor(
    options: MemberOptions,
    initial: RaftInitialState,
    storage: StoragePort,
    transport: TransportPort,
  ) {
    this.id = options.id;
    this.options = options;
    this.storage = storage;
    this.transport = transport;
    this.now = options.now ?? (() => performance.now());
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const electionTicks = Math.max(2, Math.round(options.electionMs / options.heartbeatMs));
    this.raft = new Raft(
      {
        id: options.id,
        electionTicks,
        heartbeatTicks: 1,
        rng: { int: (n) => Math.floor(Math.random() * n) },
      },
      initial,
    );
    this.snapshotIndex = initial.snapshot.meta.index;
    this.durableTerm = initial.hardState.term;
    this.durableVote = initial.hardState.vote;
    this.replica = this.newReplica();
    this.replica.restore(initial.snapshot.data);
  }

  private newReplica(): Replica {
    return new Replica({
      machine: { minLeaseTtlSeconds: this.options.minLeaseTtlSeconds },
      // Δ is the election timeout plus a tick (lessor.ts: a deposed leader answers for at most that).
      lessor: new Lessor({ electionTimeoutMs: this.options.electionMs + this.options.heartbeatMs }),
      propose: (command) => this.raft.propose([encodeCommand(command)]).ok,
    });
  }

  /** Starts ticking. */
  start(): void {
    this.tickTimer = setInterval(() => this.tick(), this.options.heartbeatMs);
    // The only voter needs nobody's vote: lead now rather than after an election timeout.
    const { voters } = this.raft.conf;
    if (voters.length === 1 && voters[0] === this.id) this.raft.campaignNow();
    this.schedule();
  }

  /** Stops ticking and fails every waiting call. Storage and transport are the caller's to close. */
  stop(): void {
    this.stopped = true;
    this.outbox.clear();
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    const err = () => new MemberError("stopped", "etcdserver: server stopped");
    for (const { pending } of this.proposals.values()) settle(pending, err());
    this.proposals.clear();
    for (const p of this.reads.values()) settle(p, err());
    this.reads.clear();
    for (const r of this.readsAt.splice(0)) settle(r.pending, err());
    const lost = [...this.forwarded.values()];
    this.forwarded.clear();
    for (const f of lost) f.answer(undefined);
    // Everything else still waiting (lease calls retrying at a heartbeat) fails now, not at its deadline.
    this.deadlines.failAll(err);
  }

  get machine(): StateMachine {
    return this.replica.machine;
  }

  get leader(): MemberId {
    return this.raft.lead;
  }

  /** Writes proposed by this member and not yet applied (etcd's proposals_pending). */
  get pendingProposals(): number {
    return this.proposals.size;
  }

  get isLeader(): boolean {
    return this.raft.role === "leader";
  }

  // ---------------------------------------------------------------- inputs

  private tick(): void {
    if (this.stopped) return;
    this.shareRenewals();
    this.raft.tick();
    this.replica.syncLeadership(this.raft, this.now());
    this.replica.tick(this.now());
    this.schedule();
  }

  /**
   * As leader, tells every other member which claim leases it renewed since
   * the last tick (RENEWED), so their lease event streams report renewals
   * too; at most RENEWED_SHARE_MAX per tick (a renewal beyond is not reported).
   */
  private shareRenewals(): void {
    if (this.renewedToShare.length === 0) return;
    const leases = this.renewedToShare;
    this.renewedToShare = [];
    if (this.raft.role !== "leader") return;
    const conf = this.raft.conf;
    for (const to of [...conf.voters, ...conf.learners]) {
      if (to === this.id) continue;
      for (let i = 0; i < leases.length; i += RENEWED_LEASES_MAX)
        this.sendTo(to, { kind: "renewed", leases: leases.slice(i, i + RENEWED_LEASES_MAX) });
    }
  }

  /** A payload from peer `from` (the transport's callback). */
  receive(from: MemberId, payload: Uint8Array): void {
    if (this.stopped) return;
    let e: Envelope;
    try {
      e = decodeEnvelope(payload);
    } catch (err) {
      if (err instanceof EnvelopeError) {
        this.log("warn", `dropped a malformed message from member ${from.toString(16)}: ${err.message}`);
        return;
      }
      throw err;
    }
    if (this.replica.machine.memberRemoved(from)) {
      // A removed member may never have learned that its removal committed: tell it (etcd answers 410 Gone).
      if (e.kind !== "removed") this.sendTo(from, { kind: "removed" });
      return;
    }
    if (e.kind === "batch") for (const item of e.items) this.handle(from, item);
    else this.handle(from, e);
    this.schedule();
  }

  private handle(from: MemberId, e: Envelope): void {
    switch (e.kind) {
      case "batch":
        // decodeEnvelope never nests batches.
        return;
      case "raft":
        this.stampFrom.set(from, e.sentAt);
        // Credited with the time WE sent what the peer had heard when it replied, not the arrival
        // time: replies that waited in a socket buffer through a stall are old news.
        if (e.message.term === this.raft.term && e.echo >= 0) this.contact.note(from, e.message.term, e.echo);
        this.raft.step(e.message);
        break;
      case "removed":
        // Sent only by members that applied this member's removal (a committed change): trusted, as
        // etcd trusts a peer's 410 Gone. This member may never apply the removal itself.
        if (!this.removedNoticed) {
          this.removedNoticed = true;
          this.onRemoved();
        }
        return;
      case "proposeConf": {
        const cc = peerConfChange(e.data);
        const a =
          cc === undefined ? { status: "busy" as const, index: 0, term: 0 } : this.proposeConfLocal(cc);
        this.sendTo(from, { kind: "confAnswer", reqId: e.reqId, ...a, leader: this.raft.lead });
        break;
      }
      case "propose": {
        const res = this.raft.propose([e.data]);
        this.sendTo(from, {
          kind: "proposed",
          reqId: e.reqId,
          ok: res.ok,
          index: res.ok ? res.index : 0,
          leader: res.ok ? this.id : res.leader,
          term: res.ok ? res.term : 0,
        });
        break;
      }
      case "keepAlive":
        this.keepAliveHere(leaseId(e.lease), (a) =>
          this.sendTo(from, {
            kind: "keepAliveAnswer",
            reqId: e.reqId,
            ok: a.kind === "ttl",
            value: a.kind === "ttl" ? a.ttlSeconds : a.leader,
          }),
        );
        break;
      case "ttl":
        this.sendTo(from, { kind: "ttlAnswer", reqId: e.reqId, ...this.localTtl(leaseId(e.lease)) });
        break;
      case "renewed":
        // Only the leader's word counts (a deposed one may still be sending).
        if (from === this.raft.lead) for (const l of e.leases) this.leaseKept?.(leaseId(l));
        break;
      case "proposed":
      case "keepAliveAnswer":
      case "ttlAnswer":
      case "confAnswer": {
        const waiting = this.forwarded.get(e.reqId);
        if (waiting !== undefined) {
          this.forwarded.delete(e.reqId);
          waiting.answer(e);
        }
        break;
      }
    }
  }

  /**
   * Sends a Raft message. A snapshot the transport does not take (the peer's
   * queue is full, or it is larger than a peer message may be) is reported to
   * Raft, which probes and resends later instead of waiting out the snapshot
   * timeout; after such a failure, snapshots to that peer are not encoded (a
   * full copy) again for an election timeout.
   */
  private sendRaft(m: Message): void {
    const now = this.now();
    if (m.type === "snap" && now < (this.snapshotRetryAt.get(m.to) ?? 0)) {
      this.raft.reportSnapshot(m.to, false);
      return;
    }
    const sent = this.sendTo(m.to, {
      kind: "raft",
      sentAt: now,
      echo: this.stampFrom.get(m.to) ?? -1,
      message: m,
    });
    if (sent || m.type !== "snap") return;
    this.log(
      "warn",
      `could not send a snapshot of ${m.snapshot.data.length} bytes to member ${m.to.toString(16)}`,
    );
    this.snapshotRetryAt.set(m.to, now + this.options.electionMs);
    this.raft.reportSnapshot(m.to, false);
  }

  /**
   * A Raft message goes to the transport now; false if it did not take it
   * (dropped). Any other envelope waits in the peer's outbox and leaves in
   * one BATCH when the loop next runs (flushOutbox): a follower's forwarded
   * proposals and keepalives, and the leader's answers, travel together
   * instead of one transport payload each (always true: a lost one is
   * answered by the caller's timeout, as before).
   */
  private sendTo(to: MemberId, e: Envelope): boolean {
    if (e.kind === "raft") return this.transport.send(to, encodeEnvelope(e));
    let box = this.outbox.get(to);
    if (box === undefined) {
      box = [];
      this.outbox.set(to, box);
    }
    box.push(encodeEnvelope(e));
    this.schedule();
    return true;
  }

  /**
   * Sends each peer's outbox as BATCHes of at most BATCH_ENVELOPES_MAX
   * envelopes and about BATCH_BYTES_TARGET bytes (an envelope as large alone
   * goes by itself), so that one dropped payload loses few requests.
   * Nothing leaves a stopped member.
   */
  private flushOutbox(): void {
    if (this.outbox.size === 0) return;
    if (this.stopped) {
      this.outbox.clear();
      return;
    }
    for (const [to, box] of this.outbox) {
      let part: Uint8Array[] = [];
      let bytes = 0;
      const send = (): void => {
        if (part.length > 0) this.transport.send(to, part.length === 1 ? part[0]! : encodeBatch(part));
        part = [];
        bytes = 0;
      };
      for (const e of box) {
        if (part.length === BATCH_ENVELOPES_MAX || (part.length > 0 && bytes + e.length > BATCH_BYTES_TARGET))
          send();
        part.push(e);
        bytes += e.length;
      }
      send();
    }
    this.outbox.clear();
  }

  // ---------------------------------------------------------------- client calls

  /** Proposes `command` and resolves with its result once this member applied it. */
  write(command: Command): Promise<WriteOutcome> {
    const data = encodeCommand(command);
    // etcd bounds the request as protobuf; commandRequestBytes counts the entry as that (command.ts).
    if (commandRequestBytes(data) > (this.options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES))
      return Promise.reject(new MemberError("tooLarge", "etcdserver: request is too large"));
    return new Promise<WriteOutcome>((resolve, reject) => {
      const failed = (e: Error): void => {
        this.observer.proposalFailed?.();
        reject(e);
      };
      const pending = this.pending(resolve, failed, "write");
      const attempt = (triesLeft: number): void => {
        if (this.stopped || pending.settled()) return;
        if (this.isLeader) {
          const res = this.raft.propose([data]);
          if (res.ok) {
            this.track(res.index, res.term, pending);
            this.schedule();
            return;
          }
          if (res.reason === "tooLarge") {
            settle(pending, new MemberError("tooLarge", "etcdserver: request is too large"));
            return;
          }
        }
        const leader = this.raft.lead;
        if (leader === NO_MEMBER || leader === this.id) {
          // No leader yet (an election under way): wait a heartbeat and try again.
          if (triesLeft <= 0) settle(pending, new MemberError("noLeader", "etcdserver: no leader"));
          else setTimeout(() => attempt(triesLeft - 1), this.options.heartbeatMs);
          return;
        }
        this.forward(
          pending,
          leader,
          (reqId) => ({ kind: "propose", reqId, data }),
          (e) => {
            // Lost with a leader that is gone: it may or may not have been proposed, so it is not
            // proposed again here (that could apply it twice); the client retries, as etcd's do.
            if (e === undefined) settle(pending, leaderFailed());
            else if (e.kind !== "proposed") return;
            else if (e.ok) this.track(e.index, e.term, pending);
            else if (triesLeft > 0) setTimeout(() => attempt(triesLeft - 1), this.options.heartbeatMs);
            else settle(pending, new MemberError("noLeader", "etcdserver: no leader"));
          },
        );
      };
      attempt(Math.ceil((2 * this.options.electionMs) / this.options.heartbeatMs));
    });
  }

  /**
   * Proposes one membership change (etcd MemberAdd/Remove/Promote) and
   * resolves once this member applied it. Only the leader proposes; while
   * another change is pending (or no leader is known) it is tried again every
   * heartbeat until the request times out. A promotion of a learner that is
   * behind the leader's log fails with learnerNotReady (etcd: 90% of the log).
   */
  changeMembership(cc: ConfChange): Promise<WriteOutcome> {
    const data = encodeConfChange(cc);
    return new Promise<WriteOutcome>((resolve, reject) => {
      const pending = this.pending(resolve, reject, "membership");
      const attempt = (): void => {
        if (this.stopped || pending.settled()) return;
        const retry = (): void => {
          setTimeout(attempt, this.options.heartbeatMs);
        };
        const answered = (a: { status: ConfAnswerStatus; index: number; term: number }): void => {
          if (a.status === "ok") this.track(a.index, a.term, pending);
          else if (a.status === "notLeader" || a.status === "busy") retry();
          else
            settle(pending, new MemberError(a.status, `etcdserver: membership change refused: ${a.status}`));
        };
        if (this.isLeader) {
          answered(this.proposeConfLocal(cc));
          this.schedule();
          return;
        }
        const leader = this.raft.lead;
        if (leader === NO_MEMBER || leader === this.id) {
          retry();
          return;
        }
        this.forward(
          pending,
          leader,
          (reqId) => ({ kind: "proposeConf", reqId, data }),
          (e) => {
            if (e === undefined) settle(pending, leaderFailed());
            else if (e.kind === "confAnswer") answered(e);
          },
        );
      };
      attempt();
    });
  }

  /**
   * The leader's side of a membership change. It is checked here against the
   * leader's member table, which holds every earlier change once Raft accepts
   * the proposal (it refuses while a change is unapplied: "busy", retried and
   * checked again), so two changes racing through different members cannot
   * both pass (etcd checks again at apply: ValidateConfigurationChange). An
   * add carries the new member's context; a promotion (addVoter of a learner)
   * carries none.
   */
  private proposeConfLocal(cc: ConfChange): { status: ConfAnswerStatus; index: number; term: number } {
    const refuse = (status: ConfAnswerStatus) => ({ status, index: 0, term: 0 });
    if (this.raft.role !== "leader") return refuse("notLeader");
    const table = this.replica.machine;
    const existing = table.member(cc.member);
    const ctx = decodeMemberContext(cc.context);
    if (cc.kind === "remove") {
      if (existing === undefined) return refuse("memberNotFound");
    } else if (ctx === undefined) {
      // A promotion.
      if (cc.kind !== "addVoter" || existing === undefined) return refuse("memberNotFound");
      if (!existing.isLearner) return refuse("memberNotLearner");
      if (!this.learnerReady(cc.member)) return refuse("learnerNotReady");
    } else {
      if (existing !== undefined || table.memberRemoved(cc.member)) return refuse("memberExists");
      const used = new Set(table.memberList().flatMap((m) => m.peerUrls));
      if (ctx.peerUrls.some((u) => used.has(u))) return refuse("peerUrlExists");
      if (cc.kind === "addLearner" && table.memberList().filter((m) => m.isLearner).length >= MAX_LEARNERS)
        return refuse("tooManyLearners");
    }
    const r = this.raft.proposeConfChange(cc);
    if (r.ok) return { status: "ok", index: r.index, term: r.term };
    return refuse(r.reason === "notLeader" ? "notLeader" : "busy");
  }

  /** Whether the learner's log has at least 90% of the leader's (etcd's readiness rule for promotion). */
  private learnerReady(id: MemberId): boolean {
    const pr = this.raft.progress(id);
    return pr !== undefined && pr.match >= this.raft.log.lastIndex() * 0.9;
  }

  /** Runs `read` on this member's state: after a ReadIndex round when linearizable, at once when not. */
  async read<T>(linearizable: boolean, read: (m: StateMachine) => T): Promise<T> {
    if (linearizable) await this.readBarrier();
    return read(this.replica.machine);
  }

  private readBarrier(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const id = `r${this.nextReqId++}`;
      const p = this.pending(resolve, reject, "read");
      p.onSettled(() => this.reads.delete(id));
      this.reads.set(id, p);
      this.raft.readIndex(id);
      this.schedule();
    });
  }

  /**
   * A ReadIndex round refused (no leader known yet, or the term changed under
   * it): ask again a heartbeat later, until the request's deadline (etcd's
   * read loop waits for a leader the same way). Settled calls are not retried.
   */
  private retryRead(id: string, p: Pending<void>): void {
    setTimeout(() => {
      if (this.stopped || p.settled()) return;
      this.reads.set(id, p);
      this.raft.readIndex(id);
      this.schedule();
    }, this.options.heartbeatMs);
  }

  /** A keepalive: the leader's lessor answers (TTL, 0 when the lease is gone). */
  keepAlive(lease: LeaseId): Promise<number> {
    return this.atLeader(
      (answer) =>
        this.keepAliveHere(lease, (a: KeepAliveAnswer) =>
          answer(a.kind === "ttl" ? a.ttlSeconds : undefined),
        ),
      (reqId) => ({ kind: "keepAlive", reqId, lease }),
      (e) => (e.kind === "keepAliveAnswer" ? (e.ok ? e.value : undefined) : undefined),
    );
  }

  /**
   * The lessor answers, if this member leads AND heard from a quorum within an
   * election timeout of real time (quorum-contact.ts); otherwise "not the
   * leader", which the caller retries a heartbeat later.
   */
  private keepAliveHere(lease: LeaseId, answer: (a: KeepAliveAnswer) => void): void {
    const now = this.now();
    const voters = this.raft.conf.voters;
    if (!this.contact.hasQuorum(this.id, voters, this.raft.term, now, this.options.electionMs)) {
      answer({ kind: "notLeader", leader: this.raft.role === "leader" ? NO_MEMBER : this.raft.lead });
      return;
    }
    this.replica.keepAlive(this.raft, lease, now, (a) => {
      if (a.kind === "ttl" && a.ttlSeconds > 0) {
        this.observer.leaseRenewed?.();
        if (this.leaseKept?.(lease) === true && this.renewedToShare.length < RENEWED_SHARE_MAX)
          this.renewedToShare.push(lease);
      }
      answer(a);
    });
  }

  /** The lease's granted TTL and the seconds its leader says are left. */
  leaseTtl(lease: LeaseId): Promise<LeaseTtl> {
    return this.atLeader<LeaseTtl>(
      (answer) => {
        const t = this.localTtl(lease);
        answer(t.status === "notLeader" ? undefined : leaseTtlOf(t.grantedSeconds, t.remainingMs));
      },
      (reqId) => ({ kind: "ttl", reqId, lease }),
      (e) =>
        e.kind === "ttlAnswer" && e.status !== "notLeader"
          ? leaseTtlOf(e.grantedSeconds, e.remainingMs)
          : undefined,
    );
  }

  private localTtl(lease: LeaseId): {
    status: "ok" | "notFound" | "notLeader";
    grantedSeconds: number;
    remainingMs: number;
    leader: number;
  } {
    this.replica.syncLeadership(this.raft, this.now());
    const info = this.replica.machine.lease(lease);
    const r = this.replica.lessor.remainingMs(lease, this.now());
    if (r.kind === "notLeader")
      return { status: "notLeader", grantedSeconds: 0, remainingMs: 0, leader: this.raft.lead };
    if (info === undefined || r.kind === "notFound")
      return { status: "notFound", grantedSeconds: 0, remainingMs: -1, leader: this.id };
    return {
      status: "ok",
      grantedSeconds: info.ttlSeconds,
      remainingMs: Math.max(0, Math.floor(r.remainingMs)),
      leader: this.id,
    };
  }

  /**
   * Runs `local` if this member holds the lease duties, else sends `request`
   * to the leader; `undefined` from either means "not the leader": retried
   * (a new leader may take a moment) until the request times out.
   */
  private atLeader<T>(
    local: (answer: (v: T | undefined) => void) => void,
    request: (reqId: number) => Envelope,
    fromAnswer: (e: Envelope) => T | undefined,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending = this.pending(resolve, reject, "lease");
      const attempt = (): void => {
        if (this.stopped || pending.settled()) return;
        const retry = () => setTimeout(attempt, this.options.heartbeatMs);
        this.replica.syncLeadership(this.raft, this.now());
        if (this.replica.lessor.isLeader) {
          local((v) => (v === undefined ? retry() : settle(pending, undefined, v)));
          this.schedule();
          return;
        }
        const leader = this.raft.lead;
        if (leader === NO_MEMBER || leader === this.id) {
          retry();
          return;
        }
        this.forward(pending, leader, request, (e) => {
          const v = e === undefined ? undefined : fromAnswer(e);
          if (v === undefined) retry();
          else settle(pending, undefined, v);
        });
      };
      attempt();
    });
  }

  private pending<T>(resolve: (v: T) => void, reject: (e: Error) => void, what: string): Pending<T> {
    const p = new Pending<T>(
      resolve,
      reject,
      what,
      performance.now() + this.requestTimeoutMs,
      this.deadlines,
    );
    this.deadlines.add(p as Pending<never>);
    return p;
  }

  /** Sends `request(reqId)` to `leader`; `answer` gets the reply (undefined: lost with that leader). Forgotten when `p` settles. */
  private forward(
    p: { onSettled(f: () => void): void },
    leader: MemberId,
    request: (reqId: number) => Envelope,
    answer: (e: Envelope | undefined) => void,
  ): void {
    const reqId = this.nextReqId++;
    this.forwarded.set(reqId, { to: leader, answer });
    p.onSettled(() => this.forwarded.delete(reqId));
    this.sendTo(leader, request(reqId));
  }

  // ---------------------------------------------------------------- the loop

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.processReady();
    });
  }

  private processReady(): void {
    let appliedSomething = false;
    let restored = false;
    // Answers queued since the last turn leave before this turn's Raft messages: a follower learns
    // the index of its forwarded proposal before the append that commits it can arrive.
    this.flushOutbox();
    while (!this.stopped && this.raft.hasReady()) {
      const rd = this.raft.ready();
      // Raft thesis §10.2.1: a leader's appends may leave before its own write of the same
      // entries (it counts itself toward a commit only once they are durable: stableTo in
      // advance), so followers write in parallel with it. Only while its term and vote are
      // already on disk; everything else waits for the write (the Ready contract).
      const early = this.sendsBeforePersist(rd);
      if (early) {
        for (const m of rd.messages) this.sendRaft(m);
        if (rd.entries.length > 0) this.transport.flush?.();
      }
      this.persist(rd);
      if (!early) for (const m of rd.messages) this.sendRaft(m);
      if (rd.snapshot !== undefined) {
        this.replica.restore(rd.snapshot.data);
        this.snapshotIndex = rd.snapshot.meta.index;
        this.log("info", `restored a snapshot from the leader at index ${rd.snapshot.meta.index}`);
        restored = true;
        this.onMembershipChange(undefined);
        for (const [index, p] of this.proposals) {
          if (index <= rd.snapshot.meta.index) {
            this.proposals.delete(index);
            // The snapshot may or may not contain it: the outcome is unknown.
            settle(p.pending, leaderFailed());
          }
        }
      }
      for (const e of rd.committedEntries) this.apply(e);
      appliedSomething ||= rd.committedEntries.length > 0;
      for (const rs of rd.readStates) {
        const p = this.reads.get(rs.requestId);
        if (p === undefined) continue;
        this.reads.delete(rs.requestId);
        if (rs.rejected) this.retryRead(rs.requestId, p);
        else if (!p.settled()) this.readsAt.push({ index: rs.index, pending: p });
      }
      this.raft.advance(rd);
      this.serveReads();
      this.maybeSnapshot();
      this.replica.syncLeadership(this.raft, this.now());
    }
    if (this.raft.lead !== this.lastLeader) {
      this.lastLeader = this.raft.lead;
      // Requests forwarded to another member than the new leader will not be answered.
      for (const [reqId, f] of this.forwarded) {
        if (f.to === this.lastLeader) continue;
        this.forwarded.delete(reqId);
        f.answer(undefined);
      }
      this.onLeaderChange(this.lastLeader);
      this.observer.leaderChanged?.(this.lastLeader);
    }
    if (appliedSomething || restored) this.onApplied(restored);
    this.flushOutbox();
  }

  private persist(rd: Ready): void {
    if (rd.hardState !== undefined || rd.entries.length > 0 || rd.snapshot !== undefined)
      this.storage.save(rd.hardState, rd.entries, rd.snapshot);
    if (rd.hardState !== undefined) {
      this.durableTerm = rd.hardState.term;
      this.durableVote = rd.hardState.vote;
    }
  }

  /**
   * Whether this Ready's messages may be sent before it is persisted: a
   * leader's, with no snapshot to install, whose term and vote are already
   * durable, and only appends and heartbeats (which promise nothing about the
   * leader's own log).
   */
  private sendsBeforePersist(rd: Ready): boolean {
    if (rd.softState.role !== "leader" || rd.snapshot !== undefined || rd.messages.length === 0) return false;
    const hs = rd.hardState;
    if (hs !== undefined && (hs.term !== this.durableTerm || hs.vote !== this.durableVote)) return false;
    if (this.raft.term !== this.durableTerm) return false;
    for (const m of rd.messages) if (m.type !== "app" && m.type !== "heartbeat") return false;
    return true;
  }

  private apply(e: Entry): void {
    const mine = this.proposals.get(e.index);
    if (mine !== undefined) this.proposals.delete(e.index);
    if (e.kind === "conf") {
      const cc = decodeConfChange(e.data);
      this.replica.applyConfChange(e.index, cc);
      this.onMembershipChange(cc);
      if (mine === undefined) return;
      const header = { revision: this.replica.machine.currentRevision() };
      if (e.term === mine.term)
        settle(mine.pending, undefined, { result: { kind: "member", header }, index: e.index });
      else settle(mine.pending, new MemberError("leaderChanged", "etcdserver: leader changed"));
      return;
    }
    if (e.kind !== "normal") {
      if (mine !== undefined)
        settle(mine.pending, new MemberError("leaderChanged", "etcdserver: leader changed"));
      return;
    }
    const startMs = this.now();
    const res = this.replica.apply(e.index, e.data, startMs);
    this.observer.applied?.(res, (this.now() - startMs) / 1000);
    this.entryApplied?.(res);
    if (res.result.kind === "member") this.onMembershipChange(undefined); // new peer URLs: redial
    if (mine === undefined) return;
    // Same index and term: the very entry proposed (log matching). Equal bytes are not enough: two
    // clients' identical requests (etcd clients have no sessions) would take each other's results.
    if (e.term === mine.term) settle(mine.pending, undefined, { result: res.result, index: e.index });
    else settle(mine.pending, new MemberError("leaderChanged", "etcdserver: leader changed"));
  }

  /** Waits for the entry proposed at `index` in `term`; an earlier waiter there lost its index. */
  private track(index: number, term: number, pending: Pending<WriteOutcome>): void {
    const earlier = this.proposals.get(index);
    if (earlier !== undefined)
      settle(earlier.pending, new MemberError("leaderChanged", "etcdserver: leader changed"));
    this.proposals.set(index, { term, pending });
    pending.onSettled(() => {
      if (this.proposals.get(index)?.pending === pending) this.proposals.delete(index);
    });
  }

  private serveReads(): void {
    const applied = this.raft.log.applied;
    for (let i = this.readsAt.length - 1; i >= 0; i--) {
      const r = this.readsAt[i]!;
      if (r.index <= applied) {
        this.readsAt.splice(i, 1);
        settle(r.pending, undefined, undefined);
      }
    }
  }

  private maybeSnapshot(): void {
    const applied = this.raft.log.applied;
    if (applied - this.snapshotIndex < this.options.snapshotCount) return;
    this.raft.compact(logIndex(applied), this.replica.machine.snapshot());
    this.storage.saveSnapshot(this.raft.log.snapshot);
    this.snapshotIndex = applied;
    this.log("info", `snapshot at index ${applied}`);
  }

  private log(level: "info" | "warn", msg: string): void {
    this.options.log?.(level, msg);
  }
}

/** A conf change a peer asked the leader to propose, checked (peer bytes are never trusted); undefined if malformed. */
function peerConfChange(data: Uint8Array): ConfChange | undefined {
  if (data.length < 9 || data[0]! < 1 || data[0]! > 3) return undefined;
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const id = v.getUint32(1) * 0x1_0000_0000 + v.getUint32(5);
  if (!Number.isSafeInteger(id) || id <= 0) return undefined;
  return decodeConfChange(data);
}

/** A write whose outcome is unknown: the leader it went to failed (etcd's ErrTimeoutDueToLeaderFail). */
function leaderFailed(): MemberError {
  return new MemberError(
    "leaderFailed",
    "etcdserver: request timed out, possibly due to previous leader failure",
  );
}

function settle<T>(p: Pending<T>, err: Error | undefined, value?: T): void {
  if (err !== undefined) p.reject(err);
  else p.resolve(value as T);
}
