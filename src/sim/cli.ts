/**
 * The simulator command, also `leasehold sim`.
 * `npm run sim -- --seeds N [--seed-start S] [--jobs J]` runs N seeds and ends
 * with `sim: N seeds, V violations`; `npm run sim -- --seed S --trace` replays
 * one seed and prints its fault mix and full trace. A failing seed prints the
 * one command that reproduces it. Exit code 1 when any seed has a violation.
 */

import { fork } from "node:child_process";
import { parseArgs } from "node:util";
import { describeMix, reproduceCommand, runSeed } from "./simulator.ts";

/** The program that worker processes run: the `leasehold` command itself. */
const WORKER_ENTRY = new URL("../../bin/leasehold.js", import.meta.url).pathname;

interface Summary {
  seeds: number;
  violations: number;
  failed: number[];
  events: number;
  holdings: number;
  expiries: number;
  watchEvents: number;
  /** Worst expiry after its lease's last keepalive + TTL, over all seeds (ms). */
  maxExpiryLatenessMs: number;
}

function emptySummary(): Summary {
  return {
    seeds: 0,
    violations: 0,
    failed: [],
    events: 0,
    holdings: 0,
    expiries: 0,
    watchEvents: 0,
    maxExpiryLatenessMs: Number.NEGATIVE_INFINITY,
  };
}

function runRange(start: number, count: number, quiet: boolean): Summary {
  const summary = emptySummary();
  for (let seed = start; seed < start + count; seed++) {
    const res = runSeed(seed);
    summary.seeds++;
    summary.events += res.stats.events;
    summary.holdings += res.stats.holdings;
    summary.expiries += res.stats.expiries;
    summary.watchEvents += res.stats.watchEvents;
    summary.maxExpiryLatenessMs = Math.max(summary.maxExpiryLatenessMs, res.stats.maxExpiryLatenessMs);
    if (res.violations.length > 0) {
      summary.violations += res.violations.length;
      summary.failed.push(seed);
      console.log(`FAIL ${describeMix(seed, res.mix)}`);
      for (const v of res.violations) console.log(`  ${v.split("\n").join("\n  ")}`);
      console.log(`  reproduce: ${reproduceCommand(seed)}`);
    } else if (!quiet) {
      const s = res.stats;
      console.log(
        `ok seed=${seed} events=${s.events} committed=${s.committed} ok=${s.opsOk} unknown=${s.opsUnknown} holdings=${s.holdings} expiries=${s.expiries} watch-events=${s.watchEvents}`,
      );
    }
  }
  return summary;
}

async function runParallel(start: number, count: number, jobs: number): Promise<Summary> {
  const per = Math.ceil(count / jobs);
  const parts: Promise<Summary>[] = [];
  for (let j = 0; j < jobs; j++) {
    const s = start + j * per;
    const n = Math.min(per, start + count - s);
    if (n <= 0) continue;
    parts.push(
      new Promise((resolve, reject) => {
        const child = fork(WORKER_ENTRY, ["sim", "--worker", "--seed-start", `${s}`, "--seeds", `${n}`], {
          stdio: ["ignore", "pipe", "inherit", "ipc"],
        });
        child.stdout!.on("data", (b: Buffer) => process.stdout.write(b));
        child.on("message", (m) => resolve(m as Summary));
        child.on("exit", (code) => {
          if (code !== 0) reject(new Error(`sim worker for seeds ${s}..${s + n - 1} exited with ${code}`));
        });
      }),
    );
  }
  const all = await Promise.all(parts);
  return all.reduce(
    (a, b) => ({
      seeds: a.seeds + b.seeds,
      violations: a.violations + b.violations,
      failed: [...a.failed, ...b.failed],
      events: a.events + b.events,
      holdings: a.holdings + b.holdings,
      expiries: a.expiries + b.expiries,
      watchEvents: a.watchEvents + b.watchEvents,
      // -Infinity crosses the IPC channel as null.
      maxExpiryLatenessMs: Math.max(
        a.maxExpiryLatenessMs ?? Number.NEGATIVE_INFINITY,
        b.maxExpiryLatenessMs ?? Number.NEGATIVE_INFINITY,
      ),
    }),
    emptySummary(),
  );
}

