/**
 * Bad input on the JSON gateway (issue 5 §3): HTTP/1.1 on the client port of
 * one real `leasehold serve` process (POST /v3/kv/put, /v3/kv/range,
 * /v3/lease/grant, /v3/watch, ... with base64 keys), side by side with a
 * real etcd 3.4 whose gateway is the reference.
 *
 * Both servers get the same seeded state (arbitraries.ts SEED_STEPS, through
 * gRPC). fast-check, from a fixed seed (in the describe's title), generates
 * RUNS requests (arbitraries.ts gatewayCases): truncated JSON, characters
 * that start no JSON value, wrong JSON types for every kind of field,
 * non-base64 text in bytes fields, invalid UTF-8 between tokens and inside
 * strings, unknown fields, bodies that are not objects, empty requests,
 * methods other than POST, unknown paths, chunked bodies in random pieces,
 * bodies shorter than their Content-Length, malformed chunk sizes, puts over
 * the request and message limits, tokens nobody issued. Each body is built
 * from a request that changes no state, so whatever a server makes of it,
 * nothing may change. Every case goes to both servers:
 *
 * - etcd must answer the cases marked invalid with an error status (a check
 *   that the generator makes what it says it makes);
 * - leasehold must answer every case within the deadline, never crash or
 *   answer an internal error, and answer as etcd does: the same status and,
 *   for an error, the same gRPC code and message (grpc-gateway's JSON, or
 *   Go's text/plain for 404/405), unless the case's documented deviation
 *   (arbitraries.ts GATEWAY_DEVIATIONS) explains the difference;
 * - afterwards the state of both is unchanged (HashKV, Maintenance.Hash on
 *   leasehold, every key, lease, member, user, role and alarm, the
 *   revision), and the member still runs and serves a put and a get through
 *   the gateway.
 *
 * Every failure is listed at once, each with its request and both answers.
 * LEASEHOLD_FUZZ_SEED and LEASEHOLD_GATEWAY_FUZZ_RUNS change the seed and the
 * number of cases.
 */

import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EtcdProcess } from "../support/etcd.ts";
import { startEtcd, stopAllEtcd } from "../support/etcd.ts";
import type { MemberProcess } from "../support/process.ts";
import { freePort, killAll, removeDir, startMember, tempDir } from "../support/process.ts";
import {
  CALL_DEADLINE_MS,
  FUZZ_SEED,
  fingerprint,
  GATEWAY_DEVIATIONS,
  type GatewayDeviationId,
  GrpcTarget,
  gatewayCases,
  type HttpCase,
  type HttpRequestSpec,
  hugeWhitespaceCase,
  seed,
  truncate,
  type World,
} from "./arbitraries.ts";

/** Cases per run: a few seconds for both servers together. */
const RUNS = Number(process.env.LEASEHOLD_GATEWAY_FUZZ_RUNS ?? 600);

/** What one HTTP request got. */
type HttpAnswer =
  | { readonly kind: "answer"; readonly status: number; readonly contentType: string; readonly body: string }
  /** The server closed the connection without a response. */
  | { readonly kind: "closed"; readonly detail: string }
  | { readonly kind: "hang"; readonly detail: string };

interface Server {
  readonly host: string;
  readonly port: number;
}

let dir: string;
let member: MemberProcess;
let etcd: EtcdProcess;
let lhServer: Server;
let etcdServer: Server;
let lh: GrpcTarget;
let ref: GrpcTarget;
let world: World;
const before: { lh?: unknown; etcd?: unknown } = {};

beforeAll(async () => {
  dir = tempDir("gateway-fuzz");
  const clientPort = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  [member, etcd] = await Promise.all([
    startMember("gwfuzz", dir, clientPort, [
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `gwfuzz=${peer}`,
    ]),
    startEtcd({ name: "gwfuzz-reference" }),
  ]);
  lhServer = serverOf(member.endpoint);
  etcdServer = serverOf(etcd.endpoint);
  lh = new GrpcTarget("leasehold", member.endpoint);
  ref = new GrpcTarget("etcd", etcd.endpoint);
  const [lhWorld, etcdWorld] = await Promise.all([seed(lh), seed(ref)]);
  world = { ...lhWorld, memberIds: [...lhWorld.memberIds, ...etcdWorld.memberIds] };
  before.lh = await fingerprint(lh, { wholeHash: true });
  before.etcd = await fingerprint(ref, { wholeHash: false });
});

afterAll(async () => {
  lh?.close();
  ref?.close();
  await Promise.all([killAll(), stopAllEtcd()]);
  if (dir !== undefined) removeDir(dir);
});

