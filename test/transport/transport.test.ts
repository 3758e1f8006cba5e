/**
 * PeerTransport over real sockets on 127.0.0.1 (ephemeral ports). Every wait is
 * on an event — messages arrived, a log event, a status change, a socket
 * closed — never on the clock; reconnect timing is shortened through limits and
 * the unreachable hold is driven by an injected clock.
 */

import { afterEach, describe, expect, it } from "vitest";
import { memberId } from "../../src/raft/index.ts";
import type { PeerTransport } from "../../src/transport/index.ts";
import { FRAME_PAYLOAD_BYTES_MAX, WIRE_VERSION } from "../../src/transport/index.ts";
import { encodeHello, readResponse } from "../../src/transport/wire.ts";
import {
  connectAll,
  HOST,
  handlesReleased,
  member,
  numbered,
  pattern,
  rawConnect,
  sameBytes,
  seqOf,
  untilClosed,
  unusedPort,
} from "./helpers.ts";

const MiB = FRAME_PAYLOAD_BYTES_MAX;

/** Transports to close after each test, even a failed one. */
const open: PeerTransport[] = [];
function track<T extends { t: PeerTransport }>(m: T): T {
  open.push(m.t);
  return m;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

describe("delivery", () => {
  it("delivers messages of many sizes intact and in order, both ways at once", async () => {
    const a = track(member(1));
    const b = track(member(2));
    await connectAll([a, b]);
    const sizes = [0, 1, 5, 4095, 65_536, MiB - 5, MiB, MiB + 1, 2 * MiB + 3, 9 * MiB + 17, 0, 3, 300_000];
    const payloads = sizes.map((size, i) => pattern(size, i + 1));
    for (const p of payloads) {
      expect(a.t.send(b.id, p)).toBe(true);
      expect(b.t.send(a.id, p)).toBe(true);
    }
    await Promise.all([b.o.received(a.id, sizes.length), a.o.received(b.id, sizes.length)]);
    for (const got of [b.o.from(a.id), a.o.from(b.id)]) {
      expect(got.map((m) => m.length)).toEqual(sizes);
      for (const [i, m] of got.entries()) expect(sameBytes(m, payloads[i]!), `message ${i}`).toBe(true);
    }
    const stats = a.t.stats().peers.get(b.id)!;
    expect(stats).toMatchObject({
      sent: sizes.length,
      received: sizes.length,
      dropped: 0,
      queuedMessages: 0,
    });
  });

  it("keeps per-pair order among three members sending to each other at once", async () => {
    const ms = [track(member(1)), track(member(2)), track(member(3))];
    await connectAll(ms);
    const count = 400;
    for (let seq = 0; seq < count; seq++) {
      for (const from of ms) {
        for (const to of ms) {
          // Now and then a message of several frames among the small ones.
          if (from !== to)
            from.t.send(to.id, numbered(seq, seq % 97 === 0 ? 2 * MiB + seq : 16 + (seq % 50)));
        }
      }
    }
    await Promise.all(ms.flatMap((to) => ms.filter((f) => f !== to).map((f) => to.o.received(f.id, count))));
    for (const to of ms) {
      for (const from of ms) {
        if (from === to) continue;
        expect(to.o.from(from.id).map(seqOf)).toEqual(Array.from({ length: count }, (_, i) => i));
      }
    }
  });

  it("sends what was queued during a write in one write", async () => {
    const a = track(member(1));
    const b = track(member(2));
    await connectAll([a, b]);
    await a.o.status(b.id, true);
    const writes = () => a.t.stats().peers.get(b.id)!.writes;
    const before = writes();
    for (let seq = 0; seq < 1000; seq++) a.t.send(b.id, numbered(seq, 20));
    await b.o.received(a.id, 1000);
    expect(writes() - before).toBe(1);

    // 2.5 MiB goes one frame per write; the small messages behind it share its last write.
    a.t.send(b.id, pattern(2.5 * MiB, 9));
    for (let seq = 0; seq < 100; seq++) a.t.send(b.id, numbered(seq, 20));
    await b.o.received(a.id, 1101);
    expect(writes() - before).toBe(1 + 3);
    expect(b.o.from(a.id).slice(1001).map(seqOf)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });
});

describe("reconnects", () => {
  it("delivers what was queued for a peer that starts late, after redialing", async () => {
    const port = await unusedPort();
    const a = track(member(1));
    await a.t.start();
    a.t.addPeer(memberId(2), { host: HOST, port });
    for (let seq = 0; seq < 10; seq++) expect(a.t.send(memberId(2), numbered(seq, 100))).toBe(true);
    await a.o.logged((e) => e.code === "dial-failed" && e.peer === memberId(2));
    expect(a.t.isActive(memberId(2))).toBe(false);

    const b = track(member(2, { listen: { host: HOST, port }, peers: new Map([[a.id, a.t.address()]]) }));
    await b.t.start();
    await b.o.received(a.id, 10);
    expect(b.o.from(a.id).map(seqOf)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await a.o.status(b.id, true);
    expect(a.t.isActive(b.id)).toBe(true);
    expect(a.t.stats().peers.get(b.id)!.reconnects).toBeGreaterThanOrEqual(1);
  });

  it("reports a lost peer inactive and reaches it again when it comes back", async () => {
    const a = track(member(1));
    const b1 = track(member(2));
    await connectAll([a, b1]);
    await a.o.status(b1.id, true);
    const port = b1.t.address().port;

    await b1.t.close();
    await a.o.status(b1.id, false);
    expect(a.t.isActive(b1.id)).toBe(false);
    await a.o.logged((e) => e.code === "peer-disconnected" && e.peer === b1.id);

    // The same member restarts on the same address.
    const b2 = track(member(2, { listen: { host: HOST, port } }));
    b2.t.addPeer(a.id, a.t.address());
    await b2.t.start();
    await a.o.status(b2.id, true);
    a.t.send(b2.id, numbered(42, 8));
    await b2.o.received(a.id, 1);
    expect(seqOf(b2.o.from(a.id)[0]!)).toBe(42);
  });

  it("follows a peer to its new address (updatePeers)", async () => {
    const a = track(member(1));
    const b1 = track(member(2));
    await connectAll([a, b1]);
    await a.o.status(b1.id, true);
    const b2 = track(member(2));
    b2.t.addPeer(a.id, a.t.address());
    const moved = await b2.t.start();
    a.t.updatePeers(new Map([[b2.id, moved]]));
    a.t.send(b2.id, numbered(7, 8));
    await b2.o.received(a.id, 1);
    expect(b1.o.from(a.id)).toHaveLength(0);
  });
});

describe("bounded queues", () => {
  it("drops and counts when a peer's queue is full, in messages or in bytes", async () => {
    const dead = { host: HOST, port: await unusedPort() };
    const limits = { queueMessagesMax: 5, queueBytesMax: 1000, messageBytesMax: 600, backoffInitialMs: 5 };
    const a = track(member(1, { limits }));
    await a.t.start();
    const b = memberId(2);
    a.t.addPeer(b, dead);
    const results = [1, 1, 1, 1, 1, 1].map(() => a.t.send(b, new Uint8Array(10)));
    expect(results).toEqual([true, true, true, true, true, false]);
    expect(a.t.stats().peers.get(b)).toMatchObject({ dropped: 1, queuedMessages: 5, queuedBytes: 50 });

    const c = memberId(3);
    a.t.addPeer(c, dead);
    expect(a.t.send(c, new Uint8Array(500))).toBe(true);
    expect(a.t.send(c, new Uint8Array(450))).toBe(true);
    expect(a.t.send(c, new Uint8Array(51))).toBe(false); // 1001 bytes
    expect(a.t.send(c, new Uint8Array(601))).toBe(false); // above messageBytesMax
    expect(a.t.send(c, new Uint8Array(50))).toBe(true);
    expect(a.t.stats().peers.get(c)).toMatchObject({ dropped: 2, queuedMessages: 3, queuedBytes: 1000 });
  });

  it("drops the queue of a peer unreachable for longer than the hold, then drops at once", async () => {
    let nowMs = 0;
    const dead = { host: HOST, port: await unusedPort() };
    const a = track(member(1, { monotonicMs: () => nowMs, limits: { unreachableHoldMs: 1000 } }));
    await a.t.start();
    const b = memberId(2);
    a.t.addPeer(b, dead);
    for (let i = 0; i < 3; i++) expect(a.t.send(b, new Uint8Array(8))).toBe(true);
    nowMs = 999;
    expect(a.t.send(b, new Uint8Array(8))).toBe(true);
    nowMs = 1000;
    expect(a.t.send(b, new Uint8Array(8))).toBe(false);
    expect(a.t.stats().peers.get(b)).toMatchObject({ dropped: 5, queuedMessages: 0, queuedBytes: 0 });
    const event = await a.o.logged((e) => e.code === "queue-dropped");
    expect(event.message).toContain("dropped 4 messages");
  });

  it("counts sends to members that are not peers", async () => {
    const a = track(member(1));
    expect(a.t.send(memberId(9), new Uint8Array(1))).toBe(false);
    expect(a.t.stats().droppedUnknownPeer).toBe(1);
  });
});

describe("handshake", () => {
  it("rejects a member of another cluster, with the reason logged on both sides", async () => {
    const a = track(member(1, { clusterId: "alpha" }));
    const b = track(member(2, { clusterId: 7 }));
    await connectAll([a, b]);
    const rejected = await b.o.logged((e) => e.code === "handshake-rejected");
    expect(rejected.reason).toBe("cluster-mismatch");
    expect(rejected.message).toContain(`cluster id "alpha" does not match this member's "7"`);
    const refused = await a.o.logged((e) => e.code === "handshake-refused");
    expect(refused.message).toContain("cluster-mismatch");
    expect(a.t.isActive(b.id)).toBe(false);
    expect(b.t.stats().handshakesRejected).toBeGreaterThanOrEqual(1);
    expect(b.o.from(a.id)).toHaveLength(0);
  });

  it("rejects a dialer that meant another member, and one that is not a peer", async () => {
    const b = track(member(2));
    await b.t.start();
    b.t.addPeer(memberId(1), { host: HOST, port: await unusedPort() });
    const wrong = track(member(1));
    await wrong.t.start();
    wrong.t.addPeer(memberId(3), b.t.address()); // member 1 thinks member 3 listens there
    const stranger = track(member(4));
    await stranger.t.start();
    stranger.t.addPeer(b.id, b.t.address());
    await b.o.logged((e) => e.reason === "wrong-member");
    const unknown = await b.o.logged((e) => e.reason === "unknown-member");
    expect(unknown.message).toContain("member 4 is not a peer of member 2");
  });

  it("closes a connection that is not the peer protocol without answering", async () => {
    const b = track(member(2));
    await b.t.start();
    const socket = await rawConnect(b.t.address().port);
    const answered = untilClosed(socket);
    socket.write("GET / HTTP/1.1\r\n\r\n");
    expect((await answered).length).toBe(0);
    expect((await b.o.logged((e) => e.code === "handshake-rejected")).reason).toBe("bad-magic");
  });

  it("tells a dialer of another protocol version which version it speaks", async () => {
    const b = track(member(2));
    await b.t.start();
    const socket = await rawConnect(b.t.address().port);
    const answered = untilClosed(socket);
    const bytes = encodeHello({
      version: WIRE_VERSION,
      from: memberId(1),
      to: b.id,
      clusterId: "test-cluster",
    });
    bytes.set([0, WIRE_VERSION + 1], 4);
    socket.write(bytes);
    const r = readResponse(await answered);
    expect(r.kind === "ok" && r.value).toEqual({
      status: "rejected",
      reason: "bad-version: peer protocol version 3 is not supported (this member speaks 2)",
    });
  });

  it("closes a connection that sends no handshake in time", async () => {
    const b = track(member(2, { limits: { handshakeTimeoutMs: 20 } }));
    await b.t.start();
    const socket = await rawConnect(b.t.address().port);
    await untilClosed(socket);
    const event = await b.o.logged((e) => e.code === "handshake-rejected");
    expect(event.reason).toBe("timeout");
    expect(event.message).toContain("no handshake within 20 ms");
  });

  it("closes a peer connection that breaks the frame protocol", async () => {
    const b = track(member(2));
    await b.t.start();
    b.t.addPeer(memberId(1), { host: HOST, port: await unusedPort() });
    const socket = await rawConnect(b.t.address().port);
    const closed = untilClosed(socket);
    socket.write(
      encodeHello({ version: WIRE_VERSION, from: memberId(1), to: b.id, clusterId: "test-cluster" }),
    );
    socket.write(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1]));
    await closed;
    const event = await b.o.logged((e) => e.code === "protocol-error");
    expect(event.message).toBe("member 1: frame of 4294967295 bytes exceeds 1048576; connection closed");
  });

  it("lets a newer connection from a peer replace the older one", async () => {
    const b = track(member(2));
    await b.t.start();
    b.t.addPeer(memberId(1), { host: HOST, port: await unusedPort() });
    const hello = encodeHello({
      version: WIRE_VERSION,
      from: memberId(1),
      to: b.id,
      clusterId: "test-cluster",
    });
    const first = await rawConnect(b.t.address().port);
    const firstClosed = untilClosed(first);
    first.write(hello);
    await b.o.logged((e) => e.code === "inbound-accepted");
    const second = await rawConnect(b.t.address().port);
    second.write(hello);
    second.write(new Uint8Array([0, 0, 0, 2, 1, 0xab, 0xcd])); // one frame: the message ab cd
    await firstClosed;
    await b.o.received(memberId(1), 1);
    expect([...b.o.from(memberId(1))[0]!]).toEqual([0xab, 0xcd]);
    second.destroy();
  });
});

describe("membership", () => {
  it("adds a peer at runtime and forgets a removed one in both directions", async () => {
    const a = track(member(1));
    const b = track(member(2));
    await connectAll([a, b]);
    await Promise.all([a.o.status(b.id, true), b.o.status(a.id, true)]);
    const c = track(member(3));
    await c.t.start();
    c.t.addPeer(a.id, a.t.address());
    a.t.addPeer(c.id, c.t.address());
    a.t.send(c.id, numbered(1, 8));
    await c.o.received(a.id, 1);

    a.t.removePeer(b.id);
    expect(a.t.send(b.id, new Uint8Array(1))).toBe(false);
    expect(a.t.isActive(b.id)).toBe(false);
    expect([...a.t.stats().peers.keys()]).toEqual([c.id]);
    // b's link to a is refused from now on: a no longer knows b.
    const refused = await b.o.logged((e) => e.code === "handshake-refused");
    expect(refused.message).toContain("unknown-member");
  });
});

describe("peers", () => {
  it("lists the current peers by id, with the addresses they are dialed at", async () => {
    const a = track(member(1));
    expect(a.t.peers()).toEqual(new Map());
    const [b, c] = [memberId(2), memberId(3)];
    const atB = { host: HOST, port: 7002 };
    const atC = { host: HOST, port: 7003 };
    a.t.addPeer(c, atC);
    a.t.addPeer(b, atB);
    expect([...a.t.peers()]).toEqual([
      [b, atB],
      [c, atC],
    ]);
    const moved = { host: "localhost", port: 7012 };
    a.t.updatePeers(new Map([[b, moved]]));
    expect([...a.t.peers()]).toEqual([[b, moved]]);
    a.t.removePeer(b);
    expect(a.t.peers().size).toBe(0);
  });
});

describe("close", () => {
  const tcpKinds = ["TCPSocketWrap", "TCPServerWrap", "TCPWRAP", "TCPConnectWrap"];
  const tcpHandles = () => process.getActiveResourcesInfo().filter((k) => tcpKinds.includes(k));
  const timers = () => process.getActiveResourcesInfo().filter((k) => k === "Timeout").length;

  it("leaves no socket, server or timer behind", async () => {
    const before = tcpHandles();
    const timersBefore = timers();
    const ms = [track(member(1)), track(member(2)), track(member(3))];
    await connectAll(ms);
    const dead = { host: HOST, port: await unusedPort() };
    ms[0]!.t.addPeer(memberId(9), dead); // redialing with backoff: a timer or a connecting socket
    for (const m of ms) for (const o of ms) if (m !== o) m.t.send(o.id, pattern(3 * MiB, 1));
    await Promise.all([ms[0]!.o.status(memberId(2), true), ms[0]!.o.logged((e) => e.code === "dial-failed")]);
    await Promise.all(ms.map((m) => m.t.close()));
    await Promise.all(ms.map((m) => m.t.close())); // idempotent
    await handlesReleased(tcpHandles, before);
    expect(tcpHandles()).toEqual(before);
    expect(timers()).toBeLessThanOrEqual(timersBefore);
    expect(ms[0]!.t.send(memberId(2), new Uint8Array(1))).toBe(false);
  });

  it("can close while starting and before starting", async () => {
    const before = tcpHandles();
    const a = track(member(1));
    const started = a.t.start();
    await a.t.close();
    await started;
    const b = track(member(2));
    b.t.addPeer(memberId(1), { host: HOST, port: 1 });
    await b.t.close();
    await handlesReleased(tcpHandles, before);
    expect(tcpHandles()).toEqual(before);
  });
});
