// Kernel tests of typed maps over the maps of tests/fixtures/layouts.bpf.c.
// Raw bytes are built by hand from the C struct definitions, independently of
// the layout code, so a wrong offset in either shows up as a mismatch.

import assert from "node:assert/strict";
import {
  BpfError,
  ClosedError,
  encodeValue,
  i32,
  layoutHasSpinLock,
  LayoutMismatchError,
  openObject,
  possibleCpuCount,
  struct,
  TypedMap,
  typedMap,
  u16,
  u32,
  u64,
  u8,
} from "../mod.ts";
import { kernelTest, repoPath } from "./_helpers.ts";

const LAYOUTS = repoPath("tests/fixtures/layouts.bpf.o");

function u32Key(index: number): Uint8Array {
  return new Uint8Array(new Uint32Array([index]).buffer);
}

/** Returns the raw bytes of a struct flow_key, with `padding` in its 9 padding bytes. */
function rawFlowKey(
  fields: { protocol: number; addr: number; port: number; cookie: bigint },
  padding = 0,
): Uint8Array {
  const bytes = new Uint8Array(24).fill(padding);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, fields.protocol);
  view.setUint32(4, fields.addr, true);
  view.setUint16(8, fields.port, true);
  view.setBigUint64(16, fields.cookie, true);
  return bytes;
}

/** Returns the raw bytes of a struct flow_counts (24 bytes, 4 of tail padding). */
function rawFlowCounts(packets: bigint, bytes: bigint, flags: number): Uint8Array {
  const raw = new Uint8Array(24);
  const view = new DataView(raw.buffer);
  view.setBigUint64(0, packets, true);
  view.setBigUint64(8, bytes, true);
  view.setUint32(16, flags, true);
  return raw;
}

Deno.test({
  name: "TypedMap decodes raw scalars",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const raw = new Uint8Array(80);
    const view = new DataView(raw.buffer);
    view.setUint8(0, 200);
    view.setInt8(1, -100);
    view.setUint16(2, 60000, true);
    view.setInt16(4, -30000, true);
    view.setUint32(8, 4000000000, true);
    view.setInt32(12, -2000000000, true);
    view.setBigUint64(16, 0xfedc_ba98_7654_3210n, true);
    view.setBigInt64(24, -0x1234_5678_9abc_def0n, true);
    view.setUint8(32, 1);
    raw.set(new TextEncoder().encode("eleven"), 33);
    view.setUint32(44, 0xfffffff0, true);
    view.setInt32(48, -1, true);
    view.setBigUint64(56, 0x12_3456_789an, true);
    view.setFloat32(64, 1.5, true);
    view.setFloat64(72, -2.25, true);
    object.map("scalars").update(u32Key(1), raw);

    const scalars = typedMap(object, "scalars");
    assert.deepEqual(scalars.get(1), {
      u8: 200,
      s8: -100,
      u16: 60000,
      s16: -30000,
      u32: 4000000000,
      s32: -2000000000,
      u64: 0xfedc_ba98_7654_3210n,
      s64: -0x1234_5678_9abc_def0n,
      flag: true,
      name: "eleven",
      color: 0xfffffff0,
      // clang 14 marks every enum unsigned in BTF, so -1 reads as 2^32 - 1.
      delta: 4294967295,
      wide: 0x12_3456_789an,
      ratio: 1.5,
      mean: -2.25,
    });
  },
});

