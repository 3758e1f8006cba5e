/**
 * One peer link: the outbound half of a member pair. It dials the peer, does the
 * handshake, keeps a bounded queue of messages and writes them in batches, and
 * redials with backoff when the connection fails. It also counts what the
 * inbound half received from the same peer, so one place holds a peer's stats.
 *
 * Contract:
 * - `send` never throws and never blocks; it queues or drops (and counts the drop).
 * - Queued messages go out in queue order; whatever was queued while a write was
 *   in progress goes out in the next single write. A message bigger than one
 *   frame goes out one frame per write, so other work gets a turn in between.
 * - A message is counted `sent` when handed to the socket. If the connection
 *   then fails it may be lost: there is no acknowledgement and no resend
 *   (at-most-once). A message only partly written restarts on the next
 *   connection (the receiver never delivered it).
 * - While the peer is unreachable the queue is kept for `unreachableHoldMs`, then
 *   dropped; after that `send` drops at once until a connection is up again.
 *
 * Phases: idle -> connecting -> active -> (lost) -> waiting -> connecting ...;
 * any phase -> closed. Invariant: `socket !== null` exactly in connecting/active;
 * `timer !== null` exactly in waiting.
 */

import * as net from "node:net";
import * as tls from "node:tls";
import type { MemberId } from "../raft/index.ts";
import { assert } from "../raft/index.ts";
import { nextBackoffMs } from "./backoff.ts";
import type { TransportLimits } from "./limits.ts";
import type { PeerAddress, PeerStats, TransportEventCode, TransportLogEvent, TransportTls } from "./types.ts";
import {
  concatBytes,
  encodeHello,
  FRAME_HEADER_BYTES,
  FRAME_PAYLOAD_BYTES_MAX,
  readResponse,
  WIRE_VERSION,
  writeFrameHeader,
} from "./wire.ts";

/** What a link needs from the transport that owns it. */
export interface LinkContext {
  readonly selfId: MemberId;
  readonly clusterId: string;
  readonly limits: TransportLimits;
  readonly tls: TransportTls | null;
  readonly monotonicMs: () => number;
  /** A float in [0, 1), for backoff jitter. */
  readonly random: () => number;
  readonly log: (event: TransportLogEvent) => void;
  readonly onPeerStatus: (peer: MemberId, active: boolean) => void;
  /** Registers a socket so that the transport's `close()` can wait for it. */
  readonly track: (socket: net.Socket) => void;
}

type Phase = "idle" | "connecting" | "active" | "waiting" | "closed";

/** A slice of one queued message that goes into the next write. */
interface Piece {
  readonly payload: Uint8Array;
  readonly start: number;
  readonly end: number;
  readonly final: boolean;
}

const EMPTY = new Uint8Array(0);

/** The outbound link to one peer. */
export class PeerLink {
  private phase: Phase = "idle";
  private socket: net.Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  /** When the peer last stopped being reachable (or when the link started). */
  private downSinceMs: number;
  /** What was last logged in this outage, so each cause is logged once. */
  private lastLogged: string | null = null;
  private writing = false;
  private flushScheduled = false;

  /** Invariant: `queuedBytes` is the sum of the lengths of `queue`; `headOffset` bytes of `queue[0]` are written. */
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private headOffset = 0;

  private sent = 0;
  private received = 0;
  private dropped = 0;
  private reconnects = 0;
  private writes = 0;

  constructor(
    readonly peer: MemberId,
    private address: PeerAddress,
    private readonly ctx: LinkContext,
  ) {
    this.backoffMs = ctx.limits.backoffInitialMs;
    this.downSinceMs = ctx.monotonicMs();
  }

  /** Begins dialing (once; later calls do nothing). */
  start(): void {
    if (this.phase !== "idle") return;
    this.downSinceMs = this.ctx.monotonicMs();
    this.dial();
  }

  /**
   * Queues `payload` for the peer; false if it was dropped. The link keeps a
   * reference until the bytes are written: the caller must not modify them.
   */
  send(payload: Uint8Array): boolean {
    if (this.phase === "closed") return false;
    const limits = this.ctx.limits;
    if (this.phase !== "active" && this.ctx.monotonicMs() - this.downSinceMs >= limits.unreachableHoldMs) {
      this.dropQueue();
      this.dropped++;
      return false;
    }
    if (
      payload.length > limits.messageBytesMax ||
      this.queue.length >= limits.queueMessagesMax ||
      this.queuedBytes + payload.length > limits.queueBytesMax
    ) {
      this.dropped++;
      return false;
    }
    this.queue.push(payload);
    this.queuedBytes += payload.length;
    this.scheduleFlush();
    return true;
  }

