/**
 * The differential harness of the etcd3-client end-to-end tests (issue 5 §2):
 * the same scenarios run against a real `leasehold serve` process and a real
 * etcd 3.4 started in the same test file, and must agree.
 *
 *   differentialSuite({ tls }, (scenario) => {
 *     scenario("kv: put and get", async (t, log) => { ... });
 *   });
 *
 * registers, for each server, a `describe(server)` whose tests run the
 * scenarios against that server (a fresh etcd3 client per scenario, closed at
 * its end: a client whose circuit breaker opened in one scenario cannot fail
 * the next), and then `describe("leasehold agrees with etcd")` with one test
 * per scenario that compares the two transcripts. A scenario asserts what must
 * hold on either server (the same expectations run against both) and records
 * what it saw with `log.add(label, value)`: values are normalized first
 * (revisions relative to the scenario's first one, lease and watch ids by
 * order of appearance, headers with cluster/member ids and raft terms masked (zero or not),
 * buffers as text, errors as their etcd3 class and message), so everything
 * else, including how many revisions each write took, must be identical.
 *
 * etcd runs first: its transcript is the reference. Both servers are started
 * in parallel in the file's beforeAll, and stopped by PID in its afterAll.
 */

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Etcd3, type IOptions, type WatchBuilder } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EtcdClientTls, EtcdProcess } from "../support/etcd.ts";
import { startEtcd, stopAllEtcd, stopEtcd } from "../support/etcd.ts";
import type { MemberProcess } from "../support/process.ts";
import { freePort, kill9, killAll, removeDir, startMember, tempDir } from "../support/process.ts";

export type ServerKind = "etcd" | "leasehold";
/** etcd first: the reference transcript is recorded before leasehold's. */
export const SERVERS: readonly ServerKind[] = ["etcd", "leasehold"];

/** A path to one of the transport tests' TLS fixtures (see test/transport/helpers.ts). */
export const fixturePath = (name: string): string =>
  fileURLToPath(new URL(`../transport/fixtures/${name}`, import.meta.url));

/** The fixtures' CA, member certificate (CN "leasehold test member", client and server auth) and key. */
export const TLS_FILES = {
  ca: fixturePath("ca.crt"),
  cert: fixturePath("member.crt"),
  key: fixturePath("member.key"),
  rogueCert: fixturePath("rogue.crt"),
  rogueKey: fixturePath("rogue.key"),
} as const;

/** One running server, of either kind. */
export interface Server {
  readonly kind: ServerKind;
  /** http(s)://127.0.0.1:port */
  readonly url: string;
  stop(): Promise<void>;
}

/** Starts a server of `kind` with the same client flags etcd would get. */
export async function startServer(kind: ServerKind, tls?: EtcdClientTls): Promise<Server> {
  if (kind === "etcd") {
    const etcd: EtcdProcess = await startEtcd(tls === undefined ? {} : { tls });
    return { kind, url: etcd.clientUrl, stop: () => stopEtcd(etcd) };
  }
  const dir = tempDir("e2e");
  const clientPort = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  const url = `${tls === undefined ? "http" : "https"}://127.0.0.1:${clientPort}`;
  const member: MemberProcess = await startMember("e2e", dir, clientPort, [
    "--listen-client-urls",
    url,
    "--advertise-client-urls",
    url,
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    `e2e=${peer}`,
    ...(tls === undefined ? [] : ["--cert-file", tls.certFile, "--key-file", tls.keyFile]),
    ...(tls?.trustedCaFile === undefined ? [] : ["--trusted-ca-file", tls.trustedCaFile]),
    ...(tls?.clientCertAuth === true ? ["--client-cert-auth"] : []),
  ]);
  return {
    kind,
    url,
    stop: async () => {
      await kill9(member);
      removeDir(dir);
    },
  };
}

/** What a scenario gets: the server it runs against and clients on it. */
export interface Target {
  readonly server: ServerKind;
  readonly url: string;
  /** A client made for this scenario (with the suite's client options). */
  readonly client: Etcd3;
  /** Another client on the same server; `options` replace the suite's. Closed when the scenario ends. */
  connect(options?: Omit<IOptions, "hosts">): Etcd3;
}

export type ScenarioBody = (t: Target, log: Transcript) => Promise<void>;
export type Scenario = (name: string, body: ScenarioBody) => void;

export interface SuiteOptions {
  /** Names this suite's transcript files when a test file has several suites. */
  readonly label?: string;
  /** TLS flags for both servers (and so https URLs). */
  readonly tls?: EtcdClientTls;
  /** Options of every scenario's `client` (hosts excepted). */
  readonly clientOptions?: Omit<IOptions, "hosts">;
}

