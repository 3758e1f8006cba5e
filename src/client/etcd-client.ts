/**
 * A minimal etcd v3 client (tests, benchmarks, embedding), on grpc-js and leasehold's own protos
 * (which carry etcd's wire names): put, get, lease grant, one keepalive, TTL.
 * Every call has a deadline; errors come back as the gRPC status message.
 */

import { type Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { loadEtcdApi, type WireMessage } from "../api/index.ts";

type Unary = (
  req: WireMessage,
  md: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, res?: WireMessage) => void,
) => void;
interface Stream extends NodeJS.EventEmitter {
  write(msg: WireMessage): boolean;
  end(): void;
  cancel(): void;
}
type Ctor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

const pkg = loadPackageDefinition(loadEtcdApi().packageDefinition) as unknown as {
  etcdserverpb: { KV: Ctor; Lease: Ctor };
};

export class EtcdTestClient {
  private readonly kv: Client & { Put: Unary; Range: Unary };
  private readonly lease: Client & {
    LeaseGrant: Unary;
    LeaseTimeToLive: Unary;
    LeaseKeepAlive: (md: Metadata, opts: { deadline: number }) => Stream;
  };
  constructor(
    readonly endpoint: string,
    private readonly deadlineMs = 2_000,
  ) {
    const creds = credentials.createInsecure();
    this.kv = new pkg.etcdserverpb.KV(endpoint, creds) as typeof this.kv;
    this.lease = new pkg.etcdserverpb.Lease(endpoint, creds) as typeof this.lease;
  }

  private call(fn: Unary, client: Client, req: WireMessage): Promise<WireMessage> {
    return new Promise((resolve, reject) => {
      fn.call(client, req, new Metadata(), { deadline: Date.now() + this.deadlineMs }, (err, res) => {
        if (err !== null) reject(new Error(err.details || err.message));
        else resolve(res!);
      });
    });
  }

  put(key: string, value: string, lease = "0"): Promise<WireMessage> {
    return this.call(this.kv.Put, this.kv, { key: Buffer.from(key), value: Buffer.from(value), lease });
  }

  /** The value of `key` (undefined: absent); serializable reads answer from this member's state. */
  async get(key: string, serializable = false): Promise<string | undefined> {
    const res = await this.call(this.kv.Range, this.kv, { key: Buffer.from(key), serializable });
    const kvs = res.kvs as { value: Buffer }[];
    return kvs.length === 0 ? undefined : kvs[0]!.value.toString();
  }

  async leaseGrant(ttlSeconds: number): Promise<string> {
    const res = await this.call(this.lease.LeaseGrant, this.lease, { TTL: String(ttlSeconds) });
    return res.ID as string;
  }

  /** Seconds left (-1: expired or unknown). */
  async leaseTtl(id: string): Promise<number> {
    const res = await this.call(this.lease.LeaseTimeToLive, this.lease, { ID: id });
    return Number(res.TTL);
  }

  /** One keepalive on a fresh stream: the TTL answered (0: the lease is gone). */
  keepAliveOnce(id: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const stream = this.lease.LeaseKeepAlive(new Metadata(), { deadline: Date.now() + this.deadlineMs });
      stream.on("data", (res: WireMessage) => {
        resolve(Number(res.TTL));
        stream.cancel();
      });
      stream.on("error", (e: ServiceError) => reject(new Error(e.details || e.message)));
      stream.write({ ID: id });
    });
  }

  close(): void {
    this.kv.close();
    this.lease.close();
  }
}
