/**
 * The transport's vocabulary: addresses, TLS material, log events and counters.
 *
 * Contract: plain data. Log event codes are stable (hosts and tests match on
 * them); the message text is for people and may change.
 */

import type { MemberId } from "../raft/index.ts";
import type { HandshakeRejectReason } from "./wire.ts";

/** Where a member listens for its peers. */
export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * TLS for peer links, as etcd's `--peer-cert-file`, `--peer-key-file`,
 * `--peer-trusted-ca-file` and `--peer-client-cert-auth`: PEM text or bytes.
 * The same certificate serves both directions (server and client auth).
 */
export interface TransportTls {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** Trusted CA: a dialer checks the acceptor against it, and with `clientCertAuth` the reverse too. */
  readonly ca: string | Buffer;
  /** Require and verify a client certificate on every inbound connection. */
  readonly clientCertAuth?: boolean;
}

/** Stable codes of what the transport reports. */
export type TransportEventCode =
  /** The listener is up. */
  | "listening"
  /** An outbound connection to a peer was accepted; it is active. */
  | "peer-connected"
  /** An active outbound connection was lost. */
  | "peer-disconnected"
  /** Dialing a peer failed (refused, reset, TLS, timeout); logged once per outage and cause. */
  | "dial-failed"
  /** A peer refused our handshake and said why (in `reason` text). */
  | "handshake-refused"
  /** We refused an inbound handshake; `reason` says why. */
  | "handshake-rejected"
  /** An inbound TLS connection failed its handshake or had no trusted client certificate (`reason` then set). */
  | "tls-rejected"
  /** An inbound connection from a peer was accepted. */
  | "inbound-accepted"
  /** An inbound connection from a peer was replaced by a newer one from the same peer. */
  | "inbound-replaced"
  /** A peer's bytes broke the frame protocol; the connection was closed. */
  | "protocol-error"
  /** Queued messages for an unreachable peer were dropped (after `unreachableHoldMs`). */
  | "queue-dropped"
  /** The listener failed after it was up. */
  | "listener-error"
  /** A membership query was answered with the host's document. */
  | "membership-answered"
  /** A membership query was refused (no document, the host's callback failed, bad version); says why. */
  | "membership-refused";

/** One thing the transport reports to its host's log. */
export interface TransportLogEvent {
  readonly level: "info" | "warn";
  readonly code: TransportEventCode;
  /** The peer concerned, when known. */
  readonly peer: MemberId | null;
  /** Set on `handshake-rejected` and certificate refusals: the stable reason code. */
  readonly reason?: HandshakeRejectReason;
  readonly message: string;
}

/** Counters of one peer link, since it was added. */
export interface PeerStats {
  /** The outbound connection is up and its handshake accepted. */
  readonly active: boolean;
  /** Messages handed to the connection (not: delivered). */
  readonly sent: number;
  /** Messages received from this peer and passed to `onMessage`. */
  readonly received: number;
  /** Messages `send` refused or later discarded: queue full, too large, peer unreachable too long. */
  readonly dropped: number;
  /** Dials after the first: each follows a failed dial or a lost connection. */
  readonly reconnects: number;
  /** Socket writes; each carries every message that was queued when it began (batching). */
  readonly writes: number;
  readonly queuedMessages: number;
  readonly queuedBytes: number;
}

/** Counters of a whole transport. */
export interface TransportStats {
  readonly peers: ReadonlyMap<MemberId, PeerStats>;
  /** Inbound connections refused at the handshake or TLS level. */
  readonly handshakesRejected: number;
  /** Sends to a member that is not a peer (never added, or removed). */
  readonly droppedUnknownPeer: number;
  /** Membership queries answered with the document. */
  readonly membershipQueriesAnswered: number;
  /**
   * Membership queries refused after they were read. A query from a dialer whose
   * client certificate is not trusted is refused before it is read, and counted
   * in `handshakesRejected`.
   */
  readonly membershipQueriesRefused: number;
}
