/**
 * The `leasehold` client commands, parsed by commander: `lease`, `acquire`,
 * `lock`, `elect`, `counter`, `watch`, `put`/`get`/`del`, `status`, with
 * etcdctl's global flags (connection.ts) before (or after) the command,
 * each also from the environment as LEASEHOLD_<FLAG> (etcdctl's
 * ETCDCTL_<FLAG>; the command line wins).
 * `serve`, `sim` and `snapshot` keep their own etcd-style flags: main.ts
 * hands them their arguments untouched; they are listed here for `--help`.
 *
 * Contract:
 * - Exit codes: 0 done; 1 the cluster refused or failed (one line on stderr:
 *   leasehold's message, or etcd's, prefixed `leasehold: `), or what a
 *   command documents (acquire/lock with a command: the command's own);
 *   2 a usage error (commander's message, or ours for a bad flag
 *   combination).
 * - Every call goes through the SDK (`connect()`); what it has no method for
 *   goes through `client.call()` / `client.mutate()` (mutations carry an
 *   idempotency key), `client.streamOnce()` and `client.serverStream()`. No semantics of the
 *   service are implemented here (CONVENTIONS: no second implementation in
 *   cli/).
 * - Output formats: output.ts.
 */

import { Argument, Command, CommanderError, Option } from "commander";
import type { WireMessage } from "../api/index.ts";
import {
  connect,
  type LeaseholdClient,
  type EndpointStatus as SdkEndpointStatus,
  type WatchEvent,
} from "../client/client.ts";
import { etcdClientError, type LeaseholdClientError, toClientError } from "../client/errors.ts";
import { prefixEnd } from "../state/index.ts";
import { DEFAULT_ENDPOINTS, type GlobalFlags, type Settings, settingsFrom } from "./connection.ts";
import { keepAliveOnce, runCampaign, runObserve } from "./elect.ts";
import {
  formatDurationMs,
  leaseHex,
  memberHex,
  Output,
  parseDurationMs,
  parseInt64,
  parseLeaseId,
  parseRevision,
  parseTtlSeconds,
  type Rendered,
  UsageError,
  WRITE_OUT_FORMATS,
  type WriteOut,
} from "./output.ts";
import { runHolding } from "./run-holding.ts";
import { TerminationSignals } from "./signals.ts";

type W = WireMessage;

/** What a command body gets. */
interface Context {
  readonly client: LeaseholdClient;
  readonly settings: Settings;
  readonly out: Output;
}

/** A command body: answers the exit code. */
type Body = (ctx: Context) => Promise<number>;

/** A command that hands its arguments to its own parser (main.ts runs it before commander). */
export interface RawCommand {
  readonly name: string;
  readonly summary: string;
  readonly run: (args: readonly string[]) => Promise<void>;
}

const DEFAULT_KILL_AFTER_MS = 2_000;
const DEFAULT_SESSION_TTL_SECONDS = 60;

/** Runs the client commands on `argv` (without node and the script); sets process.exitCode. */
export async function clientMain(argv: readonly string[], raw: readonly RawCommand[]): Promise<void> {
  const program = buildProgram(raw);
  if (argv.length === 0) {
    program.outputHelp();
    return;
  }
  try {
    await program.parseAsync([...argv], { from: "user" });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  }
}

