/**
 * The `state` workload: the cost of the deterministic state layer alone, no
 * Raft and no I/O. MvccStore and LeaseTable are composed as the apply layer
 * composes them:
 *   put with a lease:  r = mvcc.put(req, { leaseExists: (id) => table.has(id) }),
 *                      then table.applyLeaseChanges(r.leaseChanges);
 *   revoke:            keys = table.revoke(id).keys, then mvcc.deleteKeys(keys);
 * and the leader's Lessor hands out the expired leases (`due`) and hears of each
 * applied revoke (`onRevoke`).
 *
 * Two figures (issue 3 acceptance):
 *
 * 1. Put-with-lease throughput onto a lease that already holds `preloadKeys`
 *    keys (A) versus onto a lease granted just before (B), with a put of no
 *    lease as the baseline. etcd applies a put with a lease in time linear in
 *    the keys already on that lease (etcd-io/etcd#15993); here attaching is
 *    O(1), so the A/B ratio must be close to 1. Every round starts from the
 *    same store: `preloadKeys` keys on A plus `preloadKeys` keys on no lease,
 *    history compacted. It puts `puts` new distinct keys per case with
 *    `valueBytes`-byte values, the cases interleaved in chunks of `chunkPuts`
 *    (so the store is the same size under each case, and GC pauses fall on
 *    all of them alike), then undoes them (A and none: deleteKeys, as a
 *    DeleteRange applies; B: revoke) and compacts, so only the lease's key
 *    count differs between the cases. The first round is a warm-up and is
 *    not counted.
 *
 * 2. Expiring `leases` leases (one key each) at once: all are granted with
 *    the same TTL at time 0 (table.grant, put, lessor.onGrant), then at the
 *    deadline the loop takes `lessor.due(now, revokeBatch)` batches and
 *    applies each revoke until none is due. Two ways to apply a batch: one
 *    MVCC revision per lease (as one revoke entry per lease would), or one
 *    deleteKeys of the whole batch's keys (one revision per batch). The time
 *    spent in due() is reported apart from the time spent applying.
 *
 * Every size is bounded by a named maximum, so the program always stops.
 */

import v8 from "node:v8";
import vm from "node:vm";
import { assert } from "../src/raft/index.ts";
import type { LeaseId, WriteOptions } from "../src/state/index.ts";
import {
  LeaseTable,
  Lessor,
  leaseId,
  MAX_LEASES_PER_REVOKE_BATCH,
  MvccStore,
  NO_LEASE,
  RANGE_END_TO_END,
} from "../src/state/index.ts";
import { fmtInt, machineInfo, machineLines, parseWorkloadArgs } from "./common.ts";

/** What a run is asked to do; printed before any figure. */
interface StateBenchConfig {
  /** Keys on lease A (and, as many again, on no lease) before every put measurement. */
  readonly preloadKeys: number;
  /** New distinct keys put per measurement. */
  readonly puts: number;
  readonly valueBytes: number;
  /** Measured rounds of the put comparison, after one warm-up round. */
  readonly putRounds: number;
  /** Puts per case before switching to the next case (the cases are interleaved). */
  readonly chunkPuts: number;
  /** Leases (one key each) expiring at the same deadline. */
  readonly leases: number;
  /** Leases per `lessor.due()` call: one revoke proposal. */
  readonly revokeBatch: number;
  /** Rounds of each expiry mode, alternating. */
  readonly expiryRounds: number;
  readonly leaseTtlSeconds: number;
}

const DEFAULT_CONFIG: StateBenchConfig = {
  preloadKeys: 100_000,
  puts: 30_000,
  valueBytes: 256,
  putRounds: 5,
  chunkPuts: 1_000,
  leases: 100_000,
  revokeBatch: MAX_LEASES_PER_REVOKE_BATCH,
  expiryRounds: 2,
  leaseTtlSeconds: 60,
};

/** Limits on the command line, so a run stays well under a minute of work (CONVENTIONS 5). */
const KEYS_MAX = 1_000_000;
const ROUNDS_MAX = 20;
const REVOKE_BATCH_MAX = 100_000;

