/**
 * Printing what a side-by-side run measured: the per-workload table
 * (figure, leasehold, etcd, ratio), the notes, and the markdown report of
 * `all` (goals first, then every figure).
 *
 * The ratio is always leasehold / etcd, whichever way is better; the figure's
 * `better` says which way that is.
 */

import type { GoalRow } from "./goals.ts";
import type { Figure, SideRun } from "./workload.ts";

/** One system's outcome for a workload: its figures, or why it has none. */
export type Outcome = SideRun | { readonly error: string };

export interface WorkloadResult {
  readonly workload: string;
  readonly config: string;
  readonly members: number;
  readonly leasehold: Outcome;
  /** null: etcd not run (no --vs-etcd, or not on the PATH). */
  readonly etcd: Outcome | null;
}

export const isRun = (o: Outcome | null): o is SideRun => o !== null && !("error" in o);

export function figureOf(o: Outcome | null, id: string): number | null {
  return isRun(o) ? (o.figures.find((f) => f.id === id)?.value ?? null) : null;
}

export function fmtNum(v: number | null, digits = 0): string {
  if (v === null) return "-";
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function ratio(lh: number | null, et: number | null): number | null {
  return lh === null || et === null || et === 0 ? null : lh / et;
}

export const fmtRatio = (r: number | null): string => (r === null ? "-" : `${r.toFixed(2)}x`);

interface Row {
  readonly label: string;
  readonly lh: string;
  readonly et: string;
  readonly ratio: string;
}

function rows(r: WorkloadResult): Row[] {
  const lh = r.leasehold;
  const et = r.etcd;
  const figs: Figure[] = [];
  for (const o of [lh, et]) {
    if (!isRun(o)) continue;
    for (const f of o.figures) if (!figs.some((g) => g.id === f.id)) figs.push(f);
  }
  return figs.map((f) => {
    const a = figureOf(lh, f.id);
    const b = figureOf(et, f.id);
    return {
      label: f.label,
      lh: fmtNum(a, f.digits),
      et: et === null ? "" : fmtNum(b, f.digits),
      ratio: et === null ? "" : fmtRatio(ratio(a, b)),
    };
  });
}

function outcomeNotes(name: string, o: Outcome | null): string[] {
  if (o === null) return [];
  if (!isRun(o)) return [`${name}: FAILED: ${o.error}`];
  const out = o.notes.map((n) => `${name}: ${n}`);
  if (o.errors > 0)
    out.push(`${name}: ${o.errors} failed operations${o.firstError ? ` (first: ${o.firstError})` : ""}`);
  return out;
}

/** The readable table of one workload, for the terminal. */
export function textTable(r: WorkloadResult): string {
  const withEtcd = r.etcd !== null;
  const rs = rows(r);
  const w = Math.max(30, ...rs.map((x) => x.label.length));
  const head = `  ${"figure".padEnd(w)}  ${"leasehold".padStart(12)}${withEtcd ? `  ${"etcd".padStart(12)}  ${"ratio".padStart(7)}` : ""}`;
  const lines = [
    `${r.workload} (${r.members} member${r.members === 1 ? "" : "s"}): ${r.config}`,
    head,
    ...rs.map(
      (x) =>
        `  ${x.label.padEnd(w)}  ${x.lh.padStart(12)}${withEtcd ? `  ${x.et.padStart(12)}  ${x.ratio.padStart(7)}` : ""}`,
    ),
    ...[...outcomeNotes("leasehold", r.leasehold), ...outcomeNotes("etcd", r.etcd)].map((n) => `  * ${n}`),
  ];
  return `${lines.join("\n")}\n`;
}

export function goalsText(goals: readonly GoalRow[]): string {
  const w = Math.max(...goals.map((g) => g.label.length));
  const gw = Math.max(...goals.map((g) => g.goal.length));
  const lines = [
    `  ${"goal (issue 6)".padEnd(w)}  ${"leasehold".padStart(12)}  ${"etcd".padStart(12)}  ${"ratio".padStart(7)}  ${"target".padEnd(gw)}  met`,
    ...goals.map(
      (g) =>
        `  ${g.label.padEnd(w)}  ${g.leasehold.padStart(12)}  ${g.etcd.padStart(12)}  ${g.ratio.padStart(7)}  ${g.goal.padEnd(gw)}  ${g.met}`,
    ),
  ];
  return `${lines.join("\n")}\n`;
}

const md = (s: string): string => s.replace(/\|/g, "\\|");

/** The markdown report of a whole run. */
export function markdown(
  title: string,
  header: readonly string[],
  goals: readonly GoalRow[],
  results: readonly WorkloadResult[],
): string {
  const out = [`# ${title}`, "", ...header.map((h) => `    ${h}`), "", "## Goals (issue 6 §2)", ""];
  out.push(
    "| workload | figure | leasehold | etcd | ratio | goal | met |",
    "|---|---|---:|---:|---:|---|---|",
  );
  for (const g of goals)
    out.push(
      `| ${g.workload} | ${md(g.label)} | ${g.leasehold} | ${g.etcd} | ${g.ratio} | ${md(g.goal)} | ${g.met} |`,
    );
  out.push("", "## Every figure", "");
  for (const r of results) {
    out.push(`### ${r.workload} (${r.members} member${r.members === 1 ? "" : "s"})`, "", md(r.config), "");
    out.push("| figure | leasehold | etcd | ratio |", "|---|---:|---:|---:|");
    for (const x of rows(r)) out.push(`| ${md(x.label)} | ${x.lh} | ${x.et} | ${x.ratio} |`);
    const notes = [...outcomeNotes("leasehold", r.leasehold), ...outcomeNotes("etcd", r.etcd)];
    if (notes.length > 0) out.push("", ...notes.map((n) => `- ${md(n)}`));
    out.push("");
  }
  return `${out.join("\n")}\n`;
}
