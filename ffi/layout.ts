/**
 * Layouts: a small model of C types (integers, enums, floats, character
 * strings, arrays, structs, unions, bitfields, `struct bpf_spin_lock`) that
 * turns the raw bytes of map keys, map values and global variables into
 * JavaScript values and back.
 *
 * A layout comes from BTF ({@linkcode layoutFromBtf}) or is declared in
 * TypeScript with {@linkcode struct}, {@linkcode u32}, {@linkcode cstring} and
 * the other constructors here, which place fields the way a C compiler does
 * (natural alignment). {@linkcode checkLayout} compares a declared layout with
 * the one from BTF and names the first field that differs.
 *
 * @module
 */

import { Errno } from "./_errno.ts";
import { BpfError } from "./errors.ts";

export { decodeValue, encodeValue } from "./_layout_codec.ts";
export { layoutFromBtf } from "./_layout_btf.ts";

declare const valueType: unique symbol;

/**
 * A JavaScript value decoded from a layout. Integers and enums narrower than
 * 64 bits and floats decode to numbers, 64-bit integers and enums to bigints.
 * C `char` arrays decode to strings, other arrays to arrays, structs and
 * unions to objects, and opaque bytes to a `Uint8Array`. A
 * `struct bpf_spin_lock` decodes to `null`, because its bytes mean nothing
 * to user space.
 *
 * @example
 * ```ts
 * import type { LayoutValue } from "./layout.ts";
 *
 * const value: LayoutValue = { pid: 42, comm: "bash", bytes: 1024n };
 * ```
 */
export type LayoutValue =
  | number
  | bigint
  | boolean
  | string
  | null
  | Uint8Array
  | LayoutValue[]
  | { [field: string]: LayoutValue };

/**
 * An integer of 1, 2, 4 or 8 bytes. 8-byte integers decode to `bigint`, the others to `number`.
 *
 * @example
 * ```ts
 * import { type IntLayout, u32 } from "./layout.ts";
 *
 * const layout: IntLayout = u32;
 * console.log(layout.size, layout.signed); // 4 false
 * ```
 */
export interface IntLayout {
  readonly kind: "int";
  readonly size: 1 | 2 | 4 | 8;
  readonly signed: boolean;
}

/**
 * A C `bool` (`_Bool`): one byte, decoded as `byte !== 0`.
 *
 * @example
 * ```ts
 * import { bool, type BoolLayout } from "./layout.ts";
 *
 * const layout: BoolLayout = bool;
 * ```
 */
export interface BoolLayout {
  readonly kind: "bool";
  readonly size: 1;
}

/**
 * A `float` (4 bytes) or `double` (8 bytes).
 *
 * @example
 * ```ts
 * import { f64, type FloatLayout } from "./layout.ts";
 *
 * const layout: FloatLayout = f64;
 * ```
 */
export interface FloatLayout {
  readonly kind: "float";
  readonly size: 4 | 8;
}

/**
 * An enumerator of an {@linkcode EnumLayout}.
 *
 * @example
 * ```ts
 * import type { LayoutEnumerator } from "./layout.ts";
 *
 * const up: LayoutEnumerator = { name: "DELTA_UP", value: 1n };
 * ```
 */
export interface LayoutEnumerator {
  readonly name: string;
  readonly value: bigint;
}

/**
 * A C enum. It decodes to its numeric value (a `number`, or a `bigint` for
 * 8-byte enums); encoding also accepts an enumerator's name.
 *
 * @example List the enumerators of a layout from BTF
 * ```ts
 * import type { EnumLayout } from "./layout.ts";
 *
 * function names(layout: EnumLayout): string[] {
 *   return layout.enumerators.map((enumerator) => enumerator.name);
 * }
 * ```
 */
export interface EnumLayout {
  readonly kind: "enum";
  readonly size: 1 | 2 | 4 | 8;
  readonly signed: boolean;
  /** The C name of the enum, `""` when anonymous. */
  readonly name: string;
  readonly enumerators: readonly LayoutEnumerator[];
}

