/**
 * The in-process harness of the Lock and Election tests: one member (a
 * cluster of one, in memory) serving the API on a loopback port, with
 * proto-loader clients. Every call has a deadline; what the server logs
 * above info goes to `log` (the tests expect it to stay empty).
 */

import {
  type Client,
  type ClientUnaryCall,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadEtcdApi, type WireMessage } from "../../src/api/index.ts";
import { ApiServer } from "../../src/api/server.ts";
import type { RaftInitialState } from "../../src/raft/index.ts";
import { bootstrapState, memberId } from "../../src/raft/index.ts";
import { Member } from "../../src/server/member.ts";

type W = WireMessage;
const api = loadEtcdApi();
export const DEADLINE_MS = 10_000;
export const B = (s: string): Buffer => Buffer.from(s);
export const S = (b: unknown): string => Buffer.from(b as Buffer).toString();

type ClientCtor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;
export type UnaryFn = (
  req: W,
  md: Metadata,
  opts: { deadline: number },
  cb: (e: ServiceError | null, r?: W) => void,
) => ClientUnaryCall;

/** A unary call in flight: its answer (or error) and the way to cancel it. */
export interface Pending {
  readonly answer: Promise<W>;
  readonly call: ClientUnaryCall;
}

export class RecipeNode {
  readonly member: Member;
  readonly server: ApiServer;
  private readonly clients = new Map<string, Client & Record<string, UnaryFn>>();
  address = "";

  constructor(log: string[], initial?: RaftInitialState, minLeaseTtlSeconds?: number) {
    const id = memberId(1);
    this.member = new Member(
      { id, heartbeatMs: 10, electionMs: 50, snapshotCount: 1_000_000, minLeaseTtlSeconds },
      initial ?? bootstrapState([id]),
      { save: () => {}, saveSnapshot: () => {} },
      { send: () => false },
    );
    this.server = new ApiServer({
      member: this.member,
      clusterId: 0x1234n,
      dbSize: () => 0,
      log: (level, msg) => {
        if (level !== "info") log.push(`${level}: ${msg}`);
      },
    });
  }

  async start(): Promise<this> {
    const port = await this.server.listen("127.0.0.1", 0);
    this.address = `127.0.0.1:${port}`;
    this.member.start();
    return this;
  }

  async stop(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    await this.server.close();
    this.member.stop();
  }

  /** The client of `service` ("v3lockpb.Lock", "etcdserverpb.KV", ...). */
  client(service: string): Client & Record<string, UnaryFn> {
    let c = this.clients.get(service);
    if (c === undefined) {
      // "v3lockpb.Lock", "leasehold.v1.Leases": packages nest at each dot.
      let ctor: unknown = loadPackageDefinition(api.packageDefinition);
      for (const part of service.split(".")) ctor = (ctor as Record<string, unknown>)[part];
      c = new (ctor as ClientCtor)(this.address, credentials.createInsecure()) as Client &
        Record<string, UnaryFn>;
      this.clients.set(service, c);
    }
    return c;
  }

  call(service: string, method: string, req: W, metadata: Metadata = new Metadata()): Pending {
    const c = this.client(service);
    let call!: ClientUnaryCall;
    const answer = new Promise<W>((resolve, reject) => {
      call = c[method]!.call(c, req, metadata, { deadline: Date.now() + DEADLINE_MS }, (e, r) =>
        e ? reject(e) : resolve(r!),
      );
    });
    answer.catch(() => {});
    return { answer, call };
  }

  unary(service: string, method: string, req: W): Promise<W> {
    return this.call(service, method, req).answer;
  }

  async grant(ttl = 60): Promise<string> {
    return String((await this.unary("etcdserverpb.Lease", "LeaseGrant", { TTL: ttl })).ID);
  }

  revoke(id: string): Promise<W> {
    return this.unary("etcdserverpb.Lease", "LeaseRevoke", { ID: id });
  }

  async get(key: string): Promise<W | undefined> {
    const r = await this.unary("etcdserverpb.KV", "Range", { key: B(key) });
    return (r.kvs as W[])[0];
  }
}

/** The error a call ends with: its code, message and leasehold trailers. */
export async function failure(
  p: Promise<unknown>,
): Promise<{ code: number; message: string; md: Record<string, string> }> {
  try {
    await p;
  } catch (e) {
    const err = e as ServiceError;
    const md: Record<string, string> = {};
    for (const [k, v] of Object.entries(err.metadata?.getMap() ?? {})) md[k] = String(v);
    return { code: err.code, message: err.details, md };
  }
  throw new Error("expected the call to fail");
}
