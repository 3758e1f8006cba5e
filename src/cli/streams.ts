/**
 * The streaming calls the client commands need and the SDK does not offer
 * (its `call()` is unary): etcd's Lease.LeaseKeepAlive (one renewal of an
 * etcd lease) and v3election's Election.Observe, on grpc-js directly with the
 * same protos, endpoints, TLS and auth token as the SDK client. When the SDK
 * grows `keepAliveOnce` and `observe`, this file goes away.
 *
 * Contract:
 * - Every call goes to one endpoint at a time; a retryable failure (the SDK's
 *   `isRetryable`: unavailable, no leader, ...) moves to the next endpoint
 *   after a backoff (50 ms doubling to 1 s). Errors come back as the SDK's
 *   typed errors (`toClientError`).
 * - `keepAliveOnce` is bounded by its `timeoutMs`; `observe` runs until its
 *   signal aborts (then resolves), a non-retryable error, or `timeoutMs` of
 *   failing to reconnect (a reconnect prints the current leader again).
 */

import {
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ClientDuplexStream,
  type ClientReadableStream,
  credentials,
  Metadata,
} from "@grpc/grpc-js";
import type { WireMessage } from "../api/index.ts";
import { serviceCtor } from "../client/client.ts";
import { isRetryable, toClientError, UnavailableError } from "../client/errors.ts";
import type { RenewAnswer } from "../client/lease-keeper.ts";
import type { Settings } from "./connection.ts";

type W = WireMessage;
type BidiMethod = (md: Metadata, opts: CallOptions) => ClientDuplexStream<W, W>;
type ServerStreamMethod = (req: W, md: Metadata, opts: CallOptions) => ClientReadableStream<W>;

const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 1_000;

/** Streams on the endpoints of `settings`; `token` answers the auth token (undefined: none). */
export class Streams {
  private readonly endpoints: readonly string[];
  private readonly creds: ChannelCredentials;
  private readonly clients = new Map<string, Client>();
  private current = 0;

