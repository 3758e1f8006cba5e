/**
 * The pure parts of the side-by-side harness: command-line options
 * (bench/harness/side.ts), the flatness of a per-second curve
 * (bench/workloads/throughput.ts) and the goal verdicts of issue 6 §2
 * (bench/harness/goals.ts) on made-up results.
 */

import { describe, expect, it } from "vitest";
import { checkGoals } from "../../bench/harness/goals.ts";
import type { Outcome, WorkloadResult } from "../../bench/harness/report.ts";
import { parseOptions } from "../../bench/harness/side.ts";
import type { SideRun } from "../../bench/harness/workload.ts";
import { flatness } from "../../bench/workloads/throughput.ts";

describe("parseOptions", () => {
  it("has the documented defaults", () => {
    expect(parseOptions([])).toEqual({
      seconds: 10,
      warmup: 5,
      clients: 2,
      concurrency: 64,
      members: 3,
      vsEtcd: false,
      leases: undefined,
      kills: undefined,
      ttl: undefined,
      streams: undefined,
    });
  });

  it("takes --flag value and --flag=value", () => {
    const o = parseOptions(["--vs-etcd", "--members", "1", "--seconds=5", "--clients", "4", "--leases=500"]);
    expect(o).toMatchObject({ vsEtcd: true, members: 1, seconds: 5, clients: 4, leases: 500 });
  });

  it("refuses unknown flags, missing values, out-of-range values and two members", () => {
    expect(parseOptions(["--fast"])).toBe("unknown option --fast");
    expect(parseOptions(["--seconds"])).toMatch(/--seconds takes an integer/);
    expect(parseOptions(["--seconds", "0"])).toMatch(/1\.\.600/);
    expect(parseOptions(["--clients", "2.5"])).toMatch(/--clients/);
    expect(parseOptions(["--members", "2"])).toBe("--members takes 1 or 3");
  });
});

describe("flatness", () => {
  it("is the last third's mean rate over the first third's", () => {
    expect(flatness([100, 100, 100, 100, 100, 100])).toBe(1);
    expect(flatness([200, 200, 150, 150, 100, 100])).toBe(0.5);
    expect(flatness([10, 20, 30])).toBe(3);
  });

  it("is undefined (null) for fewer than 3 seconds or a first third at 0", () => {
    expect(flatness([5, 5])).toBeNull();
    expect(flatness([0, 1, 2])).toBeNull();
  });
});

/** A run with just these figures. */
function run(figures: Record<string, number | null>): SideRun {
  return {
    figures: Object.entries(figures).map(([id, value]) => ({
      id,
      label: id,
      value,
      better: "none",
      digits: 0,
    })),
    ops: 1,
    errors: 0,
    firstError: undefined,
    latencyUs: undefined,
    perSecond: undefined,
    server: undefined,
    clientCpuPct: [],
    notes: [],
  };
}

const result = (workload: string, leasehold: Outcome, etcd: Outcome | null): WorkloadResult => ({
  workload,
  config: "",
  members: 3,
  leasehold,
  etcd,
});

const verdicts = (rs: WorkloadResult[]) => Object.fromEntries(checkGoals(rs).map((g) => [g.label, g.met]));

describe("checkGoals", () => {
  it("compares ratios with the issue's thresholds", () => {
    const v = verdicts([
      result("grant", run({ rate: 150, "cpu-per-op": 10 }), run({ rate: 100, "cpu-per-op": 10 })),
      result("put", run({ rate: 149 }), run({ rate: 100 })),
      result("memory", run({ "bytes-per-lease-key": 60 }), run({ "bytes-per-lease-key": 100 })),
      result("watch", run({ "p99-ms": 5 }), run({ "p99-ms": 5 })),
    ]);
    expect(v["grant ops/s"]).toBe("met");
    expect(v["put ops/s, no lease"]).toBe("NOT MET");
    expect(v["memory per lease with one key, bytes"]).toBe("NOT MET");
    expect(v["watch notification p99 ms"]).toBe("met");
    expect(v["server CPU µs/op: grant"]).toBe("met");
  });

  it("wants the shared-lease puts both 5x faster and flat", () => {
    const fastNotFlat = verdicts([
      result("put-shared-lease", run({ rate: 500, flatness: 0.5 }), run({ rate: 100 })),
    ]);
    const fastFlat = verdicts([
      result("put-shared-lease", run({ rate: 500, flatness: 0.9 }), run({ rate: 100 })),
    ]);
    expect(fastNotFlat["put ops/s onto one shared lease"]).toBe("NOT MET");
    expect(fastFlat["put ops/s onto one shared lease"]).toBe("met");
  });

  it("judges expiry on leasehold alone; ratio goals are n/a without etcd, and a failed run is not met", () => {
    const v = verdicts([
      result("expiry", run({ "late-max-ms": 900, "all-deleted-s": 0.5 }), null),
      result("lock", run({ rate: 10 }), null),
      result("keepalive", { error: "boom" }, run({ rate: 1 })),
    ]);
    expect(v["expiry of 20,000 leases: max lateness ms"]).toBe("met");
    expect(v["lock acquisitions/s, contended"]).toBe("n/a");
    expect(v["keepalive acks/s"]).toBe("NOT MET");
    const late = verdicts([result("expiry", run({ "late-max-ms": 900, "all-deleted-s": null }), null)]);
    expect(late["expiry of 20,000 leases: max lateness ms"]).toBe("NOT MET");
  });
});
