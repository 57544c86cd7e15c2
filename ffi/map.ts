/**
 * {@linkcode BpfMap}: a map of a loaded object.
 *
 * @module
 */

import { checkInt, readCString } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { MapFlags, MapType, mapTypeName, UpdateFlags } from "./constants.ts";
import { possibleCpuCount } from "./cpus.ts";
import type { ObjectState } from "./_object_state.ts";
import { libbpf } from "./libbpf.ts";
import { MapMemory } from "./map_memory.ts";

/**
 * Options of {@linkcode BpfMap.mmap}.
 *
 * @example Map a `.bss` section writable to set a global before attaching
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./probe.bpf.o").load();
 * using bss = object.map("probe.bss").mmap({ writable: true });
 * new Uint32Array(bss.buffer)[0] = Deno.pid;
 * ```
 */
export interface MmapOptions {
  /**
   * Map the memory writable, so that stores change the values the kernel
   * programs see. Not possible for read-only maps such as `.rodata`.
   *
   * @default false
   */
  writable?: boolean;
}

const PER_CPU_TYPES: ReadonlySet<number> = new Set([
  MapType.PERCPU_ARRAY,
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
  MapType.PERCPU_CGROUP_STORAGE,
]);

/**
 * A map of a loaded {@linkcode BpfObject}. It belongs to the object and
 * becomes unusable when the object is closed: every method then throws
 * {@linkcode ClosedError}.
 *
 * Element methods take keys and values as raw bytes in the kernel's layout and
 * check their sizes before any system call. A missing key is a result, not an
 * error: {@linkcode BpfMap.lookup} returns `undefined` and
 * {@linkcode BpfMap.delete} returns `false`.
 *
 * @example Read one u64 value of an array map
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./counters.bpf.o").load();
 * const counts = object.map("counts");
 * const value = counts.lookup(new Uint8Array(new Uint32Array([3]).buffer));
 * if (value !== undefined) console.log(new BigUint64Array(value.buffer)[0]);
 * ```
 */
export class BpfMap {
  /** The map's name in the object (internal maps are named like `.bss`). */
  readonly name: string;
  /** The map type, a value of {@linkcode MapType}. */
  readonly type: number;
  /** The key size in bytes. */
  readonly keySize: number;
  /** The value size in bytes (of one CPU's value, for per-CPU maps). */
  readonly valueSize: number;
  /** The maximum number of entries, as created. */
  readonly maxEntries: number;
  /** The map's creation flags (`map_flags`), see {@linkcode MapFlags}. */
  readonly flags: number;
  #pointer: Deno.PointerObject;
  #object: ObjectState;
  #subject: { map: string; object: string };

  /** @internal Created by {@linkcode BpfObject}; use {@linkcode BpfObject.map}. */
  constructor(pointer: Deno.PointerObject, object: ObjectState) {
    const lib = libbpf();
    this.#pointer = pointer;
    this.#object = object;
    this.name = readCString(lib.bpf_map__name(pointer));
    this.type = lib.bpf_map__type(pointer);
    this.keySize = lib.bpf_map__key_size(pointer);
    this.valueSize = lib.bpf_map__value_size(pointer);
    this.maxEntries = lib.bpf_map__max_entries(pointer);
    this.flags = lib.bpf_map__map_flags(pointer);
    this.#subject = { map: this.name, object: object.name };
  }

  /** The map type's kernel name, such as `"ARRAY"` or `"PERCPU_HASH"`. */
  get typeName(): string {
    return mapTypeName(this.type);
  }

  /** Whether the map stores one value per possible CPU. */
  get isPerCpu(): boolean {
    return PER_CPU_TYPES.has(this.type);
  }

