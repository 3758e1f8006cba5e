/**
 * The Lock and Election RPCs of a real `leasehold serve` process, side by
 * side with a real etcd 3.4 (test/support/etcd.ts): the same scripted
 * session of raw gRPC calls (etcdctl 3.4's `lock` and `elect` use client-side
 * recipes, not these RPCs) runs against both, and the transcripts (keys,
 * LeaderKeys, key-values, header revisions, error codes and texts, Observe's
 * responses) must be identical once lease ids are named by order of
 * appearance and cluster/member ids and raft terms are left out.
 *
 * Also: `etcdctl lock` (the client-side recipe) and the Lock RPC share the key
 * layout, so they exclude each other; and the one deliberate difference, the
 * lock bug etcd 3.4 has (issue 11456), shown on both servers.
 *
 * Waiting is observed, never slept on: a waiter's key arriving is seen
 * through a Watch stream on the lock's prefix.
 */

import { type ChildProcess, spawn } from "node:child_process";
import {
  type Client,
  type ClientUnaryCall,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadEtcdApi, type WireMessage } from "../../src/api/index.ts";
import { type EtcdProcess, startEtcd, stopAllEtcd } from "../support/etcd.ts";
import {
  freePort,
  killAll,
  type MemberProcess,
  removeDir,
  startMember,
  tempDir,
} from "../support/process.ts";

type W = WireMessage;
const api = loadEtcdApi();
const DEADLINE_MS = 10_000;
const B = (s: string): Buffer => Buffer.from(s);
const S = (b: unknown): string => Buffer.from(b as Buffer).toString();

type ClientCtor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;
type UnaryFn = (
  req: W,
  md: Metadata,
  opts: { deadline: number },
  cb: (e: ServiceError | null, r?: W) => void,
) => ClientUnaryCall;
interface Stream extends NodeJS.EventEmitter {
  write?(msg: W): boolean;
  cancel(): void;
}

/** gRPC clients of one endpoint, and the transcript of what they were answered. */
class Session {
  private readonly clients = new Map<string, Client>();
  readonly lines: string[] = [];
  /** Lease ids (decimal) by order of appearance: printed as L1, L2, ... */
  private readonly leases: string[] = [];

  constructor(private readonly endpoint: string) {}

  client(service: string): Client {
    let c = this.clients.get(service);
    if (c === undefined) {
      const [pkg, name] = service.split(".") as [string, string];
      const pkgs = loadPackageDefinition(api.packageDefinition) as unknown as Record<
        string,
        Record<string, ClientCtor>
      >;
      c = new pkgs[pkg]![name]!(this.endpoint, credentials.createInsecure());
      this.clients.set(service, c);
    }
    return c;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }

  /** A call in flight; its answer (or error) goes to the transcript under `label` when awaited. */
  start(service: string, method: string, req: W): { answer: Promise<W>; call: ClientUnaryCall } {
    const c = this.client(service) as unknown as Record<string, UnaryFn>;
    let call!: ClientUnaryCall;
    const answer = new Promise<W>((resolve, reject) => {
      call = c[method]!.call(c, req, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (e, r) =>
        e ? reject(e) : resolve(r!),
      );
    });
    answer.catch(() => {});
    return { answer, call };
  }

  /** Records `label: <answer>` and returns the answer (undefined for an error). */
  async record(label: string, answer: Promise<W>): Promise<W | undefined> {
    try {
      const r = await answer;
      this.lines.push(`${label}: ${this.describe(r)}`);
      return r;
    } catch (e) {
      const err = e as ServiceError;
      this.lines.push(`${label}: error code=${err.code} ${JSON.stringify(err.details)}`);
      return undefined;
    }
  }

  call(label: string, service: string, method: string, req: W): Promise<W | undefined> {
    return this.record(label, this.start(service, method, req).answer);
  }

  /** A lease id as the transcript names it. */
  lease(id: string): string {
    if (id === "0") return "0";
    let i = this.leases.indexOf(id);
    if (i < 0) i = this.leases.push(id) - 1;
    return `L${i + 1}`;
  }

