// Decoding bytes into JavaScript values and encoding values into bytes, by layout
// (ffi/layout.ts). Byte order is little-endian, the order of every host that
// bpfscope supports (x86_64, arm64).

import type { BitRange, Layout, LayoutField, LayoutValue } from "./layout.ts";
import { describeLayout, namedFields } from "./layout.ts";

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

/**
 * Decodes `bytes` by `layout`. Integers and enums narrower than 64 bits
 * become numbers, and 64-bit ones exact bigints. `char` arrays become strings
 * up to the first NUL. Structs and unions become objects, with the fields of
 * anonymous members lifted into the parent. Spin locks become `null`, and
 * opaque bytes a `Uint8Array` copy.
 *
 * @param layout the layout of the value
 * @param bytes exactly `layout.size` bytes, such as a map value from {@linkcode BpfMap.lookup}
 * @returns the decoded value
 * @throws {RangeError} when `bytes` is not `layout.size` bytes long
 *
 * @example
 * ```ts
 * import { decodeValue, struct, u16, u8 } from "./layout.ts";
 *
 * const layout = struct({ version: u8, port: u16 });
 * console.log(decodeValue(layout, new Uint8Array([1, 0, 0x50, 0]))); // { version: 1, port: 80 }
 * ```
 */
export function decodeValue<T>(layout: Layout<T>, bytes: Uint8Array): T {
  checkLength(layout, bytes.byteLength, "decode");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return decodeAt(layout, view, 0) as T;
}

/**
 * Encodes `value` by `layout` into a new buffer of `layout.size` bytes.
 * Every byte that no field covers (padding between fields, after the last
 * one, after a string's NUL) is zero: the kernel compares keys byte by byte,
 * padding included, so a key with stray padding would never match.
 *
 * An integer field takes a number or a bigint in range, and an enum also an
 * enumerator's name. A string must fit its array as UTF-8 (a string of
 * exactly the array's length is stored without a NUL). An array needs
 * exactly its length of elements. A union takes an object with exactly one
 * of its members, and a spin lock may be left out.
 *
 * @param layout the layout of the value
 * @param value the value to encode
 * @returns the bytes, `layout.size` long
 * @throws {TypeError} when a field is missing or unknown (the message names
 * it), a union gets no member or several, or a value has the wrong type
 * @throws {RangeError} when a number does not fit its integer or bitfield,
 * a string its array, or an array has the wrong length
 *
 * @example Padding is zeroed
 * ```ts
 * import { encodeValue, struct, u32, u8 } from "./layout.ts";
 *
 * const key = struct({ protocol: u8, addr: u32 });
 * console.log(encodeValue(key, { protocol: 6, addr: 1 })); // Uint8Array(8) [6, 0, 0, 0, 1, 0, 0, 0]
 * ```
 */
export function encodeValue<T>(layout: Layout<T>, value: T): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(layout.size);
  encodeAt(layout, value as LayoutValue | undefined, new DataView(bytes.buffer), 0, "");
  return bytes;
}

/**
 * Decodes the value at `offset` of `view` by `layout`, without copying: the
 * fast path of typed maps, which decode out of a reused buffer.
 */
export function decodeValueAt<T>(layout: Layout<T>, view: DataView, offset: number): T {
  return decoderFor(layout)(view, offset);
}

/** A decoder specialised to one layout, as returned by {@linkcode decoderFor}. */
export type Decoder<T> = (view: DataView, offset: number) => T;

const decoders = new WeakMap<Layout<unknown>, Decoder<LayoutValue>>();

/**
 * Returns a decoder specialised to `layout`, built once per layout. A struct
 * of plain fields decodes through one generated function that returns an
 * object literal, so every decoded value has the same shape: about five
 * times faster than walking the layout for each value.
 */
export function decoderFor<T>(layout: Layout<T>): Decoder<T> {
  let decoder = decoders.get(layout);
  if (decoder === undefined) {
    decoder = compileDecoder(layout);
    decoders.set(layout, decoder);
  }
  return decoder as Decoder<T>;
}

