/**
 * The space quota and the NOSPACE alarm as an etcd operator meets them, side
 * by side: the same etcdctl session runs against a real etcd 3.4 and against
 * a `leasehold serve` process, both started with a small
 * --quota-backend-bytes, and the transcripts (member ids, revisions and URLs
 * normalized) must be identical. The session is etcd's documented recovery
 * (etcd.io "Maintenance: space quota"): one key written until the space is
 * exhausted, `alarm list`, reads and deletes still served, writes and lease
 * grants refused, `compact` to the current revision, `defrag`, `alarm
 * disarm`, and writes work again. How many writes fit differs (etcd counts
 * bbolt pages, leasehold its kept versions): the transcript records only
 * that the fill ended with NOSPACE.
 */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdTestClient } from "../../src/client/etcd-client.ts";
import { type EtcdProcess, startEtcd, stopAllEtcd } from "../support/etcd.ts";
import type { MemberProcess } from "../support/process.ts";
import { etcdctl, freePort, killAll, removeDir, startMember, tempDir } from "../support/process.ts";

const QUOTA = "60000";
/** Enough writes of 1000 bytes to fill either server many times over. */
const FILL_MAX = 400;

let etcd: EtcdProcess;
let member: MemberProcess;
let dir: string;

beforeAll(async () => {
  dir = tempDir("alarm");
  const peer = `http://127.0.0.1:${await freePort()}`;
  [etcd, member] = await Promise.all([
    startEtcd({ name: "quota", args: ["--quota-backend-bytes", QUOTA] }),
    startMember("quota", dir, await freePort(), [
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `quota=${peer}`,
      "--quota-backend-bytes",
      QUOTA,
    ]),
  ]);
});

afterAll(async () => {
  await Promise.all([killAll(), stopAllEtcd()]);
  removeDir(dir);
});

/** The operator's session against `endpoint`, as lines with ids, revisions and URLs normalized. */
async function session(endpoint: string): Promise<string[]> {
  const out: string[] = [];
  let memberId = "";
  const norm = (s: string): string =>
    s
      .replaceAll(memberId, "<ID>")
      .replaceAll(endpoint, "<URL>")
      .replace(/compact(ed revision)? \d+/, "compact$1 <REV>");
  const ctl = async (args: string[]): Promise<void> => {
    const r = await etcdctl(endpoint, args);
    // etcdctl's client logs a retry warning line first on errors; the last stderr line is the error.
    const err = r.stderr.trim().split("\n").at(-1) ?? "";
    out.push(
      norm(`$ etcdctl ${args.join(" ")} => ${r.code}`),
      ...norm(r.stdout)
        .split("\n")
        .filter((l) => l !== ""),
    );
    if (r.code !== 0) out.push(`stderr: ${norm(err)}`);
  };
  const client = new EtcdTestClient(endpoint, 5_000);
  try {
    // The raw digits: JSON.parse would round an id above 2^53.
    const json = (await etcdctl(endpoint, ["endpoint", "status", "-w", "json"])).stdout;
    memberId = /"member_id":(\d+)/.exec(json)![1]!;
    let ended = "no NOSPACE";
    for (let i = 0; i < FILL_MAX; i++) {
      try {
        await client.put("key", "x".repeat(1000));
      } catch (e) {
        ended = (e as Error).message;
        break;
      }
    }
    out.push(`fill ended: ${ended}`);
    await ctl(["put", "key", "small"]);
    await ctl(["alarm", "list"]);
    const status = JSON.parse((await etcdctl(endpoint, ["endpoint", "status", "-w", "json"])).stdout);
    out.push(`status errors: ${norm(JSON.stringify(status[0].Status.errors))}`);
    await ctl(["lease", "grant", "10"]);
    const value = await etcdctl(endpoint, ["get", "key", "--print-value-only"]);
    out.push(`get key: ${value.code} ${value.stdout.length} bytes`);
    await ctl(["del", "nothing"]);
    const rev = JSON.parse((await etcdctl(endpoint, ["get", "key", "-w", "json"])).stdout).header.revision;
    await ctl(["compact", String(rev)]);
    await ctl(["defrag"]);
    await ctl(["alarm", "disarm"]);
    await ctl(["alarm", "list"]);
    await ctl(["put", "key", "small"]);
    await ctl(["lease", "grant", "10"]);
    const after = JSON.parse((await etcdctl(endpoint, ["endpoint", "status", "-w", "json"])).stdout);
    out.push(`status errors: ${JSON.stringify(after[0].Status.errors ?? null)}`);
  } finally {
    client.close();
  }
  return out.map((l) => l.replace(/lease [0-9a-f]+ granted/, "lease <LEASE> granted"));
}

describe("NOSPACE, side by side with etcd 3.4", () => {
  it("the operator's session reads the same on both", async () => {
    const [reference, ours] = await Promise.all([session(etcd.endpoint), session(member.endpoint)]);
    expect(reference).toContain("fill ended: etcdserver: mvcc: database space exceeded");
    expect(reference).toContain("memberID:<ID> alarm:NOSPACE ");
    expect(ours).toEqual(reference);
  });
});
