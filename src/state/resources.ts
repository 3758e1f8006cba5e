/**
 * Resource leases (leasehold.v1 `Leases`, ARCHITECTURE "Leases" rules 6-7):
 * exclusive, time-bounded ownership of a named resource by a named holder,
 * with a fencing token. Kept as ordinary etcd keys and leases, so the etcd
 * API (etcdctl, watches, txns) sees them too; this module holds the layout
 * and the pure rules, machine.ts applies the commands.
 *
 * Key layout. Every claim on resource R (the holder's and each waiter's) is
 * one key
 *     leasehold/resources/<R> NUL <lease id as 16 lowercase hex digits>
 * put with the claim's own lease (granted by the same command), its value
 * the holder's identity in UTF-8. A resource name is 1 to
 * RESOURCE_NAME_BYTES_MAX bytes of UTF-8 without NUL, so the claims of R are
 * exactly the keys under `leasehold/resources/<R> NUL`: "db" and "db/1" are
 * two resources, neither inside the other (etcd's own lock keys, `name/`,
 * do not have this property). `etcdctl get --prefix leasehold/resources/`
 * lists every claim.
 *
 * Rules:
 * - The claim with the smallest create revision holds; the others wait, in
 *   create-revision order (FIFO). A claim ends when its lease is revoked
 *   (release, revoke) or expires: the key goes with the lease.
 * - The fencing token of a holding is its key's create revision: it only
 *   grows, and strictly per resource, since each claim is a new key at a new
 *   revision and a claim can only hold after every older one is gone.
 * - A fence (resource, token) is current exactly when the oldest claim of the
 *   resource has that create revision. A waiter's own create revision is not
 *   a valid token until it holds: a fenced write checks "oldest", not "exists".
 */

import type { KeyValue, LeaseId, Revision } from "./types.ts";

/** Every claim key starts with this. */
export const RESOURCE_KEY_PREFIX = "leasehold/resources/";
/** The byte between a resource's name and the lease id in a claim key. */
export const RESOURCE_KEY_SEPARATOR = 0;
/** Longest resource name, in UTF-8 bytes. */
export const RESOURCE_NAME_BYTES_MAX = 512;
/** Longest holder identity, in UTF-8 bytes. */
export const HOLDER_BYTES_MAX = 256;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const PREFIX_BYTES = encoder.encode(RESOURCE_KEY_PREFIX);
const LEASE_HEX_DIGITS = 16;
/** A UTF-16 surrogate not paired (a pair is one code point to a `u` regex): no UTF-8 for it. */
const LONE_SURROGATE = /\p{Cs}/u;

/** The holder (or a waiter) of a resource: who, under which lease, and since which revision. */
export interface ResourceClaim {
  readonly resource: string;
  readonly holder: string;
  readonly lease: LeaseId;
  /** The claim key's create revision: the fencing token once it holds. */
  readonly token: Revision;
}

/** Why `name` is not a resource name, or undefined if it is one. */
export function resourceNameProblem(name: string): string | undefined {
  return nameProblem("resource", name);
}

/**
 * Why `name` is not the name of a `what` ("resource", "counter", "semaphore"):
 * 1 to RESOURCE_NAME_BYTES_MAX bytes of well-formed UTF-8 without NUL; or
 * undefined if it is one. Shared by every leasehold.v1 key layout.
 */
export function nameProblem(what: string, name: string): string | undefined {
  if (name.length === 0) return `the ${what} name is empty`;
  if (name.includes("\u0000")) return `the ${what} name contains NUL`;
  if (LONE_SURROGATE.test(name)) return `the ${what} name is not well-formed Unicode`;
  const bytes = encoder.encode(name).length;
  if (bytes > RESOURCE_NAME_BYTES_MAX)
    return `the ${what} name is ${bytes} bytes, over ${RESOURCE_NAME_BYTES_MAX}`;
  return undefined;
}

/** Why `holder` is not a holder identity, or undefined if it is one. */
export function holderProblem(holder: string): string | undefined {
  if (holder.length === 0) return "the holder is empty";
  if (LONE_SURROGATE.test(holder)) return "the holder is not well-formed Unicode";
  const bytes = encoder.encode(holder).length;
  if (bytes > HOLDER_BYTES_MAX) return `the holder is ${bytes} bytes, over ${HOLDER_BYTES_MAX}`;
  return undefined;
}

