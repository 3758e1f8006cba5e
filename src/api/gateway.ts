/**
 * The plain-HTTP surface of the client port, as etcd 3.4 serves it (the
 * front door, front.ts, hands every HTTP/1.1 request here): the JSON gateway
 * (grpc-gateway, POST /v3/...), /health, /version and /metrics.
 *
 * The gateway runs the very handlers gRPC runs: each route names a gRPC
 * method, and its implementation (ApiHost.methods) is called in process with
 * a call object shaped like grpc-js's (request, metadata, getPeer,
 * cancelled; a stream is a Duplex of messages). The JSON mapping is
 * gateway-json.ts. What etcd 3.4.23 answers (checked with curl against the
 * Debian build, whose grpc-gateway predates v1.9.5):
 *
 * - Routes: etcdserverpb/gw, v3lockpb/gw, v3electionpb/gw (`GATEWAY_ROUTES`),
 *   POST only (another method: 405 "Method Not Allowed"; an unknown /v3/
 *   path: 404 "Not Found"); /v3beta/ is rewritten to /v3/. Every answer
 *   carries etcd's CORS headers; OPTIONS answers 200 with no body.
 * - Body: one JSON value (whitespace only: the empty request; anything after
 *   the value is ignored); the HTTP `Authorization` header is the auth token.
 * - Unary answer: 200, the response as JSON, `Grpc-Metadata-Content-Type:
 *   application/grpc`. A body that does not decode: 400
 *   `{"error":m,"message":m,"code":3}` with Go's decoder text. An error from
 *   the handler: the same shape with its code, the HTTP status grpc-gateway
 *   maps from the code (`HTTP_STATUS_BY_GRPC_CODE`), chunked, with the
 *   trailer `Grpc-Trailer-Content-Type: application/grpc`.
 * - Streams (Watch, LeaseKeepAlive, Snapshot, Observe): one line
 *   `{"result":{...}}` per message. A bidi body may hold several requests,
 *   sent in order as they arrive; its end half-closes the stream (a
 *   keepalive stream then ends; a watch stays open until the client hangs
 *   up). A first request that does not decode answers 500 code 2 as above;
 *   a later one ends the requests. An error from the handler is written as
 *   `{"error":{"grpc_code":..,"http_code":..,"message":..,"http_status":..}}`
 *   (with that HTTP status if nothing was written before).
 * - /health: GET; `{"health":"true"}` 200, or `{"health":"false"}` 503 when
 *   an alarm is raised (`?exclude=NOSPACE` ignores one), no leader is known,
 *   or a linearizable read does not complete within a second (etcd's QGET).
 *   /version: GET; `{"etcdserver":..,"etcdcluster":..}`. /metrics: the
 *   member's Prometheus text (metrics.ts).
 * Any other path: 404 "404 page not found". Nothing here throws past the
 * handler: an unexpected failure is logged and answered 500.
 */

import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { STATUS_CODES } from "node:http";
import { Duplex } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type { ServiceError, sendUnaryData } from "@grpc/grpc-js";
import { status as GrpcStatus, Metadata } from "@grpc/grpc-js";
import type protobuf from "protobufjs";
import { assert, NO_MEMBER } from "../raft/index.ts";
import type { ApiHost, Bidi, RegisteredMethod, ServerStream, Unary } from "./context.ts";
import {
  GatewayJsonError,
  type JsonScan,
  messageFromJson,
  messageToJson,
  methodTypes,
  plainToJson,
  scanJsonValue,
} from "./gateway-json.ts";
import { REPORTED_VERSION } from "./maintenance.ts";
import type { MemberMetrics } from "./metrics.ts";
import type { WireMessage } from "./proto.ts";

type W = WireMessage;

/** What the front door calls for each HTTP/1.1 request. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface GatewayOptions {
  /** The member's metrics, served on /metrics; without them /metrics is 404. */
  readonly metrics?: MemberMetrics | undefined;
  readonly log?: ((level: "info" | "warn" | "error", msg: string) => void) | undefined;
  /** How long /health's linearizable read may take (etcd's QGET: 1 s). */
  readonly healthTimeoutMs?: number | undefined;
}

/**
 * etcd 3.4's gateway routes: HTTP path → gRPC method. /v3/maintenance/hash is
 * registered for Hash and HashKV; Hash answers (registered first), as in etcd.
 */