/**
 * A C `char` array holding a string: decoded as UTF-8 up to the first NUL
 * byte (or the whole array when it has none).
 *
 * @example
 * ```ts
 * import { cstring, type StringLayout } from "./layout.ts";
 *
 * const comm: StringLayout = cstring(16);
 * ```
 */
export interface StringLayout {
  readonly kind: "string";
  readonly size: number;
}

/**
 * A fixed-length array. Elements follow each other every `element.size` bytes.
 *
 * @example
 * ```ts
 * import { array, type ArrayLayout, u64 } from "./layout.ts";
 *
 * const slots: ArrayLayout = array(u64, 64);
 * console.log(slots.length, slots.size); // 64 512
 * ```
 */
export interface ArrayLayout {
  readonly kind: "array";
  readonly size: number;
  readonly length: number;
  readonly element: Layout<unknown>;
}

/**
 * A C struct: fields at increasing offsets, with padding between them.
 *
 * @example
 * ```ts
 * import { struct, type StructLayout, u32, u8 } from "./layout.ts";
 *
 * const key: StructLayout = struct({ protocol: u8, addr: u32 });
 * console.log(key.fields[1]?.offset); // 4
 * ```
 */
export interface StructLayout {
  readonly kind: "struct";
  readonly size: number;
  /** The C name of the struct, `""` when anonymous. */
  readonly name: string;
  readonly fields: readonly LayoutField[];
}

/**
 * A C union: every field starts at offset 0.
 *
 * @example
 * ```ts
 * import { u32, u64, union, type UnionLayout } from "./layout.ts";
 *
 * const word: UnionLayout = union({ wide: u64, narrow: u32 });
 * console.log(word.size); // 8
 * ```
 */
export interface UnionLayout {
  readonly kind: "union";
  readonly size: number;
  /** The C name of the union, `""` when anonymous. */
  readonly name: string;
  readonly fields: readonly LayoutField[];
}

/**
 * A `struct bpf_spin_lock`. A map value that contains one can be read and
 * written atomically with `BPF_F_LOCK`; the lock itself decodes to `null`
 * and is written as zeros.
 *
 * @example
 * ```ts
 * import { spinLock, type SpinLockLayout } from "./layout.ts";
 *
 * const lock: SpinLockLayout = spinLock;
 * ```
 */
export interface SpinLockLayout {
  readonly kind: "spin_lock";
  readonly size: 4;
}

/**
 * Bytes without a decoding: a type bpfscope does not model (such as
 * `__int128` or a kernel pointer wrapper), or a field declared with
 * {@linkcode bytes}. It decodes to a copy of the bytes.
 *
 * @example
 * ```ts
 * import { bytes, type BytesLayout } from "./layout.ts";
 *
 * const opaque: BytesLayout = bytes(16);
 * ```
 */
export interface BytesLayout {
  readonly kind: "bytes";
  readonly size: number;
}

/**
 * A bitfield's position: bits `offset` to `offset + size - 1`, counted from
 * the start of the enclosing struct, least significant bit first (the
 * little-endian layout of x86_64 and arm64).
 *
 * @example `__u32 mid : 12` after a 3-bit field
 * ```ts
 * import type { BitRange } from "./layout.ts";
 *
 * const mid: BitRange = { offset: 3, size: 12 };
 * ```
 */
export interface BitRange {
  readonly offset: number;
  readonly size: number;
}

/**
 * A field of a struct or union.
 *
 * @example Print a struct's fields
 * ```ts
 * import { struct, u16, u8 } from "./layout.ts";
 *
 * for (const field of struct({ version: u8, port: u16 }).fields) {
 *   console.log(field.name, field.offset, field.layout.size);
 * }
 * ```
 */
