/**
 * {@linkcode Globals}: typed access to the global variables of an eBPF
 * object, which libbpf keeps in one array map per data section (`.bss`,
 * `.data`, `.rodata`, and `.data.NAME` or `.rodata.NAME` for variables
 * placed in a named section).
 *
 * @module
 */

import { checkPointer, cString, readCString } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { BpfError, ClosedError } from "./errors.ts";
import type { Btf } from "./btf.ts";
import { libbpf } from "./libbpf.ts";
import type { MapMemory } from "./map_memory.ts";
import { decodeValue, encodeValue } from "./_layout_codec.ts";
import { layoutFromBtf } from "./_layout_btf.ts";
import { describeLayout, type Layout, type LayoutField, type LayoutValue } from "./layout.ts";

/** The memory behind a {@linkcode Globals} view; `bytes()` throws once it is gone. */
export interface GlobalsMemory {
  /** Returns the section's bytes; throws {@linkcode ClosedError} when the memory is gone. */
  bytes(): Uint8Array;
  /** Releases the memory; idempotent. */
  close(): void;
}

/**
 * The global variables of one data section, read and written by name and
 * typed by the object's BTF.
 *
 * Before load ({@linkcode OpenObject.globals}) the view writes the initial
 * values that the map is created with. This is the only way to set a
 * `const volatile` variable in `.rodata`, which BPF programs then see as a
 * constant. After load ({@linkcode BpfObject.globals}) the view is a mapping
 * of the live map: writes reach the running programs at once, and `.rodata`
 * is read-only.
 *
 * Each {@linkcode Globals.get} and {@linkcode Globals.set} copies one
 * variable. A variable larger than 8 bytes can be read half-updated while a
 * program writes it.
 *
 * @example Set a filter before load, then read a counter
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using opened = openObject("./probe.bpf.o");
 * opened.globals(".rodata").set("target_pid", Deno.pid);
 * using object = opened.load();
 * object.attachAll();
 * using bss = object.globals(".bss");
 * console.log(bss.get("events_seen"));
 * ```
 */
export class Globals implements Disposable {
  /** The data section, such as `".bss"`. */
  readonly section: string;
  /** The section's layout from BTF: a struct with one field per variable. */
  readonly layout: Layout & { kind: "struct" };
  /** Whether {@linkcode Globals.set} is allowed. */
  readonly writable: boolean;
  #memory: GlobalsMemory;
  #variables: Map<string, LayoutField>;
  #readOnlyReason: string;
  #closed = false;

  /** @internal Use {@linkcode OpenObject.globals} or {@linkcode BpfObject.globals}. */
  constructor(
    memory: GlobalsMemory,
    options: {
      section: string;
      layout: Layout & { kind: "struct" };
      writable: boolean;
      readOnlyReason?: string;
    },
  ) {
    this.#memory = memory;
    this.section = options.section;
    this.layout = options.layout;
    this.writable = options.writable;
    this.#readOnlyReason = options.readOnlyReason ?? "it is read-only";
    this.#variables = new Map(options.layout.fields.map((field) => [field.name, field]));
  }

