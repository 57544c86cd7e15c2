import assert from "node:assert/strict";
import {
  BpfError,
  type BpfObject,
  ClosedError,
  decodedRecords,
  openObject,
  RingBufferReader,
  struct,
  u32,
  u64,
} from "../mod.ts";
import { runProgramTest } from "../ffi/_test_run.ts";
import { systemPageSize } from "../ffi/libc.ts";
import { kernelTest, repoPath, run } from "./_helpers.ts";
import type { ProducerDone, ProducerStart } from "./_scripts/ring_producer.ts";

const FIXTURE = repoPath("tests/fixtures/ringbuf.bpf.o");
const PRODUCER = new URL("./_scripts/ring_producer.ts", import.meta.url);
const CLOSE_SCRIPT = repoPath("tests/_scripts/ring_close.ts");

// The ring is 4 pages: 16 KiB with 4 KiB pages, about 227 full records.
const RING_PAGES = 4;
// Constants of tests/fixtures/ringbuf.bpf.c.
const FULL_SIZE = 64;
const SHORT_SIZE = 20;
const PAYLOAD_WORDS = 6;
const PATTERN = 0x9e3779b97f4a7c15n;
const MASK_64 = (1n << 64n) - 1n;
// A record takes its size plus an 8-byte header, rounded up to 8.
const FULL_STRIDE = FULL_SIZE + 8;
const SHORT_STRIDE = 32;

// The bound for "iteration ends promptly after close": wide, because this
// checks that close wakes the wait, not how fast it does.
const END_BOUND_MS = 100;

interface FixtureConfig {
  discardEvery?: number;
  mixedSizes?: boolean;
  target?: number;
  pause?: number;
}

function loadFixture(config: FixtureConfig = {}): BpfObject {
  const opened = openObject(FIXTURE);
  opened.map("events").setMaxEntries(RING_PAGES * systemPageSize());
  const object = opened.load();
  using bss = object.globals(".bss");
  bss.set("discard_every", config.discardEvery ?? 0);
  bss.set("mixed_sizes", config.mixedSizes ? 1 : 0);
  bss.set("target", BigInt(config.target ?? 0));
  bss.set("pause", config.pause ?? 0);
  return object;
}

/** Runs the producer `count` times in this thread. */
function produce(object: BpfObject, count: number): void {
  runProgramTest(object.program("produce").fd, { data: new Uint8Array(64), repeat: count });
}

function counter(object: BpfObject, name: string): number {
  using bss = object.globals(".bss");
  return Number(bss.get<bigint>(name));
}

interface ParsedRecord {
  sequence: number;
  cpu: number;
  /** Why the content does not match its sequence number, or undefined. */
  problem: string | undefined;
}

/** Decodes a fixture record and checks its content against its sequence number. */
function parseRecord(record: Uint8Array): ParsedRecord {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  const sequence = view.getBigUint64(0, true);
  const cpu = view.getUint32(8, true);
  const size = view.getUint32(12, true);
  const parsed = { sequence: Number(sequence), cpu, problem: undefined as string | undefined };
  if (size !== record.byteLength) {
    parsed.problem = `size field ${size}, record length ${record.byteLength}`;
  } else if (size === FULL_SIZE) {
    for (let i = 0; i < PAYLOAD_WORDS; i++) {
      const expected = ((sequence + BigInt(i)) * PATTERN) & MASK_64;
      if (view.getBigUint64(16 + 8 * i, true) !== expected) parsed.problem = `word ${i} differs`;
    }
  } else if (size === SHORT_SIZE) {
    if (view.getUint32(16, true) !== Number((sequence * PATTERN) & 0xffffffffn)) {
      parsed.problem = "check word differs";
    }
  } else {
    parsed.problem = `unexpected size ${size}`;
  }
  return parsed;
}

/**
 * Checks the records of one run: each intact, and per CPU the sequence
 * numbers 0, 1, 2, ... in order, without the discarded ones. Returns the
 * problems found, at most 5.
 */