export interface LayoutField {
  /** The field's name; `""` for an anonymous struct or union, whose fields read as the parent's. */
  readonly name: string;
  /** The offset in bytes from the start of the parent (the first byte of a bitfield). */
  readonly offset: number;
  readonly layout: Layout<unknown>;
  /** The bits of a bitfield, whose `layout` is then its declared integer, enum or bool type. */
  readonly bits?: BitRange;
}

/**
 * Every kind of layout, without the type of value it decodes to.
 *
 * @example Count the leaf fields of a layout
 * ```ts
 * import type { AnyLayout } from "./layout.ts";
 *
 * function leaves(layout: AnyLayout): number {
 *   if (layout.kind === "struct" || layout.kind === "union") {
 *     return layout.fields.reduce((sum, field) => sum + leaves(field.layout), 0);
 *   }
 *   return 1;
 * }
 * ```
 */
export type AnyLayout =
  | IntLayout
  | BoolLayout
  | FloatLayout
  | EnumLayout
  | StringLayout
  | ArrayLayout
  | StructLayout
  | UnionLayout
  | SpinLockLayout
  | BytesLayout;

/**
 * The layout of a C type, whose decoded values have type `T`. Layouts from
 * BTF decode to {@linkcode LayoutValue}; declared layouts carry the exact
 * type, such as `{ pid: number; bytes: bigint }`.
 *
 * Layouts are plain immutable objects: `kind`, `size` in bytes and the
 * kind's own fields.
 *
 * @example Read a declared struct's field offsets
 * ```ts
 * import { type Layout, struct, u8, u64 } from "./layout.ts";
 *
 * const key: Layout<{ protocol: number; cookie: bigint }> = struct({ protocol: u8, cookie: u64 });
 * if (key.kind === "struct") console.log(key.fields.map((f) => [f.name, f.offset])); // [["protocol", 0], ["cookie", 8]]
 * ```
 */
export type Layout<T = LayoutValue> = AnyLayout & Typed<T>;

/** The phantom property that carries a layout's decoded type; never present at run time. */
type Typed<T> = { readonly [valueType]?: T };

/**
 * The type of value a layout decodes to.
 *
 * @example
 * ```ts
 * import { cstring, type LayoutType, struct, u32 } from "./layout.ts";
 *
 * const task = struct({ pid: u32, comm: cstring(16) });
 * const value: LayoutType<typeof task> = { pid: 1, comm: "init" };
 * ```
 */
export type LayoutType<L> = L extends Typed<infer T> ? T : never;

/**
 * A declared layout that does not match the object's BTF. The message names
 * the field (as a path such as `"addr.port"` or `"path[].x"`), its offset and
 * size in both layouts, or what else differs.
 *
 * @example Report a mismatch
 * ```ts
 * import { checkLayout, LayoutMismatchError, struct, u32, u64 } from "./layout.ts";
 *
 * try {
 *   checkLayout(struct({ bytes: u32 }), struct({ bytes: u64 }), 'the value of map "flows"');
 * } catch (error) {
 *   if (error instanceof LayoutMismatchError) console.log(error.field); // "bytes"
 * }
 * ```
 */
export class LayoutMismatchError extends BpfError {
  override name = "LayoutMismatchError";
  /** The path of the first field that differs; `""` for the whole value. */
  readonly field: string;
  /** The field's offset and size in the declared layout, when it is there. */
  readonly declared: { offset: number; size: number } | undefined;
  /** The field's offset and size in the BTF layout, when it is there. */
  readonly btf: { offset: number; size: number } | undefined;

  /** Creates the error; `where` names the checked value, such as `the key of map "flows"`. */
  constructor(options: {
    where: string;
    field: string;
    detail: string;
    declared?: { offset: number; size: number };
    btf?: { offset: number; size: number };
  }) {
    super({
      op: `match the declared layout of ${options.where} to BTF`,
      errno: Errno.EINVAL,
      detail: options.detail,
      hint: "change the declared layout to match the C type, or rebuild the object",
    });
    this.field = options.field;
    this.declared = options.declared;
    this.btf = options.btf;
  }
}

