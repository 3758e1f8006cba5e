/**
 * The simulator's clients: a KV client (put, linearizable get, delete,
 * compare-and-swap, compaction), a lease client (grant, acquire a resource
 * with a txn on a key bound to the lease, keepalive, revoke, stop, crash,
 * get partitioned away) and a watch client. Each has its own drifting clock
 * and retries through an RPC helper; commands carry a session (clientId, seq)
 * and a retry repeats the seq, so a command is applied at most once whatever
 * the network and the leader changes do (ARCHITECTURE rule 7).
 *
 * Lease belief (rule 5): a client believes it holds a lease until
 * t_send + TTL·(1 − ρ) on its own clock, t_send being when it FIRST sent the
 * request that was answered (a grant retried with the same seq may have been
 * applied at the first attempt). Past that it is in jeopardy: it stops
 * holding, keeps renewing for one more TTL (a renewal resumes it), then gives
 * the lease up.
 */

import type { MemberId } from "../raft/index.ts";
import { NO_MEMBER } from "../raft/index.ts";
import type { ClientCommand, CommandResult, LeaseId, TxnRequest } from "../state/index.ts";
import { leaseId, NO_LEASE, revision } from "../state/index.ts";
import type { LeaseChecker, WatchChecker } from "./lease-checkers.ts";
import { leaseKey } from "./lease-checkers.ts";
import type { HistoryOp, LeaseInput, LeaseOutput, RegisterInput, RegisterOutput } from "./linearizability.ts";
import type { ClientRequest, ClientResponse } from "./protocol.ts";
import type { SeededRng } from "./rng.ts";

/** What clients need from the simulator. */
export interface ClientHost {
  now(): number;
  at(timeMs: number, run: () => void): void;
  send(from: number, to: MemberId, req: ClientRequest): void;
  /** A member to contact: `hint` if it is still an endpoint, else a random one. */
  endpoint(hint: MemberId): MemberId;
  log(line: string): void;
  /** No new operation may start after this (the run is ending). */
  readonly lastStartMs: number;
  readonly rho: number;
  readonly kvHistory: HistoryOp<RegisterInput, RegisterOutput>[];
  readonly leaseHistory: HistoryOp<LeaseInput, LeaseOutput>[];
  readonly leases: LeaseChecker;
  readonly watches: WatchChecker;
  /** Writes (client, index) acknowledged as applied, for the durability check. */
  ackedIndex(index: number): void;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (s: string) => enc.encode(s);

/** Per-attempt timeout; a call retries on other members until its budget runs out. */
const ATTEMPT_TIMEOUT_MS = 300;

type Answer = ClientResponse & { kind: "applied" | "read" | "keepAlive" };

interface Call {
  readonly no: number;
  attempts: number;
  readonly firstSend: number;
  readonly deadline: number;
  readonly make: (reqId: string) => ClientRequest;
  readonly done: (answer: Answer | undefined, call: Call) => void;
  /** Attempt number whose timer is live. */
  live: number;
  target: MemberId;
}

/** Common to all clients: a drifting clock, RPC with retries, crash (epoch) handling. */
export abstract class SimClient {
  readonly id: number;
  protected readonly host: ClientHost;
  protected readonly rng: SeededRng;
  /** This client's clock runs at this rate (within ±ρ/2 of real time). */
  private readonly rate: number;
  protected leaderHint: MemberId = NO_MEMBER;
  private calls = new Map<number, Call>();
  private callNo = 0;
  /** Bumped by a crash: callbacks of an earlier epoch do nothing. */
  protected epoch = 0;
  okAfter = 0;

  constructor(id: number, host: ClientHost, rng: SeededRng) {
    this.id = id;
    this.host = host;
    this.rng = rng;
    this.rate = 1 + (rng.float() * 2 - 1) * (host.rho / 2);
  }

  abstract start(): void;

  /** This client's clock. */
  protected local(): number {
    return this.host.now() * this.rate;
  }

