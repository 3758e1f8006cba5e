/**
 * The client port's front door (src/api/front.ts, h2-handshake.ts): gRPC and
 * HTTP/1.1 on one port, in clear and over TLS with client certificates, and
 * the rewrite of etcdctl 3.4's `http://` authority, checked on the bytes
 * etcdctl 3.4.23 really sends (captured from `etcdctl --endpoints
 * http://127.0.0.1:23799 endpoint status`).
 */

import { request as httpsRequest } from "node:https";
import {
  type Client,
  credentials,
  loadPackageDefinition,
  Metadata,
  Server,
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { ClientFront, classify } from "../../src/api/front.ts";
import { EMPTY_SETTINGS, H2Handshake, rewriteAuthority } from "../../src/api/h2-handshake.ts";
import { loadEtcdApi, type WireMessage } from "../../src/api/index.ts";
import { ca, fixture } from "../transport/helpers.ts";

const api = loadEtcdApi();
const hex = (s: string): Buffer => Buffer.from(s, "hex");

/** etcdctl's first bytes: the preface and an empty SETTINGS frame. */
const PREFACE_AND_SETTINGS = hex("505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000000040000000000");
const SETTINGS_ACK = hex("000000040100000000");
/** etcdctl's first HEADERS frame (Maintenance/Status, :authority "http://127.0.0.1:23799", Huffman coded) and DATA. */
const HEADERS_AND_DATA = hex(
  "0000770104000000018386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae05c0b86e09975f7f5f8b1d75d0620d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f8669f7c0cb81b7408d25062d495875996ee5b1063d5f03332e340000050001000000010000000000",
);

describe("classify", () => {
  it("tells the HTTP/2 preface from HTTP/1.x, and waits on too few bytes", () => {
    expect(classify(Buffer.from("PRI * HTTP/2.0\r\n"))).toBe("grpc");
    expect(classify(Buffer.from("PR"))).toBe("undecided");
    expect(classify(Buffer.from("POST /v3/kv/range HTTP/1.1\r\n"))).toBe("http1");
    expect(classify(Buffer.from("G"))).toBe("http1");
    expect(classify(Buffer.from("PRX"))).toBe("http1");
  });
});

describe("H2Handshake", () => {
  it("answers etcdctl's preface, removes the ACK of its SETTINGS and rewrites the Huffman-coded authority", () => {
    const hs = new H2Handshake();
    expect(hs.push(Buffer.from(PREFACE_AND_SETTINGS))).toBe("sendSettings");
    expect(hs.push(Buffer.from(SETTINGS_ACK))).toBe("idle");
    expect(hs.safe).toBe(true);
    expect(hs.push(Buffer.from(HEADERS_AND_DATA))).toBe("handOver");
    const out = hs.bytes();
    // The ACK is gone; nothing else moved.
    expect(out.length).toBe(PREFACE_AND_SETTINGS.length + HEADERS_AND_DATA.length);
    const headers = out.subarray(PREFACE_AND_SETTINGS.length);
    const diff: number[] = [];
    for (let i = 0; i < headers.length; i++) if (headers[i] !== HEADERS_AND_DATA[i]) diff.push(i);
    // "http://" → "http:..": the slashes' 6-bit codes (011000) become the dot's (010111).
    const at = HEADERS_AND_DATA.indexOf(hex("9d29aee30c04"));
    expect(diff).toEqual([at + 3, at + 4, at + 5]);
    expect(headers.subarray(at, at + 6).toString("hex")).toBe("9d29aee2eb84");
  });

  it("waits for the ACK when the client sends its request before reading the server's SETTINGS", () => {
    const hs = new H2Handshake();
    const all = Buffer.concat([PREFACE_AND_SETTINGS, HEADERS_AND_DATA]);
    expect(hs.push(all.subarray(0, 30))).toBe("sendSettings");
    expect(hs.push(all.subarray(30))).toBe("more");
    expect(hs.safe).toBe(false);
    expect(hs.push(Buffer.from(SETTINGS_ACK))).toBe("handOver");
    expect(hs.bytes().length).toBe(all.length);
  });

  it("rewrites a raw (not Huffman) authority literal and leaves others alone", () => {
    const raw = (value: string): Buffer =>
      Buffer.concat([Buffer.from([0x83, 0x41, value.length]), Buffer.from(value, "latin1")]);
    const http = raw("http://127.0.0.1:2379");
    expect(rewriteAuthority(http)).toBe(true);
    expect(http.subarray(3).toString("latin1")).toBe("http:..127.0.0.1:2379");
    const https = raw("https://h:1");
    expect(rewriteAuthority(https)).toBe(true);
    expect(https.subarray(3).toString("latin1")).toBe("https:..h:1");
    const plain = raw("127.0.0.1:2379");
    expect(rewriteAuthority(plain)).toBe(false);
    expect(plain.subarray(3).toString("latin1")).toBe("127.0.0.1:2379");
    // A truncated block is left as it is.
    expect(rewriteAuthority(http.subarray(0, 5))).toBe(false);
  });

  it("sends an empty SETTINGS frame", () => {
    expect(EMPTY_SETTINGS.toString("hex")).toBe("000000040000000000");
  });
});

// ------------------------------------------------------------ one port, two protocols

type Unary = (
  req: WireMessage,
  md: Metadata,
  opts: { deadline: number },
  cb: (e: ServiceError | null, r?: WireMessage) => void,
) => void;
type ClientCtor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

let front: ClientFront | undefined;
let grpc: Server | undefined;
afterEach(async () => {
  grpc?.forceShutdown();
  await front?.close();
  front = undefined;
  grpc = undefined;
});

/** A front with a KV.Range that answers the caller's certificate CN as the value. */
async function start(tls?: { clientCa: boolean }): Promise<number> {
  grpc = new Server();
  grpc.addService(api.services.KV, {
    Range: (call: ServerUnaryCall<WireMessage, WireMessage>, cb: sendUnaryData<WireMessage>) => {
      const cn = call.getAuthContext().sslPeerCertificate?.subject?.CN;
      cb(null, { kvs: [{ key: call.request.key, value: Buffer.from(String(cn ?? "none")) }] });
    },
  });
  front = new ClientFront({
    grpc,
    http: (req, res) => res.end(`http ${req.method} ${req.url}`),
    tls:
      tls === undefined
        ? undefined
        : {
            cert: Buffer.from(fixture("member.crt")),
            key: Buffer.from(fixture("member.key")),
            clientCa: tls.clientCa ? Buffer.from(ca) : undefined,
          },
  });
  return front.listen("127.0.0.1", 0);
}

function kvClient(port: number, creds = credentials.createInsecure()): Client & { Range: Unary } {
  const pkg = loadPackageDefinition(api.packageDefinition) as unknown as {
    etcdserverpb: { KV: ClientCtor };
  };
  return new pkg.etcdserverpb.KV(`127.0.0.1:${port}`, creds) as Client & { Range: Unary };
}

function range(client: Client & { Range: Unary }): Promise<string> {
  return new Promise((resolve, reject) =>
    client.Range({ key: Buffer.from("k") }, new Metadata(), { deadline: Date.now() + 5_000 }, (e, r) => {
      client.close();
      if (e !== null) reject(e);
      else resolve(String((r!.kvs as { value: Buffer }[])[0]!.value));
    }),
  );
}

function httpsGet(port: number, withCert: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        path: "/health",
        ca: Buffer.from(ca),
        ...(withCert
          ? { cert: Buffer.from(fixture("member.crt")), key: Buffer.from(fixture("member.key")) }
          : {}),
        servername: "127.0.0.1",
        agent: false,
      },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d.toString();
        });
        res.on("end", () => resolve(body));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("ClientFront", () => {
  it("serves gRPC and HTTP/1.1 on one clear port", async () => {
    const port = await start();
    expect(await range(kvClient(port))).toBe("none");
    const res = await fetch(`http://127.0.0.1:${port}/v3/kv/range`, { method: "POST", body: "{}" });
    expect(await res.text()).toBe("http POST /v3/kv/range");
  });

  it("over TLS with --client-cert-auth: the CN reaches the handler, and no certificate gets no answer", async () => {
    const port = await start({ clientCa: true });
    const creds = credentials.createSsl(
      Buffer.from(ca),
      Buffer.from(fixture("member.key")),
      Buffer.from(fixture("member.crt")),
    );
    expect(await range(kvClient(port, creds))).toBe("leasehold test member");
    expect(await httpsGet(port, true)).toBe("http GET /health");
    await expect(httpsGet(port, false)).rejects.toThrow();
    const rogue = credentials.createSsl(
      Buffer.from(ca),
      Buffer.from(fixture("rogue.key")),
      Buffer.from(fixture("rogue.crt")),
    );
    await expect(range(kvClient(port, rogue))).rejects.toThrow();
  });
});
