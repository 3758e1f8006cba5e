/**
 * Idempotency keys of concurrent mutations (src/client/client.ts mutate): the
 * server refuses a seq below the last one a session answered, so mutations in
 * flight together must not share a session. Each takes a lane (a session with
 * nothing else in flight); a settled lane is reused with the next seq, and a
 * retry inside one mutation keeps its key. No server: `call` is replaced by a
 * recorder that answers when told to.
 */

import { describe, expect, it } from "vitest";
import { LeaseholdClient } from "../../src/client/client.ts";

type Key = { clientId: string; seq: number } | undefined;

function recorded(): { client: LeaseholdClient; keys: Key[]; answerAll: () => void } {
  const client = new LeaseholdClient({ endpoints: ["127.0.0.1:1"] });
  const keys: Key[] = [];
  const waiting: (() => void)[] = [];
  client.call = (_service, _method, _req, _control, session) => {
    keys.push(session);
    return new Promise((resolve) => waiting.push(() => resolve({ value: "0" })));
  };
  const answerAll = () => {
    for (const f of waiting.splice(0)) f();
  };
  return { client, keys, answerAll };
}

describe("mutation lanes", () => {
  it("mutations in flight together use distinct sessions; a settled one's session is reused with the next seq", async () => {
    const { client, keys, answerAll } = recorded();
    const c = client.counter("x");
    const first = [c.add(1), c.add(1), c.add(1)];
    expect(new Set(keys.map((k) => k?.clientId)).size).toBe(3);
    expect(keys.map((k) => k?.seq)).toEqual([1, 1, 1]);
    answerAll();
    await Promise.all(first);
    const next = c.add(1);
    expect(keys[3]?.seq).toBe(2);
    expect(keys.slice(0, 3).map((k) => k?.clientId)).toContain(keys[3]?.clientId);
    answerAll();
    await next;
    // Reads carry no key.
    const read = c.get();
    expect(keys[4]).toBeUndefined();
    answerAll();
    await read;
  });
});
