// deno-lint-ignore-file no-console -- a benchmark prints its table.
/**
 * Map-access benchmarks: each case is timed from Deno and from a C program
 * doing the same work through libbpf (bench/ref.c) on the same object, in
 * alternating rounds of one run, and printed as a ratio, because this
 * machine is shared and noisy and only same-run ratios compare.
 *
 * Run: `deno task bench` (as root). Writes the table to bench/RESULTS.md.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fillBigHash } from "./_fill.ts";
import {
  type BpfMap,
  type BpfObject,
  openObject,
  possibleCpuCount,
  RingBufferReader,
  SeqlockReader,
} from "../mod.ts";
import { runProgramTest } from "../ffi/_test_run.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OBJECT = `${ROOT}bench/bench_maps.bpf.o`;
const SEQLOCK_OBJECT = `${ROOT}tests/fixtures/seqlock.bpf.o`;
const REF_SOURCE = `${ROOT}bench/ref.c`;
const REF_BINARY = `${ROOT}.tools/bench_ref`;
const RESULTS = `${ROOT}bench/RESULTS.md`;

const KEYS = 1024;
const BIG_ARRAY_ENTRIES = 1 << 20;

interface Case {
  /** The case of the C reference to run. */
  name: string;
  /** The row's name, when several rows share one C case. */
  label?: string;
  /** The description of one operation, for the table. */
  unit: string;
  /** The target ratio Deno/C, or undefined when the case only informs. */
  target: number;
  iterations: number;
  prepare(object: BpfObject): () => void;
}

function u32Keys(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => new Uint8Array(new Uint32Array([i]).buffer));
}

function fillU64(map: BpfMap, count: number): void {
  const keys = u32Keys(count);
  for (let i = 0; i < count; i++) {
    map.update(keys[i]!, new Uint8Array(new BigUint64Array([BigInt(i)]).buffer));
  }
}

let sink = 0;

/** A typed u32 -> u64 lookup of keys 0..KEYS-1 in the filled map `mapName`. */
function typedLookupCase(name: string, mapName: string, typeName: string): Case {
  return {
    name,
    unit: `one typed lookup, ${typeName} u32 -> u64`,
    target: 1.15,
    iterations: 200_000,
    prepare(object) {
      const map = object.map(mapName);
      fillU64(map, KEYS);
      const typed = map.typed<number, bigint>();
      const iterations = this.iterations;
      return () => {
        let found = 0;
        for (let i = 0; i < iterations; i++) if (typed.get(i & (KEYS - 1)) !== undefined) found++;
        sink += found;
      };
    },
  };
}

const CASES: Case[] = [
  typedLookupCase("lookup_array", "array_u64", "ARRAY"),
  {
    name: "lookup_array",
    label: "lookup_array (raw)",
    unit: "one lookupInto() into a reused buffer, no decoding",
    target: 1.15,
    iterations: 200_000,
    prepare(object) {
      const map = object.map("array_u64");
      const keys = u32Keys(KEYS);
      const value = new Uint8Array(8);
      const iterations = this.iterations;
      return () => {
        let found = 0;
        for (let i = 0; i < iterations; i++) {
          if (map.lookupInto(keys[i & (KEYS - 1)]!, value)) found++;
        }
        sink += found;
      };
    },
  },
  typedLookupCase("lookup_hash", "hash_u64", "HASH"),
  {
    name: "lookup_percpu",
    unit: "one key, all CPUs, PERCPU_ARRAY, typed",
    target: 1.3,
    iterations: 200_000,
    prepare(object) {
      const typed = object.map("percpu_u64").typed<number, bigint>();
      const iterations = this.iterations;
      return () => {
        let found = 0;
        for (let i = 0; i < iterations; i++) if (typed.getPerCpu(i & 15) !== undefined) found++;
        sink += found;
      };
    },
  },
  {
    name: "lookup_lock",
    unit: "one BPF_F_LOCK lookup (taken by default), typed",
    target: 1.2,
    iterations: 200_000,
    prepare(object) {
      const typed = object.map("locked").typed<number, { a: bigint; b: bigint }>();
      typed.set(0, { a: 1n, b: 1n } as never);
      const iterations = this.iterations;
      return () => {
        let found = 0;
        for (let i = 0; i < iterations; i++) if (typed.get(0) !== undefined) found++;
        sink += found;
      };
    },
  },
  {
    name: "dump_hash",
    unit: "batch dump of 1,000,000 entries (u32 -> u64), 4096 per call",
    target: 1.3,
    iterations: 1,
    prepare(object) {
      const map = object.map("big_hash");
      fillBigHash(map);
      return () => {
        for (let i = 0; i < this.iterations; i++) sink += map.dump({ batchSize: 4096 }).count;
      };
    },
  },
  {
    name: "sum_array",
    unit: "sum of 1 Mi u64 (8 MiB) over mmap",
    target: 4,
    iterations: 200,
    prepare(object) {
      const memory = object.map("big_array").mmap({ writable: true });
      const values = new BigUint64Array(memory.buffer);
      for (let i = 0; i < BIG_ARRAY_ENTRIES; i++) values[i] = BigInt(i);
      return () => {
        for (let i = 0; i < this.iterations; i++) sink += Number(memory.sumUint64() & 1n);
      };
    },
  },
];

