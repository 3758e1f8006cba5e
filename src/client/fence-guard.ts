/**
 * FenceGuard: fencing for resources that live outside leasehold (a database
 * row, a file store, a downstream service). Kleppmann's fix for the paused
 * lock holder (ARCHITECTURE "Leases" rule 6): every holder passes the fencing
 * token of its holding with each request, and the resource remembers the
 * highest token it has seen and refuses anything lower. Tokens are the
 * revisions at which holdings were established, so a newer holder always has
 * a higher one, and a holder that paused past its lease's expiry is refused as
 * soon as its successor has been seen.
 *
 * Contract: `check(token, resource)` accepts a token at least the highest
 * seen for `resource` (equal: the same holding again) and records it; a lower
 * one throws StaleFenceError with the highest seen, recording nothing. The
 * check is synchronous, so it is atomic with whatever the caller does in the
 * same synchronous step; a caller that awaits between the check and the write
 * must serialize writes per resource itself. State is in memory: a guard that
 * restarts must be seeded (`seed`) from durable storage, or it would accept a
 * stale holder once.
 *
 * A guard is made for many resources (`check(token, name)`), or for one
 * (`new FenceGuard({ resource: "db" })`, `check(token)`).
 */

import { InvalidArgumentError, StaleFenceError } from "./errors.ts";

/** A fencing token as the SDK gives it (a number) or as read from the wire (an int64 as bigint). */
export type FencingTokenInput = number | bigint;

/** How a FenceGuard is made. */
export interface FenceGuardOptions {
  /** Guard this one resource only; `check` and `highest` may then omit the name. */
  readonly resource?: string;
  /**
   * The most resource names remembered (default 1,000,000). A new name past it
   * is refused with InvalidArgumentError: forgetting a name's highest token
   * would let a stale holder back in.
   */
  readonly resourcesMax?: number;
}

/** The default bound on remembered resource names. */
export const FENCE_GUARD_RESOURCES_MAX = 1_000_000;

/** Remembers the highest fencing token seen per resource; refuses lower ones. */
export class FenceGuard {
  readonly #only: string | undefined;
  readonly #resourcesMax: number;
  /** Invariant: each value only grows. */
  readonly #highest = new Map<string, number>();

  constructor(options: FenceGuardOptions = {}) {
    const max = options.resourcesMax ?? FENCE_GUARD_RESOURCES_MAX;
    if (!(Number.isSafeInteger(max) && max > 0))
      throw new RangeError(`FenceGuard: resourcesMax must be a positive integer, got ${max}`);
    this.#only = options.resource;
    this.#resourcesMax = max;
  }

  /**
   * Accepts `token` for `resource` if it is at least the highest seen, and
   * records it; throws StaleFenceError if it is lower, InvalidArgumentError if
   * it is not a positive integer or the resource is missing or not this
   * guard's.
   */
  check(token: FencingTokenInput, resource?: string): void {
    const name = this.#nameOf(resource);
    const t = tokenOf(token);
    const highest = this.#highest.get(name);
    if (highest !== undefined && t < highest) {
      throw new StaleFenceError(
        `leasehold: fencing token ${t} is stale for "${name}": a holder with token ${highest} has been seen`,
        { details: { resource: name, "stale-token": String(t), "fencing-token": String(highest) } },
      );
    }
    if (highest === undefined && this.#highest.size >= this.#resourcesMax)
      throw new InvalidArgumentError(
        `leasehold: this fence guard already remembers ${this.#resourcesMax} resources (resourcesMax)`,
      );
    if (highest === undefined || t > highest) this.#highest.set(name, t);
  }

  /** Whether `check(token, resource)` would accept, without recording anything. */
  accepts(token: FencingTokenInput, resource?: string): boolean {
    const highest = this.#highest.get(this.#nameOf(resource));
    return highest === undefined || tokenOf(token) >= highest;
  }

  /** The highest token seen for `resource`, undefined if none yet. */
  highest(resource?: string): number | undefined {
    return this.#highest.get(this.#nameOf(resource));
  }

  /**
   * Raises the highest token of `resource` to `token` (never lowers it), as
   * a restarted guard does from what it stored durably.
   */
  seed(token: FencingTokenInput, resource?: string): void {
    const name = this.#nameOf(resource);
    const t = tokenOf(token);
    if (t > (this.#highest.get(name) ?? 0)) this.check(t, name);
  }

  #nameOf(resource: string | undefined): string {
    if (this.#only !== undefined) {
      if (resource !== undefined && resource !== this.#only)
        throw new InvalidArgumentError(
          `leasehold: this fence guard is for "${this.#only}", not for "${resource}"`,
        );
      return this.#only;
    }
    if (resource === undefined)
      throw new InvalidArgumentError("leasehold: a fence guard for many resources needs the resource name");
    return resource;
  }
}

/** A fencing token as a number; tokens are revisions, positive and below 2^53. */
function tokenOf(token: FencingTokenInput): number {
  const n = typeof token === "bigint" ? Number(token) : token;
  if (!(Number.isSafeInteger(n) && n > 0) || (typeof token === "bigint" && BigInt(n) !== token))
    throw new InvalidArgumentError(`leasehold: a fencing token is a positive integer, got ${String(token)}`);
  return n;
}
