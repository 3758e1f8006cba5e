/**
 * What a call that the deadline stops fails with, against a scripted gRPC
 * server on 127.0.0.1: each call is first answered "etcdserver: no leader"
 * (retryable), and the retry is never answered, so the deadline ends it.
 * - A read fails with the failure it retried ("no leader"), which says more
 *   than "deadline exceeded".
 * - A write (here Counters.Add, which carries a session) fails with
 *   DeadlineExceeded naming that failure: its last attempt may have been
 *   applied, so "no leader" (read: nothing happened) would mislead a caller
 *   into adding twice.
 */

import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { etcdServiceError } from "../../src/api/errors.ts";
import { loadEtcdApi, type WireMessage } from "../../src/api/index.ts";
import { connect } from "../../src/client/client.ts";
import { DeadlineExceededError, EtcdError } from "../../src/client/errors.ts";

type W = WireMessage;

let server: Server;
let endpoint: string;
const seen: string[] = [];
/** Calls never answered (ended at the test's end). */
const hanging: sendUnaryData<W>[] = [];

/** First "no leader", then silence. */
function scripted(name: string) {
  let calls = 0;
  return (_call: ServerUnaryCall<W, W>, callback: sendUnaryData<W>) => {
    seen.push(name);
    if (calls++ === 0) callback(etcdServiceError("NoLeader"));
    else hanging.push(callback);
  };
}

beforeAll(async () => {
  const api = loadEtcdApi();
  server = new Server();
  server.addService(api.services.KV, { Range: scripted("Range") } as never);
  server.addService(api.services.Counters, { Add: scripted("Add") } as never);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  endpoint = `127.0.0.1:${port}`;
});

afterAll(async () => {
  for (const cb of hanging) cb(etcdServiceError("NoLeader"));
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
});

it("a read stopped by its deadline fails with the failure it retried", async () => {
  const client = await connect({ endpoints: [endpoint], timeoutMs: 400 });
  try {
    const err = await client.get("k").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EtcdError);
    expect((err as EtcdError).etcdName).toBe("NoLeader");
  } finally {
    await client.close();
  }
});

it("a write stopped by its deadline fails with DeadlineExceeded, naming the failure it retried", async () => {
  const client = await connect({ endpoints: [endpoint], timeoutMs: 400 });
  try {
    const err = await client
      .counter("c")
      .add(1)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as Error).message).toMatch(/retrying after: etcdserver: no leader/);
    expect(((err as Error).cause as EtcdError).etcdName).toBe("NoLeader");
  } finally {
    await client.close();
  }
  expect(seen).toEqual(["Range", "Range", "Add", "Add"]); // each retried once after "no leader"
});