/** The lease every measurement finds with `preloadKeys` keys on it. */
const LEASE_A = leaseId(1n);
/** Fresh leases (B) take ids from here up, one per round. */
const FRESH_LEASE_ID_BASE = 1_000n;

type PutCase = "A" | "B" | "none";

const encoder = new TextEncoder();

/**
 * A full garbage collection, run before every timed section so that garbage
 * left by the previous one (undo, compaction, a dropped store) is not collected
 * inside it: without it a 100+ ms mark-compact lands in a random measurement
 * and the A/B ratio swings by 2x. Uses the page's gc() when node was started
 * with --expose-gc, else turns the flag on at run time (v8.setFlagsFromString)
 * and takes gc() from a fresh context.
 */
function exposeGc(): (() => void) | undefined {
  const existing: unknown = Reflect.get(globalThis, "gc");
  if (typeof existing === "function") return existing as () => void;
  v8.setFlagsFromString("--expose-gc");
  const fromContext: unknown = vm.runInNewContext("typeof gc === 'function' ? gc : undefined");
  return typeof fromContext === "function" ? (fromContext as () => void) : undefined;
}

const fullGc = exposeGc();

function collectGarbage(): void {
  if (fullGc !== undefined) fullGc();
}

function keyOf(prefix: string, i: number): Uint8Array {
  return encoder.encode(`${prefix}/${i.toString().padStart(8, "0")}`);
}

function keysOf(prefix: string, n: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => keyOf(prefix, i));
}

function makeValue(bytes: number): Uint8Array {
  const v = new Uint8Array(bytes);
  for (let i = 0; i < v.length; i++) v[i] = (i * 31 + 7) & 0xff;
  return v;
}

/** The store and the lease table, wired as the apply layer wires them. */
interface StateMachine {
  readonly mvcc: MvccStore;
  readonly table: LeaseTable;
  readonly writeOptions: WriteOptions;
}

function newStateMachine(): StateMachine {
  const mvcc = new MvccStore();
  const table = new LeaseTable();
  return { mvcc, table, writeOptions: { leaseExists: (id) => table.has(id) } };
}

/** One applied put: the store, then the lease moves it reports. */
function applyPut(sm: StateMachine, key: Uint8Array, value: Uint8Array, lease: LeaseId): void {
  const r = sm.mvcc.put({ key, value, lease }, sm.writeOptions);
  if (!r.ok) assert(false, `bench: put refused: ${r.error}`);
  sm.table.applyLeaseChanges(r.leaseChanges);
}

/** One applied revoke: the table detaches the keys, the store deletes them in one revision. */
function applyRevoke(sm: StateMachine, id: LeaseId, grantIndex?: number): number {
  const out = sm.table.revoke(id, grantIndex === undefined ? {} : { grantIndex });
  if (!out.ok) assert(false, `bench: revoke of ${id} refused: ${out.reason}`);
  return sm.mvcc.deleteKeys(out.keys).deleted;
}

function liveKeyCount(mvcc: MvccStore): number {
  const r = mvcc.range({ key: RANGE_END_TO_END, rangeEnd: RANGE_END_TO_END, countOnly: true });
  if (!r.ok) assert(false, `bench: count refused: ${r.error}`);
  return r.count;
}

// ---------------------------------------------------------------------------
// 1. Put with a lease: a lease with many keys versus a fresh one.

interface PutMeasurement {
  readonly putsPerSec: number;
  /** Time inside the puts of this case, summed over its chunks. */
  readonly ms: number;
  /** Keys on the target lease when the round started. */
  readonly leaseKeysBefore: number;
}

interface PutRound {
  readonly round: number;
  readonly byCase: ReadonlyMap<PutCase, PutMeasurement>;
}

const PUT_CASES: readonly PutCase[] = ["A", "B", "none"];

/**
 * One round: `puts` new keys per case, the cases interleaved in chunks of
 * `chunkPuts` with the case order rotated per chunk, so that the store grows
 * alike under every case and GC and cache effects fall on all of them. Then
 * undoes the round (A and none: deleteKeys, as a DeleteRange applies; B:
 * revoke) and compacts, so every round starts from the same store.
 */
