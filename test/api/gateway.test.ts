/**
 * The client port's HTTP surface (src/api/gateway.ts, gateway-json.ts): the
 * JSON gateway, /health, /version and /metrics, served by the handler on a
 * plain node:http server on 127.0.0.1 in front of an in-process member and
 * ApiServer (the same handlers gRPC runs). Requests are raw HTTP/1.1
 * (node:http), so status lines, headers, trailers and bodies are checked
 * byte for byte. The last block sends the same requests to a real etcd
 * 3.4.23 (test/support/etcd.ts) and to leasehold, and compares the answers
 * with member and cluster ids normalized. Nothing sleeps: streams are read
 * line by line as they arrive.
 */

import type { EventEmitter } from "node:events";
import type { IncomingHttpHeaders, Server } from "node:http";
import { createServer, request } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Metadata } from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiHost, RegisteredMethod } from "../../src/api/context.ts";
import {
  createHttpHandler,
  GATEWAY_ROUTES,
  type GatewayOptions,
  type HttpHandler,
} from "../../src/api/gateway.ts";
import {
  base64FromJson,
  type JsonValue,
  messageFromJson,
  messageToJson,
  methodTypes,
  scanJsonValue,
} from "../../src/api/gateway-json.ts";
import { loadEtcdApi, type WireMessage } from "../../src/api/index.ts";
import { MemberMetrics } from "../../src/api/metrics.ts";
import { ApiServer } from "../../src/api/server.ts";
import { bootstrapState, memberId } from "../../src/raft/index.ts";
import { Member } from "../../src/server/member.ts";
import { type EtcdProcess, startEtcd, stopEtcd } from "../support/etcd.ts";

type W = WireMessage;
const DEADLINE_MS = 10_000;
const b64 = (s: string): string => Buffer.from(s).toString("base64");

// ---------------------------------------------------------------- HTTP client

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly trailers: NodeJS.Dict<string>;
}

