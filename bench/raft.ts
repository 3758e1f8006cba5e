/**
 * The `raft` workload: the cost of the Raft core alone. Three members live in
 * one process with no I/O: "storage" keeps the arrays in memory and messages
 * are delivered by calling the recipient's `step()`.
 *
 * The loop is shaped like a server's: in every pass each member takes its
 * inbox, the leader proposes one batch (everything that "arrived" since the
 * last pass, as one `propose()` call), and then the member honours its Ready
 * in contract order (persist, send, apply, `advance()`; see src/raft/types.ts)
 * and compacts its log every `compactEveryEntries` applied entries, keeping a
 * catch-up tail as etcd's server does (SnapshotCatchUpEntries).
 *
 * Figures, per batch size, after a warm-up: entries proposed during
 * `durationMs`, divided by the time until all of them were applied on the
 * leader (= committed; the leader applies only what it committed) and until
 * they were applied on all three members. Every phase is bounded in passes and
 * time, so the program always stops.
 */

import type { Entry, HardState, MemberId, Message, RaftInitialState, Ready, Rng } from "../src/raft/index.ts";
import { assert, bootstrapState, logIndex, memberId, Raft } from "../src/raft/index.ts";
import { fmtInt, machineInfo, machineLines, parseWorkloadArgs } from "./common.ts";

/** What a run is asked to do; printed before any figure. */
interface RaftBenchConfig {
  readonly membersCount: number;
  readonly entryBytes: number;
  /** Entries per `propose()` call, one call per pass: the sweep. */
  readonly batchSizes: readonly number[];
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly compactEveryEntries: number;
  readonly compactCatchUpEntries: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly seed: number;
}

const DEFAULT_CONFIG: RaftBenchConfig = {
  membersCount: 3,
  entryBytes: 100,
  batchSizes: [1, 64, 256, 1024],
  warmupMs: 300,
  durationMs: 2000,
  compactEveryEntries: 10_000,
  compactCatchUpEntries: 5_000,
  electionTicks: 10,
  heartbeatTicks: 1,
  seed: 1,
};

/** Limits that keep a broken core from hanging the bench (CONVENTIONS 5). */
const ELECTION_PASSES_MAX = 100;
/** Draining the pipeline after proposals stop takes a handful of passes; this is far above. */
const DRAIN_PASSES_MAX = 10_000;
const DRAIN_MS_MAX = 10_000;
const DURATION_MS_MAX = 60_000;
const BATCH_SIZE_MAX = 65_536;

/** The target this workload is held to, in committed 100-byte entries per second. */
const TARGET_ENTRIES_PER_SEC = 200_000;

/** mulberry32: enough randomness for election jitter, seeded so runs repeat. */
function seededRng(seed: number): Rng {
  let s = seed >>> 0;
  return {
    int(n: number): number {
      s = (s + 0x6d2b79f5) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 15), z | 1);
      z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
      return Math.floor((((z ^ (z >>> 14)) >>> 0) / 0x1_0000_0000) * n);
    },
  };
}

/** A member's "disk": the arrays a real host would write, and nothing else. */
class MemStorage {
  hardState: HardState;
  /** Invariant: entries[i].index === firstIndex + i. */
  private entries: Entry[];
  private firstIndex = 1;

  constructor(initial: RaftInitialState) {
    this.hardState = initial.hardState;
    this.entries = initial.entries.slice();
  }

  /** Stores a Ready's entries, replacing any stored entries at or after the first of them. */
  persist(rd: Ready): void {
    assert(rd.snapshot === undefined, "bench: no snapshot is expected in this workload");
    if (rd.entries.length > 0) {
      const keep = rd.entries[0]!.index - this.firstIndex;
      assert(keep >= 0 && keep <= this.entries.length, "bench: persisted entries leave a gap");
      if (keep < this.entries.length) this.entries.length = keep;
      for (const e of rd.entries) this.entries.push(e);
    }
    if (rd.hardState !== undefined) this.hardState = rd.hardState;
  }

  /** Drops entries up to `index`, as after a snapshot. */
  compactTo(index: number): void {
    const drop = index + 1 - this.firstIndex;
    if (drop <= 0) return;
    this.entries.splice(0, drop);
    this.firstIndex = index + 1;
  }
}

interface Member {
  readonly id: MemberId;
  readonly raft: Raft;
  readonly storage: MemStorage;
  /** Messages sent to this member, delivered at the start of its next turn. */
  readonly inbox: Message[];
  /** Application entries applied (the leader's empty no-op is not counted). */
  appliedEntries: number;
  /** Folds applied payloads so applying cannot be optimized away. */
  appliedChecksum: number;
}

