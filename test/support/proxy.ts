/**
 * A fault-injecting TCP proxy for peer traffic, in front of one member's peer
 * port: members dial the proxy (it is the URL --initial-cluster advertises),
 * and it forwards to the member's real listener. It reads the dialer's member
 * id from the peer handshake (src/transport/wire.ts: magic u32, version u16,
 * from u64, big-endian) so that it can cut one pair of members: `block(from)`
 * refuses new connections from that member and closes the open ones.
 */

import { createConnection, createServer, type Server, type Socket } from "node:net";

const FROM_OFFSET = 6;
const FROM_END = 14;

export class PeerProxy {
  private readonly server: Server;
  private readonly blocked = new Set<number>();
  private readonly open = new Map<Socket, { from: number; upstream: Socket }>();

  constructor(
    readonly listenPort: number,
    private readonly targetPort: number,
  ) {
    this.server = createServer((socket) => this.accept(socket));
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.listenPort, "127.0.0.1", () => resolve());
    });
  }

  /** Cuts the member `from` off from the member behind this proxy. */
  block(from: number): void {
    this.blocked.add(from);
    for (const [socket, c] of this.open) {
      if (c.from !== from) continue;
      socket.destroy();
      c.upstream.destroy();
      this.open.delete(socket);
    }
  }

  unblock(from: number): void {
    this.blocked.delete(from);
  }

  close(): Promise<void> {
    for (const [socket, c] of this.open) {
      socket.destroy();
      c.upstream.destroy();
    }
    this.open.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    let head = Buffer.alloc(0);
    socket.on("error", () => {});
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < FROM_END) return;
      socket.pause(); // no data may flow past while there is no listener; pipe() resumes
      socket.off("data", onData);
      const from = Number(head.readBigUInt64BE(FROM_OFFSET));
      if (this.blocked.has(from)) {
        socket.destroy();
        return;
      }
      const upstream = createConnection({ host: "127.0.0.1", port: this.targetPort });
      upstream.on("error", () => socket.destroy());
      socket.on("close", () => {
        upstream.destroy();
        this.open.delete(socket);
      });
      upstream.on("close", () => socket.destroy());
      upstream.write(head);
      socket.pipe(upstream);
      upstream.pipe(socket);
      this.open.set(socket, { from, upstream });
    };
    socket.on("data", onData);
  }
}
