import assert from "node:assert/strict";
import {
  BpfError,
  type BpfMap,
  ClosedError,
  diffDumps,
  MapDump,
  openObject,
  possibleCpuCount,
} from "../mod.ts";
import { kernelTest, repoPath } from "./_helpers.ts";

const MAPS = repoPath("tests/fixtures/maps.bpf.o");
const MILLION = 1_000_000;

function u32(value: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Uint32Array([value]).buffer);
}

function u64(value: bigint): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new BigUint64Array([value]).buffer);
}

function lpmKey(prefixLength: number, address: string): Uint8Array<ArrayBuffer> {
  const key = new Uint8Array(8);
  new DataView(key.buffer).setUint32(0, prefixLength, true);
  key.set(address.split(".").map(Number), 4);
  return key;
}

/** Loads maps.bpf.o with the flow-key hash sized for `count` entries, filled with keys 0..count-1. */
function loadFilledHash(count: number) {
  const opened = openObject(MAPS);
  opened.map("hash").setMaxEntries(count);
  const object = opened.load();
  const hash = object.map("hash");

  // struct flow_key { u32 addr = i; u16 port = 80; u8 proto = 6; u8 flags = 0; }, value = i * 3.
  const keys = new Uint8Array(count * 8);
  const keyView = new DataView(keys.buffer);
  const values = new BigUint64Array(count);
  for (let i = 0; i < count; i++) {
    keyView.setUint32(i * 8, i, true);
    keyView.setUint16(i * 8 + 4, 80, true);
    keyView.setUint8(i * 8 + 6, 6);
    values[i] = BigInt(i) * 3n;
  }
  hash.updateBatch(keys, new Uint8Array(values.buffer));
  return { object, hash };
}

/** Asserts that `dump` contains keys 0..count-1 of loadFilledHash exactly once, with their values. */
function assertEachKeyOnce(dump: MapDump, count: number): void {
  assert.equal(dump.count, count);
  const seen = new Uint8Array(count);
  const keys = new DataView(dump.keys.buffer, dump.keys.byteOffset);
  const values = new DataView(dump.values.buffer, dump.values.byteOffset);
  let repeated = 0;
  let wrongValues = 0;
  for (let i = 0; i < dump.count; i++) {
    const addr = keys.getUint32(i * 8, true);
    if (seen[addr] === 1) repeated++;
    seen[addr] = 1;
    if (values.getBigUint64(i * 8, true) !== BigInt(addr) * 3n) wrongValues++;
  }
  assert.equal(repeated, 0, "keys returned twice");
  assert.equal(seen.indexOf(0), -1, "keys missing");
  assert.equal(wrongValues, 0, "values that do not match their key");
}

function keyNumbers(map: BpfMap, dump: MapDump): number[] {
  const keys = new DataView(dump.keys.buffer, dump.keys.byteOffset);
  return Array.from({ length: dump.count }, (_, i) => keys.getUint32(i * map.keySize, true));
}

Deno.test({
  name: "BpfMap.dump() 1M hash keys once",
  ...kernelTest(),
  fn() {
    const { object, hash } = loadFilledHash(MILLION);
    using _ = object;
    const dump = hash.dump();
    assert.equal(dump.stats.method, "batch");
    assert.equal(dump.keys.byteLength, MILLION * 8);
    assert.equal(dump.values.byteLength, MILLION * 8);
    assertEachKeyOnce(dump, MILLION);
  },
});

Deno.test({
  name: "BpfMap.dump() batch size 1 grows on ENOSPC",
  ...kernelTest(),
  fn() {
    const { object, hash } = loadFilledHash(MILLION);
    using _ = object;
    // A hash map of 1M entries has 2^20 buckets, so many hold two or more keys.
    const dump = hash.dump({ batchSize: 1 });
    assert.ok(dump.stats.batchGrowths > 0, "no ENOSPC was seen");
    assert.ok(dump.stats.batchSize > 1);
    assertEachKeyOnce(dump, MILLION);
  },
});

Deno.test({
  name: "BpfMap.dump() iteration returns keys once",
  ...kernelTest(),
  fn() {
    const count = 20_000;
    const { object, hash } = loadFilledHash(count);
    using _ = object;
    const dump = hash.dump({ method: "iterate" });
    assert.equal(dump.stats.method, "iterate");
    assert.equal(dump.stats.walks, 1);
    assert.equal(dump.stats.repeatedKeys, 0);
    assertEachKeyOnce(dump, count);
  },
});

