// Tests of layouts: the declaration DSL, encoding and decoding, layouts from
// the fixture's BTF, and checkLayout. None needs the kernel: the fixture is
// only opened, which libbpf does without BPF system calls.

import assert from "node:assert/strict";
import {
  array,
  bool,
  bytes,
  checkLayout,
  cstring,
  decodeValue,
  encodeValue,
  f32,
  f64,
  i16,
  i32,
  i64,
  i8,
  type Layout,
  layoutFromBtf,
  layoutHasSpinLock,
  LayoutMismatchError,
  openObject,
  spinLock,
  struct,
  u16,
  u32,
  u64,
  u8,
  union,
} from "../mod.ts";
import { repoPath } from "./_helpers.ts";

const LAYOUTS = repoPath("tests/fixtures/layouts.bpf.o");

/** Returns the layout of a named struct in the fixture's BTF. */
function fixtureLayout(name: string): Layout {
  using opened = openObject(LAYOUTS);
  const btf = opened.btf!;
  const type = btf.find(name, "STRUCT");
  assert.ok(type !== undefined, `fixture has struct ${name}`);
  return layoutFromBtf(btf, type.id);
}

function mismatchOf(declared: Layout<unknown>, fromBtf: Layout<unknown>): LayoutMismatchError {
  try {
    checkLayout(declared, fromBtf, 'the value of map "flows"');
  } catch (error) {
    if (error instanceof LayoutMismatchError) return error;
    throw error;
  }
  assert.fail("checkLayout() accepted a layout that differs");
}

const flowKey = struct({ protocol: u8, addr: u32, port: u16, cookie: u64 }, "flow_key");

Deno.test("struct places fields at natural alignment", () => {
  assert.deepEqual(flowKey.fields.map((field) => field.offset), [0, 4, 8, 16]);
  assert.equal(flowKey.size, 24);
  const tail = struct({ count: u64, tag: u8 });
  assert.equal(tail.size, 16);
  const packed = struct({ a: u8, b: u8, c: u16 });
  assert.equal(packed.size, 4);
  assert.equal(struct({ name: cstring(5), x: u32 }).fields[1]?.offset, 8);
  assert.equal(struct({ inner: struct({ a: u8, b: u64 }), c: u8 }).size, 24);
});

Deno.test("encodeValue zeroes padding", () => {
  const encoded = encodeValue(flowKey, { protocol: 6, addr: 0x0100007f, port: 80, cookie: 7n });
  assert.deepEqual(
    [...encoded],
    [6, 0, 0, 0, 0x7f, 0, 0, 1, 80, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0],
  );
});

Deno.test("encodeValue and decodeValue round trip scalars", () => {
  const layout = struct({
    a: u8,
    b: i8,
    c: u16,
    d: i16,
    e: u32,
    f: i32,
    g: u64,
    h: i64,
    flag: bool,
    ratio: f32,
    mean: f64,
    name: cstring(8),
    list: array(i16, 3),
    raw: bytes(3),
  });
  const value = {
    a: 255,
    b: -128,
    c: 65535,
    d: -32768,
    e: 4294967295,
    f: -2147483648,
    g: 0xffff_ffff_ffff_ffffn,
    h: -0x8000_0000_0000_0000n,
    flag: true,
    ratio: 0.5,
    mean: Math.PI,
    name: "héllo",
    list: [-1, 0, 1],
    raw: new Uint8Array([1, 2, 3]),
  };
  assert.deepEqual(decodeValue(layout, encodeValue(layout, value)), value);
});

Deno.test("encodeValue names a missing field", () => {
  assert.throws(
    () => encodeValue(flowKey, { protocol: 6, addr: 1, cookie: 1n } as never),
    (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /Missing field "port"/);
      return true;
    },
  );
  const nested = struct({ outer: struct({ inner: u32 }) });
  assert.throws(() => encodeValue(nested, { outer: {} } as never), /Missing field "outer.inner"/);
});

Deno.test("encodeValue rejects an unknown field", () => {
  assert.throws(
    () => encodeValue(flowKey, { protocol: 6, addr: 1, port: 2, cookie: 1n, prot: 1 } as never),
    /Unknown field "prot": the layout has protocol, addr, port, cookie/,
  );
});

Deno.test("encodeValue range-checks integers", () => {
  assert.throws(
    () => encodeValue(u8, 256),
    /must be an unsigned 8-bit integer \(0 to 255\), got 256/,
  );
  assert.throws(() => encodeValue(i8, -129), RangeError);
  assert.throws(() => encodeValue(u64, -1n), RangeError);
  assert.throws(() => encodeValue(u64, 2n ** 64n), RangeError);
  assert.throws(() => encodeValue(u32, 1.5), TypeError);
  assert.throws(() => encodeValue(u64, 2 ** 60 as never), TypeError);
  assert.deepEqual([...encodeValue(u64, 2 ** 52 as never)], [0, 0, 0, 0, 0, 0, 0x10, 0]);
  assert.deepEqual([...encodeValue(i16, -2)], [0xfe, 0xff]);
});