Deno.test({
  name: "TypedMap decodes raw nested values",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const raw = new Uint8Array(56);
    const view = new DataView(raw.buffer);
    view.setInt32(0, -1, true);
    view.setInt32(4, 2, true);
    for (let i = 0; i < 3; i++) {
      view.setInt32(8 + i * 8, i * 10, true);
      view.setInt32(12 + i * 8, -i * 10, true);
    }
    view.setBigUint64(32, 0x0403_0201_0807_0605n, true);
    for (let i = 0; i < 6; i++) view.setUint16(40 + i * 2, 100 + i, true);
    object.map("nested").update(u32Key(0), raw);

    const nested = typedMap(object, "nested");
    assert.deepEqual(nested.get(0), {
      origin: { x: -1, y: 2 },
      path: [{ x: 0, y: 0 }, { x: 10, y: -10 }, { x: 20, y: -20 }],
      word: {
        as_u64: 0x0403_0201_0807_0605n,
        as_u32: [0x0807_0605, 0x0403_0201],
        as_bytes: [5, 6, 7, 8, 1, 2, 3, 4],
      },
      grid: [[100, 101, 102], [103, 104, 105]],
    });
  },
});

Deno.test({
  name: "TypedMap round trips bitfields",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const bits = typedMap(object, "bits");
    const value = { low: 7, mid: 4095, neg: -16, wide: (1n << 40n) - 1n, tail: 255 };
    bits.set(1, value);
    assert.deepEqual(bits.get(1), value);

    const raw = object.map("bits").lookup(u32Key(1))!;
    const word = new DataView(raw.buffer).getBigUint64(0, true);
    assert.equal(word, 7n | 4095n << 3n | 16n << 15n | ((1n << 40n) - 1n) << 20n);
    assert.equal(raw[8], 255);
  },
});

Deno.test({
  name: "TypedMap round trips struct keys",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const flows = typedMap(object, "flows");
    const key = { protocol: 17, addr: 0x0100007f, port: 53, cookie: 99n };
    const counts = { packets: 3n, bytes: 180n, flags: 1 };

    assert.equal(flows.get(key), undefined);
    flows.set(key, counts);
    assert.deepEqual(flows.get(key), counts);
    assert.deepEqual(object.map("flows").lookup(rawFlowKey(key)), rawFlowCounts(3n, 180n, 1));
    assert.equal(flows.delete(key), true);
    assert.equal(flows.delete(key), false);
    assert.equal(flows.get(key), undefined);
  },
});

Deno.test({
  name: "TypedMap zeroes key padding",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const flows = typedMap(object, "flows");
    const raw = object.map("flows");
    const key = { protocol: 6, addr: 1, port: 443, cookie: 5n };

    // The same fields with garbage padding are a different key to the kernel.
    raw.update(rawFlowKey(key, 0xaa), rawFlowCounts(1n, 1n, 1));
    assert.equal(flows.get(key), undefined);

    flows.set(key, { packets: 2n, bytes: 2n, flags: 2 });
    assert.deepEqual(raw.lookup(rawFlowKey(key, 0)), rawFlowCounts(2n, 2n, 2));
    assert.deepEqual(raw.lookup(rawFlowKey(key, 0xaa)), rawFlowCounts(1n, 1n, 1));
    assert.deepEqual([...encodeValue(flows.key, key)], [...rawFlowKey(key, 0)]);
  },
});

Deno.test({
  name: "TypedMap getPerCpu decodes every CPU",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const perCpu = typedMap(object, "per_cpu");
    const values = perCpu.getPerCpu(1);
    assert.ok(values !== undefined);
    assert.equal(values.length, possibleCpuCount());
    assert.deepEqual(values[0], { packets: 0n, bytes: 0n, flags: 0 });
    assert.throws(() => perCpu.get(1), /use getPerCpu/);
    assert.throws(() => perCpu.set(1, { packets: 0n, bytes: 0n, flags: 0 }), /use setPerCpu/);
  },
});

Deno.test({
  name: "TypedMap setPerCpu writes every CPU",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const perCpu = typedMap(object, "per_cpu");
    const written = Array.from({ length: possibleCpuCount() }, (_, cpu) => ({
      packets: BigInt(cpu + 1),
      bytes: BigInt(1000 * (cpu + 1)),
      flags: cpu,
    }));
    perCpu.setPerCpu(1, written);
    assert.deepEqual(perCpu.getPerCpu(1), written);
    assert.throws(() => perCpu.setPerCpu(1, written.slice(1)), /one per possible CPU/);
  },
});