/** The whole command tree (exported for tests of the help text). */
export function buildProgram(raw: readonly RawCommand[]): Command {
  const program = new Command("leasehold")
    .description(
      "A lease service on a Raft-replicated core, speaking the etcd v3 API.\n" +
        "Client commands take etcdctl's global flags, e.g.\n" +
        "  leasehold --endpoints 127.0.0.1:2379 acquire res-1 --ttl 5 -- CMD ARGS...\n" +
        "or each from the environment as LEASEHOLD_<FLAG> (etcdctl's ETCDCTL_<FLAG>):\n" +
        "  LEASEHOLD_ENDPOINTS=10.0.0.1:2379,10.0.0.2:2379 leasehold status\n" +
        "A flag on the command line wins over the environment.",
    )
    .exitOverride()
    .showHelpAfterError("(add --help for usage)")
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .addOption(
      globalOption("--endpoints <list>", "comma-separated members, host:port or http(s)://host:port").default(
        DEFAULT_ENDPOINTS,
      ),
    )
    .addOption(globalOption("--user <user[:password]>", "etcd auth: user name, and password after a colon"))
    .addOption(globalOption("--password <password>", "etcd auth: the password (with --user NAME)"))
    .addOption(globalOption("--cacert <file>", "TLS: verify the members' certificates with this CA bundle"))
    .addOption(globalOption("--cert <file>", "TLS: this client's certificate"))
    .addOption(globalOption("--key <file>", "TLS: this client's private key"))
    .addOption(
      globalOption("--command-timeout <duration>", "the bound on each call, retries included")
        .argParser(parseDurationMs)
        .default(5_000, "5s"),
    )
    .addOption(
      globalOption("-w, --write-out <format>", "output format (default: simple; status: table)").choices(
        WRITE_OUT_FORMATS,
      ),
    );

  program.commandsGroup("Server commands (etcd's own flags):");
  for (const r of raw) {
    program
      .command(r.name)
      .summary(r.summary)
      .description(`${r.summary}\n\nIt takes etcd's flags, not the client commands' global flags.`)
      .configureHelp({ showGlobalOptions: false })
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .argument("[args...]")
      .action((_args: string[], _opts: unknown, cmd: Command) => r.run(cmd.args));
  }
  program.commandsGroup("Client commands:");
  addHoldingCommands(program);
  addLeaseCommands(program);
  addKvCommands(program);
  addCounterCommands(program);
  addStatusCommand(program);
  return program;
}

/**
 * A global flag that may also come from the environment, as etcdctl's
 * ETCDCTL_<FLAG>: `--command-timeout` from LEASEHOLD_COMMAND_TIMEOUT. The
 * command line wins; commander parses and checks both the same way.
 */
function globalOption(flags: string, description: string): Option {
  const option = new Option(flags, description);
  const name = option.long!.replace(/^--/, "").toUpperCase().replaceAll("-", "_");
  return option.env(`LEASEHOLD_${name}`);
}

// ---------------------------------------------------------------- running a body

/** Connects as the global flags say, runs `body`, reports a failure, closes. */
async function run(cmd: Command, defaultFormat: WriteOut, body: Body): Promise<void> {
  let settings: Settings;
  try {
    settings = settingsFrom(cmd.optsWithGlobals<GlobalFlags>());
  } catch (e) {
    if (e instanceof UsageError) cmd.error(`error: ${e.message}`, { exitCode: 2, code: "leasehold.usage" });
    throw e;
  }
  const out = new Output(settings.writeOut ?? defaultFormat);
  let client: LeaseholdClient | undefined;
  try {
    const c = await connect(settings.connect);
    client = c;
    process.exitCode = await body({ client: c, settings, out });
  } catch (e) {
    out.note(failureMessage(e, settings));
    process.exitCode = 1;
  } finally {
    await client?.close();
  }
}

/** One line for a failure: the server's message, with a hint where it helps. */
function failureMessage(e: unknown, settings: Settings): string {
  return failureText(toClientError(e), settings).replace(/\s*\n\s*/g, " ");
}

function failureText(err: LeaseholdClientError, settings: Settings): string {
  if (err.kind === "unavailable")
    return `no member answered at ${settings.endpoints.join(",")}: ${err.message.replace(/^leasehold: /, "")}`;
  if (err.kind === "deadlineExceeded")
    return `no answer from ${settings.endpoints.join(",")} within --command-timeout ${formatDurationMs(settings.timeoutMs)}: ${err.message.replace(/^leasehold: /, "")}`;
  return err.message;
}

// ---------------------------------------------------------------- acquire, lock, elect

