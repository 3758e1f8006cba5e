/**
 * Membership queries (etcd's GET /members on the peer listener) over real
 * sockets on 127.0.0.1: answered, refused, timed out, over TLS with client
 * certificate authentication, and beside member connections on the same
 * listener. Every wait is on a promise or an event, never on the clock; the one
 * timeout under test is the query's own (a few ms).
 */

import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { MembershipQueryError, PeerTransport } from "../../src/transport/index.ts";
import { MEMBERSHIP_BYTES_MAX, queryMembership, WIRE_VERSION } from "../../src/transport/index.ts";
import { encodeQuery, MembershipAnswerDecoder } from "../../src/transport/wire.ts";
import {
  fixture,
  HOST,
  member,
  memberTls,
  numbered,
  pattern,
  rawConnect,
  rogueTls,
  sameBytes,
  seqOf,
  untilClosed,
  unusedPort,
} from "./helpers.ts";

/** Generous: only a broken test waits this long. */
const TIMEOUT_MS = 10_000;

/** Transports and plain listeners to close after each test, even a failed one. */
const open: PeerTransport[] = [];
const listeners: { server: net.Server; sockets: Set<net.Socket> }[] = [];
function track<T extends { t: PeerTransport }>(m: T): T {
  open.push(m.t);
  return m;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
  for (const { server, sockets } of listeners.splice(0)) {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/** A plain TCP listener that runs `onSocket` for each connection (and never answers by itself). */
async function listener(onSocket: (socket: net.Socket) => void = () => {}): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {
      // The query side destroys its end; a reset here is expected.
    });
    onSocket(socket);
  });
  listeners.push({ server, sockets });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return (server.address() as net.AddressInfo).port;
}

/** The error a query rejected with (fails the test if it resolved). */
async function failure(query: Promise<Uint8Array>): Promise<MembershipQueryError> {
  const outcome = await query.then(
    () => null,
    (err: MembershipQueryError) => err,
  );
  expect(outcome, "the query should have failed").not.toBeNull();
  return outcome!;
}