function int<T>(size: 1 | 2 | 4 | 8, signed: boolean): IntLayout & Typed<T> {
  return Object.freeze({ kind: "int", size, signed });
}

/**
 * An unsigned 8-bit integer (`__u8`), decoded as a number.
 *
 * @example
 * ```ts
 * import { struct, u8 } from "./layout.ts";
 *
 * const header = struct({ version: u8, flags: u8 });
 * ```
 */
export const u8: IntLayout & Typed<number> = int(1, false);
/**
 * An unsigned 16-bit integer (`__u16`), decoded as a number.
 *
 * @example
 * ```ts
 * import { struct, u16 } from "./layout.ts";
 *
 * const port = struct({ port: u16 });
 * ```
 */
export const u16: IntLayout & Typed<number> = int(2, false);
/**
 * An unsigned 32-bit integer (`__u32`), decoded as a number.
 *
 * @example
 * ```ts
 * import { struct, u32 } from "./layout.ts";
 *
 * const task = struct({ pid: u32 });
 * ```
 */
export const u32: IntLayout & Typed<number> = int(4, false);
/**
 * An unsigned 64-bit integer (`__u64`), decoded exactly as a bigint.
 *
 * @example
 * ```ts
 * import { struct, u64 } from "./layout.ts";
 *
 * const counters = struct({ packets: u64, bytes: u64 });
 * ```
 */
export const u64: IntLayout & Typed<bigint> = int(8, false);
/**
 * A signed 8-bit integer (`__s8`), decoded as a number.
 *
 * @example
 * ```ts
 * import { i8, struct } from "./layout.ts";
 *
 * const level = struct({ level: i8 });
 * ```
 */
export const i8: IntLayout & Typed<number> = int(1, true);
/**
 * A signed 16-bit integer (`__s16`), decoded as a number.
 *
 * @example
 * ```ts
 * import { i16, struct } from "./layout.ts";
 *
 * const sample = struct({ delta: i16 });
 * ```
 */
export const i16: IntLayout & Typed<number> = int(2, true);
/**
 * A signed 32-bit integer (`__s32`, `int`), decoded as a number.
 *
 * @example
 * ```ts
 * import { i32, struct } from "./layout.ts";
 *
 * const result = struct({ errno: i32 });
 * ```
 */
export const i32: IntLayout & Typed<number> = int(4, true);
/**
 * A signed 64-bit integer (`__s64`), decoded exactly as a bigint.
 *
 * @example
 * ```ts
 * import { i64, struct } from "./layout.ts";
 *
 * const offset = struct({ nanoseconds: i64 });
 * ```
 */
export const i64: IntLayout & Typed<bigint> = int(8, true);
/**
 * A 32-bit `float`, decoded as a number.
 *
 * @example
 * ```ts
 * import { f32, struct } from "./layout.ts";
 *
 * const ratio = struct({ ratio: f32 });
 * ```
 */
export const f32: FloatLayout & Typed<number> = Object.freeze({ kind: "float", size: 4 });
/**
 * A 64-bit `double`, decoded as a number.
 *
 * @example
 * ```ts
 * import { f64, struct } from "./layout.ts";
 *
 * const mean = struct({ mean: f64 });
 * ```
 */
export const f64: FloatLayout & Typed<number> = Object.freeze({ kind: "float", size: 8 });
/**
 * A C `bool`, decoded as a boolean.
 *
 * @example
 * ```ts
 * import { bool, struct } from "./layout.ts";
 *
 * const state = struct({ enabled: bool });
 * ```
 */
export const bool: BoolLayout & Typed<boolean> = Object.freeze({ kind: "bool", size: 1 });
/**
 * A `struct bpf_spin_lock` (4 bytes, 4-aligned). It decodes to `null`, may be
 * left out when encoding, and is always written as zeros.
 *
 * @example
 * ```ts
 * import { spinLock, struct, u64 } from "./layout.ts";
 *
 * const locked = struct({ lock: spinLock, count: u64 });
 * ```
 */
