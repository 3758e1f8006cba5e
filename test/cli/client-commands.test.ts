/**
 * The `leasehold` client commands end to end: the real CLI as a child process
 * against a real member (one `leasehold serve` on free ports), checked by
 * their output, exit codes, and what the cluster holds afterwards (through
 * the SDK). Nothing sleeps: every wait ends on a line of output, an exit, or
 * an answer from the member, under a deadline.
 */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SERVE_FLAGS } from "../../src/cli/serve-config.ts";
import { connect, type LeaseholdClient } from "../../src/client/client.ts";
import {
  freePort,
  killAll,
  type MemberProcess,
  removeDir,
  startMember,
  tempDir,
} from "../support/process.ts";
import { CliProcess, processExists, runCli, stopAllCli } from "./cli-process.ts";

let member: MemberProcess;
let dir: string;
let sdk: LeaseholdClient;
/** Commands started by the CLI under test (killed at the end if a failed test left one running). */
const commandPids = new Set<number>();

const cli = (args: readonly string[]) => runCli(["--endpoints", member.endpoint, ...args]);
const start = (args: readonly string[]) => new CliProcess(["--endpoints", member.endpoint, ...args]);

beforeAll(async () => {
  dir = tempDir("cli");
  const peer = `http://127.0.0.1:${await freePort()}`;
  member = await startMember("m1", dir, await freePort(), [
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `m1=${peer}`,
  ]);
  sdk = await connect({ endpoints: [member.endpoint] });
});

afterAll(async () => {
  await sdk?.close();
  await stopAllCli();
  for (const pid of commandPids) if (processExists(pid)) process.kill(pid, "SIGKILL");
  await killAll();
  removeDir(dir);
});

describe("help and usage", () => {
  it("the root's --help lists the commands and etcdctl's global flags", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    for (const s of [
      "--endpoints",
      "--user",
      "--password",
      "--cacert",
      "--cert",
      "--key",
      "--command-timeout",
      "-w, --write-out",
      "serve",
      "acquire",
      "lock",
      "elect",
      "lease",
      "counter",
      "watch",
      "put",
      "get",
      "del",
      "status",
    ])
      expect(r.stdout).toContain(s);
  });

  it("serve, snapshot and sim --help print their usage on stdout and exit 0", async () => {
    const results = await Promise.all(["serve", "snapshot", "sim"].map((c) => runCli([c, "--help"])));
    expect(results.map((r) => [r.code, r.stdout.split("\n")[0]])).toEqual([
      [0, "usage: leasehold serve [flags]   (etcd 3.4's flags and meanings; --flag value or --flag=value)"],
      [0, "usage: leasehold snapshot restore <file> [options]"],
      [0, "usage: leasehold sim --seeds N [--seed-start S] [--jobs J] [--verbose]"],
    ]);
    for (const flag of SERVE_FLAGS) expect(results[0]!.stdout).toContain(`--${flag}`);
  });

  it("acquire --help names its flags, the environment it passes, and the global flags", async () => {
    const r = await runCli(["acquire", "--help"]);
    expect(r.code).toBe(0);
    for (const s of [
      "<resource> [cmd...]",
      "--ttl <seconds>",
      "--holder <name>",
      "--wait",
      "--kill-after",
      "LEASEHOLD_FENCING_TOKEN",
      "LEASEHOLD_LEASE_ID",
      "Global Options:",
      "--endpoints",
    ])
      expect(r.stdout).toContain(s);
  });

  it("usage errors exit 2 with the reason, before any connection", async () => {
    const cases: [string[], RegExp][] = [
      [["acquire", "--ttl", "5"], /missing required argument 'resource'/],
      [["acquire", "r"], /required option '--ttl <seconds>' not specified/],
      [["acquire", "r", "--ttl", "0"], /TTL is a whole number of seconds, at least 1/],
      [["bogus"], /unknown command 'bogus'/],
      [["lease", "revoke", "xyz"], /lease id is 1 to 16 hex digits/],
      [["-w", "yaml", "get", "k"], /Allowed choices are simple, json, table/],
      [["--user", "bob", "get", "k"], /--user needs a password/],
      [["--command-timeout", "5", "get", "k"], /a duration is a number with a unit/],
      [["elect", "e"], /missing required argument 'proposal'/],
    ];
    // An endpoint nobody serves: a usage error must be found before connecting.
    const results = await Promise.all(cases.map(([args]) => runCli(["--endpoints", "127.0.0.1:1", ...args])));
    cases.forEach(([args, message], i) => {
      const r = results[i]!;
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
    });
  });

  it("a member nobody serves is one line on stderr and exit 1", async () => {
    const r = await runCli([
      "--endpoints",
      `127.0.0.1:${await freePort()}`,
      "--command-timeout",
      "1s",
      "get",
      "k",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^leasehold: no (member answered|answer from) .*127\.0\.0\.1/);
  });
});

