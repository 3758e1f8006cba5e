/**
 * Helpers for the transport tests: real sockets on 127.0.0.1 with ephemeral
 * ports, and waits that resolve on events (messages, log events, status
 * changes), never on the clock.
 */

import { readFileSync } from "node:fs";
import * as net from "node:net";
import type { MemberId } from "../../src/raft/index.ts";
import { memberId } from "../../src/raft/index.ts";
import type {
  PeerAddress,
  PeerTransportOptions,
  TransportLimits,
  TransportLogEvent,
  TransportTls,
} from "../../src/transport/index.ts";
import { PeerTransport } from "../../src/transport/index.ts";

export const HOST = "127.0.0.1";
export const ANY_PORT: PeerAddress = { host: HOST, port: 0 };

/** Limits that make reconnects quick in tests. */
export const FAST: Partial<TransportLimits> = { backoffInitialMs: 5, backoffMaxMs: 40 };

/** A condition that resolves a promise once it holds, re-checked on every `poke`. */
class Waiters {
  private readonly pending: { check: () => boolean; resolve: () => void }[] = [];

  until(check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve) => this.pending.push({ check, resolve }));
  }

  poke(): void {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const w = this.pending[i]!;
      if (w.check()) {
        this.pending.splice(i, 1);
        w.resolve();
      }
    }
  }
}

/** Everything one member saw: messages by sender, log events, peer status changes. */
export class Observer {
  readonly messages = new Map<MemberId, Uint8Array[]>();
  readonly events: TransportLogEvent[] = [];
  readonly active = new Map<MemberId, boolean>();
  private readonly waiters = new Waiters();

  readonly onMessage = (from: MemberId, payload: Uint8Array): void => {
    let list = this.messages.get(from);
    if (list === undefined) {
      list = [];
      this.messages.set(from, list);
    }
    list.push(payload);
    this.waiters.poke();
  };

  readonly log = (event: TransportLogEvent): void => {
    this.events.push(event);
    this.waiters.poke();
  };

  readonly onPeerStatus = (peer: MemberId, active: boolean): void => {
    this.active.set(peer, active);
    this.waiters.poke();
  };

  from(peer: MemberId): Uint8Array[] {
    return this.messages.get(peer) ?? [];
  }

  /** Resolves once `count` messages from `peer` have arrived. */
  received(peer: MemberId, count: number): Promise<void> {
    return this.waiters.until(() => this.from(peer).length >= count);
  }

  /** Resolves with the first logged event that matches. */
  async logged(match: (e: TransportLogEvent) => boolean): Promise<TransportLogEvent> {
    await this.waiters.until(() => this.events.some(match));
    return this.events.find(match)!;
  }

  /** Resolves once the link to `peer` is (or is no longer) active. */
  status(peer: MemberId, active: boolean): Promise<void> {
    return this.waiters.until(() => (this.active.get(peer) ?? false) === active);
  }
}

/** A transport wired to a fresh observer. */
export function member(
  id: number,
  options: Partial<PeerTransportOptions> = {},
): { t: PeerTransport; o: Observer; id: MemberId } {
  const o = new Observer();
  const t = new PeerTransport({
    selfId: memberId(id),
    clusterId: "test-cluster",
    listen: ANY_PORT,
    onMessage: o.onMessage,
    onPeerStatus: o.onPeerStatus,
    log: o.log,
    limits: FAST,
    // A clock that never advances: queues are never dropped for being held too long.
    monotonicMs: () => 0,
    ...options,
  });
  return { t, o, id: memberId(id) };
}

/** Starts `members` and makes every one a peer of every other. */
export async function connectAll(members: readonly { t: PeerTransport; id: MemberId }[]): Promise<void> {
  const addresses = await Promise.all(members.map((m) => m.t.start()));
  members.forEach((m, i) => {
    members.forEach((other, j) => {
      if (i !== j) m.t.addPeer(other.id, addresses[j]!);
    });
  });
}

/** A port nothing listens on right now (bound, then released). */
export async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const address = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

/** `size` bytes that depend on `seed` at every position, so swaps and shifts show. */
export function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2_654_435_761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Byte equality without building a diff of megabytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/** A little-endian sequence number in the first 4 bytes (messages of at least 4 bytes). */
export function numbered(seq: number, size: number, seed = seq): Uint8Array {
  const out = pattern(Math.max(4, size), seed);
  new DataView(out.buffer).setUint32(0, seq, true);
  return out;
}

export function seqOf(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0, true);
}

/** Connects a raw TCP socket to `port` and resolves once connected. */
export async function rawConnect(port: number): Promise<net.Socket> {
  const socket = net.connect({ host: HOST, port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return socket;
}

/** Resolves with everything `socket` received once it has closed. */
export function untilClosed(socket: net.Socket): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  socket.on("data", (d: Buffer) => chunks.push(d));
  socket.on("error", () => {
    // Resets are expected here: the peer closes on us; 'close' follows.
  });
  return new Promise((resolve) => socket.once("close", () => resolve(Buffer.concat(chunks))));
}

/**
 * Yields event-loop turns (not time) until `handles()` equals `expected`, at most
 * `turnsMax` of them. Node frees a closed listener's handle in the loop's close
 * phase, one or two turns after `server.close()` calls back.
 */
export async function handlesReleased(
  handles: () => string[],
  expected: readonly string[],
  turnsMax = 10,
): Promise<void> {
  for (let turn = 0; turn < turnsMax; turn++) {
    if (JSON.stringify(handles()) === JSON.stringify(expected)) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * TLS fixtures (test-only keys, valid until 2126, made with OpenSSL 3):
 *   ca.crt            self-signed CA, EC P-256 (its key was discarded)
 *   member.crt/.key   signed by ca.crt; SAN IP:127.0.0.1, DNS:localhost; serverAuth + clientAuth
 *   rogue.crt/.key    self-signed, same SAN and usages: trusted by nobody
 */
export const fixture = (name: string): string =>
  readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8");
export const ca = fixture("ca.crt");
export const memberTls: TransportTls = {
  cert: fixture("member.crt"),
  key: fixture("member.key"),
  ca,
  clientCertAuth: true,
};
export const rogueTls: TransportTls = { cert: fixture("rogue.crt"), key: fixture("rogue.key"), ca };