function compileDecoder(layout: Layout<unknown>): Decoder<LayoutValue> {
  switch (layout.kind) {
    case "int":
    case "enum":
      return intDecoder(layout.size, layout.signed);
    case "struct":
    case "union":
      return structDecoder(layout.fields) ?? ((view, offset) => decodeAt(layout, view, offset));
    default:
      return (view, offset) => decodeAt(layout, view, offset);
  }
}

function intDecoder(size: number, signed: boolean): Decoder<LayoutValue> {
  switch (size) {
    case 1:
      return signed
        ? (view, offset) => view.getInt8(offset)
        : (view, offset) => view.getUint8(offset);
    case 2:
      return signed
        ? (view, offset) => view.getInt16(offset, true)
        : (view, offset) => view.getUint16(offset, true);
    case 4:
      return signed
        ? (view, offset) => view.getInt32(offset, true)
        : (view, offset) => view.getUint32(offset, true);
    default:
      return signed
        ? (view, offset) => view.getBigInt64(offset, true)
        : (view, offset) => view.getBigUint64(offset, true);
  }
}

// Generates `(view, offset) => ({ "name": decoders[0](view, offset + 8), ... })`.
// Field names come from BTF, so each is written as a JSON string literal, and
// offsets are checked integers: nothing from the object file becomes code.
// Structs with bitfields or anonymous members keep the general decoder.
function structDecoder(fields: readonly LayoutField[]): Decoder<LayoutValue> | undefined {
  if (fields.some((field) => field.bits !== undefined || field.name === "")) return undefined;
  if (!fields.every((field) => Number.isSafeInteger(field.offset) && field.offset >= 0)) {
    return undefined;
  }
  const parts = fields.map((field) => decoderFor(field.layout));
  const entries = fields.map((field, index) =>
    `${JSON.stringify(field.name)}: parts[${index}](view, offset + ${field.offset})`
  );
  const factory = new Function("parts", `return (view, offset) => ({ ${entries.join(", ")} });`);
  return factory(parts) as Decoder<LayoutValue>;
}

/**
 * Encodes `value` by `layout` into `layout.size` bytes at `offset` of
 * `view`, zeroing them first so that padding is zero, like
 * {@linkcode encodeValue} but into a reused buffer.
 */
export function encodeValueAt<T>(
  layout: Layout<T>,
  value: T,
  view: DataView,
  offset: number,
): void {
  if (layout.kind === "int" && encodeSmallInt(layout.size, layout.signed, value, view, offset)) {
    return;
  }
  new Uint8Array(view.buffer, view.byteOffset + offset, layout.size).fill(0);
  encodeAt(layout, value as LayoutValue | undefined, view, offset, "");
}

// The common key of a map, an integer given as a number, written without a
// BigInt round trip. Returns false to leave every other case, and every
// error, to the general encoder.
function encodeSmallInt(
  size: number,
  signed: boolean,
  value: unknown,
  view: DataView,
  offset: number,
): boolean {
  if (typeof value !== "number" || !Number.isInteger(value) || size > 4) return false;
  const bits = size * 8;
  const min = signed ? -(2 ** (bits - 1)) : 0;
  const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  if (value < min || value > max) return false;
  if (size === 4) view.setUint32(offset, value >>> 0, true);
  else if (size === 2) view.setUint16(offset, value & 0xffff, true);
  else view.setUint8(offset, value & 0xff);
  return true;
}

function checkLength(layout: Layout<unknown>, length: number, op: string): void {
  if (length === layout.size) return;
  throw new RangeError(
    `Cannot ${op} ${describeLayout(layout)}: got ${length} bytes, the layout has ${layout.size}`,
  );
}

function decodeAt(layout: Layout<unknown>, view: DataView, offset: number): LayoutValue {
  switch (layout.kind) {
    case "int":
      return decodeInt(view, offset, layout.size, layout.signed);
    case "enum":
      return decodeInt(view, offset, layout.size, layout.signed);
    case "bool":
      return view.getUint8(offset) !== 0;
    case "float":
      return layout.size === 4 ? view.getFloat32(offset, true) : view.getFloat64(offset, true);
    case "string": {
      const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, layout.size);
      const end = bytes.indexOf(0);
      return textDecoder.decode(end < 0 ? bytes : bytes.subarray(0, end));
    }
    case "array": {
      const { element, length } = layout;
      return Array.from(
        { length },
        (_, index) => decodeAt(element, view, offset + index * element.size),
      );
    }
    case "struct":
    case "union":
      return decodeFields(layout.fields, view, offset);
    case "spin_lock":
      return null;
    case "bytes":
      return new Uint8Array(view.buffer, view.byteOffset + offset, layout.size).slice();
  }
}

