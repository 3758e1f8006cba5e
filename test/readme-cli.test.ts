/**
 * The README's shell transcripts run as written (issue 7: "the examples are
 * themselves run by the tests"). Every ```console block right after a
 * `<!-- example-cli: NAME -->` line is a transcript: a line starting with
 * `$ ` is a command, the lines after it (up to the next `$ `) are what it
 * prints, stdout and stderr together as a terminal shows them.
 *
 * One real member (`leasehold serve`, named `default`, on free ports, in a
 * fresh data directory) serves every transcript. `leasehold` on PATH is a shim
 * that runs this checkout's bin/leasehold.js through tsx (no build needed),
 * and LEASEHOLD_ENDPOINTS points it at the member, so the README shows plain
 * `leasehold put k v`. Each transcript is one bash, in README order, in an
 * empty directory of its own, printing a marker after each command to split
 * the output: shell state (variables, `$!`, jobs) carries from command to
 * command, the cluster's state from transcript to transcript.
 *
 * Matching, line by line: `…` stands for any text (lease ids, tokens, times,
 * ports); a run of two or more spaces for any run of spaces, and in a table
 * rule (`+----+----+`) a run of dashes for any run, so column widths may
 * differ; trailing spaces do not count. Everything else must match exactly,
 * and each command must print as many lines as shown. A mismatch fails with
 * the command, the expected lines and the actual ones.
 *
 * Nothing waits on the clock: a transcript waits for a background command by
 * reading its output (`head` on a named pipe). A background job still running
 * when its transcript ends is killed by PID and fails the test; a transcript
 * past its deadline is killed (its own process group) and fails with what it
 * printed so far.
 */

import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, killAll, type MemberProcess, removeDir, startMember, tempDir } from "./support/process.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const README = readFileSync(join(ROOT, "README.md"), "utf8");
const BIN = join(ROOT, "bin", "leasehold.js");
const DEADLINE_MS = 30_000;
const STEP_MARK = "@@readme-cli: end of step@@";
const LEFT_RUNNING = "@@readme-cli: left running@@";

/** One command of a transcript and the lines it should print. */
interface Step {
  readonly command: string;
  readonly expected: readonly string[];
}

interface Transcript {
  readonly name: string;
  readonly steps: readonly Step[];
}

/** The marked transcripts, in README order. */
function transcripts(): Transcript[] {
  const re = /<!-- example-cli: ([a-z0-9-]+) -->\n```console\n([\s\S]*?)\n```/g;
  return [...README.matchAll(re)].map((m) => ({ name: m[1]!, steps: stepsOf(m[1]!, m[2]!) }));
}

function stepsOf(name: string, body: string): Step[] {
  const steps: { command: string; expected: string[] }[] = [];
  for (const line of body.split("\n")) {
    if (line.startsWith("$ ")) steps.push({ command: line.slice(2), expected: [] });
    else if (steps.length === 0) throw new Error(`transcript ${name}: output before its first "$ " command`);
    else steps.at(-1)!.expected.push(line);
  }
  return steps;
}

