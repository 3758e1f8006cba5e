/**
 * A real etcd (3.4, Debian's `etcd-server`) as a test reference: one member on
 * free 127.0.0.1 ports with a temporary data directory, optionally with TLS on
 * the client URL (etcd's --cert-file/--key-file, --client-cert-auth with
 * --trusted-ca-file). Readiness is a real request: GET /health on the client
 * port answers {"health":"true"} only once the member has a leader; it is
 * polled until then (bounded), never waited for by sleeping a fixed time.
 * (With TLS, the probe presents the member's own certificate as its client
 * certificate, so that certificate must allow client auth, as etcd's usually do.)
 *
 * Every process started here is killed by PID (stopEtcd / stopAllEtcd) and its
 * data directory removed. Without an `etcd` binary on the PATH, startEtcd
 * throws a message saying what to install: the reference side must never be
 * skipped silently (CI installs etcd-server).
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { freePort, removeDir, tempDir } from "./process.ts";

/** TLS on the client URL, as etcd's flags name it (file paths). */
export interface EtcdClientTls {
  readonly certFile: string;
  readonly keyFile: string;
  /** --trusted-ca-file; with clientCertAuth, clients must present a certificate it signed. */
  readonly trustedCaFile?: string;
  readonly clientCertAuth?: boolean;
}

export interface EtcdOptions {
  readonly name?: string;
  readonly tls?: EtcdClientTls;
  /** Extra flags, appended as given. */
  readonly args?: readonly string[];
}

export interface EtcdProcess {
  readonly name: string;
  /** http(s)://127.0.0.1:port */
  readonly clientUrl: string;
  /** 127.0.0.1:port (what gRPC clients dial) */
  readonly endpoint: string;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** Everything it logged so far (stdout and stderr). */
  log: string;
}

/** How long etcd may take to serve /health before startEtcd gives up. */
const READY_TIMEOUT_MS = 20_000;
/** Pause between two /health polls while etcd starts. */
const POLL_INTERVAL_MS = 25;
/** Bound on one /health request. */
const POLL_REQUEST_TIMEOUT_MS = 1_000;

const running = new Set<EtcdProcess>();

// A test process that exits without its afterAll (a crash, an interrupted
// run) still kills the etcd members it started, by PID.
process.once("exit", () => {
  for (const etcd of running) {
    if (etcd.child.exitCode === null && etcd.child.signalCode === null)
      process.kill(etcd.child.pid!, "SIGKILL");
  }
});

/** The installed etcd's version line, or throws saying how to install it. */
export function etcdVersion(): string {
  try {
    return execFileSync("etcd", ["--version"], { encoding: "utf8" }).split("\n")[0]!;
  } catch (e) {
    throw new Error(
      "the etcd binary (etcd 3.4) is not installed or not on the PATH: these tests compare leasehold " +
        "with a real etcd; install it with `apt-get install etcd-server` (Debian/Ubuntu). " +
        `(${(e as Error).message})`,
    );
  }
}

/** Starts one etcd member and resolves once /health says it serves. */
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdProcess> {
  etcdVersion();
  const name = options.name ?? "etcd";
  const dataDir = tempDir(`etcd-${name}`);
  const clientPort = await freePort();
  const peerPort = await freePort();
  const scheme = options.tls === undefined ? "http" : "https";
  const clientUrl = `${scheme}://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const args = [
    "--name",
    name,
    "--data-dir",
    dataDir,
    "--listen-client-urls",
    clientUrl,
    "--advertise-client-urls",
    clientUrl,
    "--listen-peer-urls",
    peerUrl,
    "--initial-advertise-peer-urls",
    peerUrl,
    "--initial-cluster",
    `${name}=${peerUrl}`,
    "--logger",
    "zap",
    "--log-outputs",
    "stderr",
    ...tlsArgs(options.tls),
    ...(options.args ?? []),
  ];
  const child = spawn("etcd", args, { stdio: ["ignore", "pipe", "pipe"] });
  const etcd: EtcdProcess = { name, clientUrl, endpoint: `127.0.0.1:${clientPort}`, dataDir, child, log: "" };
  running.add(etcd);
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      etcd.log += chunk;
    });
  }
  try {
    await waitHealthy(etcd, options.tls);
  } catch (e) {
    await stopEtcd(etcd);
    throw e;
  }
  return etcd;
}

/** Kills the member by PID (SIGKILL) and removes its data directory. */
export async function stopEtcd(etcd: EtcdProcess): Promise<void> {
  running.delete(etcd);
  const { child } = etcd;
  if (child.exitCode === null && child.signalCode === null) {
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      process.kill(child.pid!, "SIGKILL");
    });
  }
  removeDir(etcd.dataDir);
}

/** Stops every etcd this module started and that is still running (call in afterAll). */
export async function stopAllEtcd(): Promise<void> {
  await Promise.all([...running].map(stopEtcd));
}

function tlsArgs(tls: EtcdClientTls | undefined): string[] {
  if (tls === undefined) return [];
  const out = ["--cert-file", tls.certFile, "--key-file", tls.keyFile];
  if (tls.trustedCaFile !== undefined) out.push("--trusted-ca-file", tls.trustedCaFile);
  if (tls.clientCertAuth === true) out.push("--client-cert-auth");
  return out;
}

async function waitHealthy(etcd: EtcdProcess, tls: EtcdClientTls | undefined): Promise<void> {
  const exited = new Promise<never>((_, reject) => {
    etcd.child.once("exit", (code, signal) =>
      reject(new Error(`etcd exited with ${code ?? signal} before serving:\n${etcd.log.slice(-4000)}`)),
    );
    etcd.child.once("error", (e) => reject(new Error(`etcd did not start: ${e.message}`)));
  });
  exited.catch(() => {});
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    const answer = await Promise.race([health(etcd.clientUrl, tls), exited]);
    if (answer.ok) return;
    last = answer.detail;
    await Promise.race([new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS)), exited]);
  }
  throw new Error(
    `etcd did not serve /health within ${READY_TIMEOUT_MS} ms (last: ${last}):\n${etcd.log.slice(-4000)}`,
  );
}

/** One GET /health: ok once etcd answers {"health":"true"}. */
function health(clientUrl: string, tls: EtcdClientTls | undefined): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const url = `${clientUrl}/health`;
    const done = (ok: boolean, detail: string) => resolve({ ok, detail });
    const onAnswer = (res: import("node:http").IncomingMessage) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => {
        const healthy = res.statusCode === 200 && /"health"\s*:\s*"true"/.test(body);
        done(healthy, `${res.statusCode} ${body.trim()}`);
      });
    };
    const req =
      tls === undefined
        ? httpRequest(url, { timeout: POLL_REQUEST_TIMEOUT_MS }, onAnswer)
        : httpsRequest(
            url,
            {
              timeout: POLL_REQUEST_TIMEOUT_MS,
              // Readiness only: the tests' own clients check the server's certificate.
              rejectUnauthorized: false,
              cert: readFileSync(tls.certFile),
              key: readFileSync(tls.keyFile),
            },
            onAnswer,
          );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (e) => done(false, e.message));
    req.end();
  });
}