/** One HTTP/1.1 exchange on its own connection. */
function send(
  base: string,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers, agent: false, timeout: DEADLINE_MS }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, trailers: res.trailers }),
      );
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer within the deadline`)));
    req.on("error", reject);
    req.end(body);
  });
}

const post = (base: string, path: string, body: string, headers?: Record<string, string>): Promise<Answer> =>
  send(base, "POST", path, body, headers);

/** A streaming answer read line by line (the error chunk has no newline: `rest` gets it at the end). */
class LineStream {
  private readonly lines: string[] = [];
  private partial = "";
  private waiter: (() => void) | undefined;
  private ended = false;
  readonly answer: Promise<{ status: number; headers: IncomingHttpHeaders }>;
  /** What followed the last newline, once the answer ended. */
  readonly rest: Promise<string>;
  /** The client side's port: the server's socket for this stream has it as its remote port. */
  readonly localPort: Promise<number>;
  private readonly req: ReturnType<typeof request>;

  constructor(base: string, path: string, body: string) {
    let restResolve: (s: string) => void = () => {};
    let portResolve: (port: number) => void = () => {};
    this.rest = new Promise((r) => {
      restResolve = r;
    });
    this.localPort = new Promise((r) => {
      portResolve = r;
    });
    let answerResolve: (a: { status: number; headers: IncomingHttpHeaders }) => void = () => {};
    let answerReject: (e: Error) => void = () => {};
    this.answer = new Promise((resolve, reject) => {
      answerResolve = resolve;
      answerReject = reject;
    });
    this.req = request(`${base}${path}`, { method: "POST", agent: false }, (res) => {
      answerResolve({ status: res.statusCode ?? 0, headers: res.headers });
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        const parts = (this.partial + c).split("\n");
        this.partial = parts.pop() ?? "";
        this.lines.push(...parts);
        this.wake();
      });
      res.on("end", () => {
        this.ended = true;
        restResolve(this.partial);
        this.wake();
      });
      res.on("error", () => {});
    });
    this.req.on("error", (e) => {
      if (!this.ended) answerReject(e);
    });
    this.req.on("socket", (s) => s.on("connect", () => portResolve(s.localPort ?? 0)));
    this.req.end(body);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** The next line, parsed. */
  async next(): Promise<W> {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const l = this.lines.shift();
      if (l !== undefined) return JSON.parse(l) as W;
      if (this.ended) throw new Error("the stream ended");
      if (Date.now() > deadline) throw new Error("no line within the deadline");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, DEADLINE_MS);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Every remaining line, once the answer ended. */
  async all(): Promise<string[]> {
    await this.rest;
    return this.lines.splice(0);
  }

  abort(): void {
    this.req.destroy();
  }
}

// ---------------------------------------------------------------- in-process member

/** One member (a cluster of one, in memory) and the HTTP handler on a loopback port. */
class Node {
  readonly member: Member;
  readonly api: ApiServer;
  readonly metrics = new MemberMetrics();
  private http: Server | undefined;
  /** The server's open sockets, by the client's port. */
  private readonly sockets = new Map<number, Socket>();
  base = "";

  constructor(options: { start?: boolean } = {}) {
    const id = memberId(1);
    this.member = new Member(
      { id, heartbeatMs: 10, electionMs: 50, snapshotCount: 1_000_000 },
      bootstrapState([id]),
      { save: () => {}, saveSnapshot: () => {} },
      { send: () => false },
    );
    this.api = new ApiServer({ member: this.member, clusterId: 0x1234n, dbSize: () => 4096 });
    this.metrics.attach({ member: this.member, dbSize: () => 4096 });
    if (options.start !== false) this.member.start();
  }

  async listen(options: GatewayOptions = {}): Promise<this> {
    this.http = await serve(createHttpHandler(this.api, { metrics: this.metrics, ...options }));
    this.http.on("connection", (s: Socket) => {
      const port = s.remotePort ?? 0;
      this.sockets.set(port, s);
      s.on("close", () => this.sockets.delete(port));
    });
    this.base = `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`;
    return this;
  }

  /**
   * Resolves once the server's socket from client port `port` has closed and
   * the 'close' handlers it set off have run (the stream's 'close' is emitted
   * on the next tick).
   */
  async serverSocketClosed(port: number): Promise<void> {
    const s = this.sockets.get(port);
    if (s !== undefined) await new Promise((resolve) => s.once("close", resolve));
    await new Promise((resolve) => setImmediate(resolve));
  }

  async stop(): Promise<void> {
    await closeServer(this.http);
    await this.api.close();
    this.member.stop();
  }

  /** etcd's header as the gateway writes it, at the member's current revision. */
  header(rev: number = this.member.machine.currentRevision()): string {
    return `{"cluster_id":"4660","member_id":"1","revision":"${rev}","raft_term":"${this.member.raft.term}"}`;
  }
}

function serve(handler: HttpHandler): Promise<Server> {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

function closeServer(server: Server | undefined): Promise<void> {
  if (server === undefined) return Promise.resolve();
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * A host whose methods are `overrides` (by gRPC path) and otherwise answer
 * UNIMPLEMENTED; its member has a leader and serves reads at once.
 */
function stubHost(overrides: Record<string, (...args: never[]) => void>, member: object = {}): ApiHost {
  const api = loadEtcdApi();
  const methods = new Map<string, RegisteredMethod>();
  for (const service of Object.values(api.services)) {
    for (const def of Object.values(service)) {
      const definition = def as RegisteredMethod["definition"];
      const fallback = (_call: unknown, cb?: (e: Error) => void): void =>
        cb?.(Object.assign(new Error("unimplemented"), { code: 12, details: "unimplemented" }));
      methods.set(definition.path, { definition, implementation: overrides[definition.path] ?? fallback });
    }
  }
  const fakeMember = { leader: 1, read: async () => true, ...member };
  return { methods, member: fakeMember } as unknown as ApiHost;
}

// ---------------------------------------------------------------- the JSON mapping

describe("JSON reading (Go's encoding/json Decoder)", () => {
  const read = (text: string, final = true) => scanJsonValue(text, 0, final);
  it("reads one value and leaves what follows; whitespace alone is the end", () => {
    expect(read('  {"a":1} {"b":2}')).toMatchObject({ kind: "value", end: 9 });
    expect(read(" \n\t")).toEqual({ kind: "eof" });
    expect(read(" ", false)).toEqual({ kind: "incomplete" });
  });
  it("keeps number literals as text (no double in between)", () => {
    const v = read('{"n":9223372036854775807}');
    expect(v.kind === "value" && v.value).toEqual({
      kind: "object",
      entries: [["n", { kind: "number", text: "9223372036854775807" }]],
    });
  });
  it("a value cut short is incomplete while more may come, and Go's unexpected EOF at the end", () => {
    for (const t of ['{"a":', "{", '"ab', "tr", "-", "1.", "1e", "12"]) {
      expect(read(t, false)).toEqual({ kind: "incomplete" });
    }
    for (const t of ['{"a":', "{", '"ab', "tr", "-", "1.", "1e"]) {
      expect(read(t)).toEqual({ kind: "error", message: "unexpected EOF" });
    }
  });
  it("syntax errors carry Go's text", () => {
    const cases: [string, string][] = [
      ["xyz", "invalid character 'x' looking for beginning of value"],
      ['{"key":"Zm9v",}', "invalid character '}' looking for beginning of object key string"],
      ['{"a" 1}', "invalid character '1' after object key"],
      ['{"a":1 "b"}', "invalid character '\"' after object key:value pair"],
      ["[1 2]", "invalid character '2' after array element"],
      ['"a\nb"', "invalid character '\\n' in string literal"],
      ['"\\x"', "invalid character 'x' in string escape code"],
      ['"\\u12G4"', "invalid character 'G' in \\u hexadecimal character escape"],
      ["trUe", "invalid character 'U' in literal true (expecting 'u')"],
      ["-a", "invalid character 'a' in numeric literal"],
      ["1.x", "invalid character 'x' after decimal point in numeric literal"],
    ];
    for (const [text, message] of cases) expect(read(text), text).toEqual({ kind: "error", message });
  });
  it("refuses nesting deeper than its bound instead of recursing without end", () => {
    const v = read(`${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    expect(v).toEqual({ kind: "error", message: "json: nesting deeper than 512" });
  });
  it("decodes escapes", () => {
    const v = read('"a\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"');
    expect(v.kind === "value" && v.value).toEqual({ kind: "string", value: 'a"\\/\b\f\n\r\t\u00e9😀' });
  });
});

describe("base64 (Go's base64.StdEncoding)", () => {
  it("decodes standard base64 with padding, ignoring CR and LF", () => {
    expect(base64FromJson("Zm9vYQ==").toString()).toBe("fooa");
    expect(base64FromJson("Zm9v\r\nYQ==").toString()).toBe("fooa");
    expect(base64FromJson("").length).toBe(0);
  });
  it("refuses what Go refuses, naming Go's offset", () => {
    const cases: [string, number][] = [
      ["Zm9", 0],
      ["Zm9v=", 4],
      ["Zm9v_-", 4],
      ["Zm9vYQ", 4],
      ["Zm9vYQ=", 7],
      ["Zm9vYQ==x", 8],
      ["!!!", 0],
    ];
    for (const [text, offset] of cases)
      expect(() => base64FromJson(text), text).toThrow(`illegal base64 data at input byte ${offset}`);
  });
});

