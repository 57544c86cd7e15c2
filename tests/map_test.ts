import assert from "node:assert/strict";
import {
  BpfError,
  type BpfMap,
  bytes,
  ClosedError,
  maxPerCpu,
  openObject,
  possibleCpuCount,
  readUint64PerCpu,
  sumPerCpu,
  u32 as u32Layout,
  UpdateFlags,
} from "../mod.ts";
import { runProgramTest } from "../ffi/_test_run.ts";
import { kernelTest, repoPath } from "./_helpers.ts";

const MAPS = repoPath("tests/fixtures/maps.bpf.o");

function u32(value: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Uint32Array([value]).buffer);
}

function u64(value: bigint): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new BigUint64Array([value]).buffer);
}

function readU64(bytes: Uint8Array | undefined): bigint | undefined {
  if (bytes === undefined) return undefined;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
}

/** struct flow_key { u32 addr; u16 port; u8 proto; u8 flags; } of maps.bpf.c. */
function flowKey(addr: number, port: number, proto = 6): Uint8Array<ArrayBuffer> {
  const key = new Uint8Array(8);
  const view = new DataView(key.buffer);
  view.setUint32(0, addr, true);
  view.setUint16(4, port, true);
  view.setUint8(6, proto);
  return key;
}

/** struct ipv4_lpm_key { u32 prefixlen; u32 addr; }: the address in network byte order. */
function lpmKey(prefixLength: number, address: string): Uint8Array<ArrayBuffer> {
  const key = new Uint8Array(8);
  new DataView(key.buffer).setUint32(0, prefixLength, true);
  key.set(address.split(".").map(Number), 4);
  return key;
}

function captureError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  assert.fail("expected an error");
}

// Keys of the maps that take u32 keys, and of the hash, which takes a flow key.
function keyFor(map: BpfMap, index: number): Uint8Array<ArrayBuffer> {
  return map.name === "hash" ? flowKey(0x0a000000 + index, 80) : u32(index);
}

for (const name of ["hash", "lru_hash"]) {
  Deno.test({
    name: `BpfMap ${name} update flags`,
    ...kernelTest(),
    fn() {
      using object = openObject(MAPS).load();
      const map = object.map(name);
      const key = keyFor(map, 1);

      assert.equal(map.lookup(key), undefined);
      map.update(key, u64(10n), UpdateFlags.NOEXIST);
      assert.equal(readU64(map.lookup(key)), 10n);
      map.update(key, u64(11n), UpdateFlags.EXIST);
      assert.equal(readU64(map.lookup(key)), 11n);
      map.update(key, u64(12n));
      assert.equal(readU64(map.lookup(key)), 12n);
      map.update(key, u64(13n), { flags: UpdateFlags.ANY });
      assert.equal(readU64(map.lookup(key)), 13n);

      const exists = captureError(() => map.update(key, u64(1n), UpdateFlags.NOEXIST));
      assert.ok(exists instanceof BpfError);
      assert.equal(exists.code, "EEXIST");
      assert.equal(exists.map, name);
      assert.match(exists.message, /the key already exists and NOEXIST only creates new elements/);

      const missing = captureError(() => map.update(keyFor(map, 2), u64(1n), UpdateFlags.EXIST));
      assert.ok(missing instanceof BpfError);
      assert.equal(missing.code, "ENOENT");
      assert.match(missing.message, /the key does not exist and EXIST only replaces/);
      assert.equal(map.lookup(keyFor(map, 2)), undefined);
    },
  });

  Deno.test({
    name: `BpfMap ${name} delete and lookupAndDelete`,
    ...kernelTest(),
    fn() {
      using object = openObject(MAPS).load();
      const map = object.map(name);
      map.update(keyFor(map, 1), u64(100n));
      map.update(keyFor(map, 2), u64(200n));

      assert.equal(map.delete(keyFor(map, 1)), true);
      assert.equal(map.delete(keyFor(map, 1)), false);
      assert.equal(map.lookup(keyFor(map, 1)), undefined);

      assert.equal(readU64(map.lookupAndDelete(keyFor(map, 2))), 200n);
      assert.equal(map.lookup(keyFor(map, 2)), undefined);
      assert.equal(map.lookupAndDelete(keyFor(map, 2)), undefined);
    },
  });
}

