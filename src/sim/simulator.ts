/**
 * The deterministic simulator (in the style of TigerBeetle's VOPR): one seed
 * determines the cluster size, the workload and the fault mix; a virtual clock
 * drives the real `src/raft/` code on 3 or 5 simulated members with drifting
 * clocks, a network that drops, duplicates, delays, reorders and partitions,
 * and crashes that lose whatever a member had not persisted.
 *
 * A run has a safety phase (faults on) and a liveness phase (faults healed, the
 * cluster must elect a leader and finish client operations within a bound).
 * Checkers run after every event; at the end every acknowledged write must be
 * in the final state and the client history must be linearizable.
 *
 * Every member runs the real replicated state machine (src/state: MVCC key
 * space, lease table, sessions) with a watch hub, and, while it leads, the
 * real Lessor on its own drifting monotonic clock: it answers keepalives from
 * memory and proposes expiries and checkpoints on every tick. Clients
 * (clients.ts): KV clients (linearizability), lease clients (exclusivity,
 * premature and bounded expiry; lease-checkers.ts) and watch clients (watch
 * completeness). Every clock, members' and clients', runs within ±ρ/2 of real
 * time, so any two differ in rate by at most ρ (ARCHITECTURE rule 5).
 */

import type {
  ConfChange,
  Entry,
  MemberId,
  Message,
  Raft,
  RaftConfig,
  RaftInitialState,
  Ready,
} from "../raft/index.ts";
import {
  bootstrapState,
  describeMessage,
  describeReady,
  joiningState,
  memberId,
  NO_MEMBER,
  Raft as RaftImpl,
} from "../raft/index.ts";
import type { ApplyResult, Command, LessorOptions, WatchId } from "../state/index.ts";
import {
  binaryCommandType,
  bytesEqual,
  decodeCommand,
  encodeCommand,
  Lessor,
  prefixEnd,
  Replica,
  revision,
} from "../state/index.ts";
import { SafetyChecker } from "./checkers.ts";
import type { ClientHost, SimClient } from "./clients.ts";
import { BulkLeaseClient, KvClient, LeaseClient, WatchClient } from "./clients.ts";
import { LeaseChecker, leaseKey, WatchChecker } from "./lease-checkers.ts";
import type { HistoryOp, LeaseInput, LeaseOutput, RegisterInput, RegisterOutput } from "./linearizability.ts";
import { checkLinearizable, leaseModel, registerModel } from "./linearizability.ts";
import type { ClientRequest, ClientResponse, DutyForward } from "./protocol.ts";
import { EventQueue } from "./queue.ts";
import { SeededRng } from "./rng.ts";

/** Builds the Raft instance for a member; tests pass variants with planted bugs. */
export type RaftFactory = (config: RaftConfig, initial: RaftInitialState) => Raft;

/** Builds a member's Lessor; tests pass variants with planted bugs. */
export type LessorFactory = (options: LessorOptions) => Lessor;

/** Everything a seed decides before the run starts; printed at the start. */
export interface FaultMix {
  readonly members: number;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly rho: number;
  readonly dropRate: number;
  readonly dupRate: number;
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
  /** Mean gap between partitions; 0 = none. */
  readonly partitionGapMs: number;
  /** Mean gap between crashes; 0 = none. */
  readonly crashGapMs: number;
  readonly downMsMax: number;
  /** Chance that a crash or an isolation picks the current leader. */
  readonly leaderCrashBias: number;
  /** Chance that a newly elected leader crashes within two ticks. */
  readonly newLeaderCrashRate: number;
  /** Chance that a leader crashes right when its commit index advances. */
  readonly crashOnCommitRate: number;
  /** Chance that a message still in flight from a member that crashed is lost. */
  readonly crashLosesInFlight: number;
  readonly fsyncMsMax: number;
  readonly compactEvery: number;
  /** Mean gap between membership changes; 0 = none. */
  readonly confChangeGapMs: number;
  /** Mean gap between leader transfers; 0 = none. */
  readonly transferGapMs: number;
  readonly inflightMax: number;
  readonly appendBytesMax: number;
  /** Bytes of committed entries applied per Ready: small values make members lag behind commit. */
  readonly applyBytesMax: number;
  /** Virtual time to apply one entry. */
  readonly applyMsPerEntry: number;
  /** KV clients (put/get/delete/cas on `keys` shared keys). */
  readonly clients: number;
  readonly keys: number;
  readonly leaseClients: number;
  /** Resources the lease clients compete for (keys bound to their leases). */
  readonly resources: number;
  readonly leaseTtlSeconds: readonly number[];
  /** The lessor's checkpoint interval C (whole seconds; leases with a longer TTL get checkpoints). */
  readonly checkpointIntervalS: number;
  /** Mean gap between cutting a lease client off from every member; 0 = never. */
  readonly clientPartitionGapMs: number;
  readonly watchClients: number;
  /** Leases one client grants at the start and never renews (all fall due together); 0 = none. */
  readonly bulkLeases: number;
  readonly clientTimeoutMs: number;
  readonly safetyMs: number;
  readonly livenessMs: number;
}

export interface SimOptions {
  readonly trace?: (line: string) => void;
  readonly makeRaft?: RaftFactory;
  readonly makeLessor?: LessorFactory;
  /** Overrides for the seed-derived mix (tests that need a specific fault). */
  readonly mix?: Partial<FaultMix>;
}

export interface SimResult {
  readonly seed: number;
  readonly mix: FaultMix;
  readonly violations: readonly string[];
  readonly stats: {
    readonly events: number;
    readonly leaders: number;
    readonly committed: number;
    readonly opsOk: number;
    readonly opsUnknown: number;
    readonly virtualMs: number;
    readonly holdings: number;
    readonly expiries: number;
    /** Latest expiry after its lease's last keepalive + TTL (ms), -Infinity if none. */
    readonly maxExpiryLatenessMs: number;
    readonly watchEvents: number;
  };
}

/**
 * Derives the fault mix from the seed. A third of the seeds are "storms":
 * frequent crashes with short downtimes, frequent partitions, one entry per
 * append and one append in flight, which is where the rare interleavings
 * (split votes around a restart, Figure 8 of the Raft paper) live.
 */
