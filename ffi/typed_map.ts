/**
 * {@linkcode TypedMap}: a {@linkcode BpfMap} whose keys and values are
 * JavaScript values, encoded and decoded by layouts from the object's BTF or
 * declared in TypeScript.
 *
 * @module
 */

import { type Decoder, decoderFor, encodeValueAt } from "./_layout_codec.ts";
import { possibleCpuCount } from "./cpus.ts";
import { layoutFromBtf } from "./_layout_btf.ts";
import type { Btf } from "./btf.ts";
import { UpdateFlags } from "./constants.ts";
import { checkLayout, type Layout, type LayoutValue } from "./layout.ts";
import { libbpf } from "./libbpf.ts";
import { type BpfMap, lookupByPointer } from "./map.ts";
import type { BpfObject } from "./object.ts";

/**
 * The layouts of a map's key and value.
 *
 * @example
 * ```ts
 * import type { MapLayouts } from "./typed_map.ts";
 * import { struct, u32, u64 } from "./layout.ts";
 *
 * const layouts: MapLayouts<number, { packets: bigint }> = { key: u32, value: struct({ packets: u64 }) };
 * ```
 */
export interface MapLayouts<K = LayoutValue, V = LayoutValue> {
  /** The key's layout. */
  key: Layout<K>;
  /** The value's layout (of one CPU's value, for per-CPU maps). */
  value: Layout<V>;
}

/**
 * The layouts that a map's BTF gives its key and value. Each is `undefined`
 * when the map has no BTF type for it, as for a map declared with
 * `key_size`/`value_size` or created without BTF.
 *
 * @example
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./probe.bpf.o").load();
 * const { key, value } = object.mapLayouts("flows");
 * console.log(key?.size, value?.kind);
 * ```
 */
export interface BtfMapLayouts {
  /** The key's layout, when BTF describes it. */
  key: Layout | undefined;
  /** The value's layout, when BTF describes it. */
  value: Layout | undefined;
}

/**
 * Options of {@linkcode typedMap}: layouts declared in TypeScript. Each is
 * checked against the map's BTF when the map has a BTF type, and is required
 * when it does not.
 *
 * @example
 * ```ts
 * import type { TypedMapOptions } from "./typed_map.ts";
 * import { struct, u32, u64 } from "./layout.ts";
 *
 * const options: TypedMapOptions<number, { packets: bigint }> = { key: u32, value: struct({ packets: u64 }) };
 * ```
 */
export interface TypedMapOptions<K, V> {
  /** The key's declared layout. */
  key?: Layout<K>;
  /** The value's declared layout. */
  value?: Layout<V>;
}

/**
 * Returns map `name` of `object` as a {@linkcode TypedMap}. The layouts come
 * from the map's BTF key and value types. A layout declared in `options`
 * replaces the BTF one after {@linkcode checkLayout} has compared the two.
 * A key or value without a BTF type needs a declared layout.
 *
 * The typed map belongs to the object like the {@linkcode BpfMap} it wraps,
 * and is unusable after the object closes.
 *
 * @param object a loaded object
 * @param name the map's name
 * @param options declared layouts, see {@linkcode TypedMapOptions}
 * @throws {LayoutMismatchError} when a declared layout differs from BTF; the
 * message names the field, both offsets and both sizes
 * @throws {TypeError} when the key or value has neither a BTF type nor a declared layout
 * @throws {RangeError} when a layout's size differs from the map's key or value size
 * @throws {BpfError} with code `ENOENT` when there is no such map
 * @throws {ClosedError} after the object is closed
 *
 * @example Count flows by a struct key, with layouts from BTF
 * ```ts ignore
 * import { openObject, typedMap } from "../mod.ts";
 *
 * using object = openObject("./flows.bpf.o").load();
 * const flows = typedMap(object, "flows");
 * flows.set({ protocol: 6, addr: 0x0100007f, port: 80, cookie: 1n }, { packets: 1n, bytes: 60n, flags: 0 });
 * console.log(flows.get({ protocol: 6, addr: 0x0100007f, port: 80, cookie: 1n }));
 * ```
 *
 * @example Declare the value layout, checked against BTF
 * ```ts ignore
 * import { openObject, struct, typedMap, u32, u64 } from "../mod.ts";
 *
 * using object = openObject("./flows.bpf.o").load();
 * const counts = typedMap(object, "per_cpu", {
 *   key: u32,
 *   value: struct({ packets: u64, bytes: u64, flags: u32 }),
 * });
 * const perCpu = counts.getPerCpu(0); // { packets: bigint; bytes: bigint; flags: number }[]
 * ```
 */
