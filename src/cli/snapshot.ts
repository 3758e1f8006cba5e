/**
 * `leasehold snapshot restore FILE [flags]`: etcdctl's `snapshot restore`
 * for snapshots saved from leasehold (`etcdctl snapshot save`), with
 * etcdctl's flags: --data-dir (default `<name>.leasehold`, as `leasehold
 * serve`'s), --name, --initial-cluster, --initial-cluster-token,
 * --initial-advertise-peer-urls, --skip-hash-check. The cluster flags mean
 * what they mean to `leasehold serve` (serve-config.ts derives the ids);
 * start the restored member with `leasehold serve` and the same flags. The
 * work is src/server/restore.ts; this file parses and reports.
 *
 * Logs one JSON line per step to stderr, as etcdctl does. Exit codes: 0
 * restored; 1 the restore failed (a bad file, the data directory exists);
 * 2 bad usage.
 */

import { parseArgs } from "node:util";
import { DbSnapshotError } from "../server/db-snapshot.ts";
import { RestoreError, restoreDataDir } from "../server/restore.ts";
import { ConfigError, parseServeArgs } from "./serve-config.ts";

const USAGE = `usage: leasehold snapshot restore <file> [options]

options (etcdctl's):
  --data-dir DIR                     the new member's data directory (must not exist; default <name>.leasehold)
  --name NAME                        this member's name (default "default")
  --initial-cluster NAME=URL,...     every member of the new cluster
  --initial-cluster-token TOKEN      the new cluster's token (default "etcd-cluster")
  --initial-advertise-peer-urls URL  this member's peer URLs
  --skip-hash-check                  accept a file without its sha256 checksum
`;

const OPTIONS = {
  "data-dir": { type: "string" },
  name: { type: "string" },
  "initial-cluster": { type: "string" },
  "initial-cluster-token": { type: "string" },
  "initial-advertise-peer-urls": { type: "string" },
  "skip-hash-check": { type: "boolean" },
} as const;

function log(level: "info" | "error", msg: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ level, ts: new Date().toISOString(), msg, ...fields })}\n`);
}

/** `leasehold snapshot <subcommand> ...` (argv after "snapshot"). */
export async function snapshotMain(args: readonly string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h" || sub === "help" || rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(USAGE);
    return;
  }
  if (sub !== "restore") {
    process.stderr.write(
      sub === undefined ? USAGE : `leasehold snapshot: unknown command '${sub}'\n${USAGE}`,
    );
    process.exitCode = 2;
    return;
  }
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: [...rest], options: OPTIONS, strict: true, allowPositionals: true });
  } catch (e) {
    process.stderr.write(`leasehold snapshot restore: ${(e as Error).message}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const file = parsed.positionals[0];
  if (file === undefined || parsed.positionals.length !== 1) {
    process.stderr.write(`leasehold snapshot restore: one snapshot file expected\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const v = parsed.values;
  const serveArgs: string[] = [];
  for (const k of [
    "data-dir",
    "name",
    "initial-cluster",
    "initial-cluster-token",
    "initial-advertise-peer-urls",
  ] as const) {
    const value = v[k];
    if (value !== undefined) serveArgs.push(`--${k}`, value);
  }
  let config: ReturnType<typeof parseServeArgs>;
  try {
    config = parseServeArgs(serveArgs);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`leasehold snapshot restore: ${e.message}\n`);
    process.exitCode = 2;
    return;
  }
  log("info", "restoring snapshot", { path: file, "data-dir": config.dataDir });
  try {
    const s = restoreDataDir({
      snapshotPath: file,
      dataDir: config.dataDir,
      memberId: config.memberId,
      clusterId: config.clusterId,
      initialCluster: config.initialCluster,
      skipHashCheck: v["skip-hash-check"] === true,
    });
    for (const m of config.initialCluster)
      log("info", "added member", {
        "cluster-id": config.clusterId.toString(16),
        "added-peer-id": m.id.toString(16),
        "added-peer-peer-urls": m.peerUrls.map((u) => u.url),
      });
    log("info", "restored snapshot", {
      path: file,
      "data-dir": config.dataDir,
      "snapshot-member-id": s.from.memberId,
      revision: s.revision,
      leases: s.leases,
      "member-id": config.memberId.toString(16),
    });
  } catch (e) {
    if (!(e instanceof RestoreError || e instanceof DbSnapshotError || isFsError(e))) throw e;
    log("error", `restore failed: ${(e as Error).message}`, { path: file, "data-dir": config.dataDir });
    process.stderr.write(`Error: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}

function isFsError(e: unknown): boolean {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string" && "syscall" in e;
}
