#!/usr/bin/env node
// Compiles src/ to dist/ (tsconfig.build.json: .ts imports rewritten to .js), copies the .proto
// files next to the compiled API, and writes dist/.build-stamp last. bin/leasehold.js runs dist/
// only while no file under src/ is newer than that stamp; otherwise it runs src/ through tsx.
// Run by `npm run build` and by npm's `prepare` (so `npm ci` leaves a fresh build).
import { spawnSync } from "node:child_process";
import { cpSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
rmSync(`${root}dist`, { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, "-p", `${root}tsconfig.build.json`], { stdio: "inherit" });
if (r.status !== 0) process.exit(r.status ?? 1);
cpSync(`${root}src/api/proto`, `${root}dist/api/proto`, { recursive: true });
writeFileSync(`${root}dist/.build-stamp`, `${new Date().toISOString()}\n`);