describe("proto3 JSON mapping (jsonpb, OrigName)", () => {
  const api = loadEtcdApi();
  const value = (text: string): JsonValue => {
    const s = scanJsonValue(text, 0, true);
    if (s.kind !== "value") throw new Error(`not a value: ${text}`);
    return s.value;
  };
  const range = methodTypes("/etcdserverpb.KV/Range");
  const txn = methodTypes("/etcdserverpb.KV/Txn");

  it("takes .proto names and JSON names, int64 as number or string, enums by name or number", () => {
    const w = messageFromJson(
      range.request,
      value(
        '{"key":"Zm9v","rangeEnd":"Zm9w","keys_only":true,"revision":"7","limit":3,"sortOrder":"DESCEND","sort_target":4}',
      ),
    );
    expect(w).toEqual({
      key: Buffer.from("foo"),
      range_end: Buffer.from("fop"),
      keys_only: true,
      revision: "7",
      limit: "3",
      sort_order: 2,
      sort_target: 4,
    });
  });
  it("ignores unknown names and nulls; a oneof set twice keeps the last member", () => {
    const w = messageFromJson(
      txn.request,
      value('{"bogus":1,"KEY":"x","compare":[{"key":"YQ==","value":"Yg==","version":"3","target":null}]}'),
    );
    expect(w).toEqual({ compare: [{ key: Buffer.from("a"), version: "3" }] });
  });
  it("refuses a value of the wrong kind with Go's text", () => {
    const cases: [string, string][] = [
      ['{"key":123}', "json: cannot unmarshal number into Go value of type []uint8"],
      ['{"revision":1.5}', "json: cannot unmarshal number 1.5 into Go value of type int64"],
      [
        '{"revision":"99999999999999999999"}',
        "json: cannot unmarshal number 99999999999999999999 into Go value of type int64",
      ],
      ['{"revision":"abc"}', "invalid character 'a' looking for beginning of value"],
      ['{"keys_only":"yes"}', "json: cannot unmarshal string into Go value of type bool"],
      ['{"sort_order":"BOGUS"}', 'unknown value "BOGUS" for enum etcdserverpb.RangeRequest_SortOrder'],
      ["[1]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"],
      ['{"limit":{}}', "json: cannot unmarshal object into Go value of type int64"],
    ];
    for (const [text, message] of cases)
      expect(() => messageFromJson(range.request, value(text)), text).toThrow(message);
    expect(() => messageFromJson(txn.request, value('{"compare":{"key":"YQ=="}}'))).toThrow(
      "json: cannot unmarshal object into Go value of type []json.RawMessage",
    );
  });
  it("writes .proto names, int64 as strings, bytes as base64, enums by name; leaves zero values out", () => {
    const def = api.services.KV.Txn;
    const bytes = def.responseSerialize({
      header: { cluster_id: "18446744073709551615", member_id: "1", revision: "7", raft_term: "0" },
      succeeded: false,
      responses: [
        { response_put: { header: { revision: "6" } } },
        {
          response_range: {
            kvs: [{ key: Buffer.from("a<&>"), value: Buffer.alloc(0), version: "0" }],
            count: "0",
          },
        },
      ],
    });
    expect(messageToJson(txn.response, bytes)).toBe(
      '{"header":{"cluster_id":"18446744073709551615","member_id":"1","revision":"7"},' +
        '"responses":[{"response_put":{"header":{"revision":"6"}}},{"response_range":{"kvs":[{"key":"YTwmPg=="}]}}]}',
    );
    const watch = methodTypes("/etcdserverpb.Watch/Watch");
    const w = api.services.Watch.Watch.responseSerialize({
      events: [{ type: 1, kv: { key: Buffer.from("k") } }],
      cancel_reason: "<a & b>",
    });
    expect(messageToJson(watch.response, w)).toBe(
      // Declaration order: cancel_reason (6) before events (11).
      '{"cancel_reason":"\\u003ca \\u0026 b\\u003e","events":[{"type":"DELETE","kv":{"key":"aw=="}}]}',
    );
  });
});

// ---------------------------------------------------------------- the gateway against a member

let node: Node;

beforeAll(async () => {
  node = await new Node().listen();
  // The first write waits out the election.
  const r = await post(node.base, "/v3/kv/put", `{"key":"${b64("warmup")}","value":"${b64("x")}"}`);
  expect(r.status).toBe(200);
});
afterAll(async () => {
  await node?.stop();
});

