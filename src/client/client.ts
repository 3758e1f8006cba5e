/**
 * The TypeScript SDK: `connect({ endpoints })` gives a `LeaseholdClient` that
 * speaks leasehold.v1 (and the etcd API for plain keys) to a cluster; `open()`
 * (src/embedded/) gives the same interface for an in-process member.
 *
 * Contract:
 * - Endpoints: "host:port" or "http(s)://host:port". Calls go to one endpoint
 *   at a time. Before the first call, and again (in the background) after a
 *   failover, the client asks every endpoint who leads (Maintenance.Status;
 *   the newest term decides) and points its calls at the leader, saving the
 *   follower's forwarding hop; any member would serve. On a retryable failure
 *   (errors.ts isRetryable: unavailable, no leader, leader changed, timeouts)
 *   the client moves to the next endpoint and retries with capped exponential
 *   backoff until the call's deadline (`timeoutMs`, default 5 s) or its
 *   `signal` aborts; a read the deadline stops fails with the last failure it
 *   retried (the refused handshake, the missing leader), not a bare
 *   DeadlineExceeded; a write so stopped fails with DeadlineExceeded naming
 *   that failure (its last attempt may have been applied). TLS is on when `tls` is given or an endpoint says
 *   https://.
 * - Mutations (acquire, release, fencedPut, counters) carry an idempotency key:
 *   this client's id and a sequence number per mutation, in the
 *   `leasehold-client-id` / `leasehold-seq` metadata (src/api/leases.ts). A
 *   retry reuses the number, so a request the server applied but whose answer
 *   was lost is not applied twice (the state machine's sessions).
 * - Leases: `acquire()` answers a `Lease` that keeps itself alive (renewed at
 *   TTL/3, lease-keeper.ts; all of a client's leases on its one
 *   Leases.KeepAlive stream, keepalive-stream.ts) and follows the Chubby
 *   client states valid → jeopardy → valid | expired; `lease.signal` aborts
 *   when the lease may be lost; `await using` releases it.
 * - Streams (watch, the KeepAlive stream) move to the next member when theirs
 *   breaks; a watch resumes from the revision after the last it yielded.
 * - Errors are typed (errors.ts): one class per kind.
 */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import {
  type CallOptions,
  type ChannelCredentials,
  type Client,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadEtcdApi, type WireMessage } from "../api/index.ts";
import { SESSION_CLIENT_ID_HEADER, SESSION_SEQ_HEADER } from "../api/leasehold-common.ts";
import {
  CancelledError,
  DeadlineExceededError,
  isRetryable,
  isTokenRefused,
  type LeaseholdClientError,
  toClientError,
  UnavailableError,
} from "./errors.ts";
import { type KeepAliveCall, KeepAliveChannel } from "./keepalive-stream.ts";
import { type KeeperClock, LeaseKeeper, systemClock } from "./lease-keeper.ts";

type W = WireMessage;

/** How to reach a cluster. */
export interface ConnectOptions {
  /** "host:port" or "http(s)://host:port", one per member (any subset works). */
  readonly endpoints: readonly string[];
  /**
   * TLS: the CA that signed the members' certificates (default: the system's
   * roots), and a client certificate if they ask for one. On when given, or
   * when an endpoint says https://.
   */
  readonly tls?: {
    readonly ca?: Buffer | string;
    readonly cert?: Buffer | string;
    readonly key?: Buffer | string;
  };
  /** etcd auth: the user to authenticate as. */
  readonly auth?: { readonly user: string; readonly password: string };
  /** The bound on every call, retries included (default 5,000 ms). */
  readonly timeoutMs?: number;
  /** Who this client is when a call names no holder (default: host name and process id). */
  readonly holder?: string;
  /** Monotonic time and timers for lease keeping (tests inject a fake one). */
  readonly clock?: KeeperClock;
  /** The bound on clock drift the lease states assume (ARCHITECTURE rule 5; default 0.01). */
  readonly rho?: number;
}

