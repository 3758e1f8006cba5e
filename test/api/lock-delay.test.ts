/**
 * Lock-delay end to end on an in-process member whose leases may be 1 s long:
 * a holder that stops renewing expires; for its lock-delay nobody holds (an
 * Acquire is refused naming the delay, the waiter keeps waiting); then the
 * waiter holds. The only waits are for answers and events; the lease and the
 * delay run on the member's real clock (about 2 s in all, bounded by the
 * calls' deadline).
 */

import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WireMessage } from "../../src/api/index.ts";
import { RecipeNode } from "./recipe-node.ts";

type W = WireMessage;
const serverLog: string[] = [];
let node: RecipeNode;

beforeAll(async () => {
  node = await new RecipeNode(serverLog, undefined, 1).start();
});
afterAll(async () => {
  await node.stop();
});

describe("lock-delay", () => {
  it("after the holder's lease expires nobody holds for the delay; then the waiter does", async () => {
    const events: string[] = [];
    let wake: (() => void) | undefined;
    const stream = (
      node.client("leasehold.v1.Leases") as unknown as {
        Events(req: W, md: Metadata): NodeJS.EventEmitter & { cancel(): void };
      }
    ).Events({ prefix: "ld" }, new Metadata());
    let created: (() => void) | undefined;
    const subscribed = new Promise<void>((r) => (created = r));
    stream.on("data", (e: W) => {
      if (e.type === 7) {
        // CREATED, the stream's first message: what applies from now on is reported.
        expect(events).toEqual([]);
        created?.();
        return;
      }
      events.push(`${e.type} ${(e.holding as W).holder}`);
      wake?.();
    });
    stream.on("error", () => {});
    const until = async (line: string) => {
      while (!events.includes(line)) await new Promise<void>((r) => (wake = r));
    };
    await subscribed;
    const a = (
      await node.unary("leasehold.v1.Leases", "Acquire", {
        resource: "ld",
        holder: "a",
        ttl: 1,
        lock_delay_seconds: 1,
      })
    ).holding as W;
    const waiter = node.call("leasehold.v1.Leases", "Acquire", {
      resource: "ld",
      holder: "b",
      ttl: 30,
      wait: true,
    });
    await until("1 b"); // QUEUE
    await until("4 a"); // EXPIRE: nobody renewed a
    const refused = await node
      .unary("leasehold.v1.Leases", "Acquire", { resource: "ld", holder: "c", ttl: 30 })
      .then(
        () => undefined,
        (e: ServiceError) => e,
      );
    expect(refused?.code).toBe(status.ALREADY_EXISTS);
    expect(refused?.details).toMatch(
      /^leasehold: resource "ld" is in its lock-delay after "a"'s lease expired/,
    );
    const during = await node.unary("leasehold.v1.Leases", "Get", { resource: "ld" });
    expect(during.holding).toBeNull();
    expect((during.waiters as W[]).map((h) => h.holder)).toEqual(["b"]);
    const b = (await waiter.answer).holding as W;
    expect(Number(b.fencing_token)).toBeGreaterThan(Number(a.fencing_token));
    // EXPIRE a, then GRANT b (and b's RENEW once it holds: the server renews a claim once more when it holds).
    expect(events.slice(events.indexOf("4 a")).filter((e) => !e.startsWith("2 "))).toEqual(["4 a", "0 b"]);
    stream.cancel();
    await node.unary("leasehold.v1.Leases", "Release", { resource: "ld", lease_id: b.lease_id, holder: "b" });
    expect(serverLog).toEqual([]);
  }, 20_000);
});
