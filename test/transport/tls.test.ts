/**
 * Peer links over TLS with client certificate authentication (etcd's
 * --peer-client-cert-auth), on real sockets.
 *
 * The fixtures are test-only keys, valid until 2126, made with OpenSSL 3:
 *   ca.crt            self-signed CA, EC P-256 (its key was discarded)
 *   member.crt/.key   signed by ca.crt; SAN IP:127.0.0.1, DNS:localhost; serverAuth + clientAuth
 *   rogue.crt/.key    self-signed, same SAN and usages: trusted by nobody
 */

import { afterEach, describe, expect, it } from "vitest";
import type { PeerTransport } from "../../src/transport/index.ts";
import { FRAME_PAYLOAD_BYTES_MAX } from "../../src/transport/index.ts";
import { connectAll, HOST, member, memberTls, pattern, rogueTls, sameBytes } from "./helpers.ts";

const open: PeerTransport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

describe("TLS", () => {
  it("carries messages both ways between members with certificates from the trusted CA", async () => {
    const a = member(1, { tls: memberTls });
    const b = member(2, { tls: memberTls });
    open.push(a.t, b.t);
    await connectAll([a, b]);
    const big = pattern(2 * FRAME_PAYLOAD_BYTES_MAX + 5, 3);
    a.t.send(b.id, big);
    a.t.send(b.id, new Uint8Array([1]));
    b.t.send(a.id, new Uint8Array([2]));
    await Promise.all([b.o.received(a.id, 2), a.o.received(b.id, 1)]);
    expect(sameBytes(b.o.from(a.id)[0]!, big)).toBe(true);
    expect([...b.o.from(a.id)[1]!]).toEqual([1]);
    expect([...a.o.from(b.id)[0]!]).toEqual([2]);
    expect(a.t.isActive(b.id) && b.t.isActive(a.id)).toBe(true);
  });

  it("refuses a dialer whose certificate the CA did not sign", async () => {
    const b = member(2, { tls: memberTls });
    const rogue = member(1, { tls: rogueTls });
    open.push(b.t, rogue.t);
    await connectAll([b, rogue]);
    const rejected = await b.o.logged((e) => e.code === "tls-rejected");
    expect(rejected.reason).toBe("untrusted-certificate");
    expect(rejected.message).toContain(`refused connection from ${HOST}`);
    expect(rejected.message).toContain("client certificate not accepted (DEPTH_ZERO_SELF_SIGNED_CERT)");
    const refused = await rogue.o.logged((e) => e.code === "handshake-refused" && e.peer === b.id);
    expect(refused.message).toContain("untrusted-certificate");
    // Nor does b trust the rogue's certificate when it dials the rogue.
    await b.o.logged((e) => e.code === "dial-failed" && e.peer === rogue.id);
    expect(rogue.t.isActive(b.id)).toBe(false);
    expect(b.t.stats().handshakesRejected).toBeGreaterThanOrEqual(1);
  });

  it("does not talk to a plain TCP peer", async () => {
    const b = member(2, { tls: memberTls });
    const plain = member(1);
    open.push(b.t, plain.t);
    await connectAll([b, plain]);
    await plain.o.logged((e) => e.code === "dial-failed" && e.peer === b.id);
    await b.o.logged((e) => e.code === "dial-failed" && e.peer === plain.id);
    expect(plain.t.isActive(b.id) || b.t.isActive(plain.id)).toBe(false);
  });
});