export function faultMixFor(seed: number): FaultMix {
  const r = new SeededRng(seed ^ 0x5eed);
  const storm = r.chance(1 / 3);
  return {
    members: r.chance(0.5) ? 3 : 5,
    tickMs: 10,
    electionTicks: 10,
    rho: 0.01,
    dropRate: r.pick([0, 0.01, 0.05, 0.15]),
    dupRate: r.pick([0, 0.02, 0.1]),
    delayMinMs: r.pick([0.1, 1]),
    delayMaxMs: r.pick([2, 10, 40]),
    partitionGapMs: storm ? r.pick([100, 200]) : r.pick([0, 300, 1000]),
    crashGapMs: storm ? r.pick([40, 80, 150]) : r.pick([0, 250, 800]),
    downMsMax: storm ? r.pick([5, 20, 60]) : r.pick([50, 500]),
    leaderCrashBias: storm ? r.pick([0.5, 0.8]) : r.pick([0, 0.5]),
    newLeaderCrashRate: storm ? r.pick([0.3, 0.6]) : 0,
    crashLosesInFlight: r.pick([0, 0.5, 1]),
    crashOnCommitRate: storm ? r.pick([0.02, 0.1]) : 0,
    fsyncMsMax: r.pick([0.1, 2, 10]),
    compactEvery: r.pick([8, 32, 1000]),
    transferGapMs: r.pick([0, 0, 500]),
    confChangeGapMs: r.pick([0, 0, 150, 400]),
    inflightMax: storm ? 1 : r.pick([1, 4, 64]),
    appendBytesMax: storm ? 1 : r.pick([64, 1024, 1 << 20]),
    applyBytesMax: r.pick([1, 256, 64 << 20]),
    applyMsPerEntry: r.pick([0, 0, 0.5, 3]),
    clients: r.range(2, 5),
    keys: r.range(1, 3),
    leaseClients: r.range(1, 4),
    resources: r.range(1, 2),
    leaseTtlSeconds: r.pick([[1], [1, 2], [2]]),
    checkpointIntervalS: r.pick([1, 300]),
    clientPartitionGapMs: r.pick([0, 0, 400]),
    watchClients: r.range(0, 2),
    bulkLeases: 0,
    clientTimeoutMs: 400,
    safetyMs: r.range(1500, 4000),
    livenessMs: 3000,
  };
}

export function describeMix(seed: number, m: FaultMix): string {
  return (
    `seed=${seed} members=${m.members} drop=${m.dropRate} dup=${m.dupRate} delay=${m.delayMinMs}-${m.delayMaxMs}ms ` +
    `partition/${m.partitionGapMs || "-"}ms crash/${m.crashGapMs || "-"}ms down<=${m.downMsMax}ms leader-bias=${m.leaderCrashBias} leader-killer=${m.newLeaderCrashRate} crash-loses-inflight=${m.crashLosesInFlight} crash-on-commit=${m.crashOnCommitRate} fsync<=${m.fsyncMsMax}ms ` +
    `compact/${m.compactEvery} transfer/${m.transferGapMs || "-"}ms conf/${m.confChangeGapMs || "-"}ms inflight=${m.inflightMax} append<=${m.appendBytesMax}B apply<=${m.applyBytesMax}B apply=${m.applyMsPerEntry}ms/entry ` +
    `clients=${m.clients} keys=${m.keys} lease-clients=${m.leaseClients} resources=${m.resources} ttl=${m.leaseTtlSeconds.join(",")}s checkpoint/${m.checkpointIntervalS}s client-partition/${m.clientPartitionGapMs || "-"}ms watchers=${m.watchClients}${m.bulkLeases > 0 ? ` bulk-leases=${m.bulkLeases}` : ""} ` +
    `safety=${m.safetyMs}ms liveness=${m.livenessMs}ms rho=${m.rho}`
  );
}

type Packet =
  | { readonly kind: "raft"; readonly msg: Message }
  | { readonly kind: "req"; readonly req: ClientRequest }
  | { readonly kind: "resp"; readonly resp: ClientResponse }
  | { readonly kind: "duty"; readonly duty: DutyForward };

/** What survives a crash: the persisted log, hard state and snapshot. */
interface Durable {
  hardState: RaftInitialState["hardState"];
  snapshot: RaftInitialState["snapshot"];
  entries: Entry[];
}

interface Member {
  readonly id: MemberId;
  /** This member's clock runs at this rate; it ticks every tickMs of its own clock. */
  readonly clockRate: number;
  readonly tickPeriodMs: number;
  readonly durable: Durable;
  up: boolean;
  incarnation: number;
  raft: Raft | undefined;
  /** The state machine, watch hub and lessor (src/state/replica.ts), new with every incarnation. */
  replica: Replica;
  /** The monotonic clock's origin for this incarnation (a process's clock starts anywhere). */
  clockOffset: number;
  busy: boolean;
  /** Commands this member proposed: index -> the request and the entry data. */
  pendingWrites: Map<number, { req: ClientRequest; data: Uint8Array }>;
  readRequests: Map<string, ClientRequest>;
  pendingReads: { req: ClientRequest & { kind: "read" }; index: number }[];
  /** Watch streams: the watch request's reqId -> the client and the hub's watcher. */
  streams: Map<string, { client: number; watchId: WatchId }>;
  /** The last term in which this member was seen leading (for the leader killer). */
  leaderTerm: number;
  /** The highest commit index seen on this member (for crash-on-commit). */
  commitSeen: number;
}

const CLIENT_BASE = 1000;
/** The JSON a version-1 leaseExpire entry contains (`"type":"leaseExpire"`); version 2: binaryCommandType. */
const EXPIRE_TAG = new TextEncoder().encode('"leaseExpire"');