  /** Real time of a reading of this client's clock. */
  protected realOf(local: number): number {
    return local / this.rate;
  }

  /** Runs `fn` after `ms` of real time, unless the client crashed meanwhile. */
  protected after(ms: number, fn: () => void): void {
    const epoch = this.epoch;
    this.host.at(this.host.now() + ms, () => {
      if (this.epoch === epoch) fn();
    });
  }

  /** Forgets every call and timer (a crash). */
  protected crashClient(): void {
    this.epoch++;
    this.calls = new Map();
  }

  protected call(
    budgetMs: number,
    make: (reqId: string) => ClientRequest,
    done: (answer: Answer | undefined, call: Call) => void,
  ): void {
    const c: Call = {
      no: ++this.callNo,
      attempts: 0,
      firstSend: this.host.now(),
      deadline: this.host.now() + budgetMs,
      make,
      done,
      live: 0,
      target: NO_MEMBER,
    };
    this.calls.set(c.no, c);
    this.attempt(c, this.host.endpoint(this.leaderHint));
  }

  private attempt(c: Call, target: MemberId): void {
    const n = ++c.attempts;
    c.live = n;
    c.target = target;
    this.host.send(this.id, target, c.make(`${this.id}.${c.no}.${n}`));
    this.after(ATTEMPT_TIMEOUT_MS, () => {
      if (this.calls.get(c.no) !== c || c.live !== n) return;
      this.leaderHint = NO_MEMBER;
      this.retry(c, NO_MEMBER);
    });
  }

  private retry(c: Call, hint: MemberId): void {
    if (this.host.now() >= c.deadline) {
      this.calls.delete(c.no);
      c.done(undefined, c);
      return;
    }
    c.live = 0;
    this.after(1 + this.rng.float() * 4, () => {
      if (this.calls.get(c.no) === c && c.live === 0) this.attempt(c, this.host.endpoint(hint));
    });
  }

  /** Every response addressed to this client. */
  onResponse(resp: ClientResponse): void {
    const no = Number(resp.reqId.split(".")[1]);
    const c = this.calls.get(no);
    if (c === undefined || !resp.reqId.startsWith(`${this.id}.`)) {
      this.onStream(resp);
      return;
    }
    const attemptNo = Number(resp.reqId.split(".")[2]);
    switch (resp.kind) {
      case "notLeader":
      case "fail":
        // Only the live attempt's refusal triggers a retry; an older one's is stale news.
        if (attemptNo !== c.live) return;
        this.leaderHint = resp.kind === "notLeader" ? resp.leader : NO_MEMBER;
        this.retry(c, this.leaderHint);
        return;
      case "applied":
      case "read":
      case "keepAlive":
        // Any attempt's answer completes the call: they are all the same request.
        this.calls.delete(no);
        this.leaderHint = c.target;
        c.done(resp, c);
        return;
      default:
        this.onStream(resp);
    }
  }

  /**
   * Sends `cmd` under `session`, retrying with the same seq until answered or the budget runs out
   * (undefined: unknown outcome; the session starts afresh). The answer carries where it was applied.
   */
  protected command(
    session: Session,
    cmd: ClientCommand,
    done: (
      result: CommandResult | undefined,
      answer: (ClientResponse & { kind: "applied" }) | undefined,
    ) => void,
  ): void {
    const cmdWithSession = { ...cmd, session: session.next() };
    this.call(
      1000,
      (reqId) => ({ reqId, client: this.id, kind: "cmd", command: cmdWithSession }),
      (a) => {
        if (a?.kind !== "applied" || isSessionTrouble(a.result)) {
          session.reset();
          return done(undefined, undefined);
        }
        done(a.result, a);
      },
    );
  }