  /** Dials `address` from now on; a connection to the old one is closed (and redialed after backoff). */
  setAddress(address: PeerAddress): void {
    if (address.host === this.address.host && address.port === this.address.port) return;
    const previous = `${this.address.host}:${this.address.port}`;
    this.address = address;
    const socket = this.socket;
    if (socket === null) return;
    // Leave the connection now, not when its 'close' comes: nothing more may be written to it.
    this.onClose(socket, { code: "dial-failed", text: `peer moved from ${previous}` });
    socket.destroy();
  }

  /** Where the peer is dialed (the latest address given). */
  dialAddress(): PeerAddress {
    return this.address;
  }

  /** The outbound connection is up and the peer accepted our handshake. */
  isActive(): boolean {
    return this.phase === "active";
  }

  /** Counts one message received from this peer (by the inbound half). */
  noteReceived(): void {
    this.received++;
  }

  stats(): PeerStats {
    return {
      active: this.phase === "active",
      sent: this.sent,
      received: this.received,
      dropped: this.dropped,
      reconnects: this.reconnects,
      writes: this.writes,
      queuedMessages: this.queue.length,
      queuedBytes: this.queuedBytes,
    };
  }

  /** Stops for good: no more dials, the connection is destroyed, the queue discarded. */
  close(): void {
    this.phase = "closed";
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.socket?.destroy();
    this.queue = [];
    this.queuedBytes = 0;
    this.headOffset = 0;
  }

  private log(level: "info" | "warn", code: TransportEventCode, message: string): void {
    this.ctx.log({ level, code, peer: this.peer, message });
  }

  private describePeer(): string {
    return `member ${this.peer} at ${this.address.host}:${this.address.port}`;
  }

  private dial(): void {
    assert(this.socket === null && this.timer === null, "link: dial while connected or waiting");
    this.phase = "connecting";
    const { host, port } = this.address;
    const { limits } = this.ctx;
    const tlsOptions = this.ctx.tls;
    const socket =
      tlsOptions === null
        ? net.connect({ host, port })
        : tls.connect({ host, port, cert: tlsOptions.cert, key: tlsOptions.key, ca: tlsOptions.ca });
    this.socket = socket;
    this.ctx.track(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, limits.keepAliveMs);
    socket.setTimeout(limits.handshakeTimeoutMs);

    let received: Uint8Array = EMPTY;
    let failure: { code: TransportEventCode; text: string } = {
      code: "dial-failed",
      text: "connection closed",
    };
    socket.once(tlsOptions === null ? "connect" : "secureConnect", () => {
      const hello = {
        version: WIRE_VERSION,
        from: this.ctx.selfId,
        to: this.peer,
        clusterId: this.ctx.clusterId,
      };
      socket.write(encodeHello(hello));
    });
    socket.on("data", (data: Buffer) => {
      if (socket !== this.socket) return;
      if (this.phase === "active") {
        failure = { code: "protocol-error", text: "the peer sent bytes after its handshake response" };
        this.log("warn", "protocol-error", `${this.describePeer()}: ${failure.text}`);
        socket.destroy();
        return;
      }
      received = concatBytes(received, data);
      const r = readResponse(received);
      if (r.kind === "incomplete") return;
      if (r.kind === "error") {
        failure = { code: "dial-failed", text: r.detail };
      } else if (r.value.status === "rejected") {
        failure = { code: "handshake-refused", text: `handshake refused: ${r.value.reason}` };
      } else if (r.rest.length > 0) {
        failure = { code: "protocol-error", text: "the peer sent bytes after its handshake response" };
      } else {
        socket.setTimeout(0);
        this.becomeActive();
        return;
      }
      socket.destroy();
    });
    socket.on("timeout", () => {
      failure = { code: "dial-failed", text: `no handshake within ${limits.handshakeTimeoutMs} ms` };
      socket.destroy();
    });
    socket.on("error", (err: Error) => {
      failure = { code: "dial-failed", text: err.message };
    });
    socket.on("close", () => this.onClose(socket, failure));
  }