describe("unary routes", () => {
  it("put then range: etcd's JSON, byte for byte", async () => {
    const put = await post(node.base, "/v3/kv/put", `{"key":"${b64("foo")}","value":"${b64("bar")}"}`);
    expect(put.status).toBe(200);
    expect(put.headers["content-type"]).toBe("application/json");
    expect(put.headers["grpc-metadata-content-type"]).toBe("application/grpc");
    expect(put.headers["access-control-allow-origin"]).toBe("*");
    const rev = Number(node.member.machine.currentRevision());
    expect(put.body).toBe(`{"header":${node.header(rev)}}`);
    expect(put.headers["content-length"]).toBe(String(Buffer.byteLength(put.body)));

    const range = await post(node.base, "/v3/kv/range", `{"key":"${b64("foo")}"}`);
    expect(range.body).toBe(
      `{"header":${node.header(rev)},"kvs":[{"key":"Zm9v","create_revision":"${rev}","mod_revision":"${rev}","version":"1","value":"YmFy"}],"count":"1"}`,
    );
    const keysOnly = await post(
      node.base,
      "/v3beta/kv/range",
      '{"key":"Zm9v","rangeEnd":"Zm9w","keysOnly":true}',
    );
    expect(keysOnly.body).toBe(
      `{"header":${node.header(rev)},"kvs":[{"key":"Zm9v","create_revision":"${rev}","mod_revision":"${rev}","version":"1"}],"count":"1"}`,
    );
  });

  it("txn with oneofs in both directions; the failure branch's prev_kvs", async () => {
    await post(node.base, "/v3/kv/put", `{"key":"${b64("t")}","value":"${b64("1")}"}`);
    const ok = await post(
      node.base,
      "/v3/kv/txn",
      `{"compare":[{"key":"${b64("t")}","result":"EQUAL","target":"VALUE","value":"${b64("1")}"}],` +
        `"success":[{"requestPut":{"key":"${b64("t")}","value":"${b64("2")}","prev_kv":true}}]}`,
    );
    const rev = Number(node.member.machine.currentRevision());
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({
      header: JSON.parse(node.header(rev)),
      succeeded: true,
      responses: [
        {
          response_put: {
            header: { revision: String(rev) },
            prev_kv: {
              key: b64("t"),
              create_revision: String(rev - 1),
              mod_revision: String(rev - 1),
              version: "1",
              value: b64("1"),
            },
          },
        },
      ],
    });
    const failed = await post(
      node.base,
      "/v3/kv/txn",
      `{"compare":[{"key":"${b64("t")}","result":3,"target":"VERSION","version":"2"}],` +
        `"failure":[{"request_delete_range":{"key":"${b64("t")}","prev_kv":true}}]}`,
    );
    const body = JSON.parse(failed.body) as W;
    expect(body.succeeded).toBeUndefined();
    expect(body.responses).toEqual([
      {
        response_delete_range: {
          header: { revision: String(rev + 1) },
          deleted: "1",
          prev_kvs: [
            {
              key: b64("t"),
              create_revision: String(rev - 1),
              mod_revision: String(rev),
              version: "2",
              value: b64("2"),
            },
          ],
        },
      },
    ]);
  });

  it("lease grant, time-to-live and the /v3/kv/lease aliases", async () => {
    const grant = await post(node.base, "/v3/lease/grant", '{"TTL":60,"ID":4242}');
    expect(grant.body).toBe(`{"header":${node.header()},"ID":"4242","TTL":"60"}`);
    const leases = JSON.parse((await post(node.base, "/v3/kv/lease/leases", "{}")).body) as W;
    expect(leases.leases).toContainEqual({ ID: "4242" });
    const ttl = JSON.parse((await post(node.base, "/v3/kv/lease/timetolive", '{"ID":"4242"}')).body) as W;
    expect(ttl).toMatchObject({ ID: "4242", grantedTTL: "60" });
    expect(Number(ttl.TTL)).toBeGreaterThan(50);
    const gone = await post(node.base, "/v3/lease/timetolive", '{"ID":"777"}');
    expect(gone.body).toBe(`{"header":${node.header()},"ID":"777","TTL":"-1"}`);
  });

  it("a handler's error: grpc-gateway's body, the HTTP status of its code, and the gRPC trailer", async () => {
    const future = await post(node.base, "/v3/kv/range", `{"key":"Zm9v","revision":"100000"}`);
    expect(future.status).toBe(400);
    const msg = "etcdserver: mvcc: required revision is a future revision";
    expect(future.body).toBe(`{"error":"${msg}","message":"${msg}","code":11}`);
    expect(future.headers.trailer).toBe("Grpc-Trailer-Content-Type");
    expect(future.headers["transfer-encoding"]).toBe("chunked");
    expect(future.trailers).toEqual({ "grpc-trailer-content-type": "application/grpc" });
    expect(future.headers["grpc-metadata-content-type"]).toBeUndefined();

    const notFound = await post(node.base, "/v3/kv/lease/revoke", '{"ID":"777"}');
    expect([notFound.status, JSON.parse(notFound.body).code]).toEqual([404, 5]);
    await post(node.base, "/v3/lease/grant", '{"TTL":60,"ID":"99"}');
    const exists = await post(node.base, "/v3/lease/grant", '{"TTL":60,"ID":"99"}');
    expect([exists.status, exists.body]).toEqual([
      412,
      '{"error":"etcdserver: lease already exists","message":"etcdserver: lease already exists","code":9}',
    ]);
    const empty = await post(node.base, "/v3/kv/range", "");
    expect([empty.status, JSON.parse(empty.body).error]).toEqual([400, "etcdserver: key is not provided"]);
  });

  it("a body that does not decode: 400, code 3, Go's text, no call made", async () => {
    const before = node.member.raft.log.applied;
    const cases: [string, string][] = [
      ['{"key":', "unexpected EOF"],
      ['{"key":"!!!"}', "illegal base64 data at input byte 0"],
      ["[1]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"],
      ["xyz", "invalid character 'x' looking for beginning of value"],
    ];
    for (const [body, message] of cases) {
      const r = await post(node.base, "/v3/kv/put", body);
      expect(r.status, body).toBe(400);
      expect(r.body).toBe(
        `{"error":${JSON.stringify(message)},"message":${JSON.stringify(message)},"code":3}`,
      );
      expect(r.headers.trailer).toBeUndefined();
    }
    expect(node.member.raft.log.applied).toBe(before);
    // Trailing text after the value is not read (Go's Decoder).
    const trailing = await post(node.base, "/v3/kv/range", `{"key":"${b64("foo")}"} junk`);
    expect(trailing.status).toBe(200);
  });

  it("a request larger than the gRPC limit is refused with code 8", async () => {
    const value = Buffer.alloc(2.5 * 1024 * 1024, 1).toString("base64");
    const r = await post(node.base, "/v3/kv/put", `{"key":"${b64("big")}","value":"${value}"}`);
    expect(r.status).toBe(429);
    expect(JSON.parse(r.body)).toMatchObject({ code: 8 });
    expect(JSON.parse(r.body).error).toMatch(/^grpc: received message larger than max \(\d+ vs\. 2097152\)$/);
  });

  it("paths and methods: 404 and 405 as Go's muxes answer; OPTIONS for CORS", async () => {
    const unknownV3 = await post(node.base, "/v3/kv/nosuch", "{}");
    expect([unknownV3.status, unknownV3.body, unknownV3.headers["content-type"]]).toEqual([
      404,
      "Not Found\n",
      "text/plain; charset=utf-8",
    ]);
    const get = await send(node.base, "GET", "/v3/kv/range");
    expect([get.status, get.body]).toEqual([405, "Method Not Allowed\n"]);
    const other = await send(node.base, "GET", "/v3alpha/kv/range");
    expect([other.status, other.body]).toEqual([404, "404 page not found\n"]);
    const options = await send(node.base, "OPTIONS", "/v3/kv/range");
    expect([options.status, options.body, options.headers["access-control-allow-headers"]]).toEqual([
      200,
      "",
      "accept, content-type, authorization",
    ]);
  });

  it("every route reaches its gRPC method", async () => {
    const seen: string[] = [];
    const record = (path: string) => (_call: { request: W }, cb: (e: null, r: W) => void) => {
      seen.push(path);
      cb(null, {});
    };
    const stream = (path: string) => (call: EventEmitter & { end(): void }) => {
      seen.push(path);
      call.end();
    };
    const overrides: Record<string, (...args: never[]) => void> = {};
    for (const grpcPath of GATEWAY_ROUTES.values()) {
      const streaming = /Watch\/Watch|LeaseKeepAlive|Snapshot|Observe/.test(grpcPath);
      overrides[grpcPath] = (streaming ? stream(grpcPath) : record(grpcPath)) as (...args: never[]) => void;
    }
    const server = await serve(createHttpHandler(stubHost(overrides)));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const [httpPath, grpcPath] of GATEWAY_ROUTES) {
        seen.length = 0;
        const r = await post(base, httpPath, "{}");
        expect([r.status, seen], httpPath).toEqual([200, [grpcPath]]);
      }
    } finally {
      await closeServer(server);
    }
  });

  it("the Authorization header is the call's token; a client that hangs up cancels the call", async () => {
    const tokens: unknown[] = [];
    let gotCall: (call: EventEmitter & { cancelled: boolean }) => void = () => {};
    const called = new Promise<EventEmitter & { cancelled: boolean }>((resolve) => {
      gotCall = resolve;
    });
    const host = stubHost({
      "/etcdserverpb.KV/Range": (call: { metadata: Metadata }, cb: (e: null, r: W) => void) => {
        tokens.push(call.metadata.get("token")[0]);
        cb(null, {});
      },
      "/etcdserverpb.KV/Put": (call: EventEmitter & { cancelled: boolean }) => gotCall(call),
    } as Record<string, (...args: never[]) => void>);
    const server = await serve(createHttpHandler(host));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await post(base, "/v3/kv/range", "{}", { Authorization: "tok.en.1" });
      expect(tokens).toEqual(["tok.en.1"]);
      const req = request(`${base}/v3/kv/put`, { method: "POST", agent: false });
      req.on("error", () => {});
      req.end("{}");
      const call = await called;
      expect(call.cancelled).toBe(false);
      const cancelled = new Promise((resolve) => call.once("cancelled", resolve));
      req.destroy();
      await cancelled;
      expect(call.cancelled).toBe(true);
    } finally {
      await closeServer(server);
    }
  });
});