function addHoldingCommands(program: Command): void {
  program
    .command("acquire")
    .summary("hold RESOURCE for --ttl seconds, or run CMD while holding it (-- CMD ARGS...)")
    .description(
      "Acquire RESOURCE exclusively for --ttl seconds, renewed automatically (at TTL/3).\n\n" +
        "Without CMD: print the holding and hold until SIGINT/SIGTERM, then release.\n\n" +
        "With CMD (after --): run it while holding, with LEASEHOLD_RESOURCE, LEASEHOLD_HOLDER, " +
        "LEASEHOLD_LEASE_ID (hex) and LEASEHOLD_FENCING_TOKEN in its environment; when it exits, " +
        "release and exit with its exit code. If the lease may be lost, CMD gets SIGTERM (SIGKILL " +
        "after --kill-after) and leasehold exits 1.\n\n" +
        "A resource someone else holds is refused (exit 1), naming the holder and its time left, " +
        "unless --wait.",
    )
    .argument("<resource>", "the resource's name")
    .argument("[cmd...]", "the command to run while holding (put it after --)")
    .addOption(
      new Option("--ttl <seconds>", "the lease's TTL").argParser(parseTtlSeconds).makeOptionMandatory(),
    )
    .option("--holder <name>", "who holds (default: host name/pid)")
    .option("--wait", "wait (FIFO) for the resource instead of failing when it is held")
    .addOption(killAfterOption())
    .action((resource: string, command: string[], o: HoldFlags, cmd: Command) =>
      run(cmd, "simple", ({ client, out }) =>
        runHolding(
          client,
          { resource, command, ttlSeconds: o.ttl, wait: o.wait === true, ...holdExtras(o) },
          out,
        ),
      ),
    );

  program
    .command("lock")
    .summary("wait for the lock NAME, then hold it, or run CMD while holding it")
    .description(
      "Wait for the lock NAME (an acquire of resource NAME with --wait), then hold it like " +
        "acquire: until SIGINT/SIGTERM, or while CMD (after --) runs.",
    )
    .argument("<name>", "the lock's name (a resource)")
    .argument("[cmd...]", "the command to run while holding (put it after --)")
    .addOption(
      new Option("--ttl <seconds>", "the lease's TTL")
        .argParser(parseTtlSeconds)
        .default(DEFAULT_SESSION_TTL_SECONDS),
    )
    .option("--holder <name>", "who holds (default: host name/pid)")
    .addOption(killAfterOption())
    .action((name: string, command: string[], o: HoldFlags, cmd: Command) =>
      run(cmd, "simple", ({ client, out }) =>
        runHolding(client, { resource: name, command, ttlSeconds: o.ttl, wait: true, ...holdExtras(o) }, out),
      ),
    );

  program
    .command("elect")
    .summary("campaign in the election NAME (or --listen to follow its leader)")
    .description(
      "Campaign in the election NAME with PROPOSAL (etcd's v3election, as etcdctl elect): " +
        "print the leader key and value once elected, hold until SIGINT/SIGTERM, then resign.\n\n" +
        "With --listen: print each leader of NAME (key, then value) as it changes.",
    )
    .argument("<name>", "the election's name")
    .argument("[proposal]", "the value to publish as leader")
    .addOption(
      new Option("--ttl <seconds>", "the TTL of the candidate's lease")
        .argParser(parseTtlSeconds)
        .default(DEFAULT_SESSION_TTL_SECONDS),
    )
    .option("-l, --listen", "observe the election instead of campaigning")
    .action(
      (name: string, proposal: string | undefined, o: { ttl: number; listen?: boolean }, cmd: Command) => {
        if (o.listen === true && proposal !== undefined)
          cmd.error("error: --listen takes no proposal", { exitCode: 2, code: "leasehold.usage" });
        if (o.listen !== true && proposal === undefined)
          cmd.error("error: missing required argument 'proposal' (or --listen)", {
            exitCode: 2,
            code: "leasehold.usage",
          });
        return run(cmd, "simple", ({ client, out }) =>
          proposal === undefined
            ? runObserve(client, name, out)
            : runCampaign(client, { name, proposal, ttlSeconds: o.ttl }, out),
        );
      },
    );
}

interface HoldFlags {
  readonly ttl: number;
  readonly holder?: string;
  readonly wait?: boolean;
  readonly killAfter: number;
}