export const GATEWAY_ROUTES: ReadonlyMap<string, string> = new Map([
  ["/v3/kv/range", "/etcdserverpb.KV/Range"],
  ["/v3/kv/put", "/etcdserverpb.KV/Put"],
  ["/v3/kv/deleterange", "/etcdserverpb.KV/DeleteRange"],
  ["/v3/kv/txn", "/etcdserverpb.KV/Txn"],
  ["/v3/kv/compaction", "/etcdserverpb.KV/Compact"],
  ["/v3/watch", "/etcdserverpb.Watch/Watch"],
  ["/v3/lease/grant", "/etcdserverpb.Lease/LeaseGrant"],
  ["/v3/lease/revoke", "/etcdserverpb.Lease/LeaseRevoke"],
  ["/v3/kv/lease/revoke", "/etcdserverpb.Lease/LeaseRevoke"],
  ["/v3/lease/keepalive", "/etcdserverpb.Lease/LeaseKeepAlive"],
  ["/v3/lease/timetolive", "/etcdserverpb.Lease/LeaseTimeToLive"],
  ["/v3/kv/lease/timetolive", "/etcdserverpb.Lease/LeaseTimeToLive"],
  ["/v3/lease/leases", "/etcdserverpb.Lease/LeaseLeases"],
  ["/v3/kv/lease/leases", "/etcdserverpb.Lease/LeaseLeases"],
  ["/v3/cluster/member/add", "/etcdserverpb.Cluster/MemberAdd"],
  ["/v3/cluster/member/remove", "/etcdserverpb.Cluster/MemberRemove"],
  ["/v3/cluster/member/update", "/etcdserverpb.Cluster/MemberUpdate"],
  ["/v3/cluster/member/list", "/etcdserverpb.Cluster/MemberList"],
  ["/v3/cluster/member/promote", "/etcdserverpb.Cluster/MemberPromote"],
  ["/v3/maintenance/alarm", "/etcdserverpb.Maintenance/Alarm"],
  ["/v3/maintenance/status", "/etcdserverpb.Maintenance/Status"],
  ["/v3/maintenance/defragment", "/etcdserverpb.Maintenance/Defragment"],
  ["/v3/maintenance/hash", "/etcdserverpb.Maintenance/Hash"],
  ["/v3/maintenance/snapshot", "/etcdserverpb.Maintenance/Snapshot"],
  ["/v3/maintenance/transfer-leadership", "/etcdserverpb.Maintenance/MoveLeader"],
  ["/v3/auth/enable", "/etcdserverpb.Auth/AuthEnable"],
  ["/v3/auth/disable", "/etcdserverpb.Auth/AuthDisable"],
  ["/v3/auth/authenticate", "/etcdserverpb.Auth/Authenticate"],
  ["/v3/auth/user/add", "/etcdserverpb.Auth/UserAdd"],
  ["/v3/auth/user/get", "/etcdserverpb.Auth/UserGet"],
  ["/v3/auth/user/list", "/etcdserverpb.Auth/UserList"],
  ["/v3/auth/user/delete", "/etcdserverpb.Auth/UserDelete"],
  ["/v3/auth/user/changepw", "/etcdserverpb.Auth/UserChangePassword"],
  ["/v3/auth/user/grant", "/etcdserverpb.Auth/UserGrantRole"],
  ["/v3/auth/user/revoke", "/etcdserverpb.Auth/UserRevokeRole"],
  ["/v3/auth/role/add", "/etcdserverpb.Auth/RoleAdd"],
  ["/v3/auth/role/get", "/etcdserverpb.Auth/RoleGet"],
  ["/v3/auth/role/list", "/etcdserverpb.Auth/RoleList"],
  ["/v3/auth/role/delete", "/etcdserverpb.Auth/RoleDelete"],
  ["/v3/auth/role/grant", "/etcdserverpb.Auth/RoleGrantPermission"],
  ["/v3/auth/role/revoke", "/etcdserverpb.Auth/RoleRevokePermission"],
  ["/v3/lock/lock", "/v3lockpb.Lock/Lock"],
  ["/v3/lock/unlock", "/v3lockpb.Lock/Unlock"],
  ["/v3/election/campaign", "/v3electionpb.Election/Campaign"],
  ["/v3/election/proclaim", "/v3electionpb.Election/Proclaim"],
  ["/v3/election/leader", "/v3electionpb.Election/Leader"],
  ["/v3/election/observe", "/v3electionpb.Election/Observe"],
  ["/v3/election/resign", "/v3electionpb.Election/Resign"],
]);