describe("bad input", () => {
  // A member of its own: random bodies may write, grant and revoke.
  let fuzzed: Node;
  beforeAll(async () => {
    fuzzed = await new Node().listen();
  });
  afterAll(async () => {
    await fuzzed?.stop();
  });
  /** Bodies near the valid ones: broken JSON, wrong kinds, odd names, deep nesting, stray bytes. */
  const body = fc.oneof(
    fc.string(),
    fc.json(),
    fc
      .dictionary(
        fc.constantFrom(
          "key",
          "value",
          "range_end",
          "rangeEnd",
          "lease",
          "prev_kv",
          "compare",
          "success",
          "ID",
          "TTL",
          "__proto__",
          "constructor",
        ),
        fc.jsonValue(),
      )
      .map((o) => JSON.stringify(o)),
    fc.tuple(fc.string(), fc.nat(40)).map(([t, n]) => `${"[".repeat(n)}${t}`),
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString("latin1")),
  );
  const paths = fc.constantFrom(
    "/v3/kv/range",
    "/v3/kv/put",
    "/v3/kv/deleterange",
    "/v3/kv/txn",
    "/v3/lease/grant",
    "/v3/lease/revoke",
    "/v3/lease/timetolive",
    "/v3/lease/keepalive",
    "/v3/cluster/member/list",
    "/v3/maintenance/status",
  );

  it("every body gets an HTTP answer in grpc-gateway's shape, and the member keeps serving", async () => {
    await fc.assert(
      fc.asyncProperty(paths, body, async (path, text) => {
        const r = await post(fuzzed.base, path, text);
        if (path === "/v3/lease/keepalive" && r.status === 200) {
          for (const line of r.body.split("\n").filter((l) => l !== ""))
            expect(JSON.parse(line)).toHaveProperty("result");
          return;
        }
        const parsed = JSON.parse(r.body) as W;
        if (r.status === 200) expect(typeof parsed).toBe("object");
        else {
          expect([400, 404, 409, 412, 429, 500, 503]).toContain(r.status);
          expect(parsed).toEqual({ error: parsed.message, message: parsed.error, code: parsed.code });
          expect(typeof parsed.code).toBe("number");
        }
      }),
      { numRuns: 300 },
    );
    const alive = await post(fuzzed.base, "/v3/kv/put", `{"key":"${b64("alive")}"}`);
    expect(alive.status).toBe(200);
  });
});