function checkSequences(records: readonly ParsedRecord[], discardEvery = 0): string[] {
  const problems: string[] = [];
  const next = new Map<number, number>();
  const skipDiscarded = (sequence: number): number =>
    discardEvery > 0 && sequence % discardEvery === discardEvery - 1 ? sequence + 1 : sequence;
  for (const record of records) {
    const expected = skipDiscarded(next.get(record.cpu) ?? 0);
    if (record.problem !== undefined) {
      problems.push(`sequence ${record.sequence}: ${record.problem}`);
    }
    if (record.sequence !== expected) {
      problems.push(`CPU ${record.cpu}: sequence ${record.sequence}, expected ${expected}`);
    }
    next.set(record.cpu, record.sequence + 1);
  }
  return problems.slice(0, 5);
}

function collectAvailable(reader: RingBufferReader, into: ParsedRecord[]): number {
  return reader.consumeAvailable((record) => into.push(parseRecord(record)));
}

Deno.test({
  name: "RingBufferReader rejects other map types",
  ...kernelTest(),
  fn() {
    using object = loadFixture();
    assert.throws(() => new RingBufferReader(object.map("sequences")), TypeError);
    assert.throws(() => object.map("events_lost").ringBuffer(), /PERCPU_ARRAY map/);
  },
});

Deno.test({
  name: "RingBufferReader rejects invalid options",
  ...kernelTest(),
  fn() {
    using object = loadFixture();
    const events = object.map("events");
    assert.throws(() => new RingBufferReader(events, { pollTimeoutMs: 0 }), RangeError);
    assert.throws(() => new RingBufferReader(events, { pollTimeoutMs: 1.5 }), RangeError);
    assert.throws(() => new RingBufferReader(events, { lost: events }), TypeError);
    const aborted = AbortSignal.abort(new Error("stopped before start"));
    assert.throws(() => new RingBufferReader(events, { signal: aborted }), /stopped before start/);
    // No failed construction keeps the map busy.
    using reader = new RingBufferReader(events);
    assert.equal(reader.closed, false);
  },
});

Deno.test({
  name: "RingBufferReader rejects a second reader of one map",
  ...kernelTest(),
  fn() {
    using object = loadFixture();
    const first = new RingBufferReader(object.map("events"));
    assert.throws(
      () => new RingBufferReader(object.map("events")),
      (error) => error instanceof BpfError && error.code === "EBUSY",
    );
    first.close();
    using second = new RingBufferReader(object.map("events"));
    assert.equal(second.closed, false);
  },
});

Deno.test({
  name: "RingBufferReader reads every record across wrap-arounds",
  ...kernelTest(),
  fn() {
    using object = loadFixture({ mixedSizes: true });
    using reader = new RingBufferReader(object.map("events"), { lost: object.map("events_lost") });
    // 150 records take at most 150 * 72 bytes: they always fit in the 16 KiB ring.
    const rounds = 300;
    const perRound = 150;
    const records: ParsedRecord[] = [];
    let bytes = 0;
    for (let round = 0; round < rounds; round++) {
      produce(object, perRound);
      assert.equal(collectAvailable(reader, records), perRound, `round ${round}`);
    }

    assert.equal(records.length, rounds * perRound);
    assert.deepEqual(checkSequences(records), []);
    let ringBytes = 0;
    for (const record of records) {
      const short = record.sequence % 3 === 2;
      bytes += short ? SHORT_SIZE : FULL_SIZE;
      ringBytes += short ? SHORT_STRIDE : FULL_STRIDE;
    }
    const stats = reader.stats;
    assert.equal(stats.records, rounds * perRound);
    assert.equal(stats.bytes, bytes);
    assert.equal(stats.discarded, 0);
    assert.equal(stats.lost, 0);
    assert.equal(counter(object, "failed"), 0);
    // The records passed through the ring many times.
    assert.ok(ringBytes / reader.byteLength > 100, `${ringBytes} bytes passed through the ring`);
  },
});

Deno.test({
  name: "RingBufferReader reads a concurrent producer",
  ...kernelTest(),
  async fn() {
    const total = 20_000;
    using object = loadFixture({ target: total });
    await using reader = new RingBufferReader(object.map("events"), {
      lost: object.map("events_lost"),
      // Ends the loop below if records go missing, so the test fails instead of hanging.
      signal: AbortSignal.timeout(20_000),
    });
    const { done, worker } = startProducer(object, 64);
    try {
      const records: ParsedRecord[] = [];
      for await (const record of reader) {
        records.push(parseRecord(record));
        if (records.length === total) break;
      }
      const result = await done;

      assert.deepEqual(result.ok ? "ok" : result.message, "ok");
      assert.equal(records.length, total);
      assert.deepEqual(checkSequences(records), []);
      assert.equal(counter(object, "reserved"), total);
      assert.equal(reader.stats.records, total);
      assert.equal(reader.stats.lost, counter(object, "failed"));
      assert.equal(reader.consumeAvailable(() => {}), 0);
    } finally {
      worker.terminate();
    }
  },
});