/**
 * Registers `define`'s scenarios once per server and the comparisons of their
 * transcripts. Call at the top level of a test file, or inside a describe (its
 * servers then run only while that describe does).
 */
export function differentialSuite(options: SuiteOptions, define: (scenario: Scenario) => void): void {
  const servers = new Map<ServerKind, Server>();
  const transcripts = new Map<ServerKind, Map<string, Transcript>>(SERVERS.map((k) => [k, new Map()]));
  const names: string[] = [];

  beforeAll(async () => {
    const started = await Promise.allSettled(SERVERS.map((k) => startServer(k, options.tls)));
    started.forEach((s, i) => {
      if (s.status === "fulfilled") servers.set(SERVERS[i]!, s.value);
    });
    const failed = started.find((s) => s.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  });

  afterAll(async () => {
    dumpTranscripts(transcripts, options.label);
    await Promise.all([...servers.values()].map((s) => s.stop()));
    await killAll();
    await stopAllEtcd();
  });

  for (const kind of SERVERS) {
    describe(kind, () => {
      define((name, body) => {
        if (!names.includes(name)) names.push(name);
        it(name, async () => {
          const server = servers.get(kind);
          expect(server, `${kind} did not start`).toBeDefined();
          const log = new Transcript();
          transcripts.get(kind)!.set(name, log);
          const clients: Etcd3[] = [];
          const connect = (o: Omit<IOptions, "hosts"> = options.clientOptions ?? {}): Etcd3 => {
            const c = new Etcd3({ ...o, hosts: server!.url });
            clients.push(c);
            return c;
          };
          const target: Target = { server: kind, url: server!.url, client: connect(), connect };
          try {
            await body(target, log);
          } finally {
            // A lease left behind would expire during a later scenario and move that one's revisions
            // (at a time that differs between the servers): revoke what is left (best effort: a
            // scenario may have left auth on).
            try {
              const left = await target.client.leaseClient.leaseLeases();
              for (const l of left.leases) await target.client.leaseClient.leaseRevoke({ ID: l.ID });
            } catch {}
            for (const c of clients) c.close();
          }
        });
      });
    });
  }

  describe("leasehold agrees with etcd", () => {
    for (const name of names) {
      it(name, () => {
        const reference = transcripts.get("etcd")!.get(name);
        const candidate = transcripts.get("leasehold")!.get(name);
        expect(reference, "etcd did not run this scenario").toBeDefined();
        expect(candidate, "leasehold did not run this scenario").toBeDefined();
        expect(candidate!.entries).toEqual(reference!.entries);
      });
    }
  });
}

/**
 * With E2E_TRANSCRIPTS=<dir>, writes each server's transcripts there as JSON
 * (to read what the servers answered, or to diff them by hand).
 */
function dumpTranscripts(transcripts: Map<ServerKind, Map<string, Transcript>>, label?: string): void {
  const dir = process.env.E2E_TRANSCRIPTS;
  if (dir === undefined || dir === "") return;
  const base = basename(expect.getState().testPath ?? "suite", ".test.ts");
  const file = label === undefined ? base : `${base}.${label}`;
  mkdirSync(dir, { recursive: true });
  for (const [kind, byName] of transcripts) {
    const out = Object.fromEntries([...byName].map(([name, t]) => [name, t.entries]));
    writeFileSync(join(dir, `${file}.${kind}.json`), `${JSON.stringify(out, null, 2)}\n`);
  }
}

/** Client credentials for the fixtures: the CA, and optionally the member's certificate as client certificate. */
export function clientCredentials(withClientCert: boolean): NonNullable<IOptions["credentials"]> {
  const rootCertificate = readFileSync(TLS_FILES.ca);
  if (!withClientCert) return { rootCertificate };
  return {
    rootCertificate,
    certChain: readFileSync(TLS_FILES.cert),
    privateKey: readFileSync(TLS_FILES.key),
  };
}

/** Header fields whose values legitimately differ between servers (ids, raft terms): only zero or not is recorded. */
const MASKED_HEADER_FIELDS = new Set(["cluster_id", "member_id", "raft_term"]);
/** Fields that hold a revision: recorded relative to the scenario's base revision. */
const REVISION_FIELDS = new Set(["revision", "create_revision", "mod_revision", "compact_revision"]);
/** Fields that hold an id the server chose: recorded by order of appearance. */
const ID_FIELDS = new Map([
  ["ID", "lease"],
  ["lease", "lease"],
  ["watch_id", "watch"],
]);

/**
 * One scenario's normalized record. `base(rev)` fixes the revision that
 * relative revisions count from (call it once at the start, with the revision
 * of a read); until then revisions are recorded as they are.
 */
export class Transcript {
  readonly entries: [string, unknown][] = [];
  private baseRevision = 0n;
  private readonly aliases = new Map<string, string>();
  private readonly counts = new Map<string, number>();

  /** Revisions are recorded as `+n` / `-n` from this one. */
  base(revision: string | number | bigint): void {
    this.baseRevision = BigInt(revision);
  }

  /** Reads the server's current revision through `client` and makes it the base. */
  async baseFrom(client: Etcd3): Promise<void> {
    const res = await client.get("\u0000transcript-base").exec();
    this.base(res.header.revision);
  }

  add(label: string, value: unknown): void {
    this.entries.push([label, this.norm(value, "")]);
  }

  /** A revision relative to the base, as recorded. */
  rev(revision: string | number | bigint): string {
    const d = BigInt(revision) - this.baseRevision;
    return d < 0n ? `${d}` : `+${d}`;
  }

  /** The alias recorded for a server-chosen id of `kind`. */
  id(kind: string, value: string | number | bigint): string {
    const v = String(value);
    if (v === "0") return "0";
    const key = `${kind}:${v}`;
    let alias = this.aliases.get(key);
    if (alias === undefined) {
      const n = (this.counts.get(kind) ?? 0) + 1;
      this.counts.set(kind, n);
      alias = `${kind}#${n}`;
      this.aliases.set(key, alias);
    }
    return alias;
  }

  private norm(value: unknown, field: string): unknown {
    if (value === null || value === undefined) return value;
    if (Buffer.isBuffer(value)) return bufferText(value);
    if (value instanceof Error) return { error: value.constructor.name, message: value.message };
    if (Array.isArray(value)) return value.map((v) => this.norm(v, field));
    if (typeof value === "bigint") return value.toString();
    if (typeof value === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        out[k] = field === "header" && MASKED_HEADER_FIELDS.has(k) ? masked(v) : this.norm(v, k);
      }
      return out;
    }
    if (typeof value === "string" || typeof value === "number") {
      if (REVISION_FIELDS.has(field) && String(value) !== "0") return this.rev(value);
      const kind = ID_FIELDS.get(field);
      if (kind !== undefined) return this.id(kind, value);
    }
    return value;
  }
}