// The seqlock target compares two Deno reads of the same 64 payload bytes:
// a checked snapshot against a plain unchecked copy.
function compareSeqlock(rounds: number): string {
  const slotsPerCpu = 8;
  const opened = openObject(SEQLOCK_OBJECT);
  opened.map("slots").setMaxEntries(possibleCpuCount() * slotsPerCpu);
  using object = opened.load();
  const memory = object.map("slots").mmap();
  const reader = new SeqlockReader(memory, { slotsPerCpu });
  const target = new BigUint64Array(8);
  const words = new BigUint64Array(memory.unsafeBuffer);
  const payloadWord = (memory.valueStride - 64) / 8;
  const iterations = 2_000_000;

  const checked: number[] = [];
  const plain: number[] = [];
  for (let round = 0; round <= rounds; round++) {
    let start = performance.now();
    for (let i = 0; i < iterations; i++) sink += reader.readInto(i & 7, target) ?? 0;
    const checkedNs = ((performance.now() - start) * 1e6) / iterations;
    start = performance.now();
    for (let i = 0; i < iterations; i++) {
      const base = (i & 7) * (memory.valueStride / 8) + payloadWord;
      for (let word = 0; word < 8; word++) target[word] = words[base + word]!;
      sink += 1;
    }
    const plainNs = ((performance.now() - start) * 1e6) / iterations;
    if (round === 0) continue; // warm-up
    checked.push(checkedNs);
    plain.push(plainNs);
  }
  const ratio = median(checked) / median(plain);
  return `| seqlock_snapshot | 64-byte slot, checked snapshot vs plain copy (both Deno) | ${
    formatNs(median(checked))
  } | ${formatNs(median(plain))} (plain) | ${ratio.toFixed(2)}x | <= 3x (${
    ratio <= 3 ? "meets" : "misses"
  }) |`;
}