/** Starts the producer Worker, which runs until the fixture's target is reserved. */
function startProducer(object: BpfObject, repeat: number): {
  done: Promise<ProducerDone>;
  worker: Worker;
} {
  const worker = new Worker(PRODUCER, { type: "module" });
  const done = new Promise<ProducerDone>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<ProducerDone>) => resolve(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      reject(new TypeError(`The producer Worker failed: ${event.message}`));
    };
  });
  const start: ProducerStart = {
    programFd: object.program("produce").fd,
    repeat,
    maxTestRuns: 1_000_000,
  };
  worker.postMessage(start);
  return { done, worker };
}

Deno.test({
  name: "RingBufferReader stops at records being written",
  ...kernelTest(),
  async fn() {
    const total = 2000;
    // 2000 bpf_loop() iterations between reservation and commit, while this
    // thread polls without waiting: it meets busy records often (2552 times
    // in one such run on a 2-CPU VM).
    using object = loadFixture({ target: total, pause: 2000 });
    using reader = new RingBufferReader(object.map("events"));
    const { done, worker } = startProducer(object, 1);
    try {
      const records: ParsedRecord[] = [];
      const deadline = performance.now() + 10_000;
      while (records.length < total && performance.now() < deadline) {
        collectAvailable(reader, records);
      }
      const result = await done;

      assert.deepEqual(result.ok ? "ok" : result.message, "ok");
      assert.equal(records.length, total);
      assert.deepEqual(checkSequences(records), []);
    } finally {
      worker.terminate();
    }
  },
});

Deno.test({
  name: "RingBufferReader skips discarded records",
  ...kernelTest(),
  fn() {
    const discardEvery = 4;
    using object = loadFixture({ discardEvery });
    using reader = new RingBufferReader(object.map("events"));
    const records: ParsedRecord[] = [];
    for (let round = 0; round < 10; round++) {
      produce(object, 100);
      collectAvailable(reader, records);
    }

    const discarded = counter(object, "discarded");
    assert.ok(discarded >= 200, `only ${discarded} of 1000 records were discarded`);
    assert.equal(reader.stats.discarded, discarded);
    assert.equal(records.length, 1000 - discarded);
    assert.equal(reader.stats.records, records.length);
    assert.ok(records.every((record) => record.sequence % discardEvery !== discardEvery - 1));
    assert.deepEqual(checkSequences(records, discardEvery), []);
  },
});

Deno.test({
  name: "RingBufferReader counts lost records of a full ring",
  ...kernelTest(),
  fn() {
    using object = loadFixture();
    using reader = new RingBufferReader(object.map("events"), { lost: object.map("events_lost") });
    produce(object, 1000);

    const failed = counter(object, "failed");
    const reserved = counter(object, "reserved");
    const fits = Math.floor(reader.byteLength / FULL_STRIDE);
    assert.equal(reserved, fits);
    assert.equal(failed, 1000 - fits);
    assert.equal(reader.stats.lost, failed);

    const records: ParsedRecord[] = [];
    assert.equal(collectAvailable(reader, records), reserved);
    assert.deepEqual(checkSequences(records), []);
    // Space is free again: the next records are reserved and read.
    produce(object, 10);
    assert.equal(collectAvailable(reader, records), 10);
    assert.equal(reader.stats.lost, failed);
  },
});

Deno.test({
  name: "RingBufferReader reports lost records from a function",
  ...kernelTest(),
  fn() {
    using object = loadFixture();
    let count = 5n;
    using reader = new RingBufferReader(object.map("events"), { lost: () => count });
    count = 12n;
    // Counted from the reader's creation, like the other stats.
    assert.equal(reader.stats.lost, 7);
  },
});

Deno.test({
  name: "RingBufferReader read() waits for a record",
  ...kernelTest(),
  async fn() {
    using object = loadFixture();
    using reader = new RingBufferReader(object.map("events"));
    const pending = reader.read();
    setTimeout(() => produce(object, 3), 20);
    const first = await pending;

    assert.ok(first !== undefined);
    assert.equal(parseRecord(first).sequence, 0);
    assert.equal(parseRecord((await reader.read())!).sequence, 1);
    assert.equal(parseRecord((await reader.read())!).sequence, 2);
    assert.ok(reader.stats.wakeups >= 1);
  },
});

