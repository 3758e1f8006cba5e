/**
 * FenceGuard: the highest token per resource only grows; a lower token is
 * refused with StaleFenceError naming the highest; a token equal to the
 * highest is the same holder again; a one-resource guard; a property against
 * a dumb model (a map of maxima).
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError, StaleFenceError } from "../../src/client/errors.ts";
import { FenceGuard } from "../../src/client/fence-guard.ts";

describe("FenceGuard", () => {
  it("accepts rising and equal tokens and refuses a lower one with the highest seen", () => {
    const g = new FenceGuard();
    expect(g.highest("db")).toBeUndefined();
    g.check(5, "db");
    g.check(5, "db");
    g.check(9, "db");
    expect(g.highest("db")).toBe(9);
    let caught: unknown;
    try {
      g.check(5, "db");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(StaleFenceError);
    const e = caught as StaleFenceError;
    expect(e.message).toBe(
      'leasehold: fencing token 5 is stale for "db": a holder with token 9 has been seen',
    );
    expect(e).toMatchObject({ resource: "db", staleToken: 5, fencingToken: 9, kind: "staleFence" });
    expect(g.highest("db")).toBe(9);
  });

  it("keeps resources apart", () => {
    const g = new FenceGuard();
    g.check(100, "a");
    g.check(3, "b");
    expect(g.highest("a")).toBe(100);
    expect(g.highest("b")).toBe(3);
    expect(() => g.check(2, "b")).toThrow(StaleFenceError);
    expect(() => g.check(99, "a")).toThrow(StaleFenceError);
  });

  it("guards one resource without naming it, and refuses another name", () => {
    const g = new FenceGuard({ resource: "db" });
    g.check(7);
    g.check(8, "db");
    expect(g.highest()).toBe(8);
    expect(() => g.check(7)).toThrow(StaleFenceError);
    expect(() => g.check(9, "other")).toThrow(InvalidArgumentError);
    expect(g.highest()).toBe(8);
  });

  it("takes bigint tokens from the wire and refuses malformed ones", () => {
    const g = new FenceGuard();
    g.check(12n, "r");
    expect(g.highest("r")).toBe(12);
    expect(() => g.check(11n, "r")).toThrow(StaleFenceError);
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 53, 0n, 2n ** 53n]) {
      expect(() => g.check(bad, "r"), String(bad)).toThrow(InvalidArgumentError);
    }
    expect(() => g.check(5)).toThrow(InvalidArgumentError);
  });

  it("answers accepts() without recording, and seed() only raises", () => {
    const g = new FenceGuard();
    expect(g.accepts(3, "r")).toBe(true);
    expect(g.highest("r")).toBeUndefined();
    g.seed(10, "r");
    g.seed(4, "r");
    expect(g.highest("r")).toBe(10);
    expect(g.accepts(9, "r")).toBe(false);
    expect(g.accepts(10, "r")).toBe(true);
  });

  it("refuses a new resource past resourcesMax, but still checks the known ones", () => {
    const g = new FenceGuard({ resourcesMax: 2 });
    g.check(1, "a");
    g.check(1, "b");
    expect(() => g.check(1, "c")).toThrow(InvalidArgumentError);
    g.check(2, "a");
    expect(g.highest("c")).toBeUndefined();
  });

  it("matches a model: accepted iff at least the max so far; the max is what was accepted", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), fc.integer({ min: 1, max: 20 })), {
          maxLength: 60,
        }),
        (ops) => {
          const g = new FenceGuard();
          const model = new Map<string, number>();
          for (const [r, t] of ops) {
            const max = model.get(r);
            const ok = max === undefined || t >= max;
            if (ok) {
              g.check(t, r);
              model.set(r, Math.max(t, max ?? 0));
            } else {
              expect(() => g.check(t, r)).toThrow(StaleFenceError);
            }
            expect(g.highest(r)).toBe(model.get(r));
          }
        },
      ),
    );
  });
});