function decodeInt(view: DataView, offset: number, size: number, signed: boolean): number | bigint {
  switch (size) {
    case 1:
      return signed ? view.getInt8(offset) : view.getUint8(offset);
    case 2:
      return signed ? view.getInt16(offset, true) : view.getUint16(offset, true);
    case 4:
      return signed ? view.getInt32(offset, true) : view.getUint32(offset, true);
    default:
      return signed ? view.getBigInt64(offset, true) : view.getBigUint64(offset, true);
  }
}

function decodeFields(
  fields: readonly LayoutField[],
  view: DataView,
  offset: number,
): { [field: string]: LayoutValue } {
  const record: { [field: string]: LayoutValue } = {};
  for (const field of fields) {
    if (field.name === "" && (field.layout.kind === "struct" || field.layout.kind === "union")) {
      Object.assign(record, decodeFields(field.layout.fields, view, offset + field.offset));
    } else if (field.bits !== undefined) {
      record[field.name] = decodeBits(field.layout, field.bits, view, offset);
    } else {
      record[field.name] = decodeAt(field.layout, view, offset + field.offset);
    }
  }
  return record;
}

function decodeBits(
  layout: Layout<unknown>,
  bits: BitRange,
  view: DataView,
  base: number,
): LayoutValue {
  const raw = readBits(view, base, bits);
  const signed = (layout.kind === "int" || layout.kind === "enum") && layout.signed;
  const value = signed ? BigInt.asIntN(bits.size, raw) : raw;
  if (layout.kind === "bool") return value !== 0n;
  return layout.size === 8 ? value : Number(value);
}

/** Reads the bits of a bitfield as an unsigned bigint. */
function readBits(view: DataView, base: number, bits: BitRange): bigint {
  const first = base + Math.floor(bits.offset / 8);
  const last = base + Math.floor((bits.offset + bits.size - 1) / 8);
  let word = 0n;
  for (let index = last; index >= first; index--) {
    word = (word << 8n) | BigInt(view.getUint8(index));
  }
  return (word >> BigInt(bits.offset % 8)) & ((1n << BigInt(bits.size)) - 1n);
}

function writeBits(view: DataView, base: number, bits: BitRange, value: bigint): void {
  const first = base + Math.floor(bits.offset / 8);
  const last = base + Math.floor((bits.offset + bits.size - 1) / 8);
  const shift = BigInt(bits.offset % 8);
  const mask = ((1n << BigInt(bits.size)) - 1n) << shift;
  let word = 0n;
  for (let index = last; index >= first; index--) {
    word = (word << 8n) | BigInt(view.getUint8(index));
  }
  word = (word & ~mask) | ((value << shift) & mask);
  for (let index = first; index <= last; index++) {
    view.setUint8(index, Number(word & 0xffn));
    word >>= 8n;
  }
}

function encodeAt(
  layout: Layout<unknown>,
  value: LayoutValue | undefined,
  view: DataView,
  offset: number,
  path: string,
): void {
  switch (layout.kind) {
    case "int":
      writeInt(view, offset, layout.size, toInteger(value, layout.size * 8, layout.signed, path));
      return;
    case "enum":
      writeInt(view, offset, layout.size, enumValue(layout, value, layout.size * 8, path));
      return;
    case "bool":
      view.setUint8(offset, toBoolean(value, path) ? 1 : 0);
      return;
    case "float":
      if (typeof value !== "number") throw typeError(path, "a number", value);
      if (layout.size === 4) view.setFloat32(offset, value, true);
      else view.setFloat64(offset, value, true);
      return;
    case "string":
      writeString(view, offset, layout.size, value, path);
      return;
    case "array":
      writeArray(layout.element, layout.length, value, view, offset, path);
      return;
    case "struct":
      writeStruct(layout.fields, value, view, offset, path, false);
      return;
    case "union":
      writeUnion(layout.fields, value, view, offset, path);
      return;
    case "spin_lock":
      // The lock stays zero: user space never holds it, and the kernel ignores
      // its bytes on update.
      if (value !== undefined && value !== null) throw typeError(path, "null (a spin lock)", value);
      return;
    case "bytes":
      if (!(value instanceof Uint8Array)) throw typeError(path, "a Uint8Array", value);
      if (value.byteLength !== layout.size) {
        throw new RangeError(
          `${label(path)} must be ${layout.size} bytes, got ${value.byteLength}`,
        );
      }
      new Uint8Array(view.buffer, view.byteOffset + offset, layout.size).set(value);
      return;
  }
}