  /** Lease ids inside keys ("name/<hex>"), named like the ids themselves. */
  private key(k: string): string {
    const m = /^(.*\/)([0-9a-f]+)$/.exec(k);
    if (m === null) return k;
    const id = BigInt(`0x${m[2]}`).toString();
    return this.leases.includes(id) || m[2]!.length >= 8 ? `${m[1]}<${this.lease(id)}>` : k;
  }

  private kv(kv: W): string {
    return `{${this.key(S(kv.key))} =${JSON.stringify(S(kv.value))} c${kv.create_revision} m${kv.mod_revision} v${kv.version} ${this.lease(String(kv.lease))}}`;
  }

  describe(r: W): string {
    const parts: string[] = [];
    if (r.header !== null && r.header !== undefined) parts.push(`rev=${(r.header as W).revision}`);
    if (r.key !== undefined) parts.push(`key=${this.key(S(r.key))}`);
    if (r.leader !== null && r.leader !== undefined) {
      const l = r.leader as W;
      parts.push(
        `leader={name=${S(l.name)} key=${this.key(S(l.key))} rev=${l.rev} lease=${this.lease(String(l.lease))}}`,
      );
    }
    if (r.kv !== null && r.kv !== undefined) parts.push(`kv=${this.kv(r.kv as W)}`);
    if (r.ID !== undefined) parts.push(`id=${this.lease(String(r.ID))}`);
    return parts.join(" ");
  }

  async grant(): Promise<string> {
    const r = await this.start("etcdserverpb.Lease", "LeaseGrant", { TTL: 60 }).answer;
    this.lines.push(`grant: ${this.lease(String(r.ID))}`);
    return String(r.ID);
  }

  /** Puts and deletes under `prefix`, awaited one by one ("put <key>"). */
  async watch(prefix: string): Promise<{ next: () => Promise<string>; close: () => void }> {
    const c = this.client("etcdserverpb.Watch") as unknown as { Watch: (md: Metadata) => Stream };
    const call = c.Watch(new Metadata());
    const seen: string[] = [];
    let wake: (() => void) | undefined;
    call.on("error", () => {});
    const created = new Promise<void>((resolve) =>
      call.on("data", (m: W) => {
        if (m.created === true) resolve();
        for (const e of m.events as W[])
          seen.push(`${e.type === 0 ? "put" : "delete"} ${S((e.kv as W).key)}`);
        wake?.();
      }),
    );
    const end = B(prefix);
    end[end.length - 1]! += 1;
    call.write!({ create_request: { key: B(prefix), range_end: end } });
    await created;
    return {
      next: async () => {
        while (seen.length === 0) {
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`no event under ${prefix}`)), DEADLINE_MS);
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
        }
        return seen.shift()!;
      },
      close: () => call.cancel(),
    };
  }

  /** An Observe stream whose responses go to the transcript as they are awaited. */
  observe(name: string): { next: (label: string) => Promise<void>; close: () => void } {
    const c = this.client("v3electionpb.Election") as unknown as {
      Observe: (req: W, md: Metadata) => Stream;
    };
    const call = c.Observe({ name: B(name) }, new Metadata());
    const seen: W[] = [];
    let wake: (() => void) | undefined;
    call.on("error", () => {});
    call.on("data", (m: W) => {
      seen.push(m);
      wake?.();
    });
    return {
      next: async (label: string) => {
        while (seen.length === 0) {
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`no Observe response for ${label}`)), DEADLINE_MS);
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
        }
        this.lines.push(`${label}: ${this.describe(seen.shift()!)}`);
      },
      close: () => call.cancel(),
    };
  }
}

const LOCK = "v3lockpb.Lock";
const ELECTION = "v3electionpb.Election";