function holdExtras(o: HoldFlags): { holder?: string; killAfterMs: number } {
  return { killAfterMs: o.killAfter, ...(o.holder === undefined ? {} : { holder: o.holder }) };
}

function killAfterOption(): Option {
  return new Option(
    "--kill-after <duration>",
    "once the lease may be lost: time between SIGTERM and SIGKILL to CMD",
  )
    .argParser(parseDurationMs)
    .default(DEFAULT_KILL_AFTER_MS, formatDurationMs(DEFAULT_KILL_AFTER_MS));
}

// ---------------------------------------------------------------- lease

function leaseIdArgument(): Argument {
  return new Argument("<id>", "the lease id, in hex").argParser(parseLeaseId);
}

function addLeaseCommands(program: Command): void {
  const lease = program
    .command("lease")
    .description("etcd leases (the Lease API, as etcdctl lease): grant, renew, revoke, ls, ttl");

  lease
    .command("grant")
    .description("grant a lease of TTL seconds")
    .addArgument(new Argument("<ttl>", "seconds").argParser(parseTtlSeconds))
    .action((ttl: number, _o: unknown, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const r = await client.call("etcdserverpb.Lease", "LeaseGrant", { TTL: ttl }, {});
        if (String(r.error) !== "") throw new Error(String(r.error));
        const id = BigInt(String(r.ID));
        const granted = Number(r.TTL);
        out.print({
          simple: [`lease ${leaseHex(id)} granted with TTL(${granted}s)`],
          json: { id: leaseHex(id), ttl: granted },
          table: { header: ["ID", "TTL"], rows: [[leaseHex(id), `${granted}s`]] },
        });
        return 0;
      }),
    );

  lease
    .command("renew")
    .description("renew a lease once (etcd's keepalive; etcdctl lease keep-alive --once)")
    .addArgument(leaseIdArgument())
    .action((id: bigint, _o: unknown, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const answer = await keepAliveOnce(client, id, {});
        if (answer.kind === "gone") throw etcdClientError("LeaseNotFound");
        out.print({
          simple: [`lease ${leaseHex(id)} keepalived with TTL(${answer.ttlSeconds})`],
          json: { id: leaseHex(id), ttl: answer.ttlSeconds },
          table: { header: ["ID", "TTL"], rows: [[leaseHex(id), `${answer.ttlSeconds}s`]] },
        });
        return 0;
      }),
    );

  lease
    .command("revoke")
    .description("revoke a lease (its keys are deleted)")
    .addArgument(leaseIdArgument())
    .action((id: bigint, _o: unknown, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        await client.call("etcdserverpb.Lease", "LeaseRevoke", { ID: id.toString() }, {});
        out.print({ simple: [`lease ${leaseHex(id)} revoked`], json: { id: leaseHex(id), revoked: true } });
        return 0;
      }),
    );

  lease
    .command("ls")
    .alias("list")
    .description("list the live leases")
    .action((_o: unknown, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const r = await client.call("etcdserverpb.Lease", "LeaseLeases", {}, {});
        const ids = (r.leases as W[]).map((l) => leaseHex(BigInt(String(l.ID))));
        out.print({
          simple: [`found ${ids.length} leases`, ...ids],
          json: { leases: ids },
          table: { header: ["ID"], rows: ids.map((id) => [id]) },
        });
        return 0;
      }),
    );

  lease
    .command("ttl")
    .alias("timetolive")
    .description("a lease's granted TTL and time left (etcdctl lease timetolive)")
    .addArgument(leaseIdArgument())
    .option("--keys", "also list the keys attached to the lease")
    .action((id: bigint, o: { keys?: boolean }, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const r = await client.call(
          "etcdserverpb.Lease",
          "LeaseTimeToLive",
          { ID: id.toString(), keys: o.keys === true },
          {},
        );
        out.print(timeToLiveResult(id, r, o.keys === true));
        return 0;
      }),
    );
}

