/**
 * Runs every scenario file in test/raft/testdata against the real Raft core.
 * Each file pins one group of rules; `REWRITE=1` regenerates the expected
 * traces (then review the diff: it is the behaviour change).
 */

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseScenario, renderScenario, ScenarioEnv } from "./harness.ts";

const DIR = join(import.meta.dirname, "testdata");
const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".txt"))
  .sort();

describe("raft scenarios", () => {
  it("has scenario files for every rule group", () => {
    const stems = files.map((f) => f.replace(/\.txt$/, ""));
    for (const want of [
      "election",
      "prevote",
      "checkquorum",
      "log_repair",
      "snapshot",
      "read_index",
      "leader_transfer",
      "membership",
    ]) {
      expect(stems).toContain(want);
    }
  });

  for (const file of files) {
    it(file, () => {
      const path = join(DIR, file);
      const steps = parseScenario(readFileSync(path, "utf8"));
      const env = new ScenarioEnv();
      const outputs = steps.map((s) => {
        const [cmd, ...args] = s.command.trim().split(/\s+/);
        try {
          return env.run(cmd!, args).join("\n");
        } catch (e) {
          return `error: ${(e as Error).message}`;
        }
      });
      if (process.env.REWRITE === "1") {
        writeFileSync(path, renderScenario(steps, outputs));
        return;
      }
      steps.forEach((s, i) => {
        expect(outputs[i], `${file}:${s.line}: ${s.command}`).toBe(s.expected);
      });
    });
  }
});