Deno.test({
  name: "BpfMap hash full is E2BIG with hint",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const hash = object.map("hash");
    for (let i = 0; i < hash.maxEntries; i++) hash.update(flowKey(i, 1), u64(BigInt(i)));

    const error = captureError(() => hash.update(flowKey(hash.maxEntries, 1), u64(0n)));
    assert.ok(error instanceof BpfError);
    assert.equal(error.code, "E2BIG");
    assert.match(error.message, /the map is full \(max_entries 64\)/);
  },
});

Deno.test({
  name: "BpfMap LRU hash evicts instead of failing",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const lru = object.map("lru_hash");
    const total = lru.maxEntries * 4;
    for (let i = 0; i < total; i++) lru.update(u32(i), u64(BigInt(i)));

    assert.equal(readU64(lru.lookup(u32(total - 1))), BigInt(total - 1));
    const dump = lru.dump();
    assert.ok(dump.count <= lru.maxEntries, `${dump.count} entries in an LRU of ${lru.maxEntries}`);
    assert.ok(dump.count > 0);
  },
});

Deno.test({
  name: "BpfMap array update lookup and errors",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const array = object.map("array");

    assert.equal(readU64(array.lookup(u32(3))), 0n);
    array.update(u32(3), u64(33n));
    assert.equal(readU64(array.lookup(u32(3))), 33n);
    array.update(u32(3), u64(34n), UpdateFlags.EXIST);
    assert.equal(readU64(array.lookup(u32(3))), 34n);
    assert.equal(array.lookup(u32(array.maxEntries)), undefined);

    const noexist = captureError(() => array.update(u32(3), u64(1n), UpdateFlags.NOEXIST));
    assert.ok(noexist instanceof BpfError);
    assert.equal(noexist.code, "EEXIST");
    assert.match(noexist.message, /array elements always exist/);

    const outOfRange = captureError(() => array.update(u32(array.maxEntries), u64(1n)));
    assert.ok(outOfRange instanceof BpfError);
    assert.equal(outOfRange.code, "E2BIG");
    assert.match(outOfRange.message, /the index is not below max_entries \(8\)/);
  },
});

Deno.test({
  name: "BpfMap array rejects delete methods",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const array = object.map("array");
    assert.throws(
      () => array.delete(u32(0)),
      (error: unknown) =>
        error instanceof TypeError &&
        /"array" is a map of type ARRAY: array elements cannot be deleted; write zeros with update\(\)/
          .test(error.message),
    );
    assert.throws(
      () => array.lookupAndDelete(u32(0)),
      /type ARRAY, which has no lookupAndDelete\(\): array elements cannot be deleted/,
    );
    assert.throws(() => array.dump({ delete: true }), TypeError);
    assert.throws(
      () => object.map("percpu_array").delete(u32(0)),
      /write zeros with updatePerCpu\(\)/,
    );
  },
});

Deno.test({
  name: "BpfMap LPM trie longest-prefix match",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const trie = object.map("lpm_trie");
    trie.update(lpmKey(8, "10.0.0.0"), u64(8n));
    trie.update(lpmKey(16, "10.1.0.0"), u64(16n));
    trie.update(lpmKey(24, "10.1.2.0"), u64(24n));

    assert.equal(readU64(trie.lookup(lpmKey(32, "10.1.2.3"))), 24n);
    assert.equal(readU64(trie.lookup(lpmKey(32, "10.1.3.3"))), 16n);
    assert.equal(readU64(trie.lookup(lpmKey(32, "10.9.9.9"))), 8n);
    assert.equal(trie.lookup(lpmKey(32, "11.0.0.1")), undefined);
    // The key's prefix length bounds the match.
    assert.equal(readU64(trie.lookup(lpmKey(20, "10.1.2.3"))), 16n);

    assert.equal(trie.delete(lpmKey(16, "10.1.0.0")), true);
    assert.equal(trie.delete(lpmKey(16, "10.1.0.0")), false);
    assert.equal(readU64(trie.lookup(lpmKey(32, "10.1.3.3"))), 8n);

    trie.update(lpmKey(16, "10.1.0.0"), u64(160n), UpdateFlags.NOEXIST);
    const exists = captureError(() =>
      trie.update(lpmKey(16, "10.1.0.0"), u64(1n), UpdateFlags.NOEXIST)
    );
    assert.ok(exists instanceof BpfError);
    assert.equal(exists.code, "EEXIST");
  },
});