describe("membership query", () => {
  it("is answered with the host's current document, once per query", async () => {
    let calls = 0;
    let document: Uint8Array = new TextEncoder().encode('{"members":[1,2,3]}');
    const membership = (): Uint8Array => {
      calls++;
      return document;
    };
    const b = track(member(2, { membership }));
    const address = await b.t.start();
    const got = await queryMembership(address, { timeoutMs: TIMEOUT_MS });
    expect(new TextDecoder().decode(got)).toBe('{"members":[1,2,3]}');

    // A later query sees the document as it is then; a large one arrives whole.
    document = pattern(3 * 1024 * 1024 + 7, 4);
    const large = await queryMembership(address, { timeoutMs: TIMEOUT_MS });
    expect(sameBytes(large, document)).toBe(true);
    expect(calls).toBe(2);
    const answered = await b.o.logged((e) => e.code === "membership-answered");
    expect(answered).toMatchObject({ level: "info", peer: null });
    expect(answered.message).toMatch(/^answered a membership query from 127\.0\.0\.1:\d+ \(19 bytes\)$/);
    expect(b.t.stats()).toMatchObject({
      membershipQueriesAnswered: 2,
      membershipQueriesRefused: 0,
      handshakesRejected: 0,
    });
    // A query is no peer connection.
    expect(b.o.events.filter((e) => e.code.startsWith("inbound-"))).toEqual([]);
    expect(b.t.stats().peers.size).toBe(0);
  });

  it("is refused when the host has no membership option, saying so", async () => {
    const b = track(member(2));
    const address = await b.t.start();
    const err = await failure(queryMembership(address, { timeoutMs: TIMEOUT_MS }));
    expect(err.name).toBe("MembershipQueryError");
    expect(err.code).toBe("membership-query.refused");
    expect(err.message).toBe(
      `membership query to ${HOST}:${address.port} failed: refused by the peer: membership not available`,
    );
    const refused = await b.o.logged((e) => e.code === "membership-refused");
    expect(refused.message).toContain("membership not available (no membership option)");
    expect(b.t.stats()).toMatchObject({ membershipQueriesAnswered: 0, membershipQueriesRefused: 1 });
  });

  it("is refused when the host's callback throws (logged there) or its document is too large", async () => {
    let fail: "throw" | "large" = "throw";
    const b = track(
      member(2, {
        membership: () => {
          if (fail === "throw") throw new Error("not a member yet");
          return new Uint8Array(MEMBERSHIP_BYTES_MAX + 1);
        },
      }),
    );
    const address = await b.t.start();
    const thrown = await failure(queryMembership(address, { timeoutMs: TIMEOUT_MS }));
    expect(thrown.message).toMatch(/refused by the peer: membership not available$/);
    const logged = await b.o.logged((e) => e.code === "membership-refused");
    expect(logged.message).toContain("(the membership callback threw: not a member yet)");

    fail = "large";
    const large = await failure(queryMembership(address, { timeoutMs: TIMEOUT_MS }));
    expect(large.code).toBe("membership-query.refused");
    expect(large.message).toMatch(
      /refused by the peer: membership not available: the document is 4194305 bytes, above 4194304$/,
    );
    expect(b.t.stats().membershipQueriesRefused).toBe(2);
  });

  it("answers a query of another version with the version it speaks", async () => {
    const b = track(member(2, { membership: () => new Uint8Array([1]) }));
    const address = await b.t.start();
    const socket = await rawConnect(address.port);
    const answered = untilClosed(socket);
    const query = encodeQuery().slice();
    query.set([0, WIRE_VERSION + 1], 4);
    socket.write(query);
    const r = new MembershipAnswerDecoder().push(await answered);
    expect(r.kind === "ok" && r.value).toEqual({
      status: "refused",
      reason: "bad-version: peer protocol version 3 is not supported (this member speaks 2)",
    });
    const logged = await b.o.logged((e) => e.code === "membership-refused");
    expect(logged.reason).toBe("bad-version");
  });

  it("reads a query that arrives a byte at a time", async () => {
    const b = track(member(2, { membership: () => new Uint8Array([4, 5, 6]) }));
    const address = await b.t.start();
    const socket = await rawConnect(address.port);
    socket.setNoDelay(true);
    const answered = untilClosed(socket);
    for (const byte of encodeQuery()) {
      await new Promise<void>((resolve) => socket.write(new Uint8Array([byte]), () => resolve()));
    }
    const r = new MembershipAnswerDecoder().push(await answered);
    expect(r.kind === "ok" && r.value.status === "ok" && [...r.value.membership]).toEqual([4, 5, 6]);
  });
});