/** Whether `data` contains `tag` (a cheap filter before decoding). */
function containsAscii(data: Uint8Array, tag: Uint8Array): boolean {
  outer: for (let i = 0; i + tag.length <= data.length; i++) {
    for (let j = 0; j < tag.length; j++) if (data[i + j] !== tag[j]) continue outer;
    return true;
  }
  return false;
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Member ids the operator may create; client ids start above. */
const MEMBERS_MAX = 12;

export class Simulator {
  readonly seed: number;
  readonly mix: FaultMix;
  private readonly rng: SeededRng;
  private readonly netRng: SeededRng;
  private readonly faultRng: SeededRng;
  private readonly clientRng: SeededRng;
  private readonly queue = new EventQueue();
  private nowMs = 0;
  private events = 0;
  private readonly members: Member[] = [];
  /** The members clients may contact: the founders, plus added, minus removed ones. */
  private endpoints: MemberId[] = [];
  private readonly clients: SimClient[] = [];
  private readonly leaseClients: LeaseClient[] = [];
  private readonly blocked = new Set<string>();
  /** Per stream lane (member>client): when its last response is delivered, to keep them in order. */
  private readonly streamClock = new Map<string, number>();
  private dropRate: number;
  private dupRate: number;
  private healed = false;
  private readonly checker = new SafetyChecker();
  private readonly kvHistory: HistoryOp<RegisterInput, RegisterOutput>[] = [];
  private readonly leaseHistory: HistoryOp<LeaseInput, LeaseOutput>[] = [];
  private readonly leaseChecker: LeaseChecker;
  private readonly watchChecker = new WatchChecker();
  /** Expiries proposed: lease incarnation -> the history op waiting for its first apply. */
  private readonly expiryOps = new Map<string, HistoryOp<LeaseInput, LeaseOutput>>();
  /** Lease incarnations already seen granted or revoked by some member's apply. */
  private readonly grantsSeen = new Set<string>();
  private readonly revokesSeen = new Set<string>();
  private ackedMax = 0;
  /** Client ids cut off from every member now. */
  private readonly cutOff = new Set<number>();
  /** Each client's completed operations when the liveness phase began. */
  private readonly okAtHeal = new Map<number, number>();
  private readonly trace: ((line: string) => void) | undefined;
  private readonly makeRaft: RaftFactory;
  private readonly makeLessor: LessorFactory;
  private readonly violations: string[] = [];

  constructor(seed: number, opts: SimOptions = {}) {
    this.seed = seed;
    this.mix = { ...faultMixFor(seed), ...opts.mix };
    this.rng = new SeededRng(seed);
    this.netRng = this.rng.fork();
    this.faultRng = this.rng.fork();
    this.clientRng = this.rng.fork();
    this.dropRate = this.mix.dropRate;
    this.leaseChecker = new LeaseChecker(this.lessorDeltaMs(), this.mix.rho);
    this.dupRate = this.mix.dupRate;
    this.trace = opts.trace;
    this.makeRaft = opts.makeRaft ?? ((c, i) => new RaftImpl(c, i));
    this.makeLessor = opts.makeLessor ?? ((o) => new Lessor(o));
  }

  run(): SimResult {
    const m = this.mix;
    this.log(`start ${describeMix(this.seed, m)}`);
    const voters = Array.from({ length: m.members }, (_, i) => memberId(i + 1));
    for (const id of voters) this.addMember(id, bootstrapState(voters));
    this.endpoints = voters.slice();
    const host = this.clientHost();
    let next = CLIENT_BASE;
    for (let i = 0; i < m.clients; i++)
      this.clients.push(new KvClient(next++, host, this.clientRng.fork(), m.keys));
    for (let i = 0; i < m.leaseClients; i++) {
      const c = new LeaseClient(next++, host, this.clientRng.fork(), m.resources, m.leaseTtlSeconds);
      this.clients.push(c);
      this.leaseClients.push(c);
    }
    for (let i = 0; i < m.watchClients; i++) {
      const prefix = this.clientRng.pick(["", "k", "res/"]);
      this.clients.push(new WatchClient(next++, host, this.clientRng.fork(), prefix));
    }
    if (m.bulkLeases > 0) {
      const ttl = m.leaseTtlSeconds[0] ?? 1;
      this.clients.push(new BulkLeaseClient(next++, host, this.clientRng.fork(), m.bulkLeases, ttl));
    }
    for (const c of this.clients) c.start();
    this.scheduleFaults();
    this.at(m.safetyMs, () => this.heal());
    const endMs = m.safetyMs + m.livenessMs;
    while (this.violations.length === 0) {
      const ev = this.queue.pop();
      if (ev === undefined || ev.timeMs > endMs) break;
      this.nowMs = ev.timeMs;
      ev.run();
      this.events++;
      this.checkAfterEvent();
    }
    this.nowMs = endMs;
    if (this.violations.length === 0) this.checkEnd();
    return {
      seed: this.seed,
      mix: m,
      violations: this.violations,
      stats: {
        events: this.events,
        leaders: this.countLeaders(),
        committed: Math.max(0, ...this.members.map((x) => x.raft?.log.committed ?? 0)),
        opsOk: this.kvHistory.filter((h) => h.output !== undefined).length,
        opsUnknown: this.kvHistory.filter((h) => h.output === undefined).length,
        virtualMs: endMs,
        holdings: this.leaseChecker.holdings,
        expiries: this.leaseChecker.expiries,
        maxExpiryLatenessMs: this.leaseChecker.maxExpiryLatenessMs,
        watchEvents: this.watchChecker.delivered,
      },
    };
  }

  // ---------------------------------------------------------------- scheduling

  private at(timeMs: number, run: () => void): void {
    this.queue.push(Math.max(timeMs, this.nowMs), run);
  }

  private log(line: string): void {
    if (this.trace) this.trace(`[${this.nowMs.toFixed(3).padStart(10)}] ${line}`);
  }

  // ---------------------------------------------------------------- members

  /** Creates and starts a member with empty storage; a joining member knows no configuration yet. */
  private addMember(id: MemberId, initial: RaftInitialState): Member {
    const clockRate = 1 + ((this.rng.float() * 2 - 1) * this.mix.rho) / 2;
    const member: Member = {
      id,
      clockRate,
      tickPeriodMs: this.mix.tickMs / clockRate,
      durable: { hardState: initial.hardState, snapshot: initial.snapshot, entries: initial.entries.slice() },
      up: false,
      incarnation: 0,
      raft: undefined,
      replica: undefined as unknown as Replica,
      clockOffset: 0,
      busy: false,
      pendingWrites: new Map(),
      readRequests: new Map(),
      pendingReads: [],
      streams: new Map(),
      leaderTerm: 0,
      commitSeen: 0,
    };
    if (id !== this.members.length + 1) throw new Error(`sim: member ids must be sequential, got ${id}`);
    this.members.push(member);
    this.start(member);
    return member;
  }

  /** A member's application layer for a new incarnation: it proposes through the member's Raft. */
  private newReplica(member: Member): Replica {
    return new Replica({
      machine: { minLeaseTtlSeconds: 1 },
      lessor: this.makeLessor({
        electionTimeoutMs: this.lessorDeltaMs(),
        checkpointIntervalMs: this.mix.checkpointIntervalS * 1000,
        revokeRetryMs: 500,
      }),
      propose: (command) => this.proposeDuty(member, command),
    });
  }

  /**
   * The lessor's Δ: the election timeout plus one tick (a deposed leader steps
   * down on a tick, and its check-quorum window is counted in whole ticks).
   */
  private lessorDeltaMs(): number {
    return (this.mix.electionTicks + 1) * this.mix.tickMs;
  }

  /** The member's monotonic clock. */
  private localNow(member: Member): number {
    return this.nowMs * member.clockRate + member.clockOffset;
  }

  private changeMembership(): void {
    const leader = this.members.find((x) => x.up && x.raft?.role === "leader");
    if (leader === undefined) return;
    const raft = leader.raft!;
    const { voters, learners } = raft.conf;
    const r = this.faultRng;
    let cc: ConfChange;
    if (learners.length > 0) {
      cc = { kind: "addVoter", member: learners[0]!, context: new Uint8Array(0) };
    } else if (voters.length > 3 && (voters.length >= 5 || r.chance(0.5))) {
      const victim = r.pick(voters.filter((v) => v !== leader.id));
      cc = { kind: "remove", member: victim, context: new Uint8Array(0) };
    } else {
      const id = memberId(this.members.length + 1);
      if (id > MEMBERS_MAX) return;
      this.addMember(id, joiningState());
      cc = { kind: "addLearner", member: id, context: new Uint8Array(0) };
    }
    const res = raft.proposeConfChange(cc);
    if (res.ok) {
      // The clients' endpoint list follows the operator's changes (as a client's config would).
      if (cc.kind === "addLearner") this.endpoints.push(cc.member);
      if (cc.kind === "remove") this.endpoints = this.endpoints.filter((e) => e !== cc.member);
    }
    this.log(
      `operator: ${cc.kind} ${cc.member} via ${leader.id}: ${res.ok ? `index ${res.index}` : res.reason}`,
    );
    this.pump(leader);
  }

  private start(member: Member): void {
    const m = this.mix;
    member.up = true;
    member.incarnation++;
    const d = member.durable;
    this.checker.observeDurableCommit(member.id, d.hardState.commit);
    member.raft = this.makeRaft(
      {
        id: member.id,
        electionTicks: m.electionTicks,
        heartbeatTicks: 1,
        rng: this.rng.fork(),
        inflightMessagesMax: m.inflightMax,
        appendBytesMax: m.appendBytesMax,
        applyBytesMax: m.applyBytesMax,
      },
      {
        hardState: d.hardState,
        snapshot: d.snapshot,
        entries: d.entries.slice(),
        applied: d.snapshot.meta.index,
      },
    );
    member.replica = this.newReplica(member);
    member.replica.restore(d.snapshot.data);
    member.clockOffset = this.rng.float() * 1e6;
    member.commitSeen = member.raft.log.committed;
    member.busy = false;
    member.pendingWrites = new Map();
    member.readRequests = new Map();
    member.pendingReads = [];
    member.streams = new Map();
    const inc = member.incarnation;
    const tick = () => {
      if (member.incarnation !== inc || !member.up) return;
      member.raft!.tick();
      this.syncLeadership(member);
      member.replica.tick(this.localNow(member));
      this.pump(member);
      this.at(this.nowMs + member.tickPeriodMs, tick);
    };
    this.at(this.nowMs + member.tickPeriodMs * this.rng.float(), tick);
    this.log(
      `member ${member.id} up (incarnation ${inc}, term ${d.hardState.term}, ${d.entries.length} entries)`,
    );
  }

  private crash(member: Member): void {
    member.up = false;
    member.incarnation++;
    member.raft = undefined;
    this.breakStreams(member);
    this.log(`member ${member.id} crashed`);
  }

  /** Takes the next Ready if the member is idle; persisting it takes virtual fsync time. */
  private pump(member: Member): void {
    const raft = member.raft;
    if (!member.up || member.busy || raft === undefined || !raft.hasReady()) return;
    const rd = raft.ready();
    member.busy = true;
    const sync = rd.hardState !== undefined || rd.entries.length > 0 || rd.snapshot !== undefined;
    // Persisting takes an fsync; applying takes time per entry, so a member can lag behind commit.
    const fsyncMs = sync ? this.rng.float() * this.mix.fsyncMsMax : 0;
    const delay = fsyncMs + rd.committedEntries.length * this.mix.applyMsPerEntry;
    const inc = member.incarnation;
    this.at(this.nowMs + delay, () => this.completeReady(member, inc, rd));
  }

  private completeReady(member: Member, inc: number, rd: Ready): void {
    if (member.incarnation !== inc || !member.up) return; // crashed before the fsync finished: all of it lost
    const raft = member.raft!;
    if (this.trace)
      this.log(`member ${member.id} ready\n    ${describeReady(rd).split("\n").join("\n    ")}`);
    const d = member.durable;
    // 1. persist
    if (rd.snapshot) {
      d.snapshot = rd.snapshot;
      d.entries = [];
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      const keep = d.entries.findIndex((e) => e.index >= first);
      if (keep >= 0) d.entries.length = keep;
      const expect =
        d.entries.length > 0 ? d.entries[d.entries.length - 1]!.index + 1 : d.snapshot.meta.index + 1;
      if (expect !== first)
        this.violations.push(`host: member ${member.id} persisted a gap: ${expect} then ${first}`);
      d.entries.push(...rd.entries);
    }
    if (rd.hardState) {
      d.hardState = rd.hardState;
      this.checker.observeDurableCommit(member.id, rd.hardState.commit);
    }
    // 2. send
    for (const msg of rd.messages) this.sendPacket(msg.from, msg.to, { kind: "raft", msg });
    // 3. apply
    if (rd.snapshot) {
      // A new key space: the watch streams on the old one end (their clients resume elsewhere), and
      // proposals below the snapshot have an outcome this member no longer knows.
      this.breakStreams(member);
      member.replica.restore(rd.snapshot.data);
      for (const idx of member.pendingWrites.keys()) {
        if (idx <= rd.snapshot.meta.index) member.pendingWrites.delete(idx);
      }
    }
    for (const e of rd.committedEntries) this.applyEntry(member, e);
    for (const rs of rd.readStates) {
      const req = member.readRequests.get(rs.requestId);
      if (req === undefined || req.kind !== "read") continue;
      member.readRequests.delete(rs.requestId);
      if (rs.rejected) this.reply(member, req, { reqId: req.reqId, kind: "fail" });
      else member.pendingReads.push({ req, index: rs.index });
    }
    raft.advance(rd);
    member.busy = false;
    this.serveReads(member);
    this.drainStreams(member);
    this.maybeCompact(member);
    this.syncLeadership(member);
    this.pump(member);
  }

  private applyEntry(member: Member, e: Entry): void {
    this.checker.observeApply(member.id, e);
    const pending = member.pendingWrites.get(e.index);
    if (pending !== undefined) member.pendingWrites.delete(e.index);
    if (e.kind !== "normal") {
      if (pending !== undefined) this.reply(member, pending.req, { reqId: pending.req.reqId, kind: "fail" });
      return;
    }
    const held = this.incarnationsNamed(member, e.data);
    const res = member.replica.apply(e.index, e.data, this.localNow(member));
    this.observeApplied(member, res, held);
    if (pending !== undefined) {
      if (bytesEqual(pending.data, e.data)) {
        const r = res.result;
        const grantIndex =
          r.kind === "leaseGrant" ? member.replica.machine.lease(r.id)?.grantIndex : undefined;
        this.reply(member, pending.req, {
          reqId: pending.req.reqId,
          kind: "applied",
          index: e.index,
          result: r,
          grantIndex,
        });
      } else {
        this.reply(member, pending.req, { reqId: pending.req.reqId, kind: "fail" });
      }
    }
  }

  /**
   * For a leaseExpire entry: each named lease id -> the incarnation the table
   * holds before the apply (so a table that ignored the incarnation would be
   * judged by the belief in what it really removed).
   */
  private incarnationsNamed(member: Member, data: Uint8Array): Map<bigint, number> | undefined {
    if (binaryCommandType(data) !== "leaseExpire" && !containsAscii(data, EXPIRE_TAG)) return undefined;
    const cmd = decodeCommand(data);
    if (cmd.type !== "leaseExpire") return undefined;
    const held = new Map<bigint, number>();
    for (const item of cmd.leases) {
      const info = member.replica.machine.lease(item.id);
      if (info !== undefined) held.set(item.id, info.grantIndex);
    }
    return held;
  }

  /** Feeds an applied entry's effects to the checkers. */
  private observeApplied(member: Member, res: ApplyResult, held: Map<bigint, number> | undefined): void {
    if (res.events.length > 0)
      this.watchChecker.observeApply(member.id, member.replica.machine.currentRevision(), res.events);
    for (const g of res.leaseGrants) {
      const key = leaseKey(g.id, g.grantIndex);
      if (!this.grantsSeen.has(key)) {
        this.grantsSeen.add(key);
        this.leaseChecker.applied(key, this.nowMs, g.ttlSeconds * 1000);
      }
      if (member.replica.lessor.isLeader) this.leaseChecker.renewedByLeader(key, this.nowMs);
    }
    if (res.leaseRevokes.length === 0 || held === undefined) return; // none, or a client's revoke
    for (const id of res.leaseRevokes) {
      const grantIndex = held.get(id);
      if (grantIndex === undefined) continue;
      const key = leaseKey(id, grantIndex);
      if (this.revokesSeen.has(key)) continue;
      this.revokesSeen.add(key);
      this.leaseChecker.expired(key, this.nowMs);
      const op = this.expiryOps.get(key);
      if (op !== undefined) {
        op.output = { expired: true };
        op.returnTime = this.nowMs;
        this.expiryOps.delete(key);
      }
    }
  }

  private serveReads(member: Member): void {
    const applied = member.raft!.log.applied;
    const rest: { req: ClientRequest & { kind: "read" }; index: number }[] = [];
    for (const p of member.pendingReads) {
      if (p.index > applied) {
        rest.push(p);
        continue;
      }
      const r = member.replica.machine.range({ key: encoder.encode(p.req.key) });
      if (!r.ok) throw new Error(`sim: read of ${p.req.key} failed: ${r.error}`);
      const kv = r.kvs[0];
      this.reply(member, p.req, {
        reqId: p.req.reqId,
        kind: "read",
        value: kv === undefined ? undefined : decoder.decode(kv.value),
        revision: r.revision,
      });
    }
    member.pendingReads = rest;
  }

  private maybeCompact(member: Member): void {
    const raft = member.raft!;
    const applied = raft.log.applied;
    if (applied - raft.log.snapshot.meta.index < this.mix.compactEvery) return;
    raft.compact(applied, member.replica.machine.snapshot());
    const d = member.durable;
    d.snapshot = raft.log.snapshot;
    d.entries = d.entries.filter((e) => e.index > applied);
    this.log(`member ${member.id} compacted to ${applied}`);
  }

  // ---------------------------------------------------------------- lease duties

  /** Keeps the member's lessor in step with its Raft role (Replica.syncLeadership). */
  private syncLeadership(member: Member): void {
    const raft = member.raft;
    if (raft === undefined) return;
    const change = member.replica.syncLeadership(raft, this.localNow(member));
    if (change === "tookOver") {
      this.leaseChecker.tookOver(this.nowMs);
      this.log(
        `member ${member.id} takes up lease duties (term ${raft.term}, ${member.replica.lessor.size} leases)`,
      );
    } else if (change === "steppedDown") {
      this.log(`member ${member.id} drops lease duties`);
    }
  }

  /**
   * The replica's proposals (expiries, checkpoints). A member that does not
   * lead hands expiries to the one it believes leads (only a broken lessor has
   * duties there); expiries are recorded for the lease history and the
   * bounded-expiry check.
   */
  private proposeDuty(member: Member, command: Command): boolean {
    const raft = member.raft;
    if (raft === undefined) return false;
    if (command.type !== "leaseExpire") return raft.propose([encodeCommand(command)]).ok;
    const leases = command.leases;
    for (const item of leases) {
      const key = leaseKey(item.id, item.grantIndex);
      if (!this.expiryOps.has(key) && !this.revokesSeen.has(key)) {
        const op: HistoryOp<LeaseInput, LeaseOutput> = {
          clientId: 0,
          input: { kind: "expire", id: String(item.id), grantIndex: item.grantIndex },
          callTime: this.nowMs,
          output: undefined,
          returnTime: Infinity,
        };
        this.expiryOps.set(key, op);
        this.leaseHistory.push(op);
      }
    }
    for (const item of leases)
      this.leaseChecker.expiryHandedOut(leaseKey(item.id, item.grantIndex), this.nowMs);
    this.log(`member ${member.id} expires ${leases.map((l) => leaseKey(l.id, l.grantIndex)).join(" ")}`);
    if (raft.role !== "leader") {
      if (raft.lead !== NO_MEMBER) this.sendPacket(member.id, raft.lead, { kind: "duty", duty: { leases } });
      return false;
    }
    // A refused proposal (a transfer under way) is retried by the lessor after revokeRetryMs.
    return raft.propose([encodeCommand(command)]).ok;
  }

  private handleKeepAlive(member: Member, req: ClientRequest & { kind: "keepAlive" }): void {
    member.replica.keepAlive(member.raft!, req.lease, this.localNow(member), (a) => {
      if (a.kind === "ttl" && a.ttlSeconds > 0) {
        const info = member.replica.machine.lease(req.lease);
        if (info !== undefined)
          this.leaseChecker.renewedByLeader(leaseKey(req.lease, info.grantIndex), this.nowMs);
      }
      if (a.kind === "ttl")
        this.reply(member, req, { reqId: req.reqId, kind: "keepAlive", ttlSeconds: a.ttlSeconds });
      else this.reply(member, req, { reqId: req.reqId, kind: "notLeader", leader: a.leader });
    });
    this.pump(member);
  }

  // ---------------------------------------------------------------- watch streams

  private openStream(member: Member, req: ClientRequest & { kind: "watch" }): void {
    const key = encoder.encode(req.prefix);
    const res = member.replica.hub.create({
      key: req.prefix === "" ? new Uint8Array([0]) : key,
      rangeEnd: req.prefix === "" ? new Uint8Array([0]) : prefixEnd(key),
      startRevision: revision(req.startRevision),
    });
    if (!res.ok) throw new Error(`sim: watch create failed: ${res.error}`);
    member.streams.set(req.reqId, { client: req.client, watchId: res.watchId });
    this.drainStreams(member);
  }

  private drainStreams(member: Member): void {
    for (const [reqId, s] of member.streams) {
      for (;;) {
        const responses = member.replica.hub.drain(s.watchId, 8);
        if (responses.length === 0) break;
        if (!this.sendStream(member, s.client, { reqId, kind: "watch", responses })) {
          member.replica.hub.close(s.watchId);
          member.streams.delete(reqId);
          break;
        }
        if (responses.some((r) => r.canceled)) {
          member.streams.delete(reqId);
          break;
        }
      }
    }
  }

  /** Every stream of the member ends (crash, new key space); each client learns it a little later. */
  private breakStreams(member: Member): void {
    for (const [reqId, s] of member.streams) {
      if (member.up) member.replica.hub.close(s.watchId);
      const c = this.clients[s.client - CLIENT_BASE];
      this.at(this.nowMs + this.mix.delayMaxMs, () => c?.onResponse({ reqId, kind: "watchBroken" }));
    }
    member.streams = new Map();
  }

  private handleRequest(member: Member, req: ClientRequest): void {
    const raft = member.raft!;
    switch (req.kind) {
      case "cmd": {
        this.syncLeadership(member);
        const data = encodeCommand(req.command);
        const res = raft.propose([data]);
        if (res.ok) member.pendingWrites.set(res.index, { req, data });
        else this.reply(member, req, { reqId: req.reqId, kind: "notLeader", leader: res.leader });
        break;
      }
      case "read":
        member.readRequests.set(req.reqId, req);
        raft.readIndex(req.reqId);
        break;
      case "keepAlive":
        this.handleKeepAlive(member, req);
        break;
      case "watch":
        this.openStream(member, req);
        break;
      case "progress": {
        const s = member.streams.get(req.stream);
        if (s !== undefined) member.replica.hub.requestProgress(s.watchId);
        this.drainStreams(member);
        break;
      }
      default:
        throw new Error(`sim: unknown request ${JSON.stringify(req)}`);
    }
    this.pump(member);
  }

  private reply(member: Member, req: ClientRequest, resp: ClientResponse): void {
    this.sendPacket(member.id, req.client, { kind: "resp", resp });
  }

  // ---------------------------------------------------------------- network

  private isBlocked(from: number, to: number): boolean {
    return this.blocked.has(`${from}>${to}`) || this.cutOff.has(from) || this.cutOff.has(to);
  }

  private sendPacket(from: number, to: number, p: Packet): void {
    const r = this.netRng;
    if (this.isBlocked(from, to)) return;
    if (r.chance(this.dropRate)) return;
    // Client requests may be duplicated too: commands carry sessions, so a copy applies at most once.
    // Opening a watch stream is a connection, which the network does not duplicate.
    const stream = p.kind === "req" && p.req.kind === "watch";
    const copies = !stream && r.chance(this.dupRate) ? 2 : 1;
    const sender = this.members[from - 1];
    const inc = sender?.incarnation ?? 0;
    for (let i = 0; i < copies; i++) {
      const delay = this.mix.delayMinMs + r.float() * (this.mix.delayMaxMs - this.mix.delayMinMs);
      this.at(this.nowMs + delay, () => {
        // A crash resets the sender's connections: what was still in its buffers may be lost.
        if (sender !== undefined && sender.incarnation !== inc && r.chance(this.mix.crashLosesInFlight))
          return;
        this.deliver(from, to, p);
      });
    }
  }

  /**
   * A watch stream's response: in order and never dropped (a stream is one
   * TCP connection), unless the path is cut, which breaks the stream: false.
   */
  private sendStream(member: Member, client: number, resp: ClientResponse): boolean {
    if (this.isBlocked(member.id, client)) {
      const c = this.clients[client - CLIENT_BASE];
      this.at(this.nowMs + this.mix.delayMaxMs, () =>
        c?.onResponse({ reqId: resp.reqId, kind: "watchBroken" }),
      );
      return false;
    }
    const lane = `${member.id}>${client}`;
    const delay = this.mix.delayMinMs + this.netRng.float() * (this.mix.delayMaxMs - this.mix.delayMinMs);
    const at = Math.max(this.nowMs + delay, this.streamClock.get(lane) ?? 0);
    this.streamClock.set(lane, at);
    const inc = member.incarnation;
    this.at(at, () => {
      const c = this.clients[client - CLIENT_BASE];
      // A crashed member's stream delivers nothing more: its client hears that it broke instead.
      if (member.incarnation === inc) c?.onResponse(resp);
    });
    return true;
  }

  private deliver(from: number, to: number, p: Packet): void {
    if (this.isBlocked(from, to)) return;
    if (p.kind === "resp") {
      const c = this.clients[to - CLIENT_BASE];
      if (c !== undefined) c.onResponse(p.resp);
      return;
    }
    const member = this.members[to - 1];
    if (member === undefined || !member.up || member.raft === undefined) return;
    switch (p.kind) {
      case "raft":
        if (this.trace) this.log(`deliver ${describeMessage(p.msg)}`);
        member.raft.step(p.msg);
        this.pump(member);
        return;
      case "req":
        this.handleRequest(member, p.req);
        return;
      case "duty":
        if (member.raft.role === "leader") {
          member.raft.propose([encodeCommand({ type: "leaseExpire", leases: p.duty.leases })]);
          this.pump(member);
        }
        return;
      default:
        throw new Error(`sim: unknown packet ${JSON.stringify(p)}`);
    }
  }

  // ---------------------------------------------------------------- faults

  private scheduleFaults(): void {
    const m = this.mix;
    const r = this.faultRng;
    const next = (gap: number) => this.nowMs + gap * (0.5 + r.float());
    if (m.partitionGapMs > 0) {
      const partition = () => {
        if (this.healed) return;
        this.partition();
        this.at(next(m.partitionGapMs), partition);
      };
      this.at(next(m.partitionGapMs), partition);
    }
    if (m.crashGapMs > 0) {
      const crash = () => {
        if (this.healed) return;
        const up = this.members.filter((x) => x.up);
        if (up.length > 0) {
          // Leaders are the interesting victims (a crash right after winning, or mid-replication).
          const leader = up.find((x) => x.raft?.role === "leader");
          const victim = leader !== undefined && r.chance(m.leaderCrashBias) ? leader : r.pick(up);
          this.crash(victim);
          this.at(this.nowMs + r.float() * m.downMsMax, () => {
            if (!victim.up) this.start(victim);
          });
        }
        this.at(next(m.crashGapMs), crash);
      };
      this.at(next(m.crashGapMs), crash);
    }
    if (m.clientPartitionGapMs > 0 && this.leaseClients.length > 0) {
      const cut = () => {
        if (this.healed) return;
        const victim = r.pick(this.leaseClients).id;
        this.cutOff.add(victim);
        this.log(`client ${victim} cut off`);
        this.at(this.nowMs + r.float() * m.clientPartitionGapMs * 2, () => {
          if (this.cutOff.delete(victim)) this.log(`client ${victim} reconnected`);
        });
        this.at(next(m.clientPartitionGapMs), cut);
      };
      this.at(next(m.clientPartitionGapMs), cut);
    }
    if (m.confChangeGapMs > 0) {
      const change = () => {
        if (this.healed) return;
        this.changeMembership();
        this.at(next(m.confChangeGapMs), change);
      };
      this.at(next(m.confChangeGapMs), change);
    }
    if (m.transferGapMs > 0) {
      const transfer = () => {
        if (this.healed) return;
        const leader = this.members.find((x) => x.up && x.raft?.role === "leader");
        if (leader !== undefined) {
          const to = r.pick(this.members.filter((x) => x !== leader)).id;
          this.log(`transfer leadership ${leader.id} -> ${to}`);
          leader.raft!.transferLeadership(to);
          this.pump(leader);
        }
        this.at(next(m.transferGapMs), transfer);
      };
      this.at(next(m.transferGapMs), transfer);
    }
  }

  /**
   * The leader killer: a leader that dies within a few milliseconds of its
   * election leaves entries of its term on a minority. Three such leaders in a
   * row are Figure 8 of the Raft paper.
   */
  private onNewLeader(member: Member): void {
    const m = this.mix;
    if (this.healed || !this.faultRng.chance(m.newLeaderCrashRate)) return;
    const inc = member.incarnation;
    this.at(this.nowMs + this.faultRng.float() * m.tickMs * 2, () => {
      if (member.incarnation !== inc || !member.up || this.healed) return;
      this.crash(member);
      this.at(this.nowMs + this.faultRng.float() * m.downMsMax, () => {
        if (!member.up) this.start(member);
      });
    });
  }

  private partition(): void {
    const r = this.faultRng;
    const ids = this.members.map((x) => x.id);
    this.blocked.clear();
    const kind = r.pick(["isolate", "split", "oneway", "leaderMinority"] as const);
    if (kind === "isolate") {
      const leader = this.members.find((x) => x.up && x.raft?.role === "leader");
      const victim = leader !== undefined && r.chance(this.mix.leaderCrashBias) ? leader.id : r.pick(ids);
      for (const o of ids) {
        if (o === victim) continue;
        this.blocked.add(`${victim}>${o}`);
        this.blocked.add(`${o}>${victim}`);
      }
    } else if (kind === "leaderMinority") {
      // The leader keeps one follower and keeps appending entries the majority never sees.
      const leader = this.members.find((x) => x.up && x.raft?.role === "leader")?.id ?? r.pick(ids);
      const side = new Set([leader, r.pick(ids.filter((x) => x !== leader))]);
      if (ids.length === 5) side.delete(NO_MEMBER);
      for (const a of ids)
        for (const b of ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
    } else if (kind === "split") {
      const side = new Set(ids.filter(() => r.chance(0.5)));
      for (const a of ids)
        for (const b of ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
    } else {
      for (const a of ids) for (const b of ids) if (a !== b && r.chance(0.3)) this.blocked.add(`${a}>${b}`);
    }
    this.log(`partition ${kind}: blocked ${[...this.blocked].sort().join(" ") || "nothing"}`);
    const duration = r.float() * this.mix.partitionGapMs;
    this.at(this.nowMs + duration, () => {
      if (this.healed) return;
      this.blocked.clear();
      this.log("partition healed");
    });
  }

  private heal(): void {
    this.healed = true;
    this.blocked.clear();
    this.cutOff.clear();
    this.dropRate = 0;
    this.dupRate = 0;
    for (const member of this.members) if (!member.up) this.start(member);
    for (const c of this.clients) this.okAtHeal.set(c.id, c.okAfter);
    this.log("heal: liveness phase begins");
  }

  // ---------------------------------------------------------------- clients

  private clientHost(): ClientHost {
    const m = this.mix;
    return {
      now: () => this.nowMs,
      at: (t, run) => this.at(t, run),
      send: (from, to, req) => {
        this.log(`client ${from} -> ${to}: ${req.kind} ${req.reqId}`);
        this.sendPacket(from, to, { kind: "req", req });
      },
      // A leader hint is followed even to a member the operator meant to remove: the removal may never
      // have committed (a client learns members from answers, as etcd clients sync endpoints).
      endpoint: (hint) =>
        hint !== NO_MEMBER && hint <= this.members.length ? hint : this.clientRng.pick(this.endpoints),
      log: (line) => this.log(line),
      lastStartMs: m.safetyMs + m.livenessMs - m.clientTimeoutMs - 50,
      rho: m.rho,
      kvHistory: this.kvHistory,
      leaseHistory: this.leaseHistory,
      leases: this.leaseChecker,
      watches: this.watchChecker,
      ackedIndex: (index) => {
        this.ackedMax = Math.max(this.ackedMax, index);
      },
    };
  }

  // ---------------------------------------------------------------- checks

  private checkAfterEvent(): void {
    for (const member of this.members) {
      if (member.up && member.raft !== undefined) {
        this.checker.observe(member.raft, member.incarnation);
        this.syncLeadership(member);
        if (member.raft.role === "leader" && member.leaderTerm !== member.raft.term) {
          member.leaderTerm = member.raft.term;
          this.onNewLeader(member);
        }
        const committed = member.raft?.log.committed ?? 0;
        if (committed > member.commitSeen) {
          member.commitSeen = committed;
          // Crash at the most delicate point: a leader that just advanced its commit index,
          // before the Ready that would tell anyone is persisted or sent.
          const raft = member.raft!;
          if (raft.role === "leader" && !this.healed && this.faultRng.chance(this.mix.crashOnCommitRate)) {
            this.crash(member);
            this.at(this.nowMs + this.faultRng.float() * this.mix.downMsMax, () => {
              if (!member.up) this.start(member);
            });
          }
        }
      }
    }
    if (this.events % 64 === 0) this.checker.checkLogMatching(this.liveRafts());
    if (this.checker.violations.length > 0) this.violations.push(...this.checker.violations);
    if (this.leaseChecker.violations.length > 0) this.violations.push(...this.leaseChecker.violations);
    if (this.watchChecker.violations.length > 0) this.violations.push(...this.watchChecker.violations);
  }

  private liveRafts(): Raft[] {
    return this.members.filter((x) => x.up && x.raft !== undefined).map((x) => x.raft!);
  }

  private countLeaders(): number {
    return this.liveRafts().filter((r) => r.role === "leader").length;
  }

  private checkEnd(): void {
    this.checker.checkLogMatching(this.liveRafts());
    this.violations.push(...this.checker.violations);
    if (this.violations.length > 0) return;
    // Liveness: a leader, and every client made progress after the heal.
    if (this.countLeaders() !== 1)
      this.violations.push(`liveness: ${this.countLeaders()} leaders at the end`);
    for (const c of this.clients) {
      if (c instanceof KvClient && c.okAfter === this.okAtHeal.get(c.id)) {
        this.violations.push(
          `liveness: client ${c.id} completed no operation in ${this.mix.livenessMs}ms after the heal`,
        );
      }
    }
    const dutyHolder = this.members.find((x) => x.up && x.replica.lessor.isLeader);
    if (dutyHolder === undefined)
      this.violations.push("liveness: no member holds the lease duties at the end");
    // Durability: the most advanced member applied every acknowledged write (state machine safety,
    // checked all along, makes it the same entry).
    const best = this.members.reduce((a, b) =>
      (b.raft?.log.applied ?? 0) > (a.raft?.log.applied ?? 0) ? b : a,
    );
    const applied = best.raft?.log.applied ?? 0;
    if (applied < this.ackedMax)
      this.violations.push(
        `durability: acknowledged index ${this.ackedMax} but the best member applied ${applied}`,
      );
    // Bounded expiry, against the most advanced member's lease table.
    const live = best.replica.machine.leaseIds().map((id) => {
      const info = best.replica.machine.lease(id)!;
      return { lease: leaseKey(id, info.grantIndex), ttlMs: info.ttlSeconds * 1000 };
    });
    this.leaseChecker.checkEnd(this.nowMs, live);
    this.violations.push(...this.leaseChecker.violations, ...this.watchChecker.violations);
    if (this.violations.length > 0) return;
    const lin = checkLinearizable(registerModel, this.kvHistory);
    if (lin.kind === "violation") this.violations.push(`linearizability: ${lin.explanation}`);
    else if (lin.kind === "unknown") this.violations.push(`linearizability: undecided (${lin.reason})`);
    const leaseLin = checkLinearizable(leaseModel, this.leaseHistory);
    if (leaseLin.kind === "violation") this.violations.push(`lease linearizability: ${leaseLin.explanation}`);
    else if (leaseLin.kind === "unknown")
      this.violations.push(`lease linearizability: undecided (${leaseLin.reason})`);
  }
}

/** Runs one seed to completion. */
export function runSeed(seed: number, opts: SimOptions = {}): SimResult {
  return new Simulator(seed, opts).run();
}

/** The one command that replays a seed. */
export function reproduceCommand(seed: number): string {
  return `npm run sim -- --seed ${seed} --trace`;
}