const SIM_USAGE = `usage: leasehold sim --seeds N [--seed-start S] [--jobs J] [--verbose]
       leasehold sim --seed S [--trace]

The deterministic cluster simulator: each seed is a cluster of real Raft cores, state
machines and lessors on a virtual clock and network with a fault mix, checked for
linearizability, lease safety and watch order. --seeds runs N seeds from S
on J worker processes (default S 1, J 2) and ends with "sim: N seeds, V violations"; --seed replays one,
with --trace printing its fault mix and every event. Exit code 1 when a seed has a
violation (its reproducing command is printed), 2 for a bad flag.
`;

/** Worker processes at most (the machines here have 2 cores). */
const JOBS_MAX = 64;

function parseSimArgs(args: readonly string[]) {
  return parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      seeds: { type: "string" },
      "seed-start": { type: "string" },
      seed: { type: "string" },
      trace: { type: "boolean", default: false },
      jobs: { type: "string" },
      verbose: { type: "boolean", default: false },
      worker: { type: "boolean", default: false },
    },
  });
}

/** Runs the simulator command with the given arguments (without the program name). */
export async function simMain(args: readonly string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(SIM_USAGE);
    return;
  }
  let parsed: ReturnType<typeof parseSimArgs>;
  try {
    parsed = parseSimArgs(args);
  } catch (e) {
    console.error(`sim: ${(e as Error).message}`);
    process.exitCode = 2;
    return;
  }
  const values = parsed.values;
  if (values.seed !== undefined) {
    const seed = Number(values.seed);
    if (!Number.isSafeInteger(seed) || seed < 0) {
      console.error(`sim: --seed must be a non-negative integer, got '${values.seed}'`);
      process.exitCode = 2;
      return;
    }
    const res = runSeed(seed, values.trace ? { trace: (l) => console.log(l) } : {});
    console.log(describeMix(seed, res.mix));
    for (const v of res.violations) console.log(`VIOLATION ${v}`);
    const s = res.stats;
    console.log(
      `stats: events=${s.events} committed=${s.committed} ok=${s.opsOk} unknown=${s.opsUnknown} holdings=${s.holdings} expiries=${s.expiries} max-expiry-lateness=${s.maxExpiryLatenessMs.toFixed(1)}ms watch-events=${s.watchEvents} virtual=${s.virtualMs}ms`,
    );
    if (res.violations.length > 0) console.log(`reproduce: ${reproduceCommand(seed)}`);
    console.log(`sim: 1 seeds, ${res.violations.length} violations`);
    process.exitCode = res.violations.length > 0 ? 1 : 0;
    return;
  }
  const count = Number(values.seeds ?? "100");
  const start = Number(values["seed-start"] ?? "1");
  if (!Number.isSafeInteger(count) || count <= 0 || !Number.isSafeInteger(start)) {
    console.error("sim: --seeds must be a positive integer and --seed-start an integer");
    process.exitCode = 2;
    return;
  }
  if (values.worker) {
    const summary = runRange(start, count, !values.verbose);
    process.send!(summary);
    return;
  }
  const jobs = Number(values.jobs ?? "2");
  if (!Number.isSafeInteger(jobs) || jobs < 1 || jobs > JOBS_MAX) {
    console.error(`sim: --jobs must be an integer from 1 to ${JOBS_MAX}, got '${values.jobs}'`);
    process.exitCode = 2;
    return;
  }
  const t0 = performance.now();
  const summary =
    jobs === 1 ? runRange(start, count, !values.verbose) : await runParallel(start, count, jobs);
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `seeds ${start}..${start + count - 1}, ${summary.events} events, ${secs.toFixed(1)}s wall, ${jobs} jobs`,
  );
  console.log(
    `leases: ${summary.holdings} holdings, ${summary.expiries} expiries, latest expiry ${summary.maxExpiryLatenessMs.toFixed(1)}ms after last keepalive + TTL; ${summary.watchEvents} watch events checked`,
  );
  if (summary.failed.length > 0) console.log(`failed seeds: ${summary.failed.join(" ")}`);
  console.log(`sim: ${summary.seeds} seeds, ${summary.violations} violations`);
  process.exitCode = summary.violations > 0 ? 1 : 0;
}