/** Whether `actual` is what the README's `expected` line shows (see the header). */
function lineMatches(expected: string, actual: string): boolean {
  const e = expected.trimEnd();
  const rule = /^\+[-+…]*\+$/.test(e);
  const source = e
    .split(/(…| {2,}|-{2,})/)
    .map((piece) => {
      if (piece === "…") return ".*";
      if (/^ {2,}$/.test(piece)) return " +";
      if (rule && /^-{2,}$/.test(piece)) return "-+";
      return piece.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("");
  return new RegExp(`^${source}$`, "s").test(actual.trimEnd());
}

/** What a transcript printed: each step's lines, the background jobs left running, and how bash ended. */
interface Run {
  readonly outputs: readonly (readonly string[])[];
  readonly leftRunning: readonly string[];
  readonly ended: string;
  readonly raw: string;
}

/** Runs the transcript's commands in one bash (see the header). */
function runTranscript(t: Transcript, cwd: string, env: NodeJS.ProcessEnv): Promise<Run> {
  const script = [
    "exec 2>&1",
    ...t.steps.flatMap((s) => [s.command, `printf '\\n%s\\n' '${STEP_MARK}'`]),
    `for p in $(jobs -p); do printf '%s %s\\n' '${LEFT_RUNNING}' "$p"; kill -9 "$p"; done`,
  ].join("\n");
  return new Promise((resolve) => {
    // Its own process group, so that at the deadline the background jobs go with it.
    const bash = spawn("bash", ["-c", script], {
      cwd,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let raw = "";
    bash.stdout.setEncoding("utf8").on("data", (s: string) => {
      raw += s;
    });
    bash.stderr.setEncoding("utf8").on("data", (s: string) => {
      raw += s;
    });
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      process.kill(-bash.pid!, "SIGKILL");
    }, DEADLINE_MS);
    bash.once("close", (code, signal) => {
      clearTimeout(timer);
      const parts = raw.split(`\n${STEP_MARK}\n`);
      const tail = parts.pop()!;
      resolve({
        outputs: parts.map((p) => (p === "" ? [] : p.replace(/\n$/, "").split("\n"))),
        leftRunning: tail
          .split("\n")
          .filter((l) => l.startsWith(LEFT_RUNNING))
          .map((l) => l.slice(LEFT_RUNNING.length + 1)),
        ended: late ? `killed after ${DEADLINE_MS} ms` : `exit ${code ?? signal}`,
        raw,
      });
    });
  });
}

/** The steps whose output differs from the README, as the command, the expected lines and the actual ones. */
function mismatches(t: Transcript, run: Run): string[] {
  const out: string[] = [];
  t.steps.forEach((step, i) => {
    const actual = run.outputs[i];
    const ok =
      actual !== undefined &&
      actual.length === step.expected.length &&
      step.expected.every((e, j) => lineMatches(e, actual[j]!));
    if (ok) return;
    out.push(
      [
        `$ ${step.command}`,
        "expected:",
        ...step.expected.map((l) => `  | ${l}`),
        actual === undefined ? "actual: (the transcript ended before this step)" : "actual:",
        ...(actual ?? []).map((l) => `  | ${l}`),
      ].join("\n"),
    );
  });
  return out;
}

let dir: string;
let member: MemberProcess;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  dir = tempDir("readme-cli");
  const peer = `http://127.0.0.1:${await freePort()}`;
  member = await startMember("default", join(dir, "data"), await freePort(), [
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `default=${peer}`,
  ]);
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const shim = join(bin, "leasehold");
  writeFileSync(
    shim,
    `#!/bin/sh\nLEASEHOLD_TSX=1 exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`,
  );
  chmodSync(shim, 0o755);
  // The user's own LEASEHOLD_* settings must not leak into the transcripts.
  const inherited = Object.entries(process.env).filter(([k]) => !k.startsWith("LEASEHOLD_"));
  env = {
    ...Object.fromEntries(inherited),
    PATH: `${bin}:${process.env.PATH ?? ""}`,
    LEASEHOLD_ENDPOINTS: member.endpoint,
  };
});

afterAll(async () => {
  await killAll();
  if (dir !== undefined) removeDir(dir);
});

describe("README CLI transcripts", () => {
  const found = transcripts();

  it("there are transcripts, and together they show every client command", () => {
    expect(found.map((t) => t.name)).toEqual(["hold", "keys", "lease", "counter", "elect", "status", "help"]);
    const commands = found.flatMap((t) => t.steps.map((s) => s.command)).join("\n");
    for (const shown of [
      /leasehold acquire \S+ --ttl \d+ .*-- /,
      /leasehold lock \S+ -- /,
      /leasehold elect \S+ \S+ >/,
      /leasehold elect \S+ --listen/,
      /leasehold lease grant /,
      /leasehold lease renew /,
      /leasehold lease revoke /,
      /leasehold lease ls/,
      /leasehold lease ttl /,
      /leasehold counter add /,
      /leasehold counter get /,
      /leasehold counter cas /,
      /leasehold watch /,
      /leasehold put /,
      /leasehold get /,
      /leasehold del /,
      /leasehold status/,
      /leasehold -w json /,
      /LEASEHOLD_WRITE_OUT=json leasehold counter/,
      /LEASEHOLD_WRITE_OUT=json leasehold -w simple /,
      /leasehold \S+ --help/,
    ])
      expect(commands).toMatch(shown);
  });

  it("lineMatches: … and padding match, anything else must be exact", () => {
    expect(lineMatches("lease … granted with TTL(60s)", "lease 694d7a6c0e4ba20b granted with TTL(60s)")).toBe(
      true,
    );
    expect(lineMatches("lease … granted with TTL(60s)", "lease 694d7a6c0e4ba20b granted with TTL(61s)")).toBe(
      false,
    );
    expect(lineMatches("| a    | …  |", "| a | 12 |")).toBe(true);
    expect(lineMatches("+------+----+", "+---+-------+")).toBe(true);
    expect(lineMatches("+------+----+", "+---+-------+---+")).toBe(false);
    expect(lineMatches("exit 1", "exit 12")).toBe(false);
    expect(lineMatches("a b", "a  b")).toBe(false);
    expect(lineMatches("--help", "-help")).toBe(false);
  });

  it.each(found)(
    "$name runs as shown",
    async (t) => {
      const cwd = join(dir, `work-${t.name}`);
      mkdirSync(cwd);
      const run = await runTranscript(t, cwd, env);
      const failures = mismatches(t, run);
      if (run.leftRunning.length > 0)
        failures.push(
          `background jobs still running at the end (killed, pids ${run.leftRunning.join(", ")})`,
        );
      if (run.outputs.length !== t.steps.length)
        failures.push(`bash ended (${run.ended}) after ${run.outputs.length} of ${t.steps.length} steps`);
      if (failures.length > 0)
        expect.fail(
          `README transcript "${t.name}" differs:\n\n${failures.join("\n\n")}\n\nall output:\n${run.raw}`,
        );
    },
    DEADLINE_MS + 5_000,
  );
});