Deno.test("cstring decodes up to the first NUL", () => {
  const name = cstring(6);
  assert.equal(decodeValue(name, new Uint8Array([104, 105, 0, 120, 120, 0])), "hi");
  assert.equal(decodeValue(name, new TextEncoder().encode("abcdef")), "abcdef");
  assert.deepEqual([...encodeValue(name, "hi")], [104, 105, 0, 0, 0, 0]);
  assert.throws(() => encodeValue(name, "abcdefg"), /7 bytes as UTF-8, longer than its char\[6\]/);
});

Deno.test("union takes exactly one member", () => {
  const word = union({ wide: u64, narrow: array(u32, 2) });
  assert.deepEqual([...encodeValue(word, { narrow: [1, 2] })], [1, 0, 0, 0, 2, 0, 0, 0]);
  assert.deepEqual(decodeValue(word, encodeValue(word, { wide: 0x2_0000_0001n })), {
    wide: 0x2_0000_0001n,
    narrow: [1, 2],
  });
  assert.throws(
    () => encodeValue(word, {}),
    /give exactly one of its members \(wide, narrow\), got none/,
  );
  assert.throws(() => encodeValue(word, { wide: 1n, narrow: [1, 2] }), /got wide, narrow/);
});

Deno.test("decodeValue rejects a wrong byte count", () => {
  assert.throws(
    () => decodeValue(flowKey, new Uint8Array(16)),
    /Cannot decode struct flow_key: got 16 bytes, the layout has 24/,
  );
});

Deno.test("layoutFromBtf matches the C struct", () => {
  const scalars = fixtureLayout("scalars");
  assert.equal(scalars.kind, "struct");
  assert.ok(scalars.kind === "struct");
  const described = scalars.fields.map((field) => [field.name, field.offset, field.layout.kind]);
  assert.deepEqual(described, [
    ["u8", 0, "int"],
    ["s8", 1, "int"],
    ["u16", 2, "int"],
    ["s16", 4, "int"],
    ["u32", 8, "int"],
    ["s32", 12, "int"],
    ["u64", 16, "int"],
    ["s64", 24, "int"],
    ["flag", 32, "bool"],
    ["name", 33, "string"],
    ["color", 44, "enum"],
    ["delta", 48, "enum"],
    ["wide", 56, "enum"],
    ["ratio", 64, "float"],
    ["mean", 72, "float"],
  ]);
  assert.equal(scalars.size, 80);
});

Deno.test("layoutFromBtf decodes bitfields", () => {
  const bits = fixtureLayout("bits");
  const value = { low: 5, mid: 0xabc, neg: -7, wide: 0xab_cdef_0123n, tail: 9 };
  const encoded = encodeValue(bits, value);

  // Built by hand from the C rules: low = bits 0-2, mid = bits 3-14,
  // neg = bits 15-19, wide = bits 20-59, tail = byte 8.
  const word = 5n | 0xabcn << 3n | BigInt.asUintN(5, -7n) << 15n | 0xab_cdef_0123n << 20n;
  const expected = new Uint8Array(16);
  new DataView(expected.buffer).setBigUint64(0, word, true);
  expected[8] = 9;
  assert.deepEqual([...encoded], [...expected]);
  assert.deepEqual(decodeValue(bits, expected), value);
});

Deno.test("layoutFromBtf encodes bitfield ranges", () => {
  const bits = fixtureLayout("bits");
  const value = { low: 8, mid: 0, neg: 0, wide: 0n, tail: 0 };
  assert.throws(
    () => encodeValue(bits, value),
    /Field "low" must be an unsigned 3-bit integer \(0 to 7\), got 8/,
  );
  assert.throws(
    () => encodeValue(bits, { ...value, low: 0, neg: 16 }),
    /signed 5-bit integer \(-16 to 15\)/,
  );
});

Deno.test("layoutFromBtf reads char arrays as strings", () => {
  const scalars = fixtureLayout("scalars");
  assert.ok(scalars.kind === "struct");
  const name = scalars.fields.find((field) => field.name === "name");
  assert.deepEqual(name?.layout, { kind: "string", size: 11 });
  const nested = fixtureLayout("nested");
  assert.ok(nested.kind === "struct");
  const word = nested.fields.find((field) => field.name === "word")?.layout;
  assert.ok(word?.kind === "union");
  // __u8 arrays are bytes of numbers, not strings.
  assert.equal(word.fields[2]?.layout.kind, "array");
});