Deno.test({
  name: "BpfMap.dump() LPM trie prefixes",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const trie = object.map("lpm_trie");
    const prefixes: [number, string][] = [[8, "10.0.0.0"], [16, "10.1.0.0"], [24, "192.168.1.0"]];
    for (const [length, address] of prefixes) {
      trie.update(lpmKey(length, address), u64(BigInt(length)));
    }

    for (const method of ["auto", "iterate"] as const) {
      const dump = trie.dump({ method });
      assert.equal(dump.count, 3);
      const found = [...dump].map(({ key, value }) => [
        new DataView(key.buffer, key.byteOffset).getUint32(0, true),
        new DataView(value.buffer, value.byteOffset).getBigUint64(0, true),
      ]);
      found.sort((a, b) => Number(a[0]) - Number(b[0]));
      assert.deepEqual(found, [[8, 8n], [16, 16n], [24, 24n]], method);
    }
  },
});

Deno.test({
  name: "BpfMap.dump() delete drains the map",
  ...kernelTest(),
  fn() {
    const count = 5_000;
    const { object, hash } = loadFilledHash(count);
    using _ = object;
    const drained = hash.dump({ delete: true, batchSize: 256 });
    assertEachKeyOnce(drained, count);
    assert.equal(hash.dump().count, 0);
    assert.equal(hash.lookup(drained.key(0)), undefined);
  },
});

Deno.test({
  name: "BpfMap.dump() delete drains an LPM trie",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const trie = object.map("lpm_trie");
    trie.update(lpmKey(8, "10.0.0.0"), u64(1n));
    trie.update(lpmKey(16, "10.1.0.0"), u64(2n));
    // LPM tries have no lookup-and-delete batch, so the drain falls back to iteration.
    const drained = trie.dump({ delete: true });
    assert.equal(drained.stats.method, "iterate");
    assert.equal(drained.count, 2);
    assert.equal(trie.dump().count, 0);
  },
});

Deno.test({
  name: "BpfMap.dump() method batch without support",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const trie = object.map("lpm_trie");
    trie.update(lpmKey(8, "10.0.0.0"), u64(1n));
    const error = (() => {
      try {
        trie.dump({ method: "batch", delete: true });
      } catch (error) {
        return error;
      }
    })();
    assert.ok(error instanceof BpfError);
    assert.equal(error.code, "ENOTSUPP");
    assert.match(error.message, /no batch operations: use method "auto" or "iterate"/);
    assert.equal(trie.dump().count, 1);
  },
});

Deno.test({
  name: "BpfMap.dump() array has every index",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const array = object.map("array");
    array.update(u32(5), u64(55n));
    const dump = array.dump({ batchSize: 3 });
    assert.equal(dump.stats.method, "batch");
    assert.deepEqual(keyNumbers(array, dump), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(dump.value(5), u64(55n));
    assert.deepEqual(dump.value(4), u64(0n));
  },
});

Deno.test({
  name: "BpfMap.dump() per-CPU values",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const map = object.map("percpu_hash");
    const cpus = possibleCpuCount();
    for (const key of [1, 2, 3]) {
      map.updatePerCpu(
        u32(key),
        Array.from({ length: cpus }, (_, cpu) => u64(BigInt(key * 100 + cpu))),
      );
    }

    for (const method of ["batch", "iterate"] as const) {
      const dump = map.dump({ method });
      assert.equal(dump.perCpu, true);
      assert.equal(dump.cpuCount, cpus);
      assert.equal(dump.entrySize, cpus * 8);
      assert.equal(dump.count, 3);
      for (let i = 0; i < dump.count; i++) {
        const key = new DataView(dump.key(i).buffer, dump.key(i).byteOffset).getUint32(0, true);
        for (let cpu = 0; cpu < cpus; cpu++) {
          assert.deepEqual(
            dump.cpuValue(i, cpu),
            u64(BigInt(key * 100 + cpu)),
            `${method} key ${key} CPU ${cpu}`,
          );
        }
      }
      assert.throws(() => dump.cpuValue(0, cpus), RangeError);
    }
  },
});

Deno.test({
  name: "BpfMap.dump() checks its options",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const hash = object.map("hash");
    assert.throws(() => hash.dump({ batchSize: 0 }), /Invalid batchSize 0/);
    assert.throws(() => hash.dump({ batchSize: 1.5 }), RangeError);
    assert.throws(() => hash.dump({ method: "iterate", maxWalks: 0 }), /Invalid maxWalks 0/);
    assert.throws(() => hash.dump({ maxWalks: -1 }), /Invalid maxWalks -1/);
    assert.throws(() => hash.entries({ batchSize: 0 }), /Invalid batchSize 0/);
    assert.throws(() => hash.dump({ lock: true }), /contains no struct bpf_spin_lock/);
    assert.throws(
      () => object.map("percpu_hash").dump({ lock: true }),
      /per-CPU values cannot contain/,
    );
  },
});

