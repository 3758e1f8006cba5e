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
import { SafetyChecker } from "./checkers.ts";
import { decodeWrite, encodeWrite, KvRegister } from "./kv.ts";
import type { HistoryOp, RegisterInput, RegisterOutput } from "./linearizability.ts";
import { checkLinearizable, registerModel } from "./linearizability.ts";
import { EventQueue } from "./queue.ts";
import { SeededRng } from "./rng.ts";

/** Builds the Raft instance for a member; tests pass variants with planted bugs. */
export type RaftFactory = (config: RaftConfig, initial: RaftInitialState) => Raft;

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
  readonly clients: number;
  readonly keys: number;
  readonly clientTimeoutMs: number;
  readonly safetyMs: number;
  readonly livenessMs: number;
}

export interface SimOptions {
  readonly trace?: (line: string) => void;
  readonly makeRaft?: RaftFactory;
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
    `clients=${m.clients} keys=${m.keys} safety=${m.safetyMs}ms liveness=${m.livenessMs}ms rho=${m.rho}`
  );
}

type ClientRequest = { readonly reqId: string; readonly client: number } & (
  | { readonly kind: "read"; readonly key: string }
  | { readonly kind: "write"; readonly key: string; readonly value: string }
);
type ClientResponse =
  | { readonly reqId: string; readonly kind: "ok"; readonly value?: string | undefined }
  | { readonly reqId: string; readonly kind: "notLeader"; readonly leader: MemberId }
  | { readonly reqId: string; readonly kind: "fail" };

type Packet =
  | { readonly kind: "raft"; readonly msg: Message }
  | { readonly kind: "req"; readonly req: ClientRequest }
  | { readonly kind: "resp"; readonly resp: ClientResponse };

/** What survives a crash: the persisted log, hard state and snapshot. */
interface Durable {
  hardState: RaftInitialState["hardState"];
  snapshot: RaftInitialState["snapshot"];
  entries: Entry[];
}

interface Member {
  readonly id: MemberId;
  readonly tickPeriodMs: number;
  readonly durable: Durable;
  up: boolean;
  incarnation: number;
  raft: Raft | undefined;
  kv: KvRegister;
  busy: boolean;
  /** Writes this member proposed: index -> request. */
  pendingWrites: Map<number, ClientRequest>;
  readRequests: Map<string, ClientRequest>;
  pendingReads: { req: ClientRequest; index: number }[];
  /** The last term in which this member was seen leading (for the leader killer). */
  leaderTerm: number;
  /** The highest commit index seen on this member (for crash-on-commit). */
  commitSeen: number;
}

interface Client {
  readonly id: number;
  leaderHint: MemberId;
  seq: number;
  current: { req: ClientRequest; callTime: number } | undefined;
  okAfterHeal: number;
}

