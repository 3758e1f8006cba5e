/**
 * PeerTransport: moves opaque byte messages between numbered cluster members over
 * TCP (TLS optional). It knows nothing of Raft; the server encodes Raft messages
 * into bytes elsewhere and hands them to `send`, and gets the peers' bytes back
 * through `onMessage`.
 *
 * Topology: for each ordered pair (a, b) there is one connection, dialed by a,
 * that carries a's messages to b (as etcd's stream). Each member listens once
 * and dials each of its peers (link.ts); the wire format is in wire.ts.
 *
 * Guarantees:
 * - At most once: a message is delivered once or not at all; there are no
 *   acknowledgements and no resends. Raft tolerates loss and retries itself.
 * - Per pair, in order while a connection lasts: messages a sends to b arrive in
 *   the order sent, with no gaps, for as long as one connection lasts.
 * - Loss on reconnect: messages written to a connection that then fails may be
 *   lost; the ones still queued go out on the next connection. A partly sent
 *   large message is sent again whole.
 * - Bounded: each peer's queue is bounded in messages and bytes; when full,
 *   `send` drops and counts (limits.ts). A peer unreachable for longer than
 *   `unreachableHoldMs` loses its queue, and sends to it are dropped at once.
 * - No exceptions into the caller: `send`, membership changes and network
 *   failures never throw. Only a bad configuration (an assertion) or a failed
 *   listen (`start` rejects) surfaces as an error.
 * Not guaranteed: delivery, ordering across pairs or across reconnects, and that
 * a message reported as `sent` arrived.
 *
 * Acceptance: an inbound connection must send a valid handshake for this
 * cluster id, addressed to this member, from a current peer, within
 * `handshakeTimeoutMs`; otherwise it is answered with a reason (logged on both
 * sides) and closed. A newer accepted connection from a peer replaces the older.
 *
 * Membership queries: an inbound connection whose first bytes are a membership
 * query (wire.ts, magic LHPQ) is answered with the host's current `membership`
 * document, or refused with a reason ("membership not available" when there is
 * no `membership` option or it throws), and then closed. It is checked against
 * TLS like any connection (with `clientCertAuth`, an untrusted dialer is refused
 * before the query is read), but it never becomes a peer's inbound connection.
 * `queryMembership` (membership-query.ts) is the dialing side.
 *
 * API (see the JSDoc of each):
 *   new PeerTransport({ selfId, clusterId, listen, peers?, tls?, onMessage, onPeerStatus?, log?, limits?,
 *                       monotonicMs?, random?, membership? })
 *   start(): Promise<PeerAddress>            listen (port 0: any), then dial every peer
 *   address(): PeerAddress                   the bound address
 *   send(to, payload): boolean               queue or drop (false); never throws
 *   flush(): void                            write what is queued now, not after the current run
 *   addPeer(id, address) / removePeer(id) / updatePeers(map)   runtime membership
 *   peers(): ReadonlyMap<MemberId, PeerAddress>                 the current peers, by id
 *   isActive(peer): boolean                  outbound connection up and accepted
 *   stats(): TransportStats                  per peer: sent, received, dropped, reconnects, writes, queue;
 *                                            membership queries answered and refused
 *   close(): Promise<void>                   everything closed; idempotent
 *
 * `onMessage` runs synchronously in the socket's data handler and must not throw:
 * an exception there is a bug in the host and escapes as an uncaught exception.
 * `membership` runs there too; an exception from it is logged and refuses the query,
 * except a failed assertion, which escapes like one from `onMessage`.
 */

