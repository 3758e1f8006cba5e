/**
 * Lease events (leasehold.v1 Leases.Events): what happens to the holdings of
 * resources, as a stream per subscriber, derived from the entries this member
 * applies (so every member serves them, in log order).
 *
 * From one applied entry (its ApplyResult and the state after it):
 * - a claim key put (an Acquire): "grant" when the claim holds now, else
 *   "queue";
 * - a claim key deleted: "release" when the entry was a Release, "expire" for
 *   the leader's expiry, "revoke" for anything else (a lease revoke, a delete
 *   through the etcd API); then, for each resource that lost a claim older
 *   than its holder now, "grant" for that holder (a waiter moved up);
 * - a release request key put (RequestRelease): "releaseRequested", with
 *   the request, for the holding it names;
 * - "renew": keepalives are answered from the leader's memory and never
 *   logged, so the leader tells the others (Member.leaseKept: at once on the
 *   leader, within a heartbeat on the others, through RENEWED envelopes);
 *   every member reports every renewal of a holding, once (not those of a
 *   waiting claim, which the server itself keeps alive). A renewal that
 *   comes during a leader change, or reaches a follower before it applied
 *   the claim, goes unreported.
 * Events carry the claim (resource, holder, lease, fencing token) and the
 * revision of the entry (renew: the member's current revision).
 *
 * Bounds: at most EVENT_SUBSCRIBERS_MAX subscribers per member; a subscriber
 * is a callback that must not throw (the gRPC handler writes and applies its
 * own backpressure policy).
 */

import type { ApplyResult, LeaseId, ReleaseRequest, ResourceClaim, StateMachine } from "../state/index.ts";
import { claimOf, lockDelayResourceOf, releaseRequestOf } from "../state/index.ts";

export type LeaseEventType =
  | "grant"
  | "queue"
  | "renew"
  | "release"
  | "expire"
  | "revoke"
  | "releaseRequested";

/** One event; `revision` as the header of the entry that caused it. */
export interface LeaseEvent {
  readonly type: LeaseEventType;
  readonly claim: ResourceClaim;
  readonly revision: number;
  /** releaseRequested: the request. */
  readonly request?: ReleaseRequest;
}

/** The most event subscribers one member keeps. */
export const EVENT_SUBSCRIBERS_MAX = 10_000;

interface Subscriber {
  readonly prefix: string;
  readonly listener: (e: LeaseEvent) => void;
}

/** The subscribers of one member, fed by Member.entryApplied. */
export class LeaseEventHub {
  private readonly subscribers = new Set<Subscriber>();

  constructor(private readonly machine: () => StateMachine) {}

  /** Calls `listener` with every event of a resource whose name starts with `prefix`; undefined when full. */
  subscribe(prefix: string, listener: (e: LeaseEvent) => void): (() => void) | undefined {
    if (this.subscribers.size >= EVENT_SUBSCRIBERS_MAX) return undefined;
    const s: Subscriber = { prefix, listener };
    this.subscribers.add(s);
    return () => this.subscribers.delete(s);
  }

  get size(): number {
    return this.subscribers.size;
  }

  /**
   * Lease `id` was renewed (Member.leaseKept; on the leader at once, on the
   * others from RENEWED): "renew" for its claim, if it holds one that holds
   * its resource (a waiting claim's renewals, which the server makes itself,
   * are not news). Answers whether the other members should hear of it: the
   * lease may hold a claim (a cheap test; each member looks closer only when
   * someone subscribes).
   */
  kept(id: LeaseId): boolean {
    const m = this.machine();
    if (!m.mayHoldClaim(id)) return false;
    if (this.subscribers.size === 0) return true;
    const claim = m.claimOfRenewedLease(id);
    if (claim !== undefined && m.resourceHolder(claim.resource)?.lease === claim.lease)
      this.emit({ type: "renew", claim, revision: m.currentRevision() });
    return true;
  }

  /** One applied entry (see the header). */
  applied(res: ApplyResult): void {
    if (this.subscribers.size === 0 || res.replayed || res.events.length === 0) return;
    const m = this.machine();
    const revision = res.result.header.revision;
    const cause: LeaseEventType =
      res.result.kind === "release" ? "release" : res.result.kind === "leaseExpire" ? "expire" : "revoke";
    /** Per resource that lost claims: the oldest token lost. */
    const lost = new Map<string, number>();
    for (const e of res.events) {
      if (e.type === "put") {
        const request = releaseRequestOf(e.kv);
        if (request !== undefined) {
          const c = m.claimOfLease(request.resource, request.lease);
          if (c !== undefined) this.emit({ type: "releaseRequested", claim: c, revision, request });
          continue;
        }
        const c = claimOf(e.kv);
        if (c === undefined || e.prevKv !== undefined) continue;
        const holder = m.resourceHolder(c.resource);
        this.emit({ type: holder?.lease === c.lease ? "grant" : "queue", claim: c, revision });
      } else {
        const delayed = lockDelayResourceOf(e.kv.key);
        if (delayed !== undefined) {
          // A lock-delay ended: whoever is first in line holds now.
          const holder = m.resourceHolder(delayed);
          if (holder !== undefined) this.emit({ type: "grant", claim: holder, revision });
          continue;
        }
        const c = e.prevKv === undefined ? undefined : claimOf(e.prevKv);
        if (c === undefined) continue;
        this.emit({ type: cause, claim: c, revision });
        const before = lost.get(c.resource);
        if (before === undefined || c.token < before) lost.set(c.resource, c.token);
      }
    }
    for (const [resource, oldestLost] of lost) {
      const holder = m.resourceHolder(resource);
      // The holder is the oldest claim: losing a claim older than it means it just moved up.
      if (holder !== undefined && oldestLost < holder.token)
        this.emit({ type: "grant", claim: holder, revision });
    }
  }

  private emit(e: LeaseEvent): void {
    for (const s of this.subscribers) if (e.claim.resource.startsWith(s.prefix)) s.listener(e);
  }
}