interface Cluster {
  readonly members: readonly Member[];
  readonly leader: Member;
  proposedEntries: number;
  passes: number;
  messages: number;
  compactions: number;
}

function newMember(id: MemberId, voters: readonly MemberId[], cfg: RaftBenchConfig): Member {
  const initial = bootstrapState(voters);
  const raft = new Raft(
    {
      id,
      electionTicks: cfg.electionTicks,
      heartbeatTicks: cfg.heartbeatTicks,
      rng: seededRng(cfg.seed * 1000 + id),
    },
    initial,
  );
  return { id, raft, storage: new MemStorage(initial), inbox: [], appliedEntries: 0, appliedChecksum: 0 };
}

/** One member's turn: receive, propose (leader), then honour one Ready in contract order. */
function turn(cluster: Cluster, m: Member, batch: readonly Uint8Array[] | undefined, cfg: RaftBenchConfig) {
  const raft = m.raft;
  // step() never sends to its own member, so the inbox cannot grow while it is drained.
  const inbox = m.inbox;
  if (inbox.length > 0) {
    for (let i = 0; i < inbox.length; i++) raft.step(inbox[i]!);
    inbox.length = 0;
  }
  if (batch !== undefined && m === cluster.leader) {
    const res = raft.propose(batch);
    if (res.ok) cluster.proposedEntries += batch.length;
    else assert(res.reason === "tooLarge", `bench: proposal refused: ${res.reason}`);
  }
  if (!raft.hasReady()) return;
  const rd = raft.ready();
  // 1. persist
  m.storage.persist(rd);
  // 2. send
  for (const msg of rd.messages) {
    assert(msg.type !== "snap", `bench: member ${msg.to} fell behind the leader's compacted log`);
    cluster.members[msg.to - 1]!.inbox.push(msg);
  }
  cluster.messages += rd.messages.length;
  // 3. apply
  for (const e of rd.committedEntries) {
    if (e.kind === "normal" && e.data.length > 0) {
      m.appliedEntries++;
      m.appliedChecksum = (m.appliedChecksum + e.data[e.index % e.data.length]!) | 0;
    }
  }
  // 4. advance
  raft.advance(rd);
  const applied = raft.log.applied;
  if (applied - raft.log.snapshot.meta.index >= cfg.compactEveryEntries + cfg.compactCatchUpEntries) {
    const index = logIndex(applied - cfg.compactCatchUpEntries);
    raft.compact(index, new Uint8Array(0));
    m.storage.compactTo(index);
    cluster.compactions++;
  }
}

function pass(cluster: Cluster, batch: readonly Uint8Array[] | undefined, cfg: RaftBenchConfig): void {
  for (const m of cluster.members) turn(cluster, m, batch, cfg);
  cluster.passes++;
}

/** Builds the cluster and elects member 1 (campaignNow, then pump; no ticks). */
function newCluster(cfg: RaftBenchConfig): Cluster {
  const voters = Array.from({ length: cfg.membersCount }, (_, i) => memberId(i + 1));
  const members = voters.map((id) => newMember(id, voters, cfg));
  const first = members[0]!;
  const cluster: Cluster = {
    members,
    leader: first,
    proposedEntries: 0,
    passes: 0,
    messages: 0,
    compactions: 0,
  };
  first.raft.campaignNow();
  for (let i = 0; i < ELECTION_PASSES_MAX && first.raft.role !== "leader"; i++) pass(cluster, undefined, cfg);
  assert(first.raft.role === "leader", `bench: member 1 not leader after ${ELECTION_PASSES_MAX} passes`);
  return cluster;
}

/** Application entries applied by every member so far. */
function minApplied(cluster: Cluster): number {
  let min = Number.POSITIVE_INFINITY;
  for (const m of cluster.members) min = Math.min(min, m.appliedEntries);
  return min;
}

interface PhaseResult {
  readonly entries: number;
  readonly proposeMs: number;
  /** From the first proposal until the leader applied (= committed) every entry. */
  readonly leaderMs: number;
  /** From the first proposal until every member applied every entry. */
  readonly allMs: number;
  readonly passes: number;
  readonly messages: number;
}