import * as net from "node:net";
import * as tls from "node:tls";
import type { MemberId } from "../raft/index.ts";
import { AssertionError, assert } from "../raft/index.ts";
import { checkTransportLimits, DEFAULT_TRANSPORT_LIMITS, type TransportLimits } from "./limits.ts";
import { type LinkContext, PeerLink } from "./link.ts";
import type {
  PeerAddress,
  PeerStats,
  TransportEventCode,
  TransportLogEvent,
  TransportStats,
  TransportTls,
} from "./types.ts";
import {
  CLUSTER_ID_BYTES_MAX,
  concatBytes,
  connectionKind,
  type DecodeResult,
  encodeMembershipAnswer,
  encodeResponse,
  FrameDecoder,
  type HandshakeRejectReason,
  type Hello,
  MEMBERSHIP_BYTES_MAX,
  type MembershipAnswer,
  type ReadResult,
  readHello,
  readQuery,
} from "./wire.ts";

/** How to build a transport. */
export interface PeerTransportOptions {
  /** This member's id: a positive safe integer. */
  readonly selfId: MemberId;
  /** Only members of the same cluster may connect (etcd's cluster id). At most 255 UTF-8 bytes once a string. */
  readonly clusterId: string | number | bigint;
  /** Where to listen for peers; port 0 picks a free port (see `address()`). */
  readonly listen: PeerAddress;
  /** The other members and their listen addresses (never this member). */
  readonly peers?: ReadonlyMap<MemberId, PeerAddress>;
  /** TLS for both directions; plain TCP when absent. */
  readonly tls?: TransportTls;
  /** Every message received, in per-peer order. Must not throw. */
  readonly onMessage: (from: MemberId, payload: Uint8Array) => void;
  /** The outbound connection to `peer` became active or stopped being active. */
  readonly onPeerStatus?: (peer: MemberId, active: boolean) => void;
  /** What happened, for the host's log. Default: warnings to stderr. */
  readonly log?: (event: TransportLogEvent) => void;
  /** Overrides of `DEFAULT_TRANSPORT_LIMITS`. */
  readonly limits?: Partial<TransportLimits>;
  /** Monotonic milliseconds (default `performance.now()`); used for the unreachable hold. */
  readonly monotonicMs?: () => number;
  /** A float in [0, 1) for backoff jitter (default `Math.random`). */
  readonly random?: () => number;
  /**
   * The host's current membership document, opaque here, sent to whoever asks
   * with a membership query (`queryMembership`); at most `MEMBERSHIP_BYTES_MAX`
   * bytes. Called once per query. Absent: queries are refused.
   */
  readonly membership?: () => Uint8Array;
}

/** The reason a query gets when the host has no document to give. */
const MEMBERSHIP_NOT_AVAILABLE = "membership not available";

type State = "new" | "starting" | "running" | "closed";

const nothing = (): void => {};

function defaultLog(event: TransportLogEvent): void {
  if (event.level === "warn") console.warn(`transport: ${event.code}: ${event.message}`);
}

function checkAddress(address: PeerAddress, what: string): void {
  assert(
    Number.isInteger(address.port) && address.port >= 0 && address.port <= 65_535,
    `transport: bad port for ${what}`,
  );
  assert(address.host.length > 0, `transport: empty host for ${what}`);
}

/** The peer transport of one member. See the file header for its guarantees. */
export class PeerTransport {
  private readonly selfId: MemberId;
  private readonly clusterId: string;
  private readonly limits: TransportLimits;
  private readonly onMessage: (from: MemberId, payload: Uint8Array) => void;
  private readonly log: (event: TransportLogEvent) => void;
  private readonly context: LinkContext;
  private readonly links = new Map<MemberId, PeerLink>();
  /** The accepted inbound connection of each peer. */
  private readonly inbound = new Map<MemberId, net.Socket>();
  /** Every socket not yet closed, outbound and inbound, so `close()` can wait for them. */
  private readonly sockets = new Set<net.Socket>();
  private server: net.Server | null = null;
  private bound: PeerAddress | null = null;
  private state: State = "new";
  private closing: Promise<void> | null = null;
  /** The listen in progress or done; `close()` waits for it so no listener outlives it. */
  private listening: Promise<void> | null = null;
  private handshakesRejected = 0;
  private droppedUnknownPeer = 0;
  private membershipQueriesAnswered = 0;
  private membershipQueriesRefused = 0;

