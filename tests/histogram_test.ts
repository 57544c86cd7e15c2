import assert from "node:assert/strict";
import {
  explicitBucketIndex,
  explicitToLog2,
  linearBucketIndex,
  linearToExplicit,
  linearUpperBound,
  log2BucketIndex,
  log2BucketRange,
  log2ToExplicit,
  log2UpperBound,
} from "../plugins/histogram.ts";

Deno.test("log2BucketIndex small values", () => {
  const cases: [number, number][] = [[0, 0], [1, 1], [2, 2], [3, 2], [4, 3], [7, 3], [8, 4]];
  for (const [value, bucket] of cases) {
    assert.equal(log2BucketIndex(value), bucket, `value ${value}`);
    assert.equal(log2BucketIndex(BigInt(value)), bucket, `value ${value}n`);
  }
});

Deno.test("log2BucketIndex 2^k - 1 and 2^k", () => {
  for (const k of [1, 2, 5, 31, 32, 33, 48, 49, 52, 53]) {
    assert.equal(log2BucketIndex(2 ** k - 1), k, `2^${k} - 1`);
    assert.equal(log2BucketIndex(2 ** k), k + 1, `2^${k}`);
    assert.equal(log2BucketIndex((1n << BigInt(k)) - 1n), k, `2^${k} - 1 as bigint`);
    assert.equal(log2BucketIndex(1n << BigInt(k)), k + 1, `2^${k} as bigint`);
  }
});

Deno.test("log2BucketIndex above 2^53", () => {
  assert.equal(log2BucketIndex((1n << 63n) - 1n), 63);
  assert.equal(log2BucketIndex(1n << 63n), 64);
  assert.equal(log2BucketIndex((1n << 64n) - 1n), 64);
  assert.equal(log2BucketIndex(1n << 64n), 65);
  assert.equal(log2BucketIndex(2 ** 63), 64);
  // 2^64 - 1 is not a double: it rounds to 2^64, a bucket too high.
  assert.equal(log2BucketIndex(Number((1n << 64n) - 1n)), 65);
});

Deno.test("log2BucketIndex invalid values", () => {
  assert.throws(() => log2BucketIndex(-1), RangeError);
  assert.throws(() => log2BucketIndex(1.5), RangeError);
  assert.throws(() => log2BucketIndex(Infinity), RangeError);
  assert.throws(() => log2BucketIndex(-1n), RangeError);
});

Deno.test("log2BucketRange edges", () => {
  assert.deepEqual(log2BucketRange(0), { lower: 0n, upper: 0n });
  assert.deepEqual(log2BucketRange(1), { lower: 1n, upper: 1n });
  assert.deepEqual(log2BucketRange(2), { lower: 2n, upper: 3n });
  assert.deepEqual(log2BucketRange(3), { lower: 4n, upper: 7n });
  assert.deepEqual(log2BucketRange(64), { lower: 1n << 63n, upper: (1n << 64n) - 1n });
  assert.throws(() => log2BucketRange(-1), RangeError);
});

Deno.test("log2BucketRange agrees with log2BucketIndex", () => {
  for (let k = 0; k <= 64; k++) {
    const { lower, upper } = log2BucketRange(k);
    assert.equal(log2BucketIndex(lower), k, `lower bound of bucket ${k}`);
    assert.equal(log2BucketIndex(upper), k, `upper bound of bucket ${k}`);
  }
});

Deno.test("log2UpperBound exact up to 2^53", () => {
  assert.deepEqual([0, 1, 2, 3, 4].map(log2UpperBound), [0, 1, 3, 7, 15]);
  assert.equal(log2UpperBound(53), Number.MAX_SAFE_INTEGER);
  // Above 2^53 the bound rounds up to 2^k (documented).
  assert.equal(log2UpperBound(63), 2 ** 63);
  assert.equal(log2UpperBound(64), 2 ** 64);
});

Deno.test("log2ToExplicit bounds and overflow", () => {
  const explicit = log2ToExplicit({ kind: "log2", counts: [1, 2, 3, 4] });
  assert.deepEqual(explicit.bounds, [0, 1, 3, 7]);
  assert.deepEqual(explicit.counts, [1, 2, 3, 4, 0]);
});

Deno.test("log2ToExplicit places integers like le", () => {
  // Each value must land in the explicit bucket whose index is its log2 bucket.
  const { bounds } = log2ToExplicit({ kind: "log2", counts: new Array(54).fill(0) });
  for (const value of [0, 1, 2, 3, 4, 7, 8, 1023, 1024, 2 ** 52, 2 ** 53 - 1]) {
    assert.equal(explicitBucketIndex(bounds, value), log2BucketIndex(value), `value ${value}`);
  }
});

Deno.test("explicitToLog2 round trip", () => {
  const log2 = { kind: "log2", counts: [5, 0, 2, 9] } as const;
  assert.deepEqual(explicitToLog2(log2ToExplicit(log2)), { kind: "log2", counts: [5, 0, 2, 9] });
});

Deno.test("explicitToLog2 rejects other bounds", () => {
  assert.equal(
    explicitToLog2({ kind: "explicit", bounds: [0, 2, 3], counts: [0, 0, 0, 0] }),
    undefined,
  );
  assert.equal(explicitToLog2({ kind: "explicit", bounds: [0, 1], counts: [0, 0, 1] }), undefined);
  assert.equal(explicitToLog2({ kind: "explicit", bounds: [0, 1], counts: [0, 0] }), undefined);
});

Deno.test("linearBucketIndex edges", () => {
  assert.equal(linearBucketIndex(0, 10), 0);
  assert.equal(linearBucketIndex(9, 10), 0);
  assert.equal(linearBucketIndex(10, 10), 1);
  assert.equal(linearBucketIndex(19, 10), 1);
  assert.equal(linearBucketIndex(0, 1), 0);
  assert.equal(linearBucketIndex(1, 1), 1);
  assert.equal(linearBucketIndex(105, 10, 100), 0);
  assert.equal(linearBucketIndex(99, 10, 100), -1);
});

Deno.test("linearBucketIndex invalid arguments", () => {
  assert.throws(() => linearBucketIndex(1, 0), RangeError);
  assert.throws(() => linearBucketIndex(1, 2.5), RangeError);
  assert.throws(() => linearBucketIndex(1.5, 2), RangeError);
});

Deno.test("linearUpperBound edges", () => {
  assert.equal(linearUpperBound(0, 10), 9);
  assert.equal(linearUpperBound(1, 10), 19);
  assert.equal(linearUpperBound(0, 1), 0);
  assert.equal(linearUpperBound(0, 10, 100), 109);
});

Deno.test("linearToExplicit places integers like le", () => {
  const explicit = linearToExplicit({ width: 10, counts: [0, 0, 0, 0] });
  assert.deepEqual(explicit.bounds, [9, 19, 29, 39]);
  assert.deepEqual(explicit.counts, [0, 0, 0, 0, 0]);
  for (const value of [0, 9, 10, 19, 20, 39]) {
    assert.equal(
      explicitBucketIndex(explicit.bounds, value),
      linearBucketIndex(value, 10),
      `value ${value}`,
    );
  }
  assert.equal(explicitBucketIndex(explicit.bounds, 40), 4);
});