/** Proposes one batch per pass for `ms`, then drains until every member applied everything. */
function runPhase(cluster: Cluster, batch: readonly Uint8Array[], ms: number, cfg: RaftBenchConfig) {
  const leader = cluster.leader;
  const proposed0 = cluster.proposedEntries;
  const leader0 = leader.appliedEntries;
  const passes0 = cluster.passes;
  const messages0 = cluster.messages;
  assert(leader0 === proposed0 && minApplied(cluster) === proposed0, "bench: phase starts undrained");

  const t0 = performance.now();
  let now = t0;
  while (now - t0 < ms) {
    pass(cluster, batch, cfg);
    now = performance.now();
  }
  const proposeMs = now - t0;
  const target = cluster.proposedEntries;
  let leaderMs = leader.appliedEntries >= target ? proposeMs : Number.NaN;
  let drainPasses = 0;
  while (minApplied(cluster) < target) {
    assert(drainPasses < DRAIN_PASSES_MAX, `bench: not drained after ${DRAIN_PASSES_MAX} passes`);
    assert(now - t0 - proposeMs < DRAIN_MS_MAX, `bench: not drained after ${DRAIN_MS_MAX} ms`);
    pass(cluster, undefined, cfg);
    drainPasses++;
    now = performance.now();
    if (Number.isNaN(leaderMs) && leader.appliedEntries >= target) leaderMs = now - t0;
  }
  assert(leader.raft.role === "leader", "bench: member 1 lost leadership");
  const result: PhaseResult = {
    entries: target - proposed0,
    proposeMs,
    leaderMs,
    allMs: now - t0,
    passes: cluster.passes - passes0,
    messages: cluster.messages - messages0,
  };
  return result;
}

/** 100-byte payloads, distinct per slot of the batch; reused across passes (allocation is the host's cost). */
function makeBatch(size: number, entryBytes: number): Uint8Array[] {
  const buf = new Uint8Array(size * entryBytes);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 31 + 7) & 0xff;
  return Array.from({ length: size }, (_, i) => buf.subarray(i * entryBytes, (i + 1) * entryBytes));
}

interface BatchResult {
  readonly batchSize: number;
  readonly entries: number;
  readonly leaderEntriesPerSec: number;
  readonly allEntriesPerSec: number;
  readonly leaderMs: number;
  readonly allMs: number;
  readonly passes: number;
  readonly messagesPerPass: number;
  /** The most entries any member's raft log holds in memory at the end (bounded by compaction). */
  readonly logEntriesInMemory: number;
  readonly compactions: number;
  readonly heapUsedMiB: number;
}

function runBatchSize(batchSize: number, cfg: RaftBenchConfig): BatchResult {
  const cluster = newCluster(cfg);
  const batch = makeBatch(batchSize, cfg.entryBytes);
  runPhase(cluster, batch, cfg.warmupMs, cfg);
  const r = runPhase(cluster, batch, cfg.durationMs, cfg);
  const sums = new Set(cluster.members.map((m) => m.appliedChecksum));
  assert(sums.size === 1, "bench: members applied different payloads");
  let inMemory = 0;
  for (const m of cluster.members)
    inMemory = Math.max(inMemory, m.raft.log.lastIndex() - m.raft.log.firstIndex());
  return {
    batchSize,
    entries: r.entries,
    leaderEntriesPerSec: r.entries / (r.leaderMs / 1000),
    allEntriesPerSec: r.entries / (r.allMs / 1000),
    leaderMs: r.leaderMs,
    allMs: r.allMs,
    passes: r.passes,
    messagesPerPass: r.messages / r.passes,
    logEntriesInMemory: inMemory + 1,
    compactions: cluster.compactions,
    heapUsedMiB: process.memoryUsage().heapUsed / (1 << 20),
  };
}

const USAGE = `usage: npm run bench -- raft [--duration-ms N] [--warmup-ms N] [--batch-sizes 1,64,256,1024]
`;

/** Parses `--name value` options over the defaults; returns a message on bad input. */
function parseArgs(args: readonly string[]): RaftBenchConfig | string {
  let cfg = DEFAULT_CONFIG;
  const positiveInt = (flag: string, v: string | undefined, max: number): number | string => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n <= 0 || n > max)
      return `${flag} wants an integer in [1, ${max}], got '${v ?? ""}'`;
    return n;
  };
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i]!;
    const value = args[i + 1];
    switch (flag) {
      case "--duration-ms":
      case "--warmup-ms": {
        const n = positiveInt(flag, value, DURATION_MS_MAX);
        if (typeof n === "string") return n;
        cfg = flag === "--duration-ms" ? { ...cfg, durationMs: n } : { ...cfg, warmupMs: n };
        break;
      }
      case "--batch-sizes": {
        const sizes: number[] = [];
        for (const part of (value ?? "").split(",")) {
          const n = positiveInt(flag, part, BATCH_SIZE_MAX);
          if (typeof n === "string") return n;
          sizes.push(n);
        }
        cfg = { ...cfg, batchSizes: sizes };
        break;
      }
      default:
        return `unknown option '${flag}'`;
    }
  }
  return cfg;
}