Deno.test({
  name: "BpfMap.typed() uses the map's BTF",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const perCpu = object.map("per_cpu").typed();
    assert.equal(perCpu.getPerCpu(1)?.length, possibleCpuCount());
    assert.throws(() => object.map("per_cpu").typed({ key: u64 }), /layout/);
  },
});

Deno.test({
  name: "typedMap checks declared layouts",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const key = struct({ protocol: u8, addr: u32, port: u16, cookie: u64 });
    const value = struct({ packets: u64, bytes: u64, flags: u32 });
    const flows = typedMap(object, "flows", { key, value });
    flows.set({ protocol: 1, addr: 2, port: 3, cookie: 4n }, { packets: 5n, bytes: 6n, flags: 7 });
    const got = flows.get({ protocol: 1, addr: 2, port: 3, cookie: 4n });
    assert.deepEqual(got, { packets: 5n, bytes: 6n, flags: 7 });

    const wrong = struct({ packets: u64, bytes: u32, flags: u32, pad: u64 });
    assert.throws(() => typedMap(object, "flows", { value: wrong }), (error: unknown) => {
      assert.ok(error instanceof LayoutMismatchError);
      assert.equal(error.field, "bytes");
      assert.match(error.message, /the value of map "flows"/);
      assert.match(
        error.message,
        /field "bytes" is at offset 8 \(size 4\) in the declared layout but at offset 8 \(size 8\) in BTF/,
      );
      return true;
    });
  },
});

Deno.test({
  name: "typedMap needs layouts without BTF",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    assert.deepEqual(object.mapLayouts("no_btf"), { key: undefined, value: undefined });
    assert.throws(
      () => typedMap(object, "no_btf"),
      /Map "no_btf" has no BTF type for its key: declare its layout in the options/,
    );
    const typed = typedMap(object, "no_btf", { key: u32, value: u64 });
    typed.set(7, 70n);
    assert.equal(typed.get(7), 70n);
  },
});

Deno.test({
  name: "TypedMap rejects wrong layout sizes",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    assert.throws(
      () => new TypedMap(object.map("no_btf"), { key: u16, value: u64 }),
      /the key layout is 2 bytes, the map's key size is 4/,
    );
  },
});

Deno.test({
  name: "TypedMap finds the spin lock",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    const locked = typedMap(object, "locked");
    assert.equal(layoutHasSpinLock(locked.value), true);
    assert.equal(layoutHasSpinLock(typedMap(object, "flows").value), false);
    locked.set(1, { lock: null, pad: 0, count: 12n });
    assert.deepEqual(locked.get(1), { lock: null, pad: 0, count: 12n });
    assert.throws(
      () => typedMap(object, "locked", { value: struct({ lock: i32, pad: u32, count: u64 }) }),
      /field "lock" is i32 in the declared layout but struct bpf_spin_lock in BTF/,
    );
  },
});

Deno.test({
  name: "TypedMap fails after close",
  ...kernelTest(),
  fn() {
    const object = openObject(LAYOUTS).load();
    const flows = typedMap(object, "flows");
    object.close();
    assert.throws(() => flows.get({ protocol: 1, addr: 1, port: 1, cookie: 1n }), ClosedError);
    assert.throws(() => object.mapLayouts("flows"), ClosedError);
    assert.throws(() => typedMap(object, "flows"), ClosedError);
  },
});

Deno.test({
  name: "BpfObject.mapLayouts names a missing map",
  ...kernelTest(),
  fn() {
    using object = openObject(LAYOUTS).load();
    assert.throws(() => object.mapLayouts("nope"), (error: unknown) => {
      assert.ok(error instanceof BpfError);
      assert.equal(error.code, "ENOENT");
      return true;
    });
  },
});
