/**
 * The etcd v3 gRPC services of one member, on @grpc/grpc-js: KV, Lease and
 * Watch here; Maintenance, Cluster, Auth, Lock and Election in the files
 * beside it (maintenance.ts, cluster.ts, auth.ts, lock.ts, election.ts).
 *
 * Each handler converts the wire request (convert.ts), calls the member
 * (src/server/member.ts) and answers etcd's response, or etcd's error from the
 * one catalogue (errors.ts). A handler never throws past grpc-js: anything
 * unexpected is logged and answered as an internal error.
 *
 * Auth (auth.ts): while auth is enabled every call is checked for its
 * caller (etcd 3.4, release-3.4): Range and read-only work at the serving
 * member against its auth store, inside the read; writes carry the caller
 * and are checked at apply (machine.ts); lease grants, revokes, keepalives,
 * TimeToLive, Leases, MemberList and Alarm GET need a caller; compaction,
 * Maintenance (but Alarm GET) and membership changes need root.
 *
 * Watch streams (watch-stream.ts): after every apply the server drains the
 * hub into every stream. When the member's state is replaced by a snapshot,
 * the hub is new: every watch stream ends with UNAVAILABLE, and clients
 * resume from the revision after the last they saw (clientv3 does).
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type {
  MethodDefinition,
  ServerDuplexStream,
  ServerWritableStream,
  ServiceDefinition,
  ServiceError,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { Metadata, Server, status } from "@grpc/grpc-js";
import type { MemberId } from "../raft/index.ts";
import { assert } from "../raft/index.ts";
import type { Member, WriteOutcome } from "../server/member.ts";
import { MemberError } from "../server/member.ts";
import type { ClientCommand, CommandAuth, LeaseId, StateMachine } from "../state/index.ts";
import {
  leaseId,
  leaseReadChecks,
  leaseWriteChecks,
  MAX_LEASE_ID,
  MAX_LEASE_TTL_SECONDS,
  rangeChecks,
  revision,
} from "../state/index.ts";
import type { PasswordHashCost } from "./auth.ts";
import { AuthGate, authService } from "./auth.ts";
import { ClusterApi } from "./cluster.ts";
import type { ApiHost, CallInfo, PermissionCheck, RegisteredMethod, Unary } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import type { HeaderSource } from "./convert.ts";
import {
  deleteFromWire,
  header,
  int64Bits,
  putFromWire,
  RequestRejected,
  rangeFromWire,
  rangeToWire,
  txnFromWire,
  writeResultToWire,
} from "./convert.ts";
import { countersService } from "./counters.ts";
import { electionService } from "./election.ts";
import type { EtcdErrorName } from "./errors.ts";
import { etcdServiceError } from "./errors.ts";
import { ClientFront, type FrontTls } from "./front.ts";
import { LeaseEventHub } from "./lease-events.ts";
import { LeaseholdError } from "./leasehold-errors.ts";
import { fencesService, leasesService } from "./leases.ts";
import { lockService } from "./lock.ts";
import { maintenanceService, SpaceQuota } from "./maintenance.ts";
import type { WireMessage } from "./proto.ts";
import { loadEtcdApi } from "./proto.ts";
import { CallCancelled } from "./recipes.ts";
import { semaphoresService } from "./semaphores.ts";
import { WATCH_PROGRESS_NOTIFY_INTERVAL_MS, WatchStream } from "./watch-stream.ts";

/** etcd's default --max-request-bytes (1.5 MiB); gRPC may carry 512 KiB more (etcd's overhead). */
export const MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
/** Renewals one LeaseKeepAlive stream may have in flight before it is paused (resumed at half). */
export const KEEPALIVE_STREAM_INFLIGHT_MAX = 512;
const GRPC_OVERHEAD_BYTES = 512 * 1024;