  constructor(
    private readonly settings: Settings,
    private readonly token: () => Promise<string | undefined>,
  ) {
    this.endpoints = settings.endpoints.map((e) => e.replace(/^https?:\/\//, "").replace(/\/+$/, ""));
    const tls = settings.connect.tls;
    this.creds =
      tls === undefined
        ? credentials.createInsecure()
        : credentials.createSsl(
            tls.ca === undefined ? null : Buffer.from(tls.ca),
            tls.key === undefined ? null : Buffer.from(tls.key),
            tls.cert === undefined ? null : Buffer.from(tls.cert),
          );
  }

  /** One etcd keepalive of lease `id`: "renewed" with its TTL, or "gone" (etcd answers TTL 0 for a lease it does not have). */
  async keepAliveOnce(
    id: bigint,
    control: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<RenewAnswer> {
    const deadline = Date.now() + (control.timeoutMs ?? this.settings.timeoutMs);
    for (let backoff = BACKOFF_FIRST_MS; ; backoff = Math.min(backoff * 2, BACKOFF_MAX_MS)) {
      try {
        const ttl = await this.keepAliveAt(this.endpoint(), id, deadline, control.signal);
        return ttl > 0 ? { kind: "renewed", ttlSeconds: ttl } : { kind: "gone" };
      } catch (e) {
        await this.afterFailure(e, control.signal, deadline - Date.now(), backoff);
      }
    }
  }

  /** Follows the leader of election `name` until `signal` aborts (Observe), calling `onLeader` for each answer. */
  async observe(name: Buffer, onLeader: (r: W) => void, signal: AbortSignal): Promise<void> {
    await this.follow(signal, (endpoint, onProgress) =>
      this.observeAt(
        endpoint,
        name,
        (r) => {
          onProgress();
          onLeader(r);
        },
        signal,
      ),
    );
  }

  /** Closes the channels. */
  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  // ------------------------------------------------------------ one stream

  private async keepAliveAt(
    endpoint: string,
    id: bigint,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<number> {
    const md = await this.metadata();
    const method = this.method<BidiMethod>(endpoint, "etcdserverpb.Lease", "LeaseKeepAlive");
    return new Promise((resolve, reject) => {
      const call = method.call.call(method.client, md, { deadline });
      let done = false;
      const settle = (fn: () => void) => {
        if (done) return;
        done = true;
        signal?.removeEventListener("abort", onAbort);
        fn();
        call.cancel();
      };
      const onAbort = () => settle(() => reject(signal!.reason));
      signal?.addEventListener("abort", onAbort, { once: true });
      call.on("data", (r: W) => settle(() => resolve(Number(r.TTL))));
      call.on("error", (e) => settle(() => reject(e)));
      call.on("end", () =>
        settle(() => reject(new UnavailableError("leasehold: the keepalive stream ended"))),
      );
      call.write({ ID: id.toString() });
    });
  }

  private async observeAt(
    endpoint: string,
    name: Buffer,
    onLeader: (r: W) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const md = await this.metadata();
    const method = this.method<ServerStreamMethod>(endpoint, "v3electionpb.Election", "Observe");
    const call = method.call.call(method.client, { name }, md, {});
    await this.untilEnd(call, signal, (r) => onLeader(r));
  }

  /**
   * Resolves when `signal` aborts (the call is cancelled), rejects when the
   * stream fails or ends; `onData` may fail it.
   */
  private untilEnd(
    call: ClientReadableStream<W> | ClientDuplexStream<W, W>,
    signal: AbortSignal,
    onData: (r: W, fail: (e: Error) => void) => void,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        signal.removeEventListener("abort", onAbort);
        fn();
        call.cancel();
      };
      const onAbort = () => finish(resolve);
      if (signal.aborted) return finish(resolve);
      signal.addEventListener("abort", onAbort, { once: true });
      call.on("data", (r: W) => {
        if (!done) onData(r, (e) => finish(() => reject(e)));
      });
      call.on("error", (e) => finish(() => reject(e)));
      call.on("end", () => finish(() => reject(new UnavailableError("leasehold: the stream ended"))));
    });
  }

  // ------------------------------------------------------------ plumbing

  /**
   * Runs `once` on one endpoint after another until `signal` aborts; gives
   * up after a non-retryable error or `timeoutMs` without progress.
   */
  private async follow(
    signal: AbortSignal,
    once: (endpoint: string, onProgress: () => void) => Promise<void>,
  ): Promise<void> {
    let failingSince: number | undefined;
    let backoff = BACKOFF_FIRST_MS;
    const onProgress = () => {
      failingSince = undefined;
      backoff = BACKOFF_FIRST_MS;
    };
    while (!signal.aborted) {
      try {
        await once(this.endpoint(), onProgress);
        return;
      } catch (e) {
        failingSince ??= Date.now();
        await this.afterFailure(e, signal, failingSince + this.settings.timeoutMs - Date.now(), backoff);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /** Throws `e` (typed) unless another try may succeed within `leftMs`; else moves on and pauses. */
  private async afterFailure(
    e: unknown,
    signal: AbortSignal | undefined,
    leftMs: number,
    backoffMs: number,
  ): Promise<void> {
    const err = toClientError(e);
    if (signal?.aborted === true || !isRetryable(err) || leftMs <= 0) throw err;
    this.current++;
    await new Promise((resolve) => setTimeout(resolve, Math.min(backoffMs, leftMs)));
  }

  private endpoint(): string {
    return this.endpoints[this.current % this.endpoints.length]!;
  }

  private async metadata(): Promise<Metadata> {
    const md = new Metadata();
    const token = await this.token();
    if (token !== undefined) md.set("token", token);
    return md;
  }

  private method<F>(endpoint: string, service: string, method: string): { client: Client; call: F } {
    const k = `${endpoint} ${service}`;
    let client = this.clients.get(k);
    if (client === undefined) {
      const Ctor = serviceCtor(service);
      client = new Ctor(endpoint, this.creds);
      this.clients.set(k, client);
    }
    return { client, call: (client as unknown as Record<string, F>)[method]! };
  }
}