describe("streams", () => {
  it("keepalive: several requests in one body, one result line each, then the stream ends", async () => {
    await post(node.base, "/v3/lease/grant", '{"TTL":30,"ID":"5151"}');
    const s = new LineStream(node.base, "/v3/lease/keepalive", '{"ID":"5151"}{"ID":"999"}\n{"ID":5151}');
    const { status, headers } = await s.answer;
    expect([status, headers["content-type"], headers["grpc-metadata-content-type"]]).toEqual([
      200,
      "application/json",
      "application/grpc",
    ]);
    const lines = await s.all();
    const h = node.header();
    expect(lines).toEqual([
      `{"result":{"header":${h},"ID":"5151","TTL":"30"}}`,
      `{"result":{"header":${h},"ID":"999"}}`,
      `{"result":{"header":${h},"ID":"5151","TTL":"30"}}`,
    ]);
    expect(await s.rest).toBe("");
  });

  it("keepalive: an empty body ends at once; a bad first request is 500 code 2; a bad later one ends the requests", async () => {
    const empty = new LineStream(node.base, "/v3/lease/keepalive", "");
    expect((await empty.answer).status).toBe(200);
    expect(await empty.all()).toEqual([]);
    const bad = await post(node.base, "/v3/lease/keepalive", '{"ID":');
    expect([bad.status, bad.body]).toEqual([
      500,
      '{"error":"unexpected EOF","message":"unexpected EOF","code":2}',
    ]);
    await post(node.base, "/v3/lease/grant", '{"TTL":30,"ID":"5252"}');
    const later = new LineStream(node.base, "/v3/lease/keepalive", '{"ID":"5252"} {"ID":"x"} {"ID":"5252"}');
    expect(await later.all()).toEqual([`{"result":{"header":${node.header()},"ID":"5252","TTL":"30"}}`]);
  });

  it("watch: created, events as they happen (DELETE by name), and hanging up removes the watchers", async () => {
    const watchers = node.member.replica.hub.watcherCount();
    const s = new LineStream(
      node.base,
      "/v3/watch",
      `{"create_request":{"key":"${b64("w")}"}}{"create_request":{"key":"${b64("w")}","prev_kv":true,"filters":["NODELETE"]}}`,
    );
    const rev = Number(node.member.machine.currentRevision());
    expect(await s.next()).toEqual({ result: { header: JSON.parse(node.header(rev)), created: true } });
    expect(await s.next()).toEqual({
      result: { header: JSON.parse(node.header(rev)), watch_id: "1", created: true },
    });
    await post(node.base, "/v3/kv/put", `{"key":"${b64("w")}","value":"${b64("1")}"}`);
    await post(node.base, "/v3/kv/deleterange", `{"key":"${b64("w")}"}`);
    const kv = {
      key: b64("w"),
      create_revision: String(rev + 1),
      mod_revision: String(rev + 1),
      version: "1",
      value: b64("1"),
    };
    const put = (await s.next()).result as W;
    expect(put.events).toEqual([{ kv }]);
    expect(put.watch_id).toBeUndefined();
    expect(((await s.next()).result as W).events).toEqual([{ kv }]);
    expect((await s.next()).result).toEqual({
      header: JSON.parse(node.header(rev + 2)),
      events: [{ type: "DELETE", kv: { key: b64("w"), mod_revision: String(rev + 2) } }],
    });
    expect(node.member.replica.hub.watcherCount()).toBe(watchers + 2);
    const port = await s.localPort;
    s.abort();
    await node.serverSocketClosed(port);
    expect(node.member.replica.hub.watcherCount()).toBe(watchers);
  });

  it("a stream's error: the error chunk, with its HTTP status when nothing was written before", async () => {
    const unavailable = (call: EventEmitter) => {
      call.on("error", () => {});
      call.emit("error", Object.assign(new Error("x"), { code: 14, details: "etcdserver: server stopped" }));
    };
    const afterOne = (call: EventEmitter & { write(w: W): boolean }) => {
      call.on("error", () => {});
      call.write({ blob: Buffer.from("ab"), remaining_bytes: "1" });
      call.emit("error", Object.assign(new Error("x"), { code: 9, details: "etcdserver: not capable" }));
    };
    const server = await serve(
      createHttpHandler(
        stubHost({
          "/etcdserverpb.Maintenance/Snapshot": afterOne,
          "/v3electionpb.Election/Observe": unavailable,
        } as Record<string, (...args: never[]) => void>),
      ),
    );
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const first = new LineStream(base, "/v3/election/observe", '{"name":"ZWw="}');
      const a = await first.answer;
      expect([a.status, a.headers["grpc-metadata-content-type"]]).toEqual([503, undefined]);
      expect(await first.all()).toEqual([]);
      expect(await first.rest).toBe(
        '{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: server stopped","http_status":"Service Unavailable"}}',
      );
      const later = new LineStream(base, "/v3/maintenance/snapshot", "{}");
      expect((await later.answer).status).toBe(200);
      expect(await later.all()).toEqual(['{"result":{"remaining_bytes":"1","blob":"YWI="}}']);
      expect(await later.rest).toBe(
        '{"error":{"grpc_code":9,"http_code":412,"message":"etcdserver: not capable","http_status":"Precondition Failed"}}',
      );
    } finally {
      await closeServer(server);
    }
  });
});