function serverOf(endpoint: string): Server {
  const [host, port] = endpoint.split(":");
  return { host: host!, port: Number(port) };
}

// ------------------------------------------------------------------ HTTP client

/** Sends `spec` on a fresh connection and reads the whole answer, within the deadline. */
function send(server: Server, spec: HttpRequestSpec): Promise<HttpAnswer> {
  return spec.framing.kind === "raw" ? sendRaw(server, spec.framing.bytes) : sendHttp(server, spec);
}

function sendHttp(server: Server, spec: HttpRequestSpec): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (a: HttpAnswer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(a);
    };
    const headers: Record<string, string | number> = { ...spec.headers };
    if (spec.framing.kind === "length") headers["content-length"] = spec.body.length;
    const req = httpRequest(
      { host: server.host, port: server.port, method: spec.method, path: spec.path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          finish({
            kind: "answer",
            status: res.statusCode ?? 0,
            contentType: String(res.headers["content-type"] ?? ""),
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        res.on("error", (e) => finish({ kind: "closed", detail: `response: ${e.message}` }));
      },
    );
    const timer = setTimeout(
      () => finish({ kind: "hang", detail: `no complete answer within ${CALL_DEADLINE_MS} ms` }),
      CALL_DEADLINE_MS,
    );
    req.on("error", (e) => finish({ kind: "closed", detail: e.message }));
    if (spec.framing.kind === "chunked") {
      let at = 0;
      for (const size of spec.framing.sizes) {
        if (at >= spec.body.length) break;
        req.write(spec.body.subarray(at, at + size));
        at += size;
      }
      if (at < spec.body.length) req.write(spec.body.subarray(at));
    } else if (spec.body.length > 0) req.write(spec.body);
    req.end();
  });
}

/** Writes `bytes` as they are, half-closes, and parses whatever comes back until the server closes. */
function sendRaw(server: Server, bytes: Buffer): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    const socket = connect(server.port, server.host);
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (a: HttpAnswer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(a);
    };
    const timer = setTimeout(
      () => finish({ kind: "hang", detail: `no answer and no close within ${CALL_DEADLINE_MS} ms` }),
      CALL_DEADLINE_MS,
    );
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => {});
    socket.on("close", () => finish(parseRaw(Buffer.concat(chunks))));
    socket.end(bytes);
  });
}

/** The first response in `raw` (status, content type, body with chunked framing removed). */
function parseRaw(raw: Buffer): HttpAnswer {
  const text = raw.toString("latin1");
  const head = text.indexOf("\r\n\r\n");
  if (text === "" || head < 0) return { kind: "closed", detail: `closed after ${raw.length} bytes` };
  const lines = text.slice(0, head).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0);
  const header = (n: string): string =>
    lines
      .find((l) => l.toLowerCase().startsWith(`${n}:`))
      ?.slice(n.length + 1)
      .trim() ?? "";
  let body = text.slice(head + 4);
  if (/chunked/i.test(header("transfer-encoding"))) {
    let out = "";
    for (let at = 0; ; ) {
      const eol = body.indexOf("\r\n", at);
      const size = Number.parseInt(body.slice(at, eol), 16);
      if (eol < 0 || !(size > 0)) break;
      out += body.slice(eol + 2, eol + 2 + size);
      at = eol + 2 + size + 2;
    }
    body = out;
  } else if (header("content-length") !== "") body = body.slice(0, Number(header("content-length")));
  return {
    kind: "answer",
    status,
    contentType: header("content-type"),
    body: Buffer.from(body, "latin1").toString(),
  };
}

// ------------------------------------------------------------------ judging

/** An error as grpc-gateway writes it: unary `{error, message, code}` or a stream's `{"error": {...}}` line. */
function gatewayError(a: HttpAnswer): { readonly code: number; readonly message: string } | undefined {
  if (a.kind !== "answer" || !a.contentType.startsWith("application/json")) return undefined;
  for (const line of a.body.split("\n")) {
    if (line.trim() === "") continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      return { code: -1, message: `not JSON: ${truncate(line, 80)}` };
    }
    const o = v as { error?: unknown; message?: unknown; code?: unknown };
    if (typeof o.error === "string") return { code: Number(o.code ?? 0), message: String(o.message ?? "") };
    if (o.error !== null && typeof o.error === "object") {
      const e = o.error as { grpc_code?: unknown; message?: unknown };
      return { code: Number(e.grpc_code ?? 0), message: String(e.message ?? "") };
    }
  }
  return undefined;
}