  private becomeActive(): void {
    this.phase = "active";
    this.backoffMs = this.ctx.limits.backoffInitialMs;
    this.lastLogged = null;
    this.log("info", "peer-connected", `connected to ${this.describePeer()}`);
    this.ctx.onPeerStatus(this.peer, true);
    this.flush();
  }

  private onClose(socket: net.Socket, failure: { code: TransportEventCode; text: string }): void {
    if (socket !== this.socket) return;
    this.socket = null;
    this.writing = false;
    // A partly written message restarts on the next connection: the receiver dropped its part.
    this.headOffset = 0;
    if (this.phase === "closed") return;
    const nowMs = this.ctx.monotonicMs();
    if (this.phase === "active") {
      this.downSinceMs = nowMs;
      this.lastLogged = null;
      this.log("warn", "peer-disconnected", `lost connection to ${this.describePeer()}: ${failure.text}`);
      this.ctx.onPeerStatus(this.peer, false);
    } else {
      const line = `${this.describePeer()}: ${failure.text}`;
      if (line !== this.lastLogged) this.log("warn", failure.code, line);
      this.lastLogged = line;
    }
    if (nowMs - this.downSinceMs >= this.ctx.limits.unreachableHoldMs) this.dropQueue();
    const limits = this.ctx.limits;
    const bounds = { initialMs: limits.backoffInitialMs, maxMs: limits.backoffMaxMs };
    const waitMs = nextBackoffMs(this.backoffMs, this.ctx.random(), bounds);
    this.backoffMs = waitMs;
    this.phase = "waiting";
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reconnects++;
      this.dial();
    }, waitMs);
  }

  /** Drops everything queued (counted); only while no write is in progress. */
  private dropQueue(): void {
    if (this.queue.length === 0) return;
    assert(!this.writing, "link: queue dropped during a write");
    this.log(
      "info",
      "queue-dropped",
      `dropped ${this.queue.length} messages queued for unreachable ${this.describePeer()}`,
    );
    this.dropped += this.queue.length;
    this.queue = [];
    this.queuedBytes = 0;
    this.headOffset = 0;
  }

  /** Flushes after the current synchronous run, so a burst of sends becomes one write. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.writing || this.phase !== "active") return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Writes one batch now if connected and idle (else the scheduled flush or the write in flight will). */
  flushNow(): void {
    this.flush();
  }

  /** Writes one batch if connected and idle; the write's completion starts the next. */
  private flush(): void {
    const socket = this.socket;
    if (this.phase !== "active" || this.writing || socket === null || this.queue.length === 0) return;
    // Destroyed (the peer hung up, or an error) but its 'close' not yet handled: onClose resets the link.
    if (socket.destroyed) return;
    const batch = this.takeBatch();
    this.writing = true;
    this.writes++;
    socket.write(batch, (err) => {
      // After a failure, or once this socket is replaced, onClose has reset the state.
      if (socket !== this.socket || err) return;
      this.writing = false;
      this.flush();
    });
  }

  /**
   * Takes up to `writeBatchBytesMax` payload bytes (at least one frame) off the
   * queue and encodes them as frames in one buffer.
   */
  private takeBatch(): Uint8Array {
    const budget = this.ctx.limits.writeBatchBytesMax;
    const pieces: Piece[] = [];
    let payloadBytes = 0;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const remaining = head.length - this.headOffset;
      const take = Math.min(remaining, FRAME_PAYLOAD_BYTES_MAX);
      if (pieces.length > 0 && payloadBytes + take > budget) break;
      const final = take === remaining;
      pieces.push({ payload: head, start: this.headOffset, end: this.headOffset + take, final });
      payloadBytes += take;
      if (final) {
        this.queue.shift();
        this.queuedBytes -= head.length;
        this.headOffset = 0;
        this.sent++;
      } else {
        this.headOffset += take;
      }
    }
    const out = new Uint8Array(payloadBytes + pieces.length * FRAME_HEADER_BYTES);
    let at = 0;
    for (const p of pieces) {
      writeFrameHeader(out, at, p.end - p.start, p.final);
      at += FRAME_HEADER_BYTES;
      out.set(p.payload.subarray(p.start, p.end), at);
      at += p.end - p.start;
    }
    assert(at === out.length, "link: batch length mismatch");
    assert(this.queuedBytes >= 0, "link: negative queued bytes");
    return out;
  }
}
