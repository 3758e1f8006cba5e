/**
 * Snapshot and restore end to end with real processes, as an etcd operator
 * does it: `etcdctl snapshot save` from a running leasehold member, then
 * `leasehold snapshot restore` (etcdctl's flags) into new data directories,
 * `leasehold serve` on them, and etcdctl reads the keys, the lease (re-granted
 * with its TTL) and the new membership back. A three-member cluster restored
 * from one file then hands leadership over with `etcdctl move-leader`, whose
 * output is etcd's. Bad restores (the data directory exists, an etcd bbolt
 * file, a damaged file) fail with a reason and exit code 1.
 */

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RestoreError, restoreDataDir } from "../../src/server/restore.ts";
import type { MemberProcess } from "../support/process.ts";
import { etcdctl, freePort, killAll, removeDir, startMember, tempDir } from "../support/process.ts";

const BIN = fileURLToPath(new URL("../../bin/leasehold.js", import.meta.url));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function leasehold(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** --name, peer URL flags and --initial-cluster for members `names` on fresh ports. */
async function layout(names: readonly string[]): Promise<{ name: string; peer: string; flags: string[] }[]> {
  const peers = await Promise.all(names.map(async () => `http://127.0.0.1:${await freePort()}`));
  const cluster = names.map((n, i) => `${n}=${peers[i]}`).join(",");
  return names.map((name, i) => ({
    name,
    peer: peers[i]!,
    flags: [
      "--initial-cluster",
      cluster,
      "--initial-advertise-peer-urls",
      peers[i]!,
      "--initial-cluster-token",
      "restored",
    ],
  }));
}

let dir: string;
let source: MemberProcess;
let file: string;
let leaseHex: string;
let sourceClusterId: bigint;

beforeAll(async () => {
  dir = tempDir("snapshot");
  const [m] = await layout(["src"]);
  source = await startMember("src", join(dir, "src"), await freePort(), [
    "--listen-peer-urls",
    m!.peer,
    ...m!.flags,
  ]);
  const ctl = (args: string[]) => etcdctl(source.endpoint, args);
  expect((await ctl(["put", "foo", "bar"])).stdout).toBe("OK\n");
  expect((await ctl(["put", "foo", "baz"])).stdout).toBe("OK\n");
  leaseHex = /lease ([0-9a-f]+) granted/.exec((await ctl(["lease", "grant", "600"])).stdout)![1]!;
  expect((await ctl(["put", "held", "by-lease", `--lease=${leaseHex}`])).stdout).toBe("OK\n");
  sourceClusterId = BigInt(JSON.parse((await ctl(["get", "foo", "-w", "json"])).stdout).header.cluster_id);
  file = join(dir, "snap.db");
  const saved = await ctl(["snapshot", "save", file]);
  expect(saved.stdout, saved.stderr).toBe(`Snapshot saved at ${file}\n`);
});

afterAll(async () => {
  await killAll();
  removeDir(dir);
});

describe("etcdctl snapshot save, leasehold snapshot restore, leasehold serve", () => {
  it("restores a one-member cluster with the keys, the lease and a new identity", async () => {
    const [r] = await layout(["r1"]);
    const dataDir = join(dir, "r1");
    const restored = await leasehold([
      "snapshot",
      "restore",
      file,
      "--data-dir",
      dataDir,
      "--name",
      "r1",
      ...r!.flags,
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stderr).toContain('"msg":"restored snapshot"');
    const m = await startMember("r1", dataDir, await freePort(), [
      "--listen-peer-urls",
      r!.peer,
      ...r!.flags,
    ]);
    const ctl = (args: string[]) => etcdctl(m.endpoint, args);
    expect((await ctl(["get", "foo"])).stdout).toBe("foo\nbaz\n");
    expect((await ctl(["get", "held", "--print-value-only"])).stdout).toBe("by-lease\n");
    expect((await ctl(["lease", "list"])).stdout).toBe(`found 1 leases\n${leaseHex}\n`);
    expect((await ctl(["lease", "timetolive", leaseHex, "--keys"])).stdout).toMatch(
      new RegExp(
        `^lease ${leaseHex} granted with TTL\\(600s\\), remaining\\(\\d+s\\), attached keys\\(\\[held\\]\\)\\n$`,
      ),
    );
    const members = (await ctl(["member", "list"])).stdout.trim().split("\n");
    expect(members).toHaveLength(1);
    expect(members[0]).toMatch(new RegExp(`^[0-9a-f]+, started, r1, ${r!.peer}, `));
    const json = JSON.parse((await ctl(["get", "foo", "-w", "json"])).stdout);
    expect(BigInt(json.header.cluster_id)).not.toBe(sourceClusterId);
    // The history came along: the revision of the first put is still readable.
    expect((await ctl(["get", "foo", "--rev", "2", "--print-value-only"])).stdout).toBe("bar\n");
    expect((await ctl(["put", "new", "write"])).stdout).toBe("OK\n");
    // Revoking the restored lease deletes its key, as on the source.
    expect((await ctl(["lease", "revoke", leaseHex])).stdout).toBe(`lease ${leaseHex} revoked\n`);
    expect((await ctl(["get", "held"])).stdout).toBe("");
  });

  it("restores a three-member cluster from one file; etcdctl move-leader hands leadership over", async () => {
    const names = ["a", "b", "c"];
    const lay = await layout(names);
    const members = await Promise.all(
      lay.map(async (l) => {
        const dataDir = join(dir, l.name);
        const r = await leasehold([
          "snapshot",
          "restore",
          file,
          "--data-dir",
          dataDir,
          "--name",
          l.name,
          ...l.flags,
        ]);
        expect(r.code, r.stderr).toBe(0);
        return startMember(l.name, dataDir, await freePort(), ["--listen-peer-urls", l.peer, ...l.flags]);
      }),
    );
    const all = members.map((m) => m.endpoint).join(",");
    for (const m of members) expect((await etcdctl(m.endpoint, ["get", "foo"])).stdout).toBe("foo\nbaz\n");
    const status = async () =>
      (
        JSON.parse((await etcdctl(all, ["endpoint", "status", "-w", "json"])).stdout) as {
          Status: { header: { member_id: number }; leader: number };
        }[]
      ).map((e) => ({ id: BigInt(e.Status.header.member_id), leader: BigInt(e.Status.leader) }));
    const before = await status();
    const leader = before[0]!.leader;
    expect(before.every((s) => s.leader === leader)).toBe(true);
    const target = before.find((s) => s.id !== leader)!.id;
    const moved = await etcdctl(all, ["move-leader", target.toString(16)]);
    expect(moved.stdout, moved.stderr).toBe(
      `Leadership transferred from ${leader.toString(16)} to ${target.toString(16)}\n`,
    );
    expect((await status()).map((s) => s.leader)).toContain(target);
    const self = await etcdctl(all, ["move-leader", target.toString(16)]);
    expect(self.stdout).toBe(
      `Leadership transferred from ${target.toString(16)} to ${target.toString(16)}\n`,
    );
    const bad = await etcdctl(all, ["move-leader", "abc"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("Error: etcdserver: bad leader transferee\n");
  });

  it("refuses an existing data directory, an etcd (bbolt) file and a damaged file", async () => {
    const [r] = await layout(["x"]);
    const cli = await leasehold(["snapshot", "restore", file, "--data-dir", dir, "--name", "x", ...r!.flags]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`Error: data-dir "${dir}" exists\n`);
    expect((await leasehold(["snapshot", "restore"])).code).toBe(2);

    // The same checks in-process (each CLI start costs a second).
    const restore = (path: string, dataDir: string) =>
      restoreDataDir({
        snapshotPath: path,
        dataDir,
        memberId: 1,
        clusterId: 7n,
        initialCluster: [{ name: "x", id: 1, peerUrls: [] }],
      });
    expect(() => restore(file, dir)).toThrow(RestoreError);
    // A bbolt file's first page: its meta magic at offset 16, then etcd's trailing checksum.
    const bolt = Buffer.alloc(4096);
    bolt.writeUInt32LE(0xed0cdaed, 16);
    const boltFile = join(dir, "etcd.db");
    writeFileSync(boltFile, Buffer.concat([bolt, createHash("sha256").update(bolt).digest()]));
    expect(() => restore(boltFile, join(dir, "x1"))).toThrow(/this is an etcd \(bbolt\) snapshot/);
    const damaged = Buffer.from(readFileSync(file));
    damaged[600]! ^= 0xff;
    const damagedFile = join(dir, "damaged.db");
    writeFileSync(damagedFile, damaged);
    expect(() => restore(damagedFile, join(dir, "x2"))).toThrow(
      /^expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}: the file is damaged$/,
    );
    writeFileSync(damagedFile, readFileSync(file).subarray(0, 1000));
    expect(() => restore(damagedFile, join(dir, "x3"))).toThrow(
      "snapshot missing hash but --skip-hash-check=false",
    );
    expect(existsSync(join(dir, "x1")) || existsSync(join(dir, "x2")) || existsSync(join(dir, "x3"))).toBe(
      false,
    );
  });
});
