/**
 * Real member processes for multi-process tests: free ports on 127.0.0.1,
 * `leasehold serve` spawned with etcd's flags and a temporary data directory,
 * readiness from its log line (no sleeping), and etcdctl runs. Every process
 * a test starts is tracked and killed by PID when the test file ends.
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../../bin/leasehold.js", import.meta.url));

/** Ports this process handed out: the OS may offer a just-closed port again, and two callers must not share one. */
const handedOut = new Set<number>();

/** A port nobody listens on now (the OS picks it), never one this process handed out before. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const addr = srv.address();
        const p = typeof addr === "object" && addr !== null ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `leasehold-${prefix}-`));
}

export interface MemberProcess {
  readonly name: string;
  readonly clientUrl: string;
  readonly endpoint: string;
  readonly dataDir: string;
  readonly args: readonly string[];
  child: ChildProcess;
  /** Everything it logged so far. */
  log: string;
}

const started = new Set<ChildProcess>();

/** Starts `leasehold serve args` and resolves once it serves clients. */
export function startMember(
  name: string,
  dataDir: string,
  clientPort: number,
  args: readonly string[],
): Promise<MemberProcess> {
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const all = [
    "--name",
    name,
    "--data-dir",
    dataDir,
    "--listen-client-urls",
    clientUrl,
    "--advertise-client-urls",
    clientUrl,
    ...args,
  ];
  const m: MemberProcess = {
    name,
    clientUrl,
    endpoint: `127.0.0.1:${clientPort}`,
    dataDir,
    args: all,
    child: undefined as unknown as ChildProcess,
    log: "",
  };
  return restartMember(m);
}

/** Starts the member again with the same flags and data. */
export function restartMember(m: MemberProcess): Promise<MemberProcess> {
  const child = spawn(process.execPath, [BIN, "serve", ...m.args], { stdio: ["ignore", "ignore", "pipe"] });
  started.add(child);
  child.once("exit", (code, signal) => {
    started.delete(child);
    // A member that dies on its own is a bug: show why.
    if (!stopping.has(child))
      process.stderr.write(`member ${m.name} exited by itself (${code ?? signal}):\n${m.log.slice(-4000)}\n`);
  });
  m.child = child;
  m.log = "";
  return new Promise((resolve, reject) => {
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      m.log += chunk;
      if (m.log.includes("serving clients")) resolve(m);
    });
    child.once("exit", (code) =>
      reject(new Error(`member ${m.name} exited with ${code} before serving:\n${m.log}`)),
    );
  });
}

/** SIGKILL (no shutdown at all); resolves once the process is gone. */
export function kill9(m: MemberProcess): Promise<void> {
  return stopChild(m.child, "SIGKILL");
}

/** SIGTERM (graceful); resolves with the exit code. */
export function terminate(m: MemberProcess): Promise<void> {
  return stopChild(m.child, "SIGTERM");
}

/** Children this module is stopping on purpose. */
const stopping = new WeakSet<ChildProcess>();

function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  stopping.add(child);
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}

/** A member expected to stop by itself (not reported as a bug); resolves with its exit code. */
export function expectExit(m: MemberProcess): Promise<number | null> {
  const child = m.child;
  stopping.add(child);
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/** Kills every member process still running (call in afterAll). */
export async function killAll(): Promise<void> {
  await Promise.all([...started].map((c) => stopChild(c, "SIGKILL")));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface EtcdctlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs etcdctl (API v3) against `endpoints`, optionally with stdin. */
export function etcdctl(endpoints: string, args: readonly string[], input?: string): Promise<EtcdctlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      "etcdctl",
      [`--endpoints=${endpoints}`, "--command-timeout=10s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}
