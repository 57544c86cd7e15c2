// Summing u64 values at memory bandwidth. A JavaScript loop over a
// BigUint64Array allocates a BigInt per element, and two Uint32Array halves
// still cost several times a vectorised C loop. So the values are copied in
// cache-sized chunks into WebAssembly memory and summed there with 128-bit
// SIMD adds. The sum wraps modulo 2^64, like a C loop over uint64_t.

// The module, assembled by hand (WebAssembly 2.0 with fixed-width SIMD):
//   (func (export "sum") (param $ptr i32) (param $count i32) (result i64)
//     (local $a v128) (local $b v128) (local $end i32)
//     $end = $ptr + $count * 8          ;; $count must be a multiple of 4
//     loop while $ptr < $end:
//       $a = i64x2.add($a, v128.load($ptr))
//       $b = i64x2.add($b, v128.load($ptr + 16))
//       $ptr += 32
//     $a = i64x2.add($a, $b)
//     return extract_lane(0, $a) + extract_lane(1, $a))
//   (memory (export "memory") 5)       ;; 5 pages of 64 KiB
const MODULE_BYTES = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00, // magic, version 1
  0x01,
  0x07,
  0x01,
  0x60,
  0x02,
  0x7f,
  0x7f,
  0x01,
  0x7e, // type: (i32, i32) -> i64
  0x03,
  0x02,
  0x01,
  0x00, // function 0 has type 0
  0x05,
  0x03,
  0x01,
  0x00,
  0x05, // memory: min 5 pages
  0x07,
  0x10,
  0x02, // exports: 2
  0x03,
  0x73,
  0x75,
  0x6d,
  0x00,
  0x00, // "sum" function 0
  0x06,
  0x6d,
  0x65,
  0x6d,
  0x6f,
  0x72,
  0x79,
  0x02,
  0x00, // "memory" memory 0
  0x0a,
  0x54,
  0x01,
  0x52, // code: 1 body of 82 bytes
  0x02,
  0x02,
  0x7b,
  0x01,
  0x7f, // locals: 2 x v128, 1 x i32
  0x20,
  0x00,
  0x20,
  0x01,
  0x41,
  0x03,
  0x74,
  0x6a,
  0x21,
  0x04, // $end = $ptr + ($count << 3)
  0x02,
  0x40,
  0x03,
  0x40, // block, loop
  0x20,
  0x00,
  0x20,
  0x04,
  0x4f,
  0x0d,
  0x01, // br_if 1 ($ptr >= $end)
  0x20,
  0x02,
  0x20,
  0x00,
  0xfd,
  0x00,
  0x03,
  0x00,
  0xfd,
  0xce,
  0x01,
  0x21,
  0x02, // $a += load($ptr)
  0x20,
  0x03,
  0x20,
  0x00,
  0xfd,
  0x00,
  0x03,
  0x10,
  0xfd,
  0xce,
  0x01,
  0x21,
  0x03, // $b += load($ptr + 16)
  0x20,
  0x00,
  0x41,
  0x20,
  0x6a,
  0x21,
  0x00, // $ptr += 32
  0x0c,
  0x00,
  0x0b,
  0x0b, // br 0, end loop, end block
  0x20,
  0x02,
  0x20,
  0x03,
  0xfd,
  0xce,
  0x01,
  0x22,
  0x02, // $a += $b (local.tee)
  0xfd,
  0x1d,
  0x00,
  0x20,
  0x02,
  0xfd,
  0x1d,
  0x01,
  0x7c, // lane 0 + lane 1
  0x0b, // end function
]);

// 256 KiB chunks stay in the L2 cache between the copy and the sum.
const CHUNK_BYTES = 256 * 1024;

interface SumModule {
  sum(pointer: number, count: number): bigint;
  bytes: Uint8Array;
}

let module: SumModule | undefined;

function instantiate(): SumModule {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(MODULE_BYTES));
  const exports = instance.exports as {
    sum: (pointer: number, count: number) => bigint;
    memory: WebAssembly.Memory;
  };
  return { sum: exports.sum, bytes: new Uint8Array(exports.memory.buffer, 0, CHUNK_BYTES) };
}

/**
 * Returns the sum, modulo 2^64, of `count` little-endian u64 values that start
 * at `byteOffset` of `buffer`. The offset must be a multiple of 8.
 */
export function sumUint64(buffer: ArrayBuffer, byteOffset: number, count: number): bigint {
  module ??= instantiate();
  const { sum, bytes } = module;
  let total = 0n;
  let offset = byteOffset;
  let remaining = count;

  while (remaining >= 4) {
    const values = Math.min(remaining - (remaining % 4), CHUNK_BYTES / 8);
    bytes.set(new Uint8Array(buffer, offset, values * 8));
    total += sum(0, values);
    offset += values * 8;
    remaining -= values;
  }
  if (remaining > 0) {
    const tail = new BigUint64Array(buffer.slice(offset, offset + remaining * 8));
    for (const value of tail) total += value;
  }
  return BigInt.asUintN(64, total);
}