function timeToLiveResult(id: bigint, r: W, withKeys: boolean): Rendered {
  const remaining = Number(r.TTL);
  if (remaining === -1)
    return { simple: [`lease ${leaseHex(id)} already expired`], json: { id: leaseHex(id), ttl: -1 } };
  const granted = Number(r.grantedTTL);
  const keys = (r.keys as Buffer[]).map((k) => k.toString());
  const attached = withKeys ? `, attached keys([${keys.join(" ")}])` : "";
  return {
    simple: [`lease ${leaseHex(id)} granted with TTL(${granted}s), remaining(${remaining}s)${attached}`],
    json: { id: leaseHex(id), ttl: remaining, granted_ttl: granted, ...(withKeys ? { keys } : {}) },
    table: {
      header: ["ID", "GRANTED TTL", "REMAINING", ...(withKeys ? ["KEYS"] : [])],
      rows: [[leaseHex(id), `${granted}s`, `${remaining}s`, ...(withKeys ? [keys.join(" ")] : [])]],
    },
  };
}

// ---------------------------------------------------------------- keys

/** A key, or every key starting with it (clientv3's WithPrefix: "" means all keys). */
function keyRange(key: string, prefix: boolean): { key: Buffer; range_end?: Buffer } {
  const k = Buffer.from(key);
  if (!prefix) return { key: k };
  if (k.length === 0) return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  // A Uint8Array copy: prefixEnd's slice() would be a view into a Buffer, and it writes to it.
  return { key: k, range_end: Buffer.from(prefixEnd(new Uint8Array(k))) };
}

function kvJson(kv: W): Record<string, unknown> {
  const lease = BigInt(String(kv.lease));
  return {
    key: (kv.key as Buffer).toString(),
    value: (kv.value as Buffer).toString(),
    create_revision: Number(kv.create_revision),
    mod_revision: Number(kv.mod_revision),
    version: Number(kv.version),
    ...(lease === 0n ? {} : { lease: leaseHex(lease) }),
  };
}

function revisionOf(r: W): number {
  return Number((r.header as W).revision);
}

function addKvCommands(program: Command): void {
  program
    .command("put")
    .description("put KEY VALUE (etcd KV)")
    .argument("<key>")
    .argument("<value>")
    .addOption(new Option("--lease <id>", "attach the key to this lease (hex)").argParser(parseLeaseId))
    .action((key: string, value: string, o: { lease?: bigint }, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const req = { key: Buffer.from(key), value: Buffer.from(value) };
        const r = await client.call(
          "etcdserverpb.KV",
          "Put",
          o.lease === undefined ? req : { ...req, lease: o.lease.toString() },
          {},
        );
        out.print({ simple: ["OK"], json: { revision: revisionOf(r) } });
        return 0;
      }),
    );

  program
    .command("get")
    .description("get KEY, or every key with the prefix KEY (prints key, then value)")
    .argument("<key>")
    .option("--prefix", "every key starting with KEY")
    .addOption(
      new Option("--rev <revision>", "read at this revision (0: the latest)").argParser(parseRevision),
    )
    .action((key: string, o: { prefix?: boolean; rev?: bigint }, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const req = {
          ...keyRange(key, o.prefix === true),
          ...(o.rev === undefined ? {} : { revision: o.rev.toString() }),
        };
        const r = await client.call("etcdserverpb.KV", "Range", req, {});
        const kvs = r.kvs as W[];
        out.print({
          simple: kvs.flatMap((kv) => [(kv.key as Buffer).toString(), (kv.value as Buffer).toString()]),
          json: { revision: revisionOf(r), count: Number(r.count), kvs: kvs.map(kvJson) },
          table: {
            header: ["KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"],
            rows: kvs.map((kv) => {
              const j = kvJson(kv);
              return [
                String(j.key),
                String(j.value),
                String(j.create_revision),
                String(j.mod_revision),
                String(j.version),
                String(j.lease ?? ""),
              ];
            }),
          },
        });
        return 0;
      }),
    );

  program
    .command("del")
    .alias("delete")
    .description("delete KEY, or every key with the prefix KEY (prints how many)")
    .argument("<key>")
    .option("--prefix", "every key starting with KEY")
    .action((key: string, o: { prefix?: boolean }, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const r = await client.call("etcdserverpb.KV", "DeleteRange", keyRange(key, o.prefix === true), {});
        out.print({
          simple: [String(r.deleted)],
          json: { revision: revisionOf(r), deleted: Number(r.deleted) },
        });
        return 0;
      }),
    );

  program
    .command("watch")
    .description(
      "Print the changes to KEY (or to the keys with the prefix KEY) until SIGINT/SIGTERM, as " +
        "etcdctl does: the event type (PUT or DELETE), the key, the value. With --rev, from that " +
        "revision on (a history still kept). Ends with exit 1 if the stream breaks.",
    )
    .argument("<key>")
    .option("--prefix", "every key starting with KEY")
    .addOption(
      new Option("--rev <revision>", "start at this revision (0: from now on)").argParser(parseRevision),
    )
    .action((key: string, o: { prefix?: boolean; rev?: bigint }, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const stop = new TerminationSignals();
        try {
          const events = client.watch(key, {
            prefix: o.prefix === true,
            signal: stop.signal,
            ...(o.rev === undefined || o.rev === 0n ? {} : { startRevision: Number(o.rev) }),
          });
          for await (const e of events) out.print(watchResult(e));
        } finally {
          stop.dispose();
        }
        return 0;
      }),
    );
}