describe("membership query failures", () => {
  it("times out against a listener that never answers", async () => {
    const port = await listener();
    const err = await failure(queryMembership({ host: HOST, port }, { timeoutMs: 50 }));
    expect(err.code).toBe("membership-query.timeout");
    // Loopback connects in far less than 50 ms; "a connection" only on a machine that is badly overloaded.
    expect(err.message).toMatch(
      new RegExp(
        `^membership query to ${HOST}:${port} failed: timed out after 50 ms waiting for (the answer|a connection)$`,
      ),
    );
  });

  it("says the connection was refused when nothing listens", async () => {
    const port = await unusedPort();
    const err = await failure(queryMembership({ host: HOST, port }, { timeoutMs: TIMEOUT_MS }));
    expect(err.code).toBe("membership-query.connect-failed");
    expect(err.message).toBe(
      `membership query to ${HOST}:${port} failed: connection refused (connect ECONNREFUSED ${HOST}:${port})`,
    );
  });

  it("reports a protocol error for an answer that is not a membership answer", async () => {
    const port = await listener((socket) => socket.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
    const err = await failure(queryMembership({ host: HOST, port }, { timeoutMs: TIMEOUT_MS }));
    expect(err.code).toBe("membership-query.protocol-error");
    expect(err.message).toBe(
      `membership query to ${HOST}:${port} failed: protocol error: bad-magic: the peer's answer is not a membership answer`,
    );
  });

  it("reports a connection closed before a whole answer", async () => {
    const port = await listener((socket) => socket.once("data", () => socket.end(encodeQuery())));
    const err = await failure(queryMembership({ host: HOST, port }, { timeoutMs: TIMEOUT_MS }));
    expect(err.code).toBe("membership-query.connection-closed");
    expect(err.message).toMatch(/the peer closed the connection before a whole answer$/);
  });
});

describe("membership query over TLS with client certificate authentication", () => {
  it("is answered for a dialer with a certificate from the trusted CA", async () => {
    const b = track(member(2, { tls: memberTls, membership: () => new Uint8Array([9, 8, 7]) }));
    const address = await b.t.start();
    const got = await queryMembership(address, { tls: memberTls, timeoutMs: TIMEOUT_MS });
    expect([...got]).toEqual([9, 8, 7]);
  });

  it("is refused, with the reason, for a dialer whose certificate the CA did not sign", async () => {
    const b = track(member(2, { tls: memberTls, membership: () => new Uint8Array([1]) }));
    const address = await b.t.start();
    const err = await failure(queryMembership(address, { tls: rogueTls, timeoutMs: TIMEOUT_MS }));
    expect(err.code).toBe("membership-query.refused");
    expect(err.message).toContain(
      "refused by the peer: untrusted-certificate: client certificate not accepted (DEPTH_ZERO_SELF_SIGNED_CERT)",
    );
    expect(b.t.stats()).toMatchObject({ membershipQueriesAnswered: 0, handshakesRejected: 1 });
  });

  it("does not connect to a member whose certificate the dialer does not trust", async () => {
    const b = track(member(2, { tls: memberTls, membership: () => new Uint8Array([1]) }));
    const address = await b.t.start();
    const distrustful = { ...memberTls, ca: fixture("rogue.crt") };
    const err = await failure(queryMembership(address, { tls: distrustful, timeoutMs: TIMEOUT_MS }));
    expect(err.code).toBe("membership-query.connect-failed");
    expect(err.message).toContain("failed: TLS handshake failed: ");
    expect(b.t.stats().membershipQueriesAnswered).toBe(0);
  });

  it("gets no answer over plain TCP", async () => {
    const b = track(member(2, { tls: memberTls, membership: () => new Uint8Array([1]) }));
    const address = await b.t.start();
    const err = await failure(queryMembership(address, { timeoutMs: TIMEOUT_MS }));
    // The TLS listener hangs up on bytes that are not TLS (a TLS library could send an alert first).
    expect(["membership-query.connection-closed", "membership-query.protocol-error"]).toContain(err.code);
    expect(b.t.stats().membershipQueriesAnswered).toBe(0);
  });
});

describe("membership queries beside member connections", () => {
  it("leaves member connections on the same transport as they were", async () => {
    const a = track(member(1));
    const b = track(member(2, { membership: () => new Uint8Array([42]) }));
    const address = await b.t.start();
    // Queries before any member connection.
    for (let i = 0; i < 3; i++)
      expect([...(await queryMembership(address, { timeoutMs: TIMEOUT_MS }))]).toEqual([42]);

    await a.t.start();
    a.t.addPeer(b.id, address);
    b.t.addPeer(a.id, a.t.address());
    await Promise.all([a.o.status(b.id, true), b.o.status(a.id, true)]);
    for (let seq = 0; seq < 5; seq++) a.t.send(b.id, numbered(seq, 64));
    await b.o.received(a.id, 5);

    // Queries while a's connection is up: it is neither replaced nor disturbed.
    await Promise.all([1, 2, 3].map(() => queryMembership(address, { timeoutMs: TIMEOUT_MS })));
    for (let seq = 5; seq < 10; seq++) a.t.send(b.id, numbered(seq, 64));
    await b.o.received(a.id, 10);
    expect(b.o.from(a.id).map(seqOf)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(b.o.events.filter((e) => e.code.startsWith("inbound-")).map((e) => [e.code, e.peer])).toEqual([
      ["inbound-accepted", a.id],
    ]);
    expect(b.t.stats()).toMatchObject({ membershipQueriesAnswered: 6, handshakesRejected: 0 });
    expect(b.t.stats().peers.get(a.id)).toMatchObject({ received: 10, active: true });
  });
});