function writeInt(view: DataView, offset: number, size: number, value: bigint): void {
  switch (size) {
    case 1:
      view.setUint8(offset, Number(BigInt.asUintN(8, value)));
      return;
    case 2:
      view.setUint16(offset, Number(BigInt.asUintN(16, value)), true);
      return;
    case 4:
      view.setUint32(offset, Number(BigInt.asUintN(32, value)), true);
      return;
    default:
      view.setBigUint64(offset, BigInt.asUintN(64, value), true);
  }
}

/** Converts a number or bigint to a bigint after checking that it fits `bits` bits. */
function toInteger(
  value: LayoutValue | undefined,
  bits: number,
  signed: boolean,
  path: string,
): bigint {
  let integer: bigint;
  if (typeof value === "bigint") {
    integer = value;
  } else if (typeof value === "number" && Number.isSafeInteger(value)) {
    integer = BigInt(value);
  } else {
    throw typeError(path, "an integer (number or bigint)", value);
  }
  const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
  const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  if (integer < min || integer > max) {
    const kind = signed ? "a signed" : "an unsigned";
    throw new RangeError(
      `${label(path)} must be ${kind} ${bits}-bit integer (${min} to ${max}), got ${value}`,
    );
  }
  return integer;
}

function enumValue(
  layout: Extract<Layout<unknown>, { kind: "enum" }>,
  value: LayoutValue | undefined,
  bits: number,
  path: string,
): bigint {
  if (typeof value !== "string") return toInteger(value, bits, layout.signed, path);
  const enumerator = layout.enumerators.find((candidate) => candidate.name === value);
  if (enumerator !== undefined) return enumerator.value;
  const names = layout.enumerators.map((candidate) => candidate.name).join(", ");
  throw new TypeError(
    `${label(path)}: "${value}" is not an enumerator of ${describeLayout(layout)} (${names})`,
  );
}

function toBoolean(value: LayoutValue | undefined, path: string): boolean {
  if (typeof value === "boolean") return value;
  throw typeError(path, "a boolean", value);
}

function writeString(
  view: DataView,
  offset: number,
  size: number,
  value: LayoutValue | undefined,
  path: string,
): void {
  if (typeof value !== "string") throw typeError(path, "a string", value);
  const encoded = textEncoder.encode(value);
  if (encoded.byteLength > size) {
    throw new RangeError(
      `${label(path)} is ${encoded.byteLength} bytes as UTF-8, longer than its char[${size}]`,
    );
  }
  new Uint8Array(view.buffer, view.byteOffset + offset, size).set(encoded);
}

function writeArray(
  element: Layout<unknown>,
  length: number,
  value: LayoutValue | undefined,
  view: DataView,
  offset: number,
  path: string,
): void {
  if (!Array.isArray(value) && !ArrayBuffer.isView(value)) {
    throw typeError(path, `an array of ${length} elements`, value);
  }
  const items = value as ArrayLike<LayoutValue>;
  if (items.length !== length) {
    throw new RangeError(`${label(path)} must have ${length} elements, got ${items.length}`);
  }
  for (let index = 0; index < length; index++) {
    encodeAt(element, items[index], view, offset + index * element.size, `${path}[${index}]`);
  }
}