function measureRound(sm: StateMachine, round: number, cfg: StateBenchConfig): PutRound {
  const { mvcc, table } = sm;
  const value = makeValue(cfg.valueBytes);
  const freshLease = leaseId(FRESH_LEASE_ID_BASE + BigInt(round));
  const g = table.grant(freshLease, cfg.leaseTtlSeconds, { index: round + 1 });
  assert(g.ok, `bench: grant of fresh lease ${freshLease} refused`);
  const leaseOf = (c: PutCase): LeaseId => (c === "A" ? LEASE_A : c === "B" ? freshLease : NO_LEASE);
  // The same key shape for every case: only the lease differs.
  const r2 = round.toString().padStart(2, "0");
  const keys = new Map(PUT_CASES.map((c) => [c, keysOf(`p/r${r2}/${c[0]!.toLowerCase()}`, cfg.puts)]));
  const ms = new Map(PUT_CASES.map((c) => [c, 0]));
  const liveBefore = liveKeyCount(mvcc);
  const leaseKeysBefore = new Map(PUT_CASES.map((c) => [c, table.keyCount(leaseOf(c))]));

  collectGarbage();
  for (let from = 0, chunk = 0; from < cfg.puts; from += cfg.chunkPuts, chunk++) {
    const to = Math.min(cfg.puts, from + cfg.chunkPuts);
    for (let j = 0; j < PUT_CASES.length; j++) {
      const c = PUT_CASES[(chunk + j) % PUT_CASES.length]!;
      const lease = leaseOf(c);
      const ks = keys.get(c)!;
      const t0 = performance.now();
      for (let i = from; i < to; i++) applyPut(sm, ks[i]!, value, lease);
      ms.set(c, ms.get(c)! + performance.now() - t0);
    }
  }

  assert(table.keyCount(LEASE_A) === cfg.preloadKeys + cfg.puts, "bench: lease A lost keys");
  assert(table.keyCount(freshLease) === cfg.puts, "bench: the fresh lease lost keys");
  // Undo, so the next round starts from the same store.
  assert(applyRevoke(sm, freshLease) === cfg.puts, "bench: revoke deleted the wrong number of keys");
  for (const c of ["A", "none"] as const) {
    const r = mvcc.deleteKeys(keys.get(c)!);
    assert(r.deleted === cfg.puts, "bench: delete deleted the wrong number of keys");
    table.applyLeaseChanges(r.leaseChanges);
  }
  const compacted = mvcc.compact(mvcc.currentRevision());
  assert(compacted.ok, "bench: compaction refused");
  assert(liveKeyCount(mvcc) === liveBefore, "bench: store size changed across a round");
  assert(table.keyCount(LEASE_A) === cfg.preloadKeys, "bench: lease A's key count changed");

  const byCase = new Map<PutCase, PutMeasurement>();
  for (const c of PUT_CASES) {
    const m = ms.get(c)!;
    byCase.set(c, { putsPerSec: cfg.puts / (m / 1000), ms: m, leaseKeysBefore: leaseKeysBefore.get(c)! });
  }
  return { round, byCase };
}

function runPutComparison(cfg: StateBenchConfig): { rounds: PutRound[]; preloadMs: number } {
  const sm = newStateMachine();
  const t0 = performance.now();
  const g = sm.table.grant(LEASE_A, cfg.leaseTtlSeconds, { index: 0 });
  assert(g.ok, "bench: grant of lease A refused");
  const value = makeValue(cfg.valueBytes);
  for (let i = 0; i < cfg.preloadKeys; i++) applyPut(sm, keyOf("k/a", i), value, LEASE_A);
  for (let i = 0; i < cfg.preloadKeys; i++) applyPut(sm, keyOf("k/n", i), value, NO_LEASE);
  const compacted = sm.mvcc.compact(sm.mvcc.currentRevision());
  assert(compacted.ok, "bench: compaction refused");
  const preloadMs = performance.now() - t0;

  const rounds: PutRound[] = [];
  // Round 0 is the warm-up.
  for (let round = 0; round <= cfg.putRounds; round++) rounds.push(measureRound(sm, round, cfg));
  return { rounds, preloadMs };
}

// ---------------------------------------------------------------------------
// 2. Expiring many leases at once.

