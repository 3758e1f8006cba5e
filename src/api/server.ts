/**
 * The etcd v3 gRPC services of one member, on @grpc/grpc-js: KV, Lease, Watch,
 * Maintenance.Status and Cluster.MemberList (the rest of Maintenance, Cluster,
 * Auth, Lock and Election answer "not capable" until a later issue).
 *
 * Each handler converts the wire request (convert.ts), calls the member
 * (src/server/member.ts) and answers etcd's response, or etcd's error from the
 * one catalogue (errors.ts). A handler never throws past grpc-js: anything
 * unexpected is logged and answered as an internal error.
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
  ServiceDefinition,
  ServiceError,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { Server, status } from "@grpc/grpc-js";
import type { MemberId } from "../raft/index.ts";
import { assert } from "../raft/index.ts";
import type { Member } from "../server/member.ts";
import { MemberError } from "../server/member.ts";
import type { ClientCommand } from "../state/index.ts";
import { leaseId, MAX_LEASE_TTL_SECONDS, revision } from "../state/index.ts";
import { authService } from "./auth.ts";
import { ClusterApi } from "./cluster.ts";
import type { ApiHost, CallInfo, PermissionCheck, RegisteredMethod, Unary } from "./context.ts";
import { ErrorAnswer } from "./context.ts";
import type { HeaderSource } from "./convert.ts";
import {
  deleteFromWire,
  header,
  putFromWire,
  RequestRejected,
  rangeFromWire,
  rangeToWire,
  txnFromWire,
  writeResultToWire,
} from "./convert.ts";
import { electionService } from "./election.ts";
import type { EtcdErrorName } from "./errors.ts";
import { etcdServiceError } from "./errors.ts";
import { ClientFront, type FrontTls } from "./front.ts";
import { lockService } from "./lock.ts";
import { maintenanceService } from "./maintenance.ts";
import type { WireMessage } from "./proto.ts";
import { loadEtcdApi } from "./proto.ts";
import { WATCH_PROGRESS_NOTIFY_INTERVAL_MS, WatchStream } from "./watch-stream.ts";

/** etcd's default --max-request-bytes (1.5 MiB); gRPC may carry 512 KiB more (etcd's overhead). */
export const MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
const GRPC_OVERHEAD_BYTES = 512 * 1024;

export interface ApiServerOptions {
  readonly member: Member;
  readonly clusterId: bigint;
  /** Whether this member has a live connection to peer `id` (the Cluster service's health checks). */
  readonly peerActive?: (id: MemberId) => boolean;
  readonly dbSize: () => number;
  readonly log?: (level: "info" | "warn" | "error", msg: string) => void;
  /** What answers plain HTTP/1.1 on the client port (the JSON gateway); default: 404. */
  readonly http?: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /** etcd --experimental-watch-progress-notify-interval; default 10 minutes. */
  readonly watchProgressNotifyIntervalMs?: number | undefined;
}

type W = WireMessage;

export class ApiServer implements ApiHost {
  private readonly grpc: Server;
  readonly member: Member;
  private readonly options: ApiServerOptions;
  private readonly hdr: HeaderSource;
  private readonly cluster: ClusterApi;
  private readonly streams = new Set<WatchStream>();
  readonly methods = new Map<string, RegisteredMethod>();
  private readonly fronts: ClientFront[] = [];
  private readonly httpHandler: (req: IncomingMessage, res: ServerResponse) => void;

