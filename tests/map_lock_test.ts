import assert from "node:assert/strict";
import { type BpfMap, type BpfObject, openObject, UpdateFlags } from "../mod.ts";
import type { WriterStart } from "./_scripts/spin_lock_writer.ts";
import { kernelTest, repoPath } from "./_helpers.ts";

const SPIN_LOCK = repoPath("tests/fixtures/spin_lock.bpf.o");
const MAPS = repoPath("tests/fixtures/maps.bpf.o");

// The bounds that keep the load tests from hanging when the writer never
// runs concurrently (for example on a machine with one free core).
const START_TIMEOUT_MS = 5_000;
const READ_TIME_MS = 500;
const MAX_UNLOCKED_READS = 2_000_000;

function u32(value: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Uint32Array([value]).buffer);
}

/** struct locked_value { struct bpf_spin_lock lock; u64 a; u64 b; }: a at 8, b at 16. */
function lockedValue(a: bigint, b: bigint): Uint8Array<ArrayBuffer> {
  const value = new Uint8Array(24);
  const view = new DataView(value.buffer);
  view.setBigUint64(8, a, true);
  view.setBigUint64(16, b, true);
  return value;
}

function fieldsOf(value: Uint8Array): { a: bigint; b: bigint } {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  return { a: view.getBigUint64(8, true), b: view.getBigUint64(16, true) };
}

/**
 * Runs `read` on the main thread while a Worker runs bump() in a loop, and
 * returns what `read` returned. The writer is stopped before this returns.
 */
async function withWriter<T>(object: BpfObject, read: () => T): Promise<T> {
  const stop = new SharedArrayBuffer(4);
  const worker = new Worker(new URL("./_scripts/spin_lock_writer.ts", import.meta.url), {
    type: "module",
  });
  const finished = new Promise<{ runs: number }>((resolve, reject) => {
    worker.onmessage = (event) => resolve(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      reject(new Error(`spin lock writer failed: ${event.message}`));
    };
  });
  const start: WriterStart = { programFd: object.program("bump").fd, stop };
  worker.postMessage(start);
  try {
    waitForProgress(object.map("locked_array"));
    return read();
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
    await finished.finally(() => worker.terminate());
  }
}

// Waits until the writer has changed locked_array[0], so reads overlap its runs.
function waitForProgress(array: BpfMap): void {
  const first = fieldsOf(array.lookup(u32(0))!).a;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (fieldsOf(array.lookup(u32(0))!).a === first) {
    if (Date.now() > deadline) assert.fail("the spin lock writer made no progress");
  }
}

/** Reads `map[0]` until the time runs out and counts the reads that saw a != b. */
function countTorn(
  map: BpfMap,
  lock: boolean | undefined,
  maxReads: number,
  timeMs = READ_TIME_MS,
): {
  reads: number;
  torn: number;
  progress: bigint;
} {
  const key = u32(0);
  const options = lock === undefined ? {} : { lock };
  const first = fieldsOf(map.lookup(key, options)!).a;
  const deadline = Date.now() + timeMs;
  let reads = 0;
  let torn = 0;
  let last = first;
  while (reads < maxReads && Date.now() < deadline) {
    const { a, b } = fieldsOf(map.lookup(key, options)!);
    reads++;
    if (a !== b) torn++;
    last = a;
    // Without the lock, one torn read is all the test needs.
    if (lock === false && torn > 0) break;
  }
  return { reads, torn, progress: last - first };
}

Deno.test({
  name: "BPF_F_LOCK lookups are never torn",
  ...kernelTest(),
  async fn() {
    using object = openObject(SPIN_LOCK).load();
    const array = object.map("locked_array");
    const hash = object.map("locked_hash");
    hash.update(u32(0), lockedValue(0n, 0n));

    const [byDefault, explicit] = await withWriter(object, () => [
      countTorn(array, undefined, Number.MAX_SAFE_INTEGER),
      countTorn(hash, true, Number.MAX_SAFE_INTEGER),
    ]);
    assert.equal(byDefault.torn, 0, `${byDefault.torn} of ${byDefault.reads} array reads torn`);
    assert.ok(byDefault.progress > 0n, "the writer did not run during the array reads");
    assert.equal(explicit.torn, 0, `${explicit.torn} of ${explicit.reads} hash reads torn`);
    assert.ok(explicit.progress > 0n, "the writer did not run during the hash reads");
  },
});