/**
 * What must match between the two servers: the status, and for an error
 * its gRPC code and message, or Go's text/plain body. Success bodies carry
 * ids and revisions that legitimately differ.
 */
function normalize(a: HttpAnswer): string {
  if (a.kind !== "answer") return a.kind.toUpperCase();
  const type = a.contentType.split(";")[0]!.trim();
  const e = gatewayError(a);
  if (e !== undefined) return `${a.status} error ${e.code} ${e.message}`;
  if (a.status < 300) return `${a.status}`;
  return `${a.status} ${type} ${a.body.trim()}`;
}

function describeHttp(a: HttpAnswer): string {
  if (a.kind !== "answer") return `${a.kind.toUpperCase()} (${a.detail})`;
  return `${a.status} ${a.contentType || "(no content type)"} ${truncate(JSON.stringify(a.body), 200)}`;
}

/** Whether a documented deviation explains leasehold's answer `l` where etcd answered `e`. */
const DEVIATION_EXPLAINS: Record<GatewayDeviationId, (e: HttpAnswer, l: HttpAnswer) => boolean> = {
  invalidUtf8Char: (e, l) => {
    const [ee, le] = [gatewayError(e), gatewayError(l)];
    const anyChar = (m: string): string => m.replace(/'(\\.|[^'])+'/g, "'?'");
    return (
      ee !== undefined &&
      le !== undefined &&
      ee.code === le.code &&
      anyChar(ee.message) === anyChar(le.message)
    );
  },
  enumTypeName: (e, l) => {
    const [ee, le] = [gatewayError(e), gatewayError(l)];
    return (
      ee !== undefined &&
      le !== undefined &&
      ee.code === le.code &&
      ee.message.replace(/etcdserverpb\.[A-Za-z_]+/g, "int32") === le.message
    );
  },
  httpFraming: (_e, l) => l.kind === "answer" && l.status === 400 && l.body.trim() === "",
  bodyLimit: (_e, l) =>
    l.kind === "answer" &&
    l.status === 429 &&
    (gatewayError(l)?.message ?? "").startsWith("leasehold: request body larger than"),
  invalidToken: (e, l) => /invalid auth token/.test(gatewayError(e)?.message ?? "") && l.kind === "answer",
};

/** Why an answer from leasehold is never acceptable, whatever the case. */
function httpFault(c: HttpCase, a: HttpAnswer): string | undefined {
  if (a.kind === "hang") return `hang: ${a.detail}`;
  if (a.kind === "closed") return `closed the connection without an answer: ${a.detail}`;
  const e = gatewayError(a);
  if (e !== undefined && e.code === -1) return `an error body that is not JSON: ${e.message}`;
  if (e?.message === "etcdserver: internal error") return "internal error";
  if (a.status >= 500 && e === undefined && a.body.trim() !== "")
    return `a ${a.status} that is not a JSON error`;
  if (c.invalid && a.status < 400) return `a malformed request answered ${a.status}`;
  return undefined;
}

interface Outcome {
  readonly index: number;
  readonly c: HttpCase;
  readonly lh: HttpAnswer;
  readonly etcd: HttpAnswer;
}

function report(o: Outcome, problem: string): string {
  const r = o.c.request;
  const framing =
    r.framing.kind === "raw"
      ? `raw ${truncate(JSON.stringify(r.framing.bytes.toString("latin1")), 300)}`
      : `${r.framing.kind === "chunked" ? `chunked ${JSON.stringify(r.framing.sizes)} ` : ""}body ${truncate(JSON.stringify(r.body.toString("latin1")), 300)}`;
  const headers = r.headers === undefined ? "" : ` headers ${JSON.stringify(r.headers)}`;
  const devs = (o.c.deviations ?? [])
    .map((d) => `\n  documented deviation: ${GATEWAY_DEVIATIONS[d]}`)
    .join("");
  return (
    `#${o.index} [${o.c.label}] ${problem}\n  request: ${r.method} ${r.path}${headers} ${framing}\n` +
    `  etcd:      ${describeHttp(o.etcd)}\n  leasehold: ${describeHttp(o.lh)}${devs}`
  );
}

// ------------------------------------------------------------------ the tests

