/**
 * Redial backoff: exponential with "decorrelated jitter" (Brooker, "Exponential
 * Backoff And Jitter", AWS Architecture Blog, 2015): each wait is drawn uniformly
 * between the floor and three times the previous wait, then capped. Members that
 * lost a peer at the same moment spread out instead of redialing in lockstep.
 *
 * Contract: pure; the randomness is an input (a float in [0, 1)). The result is
 * always within [initialMs, maxMs].
 */

import { assert } from "../raft/index.ts";

/** The floor and the ceiling of the waits. */
export interface BackoffBounds {
  readonly initialMs: number;
  readonly maxMs: number;
}

/** The wait before the next dial, given the previous wait (`initialMs` before the first retry). */
export function nextBackoffMs(previousMs: number, random01: number, bounds: BackoffBounds): number {
  const { initialMs, maxMs } = bounds;
  assert(initialMs > 0 && maxMs >= initialMs, "backoff: need 0 < initialMs <= maxMs");
  assert(random01 >= 0 && random01 < 1, "backoff: random01 must be in [0, 1)");
  const high = Math.min(maxMs, Math.max(initialMs, previousMs) * 3);
  const waitMs = Math.round(initialMs + random01 * (high - initialMs));
  return Math.min(maxMs, Math.max(initialMs, waitMs));
}
