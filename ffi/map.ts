/**
 * {@linkcode BpfMap}: a map of a loaded object.
 *
 * @module
 */

import { type CallContext, checkInt, readCString } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { MapFlags, MapType, mapTypeName, UpdateFlags } from "./constants.ts";
import { possibleCpuCount } from "./cpus.ts";
import { BpfError, NotSupportedError } from "./errors.ts";
import type { ObjectState } from "./_object_state.ts";
import { libbpf } from "./libbpf.ts";
import {
  dumpMap,
  type DumpOptions,
  type DumpTarget,
  type EntriesOptions,
  type MapDump,
  MapEntries,
} from "./map_dump.ts";
import { MapMemory } from "./map_memory.ts";
import { ARRAY_TYPES, HASH_TYPES, LOCK_TYPES, PER_CPU_TYPES, QUEUE_TYPES } from "./_map_kinds.ts";
import { objectStateOf, type RingBufferOptions, RingBufferReader } from "./ring_buffer.ts";
import type { LayoutValue } from "./layout.ts";
import type { Btf } from "./btf.ts";
import {
  type BtfMapLayouts,
  btfMapLayouts,
  resolveMapLayouts,
  TypedMap,
  type TypedMapOptions,
} from "./typed_map.ts";

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

/**
 * Options of element reads: {@linkcode BpfMap.lookup} and
 * {@linkcode BpfMap.lookupAndDelete}.
 *
 * @example Read a value without taking its spin lock
 * ```ts
 * import type { ElementOptions } from "./map.ts";
 *
 * const options: ElementOptions = { lock: false };
 * ```
 */
export interface ElementOptions {
  /**
   * Copy the value under its `struct bpf_spin_lock` (`BPF_F_LOCK`), so that
   * a BPF program holding the lock cannot change it halfway through the copy.
   * Only HASH and ARRAY maps whose value contains a spin lock support it.
   *
   * @default true when the value contains a spin lock, else false
   */
  lock?: boolean;
}

/**
 * Options of element writes: {@linkcode BpfMap.update} and
 * {@linkcode BpfMap.updateBatch}.
 *
 * @example Create an element only if its key is new
 * ```ts
 * import { UpdateFlags } from "./constants.ts";
 * import type { UpdateOptions } from "./map.ts";
 *
 * const options: UpdateOptions = { flags: UpdateFlags.NOEXIST };
 * ```
 */
export interface UpdateOptions extends ElementOptions {
  /**
   * {@linkcode UpdateFlags}: `ANY` creates or replaces, `NOEXIST` only
   * creates, `EXIST` only replaces. `F_LOCK` may be added instead of
   * `lock: true`.
   *
   * @default UpdateFlags.ANY
   */
  flags?: number;
}

/**
 * @internal The key of TypedMap's fast lookup: `map[lookupByPointer](key, value)`
 * with pointers to buffers that the caller keeps alive, sized for the map.
 */
export const lookupByPointer: unique symbol = Symbol("lookupByPointer");

const LOCK_FLAG = BigInt(UpdateFlags.F_LOCK);