// Peak memory of a dump, measured in a process of its own (bench/_dump_memory.ts)
// so that the other cases' allocations do not hide it.
async function measureDumpMemory(): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${ROOT}bench/_dump_memory.ts`],
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error("The dump memory measurement failed");
  const { grown, dumped } = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    grown: number;
    dumped: number;
  };
  const ratio = grown / dumped;
  return `Dump memory: the peak resident set grew by ${
    (grown / 2 ** 20).toFixed(1)
  } MiB during a dump of ${(dumped / 2 ** 20).toFixed(1)} MiB of keys and values: ${
    ratio.toFixed(2)
  }x (target <= 2x, ${ratio <= 2 ? "meets" : "misses"}).`;
}

async function buildReference(): Promise<void> {
  const source = await Deno.stat(REF_SOURCE);
  const binary = await Deno.stat(REF_BINARY).catch(() => undefined);
  if (binary?.mtime && source.mtime && binary.mtime > source.mtime) return;
  await Deno.mkdir(`${ROOT}.tools`, { recursive: true });
  const args = ["-O3", "-march=native", "-Wall", "-o", REF_BINARY, REF_SOURCE, "-lbpf"];
  const result = await new Deno.Command("gcc", { args, stderr: "inherit" }).output();
  if (!result.success) throw new Error(`Failed to build the C reference: gcc ${args.join(" ")}`);
}

async function runReference(name: string, iterations: number): Promise<number> {
  const output = await new Deno.Command(REF_BINARY, {
    args: [OBJECT, name, String(iterations)],
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  const match = /^\S+ ([0-9.]+)$/.exec(text);
  if (!output.success || match === null) {
    throw new Error(`C reference failed for ${name}: "${text}"`);
  }
  return Number(match[1]);
}

function timeDeno(bench: Case, run: () => void): number {
  const start = performance.now();
  run();
  return ((performance.now() - start) * 1e6) / bench.iterations;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function formatNs(ns: number): string {
  return ns >= 1e6
    ? `${(ns / 1e6).toFixed(2)} ms`
    : ns >= 1e3
    ? `${(ns / 1e3).toFixed(2)} µs`
    : `${ns.toFixed(0)} ns`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "5" },
      "ring-buffer-only": { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  if (values["ring-buffer-only"]) {
    await writeRingBufferResults(await benchRingBuffer(rounds));
    return;
  }
  await buildReference();

  using object = openObject(OBJECT).load();
  const rows: string[] = [];
  const perElement: Record<string, number> = {};
  console.log(`${rounds} alternating rounds per case; medians; ratio = Deno / C\n`);

  for (const bench of CASES) {
    const run = bench.prepare(object);
    run(); // warm-up: JIT and page faults
    const deno: number[] = [];
    const c: number[] = [];
    for (let round = 0; round < rounds; round++) {
      c.push(await runReference(bench.name, bench.iterations));
      deno.push(timeDeno(bench, run));
    }
    const ratio = median(deno) / median(c);
    const verdict = ratio <= bench.target ? "meets" : "misses";
    perElement[bench.label ?? bench.name] = median(deno);
    const row = `| ${bench.label ?? bench.name} | ${bench.unit} | ${formatNs(median(deno))} | ${
      formatNs(median(c))
    } | ${ratio.toFixed(2)}x | <= ${bench.target}x (${verdict}) |`;
    rows.push(row);
    console.log(row);
  }

  const seqlock = compareSeqlock(rounds);
  console.log(seqlock);
  rows.push(seqlock);
  const memory = await measureDumpMemory();
  console.log(`\n${memory}`);

  const mmapPerElement = perElement["sum_array"]! / BIG_ARRAY_ENTRIES;
  const speedup = perElement["lookup_array"]! / mmapPerElement;
  const note = `Per element, the mmap read takes ${mmapPerElement.toFixed(2)} ns against ${
    perElement["lookup_array"]!.toFixed(0)
  } ns for a syscall lookup: ${speedup.toFixed(0)}x faster (target >= 50x).`;
  console.log(`\n${note}`);
  await writeResults(rows, `${note}\n\n${memory}`, rounds);
  await writeRingBufferResults(await benchRingBuffer(rounds));
  if (sink === Number.MIN_VALUE) console.log(sink);
}

async function writeResults(rows: string[], note: string, rounds: number): Promise<void> {
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1] ??
    "unknown CPU";
  const text = [
    "# Benchmark results",
    "",
    "The latest output of `deno task bench`, written by bench/run.ts. Each case runs in",
    `${rounds} alternating rounds of Deno and the C reference (bench/ref.c, gcc -O3 -march=native,`,
    "libbpf) on the same object; the figures are medians and the ratio is Deno / C.",
    "",
    `Machine: ${cpu}, ${navigator.hardwareConcurrency} CPUs, Linux ${Deno.osRelease()}, Deno ${Deno.version.deno}.`,
    `Run on ${new Date().toISOString().slice(0, 10)}.`,
    "",
    "## Map access",
    "",
    "| case | one operation | Deno | C | ratio | target |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    note,
    "",
  ].join("\n");
  // Keeps the section that bench/overhead/run.ts writes, which this run does not measure.
  const previous = await Deno.readTextFile(RESULTS).catch(() => "");
  const overhead = previous.indexOf("<!-- overhead:start -->");
  await Deno.writeTextFile(RESULTS, overhead < 0 ? text : `${text}\n${previous.slice(overhead)}`);
  // Formatted like the rest of the repository, so that `deno fmt --check` accepts the file.
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", RESULTS] }).output();
}

// ---------------------------------------------------------------------------
// Ring buffer: records consumed per second, 64-byte records from
// bench/ringbuf.bpf.c, RingBufferReader against libbpf's ring_buffer__consume
// and ring_buffer__poll (bench/ringbuf_ref.c) in alternating rounds.

const RING_OBJECT = `${ROOT}bench/ringbuf.bpf.o`;
const RING_REF_SOURCE = `${ROOT}bench/ringbuf_ref.c`;
const RING_REF_BINARY = `${ROOT}.tools/bench_ringbuf_ref`;
const RING_PRODUCER = new URL("../tests/_scripts/ring_producer.ts", import.meta.url);
const RING_BYTES = 1 << 20;
// The number of 64-byte records, each with an 8-byte header, that fit in the ring.
const RING_RECORDS = Math.floor(RING_BYTES / 72);
// Fills per drain measurement, and the length of one wake-up measurement.
const DRAIN_FILLS = 15;
const EPOLL_MS = 1000;

type RingForm = "batch" | "raw" | "iterator";
type RingMode = "drain" | "epoll";

interface RingCase {
  form: RingForm;
  mode: RingMode;
  label: string;
  /** The minimum ratio Deno / C of records per second. */
  target: number;
}

const RING_CASES: RingCase[] = [
  { form: "batch", mode: "drain", label: "batch callback, consumeAvailable()", target: 0.7 },
  { form: "raw", mode: "drain", label: "raw callback, consumeAvailableRaw()", target: 0.7 },
  { form: "iterator", mode: "drain", label: "async iterator, for await", target: 0.3 },
  { form: "batch", mode: "epoll", label: "batch callback, consume()", target: 0.7 },
  { form: "raw", mode: "epoll", label: "raw callback, consumeRaw()", target: 0.7 },
  { form: "iterator", mode: "epoll", label: "async iterator, for await", target: 0.3 },
];

const MODE_NAMES: Record<RingMode, string> = {
  drain: "drain a full ring",
  epoll: "epoll wake-ups",
};

let ringSum = 0;
const onRingRecord = (record: Uint8Array): void => {
  ringSum += record.byteLength + record[0]!;
};
const onRawRingRecord = (view: DataView, offset: number, length: number): void => {
  ringSum += length + view.getUint8(offset);
};

/** Runs the ring buffer cases and returns the section for bench/RESULTS.md. */
async function benchRingBuffer(rounds: number): Promise<string> {
  await buildRingReference();
  console.log(`\nRing buffer: ${rounds} alternating rounds per case; ratio = Deno / C records/s\n`);
  const rows: string[] = [];
  for (const bench of RING_CASES) {
    await measureRingDeno(bench); // warm-up: JIT and page faults
    const deno: number[] = [];
    const c: number[] = [];
    for (let round = 0; round < rounds; round++) {
      c.push(await runRingReference(bench.mode));
      deno.push(await measureRingDeno(bench));
    }
    const ratio = median(deno) / median(c);
    const row = `| ${bench.label} | ${MODE_NAMES[bench.mode]} | ${formatRate(median(deno))} | ${
      formatRate(median(c))
    } | ${ratio.toFixed(2)}x | >= ${bench.target}x (${
      ratio >= bench.target ? "meets" : "misses"
    }) |`;
    rows.push(row);
    console.log(row);
  }
  if (ringSum === Number.MIN_VALUE) console.log(ringSum);

  return [
    "## Ring buffer",
    "",
    `Records consumed per second, 64-byte records from bench/ringbuf.bpf.c in a ${
      RING_BYTES / 2 ** 20
    } MiB ring; medians of ${rounds} alternating rounds. The C reader is libbpf's (bench/ringbuf_ref.c).`,
    "",
    "- drain a full ring: BPF_PROG_TEST_RUN fills the ring, then one call drains it; only the drain",
    `  is timed (C: ring_buffer__consume; median of ${DRAIN_FILLS} fills). No wake-ups.`,
    "- epoll wake-ups: a producer thread (a Worker in Deno, a pthread in C) runs the program in a",
    `  loop for ${EPOLL_MS} ms while the reader waits on epoll when the ring is empty (C:`,
    "  ring_buffer__poll). The default adaptive wake-ups apply: the kernel wakes the reader only",
    "  when it had caught up. Producer and reader share the machine's 2 CPUs.",
    "",
    "| reader | wake-up mode | Deno | C | ratio | target |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    "Draining a full ring shows the cost per record. The raw callback creates no object per",
    "record. The other forms create one: a Uint8Array view costs about 20 ns in Deno 2.9, and",
    "the iterator's copies add a shared ArrayBuffer per 64 KiB and a promise per record.",
    "",
    "With epoll wake-ups the Deno reader reads more per second than libbpf's because it waits",
    "longer: a wait is a nonblocking FFI call, which took about 65 µs to return through Deno's",
    "thread pool here (measured with getppid), so records pile up and are read in large batches.",
    "The C reader catches up after a few records and goes back to epoll_wait, and the producer",
    "then pays for a kernel wake-up on its next commit. The price on the Deno side is latency:",
    "a record that arrives in an empty ring waits those tens of microseconds longer.",
    "The epoll figures of both readers vary several-fold from run to run on this shared 2-CPU",
    "machine (libbpf's from 0.4 to 4.3 M/s): compare their order, not their ratio.",
    "",
  ].join("\n");
}

