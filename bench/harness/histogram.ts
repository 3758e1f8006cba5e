/**
 * A latency histogram with logarithmic buckets, in the manner of HdrHistogram:
 * values are non-negative integers (the harness records microseconds), kept
 * exactly below 128 and within 1/64 (1.6 %) above, up to 2^32 - 1 (71 minutes
 * of microseconds; larger values are clamped, negative ones count as 0).
 *
 * Contract:
 * - `record` is O(1) and allocates nothing; a histogram is a fixed array of
 *   1,728 counters, whatever it has seen.
 * - `merge` adds counts: merging the histograms of several client processes
 *   gives the histogram of all their samples, exactly as if one had recorded
 *   them all (the buckets are the same everywhere).
 * - `percentile(p)` is the value at rank ceil(p/100 * count) (at least 1), as
 *   its bucket's midpoint clamped to [min, max]; min and max are exact.
 * - `toJSON`/`Histogram.fromJSON` round-trip through plain JSON (sparse
 *   [bucket, count] pairs), which is how client processes send theirs over IPC.
 */

/** Sub-buckets per power of two, as a power of two. */
const SUB_BITS = 6;
const SUB = 1 << SUB_BITS;
/** Below this every value has its own bucket. */
const EXACT = 2 * SUB;
/** The largest value kept; larger ones are recorded as this. */
export const HISTOGRAM_MAX = 2 ** 32 - 1;
/** Buckets: EXACT exact ones, then SUB per power of two from 2^7 to 2^31. */
const BUCKETS = EXACT + (31 - SUB_BITS) * SUB;

/** The bucket holding value `v` (clamped to [0, HISTOGRAM_MAX], truncated to an integer). */
export function bucketOf(v: number): number {
  const x = v >= HISTOGRAM_MAX ? HISTOGRAM_MAX : v > 0 ? Math.floor(v) : 0;
  if (x < EXACT) return x;
  const shift = 31 - Math.clz32(x) - SUB_BITS;
  return EXACT + (shift - 1) * SUB + ((x >>> shift) - SUB);
}

/** The smallest value of bucket `i`, and how many values it spans. */
export function bucketRange(i: number): { readonly low: number; readonly width: number } {
  if (i < EXACT) return { low: i, width: 1 };
  const shift = Math.floor((i - EXACT) / SUB) + 1;
  const mantissa = ((i - EXACT) % SUB) + SUB;
  return { low: mantissa * 2 ** shift, width: 2 ** shift };
}

/** The serialized form: sparse counts and the exact statistics. */
export interface HistogramJson {
  readonly buckets: readonly (readonly [number, number])[];
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly sum: number;
}

/** The usual summary of a latency distribution, in the recorded unit. */
export interface HistogramSummary {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export class Histogram {
  private readonly counts = new Float64Array(BUCKETS);
  private n = 0;
  private lo = Number.POSITIVE_INFINITY;
  private hi = 0;
  private total = 0;

  /** Records `times` samples of value `v`. */
  record(v: number, times = 1): void {
    const x = v >= HISTOGRAM_MAX ? HISTOGRAM_MAX : v > 0 ? Math.floor(v) : 0;
    this.counts[bucketOf(x)]! += times;
    this.n += times;
    this.total += x * times;
    if (x < this.lo) this.lo = x;
    if (x > this.hi) this.hi = x;
  }

  /** Adds every sample of `other` to this one. */
  merge(other: Histogram): this {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.n += other.n;
    this.total += other.total;
    if (other.lo < this.lo) this.lo = other.lo;
    if (other.hi > this.hi) this.hi = other.hi;
    return this;
  }

  get count(): number {
    return this.n;
  }
  get min(): number {
    return this.n === 0 ? 0 : this.lo;
  }
  get max(): number {
    return this.hi;
  }
  get mean(): number {
    return this.n === 0 ? 0 : this.total / this.n;
  }

  /** The value below or at which `p` percent of the samples lie (0 when empty). */
  percentile(p: number): number {
    if (this.n === 0) return 0;
    const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const { low, width } = bucketRange(i);
        return Math.min(this.hi, Math.max(this.lo, low + (width - 1) / 2));
      }
    }
    return this.hi;
  }

  summary(): HistogramSummary {
    return {
      count: this.n,
      mean: this.mean,
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
      max: this.max,
    };
  }

  toJSON(): HistogramJson {
    const buckets: [number, number][] = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i]! > 0) buckets.push([i, this.counts[i]!]);
    return { buckets, count: this.n, min: this.min, max: this.hi, sum: this.total };
  }

  static fromJSON(j: HistogramJson): Histogram {
    const h = new Histogram();
    for (const [i, c] of j.buckets) {
      if (!Number.isInteger(i) || i < 0 || i >= BUCKETS) throw new RangeError(`histogram: bucket ${i}`);
      h.counts[i]! += c;
    }
    h.n = j.count;
    h.total = j.sum;
    h.lo = j.count === 0 ? Number.POSITIVE_INFINITY : j.min;
    h.hi = j.max;
    return h;
  }
}
