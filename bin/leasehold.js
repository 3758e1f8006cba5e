#!/usr/bin/env node
// The `leasehold` command. Runs the compiled CLI (dist/, made by `npm run build`, which `npm ci`
// runs) when that build is newer than every source file; otherwise, or with LEASEHOLD_TSX=1,
// loads the TypeScript sources through tsx (slower to start and to run, same code).
import { readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));
const STAMP = fileURLToPath(new URL("../dist/.build-stamp", import.meta.url));

/** True when some file under `dir` was modified after `t` (ms). */
function newerThan(dir, t) {
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}${d.name}`;
    if (d.isDirectory() ? newerThan(`${path}/`, t) : statSync(path).mtimeMs > t) return true;
  }
  return false;
}

function buildIsFresh() {
  if (process.env.LEASEHOLD_TSX === "1") return false;
  try {
    return !newerThan(SRC, statSync(STAMP).mtimeMs);
  } catch {
    return false;
  }
}

let main;
if (buildIsFresh()) {
  ({ main } = await import("../dist/cli/main.js"));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../src/cli/main.ts"));
}
await main(process.argv.slice(2));
