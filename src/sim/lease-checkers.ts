/**
 * The simulator's lease and watch checkers (issue 3 §7). Times are real
 * (simulated) milliseconds: clients convert their own clock's readings.
 *
 * - Lease exclusivity: no two clients hold the same resource at the same real
 *   time. A client holds a resource from the answer to its acquiring txn until
 *   it releases it or its belief in the lease lapses (ARCHITECTURE rule 5:
 *   sendTime + TTL·(1 − ρ) on its own clock).
 * - No premature expiry: the leader never revokes a lease (an expiry applied on
 *   any member) while its holder still believes in it.
 * - Bounded expiry: the leader hands out a lease's revocation no later than
 *   TTL·(1 + ρ) + election timeout·(1 + ρ) + EXPIRY_SLACK_MS after the later
 *   of the lease's last renewal by a leader (its grant, or a keepalive
 *   answered) and the takeover of the leader that hands it out (README "Lease
 *   expiry"). Checked at every expiry, and at the end of the run for every
 *   lease still live. (The revocation applies one Raft commit later; commit
 *   latency is Raft's, and the liveness phase checks that Raft commits.)
 * - Watch completeness (WatchChecker): each watcher sees every event of its
 *   range in revision order, exactly once, with no revision skipped except a
 *   compacted stretch the hub announced by a cancel.
 * - Replica agreement: every member applying revision r produces the same
 *   events (the first application defines them).
 */

import type { KvEvent } from "../state/index.ts";
import { bytesToKeyString, describeEvent } from "../state/index.ts";

/** Allowed between a lease's deadline and the leader's proposal to revoke it: two ticks and some. */
export const EXPIRY_SLACK_MS = 50;

interface Belief {
  /** The client that believes in it (-1: none has heard of the grant yet). */
  owner: number;
  /** Real time until which the owner believes it holds the lease. */
  until: number;
  /** Real time of the last keepalive (or grant) sent for it. */
  lastSend: number;
  /** Real time of its last renewal by a leader: the grant applied there, or a keepalive answered. */
  lastRenewal: number;
  /** Real times at which a leader handed out its revocation (proposed or refused by Raft). */
  readonly handouts: number[];
  readonly ttlMs: number;
}

interface Holding {
  readonly client: number;
  readonly lease: string;
  readonly start: number;
}

/** Stable name of a lease incarnation. */
export function leaseKey(id: bigint, grantIndex: number): string {
  return `${id}@${grantIndex}`;
}

export class LeaseChecker {
  readonly violations: string[] = [];
  private readonly takeovers: number[] = [];

  constructor(
    private readonly electionTimeoutMs: number,
    private readonly rho: number,
  ) {}

  private readonly beliefs = new Map<string, Belief>();
  /** Resource -> who holds it now. */
  private readonly holders = new Map<string, Holding[]>();
  /** Greatest (expiry apply time − the lease's deadline as its holder's last send + TTL), for the stats. */
  maxExpiryLatenessMs = Number.NEGATIVE_INFINITY;
  expiries = 0;
  holdings = 0;

  private fail(msg: string): void {
    if (this.violations.length < 10) this.violations.push(msg);
  }

  /** A client learned it was granted `lease` (sent at `sentAt`), believing in it until `until`. */
  granted(lease: string, owner: number, sentAt: number, until: number, ttlMs: number): void {
    const b = this.beliefs.get(lease);
    if (b === undefined)
      this.beliefs.set(lease, { owner, until, lastSend: sentAt, lastRenewal: sentAt, ttlMs, handouts: [] });
    else {
      b.owner = owner;
      b.until = Math.max(b.until, until);
      b.lastSend = Math.max(b.lastSend, sentAt);
    }
  }

  /** A grant applied (first time anywhere): the lease exists even if its client never hears of it. */
  applied(lease: string, now: number, ttlMs: number): void {
    if (!this.beliefs.has(lease))
      this.beliefs.set(lease, { owner: -1, until: 0, lastSend: now, lastRenewal: now, ttlMs, handouts: [] });
  }

  keepAliveSent(lease: string, now: number): void {
    const b = this.beliefs.get(lease);
    if (b !== undefined) b.lastSend = Math.max(b.lastSend, now);
  }

