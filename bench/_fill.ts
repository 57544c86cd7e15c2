// Shared set-up of the benchmarks.

import type { BpfMap } from "../mod.ts";

/** The entries of the batch-dump benchmark, as in bench/ref.c. */
export const BIG_HASH_ENTRIES = 1_000_000;

/** Fills a u32 -> u64 hash with keys 0..BIG_HASH_ENTRIES-1, each value equal to its key. */
export function fillBigHash(map: BpfMap): void {
  const keys = new Uint32Array(BIG_HASH_ENTRIES);
  const values = new BigUint64Array(BIG_HASH_ENTRIES);
  for (let i = 0; i < BIG_HASH_ENTRIES; i++) {
    keys[i] = i;
    values[i] = BigInt(i);
  }
  map.updateBatch(new Uint8Array(keys.buffer), new Uint8Array(values.buffer));
}
