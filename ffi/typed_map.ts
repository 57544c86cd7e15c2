/**
 * {@linkcode TypedMap}: a {@linkcode BpfMap} whose keys and values are
 * JavaScript values, encoded and decoded by layouts from the object's BTF or
 * declared in TypeScript.
 *
 * @module
 */

import { decodeValue, encodeValue } from "./_layout_codec.ts";
import { layoutFromBtf } from "./_layout_btf.ts";
import type { Btf } from "./btf.ts";
import { UpdateFlags } from "./constants.ts";
import { checkLayout, type Layout, type LayoutValue } from "./layout.ts";
import { libbpf } from "./libbpf.ts";
import type { BpfMap } from "./map.ts";
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
    const bytes = this.map.lookup(encodeValue(this.key, key));
    return bytes === undefined ? undefined : decodeValue(this.value, bytes);
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
    const values = this.map.lookupPerCpu(encodeValue(this.key, key));
    return values?.map((bytes) => decodeValue(this.value, bytes));
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
      // TODO(typed maps): add setPerCpu() once BpfMap can update per-CPU values.
      throw new TypeError(
        `Cannot set an element of map "${this.map.name}": it is a ${this.map.typeName} map with one value per CPU, which TypedMap cannot write yet`,
      );
    }
    this.map.update(encodeValue(this.key, key), encodeValue(this.value, value), flags);
  }

  /**
   * Deletes `key` and returns whether it was in the map.
   *
   * @throws {TypeError} when `key` does not fit the key layout
   * @throws {BpfError} on other failures, such as `EINVAL` for array maps
   * @throws {ClosedError} after the object is closed
   */
  delete(key: K): boolean {
    return this.map.delete(encodeValue(this.key, key));
  }
}

function checkSize(map: BpfMap, part: string, layoutSize: number, mapSize: number): void {
  if (layoutSize === mapSize) return;
  throw new RangeError(
    `Cannot type map "${map.name}": the ${part} layout is ${layoutSize} bytes, the map's ${part} size is ${mapSize}`,
  );
}
