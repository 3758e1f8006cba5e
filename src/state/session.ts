/**
 * Client sessions: exactly-once application of retried client commands
 * (ARCHITECTURE "Leases", rule 7; Raft thesis §6.3). Part of the replicated
 * state: every replica keeps the same table because it changes only with
 * applied entries, and its clock is the Raft log index, never wall time.
 *
 * The rule, for a command with session (clientId, seq) applied at index i:
 * - Known client, seq > lastSeq: a new request. Apply it; remember seq and
 *   its result (seqs may skip: a pipelining client's lost request is simply
 *   never answered from here).
 * - Known client, seq = lastSeq: a retry. Do not apply; answer the stored
 *   result.
 * - Known client, seq < lastSeq: a retry of a request already superseded.
 *   Do not apply; answer "sessionStale" (the client has had a newer answer).
 * - Unknown client, seq = 1: opens the session; apply as a new request.
 * - Unknown client, seq > 1: the session expired or was evicted. Do not
 *   apply; answer "sessionExpired". The client cannot know whether its
 *   earlier requests were applied twice, but this one was NOT applied: it
 *   must open a new session (a new clientId, seq 1) and decide itself whether
 *   to resend.
 * Every command of a known client, answered or applied, refreshes its session.
 *
 * Expiry, deterministic: a session last used at index j is gone once an entry
 * with index i > j + idleEntriesMax is applied (measured in log entries, so
 * the window is short under heavy write load and long when idle; the index is
 * the only clock every replica shares). Size: at most `sessionsMax`; opening
 * one more evicts the least recently used session first (smallest j; each
 * index touches at most one session, so the order is total).
 *
 * What is lost: exactly-once for the FIRST command of a session only. If a
 * client's seq-1 request is retried after its session expired or was
 * evicted, the retry opens a fresh session and is applied again. Every later
 * seq is applied at most once, whatever the delay (it gets "sessionExpired").
 * A client that needs exactly-once for everything opens its session with a
 * harmless first command (an empty txn).
 *
 * Data structure: a Map in least-recently-used order (insertion order is
 * defined iteration order in JS); touching a session moves it to the end, so
 * expiry and eviction pop from the front in O(1) amortized.
 */

import { assert } from "../raft/index.ts";
import type { ClientSession } from "./command.ts";

/** Default idle window: one million applied log entries. */
export const DEFAULT_SESSION_IDLE_ENTRIES_MAX = 1_000_000;
/** Default bound on the table: each session keeps one result, so memory ≈ this × the largest result. */
export const DEFAULT_SESSIONS_MAX = 10_000;

/** Must be the same on every member. */
export interface SessionOptions {
  readonly idleEntriesMax?: number;
  readonly sessionsMax?: number;
}

/** The answer to `check`. */
export type SessionCheck<R> =
  | { readonly kind: "apply" }
  | { readonly kind: "duplicate"; readonly result: R }
  | { readonly kind: "stale"; readonly lastSeq: number }
  | { readonly kind: "expired" };

interface SessionRecord<R> {
  readonly clientId: string;
  /** Invariant: ≥ 1. */
  lastSeq: number;
  /** The index of the last entry that touched the session. Invariant: increasing in map order. */
  lastIndex: number;
  /** The result of lastSeq. */
  result: R;
}

/** One session in a snapshot; `result` as the caller's encoder made it. */
export interface SessionSnapshotEntry {
  readonly clientId: string;
  readonly lastSeq: number;
  readonly lastIndex: number;
  readonly result: unknown;
}

/** The session table. `R` is the stored result type (machine.ts: CommandResult). */
export class SessionTable<R> {
  readonly idleEntriesMax: number;
  readonly sessionsMax: number;
  /** Least recently used first. */
  private readonly sessions = new Map<string, SessionRecord<R>>();
  /** The largest lastIndex ever set (-1: none). Invariant: ≥ every lastIndex; only grows. */
  private newestIndex = -1;

