/**
 * /proc parsing of the benchmark harness (bench/harness/procstat.ts): CPU
 * ticks from /proc/<pid>/stat whatever the command name holds, VmRSS from
 * /proc/<pid>/status, and a live sample of this very process.
 */

import { describe, expect, it } from "vitest";
import { parseStat, parseVmRss, sampleProc } from "../../bench/harness/procstat.ts";

/** A /proc/<pid>/stat line with the given command name, utime and stime. */
const statLine = (comm: string, utime: number, stime: number): string =>
  `4242 (${comm}) S 1 4242 4242 0 -1 4194560 5000 0 12 0 ${utime} ${stime} 3 4 20 0 11 0 123456 1100000000 50000 18446744073709551615 1 1 0 0 0 0 0 16781312 17922 0 0 0 17 1 0 0 0 0 0\n`;

describe("parseStat", () => {
  it("reads utime and stime (fields 14 and 15)", () => {
    expect(parseStat(statLine("node", 1234, 56))).toEqual({ utimeTicks: 1234, stimeTicks: 56 });
  });

  it("counts fields after the last ')' so a name with spaces and parentheses does not shift them", () => {
    expect(parseStat(statLine("a b) (c 7 8", 99, 1))).toEqual({ utimeTicks: 99, stimeTicks: 1 });
  });

  it("throws on text that is not a stat line", () => {
    expect(() => parseStat("no parenthesis here")).toThrow();
    expect(() => parseStat("1 (x) S 1 2")).toThrow(/utime/);
  });
});

describe("parseVmRss", () => {
  it("reads VmRSS in bytes", () => {
    const status = "Name:\tnode\nVmPeak:\t  999 kB\nVmRSS:\t  204800 kB\nRssAnon:\t 1 kB\n";
    expect(parseVmRss(status)).toBe(204_800 * 1024);
  });

  it("throws when there is no VmRSS (a kernel thread, say)", () => {
    expect(() => parseVmRss("Name:\tkthreadd\nState:\tS\n")).toThrow(/VmRSS/);
  });
});

describe("sampleProc", () => {
  it("samples this process, and nothing for a pid that does not exist", () => {
    const s = sampleProc(process.pid);
    expect(s?.pid).toBe(process.pid);
    expect(s!.rssBytes).toBeGreaterThan(1024 * 1024);
    expect(s!.cpuUs).toBeGreaterThan(0);
    expect(sampleProc(2 ** 22 + 12345)).toBeUndefined();
  });
});