  renewed(lease: string, until: number): void {
    const b = this.beliefs.get(lease);
    if (b !== undefined) b.until = Math.max(b.until, until);
  }

  /** The owner stopped believing (released it, or is about to revoke it). */
  released(lease: string, now: number): void {
    const b = this.beliefs.get(lease);
    if (b !== undefined) b.until = Math.min(b.until, now);
  }

  /** A leader handed out the revocation of `lease` (its lessor found it due). */
  expiryHandedOut(lease: string, now: number): void {
    this.beliefs.get(lease)?.handouts.push(now);
  }

  /** A leader renewed `lease` (applied its grant, or answered a keepalive with its TTL). */
  renewedByLeader(lease: string, now: number): void {
    const b = this.beliefs.get(lease);
    if (b !== undefined) b.lastRenewal = Math.max(b.lastRenewal, now);
  }

  /** A member took up the lease duties. */
  tookOver(now: number): void {
    this.takeovers.push(now);
  }

  private bound(ttlMs: number): number {
    return ttlMs * (1 + this.rho) + this.electionTimeoutMs * (1 + this.rho) + EXPIRY_SLACK_MS;
  }

  /** The latest takeover at or before `t` (0: the start). */
  private takeoverBefore(t: number): number {
    let out = 0;
    for (const x of this.takeovers) if (x <= t && x > out) out = x;
    return out;
  }

  /** The first application of an expiry that revoked `lease`. */
  expired(lease: string, now: number): void {
    this.expiries++;
    const b = this.beliefs.get(lease);
    if (b === undefined) return;
    if (b.until > now) {
      this.fail(
        `premature expiry: lease ${lease} revoked at ${now.toFixed(3)}ms while client ${b.owner} believed in it until ${b.until.toFixed(3)}ms`,
      );
    }
    this.maxExpiryLatenessMs = Math.max(this.maxExpiryLatenessMs, now - (b.lastSend + b.ttlMs));
    // The first hand-out after the last renewal must come within the bound of it (or of the takeover
    // of the leader that handed it out, when that came later).
    const first = b.handouts.filter((t) => t >= b.lastRenewal).sort((x, y) => x - y)[0];
    if (first !== undefined) {
      const from = Math.max(b.lastRenewal, this.takeoverBefore(first));
      if (first - from > this.bound(b.ttlMs)) {
        this.fail(
          `bounded expiry: lease ${lease} (ttl ${b.ttlMs}ms) handed out for revocation at ${first.toFixed(3)}ms, ${(first - from).toFixed(3)}ms after its last renewal or the leader's takeover (bound ${this.bound(b.ttlMs).toFixed(3)}ms)`,
        );
      }
    }
    this.beliefs.delete(lease);
  }

  holdStart(client: number, resource: string, lease: string, now: number): void {
    this.holdings++;
    const list = this.holders.get(resource) ?? [];
    for (const h of list) {
      if (h.client !== client) {
        this.fail(
          `lease exclusivity: client ${client} took ${resource} at ${now.toFixed(3)}ms while client ${h.client} held it (lease ${h.lease}, since ${h.start.toFixed(3)}ms)`,
        );
      }
    }
    list.push({ client, lease, start: now });
    this.holders.set(resource, list);
  }

  holdEnd(client: number, resource: string): void {
    const list = this.holders.get(resource) ?? [];
    this.holders.set(
      resource,
      list.filter((h) => h.client !== client),
    );
  }

  /**
   * End of the run: each lease in `live` (the most advanced member's table)
   * whose bound has passed since its last renewal or the final takeover must
   * have been handed out for revocation within that bound.
   */
  checkEnd(now: number, live: readonly { readonly lease: string; readonly ttlMs: number }[]): void {
    const takeoverAt = this.takeoverBefore(now);
    for (const { lease, ttlMs } of live) {
      const b = this.beliefs.get(lease);
      const from = Math.max(b?.lastRenewal ?? 0, takeoverAt);
      const bound = this.bound(ttlMs);
      if (now - from <= bound) continue;
      if (b?.handouts.some((t) => t >= from && t <= from + bound)) continue;
      this.fail(
        `bounded expiry: lease ${lease} (ttl ${ttlMs}ms) still live at ${now.toFixed(3)}ms, ${(now - from).toFixed(3)}ms after its last renewal or the leader's takeover, and not handed out for revocation within ${bound.toFixed(3)}ms`,
      );
    }
  }
}

