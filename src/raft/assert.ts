/**
 * Assertions that are always on (CONVENTIONS 6). A failed assertion is a bug:
 * it throws an AssertionError that the host treats as fatal for the member.
 */

/** Thrown when an invariant does not hold. Never caught to continue. */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

/** Stops the member if `cond` is false. */
export function assert(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

/** Ends an exhaustive `switch` over a union. */
export function assertNever(x: never, what: string): never {
  throw new AssertionError(`unexpected ${what}: ${JSON.stringify(x)}`);
}