/**
 * grpc-gateway's HTTPStatusFromCode as etcd 3.4.23's Debian build has it
 * (FailedPrecondition is 412; grpc-gateway v1.9.5, upstream's pin, says 400).
 */
export const HTTP_STATUS_BY_GRPC_CODE: readonly number[] = [
  200, 408, 500, 400, 504, 404, 409, 403, 429, 412, 409, 400, 501, 500, 503, 500, 401,
];

/** The largest encoded request a method takes: etcd's --max-request-bytes plus gRPC's 512 KiB allowance. */
export const GATEWAY_MESSAGE_BYTES_MAX = 1.5 * 1024 * 1024 + 512 * 1024;
/** The most JSON text one request may take (base64 makes bytes a third bigger); more is refused unread. */
export const GATEWAY_REQUEST_TEXT_MAX = 4 * GATEWAY_MESSAGE_BYTES_MAX;
/** etcd's health check bound on its consensus read. */
const HEALTH_TIMEOUT_MS = 1_000;

const CORS_HEADERS: Readonly<Record<string, string>> = {
  "Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "accept, content-type, authorization",
};

/** One gateway route, resolved against the host's methods and the protos. */
interface Route {
  readonly grpcPath: string;
  readonly method: RegisteredMethod;
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
}

/** An error to answer in grpc-gateway's shape: a gRPC code and message. */
interface GrpcFailure {
  readonly code: number;
  readonly message: string;
}

/** A request the gateway refuses before calling the handler: answered with `failure`. */
class RequestRefused extends Error {
  constructor(readonly failure: GrpcFailure) {
    super(failure.message);
  }
}

/**
 * The client port's HTTP/1.1 handler for `host`: the JSON gateway, /health,
 * /version and /metrics (see the header).
 */
export function createHttpHandler(host: ApiHost, options: GatewayOptions = {}): HttpHandler {
  const gateway = new Gateway(host, options);
  return (req, res) => gateway.serve(req, res);
}

function httpStatusOf(code: number): number {
  return HTTP_STATUS_BY_GRPC_CODE[code] ?? 500;
}

/** What a handler's error says, as grpc-js would send it. */
function failureOf(err: Partial<Pick<ServiceError, "code" | "details" | "message">>): GrpcFailure {
  const code = typeof err.code === "number" ? err.code : GrpcStatus.UNKNOWN;
  return { code, message: err.details ?? err.message ?? "" };
}

/** grpc-gateway's unary error body (empty fields are left out, as jsonpb does). */
function errorBody(f: GrpcFailure): string {
  const body: Record<string, string | number> = {};
  if (f.message !== "") {
    body.error = f.message;
    body.message = f.message;
  }
  if (f.code !== 0) body.code = f.code;
  return plainToJson(body);
}

