/**
 * Runtime membership with real processes and etcdctl, the way an etcd
 * operator grows and shrinks a cluster: one member; `member add --learner`,
 * then the new member started with `--initial-cluster-state existing` learns
 * its id from the cluster and replicates the data; `member promote`; a third
 * voter; etcd's refusals (peer URL in use, a second learner,
 * promoting a voter, unknown ids); `member remove` of the leader, which stops
 * by itself while the other two carry on; and a restart of the members that
 * joined at runtime (their identity comes from the data directory).
 */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MemberProcess } from "../support/process.ts";
import {
  etcdctl,
  expectExit,
  freePort,
  killAll,
  removeDir,
  restartMember,
  startMember,
  tempDir,
  terminate,
} from "../support/process.ts";

let dir: string;
const procs = new Map<string, MemberProcess>();
const peerUrl = new Map<string, string>();

async function start(name: string, state: "new" | "existing", cluster: string[]): Promise<MemberProcess> {
  const m = await startMember(name, `${dir}/${name}`, await freePort(), [
    "--listen-peer-urls",
    peerUrl.get(name)!,
    "--initial-advertise-peer-urls",
    peerUrl.get(name)!,
    "--initial-cluster",
    cluster.map((n) => `${n}=${peerUrl.get(n)}`).join(","),
    "--initial-cluster-state",
    state,
    "--heartbeat-interval",
    "50",
    "--election-timeout",
    "500",
  ]);
  procs.set(name, m);
  return m;
}

const ctl = (name: string, args: string[]) => etcdctl(procs.get(name)!.endpoint, args);