/** The prefix of every claim key of `resource` (ends with the separator). */
export function resourcePrefix(resource: string): Uint8Array {
  return claimPrefixIn(RESOURCE_KEY_PREFIX, resource);
}

/** The prefix of the claim keys of every resource whose name starts with `namePrefix`. */
export function resourceNamesPrefix(namePrefix: string): Uint8Array {
  return encoder.encode(RESOURCE_KEY_PREFIX + namePrefix);
}

/** The claim key of `resource` under lease `id`. */
export function resourceKey(resource: string, id: LeaseId): Uint8Array {
  return claimKeyIn(RESOURCE_KEY_PREFIX, resource, id);
}

/**
 * The prefix of every claim key of `name` in the key space `space` (a key
 * prefix such as RESOURCE_KEY_PREFIX): `space name NUL`. The claim layout of
 * the file header, shared with semaphores.ts.
 */
export function claimPrefixIn(space: string, name: string): Uint8Array {
  const head = encoder.encode(space + name);
  const out = new Uint8Array(head.length + 1);
  out.set(head, 0);
  out[head.length] = RESOURCE_KEY_SEPARATOR;
  return out;
}

/** The claim key of `name` in `space` under lease `id`: `space name NUL <16 hex digits>`. */
export function claimKeyIn(space: string, name: string, id: LeaseId): Uint8Array {
  const prefix = claimPrefixIn(space, name);
  const hex = encoder.encode(id.toString(16).padStart(LEASE_HEX_DIGITS, "0"));
  const out = new Uint8Array(prefix.length + hex.length);
  out.set(prefix, 0);
  out.set(hex, prefix.length);
  return out;
}

/**
 * The name a claim key of `space` (its UTF-8 bytes) names, when `kv` is one:
 * the layout above, a valid name (`nameOk`), and bound to the lease its key
 * names. Undefined for anything else (keys written under the prefix through
 * the etcd API are ignored, never trusted).
 */
export function claimNameOf(
  spaceBytes: Uint8Array,
  kv: KeyValue,
  nameOk: (name: string) => boolean,
): string | undefined {
  const key = kv.key;
  if (key.length < spaceBytes.length + 2 + LEASE_HEX_DIGITS) return undefined;
  for (let i = 0; i < spaceBytes.length; i++) if (key[i] !== spaceBytes[i]) return undefined;
  const sep = key.length - LEASE_HEX_DIGITS - 1;
  if (key[sep] !== RESOURCE_KEY_SEPARATOR) return undefined;
  let name: string;
  let hex: string;
  try {
    name = decoder.decode(key.subarray(spaceBytes.length, sep));
    hex = decoder.decode(key.subarray(sep + 1));
  } catch {
    return undefined;
  }
  if (!/^[0-9a-f]{16}$/.test(hex) || !nameOk(name)) return undefined;
  if (BigInt(`0x${hex}`) !== kv.lease) return undefined;
  return name;
}

/**
 * Release requests (leasehold.v1 RequestRelease / Revoke). A request on the
 * holding of lease L on resource R is two keys, made in one revision:
 *   leasehold/release-requests/<R> NUL <L hex>   value: JSON {requester, reason,
 *                                                deadlineSeconds}, on lease L
 *                                                (it goes with the holding)
 *   leasehold/release-deadlines/<R> NUL <L hex>  empty, on a fresh lease of
 *                                                deadlineSeconds
 * The leader's lessor expires the deadline lease like any other, so "the
 * deadline passed" is "the request key exists and the deadline key is gone":
 * decided in the log's order, by the leader's monotonic clock, never by a
 * replica's. Revoke of L is allowed exactly then.
 */
export const RELEASE_REQUEST_PREFIX = "leasehold/release-requests/";
export const RELEASE_DEADLINE_PREFIX = "leasehold/release-deadlines/";
const REQUEST_PREFIX_BYTES = encoder.encode(RELEASE_REQUEST_PREFIX);

/** The release request key of the holding of lease `id` on `resource`. */
export function releaseRequestKey(resource: string, id: LeaseId): Uint8Array {
  return claimKeyIn(RELEASE_REQUEST_PREFIX, resource, id);
}

