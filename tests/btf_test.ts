// Tests of the BTF parser. None needs the kernel: the fixture's BTF is read
// through libbpf's open step, which makes no system call into BPF, and the
// malformed inputs are built here byte by byte.

import assert from "node:assert/strict";
import { BpfError, Btf, BtfKind, layoutFromBtf, openObject } from "../mod.ts";
import { repoPath } from "./_helpers.ts";

const LAYOUTS = repoPath("tests/fixtures/layouts.bpf.o");

/** Builds raw little-endian BTF from type records (as u32 words) and names. */
class BtfBuilder {
  #words: number[] = [];
  #strings = [0];

  /** Adds a name to the string section and returns its offset. */
  name(text: string): number {
    const offset = this.#strings.length;
    this.#strings.push(...new TextEncoder().encode(text), 0);
    return offset;
  }

  /** Appends a type record: name offset, info word from kind/vlen/kind flag, size or type, then extra words. */
  type(
    nameOffset: number,
    kind: number,
    sizeOrType: number,
    extra: number[] = [],
    options: { vlen?: number; kindFlag?: boolean } = {},
  ): this {
    const info = ((options.kindFlag ? 1 : 0) << 31 | kind << 24 | (options.vlen ?? 0)) >>> 0;
    this.#words.push(nameOffset, info, sizeOrType, ...extra);
    return this;
  }