Deno.test("layoutHasSpinLock finds the lock", () => {
  assert.equal(layoutHasSpinLock(fixtureLayout("locked")), true);
  assert.equal(layoutHasSpinLock(fixtureLayout("flow_counts")), false);
  assert.equal(layoutHasSpinLock(struct({ inner: array(struct({ lock: spinLock }), 2) })), true);
});

Deno.test("checkLayout accepts a matching declaration", () => {
  checkLayout(flowKey, fixtureLayout("flow_key"), 'the key of map "flows"');
  const nested = struct({
    origin: struct({ x: i32, y: i32 }),
    path: array(struct({ x: i32, y: i32 }), 3),
    word: union({ as_u64: u64, as_u32: array(u32, 2), as_bytes: array(u8, 8) }),
    grid: array(array(u16, 3), 2),
  });
  checkLayout(nested, fixtureLayout("nested"), "the value");
});

Deno.test("checkLayout names a field at the wrong offset", () => {
  const declared = struct({ protocol: u8, addr: u16, port: u16, cookie: u64 });
  const error = mismatchOf(declared, fixtureLayout("flow_key"));
  assert.equal(error.field, "addr");
  assert.deepEqual(error.declared, { offset: 2, size: 2 });
  assert.deepEqual(error.btf, { offset: 4, size: 4 });
  assert.equal(error.code, "EINVAL");
  assert.match(
    error.message,
    /the value of map "flows" .*field "addr" is at offset 2 \(size 2\) in the declared layout but at offset 4 \(size 4\) in BTF/,
  );
});

Deno.test("checkLayout names a field of the wrong size", () => {
  const declared = struct({ packets: u64, bytes: u32, flags: u32 });
  const error = mismatchOf(declared, fixtureLayout("flow_counts"));
  assert.equal(error.field, "bytes");
  assert.match(
    error.message,
    /field "bytes" is at offset 8 \(size 4\) in the declared layout but at offset 8 \(size 8\) in BTF/,
  );
});

Deno.test("checkLayout compares whole sizes", () => {
  const error = mismatchOf(u32, u64);
  assert.equal(error.field, "");
  assert.match(
    error.message,
    /the value is 4 bytes in the declared layout but 8 bytes in BTF \(u64\)/,
  );
});

Deno.test("checkLayout names a nested field", () => {
  const declared = struct({
    origin: struct({ x: i32, y: i32 }),
    path: array(struct({ x: u32, y: i32 }), 3),
    word: union({ as_u64: u64, as_u32: array(u32, 2), as_bytes: array(u8, 8) }),
    grid: array(array(u16, 3), 2),
  });
  const error = mismatchOf(declared, fixtureLayout("nested"));
  assert.equal(error.field, "path[].x");
  assert.match(error.message, /field "path\[\]\.x" is u32 in the declared layout but i32 in BTF/);
});

Deno.test("checkLayout reports missing and extra fields", () => {
  const missing = mismatchOf(
    struct({ packets: u64, bytes: u64, pad: u64 }),
    fixtureLayout("flow_counts"),
  );
  assert.match(
    missing.message,
    /field "flags" at offset 16 \(size 4\) in BTF is missing from the declared layout/,
  );
  const withLock = fixtureLayout("locked");
  const noLock = mismatchOf(struct({ lock: u32, pad: u32, count: u64 }), withLock);
  assert.match(
    noLock.message,
    /field "lock" is u32 in the declared layout but struct bpf_spin_lock in BTF/,
  );
});

Deno.test("checkLayout reports a bitfield declared whole", () => {
  const declared = struct({ low: u32, rest: u32, tail: u64 });
  const error = mismatchOf(declared, fixtureLayout("bits"));
  assert.equal(error.field, "low");
  assert.match(
    error.message,
    /field "low" is not a bitfield in the declared layout but bits 0\.\.2 in BTF/,
  );
});

Deno.test("enums of clang 14 read as unsigned", () => {
  const scalars = fixtureLayout("scalars");
  assert.ok(scalars.kind === "struct");
  const delta = scalars.fields.find((field) => field.name === "delta")!.layout;
  assert.ok(delta.kind === "enum");
  assert.equal(delta.signed, false);
  const minusOne = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
  assert.equal(decodeValue(delta, minusOne), 4294967295);
  // A signed integer declared in its place is accepted, and reads -1.
  checkLayout(i32, delta, "the delta");
  assert.equal(decodeValue(i32, minusOne), -1);
  assert.deepEqual([...encodeValue(delta, "DELTA_UP")], [1, 0, 0, 0]);
});