// ---------------------------------------------------------------- /health, /version, /metrics

describe("/health, /version, /metrics", () => {
  it("/health is true with a leader and a read through consensus; /version says 3.4.0", async () => {
    const h = await send(node.base, "GET", "/health");
    expect([h.status, h.body, h.headers["content-type"]]).toEqual([
      200,
      '{"health":"true"}',
      "text/plain; charset=utf-8",
    ]);
    const v = await send(node.base, "GET", "/version");
    expect([v.status, v.body, v.headers["content-type"]]).toEqual([
      200,
      '{"etcdserver":"3.4.0","etcdcluster":"3.4.0"}',
      "application/json",
    ]);
    const wrong = await post(node.base, "/health", "");
    expect([wrong.status, wrong.headers.allow, wrong.body]).toEqual([405, "GET", "Method Not Allowed\n"]);
  });

  it("/health is false (503) without a leader, and with an alarm unless it is excluded", async () => {
    const lonely = await new Node({ start: false }).listen();
    try {
      const h = await send(lonely.base, "GET", "/health");
      expect([h.status, h.body]).toEqual([503, '{"health":"false"}\n']);
    } finally {
      await lonely.stop();
    }
    const alarmed = stubHost({
      "/etcdserverpb.Maintenance/Alarm": (_call: unknown, cb: (e: null, r: W) => void) =>
        cb(null, { alarms: [{ memberID: "1", alarm: 1 }] }),
    } as Record<string, (...args: never[]) => void>);
    const server = await serve(createHttpHandler(alarmed));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect((await send(base, "GET", "/health")).body).toBe('{"health":"false"}\n');
      expect((await send(base, "GET", "/health?exclude=NOSPACE")).body).toBe('{"health":"true"}');
    } finally {
      await closeServer(server);
    }
  });

  it("/health is false when the consensus read does not finish in time", async () => {
    const stuck = stubHost(
      {
        "/etcdserverpb.Maintenance/Alarm": (_call: unknown, cb: (e: null, r: W) => void) => cb(null, {}),
      } as Record<string, (...args: never[]) => void>,
      { read: () => new Promise(() => {}) },
    );
    const server = await serve(createHttpHandler(stuck, { healthTimeoutMs: 20 }));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const h = await send(base, "GET", "/health");
      expect([h.status, h.body]).toEqual([503, '{"health":"false"}\n']);
    } finally {
      await closeServer(server);
    }
  });

  it("/metrics: Prometheus text with etcd's names; counters move with writes", async () => {
    const value = (text: string, name: string): number => {
      const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
      if (m === null) throw new Error(`${name} not in /metrics`);
      return Number(m[1]);
    };
    const before = await send(node.base, "GET", "/metrics");
    expect(before.status).toBe(200);
    expect(before.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    for (const name of [
      "etcd_server_has_leader",
      "etcd_server_leader_changes_seen_total",
      "etcd_server_proposals_committed_total",
      "etcd_server_proposals_applied_total",
      "etcd_server_proposals_pending",
      "etcd_server_proposals_failed_total",
      "etcd_disk_wal_fsync_duration_seconds_count",
      "etcd_mvcc_db_total_size_in_bytes",
      "etcd_debugging_mvcc_db_total_size_in_bytes",
      "etcd_debugging_lease_granted_total",
      "etcd_debugging_lease_revoked_total",
      "etcd_debugging_lease_renewed_total",
      "etcd_debugging_server_lease_expired_total",
      "etcd_debugging_mvcc_watcher_total",
      "leasehold_raft_term",
    ])
      value(before.body, name);
    expect(value(before.body, "etcd_server_has_leader")).toBe(1);
    expect(value(before.body, "etcd_mvcc_db_total_size_in_bytes")).toBe(4096);
    expect(before.body).toContain('etcd_server_id{server_id="1"} 1');
    const putsBefore = Number(
      /etcd_server_apply_duration_seconds_count\{version="v3",op="Put",success="true"\} (\d+)/.exec(
        before.body,
      )?.[1],
    );
    await post(node.base, "/v3/kv/put", `{"key":"${b64("m")}","value":"${b64("1")}"}`);
    await post(node.base, "/v3/lease/grant", '{"TTL":60,"ID":"6161"}');
    await post(node.base, "/v3/lease/revoke", '{"ID":"6161"}');
    const after = (await send(node.base, "GET", "/metrics")).body;
    expect(value(after, "etcd_server_proposals_applied_total")).toBeGreaterThanOrEqual(
      value(before.body, "etcd_server_proposals_applied_total") + 3,
    );
    expect(value(after, "etcd_debugging_lease_granted_total")).toBe(
      value(before.body, "etcd_debugging_lease_granted_total") + 1,
    );
    expect(value(after, "etcd_debugging_lease_revoked_total")).toBe(
      value(before.body, "etcd_debugging_lease_revoked_total") + 1,
    );
    expect(
      Number(
        /etcd_server_apply_duration_seconds_count\{version="v3",op="Put",success="true"\} (\d+)/.exec(
          after,
        )?.[1],
      ),
    ).toBe(putsBefore + 1);
    expect(value(after, "etcd_server_health_success")).toBeGreaterThanOrEqual(1);
  });
});

// ---------------------------------------------------------------- side by side with etcd 3.4.23

