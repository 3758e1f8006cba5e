/**
 * etcdctl (etcd 3.4's, from Debian's etcd-client) against one real
 * `leasehold serve` process: the commands an etcd user types, with their
 * output checked as etcdctl prints it.
 */

import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdTestClient } from "../../src/client/etcd-client.ts";
import type { MemberProcess } from "../support/process.ts";
import {
  etcdctl,
  freePort,
  killAll,
  removeDir,
  restartMember,
  startMember,
  tempDir,
  terminate,
} from "../support/process.ts";

let member: MemberProcess;
let dir: string;
const ctl = (args: string[], input?: string) => etcdctl(member.endpoint, args, input);

beforeAll(async () => {
  dir = tempDir("etcdctl");
  const peerPort = await freePort();
  const peer = `http://127.0.0.1:${peerPort}`;
  member = await startMember("m1", dir, await freePort(), [
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `m1=${peer}`,
  ]);
});

afterAll(async () => {
  await killAll();
  removeDir(dir);
});

describe("etcdctl against one member", () => {
  it("put, get, get -w json, del", async () => {
    expect((await ctl(["put", "foo", "bar"])).stdout).toBe("OK\n");
    expect((await ctl(["get", "foo"])).stdout).toBe("foo\nbar\n");
    const json = JSON.parse((await ctl(["get", "foo", "-w", "json"])).stdout);
    expect(Buffer.from(json.kvs[0].key, "base64").toString()).toBe("foo");
    expect(json.kvs[0].version).toBe(1);
    expect(json.count).toBe(1);
    expect(typeof json.header.cluster_id).toBe("number");
    expect((await ctl(["put", "foo2", "x"])).stdout).toBe("OK\n");
    expect((await ctl(["get", "foo", "--prefix", "--keys-only"])).stdout).toBe("foo\n\nfoo2\n\n");
    expect((await ctl(["del", "foo", "--prefix"])).stdout).toBe("2\n");
    expect((await ctl(["get", "foo"])).stdout).toBe("");
  });

  it("txn: compare, then the success or the failure branch", async () => {
    await ctl(["put", "t", "1"]);
    const ok = await ctl(["txn"], 'value("t") = "1"\n\nput t 2\n\nput t 3\n\n');
    expect(ok.stdout).toBe("SUCCESS\n\nOK\n");
    const failed = await ctl(["txn"], 'value("t") = "1"\n\nput t 4\n\nput t 5\n\n');
    expect(failed.stdout).toBe("FAILURE\n\nOK\n");
    expect((await ctl(["get", "t", "--print-value-only"])).stdout).toBe("5\n");
  });

  it("leases: grant, put --lease, keep-alive --once, timetolive --keys, list, revoke deletes the key", async () => {
    const grant = await ctl(["lease", "grant", "60"]);
    const m = /^lease ([0-9a-f]+) granted with TTL\(60s\)\n$/.exec(grant.stdout);
    expect(m, grant.stdout + grant.stderr).not.toBeNull();
    const id = m![1]!;
    expect((await ctl(["put", "held", "v", `--lease=${id}`])).stdout).toBe("OK\n");
    expect((await ctl(["lease", "keep-alive", "--once", id])).stdout).toBe(
      `lease ${id} keepalived with TTL(60)\n`,
    );
    const ttl = (await ctl(["lease", "timetolive", "--keys", id])).stdout;
    expect(ttl).toMatch(
      new RegExp(
        `^lease ${id} granted with TTL\\(60s\\), remaining\\((59|60)s\\), attached keys\\(\\[held\\]\\)\\n$`,
      ),
    );
    expect((await ctl(["lease", "list"])).stdout).toContain(id);
    expect((await ctl(["lease", "revoke", id])).stdout).toBe(`lease ${id} revoked\n`);
    expect((await ctl(["get", "held"])).stdout).toBe("");
    expect((await ctl(["lease", "timetolive", id])).stdout).toBe(`lease ${id} already expired\n`);
    const gone = await ctl(["lease", "keep-alive", "--once", id]);
    expect(gone.stderr).toContain("etcdserver: requested lease not found");
  });

  it("watch: replays history from a revision and follows new events", async () => {
    const rev = JSON.parse((await ctl(["put", "w/a", "1", "-w", "json"])).stdout).header.revision as number;
    await ctl(["put", "w/b", "2"]);
    await ctl(["del", "w/a"]);
    const child = spawn(
      "etcdctl",
      [`--endpoints=${member.endpoint}`, "watch", "--prefix", "w/", `--rev=${rev}`],
      {
        env: { ...process.env, ETCDCTL_API: "3" },
      },
    );
    let out = "";
    const want = "PUT\nw/a\n1\nPUT\nw/b\n2\nDELETE\nw/a\n\nPUT\nw/c\n3\n";
    await new Promise<void>((resolve) => {
      let sent = false;
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (chunk: string) => {
        out += chunk;
        // The replayed history arrived: one more write must follow live.
        if (!sent && out.includes("DELETE\nw/a\n")) {
          sent = true;
          void ctl(["put", "w/c", "3"]);
        }
        if (out.includes("w/c\n3\n")) resolve();
      });
    });
    child.kill("SIGKILL");
    expect(out).toBe(want);
  });

  it("endpoint status and health with http:// endpoints and --cluster (grpc-go's authority rewritten at the front door)", async () => {
    const url = member.clientUrl;
    const status = await etcdctl(url, ["endpoint", "status"]);
    expect(status.stderr).toBe("");
    expect(status.stdout).toMatch(
      new RegExp(`^${url}, [0-9a-f]+, 3\\.4\\.0, .+, (true|false), false, \\d+, \\d+, \\d+, \\n$`),
    );
    // --cluster dials the client URLs the member published (shortly after it started).
    for (let i = 0; i < 50 && !(await ctl(["member", "list"])).stdout.includes(url); i++)
      await new Promise((res) => setTimeout(res, 100));
    const cluster = await etcdctl(url, ["endpoint", "status", "--cluster"]);
    expect(cluster.stderr).toBe("");
    expect(cluster.stdout.startsWith(`${url}, `)).toBe(true);
    const health = await etcdctl(url, ["endpoint", "health", "--cluster"]);
    // etcdctl 3.4 prints health on stderr.
    expect(health.stderr).toMatch(new RegExp(`^${url} is healthy: successfully committed proposal: took = `));
  });

  it("answers bad requests with etcd's errors", async () => {
    expect((await ctl(["put", "", "x"])).stderr).toContain("Error: etcdserver: key is not provided");
    expect((await ctl(["get", "foo", "--rev=100000"])).stderr).toContain(
      "etcdserver: mvcc: required revision is a future revision",
    );
    expect((await ctl(["lease", "grant", "100000000000"])).stderr).toContain(
      "etcdserver: too large lease TTL",
    );
    const status = await ctl(["endpoint", "status", "-w", "json"]);
    expect(JSON.parse(status.stdout)[0].Status.leader).toBeGreaterThan(0);
  });

  it("refuses a request over 1.5 MiB with etcd's error, and stays up", async () => {
    const c = new EtcdTestClient(member.endpoint, 10_000);
    await expect(c.put("big", "x".repeat(1_600_000))).rejects.toThrow("etcdserver: request is too large");
    expect((await c.put("small", "y")).header).toBeDefined();
    c.close();
  });

  it("keeps its data across a graceful restart", async () => {
    await ctl(["put", "durable", "yes"]);
    await terminate(member);
    member = await restartMember(member);
    expect((await ctl(["get", "durable", "--print-value-only"])).stdout).toBe("yes\n");
  });
});