const CLIENT_BASE = 1000;
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
  private readonly clients: Client[] = [];
  private readonly blocked = new Set<string>();
  private dropRate: number;
  private dupRate: number;
  private healed = false;
  private readonly checker = new SafetyChecker();
  private readonly history: HistoryOp<RegisterInput, RegisterOutput>[] = [];
  private readonly acked = new Set<string>();
  private opsUnknown = 0;
  private readonly trace: ((line: string) => void) | undefined;
  private readonly makeRaft: RaftFactory;
  private readonly violations: string[] = [];

  constructor(seed: number, opts: SimOptions = {}) {
    this.seed = seed;
    this.mix = { ...faultMixFor(seed), ...opts.mix };
    this.rng = new SeededRng(seed);
    this.netRng = this.rng.fork();
    this.faultRng = this.rng.fork();
    this.clientRng = this.rng.fork();
    this.dropRate = this.mix.dropRate;
    this.dupRate = this.mix.dupRate;
    this.trace = opts.trace;
    this.makeRaft = opts.makeRaft ?? ((c, i) => new RaftImpl(c, i));
  }

  run(): SimResult {
    const m = this.mix;
    this.log(`start ${describeMix(this.seed, m)}`);
    const voters = Array.from({ length: m.members }, (_, i) => memberId(i + 1));
    for (const id of voters) this.addMember(id, bootstrapState(voters));
    this.endpoints = voters.slice();
    for (let i = 0; i < m.clients; i++) {
      const c: Client = {
        id: CLIENT_BASE + i,
        leaderHint: NO_MEMBER,
        seq: 0,
        current: undefined,
        okAfterHeal: 0,
      };
      this.clients.push(c);
      this.at(this.clientRng.range(0, 50), () => this.startOp(c));
    }
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
        opsOk: this.acked.size + this.history.filter((h) => h.input.kind === "read").length,
        opsUnknown: this.opsUnknown,
        virtualMs: endMs,
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
    const drift = 1 + (this.rng.float() * 2 - 1) * this.mix.rho;
    const member: Member = {
      id,
      tickPeriodMs: this.mix.tickMs * drift,
      durable: { hardState: initial.hardState, snapshot: initial.snapshot, entries: initial.entries.slice() },
      up: false,
      incarnation: 0,
      raft: undefined,
      kv: new KvRegister(),
      busy: false,
      pendingWrites: new Map(),
      readRequests: new Map(),
      pendingReads: [],
      leaderTerm: 0,
      commitSeen: 0,
    };
    if (id !== this.members.length + 1) throw new Error(`sim: member ids must be sequential, got ${id}`);
    this.members.push(member);
    this.start(member);
    return member;
  }

  /**
   * The operator: one membership change at a time through the leader. It adds a
   * fresh member as a learner, promotes learners, and removes a voter (never the
   * leader, never below three voters), keeping between three and five voters.
   */
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
    member.kv = KvRegister.restore(d.snapshot.data);
    member.commitSeen = member.raft.log.committed;
    member.busy = false;
    member.pendingWrites = new Map();
    member.readRequests = new Map();
    member.pendingReads = [];
    const inc = member.incarnation;
    const tick = () => {
      if (member.incarnation !== inc || !member.up) return;
      member.raft!.tick();
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
      member.kv = KvRegister.restore(rd.snapshot.data);
      for (const [idx, req] of member.pendingWrites) {
        if (idx <= rd.snapshot.meta.index) member.pendingWrites.delete(idx); // outcome unknown to us now
        void req;
      }
    }
    for (const e of rd.committedEntries) this.applyEntry(member, e);
    for (const rs of rd.readStates) {
      const req = member.readRequests.get(rs.requestId);
      if (req === undefined) continue;
      member.readRequests.delete(rs.requestId);
      if (rs.rejected) this.reply(member, req, { reqId: req.reqId, kind: "fail" });
      else member.pendingReads.push({ req, index: rs.index });
    }
    raft.advance(rd);
    member.busy = false;
    this.serveReads(member);
    this.maybeCompact(member);
    this.pump(member);
  }

  private applyEntry(member: Member, e: Entry): void {
    this.checker.observeApply(member.id, e);
    const pending = member.pendingWrites.get(e.index);
    if (e.kind === "normal" && e.data.length > 0) {
      const cmd = decodeWrite(e.data);
      member.kv.apply(cmd);
      if (pending !== undefined) {
        member.pendingWrites.delete(e.index);
        const mine = pending.reqId === cmd.reqId;
        this.reply(
          member,
          pending,
          mine ? { reqId: pending.reqId, kind: "ok" } : { reqId: pending.reqId, kind: "fail" },
        );
      }
    } else if (pending !== undefined) {
      member.pendingWrites.delete(e.index);
      this.reply(member, pending, { reqId: pending.reqId, kind: "fail" });
    }
  }

  private serveReads(member: Member): void {
    const applied = member.raft!.log.applied;
    const rest: { req: ClientRequest; index: number }[] = [];
    for (const p of member.pendingReads) {
      if (p.index <= applied)
        this.reply(member, p.req, { reqId: p.req.reqId, kind: "ok", value: member.kv.get(p.req.key) });
      else rest.push(p);
    }
    member.pendingReads = rest;
  }

  private maybeCompact(member: Member): void {
    const raft = member.raft!;
    const applied = raft.log.applied;
    if (applied - raft.log.snapshot.meta.index < this.mix.compactEvery) return;
    raft.compact(applied, member.kv.snapshot());
    const d = member.durable;
    d.snapshot = raft.log.snapshot;
    d.entries = d.entries.filter((e) => e.index > applied);
    this.log(`member ${member.id} compacted to ${applied}`);
  }

  private handleRequest(member: Member, req: ClientRequest): void {
    const raft = member.raft!;
    if (req.kind === "write") {
      const res = raft.propose([encodeWrite({ reqId: req.reqId, key: req.key, value: req.value })]);
      if (res.ok) member.pendingWrites.set(res.index, req);
      else this.reply(member, req, { reqId: req.reqId, kind: "notLeader", leader: res.leader });
    } else {
      member.readRequests.set(req.reqId, req);
      raft.readIndex(req.reqId);
    }
    this.pump(member);
  }

  private reply(member: Member, req: ClientRequest, resp: ClientResponse): void {
    this.sendPacket(member.id, req.client, { kind: "resp", resp });
  }

  // ---------------------------------------------------------------- network

  private sendPacket(from: number, to: number, p: Packet): void {
    const r = this.netRng;
    if (this.blocked.has(`${from}>${to}`)) return;
    if (r.chance(this.dropRate)) return;
    // Client requests are never duplicated: without the idempotent sessions of the full state
    // machine, a duplicated write could apply twice and a "fail" answer would not be definite.
    const copies = p.kind === "raft" && r.chance(this.dupRate) ? 2 : 1;
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

  private deliver(from: number, to: number, p: Packet): void {
    if (this.blocked.has(`${from}>${to}`)) return;
    if (p.kind === "resp") {
      const c = this.clients[to - CLIENT_BASE];
      if (c !== undefined) this.onResponse(c, p.resp);
      return;
    }
    const member = this.members[to - 1];
    if (member === undefined || !member.up || member.raft === undefined) return;
    if (p.kind === "raft") {
      if (this.trace) this.log(`deliver ${describeMessage(p.msg)}`);
      member.raft.step(p.msg);
      this.pump(member);
    } else {
      this.handleRequest(member, p.req);
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
    this.dropRate = 0;
    this.dupRate = 0;
    for (const member of this.members) if (!member.up) this.start(member);
    this.log("heal: liveness phase begins");
  }

  // ---------------------------------------------------------------- clients

  private startOp(c: Client): void {
    const m = this.mix;
    if (this.nowMs > m.safetyMs + m.livenessMs - m.clientTimeoutMs - 50) return;
    const r = this.clientRng;
    const key = `k${r.int(m.keys)}`;
    const reqId = `c${c.id - CLIENT_BASE}.${++c.seq}`;
    const req: ClientRequest = r.chance(0.5)
      ? { reqId, client: c.id, kind: "write", key, value: reqId }
      : { reqId, client: c.id, kind: "read", key };
    c.current = { req, callTime: this.nowMs };
    const hinted = c.leaderHint !== NO_MEMBER && this.endpoints.includes(c.leaderHint);
    const target = hinted ? c.leaderHint : r.pick(this.endpoints);
    this.log(
      `client ${c.id} ${req.kind} ${key}${req.kind === "write" ? `=${req.value}` : ""} -> ${target} (${reqId})`,
    );
    this.sendPacket(c.id, target, { kind: "req", req });
    this.at(this.nowMs + m.clientTimeoutMs, () => {
      if (c.current?.req.reqId !== reqId) return;
      this.finishOp(c, undefined);
      c.leaderHint = NO_MEMBER;
    });
  }

  private onResponse(c: Client, resp: ClientResponse): void {
    if (c.current?.req.reqId !== resp.reqId) return; // a duplicate or a late answer
    if (resp.kind === "ok") {
      this.finishOp(c, resp);
    } else {
      // A definite failure: the operation never took effect, so it is left out of the history.
      c.leaderHint = resp.kind === "notLeader" ? resp.leader : NO_MEMBER;
      this.log(`client ${c.id} ${resp.reqId} ${resp.kind}`);
      c.current = undefined;
      this.at(this.nowMs + this.clientRng.float() * 5, () => this.startOp(c));
    }
  }

  private finishOp(c: Client, resp: (ClientResponse & { kind: "ok" }) | undefined): void {
    const cur = c.current!;
    c.current = undefined;
    const req = cur.req;
    const input: RegisterInput =
      req.kind === "write"
        ? { kind: "write", key: req.key, value: req.value }
        : { kind: "read", key: req.key };
    if (resp === undefined) {
      this.opsUnknown++;
      this.log(`client ${c.id} ${req.reqId} timed out`);
      // An unknown write may still take effect; an unknown read has none and is dropped.
      if (req.kind === "write") {
        this.history.push({
          clientId: c.id,
          input,
          callTime: cur.callTime,
          output: undefined,
          returnTime: Infinity,
        });
      }
    } else {
      this.log(`client ${c.id} ${req.reqId} ok${req.kind === "read" ? ` value=${resp.value}` : ""}`);
      const output: RegisterOutput = req.kind === "write" ? { ok: true } : { value: resp.value };
      this.history.push({ clientId: c.id, input, callTime: cur.callTime, output, returnTime: this.nowMs });
      if (req.kind === "write") this.acked.add(req.reqId);
      if (this.healed && cur.callTime >= this.mix.safetyMs) c.okAfterHeal++;
    }
    this.at(this.nowMs + this.clientRng.float() * 20, () => this.startOp(c));
  }

  // ---------------------------------------------------------------- checks

  private checkAfterEvent(): void {
    for (const member of this.members) {
      if (member.up && member.raft !== undefined) {
        this.checker.observe(member.raft, member.incarnation);
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
      if (c.okAfterHeal === 0) {
        this.violations.push(
          `liveness: client ${c.id} completed no operation in ${this.mix.livenessMs}ms after the heal`,
        );
      }
    }
    // Durability: every acknowledged write is in the most advanced member's state.
    const best = this.members.reduce((a, b) =>
      (b.raft?.log.applied ?? 0) > (a.raft?.log.applied ?? 0) ? b : a,
    );
    const applied = new Set(best.kv.appliedWrites());
    for (const reqId of this.acked) {
      if (!applied.has(reqId))
        this.violations.push(`durability: acknowledged write ${reqId} is not in the final state`);
    }
    const lin = checkLinearizable(registerModel, this.history);
    if (lin.kind === "violation") this.violations.push(`linearizability: ${lin.explanation}`);
    else if (lin.kind === "unknown") this.violations.push(`linearizability: undecided (${lin.reason})`);
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