Deno.test({
  name: "BpfMap LPM trie invalid prefix hint",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const error = captureError(() =>
      object.map("lpm_trie").update(lpmKey(33, "10.0.0.0"), u64(1n))
    );
    assert.ok(error instanceof BpfError);
    assert.equal(error.code, "EINVAL");
    assert.match(error.message, /prefix length of at most 32 bits/);
    assert.throws(
      () => object.map("lpm_trie").lookupAndDelete(lpmKey(8, "10.0.0.0")),
      /type LPM_TRIE, which has no lookupAndDelete\(\): use lookup\(\) and then delete\(\)/,
    );
  },
});

Deno.test({
  name: "BpfMap queue push pop peek",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const queue = object.map("queue");
    assert.equal(queue.keySize, 0);
    assert.equal(queue.peek(), undefined);
    assert.equal(queue.pop(), undefined);

    for (const value of [1n, 2n, 3n, 4n]) queue.push(u64(value));
    assert.equal(readU64(queue.peek()), 1n);
    assert.equal(readU64(queue.peek()), 1n);

    const full = captureError(() => queue.push(u64(5n)));
    assert.ok(full instanceof BpfError);
    assert.equal(full.code, "E2BIG");
    assert.match(full.message, /the queue is full \(4 elements\)/);
    assert.match(full.message, /UpdateFlags\.EXIST to drop the oldest element/);

    queue.push(u64(5n), UpdateFlags.EXIST);
    const popped = [queue.pop(), queue.pop(), queue.pop(), queue.pop()].map(readU64);
    assert.deepEqual(popped, [2n, 3n, 4n, 5n]);
    assert.equal(queue.pop(), undefined);
  },
});

Deno.test({
  name: "BpfMap stack is last in first out",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const stack = object.map("stack");
    for (const value of [1n, 2n, 3n]) stack.push(u64(value));
    assert.equal(readU64(stack.peek()), 3n);
    assert.deepEqual([stack.pop(), stack.pop(), stack.pop()].map(readU64), [3n, 2n, 1n]);
    assert.equal(stack.pop(), undefined);
    assert.equal(stack.peek(), undefined);
  },
});

Deno.test({
  name: "BpfMap queue rejects keyed methods",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const queue = object.map("queue");
    const value = u64(1n);
    assert.throws(
      () => queue.lookup(new Uint8Array()),
      /type QUEUE, which has no keys.*use peek\(\)/,
    );
    assert.throws(() => queue.update(new Uint8Array(), value), /use push\(\)/);
    assert.throws(() => queue.delete(new Uint8Array()), /use pop\(\)/);
    assert.throws(() => queue.lookupAndDelete(new Uint8Array()), /use pop\(\)/);
    assert.throws(() => queue.dump(), /use pop\(\) in a loop/);
    assert.throws(() => queue.push(value, UpdateFlags.NOEXIST), RangeError);

    const hash = object.map("hash");
    assert.throws(
      () => hash.push(value),
      /type HASH, not a queue or stack, so it has no push\(\): use update\(\)/,
    );
    assert.throws(() => hash.pop(), /use lookupAndDelete\(\)/);
    assert.throws(() => hash.peek(), /use lookup\(\)/);
  },
});

Deno.test({
  name: "BpfMap checks sizes and flags first",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const hash = object.map("hash");
    assert.throws(
      () => hash.lookup(u32(1)),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message.includes("the key is 4 bytes, the map's key size is 8"),
    );
    assert.throws(
      () => hash.update(flowKey(1, 1), u32(1)),
      /the value is 4 bytes, the map's value size is 8/,
    );
    assert.throws(() => hash.update(flowKey(1, 1), u64(1n), 3), /Invalid update flags 3/);
    assert.throws(() => hash.delete(new Uint8Array(9)), RangeError);
    assert.throws(() => object.map("queue").push(u32(1)), RangeError);
    assert.throws(
      () => object.map("percpu_hash").updatePerCpu(u32(1), [u32(1)]),
      RangeError,
    );
  },
});

Deno.test({
  name: "BpfMap per-CPU lookup has every possible CPU",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const percpu = object.map("percpu_array");
    const values = percpu.lookupPerCpu(u32(0));
    assert.ok(values !== undefined);
    assert.equal(values.length, possibleCpuCount());
    for (const value of values) assert.equal(value.byteLength, 8);
    assert.equal(percpu.lookupPerCpu(u32(percpu.maxEntries)), undefined);
    assert.throws(() => percpu.lookup(u32(0)), /one value per CPU: use lookupPerCpu\(\)/);
    assert.throws(() => percpu.update(u32(0), u64(1n)), /use updatePerCpu\(\)/);
  },
});