describe("keys", () => {
  it("put, get, get --prefix (simple, json, table) and del --prefix, with etcdctl's output", async () => {
    expect(await cli(["put", "kv/a", "1"])).toMatchObject({ code: 0, stdout: "OK\n" });
    expect(await cli(["put", "kv/b", "two words"])).toMatchObject({ code: 0, stdout: "OK\n" });
    expect(await cli(["get", "kv/a"])).toMatchObject({ code: 0, stdout: "kv/a\n1\n" });
    expect((await cli(["get", "kv/", "--prefix"])).stdout).toBe("kv/a\n1\nkv/b\ntwo words\n");
    const json = JSON.parse((await cli(["-w", "json", "get", "kv/", "--prefix"])).stdout);
    expect(json.count).toBe(2);
    expect(json.kvs.map((kv: { key: string; value: string }) => `${kv.key}=${kv.value}`)).toEqual([
      "kv/a=1",
      "kv/b=two words",
    ]);
    const table = (await cli(["get", "kv/b", "-w", "table"])).stdout;
    expect(table).toMatch(/^\+-+\+/);
    expect(table).toMatch(/\| +KEY +\| +VALUE +\|/);
    expect(table).toMatch(/\| kv\/b +\| two words +\|/);
    expect(await sdk.get("kv/b")).toBe("two words");
    expect(await cli(["del", "kv/", "--prefix"])).toMatchObject({ code: 0, stdout: "2\n" });
    expect(await cli(["get", "kv/a"])).toMatchObject({ code: 0, stdout: "" });
    expect(await sdk.get("kv/a")).toBeUndefined();
  });

  it("watch prints etcdctl's event lines from --rev on, then live changes, until SIGINT", async () => {
    const rev = JSON.parse((await cli(["-w", "json", "put", "w/a", "1"])).stdout).revision as number;
    await cli(["del", "w/a"]);
    const watch = start(["watch", "w/", "--prefix", "--rev", String(rev)]);
    // The history from --rev arrives once the watch exists, so a change made now is seen live.
    await watch.waitForOutput(/^PUT\nw\/a\n1\nDELETE\nw\/a\n\n$/);
    await cli(["put", "w/b", "2"]);
    await cli(["put", "x/other", "3"]);
    await cli(["put", "w/c", "4"]);
    await watch.waitForOutput(/DELETE\nw\/a\n\nPUT\nw\/b\n2\nPUT\nw\/c\n4\n$/);
    watch.kill("SIGINT");
    const r = await watch.exit();
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("x/other");
  });
});