export const spinLock: SpinLockLayout & Typed<null> = Object.freeze({ kind: "spin_lock", size: 4 });

/**
 * A C `char[size]` holding a string: decoded as UTF-8 up to the first NUL,
 * encoded as UTF-8 padded with NUL bytes.
 *
 * @param size the array length in bytes, such as 16 for `char comm[16]`
 * @throws {RangeError} when `size` is not a positive integer
 *
 * @example
 * ```ts
 * import { cstring, struct, u32 } from "./layout.ts";
 *
 * const task = struct({ pid: u32, comm: cstring(16) });
 * ```
 */
export function cstring(size: number): StringLayout & Typed<string> {
  return Object.freeze({ kind: "string", size: positiveSize(size, "cstring size") });
}

/**
 * `size` bytes that are not decoded: the field reads as a `Uint8Array` copy
 * and must be written as one. In {@linkcode checkLayout} it matches any type
 * of the same size except a spin lock, so it can stand for a field whose
 * contents the caller does not need.
 *
 * @param size the number of bytes (alignment 1)
 * @throws {RangeError} when `size` is not a positive integer
 *
 * @example
 * ```ts
 * import { bytes, struct, u32 } from "./layout.ts";
 *
 * const packet = struct({ length: u32, head: bytes(64) });
 * ```
 */
export function bytes(size: number): BytesLayout & Typed<Uint8Array> {
  return Object.freeze({ kind: "bytes", size: positiveSize(size, "bytes size") });
}

/**
 * A fixed-length C array of `element`, decoded as a JavaScript array.
 *
 * @param element the element layout
 * @param length the number of elements
 * @throws {RangeError} when `length` is not a positive integer
 *
 * @example
 * ```ts
 * import { array, struct, u64 } from "./layout.ts";
 *
 * const histogram = struct({ slots: array(u64, 64) });
 * ```
 */
export function array<T>(element: Layout<T>, length: number): ArrayLayout & Typed<T[]> {
  const count = positiveSize(length, "array length");
  return Object.freeze({ kind: "array", size: element.size * count, length: count, element });
}

/** Decoded values of declared struct fields: a spin lock field may be left out. */
type StructValue<F extends Record<string, Layout<unknown>>> =
  & { -readonly [K in keyof F as LayoutType<F[K]> extends null ? never : K]: LayoutType<F[K]> }
  & { -readonly [K in keyof F as LayoutType<F[K]> extends null ? K : never]?: null };

/**
 * A C struct with `fields` in the given order, each at the next offset that
 * its natural alignment allows (as `clang -target bpf` places them). The
 * struct's size is rounded up to its largest alignment, like `sizeof`.
 *
 * @param fields the fields in C order, each a layout
 * @param name the C struct name, used in error messages
 * @throws {TypeError} when `fields` is empty
 *
 * @example Mirror `struct flow_key { __u8 protocol; __u32 addr; __u16 port; __u64 cookie; }`
 * ```ts
 * import { struct, u16, u32, u64, u8 } from "./layout.ts";
 *
 * const flowKey = struct({ protocol: u8, addr: u32, port: u16, cookie: u64 }, "flow_key");
 * console.log(flowKey.size); // 24: padding after protocol (3 bytes) and port (6 bytes)
 * ```
 */
export function struct<F extends Record<string, Layout<unknown>>>(
  fields: F,
  name = "",
): StructLayout & Typed<StructValue<F>> {
  const placed: LayoutField[] = [];
  let offset = 0;
  let align = 1;
  for (const [fieldName, layout] of Object.entries(fields)) {
    const fieldAlign = alignmentOf(layout);
    offset = roundUp(offset, fieldAlign);
    placed.push(Object.freeze({ name: fieldName, offset, layout }));
    offset += layout.size;
    align = Math.max(align, fieldAlign);
  }
  if (placed.length === 0) throw new TypeError("A struct needs at least one field");
  return Object.freeze({
    kind: "struct",
    size: roundUp(offset, align),
    name,
    fields: Object.freeze(placed),
  });
}

