/**
 * The peer transport's public surface: `PeerTransport` moves opaque byte
 * messages between numbered cluster members over TCP or TLS, with handshakes,
 * chunked frames, batching, bounded queues and reconnects with backoff, and
 * answers membership queries; `queryMembership` asks one. The guarantees are in
 * peer-transport.ts and membership-query.ts, the wire format in wire.ts.
 */

export type { BackoffBounds } from "./backoff.ts";
export { nextBackoffMs } from "./backoff.ts";
export type { TransportLimits } from "./limits.ts";
export { checkTransportLimits, DEFAULT_TRANSPORT_LIMITS } from "./limits.ts";
export type { MembershipQueryErrorCode, MembershipQueryOptions } from "./membership-query.ts";
export { MembershipQueryError, queryMembership } from "./membership-query.ts";
export type { PeerTransportOptions } from "./peer-transport.ts";
export { PeerTransport } from "./peer-transport.ts";
export type {
  PeerAddress,
  PeerStats,
  TransportEventCode,
  TransportLogEvent,
  TransportStats,
  TransportTls,
} from "./types.ts";
export type { HandshakeRejectReason } from "./wire.ts";
export { FRAME_PAYLOAD_BYTES_MAX, MEMBERSHIP_BYTES_MAX, WIRE_VERSION } from "./wire.ts";
