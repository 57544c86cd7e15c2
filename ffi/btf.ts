/**
 * {@linkcode Btf}: the BPF Type Format data of an object, parsed in
 * TypeScript from the raw bytes that libbpf serializes. Parsing needs no
 * kernel and no privileges.
 *
 * The format is the one of the kernel's `include/uapi/linux/btf.h`: a
 * `struct btf_header`, then a type section of `struct btf_type` records (each
 * followed by kind-specific data) and a string section of NUL-terminated names.
 *
 * @module
 */

import { checkPointer } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { BpfError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

/**
 * The BTF type kinds (`BTF_KIND_*` in the kernel's `include/uapi/linux/btf.h`).
 *
 * @example
 * ```ts
 * import { BtfKind } from "./btf.ts";
 *
 * console.log(BtfKind.STRUCT); // 4
 * ```
 */
export const BtfKind = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

/**
 * A member of a struct or union. Offsets are in bits from the start of the parent.
 *
 * @example
 * ```ts
 * import type { BtfMember } from "./btf.ts";
 *
 * const flags: BtfMember = { name: "flags", type: 7, bitOffset: 3, bitSize: 5 };
 * console.log(flags.bitSize > 0 ? "bitfield" : "whole bytes");
 * ```
 */
export interface BtfMember {
  /** The member's name; `""` for an anonymous struct or union member. */
  name: string;
  /** The member's type id. */
  type: number;
  /** The member's offset in bits. */
  bitOffset: number;
  /** The width of a bitfield member in bits; 0 when the member is not a bitfield. */
  bitSize: number;
}

/**
 * A variable of a data section (`struct btf_var_secinfo`).
 *
 * @example
 * ```ts
 * import type { BtfVarSecinfo } from "./btf.ts";
 *
 * const counter: BtfVarSecinfo = { type: 15, offset: 8, size: 8 };
 * ```
 */
export interface BtfVarSecinfo {
  /** The id of the `VAR` type. */
  type: number;
  /** The variable's offset in bytes from the start of the section. */
  offset: number;
  /** The variable's size in bytes. */
  size: number;
}

/**
 * An enumerator of an `ENUM` or `ENUM64` type.
 *
 * @example
 * ```ts
 * import type { BtfEnumerator } from "./btf.ts";
 *
 * const red: BtfEnumerator = { name: "COLOR_RED", value: 1n };
 * ```
 */
export interface BtfEnumerator {
  /** The enumerator's name. */
  name: string;
  /** The enumerator's value, read as signed when the enum is signed. */
  value: bigint;
}

/** Fields shared by every kind of {@linkcode BtfType}. */
interface BtfTypeBase {
  /** The type id: its 1-based position in the type section. */
  id: number;
  /** The type's name; `""` when it is anonymous. */
  name: string;
}

/**
 * One type of a {@linkcode Btf}, discriminated by `kind`. Fields follow
 * `include/uapi/linux/btf.h`; sizes are in bytes, member offsets in bits.
 *
 * @example Print the members of a struct
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using opened = openObject("./probe.bpf.o");
 * const type = opened.btf?.find("flow_key", "STRUCT");
 * if (type?.kind === "STRUCT") for (const m of type.members) console.log(m.name, m.bitOffset / 8);
 * ```
 */
export type BtfType =
  | BtfTypeBase & {
    kind: "INT";
    size: number;
    /** Whether `BTF_INT_SIGNED` is set. */
    signed: boolean;
    /** Whether `BTF_INT_CHAR` is set (clang leaves it clear and names the type `char`). */
    char: boolean;
    /** Whether `BTF_INT_BOOL` is set. */
    bool: boolean;
    /** `BTF_INT_OFFSET`: the value's first bit within the storage. */
    bitOffset: number;
    /** `BTF_INT_BITS`: the number of value bits. */
    bits: number;
  }
  | BtfTypeBase & { kind: "PTR" | "TYPEDEF" | "VOLATILE" | "CONST" | "RESTRICT"; type: number }
  | BtfTypeBase & { kind: "TYPE_TAG"; type: number }
  | BtfTypeBase & { kind: "ARRAY"; type: number; indexType: number; length: number }
  | BtfTypeBase & { kind: "STRUCT" | "UNION"; size: number; members: BtfMember[] }
  | BtfTypeBase & {
    kind: "ENUM" | "ENUM64";
    size: number;
    /** The kind flag, which marks a signed enum. clang 14 never sets it, even for a signed enum. */
    signed: boolean;
    enumerators: BtfEnumerator[];
  }
  | BtfTypeBase & { kind: "FWD"; union: boolean }
  | BtfTypeBase & { kind: "FUNC"; type: number; linkage: number }
  | BtfTypeBase & {
    kind: "FUNC_PROTO";
    returnType: number;
    params: { name: string; type: number }[];
  }
  | BtfTypeBase & { kind: "VAR"; type: number; linkage: number }
  | BtfTypeBase & { kind: "DATASEC"; size: number; vars: BtfVarSecinfo[] }
  | BtfTypeBase & { kind: "FLOAT"; size: number }
  | BtfTypeBase & { kind: "DECL_TAG"; type: number; componentIndex: number };

/**
 * The name of a {@linkcode BtfKind}, such as `"STRUCT"`.
 *
 * @example
 * ```ts
 * import type { BtfKindName } from "./btf.ts";
 *
 * const kinds: BtfKindName[] = ["STRUCT", "UNION"];
 * ```
 */
export type BtfKindName = keyof typeof BtfKind;

const BTF_MAGIC = 0xeb9f;
const HEADER_SIZE = 24;
const TYPE_RECORD_SIZE = 12;
// Type chains (typedef of const of typedef ...) longer than this are treated as
// a loop. libbpf uses the same bound (MAX_RESOLVE_DEPTH in its btf.c).
const MAX_RESOLVE_DEPTH = 32;
const KIND_NAMES = Object.fromEntries(
  Object.entries(BtfKind).map(([name, value]) => [value, name]),
) as Record<number, BtfKindName>;

/**
 * Parsed BTF: the types of an eBPF object by id and name. Immutable; create
 * one with {@linkcode Btf.parse}, or get the one of an object from
 * {@linkcode OpenObject.btf} or {@linkcode BpfObject.btf}.
 *
 * Type id 0 is `void` and has no entry; ids run from 1 to
 * {@linkcode Btf.typeCount}.
 *
 * @example Size of a struct of an object
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using opened = openObject("./probe.bpf.o");
 * const btf = opened.btf!;
 * const key = btf.find("flow_key", "STRUCT")!;
 * console.log(btf.size(key.id)); // 24
 * ```
 */
export class Btf {
  #types: BtfType[];
  #byName: Map<string, BtfType[]> | undefined;

  private constructor(types: BtfType[]) {
    this.#types = types;
  }

  /**
   * Parses raw BTF: a `struct btf_header` followed by its type and string
   * sections, in little-endian byte order.
   *
   * @param bytes the raw BTF, such as the `.BTF` section of an object file
   * @returns the parsed types
   * @throws {BpfError} with code `EINVAL` when the data is malformed: a
   * truncated header, a section outside the data, a type record cut short, an
   * unknown kind, a name offset outside the string section, or a type id out
   * of range. The message names the problem and where it is.
   *
   * @example Reject bytes that are not BTF
   * ```ts
   * import { Btf } from "./btf.ts";
   *
   * try {
   *   Btf.parse(new Uint8Array(8));
   * } catch (error) {
   *   console.log((error as Error).message); // Failed to parse BTF: the header is truncated ...
   * }
   * ```
   */
  static parse(bytes: Uint8Array): Btf {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const sections = parseHeader(view);
    const strings = new StringSection(bytes, sections.stringStart, sections.stringLength);
    const types = parseTypes(view, sections.typeStart, sections.typeLength, strings);
    checkReferences(types);
    return new Btf(types);
  }

  /** The number of types; the largest valid type id. */
  get typeCount(): number {
    return this.#types.length;
  }

  /**
   * Returns the type with id `id`.
   *
   * @throws {RangeError} when `id` is not from 1 to {@linkcode Btf.typeCount}
   */
  type(id: number): BtfType {
    const type = Number.isInteger(id) ? this.#types[id - 1] : undefined;
    if (type !== undefined) return type;
    throw new RangeError(
      `Invalid BTF type id ${id}: ids run from 1 to ${this.#types.length} (0 is void)`,
    );
  }

  /** Returns the first type named `name`, of kind `kind` when given, or `undefined`. */
  find(name: string, kind?: BtfKindName): BtfType | undefined {
    this.#byName ??= indexByName(this.#types);
    const candidates = this.#byName.get(name) ?? [];
    return candidates.find((type) => kind === undefined || type.kind === kind);
  }

  /**
   * Returns the type that `id` stands for once typedefs and the qualifiers
   * `const`, `volatile`, `restrict` and type tags are skipped.
   *
   * @throws {RangeError} when `id` is out of range, or is 0 (`void`)
   * @throws {BpfError} with code `EINVAL` when the chain is longer than 32
   * types, which only a cycle produces
   */
  resolve(id: number): BtfType {
    let type = this.type(id);
    for (let depth = 0; depth < MAX_RESOLVE_DEPTH; depth++) {
      if (!isModifier(type)) return type;
      type = this.type(type.type);
    }
    throw btfError(Errno.EINVAL, `type ${id} is part of a typedef or qualifier cycle`);
  }

  /**
   * Returns the size in bytes of a value of type `id`: what `sizeof` gives in C.
   *
   * @throws {TypeError} for types without a size: functions, `void`, forward
   * declarations
   * @throws {BpfError} with code `EINVAL` on a cycle, or when an
   * array's size exceeds `Number.MAX_SAFE_INTEGER`
   */
  size(id: number): number {
    return this.#size(id, 0);
  }

  #size(id: number, depth: number): number {
    if (depth > MAX_RESOLVE_DEPTH) {
      throw btfError(Errno.EINVAL, `the arrays of type ${id} nest more than 32 deep`);
    }
    const type = this.resolve(id);
    switch (type.kind) {
      case "INT":
      case "STRUCT":
      case "UNION":
      case "ENUM":
      case "ENUM64":
      case "DATASEC":
      case "FLOAT":
        return type.size;
      case "PTR":
        return 8;
      case "VAR":
        return this.#size(type.type, depth + 1);
      case "ARRAY": {
        const size = type.length * this.#size(type.type, depth + 1);
        if (!Number.isSafeInteger(size)) {
          throw btfError(Errno.EINVAL, `array type ${type.id} is too large (${size} bytes)`);
        }
        return size;
      }
      default:
        throw new TypeError(
          `BTF type ${type.id} (${type.kind} "${type.name}") has no size: only data types do`,
        );
    }
  }
}

