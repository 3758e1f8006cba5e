/**
 * `leasehold acquire` and `leasehold lock`: hold a resource (SDK
 * `client.acquire`, renewed by its Lease) and either keep holding it until
 * told to stop, or run a command while holding it.
 *
 * Contract:
 * - SIGINT or SIGTERM while waiting for the resource abandons the wait (the
 *   server drops the claim) and exits 128 + the signal's number.
 * - Without a command: prints the holding and holds until SIGINT/SIGTERM,
 *   then releases and exits 0. Jeopardy is reported on stderr (the SDK keeps
 *   trying); if the lease expires (or the server no longer has it) it exits 1.
 * - With a command: runs it (stdio inherited) with LEASEHOLD_RESOURCE,
 *   LEASEHOLD_HOLDER, LEASEHOLD_LEASE_ID (16 hex digits) and
 *   LEASEHOLD_FENCING_TOKEN in its environment; the holding line goes to
 *   stderr (stdout is the command's). SIGINT/SIGTERM are passed on to it.
 *   When it exits, the resource is released and the exit code is its own
 *   (128 + the signal's number if a signal ended it; 127 if it could not be
 *   started).
 * - As soon as the lease may be lost (`lease.signal` aborts: jeopardy or
 *   expiry; the holder must stop acting, ARCHITECTURE "Leases" rule 5), the
 *   command gets SIGTERM, then SIGKILL `killAfterMs` later if it is still
 *   running; the exit code is then EXIT_LEASE_LOST whatever the command
 *   answered, with the reason on stderr. Only the command's own process is
 *   signalled, not processes it started.
 */

import { spawn } from "node:child_process";
import type { Lease, LeaseholdClient } from "../client/client.ts";
import { LeaseLostError, toClientError } from "../client/errors.ts";
import { formatDurationMs, leaseHex, type Output, type Rendered } from "./output.ts";
import { signalExitCode, TerminationSignals, whenAborted } from "./signals.ts";

/** The exit code when the lease was lost while the command ran (or while holding). */
export const EXIT_LEASE_LOST = 1;
/** The exit code when the command could not be started (a shell's). */
export const EXIT_CANNOT_RUN = 127;

/** What to hold and what to run. */
export interface HoldSpec {
  readonly resource: string;
  readonly ttlSeconds: number;
  readonly holder?: string;
  /** Queue (FIFO) until it holds, instead of failing when held. */
  readonly wait: boolean;
  /** Empty: hold until SIGINT/SIGTERM. */
  readonly command: readonly string[];
  /** How long the command has between SIGTERM and SIGKILL once the lease is lost. */
  readonly killAfterMs: number;
}

/** Holds `spec.resource` as the header says; answers the exit code. */
export async function runHolding(client: LeaseholdClient, spec: HoldSpec, out: Output): Promise<number> {
  const stop = new TerminationSignals();
  try {
    let lease: Lease;
    try {
      lease = await client.acquire(spec.resource, {
        ttl: spec.ttlSeconds,
        wait: spec.wait,
        signal: stop.signal,
        ...(spec.holder === undefined ? {} : { holder: spec.holder }),
      });
    } catch (e) {
      if (stop.received === undefined) throw e;
      out.note(`${stop.received}: stopped waiting for "${spec.resource}"`);
      return signalExitCode(stop.received);
    }
    if (stop.received !== undefined) {
      await lease.release();
      return signalExitCode(stop.received);
    }
    return spec.command.length === 0
      ? await holdUntilStopped(lease, stop, out)
      : await runWhileHolding(lease, spec, stop, out);
  } finally {
    stop.dispose();
  }
}

/** The holding as each format shows it. */
export function holdingResult(lease: Lease): Rendered {
  return {
    simple: [
      `acquired "${lease.resource}" as "${lease.holder}": lease ${leaseHex(lease.id)}, fencing token ${lease.fencingToken}, TTL(${lease.ttlSeconds}s)`,
    ],
    json: {
      resource: lease.resource,
      holder: lease.holder,
      lease_id: leaseHex(lease.id),
      fencing_token: lease.fencingToken,
      ttl: lease.ttlSeconds,
    },
    table: {
      header: ["RESOURCE", "HOLDER", "LEASE", "FENCING TOKEN", "TTL"],
      rows: [
        [
          lease.resource,
          lease.holder,
          leaseHex(lease.id),
          String(lease.fencingToken),
          `${lease.ttlSeconds}s`,
        ],
      ],
    },
  };
}