for (const name of ["percpu_array", "percpu_hash", "lru_percpu_hash"]) {
  Deno.test({
    name: `BpfMap ${name} updatePerCpu round trip`,
    ...kernelTest(),
    fn() {
      using object = openObject(MAPS).load();
      const map = object.map(name);
      const cpus = possibleCpuCount();
      const written = Array.from({ length: cpus }, (_, cpu) => BigInt(1000 + cpu * 7));

      map.updatePerCpu(u32(2), written.map(u64));
      const values = map.lookupPerCpu(u32(2));
      assert.ok(values !== undefined);
      assert.deepEqual(readUint64PerCpu(values), written);

      const wrongCount = captureError(() => map.updatePerCpu(u32(2), [...written, 1n].map(u64)));
      assert.ok(wrongCount instanceof RangeError);
      assert.match(
        wrongCount.message,
        new RegExp(`got ${cpus + 1} values, .*one value per possible CPU \\(${cpus}\\)`),
      );
    },
  });
}

Deno.test({
  name: "BpfMap per-CPU hash lookupAndDeletePerCpu",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const map = object.map("percpu_hash");
    const cpus = possibleCpuCount();
    const written = Array.from({ length: cpus }, (_, cpu) => BigInt(cpu + 1));
    map.updatePerCpu(u32(9), written.map(u64), UpdateFlags.NOEXIST);

    const removed = map.lookupAndDeletePerCpu(u32(9));
    assert.ok(removed !== undefined);
    assert.deepEqual(readUint64PerCpu(removed), written);
    assert.equal(map.lookupPerCpu(u32(9)), undefined);
    assert.equal(map.lookupAndDeletePerCpu(u32(9)), undefined);
    assert.throws(() => map.lookupAndDelete(u32(9)), /use lookupAndDeletePerCpu\(\)/);
  },
});

Deno.test("sumPerCpu and maxPerCpu over decoded values", () => {
  assert.equal(sumPerCpu([1n, 2n, 3n]), 6n);
  assert.equal(sumPerCpu([]), 0n);
  // Exact, not wrapped to 64 bits.
  assert.equal(sumPerCpu([0xffff_ffff_ffff_ffffn, 1n]), 0x1_0000_0000_0000_0000n);
  assert.equal(maxPerCpu([3n, 11n, 7n]), 11n);
  assert.throws(() => maxPerCpu([]), RangeError);

  const values = [u64(5n), new Uint8Array([...u64(1n << 40n), 9, 9, 9, 9, 9, 9, 9, 9])];
  assert.deepEqual(readUint64PerCpu(values), [5n, 1n << 40n]);
  assert.throws(() => readUint64PerCpu(values, 4), /offset 4 of CPU 0's value: it is 8 bytes/);
});

Deno.test({
  name: "BpfMap updateBatch reports progress",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const hash = object.map("hash");
    const count = hash.maxEntries - 2;
    const keys = new Uint8Array(count * 8);
    for (let i = 0; i < count; i++) keys.set(flowKey(i, 443), i * 8);
    const values = new Uint8Array(new BigUint64Array(count).fill(7n).buffer);
    assert.equal(hash.updateBatch(keys, values), count);
    assert.equal(readU64(hash.lookup(flowKey(count - 1, 443))), 7n);

    // Two keys fit; the third finds the map full.
    const more = new Uint8Array(4 * 8);
    for (let i = 0; i < 4; i++) more.set(flowKey(1000 + i, 443), i * 8);
    const error = captureError(() => hash.updateBatch(more, values.subarray(0, 32)));
    assert.ok(error instanceof BpfError);
    assert.equal(error.code, "E2BIG");
    assert.match(error.message, /the map is full/);
    assert.match(error.message, /2 of 4 elements were written before the failure/);
    assert.equal(readU64(hash.lookup(flowKey(1001, 443))), 7n);
    assert.equal(hash.lookup(flowKey(1002, 443)), undefined);

    assert.throws(
      () => hash.updateBatch(keys.subarray(0, 12), values),
      /not a multiple of the key size 8/,
    );
    assert.throws(
      () => hash.updateBatch(keys.subarray(0, 32), values.subarray(8, 32)),
      /4 keys need 32 \(8 per key\)/,
    );
  },
});