/**
 * A C union of `fields`, all at offset 0. It decodes to an object with every
 * field read from the same bytes; encoding takes an object with exactly one
 * of them.
 *
 * @param fields the members in C order
 * @param name the C union name, used in error messages
 * @throws {TypeError} when `fields` is empty
 *
 * @example
 * ```ts
 * import { array, u32, u64, union } from "./layout.ts";
 *
 * const word = union({ asU64: u64, asU32: array(u32, 2) });
 * ```
 */
export function union<F extends Record<string, Layout<unknown>>>(
  fields: F,
  name = "",
): UnionLayout & Typed<{ -readonly [K in keyof F]?: LayoutType<F[K]> }> {
  const members = Object.entries(fields).map(([fieldName, layout]) =>
    Object.freeze({ name: fieldName, offset: 0, layout })
  );
  if (members.length === 0) throw new TypeError("A union needs at least one member");
  const align = Math.max(...members.map((member) => alignmentOf(member.layout)));
  const size = Math.max(...members.map((member) => member.layout.size));
  return Object.freeze({
    kind: "union",
    size: roundUp(size, align),
    name,
    fields: Object.freeze(members),
  });
}

/**
 * Returns whether a value of this layout contains a `struct bpf_spin_lock`
 * (at any depth), so that map lookups and updates of it should pass
 * `BPF_F_LOCK` to be atomic.
 *
 * @example
 * ```ts
 * import { layoutHasSpinLock, spinLock, struct, u64 } from "./layout.ts";
 *
 * console.log(layoutHasSpinLock(struct({ lock: spinLock, count: u64 }))); // true
 * console.log(layoutHasSpinLock(u64)); // false
 * ```
 */
export function layoutHasSpinLock(layout: Layout<unknown>): boolean {
  switch (layout.kind) {
    case "spin_lock":
      return true;
    case "array":
      return layoutHasSpinLock(layout.element);
    case "struct":
    case "union":
      return layout.fields.some((field) => layoutHasSpinLock(field.layout));
    default:
      return false;
  }
}

/**
 * Returns a short C-like description of a layout for messages: `u32`, `i64`,
 * `char[16]`, `u16[3]`, `struct flow_key`, `enum color`.
 *
 * @example
 * ```ts
 * import { array, describeLayout, u16 } from "./layout.ts";
 *
 * console.log(describeLayout(array(u16, 3))); // "u16[3]"
 * ```
 */
export function describeLayout(layout: Layout<unknown>): string {
  switch (layout.kind) {
    case "int":
      return `${layout.signed ? "i" : "u"}${layout.size * 8}`;
    case "bool":
      return "bool";
    case "float":
      return layout.size === 4 ? "float" : "double";
    case "enum":
      return layout.name === "" ? `enum (${layout.size} bytes)` : `enum ${layout.name}`;
    case "string":
      return `char[${layout.size}]`;
    case "array":
      return `${describeLayout(layout.element)}[${layout.length}]`;
    case "struct":
    case "union":
      return layout.name === "" ? `anonymous ${layout.kind}` : `${layout.kind} ${layout.name}`;
    case "spin_lock":
      return "struct bpf_spin_lock";
    case "bytes":
      return `${layout.size} bytes`;
  }
}

/**
 * Checks that a declared layout describes the same bytes as the layout from
 * BTF: the same named fields at the same offsets with the same sizes, the
 * same bitfields, array lengths and kinds of value. Compatible kinds are
 * allowed: an int for an enum of the same size (whose signedness clang 14
 * does not record), a `cstring` for an array of 1-byte integers and back, and
 * {@linkcode bytes} for any type but a spin lock.
 *
 * NOTE: the declaration DSL has no bitfields, so a struct with bitfields
 * never matches a declared layout. Use the layout from BTF for such a struct.
 *
 * @param declared the layout declared in TypeScript
 * @param fromBtf the layout derived from BTF
 * @param where the checked value, for the message: `the value of map "flows"`
 * @throws {LayoutMismatchError} naming the first field that differs, with its
 * offset and size in both layouts
 *
 * @example
 * ```ts
 * import { checkLayout, struct, u32, u64 } from "./layout.ts";
 *
 * const fromBtf = struct({ pid: u32, bytes: u64 });
 * checkLayout(struct({ pid: u32, bytes: u64 }), fromBtf, "the value"); // passes
 * ```
 */
