/**
 * The load generator's etcd v3 client: grpc-js over leasehold's own protos
 * (src/api/proto.ts `loadEtcdApi`, etcd 3.4's wire names), so the identical
 * bytes go to leasehold and to etcd.
 *
 * Contract:
 * - One client object per process talks to every endpoint of a cluster; each
 *   (endpoint, service) pair gets one grpc-js client, and grpc-js shares one
 *   HTTP/2 connection per endpoint among them.
 * - `unary(service, method, req)` sends to the next endpoint in turn (as
 *   etcd's clientv3 balancer does), `unaryAt(i, …)` to endpoint i; every call
 *   has a deadline and rejects with an Error carrying the gRPC status message.
 * - `stream(i, service, method)` opens a bidi stream on endpoint i; the caller
 *   owns it (write, end, cancel).
 * - Messages are `WireMessage`s as proto-loader decodes them: int64 as decimal
 *   strings, bytes as Buffers (src/api/proto.ts PROTO_LOAD_OPTIONS).
 */

import { type Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { loadEtcdApi, type WireMessage } from "../../src/api/proto.ts";

export type W = WireMessage;

type Unary = (
  req: W,
  md: Metadata,
  opts: { deadline: number },
  cb: (e: ServiceError | null, r?: W) => void,
) => void;
type Ctor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

/** A bidi stream as grpc-js hands it out. */
export interface Duplex extends NodeJS.EventEmitter {
  write(msg: W): boolean;
  end(): void;
  cancel(): void;
}

/** The services the harness calls, by short name, and where proto-loader put them. */
const SERVICES = {
  KV: ["etcdserverpb", "KV"],
  Lease: ["etcdserverpb", "Lease"],
  Watch: ["etcdserverpb", "Watch"],
  Maintenance: ["etcdserverpb", "Maintenance"],
  Lock: ["v3lockpb", "Lock"],
  // leasehold's own (leasehold.v1): only leasehold serves it.
  Leases: ["leasehold", "v1", "Leases"],
} as const;
export type ServiceName = keyof typeof SERVICES;

let ctors: Record<ServiceName, Ctor> | undefined;

function constructors(): Record<ServiceName, Ctor> {
  if (ctors === undefined) {
    const pkgs = loadPackageDefinition(loadEtcdApi().packageDefinition) as unknown as Record<
      string,
      Record<string, Ctor>
    >;
    const out: Partial<Record<ServiceName, Ctor>> = {};
    for (const [name, path] of Object.entries(SERVICES)) {
      let o: unknown = pkgs;
      for (const part of path) o = (o as Record<string, unknown>)[part];
      out[name as ServiceName] = o as Ctor;
    }
    ctors = out as Record<ServiceName, Ctor>;
  }
  return ctors;
}

/** An Error for a failed call: the gRPC status message, the code kept. */
export class CallError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export class BenchClient {
  private readonly clients = new Map<string, Client>();
  private next = 0;

  constructor(
    readonly endpoints: readonly string[],
    private readonly deadlineMs = 10_000,
  ) {
    if (endpoints.length === 0) throw new Error("bench client: no endpoints");
  }

  private client(i: number, service: ServiceName): Client {
    const key = `${i}/${service}`;
    let c = this.clients.get(key);
    if (c === undefined) {
      c = new (constructors()[service])(this.endpoints[i]!, credentials.createInsecure());
      this.clients.set(key, c);
    }
    return c;
  }

  /** The endpoint index the next round-robin call goes to. */
  nextIndex(): number {
    const i = this.next;
    this.next = (i + 1) % this.endpoints.length;
    return i;
  }

  unary(service: ServiceName, method: string, req: W, deadlineMs = this.deadlineMs): Promise<W> {
    return this.unaryAt(this.nextIndex(), service, method, req, deadlineMs);
  }

  unaryAt(i: number, service: ServiceName, method: string, req: W, deadlineMs = this.deadlineMs): Promise<W> {
    const c = this.client(i, service) as Client & Record<string, Unary>;
    const fn = c[method];
    if (fn === undefined) throw new Error(`bench client: ${service} has no method ${method}`);
    return new Promise((resolve, reject) => {
      fn.call(c, req, new Metadata(), { deadline: Date.now() + deadlineMs }, (e, r) => {
        if (e !== null) reject(new CallError(e.code, e.details || e.message));
        else resolve(r!);
      });
    });
  }

  stream(
    i: number,
    service: "Lease" | "Watch" | "Leases",
    method: "LeaseKeepAlive" | "Watch" | "KeepAlive",
  ): Duplex {
    const c = this.client(i, service) as Client & Record<string, (md: Metadata) => Duplex>;
    return c[method]!.call(c, new Metadata());
  }

  // The calls the workloads make, with their wire shapes in one place.

  async leaseGrant(ttlSeconds: number, at?: number): Promise<string> {
    const r = await this.unaryAt(at ?? this.nextIndex(), "Lease", "LeaseGrant", { TTL: String(ttlSeconds) });
    if (typeof r.error === "string" && r.error !== "") throw new Error(r.error);
    return r.ID as string;
  }

  /** Seconds the lease has left (-1: it does not exist), and how many keys it has. */
  async leaseTimeToLive(id: string, at?: number): Promise<{ ttl: number; keys: number }> {
    const r = await this.unaryAt(at ?? this.nextIndex(), "Lease", "LeaseTimeToLive", { ID: id, keys: true });
    return { ttl: Number(r.TTL), keys: (r.keys as unknown[]).length };
  }

  put(key: Buffer, value: Buffer, lease = "0", at?: number): Promise<W> {
    return this.unaryAt(at ?? this.nextIndex(), "KV", "Put", { key, value, lease });
  }

  async get(key: Buffer, at?: number, serializable = false): Promise<Buffer | undefined> {
    const r = await this.unaryAt(at ?? this.nextIndex(), "KV", "Range", { key, serializable });
    const kvs = r.kvs as { value: Buffer }[];
    return kvs[0]?.value;
  }

  /** The current revision, as a number (benchmarks stay far below 2^53). */
  async revision(at?: number): Promise<number> {
    const r = await this.unaryAt(at ?? this.nextIndex(), "KV", "Range", { key: Buffer.from("\0") });
    return Number((r.header as W).revision);
  }

  /** Maintenance.Status of endpoint i: its member id and the leader it knows (decimal strings). */
  async status(i: number, deadlineMs = 1_000): Promise<{ member: string; leader: string }> {
    const r = await this.unaryAt(i, "Maintenance", "Status", {}, deadlineMs);
    return { member: (r.header as W).member_id as string, leader: r.leader as string };
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/** The end of the range holding every key that starts with `prefix` (etcd's prefix end). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
