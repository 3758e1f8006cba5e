/**
 * Bad input on the etcd v3 gRPC services (issue 5 §3), against one real
 * `leasehold serve` process and one real etcd 3.4 side by side.
 *
 * Both servers get the same seeded state (arbitraries.ts SEED_STEPS: keys
 * with history, a compaction, a lease with a key). Then fast-check, from a
 * fixed seed (in the describe's title), generates RUNS invalid requests over
 * every request type (arbitraries.ts grpcCases: huge and empty keys, unknown
 * leases, negative and huge TTLs, bad ranges and revisions, txns too wide,
 * too deep, with duplicate keys or bad enums, bad watch creates, keepalives
 * of unknown leases, malformed protobuf bytes, oversize messages, unknown
 * members, users, roles, elections). Every case goes to both servers:
 *
 * - etcd must answer each as the case says (so the expectations are etcd's
 *   own answers, not guesses); cases that make etcd 3.4 panic are not sent;
 * - leasehold must answer each with etcd's answer or the case's documented
 *   deviation (arbitraries.ts DEVIATIONS), never hang (every call has a
 *   deadline) and never answer "etcdserver: internal error";
 * - afterwards the state of both is unchanged (HashKV, Maintenance.Hash on
 *   leasehold, every key, lease, member, user, role and alarm, the
 *   revision), and the member process still runs and serves a put and a get.
 *
 * Every failure is listed at once (the run does not stop at the first), each
 * with its arm, request and answers. Rerun another seed with
 * LEASEHOLD_FUZZ_SEED=<n>, more cases with LEASEHOLD_FUZZ_RUNS=<n>.
 *
 * A last group sends representative requests that are VALID on etcd (so not
 * part of the state check) and compares the two servers' answers.
 */

import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EtcdProcess } from "../support/etcd.ts";
import { startEtcd, stopAllEtcd } from "../support/etcd.ts";
import type { MemberProcess } from "../support/process.ts";
import { freePort, killAll, removeDir, startMember, tempDir } from "../support/process.ts";
import {
  type Answer,
  DEVIATIONS,
  type DeviationId,
  describeAnswer,
  encodeTxnChain,
  FUZZ_PREFIX,
  FUZZ_SEED,
  fingerprint,
  type GrpcCase,
  GrpcTarget,
  grpcCases,
  mustOk,
  putOp,
  seed,
  serverFault,
  stringify,
  truncate,
  verdict,
  type World,
} from "./arbitraries.ts";

/** Cases per run: about 10 s for both servers together on a laptop. */
const RUNS = Number(process.env.LEASEHOLD_FUZZ_RUNS ?? 800);

let dir: string;
let member: MemberProcess;
let etcd: EtcdProcess;
let lh: GrpcTarget;
let ref: GrpcTarget;
let world: World;
const before: { lh?: unknown; etcd?: unknown } = {};

beforeAll(async () => {
  dir = tempDir("grpc-fuzz");
  const clientPort = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  [member, etcd] = await Promise.all([
    startMember("fuzz", dir, clientPort, [
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `fuzz=${peer}`,
    ]),
    startEtcd({ name: "fuzz-reference" }),
  ]);
  lh = new GrpcTarget("leasehold", member.endpoint);
  ref = new GrpcTarget("etcd", etcd.endpoint);
  const [lhWorld, etcdWorld] = await Promise.all([seed(lh), seed(ref)]);
  // One set of cases for both: an "unknown member" is unknown to either.
  world = { ...lhWorld, memberIds: [...lhWorld.memberIds, ...etcdWorld.memberIds] };
  before.lh = await fingerprint(lh, { wholeHash: true });
  before.etcd = await fingerprint(ref, { wholeHash: false });
});

afterAll(async () => {
  lh?.close();
  ref?.close();
  await Promise.all([killAll(), stopAllEtcd()]);
  if (dir !== undefined) removeDir(dir);
});

/** One case with both answers (etcd's is absent for cases etcd 3.4 would crash on). */
interface Outcome {
  readonly index: number;
  readonly c: GrpcCase;
  readonly lh: Answer;
  readonly etcd?: Answer;
}