export interface ApiServerOptions {
  readonly member: Member;
  readonly clusterId: bigint;
  /** Whether this member has a live connection to peer `id` (the Cluster service's health checks). */
  readonly peerActive?: (id: MemberId) => boolean;
  readonly dbSize: () => number;
  /** etcd --quota-backend-bytes (maintenance.ts SpaceQuota): 0 or absent 2 GiB, negative none. */
  readonly quotaBackendBytes?: number | undefined;
  readonly log?: (level: "info" | "warn" | "error", msg: string) => void;
  /** What answers plain HTTP/1.1 on the client port (the JSON gateway); default: 404. */
  readonly http?: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /** etcd --experimental-watch-progress-notify-interval; default 10 minutes. */
  readonly watchProgressNotifyIntervalMs?: number | undefined;
  /** etcd --auth-token-ttl in seconds; default 300. */
  readonly authTokenTtlSeconds?: number | undefined;
  /** A monotonic clock in ms for auth token lives; default performance.now. */
  readonly nowMs?: (() => number) | undefined;
  /** scrypt cost of new password hashes (auth.ts); tests may lower it. */
  readonly passwordHashCost?: PasswordHashCost | undefined;
}

/** The commands a client call makes for its caller (all but authenticate, which names its user). */
type CallerCommand = Exclude<ClientCommand, { readonly type: "authenticate" }>;

/** Who may call a guarded method: root, anyone auth knows (etcd's requireAuthInfo), or anyone at all. */
type Guard = "admin" | "caller" | "anyone";

type W = WireMessage;

export class ApiServer implements ApiHost {
  private readonly grpc: Server;
  readonly member: Member;
  private readonly options: ApiServerOptions;
  private readonly hdr: HeaderSource;
  private readonly cluster: ClusterApi;
  private readonly quota: SpaceQuota;
  private readonly streams = new Set<WatchStream>();
  readonly methods = new Map<string, RegisteredMethod>();
  private readonly fronts: ClientFront[] = [];
  private readonly httpHandler: (req: IncomingMessage, res: ServerResponse) => void;
  /** Callers and their rights (auth.ts). */
  readonly auth: AuthGate;
  private readonly appliedListeners = new Set<(restored: boolean) => void>();