/**
 * Parses the BTF of an open or loaded libbpf object, or returns undefined
 * when the object has none (it was compiled without `-g`).
 *
 * @throws {BpfError} when libbpf cannot serialize the BTF, or it is malformed
 */
export function readObjectBtf(object: Deno.PointerObject, objectName: string): Btf | undefined {
  const lib = libbpf();
  const btf = lib.bpf_object__btf(object);
  if (btf === null) return undefined;

  const size = new Uint32Array(1);
  const data = checkPointer(lib.btf__raw_data(btf, size), "read BTF of", { object: objectName });
  // SAFETY: libbpf owns the serialized data, which stays valid while its
  // struct btf (owned by the object) is alive; it is copied here at once.
  const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(data, size[0]!)).slice();
  return Btf.parse(bytes);
}

interface Sections {
  typeStart: number;
  typeLength: number;
  stringStart: number;
  stringLength: number;
}

function parseHeader(view: DataView): Sections {
  if (view.byteLength < HEADER_SIZE) {
    throw btfError(
      Errno.EINVAL,
      `the header is truncated: ${view.byteLength} bytes, at least ${HEADER_SIZE} expected`,
    );
  }
  const magic = view.getUint16(0, true);
  if (magic === 0x9feb) {
    throw btfError(Errno.EINVAL, "the data is big-endian BTF; only little-endian BTF is supported");
  }
  if (magic !== BTF_MAGIC) {
    throw btfError(Errno.EINVAL, `bad magic 0x${magic.toString(16)}, expected 0xeb9f`);
  }
  const version = view.getUint8(2);
  if (version !== 1) throw btfError(Errno.EINVAL, `unsupported version ${version}, expected 1`);

  const headerLength = view.getUint32(4, true);
  if (headerLength < HEADER_SIZE || headerLength > view.byteLength) {
    throw btfError(
      Errno.EINVAL,
      `header length ${headerLength} is outside ${HEADER_SIZE}..${view.byteLength}`,
    );
  }
  // Section offsets count from the end of the header.
  const sections = {
    typeStart: headerLength + view.getUint32(8, true),
    typeLength: view.getUint32(12, true),
    stringStart: headerLength + view.getUint32(16, true),
    stringLength: view.getUint32(20, true),
  };
  checkSection("type", sections.typeStart, sections.typeLength, view.byteLength);
  checkSection("string", sections.stringStart, sections.stringLength, view.byteLength);
  return sections;
}

