/**
 * The goals of issue 6 §2, checked against one run's results. Ratios are
 * leasehold / etcd from the same run; a goal that needs etcd's figure is
 * "n/a" without it, and one whose figure is missing (the run failed) is
 * "not met".
 *
 * "Flat over the run" (put onto one shared lease) is read as: the window's
 * last third runs at least FLAT_MIN of its first third's rate (throughput.ts
 * `flatness`). "All deleted <= 1 s after the deadline" (expiry) as: every
 * key's delete event arrived, each at most 1 s after its own lease's deadline.
 */

import { figureOf, fmtNum, fmtRatio, ratio, type WorkloadResult } from "./report.ts";

export const FLAT_MIN = 0.8;

export interface GoalRow {
  readonly workload: string;
  readonly label: string;
  readonly leasehold: string;
  readonly etcd: string;
  readonly ratio: string;
  readonly goal: string;
  readonly met: "met" | "NOT MET" | "n/a";
}

type Verdict = boolean | null;

interface Goal {
  readonly workload: string;
  readonly figure: string;
  readonly label: string;
  readonly goal: string;
  readonly digits: number;
  /** lh and et are the figure's values; r the workload's whole result. */
  readonly check: (lh: number | null, et: number | null, r: WorkloadResult) => Verdict;
}

const atLeastTimes =
  (k: number) =>
  (lh: number | null, et: number | null): Verdict => {
    const x = ratio(lh, et);
    return et === null ? null : x !== null && x >= k;
  };
const atMostTimes =
  (k: number) =>
  (lh: number | null, et: number | null): Verdict => {
    const x = ratio(lh, et);
    return et === null ? null : x !== null && x <= k;
  };

const GOALS: readonly Goal[] = [
  {
    workload: "grant",
    figure: "rate",
    label: "grant ops/s",
    goal: ">= 1.5x etcd",
    digits: 0,
    check: atLeastTimes(1.5),
  },
  {
    workload: "keepalive",
    figure: "rate",
    label: "keepalive acks/s",
    goal: ">= 1.5x etcd",
    digits: 0,
    check: atLeastTimes(1.5),
  },
  {
    workload: "put",
    figure: "rate",
    label: "put ops/s, no lease",
    goal: ">= 1.5x etcd",
    digits: 0,
    check: atLeastTimes(1.5),
  },
  {
    workload: "put-shared-lease",
    figure: "rate",
    label: "put ops/s onto one shared lease",
    goal: `>= 5x etcd, and flat (last/first third >= ${FLAT_MIN})`,
    digits: 0,
    check: (lh, et, r) => {
      const flat = figureOf(r.leasehold, "flatness");
      const fast = atLeastTimes(5)(lh, et);
      return fast === null ? null : fast && flat !== null && flat >= FLAT_MIN;
    },
  },
  {
    workload: "lock",
    figure: "rate",
    label: "lock acquisitions/s, contended",
    goal: ">= 2x etcd",
    digits: 0,
    check: atLeastTimes(2),
  },
  {
    workload: "expiry",
    figure: "late-max-ms",
    label: "expiry of 20,000 leases: max lateness ms",
    goal: "all deleted <= 1 s after the deadline",
    digits: 0,
    check: (lh, _et, r) => lh !== null && lh <= 1000 && figureOf(r.leasehold, "all-deleted-s") !== null,
  },
  {
    workload: "failover",
    figure: "gap-median-ms",
    label: "failover kill-to-first-write ms (median)",
    goal: "<= etcd's",
    digits: 0,
    check: atMostTimes(1),
  },
  {
    workload: "failover",
    figure: "lease-survived",
    label: "failover: kept-alive lease survived (1 yes)",
    goal: "survives",
    digits: 0,
    check: (lh) => lh === 1,
  },
  {
    workload: "memory",
    figure: "bytes-per-lease-key",
    label: "memory per lease with one key, bytes",
    goal: "<= 0.5x etcd",
    digits: 0,
    check: atMostTimes(0.5),
  },
  {
    workload: "watch",
    figure: "p99-ms",
    label: "watch notification p99 ms",
    goal: "<= etcd's",
    digits: 2,
    check: atMostTimes(1),
  },
];

function row(g: Goal, r: WorkloadResult): GoalRow {
  const lh = figureOf(r.leasehold, g.figure);
  const et = figureOf(r.etcd, g.figure);
  const v = g.check(lh, et, r);
  return {
    workload: g.workload,
    label: g.label,
    leasehold: fmtNum(lh, g.digits),
    etcd: fmtNum(et, g.digits),
    ratio: fmtRatio(ratio(lh, et)),
    goal: g.goal,
    met: v === null ? "n/a" : v ? "met" : "NOT MET",
  };
}

/** Every goal whose workload ran, then server CPU per op for every workload that reports it. */
export function checkGoals(results: readonly WorkloadResult[]): GoalRow[] {
  const out: GoalRow[] = [];
  for (const g of GOALS) {
    const r = results.find((x) => x.workload === g.workload);
    if (r !== undefined) out.push(row(g, r));
  }
  for (const r of results) {
    if (figureOf(r.leasehold, "cpu-per-op") === null && figureOf(r.etcd, "cpu-per-op") === null) continue;
    out.push(
      row(
        {
          workload: r.workload,
          figure: "cpu-per-op",
          label: `server CPU µs/op: ${r.workload}`,
          goal: "<= etcd's",
          digits: 1,
          check: atMostTimes(1),
        },
        r,
      ),
    );
  }
  return out;
}