/** "0" for a zero (or absent) id, "*" for any other. */
function masked(v: unknown): string {
  return v === undefined || v === null || String(v) === "0" ? "0" : "*";
}

/** Printable UTF-8 as itself, anything else as hex. */
function bufferText(b: Buffer): string {
  const s = b.toString("utf8");
  const printable = b.every((byte) => byte >= 0x20);
  return printable && Buffer.from(s, "utf8").equals(b) ? s : `hex:${b.toString("hex")}`;
}

/**
 * etcd3's `WatchBuilder.only(...)` (server-side event filters). Test files call
 * it through here: the tidy test reserves the spelling `.only` in them for
 * focused tests.
 */
export function onlyEvents(builder: WatchBuilder, ...operations: ("put" | "delete")[]): WatchBuilder {
  return builder.only(...operations);
}

/** The error a promise rejects with (fails, naming `what`, if it resolves). */
export async function rejection(p: Promise<unknown>, what = "the call"): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error(`expected a rejection, but ${what} succeeded`);
}

/**
 * Resolves with the arguments of the next `event` on `emitter`, or rejects
 * after `timeoutMs` (a bound on a wait for an event, not a sleep).
 */
export function nextEvent<T extends unknown[]>(
  emitter: NodeJS.EventEmitter,
  event: string,
  timeoutMs = 5_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no '${event}' event within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args as T);
    };
    emitter.once(event, listener);
  });
}

/** A queue of events from `emitter`, taken in order with `next()` (bounded waits). */
export class EventQueue<T> {
  private readonly items: T[] = [];
  private readonly waiters: ((item: T) => void)[] = [];

  constructor(emitter: NodeJS.EventEmitter, event: string, map: (...args: never[]) => T) {
    emitter.on(event, (...args: unknown[]) => {
      const item = (map as (...a: unknown[]) => T)(...args);
      const waiter = this.waiters.shift();
      if (waiter === undefined) this.items.push(item);
      else waiter(item);
    });
  }

  /** Everything received and not yet taken. */
  get pending(): readonly T[] {
    return this.items;
  }

  next(timeoutMs = 5_000): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve, reject) => {
      const waiter = (i: T) => {
        clearTimeout(timer);
        resolve(i);
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** The next `n` items, in order. */
  async take(n: number, timeoutMs = 5_000): Promise<T[]> {
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeoutMs));
    return out;
  }
}