function checkSection(name: string, start: number, length: number, total: number): void {
  if (start + length <= total) return;
  throw btfError(
    Errno.EINVAL,
    `the ${name} section (offset ${start}, ${length} bytes) extends past the end of the data (${total} bytes)`,
  );
}

/** The string section, with bounds checks on every name offset. */
class StringSection {
  #bytes: Uint8Array;
  #decoder = new TextDecoder();

  constructor(bytes: Uint8Array, start: number, length: number) {
    this.#bytes = bytes.subarray(start, start + length);
    if (length > 0 && this.#bytes[0] !== 0) {
      throw btfError(Errno.EINVAL, "the string section does not start with an empty string");
    }
  }

  /** Returns the string at `offset`; offset 0 is the empty string. */
  at(offset: number, where: string): string {
    if (offset === 0) return "";
    const end = offset < this.#bytes.length ? this.#bytes.indexOf(0, offset) : -1;
    if (end < 0) {
      throw btfError(
        Errno.EINVAL,
        `${where} has name offset ${offset}, which is not a NUL-terminated string inside the ${this.#bytes.length}-byte string section`,
      );
    }
    return this.#decoder.decode(this.#bytes.subarray(offset, end));
  }
}

/** Reads type records one after the other; each read is bounds-checked. */
class TypeReader {
  #view: DataView;
  #position: number;
  #end: number;
  id = 0;