describe(`JSON gateway fuzz: ${RUNS} malformed requests, seed ${FUZZ_SEED} (0x${FUZZ_SEED.toString(16)})`, () => {
  const outcomes: Outcome[] = [];
  let probe: { lh: HttpAnswer; etcd: HttpAnswer };

  beforeAll(async () => {
    const empty = {
      method: "POST",
      path: "/v3/kv/range",
      body: Buffer.from("{}"),
      framing: { kind: "length" },
    } as const;
    probe = { lh: await send(lhServer, empty), etcd: await send(etcdServer, empty) };
    const cases = fc.sample(gatewayCases(world), { seed: FUZZ_SEED, numRuns: RUNS });
    for (const [index, c] of cases.entries()) {
      const [l, e] = await Promise.all([send(lhServer, c.request), send(etcdServer, c.request)]);
      outcomes.push({ index, c, lh: l, etcd: e });
    }
    const arms = new Set(outcomes.map((o) => o.c.label));
    process.stderr.write(`gateway fuzz: ${outcomes.length} cases (seed ${FUZZ_SEED}), ${arms.size} arms\n`);
  }, 120_000);

  it("the gateway answers on the client port (POST /v3/kv/range {} is etcd's 'key is not provided')", () => {
    expect(normalize(probe.etcd)).toBe("400 error 3 etcdserver: key is not provided");
    expect(
      normalize(probe.lh),
      `leasehold's client port answered ${describeHttp(probe.lh)}: is the JSON gateway (src/api/gateway.ts) mounted?`,
    ).toBe(normalize(probe.etcd));
  });

  it("etcd answers every case marked malformed with an error status (the generator makes what it says)", () => {
    const problems = outcomes
      .filter((o) => o.c.invalid && (o.etcd.kind !== "answer" || o.etcd.status < 400))
      .map((o) => report(o, "etcd did not refuse it"));
    expect(problems, problems.join("\n\n")).toEqual([]);
  });

  it("leasehold answers every case as etcd does, or as documented; never a hang, a crash or an internal error", () => {
    const deviations = new Map<GatewayDeviationId, number>();
    const problems: string[] = [];
    for (const o of outcomes) {
      const fault = httpFault(o.c, o.lh);
      if (fault !== undefined) {
        problems.push(report(o, `leasehold: ${fault}`));
        continue;
      }
      if (normalize(o.lh) === normalize(o.etcd)) continue;
      const explained = (o.c.deviations ?? []).find((d) => DEVIATION_EXPLAINS[d](o.etcd, o.lh));
      if (explained !== undefined) deviations.set(explained, (deviations.get(explained) ?? 0) + 1);
      else problems.push(report(o, "leasehold answered differently from etcd"));
    }
    process.stderr.write(
      `gateway fuzz: leasehold deviated from etcd as documented in ${[...deviations.values()].reduce((a, b) => a + b, 0)} ` +
        `cases: ${[...deviations].map(([id, n]) => `${id} ${n}`).join(", ") || "none"}\n`,
    );
    expect(problems, `${problems.length} of ${outcomes.length} cases:\n\n${problems.join("\n\n")}`).toEqual(
      [],
    );
  });

  it("a body over 8 MiB is refused (leasehold does not buffer it), and the member keeps serving", async () => {
    const c = hugeWhitespaceCase();
    const [l, e] = await Promise.all([send(lhServer, c.request), send(etcdServer, c.request)]);
    expect(httpFault(c, l), describeHttp(l)).toBeUndefined();
    const same = normalize(l) === normalize(e);
    expect(
      same || DEVIATION_EXPLAINS.bodyLimit(e, l),
      `etcd: ${describeHttp(e)}; leasehold: ${describeHttp(l)}`,
    ).toBe(true);
  });

  it("the state is unchanged on both servers (HashKV, Hash, revision, keys, leases, members, users, roles, alarms)", async () => {
    expect(await fingerprint(lh, { wholeHash: true })).toEqual(before.lh);
    expect(await fingerprint(ref, { wholeHash: false })).toEqual(before.etcd);
  });

  it("the member process is still running and serves a put and a get through the gateway", async () => {
    expect(member.child.exitCode).toBeNull();
    expect(member.child.signalCode).toBeNull();
    const key = Buffer.from("after-gateway-fuzz/k").toString("base64");
    const put = await send(lhServer, {
      method: "POST",
      path: "/v3/kv/put",
      body: Buffer.from(JSON.stringify({ key, value: Buffer.from("v").toString("base64") })),
      framing: { kind: "length" },
    });
    expect(put.kind === "answer" && put.status, describeHttp(put)).toBe(200);
    const got = await send(lhServer, {
      method: "POST",
      path: "/v3/kv/range",
      body: Buffer.from(JSON.stringify({ key })),
      framing: { kind: "length" },
    });
    expect(
      got.kind === "answer" ? (JSON.parse(got.body) as { kvs?: { value: string }[] }).kvs?.[0]?.value : got,
    ).toBe(Buffer.from("v").toString("base64"));
  });
});