export function checkLayout(
  declared: Layout<unknown>,
  fromBtf: Layout<unknown>,
  where: string,
): void {
  compareLayouts(declared, fromBtf, { where, path: "", offset: 0 });
}

interface CheckContext {
  where: string;
  path: string;
  offset: number;
}

function compareLayouts(
  declared: Layout<unknown>,
  fromBtf: Layout<unknown>,
  at: CheckContext,
): void {
  // Fields first: a misplaced field explains a struct size difference better
  // than the sizes do.
  if (
    (declared.kind === "struct" && fromBtf.kind === "struct") ||
    (declared.kind === "union" && fromBtf.kind === "union")
  ) {
    compareFields(namedFields(declared.fields, 0), namedFields(fromBtf.fields, 0), at);
  }
  if (declared.size !== fromBtf.size) {
    throw mismatch(at, declared, fromBtf, "");
  }
  if (declared.kind === "bytes" && fromBtf.kind !== "spin_lock") return;

  if (declared.kind === "array" && fromBtf.kind === "array") {
    if (declared.length !== fromBtf.length) {
      throw mismatch(
        at,
        declared,
        fromBtf,
        `has ${declared.length} elements in the declared layout but ${fromBtf.length} in BTF`,
      );
    }
    compareLayouts(declared.element, fromBtf.element, { ...at, path: `${at.path}[]` });
    return;
  }
  if (declared.kind === fromBtf.kind && (declared.kind === "struct" || declared.kind === "union")) {
    return;
  }
  if (!sameScalar(declared, fromBtf)) {
    throw mismatch(
      at,
      declared,
      fromBtf,
      `is ${describeLayout(declared)} in the declared layout but ${describeLayout(fromBtf)} in BTF`,
    );
  }
}

function compareFields(declared: PlacedField[], fromBtf: PlacedField[], at: CheckContext): void {
  const declaredByName = new Map(declared.map((field) => [field.name, field]));
  for (const btfField of fromBtf) {
    const path = at.path === "" ? btfField.name : `${at.path}.${btfField.name}`;
    const offset = at.offset + btfField.offset;
    const declaredField = declaredByName.get(btfField.name);
    if (declaredField === undefined) {
      throw new LayoutMismatchError({
        where: at.where,
        field: path,
        detail:
          `field "${path}" at offset ${offset} (size ${btfField.layout.size}) in BTF is missing from the declared layout`,
        btf: { offset, size: btfField.layout.size },
      });
    }
    declaredByName.delete(btfField.name);
    const context = { where: at.where, path, offset };
    if (declaredField.offset !== btfField.offset) {
      throw mismatch(context, declaredField.layout, btfField.layout, "", {
        declared: at.offset + declaredField.offset,
        btf: offset,
      });
    }
    compareBits(declaredField, btfField, context);
    compareLayouts(declaredField.layout, btfField.layout, context);
  }

  const [extra] = declaredByName.values();
  if (extra !== undefined) {
    const path = at.path === "" ? extra.name : `${at.path}.${extra.name}`;
    const offset = at.offset + extra.offset;
    throw new LayoutMismatchError({
      where: at.where,
      field: path,
      detail:
        `field "${path}" at offset ${offset} (size ${extra.layout.size}) in the declared layout is not in BTF`,
      declared: { offset, size: extra.layout.size },
    });
  }
}