/** Replaces the ring buffer section of bench/RESULTS.md, or appends it. */
async function writeRingBufferResults(section: string): Promise<void> {
  const text = await Deno.readTextFile(RESULTS).catch(() => "# Benchmark results\n");
  const start = text.indexOf("## Ring buffer");
  let before = text;
  let after = "";
  if (start >= 0) {
    // The section ends at the next heading or at the overhead benchmark's section.
    const ends = ["\n## ", "\n<!-- overhead:start -->"].map((mark) =>
      text.indexOf(mark, start + 1)
    );
    const next = Math.min(...ends.map((end) => end < 0 ? Infinity : end));
    before = text.slice(0, start);
    after = next === Infinity ? "" : text.slice(next + 1);
  } else if (text.includes("<!-- overhead:start -->")) {
    // A new ring buffer section goes before the overhead benchmark's section.
    const mark = text.indexOf("<!-- overhead:start -->");
    before = text.slice(0, mark);
    after = text.slice(mark);
  }
  await Deno.writeTextFile(RESULTS, `${before.trimEnd()}\n\n${section}\n${after}`);
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", RESULTS] }).output();
}

async function buildRingReference(): Promise<void> {
  const source = await Deno.stat(RING_REF_SOURCE);
  const binary = await Deno.stat(RING_REF_BINARY).catch(() => undefined);
  if (binary?.mtime && source.mtime && binary.mtime > source.mtime) return;
  await Deno.mkdir(`${ROOT}.tools`, { recursive: true });
  const args = [
    "-O3",
    "-march=native",
    "-Wall",
    "-o",
    RING_REF_BINARY,
    RING_REF_SOURCE,
    "-lbpf",
    "-lpthread",
  ];
  const result = await new Deno.Command("gcc", { args, stderr: "inherit" }).output();
  if (!result.success) throw new Error(`Failed to build the C reference: gcc ${args.join(" ")}`);
}