/** The release deadline key of the holding of lease `id` on `resource`. */
export function releaseDeadlineKey(resource: string, id: LeaseId): Uint8Array {
  return claimKeyIn(RELEASE_DEADLINE_PREFIX, resource, id);
}

/** What a release request key holds. */
export interface ReleaseRequest {
  readonly resource: string;
  readonly lease: LeaseId;
  readonly requester: string;
  readonly reason: string;
  readonly deadlineSeconds: number;
}

/** The release request a key-value stands for, or undefined when it is not one. */
export function releaseRequestOf(kv: KeyValue): ReleaseRequest | undefined {
  const resource = claimNameOf(REQUEST_PREFIX_BYTES, kv, (n) => resourceNameProblem(n) === undefined);
  if (resource === undefined) return undefined;
  try {
    const o = JSON.parse(decoder.decode(kv.value)) as Record<string, unknown>;
    if (
      typeof o.requester !== "string" ||
      typeof o.reason !== "string" ||
      typeof o.deadlineSeconds !== "number"
    )
      return undefined;
    return {
      resource,
      lease: kv.lease,
      requester: o.requester,
      reason: o.reason,
      deadlineSeconds: o.deadlineSeconds,
    };
  } catch {
    return undefined;
  }
}

/**
 * Lock-delay (Chubby): a claim acquired with lockDelaySeconds = D > 0 has a
 * config key next to it, on its own lease (it goes with the claim):
 *   leasehold/lock-delay-of/<R> NUL <L hex>   value: D in decimal
 * When the leader expires the lease of the claim that HOLDS R (not a
 * release, not a revoke), the same entry makes a delay key on a fresh lease
 * of D seconds:
 *   leasehold/lock-delay/<R>                   value: the expired holder
 * While it exists nobody holds R: Acquire is refused (or waits), waiters at
 * the front wait, no fencing token is current. The leader's lessor expires it
 * like any lease, so the delay runs on the leader's monotonic clock and apply
 * stays deterministic.
 */
export const LOCK_DELAY_CONFIG_PREFIX = "leasehold/lock-delay-of/";
export const LOCK_DELAY_PREFIX = "leasehold/lock-delay/";

/** The lock-delay config key of the claim of lease `id` on `resource`. */
export function lockDelayConfigKey(resource: string, id: LeaseId): Uint8Array {
  return claimKeyIn(LOCK_DELAY_CONFIG_PREFIX, resource, id);
}

/** The key that exists while `resource` is in its lock-delay. */
export function lockDelayKey(resource: string): Uint8Array {
  return encoder.encode(LOCK_DELAY_PREFIX + resource);
}

/** The resource a lock-delay key names, or undefined for any other key. */
export function lockDelayResourceOf(key: Uint8Array): string | undefined {
  const prefix = encoder.encode(LOCK_DELAY_PREFIX);
  if (key.length <= prefix.length) return undefined;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return undefined;
  try {
    const name = decoder.decode(key.subarray(prefix.length));
    return resourceNameProblem(name) === undefined ? name : undefined;
  } catch {
    return undefined;
  }
}

/** The holder identity stored as a claim's value. */
export function holderValue(holder: string): Uint8Array {
  return encoder.encode(holder);
}

/** Whether `key` starts with the claim prefix: a cheap first test before claimOf. */
export function underClaimPrefix(key: Uint8Array): boolean {
  if (key.length <= PREFIX_BYTES.length) return false;
  for (let i = 0; i < PREFIX_BYTES.length; i++) if (key[i] !== PREFIX_BYTES[i]) return false;
  return true;
}

/**
 * The claim a key-value stands for, or undefined when it is not a claim key
 * (someone wrote under the prefix through the etcd API: such keys are
 * ignored when deciding who holds, never trusted).
 */
export function claimOf(kv: KeyValue): ResourceClaim | undefined {
  const resource = claimNameOf(PREFIX_BYTES, kv, (name) => resourceNameProblem(name) === undefined);
  if (resource === undefined) return undefined;
  let holder: string;
  try {
    holder = decoder.decode(kv.value);
  } catch {
    return undefined;
  }
  return { resource, holder, lease: kv.lease, token: kv.createRevision };
}