/** etcdctl's watch output: the event type, the key, the value. */
function watchResult(e: WatchEvent): Rendered {
  const type = e.type === "put" ? "PUT" : "DELETE";
  return {
    simple: [type, e.key, e.value],
    json: { type, key: e.key, value: e.value, revision: e.revision },
  };
}

// ---------------------------------------------------------------- counters

function addCounterCommands(program: Command): void {
  const counter = program.command("counter").description("replicated int64 counters (leasehold.v1.Counters)");
  const valueResult = (name: string, value: bigint): Rendered => ({
    simple: [value.toString()],
    json: { name, value },
  });

  counter
    .command("get")
    .description("print the counter's value (0 if never written)")
    .argument("<name>")
    .action((name: string, _o: unknown, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        out.print(valueResult(name, await client.counter(name).get()));
        return 0;
      }),
    );

  counter
    .command("add")
    .description("add DELTA (may be negative) and print the new value")
    .argument("<name>")
    .addArgument(new Argument("<delta>", "an int64").argParser(parseInt64))
    .action((name: string, delta: bigint, _o: unknown, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        out.print(valueResult(name, await client.counter(name).add(delta)));
        return 0;
      }),
    );

  counter
    .command("cas")
    .summary("set the counter to VALUE if it is EXPECTED now")
    .description(
      "Set the counter to VALUE if it is EXPECTED now (a counter never written is 0): prints " +
        "SUCCESS or FAILURE, then the value after the call; exits 0 on SUCCESS, 1 on FAILURE.",
    )
    .argument("<name>")
    .addArgument(new Argument("<expected>", "an int64").argParser(parseInt64))
    .addArgument(new Argument("<value>", "an int64").argParser(parseInt64))
    .action((name: string, expected: bigint, value: bigint, _o: unknown, cmd: Command) =>
      run(cmd, "simple", async ({ client, out }) => {
        const r = await client.counter(name).compareAndSet(expected, value);
        out.print({
          simple: [r.succeeded ? "SUCCESS" : "FAILURE", r.value.toString()],
          json: { name, succeeded: r.succeeded, value: r.value },
        });
        return r.succeeded ? 0 : 1;
      }),
    );
}

// ---------------------------------------------------------------- status

interface EndpointStatus {
  readonly endpoint: string;
  readonly id?: bigint;
  readonly leader?: bigint;
  readonly raftTerm?: number;
  readonly raftIndex?: number;
  readonly revision?: number;
  readonly leases?: number;
  readonly errors: readonly string[];
}

