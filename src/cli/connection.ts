/**
 * The client commands' global flags (etcdctl's names) and what they connect
 * with: `--endpoints`, `--user`/`--password`, `--cacert`/`--cert`/`--key`,
 * `--command-timeout`, `-w/--write-out`.
 *
 * Contract:
 * - `settingsFrom(flags)` checks the flags (UsageError, exit 2, for a bad
 *   combination), reads the TLS files (an unreadable file is a UsageError
 *   naming it) and answers the SDK's ConnectOptions.
 * - TLS is on when any of --cacert/--cert/--key is given or an endpoint says
 *   https://; without --cacert the system's roots are trusted.
 * - `--user NAME:PASSWORD`, or `--user NAME --password PASSWORD`; there is no
 *   prompt (a user without a password is a UsageError).
 * - `--command-timeout` bounds each call, retries included; waiting commands
 *   (acquire --wait, lock, elect, watch) wait without a bound.
 */

import { readFileSync } from "node:fs";
import type { ConnectOptions } from "../client/client.ts";
import { UsageError, type WriteOut } from "./output.ts";

/** The global flags as commander parsed them (camelCase names). */
export interface GlobalFlags {
  readonly endpoints: string;
  readonly user?: string;
  readonly password?: string;
  readonly cacert?: string;
  readonly cert?: string;
  readonly key?: string;
  /** Parsed by parseDurationMs. */
  readonly commandTimeout: number;
  readonly writeOut?: WriteOut;
}

/** What the flags mean, checked. */
export interface Settings {
  readonly endpoints: readonly string[];
  readonly connect: ConnectOptions;
  readonly timeoutMs: number;
  /** Undefined: the command's own default. */
  readonly writeOut: WriteOut | undefined;
}

/** The default of `--endpoints`, etcdctl's. */
export const DEFAULT_ENDPOINTS = "127.0.0.1:2379";

/** Checks the global flags and reads the files they name (see the header). */
export function settingsFrom(flags: GlobalFlags): Settings {
  const endpoints = flags.endpoints
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "");
  if (endpoints.length === 0) throw new UsageError("--endpoints names no endpoint");
  if (flags.commandTimeout <= 0) throw new UsageError("--command-timeout must be more than 0");
  const connect: ConnectOptions = {
    endpoints,
    timeoutMs: flags.commandTimeout,
    ...authOf(flags),
    ...tlsOf(flags, endpoints),
  };
  return { endpoints, connect, timeoutMs: flags.commandTimeout, writeOut: flags.writeOut };
}

function authOf(flags: GlobalFlags): Pick<ConnectOptions, "auth"> {
  if (flags.user === undefined) {
    if (flags.password !== undefined) throw new UsageError("--password needs --user");
    return {};
  }
  const colon = flags.user.indexOf(":");
  const user = colon < 0 ? flags.user : flags.user.slice(0, colon);
  const password = colon < 0 ? flags.password : flags.user.slice(colon + 1);
  if (user === "") throw new UsageError("--user names no user");
  if (password === undefined)
    throw new UsageError("--user needs a password: --user NAME:PASSWORD or --user NAME --password PASSWORD");
  if (colon >= 0 && flags.password !== undefined)
    throw new UsageError("the password is given twice (--user NAME:PASSWORD and --password)");
  return { auth: { user, password } };
}

function tlsOf(flags: GlobalFlags, endpoints: readonly string[]): Pick<ConnectOptions, "tls"> {
  if ((flags.cert === undefined) !== (flags.key === undefined))
    throw new UsageError("--cert and --key go together");
  const any =
    flags.cacert !== undefined || flags.cert !== undefined || endpoints.some((e) => e.startsWith("https://"));
  if (!any) return {};
  return {
    tls: {
      ...(flags.cacert === undefined ? {} : { ca: readFlagFile("--cacert", flags.cacert) }),
      ...(flags.cert === undefined ? {} : { cert: readFlagFile("--cert", flags.cert) }),
      ...(flags.key === undefined ? {} : { key: readFlagFile("--key", flags.key) }),
    },
  };
}

function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`${flag} ${path}: ${(e as Error).message}`);
  }
}