Deno.test({
  name: "RingBufferReader copies and views mix in order",
  ...kernelTest(),
  async fn() {
    using object = loadFixture();
    using reader = new RingBufferReader(object.map("events"));
    produce(object, 6);
    // read() takes every available record from the ring and returns the first.
    const first = await reader.read();
    const rest: number[] = [];
    await reader.consume((record) => rest.push(parseRecord(record).sequence));

    assert.equal(parseRecord(first!).sequence, 0);
    assert.deepEqual(rest, [1, 2, 3, 4, 5]);
    assert.equal(reader.stats.records, 6);
    assert.equal(reader.stats.bytes, 6 * FULL_SIZE);
  },
});

Deno.test({
  name: "RingBufferReader raw callbacks see queued copies",
  ...kernelTest(),
  async fn() {
    using object = loadFixture();
    using reader = new RingBufferReader(object.map("events"));
    produce(object, 4);
    // read() copies all four records; the other three wait in its queue.
    const first = await reader.read();
    const sequences: bigint[] = [];
    const collect = (view: DataView, offset: number, length: number) => {
      assert.equal(length, FULL_SIZE);
      sequences.push(view.getBigUint64(offset, true));
    };
    reader.consumeAvailableRaw(collect);
    produce(object, 2);
    await reader.consumeRaw(collect);

    assert.equal(parseRecord(first!).sequence, 0);
    assert.deepEqual(sequences, [1n, 2n, 3n, 4n, 5n]);
    assert.equal(reader.stats.records, 6);
    assert.equal(reader.stats.bytes, 6 * FULL_SIZE);
  },
});

Deno.test({
  name: "RingBufferReader consume() keeps records after a throw",
  ...kernelTest(),
  fn() {
    using object = loadFixture();
    using reader = new RingBufferReader(object.map("events"));
    produce(object, 4);
    const seen: number[] = [];
    assert.throws(() =>
      reader.consumeAvailable((record) => {
        seen.push(parseRecord(record).sequence);
        if (seen.length === 2) throw new RangeError("stop");
      }), RangeError);
    reader.consumeAvailable((record) => seen.push(parseRecord(record).sequence));

    assert.deepEqual(seen, [0, 1, 2, 3]);
  },
});

Deno.test({
  name: "RingBufferReader decodes records by BTF name",
  ...kernelTest(),
  async fn() {
    using object = loadFixture();
    using reader = new RingBufferReader(object.map("events"));
    produce(object, 3);
    const sequences: bigint[] = [];
    for await (
      const record of reader.decode<{ sequence: bigint; words: bigint[] }>("struct test_record")
    ) {
      sequences.push(record.sequence);
      assert.equal(record.words.length, PAYLOAD_WORDS);
      if (sequences.length === 3) break;
    }

    assert.deepEqual(sequences, [0n, 1n, 2n]);
    assert.throws(() => reader.decode("struct missing"), TypeError);
  },
});

Deno.test({
  name: "decodedRecords() rejects records shorter than the layout",
  ...kernelTest(),
  async fn() {
    using object = loadFixture({ mixedSizes: true });
    using reader = new RingBufferReader(object.map("events"));
    produce(object, 3);
    const head = struct({ sequence: u64, cpu: u32, size: u32, first: u64 });
    const iterator = decodedRecords(reader, head)[Symbol.asyncIterator]();

    assert.equal((await iterator.next()).value?.sequence, 0n);
    assert.equal((await iterator.next()).value?.sequence, 1n);
    // Record 2 is a 20-byte short record.
    await assert.rejects(iterator.next(), RangeError);
    produce(object, 1);
    assert.equal((await iterator.next()).value?.sequence, 3n);
  },
});

Deno.test({
  name: "RingBufferReader readable streams records",
  ...kernelTest(),
  async fn() {
    using object = loadFixture();
    const reader = new RingBufferReader(object.map("events"));
    produce(object, 2);
    const streamReader = reader.readable.getReader();

    assert.equal(parseRecord((await streamReader.read()).value!).sequence, 0);
    assert.equal(parseRecord((await streamReader.read()).value!).sequence, 1);
    await streamReader.cancel();
    assert.equal(reader.closed, true);
  },
});