  /** Returns header + types + strings; `header` overrides header fields. */
  build(
    header: Partial<Record<"magic" | "typeLength" | "stringOffset" | "stringLength", number>> = {},
  ): Uint8Array {
    const types = new Uint8Array(new Uint32Array(this.#words).buffer);
    const strings = new Uint8Array(this.#strings);
    const bytes = new Uint8Array(24 + types.length + strings.length);
    const view = new DataView(bytes.buffer);
    view.setUint16(0, header.magic ?? 0xeb9f, true);
    view.setUint8(2, 1);
    view.setUint32(4, 24, true);
    view.setUint32(8, 0, true);
    view.setUint32(12, header.typeLength ?? types.length, true);
    view.setUint32(16, header.stringOffset ?? types.length, true);
    view.setUint32(20, header.stringLength ?? strings.length, true);
    bytes.set(types, 24);
    bytes.set(strings, 24 + types.length);
    return bytes;
  }
}

/** Returns a valid BTF: 1 = unsigned int, 2 = typedef u32, 3 = struct pair { u32 a; u32 b; }. */
function validBtf(): BtfBuilder {
  const btf = new BtfBuilder();
  btf.type(btf.name("unsigned int"), BtfKind.INT, 4, [32]);
  btf.type(btf.name("u32"), BtfKind.TYPEDEF, 1);
  const a = btf.name("a");
  const b = btf.name("b");
  btf.type(btf.name("pair"), BtfKind.STRUCT, 8, [a, 2, 0, b, 2, 32], { vlen: 2 });
  return btf;
}

function parseError(bytes: Uint8Array): BpfError {
  try {
    Btf.parse(bytes);
  } catch (error) {
    if (error instanceof BpfError) return error;
    throw error;
  }
  assert.fail("Btf.parse() accepted malformed BTF");
}

/** Returns the `.BTF` section of an ELF64 little-endian object file. */
function elfSection(file: Uint8Array, name: string): Uint8Array {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const sectionTable = Number(view.getBigUint64(0x28, true));
  const entrySize = view.getUint16(0x3a, true);
  const count = view.getUint16(0x3c, true);
  const namesIndex = view.getUint16(0x3e, true);
  const header = (index: number) => sectionTable + index * entrySize;
  const namesOffset = Number(view.getBigUint64(header(namesIndex) + 0x18, true));
  for (let index = 0; index < count; index++) {
    const nameStart = namesOffset + view.getUint32(header(index), true);
    const nameEnd = file.indexOf(0, nameStart);
    if (new TextDecoder().decode(file.subarray(nameStart, nameEnd)) !== name) continue;
    const offset = Number(view.getBigUint64(header(index) + 0x18, true));
    const size = Number(view.getBigUint64(header(index) + 0x20, true));
    return file.subarray(offset, offset + size);
  }
  throw new Error(`test setup: no section ${name}`);
}

Deno.test("Btf.parse reads a valid type section", () => {
  const btf = Btf.parse(validBtf().build());
  assert.equal(btf.typeCount, 3);
  assert.deepEqual(btf.type(1), {
    id: 1,
    name: "unsigned int",
    kind: "INT",
    size: 4,
    signed: false,
    char: false,
    bool: false,
    bitOffset: 0,
    bits: 32,
  });
  assert.equal(btf.resolve(2).id, 1);
  assert.equal(btf.size(3), 8);
  assert.equal(btf.find("pair", "STRUCT")?.id, 3);
  assert.equal(btf.find("pair", "UNION"), undefined);
});

Deno.test("Btf.parse rejects a truncated header", () => {
  const error = parseError(new Uint8Array([0x9f, 0xeb, 1, 0, 24, 0, 0, 0]));
  assert.equal(error.code, "EINVAL");
  assert.match(error.message, /Failed to parse BTF: the header is truncated: 8 bytes, at least 24/);
});

Deno.test("Btf.parse rejects a bad magic", () => {
  const error = parseError(validBtf().build({ magic: 0x1234 }));
  assert.match(error.message, /bad magic 0x1234, expected 0xeb9f/);
});

Deno.test("Btf.parse rejects big-endian BTF", () => {
  const error = parseError(validBtf().build({ magic: 0x9feb }));
  assert.match(error.message, /big-endian/);
});

Deno.test("Btf.parse rejects a type section past the end", () => {
  const error = parseError(validBtf().build({ typeLength: 4096 }));
  assert.match(error.message, /the type section \(offset 24, 4096 bytes\) extends past the end/);
});

Deno.test("Btf.parse rejects a string section past the end", () => {
  const error = parseError(validBtf().build({ stringLength: 4096 }));
  assert.match(error.message, /the string section .* extends past the end/);
});

Deno.test("Btf.parse rejects a bad name offset", () => {
  const btf = validBtf();
  btf.type(5000, BtfKind.INT, 4, [32]);
  const error = parseError(btf.build());
  assert.match(error.message, /type 4 has name offset 5000/);
  assert.match(error.message, /string section/);
});

Deno.test("Btf.parse rejects a record cut short", () => {
  const btf = new BtfBuilder();
  const a = btf.name("a");
  // vlen is 3, but only one member's 12 bytes follow.
  btf.type(btf.name("short"), BtfKind.STRUCT, 12, [a, 0, 0], { vlen: 3 });
  const error = parseError(btf.build());
  assert.match(error.message, /type 1 is cut short: its 3 members needs 36 bytes/);
});

Deno.test("Btf.parse rejects an unknown kind", () => {
  const btf = new BtfBuilder();
  btf.type(0, 25, 4);
  const error = parseError(btf.build());
  assert.match(error.message, /type 1 has unknown kind 25/);
});

Deno.test("Btf.parse rejects a type id out of range", () => {
  const btf = new BtfBuilder();
  btf.type(0, BtfKind.PTR, 99);
  const error = parseError(btf.build());
  assert.match(error.message, /type 1 refers to target type 99, but there are only 1 types/);
});

Deno.test("Btf.resolve stops on a typedef cycle", () => {
  const btf = new BtfBuilder();
  btf.type(btf.name("a"), BtfKind.TYPEDEF, 2);
  btf.type(btf.name("b"), BtfKind.TYPEDEF, 1);
  const parsed = Btf.parse(btf.build());
  assert.throws(() => parsed.resolve(1), (error: unknown) => {
    assert.ok(error instanceof BpfError);
    assert.match(error.message, /type 1 is part of a typedef or qualifier cycle/);
    return true;
  });
});

Deno.test("layoutFromBtf rejects an array of itself", () => {
  const btf = new BtfBuilder();
  btf.type(btf.name("unsigned int"), BtfKind.INT, 4, [32]);
  btf.type(0, BtfKind.ARRAY, 0, [2, 1, 4]);
  const parsed = Btf.parse(btf.build());
  assert.throws(() => layoutFromBtf(parsed, 2), /ARRAY 2 "" contains itself/);
});

Deno.test("layoutFromBtf rejects a struct that contains itself", () => {
  const btf = new BtfBuilder();
  const self = btf.name("self");
  btf.type(btf.name("loop"), BtfKind.STRUCT, 8, [self, 1, 0], { vlen: 1 });
  const parsed = Btf.parse(btf.build());
  assert.throws(() => layoutFromBtf(parsed, 1), /STRUCT 1 "loop" contains itself/);
});

Deno.test("Btf.type rejects id 0 and ids past the end", () => {
  const btf = Btf.parse(validBtf().build());
  assert.throws(() => btf.type(0), RangeError);
  assert.throws(() => btf.type(4), /ids run from 1 to 3/);
});

Deno.test("Btf.parse reads signed ENUM64 values", () => {
  const btf = new BtfBuilder();
  const low = btf.name("LOW");
  const high = btf.name("HIGH");
  // LOW = -5, HIGH = 0x123456789a
  btf.type(btf.name("wide"), BtfKind.ENUM64, 8, [
    low,
    0xfffffffb,
    0xffffffff,
    high,
    0x3456789a,
    0x12,
  ], {
    vlen: 2,
    kindFlag: true,
  });
  const type = Btf.parse(btf.build()).type(1);
  assert.equal(type.kind, "ENUM64");
  assert.ok(type.kind === "ENUM64");
  assert.equal(type.signed, true);
  assert.deepEqual(type.enumerators, [
    { name: "LOW", value: -5n },
    { name: "HIGH", value: 0x123456789an },
  ]);
});

Deno.test("Btf.parse splits kind-flag bitfield offsets", () => {
  const btf = new BtfBuilder();
  btf.type(btf.name("unsigned int"), BtfKind.INT, 4, [32]);
  const low = btf.name("low");
  const mid = btf.name("mid");
  btf.type(btf.name("bits"), BtfKind.STRUCT, 4, [low, 1, 3 << 24 | 0, mid, 1, 12 << 24 | 3], {
    vlen: 2,
    kindFlag: true,
  });
  const type = Btf.parse(btf.build()).type(2);
  assert.ok(type.kind === "STRUCT");
  assert.deepEqual(type.members, [
    { name: "low", type: 1, bitOffset: 0, bitSize: 3 },
    { name: "mid", type: 1, bitOffset: 3, bitSize: 12 },
  ]);
});

Deno.test("OpenObject.btf parses the fixture's types", () => {
  using opened = openObject(LAYOUTS);
  const btf = opened.btf;
  assert.ok(btf !== undefined);
  const key = btf.find("flow_key", "STRUCT");
  assert.ok(key?.kind === "STRUCT");
  assert.equal(btf.size(key.id), 24);
  assert.deepEqual(key.members.map((member) => [member.name, member.bitOffset / 8]), [
    ["protocol", 0],
    ["addr", 4],
    ["port", 8],
    ["cookie", 16],
  ]);
  const u32 = btf.resolve(key.members[1]!.type);
  assert.equal(u32.kind, "INT");
  assert.equal(u32.name, "unsigned int");
  assert.equal(btf.find("wide", "ENUM")?.kind, "ENUM");
});

Deno.test("Btf.parse fails cleanly on every truncation", () => {
  const raw = elfSection(Deno.readFileSync(LAYOUTS), ".BTF");
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  Btf.parse(raw);

  // Cutting the data short must always be caught by the section bounds check,
  // and cutting the type section (with the header adjusted) by a record check.
  for (let length = 0; length < raw.length; length += 7) {
    assert.throws(() => Btf.parse(raw.subarray(0, length)), BpfError, `length ${length}`);
  }
  const typeLength = view.getUint32(12, true);
  for (let cut = 1; cut < typeLength; cut += 5) {
    const copy = raw.slice();
    new DataView(copy.buffer).setUint32(12, typeLength - cut, true);
    try {
      Btf.parse(copy);
    } catch (error) {
      assert.ok(error instanceof BpfError, `cut ${cut}: ${error}`);
    }
  }
});

Deno.test("Btf.parse fails cleanly on corrupted bytes", () => {
  const raw = elfSection(Deno.readFileSync(LAYOUTS), ".BTF");
  // A fixed-seed generator, so a failure can be replayed.
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 300; round++) {
    const copy = raw.slice();
    for (let flips = 0; flips < 4; flips++) {
      copy[Math.floor(random() * copy.length)] = Math.floor(random() * 256);
    }
    let btf: Btf;
    try {
      btf = Btf.parse(copy);
    } catch (error) {
      assert.ok(error instanceof BpfError, `round ${round}: ${error}`);
      continue;
    }
    // A corrupted but parseable BTF may still describe impossible layouts:
    // those must be errors of the documented classes, never a hang or crash.
    for (let id = 1; id <= btf.typeCount; id++) {
      try {
        layoutFromBtf(btf, id);
      } catch (error) {
        const expected = error instanceof BpfError || error instanceof TypeError ||
          error instanceof RangeError;
        assert.ok(expected, `round ${round}, type ${id}: ${error}`);
        assert.doesNotMatch(String(error), /call stack/, `round ${round}, type ${id}`);
      }
    }
  }
});
