/**
 * Helpers for the values of per-CPU maps, as {@linkcode BpfMap.lookupPerCpu}
 * returns them: one value per possible CPU.
 *
 * @module
 */

/**
 * Reads the u64 at byte `offset` of each CPU's value, in little-endian order
 * (the byte order of x86_64 and arm64).
 *
 * @param values one value per CPU, as {@linkcode BpfMap.lookupPerCpu} returns them
 * @param offset the counter's byte offset in a value
 * @returns one number per CPU
 * @throws {RangeError} when the u64 at `offset` does not fit in a value
 *
 * @example
 * ```ts
 * import { readUint64PerCpu } from "./per_cpu.ts";
 *
 * const values = [new Uint8Array([5, 0, 0, 0, 0, 0, 0, 0]), new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0])];
 * console.log(readUint64PerCpu(values)); // [5n, 7n]
 * ```
 */
export function readUint64PerCpu(values: readonly Uint8Array[], offset = 0): bigint[] {
  return values.map((value, cpu) => {
    if (!Number.isInteger(offset) || offset < 0 || offset + 8 > value.byteLength) {
      throw new RangeError(
        `Cannot read a u64 at offset ${offset} of CPU ${cpu}'s value: it is ${value.byteLength} bytes`,
      );
    }
    return new DataView(value.buffer, value.byteOffset, value.byteLength)
      .getBigUint64(offset, true);
  });
}

/**
 * Returns the sum of per-CPU u64 values. The sum is exact: it is not wrapped
 * to 64 bits.
 *
 * @param values one decoded value per CPU
 * @returns the total, `0n` for an empty list
 *
 * @example Total a per-CPU counter
 * ```ts ignore
 * import { openObject, readUint64PerCpu, sumPerCpu } from "../mod.ts";
 *
 * using object = openObject("./counters.bpf.o").load();
 * const values = object.map("packets").lookupPerCpu(new Uint8Array(4));
 * if (values !== undefined) console.log(sumPerCpu(readUint64PerCpu(values)));
 * ```
 */
export function sumPerCpu(values: readonly bigint[]): bigint {
  let total = 0n;
  for (const value of values) total += value;
  return total;
}

/**
 * Returns the largest of per-CPU u64 values, such as the highest per-CPU
 * watermark.
 *
 * @param values one decoded value per CPU
 * @returns the maximum
 * @throws {RangeError} when `values` is empty
 *
 * @example
 * ```ts
 * import { maxPerCpu } from "./per_cpu.ts";
 *
 * console.log(maxPerCpu([3n, 11n, 7n])); // 11n
 * ```
 */
export function maxPerCpu(values: readonly bigint[]): bigint {
  const first = values[0];
  if (first === undefined) throw new RangeError("Cannot take the maximum of no per-CPU values");
  let max = first;
  for (const value of values) if (value > max) max = value;
  return max;
}
