/**
 * The `leasehold` command. `serve`, `sim` and `snapshot` parse their own
 * (etcd-style) flags: their arguments go to them untouched, before commander
 * sees anything. Every other command is a client command
 * (client-commands.ts). This file holds no logic of its own.
 */

import { simMain } from "../sim/cli.ts";
import { clientMain, type RawCommand } from "./client-commands.ts";
import { serveMain } from "./serve.ts";
import { snapshotMain } from "./snapshot.ts";

const RAW_COMMANDS: readonly RawCommand[] = [
  {
    name: "serve",
    summary:
      "run a member (etcd's flags: --name, --data-dir, --listen-client-urls, --initial-cluster, ...; no flags: one member on 127.0.0.1:2379)",
    run: serveMain,
  },
  {
    name: "snapshot",
    summary:
      "restore FILE --data-dir DIR --name N --initial-cluster N=URL,... --initial-advertise-peer-urls URL: a new cluster's member from a snapshot saved with 'etcdctl snapshot save'",
    run: snapshotMain,
  },
  {
    name: "sim",
    summary:
      "the deterministic cluster simulator: --seeds N [--seed-start S] [--jobs J] [--verbose], or --seed S [--trace]",
    run: simMain,
  },
];

/** Entry point: `argv` without the node binary and script path. */
export async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  const raw = RAW_COMMANDS.find((c) => c.name === command);
  if (raw !== undefined) {
    await raw.run(rest);
    return;
  }
  await clientMain(argv, RAW_COMMANDS);
}