  constructor(options: ApiServerOptions) {
    this.options = options;
    this.member = options.member;
    this.quota = new SpaceQuota(this, options.quotaBackendBytes);
    this.hdr = {
      clusterId: options.clusterId,
      memberId: options.member.id,
      raftTerm: () => this.member.raft.term,
    };
    this.grpc = new Server({
      "grpc.max_receive_message_length": MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES,
      "grpc.max_send_message_length": 2 ** 31 - 1,
    });
    this.httpHandler = options.http ?? notFound;
    this.cluster = new ClusterApi({
      member: this.member,
      peerActive: options.peerActive ?? (() => false),
      // etcd's Cluster service answers headers without a revision.
      header: () => {
        const { revision: _, ...h } = this.header();
        return h;
      },
    });
    this.auth = new AuthGate({
      member: this.member,
      tokenTtlSeconds: options.authTokenTtlSeconds,
      nowMs: options.nowMs,
    });
    const api = loadEtcdApi();
    this.register(api.services.KV, {
      Range: this.unary(
        (w, call) => this.range(w, call),
        (w) => w.serializable === true,
      ),
      Put: this.unary((w, call) => this.write(call, { type: "put", request: putFromWire(w) })),
      DeleteRange: this.unary((w, call) =>
        this.write(call, { type: "deleteRange", request: deleteFromWire(w) }),
      ),
      Txn: this.unary((w, call) => this.write(call, { type: "txn", request: txnFromWire(w) })),
      // release-3.4 (v3rpc/key.go): compaction is root's.
      Compact: this.unary(async (w, call) => {
        const caller = await this.auth.authorizeAdmin(call);
        // etcd: at or below the compacted revision (-1 at first) is compacted, above the current one future.
        const rev = BigInt(String(w.revision ?? "0"));
        if (rev < 0n) throw new ErrorAnswer("Compacted");
        if (rev > BigInt(Number.MAX_SAFE_INTEGER)) throw new ErrorAnswer("FutureRev");
        return this.write(call, { type: "compact", revision: revision(Number(rev)) }, caller);
      }),
    });
    this.register(api.services.Lease, {
      LeaseGrant: this.unary((w, call) => this.leaseGrant(w, call)),
      LeaseRevoke: this.unary(async (w, call) => {
        const caller = await this.auth.authorize(call, []);
        const id = BigInt(String(w.ID ?? "0"));
        // A negative id names no lease etcd could have granted.
        if (id < 0n || id > MAX_LEASE_ID) throw new ErrorAnswer("LeaseNotFound");
        return this.write(call, { type: "leaseRevoke", id: leaseId(id) }, caller);
      }),
      LeaseKeepAlive: (call: ServerDuplexStream<W, W>) => this.keepAliveStream(call),
      LeaseTimeToLive: this.unary((w, call) => this.leaseTimeToLive(w, call)),
      LeaseLeases: this.unary(async (_w, call) => {
        await this.auth.authorize(call, []);
        const ids = await this.member.read(true, (m) => {
          const all = m.leaseIds();
          this.checkLeaseKeys(m, call, all, "read");
          return all;
        });
        return { header: this.header(), leases: ids.map((id) => ({ ID: id.toString() })) };
      }),
    });
    this.register(api.services.Watch, {
      Watch: (call: ServerDuplexStream<W, W>) => this.watchStream(call),
    });
    // etcd 3.4.23 (checked against it): Status and Alarm GET need no user (health checks and
    // `etcdctl endpoint status` work with auth on); the rest of Maintenance is root's.
    this.register(
      api.services.Maintenance,
      this.guarded(
        api.services.Maintenance,
        maintenanceService(this, { dbSize: options.dbSize }),
        {
          Alarm: (w) => (w.action === 0 ? "anyone" : "admin"),
          Status: "anyone",
          Defragment: "admin",
          Hash: "admin",
          HashKV: "admin",
          Snapshot: "admin",
          MoveLeader: "admin",
        },
        true,
      ),
    );
    // etcd 3.4.23 (checkMembershipOperationPermission; v3rpc/member.go): changes are root's, the list anyone's.
    this.register(
      api.services.Cluster,
      this.guarded(
        api.services.Cluster,
        {
          MemberAdd: this.unary((w) => this.cluster.add(w)),
          MemberRemove: this.unary((w) => this.cluster.remove(w)),
          MemberUpdate: this.unary((w) => this.cluster.update(w)),
          MemberList: this.unary(() => this.cluster.list()),
          MemberPromote: this.unary((w) => this.cluster.promote(w)),
        },
        {
          MemberAdd: "admin",
          MemberRemove: "admin",
          MemberUpdate: "admin",
          MemberList: "anyone",
          MemberPromote: "admin",
        },
      ),
    );
    this.register(
      api.services.Auth,
      authService(this, this.auth, { passwordHashCost: options.passwordHashCost }),
    );
    this.register(api.services.Lock, lockService(this));
    this.register(api.services.Election, electionService(this));
    const leaseEvents = new LeaseEventHub(() => this.member.machine);
    this.member.entryApplied = (res) => leaseEvents.applied(res);
    this.member.leaseKept = (id) => leaseEvents.kept(id);
    this.register(api.services.Leases, leasesService(this, leaseEvents));
    this.register(api.services.Fences, fencesService(this));
    this.register(api.services.Counters, countersService(this));
    this.register(api.services.Semaphores, semaphoresService(this));
    this.member.onApplied = (restored) => this.onApplied(restored);
  }