export function typedMap<K = LayoutValue, V = LayoutValue>(
  object: BpfObject,
  name: string,
  options: TypedMapOptions<K, V> = {},
): TypedMap<K, V> {
  const map = object.map(name);
  return new TypedMap(map, resolveMapLayouts(name, object.mapLayouts(name), options));
}

/**
 * Picks the key and value layouts of map `mapName`. A declared layout is
 * checked against BTF and then used. Without one, the BTF layout is used.
 *
 * @throws {LayoutMismatchError} when a declared layout differs from BTF
 * @throws {TypeError} when neither gives a layout
 */
export function resolveMapLayouts<K, V>(
  mapName: string,
  fromBtf: BtfMapLayouts,
  declared: TypedMapOptions<K, V>,
): MapLayouts<K, V> {
  return {
    key: pickLayout(mapName, "key", fromBtf.key, declared.key) as Layout<K>,
    value: pickLayout(mapName, "value", fromBtf.value, declared.value) as Layout<V>,
  };
}

/** Returns the layouts of the BTF key and value types of a libbpf map. */
export function btfMapLayouts(map: Deno.PointerObject, btf: Btf | undefined): BtfMapLayouts {
  if (btf === undefined) return { key: undefined, value: undefined };
  const keyType = libbpf().bpf_map__btf_key_type_id(map);
  const valueType = libbpf().bpf_map__btf_value_type_id(map);
  return {
    key: keyType === 0 ? undefined : layoutFromBtf(btf, keyType),
    value: valueType === 0 ? undefined : layoutFromBtf(btf, valueType),
  };
}

function pickLayout(
  mapName: string,
  part: "key" | "value",
  fromBtf: Layout | undefined,
  declared: Layout<unknown> | undefined,
): Layout<unknown> {
  if (declared !== undefined) {
    if (fromBtf !== undefined) checkLayout(declared, fromBtf, `the ${part} of map "${mapName}"`);
    return declared;
  }
  if (fromBtf !== undefined) return fromBtf;
  throw new TypeError(
    `Map "${mapName}" has no BTF type for its ${part}: declare its layout in the options, as { ${part}: u32 } or { ${part}: struct({ ... }) }`,
  );
}

/**
 * A {@linkcode BpfMap} with typed keys and values. Each call encodes the key
 * (padding zeroed, see {@linkcode encodeValue}), makes one system call, and
 * decodes the result; the raw map stays available as {@linkcode TypedMap.map}.
 *
 * Like {@linkcode BpfMap}, a missing key is a result: {@linkcode TypedMap.get}
 * returns `undefined` and {@linkcode TypedMap.delete} returns `false`. The
 * typed map belongs to the map's object and is unusable after it closes.
 *
 * Because keys are encoded with zero padding, a key that a kernel program
 * inserted with other padding bytes (a struct not zeroed before its fields
 * were set, or bytes left after the NUL of a string) is a different key to
 * the kernel and cannot be reached through this view: find it with
 * {@linkcode BpfMap.dump} and use its raw bytes. Kernel programs should zero
 * their keys (`__builtin_memset`) before filling them.
 *
 * @example Wrap a map with declared layouts
 * ```ts ignore
 * import { openObject, TypedMap, u32, u64 } from "../mod.ts";
 *
 * using object = openObject("./counters.bpf.o").load();
 * const counts = new TypedMap(object.map("counts"), { key: u32, value: u64 });
 * counts.set(3, 10n);
 * console.log(counts.get(3)); // 10n
 * ```
 */