type ExpiryMode = "revisionPerLease" | "revisionPerBatch";

interface ExpiryResult {
  readonly mode: ExpiryMode;
  readonly leases: number;
  /** Granting the leases and putting their keys. */
  readonly setupMs: number;
  /** From the first due() until every lease is revoked and its key deleted. */
  readonly totalMs: number;
  /** Of totalMs, inside lessor.due(). */
  readonly dueMs: number;
  /** Of totalMs, applying: table.revoke, mvcc.deleteKeys, lessor.onRevoke. */
  readonly applyMs: number;
  readonly batches: number;
  readonly revisions: number;
  readonly keysDeleted: number;
}

function runExpiry(mode: ExpiryMode, cfg: StateBenchConfig): ExpiryResult {
  const sm = newStateMachine();
  const { mvcc, table } = sm;
  const lessor = new Lessor();
  const grantAtMs = 0;
  lessor.becomeLeader(grantAtMs, table);
  const value = makeValue(cfg.valueBytes);

  const t0 = performance.now();
  for (let i = 1; i <= cfg.leases; i++) {
    const id = leaseId(BigInt(i));
    const g = table.grant(id, cfg.leaseTtlSeconds, { index: i });
    assert(g.ok, `bench: grant of ${id} refused`);
    lessor.onGrant(table.get(id)!, grantAtMs);
    applyPut(sm, keyOf("l", i), value, id);
  }
  const setupMs = performance.now() - t0;
  const deadlineMs = grantAtMs + cfg.leaseTtlSeconds * 1000;
  assert(lessor.due(deadlineMs - 1).length === 0, "bench: a lease is due before its deadline");
  const revision0 = mvcc.currentRevision();
  collectGarbage();

  const batchesMax = Math.ceil(cfg.leases / cfg.revokeBatch) + 1;
  let batches = 0;
  let dueMs = 0;
  let keysDeleted = 0;
  const start = performance.now();
  for (;;) {
    assert(batches <= batchesMax, `bench: leases still due after ${batchesMax} batches`);
    const d0 = performance.now();
    const refs = lessor.due(deadlineMs, cfg.revokeBatch);
    dueMs += performance.now() - d0;
    if (refs.length === 0) break;
    batches++;
    if (mode === "revisionPerLease") {
      for (const ref of refs) {
        keysDeleted += applyRevoke(sm, ref.id, ref.grantIndex);
        lessor.onRevoke(ref.id);
      }
    } else {
      const keys: Uint8Array[] = [];
      for (const ref of refs) {
        const out = table.revoke(ref.id, { grantIndex: ref.grantIndex });
        if (!out.ok) assert(false, `bench: revoke of ${ref.id} refused: ${out.reason}`);
        for (const k of out.keys) keys.push(k);
      }
      keysDeleted += mvcc.deleteKeys(keys).deleted;
      for (const ref of refs) lessor.onRevoke(ref.id);
    }
  }
  const totalMs = performance.now() - start;

  assert(keysDeleted === cfg.leases, `bench: ${keysDeleted} keys deleted, ${cfg.leases} expected`);
  assert(table.size === 0 && lessor.size === 0, "bench: leases left after expiry");
  assert(liveKeyCount(mvcc) === 0, "bench: keys left after expiry");
  return {
    mode,
    leases: cfg.leases,
    setupMs,
    totalMs,
    dueMs,
    applyMs: totalMs - dueMs,
    batches,
    revisions: mvcc.currentRevision() - revision0,
    keysDeleted,
  };
}

// ---------------------------------------------------------------------------
// Command line and report.

const USAGE = `usage: npm run bench -- state [--preload-keys N] [--puts N] [--put-rounds N] [--chunk-puts N]
                             [--leases N] [--revoke-batch N] [--expiry-rounds N]
`;

