/**
 * Histogram bucket helpers: the log2 and linear buckets that eBPF programs
 * keep, and their conversion to explicit upper bounds for sinks.
 *
 * Log2 buckets follow bpftrace's `hist()` and the `log2l` helpers in BCC
 * tools: bucket 0 contains the value 0, and bucket `k >= 1` contains the integers
 * `2^(k-1)` to `2^k - 1`. As explicit buckets, bucket `k` has the inclusive
 * upper bound `2^k - 1` (0, 1, 3, 7, ...), which is exact for integer values
 * with the `le` (less than or equal) semantics of Prometheus and of
 * OpenTelemetry's explicit-bucket histograms.
 *
 * For the OTLP sink: OpenTelemetry's exponential histograms (data model
 * specification 1.x) use buckets `(2^i, 2^(i+1)]` at scale 0, closed at the
 * top. Integer log2 buckets `[2^(k-1), 2^k - 1]` therefore do not map one to
 * one onto scale-0 exponential buckets: the value `2^k` belongs to eBPF
 * bucket `k + 1` but to the exponential bucket that ends at `2^k`. Export log2
 * buckets as explicit bounds `2^k - 1`, which are exact.
 *
 * Precision: JavaScript numbers hold integers exactly up to 2^53. Bounds and
 * values above that are rounded to the nearest double, so `2^k - 1` becomes
 * `2^k` for `k >= 54`, and a value within about `2^(k-53)` of a bound can
 * fall in the neighbouring bucket. The `bigint` forms are exact for any size.
 *
 * @module
 */

import type { ExplicitBuckets, Log2Buckets } from "./plugin.ts";

/**
 * Returns the log2 bucket of a non-negative integer: 0 for 0, otherwise its
 * bit length (1 for 1, 2 for 2 and 3, 3 for 4 to 7, 64 for `2^63` to
 * `2^64 - 1`). Pass a `bigint` for exact results above 2^53.
 *
 * @throws {RangeError} when `value` is negative, not an integer, or not finite
 *
 * @example
 * ```ts
 * import { log2BucketIndex } from "./histogram.ts";
 *
 * console.log(log2BucketIndex(0), log2BucketIndex(1), log2BucketIndex(5)); // 0 1 3
 * console.log(log2BucketIndex(2n ** 64n - 1n)); // 64
 * ```
 */
export function log2BucketIndex(value: number | bigint): number {
  if (typeof value === "bigint") {
    if (value < 0n) throw new RangeError(`Invalid histogram value ${value}: it is negative`);
    return value.toString(2).length - (value === 0n ? 1 : 0);
  }
  checkCount(value, "histogram value");
  // The bit length. Math.log2 would round near powers of two (log2(2^49 - 1) gives 49).
  if (value < 2 ** 32) return 32 - Math.clz32(value);
  return value.toString(2).length;
}

/**
 * Returns the inclusive range of integers in log2 bucket `k`, exactly:
 * `[0, 0]` for `k = 0`, else `[2^(k-1), 2^k - 1]`.
 *
 * @throws {RangeError} when `k` is not a non-negative integer
 *
 * @example
 * ```ts
 * import { log2BucketRange } from "./histogram.ts";
 *
 * console.log(log2BucketRange(3)); // { lower: 4n, upper: 7n }
 * ```
 */
export function log2BucketRange(k: number): { lower: bigint; upper: bigint } {
  checkCount(k, "log2 bucket index");
  if (k === 0) return { lower: 0n, upper: 0n };
  return { lower: 1n << BigInt(k - 1), upper: (1n << BigInt(k)) - 1n };
}

/**
 * Returns the inclusive upper bound of log2 bucket `k`, `2^k - 1`, as a
 * number: exact up to `k = 53`, rounded to `2^k` above (see the module
 * documentation).
 *
 * @throws {RangeError} when `k` is not a non-negative integer
 *
 * @example
 * ```ts
 * import { log2UpperBound } from "./histogram.ts";
 *
 * console.log([0, 1, 2, 3].map(log2UpperBound)); // [0, 1, 3, 7]
 * ```
 */
export function log2UpperBound(k: number): number {
  checkCount(k, "log2 bucket index");
  return 2 ** k - 1;
}

/**
 * Converts log2 buckets to explicit buckets: one bound `2^k - 1` per log2
 * bucket, in order, and an empty overflow bucket after the last bound.
 *
 * @example
 * ```ts
 * import { log2ToExplicit } from "./histogram.ts";
 *
 * console.log(log2ToExplicit({ kind: "log2", counts: [1, 1, 0, 1] }));
 * // { kind: "explicit", bounds: [0, 1, 3, 7], counts: [1, 1, 0, 1, 0] }
 * ```
 */
export function log2ToExplicit(buckets: Log2Buckets): ExplicitBuckets {
  const bounds = buckets.counts.map((_, k) => log2UpperBound(k));
  return { kind: "explicit", bounds, counts: [...buckets.counts, 0] };
}