/** Options every call takes. */
export interface CallControl {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/** One holding (or waiting claim) of a resource, as the server reports it. */
export interface Holding {
  readonly resource: string;
  readonly holder: string;
  readonly leaseId: bigint;
  readonly fencingToken: number;
  readonly ttlSeconds: number;
  /** As the leader saw it when answering; -1 unknown. */
  readonly remainingMs: number;
}

export interface AcquireOptions extends CallControl {
  /** Seconds the lease runs without a renewal. */
  readonly ttl: number;
  readonly holder?: string;
  /** Queue (FIFO) until it holds instead of failing with ResourceHeldError. */
  readonly wait?: boolean;
  /**
   * Chubby's lock-delay: should this holding end by expiry (this client crashed
   * or was cut off), nobody may hold the resource for this many seconds after.
   */
  readonly lockDelaySeconds?: number;
}

/** A replicated counter (leasehold.v1 Counters); values are int64 as bigint. */
export interface Counter {
  /** Adds `delta` (negative subtracts); the new value. CounterOverflowError past int64. */
  add(delta: bigint | number, control?: CallControl): Promise<bigint>;
  /** The value (0 for a counter never written); linearizable. */
  get(control?: CallControl): Promise<bigint>;
  /** Sets `value` if the counter is `expected`; the value after, either way. */
  compareAndSet(
    expected: bigint | number,
    value: bigint | number,
    control?: CallControl,
  ): Promise<{ succeeded: boolean; value: bigint }>;
}

/** One event of `events()`: what happened to a holding, at which revision. */
export interface LeaseEvent {
  readonly type: "grant" | "queue" | "renew" | "release" | "expire" | "revoke" | "releaseRequested";
  /** The claim it is about (remainingMs: -1). */
  readonly holding: Holding;
  readonly revision: number;
  /** releaseRequested: who asks, why, and the seconds given. */
  readonly request?: {
    readonly requester: string;
    readonly reason: string;
    readonly deadlineSeconds: number;
  };
}

/** An election on a leasehold.v1 resource (`client.election(name)`). */
export interface Election {
  /** Waits until `proposal` leads; the Lease is its term of office (fencing token, signal, release). */
  campaign(proposal: string, options: Omit<AcquireOptions, "holder" | "wait">): Promise<Lease>;
  /** The leader now, if any (linearizable). */
  leader(control?: CallControl): Promise<Holding | undefined>;
  /** Each new leader from now on (from `ready` on), until `signal` aborts. */
  observe(control?: { readonly signal?: AbortSignal }): Subscription<Holding>;
}

/** What one endpoint says of itself (etcd Maintenance.Status), or why it did not answer. */
export interface EndpointStatus {
  readonly endpoint: string;
  /** Absent when the endpoint did not answer (see `error`). */
  readonly memberId?: bigint;
  /** The leader it knows (0n: none). */
  readonly leader?: bigint;
  readonly raftTerm?: number;
  readonly raftIndex?: number;
  readonly revision?: number;
  /** What the member itself reports wrong (an alarm such as NOSPACE, a corrupt data file). */
  readonly errors?: readonly string[];
  /** Why the endpoint did not answer. */
  readonly error?: string;
}

/** A stream of changes that opened at once: `ready` resolves with the revision it starts after once the server confirmed it. */
export type Subscription<T> = AsyncGenerator<T> & { readonly ready: Promise<number> };

/** One change seen by `watch()`. */
export interface WatchEvent {
  readonly type: "put" | "delete";
  readonly key: string;
  /** The new value (empty for a delete). */
  readonly value: string;
  /** The revision of the change. */
  readonly revision: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 1_000;
/** A retry is not started with less time than this left before the deadline. */
const ATTEMPT_MIN_MS = 20;
/** The bound on asking every endpoint who leads (leader discovery). */
const DISCOVERY_TIMEOUT_MS = 1_000;

type Unary = (
  req: W,
  md: Metadata,
  opts: CallOptions,
  cb: (e: ServiceError | null, r?: W) => void,
) => {
  cancel(): void;
};
/** A grpc-js client class of one service. */
export type ServiceCtor = new (address: string, creds: ChannelCredentials) => Client;

let packageRoot: Record<string, unknown> | undefined;

/** The grpc-js client class of `service` ("etcdserverpb.KV", "leasehold.v1.Leases"): packages nest at each dot. */
export function serviceCtor(service: string): ServiceCtor {
  packageRoot ??= loadPackageDefinition(loadEtcdApi().packageDefinition) as Record<string, unknown>;
  let o: unknown = packageRoot;
  for (const part of service.split(".")) o = (o as Record<string, unknown>)[part];
  return o as ServiceCtor;
}

function address(endpoint: string): string {
  return endpoint.replace(/^https?:\/\//, "").replace(/\/+$/, "");
}

/** Connects to a cluster (lazily: the first call opens the channel). */
export async function connect(options: ConnectOptions): Promise<LeaseholdClient> {
  if (options.endpoints.length === 0) throw new TypeError("connect: at least one endpoint is needed");
  const client = new LeaseholdClient(options);
  if (options.auth !== undefined) await client.authenticate(options.auth.user, options.auth.password);
  return client;
}

/** A connection to a leasehold cluster (or an embedded member). */
export class LeaseholdClient {
  private readonly endpoints: readonly string[];
  private readonly creds: ChannelCredentials;
  private readonly clients = new Map<string, Client>();
  private current = 0;
  /** Leader discovery: done once before the first call, again in the background after a failover. */
  private discovered = false;
  private discovery: Promise<void> | undefined;
  /** Failovers so far (moveOff): a discovery answered after one is stale. */
  private failovers = 0;
  private readonly clientId = `c-${randomBytes(9).toString("base64url")}`;
  /** Sessions with no mutation in flight (see mutate), and how many were made. */
  private readonly freeLanes: { readonly clientId: string; seq: number }[] = [];
  private lanes = 0;
  private token: string | undefined;
  private readonly leases = new Set<Lease>();
  /** Every lease of this client is renewed on this one stream. */
  private readonly keepAlives = new KeepAliveChannel(
    () => {
      const endpoint = this.endpoint;
      const svc = this.client(endpoint, LEASES[0]) as unknown as { KeepAlive(md: Metadata): KeepAliveCall };
      return { call: svc.KeepAlive(this.metadata()), endpoint };
    },
    (endpoint) => this.moveOff(endpoint),
  );
  private closed = false;
  /** A re-authentication under way (reauthenticate). */
  private reauthenticating: Promise<void> | undefined;
  /** The holder name used when a call names none. */
  readonly holder: string;

  constructor(private readonly options: ConnectOptions) {
    this.endpoints = options.endpoints.map(address);
    // An https:// endpoint means TLS, trusting the system's roots unless `tls` names a CA.
    const tls = options.tls ?? (options.endpoints.some((e) => e.startsWith("https://")) ? {} : undefined);
    this.creds =
      tls === undefined
        ? credentials.createInsecure()
        : credentials.createSsl(
            tls.ca === undefined ? null : Buffer.from(tls.ca),
            tls.key === undefined ? null : Buffer.from(tls.key),
            tls.cert === undefined ? null : Buffer.from(tls.cert),
          );
    this.holder = options.holder ?? `${hostname()}/${process.pid}`;
  }

  // ------------------------------------------------------------ leases

  /**
   * Acquires `resource` exclusively for `ttl` seconds (renewed automatically
   * while the Lease lives). Fails with ResourceHeldError naming the holder, or
   * with `wait` queues until it holds.
   */
  async acquire(resource: string, options: AcquireOptions): Promise<Lease> {
    const holder = options.holder ?? this.holder;
    const request: W = { resource, holder, ttl: options.ttl };
    if (options.lockDelaySeconds !== undefined) request.lock_delay_seconds = options.lockDelaySeconds;
    return this.claim(LEASES[0], request, options, "resource", (r) => holdingOf(r.holding as W));
  }

  /** A lock: `acquire(name, { wait: true })`, FIFO; resolves once held (bounded by `timeoutMs` if given). */
  lock(name: string, options: Omit<AcquireOptions, "wait">): Promise<Lease> {
    return this.acquire(name, { ...options, wait: true });
  }

  /**
   * One of `permits` holders of semaphore `name` (the first claim fixes the
   * permits; another count is InvalidArgumentError/PermitsMismatchError).
   * Full: SemaphoreFullError, or with `wait` queue FIFO. The Lease's
   * `resource` is the semaphore's name; its token only grows per semaphore.
   */
  semaphore(name: string, options: AcquireOptions & { readonly permits: number }): Promise<Lease> {
    const holder = options.holder ?? this.holder;
    return this.claim(
      SEMAPHORES[0],
      { name, holder, ttl: options.ttl, permits: options.permits },
      options,
      "semaphore",
      (r) => {
        const h = r.holding as W;
        return holdingOf({ ...h, resource: h.name });
      },
    );
  }

  /**
   * Leader election with fencing, on leasehold.v1 resources: a candidate
   * campaigns by a waiting acquire of `name` with its proposal as the holder
   * (FIFO); the leader's Lease carries the fencing token every action of the
   * leader should be checked with; resigning is releasing. `observe()` yields
   * each new leader (the GRANT events of `name`).
   */
  election(name: string): Election {
    return {
      campaign: (proposal, options) => this.acquire(name, { ...options, holder: proposal, wait: true }),
      leader: async (control = {}) => (await this.holding(name, control)).holder,
      observe: (control = {}) => {
        const events = this.events(name, control);
        const leaders = (async function* () {
          for await (const e of events)
            if (e.type === "grant" && e.holding.resource === name) yield e.holding;
        })();
        return Object.assign(leaders, { ready: events.ready });
      },
    };
  }

  /** A replicated int64 counter: each operation is one proposal (no client-side retry loop). */
  counter(name: string): Counter {
    const value = (r: W): bigint => BigInt(String(r.value));
    return {
      add: async (delta, control = {}) =>
        value(await this.mutate("leasehold.v1.Counters", "Add", { name, delta: String(delta) }, control)),
      get: async (control = {}) => value(await this.call("leasehold.v1.Counters", "Get", { name }, control)),
      compareAndSet: async (expected, next, control = {}) => {
        const r = await this.mutate(
          "leasehold.v1.Counters",
          "CompareAndSet",
          { name, expected: String(expected), value: String(next) },
          control,
        );
        return { succeeded: r.succeeded === true, value: value(r) };
      },
    };
  }

  /**
   * The changes to `key` (or every key under it, with `prefix`) from now on
   * (or from `startRevision`), as an async iterator (etcd Watch). It ends when
   * `signal` aborts or the loop breaks. A stream that breaks for a retryable
   * reason (the member went away, lost its leader) is opened again on the
   * next member from the revision after the last one seen, so no change is
   * missed or seen twice; a compacted revision or a cancel by the server ends
   * it with an error.
   */
  async *watch(
    key: string | Uint8Array,
    options: {
      readonly prefix?: boolean;
      readonly startRevision?: number;
      readonly signal?: AbortSignal;
    } = {},
  ): AsyncGenerator<WatchEvent> {
    const k = bytes(key);
    /** The first revision not seen yet (undefined: from now, until the first answer says what now is). */
    let next = options.startRevision;
    let backoff = BACKOFF_FIRST_MS;
    let reauthed = false;
    for (;;) {
      if (this.closed) throw new CancelledError("the client is closed");
      const create: W = { key: k };
      if (options.prefix === true) create.range_end = prefixEndOf(k);
      if (next !== undefined) create.start_revision = next;
      const endpoint = this.endpoint;
      const svc = this.client(endpoint, "etcdserverpb.Watch") as unknown as {
        Watch(md: Metadata): NodeJS.EventEmitter & { write(m: W): void; cancel(): void };
      };
      const token = this.token;
      const stream = svc.Watch(this.metadata());
      stream.write({ create_request: create });
      try {
        for await (const r of drainStream(stream, options.signal, (r: W) => [r])) {
          if (r.canceled === true) {
            // A create refused for a token the member forgot (it restarted): a new token, a new stream.
            if (
              !reauthed &&
              /invalid auth token/.test(String(r.cancel_reason)) &&
              (await this.reauthenticate(token))
            ) {
              reauthed = true;
              throw new UnavailableError(`leasehold: ${String(r.cancel_reason)}`);
            }
            const compacted = Number(r.compact_revision ?? 0);
            throw new CancelledError(
              compacted > 0
                ? `leasehold: the watch was cancelled: revision ${next} is compacted (the oldest is ${compacted})`
                : `leasehold: the watch was cancelled: ${String(r.cancel_reason)}`,
            );
          }
          if (r.created === true && next === undefined) next = Number((r.header as W).revision) + 1;
          backoff = BACKOFF_FIRST_MS;
          reauthed = false;
          for (const e of (r.events as W[]) ?? []) {
            const kv = e.kv as W;
            const revision = Number(kv.mod_revision);
            next = revision + 1;
            yield {
              type: e.type === 1 || e.type === "DELETE" ? ("delete" as const) : ("put" as const),
              key: Buffer.from(kv.key as Buffer).toString(),
              value: Buffer.from(kv.value as Buffer).toString(),
              revision,
            };
          }
        }
        return;
      } catch (e) {
        const err = toClientError(e);
        if (options.signal?.aborted === true || this.closed) throw err;
        if (!reauthed && isTokenRefused(err) && (await this.reauthenticate(token))) {
          reauthed = true; // once until the stream answers again
          continue;
        }
        if (!isRetryable(err)) throw err;
        this.moveOff(endpoint);
        if (
          !(await sleep(backoff, options.signal).then(
            () => true,
            () => false,
          ))
        )
          return; // aborted
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /**
   * What happens to the holdings of every resource whose name starts with
   * `prefix`, from now on (leasehold.v1 Leases.Events), as an async
   * iterator; it ends when `signal` aborts or the loop breaks. The stream
   * opens at once: `ready` resolves (with the revision it starts after) once
   * the server confirmed it, so what is done after `await events.ready` is
   * reported. Renewals come from the leader's word (keepalives are not
   * logged): within a heartbeat on a follower. Unlike `watch()`, a broken
   * stream is not resumed (events are derived as entries apply; there is no
   * history to replay from a revision): the iterator ends with the error,
   * and 10,000 events left unread end it too.
   */
  events(prefix: string, options: { readonly signal?: AbortSignal } = {}): Subscription<LeaseEvent> {
    if (this.closed) throw new CancelledError("the client is closed");
    const svc = this.client(this.endpoint, LEASES[0]) as unknown as {
      Events(req: W, md: Metadata): NodeJS.EventEmitter & { cancel(): void };
    };
    let created: (revision: number) => void = () => {};
    let failed: (err: Error) => void = () => {};
    const ready = new Promise<number>((resolve, reject) => {
      created = resolve;
      failed = reject;
    });
    ready.catch(() => {}); // a caller that never looks at ready is told by the iterator
    const stream = svc.Events({ prefix }, this.metadata());
    const items = drainStream(
      stream,
      options.signal,
      (r: W): LeaseEvent[] => {
        if (Number(r.type) === LEASE_EVENT_CREATED) {
          created(Number(r.revision));
          return [];
        }
        const type = LEASE_EVENT_TYPES[Number(r.type)] ?? "revoke";
        const base = { type, holding: holdingOf(r.holding as W), revision: Number(r.revision) };
        if (type !== "releaseRequested") return [base];
        const request = {
          requester: String(r.requester),
          reason: String(r.reason),
          deadlineSeconds: Number(r.deadline_seconds),
        };
        return [{ ...base, request }];
      },
      (err) => failed(err ?? new CancelledError("leasehold: the events stream ended before it was created")),
    );
    return Object.assign(items, { ready });
  }

  /**
   * Asks the holder of `resource` to let go within `deadlineSeconds` (it sees
   * a "releaseRequested" event); after the deadline `revoke()` may end the
   * holding. LeaseNotFoundError when nobody holds it. Answers the holding asked.
   */
  async requestRelease(
    resource: string,
    options: CallControl & {
      readonly deadlineSeconds: number;
      readonly reason?: string;
      readonly requester?: string;
    },
  ): Promise<Holding> {
    const r = await this.mutate(
      LEASES[0],
      "RequestRelease",
      {
        resource,
        requester: options.requester ?? this.holder,
        deadline_seconds: options.deadlineSeconds,
        reason: options.reason ?? "",
      },
      options,
    );
    return holdingOf(r.holding as W);
  }

  /**
   * Ends the holding of `leaseId` on `resource`: allowed once its release was
   * requested and the deadline passed (BeforeDeadlineError before,
   * ReleaseNotRequestedError without a request).
   */
  async revoke(resource: string, leaseId: bigint, control: CallControl = {}): Promise<void> {
    await this.mutate(LEASES[0], "Revoke", { resource, lease_id: leaseId.toString() }, control);
  }

  /** Proposes a claim (Acquire of a resource or a semaphore) and wraps the answer in a kept-alive Lease. */
  private async claim(
    service: string,
    request: W,
    options: AcquireOptions,
    kind: "resource" | "semaphore",
    holding: (r: W) => Holding,
  ): Promise<Lease> {
    const sentAt = this.clock.now();
    const wait = options.wait === true;
    const r = await this.mutate(
      service,
      "Acquire",
      { ...request, wait },
      // A waiting acquire may wait for long: its bound is the caller's.
      wait && options.timeoutMs === undefined ? { ...options, timeoutMs: Number.POSITIVE_INFINITY } : options,
    );
    const h = holding(r);
    let grantedAt = sentAt;
    if (wait) {
      // The server kept a waiter's lease alive, at times this client cannot know: a TTL it may count on
      // starts only from a request it sent itself (rule 5: the send time, never the answer's arrival).
      grantedAt = this.clock.now();
      await this.call(service, "Renew", { lease_id: h.leaseId.toString(), holder: h.holder }, options);
    }
    const lease = new Lease(this, h, grantedAt, kind);
    this.leases.add(lease);
    return lease;
  }

  /** Who holds `resource` (undefined: nobody), and who waits. */
  async holding(
    resource: string,
    control: CallControl = {},
  ): Promise<{ holder?: Holding; waiters: Holding[] }> {
    const r = await this.call("leasehold.v1.Leases", "Get", { resource }, control);
    const waiters = (r.waiters as W[]).map(holdingOf);
    return r.holding == null ? { waiters } : { holder: holdingOf(r.holding as W), waiters };
  }

  /** The holder of every resource whose name starts with `prefix`. */
  async list(prefix = "", control: CallControl = {}): Promise<Holding[]> {
    const r = await this.call("leasehold.v1.Leases", "List", { prefix }, control);
    return (r.holdings as W[]).map(holdingOf);
  }

  /** Whether `token` is `resource`'s current fencing token (linearizable). */
  async checkFence(resource: string, token: number, control: CallControl = {}): Promise<boolean> {
    try {
      await this.call("leasehold.v1.Fences", "CheckFence", { resource, fencing_token: token }, control);
      return true;
    } catch (e) {
      if (e instanceof Error && e.name === "StaleFenceError") return false;
      throw e;
    }
  }

  /** Puts `key` only while `token` is `resource`'s current fencing token; StaleFenceError otherwise. */
  async fencedPut(
    resource: string,
    token: number,
    key: string | Uint8Array,
    value: string | Uint8Array,
    control: CallControl = {},
  ): Promise<{ revision: number }> {
    const r = await this.mutate(
      "leasehold.v1.Fences",
      "FencedPut",
      { resource, fencing_token: token, key: bytes(key), value: bytes(value) },
      control,
    );
    return { revision: Number((r.header as W).revision) };
  }

  // ------------------------------------------------------------ plain keys (etcd API)

  /** etcd Put. */
  async put(
    key: string | Uint8Array,
    value: string | Uint8Array,
    control: CallControl = {},
  ): Promise<number> {
    const r = await this.call("etcdserverpb.KV", "Put", { key: bytes(key), value: bytes(value) }, control);
    return Number((r.header as W).revision);
  }

  /** etcd Range of one key: its value as text, or undefined. */
  async get(key: string | Uint8Array, control: CallControl = {}): Promise<string | undefined> {
    const r = await this.call("etcdserverpb.KV", "Range", { key: bytes(key) }, control);
    const kv = (r.kvs as W[])[0];
    return kv === undefined ? undefined : Buffer.from(kv.value as Buffer).toString();
  }

  /** etcd DeleteRange of one key: how many were deleted (0 or 1). */
  async delete(key: string | Uint8Array, control: CallControl = {}): Promise<number> {
    const r = await this.call("etcdserverpb.KV", "DeleteRange", { key: bytes(key) }, control);
    return Number(r.deleted);
  }

  // ------------------------------------------------------------ connection

  /** etcd Authenticate: later calls carry the token. */
  async authenticate(user: string, password: string): Promise<void> {
    const r = await this.call("etcdserverpb.Auth", "Authenticate", { name: user, password }, {});
    this.token = String(r.token);
  }

  /**
   * A fresh token after the server forgot ours (a simple token lives
   * --auth-token-ttl idle seconds, and only in members' memory: a restart
   * forgets it), as etcd's clientv3 does. One at a time: every call that saw
   * the refusal waits for the same one. False without `auth`.
   */
  private async reauthenticate(stale: string | undefined): Promise<boolean> {
    const auth = this.options.auth;
    if (auth === undefined) return false;
    if (this.token !== stale) return true; // someone already did
    this.reauthenticating ??= this.authenticate(auth.user, auth.password).finally(() => {
      this.reauthenticating = undefined;
    });
    await this.reauthenticating;
    return true;
  }

  /** Releases every lease still held (best effort), then closes the channels. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.allSettled([...this.leases].map((l) => l.release()));
    this.closed = true;
    this.keepAlives.close();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** The lease-keeping clock (tests inject one). */
  get clock(): KeeperClock {
    return this.options.clock ?? systemClock;
  }

  /**
   * What every endpoint says of itself (Maintenance.Status), asked of all at
   * once, each without failover: the endpoints that did not answer come with
   * their error.
   */
  async status(control: CallControl = {}): Promise<EndpointStatus[]> {
    if (this.closed) throw new CancelledError("the client is closed");
    const deadline = Date.now() + (control.timeoutMs ?? this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    return Promise.all(this.endpoints.map((endpoint) => this.statusOf(endpoint, deadline, control.signal)));
  }

  /** What `endpoint` says of itself, or why it did not answer by `deadline`. */
  private async statusOf(
    endpoint: string,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<EndpointStatus> {
    try {
      const r = await this.once(endpoint, "etcdserverpb.Maintenance", "Status", {}, deadline, signal);
      const header = r.header as W;
      return {
        endpoint,
        memberId: BigInt(String(header.member_id)),
        leader: BigInt(String(r.leader)),
        raftTerm: Number(r.raftTerm),
        raftIndex: Number(r.raftIndex),
        revision: Number(header.revision),
        errors: ((r.errors as unknown[]) ?? []).map(String),
      };
    } catch (e) {
      return { endpoint, error: toClientError(e).message };
    }
  }

  /**
   * Leader discovery: asks every endpoint who leads and points calls at the
   * leader's endpoint (followers would forward to it: one hop saved per call).
   * The leader answering for itself decides at once (a dead or slow endpoint
   * does not hold the first call up); otherwise, once all answered (or
   * DISCOVERY_TIMEOUT_MS passed), the newest term's word, so a deposed leader
   * that has not heard of its successor is not believed. Nothing changes if no
   * endpoint answers or the leader is not among the endpoints, nor if a
   * failover happened meanwhile. One discovery at a time.
   */
  findLeader(): Promise<void> {
    if (this.closed || this.endpoints.length === 1) return Promise.resolve();
    this.discovered = true;
    const generation = this.failovers;
    this.discovery ??= new Promise<void>((resolve) => {
      const deadline = Date.now() + DISCOVERY_TIMEOUT_MS;
      const answers: EndpointStatus[] = [];
      let finished = false;
      const finish = (leaderEndpoint: string | undefined) => {
        if (finished) return;
        finished = true;
        // A failover since the question was asked: the answers may name the member that just failed.
        if (this.failovers === generation && leaderEndpoint !== undefined)
          this.current = this.endpoints.indexOf(leaderEndpoint);
        resolve();
      };
      for (const endpoint of this.endpoints) {
        void this.statusOf(endpoint, deadline, undefined).then((a) => {
          answers.push(a);
          // The leader itself answered: no need to wait for the rest (a slow or dead endpoint would cost the
          // whole bound). Else, when all answered: only the newest term's word (a member of an older term may
          // not know it was deposed).
          if (a.memberId !== undefined && a.memberId === a.leader) finish(endpoint);
          else if (answers.length === this.endpoints.length) finish(newestLeader(answers));
        });
      }
    }).finally(() => {
      this.discovery = undefined;
    });
    return this.discovery;
  }

  /** The endpoint calls go to now. */
  get endpoint(): string {
    return this.endpoints[this.current % this.endpoints.length]!;
  }

  /** @internal One renewal on the client's KeepAlive stream: the TTL the lease now runs. */
  async renewLease(leaseId: bigint, holder: string, signal: AbortSignal): Promise<number> {
    if (this.reauthenticating !== undefined) await this.reauthenticating;
    const token = this.token;
    try {
      return await this.keepAlives.renew(leaseId, holder, signal);
    } catch (e) {
      // The stream's token was forgotten: the channel broke the stream; the next renewal opens one with a new token.
      if (isTokenRefused(e) && (await this.reauthenticate(token)))
        throw new UnavailableError(`leasehold: ${(e as Error).message}`);
      throw e;
    }
  }

  /** `endpoint` failed: calls move to the next one (once, however many calls saw it fail). */
  private moveOff(endpoint: string): void {
    if (this.endpoints.length === 1 || this.endpoint !== endpoint) return;
    this.current++;
    this.failovers++;
    void this.findLeader();
  }

  /** The metadata of every call: the auth token, if any. */
  private metadata(): Metadata {
    const md = new Metadata();
    if (this.token !== undefined) md.set("token", this.token);
    return md;
  }

  /** @internal A lease forgets itself when it ends. */
  forget(lease: Lease): void {
    this.leases.delete(lease);
  }

  /**
   * A mutation: one idempotency key (session id and seq) for all its retries.
   * The server refuses a seq below the last one it answered for a session
   * (src/state/session.ts), so two mutations in flight on one session could
   * refuse each other if they arrive out of order. Each mutation therefore
   * takes a lane: a session of its own that has nothing else in flight,
   * reused (seq + 1) once its mutation settled. Lanes = the most mutations
   * this client ever had in flight at once.
   */
  async mutate(service: string, method: string, req: W, control: CallControl): Promise<W> {
    const lane = this.freeLanes.pop() ?? { clientId: `${this.clientId}.${this.lanes++}`, seq: 0 };
    lane.seq++;
    try {
      return await this.call(service, method, req, control, { clientId: lane.clientId, seq: lane.seq });
    } finally {
      this.freeLanes.push(lane);
    }
  }

  /**
   * One call with failover and retries until its deadline (see the header).
   * A session makes retries of a mutation safe; reads are always safe to retry.
   */
  async call(
    service: string,
    method: string,
    req: W,
    control: CallControl,
    session?: { clientId: string; seq: number },
  ): Promise<W> {
    return this.withRetries(
      control,
      (endpoint, deadline) => this.once(endpoint, service, method, req, deadline, control.signal, session),
      session !== undefined,
    );
  }

  /**
   * One request on a bidirectional stream and its first answer (etcd's
   * Lease.LeaseKeepAlive once), with the failover and retries of `call()`.
   */
  async streamOnce(service: string, method: string, req: W, control: CallControl = {}): Promise<W> {
    return this.withRetries(control, (endpoint, deadline) =>
      this.streamOnceAt(endpoint, service, method, req, deadline, control.signal),
    );
  }

  /**
   * A server stream (etcd's Election.Observe, ...) as an async iterator of
   * its messages, until `signal` aborts or the loop breaks. A stream that
   * breaks for a retryable reason is opened again, with the same request, on
   * the next member; it ends with the error after a non-retryable one or
   * `timeoutMs` of failing without a message in between.
   */
  async *serverStream(
    service: string,
    method: string,
    req: W,
    options: { readonly signal?: AbortSignal; readonly timeoutMs?: number } = {},
  ): AsyncGenerator<W> {
    let failingSince: number | undefined;
    let backoff = BACKOFF_FIRST_MS;
    let reauthed = false;
    for (;;) {
      if (this.closed) throw new CancelledError("the client is closed");
      const endpoint = this.endpoint;
      const svc = this.client(endpoint, service) as unknown as Record<
        string,
        (req: W, md: Metadata) => NodeJS.EventEmitter & { cancel(): void }
      >;
      const token = this.token;
      const stream = svc[method]!.call(svc, req, this.metadata());
      try {
        for await (const m of drainStream(stream, options.signal, (r: W) => [r])) {
          failingSince = undefined;
          backoff = BACKOFF_FIRST_MS;
          reauthed = false;
          yield m;
        }
        return;
      } catch (e) {
        const err = toClientError(e);
        failingSince ??= Date.now();
        const left =
          failingSince + (options.timeoutMs ?? this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS) - Date.now();
        if (options.signal?.aborted === true || this.closed) throw err;
        if (!reauthed && isTokenRefused(err) && (await this.reauthenticate(token))) {
          reauthed = true; // once until the stream answers again
          continue;
        }
        if (!isRetryable(err) || left <= 0) throw err;
        this.moveOff(endpoint);
        if (
          !(await sleep(Math.min(backoff, left), options.signal).then(
            () => true,
            () => false,
          ))
        )
          return;
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /**
   * Runs `attempt` on the current endpoint until it answers, moving on after
   * a retryable failure with a backoff that grows, until the deadline of
   * `control` or its signal (see the header).
   */
  private async withRetries(
    control: CallControl,
    attempt: (endpoint: string, deadline: number) => Promise<W>,
    /** A write: a timed-out attempt may have been applied, so the caller must hear "deadline exceeded". */
    mutation = false,
  ): Promise<W> {
    if (this.closed) throw new CancelledError("the client is closed");
    const deadline = Date.now() + (control.timeoutMs ?? this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    if (!this.discovered) await this.findLeader();
    let backoff = BACKOFF_FIRST_MS;
    /** The last retryable failure: what the caller hears if the deadline ends the retries. */
    let last: LeaseholdClientError | undefined;
    let reauthenticated = false;
    for (;;) {
      control.signal?.throwIfAborted();
      const endpoint = this.endpoint;
      const token = this.token;
      try {
        return await attempt(endpoint, deadline);
      } catch (e) {
        const err = toClientError(e);
        if (control.signal?.aborted === true) throw err;
        // Our token was forgotten: once per call, a fresh one and at once again.
        if (!reauthenticated && isTokenRefused(err) && (await this.reauthenticate(token))) {
          reauthenticated = true;
          continue;
        }
        // The deadline cut a retry short: the failure before it says more than "deadline exceeded". Not for a
        // write: the attempt cut short may have been applied, and "no leader" would read as "nothing happened".
        if (err.kind === "deadlineExceeded" && last !== undefined) {
          if (!mutation) throw last;
          throw new DeadlineExceededError(`${err.message} (retrying after: ${last.message})`, {
            cause: last,
          });
        }
        if (!isRetryable(err)) throw err;
        last = err;
        const left = deadline - Date.now();
        if (left < ATTEMPT_MIN_MS) throw err;
        // Another member may answer: move on, after a pause that grows.
        this.moveOff(endpoint);
        await sleep(Math.min(backoff, left - ATTEMPT_MIN_MS), control.signal);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  private streamOnceAt(
    endpoint: string,
    service: string,
    method: string,
    req: W,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<W> {
    const svc = this.client(endpoint, service) as unknown as Record<
      string,
      (md: Metadata, opts: CallOptions) => NodeJS.EventEmitter & { write(m: W): void; cancel(): void }
    >;
    const call = svc[method]!.call(svc, this.metadata(), Number.isFinite(deadline) ? { deadline } : {});
    return new Promise<W>((resolve, reject) => {
      let done = false;
      const settle = (fn: () => void) => {
        if (done) return;
        done = true;
        signal?.removeEventListener("abort", onAbort);
        fn();
        call.on("error", () => {});
        call.cancel();
      };
      const onAbort = () => settle(() => reject(signal?.reason));
      signal?.addEventListener("abort", onAbort, { once: true });
      call.on("data", (r: W) => settle(() => resolve(r)));
      call.on("error", (e: unknown) => settle(() => reject(e)));
      call.on("end", () =>
        settle(() => reject(new UnavailableError("leasehold: the stream ended unanswered"))),
      );
      call.write(req);
    });
  }

  private once(
    endpoint: string,
    service: string,
    method: string,
    req: W,
    deadline: number,
    signal: AbortSignal | undefined,
    session?: { clientId: string; seq: number },
  ): Promise<W> {
    const client = this.client(endpoint, service) as unknown as Record<string, Unary>;
    // Authenticate goes without the (maybe forgotten) token it replaces.
    const md =
      method === "Authenticate" && service === "etcdserverpb.Auth" ? new Metadata() : this.metadata();
    if (session !== undefined) {
      md.set(SESSION_CLIENT_ID_HEADER, session.clientId);
      md.set(SESSION_SEQ_HEADER, String(session.seq));
    }
    return new Promise<W>((resolve, reject) => {
      // grpc-js sends a timeout for any finite deadline; none at all for an unbounded wait.
      const opts: CallOptions = Number.isFinite(deadline) ? { deadline } : {};
      const call = client[method]!.call(client, req, md, opts, (e, r) => {
        signal?.removeEventListener("abort", onAbort);
        if (e !== null) reject(e);
        else resolve(r!);
      });
      const onAbort = () => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private client(endpoint: string, service: string): Client {
    const k = `${endpoint} ${service}`;
    let c = this.clients.get(k);
    if (c === undefined) {
      const Ctor = serviceCtor(service);
      c = new Ctor(endpoint, this.creds);
      this.clients.set(k, c);
    }
    return c;
  }
}

/**
 * A held resource: its fencing token, and a lease kept alive in the
 * background. `state` follows lease-keeper.ts (valid / jeopardy / expired /
 * released); act as the holder only while `lease.signal` is not aborted.
 */
export class Lease {
  readonly resource: string;
  readonly holder: string;
  readonly id: bigint;
  readonly fencingToken: number;
  readonly ttlSeconds: number;
  private readonly keeper: LeaseKeeper;

  constructor(
    private readonly client: LeaseholdClient,
    h: Holding,
    grantedAt: number,
    /** Which service holds the claim: a resource (Leases) or a semaphore permit (Semaphores). */
    private readonly kind: "resource" | "semaphore" = "resource",
  ) {
    this.resource = h.resource;
    this.holder = h.holder;
    this.id = h.leaseId;
    this.fencingToken = h.fencingToken;
    this.ttlSeconds = h.ttlSeconds;
    this.keeper = new LeaseKeeper({
      clock: client.clock,
      ttlSeconds: h.ttlSeconds,
      grantedAt,
      renew: (signal) => this.renewOnce(signal),
    });
    this.keeper.on("expired", () => client.forget(this));
    this.keeper.on("released", () => client.forget(this));
  }

  /** "valid", "jeopardy", "expired", "released" or "closed". */
  get state(): string {
    return this.keeper.state;
  }

  /** Until when (local monotonic ms) this client may act as the holder. */
  validUntil(): number {
    return this.keeper.validUntil();
  }

  /** Aborts when the lease may be lost (leaving "valid"); a new signal for each valid period. */
  get signal(): AbortSignal {
    return this.keeper.signal;
  }

  /** Calls `fn` on each transition ("valid", "jeopardy", "expired", "released"). */
  on(event: "valid" | "jeopardy" | "expired" | "released", fn: (reason?: string) => void): this {
    this.keeper.on(event, fn);
    return this;
  }

  /** Renews now (normally automatic at TTL/3). */
  renew(): Promise<void> {
    return this.keeper.renewNow();
  }

  /** Gives the resource back (Release); the lease stops being kept alive either way. */
  async release(control: CallControl = {}): Promise<void> {
    if (this.keeper.state === "released" || this.keeper.state === "expired") return;
    this.keeper.release();
    try {
      const [service, nameField] = this.kind === "resource" ? LEASES : SEMAPHORES;
      await this.client.mutate(
        service,
        "Release",
        { [nameField]: this.resource, lease_id: this.id.toString(), holder: this.holder },
        control,
      );
    } catch (e) {
      // Already gone (expired, or revoked by someone): released all the same.
      if (!(e instanceof Error && e.name === "LeaseNotFoundError")) throw e;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  private async renewOnce(
    signal: AbortSignal,
  ): Promise<{ kind: "renewed"; ttlSeconds: number } | { kind: "gone" }> {
    try {
      return { kind: "renewed", ttlSeconds: await this.client.renewLease(this.id, this.holder, signal) };
    } catch (e) {
      if (e instanceof Error && (e.name === "LeaseNotFoundError" || e.name === "NotHolderError"))
        return { kind: "gone" };
      throw e;
    }
  }
}

/** The endpoint of the leader that the newest term's answers name, if it is among them. */
function newestLeader(answers: readonly EndpointStatus[]): string | undefined {
  let term = 0;
  for (const a of answers) if (a.raftTerm !== undefined && a.raftTerm > term) term = a.raftTerm;
  const leader = answers.find(
    (a) => a.raftTerm === term && a.leader !== undefined && a.leader !== 0n,
  )?.leader;
  return leader === undefined ? undefined : answers.find((a) => a.memberId === leader)?.endpoint;
}

/** The service of each kind of claim, and the name of its name field. */
const LEASES = ["leasehold.v1.Leases", "resource"] as const;
const SEMAPHORES = ["leasehold.v1.Semaphores", "name"] as const;

function holdingOf(w: W): Holding {
  return {
    resource: String(w.resource),
    holder: String(w.holder),
    leaseId: BigInt(String(w.lease_id)),
    fencingToken: Number(w.fencing_token),
    ttlSeconds: Number(w.ttl),
    remainingMs: Number(w.remaining_ms),
  };
}

/**
 * The items of a server stream as an async iterator: `items` turns each message into items (or
 * throws to end with an error); the stream ends with the server's end, an error, or `signal`.
 * It listens from the moment it is called (before the first `next()`), so nothing the stream
 * says is lost; `onEnd` hears how it ended (an error, or undefined), even if never iterated.
 */
function drainStream<T>(
  stream: NodeJS.EventEmitter & { cancel(): void },
  signal: AbortSignal | undefined,
  items: (message: W) => readonly T[],
  onEnd?: (err: Error | undefined) => void,
): AsyncGenerator<T> {
  const queue: (T | Error | "end")[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const push = (x: T | Error | "end") => {
    if (ended) return;
    if (queue.length >= STREAM_QUEUE_MAX && x !== "end" && !(x instanceof Error)) {
      // Nobody reads: end with an error rather than hold the stream's items without bound.
      x = new CancelledError(`leasehold: the stream was not read (${STREAM_QUEUE_MAX} items waiting)`);
      stop();
    }
    if (x === "end") {
      ended = true;
      onEnd?.(undefined);
    } else if (x instanceof Error) {
      ended = true;
      onEnd?.(x);
    }
    queue.push(x);
    wake?.();
    wake = undefined;
  };
  stream.on("data", (m: W) => {
    try {
      for (const x of items(m)) push(x);
    } catch (e) {
      push(e instanceof Error ? e : new Error(String(e)));
    }
  });
  stream.on("error", (e: unknown) => push(toClientError(e)));
  stream.on("end", () => push("end"));
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    signal?.removeEventListener("abort", onAbort);
    stream.on("error", () => {});
    stream.cancel();
  };
  const onAbort = () => {
    push("end");
    stop();
  };
  if (signal?.aborted === true) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  const generator = (async function* () {
    try {
      for (;;) {
        const x = queue.shift();
        if (x === undefined) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          continue;
        }
        if (x === "end") return;
        if (x instanceof Error) {
          if (signal?.aborted === true) return;
          throw x;
        }
        yield x;
      }
    } finally {
      stop();
    }
  })();
  // Ending a generator never started skips its finally: stop the stream here too.
  const ret = generator.return.bind(generator);
  const thr = generator.throw.bind(generator);
  generator.return = (value) => {
    push("end");
    stop();
    return ret(value);
  };
  generator.throw = (e) => {
    push("end");
    stop();
    return thr(e);
  };
  return generator;
}

/** Items a stream may hold unread before it is ended (drainStream). */
const STREAM_QUEUE_MAX = 10_000;

/** LeaseEvent.Type CREATED: the first message of a stream, not an event. */
const LEASE_EVENT_CREATED = 7;

const LEASE_EVENT_TYPES = [
  "grant",
  "queue",
  "renew",
  "release",
  "expire",
  "revoke",
  "releaseRequested",
] as const;

/** The end of the range of every key starting with `k` (etcd's prefix end). */
function prefixEndOf(k: Buffer): Buffer {
  const end = Buffer.from(k);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

function bytes(v: string | Uint8Array): Buffer {
  return typeof v === "string" ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason ?? new CancelledError("aborted"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
