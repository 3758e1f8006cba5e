/**
 * Txn compares, side by side with etcd 3.4: every target (known and not)
 * with every result (known and not), on a present and a missing key, with
 * the operand as the request should carry it and with two members of the
 * `target_union` oneof set (Go keeps the last on the wire). etcd's answer
 * (succeeded or the error) is the expectation, case by case.
 */

import { type Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadEtcdApi, type WireMessage } from "../../src/api/index.ts";
import { startEtcd, stopAllEtcd } from "../support/etcd.ts";
import { freePort, killAll, removeDir, startMember, tempDir } from "../support/process.ts";

type W = WireMessage;
type Unary = (
  req: W,
  md: Metadata,
  opts: { deadline: number },
  cb: (e: ServiceError | null, r?: W) => void,
) => void;
const api = loadEtcdApi();
const B = (s: string): Buffer => Buffer.from(s);
let dir = "";
const endpoints: { etcd?: string; leasehold?: string } = {};

beforeAll(async () => {
  endpoints.etcd = (await startEtcd({ name: "cmp" })).endpoint;
  dir = tempDir("compare");
  const peer = `http://127.0.0.1:${await freePort()}`;
  const m = await startMember("cmp", dir, await freePort(), [
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `cmp=${peer}`,
  ]);
  endpoints.leasehold = m.endpoint;
}, 60_000);

afterAll(async () => {
  await killAll();
  await stopAllEtcd();
  removeDir(dir);
});

async function answers(endpoint: string): Promise<string[]> {
  const pkg = loadPackageDefinition(api.packageDefinition) as unknown as {
    etcdserverpb: { KV: new (a: string, c: ReturnType<typeof credentials.createInsecure>) => Client };
  };
  const kv = new pkg.etcdserverpb.KV(endpoint, credentials.createInsecure()) as Client &
    Record<string, Unary>;
  const call = (method: string, req: W): Promise<string> =>
    new Promise((resolve) =>
      kv[method]!(req, new Metadata(), { deadline: Date.now() + 5_000 }, (e, r) =>
        resolve(e !== null ? `error ${e.code} ${e.details}` : String(r?.succeeded ?? "ok")),
      ),
    );
  await call("Put", { key: B("exists"), value: B("v") });
  const out: string[] = [];
  for (const both of [false, true])
    for (const key of ["exists", "missing"])
      for (const target of [0, 1, 2, 3, 4, 7])
        for (const result of [0, 1, 2, 3, 9]) {
          const c: W = { key: B(key), target, result };
          if (both) Object.assign(c, { version: "1", value: B("v") });
          else if (target === 3) c.value = B("v");
          else if (target === 1 || target === 2) c[target === 1 ? "create_revision" : "mod_revision"] = "2";
          else c[target === 4 ? "lease" : "version"] = target === 4 ? "0" : "1";
          out.push(
            `${both ? "two operands" : "operand"} ${key} target ${target} result ${result}: ${await call("Txn", { compare: [c] })}`,
          );
        }
  kv.close();
  return out;
}

describe("txn compares: etcd 3.4 and leasehold decide alike", () => {
  it("every target and result, known or not, on present and missing keys", async () => {
    const etcd = await answers(endpoints.etcd!);
    const leasehold = await answers(endpoints.leasehold!);
    expect(leasehold).toEqual(etcd);
    expect(etcd.length).toBe(120);
  }, 60_000);
});