  constructor(options: SessionOptions = {}) {
    this.idleEntriesMax = options.idleEntriesMax ?? DEFAULT_SESSION_IDLE_ENTRIES_MAX;
    this.sessionsMax = options.sessionsMax ?? DEFAULT_SESSIONS_MAX;
    assert(Number.isSafeInteger(this.idleEntriesMax) && this.idleEntriesMax >= 1, "session: bad idle window");
    assert(Number.isSafeInteger(this.sessionsMax) && this.sessionsMax >= 1, "session: bad table bound");
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Drops every session idle for more than idleEntriesMax entries at `index`. Call before `check`. */
  expire(index: number): void {
    for (const s of this.sessions.values()) {
      if (index - s.lastIndex <= this.idleEntriesMax) return;
      this.sessions.delete(s.clientId);
    }
  }

  /** Decides what to do with a command of `session` at `index` (file header); refreshes a known session. */
  check(session: ClientSession, index: number): SessionCheck<R> {
    const s = this.sessions.get(session.clientId);
    if (s === undefined) return session.seq === 1 ? { kind: "apply" } : { kind: "expired" };
    if (session.seq > s.lastSeq) return { kind: "apply" };
    this.touch(s, index);
    if (session.seq === s.lastSeq) return { kind: "duplicate", result: s.result };
    return { kind: "stale", lastSeq: s.lastSeq };
  }

  /** Records the result of a command `check` said to apply; may evict the least recently used session. */
  record(session: ClientSession, index: number, result: R): void {
    const s = this.sessions.get(session.clientId);
    if (s !== undefined) {
      assert(session.seq > s.lastSeq, `session: record of seq ${session.seq} after ${s.lastSeq}`);
      s.lastSeq = session.seq;
      s.result = result;
      this.touch(s, index);
      return;
    }
    if (this.sessions.size >= this.sessionsMax) {
      const oldest = this.sessions.keys().next();
      assert(oldest.done !== true, "session: full table is empty");
      this.sessions.delete(oldest.value);
    }
    assert(index > this.newestIndex, `session: index ${index} after ${this.newestIndex}`);
    this.newestIndex = index;
    this.sessions.set(session.clientId, {
      clientId: session.clientId,
      lastSeq: session.seq,
      lastIndex: index,
      result,
    });
  }

  /** The session of `clientId`, for inspection. */
  get(
    clientId: string,
  ): { readonly lastSeq: number; readonly lastIndex: number; readonly result: R } | undefined {
    return this.sessions.get(clientId);
  }

  /** Sessions least recently used first, results through `encode`. */
  snapshot(encode: (result: R) => unknown): SessionSnapshotEntry[] {
    return [...this.sessions.values()].map((s) => ({
      clientId: s.clientId,
      lastSeq: s.lastSeq,
      lastIndex: s.lastIndex,
      result: encode(s.result),
    }));
  }

  /** Rebuilds a table from `snapshot()` output (checked at the storage boundary; malformed is a bug). */
  static restore<R>(
    entries: readonly SessionSnapshotEntry[],
    decode: (result: unknown) => R,
    options: SessionOptions = {},
  ): SessionTable<R> {
    const table = new SessionTable<R>(options);
    assert(entries.length <= table.sessionsMax, "session snapshot: more sessions than the bound");
    let previous = -1;
    for (const e of entries) {
      assert(typeof e.clientId === "string" && e.clientId.length > 0, "session snapshot: bad client id");
      assert(!table.sessions.has(e.clientId), `session snapshot: ${e.clientId} twice`);
      assert(Number.isSafeInteger(e.lastSeq) && e.lastSeq >= 1, "session snapshot: bad seq");
      assert(Number.isSafeInteger(e.lastIndex) && e.lastIndex > previous, "session snapshot: out of order");
      previous = e.lastIndex;
      table.newestIndex = e.lastIndex;
      table.sessions.set(e.clientId, {
        clientId: e.clientId,
        lastSeq: e.lastSeq,
        lastIndex: e.lastIndex,
        result: decode(e.result),
      });
    }
    return table;
  }

  /** Moves `s` to the most recently used end. */
  private touch(s: SessionRecord<R>, index: number): void {
    assert(index > this.newestIndex, `session: touched at ${index}, newest use at ${this.newestIndex}`);
    s.lastIndex = index;
    this.newestIndex = index;
    this.sessions.delete(s.clientId);
    this.sessions.set(s.clientId, s);
  }
}