  constructor(private readonly options: PeerTransportOptions) {
    assert(Number.isSafeInteger(options.selfId) && options.selfId > 0, "transport: selfId must be positive");
    this.selfId = options.selfId;
    this.clusterId = String(options.clusterId);
    assert(
      new TextEncoder().encode(this.clusterId).length <= CLUSTER_ID_BYTES_MAX,
      "transport: cluster id longer than 255 bytes",
    );
    checkAddress(options.listen, "listen");
    this.limits = { ...DEFAULT_TRANSPORT_LIMITS, ...options.limits };
    checkTransportLimits(this.limits);
    this.onMessage = options.onMessage;
    this.log = options.log ?? defaultLog;
    const onPeerStatus = options.onPeerStatus ?? (() => {});
    this.context = {
      selfId: this.selfId,
      clusterId: this.clusterId,
      limits: this.limits,
      tls: options.tls ?? null,
      monotonicMs: options.monotonicMs ?? (() => performance.now()),
      random: options.random ?? Math.random,
      log: this.log,
      onPeerStatus: (peer, active) => {
        if (this.state !== "closed") onPeerStatus(peer, active);
      },
      track: (socket) => this.track(socket),
    };
    for (const [id, address] of options.peers ?? []) this.addPeer(id, address);
  }

  /** Starts listening, then dials every peer. Resolves with the bound address; rejects if listen fails. */
  async start(): Promise<PeerAddress> {
    assert(this.state === "new", "transport: start() called twice or after close()");
    this.state = "starting";
    const tlsOptions = this.options.tls;
    const server =
      tlsOptions === undefined
        ? net.createServer()
        : tls.createServer({
            cert: tlsOptions.cert,
            key: tlsOptions.key,
            ca: tlsOptions.ca,
            requestCert: tlsOptions.clientCertAuth === true,
            // Checked in accept(), which can then tell the dialer why (Node would just hang up).
            rejectUnauthorized: false,
          });
    this.server = server;
    server.maxConnections = this.limits.inboundConnectionsMax;
    // The raw TCP socket, before any TLS: tracked so close() can end half-done handshakes too.
    server.on("connection", (socket: net.Socket) => this.track(socket));
    if (tlsOptions === undefined) {
      server.on("connection", (socket: net.Socket) => this.accept(socket));
    } else {
      server.on("secureConnection", (socket: tls.TLSSocket) => this.accept(socket));
      server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
        this.handshakesRejected++;
        const remote =
          socket.remoteAddress === undefined ? "a dialer" : `${socket.remoteAddress}:${socket.remotePort}`;
        this.emit("warn", "tls-rejected", null, `TLS handshake from ${remote} failed: ${err.message}`);
      });
    }
    const { host, port } = this.options.listen;
    this.listening = new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    await this.listening;
    server.on("error", (err: Error) => this.emit("warn", "listener-error", null, err.message));
    const address = server.address();
    assert(address !== null && typeof address === "object", "transport: listener has no address");
    this.bound = { host: address.address, port: address.port };
    if (this.state !== "starting") return this.bound; // closed while starting
    this.state = "running";
    this.emit("info", "listening", null, `member ${this.selfId} listening on ${host}:${address.port}`);
    for (const link of this.links.values()) link.start();
    return this.bound;
  }

  /** The address the listener is bound to (after `start`). */
  address(): PeerAddress {
    assert(this.bound !== null, "transport: address() before start()");
    return this.bound;
  }

  /**
   * Queues `payload` for `to`. True if queued; false if dropped (unknown peer,
   * queue full, message too large, peer unreachable too long, or closed). Never
   * throws. The transport keeps a reference to `payload` until it is written.
   */
  send(to: MemberId, payload: Uint8Array): boolean {
    const link = this.state === "closed" ? undefined : this.links.get(to);
    if (link === undefined) {
      this.droppedUnknownPeer++;
      return false;
    }
    return link.send(payload);
  }

  /**
   * Starts writing what every link has queued now instead of at the end of
   * the current synchronous run (the default coalescing): a member that is
   * about to block in an fsync gets its appends onto the wire first.
   */
  flush(): void {
    if (this.state === "closed") return;
    for (const link of this.links.values()) link.flushNow();
  }

  /** Adds a peer, or moves it to a new address. Does nothing after `close()`. */
  addPeer(id: MemberId, address: PeerAddress): void {
    assert(Number.isSafeInteger(id) && id > 0, `transport: bad member id ${id}`);
    assert(id !== this.selfId, "transport: a member is not its own peer");
    checkAddress(address, `member ${id}`);
    if (this.state === "closed") return;
    const existing = this.links.get(id);
    if (existing !== undefined) {
      existing.setAddress(address);
      return;
    }
    const link = new PeerLink(id, address, this.context);
    this.links.set(id, link);
    if (this.state === "running") link.start();
  }

  /** Removes a peer: its queue is discarded, its connections in both directions are closed. */
  removePeer(id: MemberId): void {
    const link = this.links.get(id);
    if (link === undefined) return;
    this.links.delete(id);
    link.close();
    this.inbound.get(id)?.destroy();
    this.inbound.delete(id);
  }

  /** Makes the peer set exactly `peers`: adds, moves and removes as needed. */
  updatePeers(peers: ReadonlyMap<MemberId, PeerAddress>): void {
    for (const id of [...this.links.keys()]) if (!peers.has(id)) this.removePeer(id);
    for (const [id, address] of peers) this.addPeer(id, address);
  }

  /**
   * The current peers, by id, with the address each is dialed at: what the
   * options, `addPeer`, `removePeer` and `updatePeers` made it. A new map each call.
   */
  peers(): ReadonlyMap<MemberId, PeerAddress> {
    const sorted = [...this.links].sort((a, b) => a[0] - b[0]);
    return new Map(sorted.map(([id, link]) => [id, link.dialAddress()]));
  }

  /**
   * Whether the outbound connection to `peer` is up with its handshake accepted:
   * recent evidence that the peer is alive and reachable (false for unknown peers).
   */
  isActive(peer: MemberId): boolean {
    return this.links.get(peer)?.isActive() ?? false;
  }

  /** Counters per peer and for the whole transport. */
  stats(): TransportStats {
    const peers = new Map<MemberId, PeerStats>();
    for (const [id, link] of [...this.links].sort((a, b) => a[0] - b[0])) peers.set(id, link.stats());
    return {
      peers,
      handshakesRejected: this.handshakesRejected,
      droppedUnknownPeer: this.droppedUnknownPeer,
      membershipQueriesAnswered: this.membershipQueriesAnswered,
      membershipQueriesRefused: this.membershipQueriesRefused,
    };
  }

  /**
   * Stops everything: no more dials, queued messages discarded, every socket
   * destroyed, the listener closed. Resolves when all of them are closed.
   * Idempotent.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.state = "closed";
    for (const link of this.links.values()) link.close();
    const closed = [...this.sockets].map(
      (socket) => new Promise<void>((resolve) => socket.once("close", resolve)),
    );
    for (const socket of this.sockets) socket.destroy();
    const listening = this.listening;
    this.closing = (async () => {
      // A listen failure is start()'s to report; here it only means there is nothing to close.
      if (listening !== null) await listening.then(nothing, nothing);
      const server = this.server;
      if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all(closed);
    })();
    return this.closing;
  }

  private emit(
    level: "info" | "warn",
    code: TransportEventCode,
    peer: MemberId | null,
    message: string,
    reason?: HandshakeRejectReason,
  ): void {
    this.log(reason === undefined ? { level, code, peer, message } : { level, code, peer, reason, message });
  }

  private track(socket: net.Socket): void {
    if (this.sockets.has(socket)) return;
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
  }

  /** Runs one inbound connection: handshake, then frames to `onMessage`; or a membership query. */
  private accept(socket: net.Socket): void {
    if (this.state !== "running") {
      socket.destroy();
      return;
    }
    this.track(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.limits.keepAliveMs);
    socket.setTimeout(this.limits.handshakeTimeoutMs);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    let received: Uint8Array = new Uint8Array(0);
    let from: MemberId | null = null;
    let decoder: FrameDecoder | null = null;
    let refused = false;
    /** A membership query was answered (or refused): nothing more is read. */
    let answered = false;

    socket.on("timeout", () => {
      if (refused || answered) {
        socket.destroy(); // refused or answered, and the dialer did not hang up
      } else {
        refused = true;
        const detail = `no handshake within ${this.limits.handshakeTimeoutMs} ms`;
        this.refuse(socket, { code: "handshake-rejected", peer: null, remote, reason: "timeout", detail });
      }
    });
    socket.on("error", () => {
      // 'close' follows. The dialing side logs why its connection ended; the acceptor just forgets it.
    });
    socket.on("close", () => {
      if (from !== null && this.inbound.get(from) === socket) this.inbound.delete(from);
    });
    if (this.options.tls?.clientCertAuth === true && !(socket as tls.TLSSocket).authorized) {
      refused = true;
      const why = String((socket as tls.TLSSocket).authorizationError ?? "no certificate");
      const detail = `client certificate not accepted (${why})`;
      this.refuse(socket, {
        code: "tls-rejected",
        peer: null,
        remote,
        reason: "untrusted-certificate",
        detail,
      });
      return;
    }
    socket.on("data", (data: Buffer) => {
      if (refused || answered) return;
      if (decoder !== null && from !== null) {
        this.deliver(from, socket, decoder.push(data));
        return;
      }
      received = concatBytes(received, data);
      if (connectionKind(received) === "query") {
        const query = readQuery(received);
        if (query.kind === "incomplete") return;
        answered = true;
        this.answerQuery(socket, remote, query);
        return;
      }
      const r = readHello(received);
      if (r.kind === "incomplete") return;
      const refusal = r.kind === "error" ? r : this.admit(r.value);
      if (refusal !== null) {
        refused = true;
        const peer = r.kind === "ok" ? r.value.from : null;
        this.refuse(socket, { code: "handshake-rejected", peer, remote, ...refusal });
        return;
      }
      assert(r.kind === "ok", "transport: handshake neither refused nor read");
      const peer = r.value.from;
      from = peer;
      socket.setTimeout(0);
      socket.write(encodeResponse({ status: "accepted" }));
      const previous = this.inbound.get(peer);
      this.inbound.set(peer, socket);
      if (previous !== undefined) {
        this.emit("info", "inbound-replaced", peer, `member ${peer} reconnected from ${remote}`);
        previous.destroy();
      } else {
        this.emit("info", "inbound-accepted", peer, `accepted member ${peer} from ${remote}`);
      }
      decoder = new FrameDecoder(this.limits.messageBytesMax);
      if (r.rest.length > 0) this.deliver(peer, socket, decoder.push(r.rest));
    });
  }

  /**
   * Refuses an inbound connection: logs why, tells the dialer why (unless it does
   * not speak the protocol or said nothing), then closes.
   */
  private refuse(
    socket: net.Socket,
    why: {
      code: TransportEventCode;
      peer: MemberId | null;
      remote: string;
      reason: HandshakeRejectReason;
      detail: string;
    },
  ): void {
    this.handshakesRejected++;
    const message = `refused connection from ${why.remote}: ${why.reason}: ${why.detail}`;
    this.emit("warn", why.code, why.peer, message, why.reason);
    if (why.reason === "bad-magic" || why.reason === "timeout") {
      socket.destroy();
      return;
    }
    socket.end(encodeResponse({ status: "rejected", reason: `${why.reason}: ${why.detail}` }));
    // Keep reading (and discarding) so the dialer's close is seen and the socket goes away.
    socket.resume();
  }

  /**
   * Answers a membership query (or refuses it, saying why), then closes. The
   * handshake timeout still runs: it ends a dialer that does not read the answer
   * and hang up.
   */
  private answerQuery(
    socket: net.Socket,
    remote: string,
    query: Exclude<ReadResult<number>, { kind: "incomplete" }>,
  ): void {
    let answer: MembershipAnswer;
    /** What the log says; it may tell more than the dialer is told. */
    let detail: string;
    if (query.kind === "error") {
      detail = `${query.reason}: ${query.detail}`;
      answer = { status: "refused", reason: detail };
    } else {
      ({ answer, detail } = this.membershipAnswer());
    }
    if (answer.status === "ok") {
      this.membershipQueriesAnswered++;
      const message = `answered a membership query from ${remote} (${answer.membership.length} bytes)`;
      this.emit("info", "membership-answered", null, message);
    } else {
      this.membershipQueriesRefused++;
      const message = `refused a membership query from ${remote}: ${detail}`;
      this.emit(
        "warn",
        "membership-refused",
        null,
        message,
        query.kind === "error" ? query.reason : undefined,
      );
    }
    socket.end(encodeMembershipAnswer(answer));
    // Keep reading (and discarding) so the dialer's close is seen and the socket goes away.
    socket.resume();
  }

  /** The host's document, or a refusal; `detail` is for the log. */
  private membershipAnswer(): { answer: MembershipAnswer; detail: string } {
    const membership = this.options.membership;
    const unavailable: MembershipAnswer = { status: "refused", reason: MEMBERSHIP_NOT_AVAILABLE };
    if (membership === undefined) {
      return { answer: unavailable, detail: `${MEMBERSHIP_NOT_AVAILABLE} (no membership option)` };
    }
    let document: Uint8Array;
    try {
      document = membership();
    } catch (err) {
      // A failed assertion is a bug and stops the member (CONVENTIONS 6), as one in `onMessage` does.
      if (err instanceof AssertionError) throw err;
      // Any other failure of the host's: logged here, and the dialer is refused (it may ask another member).
      const why = err instanceof Error ? err.message : String(err);
      return {
        answer: unavailable,
        detail: `${MEMBERSHIP_NOT_AVAILABLE} (the membership callback threw: ${why})`,
      };
    }
    if (document.length > MEMBERSHIP_BYTES_MAX) {
      const reason = `${MEMBERSHIP_NOT_AVAILABLE}: the document is ${document.length} bytes, above ${MEMBERSHIP_BYTES_MAX}`;
      return { answer: { status: "refused", reason }, detail: reason };
    }
    return { answer: { status: "ok", membership: document }, detail: "" };
  }

  /** Whether this member takes a connection that said `hello`; null if it does. */
  private admit(hello: Hello): { reason: HandshakeRejectReason; detail: string } | null {
    if (hello.clusterId !== this.clusterId) {
      const detail = `cluster id "${hello.clusterId}" does not match this member's "${this.clusterId}"`;
      return { reason: "cluster-mismatch", detail };
    }
    if (hello.to !== this.selfId) {
      return { reason: "wrong-member", detail: `this is member ${this.selfId}, not member ${hello.to}` };
    }
    if (!this.links.has(hello.from)) {
      return {
        reason: "unknown-member",
        detail: `member ${hello.from} is not a peer of member ${this.selfId}`,
      };
    }
    return null;
  }

  /** Hands decoded messages to the host while the connection is still the peer's current one. */
  private deliver(from: MemberId, socket: net.Socket, result: DecodeResult): void {
    for (const message of result.messages) {
      const link = this.links.get(from);
      if (link === undefined || this.inbound.get(from) !== socket) return;
      link.noteReceived();
      this.onMessage(from, message);
    }
    if (result.error !== null) {
      this.emit("warn", "protocol-error", from, `member ${from}: ${result.error}; connection closed`);
      socket.destroy();
    }
  }
}