/** The `raft` workload. */
export function raftBench(args: readonly string[]): void {
  const cfg = parseWorkloadArgs("raft", USAGE, args, parseArgs);
  if (cfg === undefined) return;
  const machine = machineInfo();
  const lines = [
    "bench raft: in-process Raft cluster, no I/O (storage = arrays, delivery = step())",
    ...machineLines(machine),
    `  members             ${cfg.membersCount} voters, leader = member 1 (campaignNow, no ticks)`,
    `  entry bytes         ${cfg.entryBytes}`,
    `  batch sizes         ${cfg.batchSizes.join(", ")} entries per propose(), one propose per pass`,
    `  warm-up, duration   ${cfg.warmupMs} ms, ${cfg.durationMs} ms of proposing per batch size, then drain`,
    `  compaction          every ${fmtInt(cfg.compactEveryEntries)} applied, keeping ${fmtInt(cfg.compactCatchUpEntries)} for catch-up`,
    `  raft config         electionTicks ${cfg.electionTicks}, heartbeatTicks ${cfg.heartbeatTicks}, core defaults otherwise`,
    `  target              ${fmtInt(TARGET_ENTRIES_PER_SEC)} committed entries/s`,
    "",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);

  const header = [
    "batch".padStart(6),
    "entries".padStart(11),
    "committed/s".padStart(12),
    "all-3/s".padStart(12),
    "commit ms".padStart(10),
    "all-3 ms".padStart(10),
    "passes".padStart(10),
    "msgs/pass".padStart(10),
    "log ents".padStart(9),
    "heap MiB".padStart(9),
  ].join(" ");
  process.stdout.write(`${header}\n${"-".repeat(header.length)}\n`);
  const results: BatchResult[] = [];
  for (const size of cfg.batchSizes) {
    const r = runBatchSize(size, cfg);
    results.push(r);
    const row = [
      String(size).padStart(6),
      fmtInt(r.entries).padStart(11),
      fmtInt(r.leaderEntriesPerSec).padStart(12),
      fmtInt(r.allEntriesPerSec).padStart(12),
      r.leaderMs.toFixed(1).padStart(10),
      r.allMs.toFixed(1).padStart(10),
      fmtInt(r.passes).padStart(10),
      r.messagesPerPass.toFixed(2).padStart(10),
      fmtInt(r.logEntriesInMemory).padStart(9),
      r.heapUsedMiB.toFixed(0).padStart(9),
    ].join(" ");
    process.stdout.write(`${row}\n`);
  }
  const meets = (r: BatchResult): boolean => r.leaderEntriesPerSec >= TARGET_ENTRIES_PER_SEC;
  const metBy = results.filter(meets).map((r) => r.batchSize);
  const missedBy = results.filter((r) => !meets(r)).map((r) => r.batchSize);
  process.stdout.write(
    `\ntarget ${fmtInt(TARGET_ENTRIES_PER_SEC)} committed entries/s: ` +
      `met at batch sizes [${metBy.join(", ")}], missed at [${missedBy.join(", ")}]\n`,
  );
  const json = {
    bench: "raft",
    node: machine.node,
    cpu: machine.cpu,
    cpus: machine.cpus,
    loadAvg1m: machine.loadAvg1m,
    members: cfg.membersCount,
    entryBytes: cfg.entryBytes,
    warmupMs: cfg.warmupMs,
    durationMs: cfg.durationMs,
    targetEntriesPerSec: TARGET_ENTRIES_PER_SEC,
    targetMetAtBatchSizes: metBy,
    targetMissedAtBatchSizes: missedBy,
    results: results.map((r) => ({
      batchSize: r.batchSize,
      entries: r.entries,
      committedPerSec: Math.round(r.leaderEntriesPerSec),
      allAppliedPerSec: Math.round(r.allEntriesPerSec),
      committedMs: Number(r.leaderMs.toFixed(1)),
      allAppliedMs: Number(r.allMs.toFixed(1)),
      meetsTarget: meets(r),
      passes: r.passes,
      messagesPerPass: Number(r.messagesPerPass.toFixed(2)),
      logEntriesInMemory: r.logEntriesInMemory,
      compactions: r.compactions,
      heapUsedMiB: Number(r.heapUsedMiB.toFixed(1)),
    })),
  };
  process.stdout.write(`${JSON.stringify(json)}\n`);
}