describe(`gRPC fuzz: ${RUNS} invalid requests, seed ${FUZZ_SEED} (0x${FUZZ_SEED.toString(16)})`, () => {
  const outcomes: Outcome[] = [];

  beforeAll(async () => {
    const cases = fc.sample(grpcCases(world), { seed: FUZZ_SEED, numRuns: RUNS });
    for (const [index, c] of cases.entries()) {
      const [a, b] = await Promise.all([lh.call(c.call), c.etcdCrashes ? undefined : ref.call(c.call)]);
      outcomes.push(b === undefined ? { index, c, lh: a } : { index, c, lh: a, etcd: b });
    }
    const arms = new Map<string, number>();
    for (const o of outcomes) arms.set(o.c.label, (arms.get(o.c.label) ?? 0) + 1);
    process.stderr.write(
      `grpc fuzz: ${outcomes.length} cases (seed ${FUZZ_SEED}), ${arms.size} arms, ` +
        `${outcomes.filter((o) => o.etcd !== undefined).length} also sent to etcd\n`,
    );
  }, 120_000);

  it("etcd 3.4 answers every case as the case expects (the expectations are etcd's answers)", () => {
    const problems = outcomes.flatMap((o) => {
      if (o.etcd === undefined) return [];
      const v = verdict(o.c, o.etcd, "etcd");
      return v.problem === undefined ? [] : [report(o, `etcd: ${v.problem}`)];
    });
    expect(problems, problems.join("\n\n")).toEqual([]);
  });

  it("leasehold answers every case as etcd does or as a documented deviation; never a hang or an internal error", () => {
    const deviations = new Map<DeviationId, number>();
    const problems: string[] = [];
    for (const o of outcomes) {
      const v = verdict(o.c, o.lh, "leasehold");
      if (v.problem !== undefined) problems.push(report(o, `leasehold: ${v.problem}`));
      if (v.deviation !== undefined) deviations.set(v.deviation, (deviations.get(v.deviation) ?? 0) + 1);
    }
    process.stderr.write(
      `grpc fuzz: leasehold deviated from etcd as documented in ${[...deviations.values()].reduce((a, b) => a + b, 0)} ` +
        `cases: ${[...deviations].map(([id, n]) => `${id} ${n}`).join(", ") || "none"}\n`,
    );
    expect(problems, `${problems.length} of ${outcomes.length} cases:\n\n${problems.join("\n\n")}`).toEqual(
      [],
    );
  });

  it("every arm ran (the generator covers what the issue lists)", () => {
    const labels = new Set(outcomes.map((o) => o.c.label));
    // fc.oneof over ~60 arms with RUNS cases: each arm is hit with overwhelming probability.
    expect(labels.size).toBeGreaterThanOrEqual(50);
    for (const must of [
      "Put: over --max-request-bytes",
      "Put: empty key",
      "Range: future revision",
      "Txn: tooManyOps",
      "Txn: duplicatePuts",
      "Txn: nested 128-400 deep (over --max-txn-ops)",
      "LeaseGrant: TTL over 9,000,000,000 s",
      "LeaseKeepAlive: unknown id",
      "Watch: range_end not after key",
      "raw: malformed protobuf to any unary method",
    ])
      expect(labels, must).toContain(must);
  });

  it("the state is unchanged on both servers (HashKV, Hash, revision, keys, leases, members, users, roles, alarms)", async () => {
    expect(await fingerprint(lh, { wholeHash: true })).toEqual(before.lh);
    expect(await fingerprint(ref, { wholeHash: false })).toEqual(before.etcd);
  });

  it("the member process is still running and serves a normal put and get", async () => {
    expect(member.child.exitCode).toBeNull();
    expect(member.child.signalCode).toBeNull();
    const key = Buffer.from("after-fuzz/k");
    await mustOk(lh, "KV", "Put", { key, value: Buffer.from("v") });
    const got = await mustOk(lh, "KV", "Range", { key });
    expect(((got.kvs as { value: Buffer }[])[0]?.value ?? Buffer.alloc(0)).toString()).toBe("v");
  });
});

