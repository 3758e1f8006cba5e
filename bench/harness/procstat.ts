/**
 * What /proc says about a process: CPU time (utime + stime of
 * /proc/<pid>/stat) and resident memory (VmRSS of /proc/<pid>/status).
 *
 * Contract:
 * - `parseStat` and `parseVmRss` are pure: they take the file's text. The
 *   process name in /proc/<pid>/stat may hold spaces and parentheses, so the
 *   fields are counted from the last ')'. Both throw on text they cannot read.
 * - `sampleProc` reads both files; undefined when the process is gone (a
 *   killed member has no /proc entry), never a partial sample.
 * - CPU is in microseconds: ticks times 1e6 / CLK_TCK (`getconf CLK_TCK`,
 *   100 on Linux when getconf is missing). Resolution is one tick (10 ms), so
 *   per-operation figures need windows of seconds.
 */

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** CPU time a process has used, in clock ticks. */
export interface StatTimes {
  readonly utimeTicks: number;
  readonly stimeTicks: number;
}

/** utime and stime (fields 14 and 15) of /proc/<pid>/stat. */
export function parseStat(text: string): StatTimes {
  const close = text.lastIndexOf(")");
  if (close < 0) throw new Error("proc stat: no ')' after the command name");
  // Fields from 3 (state) on; utime is field 14, stime field 15.
  const fields = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isInteger(utime) || !Number.isInteger(stime) || utime < 0 || stime < 0)
    throw new Error(`proc stat: bad utime/stime '${fields[11]}' '${fields[12]}'`);
  return { utimeTicks: utime, stimeTicks: stime };
}

/** VmRSS of /proc/<pid>/status, in bytes. */
export function parseVmRss(text: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB\s*$/m.exec(text);
  if (m === null) throw new Error("proc status: no VmRSS line");
  return Number(m[1]) * 1024;
}

let clockTicks: number | undefined;

/** Clock ticks per second for /proc times. */
export function clkTck(): number {
  if (clockTicks === undefined) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const n = Number(r.stdout?.trim());
    clockTicks = r.status === 0 && Number.isInteger(n) && n > 0 ? n : 100;
  }
  return clockTicks;
}

/** One reading of a process. */
export interface ProcSample {
  readonly pid: number;
  /** utime + stime, microseconds. */
  readonly cpuUs: number;
  readonly rssBytes: number;
}

/** Reads process `pid` now; undefined when it no longer exists. */
export function sampleProc(pid: number): ProcSample | undefined {
  let stat: string;
  let status: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const t = parseStat(stat);
  return { pid, cpuUs: ((t.utimeTicks + t.stimeTicks) * 1e6) / clkTck(), rssBytes: parseVmRss(status) };
}