/** The scripted session: every step deterministic (waits are observed through Watch). */
async function script(s: Session): Promise<string[]> {
  const [l1, l2, l3] = [await s.grant(), await s.grant(), await s.grant()];

  // Lock: acquire, again with the same lease, a waiter handed over by Unlock.
  const a = await s.call("lock a L1", LOCK, "Lock", { name: B("a"), lease: l1 });
  await s.call("lock a L1 again", LOCK, "Lock", { name: B("a"), lease: l1 });
  const w = await s.watch("a/");
  const waiting = s.start(LOCK, "Lock", { name: B("a"), lease: l2 });
  s.lines.push(`watch: ${await w.next()}`.replace(BigInt(l2).toString(16), "<L2>"));
  await s.call("unlock a/<L1>", LOCK, "Unlock", { key: a!.key });
  const b = await s.record("lock a L2 (was waiting)", waiting.answer);
  await s.call("unlock a/<L2>", LOCK, "Unlock", { key: b!.key });
  w.close();
  await s.call("lock b lease 0", LOCK, "Lock", { name: B("b"), lease: "0" });
  await s.call("lock c unknown lease", LOCK, "Lock", { name: B("c"), lease: "12345" });
  await s.call("lock c negative lease", LOCK, "Lock", { name: B("c"), lease: "-3" });
  await s.call("unlock empty key", LOCK, "Unlock", { key: B("") });
  await s.call("unlock missing key", LOCK, "Unlock", { key: B("nokey") });

  // Election.
  await s.call("leader e (none)", ELECTION, "Leader", { name: B("e") });
  const obs = s.observe("e");
  const e1 = await s.call("campaign e L3 v1", ELECTION, "Campaign", {
    name: B("e"),
    lease: l3,
    value: B("v1"),
  });
  await obs.next("observe");
  await s.call("campaign e L3 v2", ELECTION, "Campaign", { name: B("e"), lease: l3, value: B("v2") });
  await obs.next("observe");
  await s.call("leader e", ELECTION, "Leader", { name: B("e") });
  const leader = e1!.leader as W;
  await s.call("proclaim v3", ELECTION, "Proclaim", { leader, value: B("v3") });
  await obs.next("observe");
  const stale = { ...leader, rev: String(Number(leader.rev) - 1) };
  await s.call("proclaim stale", ELECTION, "Proclaim", { leader: stale, value: B("x") });
  await s.call("proclaim no leader key", ELECTION, "Proclaim", { value: B("x") });
  await s.call("proclaim empty key", ELECTION, "Proclaim", {
    leader: { ...leader, key: B("") },
    value: B("x"),
  });
  await s.call("resign no leader key", ELECTION, "Resign", {});
  await s.call("resign stale", ELECTION, "Resign", { leader: stale });
  const ew = await s.watch("e/");
  const second = s.start(ELECTION, "Campaign", { name: B("e"), lease: l1, value: B("w") });
  s.lines.push(`watch: ${await ew.next()}`.replace(BigInt(l1).toString(16), "<L1>"));
  ew.close();
  await s.call("resign e L3", ELECTION, "Resign", { leader });
  await obs.next("observe");
  const e2 = await s.record("campaign e L1 (was waiting)", second.answer);
  await s.call("resign e L1", ELECTION, "Resign", { leader: e2!.leader });
  await s.call("leader e after resign", ELECTION, "Leader", { name: B("e") });
  await s.call("campaign e L2 z", ELECTION, "Campaign", { name: B("e"), lease: l2, value: B("z") });
  await obs.next("observe");
  obs.close();
  const f = await s.call("campaign f lease 0", ELECTION, "Campaign", {
    name: B("f"),
    lease: "0",
    value: B("x"),
  });
  // A LeaderKey with lease 0: etcd builds a session from it, so a new lease, and Proclaim attaches the key to it.
  const f0 = { ...(f!.leader as W), lease: "0" };
  await s.call("proclaim f with lease 0", ELECTION, "Proclaim", { leader: f0, value: B("y") });
  await s.call("leader f", ELECTION, "Leader", { name: B("f") });
  await s.call("resign f with lease 0", ELECTION, "Resign", { leader: f0 });
  await s.call("lock with an empty name", LOCK, "Lock", { name: B(""), lease: l3 });
  const leases = await s.start("etcdserverpb.Lease", "LeaseLeases", {}).answer;
  s.lines.push(`leases: ${(leases.leases as W[]).length}`);
  await s.call("campaign g unknown lease", ELECTION, "Campaign", {
    name: B("g"),
    lease: "999",
    value: B("x"),
  });
  await s.call("leader of empty name", ELECTION, "Leader", { name: B("") });
  return s.lines;
}

let etcd: EtcdProcess;
let member: MemberProcess;
let dir: string;

