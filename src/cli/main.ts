/**
 * The `leasehold` command. Subcommands dispatch to their modules; this file
 * holds no logic of its own.
 */

import { simMain } from "../sim/cli.ts";
import { serveMain } from "./serve.ts";
import { snapshotMain } from "./snapshot.ts";

const USAGE = `usage: leasehold <command> [options]

commands:
  serve   run a member (etcd's flags: --name, --data-dir, --listen-client-urls,
          --initial-cluster, ...; no flags: one member on 127.0.0.1:2379)
  snapshot restore FILE --data-dir DIR --name N --initial-cluster N=URL,...
          --initial-advertise-peer-urls URL   a new cluster's member from a
          snapshot saved with 'etcdctl snapshot save' (etcdctl's flags)
  sim     run the deterministic cluster simulator
          --seeds N [--seed-start S] [--jobs J] [--verbose]   run N seeds
          --seed S [--trace]                                   replay one seed
`;

/** Entry point: `argv` without the node binary and script path. */
export async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      await serveMain(rest);
      return;
    case "sim":
      await simMain(rest);
      return;
    case "snapshot":
      await snapshotMain(rest);
      return;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return;
    default:
      process.stderr.write(`leasehold: unknown command '${command}'\n${USAGE}`);
      process.exitCode = 2;
  }
}