describe("lease", () => {
  it("grant, ttl [--keys], renew, ls, revoke, with etcdctl's output and hex ids", async () => {
    const granted = await cli(["lease", "grant", "30"]);
    expect(granted.code).toBe(0);
    const id = granted.stdout.match(/^lease ([0-9a-f]{16}) granted with TTL\(30s\)\n$/)![1]!;
    expect(await cli(["put", "--lease", id, "leased/k", "v"])).toMatchObject({ code: 0, stdout: "OK\n" });

    const keys = await cli(["lease", "ttl", id, "--keys"]);
    expect(keys.stdout).toMatch(
      new RegExp(
        `^lease ${id} granted with TTL\\(30s\\), remaining\\((2\\d|30)s\\), attached keys\\(\\[leased/k\\]\\)\\n$`,
      ),
    );
    const ttlJson = JSON.parse((await cli(["-w", "json", "lease", "ttl", id])).stdout);
    expect(ttlJson).toMatchObject({ id, granted_ttl: 30 });

    expect(await cli(["lease", "renew", id])).toMatchObject({
      code: 0,
      stdout: `lease ${id} keepalived with TTL(30)\n`,
    });
    const ls = await cli(["lease", "ls"]);
    expect(ls.stdout).toMatch(/^found \d+ leases\n/);
    expect(ls.stdout.split("\n")).toContain(id);

    expect(await cli(["lease", "revoke", id])).toMatchObject({ code: 0, stdout: `lease ${id} revoked\n` });
    expect(await sdk.get("leased/k")).toBeUndefined();
    expect(await cli(["lease", "ttl", id])).toMatchObject({
      code: 0,
      stdout: `lease ${id} already expired\n`,
    });

    const again = await cli(["lease", "revoke", id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe("leasehold: etcdserver: requested lease not found\n");
    const renew = await cli(["lease", "renew", id]);
    expect(renew.code).toBe(1);
    expect(renew.stderr).toBe("leasehold: etcdserver: requested lease not found\n");
  });
});

describe("acquire and lock", () => {
  it("a held resource is refused: exit 1, naming the holder and its time left", async () => {
    const held = await sdk.acquire("res/held", { ttl: 30, holder: "alice" });
    try {
      const r = await cli(["acquire", "res/held", "--ttl", "5"]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/^leasehold: resource "res\/held" is held by "alice" .*\b(2\d|30) s left/);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect((await sdk.holding("res/held")).holder?.leaseId).toBe(held.id);
    } finally {
      await held.release();
    }
  });

  it("without a command: prints the holding (json), holds it, and releases on SIGINT", async () => {
    const p = start(["-w", "json", "acquire", "res/hold", "--ttl", "5", "--holder", "bob"]);
    const line = JSON.parse((await p.waitForOutput(/^\{.*\}\n/))[0]);
    expect(line).toMatchObject({ resource: "res/hold", holder: "bob", ttl: 5 });
    expect(line.lease_id).toMatch(/^[0-9a-f]{16}$/);
    const h = (await sdk.holding("res/hold")).holder!;
    expect({
      holder: h.holder,
      token: h.fencingToken,
      lease: h.leaseId.toString(16).padStart(16, "0"),
    }).toEqual({
      holder: "bob",
      token: line.fencing_token,
      lease: line.lease_id,
    });
    p.kill("SIGINT");
    const r = await p.exit();
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`released "res/hold" (lease ${line.lease_id})`);
    expect((await sdk.holding("res/hold")).holder).toBeUndefined();
  });

  it("acquire -- CMD runs CMD with the holding in its environment, exits with its code, and releases", async () => {
    const script = [
      "const e = process.env;",
      "console.log(JSON.stringify({ resource: e.LEASEHOLD_RESOURCE, holder: e.LEASEHOLD_HOLDER,",
      "  lease: e.LEASEHOLD_LEASE_ID, token: e.LEASEHOLD_FENCING_TOKEN }));",
      "process.stdin.once('data', () => process.exit(3));",
    ].join("\n");
    const p = start(["acquire", "res/cmd", "--ttl", "5", "--holder", "carol", "--", "node", "-e", script]);
    const env = JSON.parse((await p.waitForOutput(/^\{.*\}\n/))[0]);
    // While CMD runs, the cluster says the same: carol holds it, with that lease and token.
    const h = (await sdk.holding("res/cmd")).holder!;
    expect(env).toEqual({
      resource: "res/cmd",
      holder: "carol",
      lease: h.leaseId.toString(16).padStart(16, "0"),
      token: String(h.fencingToken),
    });
    expect(await sdk.checkFence("res/cmd", Number(env.token))).toBe(true);
    expect(p.stderr).toContain(`acquired "res/cmd" as "carol": lease ${env.lease}`);
    p.child.stdin!.end("go\n");
    const r = await p.exit();
    expect(r.code).toBe(3);
    expect((await sdk.holding("res/cmd")).holder).toBeUndefined();
    expect(await sdk.checkFence("res/cmd", Number(env.token))).toBe(false);
  });

  it("acquire -- CMD kills CMD when the lease is lost (revoked from outside) and exits 1", async () => {
    const script = "console.log(process.pid, process.env.LEASEHOLD_LEASE_ID); setInterval(() => {}, 1000);";
    const p = start(["acquire", "res/lost", "--ttl", "3", "--", "node", "-e", script]);
    const [, pidText, lease] = await p.waitForOutput(/^(\d+) ([0-9a-f]{16})\n/);
    const pid = Number(pidText);
    commandPids.add(pid);
    expect(processExists(pid)).toBe(true);
    expect(await cli(["lease", "revoke", lease!])).toMatchObject({ code: 0 });
    // The next renewal (within TTL/3) answers "gone": the CLI must stop CMD and say why.
    const r = await p.exit(10_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`the lease on "res/lost" (lease ${lease}) may be lost`);
    expect(r.stderr).toContain(`stopping the command (pid ${pid}`);
    expect(r.stderr).toContain(`the command stopped (SIGTERM) after the lease on "res/lost" was lost`);
    expect(processExists(pid)).toBe(false);
  });

  it("a CMD that ignores SIGTERM gets SIGKILL after --kill-after once the lease is lost", async () => {
    const script = [
      "process.on('SIGTERM', () => console.log('ignoring SIGTERM'));",
      "console.log(process.pid, process.env.LEASEHOLD_LEASE_ID);",
      "setInterval(() => {}, 1000);",
    ].join("\n");
    const p = start([
      "acquire",
      "res/stubborn",
      "--ttl",
      "3",
      "--kill-after",
      "200ms",
      "--",
      "node",
      "-e",
      script,
    ]);
    const [, pidText, lease] = await p.waitForOutput(/^(\d+) ([0-9a-f]{16})\n/);
    const pid = Number(pidText);
    commandPids.add(pid);
    expect(await cli(["lease", "revoke", lease!])).toMatchObject({ code: 0 });
    const r = await p.exit(10_000);
    expect(r.stdout).toContain("ignoring SIGTERM");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the command stopped (SIGKILL)");
    expect(processExists(pid)).toBe(false);
  });

  it("lock waits its turn behind the holder, then runs CMD with a higher fencing token", async () => {
    const first = await sdk.acquire("res/lock", { ttl: 30, holder: "first" });
    const p = start([
      "lock",
      "res/lock",
      "--ttl",
      "5",
      "--",
      "node",
      "-e",
      "console.log(process.env.LEASEHOLD_FENCING_TOKEN)",
    ]);
    while ((await sdk.holding("res/lock")).waiters.length === 0) {
      // queued on the server: seen through Get, not through time
      expect(p.child.exitCode).toBeNull();
    }
    expect(p.stdout).toBe("");
    await first.release();
    const r = await p.exit();
    expect(r.code).toBe(0);
    expect(Number(r.stdout.trim())).toBeGreaterThan(first.fencingToken);
    expect((await sdk.holding("res/lock")).holder).toBeUndefined();
  });
});

describe("counter, elect, status", () => {
  it("counter add (also negative), get and cas (SUCCESS exits 0, FAILURE exits 1)", async () => {
    expect(await cli(["counter", "add", "hits", "5"])).toMatchObject({ code: 0, stdout: "5\n" });
    expect(await cli(["counter", "add", "hits", "-2"])).toMatchObject({ code: 0, stdout: "3\n" });
    expect(await cli(["counter", "get", "hits"])).toMatchObject({ code: 0, stdout: "3\n" });
    expect(await cli(["counter", "cas", "hits", "3", "10"])).toMatchObject({
      code: 0,
      stdout: "SUCCESS\n10\n",
    });
    expect(await cli(["counter", "cas", "hits", "3", "11"])).toMatchObject({
      code: 1,
      stdout: "FAILURE\n10\n",
    });
    expect(JSON.parse((await cli(["-w", "json", "counter", "get", "hits"])).stdout)).toEqual({
      name: "hits",
      value: "10",
    });
    expect(await sdk.counter("hits").get()).toBe(10n);
  });

  it("elect prints the leader key and value; --listen follows the leader; SIGINT resigns", async () => {
    const a = start(["elect", "el", "proposal-a", "--ttl", "5"]);
    const [, keyA] = await a.waitForOutput(/^(el\/[0-9a-f]+)\nproposal-a\n$/);
    const listen = start(["elect", "el", "--listen"]);
    await listen.waitForOutput(new RegExp(`^${keyA}\\nproposal-a\\n$`));
    const b = start(["elect", "el", "proposal-b", "--ttl", "5"]);
    // b campaigns behind a: its key exists, it is not leader yet.
    while ((await cli(["get", "el/", "--prefix"])).stdout.split("\n").length < 5) {
      expect(b.stdout).toBe("");
    }
    a.kill("SIGINT");
    expect((await a.exit()).code).toBe(0);
    const [, keyB] = await b.waitForOutput(/^(el\/[0-9a-f]+)\nproposal-b\n$/);
    await listen.waitForOutput(new RegExp(`${keyB}\\nproposal-b\\n$`));
    b.kill("SIGTERM");
    expect((await b.exit()).code).toBe(0);
    listen.kill("SIGINT");
    expect((await listen.exit()).code).toBe(0);
    expect((await cli(["get", "el/", "--prefix"])).stdout).toBe("");
  });

  it("status: one table row per endpoint with member, leader, term, revision and leases", async () => {
    const held = await sdk.acquire("res/status", { ttl: 30, holder: "dave" });
    try {
      const r = await cli(["status"]);
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split("\n");
      expect(lines).toHaveLength(5);
      const cells = (line: string) =>
        line
          .split("|")
          .slice(1, -1)
          .map((c) => c.trim());
      const row = Object.fromEntries(cells(lines[1]!).map((h, i) => [h, cells(lines[3]!)[i]]));
      expect(row).toMatchObject({
        ENDPOINT: member.endpoint,
        NAME: "m1",
        "IS LEADER": "true",
        LEADER: "m1",
        MEMBERS: "1",
      });
      expect(Number(row["RAFT TERM"])).toBeGreaterThan(0);
      expect(Number(row.REVISION)).toBeGreaterThan(0);
      expect(Number(row.LEASES)).toBeGreaterThanOrEqual(1);
      const json = JSON.parse((await cli(["-w", "json", "status"])).stdout);
      expect(json.endpoints[0]).toMatchObject({ endpoint: member.endpoint, name: "m1", is_leader: true });
      expect(json.members).toHaveLength(1);
    } finally {
      await held.release();
    }
  });
});