/** A failure line: the arm, the case index, the request and both answers. */
function report(o: Outcome, problem: string): string {
  const request =
    o.c.call.kind === "unary"
      ? `${o.c.call.service}.${o.c.call.method} ${truncate(stringify(o.c.call.request), 400)}` +
        (o.c.call.metadata === undefined ? "" : ` metadata ${stringify(o.c.call.metadata)}`)
      : o.c.call.kind === "raw" || o.c.call.kind === "rawStream"
        ? `${o.c.call.kind} ${o.c.call.path} <${o.c.call.bytes.length} bytes: ${o.c.call.bytes.subarray(0, 24).toString("hex")}…>`
        : o.c.call.kind === "watch"
          ? `Watch ${truncate(stringify(o.c.call.request), 300)}`
          : `LeaseKeepAlive ID=${o.c.call.id}`;
  const dev = o.c.deviation === undefined ? "" : `\n  documented deviation: ${DEVIATIONS[o.c.deviation.id]}`;
  return (
    `#${o.index} [${o.c.label}] ${problem}\n  request: ${request}\n` +
    `  etcd:      ${o.etcd === undefined ? "(not sent: etcd 3.4 panics on it)" : describeAnswer(o.etcd)}\n` +
    `  leasehold: ${describeAnswer(o.lh)}${dev}`
  );
}

/**
 * Requests etcd accepts (writes in a diff/ namespace, after the state check):
 * leasehold must answer as etcd does. Each name says what etcd does.
 */
describe("valid-on-etcd edge requests, side by side with etcd 3.4", () => {
  const B = (s: string): Buffer => Buffer.from(s);
  const both = (f: (t: GrpcTarget) => Promise<Answer>): Promise<[Answer, Answer]> =>
    Promise.all([f(ref), f(lh)]);
  const kvsOf = (a: Answer): string =>
    a.kind === "ok"
      ? stringify((a.response.kvs as { key: Buffer; value: Buffer }[]).map((kv) => [kv.key, kv.value.length]))
      : describeAnswer(a);
  const shape = (a: Answer): string => (a.kind === "ok" ? "OK" : describeAnswer(a));

  it("Put of a 1.3 MB value (under etcd's 1.5 MiB request limit) succeeds", async () => {
    const req = { key: B("diff/big"), value: Buffer.alloc(1_300_000, 0x62) };
    const [e, l] = await both((t) => t.unary("KV", "Put", req));
    expect(shape(e)).toBe("OK");
    expect(shape(l), `etcd: ${describeAnswer(e)}; leasehold: ${describeAnswer(l)}`).toBe("OK");
  });

  it("Range with a negative revision reads the current revision", async () => {
    const [e, l] = await both((t) => t.unary("KV", "Range", { key: B("seed/a"), revision: "-1" }));
    expect(kvsOf(e)).toBe(stringify([[B("seed/a"), 1]]));
    expect(serverFault(l), describeAnswer(l)).toBeUndefined();
    expect(kvsOf(l)).toBe(kvsOf(e));
  });

  it("LeaseGrant with a negative TTL grants a lease with the minimum TTL", async () => {
    const [e, l] = await both((t) => t.unary("Lease", "LeaseGrant", { TTL: "-30", ID: "424242" }));
    expect(e.kind).toBe("ok");
    expect(l.kind, describeAnswer(l)).toBe("ok");
    if (e.kind === "ok" && l.kind === "ok") expect(l.response.TTL).toBe(e.response.TTL);
  });

  it("a txn nested 49 deep with a put: answered as etcd does, and never applied when refused", async () => {
    const key = B(`${FUZZ_PREFIX}deep49`);
    const bytes = encodeTxnChain(49, putOp(key, B("written"), 0n));
    const [e, l] = await both((t) => t.rawUnary("/etcdserverpb.KV/Txn", bytes));
    expect(shape(e)).toBe("OK");
    const written = await mustOk(lh, "KV", "Range", { key, count_only: true });
    if (l.kind !== "ok")
      expect(written.count, `refused (${describeAnswer(l)}) but the put was applied`).toBe("0");
    expect(shape(l), `etcd: ${describeAnswer(e)}; leasehold: ${describeAnswer(l)}`).toBe("OK");
  });

  it("LeaseGrant with a negative ID: etcd grants it; leasehold refuses it with a clear error (documented)", async () => {
    const [e, l] = await both((t) => t.unary("Lease", "LeaseGrant", { TTL: "60", ID: "-7" }));
    expect(e.kind === "ok" && e.response.ID === "-7", describeAnswer(e)).toBe(true);
    // leasehold ids are positive (src/api/convert.ts); etcd's answer is accepted too.
    if (l.kind !== "ok") expect(describeAnswer(l)).toBe('NOT_FOUND "etcdserver: requested lease not found"');
  });
});
