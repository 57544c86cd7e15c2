// Derives layouts (ffi/layout.ts) from parsed BTF (ffi/btf.ts).

import { Errno } from "./_errno.ts";
import type { Btf, BtfMember, BtfType } from "./btf.ts";
import { BpfError } from "./errors.ts";
import type { Layout, LayoutField } from "./layout.ts";

const SCALAR_SIZES: ReadonlySet<number> = new Set([1, 2, 4, 8]);

/**
 * Returns the layout of BTF type `typeId`. Typedefs and qualifiers are
 * skipped, pointers become u64 and `char` arrays strings. A
 * `struct bpf_spin_lock` becomes a spin lock. A `DATASEC` (the type of a
 * `.bss`, `.data` or `.rodata` map) becomes a struct with one field per
 * variable. Types that bpfscope does not model (such as `__int128`) become
 * opaque bytes.
 *
 * Enums are signed when the BTF kind flag says so. clang 14 and older never
 * set it, so with their objects every enum reads as unsigned: an enumerator
 * of -1 decodes as 4294967295. Declare the field as a signed integer to read
 * such an enum, see {@linkcode checkLayout}.
 *
 * @param btf the parsed BTF
 * @param typeId the type id, such as a map's BTF value type id
 * @returns the layout, frozen
 * @throws {TypeError} when the type has no values: `void` (id 0), a function,
 * a forward declaration
 * @throws {BpfError} with code `EINVAL` when the BTF is inconsistent: a
 * member outside its struct, a struct that contains itself, a bitfield wider
 * than its type
 * @throws {RangeError} when `typeId` is out of range
 *
 * @example Decode a map value with the layout of its C type
 * ```ts ignore
 * import { decodeValue, layoutFromBtf, openObject } from "../mod.ts";
 *
 * using object = openObject("./probe.bpf.o").load();
 * const btf = object.btf!;
 * const layout = layoutFromBtf(btf, btf.find("flow_counts", "STRUCT")!.id);
 * const bytes = object.map("per_flow").lookup(new Uint8Array(24));
 * if (bytes !== undefined) console.log(decodeValue(layout, bytes));
 * ```
 */
export function layoutFromBtf(btf: Btf, typeId: number): Layout {
  return new LayoutBuilder(btf).build(typeId);
}

class LayoutBuilder {
  #btf: Btf;
  #cache = new Map<number, Layout>();
  // Ids of the types being expanded, to catch a type that contains itself.
  #expanding = new Set<number>();

  constructor(btf: Btf) {
    this.#btf = btf;
  }

  build(typeId: number): Layout {
    if (typeId === 0) throw new TypeError("BTF type 0 is void, which has no layout");
    const type = this.#btf.resolve(typeId);
    const cached = this.#cache.get(type.id);
    if (cached !== undefined) return cached;
    if (this.#expanding.has(type.id)) {
      throw layoutError(`${type.kind} ${type.id} "${type.name}" contains itself`);
    }

    this.#expanding.add(type.id);
    try {
      const layout = Object.freeze(this.#layoutOf(type));
      this.#cache.set(type.id, layout);
      return layout;
    } finally {
      this.#expanding.delete(type.id);
    }
  }

  #layoutOf(type: BtfType): Layout {
    switch (type.kind) {
      case "INT":
        if (type.bool && type.size === 1) return { kind: "bool", size: 1 };
        if (!SCALAR_SIZES.has(type.size)) return { kind: "bytes", size: type.size };
        return { kind: "int", size: type.size as 1 | 2 | 4 | 8, signed: type.signed };
      case "PTR":
        return { kind: "int", size: 8, signed: false };
      case "ENUM":
      case "ENUM64":
        if (!SCALAR_SIZES.has(type.size)) return { kind: "bytes", size: type.size };
        return {
          kind: "enum",
          size: type.size as 1 | 2 | 4 | 8,
          signed: type.signed,
          name: type.name,
          enumerators: Object.freeze(type.enumerators.map((e) => Object.freeze({ ...e }))),
        };
      case "FLOAT":
        if (type.size !== 4 && type.size !== 8) return { kind: "bytes", size: type.size };
        return { kind: "float", size: type.size };
      case "ARRAY":
        return this.#array(type);
      case "STRUCT":
      case "UNION":
        if (type.kind === "STRUCT" && type.name === "bpf_spin_lock" && type.size === 4) {
          return { kind: "spin_lock", size: 4 };
        }
        return this.#record(type);
      case "DATASEC":
        return this.#dataSection(type);
      case "VAR":
        return this.build(type.type);
      default:
        throw new TypeError(
          `BTF type ${type.id} (${type.kind} "${type.name}") has no layout: only data types do`,
        );
    }
  }