  /** The names of the section's variables, in offset order. */
  get names(): string[] {
    return [...this.#variables.keys()];
  }

  /** Whether {@linkcode Globals.close} has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Returns the layout of variable `name`.
   *
   * @throws {TypeError} when the section has no such variable; the message lists them
   */
  layoutOf(name: string): Layout<unknown> {
    return this.#variable(name).layout;
  }

  /**
   * Reads variable `name`, decoded by its BTF type (see {@linkcode decodeValue}).
   * The type parameter is not checked: it only names the expected type.
   *
   * @throws {TypeError} when the section has no such variable
   * @throws {ClosedError} after close, after the object closes, or (before
   * load) after the opened object loads
   * @throws {RangeError} when the variable lies outside the mapped memory,
   * which means the BTF does not match the map
   */
  get<T = LayoutValue>(name: string): T {
    const variable = this.#variable(name);
    return decodeValue(variable.layout, this.#slice(variable, "read")) as T;
  }

  /**
   * Writes variable `name`, encoded by its BTF type (see {@linkcode encodeValue}).
   *
   * @throws {TypeError} when the section has no such variable, the value does
   * not fit its type, or the view is read-only (`.rodata` after load)
   * @throws {RangeError} when a number is out of range for its type
   * @throws {ClosedError} after close, after the object closes, or (before
   * load) after the opened object loads
   */
  set(name: string, value: LayoutValue): void {
    const variable = this.#variable(name);
    if (!this.writable) {
      throw new TypeError(
        `Cannot set variable "${name}" of section "${this.section}": ${this.#readOnlyReason}`,
      );
    }
    const encoded = encodeValue(variable.layout, value);
    this.#slice(variable, "write").set(encoded);
  }

  /** Releases the view's memory. Calling it again does nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#memory.close();
  }

  /** Same as {@linkcode Globals.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #variable(name: string): LayoutField {
    const variable = this.#variables.get(name);
    if (variable !== undefined) return variable;
    const names = this.names;
    throw new TypeError(
      `Section "${this.section}" has no variable "${name}" (${
        names.length === 0 ? "it has no variables" : `its variables: ${names.join(", ")}`
      })`,
    );
  }

  #slice(variable: LayoutField, op: string): Uint8Array {
    if (this.#closed) throw new ClosedError(op, `globals of section "${this.section}"`);
    const bytes = this.#memory.bytes();
    const end = variable.offset + variable.layout.size;
    if (end > bytes.byteLength) {
      throw new RangeError(
        `Variable "${variable.name}" (${
          describeLayout(variable.layout)
        }, bytes ${variable.offset} to ${end}) lies outside the ${bytes.byteLength} bytes of section "${this.section}"`,
      );
    }
    return bytes.subarray(variable.offset, end);
  }
}

/**
 * Returns the layout of data section `section` from the object's BTF.
 *
 * @throws {TypeError} when the object has no BTF or the BTF has no such section
 */
export function sectionLayout(
  btf: Btf | undefined,
  section: string,
  object: string,
): Layout & { kind: "struct" } {
  if (btf === undefined) {
    throw new TypeError(
      `Object "${object}" has no BTF, so its global variables have no types: compile it with clang -g`,
    );
  }
  const type = btf.find(section, "DATASEC");
  if (type === undefined) {
    throw new TypeError(
      `Object "${object}" has no data section "${section}" in its BTF: it defines no variables there`,
    );
  }
  return layoutFromBtf(btf, type.id) as Layout & { kind: "struct" };
}

/**
 * Returns the internal map of data section `section` (libbpf matches the
 * section name, such as `.bss`, against the map's real name).
 *
 * @throws {BpfError} with code `ENOENT` when there is no such map; the message lists the data sections
 */
export function findSectionMap(
  object: Deno.PointerObject,
  section: string,
  objectName: string,
): Deno.PointerObject {
  const lib = libbpf();
  const map = lib.bpf_object__find_map_by_name(object, cString(section));
  if (map !== null && lib.bpf_map__is_internal(map)) return map;

  const internal: string[] = [];
  for (let next = lib.bpf_object__next_map(object, null); next !== null;) {
    if (lib.bpf_map__is_internal(next)) internal.push(readCString(lib.bpf_map__name(next)));
    next = lib.bpf_object__next_map(object, next);
  }
  throw new BpfError({
    op: `find data section "${section}" in`,
    object: objectName,
    errno: Errno.ENOENT,
    detail: "no such section",
    hint: internal.length === 0
      ? "the object has no global variables"
      : `the object's data section maps are ${internal.join(", ")}`,
  });
}

/**
 * Returns the memory of libbpf's copy of a map's initial value, which
 * libbpf copies into the map when the object loads. `check` throws once the
 * opened object is loaded or closed, when the copy may be freed.
 */
export function initialValueMemory(
  map: Deno.PointerObject,
  context: { map: string; object: string },
  check: () => void,
): GlobalsMemory {
  const size = new BigUint64Array(1);
  const data = checkPointer(
    libbpf().bpf_map__initial_value(map, size),
    "read initial value of",
    context,
  );
  // SAFETY: libbpf owns this copy until the object is loaded or closed. The
  // opened object closes this memory before either, and `check` guards
  // every access.
  let buffer: ArrayBuffer | null = Deno.UnsafePointerView.getArrayBuffer(data, Number(size[0]));
  return {
    bytes() {
      check();
      if (buffer === null) {
        throw new ClosedError("access", `initial values of map "${context.map}"`);
      }
      return new Uint8Array(buffer);
    },
    close() {
      // Detaching leaves zero-length views behind instead of dangling ones.
      buffer?.transfer(0);
      buffer = null;
    },
  };
}

/** Returns a {@linkcode GlobalsMemory} over an mmapped live map, which it closes with itself. */
export function mappedMemory(memory: MapMemory): GlobalsMemory {
  return {
    // Globals checks that a section is writable before it stores into these bytes.
    bytes: () => new Uint8Array(memory.unsafeBuffer),
    close: () => memory.close(),
  };
}
