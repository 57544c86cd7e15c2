import assert from "node:assert/strict";
import { ClosedError, openObject, UpdateFlags } from "../mod.ts";
import { libc } from "../ffi/libc.ts";
import { kernelTest, repoPath } from "./_helpers.ts";

const ATTACH = repoPath("tests/fixtures/attach.bpf.o");
const REJECTED = repoPath("tests/fixtures/rejected.bpf.o");

function key(index: number): Uint8Array {
  return new Uint8Array(new Uint32Array([index]).buffer);
}

function u64(value: bigint): Uint8Array {
  return new Uint8Array(new BigUint64Array([value]).buffer);
}

Deno.test({
  name: "BpfMap.mmap() sees kernel updates without a copy",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    using memory = object.map("hits").mmap();
    assert.equal(memory.byteLength, 4 * 8);
    assert.equal(memory.valueStride, 8);
    assert.equal(memory.writable, false);

    object.program("on_raw_tracepoint").attach();
    const before = memory.getUint64(8);
    for (let i = 0; i < 200; i++) libc().getppid();
    const after = memory.getUint64(8);
    assert.ok(after - before >= 200, `${after} - ${before} should be at least 200`);
    assert.equal(BigInt(after) <= memory.getBigUint64(8), true);
  },
});

Deno.test({
  name: "BpfMap.mmap() agrees with syscall lookups",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const hits = object.map("hits");
    hits.update(key(3), u64(0x1_2345_6789n), UpdateFlags.ANY);
    using memory = hits.mmap();
    assert.equal(memory.getBigUint64(24), 0x1_2345_6789n);
    assert.equal(memory.getUint64(24), 0x1_2345_6789);
    assert.deepEqual(memory.copy(24, 8), u64(0x1_2345_6789n));
  },
});

Deno.test({
  name: "MapMemory writable stores are seen by lookups",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    using memory = object.map("hits").mmap({ writable: true });
    new BigUint64Array(memory.buffer)[2] = 42n;
    const value = object.map("hits").lookup(key(2));
    assert.deepEqual(value, u64(42n));
  },
});

Deno.test({
  name: "MapMemory.sumUint64() totals the mapped values",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    using memory = object.map("hits").mmap({ writable: true });
    new BigUint64Array(memory.buffer).set([5n, 0xffff_ffff_ffff_ffffn, 1n << 40n, 3n]);
    assert.equal(memory.sumUint64(), (1n << 40n) + 7n);
    assert.equal(memory.sumUint64(16, 2), (1n << 40n) + 3n);
    assert.throws(() => memory.sumUint64(4, 1), RangeError);
    assert.throws(() => memory.sumUint64(8, 4), RangeError);
    memory.close();
    assert.throws(() => memory.sumUint64(), ClosedError);
  },
});

Deno.test({
  name: "MapMemory read-only mapping has no writable buffer",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    using memory = object.map("hits").mmap();
    // A store through a buffer over read-only pages would kill the process.
    assert.throws(() => memory.buffer, /mapped read-only, so it has no writable buffer/);
    assert.equal(new BigUint64Array(memory.unsafeBuffer).length, 4);
  },
});

Deno.test({
  name: "MapMemory accessors check bounds and alignment",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    using memory = object.map("hits").mmap();
    assert.throws(() => memory.getUint64(32), RangeError);
    assert.throws(() => memory.getUint64(-8), RangeError);
    assert.throws(() => memory.getUint64(4), RangeError);
    assert.throws(() => memory.getBigUint64(28), RangeError);
    assert.throws(() => memory.getUint32(32), RangeError);
    assert.throws(() => memory.copy(16, 24), RangeError);
  },
});

Deno.test({
  name: "MapMemory reads after close throw and views are detached",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const memory = object.map("hits").mmap();
    const view = new BigUint64Array(memory.unsafeBuffer);
    assert.equal(view.length, 4);

    memory.close();
    memory.close();
    assert.equal(memory.closed, true);
    assert.throws(() => memory.getUint64(0), ClosedError);
    assert.throws(() => memory.getBigUint64(0), ClosedError);
    assert.throws(() => memory.buffer, ClosedError);
    assert.throws(() => memory.copy(), ClosedError);
    // The view over the unmapped pages is now empty, not a dangling pointer.
    assert.equal(view.length, 0);
    assert.equal(view[0], undefined);
  },
});

Deno.test({
  name: "MapMemory close leaves zeros at the old address",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const memory = object.map("hits").mmap({ writable: true });
    new BigUint64Array(memory.buffer).fill(0x4141_4141_4141_4141n);
    const address = Deno.UnsafePointer.of(memory.buffer);
    assert.ok(address !== null);

    memory.close();
    // Native code that kept the address reads zeros instead of faulting.
    assert.equal(new Deno.UnsafePointerView(address).getBigUint64(0), 0n);
    using again = object.map("hits").mmap();
    assert.notEqual(
      Deno.UnsafePointer.value(Deno.UnsafePointer.of(again.unsafeBuffer)),
      Deno.UnsafePointer.value(address),
    );
    assert.equal(again.getBigUint64(0), 0x4141_4141_4141_4141n);
  },
});

Deno.test({
  name: "MapMemory with a transferred buffer throws ClosedError",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const memory = object.map("hits").mmap();
    const moved = memory.unsafeBuffer.transfer();
    assert.equal(moved.byteLength, 32);
    assert.throws(() => memory.getUint64(8), /its buffer was transferred or detached/);
    assert.throws(() => memory.copy(), ClosedError);
    memory.close();
    assert.equal(memory.closed, true);
  },
});

Deno.test({
  name: "BpfObject.close() unmaps its views",
  ...kernelTest(),
  fn() {
    const object = openObject(ATTACH).load();
    const memory = object.map("hits").mmap();
    const view = new Uint32Array(memory.unsafeBuffer);
    object.close();
    assert.equal(memory.closed, true);
    assert.throws(() => memory.getUint32(0), ClosedError);
    assert.equal(view.length, 0);
  },
});

Deno.test({
  name: "BpfMap.mmap() on a map that is not mmapable throws TypeError",
  ...kernelTest(),
  fn() {
    // With its only program turned off, the rejected fixture loads and keeps its hash map.
    const opened = openObject(REJECTED);
    opened.program("reject_me").setAutoload(false);
    using object = opened.load();
    const map = object.maps[0]!;
    assert.equal(map.typeName, "HASH");
    assert.throws(
      () => map.mmap(),
      /cannot be mmapped: it is a map of type HASH; only ARRAY maps created with map_flags BPF_F_MMAPABLE can/,
    );
  },
});

Deno.test({
  name: "BpfMap element methods check sizes before the syscall",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const hits = object.map("hits");
    assert.throws(
      () => hits.lookup(new Uint8Array(8)),
      /the key is 8 bytes, the map's key size is 4/,
    );
    assert.throws(
      () => hits.update(key(0), new Uint8Array(4)),
      /the value is 4 bytes, the map's value size is 8/,
    );
    assert.throws(() => hits.lookupPerCpu(key(0)), /not per-CPU: use lookup\(\)/);
    assert.equal(hits.lookup(key(4)), undefined);
  },
});
