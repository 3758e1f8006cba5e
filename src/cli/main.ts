/**
 * The `leasehold` command. Subcommands dispatch to their modules; this file
 * holds no logic of its own.
 */

import { simMain } from "../sim/cli.ts";
import { serveMain } from "./serve.ts";

const USAGE = `usage: leasehold <command> [options]

commands:
  serve   run a member (etcd's flags: --name, --data-dir, --listen-client-urls,
          --initial-cluster, ...; no flags: one member on 127.0.0.1:2379)
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
