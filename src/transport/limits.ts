/**
 * The peer transport's limits, in one place (CONVENTIONS 5): every queue, message,
 * batch and wait has a named maximum, with the unit last.
 *
 * Contract: plain data. `messageBytesMax` must be the same on every member (a
 * receiver closes a connection that carries a bigger message); the others are
 * local. `checkTransportLimits` is called once, when a transport is built.
 */

import { assert } from "../raft/index.ts";

const MiB = 1024 * 1024;

/** Sizes and durations that bound the transport's memory and waits. */
export interface TransportLimits {
  /**
   * Largest payload `send` accepts and a receiver reassembles, in bytes. Raft
   * snapshots are the big messages (tens of MiB); anything larger is dropped by
   * the sender and is a protocol error at the receiver.
   */
  readonly messageBytesMax: number;
  /** Most messages waiting in one peer's outbound queue; when full, `send` drops. */
  readonly queueMessagesMax: number;
  /**
   * Most payload bytes waiting in one peer's outbound queue; when full, `send`
   * drops. At least `messageBytesMax`, so that an empty queue takes any message.
   */
  readonly queueBytesMax: number;
  /**
   * Payload bytes gathered into one socket write (messages queued while the
   * previous write was in progress go out together). A message bigger than one
   * frame is written one frame per batch, so the event loop and the other peers'
   * writes get a turn between its chunks.
   */
  readonly writeBatchBytesMax: number;
  /** First wait before redialing a peer after a failure (the backoff's floor). */
  readonly backoffInitialMs: number;
  /** Longest wait between two dials of a peer (the backoff's ceiling). */
  readonly backoffMaxMs: number;
  /**
   * Most inbound connections open at once (the listener refuses more). Together
   * with the handshake timeout it bounds what unauthenticated dialers can hold.
   */
  readonly inboundConnectionsMax: number;
  /** A connection whose handshake is not done within this time is closed (both sides). */
  readonly handshakeTimeoutMs: number;
  /**
   * How long a peer may be unreachable before its queued messages are dropped
   * and new ones are dropped at once (until it is reachable again). Raft resends
   * what matters; a message this old would only be stale.
   */
  readonly unreachableHoldMs: number;
  /** Idle time before TCP keepalive probes start on a peer connection. */
  readonly keepAliveMs: number;
}

/**
 * Defaults: 1 MiB frames (wire.ts), 512 MiB messages, 2 s backoff ceiling. A
 * message is a Raft snapshot at most this big: the state machine's JSON
 * snapshot cannot be larger anyway (V8's longest string is just under 512 MiB).
 * It travels in 1 MiB frames, one per write batch, so other traffic and other
 * peers interleave with it; queues hold references, not copies.
 */
export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = Object.freeze({
  messageBytesMax: 512 * MiB,
  queueMessagesMax: 4096,
  // The largest message fits with 16 MiB of ordinary traffic besides it.
  queueBytesMax: 528 * MiB,
  writeBatchBytesMax: 1 * MiB,
  inboundConnectionsMax: 128,
  backoffInitialMs: 50,
  backoffMaxMs: 2000,
  handshakeTimeoutMs: 5000,
  unreachableHoldMs: 1000,
  keepAliveMs: 10_000,
});

/** Asserts that `limits` are usable together; a violation is a configuration bug. */
export function checkTransportLimits(limits: TransportLimits): void {
  for (const [name, value] of Object.entries(limits)) {
    assert(Number.isSafeInteger(value) && value > 0, `transport limit ${name} must be a positive integer`);
  }
  assert(limits.queueBytesMax >= limits.messageBytesMax, "transport: queueBytesMax < messageBytesMax");
  assert(limits.backoffMaxMs >= limits.backoffInitialMs, "transport: backoffMaxMs < backoffInitialMs");
}