Deno.test({
  name: "RingBufferReader ends a waiting iteration on close",
  ...kernelTest(),
  async fn() {
    using object = loadFixture();
    // A long poll timeout: only the close can end the wait in time.
    const reader = new RingBufferReader(object.map("events"), { pollTimeoutMs: 60_000 });
    let closedAt = 0;
    setTimeout(() => {
      closedAt = performance.now();
      reader.close();
    }, 50);
    let records = 0;
    for await (const _record of reader) records++;
    const endedAfter = performance.now() - closedAt;

    assert.equal(records, 0);
    assert.ok(closedAt > 0);
    assert.ok(endedAfter < END_BOUND_MS, `iteration ended ${endedAfter} ms after close`);
    assert.equal(await reader.read(), undefined);
    assert.equal(await reader.consume(() => {}), 0);
  },
});

Deno.test({
  name: "RingBufferReader ends a waiting iteration on abort",
  ...kernelTest(),
  async fn() {
    using object = loadFixture();
    const controller = new AbortController();
    const reader = new RingBufferReader(object.map("events"), {
      pollTimeoutMs: 60_000,
      signal: controller.signal,
    });
    let abortedAt = 0;
    setTimeout(() => {
      abortedAt = performance.now();
      controller.abort();
    }, 50);
    const result = await reader[Symbol.asyncIterator]().next();
    const endedAfter = performance.now() - abortedAt;

    assert.equal(result.done, true);
    assert.ok(endedAfter < END_BOUND_MS, `iteration ended ${endedAfter} ms after abort`);
    assert.equal(reader.closed, true);
  },
});

for (const mode of ["close", "abort"]) {
  Deno.test({
    name: `RingBufferReader lets the process exit after ${mode}`,
    ...kernelTest(),
    async fn() {
      const result = await run(Deno.execPath(), ["run", "--allow-all", CLOSE_SCRIPT, mode]);

      assert.equal(result.stderr, "");
      assert.equal(result.code, 0);
      assert.equal(result.stdout.trim(), "ended after 0 records");
    },
  });
}

Deno.test({
  name: "RingBufferReader after close",
  ...kernelTest(),
  async fn() {
    using object = loadFixture();
    const reader = new RingBufferReader(object.map("events"));
    produce(object, 2);
    let kept: Uint8Array | undefined;
    reader.consumeAvailable((record) => kept = record);
    produce(object, 2);
    reader.close();
    reader.close();

    assert.equal(reader.closed, true);
    assert.equal(kept?.byteLength, 0);
    assert.equal(kept?.[0], undefined);
    assert.throws(() => reader.consumeAvailable(() => {}), ClosedError);
    assert.throws(() => reader.consumeAvailableRaw(() => {}), ClosedError);
    assert.equal(await reader.consumeRaw(() => {}), 0);
    assert.equal(await reader.read(), undefined);
    assert.equal(await reader[Symbol.asyncIterator]().next().then((r) => r.done), true);
    assert.throws(() => reader.decode("struct test_record"), ClosedError);
  },
});

Deno.test({
  name: "RingBufferReader closes with its object",
  ...kernelTest(),
  async fn() {
    const object = loadFixture();
    const reader = new RingBufferReader(object.map("events"), { pollTimeoutMs: 60_000 });
    const pending = reader.read();
    object.close();

    assert.equal(reader.closed, true);
    assert.equal(await pending, undefined);
    assert.throws(() => reader.consumeAvailable(() => {}), ClosedError);
    assert.throws(() => new RingBufferReader(object.map("events")), ClosedError);
  },
});

Deno.test({
  name: "RingBufferReader reads two rings at once",
  ...kernelTest(),
  async fn() {
    using first = loadFixture();
    using second = loadFixture();
    using firstReader = new RingBufferReader(first.map("events"));
    using secondReader = new RingBufferReader(second.map("events"));
    const firstRecord = firstReader.read();
    const secondRecord = secondReader.read();
    setTimeout(() => {
      produce(second, 2);
      produce(first, 1);
    }, 20);

    assert.equal(parseRecord((await firstRecord)!).sequence, 0);
    assert.equal(parseRecord((await secondRecord)!).sequence, 0);
    assert.equal(firstReader.consumeAvailable(() => {}), 0);
    assert.equal(secondReader.consumeAvailable(() => {}), 1);
  },
});