Deno.test({
  name: "BpfMap.entries() yields to the event loop",
  ...kernelTest(),
  async fn() {
    const count = 100_000;
    const { object, hash } = loadFilledHash(count);
    using _ = object;
    let yielded = 0;
    let yieldedWhenTimerRan = -1;
    const timer = setTimeout(() => yieldedWhenTimerRan = yielded, 0);

    const seen = new Uint8Array(count);
    let repeated = 0;
    for await (const { key, value } of hash.entries({ batchSize: 1000 })) {
      const addr = new DataView(key.buffer, key.byteOffset).getUint32(0, true);
      if (seen[addr] === 1) repeated++;
      seen[addr] = 1;
      assert.equal(
        new DataView(value.buffer, value.byteOffset).getBigUint64(0, true),
        BigInt(addr) * 3n,
      );
      yielded++;
    }
    clearTimeout(timer);

    assert.equal(yielded, count);
    assert.equal(repeated, 0);
    assert.ok(
      yieldedWhenTimerRan >= 0 && yieldedWhenTimerRan < count,
      `the timer ran after ${yieldedWhenTimerRan} of ${count} entries`,
    );
  },
});

Deno.test({
  name: "BpfMap.entries() iteration skips restarted keys",
  ...kernelTest(),
  async fn() {
    const count = 64;
    const { object, hash } = loadFilledHash(count);
    using _ = object;
    const seen = new Set<number>();
    const deleted = new Set<number>();
    let repeated = 0;
    const entries = hash.entries({ method: "iterate", batchSize: 8 });
    for await (const { key } of entries) {
      const addr = new DataView(key.buffer, key.byteOffset).getUint32(0, true);
      if (seen.has(addr)) repeated++;
      seen.add(addr);
      // Deleting the key the walk is at makes the kernel's next key the
      // map's first key again, so the walk returns keys it already returned.
      if (seen.size % 8 === 0 && seen.size < count - 8) {
        hash.delete(key.slice());
        deleted.add(addr);
      }
    }

    assert.equal(repeated, 0);
    assert.ok(deleted.size > 0);
    assert.equal(entries.stats.method, "iterate");
    assert.ok(entries.stats.repeatedKeys > 0, "the walk never restarted");
    for (let addr = 0; addr < count; addr++) assert.ok(seen.has(addr), `key ${addr} missing`);
  },
});

Deno.test({
  name: "BpfMap.entries() gives up after maxWalks",
  ...kernelTest(),
  async fn() {
    const count = 64;
    const { object, hash } = loadFilledHash(count);
    using _ = object;
    // Each deletion below sends the walk back to the first key, and the keys
    // it returns again count as steps: about 250 steps in all, more than the
    // 2 * (64 + 1) that one walk may take.
    const entries = hash.entries({ method: "iterate", batchSize: 8, maxWalks: 1 });
    let read = 0;
    const error = await (async () => {
      try {
        for await (const { key } of entries) {
          read++;
          if (read % 8 === 0) hash.delete(key.slice());
        }
      } catch (error) {
        return error;
      }
    })();

    assert.ok(error instanceof BpfError, `no error after ${read} entries`);
    assert.equal(error.code, "EAGAIN");
    assert.match(
      error.message,
      /the map kept changing, and 1 walk\(s\) of 130 steps each did not reach its end/,
    );
    assert.equal(entries.stats.walks, 1);
  },
});

Deno.test({
  name: "BpfMap.entries() after close throws",
  ...kernelTest(),
  async fn() {
    const { object, hash } = loadFilledHash(10_000);
    const iterator = hash.entries({ batchSize: 100 });
    const first = await iterator.next();
    assert.equal(first.done, false);
    object.close();
    // The current batch was copied before close; the next batch needs the map.
    await assert.rejects(async () => {
      for (let result = await iterator.next(); !result.done; result = await iterator.next());
    }, ClosedError);
  },
});