export class TypedMap<K = LayoutValue, V = LayoutValue> {
  /** The wrapped map, for raw access. */
  readonly map: BpfMap;
  /** The key's layout. */
  readonly key: Layout<K>;
  /** The value's layout. */
  readonly value: Layout<V>;
  // Reused buffers: a fresh ArrayBuffer per call costs about as much as the
  // lookup system call (around 600 ns in Deno 2.9 here). Keys and values are
  // encoded into them, and values decoded out of them, one call at a time.
  #perCpu: boolean;
  #decode: Decoder<V>;
  // Whether get() may take BpfMap's pointer path: maps with one value per key.
  #fast: boolean;
  #keyPointer: Deno.PointerValue;
  #valuePointer: Deno.PointerValue;
  #keyBytes: Uint8Array<ArrayBuffer>;
  #keyView: DataView;
  #valueBytes: Uint8Array<ArrayBuffer>;
  #valueView: DataView;

  /**
   * Wraps `map` with the given layouts, used as they are (no BTF check: see
   * {@linkcode typedMap} for that).
   *
   * @throws {RangeError} when a layout's size differs from the map's key or value size
   */
  constructor(map: BpfMap, layouts: MapLayouts<K, V>) {
    checkSize(map, "key", layouts.key.size, map.keySize);
    checkSize(map, "value", layouts.value.size, map.valueSize);
    this.map = map;
    this.key = layouts.key;
    this.value = layouts.value;
    this.#perCpu = map.isPerCpu;
    this.#decode = decoderFor(layouts.value);
    this.#keyBytes = new Uint8Array(map.keySize);
    this.#keyView = new DataView(this.#keyBytes.buffer);
    const stride = Math.ceil(map.valueSize / 8) * 8;
    this.#valueBytes = new Uint8Array(map.isPerCpu ? stride * possibleCpuCount() : map.valueSize);
    this.#valueView = new DataView(this.#valueBytes.buffer);
    this.#fast = !map.isPerCpu && map.keySize > 0;
    // SAFETY: both buffers are fields of this object and live outside the V8
    // heap once their address is taken, so the pointers stay valid while it lives.
    this.#keyPointer = Deno.UnsafePointer.of(this.#keyBytes);
    this.#valuePointer = Deno.UnsafePointer.of(this.#valueBytes);
  }