/**
 * Converts explicit buckets back to log2 buckets when their bounds are the
 * log2 bounds 0, 1, 3, ..., `2^(n-1) - 1` and the overflow bucket is empty,
 * as {@linkcode log2ToExplicit} makes them. Returns undefined otherwise.
 *
 * @example
 * ```ts
 * import { explicitToLog2 } from "./histogram.ts";
 *
 * console.log(explicitToLog2({ kind: "explicit", bounds: [0, 1, 3], counts: [2, 0, 5, 0] }));
 * // { kind: "log2", counts: [2, 0, 5] }
 * console.log(explicitToLog2({ kind: "explicit", bounds: [10, 20], counts: [1, 1, 0] })); // undefined
 * ```
 */
export function explicitToLog2(buckets: ExplicitBuckets): Log2Buckets | undefined {
  const { bounds, counts } = buckets;
  if (counts.length !== bounds.length + 1 || counts[bounds.length] !== 0) return undefined;
  for (let k = 0; k < bounds.length; k++) {
    if (bounds[k] !== log2UpperBound(k)) return undefined;
  }
  return { kind: "log2", counts: counts.slice(0, bounds.length) };
}

/**
 * Linear buckets as an eBPF program keeps them: bucket `i` contains the integers
 * `min + i * width` to `min + (i + 1) * width - 1`.
 *
 * @example Buckets 0-9, 10-19, 20-29
 * ```ts
 * import type { LinearBuckets } from "./histogram.ts";
 *
 * const buckets: LinearBuckets = { width: 10, counts: [4, 0, 2] };
 * ```
 */
export interface LinearBuckets {
  /** The width of each bucket, a positive integer. */
  width: number;
  /** The lowest value of bucket 0. @default 0 */
  min?: number;
  /** `counts[i]` is the count of bucket `i`. */
  counts: readonly number[];
}

/**
 * Returns the linear bucket of an integer value: `floor((value - min) / width)`.
 * A value below `min` gives a negative index, which callers usually clamp or
 * count as underflow.
 *
 * @throws {RangeError} when `value` is not an integer or `width` is not a positive integer
 *
 * @example
 * ```ts
 * import { linearBucketIndex } from "./histogram.ts";
 *
 * console.log(linearBucketIndex(9, 10), linearBucketIndex(10, 10)); // 0 1
 * ```
 */
export function linearBucketIndex(value: number, width: number, min = 0): number {
  checkWidth(width);
  if (!Number.isInteger(value) || !Number.isInteger(min)) {
    throw new RangeError(`Invalid histogram value ${value} or min ${min}: expected integers`);
  }
  return Math.floor((value - min) / width);
}

/**
 * Returns the inclusive upper bound of linear bucket `i`: `min + (i + 1) * width - 1`.
 *
 * @throws {RangeError} when `i` is not a non-negative integer or `width` is not a positive integer
 *
 * @example
 * ```ts
 * import { linearUpperBound } from "./histogram.ts";
 *
 * console.log(linearUpperBound(0, 10), linearUpperBound(2, 10)); // 9 29
 * ```
 */
export function linearUpperBound(i: number, width: number, min = 0): number {
  checkCount(i, "linear bucket index");
  checkWidth(width);
  return min + (i + 1) * width - 1;
}

/**
 * Converts linear buckets to explicit buckets with inclusive bounds
 * `min + width - 1`, `min + 2 * width - 1`, ... and an empty overflow bucket.
 * When `min` is not 0, values below `min` would fall in the first explicit
 * bucket; linear buckets cannot hold them, so its count is only bucket 0's.
 *
 * @throws {RangeError} when `width` is not a positive integer
 *
 * @example
 * ```ts
 * import { linearToExplicit } from "./histogram.ts";
 *
 * console.log(linearToExplicit({ width: 10, counts: [4, 0, 2] }));
 * // { kind: "explicit", bounds: [9, 19, 29], counts: [4, 0, 2, 0] }
 * ```
 */
export function linearToExplicit(buckets: LinearBuckets): ExplicitBuckets {
  const min = buckets.min ?? 0;
  const bounds = buckets.counts.map((_, i) => linearUpperBound(i, buckets.width, min));
  return { kind: "explicit", bounds, counts: [...buckets.counts, 0] };
}

/**
 * Returns the index of the explicit bucket that contains `value`: the first
 * bound `>= value`, or `bounds.length` (the overflow bucket) when `value` is
 * above every bound.
 *
 * @example
 * ```ts
 * import { explicitBucketIndex } from "./histogram.ts";
 *
 * console.log(explicitBucketIndex([0, 1, 3, 7], 3), explicitBucketIndex([0, 1, 3, 7], 8)); // 2 4
 * ```
 */
export function explicitBucketIndex(bounds: readonly number[], value: number): number {
  let low = 0;
  let high = bounds.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (bounds[middle]! >= value) high = middle;
    else low = middle + 1;
  }
  return low;
}

function checkCount(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`Invalid ${what} ${value}: expected a non-negative integer`);
  }
}

function checkWidth(width: number): void {
  if (!Number.isInteger(width) || width <= 0) {
    throw new RangeError(`Invalid bucket width ${width}: expected a positive integer`);
  }
}
