/**
 * The client port's front door: one listening socket that serves gRPC (HTTP/2)
 * and plain HTTP/1.1 (the JSON gateway, /health, /version, /metrics), in clear
 * or over TLS, as etcd does on its client URLs (etcd uses cmux).
 *
 * Contract:
 * - Each accepted connection (after the TLS handshake on an https URL) is
 *   classified by its first bytes: the HTTP/2 client preface ("PRI * HTTP/2.0")
 *   goes to the grpc-js server through its connection injector; anything else
 *   goes to the node:http server. A connection that closes or stalls before
 *   `SNIFF_TIMEOUT_MS` without enough bytes to decide is dropped.
 * - TLS is terminated here (ALPN h2 and http/1.1). With a client CA, a client
 *   must present a certificate that CA signed, or the handshake fails
 *   (etcd's --client-cert-auth). The grpc-js call still sees the TLS socket,
 *   so `getAuthContext()` gives the client certificate (its CN is the user
 *   name when auth is on).
 * - `close()` stops accepting, destroys the HTTP/1.1 connections and
 *   destroys the connections still being classified; gRPC sessions are ended
 *   by the grpc-js server's own shutdown.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { Server as NetServer, Socket } from "node:net";
import { createServer as createNetServer } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { Server as GrpcServer } from "@grpc/grpc-js";
import { ServerCredentials } from "@grpc/grpc-js";
import { EMPTY_SETTINGS, H2Handshake, HANDSHAKE_IDLE_MS } from "./h2-handshake.ts";

/** The HTTP/2 connection preface a client sends first (RFC 9113 §3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** Bytes needed to tell the preface from an HTTP/1.x request line. */
const SNIFF_BYTES = 3;
/** A connection must show SNIFF_BYTES within this time (or finish TLS). */
export const SNIFF_TIMEOUT_MS = 10_000;

export interface FrontTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Trusted CA for client certificates; when set, clients must present one. */
  readonly clientCa?: Buffer | undefined;
}

export interface ClientFrontOptions {
  readonly grpc: GrpcServer;
  readonly http: (req: IncomingMessage, res: ServerResponse) => void;
  readonly tls?: FrontTls | undefined;
}

export type Protocol = "grpc" | "http1" | "undecided";

/** What the first bytes of a connection say it speaks. */
export function classify(head: Buffer): Protocol {
  const n = Math.min(head.length, HTTP2_PREFACE.length);
  if (head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n)))
    return n >= SNIFF_BYTES ? "grpc" : "undecided";
  return "http1";
}

export class ClientFront {
  private readonly server: NetServer;
  private readonly http: HttpServer;
  private readonly inject: (socket: Socket) => void;
  private readonly sniffing = new Set<Socket>();
  private readonly httpSockets = new Set<Socket>();

  constructor(options: ClientFrontOptions) {
    const injector = options.grpc.createConnectionInjector(ServerCredentials.createInsecure());
    this.inject = (socket) => injector.injectConnection(socket);
    this.http = createHttpServer(options.http);
    this.http.keepAliveTimeout = 5_000;
    // A watch or keepalive stream over the gateway may keep its request open for as long as it likes.
    this.http.requestTimeout = 0;
    const tls = options.tls;
    if (tls === undefined) {
      this.server = createNetServer((socket) => this.sniff(socket));
    } else {
      this.server = createTlsServer(
        {
          cert: tls.cert,
          key: tls.key,
          ALPNProtocols: ["h2", "http/1.1"],
          ...(tls.clientCa === undefined
            ? {}
            : { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true }),
        },
        (socket: TLSSocket) => this.sniff(socket),
      );
      // A failed handshake (no or a bad client certificate) only ends that connection.
      this.server.on("tlsClientError", (_err, socket) => socket.destroy());
    }
    this.server.on("error", () => {});
  }

  /** Listens on host:port (0: any); resolves with the port bound. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        const addr = this.server.address();
        resolve(typeof addr === "object" && addr !== null ? addr.port : port);
      });
    });
  }

  close(): Promise<void> {
    for (const s of this.sniffing) s.destroy();
    this.sniffing.clear();
    for (const s of this.httpSockets) s.destroy();
    this.httpSockets.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Reads until the first bytes decide the protocol, puts them back and hands the socket over. */
  private sniff(socket: Socket): void {
    // No Nagle: a small answer (most are) must not wait for the client's delayed ACK of the last one.
    socket.setNoDelay(true);
    this.sniffing.add(socket);
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onClose);
      this.sniffing.delete(socket);
    };
    const onClose = (): void => done();
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const protocol = classify(head);
      if (protocol === "undecided") return;
      done();
      if (protocol === "grpc") {
        this.handshake(socket, head);
      } else {
        socket.pause();
        socket.unshift(head);
        // node:http tracks connections only on a server that listens itself.
        this.httpSockets.add(socket);
        socket.once("close", () => this.httpSockets.delete(socket));
        this.http.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.on("error", onClose);
  }

  /** Runs the HTTP/2 start (h2-handshake.ts) and hands the connection to gRPC. */
  private handshake(socket: Socket, head: Buffer): void {
    this.sniffing.add(socket);
    const hs = new H2Handshake();
    let idle: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      clearTimeout(idle);
      socket.off("data", onData);
      socket.off("close", done);
      socket.off("error", done);
      this.sniffing.delete(socket);
    };
    const handOver = (): void => {
      done();
      socket.pause();
      socket.unshift(hs.bytes());
      // The HTTP/2 session reads what was put back on the next tick; a
      // flowing socket would emit it to nobody first.
      this.inject(socket);
    };
    const onData = (chunk: Buffer): void => {
      clearTimeout(idle);
      const step = hs.push(chunk);
      if (step === "sendSettings") socket.write(EMPTY_SETTINGS);
      else if (step === "handOver") handOver();
      else if (step === "idle") idle = setTimeout(handOver, HANDSHAKE_IDLE_MS);
    };
    socket.on("data", onData);
    socket.on("close", done);
    socket.on("error", done);
    onData(head);
  }
}