  /** Stream traffic (watch); ignored by clients without streams. */
  protected onStream(_resp: ClientResponse): void {}
}

/** Session bookkeeping shared by the command-sending clients. */
class Session {
  gen = 0;
  seq = 0;
  constructor(private readonly base: string) {}
  next(): { clientId: string; seq: number } {
    return { clientId: `${this.base}.${this.gen}`, seq: ++this.seq };
  }
  /** The table answered sessionExpired/sessionStale, or an outcome was lost: start afresh. */
  reset(): void {
    this.gen++;
    this.seq = 0;
  }
}

function isSessionTrouble(r: CommandResult): boolean {
  return r.kind === "sessionExpired" || r.kind === "sessionStale";
}

// ---------------------------------------------------------------------------------------------------------

/** Reads and writes a few shared keys; every op goes into the linearizability history. */
export class KvClient extends SimClient {
  private readonly keys: number;
  private readonly session: Session;
  private opNo = 0;
  /** The last value this client saw per key (a cas expects it). */
  private readonly lastSeen = new Map<string, string | undefined>();
  private lastRevision = 1;

  constructor(id: number, host: ClientHost, rng: SeededRng, keys: number) {
    super(id, host, rng);
    this.keys = keys;
    this.session = new Session(`kv${id}`);
  }

  start(): void {
    this.after(this.rng.range(0, 50), () => this.nextOp());
  }

  private nextOp(): void {
    const h = this.host;
    if (h.now() > h.lastStartMs) return;
    const key = `k${this.rng.int(this.keys)}`;
    const value = `c${this.id}.${++this.opNo}`;
    const p = this.rng.float();
    const callTime = h.now();
    const finish = (input: RegisterInput, output: RegisterOutput | undefined) => {
      if (output === undefined) {
        h.log(`client ${this.id} ${input.kind} ${key}: unknown`);
        // An unknown read has no effect; an unknown write may take effect later.
        if (input.kind !== "read")
          h.kvHistory.push({ clientId: this.id, input, callTime, output, returnTime: Infinity });
      } else {
        h.log(`client ${this.id} ${input.kind} ${key}: ${JSON.stringify(output)}`);
        h.kvHistory.push({ clientId: this.id, input, callTime, output, returnTime: h.now() });
        this.okAfter++;
      }
      this.after(this.rng.float() * 20, () => this.nextOp());
    };
    if (p < 0.4) {
      const input: RegisterInput = { kind: "read", key };
      this.call(
        1000,
        (reqId) => ({ reqId, client: this.id, kind: "read", key }),
        (a) => {
          if (a?.kind !== "read") return finish(input, undefined);
          this.lastSeen.set(key, a.value);
          finish(input, { value: a.value });
        },
      );
      return;
    }
    if (p < 0.96) {
      let cmd: ClientCommand;
      let input: RegisterInput;
      if (p < 0.7) {
        input = { kind: "write", key, value };
        cmd = { type: "put", request: { key: bytes(key), value: bytes(value) } };
      } else if (p < 0.8) {
        input = { kind: "delete", key };
        cmd = { type: "deleteRange", request: { key: bytes(key), prevKv: true } };
      } else {
        const expected = this.lastSeen.get(key);
        input = { kind: "cas", key, expected, value };
        cmd = { type: "txn", request: casRequest(key, expected, value) };
      }
      this.command(this.session, cmd, (result, answer) => {
        if (result === undefined) return finish(input, undefined);
        this.ackedWrite(result, answer!.index);
        finish(input, registerOutput(input, result));
      });
      return;
    }
    // Compaction a little behind the newest revision this client saw: not in the history (no value
    // changes), but it makes watchers and lagging members meet compacted history.
    const target = Math.max(1, this.lastRevision - this.rng.range(0, 20));
    this.command(this.session, { type: "compact", revision: revision(target) }, (result) => {
      h.log(`client ${this.id} compact ${target}: ${result?.kind ?? "unknown"}`);
      this.after(this.rng.float() * 20, () => this.nextOp());
    });
  }