Deno.test({
  name: "BpfMap sees what a program wrote",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const program = object.program("touch");
    runProgramTest(program.fd, { data: new Uint8Array(64), repeat: 3 });

    assert.equal(readU64(object.map("hash").lookup(flowKey(0x0a000001, 80))), 3n);
    assert.equal(readU64(object.map("array").lookup(u32(0))), 3n);
    assert.deepEqual(
      [object.map("queue").pop(), object.map("queue").pop(), object.map("queue").pop()].map(
        readU64,
      ),
      [1n, 2n, 3n],
    );
  },
});

Deno.test({
  name: "BpfMap methods after close throw ClosedError",
  ...kernelTest(),
  async fn() {
    const object = openObject(MAPS).load();
    const hash = object.map("hash");
    const queue = object.map("queue");
    const percpu = object.map("percpu_hash");
    const key = flowKey(1, 1);
    const value = u64(1n);
    object.close();

    const calls: [string, () => unknown][] = [
      ["fd", () => hash.fd],
      ["lookup", () => hash.lookup(key)],
      ["update", () => hash.update(key, value)],
      ["updateBatch", () => hash.updateBatch(key, value)],
      ["delete", () => hash.delete(key)],
      ["lookupAndDelete", () => hash.lookupAndDelete(key)],
      ["lookupPerCpu", () => percpu.lookupPerCpu(u32(1))],
      ["updatePerCpu", () => percpu.updatePerCpu(u32(1), [])],
      ["lookupAndDeletePerCpu", () => percpu.lookupAndDeletePerCpu(u32(1))],
      ["push", () => queue.push(value)],
      ["pop", () => queue.pop()],
      ["peek", () => queue.peek()],
      ["dump", () => hash.dump()],
      ["entries", () => hash.entries()],
      ["mmap", () => hash.mmap()],
    ];
    for (const [method, call] of calls) {
      assert.throws(call, ClosedError, `${method} after close`);
    }
    await assert.rejects(async () => {
      for await (const _ of hash.entries()) break;
    }, ClosedError);
  },
});

Deno.test({
  name: "BpfMap byte methods work when layouts cannot model the value",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const wide = object.map("wide_value");
    const value = new Uint8Array(wide.valueSize).fill(0x5a);
    wide.update(u32(1), value);
    assert.deepEqual(wide.lookup(u32(1)), value);
    assert.equal(wide.dump().count, 1);
    // typed() needs the BTF layout unless both layouts are declared.
    assert.throws(() => wide.typed(), BpfError);
    const typed = wide.typed({ key: u32Layout, value: bytes(wide.valueSize) });
    assert.deepEqual(typed.get(1), value);
  },
});

Deno.test({
  name: "BpfMap.update() rejects flags of 2^32 and more",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const hash = object.map("lru_hash");
    for (const flags of [2 ** 32 + 1, 2 ** 33, 2 ** 32 + 4, -1, 1.5]) {
      assert.throws(
        () => hash.update(u32(1), u64(1n), flags),
        /Invalid update flags/,
        String(flags),
      );
    }
  },
});

Deno.test({
  name: "BpfMap.dump() clamps the batch to max_entries and checks the method",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const hash = object.map("lru_hash");
    hash.update(u32(1), u64(1n));
    const dump = hash.dump({ batchSize: 2 ** 31 });
    assert.equal(dump.count, 1);
    assert.equal(dump.stats.batchSize, hash.maxEntries);
    assert.throws(() => hash.dump({ method: "bogus" as "auto" }), /Invalid method "bogus"/);
  },
});

Deno.test({
  name: "BpfMap.update() on frozen .rodata says to set it before load",
  ...kernelTest(),
  fn() {
    using object = openObject(repoPath("tests/fixtures/globals.bpf.o")).load();
    const rodata = object.maps.find((map) => map.name.endsWith(".rodata"))!;
    let error: unknown;
    try {
      rodata.update(new Uint8Array(rodata.keySize), new Uint8Array(rodata.valueSize));
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof BpfError, String(error));
    assert.equal(error.code, "EPERM");
    assert.match(
      error.message,
      /the map is frozen.*set its values before load with OpenObject\.globals\(\)/,
    );
  },
});