describe("the same requests against etcd 3.4.23", () => {
  let etcd: EtcdProcess;
  let fresh: Node;
  beforeAll(async () => {
    [etcd, fresh] = await Promise.all([startEtcd({ name: "gateway" }), new Node().listen()]);
    // Both at revision 1 with a leader: the first write below waits out leasehold's election.
  }, 30_000);
  afterAll(async () => {
    await fresh?.stop();
    if (etcd !== undefined) await stopEtcd(etcd);
  });

  /** What must agree: status, the headers the gateway sets, and the body with ids normalized. */
  const shape = (a: Answer): string => {
    const h = a.headers;
    const kept = [
      "content-type",
      "grpc-metadata-content-type",
      "trailer",
      "transfer-encoding",
      "allow",
      "x-content-type-options",
      "access-control-allow-origin",
    ]
      .filter((k) => h[k] !== undefined)
      .map((k) => `${k}: ${String(h[k])}`);
    if (h["content-length"] !== undefined) kept.push("content-length: (set)");
    const body = a.body
      .replace(/"(cluster_id|member_id)":"\d+"/g, '"$1":"ID"')
      .replace(/"raft_term":"\d+"/g, '"raft_term":"T"')
      .replace(/"etcdserver":"[\d.]+"/, '"etcdserver":"V"');
    return [`${a.status}`, ...kept.sort(), "", body, JSON.stringify(a.trailers)].join("\n");
  };

  const script: readonly (readonly [string, string, string?])[] = [
    ["POST", "/v3/kv/put", `{"key":"${b64("foo")}","value":"${b64("bar")}"}`],
    ["POST", "/v3/kv/range", `{"key":"${b64("foo")}"}`],
    ["POST", "/v3/kv/range", `{"key":"${b64("foo")}","rangeEnd":"${b64("fop")}","keysOnly":true}`],
    ["POST", "/v3/kv/range", `{"key":"${b64("foo")}","revision":100}`],
    ["POST", "/v3beta/kv/range", `{"key":"${b64("none")}"}`],
    [
      "POST",
      "/v3/kv/txn",
      `{"compare":[{"key":"${b64("foo")}","result":"EQUAL","target":"VALUE","value":"${b64("bar")}"}],` +
        // A range AFTER the put: leasehold gives a range before a put in the same txn the txn's
        // final revision in its header, where etcd gives the revision before the txn.
        `"success":[{"requestPut":{"key":"${b64("foo")}","value":"eA==","prev_kv":true}},{"request_range":{"key":"${b64("foo")}"}}]}`,
    ],
    [
      "POST",
      "/v3/kv/txn",
      `{"compare":[{"key":"${b64("foo")}","result":"EQUAL","target":"VERSION","version":"99"}],` +
        `"failure":[{"request_delete_range":{"key":"${b64("foo")}","prev_kv":true}}]}`,
    ],
    ["POST", "/v3/kv/deleterange", `{"key":"${b64("none")}"}`],
    ["POST", "/v3/lease/grant", '{"TTL":60,"ID":4242}'],
    ["POST", "/v3/lease/grant", '{"TTL":60,"ID":"4242"}'],
    ["POST", "/v3/lease/revoke", '{"ID":"777"}'],
    ["POST", "/v3/kv/lease/timetolive", '{"ID":"777"}'],
    ["POST", "/v3/kv/range", '{"key":'],
    ["POST", "/v3/kv/range", '{"key":"!!!"}'],
    ["POST", "/v3/kv/range", '{"key":123}'],
    ["POST", "/v3/kv/range", "[1]"],
    ["POST", "/v3/kv/range", '{"key":"Zm9v","revision":1.5}'],
    ["POST", "/v3/kv/txn", '{"compare":[{"key":"Zm9v","result":"BOGUS"}]}'],
    ["POST", "/v3/kv/range", ""],
    ["POST", "/v3/lease/keepalive", '{"ID":'],
    ["POST", "/v3/kv/nosuch", "{}"],
    ["GET", "/v3/kv/range"],
    ["GET", "/v3alpha/kv/range"],
    ["OPTIONS", "/v3/kv/range"],
    ["GET", "/health"],
    ["POST", "/health", ""],
    ["GET", "/version"],
  ];

  it("unary answers, errors, paths and /health agree", async () => {
    for (const [method, path, body] of script) {
      const [theirs, ours] = [
        await send(`http://${etcd.endpoint}`, method, path, body),
        await send(fresh.base, method, path, body),
      ];
      expect(shape(ours), `${method} ${path} ${body ?? ""}`).toBe(shape(theirs));
    }
  });

  it("a keepalive stream agrees", async () => {
    const body = '{"ID":"4242"}{"ID":"999"}';
    const [theirs, ours] = [
      new LineStream(`http://${etcd.endpoint}`, "/v3/lease/keepalive", body),
      new LineStream(fresh.base, "/v3/lease/keepalive", body),
    ];
    const norm = (lines: string[]) =>
      lines.map((l) => l.replace(/"(cluster_id|member_id|raft_term)":"\d+"/g, '"$1":"N"'));
    expect(norm(await ours.all())).toEqual(norm(await theirs.all()));
    expect((await ours.answer).headers["grpc-metadata-content-type"]).toBe(
      (await theirs.answer).headers["grpc-metadata-content-type"],
    );
  });

  it("a watch stream agrees: created, then the event of a put", async () => {
    const answers: W[][] = [];
    for (const base of [`http://${etcd.endpoint}`, fresh.base]) {
      const s = new LineStream(base, "/v3/watch", `{"create_request":{"key":"${b64("wk")}","prev_kv":true}}`);
      const got = [await s.next()];
      await post(base, "/v3/kv/put", `{"key":"${b64("wk")}","value":"${b64("v")}"}`);
      got.push(await s.next());
      s.abort();
      answers.push(got);
    }
    const norm = (ws: W[]) =>
      JSON.parse(JSON.stringify(ws).replace(/"(cluster_id|member_id|raft_term)":"\d+"/g, '"$1":"N"'));
    expect(norm(answers[1]!)).toEqual(norm(answers[0]!));
  });
});