/** etcdctl member list (simple format) as rows: id, status, name, peer, client, learner. */
async function memberList(via: string): Promise<string[][]> {
  const r = await ctl(via, ["member", "list"]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split("\n")
    .map((l) => l.split(", "))
    .sort((a, b) => a[2]!.localeCompare(b[2]!));
}

/** Retries an etcdctl call while the cluster settles (a leader change, a member catching up). */
async function eventually(name: string, args: string[], want: (stdout: string) => boolean): Promise<string> {
  let last = "";
  for (let i = 0; i < 50; i++) {
    const r = await ctl(name, args);
    last = `${r.code} ${r.stdout} ${r.stderr}`;
    if (r.code === 0 && want(r.stdout)) return r.stdout;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`etcdctl ${args.join(" ")} via ${name}: ${last}`);
}

beforeAll(async () => {
  dir = tempDir("membership");
  for (const n of ["a", "b", "c"]) peerUrl.set(n, `http://127.0.0.1:${await freePort()}`);
  await start("a", "new", ["a"]);
});

afterAll(async () => {
  await killAll();
  removeDir(dir);
});

describe("runtime membership", { timeout: 60_000 }, () => {
  let idOf: (name: string) => string;

  it("adds a learner that joins with --initial-cluster-state existing and replicates the data", async () => {
    expect((await ctl("a", ["put", "before", "1"])).code).toBe(0);
    const added = await ctl("a", ["member", "add", "b", `--peer-urls=${peerUrl.get("b")}`, "--learner"]);
    expect(added.code, added.stderr).toBe(0);
    // etcdctl prints what the new member must be started with.
    expect(added.stdout).toContain('ETCD_NAME="b"');
    expect(added.stdout).toContain(`a=${peerUrl.get("a")}`);
    expect(added.stdout).toContain(`b=${peerUrl.get("b")}`);
    expect(added.stdout).toContain('ETCD_INITIAL_CLUSTER_STATE="existing"');
    const before = await memberList("a");
    expect(before.find((r) => r[1] === "unstarted")?.[3]).toBe(peerUrl.get("b"));

    const b = await start("b", "existing", ["a", "b"]);
    expect(b.log).toContain("learned the membership");
    await eventually(
      "b",
      ["get", "before", "--consistency=s", "--print-value-only"],
      (o) => o.trim() === "1",
    );
    const rows = await (async () => {
      for (;;) {
        const list = await memberList("a");
        if (list.every((r) => r[1] === "started")) return list;
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    expect(rows.map((r) => [r[2], r[3], r[4], r[5]])).toEqual([
      ["a", peerUrl.get("a"), procs.get("a")!.clientUrl, "false"],
      ["b", peerUrl.get("b"), b.clientUrl, "true"],
    ]);
    idOf = (name) => rows.find((r) => r[2] === name)![0]!;
    const status = await ctl("b", ["endpoint", "status", "-w", "json"]);
    expect(JSON.parse(status.stdout)[0].Status.isLearner).toBe(true);
  });

  it("refuses what etcd refuses, with etcd's messages", async () => {
    const dup = await ctl("a", ["member", "add", "x", `--peer-urls=${peerUrl.get("b")}`]);
    expect(dup.stderr).toContain("etcdserver: Peer URLs already exists");
    const second = await ctl("a", ["member", "add", "x", "--peer-urls=http://127.0.0.1:1", "--learner"]);
    expect(second.stderr).toContain("etcdserver: too many learner members in cluster");
    const voter = await ctl("a", ["member", "promote", idOf("a")]);
    expect(voter.stderr).toContain("etcdserver: can only promote a learner member");
    const unknown = await ctl("a", ["member", "remove", "abcdef"]);
    expect(unknown.stderr).toContain("etcdserver: member not found");
    expect((await memberList("a")).length).toBe(2);
    // Started with `existing` but never added: it asks the members, is not listed, and exits saying why.
    peerUrl.set("z", `http://127.0.0.1:${await freePort()}`);
    const stranger = await start("z", "existing", ["a", "z"]).then(
      () => "started",
      (e: Error) => e.message,
    );
    expect(stranger).toContain("is not in the cluster: add it first (etcdctl member add z");
    procs.delete("z");
  });

  it("promotes the learner, adds a third voter, and all three serve the same data", async () => {
    // A learner serves only Status and serializable reads (etcd 3.4): the promotion goes through a voter.
    const refused = await ctl("b", ["member", "promote", idOf("b")]);
    expect(refused.stderr).toContain("etcdserver: rpc not supported for learner");
    const promoted = await ctl("a", ["member", "promote", idOf("b")]);
    expect(promoted.code, promoted.stderr).toBe(0);
    expect(promoted.stdout).toMatch(new RegExp(`Member\\s+${idOf("b")} promoted`));
    const added = await ctl("b", ["member", "add", "c", `--peer-urls=${peerUrl.get("c")}`]);
    expect(added.code, added.stderr).toBe(0);
    await start("c", "existing", ["a", "b", "c"]);
    expect((await ctl("c", ["put", "after", "3"])).code).toBe(0);
    for (const n of ["a", "b", "c"])
      await eventually(n, ["get", "after", "--consistency=s", "--print-value-only"], (o) => o.trim() === "3");
    // c publishes its name and client URL once it has a leader: then etcdctl shows it "started".
    await eventually(
      "c",
      ["member", "list"],
      (o) => !o.includes("unstarted") && o.trim().split("\n").length === 3,
    );
    const rows = await memberList("c");
    expect(rows.map((r) => [r[2], r[5]])).toEqual([
      ["a", "false"],
      ["b", "false"],
      ["c", "false"],
    ]);
  });

  it("removes the leader: it stops by itself and the other two keep serving", async () => {
    const status = await ctl("a", ["endpoint", "status", "-w", "json"]);
    const leader = BigInt(JSON.parse(status.stdout)[0].Status.leader);
    const rows = await memberList("a");
    const row = rows.find((r) => BigInt(`0x${r[0]}`) === leader)!;
    const name = row[2]!;
    const via = name === "a" ? "b" : "a";
    const exited = expectExit(procs.get(name)!);
    // "unhealthy cluster" is etcd's transient refusal while a voter's connection is down (a loaded
    // machine can drop one for a moment): a client tries again.
    let removed = await ctl(via, ["member", "remove", row[0]!]);
    for (let i = 0; i < 50 && removed.stderr.includes("unhealthy cluster"); i++) {
      await new Promise((res) => setTimeout(res, 100));
      removed = await ctl(via, ["member", "remove", row[0]!]);
    }
    expect(removed.code, removed.stderr).toBe(0);
    expect(await exited).toBe(0);
    expect(procs.get(name)!.log).toContain("permanently removed");
    procs.delete(name);
    const [x, y] = [...procs.keys()];
    await eventually(x!, ["put", "survivor", "ok"], () => true);
    await eventually(y!, ["get", "survivor", "--print-value-only"], (o) => o.trim() === "ok");
    expect((await memberList(y!)).map((r) => r[2])).toEqual([x, y].sort());
  });

  it("restarts the remaining members from their data directories, ids and data intact", async () => {
    const namesBefore = (await memberList([...procs.keys()][0]!)).map((r) => `${r[0]} ${r[2]}`);
    for (const m of procs.values()) await terminate(m);
    await Promise.all([...procs.values()].map((m) => restartMember(m)));
    const [x, y] = [...procs.keys()];
    await eventually(x!, ["get", "survivor", "--print-value-only"], (o) => o.trim() === "ok");
    await eventually(y!, ["put", "restarted", "yes"], () => true);
    expect((await memberList(x!)).map((r) => `${r[0]} ${r[2]}`)).toEqual(namesBefore);
  });
});
