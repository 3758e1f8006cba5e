/**
 * Raft consensus as a pure, synchronous state machine (Ongaro's thesis; the
 * shape follows etcd-io/raft). Inputs: `step(message)`, `tick()`, `propose()`,
 * `readIndex()`, `proposeConfChange()`, `transferLeadership()`, `compact()`.
 * Output: a `Ready` (see types.ts for the contract), acknowledged by `advance()`.
 *
 * No I/O, no clock, no randomness of its own: time is counted in ticks and the
 * election jitter comes from the Rng passed in. Features: pre-vote and
 * check-quorum (thesis §9.6, §6.2), pipelined replication with per-follower
 * progress and fast backtracking, commit only of current-term entries by
 * counting (§5.4.2), snapshots, ReadIndex (§6.4), leader transfer (§3.10),
 * single-member membership changes and learners (§4.1, §4.2.1).
 *
 * Methods marked `protected` are the rules the simulator's bug-planting tests
 * override in subclasses; the production path has no switches for them.
 */

import { assert, assertNever } from "./assert.ts";
import { applyConfChange, decodeConfChange, encodeConfChange } from "./confchange.ts";
import { RaftLog } from "./log.ts";
import { Progress } from "./progress.ts";
import { committedIndex, hasQuorum, voteOutcome } from "./quorum.ts";
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  LogIndex,
  MemberId,
  Message,
  MsgApp,
  MsgAppResp,
  MsgHeartbeat,
  MsgSnap,
  MsgVote,
  ProposeResult,
  ReadState,
  Ready,
  Rng,
  Role,
  Snapshot,
  SoftState,
  Term,
} from "./types.ts";
import { term as asTerm, logIndex, NO_MEMBER } from "./types.ts";

/** Tunables. Ticks are the host's unit of time (one tick = one heartbeat interval in the server). */
export interface RaftConfig {
  readonly id: MemberId;
  /** A follower that hears nothing for a randomized [electionTicks, 2·electionTicks) campaigns. */
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly rng: Rng;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /** Pipelining window: unacknowledged append messages per follower. */
  readonly inflightMessagesMax?: number;
  /** Data bytes per append message (at least one entry is always sent). */
  readonly appendBytesMax?: number;
  /** Data bytes of committed entries handed out per Ready. */
  readonly applyBytesMax?: number;
  /** Data bytes the leader may hold uncommitted before refusing proposals. */
  readonly uncommittedBytesMax?: number;
  /** Ticks a follower may stay in snapshot state before the leader retries. */
  readonly snapshotTimeoutTicks?: number;
  /** Pending ReadIndex requests the leader queues before its first commit of a term. */
  readonly pendingReadsMax?: number;
}

/** What the host recovered from storage (for a new member: an empty log and the initial membership). */
export interface RaftInitialState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot;
  /** Entries after the snapshot, in order. */
  readonly entries: readonly Entry[];
  /** The index the state machine has applied (at least the snapshot's). */
  readonly applied: LogIndex;
}

const DEFAULTS = {
  inflightMessagesMax: 256,
  appendBytesMax: 1 << 20,
  applyBytesMax: 64 << 20,
  uncommittedBytesMax: 64 << 20,
  pendingReadsMax: 4096,
} as const;

interface PendingRead {
  readonly requestId: string;
  /** Commit index when the request arrived: the read index. */
  readonly index: LogIndex;
  /** Heartbeat round that confirms leadership for this read. */
  readonly round: number;
  /** Who asked: self, or a follower that forwarded it. */
  readonly from: MemberId;
}

type CampaignKind = "preElection" | "election" | "transfer";

export class Raft {
  readonly id: MemberId;
  term: Term;
  vote: MemberId;
  lead: MemberId = NO_MEMBER;
  role: Role = "follower";
  readonly log: RaftLog;
  conf: ConfState;

  protected readonly cfg: Required<Omit<RaftConfig, "id" | "rng">>;
  private readonly rng: Rng;
  private prs = new Map<MemberId, Progress>();
  private votes = new Map<MemberId, boolean>();
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTicks = 0;
  /** Target of an ongoing leader transfer, or NO_MEMBER. */
  leadTransferee: MemberId = NO_MEMBER;
  /** Ticks since the transfer began (kept apart from check-quorum's clock). */
  private transferElapsed = 0;
  /** Index of the last conf-change entry; a new one waits until it is applied. */
  private pendingConfIndex: LogIndex = logIndex(0);
  /** Membership as of each applied conf change, to describe snapshots at older indexes. */
  private confHistory: { index: LogIndex; conf: ConfState }[] = [];
  /** Index of the last membership change in effect; each takes effect once. */
  private confIndex: LogIndex = logIndex(0);
  private uncommittedBytes = 0;