  #array(type: Extract<BtfType, { kind: "ARRAY" }>): Layout {
    const element = this.build(type.type);
    const size = this.#btf.size(type.id);
    if (element.kind === "int" && element.size === 1 && this.#isChar(type.type)) {
      return { kind: "string", size };
    }
    return { kind: "array", size, length: type.length, element };
  }

  #isChar(typeId: number): boolean {
    const type = this.#btf.resolve(typeId);
    return type.kind === "INT" && (type.char || type.name === "char");
  }

  #record(type: Extract<BtfType, { kind: "STRUCT" | "UNION" }>): Layout {
    const fields = Object.freeze(type.members.map((member) => this.#field(type, member)));
    return {
      kind: type.kind === "STRUCT" ? "struct" : "union",
      size: type.size,
      name: type.name,
      fields,
    };
  }

  #field(parent: Extract<BtfType, { kind: "STRUCT" | "UNION" }>, member: BtfMember): LayoutField {
    const layout = this.build(member.type);
    const where = `member "${member.name}" of ${parent.kind} ${parent.id} "${parent.name}"`;
    const bits = this.#bitRange(member, layout, where);

    if (bits === undefined) {
      const offset = member.bitOffset / 8;
      if (!Number.isInteger(offset) || offset + layout.size > parent.size) {
        throw layoutError(
          `${where} at bit ${member.bitOffset} (size ${layout.size}) does not fit whole bytes of its ${parent.size}-byte parent`,
        );
      }
      return Object.freeze({ name: member.name, offset, layout });
    }

    if (bits.offset + bits.size > parent.size * 8) {
      throw layoutError(`${where} ends at bit ${bits.offset + bits.size}, past its parent`);
    }
    return Object.freeze({
      name: member.name,
      offset: Math.floor(bits.offset / 8),
      layout,
      bits: Object.freeze(bits),
    });
  }

  /**
   * Returns the bits of a bitfield member, or undefined for a whole-byte
   * member. BTF marks a bitfield by a width in the member (kind flag set, what
   * clang emits) or, in the older encoding, by an INT type whose bit count is
   * below its size.
   */
  #bitRange(
    member: BtfMember,
    layout: Layout,
    where: string,
  ): { offset: number; size: number } | undefined {
    let bits: { offset: number; size: number } | undefined;
    if (member.bitSize > 0) {
      bits = { offset: member.bitOffset, size: member.bitSize };
    } else {
      const type = this.#btf.resolve(member.type);
      if (type.kind === "INT" && (type.bits < type.size * 8 || type.bitOffset !== 0)) {
        bits = { offset: member.bitOffset + type.bitOffset, size: type.bits };
      }
    }
    if (bits === undefined) return undefined;

    const scalar = layout.kind === "int" || layout.kind === "enum" || layout.kind === "bool";
    if (!scalar || bits.size > layout.size * 8 || bits.size === 0) {
      throw layoutError(
        `${where} is a ${bits.size}-bit bitfield of a ${layout.size}-byte ${layout.kind}; bitfields need an integer, enum or bool at least that wide`,
      );
    }
    return bits;
  }

  #dataSection(type: Extract<BtfType, { kind: "DATASEC" }>): Layout {
    const fields = type.vars.map((info): LayoutField => {
      const variable = this.#btf.type(info.type);
      if (variable.kind !== "VAR") {
        throw layoutError(
          `section "${type.name}" lists type ${info.type} (${variable.kind}), which is not a variable`,
        );
      }
      const layout = this.build(variable.type);
      if (info.offset + layout.size > type.size) {
        throw layoutError(
          `variable "${variable.name}" of section "${type.name}" at offset ${info.offset} (size ${layout.size}) ends past the section's ${type.size} bytes`,
        );
      }
      return Object.freeze({ name: variable.name, offset: info.offset, layout });
    });
    fields.sort((a, b) => a.offset - b.offset);
    return { kind: "struct", size: type.size, name: type.name, fields: Object.freeze(fields) };
  }
}

function layoutError(detail: string): BpfError {
  return new BpfError({ op: "derive a layout from BTF", errno: Errno.EINVAL, detail });
}