beforeAll(async () => {
  dir = tempDir("lock-rpc");
  const peer = `http://127.0.0.1:${await freePort()}`;
  [etcd, member] = await Promise.all([
    startEtcd({ name: "lockref" }),
    startMember("m1", dir, await freePort(), [
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `m1=${peer}`,
    ]),
  ]);
});

afterAll(async () => {
  await Promise.all([killAll(), stopAllEtcd()]);
  removeDir(dir);
});

describe("Lock and Election RPCs: leasehold answers what etcd 3.4 answers", () => {
  it("the same scripted session gives the same transcript", async () => {
    const ref = new Session(etcd.endpoint);
    const ours = new Session(member.endpoint);
    try {
      const want = await script(ref);
      const got = await script(ours);
      if (process.env.SHOW_TRANSCRIPT !== undefined) process.stderr.write(`${want.join("\n")}\n`);
      expect(got).toEqual(want);
      // The script did exercise the waits and the errors.
      expect(want.some((l) => l.startsWith("lock a L2 (was waiting): rev="))).toBe(true);
      expect(want).toContain('lock c unknown lease: error code=2 "etcdserver: requested lease not found"');
    } finally {
      ref.close();
      ours.close();
    }
  });
});

describe("etcdctl lock (the client-side recipe) and the Lock RPC share the key layout", () => {
  it.each([
    ["etcd", () => etcd.endpoint],
    ["leasehold", () => member.endpoint],
  ])(
    "on %s: etcdctl lock waits while the RPC holds the lock and runs its command after Unlock",
    async (_, endpoint) => {
      const s = new Session(endpoint());
      let child: ChildProcess | undefined;
      try {
        const lease = await s.grant();
        const held = (await s.start(LOCK, "Lock", { name: B("shared"), lease }).answer).key;
        const w = await s.watch("shared/");
        const proc = spawn(
          "etcdctl",
          [`--endpoints=${endpoint()}`, "lock", "shared", "--", "sh", "-c", 'echo "got $ETCD_LOCK_KEY"'],
          { env: { ...process.env, ETCDCTL_API: "3" }, stdio: ["ignore", "pipe", "pipe"] },
        );
        child = proc;
        let out = "";
        proc.stdout.setEncoding("utf8");
        proc.stdout.on("data", (chunk: string) => {
          out += chunk;
        });
        const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
        // etcdctl's key arrives: it waits behind the RPC's key.
        const put = await w.next();
        expect(put).toMatch(/^put shared\/[0-9a-f]+$/);
        expect(out).toBe("");
        await s.start(LOCK, "Unlock", { key: held }).answer;
        expect(await exited).toBe(0);
        expect(out).toBe(`got ${put.slice("put ".length)}\n`);
        w.close();
      } finally {
        if (child !== undefined && child.exitCode === null && child.signalCode === null)
          child.kill("SIGKILL");
        s.close();
      }
    },
  );
});

describe("the deliberate difference: a waiter whose lease is revoked (etcd issue 11456)", () => {
  /** Holder on L1, waiter on L2; L2 revoked while waiting; then the holder unlocks. What does the waiter get? */
  async function revokedWaiter(endpoint: string): Promise<string> {
    const s = new Session(endpoint);
    try {
      const [l1, l2] = [await s.grant(), await s.grant()];
      const held = (await s.start(LOCK, "Lock", { name: B("bug"), lease: l1 }).answer).key;
      const w = await s.watch("bug/");
      const waiter = s.start(LOCK, "Lock", { name: B("bug"), lease: l2 });
      await w.next();
      await s.start("etcdserverpb.Lease", "LeaseRevoke", { ID: l2 }).answer;
      expect(await w.next()).toMatch(/^delete bug\//);
      await s.start(LOCK, "Unlock", { key: held }).answer;
      w.close();
      const r = await s.record("waiter", waiter.answer);
      return r === undefined ? s.lines.at(-1)! : `acquired ${S(r.key)}`;
    } finally {
      s.close();
    }
  }

  it("etcd 3.4 tells the waiter it holds the lock (with a key that no longer exists); leasehold answers 'mutex: session is expired'", async () => {
    expect(await revokedWaiter(etcd.endpoint)).toMatch(/^acquired bug\/[0-9a-f]+$/);
    expect(await revokedWaiter(member.endpoint)).toBe('waiter: error code=2 "mutex: session is expired"');
  });
});