/** The events of one revision as every replica must produce them. */
interface Revision {
  readonly descs: readonly string[];
  readonly keys: readonly string[];
}

interface Watcher {
  readonly prefix: string;
  /** The next revision the watcher must see; undefined until its first stream is created. */
  next: number | undefined;
  events: number;
}

export class WatchChecker {
  readonly violations: string[] = [];
  private readonly revisions = new Map<number, Revision>();
  private readonly watchers = new Map<number, Watcher>();
  gaps = 0;
  delivered = 0;

  private fail(msg: string): void {
    if (this.violations.length < 10) this.violations.push(msg);
  }

  /** Member `member` applied a write at `revision` with `events`. */
  observeApply(member: number, revision: number, events: readonly KvEvent[]): void {
    if (events.length === 0) return;
    const descs = events.map(describeEvent);
    const known = this.revisions.get(revision);
    if (known === undefined) {
      this.revisions.set(revision, { descs, keys: events.map((e) => bytesToKeyString(e.kv.key)) });
      return;
    }
    if (known.descs.join("\n") !== descs.join("\n")) {
      this.fail(
        `replica divergence: member ${member} produced at revision ${revision}: ${descs.join("; ")}; first seen: ${known.descs.join("; ")}`,
      );
    }
  }

  addWatcher(client: number, prefix: string): void {
    this.watchers.set(client, { prefix, next: undefined, events: 0 });
  }

  /** The start revision the watcher's next stream must ask for (0: from now, before the first stream). */
  resumeFrom(client: number): number {
    return this.watchers.get(client)?.next ?? 0;
  }

  private matching(w: Watcher, from: number, to: number): string[] {
    const out: string[] = [];
    for (let r = from; r <= to; r++) {
      const rev = this.revisions.get(r);
      if (rev === undefined) continue;
      for (let i = 0; i < rev.keys.length; i++)
        if (rev.keys[i]!.startsWith(w.prefix)) out.push(rev.descs[i]!);
    }
    return out;
  }

  /** The first stream of a watcher from "now" was created at `revision`. */
  created(client: number, revision: number): void {
    const w = this.watchers.get(client)!;
    if (w.next === undefined) w.next = revision + 1;
  }

  events(client: number, events: readonly KvEvent[]): void {
    const w = this.watchers.get(client)!;
    if (events.length === 0) return;
    const last = events[events.length - 1]!.kv.modRevision;
    const from = w.next ?? events[0]!.kv.modRevision;
    const got = events.map(describeEvent);
    const want = this.matching(w, from, last);
    if (got.join("\n") !== want.join("\n")) {
      this.fail(
        `watch completeness: client ${client} (prefix ${JSON.stringify(w.prefix)}) got for revisions ${from}..${last}: ${got.join("; ") || "nothing"}; expected: ${want.join("; ") || "nothing"}`,
      );
    }
    w.events += events.length;
    this.delivered += events.length;
    w.next = last + 1;
  }

  /** A progress notification at `revision`: everything through it was delivered. */
  progress(client: number, revision: number): void {
    const w = this.watchers.get(client)!;
    if (w.next === undefined || revision < w.next) return;
    const missed = this.matching(w, w.next, revision);
    if (missed.length > 0) {
      this.fail(
        `watch completeness: client ${client} (prefix ${JSON.stringify(w.prefix)}) had a progress notification at ${revision} but never got: ${missed.join("; ")}`,
      );
    }
    w.next = revision + 1;
  }

  /** The watcher's history below `compactRevision` was compacted away: it resumes there. */
  compacted(client: number, compactRevision: number): void {
    const w = this.watchers.get(client)!;
    if (w.next !== undefined && compactRevision > w.next) {
      this.gaps++;
      w.next = compactRevision;
    }
  }
}