/**
 * A map of a loaded {@linkcode BpfObject}. It belongs to the object and
 * becomes unusable when the object is closed: every method then throws
 * {@linkcode ClosedError}.
 *
 * Element methods take keys and values as raw bytes in the kernel's layout and
 * check their sizes before any system call. A missing key is a result, not an
 * error: {@linkcode BpfMap.lookup} returns `undefined` and
 * {@linkcode BpfMap.delete} returns `false`. A method that does not apply to
 * the map's kind (such as `delete` on an array) throws a `TypeError` that
 * names the method to use instead.
 *
 * Values that contain a `struct bpf_spin_lock` are read and written under the
 * lock by default (`BPF_F_LOCK`); pass `{ lock: false }` to copy them without it.
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
  /** The map's name in the object (maps of global variables are named like `syscall.bss`). */
  readonly name: string;
  /** The map type, a value of {@linkcode MapType}. */
  readonly type: number;
  /** The key size in bytes (0 for queues and stacks). */
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
  #spinLock: boolean | undefined;
  #fd: number;
  #perCpu: boolean;
  #layouts: BtfMapLayouts | undefined;

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
    // The fd is fixed from load to close, so one FFI call here saves one per operation.
    this.#fd = lib.bpf_map__fd(pointer);
    this.#perCpu = PER_CPU_TYPES.has(this.type);
  }

  /** The map type's kernel name, such as `"ARRAY"` or `"PERCPU_HASH"`. */
  get typeName(): string {
    return mapTypeName(this.type);
  }

  /** Whether the map stores one value per possible CPU. */
  get isPerCpu(): boolean {
    return this.#perCpu;
  }

  /**
   * UNSAFE: the map's file descriptor, owned by the object and closed with it.
   *
   * @throws {ClosedError} after the object is closed
   */
  get fd(): number {
    this.#object.check("use", `map "${this.name}"`);
    return this.#fd;
  }

  /**
   * Returns a typed view of this map: keys and values as JavaScript values,
   * encoded and decoded by the layouts of the map's BTF, or by declared
   * layouts, which are checked against BTF when the map has it. The view
   * encodes and decodes in buffers it reuses, so a lookup allocates no
   * `ArrayBuffer`.
   *
   * @param options declared key and value layouts; required when the map has no BTF types
   * @throws {LayoutMismatchError} when a declared layout does not match the BTF
   * @throws {TypeError} when the map has no BTF type and no layout was declared
   * @throws {ClosedError} after the object is closed
   *
   * @example Read a u32 -> u64 counter map
   * ```ts ignore
   * import { openObject } from "../mod.ts";
   *
   * using object = openObject("./counters.bpf.o").load();
   * const counts = object.map("counts").typed<number, bigint>();
   * console.log(counts.get(3)); // 42n
   * ```
   */
  typed<K = LayoutValue, V = LayoutValue>(options: TypedMapOptions<K, V> = {}): TypedMap<K, V> {
    this.#check("type");
    let fromBtf: BtfMapLayouts;
    try {
      fromBtf = this.#btfLayouts();
    } catch (error) {
      // A BTF type that layouts cannot model: declared layouts still work, unchecked.
      if (
        !(error instanceof BpfError) || options.key === undefined || options.value === undefined
      ) throw error;
      fromBtf = { key: undefined, value: undefined };
    }
    return new TypedMap(this, resolveMapLayouts(this.name, fromBtf, options));
  }

  /**
   * Looks up `key` and copies its value into `target` without allocating,
   * returning whether the key was found. This is the fast path for hot loops:
   * {@linkcode BpfMap.lookup} allocates a fresh buffer per call, which costs
   * about as much as the system call itself.
   *
   * @param target `valueSize` bytes or more; only the first `valueSize` are written
   * @throws {TypeError} and {@linkcode RangeError} in the cases of {@linkcode BpfMap.lookup}, and
   * RangeError when `target` is too small
   * @throws {ClosedError} after the object is closed
   */
  lookupInto(key: Uint8Array, target: Uint8Array, options: ElementOptions = {}): boolean {
    this.#check("look up element of");
    if (this.isPerCpu) {
      throw new TypeError(
        `Map "${this.name}" is a map of type ${this.typeName} with one value per CPU: use lookupPerCpuInto()`,
      );
    }
    this.#rejectQueue("look up an element by key", "peek()");
    this.#checkKey(key, "look up element of");
    this.#checkTarget(target, this.valueSize, "look up element of");
    return this.#lookupInto(key, target, this.#lockFlag(options.lock, "look up element of"));
  }

  /**
   * Looks up `key` in a per-CPU map and copies every possible CPU's value into
   * `target`, CPU `i` at byte `i * stride` where stride is the value size
   * rounded up to 8, without allocating. Returns whether the key was found.
   *
   * @param target at least `stride * possibleCpuCount()` bytes
   * @throws {TypeError} on a map that is not per-CPU
   * @throws {RangeError} when `key` has the wrong size or `target` is too small
   * @throws {ClosedError} after the object is closed
   */
  lookupPerCpuInto(key: Uint8Array, target: Uint8Array): boolean {
    this.#check("look up element of");
    this.#requirePerCpu("lookupInto()");
    this.#checkKey(key, "look up element of");
    this.#checkTarget(target, this.#perCpuBytes(), "look up element of");
    return this.#lookupInto(key, target, 0);
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
        `Map "${this.name}" cannot be mmapped: it is a map of type ${this.typeName}${
          this.type === MapType.ARRAY ? " without BPF_F_MMAPABLE" : ""
        }; only ARRAY maps created with map_flags BPF_F_MMAPABLE can`,
      );
    }
    if (writable && (this.flags & MapFlags.F_RDONLY_PROG) !== 0) {
      throw new TypeError(
        `Map "${this.name}" cannot be mmapped writable: it is read-only after load (BPF_F_RDONLY_PROG)`,
      );
    }

    const valueStride = roundUp8(this.valueSize);
    const memory = new MapMemory(this.#fd, {
      map: this.name,
      byteLength: valueStride * this.maxEntries,
      valueStride,
      writable,
    }, this.#object);
    this.#object.adopt(memory, 2);
    return memory;
  }

  /**
   * Opens a reader of this `RINGBUF` map: the same as
   * `new RingBufferReader(map, options)`, see {@linkcode RingBufferReader}.
   */
  ringBuffer(options?: RingBufferOptions): RingBufferReader {
    return new RingBufferReader(this, options);
  }

  /** @internal The object's state, for children it must close: ring buffer readers. */
  [objectStateOf](): ObjectState {
    return this.#object;
  }

  /**
   * Looks up `key` and returns a copy of its value, or `undefined` when the key
   * is not in the map. In an LPM trie the key's prefix length bounds the
   * match, and the value of the longest matching prefix is returned.
   *
   * @param options see {@linkcode ElementOptions}
   * @throws {TypeError} on a per-CPU map (use {@linkcode BpfMap.lookupPerCpu}),
   * a queue or stack (use {@linkcode BpfMap.peek}), or with `lock: true` on a
   * value without a spin lock
   * @throws {RangeError} when `key` is not `keySize` bytes long
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  lookup(key: Uint8Array, options: ElementOptions = {}): Uint8Array<ArrayBuffer> | undefined {
    this.#check("look up element of");
    if (this.isPerCpu) {
      throw new TypeError(
        `Map "${this.name}" is a map of type ${this.typeName} with one value per CPU: use lookupPerCpu()`,
      );
    }
    this.#rejectQueue("look up an element by key", "peek()");
    this.#checkKey(key, "look up element of");
    const flags = this.#lockFlag(options.lock, "look up element of");
    return this.#lookup(key, this.valueSize, flags);
  }

  /**
   * Looks up `key` in a per-CPU map and returns one copy of the value per
   * possible CPU (not only online ones), or `undefined` when the key is not in
   * the map. The kernel stores each CPU's value at an 8-byte aligned stride.
   * {@linkcode readUint64PerCpu} and {@linkcode sumPerCpu} decode and total them.
   *
   * @throws {TypeError} on a map that is not per-CPU (use {@linkcode BpfMap.lookup})
   * @throws {RangeError} when `key` is not `keySize` bytes long
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  lookupPerCpu(key: Uint8Array): Uint8Array<ArrayBuffer>[] | undefined {
    this.#check("look up element of");
    this.#requirePerCpu("lookup()");
    this.#checkKey(key, "look up element of");
    const all = this.#lookup(key, this.#perCpuBytes(), 0);
    return all === undefined ? undefined : this.#splitPerCpu(all);
  }

  /**
   * Creates or replaces the element `key`.
   *
   * @param flagsOrOptions {@linkcode UpdateFlags} (`ANY`, the default,
   * `NOEXIST` or `EXIST`) or {@linkcode UpdateOptions}
   * @throws {TypeError} on a per-CPU map (use {@linkcode BpfMap.updatePerCpu}),
   * a queue or stack (use {@linkcode BpfMap.push}), or with `lock: true` on a
   * value without a spin lock
   * @throws {RangeError} when `key` or `value` has the wrong size, or the flags are invalid
   * @throws {BpfError} with code `EEXIST` (NOEXIST and the key exists; always
   * on arrays), `ENOENT` (EXIST and the key does not exist) or `E2BIG` (the
   * map is full, or an array index is not below `maxEntries`)
   * @throws {ClosedError} after the object is closed
   */
  update(
    key: Uint8Array,
    value: Uint8Array,
    flagsOrOptions: number | UpdateOptions = UpdateFlags.ANY,
  ): void {
    this.#check("update element of");
    if (this.isPerCpu) {
      throw new TypeError(
        `Map "${this.name}" is a map of type ${this.typeName} with one value per CPU: use updatePerCpu()`,
      );
    }
    this.#rejectQueue("update an element by key", "push()");
    const { flags, lock } = updateFlagsOf(flagsOrOptions);
    this.#checkKey(key, "update element of");
    this.#checkSize(value, this.valueSize, "value", "update element of");
    const elementFlags = flags | this.#lockFlag(lock, "update element of");

    const ret = libbpf().bpf_map_update_elem(this.#fd, key, value, BigInt(elementFlags));
    if (ret < 0) checkInt(ret, "update element of", this.#updateContext(-ret, flags));
  }

  /**
   * Creates or replaces the element `key` of a per-CPU map, with one value
   * per possible CPU.
   *
   * @param values one value of `valueSize` bytes per possible CPU, in CPU order
   * @param flags {@linkcode UpdateFlags}: `ANY` (the default), `NOEXIST` or `EXIST`
   * @throws {TypeError} on a map that is not per-CPU (use {@linkcode BpfMap.update})
   * @throws {RangeError} when `key` or a value has the wrong size, `values`
   * does not have one value per possible CPU, or the flags are invalid
   * @throws {BpfError} with code `EEXIST`, `ENOENT` or `E2BIG`, as for {@linkcode BpfMap.update}
   * @throws {ClosedError} after the object is closed
   */
  updatePerCpu(
    key: Uint8Array,
    values: readonly Uint8Array[],
    flags: number = UpdateFlags.ANY,
  ): void {
    this.#check("update element of");
    this.#requirePerCpu("update()");
    const split = updateFlagsOf(flags);
    if (split.lock) {
      throw new TypeError(
        `Cannot update element of map "${this.name}" with the lock: per-CPU values cannot contain a struct bpf_spin_lock`,
      );
    }
    this.#checkKey(key, "update element of");
    const packed = this.#packPerCpu(values, "update element of");

    const ret = libbpf().bpf_map_update_elem(this.#fd, key, packed, BigInt(split.flags));
    if (ret < 0) checkInt(ret, "update element of", this.#updateContext(-ret, split.flags));
  }

  /**
   * Creates or replaces many elements in one system call
   * (`BPF_MAP_UPDATE_BATCH`, Linux 5.6). `keys` contains the keys back to back,
   * `values` the values (for per-CPU maps, each key's values for every
   * possible CPU at an 8-byte stride). The kernel writes them in order and
   * stops at the first failure. It accepts no NOEXIST or EXIST for batches,
   * so every element is created or replaced as with `UpdateFlags.ANY`.
   *
   * @param options see {@linkcode ElementOptions}
   * @returns the number of elements written
   * @throws {TypeError} on a queue or stack, or with `lock: true` on a value without a spin lock
   * @throws {RangeError} when `keys` is not a whole number of keys or
   * `values` does not contain one value per key
   * @throws {BpfError} on the first element that fails, such as `E2BIG` when
   * the map is full. The message states how many elements were written before it
   * @throws {ClosedError} after the object is closed
   */
  updateBatch(keys: Uint8Array, values: Uint8Array, options: ElementOptions = {}): number {
    const op = "update a batch of";
    this.#check(op);
    this.#rejectQueue("update elements by key", "push()");
    const count = this.#batchCount(keys, values, op);
    if (count === 0) return 0;
    const flags = this.isPerCpu
      ? this.#perCpuLockFlag(options.lock, op)
      : this.#lockFlag(options.lock, op);

    const written = new Uint32Array([count]);
    const ret = libbpf().bpf_map_update_batch(this.#fd, keys, values, written, batchOptions(flags));
    if (ret < 0) {
      const context = this.#updateContext(-ret, UpdateFlags.ANY);
      const progress = `${written[0]} of ${count} elements were written before the failure`;
      checkInt(ret, op, {
        ...context,
        hint: context.hint === undefined ? progress : `${context.hint}; ${progress}`,
      });
    }
    return count;
  }

  /**
   * Deletes `key` and returns whether it was in the map.
   *
   * @throws {TypeError} on an array (elements cannot be deleted; write zeros
   * with {@linkcode BpfMap.update}) or a queue or stack (use {@linkcode BpfMap.pop})
   * @throws {RangeError} when `key` is not `keySize` bytes long
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  delete(key: Uint8Array): boolean {
    this.#check("delete element of");
    this.#rejectArray(`write zeros with ${this.isPerCpu ? "updatePerCpu()" : "update()"}`);
    this.#rejectQueue("delete an element by key", "pop()");
    this.#checkKey(key, "delete element of");

    const ret = libbpf().bpf_map_delete_elem(this.#fd, key);
    if (ret === -Errno.ENOENT) return false;
    checkInt(ret, "delete element of", this.#subject);
    return true;
  }

  /**
   * Looks up `key`, deletes it and returns its value, or `undefined` when the
   * key is not in the map, in one system call: no other reader can see the
   * element between the read and the delete. Hash maps support it since
   * Linux 5.14.
   *
   * @param options see {@linkcode ElementOptions}
   * @throws {TypeError} on a per-CPU map (use
   * {@linkcode BpfMap.lookupAndDeletePerCpu}), a queue or stack (use
   * {@linkcode BpfMap.pop}), an array, or an LPM trie, or with `lock: true`
   * on a value without a spin lock
   * @throws {RangeError} when `key` is not `keySize` bytes long
   * @throws {NotSupportedError} on kernels before 5.14
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  lookupAndDelete(
    key: Uint8Array,
    options: ElementOptions = {},
  ): Uint8Array<ArrayBuffer> | undefined {
    const op = "look up and delete element of";
    this.#check(op);
    if (this.isPerCpu) {
      throw new TypeError(
        `Map "${this.name}" is a map of type ${this.typeName} with one value per CPU: use lookupAndDeletePerCpu()`,
      );
    }
    this.#rejectQueue("look up and delete an element by key", "pop()");
    this.#requireHash("lookupAndDelete()");
    this.#checkKey(key, op);
    const flags = this.#lockFlag(options.lock, op);
    return this.#lookupAndDelete(key, this.valueSize, flags);
  }

  /**
   * Looks up `key` in a per-CPU hash map, deletes it and returns one value
   * per possible CPU, or `undefined` when the key is not in the map (Linux 5.14).
   *
   * @throws {TypeError} on a map that is not a per-CPU hash map
   * @throws {RangeError} when `key` is not `keySize` bytes long
   * @throws {NotSupportedError} on kernels before 5.14
   * @throws {BpfError} when the system call fails for another reason than a missing key
   * @throws {ClosedError} after the object is closed
   */
  lookupAndDeletePerCpu(key: Uint8Array): Uint8Array<ArrayBuffer>[] | undefined {
    const op = "look up and delete element of";
    this.#check(op);
    this.#requirePerCpu("lookupAndDelete()");
    this.#requireHash("lookupAndDeletePerCpu()");
    this.#checkKey(key, op);
    const all = this.#lookupAndDelete(key, this.#perCpuBytes(), 0);
    return all === undefined ? undefined : this.#splitPerCpu(all);
  }

  /**
   * Adds `value` to a queue (at the back) or a stack (on top).
   *
   * @param flags `UpdateFlags.ANY` (the default) fails when the map is full;
   * `UpdateFlags.EXIST` makes room by dropping the oldest element
   * @throws {TypeError} on a map that is not a queue or stack
   * @throws {RangeError} when `value` is not `valueSize` bytes long or the flags are invalid
   * @throws {BpfError} with code `E2BIG` when the map is full
   * @throws {ClosedError} after the object is closed
   */
  push(value: Uint8Array, flags: number = UpdateFlags.ANY): void {
    const op = "push to";
    this.#check(op);
    this.#requireQueue("push()", "update()");
    if (flags !== UpdateFlags.ANY && flags !== UpdateFlags.EXIST) {
      throw new RangeError(
        `Invalid flags ${flags} for push(): expected UpdateFlags.ANY, or UpdateFlags.EXIST to drop the oldest element when full`,
      );
    }
    this.#checkSize(value, this.valueSize, "value", op);

    const ret = libbpf().bpf_map_update_elem(this.#fd, null, value, BigInt(flags));
    if (ret >= 0) return;
    const full = `the ${this.typeName.toLowerCase()} is full (${this.maxEntries} elements): ` +
      "pop() first, or push with UpdateFlags.EXIST to drop the oldest element";
    checkInt(ret, op, ret === -Errno.E2BIG ? { ...this.#subject, hint: full } : this.#subject);
  }

  /**
   * Removes and returns the front of a queue or the top of a stack, or
   * `undefined` when it is empty.
   *
   * @throws {TypeError} on a map that is not a queue or stack
   * @throws {BpfError} when the system call fails for another reason than an empty map
   * @throws {ClosedError} after the object is closed
   */
  pop(): Uint8Array<ArrayBuffer> | undefined {
    this.#check("pop from");
    this.#requireQueue("pop()", "lookupAndDelete()");
    const value = new Uint8Array(this.valueSize);
    const ret = libbpf().bpf_map_lookup_and_delete_elem_flags(this.#fd, null, value, 0n);
    if (ret === -Errno.ENOENT) return undefined;
    checkInt(ret, "pop from", this.#subject);
    return value;
  }

  /**
   * Returns the front of a queue or the top of a stack without removing it,
   * or `undefined` when it is empty.
   *
   * @throws {TypeError} on a map that is not a queue or stack
   * @throws {BpfError} when the system call fails for another reason than an empty map
   * @throws {ClosedError} after the object is closed
   */
  peek(): Uint8Array<ArrayBuffer> | undefined {
    this.#check("peek into");
    this.#requireQueue("peek()", "lookup()");
    const value = new Uint8Array(this.valueSize);
    const ret = libbpf().bpf_map_lookup_elem(this.#fd, null, value);
    if (ret === -Errno.ENOENT) return undefined;
    checkInt(ret, "peek into", this.#subject);
    return value;
  }

  /**
   * Reads every entry of the map into one keys buffer and one values buffer.
   *
   * By default it uses batch lookups (`BPF_MAP_LOOKUP_BATCH`, one system call
   * per `batchSize` entries). When a hash bucket contains more entries than the
   * batch, the kernel returns ENOSPC and the batch doubles (counted in
   * `stats.batchGrowths`). Where the kernel or map kind has no batch
   * operation (kernels before 5.6, and LPM tries when `delete` is set), it falls back to
   * `BPF_MAP_GET_NEXT_KEY` and one lookup per key; see
   * {@linkcode EntriesOptions.maxWalks} for how that copes with keys deleted
   * during the walk.
   *
   * The result is not a snapshot: programs can change the map while it is
   * read. With `delete: true` each entry read is also deleted. Values that
   * contain a spin lock are read under it by default.
   *
   * @param options see {@linkcode DumpOptions}
   * @returns the entries, with counts of what the dump did in `stats`
   * @throws {TypeError} on a queue or stack (use {@linkcode BpfMap.pop}), with
   * `delete: true` on an array, or with `lock: true` on a value without a spin lock
   * @throws {RangeError} when `batchSize` or `maxWalks` is not a positive integer
   * @throws {BpfError} when a system call fails, or (`EAGAIN`) when iteration
   * kept restarting for `maxWalks` walks because the map changed under it
   * @throws {ClosedError} after the object is closed
   */
  dump(options: DumpOptions = {}): MapDump {
    this.#check("dump");
    this.#rejectQueue("dump", "pop() in a loop");
    if (options.delete) {
      this.#rejectArray(
        `dump() without delete, then write zeros with ${
          this.isPerCpu ? "updatePerCpu()" : "update()"
        }`,
      );
    }
    return dumpMap(this.#dumpTarget(options.lock, "dump"), options);
  }

  /**
   * Iterates over the map's entries one batch at a time, as
   * {@linkcode BpfMap.dump} reads them, and lets the event loop run between
   * batches. Each entry's key and value are views into that batch's buffers;
   * no entry is copied twice. The iterator's `stats` count what the reads did.
   *
   * @param options see {@linkcode EntriesOptions}
   * @throws {TypeError} on a queue or stack, or with `lock: true` on a value
   * without a spin lock
   * @throws {RangeError} when `batchSize` or `maxWalks` is not a positive integer
   * @throws {BpfError} when a system call fails
   * @throws {ClosedError} when the object is closed before or during the iteration
   *
   * @example Sum the u64 values of a large hash map without blocking the event loop
   * ```ts ignore
   * import { openObject } from "../mod.ts";
   *
   * using object = openObject("./flows.bpf.o").load();
   * let total = 0n;
   * for await (const { value } of object.map("bytes").entries({ batchSize: 4096 })) {
   *   total += new DataView(value.buffer, value.byteOffset).getBigUint64(0, true);
   * }
   * ```
   */
  entries(options: EntriesOptions = {}): MapEntries {
    this.#check("iterate over");
    this.#rejectQueue("iterate over", "pop() in a loop");
    return new MapEntries(this.#dumpTarget(options.lock, "iterate over"), options);
  }

  #dumpTarget(lock: boolean | undefined, op: string): DumpTarget {
    const flags = this.isPerCpu ? this.#perCpuLockFlag(lock, op) : this.#lockFlag(lock, op);
    return {
      keySize: this.keySize,
      valueSize: this.valueSize,
      maxEntries: this.maxEntries,
      cpuCount: this.isPerCpu ? possibleCpuCount() : undefined,
      elementFlags: flags,
      context: this.#subject,
      fd: () => this.fd,
    };
  }

  #lookup(key: Uint8Array, size: number, flags: number): Uint8Array<ArrayBuffer> | undefined {
    const value = new Uint8Array(size);
    return this.#lookupInto(key, value, flags) ? value : undefined;
  }

  /**
   * @internal Looks up a key into a value through pointers, with the default
   * lock, skipping the argument checks that the caller made once. For
   * TypedMap only; not for per-CPU maps, queues or stacks.
   */
  [lookupByPointer](key: Deno.PointerValue, value: Deno.PointerValue): boolean {
    if (this.#object.closed) this.#check("look up element of");
    // SAFETY: the caller owns both buffers for the duration of the call and
    // sized them for this map's key and value.
    const ret = this.#valueHasSpinLock()
      ? libbpf().bpf_map_lookup_elem_flags_pointer(this.#fd, key, value, LOCK_FLAG)
      : libbpf().bpf_map_lookup_elem_pointer(this.#fd, key, value);
    if (ret === -Errno.ENOENT) return false;
    checkInt(ret, "look up element of", this.#subject);
    return true;
  }

  #lookupInto(key: Uint8Array, target: Uint8Array, flags: number): boolean {
    const ret = flags === 0
      ? libbpf().bpf_map_lookup_elem(this.#fd, key, target)
      : libbpf().bpf_map_lookup_elem_flags(this.#fd, key, target, BigInt(flags));
    if (ret === -Errno.ENOENT) return false;
    checkInt(ret, "look up element of", this.#subject);
    return true;
  }

  #checkTarget(target: Uint8Array, size: number, op: string): void {
    if (target.byteLength >= size) return;
    throw new RangeError(
      `Cannot ${op} map "${this.name}": the target is ${target.byteLength} bytes, the value needs ${size}`,
    );
  }

  #btfLayouts(): BtfMapLayouts {
    this.#layouts ??= btfMapLayouts(this.#pointer, this.#object.btf());
    return this.#layouts;
  }

  #lookupAndDelete(
    key: Uint8Array,
    size: number,
    flags: number,
  ): Uint8Array<ArrayBuffer> | undefined {
    const value = new Uint8Array(size);
    const ret = libbpf().bpf_map_lookup_and_delete_elem_flags(this.#fd, key, value, BigInt(flags));
    if (ret === -Errno.ENOENT) return undefined;
    // NOTE: kernels before 5.14 were not tested; they are expected to fail with ENOTSUPP.
    if (ret === -Errno.ENOTSUPP || ret === -Errno.EOPNOTSUPP) {
      throw new NotSupportedError({
        feature: `lookup-and-delete of ${this.typeName} map elements`,
        minimum: "Linux 5.14",
      });
    }
    checkInt(ret, "look up and delete element of", this.#subject);
    return value;
  }

  // Returns BPF_F_LOCK when the lock is requested, or by default when the
  // value contains a spin lock. Throws a TypeError when the lock is requested
  // but the map cannot take it.
  #lockFlag(requested: boolean | undefined, op: string): number {
    if (requested === false) return 0;
    if (requested === undefined) return this.#valueHasSpinLock() ? UpdateFlags.F_LOCK : 0;
    if (!LOCK_TYPES.has(this.type)) {
      throw new TypeError(
        `Cannot ${op} map "${this.name}" with the lock: BPF_F_LOCK applies to HASH and ARRAY maps, and this is a map of type ${this.typeName}`,
      );
    }
    if (!this.#valueHasSpinLock()) {
      throw new TypeError(
        `Cannot ${op} map "${this.name}" with the lock: its value contains no struct bpf_spin_lock, which BPF_F_LOCK requires (leave out the lock option)`,
      );
    }
    return UpdateFlags.F_LOCK;
  }

  #perCpuLockFlag(requested: boolean | undefined, op: string): number {
    if (requested !== true) return 0;
    throw new TypeError(
      `Cannot ${op} map "${this.name}" with the lock: per-CPU values cannot contain a struct bpf_spin_lock`,
    );
  }

  // A struct bpf_spin_lock in a value requires BTF, so the value's BTF type
  // shows whether there is one. It is read from the BTF types directly rather than from a layout,
  // so that a value type that layouts cannot model leaves the byte methods working.
  #valueHasSpinLock(): boolean {
    if (this.#spinLock === undefined) {
      const btf = LOCK_TYPES.has(this.type) ? this.#object.btf() : undefined;
      const typeId = libbpf().bpf_map__btf_value_type_id(this.#pointer);
      this.#spinLock = btf !== undefined && typeId !== 0 && btfHasSpinLock(btf, typeId);
    }
    return this.#spinLock;
  }

  #updateContext(errno: number, flags: number): CallContext {
    const hint = this.#updateHint(errno, flags);
    return hint === undefined ? this.#subject : { ...this.#subject, hint };
  }

  #updateHint(errno: number, flags: number): string | undefined {
    const isArray = ARRAY_TYPES.has(this.type);
    switch (errno) {
      case Errno.EEXIST:
        return isArray
          ? "array elements always exist, so NOEXIST cannot create one: use ANY or EXIST"
          : "the key already exists and NOEXIST only creates new elements: use ANY or EXIST to replace it";
      case Errno.ENOENT:
        return flags === UpdateFlags.EXIST
          ? "the key does not exist and EXIST only replaces existing elements: use ANY or NOEXIST to create it"
          : undefined;
      case Errno.E2BIG:
        return isArray
          ? `the index is not below max_entries (${this.maxEntries})`
          : `the map is full (max_entries ${this.maxEntries}): delete elements, or raise max_entries with setMaxEntries() before load`;
      case Errno.EPERM:
        return (this.flags & MapFlags.F_RDONLY_PROG) !== 0 || this.name.endsWith(".rodata")
          ? "the map is frozen, read-only from user space after load as libbpf makes .rodata: set its values before load with OpenObject.globals()"
          : undefined;
      case Errno.EINVAL:
        return this.type === MapType.LPM_TRIE
          ? `an LPM trie key starts with a u32 prefix length of at most ${
            (this.keySize - 4) * 8
          } bits, followed by the data`
          : undefined;
      default:
        return undefined;
    }
  }

  #perCpuBytes(): number {
    return roundUp8(this.valueSize) * possibleCpuCount();
  }

  #splitPerCpu(all: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer>[] {
    const stride = roundUp8(this.valueSize);
    return Array.from(
      { length: possibleCpuCount() },
      (_, cpu) => all.slice(cpu * stride, cpu * stride + this.valueSize),
    );
  }

  #packPerCpu(values: readonly Uint8Array[], op: string): Uint8Array<ArrayBuffer> {
    const cpus = possibleCpuCount();
    if (values.length !== cpus) {
      throw new RangeError(
        `Cannot ${op} map "${this.name}": got ${values.length} values, the map has one value per possible CPU (${cpus})`,
      );
    }
    const stride = roundUp8(this.valueSize);
    const packed = new Uint8Array(stride * cpus);
    values.forEach((value, cpu) => {
      this.#checkSize(value, this.valueSize, `value of CPU ${cpu}`, op);
      packed.set(value, cpu * stride);
    });
    return packed;
  }

  #batchCount(keys: Uint8Array, values: Uint8Array, op: string): number {
    if (keys.byteLength % this.keySize !== 0) {
      throw new RangeError(
        `Cannot ${op} map "${this.name}": the keys are ${keys.byteLength} bytes, not a multiple of the key size ${this.keySize}`,
      );
    }
    const count = keys.byteLength / this.keySize;
    const entrySize = this.isPerCpu ? this.#perCpuBytes() : this.valueSize;
    if (values.byteLength !== count * entrySize) {
      throw new RangeError(
        `Cannot ${op} map "${this.name}": the values are ${values.byteLength} bytes, ${count} keys need ${
          count * entrySize
        } (${entrySize} per key)`,
      );
    }
    return count;
  }

  #check(op: string): void {
    // Tested first, so that the hot path builds no message string.
    if (this.#object.closed) this.#object.check(op, `map "${this.name}"`);
  }

  #requirePerCpu(alternative: string): void {
    if (this.isPerCpu) return;
    throw new TypeError(
      `Map "${this.name}" is a map of type ${this.typeName}, not per-CPU: use ${alternative}`,
    );
  }

  #requireHash(method: string): void {
    if (HASH_TYPES.has(this.type)) return;
    const instead = ARRAY_TYPES.has(this.type)
      ? "array elements cannot be deleted: read with lookup() and write zeros with update()"
      : "use lookup() and then delete()";
    throw new TypeError(
      `Map "${this.name}" is a map of type ${this.typeName}, which has no ${method}: ${instead}`,
    );
  }

  #requireQueue(method: string, alternative: string): void {
    if (QUEUE_TYPES.has(this.type)) return;
    throw new TypeError(
      `Map "${this.name}" is a map of type ${this.typeName}, not a queue or stack, so it has no ${method}: use ${alternative}`,
    );
  }

  #rejectQueue(action: string, alternative: string): void {
    if (!QUEUE_TYPES.has(this.type)) return;
    throw new TypeError(
      `Map "${this.name}" is a map of type ${this.typeName}, which has no keys: cannot ${action}; use ${alternative}`,
    );
  }

  #rejectArray(instead: string): void {
    if (!ARRAY_TYPES.has(this.type)) return;
    throw new TypeError(
      `Map "${this.name}" is a map of type ${this.typeName}: array elements cannot be deleted; ${instead}`,
    );
  }

  #checkKey(key: Uint8Array, op: string): void {
    this.#checkSize(key, this.keySize, "key", op);
  }

  #checkSize(bytes: Uint8Array, expected: number, what: string, op: string): void {
    if (bytes.byteLength === expected) return;
    const sizeName = what === "key" ? "key size" : "value size";
    throw new RangeError(
      `Cannot ${op} map "${this.name}": the ${what} is ${bytes.byteLength} bytes, the map's ${sizeName} is ${expected}`,
    );
  }
}

