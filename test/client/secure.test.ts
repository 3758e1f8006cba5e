/**
 * `connect({ endpoints, tls, auth })` against a real member serving TLS
 * (--cert-file/--key-file, the transport fixtures' CA) with etcd auth
 * enabled: every kind of call carries the token — unary mutations (acquire,
 * counters), the KeepAlive stream (renewals), the Events and Watch streams —
 * and the refusals come typed: a wrong password, a user without permission
 * on the resource, a client that does not trust the CA.
 */

import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type LeaseholdClient } from "../../src/client/client.ts";
import { EtcdError, LeaseholdClientError } from "../../src/client/errors.ts";
import {
  freePort,
  killAll,
  type MemberProcess,
  removeDir,
  restartMember,
  startMember,
  tempDir,
  terminate,
} from "../support/process.ts";

const fixture = (name: string) => new URL(`../transport/fixtures/${name}`, import.meta.url).pathname;
const ca = readFileSync(fixture("ca.crt"));
const ROOT = { user: "root", password: "root-pw" };

let dir: string;
let endpoint: string;
let root: LeaseholdClient;
let member: MemberProcess;

beforeAll(async () => {
  dir = tempDir("sdk-secure");
  const clientPort = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  const url = `https://127.0.0.1:${clientPort}`;
  member = await startMember("s1", dir, clientPort, [
    "--listen-client-urls",
    url,
    "--advertise-client-urls",
    url,
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `s1=${peer}`,
    "--cert-file",
    fixture("member.crt"),
    "--key-file",
    fixture("member.key"),
  ]);
  endpoint = url;
  // Auth on: root, and "reader" who may only read.
  const setup = await connect({ endpoints: [endpoint], tls: { ca } });
  const auth = (method: string, req: Record<string, unknown>) =>
    setup.call("etcdserverpb.Auth", method, req, {});
  await auth("UserAdd", { name: ROOT.user, password: ROOT.password });
  await auth("UserGrantRole", { user: ROOT.user, role: "root" });
  await auth("UserAdd", { name: "reader", password: "reader-pw" });
  await auth("RoleAdd", { name: "read-all" });
  await auth("RoleGrantPermission", {
    name: "read-all",
    perm: { permType: "READ", key: Buffer.from("\0"), range_end: Buffer.from("\0") },
  });
  await auth("UserGrantRole", { user: "reader", role: "read-all" });
  await auth("AuthEnable", {});
  await setup.close();
  root = await connect({ endpoints: [endpoint], tls: { ca }, auth: ROOT });
}, 30_000);

afterAll(async () => {
  await root?.close();
  await killAll();
  removeDir(dir);
});

describe("the SDK over TLS with auth", () => {
  it("acquires, renews on the KeepAlive stream, streams events and watches, all with the token", async () => {
    const events = root.events("secure/");
    await events.ready;
    const stop = new AbortController();
    const watched: string[] = [];
    const watching = (async () => {
      for await (const e of root.watch("secure-keys/", { prefix: true, signal: stop.signal })) {
        watched.push(`${e.type} ${e.key}`);
        stop.abort();
      }
    })();
    const lease = await root.acquire("secure/db", { ttl: 30, holder: "root-job" });
    const before = lease.validUntil();
    await lease.renew();
    expect(lease.state).toBe("valid");
    expect(lease.validUntil()).toBeGreaterThan(before);
    const seen: string[] = [];
    for await (const e of events) {
      seen.push(`${e.type} ${e.holding.holder}`);
      if (e.type === "renew") break;
    }
    expect(seen).toEqual(["grant root-job", "renew root-job"]);
    expect(await root.counter("secure-visits").add(2)).toBe(2n);
    await root.fencedPut("secure/db", lease.fencingToken, "secure-keys/a", "1");
    await watching;
    expect(watched).toEqual(["put secure-keys/a"]);
    await lease.release();
  });

  it("refuses a wrong password, a user without write permission, and a client that does not trust the CA", async () => {
    const wrong = await connect({
      endpoints: [endpoint],
      tls: { ca },
      auth: { user: "root", password: "nope" },
    }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(EtcdError);
    expect((wrong as EtcdError).etcdName).toBe("AuthFailed");

    const reader = await connect({
      endpoints: [endpoint],
      tls: { ca },
      auth: { user: "reader", password: "reader-pw" },
    });
    try {
      expect((await reader.holding("secure/none")).holder).toBeUndefined(); // reads are allowed
      const denied = await reader.acquire("secure/db2", { ttl: 30 }).catch((e: unknown) => e);
      expect(denied).toBeInstanceOf(EtcdError);
      expect((denied as EtcdError).etcdName).toBe("PermissionDenied");
      // Keeping someone else's claim alive needs write permission on its key, on the stream as in Renew.
      const rootLease = await root.acquire("secure/kept", { ttl: 30, holder: "root-job" });
      const viaStream = await reader
        .renewLease(rootLease.id, "root-job", new AbortController().signal)
        .catch((e: unknown) => e);
      expect((viaStream as EtcdError).etcdName).toBe("PermissionDenied");
      const viaRenew = await reader
        .call("leasehold.v1.Leases", "Renew", { lease_id: rootLease.id.toString(), holder: "root-job" }, {})
        .catch((e: unknown) => e);
      expect((viaRenew as EtcdError).etcdName).toBe("PermissionDenied");
      await rootLease.release();
    } finally {
      await reader.close();
    }

    const untrusting = await connect({ endpoints: [endpoint], timeoutMs: 2_000 });
    try {
      const refused = await untrusting.get("secure-keys/a").catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(LeaseholdClientError);
      expect((refused as LeaseholdClientError).kind).toBe("unavailable");
      // The reason, not a bare "deadline exceeded": the handshake failed on the certificate.
      expect((refused as Error).message).toMatch(/certificate/i);
    } finally {
      await untrusting.close();
    }
  });

  it("after the member restarts (forgetting every token) the client authenticates again: calls, renewals and a watch go on", async () => {
    const lease = await root.acquire("secure/restart", { ttl: 60, holder: "root-job" });
    await lease.renew(); // the KeepAlive stream is open, with the old token
    const stop = new AbortController();
    const watched: string[] = [];
    let sawFirst: (() => void) | undefined;
    const firstSeen = new Promise<void>((r) => (sawFirst = r));
    const rev = await root.put("secure-restart/0", "before");
    const watching = (async () => {
      for await (const e of root.watch("secure-restart/", {
        prefix: true,
        startRevision: rev,
        signal: stop.signal,
      })) {
        watched.push(e.key);
        sawFirst?.();
        if (e.key === "secure-restart/1") stop.abort();
      }
    })();
    await firstSeen;

    await terminate(member);
    member = await restartMember(member); // simple tokens live in memory only: all forgotten

    expect(await root.counter("secure-restart-count").add(1)).toBe(1n); // InvalidAuthToken, a new token, again
    const before = lease.validUntil();
    for (let i = 0; i < 3 && lease.validUntil() === before; i++) await lease.renew(); // stream gone; new token; new stream
    expect(lease.validUntil()).toBeGreaterThan(before);
    expect(lease.state).toBe("valid");
    await root.put("secure-restart/1", "after");
    await watching; // reopened with a fresh token from the revision after the last it saw
    expect(watched).toEqual(["secure-restart/0", "secure-restart/1"]);
    await lease.release();
  });
});