/** Parses `--name value` options over the defaults; returns a message on bad input. */
function parseArgs(args: readonly string[]): StateBenchConfig | string {
  let cfg = DEFAULT_CONFIG;
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i]!;
    const v = args[i + 1];
    const max =
      flag === "--put-rounds" || flag === "--expiry-rounds"
        ? ROUNDS_MAX
        : flag === "--revoke-batch"
          ? REVOKE_BATCH_MAX
          : KEYS_MAX;
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n <= 0 || n > max)
      return `${flag} wants an integer in [1, ${max}], got '${v ?? ""}'`;
    switch (flag) {
      case "--preload-keys":
        cfg = { ...cfg, preloadKeys: n };
        break;
      case "--puts":
        cfg = { ...cfg, puts: n };
        break;
      case "--put-rounds":
        cfg = { ...cfg, putRounds: n };
        break;
      case "--chunk-puts":
        cfg = { ...cfg, chunkPuts: n };
        break;
      case "--leases":
        cfg = { ...cfg, leases: n };
        break;
      case "--revoke-batch":
        cfg = { ...cfg, revokeBatch: n };
        break;
      case "--expiry-rounds":
        cfg = { ...cfg, expiryRounds: n };
        break;
      default:
        return `unknown option '${flag}'`;
    }
  }
  return cfg;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function write(lines: readonly string[]): void {
  process.stdout.write(`${lines.join("\n")}\n`);
}

