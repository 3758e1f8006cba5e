/**
 * The `leasehold` command. Subcommands dispatch to their modules; this file
 * holds no logic of its own.
 */

import { simMain } from "../sim/cli.ts";

const USAGE = `usage: leasehold <command> [options]

commands:
  sim     run the deterministic cluster simulator
          --seeds N [--seed-start S] [--jobs J] [--verbose]   run N seeds
          --seed S [--trace]                                   replay one seed
`;

/** Entry point: `argv` without the node binary and script path. */
export async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
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