/** Go's http.Error: a text/plain line. */
function plainError(res: ServerResponse, statusCode: number, text: string, allow?: string): void {
  if (allow !== undefined) res.setHeader("Allow", allow);
  const body = `${text}\n`;
  res.writeHead(statusCode, {
    "Content-Type": "text/plain; charset=utf-8",
    "X-Content-Type-Options": "nosniff",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}

/** The auth token (etcd's gateway passes Authorization as the token). */
function metadataOf(req: IncomingMessage): Metadata {
  const md = new Metadata();
  const auth = req.headers.authorization;
  // grpc-js takes printable ASCII only; another token cannot be valid, and is left out.
  if (auth !== undefined && /^[ -~]*$/.test(auth)) {
    md.set("token", auth);
    md.set("authorization", auth);
  }
  return md;
}

function peerOf(req: IncomingMessage): string {
  return `${req.socket.remoteAddress ?? "unknown"}:${req.socket.remotePort ?? 0}`;
}

class Gateway {
  private readonly routes = new Map<string, Route>();

  constructor(
    private readonly host: ApiHost,
    private readonly options: GatewayOptions,
  ) {
    for (const [httpPath, grpcPath] of GATEWAY_ROUTES) {
      const method = host.methods.get(grpcPath);
      assert(method !== undefined, `gateway: ${grpcPath} (for ${httpPath}) is not registered`);
      assert(
        !method.definition.requestStream || method.definition.responseStream,
        `gateway: ${grpcPath} is client-streaming`,
      );
      this.routes.set(httpPath, { grpcPath, method, ...methodTypes(grpcPath) });
    }
  }

  serve(req: IncomingMessage, res: ServerResponse): void {
    // A request the client aborts emits 'error'; the response's 'close' is where that is handled.
    req.on("error", () => {});
    try {
      this.route(req, res);
    } catch (err) {
      this.fail(res, err);
    }
  }

  /** An unexpected failure: logged, answered 500 if nothing was sent yet, the connection closed otherwise. */
  fail(res: ServerResponse, err: unknown): void {
    this.options.log?.("error", `gateway: unexpected ${(err as Error)?.stack ?? String(err)}`);
    if (!res.headersSent) plainError(res, 500, "Internal Server Error");
    else res.destroy();
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    for (const [name, value] of Object.entries(CORS_HEADERS)) res.setHeader(name, value);
    if (req.method === "OPTIONS") {
      res.writeHead(200, { "Content-Length": "0" });
      res.end();
      return;
    }
    // Prefixed, so that a path starting "//" stays a path (not a host).
    const url = new URL(`http://localhost${req.url ?? "/"}`);
    let path = url.pathname;
    if (path.startsWith("/v3beta/")) path = `/v3/${path.slice("/v3beta/".length)}`;
    if (path.startsWith("/v3/")) {
      const route = this.routes.get(path);
      if (route === undefined) plainError(res, 404, "Not Found");
      else if (req.method !== "POST") plainError(res, 405, "Method Not Allowed");
      else this.call(route, req, res);
      return;
    }
    switch (path) {
      case "/health":
        if (req.method !== "GET") plainError(res, 405, "Method Not Allowed", "GET");
        else this.health(url, res).catch((err: unknown) => this.fail(res, err));
        return;
      case "/version":
        if (req.method !== "GET") plainError(res, 405, "Method Not Allowed", "GET");
        else {
          const body = plainToJson({ etcdserver: REPORTED_VERSION, etcdcluster: REPORTED_VERSION });
          res.writeHead(200, {
            "Content-Type": "application/json",
            "Content-Length": Buffer.byteLength(body),
          });
          res.end(body);
        }
        return;
      case "/metrics":
        if (this.options.metrics === undefined) plainError(res, 404, "404 page not found");
        else this.metrics(this.options.metrics, res).catch((err: unknown) => this.fail(res, err));
        return;
      default:
        plainError(res, 404, "404 page not found");
    }
  }

  // ---------------------------------------------------------------- the gateway

  private call(route: Route, req: IncomingMessage, res: ServerResponse): void {
    const def = route.method.definition;
    if (def.requestStream) {
      new BidiExchange(this, route, req, res).start();
      return;
    }
    readBody(req, res, (text) =>
      this.guard(res, () => {
        let request: W;
        try {
          request = this.decode(route, scanJsonValue(text, 0, true));
        } catch (err) {
          if (!(err instanceof RequestRefused)) throw err;
          writeUnaryError(res, err.failure, false);
          return;
        }
        if (def.responseStream) this.serverStream(route, request, req, res);
        else this.unary(route, request, req, res);
      }),
    );
  }

  /** Runs `f` (an event handler's body): what it throws is answered 500, never thrown past the event. */
  guard(res: ServerResponse, f: () => void): void {
    try {
      f();
    } catch (err) {
      this.fail(res, err);
    }
  }

  /**
   * The request a scanned body holds, as grpc-js would hand it to the
   * handler. RequestRefused: code 3 with Go's decoder text, or code 8 for a
   * message over GATEWAY_MESSAGE_BYTES_MAX (grpc-go's text).
   */
  decode(route: Route, scan: JsonScan): W {
    assert(scan.kind !== "incomplete", "gateway: a final scan is never incomplete");
    const refused = (message: string) => new RequestRefused({ code: GrpcStatus.INVALID_ARGUMENT, message });
    if (scan.kind === "error") throw refused(scan.message);
    let plain: W = {};
    try {
      if (scan.kind === "value") plain = messageFromJson(route.request, scan.value);
    } catch (err) {
      if (err instanceof GatewayJsonError) throw refused(err.message);
      throw err;
    }
    const bytes = route.method.definition.requestSerialize(plain);
    if (bytes.length > GATEWAY_MESSAGE_BYTES_MAX)
      throw new RequestRefused({
        code: GrpcStatus.RESOURCE_EXHAUSTED,
        message: `grpc: received message larger than max (${bytes.length} vs. ${GATEWAY_MESSAGE_BYTES_MAX})`,
      });
    return route.method.definition.requestDeserialize(bytes);
  }

  /** A response message as the gateway's JSON. */
  encode(route: Route, message: W): string {
    return messageToJson(route.response, route.method.definition.responseSerialize(message));
  }

  private unary(route: Route, request: W, req: IncomingMessage, res: ServerResponse): void {
    const call = new GatewayUnaryCall(request, metadataOf(req), peerOf(req), route.grpcPath);
    res.on("close", () => {
      if (!res.writableFinished) call.cancel();
    });
    const callback: sendUnaryData<W> = (err, value) => {
      if (res.destroyed || res.writableEnded) return;
      try {
        if (err !== null && err !== undefined) {
          writeUnaryError(res, failureOf(err), true);
          return;
        }
        const body = this.encode(route, value ?? {});
        res.writeHead(200, {
          "Content-Type": "application/json",
          "Grpc-Metadata-Content-Type": "application/grpc",
          "Content-Length": Buffer.byteLength(body),
        });
        res.end(body);
      } catch (e) {
        this.fail(res, e);
      }
    };
    (route.method.implementation as unknown as Unary)(call as never, callback);
  }

  private serverStream(route: Route, request: W, req: IncomingMessage, res: ServerResponse): void {
    const call = new GatewayStreamCall(this, route, req, res);
    call.request = request;
    call.push(null);
    (route.method.implementation as unknown as ServerStream)(call as never);
  }

  /** Starts a bidi handler on `call` (BidiExchange calls it once the first request is read). */
  startBidi(route: Route, call: GatewayStreamCall): void {
    (route.method.implementation as unknown as Bidi)(call as never);
  }

  logError(err: unknown): void {
    this.options.log?.("error", `gateway: unexpected ${(err as Error)?.stack ?? String(err)}`);
  }

  // ---------------------------------------------------------------- /health, /metrics

  private async health(url: URL, res: ServerResponse): Promise<void> {
    const healthy = await this.healthy(new Set(url.searchParams.getAll("exclude")));
    this.options.metrics?.observeHealth(healthy);
    const body = plainToJson({ health: String(healthy) });
    if (healthy) {
      res.writeHead(200, {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": Buffer.byteLength(body),
      });
      res.end(body);
    } else plainError(res, 503, body);
  }

  /**
   * etcd's checkHealth: a leader, no alarm (but the excluded), and a read
   * through consensus (etcd's QGET), the last two within the bound. The
   * leader comes first here: without one, the alarm list (itself a
   * linearizable read) would only wait out its timeout.
   */
  private async healthy(excluded: ReadonlySet<string>): Promise<boolean> {
    const member = this.host.member;
    if (member.leader === NO_MEMBER) return false;
    const timeoutMs = this.options.healthTimeoutMs ?? HEALTH_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const check = async (): Promise<boolean> => {
      const alarms = await this.alarms();
      if (alarms.some((a) => !excluded.has(a))) return false;
      return member.read(true, () => true);
    };
    const checked = check().catch((err: unknown) => {
      this.options.log?.("warn", `/health: ${(err as Error).message}`);
      return false;
    });
    try {
      return await Promise.race([checked, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The names of the raised alarms, from the Alarm method itself (action GET). */
  private alarms(): Promise<string[]> {
    const route = this.routes.get("/v3/maintenance/alarm");
    assert(route !== undefined, "gateway: no alarm route");
    const def = route.method.definition;
    const request = def.requestDeserialize(def.requestSerialize({}));
    const call = new GatewayUnaryCall(request, new Metadata(), "health", route.grpcPath);
    return new Promise((resolve, reject) => {
      (route.method.implementation as unknown as Unary)(call as never, (err, value) => {
        if (err !== null && err !== undefined) {
          reject(err);
          return;
        }
        const bytes = def.responseSerialize(value ?? {});
        const decoded = route.response.toObject(route.response.decode(bytes), {
          enums: String,
          longs: String,
        });
        const list = (decoded.alarms ?? []) as { alarm?: string }[];
        resolve(list.map((a) => a.alarm ?? "NONE").filter((a) => a !== "NONE"));
      });
    });
  }

  private async metrics(metrics: MemberMetrics, res: ServerResponse): Promise<void> {
    const body = await metrics.text();
    res.writeHead(200, { "Content-Type": metrics.contentType, "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  }
}

/**
 * Reads a whole body (unary and server-streaming requests), up to
 * GATEWAY_REQUEST_TEXT_MAX characters; a bigger one is refused unread and
 * its connection closed.
 */
function readBody(req: IncomingMessage, res: ServerResponse, done: (text: string) => void): void {
  const decoder = new StringDecoder("utf8");
  let text = "";
  let refused = false;
  req.on("data", (chunk: Buffer) => {
    if (refused) return;
    text += decoder.write(chunk);
    if (text.length <= GATEWAY_REQUEST_TEXT_MAX) return;
    refused = true;
    text = "";
    res.setHeader("Connection", "close");
    writeUnaryError(res, tooLarge(), false);
    res.once("finish", () => req.destroy());
  });
  req.on("end", () => {
    if (!refused) done(text + decoder.end());
  });
}

function tooLarge(): GrpcFailure {
  return {
    code: GrpcStatus.RESOURCE_EXHAUSTED,
    message: `leasehold: request body larger than ${GATEWAY_REQUEST_TEXT_MAX} characters`,
  };
}

/**
 * A unary error in grpc-gateway's shape. `fromHandler`: the gRPC call failed
 * (chunked, with the gRPC content-type trailer); else the gateway refused
 * the request before calling.
 */
function writeUnaryError(res: ServerResponse, f: GrpcFailure, fromHandler: boolean): void {
  const body = errorBody(f);
  const statusCode = httpStatusOf(f.code);
  if (!fromHandler) {
    res.writeHead(statusCode, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(body);
    return;
  }
  res.writeHead(statusCode, { "Content-Type": "application/json", Trailer: "Grpc-Trailer-Content-Type" });
  res.write(body);
  res.addTrailers({ "Grpc-Trailer-Content-Type": "application/grpc" });
  res.end();
}

/** A unary call as a handler sees it (grpc-js ServerUnaryCall's parts that handlers use). */
class GatewayUnaryCall extends EventEmitter {
  cancelled = false;

  constructor(
    readonly request: W,
    readonly metadata: Metadata,
    private readonly peer: string,
    private readonly path: string,
  ) {
    super();
  }

  getPeer(): string {
    return this.peer;
  }

  getPath(): string {
    return this.path;
  }

  getDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }

  sendMetadata(_md: Metadata): void {}

  /** The HTTP client went away before the answer. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit("cancelled", "cancelled");
  }
}

/**
 * A streaming call as a handler sees it: a Duplex of messages (requests
 * read, responses written), with grpc-js's call parts. Writes become
 * `{"result":...}` lines on the HTTP response; `end()` ends it; an 'error'
 * the handler emits (grpc-js's way to send a status) becomes the error
 * chunk. When the response is over, or the client hangs up (then
 * `cancelled` is set and "cancelled" emitted), the stream is destroyed,
 * which emits 'close'.
 */
class GatewayStreamCall extends Duplex {
  request: W = {};
  readonly metadata: Metadata;
  cancelled = false;
  /** The HTTP response is over (ended by the handler, an error, or the client). */
  private done = false;
  /** Something was written: the status line and headers are out. */
  private started = false;
  /** Called when the handler reads again after a full buffer (bidi: resume the body). */
  onRead: () => void = () => {};

  constructor(
    private readonly gateway: Gateway,
    private readonly route: Route,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
  ) {
    super({ objectMode: true, allowHalfOpen: true, autoDestroy: false });
    this.metadata = metadataOf(req);
    // grpc-js: an 'error' emitted by the handler is the call's status.
    this.on("error", (err: Error) => this.finishWithError(failureOf(err)));
    res.on("close", () => {
      if (!this.done) {
        this.done = true;
        this.cancelled = true;
        this.emit("cancelled", "cancelled");
      }
      this.destroy();
    });
  }

  getPeer(): string {
    return peerOf(this.req);
  }

  getPath(): string {
    return this.route.grpcPath;
  }

  getDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }

  sendMetadata(_md: Metadata): void {}

  override _read(): void {
    this.onRead();
  }

  override _write(message: W, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.done) {
      callback();
      return;
    }
    let line: string;
    try {
      line = `{"result":${this.gateway.encode(this.route, message)}}\n`;
    } catch (err) {
      this.gateway.logError(err);
      this.finishWithError({ code: GrpcStatus.INTERNAL, message: "etcdserver: internal error" });
      callback();
      return;
    }
    if (!this.started) {
      this.started = true;
      this.res.writeHead(200, {
        "Content-Type": "application/json",
        "Grpc-Metadata-Content-Type": "application/grpc",
      });
    }
    if (this.res.write(line)) callback();
    else {
      // The client reads slowly: the handler waits (its write() returns false until 'drain').
      const go = (): void => {
        this.res.off("drain", go);
        this.res.off("close", go);
        callback();
      };
      this.res.on("drain", go);
      this.res.on("close", go);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.done) {
      this.done = true;
      if (!this.started) this.res.writeHead(200, { "Content-Type": "application/json" });
      this.res.end();
    }
    callback();
  }

  private finishWithError(f: GrpcFailure): void {
    if (this.done) return;
    this.done = true;
    const httpCode = httpStatusOf(f.code);
    if (!this.started) this.res.writeHead(httpCode, { "Content-Type": "application/json" });
    const chunk: Record<string, string | number> = { grpc_code: f.code, http_code: httpCode };
    if (f.message !== "") chunk.message = f.message;
    chunk.http_status = STATUS_CODES[httpCode] ?? "";
    this.res.end(`{"error":${plainToJson(chunk)}}`);
  }
}

/**
 * A bidi call over one HTTP exchange: the body's JSON values are the
 * requests. The handler starts once the first is read (or the body ended
 * empty); a first request that does not decode answers 500 code 2 and
 * starts nothing (grpc-gateway: the decode error is not a gRPC status);
 * a later bad one ends the requests, as does the body's end.
 */
class BidiExchange {
  private readonly decoder = new StringDecoder("utf8");
  private text = "";
  private call: GatewayStreamCall | undefined;
  /** No more requests are taken (the body ended, or one did not decode). */
  private closed = false;

  constructor(
    private readonly gateway: Gateway,
    private readonly route: Route,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
  ) {}

  start(): void {
    const input = (text: string, final: boolean): void =>
      this.gateway.guard(this.res, () => {
        try {
          this.input(text, final);
        } catch (err) {
          this.closed = true;
          throw err;
        }
      });
    this.req.on("data", (chunk: Buffer) => input(this.decoder.write(chunk), false));
    this.req.on("end", () => input(this.decoder.end(), true));
  }

  private input(more: string, final: boolean): void {
    if (this.closed) return;
    this.text += more;
    for (;;) {
      const scan = scanJsonValue(this.text, 0, final);
      if (scan.kind === "incomplete") {
        if (this.text.length > GATEWAY_REQUEST_TEXT_MAX) this.refuse(tooLarge());
        return;
      }
      if (scan.kind === "eof") {
        this.endRequests();
        return;
      }
      let request: W;
      try {
        request = this.gateway.decode(this.route, scan);
      } catch (err) {
        if (!(err instanceof RequestRefused)) throw err;
        // grpc-gateway's stream Send fails with the decoder's plain error: code Unknown.
        const f = err.failure;
        this.refuse(
          f.code === GrpcStatus.INVALID_ARGUMENT ? { code: GrpcStatus.UNKNOWN, message: f.message } : f,
        );
        return;
      }
      assert(scan.kind === "value", "gateway: a decoded scan is a value");
      this.text = this.text.slice(scan.end);
      this.send(request);
    }
  }

  /** Hands one request to the handler, starting it on the first. */
  private send(request: W): void {
    const call = this.open();
    if (!call.push(request)) {
      this.req.pause();
      call.onRead = () => this.req.resume();
    }
  }

  private open(): GatewayStreamCall {
    if (this.call !== undefined) return this.call;
    const call = new GatewayStreamCall(this.gateway, this.route, this.req, this.res);
    this.call = call;
    this.gateway.startBidi(this.route, call);
    return call;
  }

  /** The client's half-close. */
  private endRequests(): void {
    this.closed = true;
    this.open().push(null);
  }

  /** A request that cannot be read: before the stream started, the answer; after, the end of requests. */
  private refuse(f: GrpcFailure): void {
    this.closed = true;
    this.text = "";
    this.req.resume(); // the rest of the body is read and dropped
    if (this.call === undefined) {
      writeUnaryError(this.res, f, false);
      return;
    }
    this.call.push(null);
  }
}