function compareBits(declared: PlacedField, fromBtf: PlacedField, at: CheckContext): void {
  const a = declared.bits;
  const b = fromBtf.bits;
  if (a?.offset === b?.offset && a?.size === b?.size) return;
  const describe = (bits: BitRange | undefined) =>
    bits === undefined ? "not a bitfield" : `bits ${bits.offset}..${bits.offset + bits.size - 1}`;
  throw new LayoutMismatchError({
    where: at.where,
    field: at.path,
    detail: `field "${at.path}" is ${describe(a)} in the declared layout but ${describe(b)} in BTF`,
    declared: { offset: at.offset, size: declared.layout.size },
    btf: { offset: at.offset, size: fromBtf.layout.size },
  });
}

function sameScalar(declared: Layout<unknown>, fromBtf: Layout<unknown>): boolean {
  switch (fromBtf.kind) {
    case "int":
      if (declared.kind === "int") return declared.signed === fromBtf.signed;
      return declared.kind === "enum" || (declared.kind === "string" && fromBtf.size === 1);
    case "enum":
      return declared.kind === "int" || declared.kind === "enum";
    case "string":
      return declared.kind === "string" ||
        (declared.kind === "array" && declared.element.kind === "int" &&
          declared.element.size === 1);
    case "array":
      return declared.kind === "string" && fromBtf.element.kind === "int" &&
        fromBtf.element.size === 1;
    default:
      return declared.kind === fromBtf.kind;
  }
}

function mismatch(
  at: CheckContext,
  declared: Layout<unknown>,
  fromBtf: Layout<unknown>,
  what: string,
  offsets: { declared: number; btf: number } = { declared: at.offset, btf: at.offset },
): LayoutMismatchError {
  const subject = at.path === "" ? "the value" : `field "${at.path}"`;
  const detail = what !== ""
    ? `${subject} ${what}`
    : at.path === ""
    ? `the value is ${declared.size} bytes in the declared layout but ${fromBtf.size} bytes in BTF (${
      describeLayout(fromBtf)
    })`
    : `${subject} is at offset ${offsets.declared} (size ${declared.size}) in the declared layout but at offset ${offsets.btf} (size ${fromBtf.size}) in BTF`;
  return new LayoutMismatchError({
    where: at.where,
    field: at.path,
    detail,
    declared: { offset: offsets.declared, size: declared.size },
    btf: { offset: offsets.btf, size: fromBtf.size },
  });
}

/** A field with its offset from the start of the struct that names it. */
export interface PlacedField {
  name: string;
  offset: number;
  layout: Layout<unknown>;
  bits?: BitRange;
}

/**
 * Returns the fields of a struct or union by name, with the fields of
 * anonymous members lifted into their parent as C does, offsets adjusted.
 */
export function namedFields(fields: readonly LayoutField[], base: number): PlacedField[] {
  const named: PlacedField[] = [];
  for (const field of fields) {
    if (field.name === "" && (field.layout.kind === "struct" || field.layout.kind === "union")) {
      named.push(...namedFields(field.layout.fields, base + field.offset));
      continue;
    }
    const placed: PlacedField = {
      name: field.name,
      offset: base + field.offset,
      layout: field.layout,
    };
    if (field.bits !== undefined) {
      placed.bits = { offset: field.bits.offset + base * 8, size: field.bits.size };
    }
    named.push(placed);
  }
  return named;
}

/** Returns the C alignment of a layout: its largest scalar, at most 8. */
export function alignmentOf(layout: Layout<unknown>): number {
  switch (layout.kind) {
    case "int":
    case "enum":
    case "float":
    case "bool":
    case "spin_lock":
      return layout.size;
    case "string":
    case "bytes":
      return 1;
    case "array":
      return alignmentOf(layout.element);
    case "struct":
    case "union":
      return Math.max(1, ...layout.fields.map((field) => alignmentOf(field.layout)));
  }
}

function roundUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

function positiveSize(value: number, what: string): number {
  if (Number.isSafeInteger(value) && value > 0) return value;
  throw new RangeError(`Invalid ${what}: ${value} is not a positive integer`);
}