  /** ReadIndex bookkeeping (leader). Round ids only grow within a term. */
  private readRound = 0;
  private readAcks = new Map<number, Set<MemberId>>();
  private pendingReads: PendingRead[] = [];
  /** Requests received before this leader committed an entry of its term. */
  private deferredReads: { requestId: string; from: MemberId }[] = [];
  /** Reads that arrived while a round was in flight; they share the next round. */
  private waitingReads: { requestId: string; from: MemberId; index: LogIndex }[] = [];
  /** Follower: reads forwarded to the leader and not yet answered. */
  private forwardedReads = new Set<string>();

  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private prevSoft: SoftState;
  private prevHard: HardState;
  private snapshotHanded = false;
  /** A Ready was handed out and not yet advanced: no new one until it is. */
  private readyInProgress = false;
  /**
   * Entries were proposed or the commit index moved since the last Ready: the
   * leader sends the appends when the host next calls ready(), one per
   * follower for everything since (batching: N proposals stepped in one turn
   * of the host's loop make one append per follower, not N). Sending later is
   * always safe; hasReady() reports it, so the host's loop does not stall.
   */
  private appendPending = false;

  constructor(config: RaftConfig, initial: RaftInitialState) {
    assert(config.id !== NO_MEMBER, "raft: id must not be 0");
    assert(
      config.heartbeatTicks > 0 && config.electionTicks > config.heartbeatTicks,
      "raft: bad tick config",
    );
    this.id = config.id;
    this.rng = config.rng;
    this.cfg = {
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
      preVote: config.preVote ?? true,
      checkQuorum: config.checkQuorum ?? true,
      inflightMessagesMax: config.inflightMessagesMax ?? DEFAULTS.inflightMessagesMax,
      appendBytesMax: config.appendBytesMax ?? DEFAULTS.appendBytesMax,
      applyBytesMax: config.applyBytesMax ?? DEFAULTS.applyBytesMax,
      uncommittedBytesMax: config.uncommittedBytesMax ?? DEFAULTS.uncommittedBytesMax,
      snapshotTimeoutTicks: config.snapshotTimeoutTicks ?? config.electionTicks * 3,
      pendingReadsMax: config.pendingReadsMax ?? DEFAULTS.pendingReadsMax,
    };
    const hs = initial.hardState;
    this.log = new RaftLog(initial.snapshot, initial.entries, hs.commit, initial.applied);
    this.term = hs.term;
    this.vote = hs.vote;
    this.conf = initial.snapshot.meta.conf;
    this.confIndex = initial.snapshot.meta.index;
    this.confHistory.push({ index: initial.snapshot.meta.index, conf: this.conf });
    // Committed membership changes take effect at once on (re)start, before they are re-applied:
    // a bootstrapped or restarted member must know its voters to campaign or count votes.
    for (let i = this.log.firstIndex(); i <= this.log.committed; i++) {
      const e = this.log.entryAt(logIndex(i));
      if (e.kind === "conf" && e.index > this.confIndex) this.applyConf(e.index, decodeConfChange(e.data));
    }
    this.prevHard = { term: hs.term, vote: hs.vote, commit: this.log.committed };
    this.becomeFollower(this.term, NO_MEMBER);
    this.prevSoft = this.softState();
  }

  // ---------------------------------------------------------------- inputs

  /** Advances logical time by one tick. */
  tick(): void {
    if (this.role === "leader") this.tickLeader();
    else this.tickElection();
  }

  /** Starts an election now (as if the election timeout elapsed), if this member may. */
  campaignNow(): void {
    if (this.role !== "leader" && this.promotable())
      this.campaign(this.cfg.preVote ? "preElection" : "election");
  }

