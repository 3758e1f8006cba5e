/**
 * The README's examples run as written (issue 7: "the examples are themselves
 * run by the tests"). Every ```ts block right after a `<!-- example: NAME -->`
 * line is one program: it is written to a temporary file, its
 * `from "leasehold"` imports pointed at this checkout's src/index.ts (so the
 * test needs no build), and run with tsx as its own process, which must exit
 * 0 within the deadline. The examples check their own claims with
 * node:assert, so an example that no longer does what the README says fails.
 */

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const README = readFileSync(join(ROOT, "README.md"), "utf8");
const ENTRY = join(ROOT, "src", "index.ts");
const DEADLINE_MS = 30_000;

/** The marked examples, in README order. */
function examples(): { name: string; code: string }[] {
  const out: { name: string; code: string }[] = [];
  const re = /<!-- example: ([a-z0-9-]+) -->\n```ts\n([\s\S]*?)\n```/g;
  for (const m of README.matchAll(re)) out.push({ name: m[1]!, code: m[2]! });
  return out;
}

const dir = mkdtempSync(join(tmpdir(), "leasehold-readme-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(file: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), DEADLINE_MS);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("README examples", () => {
  const found = examples();

  it("there are examples to run (the marker and fence format did not drift)", () => {
    expect(found.length).toBeGreaterThanOrEqual(3);
  });

  it.each(found)(
    "$name runs and exits 0",
    async ({ name, code }) => {
      const file = join(dir, `${name}.mts`); // ESM outside any package.json
      writeFileSync(file, code.replaceAll('from "leasehold"', `from ${JSON.stringify(ENTRY)}`));
      const r = await run(file);
      expect(r.output.includes("AssertionError") ? r.output : "").toBe("");
      expect({ code: r.code, output: r.code === 0 ? "" : r.output }).toEqual({ code: 0, output: "" });
    },
    DEADLINE_MS + 5_000,
  );
});