async function holdUntilStopped(lease: Lease, stop: TerminationSignals, out: Output): Promise<number> {
  out.print(holdingResult(lease));
  // The SDK's renewal timers are unref'd: something must keep the process alive while it holds.
  const alive = setInterval(() => {}, 1 << 30);
  try {
    const ended = await new Promise<"stopped" | "expired">((resolve) => {
      whenAborted(stop.signal).then(() => resolve("stopped"));
      lease.on("jeopardy", () =>
        out.note(`lease ${leaseHex(lease.id)} on "${lease.resource}" is in jeopardy: ${lostReason(lease)}`),
      );
      lease.on("valid", () => out.note(`lease ${leaseHex(lease.id)} on "${lease.resource}" is valid again`));
      lease.on("expired", () => resolve("expired"));
      if (lease.state === "expired") resolve("expired");
    });
    if (ended === "expired") {
      out.note(`lost "${lease.resource}" (lease ${leaseHex(lease.id)}): ${lostReason(lease)}`);
      return EXIT_LEASE_LOST;
    }
    await releaseReporting(lease, out);
    return 0;
  } finally {
    clearInterval(alive);
  }
}

async function runWhileHolding(
  lease: Lease,
  spec: HoldSpec,
  stop: TerminationSignals,
  out: Output,
): Promise<number> {
  out.print(holdingResult(lease), process.stderr);
  if (lease.signal.aborted) {
    // Lost before the command could start: do not start it.
    out.note(
      `lost "${lease.resource}" (lease ${leaseHex(lease.id)}) before running the command: ${lostReason(lease)}`,
    );
    await releaseReporting(lease, out);
    return EXIT_LEASE_LOST;
  }
  const [file, ...args] = spec.command;
  const child = spawn(file!, args, {
    stdio: "inherit",
    env: {
      ...process.env,
      LEASEHOLD_RESOURCE: lease.resource,
      LEASEHOLD_HOLDER: lease.holder,
      LEASEHOLD_LEASE_ID: leaseHex(lease.id),
      LEASEHOLD_FENCING_TOKEN: String(lease.fencingToken),
    },
  });
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null } | { error: Error }>(
    (resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (error) => resolve({ error }));
    },
  );

  let lost: string | undefined;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const leaseSignal = lease.signal;
  const onLost = () => {
    lost = lostReason(lease, leaseSignal.reason);
    out.note(
      `the lease on "${lease.resource}" (lease ${leaseHex(lease.id)}) may be lost: ${lost}; stopping the command (pid ${child.pid}, SIGTERM, SIGKILL after ${formatDurationMs(spec.killAfterMs)})`,
    );
    child.kill("SIGTERM");
    killTimer = setTimeout(() => child.kill("SIGKILL"), spec.killAfterMs);
  };
  const onStop = () => child.kill(stop.received);
  leaseSignal.addEventListener("abort", onLost, { once: true });
  stop.signal.addEventListener("abort", onStop, { once: true });

  const result = await ended;
  clearTimeout(killTimer);
  leaseSignal.removeEventListener("abort", onLost);
  stop.signal.removeEventListener("abort", onStop);
  await releaseReporting(lease, out);

  if ("error" in result) {
    out.note(`cannot run ${file}: ${result.error.message}`);
    return EXIT_CANNOT_RUN;
  }
  const how = result.signal === null ? `exit code ${result.code}` : result.signal;
  if (lost !== undefined) {
    out.note(`the command stopped (${how}) after the lease on "${lease.resource}" was lost`);
    return EXIT_LEASE_LOST;
  }
  return result.signal === null ? (result.code ?? 1) : signalExitCode(result.signal);
}

/** Releases; a failure is reported (the lease then ends by itself within its TTL), not raised. */
async function releaseReporting(lease: Lease, out: Output): Promise<void> {
  const state = lease.state;
  try {
    await lease.release();
    if (state === "valid" || state === "jeopardy")
      out.note(`released "${lease.resource}" (lease ${leaseHex(lease.id)})`);
  } catch (e) {
    out.note(
      `could not release "${lease.resource}" (lease ${leaseHex(lease.id)}; it ends within its TTL): ${toClientError(e).message}`,
    );
  }
}

function lostReason(lease: Lease, reason?: unknown): string {
  const r =
    reason instanceof LeaseLostError
      ? reason
      : new LeaseLostError(lease.state === "jeopardy" ? "jeopardy" : "expired");
  return r.message.replace(/^leasehold: /, "");
}