  constructor(view: DataView, start: number, length: number) {
    this.#view = view;
    this.#position = start;
    this.#end = start + length;
  }

  get done(): boolean {
    return this.#position >= this.#end;
  }

  /** Checks that `count` bytes are left, so the reads that follow stay in the section. */
  need(count: number, what: string): void {
    if (this.#position + count <= this.#end) return;
    throw btfError(
      Errno.EINVAL,
      `type ${this.id} is cut short: its ${what} needs ${count} bytes at offset ${this.#position}, past the end of the type section at ${this.#end}`,
    );
  }

  u32(): number {
    const value = this.#view.getUint32(this.#position, true);
    this.#position += 4;
    return value;
  }

  i32(): number {
    const value = this.#view.getInt32(this.#position, true);
    this.#position += 4;
    return value;
  }
}

function parseTypes(
  view: DataView,
  start: number,
  length: number,
  strings: StringSection,
): BtfType[] {
  const reader = new TypeReader(view, start, length);
  const types: BtfType[] = [];
  while (!reader.done) {
    reader.id = types.length + 1;
    reader.need(TYPE_RECORD_SIZE, "record");
    const nameOffset = reader.u32();
    const info = reader.u32();
    const sizeOrType = reader.u32();

    const kindNumber = (info >>> 24) & 0x1f;
    const kind = KIND_NAMES[kindNumber];
    if (kind === undefined) {
      throw btfError(Errno.EINVAL, `type ${reader.id} has unknown kind ${kindNumber}`);
    }
    const record: RawRecord = {
      base: { id: reader.id, name: strings.at(nameOffset, `type ${reader.id}`) },
      kind,
      vlen: info & 0xffff,
      kindFlag: info >>> 31 === 1,
      sizeOrType,
    };
    types.push(parseBody(reader, record, strings));
  }
  return types;
}

interface RawRecord {
  base: BtfTypeBase;
  kind: BtfKindName;
  vlen: number;
  kindFlag: boolean;
  sizeOrType: number;
}

function parseBody(reader: TypeReader, record: RawRecord, strings: StringSection): BtfType {
  const { base, kind, vlen, kindFlag, sizeOrType } = record;
  switch (kind) {
    case "INT": {
      reader.need(4, "INT encoding");
      const encoding = reader.u32();
      return {
        ...base,
        kind,
        size: sizeOrType,
        signed: ((encoding >>> 24) & 0x1) !== 0,
        char: ((encoding >>> 24) & 0x2) !== 0,
        bool: ((encoding >>> 24) & 0x4) !== 0,
        bitOffset: (encoding >>> 16) & 0xff,
        bits: encoding & 0xff,
      };
    }
    case "PTR":
    case "TYPEDEF":
    case "VOLATILE":
    case "CONST":
    case "RESTRICT":
    case "TYPE_TAG":
      return { ...base, kind, type: sizeOrType };
    case "FWD":
      return { ...base, kind, union: kindFlag };
    case "FUNC":
      return { ...base, kind, type: sizeOrType, linkage: vlen };
    case "FLOAT":
      return { ...base, kind, size: sizeOrType };
    case "ARRAY": {
      reader.need(12, "array data");
      return { ...base, kind, type: reader.u32(), indexType: reader.u32(), length: reader.u32() };
    }
    case "STRUCT":
    case "UNION":
      return { ...base, kind, size: sizeOrType, members: parseMembers(reader, record, strings) };
    case "ENUM":
    case "ENUM64":
      return {
        ...base,
        kind,
        size: sizeOrType,
        signed: kindFlag,
        enumerators: parseEnumerators(reader, record, strings),
      };
    case "FUNC_PROTO": {
      reader.need(8 * vlen, `${vlen} parameters`);
      const params = [];
      for (let i = 0; i < vlen; i++) {
        const name = strings.at(reader.u32(), `parameter ${i} of type ${base.id}`);
        params.push({ name, type: reader.u32() });
      }
      return { ...base, kind, returnType: sizeOrType, params };
    }
    case "VAR":
      reader.need(4, "linkage");
      return { ...base, kind, type: sizeOrType, linkage: reader.u32() };
    case "DATASEC": {
      reader.need(12 * vlen, `${vlen} variables`);
      const vars = [];
      for (let i = 0; i < vlen; i++) {
        vars.push({ type: reader.u32(), offset: reader.u32(), size: reader.u32() });
      }
      return { ...base, kind, size: sizeOrType, vars };
    }
    case "DECL_TAG":
      reader.need(4, "component index");
      return { ...base, kind, type: sizeOrType, componentIndex: reader.i32() };
  }
}

function parseMembers(reader: TypeReader, record: RawRecord, strings: StringSection): BtfMember[] {
  reader.need(12 * record.vlen, `${record.vlen} members`);
  const members: BtfMember[] = [];
  for (let i = 0; i < record.vlen; i++) {
    const name = strings.at(reader.u32(), `member ${i} of type ${record.base.id}`);
    const type = reader.u32();
    const offset = reader.u32();
    // With the kind flag set, the top 8 bits are a bitfield's width and the
    // low 24 bits its offset. Without it, the whole word is the offset, and an
    // INT type with a smaller bit count describes a bitfield instead.
    members.push(
      record.kindFlag
        ? { name, type, bitOffset: offset & 0xffffff, bitSize: offset >>> 24 }
        : { name, type, bitOffset: offset, bitSize: 0 },
    );
  }
  return members;
}

function parseEnumerators(
  reader: TypeReader,
  record: RawRecord,
  strings: StringSection,
): BtfEnumerator[] {
  const wide = record.kind === "ENUM64";
  reader.need((wide ? 12 : 8) * record.vlen, `${record.vlen} enumerators`);
  const enumerators: BtfEnumerator[] = [];
  for (let i = 0; i < record.vlen; i++) {
    const name = strings.at(reader.u32(), `enumerator ${i} of type ${record.base.id}`);
    let value: bigint;
    if (wide) {
      const low = BigInt(reader.u32());
      const high = BigInt(reader.u32());
      value = (high << 32n) | low;
      if (record.kindFlag) value = BigInt.asIntN(64, value);
    } else {
      const raw = reader.i32();
      value = record.kindFlag ? BigInt(raw) : BigInt(raw >>> 0);
    }
    enumerators.push({ name, value });
  }
  return enumerators;
}

/** Checks that every type id that a type refers to exists (0, void, included). */
function checkReferences(types: BtfType[]): void {
  const count = types.length;
  const check = (from: BtfType, id: number, what: string): void => {
    if (id <= count) return;
    throw btfError(
      Errno.EINVAL,
      `type ${from.id} refers to ${what} type ${id}, but there are only ${count} types`,
    );
  };
  for (const type of types) {
    switch (type.kind) {
      case "ARRAY":
        check(type, type.type, "element");
        check(type, type.indexType, "index");
        break;
      case "STRUCT":
      case "UNION":
        for (const member of type.members) check(type, member.type, `member "${member.name}"`);
        break;
      case "FUNC_PROTO":
        check(type, type.returnType, "return");
        for (const param of type.params) check(type, param.type, "parameter");
        break;
      case "DATASEC":
        for (const variable of type.vars) check(type, variable.type, "variable");
        break;
      case "INT":
      case "ENUM":
      case "ENUM64":
      case "FWD":
      case "FLOAT":
        break;
      default:
        check(type, type.type, "target");
    }
  }
}

function isModifier(
  type: BtfType,
): type is Extract<BtfType, { kind: "TYPEDEF" | "VOLATILE" | "CONST" | "RESTRICT" | "TYPE_TAG" }> {
  return type.kind === "TYPEDEF" || type.kind === "VOLATILE" || type.kind === "CONST" ||
    type.kind === "RESTRICT" || type.kind === "TYPE_TAG";
}

function indexByName(types: BtfType[]): Map<string, BtfType[]> {
  const index = new Map<string, BtfType[]>();
  for (const type of types) {
    if (type.name === "") continue;
    const list = index.get(type.name);
    if (list === undefined) index.set(type.name, [type]);
    else list.push(type);
  }
  return index;
}

function btfError(errno: number, detail: string): BpfError {
  return new BpfError({ op: "parse BTF", errno, detail });
}