// Splits update flags into the base flag (ANY, NOEXIST or EXIST) and the lock
// request, and checks them.
function updateFlagsOf(flagsOrOptions: number | UpdateOptions): {
  flags: number;
  lock: boolean | undefined;
} {
  const options = typeof flagsOrOptions === "number" ? { flags: flagsOrOptions } : flagsOrOptions;
  const raw = options.flags ?? UpdateFlags.ANY;
  // Checked before the bitwise operators, which would cut values of 2^32 and more to 32 bits.
  const flags = Number.isInteger(raw) && raw >= 0 && raw <= 7 ? raw & ~UpdateFlags.F_LOCK : -1;
  if (flags < 0 || flags > UpdateFlags.EXIST) {
    throw new RangeError(
      `Invalid update flags ${raw}: expected UpdateFlags.ANY, NOEXIST or EXIST, optionally with F_LOCK`,
    );
  }
  const flagLock = (raw & UpdateFlags.F_LOCK) !== 0;
  if (flagLock && options.lock === false) {
    throw new RangeError("Invalid update options: flags include F_LOCK but lock is false");
  }
  return { flags, lock: flagLock ? true : options.lock };
}

// struct bpf_map_batch_opts (bpf.h, libbpf 1.0 to 1.5): sz at 0, elem_flags at 8, flags at 16.
function batchOptions(elementFlags: number): Uint8Array<ArrayBuffer> {
  const opts = new Uint8Array(24);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 24n, true);
  view.setBigUint64(8, BigInt(elementFlags), true);
  return opts;
}

// Whether the type, or a member of it at any depth, is struct bpf_spin_lock
// (the kernel allows one at the top level or in a nested struct).
function btfHasSpinLock(btf: Btf, typeId: number, depth = 0): boolean {
  const type = btf.resolve(typeId);
  if (type.kind !== "STRUCT" && type.kind !== "UNION") return false;
  if (type.name === "bpf_spin_lock") return true;
  if (depth >= 32) return false;
  return type.members.some((member) => btfHasSpinLock(btf, member.type, depth + 1));
}

function roundUp8(size: number): number {
  return Math.ceil(size / 8) * 8;
}