  /**
   * Looks up `key` and returns its decoded value, or `undefined` when the key
   * is not in the map.
   *
   * @throws {TypeError} when `key` does not fit the key layout, or the map is per-CPU
   * (use {@linkcode TypedMap.getPerCpu})
   * @throws {RangeError} when a number in `key` is out of range
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  get(key: K): V | undefined {
    if (this.#perCpu) {
      throw new TypeError(
        `Map "${this.map.name}" is a map of type ${this.map.typeName} with one value per CPU: use getPerCpu()`,
      );
    }
    this.#encodeKey(key);
    const found = this.#fast
      ? this.map[lookupByPointer](this.#keyPointer, this.#valuePointer)
      : this.map.lookupInto(this.#keyBytes, this.#valueBytes);
    return found ? this.#decode(this.#valueView, 0) : undefined;
  }

  /**
   * Looks up `key` in a per-CPU map and returns one decoded value per
   * possible CPU, or `undefined` when the key is not in the map.
   *
   * @throws {TypeError} when the map is not per-CPU, or `key` does not fit the key layout
   * @throws {RangeError} when a number in `key` is out of range
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  getPerCpu(key: K): V[] | undefined {
    if (!this.map.lookupPerCpuInto(this.#encodeKey(key), this.#valueBytes)) return undefined;
    const stride = Math.ceil(this.map.valueSize / 8) * 8;
    const values: V[] = [];
    for (let offset = 0; offset < this.#valueBytes.byteLength; offset += stride) {
      values.push(this.#decode(this.#valueView, offset));
    }
    return values;
  }

  /**
   * Creates or updates the element `key`.
   *
   * @param flags {@linkcode UpdateFlags}: `ANY` (the default), `NOEXIST` or `EXIST`
   * @throws {TypeError} when `key` or `value` does not fit its layout (the
   * message names the field), or the map is per-CPU
   * @throws {RangeError} when a number is out of range for its field
   * @throws {BpfError} with code `EEXIST` (NOEXIST and the key exists), `ENOENT`
   * (EXIST and it does not) or `E2BIG` (the map is full)
   * @throws {ClosedError} after the object is closed
   */
  set(key: K, value: V, flags: number = UpdateFlags.ANY): void {
    if (this.map.isPerCpu) {
      throw new TypeError(
        `Map "${this.map.name}" is a map of type ${this.map.typeName} with one value per CPU: use setPerCpu()`,
      );
    }
    encodeValueAt(this.value, value, this.#valueView, 0);
    this.map.update(this.#encodeKey(key), this.#valueBytes.subarray(0, this.map.valueSize), flags);
  }

  /**
   * Creates or replaces `key` in a per-CPU map with one value per possible CPU.
   *
   * @param values exactly `possibleCpuCount()` values, CPU 0 first
   * @throws {TypeError} on a map that is not per-CPU, or when a value does not fit the layout
   * @throws {RangeError} when `values` does not have one value per possible CPU
   * @throws {BpfError} on failures of the update, as for {@linkcode BpfMap.updatePerCpu}
   * @throws {ClosedError} after the object is closed
   *
   * @example Reset a per-CPU counter
   * ```ts ignore
   * import { openObject, possibleCpuCount } from "../mod.ts";
   *
   * using object = openObject("./counters.bpf.o").load();
   * const counts = object.map("per_cpu_counts").typed<number, bigint>();
   * counts.setPerCpu(0, Array(possibleCpuCount()).fill(0n));
   * ```
   */
  setPerCpu(key: K, values: readonly V[], flags: number = UpdateFlags.ANY): void {
    const stride = Math.ceil(this.map.valueSize / 8) * 8;
    if (!this.map.isPerCpu) {
      throw new TypeError(
        `Map "${this.map.name}" is a map of type ${this.map.typeName}, not per-CPU: use set()`,
      );
    }
    if (values.length * stride !== this.#valueBytes.byteLength) {
      throw new RangeError(
        `Cannot set an element of map "${this.map.name}": got ${values.length} values, the map has one per possible CPU (${possibleCpuCount()})`,
      );
    }
    const parts = values.map((value, cpu) => {
      encodeValueAt(this.value, value, this.#valueView, cpu * stride);
      return this.#valueBytes.subarray(cpu * stride, cpu * stride + this.map.valueSize);
    });
    this.map.updatePerCpu(this.#encodeKey(key), parts, flags);
  }

  /**
   * Deletes `key` and returns whether it was in the map.
   *
   * @throws {TypeError} when `key` does not fit the key layout
   * @throws {BpfError} on other failures, such as `EINVAL` for array maps
   * @throws {ClosedError} after the object is closed
   */
  delete(key: K): boolean {
    return this.map.delete(this.#encodeKey(key));
  }

  #encodeKey(key: K): Uint8Array<ArrayBuffer> {
    encodeValueAt(this.key, key, this.#keyView, 0);
    return this.#keyBytes;
  }
}

function checkSize(map: BpfMap, part: string, layoutSize: number, mapSize: number): void {
  if (layoutSize === mapSize) return;
  throw new RangeError(
    `Cannot type map "${map.name}": the ${part} layout is ${layoutSize} bytes, the map's ${part} size is ${mapSize}`,
  );
}
