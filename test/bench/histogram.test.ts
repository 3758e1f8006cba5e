/**
 * The benchmark harness's latency histogram (bench/harness/histogram.ts):
 * bucket boundaries, percentiles against an exact sort, merging as the
 * coordinator merges client processes' histograms, and the JSON round trip
 * they travel through.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bucketOf, bucketRange, HISTOGRAM_MAX, Histogram } from "../../bench/harness/histogram.ts";

/** The exact p-th percentile: the value at rank ceil(p/100 * n). */
function exact(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(1, Math.ceil((p / 100) * s.length)) - 1]!;
}

describe("buckets", () => {
  it("every value lies in its bucket's range, buckets are contiguous and within 1/64 of the value", () => {
    for (const v of [0, 1, 127, 128, 129, 255, 256, 1000, 65_535, 1_000_000, 2 ** 31, HISTOGRAM_MAX]) {
      const { low, width } = bucketRange(bucketOf(v));
      expect(v).toBeGreaterThanOrEqual(low);
      expect(v).toBeLessThan(low + width);
      expect(width <= 1 || width / low <= 1 / 64).toBe(true);
    }
    for (let i = 1; i < bucketOf(HISTOGRAM_MAX); i++) {
      const prev = bucketRange(i - 1);
      expect(bucketRange(i).low).toBe(prev.low + prev.width);
    }
  });

  it("clamps negative values to 0 and huge ones to the maximum", () => {
    const h = new Histogram();
    h.record(-5);
    h.record(1e12);
    expect(h.min).toBe(0);
    expect(h.max).toBe(HISTOGRAM_MAX);
  });
});

describe("percentiles", () => {
  it("are exact below 128", () => {
    const h = new Histogram();
    const vs = Array.from({ length: 100 }, (_, i) => i + 1);
    for (const v of vs) h.record(v);
    expect(h.percentile(50)).toBe(50);
    expect(h.percentile(99)).toBe(99);
    expect(h.percentile(100)).toBe(100);
    expect(h.percentile(0)).toBe(1);
    expect(h.mean).toBe(50.5);
  });

  it("are within 1/64 of the exact percentile for any sample", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 10_000_000 }), { minLength: 1, maxLength: 300 }),
        fc.constantFrom(1, 50, 90, 99, 99.9, 100),
        (vs, p) => {
          const h = new Histogram();
          for (const v of vs) h.record(v);
          const want = exact(vs, p);
          expect(Math.abs(h.percentile(p) - want)).toBeLessThanOrEqual(Math.max(0.5, want / 64));
          expect(h.max).toBe(Math.max(...vs));
          expect(h.min).toBe(Math.min(...vs));
        },
      ),
    );
  });

  it("of an empty histogram are 0", () => {
    expect(new Histogram().summary()).toEqual({ count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
  });
});

describe("merge and JSON", () => {
  it("merging equals recording everything in one histogram, also through JSON", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 0, max: 2 ** 32 }), { maxLength: 50 }), {
          minLength: 1,
          maxLength: 5,
        }),
        (parts) => {
          const all = new Histogram();
          const merged = new Histogram();
          for (const part of parts) {
            const h = new Histogram();
            for (const v of part) {
              h.record(v);
              all.record(v);
            }
            merged.merge(Histogram.fromJSON(JSON.parse(JSON.stringify(h.toJSON()))));
          }
          expect(merged.toJSON()).toEqual(all.toJSON());
          expect(merged.summary()).toEqual(all.summary());
        },
      ),
    );
  });

  it("refuses a bucket that does not exist", () => {
    expect(() => Histogram.fromJSON({ buckets: [[1_000_000, 1]], count: 1, min: 0, max: 0, sum: 0 })).toThrow(
      RangeError,
    );
  });
});