  constructor(options: ApiServerOptions) {
    this.options = options;
    this.member = options.member;
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
      header: () => this.header(),
    });
    const api = loadEtcdApi();
    this.register(api.services.KV, {
      Range: this.unary(
        (w) => this.range(w),
        (w) => w.serializable === true,
      ),
      Put: this.unary((w) => this.write({ type: "put", request: putFromWire(w) })),
      DeleteRange: this.unary((w) => this.write({ type: "deleteRange", request: deleteFromWire(w) })),
      Txn: this.unary((w) => this.write({ type: "txn", request: txnFromWire(w) })),
      Compact: this.unary((w) =>
        this.write({ type: "compact", revision: revision(Number(w.revision ?? 0)) }),
      ),
    });
    this.register(api.services.Lease, {
      LeaseGrant: this.unary((w) => this.leaseGrant(w)),
      LeaseRevoke: this.unary((w) =>
        this.write({ type: "leaseRevoke", id: leaseId(BigInt(String(w.ID ?? "0"))) }),
      ),
      LeaseKeepAlive: (call: ServerDuplexStream<W, W>) => this.keepAliveStream(call),
      LeaseTimeToLive: this.unary((w) => this.leaseTimeToLive(w)),
      LeaseLeases: this.unary(async () => {
        const ids = await this.member.read(true, (m) => m.leaseIds());
        return { header: this.header(), leases: ids.map((id) => ({ ID: id.toString() })) };
      }),
    });
    this.register(api.services.Watch, {
      Watch: (call: ServerDuplexStream<W, W>) => this.watchStream(call),
    });
    this.register(api.services.Maintenance, maintenanceService(this, { dbSize: options.dbSize }));
    this.register(api.services.Cluster, {
      MemberAdd: this.unary((w) => this.cluster.add(w)),
      MemberRemove: this.unary((w) => this.cluster.remove(w)),
      MemberUpdate: this.unary((w) => this.cluster.update(w)),
      MemberList: this.unary(() => this.cluster.list()),
      MemberPromote: this.unary((w) => this.cluster.promote(w)),
    });
    this.register(api.services.Auth, authService(this));
    this.register(api.services.Lock, lockService(this));
    this.register(api.services.Election, electionService(this));
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

  // ---------------------------------------------------------------- handlers

  async authorize(_call: CallInfo, _checks: readonly PermissionCheck[]): Promise<void> {}

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
  private refuseLearnerStream(call: ServerDuplexStream<W, W>): boolean {
    if (!this.isLearner()) return false;
    call.on("error", () => {});
    call.emit("error", etcdServiceError("NotSupportedForLearner"));
    return true;
  }

  toServiceError(err: unknown): ServiceError {
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

  private async range(w: W): Promise<W> {
    const req = rangeFromWire(w);
    const res = await this.member.read(w.serializable !== true, (m) => m.range(req));
    if (!res.ok)
      throw new ErrorAnswer(
        res.error === "compacted" ? "Compacted" : res.error === "futureRevision" ? "FutureRev" : "EmptyKey",
      );
    return rangeToWire(res, this.header(res.revision));
  }

  private async write(command: ClientCommand): Promise<W> {
    const out = await this.member.write(command);
    const answer = writeResultToWire(out.result, (rev) => this.header(rev));
    if (typeof answer === "string") throw new ErrorAnswer(answer);
    return answer;
  }

  private async leaseGrant(w: W): Promise<W> {
    const ttl = Number(w.TTL ?? 0);
    const id = BigInt(String(w.ID ?? "0"));
    if (id < 0n) throw new ErrorAnswer("LeaseNotFound");
    if (!Number.isSafeInteger(ttl) || ttl > MAX_LEASE_TTL_SECONDS) throw new ErrorAnswer("LeaseTTLTooLarge");
    return this.write({ type: "leaseGrant", id: leaseId(id), ttlSeconds: Math.max(0, ttl) });
  }

  private async leaseTimeToLive(w: W): Promise<W> {
    const id = leaseId(BigInt(String(w.ID ?? "0")));
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
  private keepAliveStream(call: ServerDuplexStream<W, W>): void {
    if (this.refuseLearnerStream(call)) return;
    let inFlight = false;
    let halfClosed = false;
    call.on("data", (w: W) => {
      call.pause();
      inFlight = true;
      const id = leaseId(BigInt(String(w.ID ?? "0")));
      const hdr = this.header();
      this.member.keepAlive(id).then(
        (ttl) => {
          inFlight = false;
          if (call.cancelled || call.destroyed) return;
          call.write({ header: hdr, ID: id.toString(), TTL: String(ttl) });
          if (halfClosed) call.end();
          else call.resume();
        },
        (err: unknown) => {
          inFlight = false;
          // grpc-js sends a stream's status only through its "error" event.
          if (!call.destroyed) call.emit("error", this.toServiceError(err));
        },
      );
    });
    call.on("end", () => {
      halfClosed = true;
      if (!inFlight) call.end();
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
    });
    this.streams.add(stream);
    call.on("close", () => {
      stream.closeAll();
      this.streams.delete(stream);
    });
  }

  private onApplied(restored: boolean): void {
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