  /**
   * Listens on host:port (port 0: any) through the front door (front.ts):
   * gRPC and HTTP/1.1 on one port; resolves with the port bound. With `tls`,
   * the port speaks TLS (etcd's --cert-file/--key-file); with `clientCa`,
   * clients must present a certificate that CA signed (--client-cert-auth
   * with --trusted-ca-file).
   */
  async listen(host: string, port: number, tls?: FrontTls): Promise<number> {
    const front = new ClientFront({ grpc: this.grpc, http: this.httpHandler, tls });
    const bound = await front.listen(host, port);
    this.fronts.push(front);
    return bound;
  }

  /** Ends every stream and stops accepting calls. */
  close(): Promise<void> {
    for (const s of this.streams) s.end(status.UNAVAILABLE, "etcdserver: server stopped");
    const fronts = this.fronts.splice(0);
    return new Promise((resolve) => {
      let waiting = fronts.length + 1;
      const one = (): void => {
        waiting -= 1;
        if (waiting === 0) resolve();
      };
      for (const f of fronts) f.close().then(one, one);
      this.grpc.tryShutdown(one);
      setTimeout(() => {
        this.grpc.forceShutdown();
        resolve();
      }, 2_000).unref();
    });
  }

  /** Adds a service to the gRPC server and to `methods` (the gateway's table). */
  private register(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    this.grpc.addService(service, implementation);
    for (const [name, definition] of Object.entries(service)) {
      const impl = implementation[name];
      assert(impl !== undefined, `api: ${definition.path} has no implementation`);
      this.methods.set(definition.path, {
        definition: definition as MethodDefinition<W, W>,
        implementation: impl as RegisteredMethod["implementation"],
      });
    }
  }

