/**
 * The dialing side of a membership query (wire.ts, magic LHPQ). A member that
 * joins an existing cluster (etcd's `--initial-cluster-state existing`) knows
 * only the peer addresses of the members; as etcd's GET /members on the peer
 * listener, it asks one of them for the current membership document (which
 * carries its own member id, the cluster id and everyone's peer URLs) before it
 * takes part. The acceptor's side is in peer-transport.ts.
 *
 * Contract: one connection, one query, one answer, no retries (the caller asks
 * another member, or again). `timeoutMs` bounds the whole exchange: connect,
 * TLS, answer. The promise settles once, after the socket has closed, so no
 * socket or timer outlives it: with the document, or with a
 * `MembershipQueryError` whose `code` is stable and whose message says where and
 * what went wrong.
 */

import * as net from "node:net";
import * as tls from "node:tls";
import { assert } from "../raft/index.ts";
import type { PeerAddress, TransportTls } from "./types.ts";
import { encodeQuery, MembershipAnswerDecoder } from "./wire.ts";

/** How to ask. */
export interface MembershipQueryOptions {
  /** TLS as the transport dials with it (same certificate, key and trusted CA); plain TCP when absent. */
  readonly tls?: Pick<TransportTls, "cert" | "key" | "ca">;
  /** The longest the whole query may take, connect included: a positive integer. */
  readonly timeoutMs: number;
}

/** Stable codes of why a membership query failed. */
export type MembershipQueryErrorCode =
  /** No connection: refused, unreachable, or the TLS handshake failed. */
  | "membership-query.connect-failed"
  /** No whole answer within `timeoutMs`. */
  | "membership-query.timeout"
  /** The peer answered with a refusal; its reason is in the message. */
  | "membership-query.refused"
  /** The peer's bytes are not a membership answer this member can read. */
  | "membership-query.protocol-error"
  /** The connection ended or failed before a whole answer arrived. */
  | "membership-query.connection-closed";

/** Why `queryMembership` failed: an operating error at the edge (CONVENTIONS 7). */
export class MembershipQueryError extends Error {
  override readonly name = "MembershipQueryError";

  constructor(
    readonly code: MembershipQueryErrorCode,
    message: string,
  ) {
    super(message);
  }
}

type Outcome = { readonly membership: Uint8Array } | { readonly error: MembershipQueryError };

/**
 * Asks the member listening at `address` for its current membership document.
 * Resolves with the document (opaque here, at most `MEMBERSHIP_BYTES_MAX`
 * bytes); rejects with a `MembershipQueryError`: connection refused, timeout,
 * refused by the peer (with its reason), connection closed, or protocol error.
 * A bad `address` (port 0 included) or `timeoutMs` is a bug: an assertion, thrown at once.
 */
export function queryMembership(address: PeerAddress, options: MembershipQueryOptions): Promise<Uint8Array> {
  const { host, port } = address;
  const { timeoutMs } = options;
  assert(host.length > 0 && Number.isInteger(port) && port > 0 && port <= 65_535, "query: bad address");
  assert(Number.isSafeInteger(timeoutMs) && timeoutMs > 0, "query: timeoutMs must be a positive integer");
  const where = `membership query to ${host}:${port} failed`;
  const tlsOptions = options.tls;

  return new Promise<Uint8Array>((resolve, reject) => {
    const socket =
      tlsOptions === undefined
        ? net.connect({ host, port })
        : tls.connect({ host, port, cert: tlsOptions.cert, key: tlsOptions.key, ca: tlsOptions.ca });
    socket.setNoDelay(true);
    const decoder = new MembershipAnswerDecoder();
    /** The connection is up (TLS included) and the query was sent. */
    let connected = false;
    let outcome: Outcome | null = null;

    /** Decides the outcome (the first decision wins) and closes; the promise settles on 'close'. */
    const settle = (decided: Outcome): void => {
      if (outcome !== null) return;
      outcome = decided;
      clearTimeout(timer);
      socket.destroy();
    };
    const fail = (code: MembershipQueryErrorCode, text: string): void =>
      settle({ error: new MembershipQueryError(code, `${where}: ${text}`) });

    const timer = setTimeout(() => {
      const waiting = connected ? "the answer" : "a connection";
      fail("membership-query.timeout", `timed out after ${timeoutMs} ms waiting for ${waiting}`);
    }, timeoutMs);

    socket.once(tlsOptions === undefined ? "connect" : "secureConnect", () => {
      connected = true;
      socket.write(encodeQuery());
    });
    socket.on("data", (data: Buffer) => {
      if (outcome !== null) return;
      const r = decoder.push(data);
      if (r.kind === "incomplete") return;
      if (r.kind === "error") {
        fail("membership-query.protocol-error", `protocol error: ${r.reason}: ${r.detail}`);
      } else if (r.rest.length > 0) {
        fail("membership-query.protocol-error", "protocol error: the peer sent bytes after its answer");
      } else if (r.value.status === "refused") {
        fail("membership-query.refused", `refused by the peer: ${r.value.reason}`);
      } else {
        settle({ membership: r.value.membership });
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (connected) {
        fail("membership-query.connection-closed", `connection failed before the answer: ${err.message}`);
      } else if (err.code === "ECONNREFUSED") {
        fail("membership-query.connect-failed", `connection refused (${err.message})`);
      } else if (err.syscall === undefined && tlsOptions !== undefined) {
        fail("membership-query.connect-failed", `TLS handshake failed: ${err.message}`);
      } else {
        fail("membership-query.connect-failed", `could not connect: ${err.message}`);
      }
    });
    socket.on("close", () => {
      fail("membership-query.connection-closed", "the peer closed the connection before a whole answer");
      assert(outcome !== null, "query: closed without an outcome");
      if ("membership" in outcome) resolve(outcome.membership);
      else reject(outcome.error);
    });
  });
}
