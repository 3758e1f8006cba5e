/**
 * The loaded definitions work with a real grpc-js server and client over
 * loopback: the server registers them, a catalogued error reaches the client
 * with etcd's code and exact message, and the bidi (Watch) and server-streaming
 * (Snapshot) methods stream. Every call has a deadline; nothing sleeps.
 */

import {
  type Client,
  credentials,
  loadPackageDefinition,
  Metadata,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdServiceError, loadEtcdApi, type WireMessage } from "../../src/api/index.ts";

const api = loadEtcdApi();
const DEADLINE_MS = 5_000;

type Unary = (
  req: WireMessage,
  md: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, res?: WireMessage) => void,
) => void;
interface Stream extends NodeJS.EventEmitter {
  write(msg: WireMessage): boolean;
  end(): void;
}
type ClientCtor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

let server: Server;
let kv: Client & { Range: Unary };
let watch: Client & { Watch: (md: Metadata, opts: { deadline: number }) => Stream };
let maintenance: Client & { Snapshot: (req: WireMessage, opts: { deadline: number }) => Stream };

const deadline = (): { deadline: number } => ({ deadline: Date.now() + DEADLINE_MS });

beforeAll(async () => {
  server = new Server();
  server.addService(api.services.KV, {
    Range: (call: ServerUnaryCall<WireMessage, WireMessage>, cb: sendUnaryData<WireMessage>) => {
      const key = call.request.key as Buffer;
      if (key.length === 0) {
        cb(etcdServiceError("EmptyKey"));
        return;
      }
      cb(null, { header: { revision: 2n ** 62n }, count: 1n, kvs: [{ key, value: Buffer.from("v") }] });
    },
  });
  server.addService(api.services.Watch, {
    Watch: (call: ServerDuplexStream<WireMessage, WireMessage>) => {
      call.on("data", (req: WireMessage) => {
        if (req.request_union === "create_request") {
          call.write({ watch_id: 7n, created: true });
        } else {
          call.emit("error", etcdServiceError("WatchCanceled"));
        }
      });
    },
  });
  server.addService(api.services.Maintenance, {
    Snapshot: (call: ServerWritableStream<WireMessage, WireMessage>) => {
      call.write({ header: { revision: 3n }, remaining_bytes: 2n, blob: Buffer.from([1]) });
      call.write({ remaining_bytes: 0n, blob: Buffer.from([2, 3]) });
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  const address = `127.0.0.1:${port}`;
  const pkgs = loadPackageDefinition(api.packageDefinition) as unknown as {
    etcdserverpb: Record<string, ClientCtor>;
  };
  const insecure = credentials.createInsecure();
  kv = new pkgs.etcdserverpb.KV!(address, insecure) as typeof kv;
  watch = new pkgs.etcdserverpb.Watch!(address, insecure) as typeof watch;
  maintenance = new pkgs.etcdserverpb.Maintenance!(address, insecure) as typeof maintenance;
});

afterAll(() => {
  for (const c of [kv, watch, maintenance]) c?.close();
  server?.forceShutdown();
});

const range = (req: WireMessage): Promise<WireMessage> =>
  new Promise((resolve, reject) => {
    kv.Range(req, new Metadata(), deadline(), (err, res) => (err ? reject(err) : resolve(res!)));
  });

describe("grpc-js end to end over loopback", () => {
  it("a unary answer keeps 64-bit revisions", async () => {
    const res = await range({ key: Buffer.from("k") });
    expect((res.header as WireMessage).revision).toBe(String(2n ** 62n));
    expect(res.count).toBe("1");
    expect((res.kvs as WireMessage[])[0]!.value).toEqual(Buffer.from("v"));
  });

  it("a catalogued error arrives with etcd's code and exact message", async () => {
    const err = (await range({}).then(
      () => expect.unreachable("Range with an empty key must fail"),
      (e: unknown) => e,
    )) as ServiceError;
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toBe("etcdserver: key is not provided");
  });

  it("Watch streams both ways, and its error ends the stream", async () => {
    const stream = watch.Watch(new Metadata(), deadline());
    const events: string[] = [];
    const done = new Promise<void>((resolve) => {
      stream.on("data", (res: WireMessage) => events.push(`created=${res.created} watch_id=${res.watch_id}`));
      stream.on("error", (e: ServiceError) => {
        events.push(`error ${e.code} ${e.details}`);
        resolve();
      });
    });
    stream.write({ create_request: { key: Buffer.from("a") } });
    stream.write({ cancel_request: { watch_id: 7n } });
    await done;
    expect(events).toEqual(["created=true watch_id=7", "error 1 etcdserver: watch canceled"]);
  });

  it("Snapshot streams from the server", async () => {
    const stream = maintenance.Snapshot({}, deadline());
    const chunks: string[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on("data", (res: WireMessage) =>
        chunks.push(`${res.remaining_bytes}:${(res.blob as Buffer).toString("hex")}`),
      );
      stream.on("end", () => resolve());
      stream.on("error", reject);
    });
    expect(chunks).toEqual(["2:01", "0:0203"]);
  });
});
