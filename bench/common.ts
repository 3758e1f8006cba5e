/**
 * What every workload shares: the command-line prelude (help, parse, usage
 * errors with exit code 2), the machine description printed before the
 * figures and carried in the JSON line, and number formatting.
 */

import os from "node:os";

/** The machine a run measured, as printed and as recorded in the results line. */
export interface MachineInfo {
  readonly node: string;
  readonly cpu: string;
  readonly cpus: number;
  /** 1-minute load average at the start: other processes on a shared machine skew the figures. */
  readonly loadAvg1m: number;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    node: process.version,
    cpu: cpus[0]?.model.trim() ?? "unknown",
    cpus: cpus.length,
    loadAvg1m: Number((os.loadavg()[0] ?? 0).toFixed(2)),
  };
}

/** The three configuration lines that open every workload's output. */
export function machineLines(m: MachineInfo): string[] {
  return [
    `  node                ${m.node} (${process.platform}/${process.arch})`,
    `  cpu                 ${m.cpu} x${m.cpus}`,
    `  load average        ${m.loadAvg1m.toFixed(2)} (1 min, at start; other processes skew the figures)`,
  ];
}

/**
 * Handles `--help` and parsing for workload `name`: returns the configuration,
 * or undefined when the run should stop (help printed, or a usage error
 * reported with exit code 2). `parse` returns an error message for bad input.
 */
export function parseWorkloadArgs<C>(
  name: string,
  usage: string,
  args: readonly string[],
  parse: (args: readonly string[]) => C | string,
): C | undefined {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(usage);
    return undefined;
  }
  const parsed = parse(args);
  if (typeof parsed === "string") {
    process.stderr.write(`bench ${name}: ${parsed}\n${usage}`);
    process.exitCode = 2;
    return undefined;
  }
  return parsed;
}

/** An integer with thousands separators, locale-independent. */
export const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US");