  /** Proposes application commands. Only the leader accepts; the host forwards otherwise. */
  propose(data: readonly Uint8Array[]): ProposeResult {
    if (this.role !== "leader") return { ok: false, reason: "notLeader", leader: this.lead };
    if (this.leadTransferee !== NO_MEMBER) return { ok: false, reason: "transferring", leader: this.lead };
    assert(data.length > 0, "raft: empty proposal");
    let bytes = 0;
    for (const d of data) bytes += d.length;
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.cfg.uncommittedBytesMax) {
      return { ok: false, reason: "tooLarge", leader: this.lead };
    }
    const first = logIndex(this.log.lastIndex() + 1);
    this.appendEntries(data.map((d, i) => this.newEntry(logIndex(first + i), "normal", d)));
    this.appendPending = true;
    return { ok: true, index: first, term: this.term };
  }

  /** Proposes one membership change; refused while another is unapplied. */
  proposeConfChange(cc: ConfChange): ProposeResult {
    if (this.role !== "leader") return { ok: false, reason: "notLeader", leader: this.lead };
    if (this.leadTransferee !== NO_MEMBER) return { ok: false, reason: "transferring", leader: this.lead };
    // One change at a time, and only once an entry of this term has committed: otherwise an
    // uncommitted change from an earlier term could still commit and two majorities might not
    // overlap (the single-server change bug found after the thesis, raft-dev 2015).
    if (this.pendingConfIndex > this.log.applied || !this.committedInTerm()) {
      return { ok: false, reason: "confChangePending", leader: this.lead };
    }
    const index = logIndex(this.log.lastIndex() + 1);
    this.appendEntries([this.newEntry(index, "conf", encodeConfChange(cc))]);
    this.pendingConfIndex = index;
    this.appendPending = true;
    return { ok: true, index, term: this.term };
  }

  /**
   * Asks for a linearizable read index (thesis §6.4). The answer arrives as a
   * ReadState in a later Ready: serve the read once applied >= its index.
   */
  readIndex(requestId: string): void {
    if (this.role === "leader") {
      this.leaderReadIndex(requestId, this.id);
    } else if (
      this.role === "follower" &&
      this.lead !== NO_MEMBER &&
      this.forwardedReads.size < this.cfg.pendingReadsMax
    ) {
      this.forwardedReads.add(requestId);
      this.send({ type: "readIndex", from: this.id, to: this.lead, term: this.term, requestId });
    } else {
      this.readStates.push({ requestId, index: logIndex(0), rejected: true });
    }
  }

  /** Hands leadership to `to` (thesis §3.10): catch it up, then tell it to campaign. */
  transferLeadership(to: MemberId): boolean {
    if (this.role !== "leader" || to === this.id || !this.conf.voters.includes(to)) return false;
    if (this.leadTransferee === to) return true;
    this.leadTransferee = to;
    this.transferElapsed = 0; // the transfer must finish within one election timeout
    const pr = this.prs.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
    return true;
  }

  /** The host failed to deliver a snapshot to `to` (or it succeeded): stop waiting. */
  reportSnapshot(to: MemberId, ok: boolean): void {
    const pr = this.prs.get(to);
    if (this.role !== "leader" || pr === undefined || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = logIndex(0);
    pr.becomeProbe();
    pr.probeSent = true; // wait for the follower's answer or the next heartbeat
  }

  /** The host could not reach `to`: stop pipelining to it. */
  reportUnreachable(to: MemberId): void {
    const pr = this.prs.get(to);
    if (this.role === "leader" && pr !== undefined && pr.state === "replicate") pr.becomeProbe();
  }

  /**
   * The host took a snapshot of the state machine at `index` (<= applied):
   * entries up to it are dropped from memory and later sent as this snapshot.
   */
  compact(index: LogIndex, data: Uint8Array): void {
    assert(index <= this.log.applied, `raft: compact(${index}) beyond applied ${this.log.applied}`);
    if (index <= this.log.snapshot.meta.index) return;
    const t = this.log.term(index);
    assert(t !== undefined, `raft: compact(${index}) of an unknown entry`);
    this.log.compactTo({ meta: { index, term: t, conf: this.confAt(index) }, data });
    const keep = this.confHistory.findLastIndex((h) => h.index <= index);
    this.confHistory = this.confHistory.slice(Math.max(keep, 0));
  }

  /** Handles one message from a peer. Messages for another member or from a stale term are dropped. */
  step(m: Message): void {
    if (m.to !== this.id) return;
    if (!this.stepTerm(m)) return;
    switch (m.type) {
      case "vote":
      case "preVote":
        this.handleVote(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(m);
        return;
      case "candidate":
      case "preCandidate":
        this.stepCandidate(m);
        return;
      case "follower":
        this.stepFollower(m);
        return;
      default:
        assertNever(this.role, "role");
    }
  }

  // ---------------------------------------------------------------- Ready

  hasReady(): boolean {
    if (this.readyInProgress) return false;
    if (this.appendPending && this.role === "leader") return true;
    const soft = this.softState();
    if (
      soft.role !== this.prevSoft.role ||
      soft.leader !== this.prevSoft.leader ||
      soft.term !== this.prevSoft.term
    ) {
      return true;
    }
    if (!sameHard(this.hardStateForReady(), this.prevHard)) return true;
    if (this.log.pendingSnapshot !== undefined && !this.snapshotHanded) return true;
    return (
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.log.handed < this.log.lastIndex() ||
      this.log.hasNextCommitted()
    );
  }

  /** Collects the work for the host. Call advance(ready) when it is done. */
  ready(): Ready {
    assert(!this.readyInProgress, "raft: ready() before advance() of the previous Ready");
    if (this.appendPending) {
      this.appendPending = false;
      if (this.role === "leader") this.flushAppends();
    }
    this.readyInProgress = true;
    const softState = this.softState();
    const hs = this.hardStateForReady();
    const hardState = sameHard(hs, this.prevHard) ? undefined : hs;
    let snapshot: Snapshot | undefined;
    if (this.log.pendingSnapshot !== undefined && !this.snapshotHanded) {
      snapshot = this.log.pendingSnapshot;
      this.snapshotHanded = true;
    }
    const entries = this.log.unhanded();
    const committedEntries = this.log.nextCommitted(this.cfg.applyBytesMax);
    const rd: Ready = {
      softState,
      hardState,
      entries,
      snapshot,
      committedEntries,
      messages: this.msgs,
      readStates: this.readStates,
    };
    this.msgs = [];
    this.readStates = [];
    this.prevSoft = softState;
    if (hardState) this.prevHard = hardState;
    if (entries.length > 0) this.log.handed = entries[entries.length - 1]!.index;
    if (committedEntries.length > 0) this.log.applying = committedEntries[committedEntries.length - 1]!.index;
    return rd;
  }

  /** The host persisted, sent and applied `rd`. */
  advance(rd: Ready): void {
    assert(this.readyInProgress, "raft: advance() without a Ready");
    this.readyInProgress = false;
    if (rd.snapshot) {
      if (this.log.pendingSnapshot === rd.snapshot) {
        this.log.pendingSnapshot = undefined;
        this.snapshotHanded = false;
      }
      if (rd.snapshot.meta.index > this.log.applied) {
        this.log.applied = rd.snapshot.meta.index;
        if (this.log.applying < this.log.applied) this.log.applying = this.log.applied;
      }
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      this.log.stableTo(last.index, last.term);
    }
    for (const e of rd.committedEntries) {
      if (e.kind === "conf" && e.index > this.confIndex) this.applyConf(e.index, decodeConfChange(e.data));
    }
    if (rd.committedEntries.length > 0) {
      const last = rd.committedEntries[rd.committedEntries.length - 1]!.index;
      if (last > this.log.applied) this.log.applied = last;
    }
    if (this.role === "leader" && this.maybeCommit()) this.appendPending = true;
  }

  // ---------------------------------------------------------------- accessors

  softState(): SoftState {
    return { role: this.role, leader: this.lead, term: this.term };
  }

  /** The durable state as it stands in memory now. */
  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  /** The progress of `id` as the leader sees it (tests and metrics). */
  progress(id: MemberId): Readonly<Progress> | undefined {
    return this.prs.get(id);
  }

  /** The membership as of log index `index` (for snapshots). */
  confAt(index: LogIndex): ConfState {
    let conf = this.confHistory[0]!.conf;
    for (const h of this.confHistory) if (h.index <= index) conf = h.conf;
    return conf;
  }

  // ---------------------------------------------------------------- rules (overridable by bug-planting tests)

  /** The hard state a Ready asks the host to persist. */
  protected hardStateForReady(): HardState {
    return this.hardState();
  }

  /** Election restriction (§5.4.1): vote only for candidates at least as up to date. */
  protected candidateUpToDate(m: MsgVote): boolean {
    return this.log.isUpToDate(m.lastIndex, m.lastTerm);
  }

  /**
   * Advances the commit index to what a majority has matched, but only if that
   * entry is from the current term (§5.4.2, Figure 8). Returns whether it moved.
   */
  protected maybeCommit(): boolean {
    const mci = committedIndex(this.conf.voters, (id) => this.matchOf(id));
    if (mci <= this.log.committed || this.log.term(mci) !== this.term) return false;
    this.commitTo(mci);
    return true;
  }

  /** Commits up to `index` (leader), settling uncommitted accounting and deferred reads. */
  protected commitTo(index: LogIndex): void {
    const old = this.log.committed;
    this.log.commitTo(index);
    if (this.uncommittedBytes > 0) {
      for (let i = old + 1; i <= index; i++) {
        this.uncommittedBytes = Math.max(
          0,
          this.uncommittedBytes - this.log.entryAt(logIndex(i)).data.length,
        );
      }
    }
    if (this.deferredReads.length > 0 && this.committedInTerm()) {
      const deferred = this.deferredReads;
      this.deferredReads = [];
      for (const r of deferred) this.waitingReads.push({ ...r, index: this.log.committed });
      this.settleReadRounds();
    }
  }

  // ---------------------------------------------------------------- roles

  private becomeFollower(t: Term, lead: MemberId): void {
    this.abortReads();
    this.reset(t);
    this.role = "follower";
    this.lead = lead;
  }

  private becomePreCandidate(): void {
    // Pre-vote changes neither term nor vote (thesis §9.6): a partitioned member cannot inflate terms.
    this.abortReads();
    this.votes = new Map();
    this.role = "preCandidate";
    this.lead = NO_MEMBER;
  }

  private becomeCandidate(): void {
    this.abortReads();
    this.reset(asTerm(this.term + 1));
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", "raft: only a candidate becomes leader");
    this.reset(this.term);
    this.role = "leader";
    this.lead = this.id;
    const next = logIndex(this.log.lastIndex() + 1);
    for (const id of [...this.conf.voters, ...this.conf.learners]) {
      if (id === this.id) continue;
      const pr = new Progress(next, this.cfg.inflightMessagesMax, this.conf.learners.includes(id));
      pr.recentActive = true;
      this.prs.set(id, pr);
    }
    // A conf change may be in the uncommitted tail: no new one until it is applied.
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op entry of the new term (§5.4.2): it commits everything before it.
    this.appendEntries([this.newEntry(next, "normal", new Uint8Array(0))]);
    this.bcastAppend();
  }

  private reset(t: Term): void {
    if (this.term !== t) {
      this.term = t;
      this.vote = NO_MEMBER;
    }
    this.lead = NO_MEMBER;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTicks = this.cfg.electionTicks + this.rng.int(this.cfg.electionTicks);
    this.votes = new Map();
    this.prs = new Map();
    this.leadTransferee = NO_MEMBER;
    this.uncommittedBytes = 0;
    this.readRound = 0;
    this.readAcks = new Map();
  }

  /** Whether a committed membership change is not yet in effect (it takes effect when applied). */
  private hasUnappliedConfChange(): boolean {
    for (let i = Math.max(this.log.applied, this.confIndex) + 1; i <= this.log.committed; i++) {
      if (this.log.entryAt(logIndex(i)).kind === "conf") return true;
    }
    return false;
  }

  private promotable(): boolean {
    return this.conf.voters.includes(this.id) && this.log.pendingSnapshot === undefined;
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTicks) {
      this.electionElapsed = 0;
      this.campaign(this.cfg.preVote ? "preElection" : "election");
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) {
        // Check-quorum (thesis §6.2): a leader that cannot hear a majority steps down.
        const active = hasQuorum(
          this.conf.voters,
          (id) => id === this.id || this.prs.get(id)?.recentActive === true,
        );
        for (const pr of this.prs.values()) pr.recentActive = false;
        if (!active) {
          this.becomeFollower(this.term, NO_MEMBER);
          return;
        }
      }
    }
    // A transfer that did not finish within an election timeout is abandoned (thesis §3.10).
    if (this.leadTransferee !== NO_MEMBER && ++this.transferElapsed >= this.cfg.electionTicks) {
      this.leadTransferee = NO_MEMBER;
    }
    for (const pr of this.prs.values()) {
      if (pr.state === "snapshot" && ++pr.snapshotTicks >= this.cfg.snapshotTimeoutTicks) pr.becomeProbe();
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readRound);
    }
  }

  private campaign(kind: CampaignKind): void {
    // Campaigning needs the membership the cluster actually has: a member that is not a voter, or
    // that has committed but unapplied membership changes, would count votes against a stale set and
    // could win alongside another leader of the same term (etcd-raft refuses likewise).
    if (!this.promotable() || this.hasUnappliedConfChange()) return;
    let voteTerm: Term;
    if (kind === "preElection") {
      this.becomePreCandidate();
      voteTerm = asTerm(this.term + 1);
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
    }
    this.votes.set(this.id, true);
    if (voteOutcome(this.conf.voters, this.votes) === "won") {
      // A single voter wins at once.
      if (kind === "preElection") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    const type = kind === "preElection" ? "preVote" : "vote";
    for (const id of this.conf.voters) {
      if (id === this.id) continue;
      this.send({
        type,
        from: this.id,
        to: id,
        term: voteTerm,
        lastIndex: this.log.lastIndex(),
        lastTerm: this.log.lastTerm(),
        transfer: kind === "transfer",
      });
    }
  }

  /**
   * Term rules applied before any role logic. Returns false when the message
   * must be dropped.
   */
  private stepTerm(m: Message): boolean {
    if (m.term > this.term) {
      if (m.type === "vote" || m.type === "preVote") {
        // Leader lease (thesis §4.2.3 / §6.2): while we hear from a leader, ignore disruptive campaigns.
        const inLease =
          this.cfg.checkQuorum && this.lead !== NO_MEMBER && this.electionElapsed < this.cfg.electionTicks;
        if (inLease && !m.transfer) return false;
      }
      if (m.type === "preVote") return true; // a pre-vote never changes our term
      if (m.type === "preVoteResp" && !m.reject) return true; // granted at the term we would campaign for
      const isLeaderMsg = m.type === "app" || m.type === "heartbeat" || m.type === "snap";
      this.becomeFollower(m.term, isLeaderMsg ? m.from : NO_MEMBER);
      return true;
    }
    if (m.term < this.term) {
      if (m.type === "app" || m.type === "heartbeat") {
        // Tell a stale leader about the newer term so it steps down (it may be cut off from everyone else).
        this.send({
          type: "appResp",
          from: this.id,
          to: m.from,
          term: this.term,
          reject: false,
          index: logIndex(0),
          hintIndex: logIndex(0),
          hintTerm: asTerm(0),
        });
      } else if (m.type === "preVote") {
        this.send({ type: "preVoteResp", from: this.id, to: m.from, term: this.term, reject: true });
      } else if (m.type === "readIndex") {
        // The asker is behind; the answer's newer term also makes it drop its other forwarded reads.
        this.answerRead(m.requestId, m.from, logIndex(0), true);
      }
      return false;
    }
    return true;
  }

  private handleVote(m: MsgVote): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === NO_MEMBER && this.lead === NO_MEMBER) ||
      (m.type === "preVote" && m.term > this.term);
    const respType = m.type === "vote" ? "voteResp" : "preVoteResp";
    if (canVote && this.candidateUpToDate(m)) {
      // A granted pre-vote answers at the campaign's term so the candidate counts it.
      this.send({ type: respType, from: this.id, to: m.from, term: m.term, reject: false });
      if (m.type === "vote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case "readIndex":
        this.leaderReadIndex(m.requestId, m.from);
        return;
      case "appResp":
        this.handleAppResp(m);
        return;
      case "heartbeatResp": {
        const pr = this.prs.get(m.from);
        if (pr === undefined) return;
        pr.recentActive = true;
        pr.probeSent = false;
        // An append may have been lost: let one more through so a full window cannot stall forever.
        if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirst();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
        // A lost TimeoutNow is resent while the transfer lasts.
        else if (m.from === this.leadTransferee) this.sendTimeoutNow(m.from);
        if (m.context > 0) this.ackRead(m.from, m.context);
        return;
      }
      case "app":
      case "heartbeat":
      case "snap":
        // Same term, another leader: impossible by election safety.
        assert(false, `raft: two leaders in term ${this.term}: ${this.id} and ${m.from}`);
        return;
      default:
        return;
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case "app":
      case "heartbeat":
      case "snap":
        this.becomeFollower(this.term, m.from);
        this.stepFollower(m);
        return;
      case "voteResp":
      case "preVoteResp": {
        const mine = this.role === "candidate" ? "voteResp" : "preVoteResp";
        if (m.type !== mine) return;
        this.votes.set(m.from, !m.reject);
        const outcome = voteOutcome(this.conf.voters, this.votes);
        if (outcome === "won") {
          if (this.role === "preCandidate") this.campaign("election");
          else this.becomeLeader();
        } else if (outcome === "lost") {
          this.becomeFollower(this.term, NO_MEMBER);
        }
        return;
      }
      case "readIndexResp":
        // Forwarded reads were already rejected when this member started campaigning.
        return;
      case "readIndex":
        this.answerRead(m.requestId, m.from, logIndex(0), true);
        return;
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case "app":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case "heartbeat":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case "snap":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case "timeoutNow":
        if (this.promotable()) this.campaign("transfer");
        return;
      case "readIndexResp":
        if (this.forwardedReads.delete(m.requestId)) {
          this.readStates.push({ requestId: m.requestId, index: m.index, rejected: m.reject });
        }
        return;
      case "readIndex":
        this.answerRead(m.requestId, m.from, logIndex(0), true);
        return;
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- replication

  private handleAppend(m: MsgApp): void {
    if (m.prevIndex < this.log.committed) {
      this.sendAppResp(m.from, false, this.log.committed, logIndex(0), asTerm(0));
      return;
    }
    if (this.log.matchTerm(m.prevIndex, m.prevTerm)) {
      const last = this.log.maybeAppend(m.prevIndex, m.entries);
      this.log.commitTo(logIndex(Math.min(m.commit, last)));
      this.sendAppResp(m.from, false, last, logIndex(0), asTerm(0));
      return;
    }
    // Reject with a hint: the last index at or before prevIndex whose term is <= prevTerm.
    const hintIndex = this.findConflictByTerm(
      logIndex(Math.min(m.prevIndex, this.log.lastIndex())),
      m.prevTerm,
    );
    this.sendAppResp(m.from, true, m.prevIndex, hintIndex, this.log.term(hintIndex) ?? asTerm(0));
  }

  /** A method, not a closure: handleAppend is the followers' hot path. */
  private sendAppResp(
    to: MemberId,
    reject: boolean,
    index: LogIndex,
    hintIndex: LogIndex,
    hintTerm: Term,
  ): void {
    this.send({ type: "appResp", from: this.id, to, term: this.term, reject, index, hintIndex, hintTerm });
  }

  private handleHeartbeat(m: MsgHeartbeat): void {
    if (m.commit > this.log.lastIndex()) {
      assert(false, `raft: heartbeat commit ${m.commit} beyond last ${this.log.lastIndex()}`);
    }
    this.log.commitTo(m.commit);
    this.send({ type: "heartbeatResp", from: this.id, to: m.from, term: this.term, context: m.context });
  }

  private handleSnapshot(m: MsgSnap): void {
    const meta = m.snapshot.meta;
    if (meta.index <= this.log.committed || this.log.pendingSnapshot !== undefined) {
      this.sendAppResp(m.from, false, this.log.committed, logIndex(0), asTerm(0));
      return;
    }
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We have the snapshot's last entry: everything up to it is committed; keep our log.
      this.log.commitTo(meta.index);
      this.sendAppResp(m.from, false, this.log.committed, logIndex(0), asTerm(0));
      return;
    }
    this.log.restore(m.snapshot);
    this.conf = meta.conf;
    this.confIndex = meta.index;
    this.confHistory = [{ index: meta.index, conf: meta.conf }];
    this.snapshotHanded = false;
    this.sendAppResp(m.from, false, meta.index, logIndex(0), asTerm(0));
  }

  /** The largest index <= `index` whose term is <= `t` (or the compacted boundary). */
  private findConflictByTerm(index: LogIndex, t: Term): LogIndex {
    let i = index;
    while (i > 0) {
      const ti = this.log.term(i);
      if (ti === undefined || ti <= t) return i;
      i = logIndex(i - 1);
    }
    return logIndex(0);
  }

  private handleAppResp(m: MsgAppResp): void {
    const pr = this.prs.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (m.reject) {
      let next = m.hintIndex;
      if (m.hintTerm > 0) next = this.findConflictByTerm(m.hintIndex, m.hintTerm);
      if (pr.maybeDecrTo(m.index, next)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    // An answer to a probe that finds the follower exactly where we thought also ends probing.
    const probeAnswered = pr.state === "probe" && pr.match === m.index;
    if (!pr.maybeUpdate(m.index) && !probeAnswered) {
      if (wasPaused && !pr.isPaused()) this.sendAppend(m.from, false);
      return;
    }
    if (pr.state === "probe") {
      pr.becomeReplicate();
    } else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
      // The follower can continue from our log (from this snapshot or a newer one it had).
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") {
      pr.inflights.freeTo(m.index);
    }
    if (this.maybeCommit()) {
      this.appendPending = true;
    } else if (wasPaused) {
      // The follower was waiting on us (probe or full window): it may not know the commit index yet.
      this.sendAppend(m.from, true);
    }
    while (this.sendAppend(m.from, false)) {}
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  /** Sends the next append (or a snapshot) to `to`. Returns whether a message went out. */
  private sendAppend(to: MemberId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = logIndex(pr.next - 1);
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined || pr.next < this.log.firstIndex()) {
      this.sendSnapshot(to, pr);
      return true;
    }
    const last = this.log.lastIndex();
    const entries =
      pr.next <= last ? this.log.slice(pr.next, logIndex(last + 1), this.cfg.appendBytesMax) : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({
      type: "app",
      from: this.id,
      to,
      term: this.term,
      prevIndex,
      prevTerm,
      entries,
      commit: this.log.committed,
    });
    pr.commitSent = this.log.committed;
    if (entries.length > 0) pr.sentEntries(entries[entries.length - 1]!.index);
    else if (pr.state === "probe") pr.probeSent = true;
    return true;
  }

  private sendSnapshot(to: MemberId, pr: Progress): void {
    const snap = this.log.snapshot;
    assert(snap.meta.index > 0, "raft: need a snapshot but the log was never compacted");
    pr.becomeSnapshot(snap.meta.index);
    this.send({ type: "snap", from: this.id, to, term: this.term, snapshot: snap });
  }

  private sendTimeoutNow(to: MemberId): void {
    this.send({ type: "timeoutNow", from: this.id, to, term: this.term });
  }

  /** The batched broadcast: new entries to every follower, and the commit index to those without it. */
  private flushAppends(): void {
    for (const [id, pr] of this.prs) this.sendAppend(id, pr.commitSent < this.log.committed);
  }

  private bcastAppend(): void {
    for (const id of this.prs.keys()) this.sendAppend(id, true);
  }

  private bcastHeartbeat(context: number): void {
    for (const [id, pr] of this.prs) {
      const commit = logIndex(Math.min(pr.match, this.log.committed));
      this.send({ type: "heartbeat", from: this.id, to: id, term: this.term, commit, context });
    }
  }

  protected matchOf(id: MemberId): LogIndex {
    if (id === this.id) return this.log.persisted;
    return this.prs.get(id)?.match ?? logIndex(0);
  }

  private appendEntries(entries: Entry[]): void {
    for (const e of entries) this.uncommittedBytes += e.data.length;
    this.log.append(entries);
  }

  private newEntry(index: LogIndex, kind: Entry["kind"], data: Uint8Array): Entry {
    return { term: this.term, index, kind, data };
  }

  private committedInTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private applyConf(index: LogIndex, cc: ConfChange): void {
    this.conf = applyConfChange(this.conf, cc);
    this.confIndex = index;
    this.confHistory.push({ index, conf: this.conf });
    if (this.role !== "leader") return;
    const all = [...this.conf.voters, ...this.conf.learners];
    for (const id of [...this.prs.keys()]) if (!all.includes(id)) this.prs.delete(id);
    for (const id of all) {
      if (id === this.id) continue;
      const isLearner = this.conf.learners.includes(id);
      const pr = this.prs.get(id);
      if (pr === undefined) {
        const fresh = new Progress(
          logIndex(this.log.lastIndex() + 1),
          this.cfg.inflightMessagesMax,
          isLearner,
        );
        fresh.recentActive = true;
        this.prs.set(id, fresh);
        this.sendAppend(id, true); // start catching the new member up now, not at the next heartbeat
      } else {
        // Promotion keeps the replication state (window, pending snapshot); only the vote changes.
        pr.isLearner = isLearner;
      }
    }
    if (this.leadTransferee !== NO_MEMBER && !this.conf.voters.includes(this.leadTransferee)) {
      this.leadTransferee = NO_MEMBER;
    }
    if (!this.conf.voters.includes(this.id)) {
      // A leader removed from the voters steps down once the change is applied (thesis §4.2.2).
      this.becomeFollower(this.term, NO_MEMBER);
      return;
    }
    if (this.maybeCommit()) this.bcastAppend();
    // The voters changed: a pending read round may already have a quorum of the new set.
    this.settleReadRounds();
  }

  // ---------------------------------------------------------------- ReadIndex

  private leaderReadIndex(requestId: string, from: MemberId): void {
    if (!this.committedInTerm()) {
      // Until the no-op of this term commits, the commit index may be stale (thesis §6.4 step 1).
      if (this.deferredReads.length >= this.cfg.pendingReadsMax) {
        this.answerRead(requestId, from, logIndex(0), true);
      } else {
        this.deferredReads.push({ requestId, from });
      }
      return;
    }
    if (this.pendingReads.length + this.waitingReads.length >= this.cfg.pendingReadsMax) {
      this.answerRead(requestId, from, logIndex(0), true);
      return;
    }
    this.waitingReads.push({ requestId, from, index: this.log.committed });
    this.settleReadRounds();
  }

  /** A heartbeat ack for `round` confirms leadership for every read of that round and before. */
  private ackRead(from: MemberId, round: number): void {
    const acks = this.readAcks.get(round);
    if (acks === undefined) return;
    acks.add(from);
    this.settleReadRounds();
  }

  /**
   * Answers the reads of every round a quorum of the current voters has confirmed, then
   * starts one round for all reads that arrived meanwhile: one heartbeat broadcast serves
   * a whole batch, and a round always starts after its reads arrived (what makes it safe).
   */
  private settleReadRounds(): void {
    let confirmed = 0;
    for (const [round, acks] of this.readAcks) {
      if (hasQuorum(this.conf.voters, (id) => acks.has(id))) confirmed = round;
    }
    if (confirmed > 0) {
      let n = 0;
      while (n < this.pendingReads.length && this.pendingReads[n]!.round <= confirmed) n++;
      for (const r of this.pendingReads.splice(0, n)) this.answerRead(r.requestId, r.from, r.index, false);
      for (const k of [...this.readAcks.keys()]) if (k <= confirmed) this.readAcks.delete(k);
    }
    if (this.readAcks.size > 0 || this.waitingReads.length === 0) return;
    if (this.conf.voters.length === 1 && this.conf.voters[0] === this.id) {
      for (const r of this.waitingReads) this.answerRead(r.requestId, r.from, r.index, false);
      this.waitingReads = [];
      return;
    }
    const round = ++this.readRound;
    this.readAcks.set(round, new Set([this.id]));
    for (const r of this.waitingReads) this.pendingReads.push({ ...r, round });
    this.waitingReads = [];
    this.bcastHeartbeat(round);
  }

  private answerRead(requestId: string, from: MemberId, index: LogIndex, rejected: boolean): void {
    if (from === this.id) {
      this.readStates.push({ requestId, index, rejected });
    } else {
      this.send({
        type: "readIndexResp",
        from: this.id,
        to: from,
        term: this.term,
        requestId,
        index,
        reject: rejected,
      });
    }
  }

  /** Leadership is lost or changing: every pending read fails (the host retries). */
  private abortReads(): void {
    const pending = [...this.pendingReads, ...this.waitingReads, ...this.deferredReads];
    this.pendingReads = [];
    this.waitingReads = [];
    this.deferredReads = [];
    this.readAcks = new Map();
    for (const r of pending) this.answerRead(r.requestId, r.from, logIndex(0), true);
    for (const requestId of this.forwardedReads)
      this.readStates.push({ requestId, index: logIndex(0), rejected: true });
    this.forwardedReads.clear();
  }

  private send(m: Message): void {
    assert(m.to !== this.id, "raft: message to self");
    this.msgs.push(m);
  }
}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
