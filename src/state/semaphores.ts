/**
 * Semaphores (leasehold.v1 `Semaphores`): up to N holders of a named
 * semaphore at once, each under its own lease, the others waiting FIFO.
 * Kept as ordinary etcd keys and leases, so the etcd API sees them too; this
 * module holds the layout and the pure rules, machine.ts applies the
 * commands (semaphoreAcquire, semaphoreRelease).
 *
 * Key layout. Every claim on semaphore S (each holder's and each waiter's)
 * is one key, as a resource claim is (resources.ts):
 *     leasehold/semaphores/<S> NUL <lease id as 16 lowercase hex digits>
 * put with the claim's own lease (granted by the same command), its value
 *     <permits in decimal> SP <holder identity>
 * in UTF-8 ("3 worker-7"). Names are 1 to RESOURCE_NAME_BYTES_MAX bytes of
 * UTF-8 without NUL, so the claims of S are exactly the keys under
 * `leasehold/semaphores/<S> NUL`. There is no key for the semaphore itself:
 * it exists while it has claims, and its permits are written into each claim
 * (nothing to create with the first claim or to clean up after the last, and
 * an expiry deletes exactly the keys of the leases it revokes).
 *
 * Rules:
 * - The permits of a semaphore are those of its oldest claim. An acquire
 *   naming other permits is refused while the semaphore exists; once its
 *   last claim is gone, the next acquire fixes them anew.
 * - Claims are ordered by create revision (FIFO). The first `permits` of
 *   them hold; the others wait. A claim ends when its lease is revoked
 *   (release, revoke) or expires: its key goes with the lease, and every
 *   younger claim moves up one place. A claim's place only ever shrinks, so
 *   a holder holds until its own lease ends.
 * - A claim's token is its key's create revision (it identifies the holding;
 *   with N holders there is no single "current" token to fence with).
 * - Keys under the prefix that are not claims (written through the etcd API:
 *   a bad layout, a value without permits, a key bound to another lease) are
 *   ignored when deciding who holds, never trusted.
 */

import { claimKeyIn, claimNameOf, claimPrefixIn, holderProblem, nameProblem } from "./resources.ts";
import type { KeyValue, LeaseId, Revision } from "./types.ts";

/** Every semaphore claim key starts with this. */
export const SEMAPHORE_KEY_PREFIX = "leasehold/semaphores/";
/** The most permits a semaphore may have. */
export const SEMAPHORE_PERMITS_MAX = 100_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const PREFIX_BYTES = encoder.encode(SEMAPHORE_KEY_PREFIX);
const SPACE = 0x20;
/** Digits of SEMAPHORE_PERMITS_MAX: a longer number is not permits. */
const PERMITS_DIGITS_MAX = String(SEMAPHORE_PERMITS_MAX).length;

/** One claim on a semaphore: who, under which lease, with which permits, since which revision. */
export interface SemaphoreClaim {
  readonly semaphore: string;
  readonly holder: string;
  readonly lease: LeaseId;
  /** The permits this claim was made with (the semaphore's: those of its oldest claim). */
  readonly permits: number;
  /** The claim key's create revision. */
  readonly token: Revision;
}

/** A semaphore's claims split by the rules above. */
export interface SemaphoreView {
  /** The oldest claim's permits; 0 when there is no claim (the semaphore does not exist). */
  readonly permits: number;
  /** The claims that hold, oldest first (at most `permits`). */
  readonly holders: readonly SemaphoreClaim[];
  /** The claims that wait, in the order they will hold. */
  readonly waiters: readonly SemaphoreClaim[];
}

/** Why `name` is not a semaphore name, or undefined if it is one. */
export function semaphoreNameProblem(name: string): string | undefined {
  return nameProblem("semaphore", name);
}

/** Why `permits` is not a number of permits, or undefined if it is one. */
export function permitsProblem(permits: number): string | undefined {
  if (!Number.isSafeInteger(permits) || permits < 1 || permits > SEMAPHORE_PERMITS_MAX)
    return `permits must be 1 to ${SEMAPHORE_PERMITS_MAX}, not ${permits}`;
  return undefined;
}

/** The prefix of every claim key of `semaphore` (ends with NUL). */
export function semaphorePrefix(semaphore: string): Uint8Array {
  return claimPrefixIn(SEMAPHORE_KEY_PREFIX, semaphore);
}

/** The claim key of `semaphore` under lease `id`. */
export function semaphoreKey(semaphore: string, id: LeaseId): Uint8Array {
  return claimKeyIn(SEMAPHORE_KEY_PREFIX, semaphore, id);
}

/** A claim's value: `<permits> <holder>`. */
export function semaphoreValue(permits: number, holder: string): Uint8Array {
  return encoder.encode(`${permits} ${holder}`);
}

/** The claim a key-value stands for, or undefined when it is not a semaphore claim (see the header). */
export function semaphoreClaimOf(kv: KeyValue): SemaphoreClaim | undefined {
  const semaphore = claimNameOf(PREFIX_BYTES, kv, (n) => semaphoreNameProblem(n) === undefined);
  if (semaphore === undefined) return undefined;
  const value = kv.value;
  const space = value.indexOf(SPACE);
  if (space < 1 || space > PERMITS_DIGITS_MAX || value[0] === 0x30) return undefined;
  let permits = 0;
  for (let i = 0; i < space; i++) {
    const d = value[i]! - 0x30;
    if (d < 0 || d > 9) return undefined;
    permits = permits * 10 + d;
  }
  if (permitsProblem(permits) !== undefined) return undefined;
  let holder: string;
  try {
    holder = decoder.decode(value.subarray(space + 1));
  } catch {
    return undefined;
  }
  if (holderProblem(holder) !== undefined) return undefined;
  return { semaphore, holder, lease: kv.lease, permits, token: kv.createRevision };
}

/** Splits `claims` (one semaphore's, oldest first) into holders and waiters. */
export function semaphoreView(claims: readonly SemaphoreClaim[]): SemaphoreView {
  const permits = claims[0]?.permits ?? 0;
  return { permits, holders: claims.slice(0, permits), waiters: claims.slice(permits) };
}