function writeStruct(
  fields: readonly LayoutField[],
  value: LayoutValue | undefined,
  view: DataView,
  offset: number,
  path: string,
  embedded: boolean,
): void {
  const record = toRecord(value, path);
  if (!embedded) rejectUnknownFields(fields, record, path);
  for (const field of fields) {
    const fieldPath = path === "" ? field.name : `${path}.${field.name}`;
    if (field.name === "" && (field.layout.kind === "struct" || field.layout.kind === "union")) {
      // An anonymous member's fields are given in the parent object, as C reads them.
      if (field.layout.kind === "struct") {
        writeStruct(field.layout.fields, record, view, offset + field.offset, path, true);
      } else {
        writeUnion(field.layout.fields, record, view, offset + field.offset, path, true);
      }
      continue;
    }
    const fieldValue = record[field.name];
    if (fieldValue === undefined && field.layout.kind !== "spin_lock") {
      throw new TypeError(`Missing field "${fieldPath}": every field of a struct must be given`);
    }
    if (field.bits === undefined) {
      encodeAt(field.layout, fieldValue, view, offset + field.offset, fieldPath);
    } else {
      writeBitfield(field.layout, field.bits, fieldValue, view, offset, fieldPath);
    }
  }
}

function writeBitfield(
  layout: Layout<unknown>,
  bits: BitRange,
  value: LayoutValue | undefined,
  view: DataView,
  base: number,
  path: string,
): void {
  let integer: bigint;
  if (layout.kind === "bool") {
    integer = toBoolean(value, path) ? 1n : 0n;
  } else if (layout.kind === "enum") {
    integer = enumValue(layout, value, bits.size, path);
  } else {
    integer = toInteger(value, bits.size, layout.kind === "int" && layout.signed, path);
  }
  writeBits(view, base, bits, BigInt.asUintN(bits.size, integer));
}

function writeUnion(
  fields: readonly LayoutField[],
  value: LayoutValue | undefined,
  view: DataView,
  offset: number,
  path: string,
  embedded = false,
): void {
  const record = toRecord(value, path);
  if (!embedded) rejectUnknownFields(fields, record, path);
  const given = fields.filter((field) => isGiven(field, record));
  if (given.length !== 1) {
    const names = fields.map((field) => field.name || "(anonymous)").join(", ");
    const got = given.length === 0 ? "none" : given.map((field) => field.name).join(", ");
    throw new TypeError(
      `${label(path)} is a union: give exactly one of its members (${names}), got ${got}`,
    );
  }
  const [member] = given as [LayoutField];
  if (member.name === "" && member.layout.kind === "struct") {
    writeStruct(member.layout.fields, record, view, offset, path, true);
    return;
  }
  const memberPath = path === "" ? member.name : `${path}.${member.name}`;
  if (member.bits === undefined) {
    encodeAt(member.layout, record[member.name], view, offset + member.offset, memberPath);
  } else {
    writeBitfield(member.layout, member.bits, record[member.name], view, offset, memberPath);
  }
}

/** Returns whether a union member is given: by name, or for an anonymous struct, by any of its fields. */
function isGiven(field: LayoutField, record: { [field: string]: LayoutValue }): boolean {
  if (field.name !== "") return record[field.name] !== undefined;
  if (field.layout.kind !== "struct" && field.layout.kind !== "union") return false;
  return namedFields(field.layout.fields, 0).some((inner) => record[inner.name] !== undefined);
}

function rejectUnknownFields(
  fields: readonly LayoutField[],
  record: { [field: string]: LayoutValue },
  path: string,
): void {
  const known = new Set(namedFields(fields, 0).map((field) => field.name));
  for (const name of Object.keys(record)) {
    if (known.has(name)) continue;
    const fieldPath = path === "" ? name : `${path}.${name}`;
    throw new TypeError(
      `Unknown field "${fieldPath}": the layout has ${[...known].join(", ")}`,
    );
  }
}

function toRecord(value: LayoutValue | undefined, path: string): { [field: string]: LayoutValue } {
  if (
    typeof value === "object" && value !== null && !Array.isArray(value) &&
    !ArrayBuffer.isView(value)
  ) {
    return value;
  }
  throw typeError(path, "an object", value);
}

function label(path: string): string {
  return path === "" ? "The value" : `Field "${path}"`;
}

function typeError(path: string, expected: string, value: LayoutValue | undefined): TypeError {
  const got = value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
  return new TypeError(`${label(path)} must be ${expected}, got ${got}`);
}
