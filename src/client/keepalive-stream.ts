/**
 * One KeepAlive stream (leasehold.v1 Leases.KeepAlive) per client, shared by
 * all its leases: each renewal is a message on it, matched to its answer by a
 * sequence number, instead of a unary call per lease per TTL/3.
 *
 * Contract:
 * - `renew(leaseId, holder, signal)` resolves with the TTL (seconds) the
 *   lease now runs, or rejects with the typed error Renew would have failed
 *   with (the server answers refusals in the message: errors.ts maps them
 *   like a call's status), or with `signal`'s reason when it aborts first.
 * - The stream is opened on the first renewal, on the endpoint `open` picks,
 *   and again after it broke. It breaks (every renewal on it rejects with
 *   UnavailableError, and `onBroken` is told, so the client moves to another
 *   member) when the server ends it or fails it, when an answer is retryable
 *   (no leader, leader changed: this member cannot renew now), and when a
 *   renewal times out (`signal` aborted with a DeadlineExceededError, the
 *   keeper's attempt bound) without the stream having answered anything
 *   since it was sent: a member that answers nothing is as good as gone, and
 *   its stream would keep every lease waiting behind it. A renewal abandoned
 *   for another reason (its lease released or closed) breaks nothing. A
 *   refused auth token breaks the stream without failing over (the client
 *   authenticates again; the next renewal opens a new stream).
 * - `close()` cancels the stream and rejects what is in flight.
 */

import { Metadata, type ServiceError } from "@grpc/grpc-js";
import type { WireMessage } from "../api/index.ts";
import { ERROR_KIND_TRAILER } from "../api/leasehold-errors.ts";
import {
  CancelledError,
  DeadlineExceededError,
  isRetryable,
  isTokenRefused,
  toClientError,
  UnavailableError,
} from "./errors.ts";

type W = WireMessage;

/** The grpc-js duplex call of Leases.KeepAlive, as far as it is used here. */
export interface KeepAliveCall extends NodeJS.EventEmitter {
  write(message: W): boolean;
  cancel(): void;
}

/** One renewal in flight. */
interface Pending {
  readonly resolve: (ttlSeconds: number) => void;
  readonly reject: (err: unknown) => void;
  /** The stream's answer count when this was sent (see the header: a silent stream breaks). */
  readonly answersAtSend: number;
  readonly stream: OpenStream;
}

interface OpenStream {
  readonly call: KeepAliveCall;
  readonly endpoint: string;
  answers: number;
  broken: boolean;
}

export class KeepAliveChannel {
  private stream: OpenStream | undefined;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  constructor(
    /** Opens a Leases.KeepAlive call; answers it and the endpoint it went to. */
    private readonly open: () => { call: KeepAliveCall; endpoint: string },
    /** The stream to `endpoint` broke (the client may move to another member). */
    private readonly onBroken: (endpoint: string) => void,
  ) {}

  /** Renews `leaseId` for `holder` (see the header). */
  renew(leaseId: bigint, holder: string, signal: AbortSignal): Promise<number> {
    if (this.closed) return Promise.reject(new CancelledError("the client is closed"));
    if (signal.aborted) return Promise.reject(signal.reason);
    const stream = this.stream ?? this.openStream();
    const seq = ++this.seq;
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => {
        const p = this.pending.get(seq);
        if (p === undefined) return;
        this.pending.delete(seq);
        p.reject(signal.reason);
        // Timed out on a stream silent since: as good as gone. (Abandoned because the lease ended: nothing wrong.)
        if (
          signal.reason instanceof DeadlineExceededError &&
          p.stream === this.stream &&
          p.stream.answers === p.answersAtSend
        )
          this.breakStream(
            p.stream,
            new UnavailableError("leasehold: the keepalive stream answered nothing"),
          );
      };
      signal.addEventListener("abort", onAbort, { once: true });
      const done = () => signal.removeEventListener("abort", onAbort);
      this.pending.set(seq, {
        resolve: (ttl) => {
          done();
          resolve(ttl);
        },
        reject: (err) => {
          done();
          reject(err);
        },
        answersAtSend: stream.answers,
        stream,
      });
      stream.call.write({ lease_id: leaseId.toString(), holder, seq: String(seq) });
    });
  }

  /** Cancels the stream; renewals in flight reject with CancelledError. */
  close(): void {
    this.closed = true;
    if (this.stream !== undefined) this.breakStream(this.stream, new CancelledError("the client is closed"));
  }

  private openStream(): OpenStream {
    const { call, endpoint } = this.open();
    const stream: OpenStream = { call, endpoint, answers: 0, broken: false };
    this.stream = stream;
    call.on("data", (m: W) => this.answered(stream, m));
    call.on("error", (e: unknown) => this.breakStream(stream, toClientError(e)));
    call.on("end", () =>
      this.breakStream(stream, new UnavailableError("leasehold: the server ended the keepalive stream")),
    );
    return stream;
  }

  private answered(stream: OpenStream, m: W): void {
    stream.answers++;
    const seq = Number(m.seq);
    const p = this.pending.get(seq);
    if (p === undefined) return; // abandoned
    this.pending.delete(seq);
    const code = Number(m.error_code ?? 0);
    if (code === 0) {
      p.resolve(Number(m.ttl));
      return;
    }
    const err = toClientError(refusal(code, String(m.error_kind ?? ""), String(m.error_message ?? "")));
    p.reject(err);
    // This member cannot renew now (another may: fail over), or does not know the stream's token (the client
    // gets a new one: a new stream, same member).
    if (isRetryable(err)) this.breakStream(stream, new UnavailableError(`leasehold: ${err.message}`));
    else if (isTokenRefused(err))
      this.breakStream(stream, new UnavailableError(`leasehold: ${err.message}`), { failover: false });
  }

  /** Ends `stream` (if still the current one): its renewals reject with `err`, onBroken is told. */
  private breakStream(stream: OpenStream, err: Error, how: { failover: boolean } = { failover: true }): void {
    if (stream.broken) return;
    stream.broken = true;
    if (this.stream === stream) this.stream = undefined;
    for (const [seq, p] of this.pending) {
      if (p.stream !== stream) continue;
      this.pending.delete(seq);
      p.reject(err);
    }
    stream.call.removeAllListeners("data");
    stream.call.removeAllListeners("end");
    stream.call.on("error", () => {});
    stream.call.cancel();
    if (!this.closed && how.failover) this.onBroken(stream.endpoint);
  }
}

/** What the stream answered for a refused renewal, as the ServiceError Renew would have ended with. */
function refusal(code: number, kind: string, message: string): ServiceError {
  const metadata = new Metadata();
  if (kind !== "") metadata.set(ERROR_KIND_TRAILER, kind);
  return Object.assign(new Error(`${code} ${message}`), { code, details: message, metadata });
}
