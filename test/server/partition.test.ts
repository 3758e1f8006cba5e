/**
 * A member cut off from its peers by fault-injecting proxies (test/support/proxy.ts):
 * three real processes whose advertised peer URLs are proxies. The leader is
 * isolated: the majority elects another and keeps serving; the isolated one
 * commits nothing; healed, it does not disrupt the cluster (pre-vote: the
 * leader and its term stay), and it catches up by a snapshot, because the
 * majority compacted its log meanwhile (--snapshot-count 16).
 */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deriveMemberId, parseUrls } from "../../src/cli/serve-config.ts";
import { EtcdTestClient } from "../../src/client/etcd-client.ts";
import type { MemberProcess } from "../support/process.ts";
import { etcdctl, freePort, killAll, removeDir, startMember, tempDir } from "../support/process.ts";
import { PeerProxy } from "../support/proxy.ts";

const TOKEN = "partition-test";
let dir: string;
const members: MemberProcess[] = [];
const ids = new Map<string, number>();
const proxies = new Map<string, PeerProxy>();
const clients = new Map<string, EtcdTestClient>();

beforeAll(async () => {
  dir = tempDir("partition");
  const names = ["a", "b", "c"];
  const advertised = await Promise.all(names.map(() => freePort()));
  const real = await Promise.all(names.map(() => freePort()));
  const clientPorts = await Promise.all(names.map(() => freePort()));
  const cluster = names.map((n, i) => `${n}=http://127.0.0.1:${advertised[i]}`).join(",");
  for (const [i, n] of names.entries()) {
    const proxy = new PeerProxy(advertised[i]!, real[i]!);
    await proxy.start();
    proxies.set(n, proxy);
    ids.set(n, deriveMemberId(TOKEN, n, parseUrls("x", `http://127.0.0.1:${advertised[i]}`)));
  }
  const started = await Promise.all(
    names.map((n, i) =>
      startMember(n, `${dir}/${n}`, clientPorts[i]!, [
        "--listen-peer-urls",
        `http://127.0.0.1:${real[i]}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${advertised[i]}`,
        "--initial-cluster",
        cluster,
        "--initial-cluster-token",
        TOKEN,
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
        "--snapshot-count",
        "16",
      ]),
    ),
  );
  members.push(...started);
  for (const m of members) clients.set(m.name, new EtcdTestClient(m.endpoint, 1_500));
});

afterAll(async () => {
  for (const c of clients.values()) c.close();
  await killAll();
  for (const p of proxies.values()) await p.close();
  removeDir(dir);
});

interface Status {
  leader: number;
  term: number;
  id: number;
}

async function status(m: MemberProcess): Promise<Status | undefined> {
  const res = await etcdctl(m.endpoint, ["endpoint", "status", "-w", "json"]);
  try {
    const s = JSON.parse(res.stdout)[0].Status;
    // Proto JSON leaves zero values out: no "leader" field means no leader known.
    return { leader: s.leader ?? 0, term: s.raftTerm ?? 0, id: s.header.member_id };
  } catch {
    return undefined;
  }
}

/** Calls `f` until it answers. */
async function eventually<T>(f: () => Promise<T | undefined>): Promise<T> {
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function cut(name: string, on: boolean): void {
  const id = ids.get(name)!;
  for (const [other, proxy] of proxies) {
    if (other === name) continue;
    // Both directions: the others' proxies refuse `name`, and `name`'s proxy refuses the others.
    if (on) proxy.block(id);
    else proxy.unblock(id);
    const otherId = ids.get(other)!;
    if (on) proxies.get(name)!.block(otherId);
    else proxies.get(name)!.unblock(otherId);
  }
}

describe("a member partitioned away", () => {
  it("cannot commit, does not disrupt the cluster when healed, and catches up by snapshot", async () => {
    const first = await eventually(async () => {
      const s = await status(members[0]!);
      return s !== undefined && s.leader !== 0 ? s : undefined;
    });
    const isolated = members.find((m) => ids.get(m.name) === first.leader)!;
    const majority = members.filter((m) => m !== isolated);
    await eventually(() => clients.get(majority[0]!.name)!.put("before", "1"));

    cut(isolated.name, true);
    // The majority elects a leader among itself and keeps serving.
    const during = await eventually(async () => {
      const s = await status(majority[0]!);
      return s !== undefined && s.leader !== 0 && s.leader !== first.leader ? s : undefined;
    });
    expect(during.term).toBeGreaterThan(first.term);
    // The isolated member commits nothing: a write through it fails.
    await expect(clients.get(isolated.name)!.put("lost", "x")).rejects.toThrow();
    // Enough writes through the majority that it compacts past the isolated member's log.
    for (let i = 0; i < 60; i++)
      await eventually(() => clients.get(majority[i % 2]!.name)!.put(`during/${i}`, String(i)));

    cut(isolated.name, false);
    // Caught up: the isolated member serves the newest write from its own state.
    await eventually(async () =>
      (await clients.get(isolated.name)!.get("during/59", true)) === "59" ? true : undefined,
    );
    expect(isolated.log).toContain("restored a snapshot from the leader");
    // Not disrupted: the same leader in the same term (pre-vote kept the rejoining member from
    // forcing an election), and the write that went through the isolated member never happened.
    const after = await eventually(() => status(majority[0]!));
    expect(after.leader).toBe(during.leader);
    expect(after.term).toBe(during.term);
    for (const m of members)
      expect(await eventually(async () => (await clients.get(m.name)!.get("lost")) ?? "absent")).toBe(
        "absent",
      );
  });
});