function addStatusCommand(program: Command): void {
  program
    .command("status")
    .summary("members, leader, raft term, revision and leases, one row per endpoint")
    .description(
      "One row per endpoint, as that member answers: its id and name, whether it leads, the " +
        "leader, raft term and index, revision, members, live leases, errors. Exits 1 if an " +
        "endpoint did not answer.",
    )
    .action((_o: unknown, cmd: Command) =>
      run(cmd, "table", async ({ client, settings, out }) => {
        const members = await client.call("etcdserverpb.Cluster", "MemberList", {}, {}).then(
          (r) => r.members as W[],
          (e: unknown) => toClientError(e),
        );
        const statuses = await Promise.all((await client.status()).map((s) => withLeaseCount(settings, s)));
        out.print(statusResult(statuses, Array.isArray(members) ? members : []));
        if (!Array.isArray(members)) out.note(`member list: ${members.message}`);
        return statuses.some((s) => s.id === undefined) || !Array.isArray(members) ? 1 : 0;
      }),
    );
}

/** A row of `status`: what the endpoint said of itself, and its live leases as it answers them. */
async function withLeaseCount(settings: Settings, s: SdkEndpointStatus): Promise<EndpointStatus> {
  if (s.memberId === undefined) return { endpoint: s.endpoint, errors: [s.error ?? "no answer"] };
  let client: LeaseholdClient | undefined;
  let leases: number | undefined;
  const errors = [...(s.errors ?? [])];
  try {
    client = await connect({ ...settings.connect, endpoints: [s.endpoint] });
    leases = ((await client.call("etcdserverpb.Lease", "LeaseLeases", {}, {})).leases as W[]).length;
  } catch (e) {
    errors.push(toClientError(e).message);
  } finally {
    await client?.close();
  }
  return {
    endpoint: s.endpoint,
    id: s.memberId,
    leader: s.leader,
    raftTerm: s.raftTerm,
    raftIndex: s.raftIndex,
    revision: s.revision,
    ...(leases === undefined ? {} : { leases }),
    errors,
  };
}

function statusResult(statuses: readonly EndpointStatus[], members: readonly W[]): Rendered {
  const names = new Map(members.map((m) => [BigInt(String(m.ID)), String(m.name)]));
  const nameOf = (id: bigint | undefined) => (id === undefined ? "" : (names.get(id) ?? ""));
  const leaderOf = (s: EndpointStatus) =>
    s.leader === undefined || s.leader === 0n ? "" : (names.get(s.leader) ?? memberHex(s.leader));
  const header = [
    "ENDPOINT",
    "ID",
    "NAME",
    "IS LEADER",
    "LEADER",
    "RAFT TERM",
    "RAFT INDEX",
    "REVISION",
    "MEMBERS",
    "LEASES",
    "ERRORS",
  ];
  const rows = statuses.map((s) => [
    s.endpoint,
    s.id === undefined ? "" : memberHex(s.id),
    nameOf(s.id),
    s.id === undefined ? "" : String(s.id === s.leader),
    leaderOf(s),
    s.raftTerm === undefined ? "" : String(s.raftTerm),
    s.raftIndex === undefined ? "" : String(s.raftIndex),
    s.revision === undefined ? "" : String(s.revision),
    s.id === undefined ? "" : String(members.length),
    s.leases === undefined ? "" : String(s.leases),
    s.errors.join("; "),
  ]);
  return {
    simple: rows.map((r) => r.join(", ")),
    json: {
      endpoints: statuses.map((s) => ({
        endpoint: s.endpoint,
        ...(s.id === undefined
          ? {}
          : {
              id: memberHex(s.id),
              name: nameOf(s.id),
              is_leader: s.id === s.leader,
              leader: s.leader === undefined ? "" : memberHex(s.leader),
              raft_term: s.raftTerm,
              raft_index: s.raftIndex,
              revision: s.revision,
              leases: s.leases,
            }),
        errors: s.errors,
      })),
      members: members.map((m) => ({
        id: memberHex(BigInt(String(m.ID))),
        name: String(m.name),
        peer_urls: m.peerURLs,
        client_urls: m.clientURLs,
        is_learner: m.isLearner === true,
      })),
    },
    table: { header, rows },
  };
}
