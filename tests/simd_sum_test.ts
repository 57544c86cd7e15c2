import assert from "node:assert/strict";
import { sumUint64 } from "../ffi/_simd_sum.ts";

function reference(values: BigUint64Array, start: number, count: number): bigint {
  let total = 0n;
  for (let i = start; i < start + count; i++) total += values[i]!;
  return BigInt.asUintN(64, total);
}

Deno.test("sumUint64() matches a BigInt loop for every tail length", () => {
  const values = new BigUint64Array(200_010);
  for (let i = 0; i < values.length; i++) values[i] = BigInt(i) * 0x1_0000_0001n + 7n;
  for (
    const [start, count] of [[0, 0], [0, 1], [1, 3], [2, 4], [3, 5], [0, 65_536], [5, 200_000]]
  ) {
    assert.equal(
      sumUint64(values.buffer, start! * 8, count!),
      reference(values, start!, count!),
      `${start}+${count}`,
    );
  }
});

Deno.test("sumUint64() wraps modulo 2^64", () => {
  const values = new BigUint64Array([
    0xffff_ffff_ffff_ffffn,
    2n,
    0xffff_ffff_ffff_fff0n,
    0x20n,
    1n,
  ]);
  assert.equal(sumUint64(values.buffer, 0, 5), 0x12n);
  assert.equal(sumUint64(values.buffer, 0, 4), 0x11n);
});
