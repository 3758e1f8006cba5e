/**
 * Counters (leasehold.v1 `Counters`): named int64 values changed atomically
 * in the log's order. Kept as ordinary etcd keys, so the etcd API (etcdctl,
 * watches, txns) sees them too; this module holds the layout and the pure
 * rules, machine.ts applies the commands (counterAdd, counterCas).
 *
 * Key layout. Counter C is the one key
 *     leasehold/counters/<C>
 * its value C's value as canonical decimal text ("0", "42", "-7": an
 * optional "-", no leading zeros, no "+", no spaces, no "-0"), so
 * `etcdctl get leasehold/counters/C` reads it. A counter name is 1 to
 * COUNTER_NAME_BYTES_MAX bytes of UTF-8 without NUL (resources.ts
 * nameProblem). The key carries no lease of its own; a lease attached to it
 * through the etcd API is kept by every write here (only the value changes).
 *
 * Rules:
 * - A counter never written (no key) reads 0; Add and CompareAndSet treat it
 *   as 0 and create the key.
 * - Values are int64: an Add whose sum falls outside [-2^63, 2^63 - 1] is
 *   refused ("overflow") and writes nothing.
 * - A key whose value is not canonical decimal int64 text (written through
 *   the etcd API) is not reset nor reinterpreted: Add, CompareAndSet and Get
 *   refuse it ("notNumber") until someone writes a number there or deletes
 *   the key.
 * - Add always writes (delta 0 included: one revision, one watch event per
 *   Add); CompareAndSet writes only when it succeeds.
 */

import { nameProblem, RESOURCE_NAME_BYTES_MAX } from "./resources.ts";
import type { KeyValue } from "./types.ts";

/** Every counter key starts with this. */
export const COUNTER_KEY_PREFIX = "leasehold/counters/";
/** Longest counter name, in UTF-8 bytes (the same bound as a resource name). */
export const COUNTER_NAME_BYTES_MAX = RESOURCE_NAME_BYTES_MAX;
/** Most bytes of a stored value that is not a number carried in an answer (to name it in an error). */
export const COUNTER_SHOWN_BYTES_MAX = 64;
/** The smallest counter value (int64's). */
export const COUNTER_MIN = -(1n << 63n);
/** The largest counter value (int64's). */
export const COUNTER_MAX = (1n << 63n) - 1n;

const encoder = new TextEncoder();
/** Canonical decimal int64 text: at most 19 digits after an optional "-", no leading zero. */
const CANONICAL = /^(0|-?[1-9][0-9]{0,18})$/;
const DIGITS_BYTES_MAX = 20;

/** A counter as stored: its value, or the bytes (at most COUNTER_SHOWN_BYTES_MAX) that are not one. */
export type CounterValue =
  | { readonly ok: true; readonly value: bigint }
  | { readonly ok: false; readonly stored: Uint8Array };

/** Why `name` is not a counter name, or undefined if it is one. */
export function counterNameProblem(name: string): string | undefined {
  return nameProblem("counter", name);
}

/** The key of counter `name`. */
export function counterKey(name: string): Uint8Array {
  return encoder.encode(COUNTER_KEY_PREFIX + name);
}

/** The stored text of `value`. */
export function counterText(value: bigint): Uint8Array {
  return encoder.encode(value.toString());
}

/** The value `bytes` stand for, if they are canonical decimal int64 text. */
export function parseCounter(bytes: Uint8Array): bigint | undefined {
  if (bytes.length === 0 || bytes.length > DIGITS_BYTES_MAX) return undefined;
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  if (!CANONICAL.test(text)) return undefined;
  const n = BigInt(text);
  return n >= COUNTER_MIN && n <= COUNTER_MAX ? n : undefined;
}

/** The counter a key's current version holds (absent: 0). */
export function counterValueOf(kv: KeyValue | undefined): CounterValue {
  if (kv === undefined) return { ok: true, value: 0n };
  const value = parseCounter(kv.value);
  if (value !== undefined) return { ok: true, value };
  return { ok: false, stored: kv.value.slice(0, COUNTER_SHOWN_BYTES_MAX) };
}

/** `a + b`, or undefined when it is outside int64 (both must be int64). */
export function addInt64(a: bigint, b: bigint): bigint | undefined {
  const sum = a + b;
  return sum < COUNTER_MIN || sum > COUNTER_MAX ? undefined : sum;
}
