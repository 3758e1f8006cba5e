/**
 * The fencing guarantee end to end (issue 7 §5), with real processes: a
 * holder (fixtures/paused-holder.ts, the SDK in its own process) acquires a
 * resource and writes with its token; it is paused with SIGSTOP; its lease
 * expires on the member; another client acquires the resource (a larger
 * token) and writes; the holder is resumed with SIGCONT and, ignoring its
 * lease's signal, writes again with its old token. Both the storage's
 * FenceGuard and leasehold's FencedPut refuse that write, and the data is the
 * new holder's.
 *
 * Nothing sleeps: the test waits for the holder's output lines, and for the
 * expiry by a waiting acquire that the member answers when the paused
 * holder's claim is gone (the TTL is the member's minimum, 2 s, so that
 * wait is real time, bounded by the deadline).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type LeaseholdClient } from "../../src/client/client.ts";
import { StaleFenceError } from "../../src/client/errors.ts";
import { FenceGuard } from "../../src/client/fence-guard.ts";
import {
  freePort,
  killAll,
  type MemberProcess,
  removeDir,
  startMember,
  tempDir,
} from "../support/process.ts";

const HOLDER = fileURLToPath(new URL("./fixtures/paused-holder.ts", import.meta.url));
const DEADLINE_MS = 20_000;

let dir: string;
let member: MemberProcess;
let client: LeaseholdClient;
let holder: ChildProcess | undefined;

beforeAll(async () => {
  dir = tempDir("fencing-e2e");
  member = await startMember("m", dir, await freePort(), [
    "--listen-peer-urls",
    `http://127.0.0.1:${await freePort()}`,
    "--heartbeat-interval",
    "10",
    "--election-timeout",
    "100",
  ]);
  client = await connect({ endpoints: [member.endpoint], holder: "successor" });
}, 30_000);

afterAll(async () => {
  if (holder?.exitCode === null) holder.kill("SIGKILL");
  await client?.close();
  await killAll();
  removeDir(dir);
});

/** The holder's stdout, line by line, awaited in order. */
function lines(child: ChildProcess): () => Promise<string> {
  const queue: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    const w = waiters.shift();
    if (w !== undefined) w(l);
    else queue.push(l);
  });
  return () => {
    const l = queue.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error("the holder printed nothing within the deadline")),
        DEADLINE_MS,
      );
      waiters.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
  };
}

describe("fencing, end to end", () => {
  it("a holder paused past its lease cannot write through a FenceGuard or FencedPut after it resumes", async () => {
    const storage = new FenceGuard({ resource: "e2e/db" });
    holder = spawn(process.execPath, ["--import", "tsx", HOLDER, member.endpoint, "e2e/db", "2"], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const next = lines(holder);
    const first = /^TOKEN (\d+)$/.exec(await next());
    expect(first).not.toBeNull();
    const oldToken = Number(first![1]);
    storage.check(oldToken); // its writes were accepted while it held the lease

    holder.kill("SIGSTOP");
    // The member expires the paused holder's lease; a waiting acquire answers once its claim is gone.
    const successor = await client.acquire("e2e/db", { ttl: 30, wait: true, timeoutMs: DEADLINE_MS });
    expect(successor.fencingToken).toBeGreaterThan(oldToken);
    storage.check(successor.fencingToken);
    await client.fencedPut("e2e/db", successor.fencingToken, "e2e/data", "successor's write");

    holder.kill("SIGCONT");
    holder.stdin!.write("go\n");
    const state = await next();
    expect(state).toMatch(/^STATE (jeopardy|expired)$/); // its own SDK knows, but this holder ignores it
    const write = /^WRITE (\d+)$/.exec(await next());
    expect(Number(write![1])).toBe(oldToken);
    expect(() => storage.check(Number(write![1]))).toThrow(StaleFenceError);
    expect(await next()).toBe("FENCED StaleFenceError");
    expect(await client.get("e2e/data")).toBe("successor's write");
    await successor.release();
  }, 60_000);
});
