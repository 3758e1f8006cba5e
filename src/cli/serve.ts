/**
 * `leasehold serve [etcd flags]`: parses the flags (serve-config.ts), starts
 * the member (src/server/serve.ts), logs one JSON line per event to stderr,
 * and stops gracefully on SIGTERM or SIGINT. A bad flag exits with code 2 and
 * the reason; a failure to start (a corrupt data directory, a port in use)
 * exits with code 1 and the reason.
 */

import { serve } from "../server/serve.ts";
import { ConfigError, parseServeArgs, SERVE_USAGE } from "./serve-config.ts";

function log(level: "info" | "warn" | "error", msg: string): void {
  process.stderr.write(`${JSON.stringify({ level, ts: new Date().toISOString(), msg })}\n`);
}

export async function serveMain(args: readonly string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(SERVE_USAGE);
    return;
  }
  let config: ReturnType<typeof parseServeArgs>;
  try {
    config = parseServeArgs(args);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`leasehold serve: ${e.message}\n`);
    process.exitCode = 2;
    return;
  }
  let running: Awaited<ReturnType<typeof serve>>;
  try {
    running = await serve(config, log);
  } catch (e) {
    log("error", `failed to start: ${(e as Error).message}`);
    // Exit now: a half-started member may hold sockets or timers that would keep the process alive.
    process.exit(1);
  }
  running.removed.then(() => process.exit(0));
  const onSignal = (signal: string) => {
    log("info", `${signal}: shutting down`);
    running.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log("error", `shutdown failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
}