function dumpOf(entries: [number, bigint[]][], cpuCount?: number): MapDump {
  const valuesPerEntry = cpuCount ?? 1;
  const keys = new Uint8Array(entries.length * 4);
  const values = new BigUint64Array(entries.length * valuesPerEntry);
  entries.forEach(([key, entryValues], i) => {
    new DataView(keys.buffer).setUint32(i * 4, key, true);
    values.set(entryValues, i * valuesPerEntry);
  });
  return new MapDump({
    keySize: 4,
    valueSize: 8,
    count: entries.length,
    keys,
    values: new Uint8Array(values.buffer),
    ...(cpuCount === undefined ? {} : { cpuCount }),
  });
}

Deno.test("diffDumps() finds added changed removed and reset", () => {
  const previous = dumpOf([[1, [10n]], [2, [20n]], [3, [30n]], [4, [1n << 33n]]]);
  const current = dumpOf([[2, [20n]], [5, [50n]], [1, [15n]], [4, [5n]]]);
  const diff = diffDumps(previous, current, { counters: [0] });

  assert.deepEqual([...diff.added], [1]);
  assert.deepEqual([...diff.changed], [2, 3]);
  assert.deepEqual([...diff.changedPrevious], [0, 3]);
  assert.deepEqual([...diff.removed], [2]);
  assert.deepEqual([...diff.reset], [3]);
  assert.equal(diff.unchanged, 1);
});

Deno.test("diffDumps() compares high words of counters", () => {
  // 2^32 + 1 -> 2^33: the low word goes down, the counter goes up.
  const previous = dumpOf([[1, [(1n << 32n) + 1n]]]);
  const current = dumpOf([[1, [1n << 33n]]]);
  const diff = diffDumps(previous, current, { counters: [0] });
  assert.deepEqual([...diff.changed], [0]);
  assert.deepEqual([...diff.reset], []);
});

Deno.test("diffDumps() checks every CPU's counter", () => {
  const previous = dumpOf([[1, [5n, 9n]], [2, [5n, 9n]]], 2);
  const current = dumpOf([[1, [6n, 10n]], [2, [6n, 2n]]], 2);
  const diff = diffDumps(previous, current, { counters: [0] });
  assert.deepEqual([...diff.changed], [0, 1]);
  assert.deepEqual([...diff.reset], [1]);
});

Deno.test("diffDumps() without changes", () => {
  const entries: [number, bigint[]][] = Array.from({ length: 1000 }, (_, i) => [i, [BigInt(i)]]);
  const diff = diffDumps(dumpOf(entries), dumpOf(entries.toReversed()));
  assert.equal(diff.unchanged, 1000);
  assert.equal(diff.added.length + diff.changed.length + diff.removed.length, 0);
});

Deno.test("diffDumps() rejects different layouts", () => {
  const narrow = dumpOf([[1, [1n]]]);
  const perCpu = dumpOf([[1, [1n, 2n]]], 2);
  assert.throws(() => diffDumps(narrow, perCpu), /value bytes per entry 8 and 16/);
  assert.throws(() => diffDumps(narrow, narrow, { counters: [4] }), /Invalid counter offset 4/);
  assert.throws(
    () =>
      new MapDump({
        keySize: 4,
        valueSize: 8,
        count: 2,
        keys: new Uint8Array(8),
        values: new Uint8Array(8),
      }),
    /Invalid values: 8 bytes, expected 16/,
  );
});

Deno.test({
  name: "diffDumps() over live dumps",
  ...kernelTest(),
  fn() {
    const { object, hash } = loadFilledHash(10_000);
    using _ = object;
    const before = hash.dump();
    const key = (addr: number) => {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setUint32(0, addr, true);
      new DataView(bytes.buffer).setUint16(4, 80, true);
      bytes[6] = 6;
      return bytes;
    };
    hash.update(key(7), u64(1n));
    hash.update(key(8), u64(100_000n));
    hash.delete(key(9));
    hash.update(key(20_000), u64(1n));
    const after = hash.dump();

    const diff = diffDumps(before, after, { counters: [0] });
    const addrOf = (dump: MapDump, index: number) =>
      new DataView(dump.keys.buffer, dump.keys.byteOffset).getUint32(index * 8, true);
    assert.deepEqual([...diff.added].map((i) => addrOf(after, i)), [20_000]);
    assert.deepEqual([...diff.changed].map((i) => addrOf(after, i)).sort((a, b) => a - b), [7, 8]);
    assert.deepEqual([...diff.reset].map((i) => addrOf(after, i)), [7]);
    assert.deepEqual([...diff.removed].map((i) => addrOf(before, i)), [9]);
    assert.equal(diff.unchanged, 10_000 - 3);
  },
});