  /**
   * `implementation` with an auth check before each method `rules` names:
   * root, or any caller; a refusal is the call's answer (stream or unary).
   */
  private guarded(
    service: ServiceDefinition,
    implementation: UntypedServiceImplementation,
    rules: Readonly<Record<string, Guard | ((w: W) => Guard)>>,
    /** Answer the auth package's plain errors, as etcd's Maintenance service does. */
    plainErrors = false,
  ): UntypedServiceImplementation {
    const out: UntypedServiceImplementation = { ...implementation };
    for (const [name, rule] of Object.entries(rules)) {
      const definition = service[name];
      const inner = implementation[name] as ((...args: unknown[]) => void) | undefined;
      assert(definition !== undefined && inner !== undefined, `api: no method ${name} to guard`);
      assert(!definition.requestStream, `api: ${name} streams requests: not guarded here`);
      const check = async (call: CallInfo, w: W): Promise<unknown> => {
        const guard = typeof rule === "function" ? rule(w) : rule;
        if (guard === "anyone") return;
        try {
          return await (guard === "admin" ? this.auth.authorizeAdmin(call) : this.auth.authorize(call, []));
        } catch (err) {
          throw plainErrors && err instanceof ErrorAnswer
            ? new ErrorAnswer(plainAuthError(err.etcdError))
            : err;
        }
      };
      if (!definition.responseStream) {
        out[name] = ((call: Parameters<Unary>[0], callback: Parameters<Unary>[1]) => {
          Promise.resolve()
            .then(() => check(call, call.request))
            .then(
              () => inner(call, callback),
              (err: unknown) => callback(this.toServiceError(err)),
            );
        }) as Unary;
      } else {
        out[name] = ((call: ServerWritableStream<W, W>) => {
          Promise.resolve()
            .then(() => check(call, call.request))
            .then(
              () => inner(call),
              (err: unknown) => {
                call.on("error", () => {});
                call.emit("error", this.toServiceError(err));
              },
            );
        }) as (call: ServerWritableStream<W, W>) => void;
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- handlers

  /** ApiHost.authorize (see context.ts): the caller to stamp on the commands it makes. */
  authorize(call: CallInfo, checks: readonly PermissionCheck[]): Promise<CommandAuth | undefined> {
    return this.auth.authorize(call, checks);
  }

  /** ApiHost.subscribeApplied (see context.ts). */
  subscribeApplied(listener: (restored: boolean) => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  log(level: "info" | "warn" | "error", msg: string): void {
    this.options.log?.(level, msg);
  }

  header(rev?: number): W {
    return header(this.hdr, rev ?? this.member.machine.currentRevision());
  }

  /**
   * A unary handler. On a learner only what `learnerOk` allows is served
   * (etcd 3.4: Status and serializable Range); the rest is refused with
   * "rpc not supported for learner", which clients take as "try another member".
   */
  unary(handler: (w: W, call: CallInfo) => Promise<W>, learnerOk: (w: W) => boolean = () => false): Unary {
    return (call, callback) => {
      // A conversion error thrown before the first await is an answer too.
      Promise.resolve(call.request)
        .then((w) => {
          if (this.isLearner() && !learnerOk(w)) throw new ErrorAnswer("NotSupportedForLearner");
          return handler(w, call);
        })
        .then(
          (res) => callback(null, res),
          (err: unknown) => callback(this.toServiceError(err)),
        );
    };
  }

  private isLearner(): boolean {
    return this.member.raft.conf.learners.includes(this.member.id);
  }

  /** etcd refuses every stream on a learner; true if this one was refused. */
  refuseLearnerStream(call: NodeJS.EventEmitter): boolean {
    if (!this.isLearner()) return false;
    call.on("error", () => {});
    call.emit("error", etcdServiceError("NotSupportedForLearner"));
    return true;
  }

  toServiceError(err: unknown): ServiceError {
    if (err instanceof LeaseholdError) return err.toServiceError();
    // The client is gone; grpc-js does not deliver this answer.
    if (err instanceof CallCancelled)
      return Object.assign(err, { code: status.CANCELLED, details: err.message, metadata: new Metadata() });
    if (err instanceof RequestRejected) return etcdServiceError(err.error);
    if (err instanceof ErrorAnswer) return etcdServiceError(err.etcdError);
    if (err instanceof MemberError) {
      const map: Record<MemberError["code"], EtcdErrorName> = {
        noLeader: "NoLeader",
        leaderChanged: "LeaderChanged",
        leaderFailed: "TimeoutDueToLeaderFail",
        timeout: "Timeout",
        stopped: "Stopped",
        tooLarge: "RequestTooLarge",
        learnerNotReady: "LearnerNotReady",
        memberNotFound: "MemberNotFound",
        memberExists: "MemberExist",
        peerUrlExists: "PeerURLExist",
        tooManyLearners: "TooManyLearners",
        memberNotLearner: "MemberNotLearner",
      };
      return etcdServiceError(map[err.code]);
    }
    this.log("error", `api: unexpected ${(err as Error)?.stack ?? String(err)}`);
    const e = new Error("etcdserver: internal error") as ServiceError;
    e.code = status.INTERNAL;
    return e;
  }

  private async range(w: W, call: CallInfo): Promise<W> {
    const req = rangeFromWire(w);
    // Waits for the entry of the caller's token if this member is behind; then checks where it reads.
    await this.auth.caller(call);
    const res = await this.member.read(w.serializable !== true, (m) => {
      this.auth.check(m.authStore(), this.auth.callerNow(call), rangeChecks(req));
      return m.range(req);
    });
    if (!res.ok)
      throw new ErrorAnswer(
        res.error === "compacted" ? "Compacted" : res.error === "futureRevision" ? "FutureRev" : "EmptyKey",
      );
    return rangeToWire(res, this.header(res.revision));
  }

  /** Proposes `command` for the caller (checked at apply); `caller` if already identified. */
  /** ApiHost.propose (see context.ts). */
  async propose(command: ClientCommand): Promise<WriteOutcome> {
    await this.quota.check(command);
    return this.member.write(command);
  }

  private async write(call: CallInfo, command: CallerCommand, caller?: CommandAuth): Promise<W> {
    const auth = caller ?? (await this.auth.caller(call));
    const out = await this.propose(auth === undefined ? command : { ...command, auth });
    const answer = writeResultToWire(out.result, (rev) => this.header(rev));
    if (typeof answer === "string") throw new ErrorAnswer(answer);
    return answer;
  }

  private async leaseGrant(w: W, call: CallInfo): Promise<W> {
    const ttlWire = BigInt(String(w.TTL ?? "0"));
    const id = BigInt(String(w.ID ?? "0"));
    if (id < 0n) throw new ErrorAnswer("LeaseNotFound");
    if (ttlWire > BigInt(MAX_LEASE_TTL_SECONDS)) throw new ErrorAnswer("LeaseTTLTooLarge");
    // Any TTL below the minimum (negative ones too) is raised to it by the state machine.
    const ttl = ttlWire < 0n ? 0 : Number(ttlWire);
    const caller = await this.auth.authorize(call, []);
    return this.write(call, { type: "leaseGrant", id: leaseId(id), ttlSeconds: Math.max(0, ttl) }, caller);
  }

  /**
   * release-3.4 checkLeaseRenew / checkLeaseTimeToLive / checkLeaseLeases:
   * while auth is on, a caller; unless root, `type` access to every key of
   * the leases (on this member's state).
   */
  private checkLeaseKeys(
    m: StateMachine,
    call: CallInfo,
    ids: readonly LeaseId[],
    type: "read" | "write",
  ): void {
    const store = m.authStore();
    const caller = this.auth.callerNow(call);
    if (!store.isEnabled()) return;
    this.auth.check(store, caller, []);
    if (store.isAdmin(caller)) return;
    for (const id of ids) {
      const keys = m.leaseTimeToLive(id, { keys: true })?.keys ?? [];
      this.auth.check(store, caller, type === "read" ? leaseReadChecks(keys) : leaseWriteChecks(keys));
    }
  }

  private async leaseTimeToLive(w: W, call: CallInfo): Promise<W> {
    const id = leaseId(BigInt(String(w.ID ?? "0")));
    await this.auth.authorize(call, []);
    if (w.keys === true) await this.member.read(false, (m) => this.checkLeaseKeys(m, call, [id], "read"));
    const ttl = await this.member.leaseTtl(id);
    if (ttl.remainingSeconds < 0) return { header: this.header(), ID: id.toString(), TTL: "-1" };
    const keys =
      w.keys === true
        ? await this.member.read(false, (m) => m.leaseTimeToLive(id, { keys: true })?.keys ?? [])
        : [];
    return {
      header: this.header(),
      ID: id.toString(),
      TTL: String(ttl.remainingSeconds),
      grantedTTL: String(ttl.grantedSeconds),
      keys: keys.map((k) => Buffer.from(k)),
    };
  }

  /**
   * etcd 3.4 (etcdserver/api/v3rpc/lease.go, leaseKeepAlive): one request at
   * a time, in order (read, renew, answer, then read the next); the header
   * is taken before the renew; the client's half-close (io.EOF) ends the
   * stream OK once everything it sent is answered; a renew error ends it
   * with that error.
   */
  /**
   * LeaseKeepAlive: renewals are pipelined, up to KEEPALIVE_STREAM_INFLIGHT_MAX
   * per stream (the stream is paused at the limit and resumed at half of it),
   * and answered in request order, as etcd answers them; etcd serves a stream
   * one renewal at a time, so a client renewing many leases over one stream
   * waits a round trip to the leader per lease. A failure ends the stream with
   * its status once every answer before it is sent (as etcd's one-at-a-time
   * loop would); a half-close ends it once every renewal in flight is
   * answered. Reading also pauses while grpc-js holds unsent answers (a client
   * that sends but does not read), until they drain.
   */
  private keepAliveStream(call: ServerDuplexStream<W, W>): void {
    if (this.refuseLearnerStream(call)) return;
    type Slot = { answer: W | undefined; error: unknown };
    const queue: Slot[] = [];
    let halfClosed = false;
    let paused = false;
    let blocked = false;
    let failed = false;
    const pauseOrResume = (): void => {
      const want = blocked || queue.length >= KEEPALIVE_STREAM_INFLIGHT_MAX;
      if (want && !paused) {
        paused = true;
        call.pause();
      } else if (!want && paused && queue.length <= KEEPALIVE_STREAM_INFLIGHT_MAX / 2) {
        paused = false;
        call.resume();
      }
    };
    const flush = (): void => {
      while (!failed && queue.length > 0) {
        const head = queue[0]!;
        if (head.error !== undefined) {
          failed = true;
          queue.length = 0;
          // grpc-js sends a stream's status only through its "error" event.
          if (!call.destroyed) call.emit("error", this.toServiceError(head.error));
          return;
        }
        if (head.answer === undefined) break;
        queue.shift();
        if (call.cancelled || call.destroyed) continue;
        if (!call.write(head.answer)) blocked = true;
      }
      pauseOrResume();
      if (halfClosed && queue.length === 0 && !failed) call.end();
    };
    call.on("drain", () => {
      blocked = false;
      flush();
    });
    call.on("data", (w: W) => {
      if (failed) return;
      const slot: Slot = { answer: undefined, error: undefined };
      queue.push(slot);
      pauseOrResume();
      let id: LeaseId;
      try {
        id = leaseId(BigInt(String(w.ID ?? "0")));
      } catch (err) {
        slot.error = err;
        flush();
        return;
      }
      const hdr = this.header();
      // Auth off (the common case): straight to the lessor, without the identify/check steps.
      const renewed = this.member.machine.authStore().isEnabled()
        ? this.auth
            .caller(call)
            .then(() => this.checkLeaseKeys(this.member.machine, call, [id], "write"))
            .then(() => this.member.keepAlive(id))
        : this.member.keepAlive(id);
      renewed.then(
        (ttl) => {
          slot.answer = { header: hdr, ID: int64Bits(id), TTL: ttl };
          flush();
        },
        (err: unknown) => {
          slot.error = err ?? new Error("keepalive failed");
          flush();
        },
      );
    });
    call.on("end", () => {
      halfClosed = true;
      flush();
    });
    call.on("error", () => {});
  }

  private watchStream(call: ServerDuplexStream<W, W>): void {
    if (this.refuseLearnerStream(call)) return;
    const stream = new WatchStream(call, {
      hub: this.member.replica.hub,
      header: (rev) => this.header(rev),
      progressNotifyIntervalMs:
        this.options.watchProgressNotifyIntervalMs ?? WATCH_PROGRESS_NOTIFY_INTERVAL_MS,
      random: Math.random,
      log: this.options.log,
      authorize: (key, rangeEnd) => this.auth.watchRefusal(call, key, rangeEnd),
    });
    this.streams.add(stream);
    call.on("close", () => {
      stream.closeAll();
      this.streams.delete(stream);
    });
  }

  private onApplied(restored: boolean): void {
    this.auth.onApplied(restored);
    for (const listener of [...this.appliedListeners]) listener(restored);
    for (const s of this.streams) {
      if (restored)
        s.end(status.UNAVAILABLE, "etcdserver: member state replaced by a snapshot; resume the watch");
      else s.drain();
    }
  }
}

function notFound(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found\n");
}

/** What etcd's Maintenance service answers for an auth refusal (the auth package's own error). */
function plainAuthError(name: EtcdErrorName): EtcdErrorName {
  switch (name) {
    case "PermissionDenied":
      return "AuthPlainPermissionDenied";
    case "UserEmpty":
      return "AuthPlainUserEmpty";
    case "InvalidAuthToken":
      return "AuthPlainInvalidAuthToken";
    default:
      return name;
  }
}