/** The `state` workload. */
export function stateBench(args: readonly string[]): void {
  const cfg = parseWorkloadArgs("state", USAGE, args, parseArgs);
  if (cfg === undefined) return;
  const machine = machineInfo();
  write([
    "bench state: MvccStore + LeaseTable (+ Lessor for expiry), composed as the apply layer does; no Raft, no I/O",
    ...machineLines(machine),
    `  put comparison      ${fmtInt(cfg.puts)} puts of new keys, ${cfg.valueBytes}-byte values, per case per round`,
    `                      store before each: ${fmtInt(cfg.preloadKeys)} keys on lease A + ${fmtInt(cfg.preloadKeys)} on no lease, compacted`,
    `                      cases: A = lease with ${fmtInt(cfg.preloadKeys)} keys, B = fresh lease, none = no lease (baseline)`,
    `                      interleaved in chunks of ${fmtInt(cfg.chunkPuts)} puts (case order rotated per chunk)`,
    `                      ${cfg.putRounds} rounds after 1 warm-up; each round undone (delete/revoke) and compacted`,
    `  garbage collection  ${fullGc === undefined ? "not available: GC pauses fall into the timings" : "full gc() before every timed section (not timed)"}`,
    `  expiry              ${fmtInt(cfg.leases)} leases, 1 key each, TTL ${cfg.leaseTtlSeconds}s, all granted at t=0`,
    `                      due(deadline, ${fmtInt(cfg.revokeBatch)}) per batch; ${cfg.expiryRounds} rounds per mode, alternating`,
    "  reference (etcd)    not run here; etcd applies a put with a lease in time linear in the keys",
    "                      already on that lease (etcd-io/etcd#15993). The point of the A/B ratio: here it is ~1.",
    "",
  ]);

  // 1. Put with a lease.
  const { rounds, preloadMs } = runPutComparison(cfg);
  write([`put with a lease (preload took ${fmtInt(preloadMs)} ms; round 0 is the warm-up, not counted)`]);
  const header = [
    "round".padStart(5),
    "A puts/s".padStart(11),
    "B puts/s".padStart(11),
    "none puts/s".padStart(12),
    "A/B".padStart(6),
    "A us/put".padStart(9),
    "B us/put".padStart(9),
  ].join(" ");
  write([header, "-".repeat(header.length)]);
  const get = (r: PutRound, c: PutCase): PutMeasurement => r.byCase.get(c)!;
  for (const r of rounds) {
    const a = get(r, "A");
    const b = get(r, "B");
    write([
      [
        `${r.round}${r.round === 0 ? "w" : ""}`.padStart(5),
        fmtInt(a.putsPerSec).padStart(11),
        fmtInt(b.putsPerSec).padStart(11),
        fmtInt(get(r, "none").putsPerSec).padStart(12),
        (a.putsPerSec / b.putsPerSec).toFixed(3).padStart(6),
        ((a.ms * 1000) / cfg.puts).toFixed(2).padStart(9),
        ((b.ms * 1000) / cfg.puts).toFixed(2).padStart(9),
      ].join(" "),
    ]);
  }
  const measured = rounds.filter((r) => r.round > 0);
  const medianOf = (c: PutCase): number => median(measured.map((r) => get(r, c).putsPerSec));
  const medA = medianOf("A");
  const medB = medianOf("B");
  const medNone = medianOf("none");
  const ratios = measured.map((r) => get(r, "A").putsPerSec / get(r, "B").putsPerSec);
  const ratioMedian = median(ratios);
  write([
    "-".repeat(header.length),
    `median: A ${fmtInt(medA)} puts/s, B ${fmtInt(medB)} puts/s, none ${fmtInt(medNone)} puts/s`,
    `A/B ratio: median ${ratioMedian.toFixed(3)}, range [${Math.min(...ratios).toFixed(3)}, ${Math.max(...ratios).toFixed(3)}]` +
      ` (1 = a lease's key count does not matter; etcd's cost grows with it)`,
    "",
  ]);

  // 2. Expiry.
  const expiries: ExpiryResult[] = [];
  const modes: readonly ExpiryMode[] = ["revisionPerLease", "revisionPerBatch"];
  for (let i = 0; i < cfg.expiryRounds; i++) for (const m of modes) expiries.push(runExpiry(m, cfg));
  write([`expiring ${fmtInt(cfg.leases)} leases at once (1 key each)`]);
  const eHeader = [
    "mode".padEnd(16),
    "total ms".padStart(9),
    "leases/s".padStart(11),
    "batches".padStart(7),
    "revisions".padStart(9),
    "due() ms".padStart(9),
    "apply ms".padStart(9),
    "setup ms".padStart(9),
  ].join(" ");
  write([eHeader, "-".repeat(eHeader.length)]);
  for (const e of expiries) {
    write([
      [
        e.mode.padEnd(16),
        e.totalMs.toFixed(1).padStart(9),
        fmtInt(e.leases / (e.totalMs / 1000)).padStart(11),
        String(e.batches).padStart(7),
        fmtInt(e.revisions).padStart(9),
        e.dueMs.toFixed(1).padStart(9),
        e.applyMs.toFixed(1).padStart(9),
        fmtInt(e.setupMs).padStart(9),
      ].join(" "),
    ]);
  }
  write([
    "(due() ms: time inside lessor.due(); apply ms: table.revoke + mvcc.deleteKeys + lessor.onRevoke)",
    "",
  ]);

  const json = {
    bench: "state",
    node: machine.node,
    cpu: machine.cpu,
    cpus: machine.cpus,
    loadAvg1m: machine.loadAvg1m,
    gcBeforeTimedSections: fullGc !== undefined,
    config: cfg,
    putWithLease: {
      preloadMs: Number(preloadMs.toFixed(1)),
      medianPutsPerSec: { A: Math.round(medA), B: Math.round(medB), none: Math.round(medNone) },
      ratioAtoBMedian: Number(ratioMedian.toFixed(3)),
      ratioAtoBMin: Number(Math.min(...ratios).toFixed(3)),
      ratioAtoBMax: Number(Math.max(...ratios).toFixed(3)),
      rounds: measured.map((r) => ({
        round: r.round,
        putsPerSec: {
          A: Math.round(get(r, "A").putsPerSec),
          B: Math.round(get(r, "B").putsPerSec),
          none: Math.round(get(r, "none").putsPerSec),
        },
        leaseKeysBefore: { A: get(r, "A").leaseKeysBefore, B: get(r, "B").leaseKeysBefore },
      })),
    },
    expiry: expiries.map((e) => ({
      mode: e.mode,
      leases: e.leases,
      totalMs: Number(e.totalMs.toFixed(1)),
      leasesPerSec: Math.round(e.leases / (e.totalMs / 1000)),
      batches: e.batches,
      revisions: e.revisions,
      dueMs: Number(e.dueMs.toFixed(1)),
      applyMs: Number(e.applyMs.toFixed(1)),
      setupMs: Number(e.setupMs.toFixed(1)),
    })),
    heapUsedMiB: Number((process.memoryUsage().heapUsed / (1 << 20)).toFixed(1)),
  };
  process.stdout.write(`${JSON.stringify(json)}\n`);
}