  /**
   * UNSAFE: the map's file descriptor, owned by the object and closed with it.
   *
   * @throws {ClosedError} after the object is closed
   */
  get fd(): number {
    this.#object.check("read the fd of", `map "${this.name}"`);
    return libbpf().bpf_map__fd(this.#pointer);
  }

  /**
   * Maps the map's memory into this process for zero-copy reads. Only array
   * maps created with `BPF_F_MMAPABLE` can be mapped; libbpf creates the
   * `.bss`, `.data` and `.rodata` maps of global variables that way.
   *
   * The memory belongs to this map's object and is unmapped when the object
   * closes; close it earlier with {@linkcode MapMemory.close}.
   *
   * @param options see {@linkcode MmapOptions}
   * @returns the mapped memory, sized `valueStride * maxEntries`
   * @throws {TypeError} when the map is not an mmapable array, or `writable`
   * is requested for a map that BPF programs may only read
   * @throws {BpfError} when mmap() fails
   * @throws {ClosedError} after the object is closed
   */
  mmap(options: MmapOptions = {}): MapMemory {
    this.#object.check("mmap", `map "${this.name}"`);
    const writable = options.writable ?? false;
    if (this.type !== MapType.ARRAY || (this.flags & MapFlags.F_MMAPABLE) === 0) {
      throw new TypeError(
        `Map "${this.name}" cannot be mmapped: it is a ${this.typeName} map${
          this.type === MapType.ARRAY ? " without BPF_F_MMAPABLE" : ""
        }; only ARRAY maps created with map_flags BPF_F_MMAPABLE can`,
      );
    }
    if (writable && (this.flags & MapFlags.F_RDONLY_PROG) !== 0) {
      throw new TypeError(
        `Map "${this.name}" cannot be mmapped writable: it is read-only after load (BPF_F_RDONLY_PROG)`,
      );
    }

    const valueStride = Math.ceil(this.valueSize / 8) * 8;
    const memory = new MapMemory(this.fd, {
      map: this.name,
      byteLength: valueStride * this.maxEntries,
      valueStride,
      writable,
    }, this.#object);
    this.#object.adopt(memory, 2);
    return memory;
  }

  /**
   * Looks up `key` and returns a copy of its value, or `undefined` when the key
   * is not in the map.
   *
   * @throws {TypeError} on a per-CPU map (use {@linkcode BpfMap.lookupPerCpu})
   * @throws {RangeError} when `key` is not `keySize` bytes long
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  lookup(key: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
    if (this.isPerCpu) {
      throw new TypeError(
        `Map "${this.name}" is a ${this.typeName} map with one value per CPU: use lookupPerCpu()`,
      );
    }
    return this.#lookup(key, this.valueSize);
  }

  /**
   * Looks up `key` in a per-CPU map and returns one copy of the value per
   * possible CPU (not only online ones), or `undefined` when the key is not in
   * the map. The kernel stores each CPU's value at an 8-byte aligned stride.
   *
   * @throws {TypeError} on a map that is not per-CPU (use {@linkcode BpfMap.lookup})
   * @throws {RangeError} when `key` is not `keySize` bytes long
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  lookupPerCpu(key: Uint8Array): Uint8Array<ArrayBuffer>[] | undefined {
    if (!this.isPerCpu) {
      throw new TypeError(
        `Map "${this.name}" is a ${this.typeName} map, not per-CPU: use lookup()`,
      );
    }
    const stride = Math.ceil(this.valueSize / 8) * 8;
    const cpus = possibleCpuCount();
    const all = this.#lookup(key, stride * cpus);
    if (all === undefined) return undefined;
    return Array.from(
      { length: cpus },
      (_, cpu) => all.slice(cpu * stride, cpu * stride + this.valueSize),
    );
  }

  /**
   * Creates or updates the element `key`.
   *
   * @param flags {@linkcode UpdateFlags}: `ANY` (the default), `NOEXIST` or `EXIST`
   * @throws {RangeError} when `key` or `value` has the wrong size
   * @throws {BpfError} with code `EEXIST` (NOEXIST and the key exists), `ENOENT`
   * (EXIST and it does not) or `E2BIG` (the map is full)
   * @throws {ClosedError} after the object is closed
   */
  update(key: Uint8Array, value: Uint8Array, flags: number = UpdateFlags.ANY): void {
    this.#checkKey(key, "update");
    this.#checkSize(value, this.valueSize, "value", "update");
    const ret = libbpf().bpf_map_update_elem(this.fd, key, value, BigInt(flags));
    checkInt(ret, "update element of", this.#subject);
  }

  /**
   * Deletes `key` and returns whether it was in the map.
   *
   * @throws {RangeError} when `key` is not `keySize` bytes long
   * @throws {BpfError} on other failures, such as `EINVAL` for array maps, whose
   * elements cannot be deleted
   * @throws {ClosedError} after the object is closed
   */
  delete(key: Uint8Array): boolean {
    this.#checkKey(key, "delete");
    const ret = libbpf().bpf_map_delete_elem(this.fd, key);
    if (ret === -Errno.ENOENT) return false;
    checkInt(ret, "delete element of", this.#subject);
    return true;
  }

  #lookup(key: Uint8Array, size: number): Uint8Array<ArrayBuffer> | undefined {
    this.#checkKey(key, "lookup");
    const value = new Uint8Array(size);
    const ret = libbpf().bpf_map_lookup_elem(this.fd, key, value);
    if (ret === -Errno.ENOENT) return undefined;
    checkInt(ret, "look up element of", this.#subject);
    return value;
  }

  #checkKey(key: Uint8Array, op: string): void {
    this.#checkSize(key, this.keySize, "key", op);
  }

  #checkSize(bytes: Uint8Array, expected: number, what: string, op: string): void {
    if (bytes.byteLength === expected) return;
    throw new RangeError(
      `Cannot ${op} map "${this.name}": the ${what} is ${bytes.byteLength} bytes, the map's ${what} size is ${expected}`,
    );
  }
}