Deno.test({
  name: "lookup without the lock can be torn",
  ...kernelTest(),
  async fn() {
    using object = openObject(SPIN_LOCK).load();
    const array = object.map("locked_array");
    // The search ends at the first torn read; the long bound only matters on a
    // loaded machine, where the writer gets the other core less often.
    const result = await withWriter(
      object,
      () => countTorn(array, false, 20 * MAX_UNLOCKED_READS, 5_000),
    );
    assert.ok(result.torn > 0, `no torn value in ${result.reads} reads without the lock`);
  },
});

Deno.test({
  name: "BPF_F_LOCK dumps are never torn",
  ...kernelTest(),
  async fn() {
    using object = openObject(SPIN_LOCK).load();
    const hash = object.map("locked_hash");
    hash.update(u32(0), lockedValue(0n, 0n));
    for (let key = 1; key < 8; key++) hash.update(u32(key), lockedValue(5n, 5n));

    const torn = await withWriter(object, () => {
      let count = 0;
      const deadline = Date.now() + 500;
      while (Date.now() < deadline) {
        for (const method of ["batch", "iterate"] as const) {
          for (const { value } of hash.dump({ method })) {
            const { a, b } = fieldsOf(value);
            if (a !== b) count++;
          }
        }
      }
      return count;
    });
    assert.equal(torn, 0);
  },
});

Deno.test({
  name: "BPF_F_LOCK update and lookupAndDelete",
  ...kernelTest(),
  fn() {
    using object = openObject(SPIN_LOCK).load();
    const hash = object.map("locked_hash");
    hash.update(u32(3), lockedValue(7n, 7n), UpdateFlags.NOEXIST);
    hash.update(u32(3), lockedValue(8n, 8n), UpdateFlags.EXIST | UpdateFlags.F_LOCK);
    hash.update(u32(3), lockedValue(9n, 9n), { flags: UpdateFlags.EXIST, lock: true });
    assert.deepEqual(fieldsOf(hash.lookup(u32(3))!), { a: 9n, b: 9n });
    assert.deepEqual(fieldsOf(hash.lookup(u32(3), { lock: false })!), { a: 9n, b: 9n });

    assert.deepEqual(fieldsOf(hash.lookupAndDelete(u32(3))!), { a: 9n, b: 9n });
    assert.equal(hash.lookup(u32(3)), undefined);

    const array = object.map("locked_array");
    array.update(u32(1), lockedValue(4n, 4n));
    assert.deepEqual(fieldsOf(array.lookup(u32(1), { lock: true })!), { a: 4n, b: 4n });
  },
});

Deno.test({
  name: "BPF_F_LOCK without a spin lock is TypeError",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const hash = object.map("hash");
    const key = new Uint8Array(8);
    const value = new Uint8Array(8);
    assert.throws(
      () => hash.lookup(key, { lock: true }),
      (error: unknown) =>
        error instanceof TypeError &&
        /map "hash" with the lock: its value contains no struct bpf_spin_lock/.test(error.message),
    );
    assert.throws(
      () => hash.update(key, value, UpdateFlags.F_LOCK),
      /contains no struct bpf_spin_lock/,
    );
    assert.throws(() => hash.lookupAndDelete(key, { lock: true }), TypeError);
    assert.throws(
      () => object.map("lru_hash").lookup(u32(1), { lock: true }),
      /BPF_F_LOCK applies to HASH and ARRAY maps, and this is a map of type LRU_HASH/,
    );
    assert.throws(
      () => hash.update(key, value, { flags: UpdateFlags.F_LOCK, lock: false }),
      RangeError,
    );
    // Without a spin lock, reads and writes take no lock by default.
    hash.update(key, value);
    assert.deepEqual(hash.lookup(key), value);
  },
});
