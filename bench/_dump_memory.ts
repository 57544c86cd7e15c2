// deno-lint-ignore-file no-console -- a benchmark helper prints its figures.
// Measures the peak memory of one batch dump in a process of its own: the
// growth of the resident set's high-water mark (VmHWM) across the dump of a
// filled 1,000,000-entry hash, against the bytes of keys and values dumped.
// Run by bench/run.ts, which prints the result.

import { openObject } from "../mod.ts";
import { fillBigHash } from "./_fill.ts";

function highWaterMark(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

using object = openObject(new URL("./bench_maps.bpf.o", import.meta.url)).load();
const map = object.map("big_hash");
fillBigHash(map);

const before = highWaterMark();
const dump = map.dump({ batchSize: 4096 });
const after = highWaterMark();
console.log(
  JSON.stringify({ grown: after - before, dumped: dump.count * (map.keySize + map.valueSize) }),
);
