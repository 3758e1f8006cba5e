/**
 * How the client commands print: one result, three formats (`-w/--write-out`).
 *
 * Contract:
 * - `simple` (the default, except `status`: `table`) is etcdctl's human
 *   output where etcdctl has the command (`OK`, `key\nvalue`, `lease
 *   694d7a6c0e4ba20b granted with TTL(60s)`, ...), one line per fact
 *   otherwise.
 * - `json` is one JSON object per result, on one line: field names in
 *   snake_case like the protos, keys and values as UTF-8 text, lease ids as
 *   16 hex digits (as etcdctl prints and takes them), member ids in hex,
 *   int64 values that may pass 2^53 as decimal strings.
 * - `table` is an ASCII table (etcdctl's tablewriter look); a result without a
 *   table of its own prints its simple form.
 * - Results go to stdout; notes, warnings and errors to stderr, one line each,
 *   prefixed `leasehold: `.
 * - Nothing here talks to a cluster.
 */

import { InvalidArgumentError } from "commander";

/** The formats `-w/--write-out` takes. */
export const WRITE_OUT_FORMATS = ["simple", "json", "table"] as const;
export type WriteOut = (typeof WRITE_OUT_FORMATS)[number];

/** A table: a header and rows of cells, as many cells as header columns. */
export interface Table {
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** One result in each format; `simple` lines have no trailing newline. */
export interface Rendered {
  readonly simple: readonly string[];
  readonly json: unknown;
  readonly table?: Table;
}

/** A mistake in how the command was called (exit code 2), found after commander parsed it. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** `result` as `format` shows it, ending with a newline. */
export function render(result: Rendered, format: WriteOut): string {
  switch (format) {
    case "simple":
      return result.simple.map((l) => `${l}\n`).join("");
    case "json":
      return `${JSON.stringify(result.json, jsonValue)}\n`;
    case "table":
      return result.table === undefined ? render(result, "simple") : renderTable(result.table);
  }
}

/** JSON.stringify's replacer: bigints as decimal strings (JSON numbers lose precision past 2^53). */
function jsonValue(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/** etcdctl's table look: `+---+` rules, centered header, cells left-aligned. */
export function renderTable(table: Table): string {
  const widths = table.header.map((h, i) =>
    Math.max(h.length, ...table.rows.map((r) => (r[i] ?? "").length)),
  );
  const rule = `+${widths.map((w) => "-".repeat(w + 2)).join("+")}+\n`;
  const line = (cells: readonly string[], center: boolean) =>
    `|${widths
      .map((w, i) => {
        const c = cells[i] ?? "";
        const pad = w - c.length;
        const left = center ? Math.floor(pad / 2) : 0;
        return ` ${" ".repeat(left)}${c}${" ".repeat(pad - left)} `;
      })
      .join("|")}|\n`;
  return `${rule}${line(table.header, true)}${rule}${table.rows.map((r) => line(r, false)).join("")}${rule}`;
}

/** Where a command prints: results to stdout in the chosen format, notes to stderr. */
export class Output {
  constructor(readonly format: WriteOut) {}

  /** A result, on stdout (or on stderr when stdout belongs to a child command). */
  print(result: Rendered, to: NodeJS.WritableStream = process.stdout): void {
    to.write(render(result, this.format));
  }

  /** One line on stderr, prefixed `leasehold: `. */
  note(message: string): void {
    process.stderr.write(`${message.startsWith("leasehold: ") ? "" : "leasehold: "}${message}\n`);
  }
}

// ---------------------------------------------------------------- ids and values

/** A lease id as etcdctl prints it: 16 lowercase hex digits. */
export function leaseHex(id: bigint): string {
  return id.toString(16).padStart(16, "0");
}

/** A member id as etcdctl prints it: hex without padding. */
export function memberHex(id: bigint): string {
  return id.toString(16);
}

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

/** A lease id as etcdctl takes it (hex, at most 16 digits, not 0); commander's argParser. */
export function parseLeaseId(text: string): bigint {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) throw new InvalidArgumentError("a lease id is 1 to 16 hex digits.");
  const id = BigInt(`0x${text}`);
  if (id === 0n || id > INT64_MAX) throw new InvalidArgumentError("a lease id is a positive int64 in hex.");
  return id;
}

/** Whole seconds, at least 1; commander's argParser. */
export function parseTtlSeconds(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text)))
    throw new InvalidArgumentError("a TTL is a whole number of seconds, at least 1.");
  return Number(text);
}

/** A decimal int64 (a counter's value or delta); commander's argParser. */
export function parseInt64(text: string): bigint {
  if (!/^-?\d+$/.test(text)) throw new InvalidArgumentError("not a decimal integer.");
  const v = BigInt(text);
  if (v > INT64_MAX || v < INT64_MIN) throw new InvalidArgumentError("out of the int64 range.");
  return v;
}

/** A revision (0: the current one); commander's argParser. */
export function parseRevision(text: string): bigint {
  const v = parseInt64(text);
  if (v < 0n) throw new InvalidArgumentError("a revision is not negative.");
  return v;
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** A Go duration as etcdctl takes it ("5s", "500ms", "1m30s"), in ms; commander's argParser. */
export function parseDurationMs(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (text === "0") return 0;
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text)
    throw new InvalidArgumentError('a duration is a number with a unit: "5s", "500ms", "1m30s".');
  return parts.reduce((sum, p) => sum + Number(p[1]) * DURATION_UNITS_MS[p[2]!]!, 0);
}

/** A duration for display: "5s", "1.5s", "250ms". */
export function formatDurationMs(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${ms / 1000}s`;
}