/** Runs the C reader once and returns its records per second. */
async function runRingReference(mode: RingMode): Promise<number> {
  const count = mode === "drain" ? DRAIN_FILLS : EPOLL_MS;
  const output = await new Deno.Command(RING_REF_BINARY, {
    args: [RING_OBJECT, String(RING_BYTES), mode, String(count)],
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  const match = /^\S+ ([0-9.]+)$/.exec(text);
  if (!output.success || match === null) {
    throw new Error(`C ring buffer reference failed for ${mode}: "${text}"`);
  }
  // drain prints nanoseconds per record, epoll records per second.
  return mode === "drain" ? 1e9 / Number(match[1]) : Number(match[1]);
}

/** Measures one Deno case on a freshly loaded object and returns its records per second. */
async function measureRingDeno(bench: RingCase): Promise<number> {
  const opened = openObject(RING_OBJECT);
  opened.map("ring").setMaxEntries(RING_BYTES);
  using object = opened.load();
  using reader = new RingBufferReader(object.map("ring"));
  return bench.mode === "drain"
    ? await drainRing(object, reader, bench.form)
    : await streamRing(object, reader, bench.form);
}

async function drainRing(
  object: BpfObject,
  reader: RingBufferReader,
  form: RingForm,
): Promise<number> {
  const programFd = object.program("produce").fd;
  const packet = new Uint8Array(64);
  const nsPerRecord: number[] = [];
  for (let fill = 0; fill < DRAIN_FILLS; fill++) {
    runProgramTest(programFd, { data: packet, repeat: RING_BYTES / 64 });
    const start = performance.now();
    const records = await readRing(reader, form, RING_RECORDS);
    nsPerRecord.push(((performance.now() - start) * 1e6) / records);
  }
  return 1e9 / median(nsPerRecord);
}

async function streamRing(
  object: BpfObject,
  reader: RingBufferReader,
  form: RingForm,
): Promise<number> {
  using bss = object.globals(".bss");
  bss.set("stop", 0n);
  const worker = new Worker(RING_PRODUCER, { type: "module" });
  try {
    const done = new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new TypeError(`The producer Worker failed: ${event.message}`));
      };
    });
    worker.postMessage({
      programFd: object.program("produce").fd,
      repeat: 4096,
      maxTestRuns: Number.MAX_SAFE_INTEGER,
    });
    const start = performance.now();
    const records = await readRingFor(reader, form, start + EPOLL_MS);
    const seconds = (performance.now() - start) / 1000;
    bss.set("stop", 1n);
    await done;
    return records / seconds;
  } finally {
    worker.terminate();
  }
}

/** Reads `count` available records in the given form and returns how many it read. */
async function readRing(reader: RingBufferReader, form: RingForm, count: number): Promise<number> {
  if (form === "batch") return reader.consumeAvailable(onRingRecord);
  if (form === "raw") return reader.consumeAvailableRaw(onRawRingRecord);
  let records = 0;
  for await (const record of reader) {
    ringSum += record.byteLength + record[0]!;
    if (++records === count) break;
  }
  return records;
}

/** Reads records as they arrive until `deadline` (a performance.now() time). */
async function readRingFor(
  reader: RingBufferReader,
  form: RingForm,
  deadline: number,
): Promise<number> {
  let records = 0;
  if (form === "iterator") {
    for await (const record of reader) {
      ringSum += record.byteLength + record[0]!;
      // The clock is read every 1024th record, to keep it out of the cost per record.
      if ((++records & 1023) === 0 && performance.now() >= deadline) break;
    }
    return records;
  }
  while (performance.now() < deadline) {
    records += form === "batch"
      ? await reader.consume(onRingRecord)
      : await reader.consumeRaw(onRawRingRecord);
  }
  return records;
}

function formatRate(perSecond: number): string {
  return `${(perSecond / 1e6).toFixed(2)} M/s`;
}

await main();