  private ackedWrite(result: CommandResult, index: number): void {
    this.lastRevision = Math.max(this.lastRevision, result.header.revision);
    this.host.ackedIndex(index);
  }
}

function casRequest(key: string, expected: string | undefined, value: string): TxnRequest {
  const k = bytes(key);
  return {
    compare: [
      expected === undefined
        ? { key: k, target: "create", result: "equal", createRevision: revision(0) }
        : { key: k, target: "value", result: "equal", value: bytes(expected) },
    ],
    success: [{ type: "put", request: { key: k, value: bytes(value) } }],
    failure: [{ type: "range", request: { key: k } }],
  };
}

function registerOutput(input: RegisterInput, result: CommandResult): RegisterOutput | undefined {
  switch (result.kind) {
    case "put":
      return { ok: true };
    case "deleteRange": {
      const prev = result.prevKvs[0];
      return { prev: prev === undefined ? undefined : dec.decode(prev.value) };
    }
    case "txn": {
      if (input.kind !== "cas") return undefined;
      if (result.succeeded) return { succeeded: true, current: input.expected };
      const r = result.responses[0];
      const kv = r?.type === "range" ? r.response.kvs[0] : undefined;
      return { succeeded: false, current: kv === undefined ? undefined : dec.decode(kv.value) };
    }
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------

/** A grant's output for the lease history: granted (with its incarnation), refused, or unknown. */
function grantOutput(
  result: CommandResult | undefined,
  grantIndex: number | undefined,
): LeaseOutput | undefined {
  if (result?.kind === "failed" && result.error === "leaseExists") return { granted: false };
  if (result?.kind === "leaseGrant" && grantIndex !== undefined) return { granted: true, grantIndex };
  return undefined;
}

/** What a lease client does with a lease once it holds a resource. */
type Fate = "revoke" | "stop" | "crash" | "keep";

interface HeldLease {
  readonly id: LeaseId;
  readonly key: string;
  readonly ttlMs: number;
  /** On this client's clock. */
  beliefEndLocal: number;
  /** Generation: timers of an abandoned lease do nothing. */
  readonly gen: number;
  /** Explicit id (in the lease history) or chosen by the table. */
  readonly explicit: boolean;
}

export class LeaseClient extends SimClient {
  private readonly resources: number;
  private readonly ttlChoices: readonly number[];
  private readonly session: Session;
  private lease: HeldLease | undefined;
  /** The resource held now (undefined: none, or in jeopardy). */
  private holding: string | undefined;
  /** The resource acquired with the current lease. */
  private resource: string | undefined;
  private gen = 0;
  private nextExplicit = 0;

  constructor(
    id: number,
    host: ClientHost,
    rng: SeededRng,
    resources: number,
    ttlChoices: readonly number[],
  ) {
    super(id, host, rng);
    this.resources = resources;
    this.ttlChoices = ttlChoices;
    this.session = new Session(`lease${id}`);
  }

  start(): void {
    this.after(this.rng.range(0, 50), () => this.grant());
  }

  private log(msg: string): void {
    this.host.log(`lease client ${this.id}: ${msg}`);
  }

  private grant(): void {
    const h = this.host;
    if (h.now() > h.lastStartMs) return;
    const ttlSeconds = this.rng.pick(this.ttlChoices);
    const explicit = this.rng.chance(0.5);
    // Explicit ids are this client's own (never another client's): a keepalive names only the id, so a
    // client renewing an id another client was granted after its own expired would be misled.
    const id = explicit ? leaseId(BigInt(this.id) * 1_000_000n + BigInt(++this.nextExplicit)) : NO_LEASE;
    const sentLocal = this.local();
    const callTime = h.now();
    const input: LeaseInput = { kind: "grant", id: String(id) };
    this.command(this.session, { type: "leaseGrant", id, ttlSeconds }, (result, answer) => {
      const grantIndex = answer?.grantIndex;
      if (explicit) this.record(input, callTime, grantOutput(result, grantIndex));
      if (result?.kind !== "leaseGrant" || grantIndex === undefined) {
        // Refused, unknown, or granted but already gone again (a replayed answer after its expiry).
        this.log(`grant ${id} ttl ${ttlSeconds}s: ${result?.kind ?? "unknown"}`);
        this.after(this.rng.float() * 30, () => this.grant());
        return;
      }
      const ttlMs = result.ttlSeconds * 1000;
      const key = leaseKey(result.id, grantIndex);
      const lease: HeldLease = {
        id: result.id,
        key,
        ttlMs,
        beliefEndLocal: sentLocal + ttlMs * (1 - h.rho),
        gen: ++this.gen,
        explicit,
      };
      this.lease = lease;
      h.leases.granted(key, this.id, this.realOf(sentLocal), this.realOf(lease.beliefEndLocal), ttlMs);
      this.log(
        `granted ${key} ttl ${result.ttlSeconds}s, believed until ${this.realOf(lease.beliefEndLocal).toFixed(3)}`,
      );
      this.okAfter++;
      this.scheduleKeepAlive(lease);
      this.scheduleLapse(lease);
      if (explicit && this.rng.chance(0.1)) this.duplicateGrant(lease);
      this.acquire(lease);
    });
  }

  /** Grants an id this client holds again: must fail with "lease already exists". */
  private duplicateGrant(lease: HeldLease): void {
    const h = this.host;
    const callTime = h.now();
    const input: LeaseInput = { kind: "grant", id: String(lease.id) };
    this.command(
      this.session,
      { type: "leaseGrant", id: lease.id, ttlSeconds: lease.ttlMs / 1000 },
      (result, answer) => {
        const output = grantOutput(result, answer?.grantIndex);
        this.record(input, callTime, output);
        // The lease expired meanwhile and the id was granted anew: keepalives naming the id would now
        // renew that new incarnation, so the client lets the id go (and its resource with it).
        if (output !== undefined && "granted" in output && output.granted && this.lease === lease) {
          this.log(`${lease.key}: the id was granted again, letting it go`);
          this.abandon();
          this.after(this.rng.float() * 50, () => this.grant());
        }
      },
    );
  }

  /** One op of the lease history (explicit ids only: the history names leases by the id the client chose). */
  private record(input: LeaseInput, callTime: number, output: LeaseOutput | undefined): void {
    const returnTime = output === undefined ? Infinity : this.host.now();
    this.host.leaseHistory.push({ clientId: this.id, input, callTime, output, returnTime });
  }

  private believes(lease: HeldLease): boolean {
    return this.lease === lease && this.local() < lease.beliefEndLocal;
  }

  private acquire(lease: HeldLease): void {
    if (this.lease !== lease || this.host.now() > this.host.lastStartMs) return;
    const resource = `res/${this.rng.int(this.resources)}`;
    const k = bytes(resource);
    const request: TxnRequest = {
      compare: [{ key: k, target: "create", result: "equal", createRevision: revision(0) }],
      success: [{ type: "put", request: { key: k, value: bytes(`c${this.id}`), lease: lease.id } }],
      failure: [{ type: "range", request: { key: k } }],
    };
    this.command(this.session, { type: "txn", request }, (result) => {
      if (this.lease !== lease) return;
      if (result?.kind === "txn" && result.succeeded) {
        if (!this.believes(lease)) {
          // The txn came back after the belief lapsed: holding it now would be unsafe.
          this.log(`acquired ${resource} too late`);
          return;
        }
        this.holding = resource;
        this.resource = resource;
        this.host.leases.holdStart(this.id, resource, lease.key, this.host.now());
        this.log(`holds ${resource} with ${lease.key}`);
        this.decideFate(lease);
        return;
      }
      this.after(20 + this.rng.float() * 100, () => this.acquire(lease));
    });
  }

  private decideFate(lease: HeldLease): void {
    const fate: Fate = this.rng.pick(["revoke", "revoke", "stop", "crash", "keep"] as const);
    const holdMs = this.rng.float() * lease.ttlMs * 2;
    this.after(holdMs, () => {
      if (this.lease !== lease) return;
      this.log(`fate ${fate} for ${lease.key}`);
      if (fate === "keep") return;
      this.release();
      if (fate === "revoke") {
        this.revoke(lease);
      } else if (fate === "stop") {
        this.abandon();
        this.after(this.rng.float() * 200, () => this.grant());
      } else {
        this.crashClient();
        this.lease = undefined;
        this.session.reset();
        this.log("crashed");
        const downMs = this.rng.float() * lease.ttlMs * 2;
        this.host.at(this.host.now() + downMs, () => {
          this.log("restarted");
          this.grant();
        });
      }
    });
  }

  private release(): void {
    this.resource = undefined;
    if (this.holding !== undefined) {
      this.host.leases.holdEnd(this.id, this.holding);
      this.holding = undefined;
    }
  }

  private abandon(): void {
    this.release();
    if (this.lease !== undefined) this.host.leases.released(this.lease.key, this.host.now());
    this.lease = undefined;
  }

  private revoke(lease: HeldLease): void {
    const h = this.host;
    h.leases.released(lease.key, h.now());
    this.lease = undefined;
    const callTime = h.now();
    const input: LeaseInput = { kind: "revoke", id: String(lease.id) };
    this.command(this.session, { type: "leaseRevoke", id: lease.id }, (result) => {
      let output: LeaseOutput | undefined;
      if (result?.kind === "leaseRevoke") output = { found: true };
      else if (result?.kind === "failed" && result.error === "leaseNotFound") output = { found: false };
      if (lease.explicit) this.record(input, callTime, output);
      this.log(`revoke ${lease.key}: ${result?.kind ?? "unknown"}`);
      this.after(this.rng.float() * 50, () => this.grant());
    });
  }

  private scheduleKeepAlive(lease: HeldLease): void {
    this.after(lease.ttlMs / 3 / (1 + this.host.rho), () => this.keepAlive(lease));
  }

  private keepAlive(lease: HeldLease): void {
    if (this.lease !== lease) return;
    const h = this.host;
    const sentLocal = this.local();
    h.leases.keepAliveSent(lease.key, h.now());
    this.call(
      lease.ttlMs / 3,
      (reqId) => {
        h.leases.keepAliveSent(lease.key, h.now());
        return { reqId, client: this.id, kind: "keepAlive", lease: lease.id };
      },
      (a) => {
        if (this.lease !== lease) return;
        if (a?.kind === "keepAlive" && a.ttlSeconds > 0) {
          const end = sentLocal + a.ttlSeconds * 1000 * (1 - h.rho);
          if (end > lease.beliefEndLocal) {
            lease.beliefEndLocal = end;
            h.leases.renewed(lease.key, this.realOf(end));
          }
          // A renewal in jeopardy resumes (Chubby): the key is still bound to the live lease.
          if (this.holding === undefined && this.resource !== undefined && this.believes(lease)) {
            this.holding = this.resource;
            h.leases.holdStart(this.id, this.resource, lease.key, h.now());
            this.log(`${lease.key} renewed in jeopardy: holds ${this.resource} again`);
          }
          this.scheduleLapse(lease);
        } else if (a?.kind === "keepAlive") {
          this.log(`${lease.key} expired (keepalive answered TTL 0)`);
          this.abandon();
          this.after(this.rng.float() * 50, () => this.grant());
          return;
        }
        this.scheduleKeepAlive(lease);
      },
    );
  }

  /** At the end of the belief: stop holding (jeopardy); give the lease up one TTL later. */
  private scheduleLapse(lease: HeldLease): void {
    // A hair past the end, so that rounding cannot make the timer fire a hair before it (and be lost).
    const wait = this.realOf(lease.beliefEndLocal) - this.host.now() + 1e-6;
    this.after(Math.max(0, wait), () => {
      if (this.lease !== lease || this.local() < lease.beliefEndLocal) return;
      if (this.holding !== undefined) {
        this.log(`${lease.key} in jeopardy: stops holding ${this.holding}`);
        this.host.leases.holdEnd(this.id, this.holding);
        this.holding = undefined;
      }
      this.after(lease.ttlMs, () => {
        if (this.lease !== lease || this.local() < lease.beliefEndLocal) return;
        this.log(`${lease.key} given up`);
        this.abandon();
        this.grant();
      });
    });
  }
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Grants `count` leases of one TTL as fast as the cluster takes them (waves of concurrent grants, no
 * session: their order does not matter and the network of such a run does not duplicate) and never
 * renews them: they all fall due together, which the bounded-expiry accounting then measures.
 */
export class BulkLeaseClient extends SimClient {
  private readonly count: number;
  private readonly ttlSeconds: number;
  private sent = 0;
  granted = 0;

  constructor(id: number, host: ClientHost, rng: SeededRng, count: number, ttlSeconds: number) {
    super(id, host, rng);
    this.count = count;
    this.ttlSeconds = ttlSeconds;
  }

  start(): void {
    this.after(50, () => {
      for (let i = 0; i < BULK_WAVE; i++) this.next();
    });
  }

  private next(): void {
    if (this.sent >= this.count) return;
    this.sent++;
    const command: ClientCommand = { type: "leaseGrant", id: NO_LEASE, ttlSeconds: this.ttlSeconds };
    this.call(
      1000,
      (reqId) => ({ reqId, client: this.id, kind: "cmd", command }),
      (a) => {
        if (a?.kind === "applied" && a.result.kind === "leaseGrant") this.granted++;
        this.next();
      },
    );
  }
}

/** Grants a bulk client keeps in flight. */
const BULK_WAVE = 20_000;

// ---------------------------------------------------------------------------------------------------------

/** Watches a prefix; every response goes through the WatchChecker. Reconnects where it left off. */
export class WatchClient extends SimClient {
  private readonly prefix: string;
  private stream: { reqId: string; member: MemberId } | undefined;
  private streamNo = 0;

  constructor(id: number, host: ClientHost, rng: SeededRng, prefix: string) {
    super(id, host, rng);
    this.prefix = prefix;
    host.watches.addWatcher(id, prefix);
  }

  start(): void {
    this.after(this.rng.range(0, 30), () => this.open());
  }

  private open(): void {
    const h = this.host;
    const member = h.endpoint(NO_MEMBER);
    const reqId = `${this.id}.w${++this.streamNo}`;
    this.stream = { reqId, member };
    const startRevision = h.watches.resumeFrom(this.id);
    h.log(`watch client ${this.id}: opens ${reqId} on ${member} from ${startRevision}`);
    h.send(this.id, member, { reqId, client: this.id, kind: "watch", prefix: this.prefix, startRevision });
    this.scheduleProgress(reqId);
  }

  private scheduleProgress(reqId: string): void {
    this.after(50 + this.rng.float() * 100, () => {
      if (this.stream?.reqId !== reqId) return;
      this.host.send(this.id, this.stream.member, {
        reqId: `${this.id}.p${reqId}`,
        client: this.id,
        kind: "progress",
        stream: reqId,
      });
      this.scheduleProgress(reqId);
    });
  }

  protected override onStream(resp: ClientResponse): void {
    if (this.stream?.reqId !== resp.reqId) return;
    const w = this.host.watches;
    if (resp.kind === "watchBroken") {
      this.stream = undefined;
      this.after(5 + this.rng.float() * 20, () => this.open());
      return;
    }
    if (resp.kind !== "watch") return;
    for (const r of resp.responses) {
      if (r.created) w.created(this.id, r.revision);
      if (r.events.length > 0) {
        w.events(this.id, r.events);
        this.okAfter++;
      } else if (!r.created && !r.canceled) w.progress(this.id, r.revision);
      if (r.canceled) {
        if (r.compactRevision > 0) w.compacted(this.id, r.compactRevision);
        this.stream = undefined;
        this.after(5, () => this.open());
        return;
      }
    }
  }
}
