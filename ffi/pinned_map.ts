/**
 * {@linkcode PinnedMap}: a map that another process pinned in the BPF file
 * system (`/sys/fs/bpf`), opened by path to read its entries.
 *
 * @module
 */

import { checkInt, cString } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { track, untrack } from "./_resources.ts";
import { mapTypeName } from "./constants.ts";
import { possibleCpuCount } from "./cpus.ts";
import { BpfError, ClosedError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";
import { libc } from "./libc.ts";
import { PER_CPU_TYPES, QUEUE_TYPES } from "./_map_kinds.ts";
import {
  dumpMap,
  type DumpTarget,
  type EntriesOptions,
  type MapDump,
  MapEntries,
} from "./map_dump.ts";

// struct bpf_map_info (linux/bpf.h): size and offsets of the fields read here.
const MAP_INFO_SIZE = 88;
const MAP_INFO_TYPE = 0;
const MAP_INFO_ID = 4;
const MAP_INFO_KEY_SIZE = 8;
const MAP_INFO_VALUE_SIZE = 12;
const MAP_INFO_MAX_ENTRIES = 16;
const MAP_INFO_FLAGS = 20;
const MAP_INFO_NAME = 24;
const BPF_OBJ_NAME_LEN = 16;

const MISSING_PIN_HINT =
  "nothing is pinned at this path: `ls /sys/fs/bpf` lists the pins, and the BPF file system must be mounted there";

/**
 * A pinned map opened with {@linkcode openPinnedMap}. It has one file
 * descriptor of its own: closing it leaves the pin and the map in place.
 *
 * @example Print a pinned map's entries
 * ```ts ignore
 * import { openPinnedMap } from "../mod.ts";
 *
 * using map = openPinnedMap("/sys/fs/bpf/counts");
 * console.log(map.name, map.typeName, map.keySize, map.valueSize);
 * for await (const { key, value } of map.entries()) console.log(key, value);
 * ```
 */
export class PinnedMap implements Disposable {
  /** The path the map was opened from. */
  readonly path: string;
  /** The map's name as the kernel keeps it (up to 15 bytes). */
  readonly name: string;
  /** The map's id, as shown by `bpftool map list`. */
  readonly id: number;
  /** The map type, a value of `MapType`. */
  readonly type: number;
  /** The key size in bytes. */
  readonly keySize: number;
  /** The value size in bytes (of one CPU's value, for per-CPU maps). */
  readonly valueSize: number;
  /** The maximum number of entries. */
  readonly maxEntries: number;
  /** The map's creation flags (`map_flags`). */
  readonly flags: number;
  #fd: number;
  #token: object;

  /** @internal Use {@linkcode openPinnedMap}. */
  constructor(path: string, fd: number, info: DataView) {
    this.path = path;
    this.#fd = fd;
    this.type = info.getUint32(MAP_INFO_TYPE, true);
    this.id = info.getUint32(MAP_INFO_ID, true);
    this.keySize = info.getUint32(MAP_INFO_KEY_SIZE, true);
    this.valueSize = info.getUint32(MAP_INFO_VALUE_SIZE, true);
    this.maxEntries = info.getUint32(MAP_INFO_MAX_ENTRIES, true);
    this.flags = info.getUint32(MAP_INFO_FLAGS, true);
    const nameBytes = new Uint8Array(info.buffer, MAP_INFO_NAME, BPF_OBJ_NAME_LEN);
    const end = nameBytes.indexOf(0);
    this.name = new TextDecoder().decode(nameBytes.subarray(0, end < 0 ? BPF_OBJ_NAME_LEN : end));
    this.#token = track(this, `pinned map "${path}"`, () => libc().close(fd));
  }

  /** The map type's kernel name, such as `"HASH"`. */
  get typeName(): string {
    return mapTypeName(this.type);
  }

  /** Whether the map stores one value per possible CPU. */
  get isPerCpu(): boolean {
    return PER_CPU_TYPES.has(this.type);
  }

  /** Whether {@linkcode PinnedMap.close} has run. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * UNSAFE: the map's file descriptor, closed by {@linkcode PinnedMap.close}.
   *
   * @throws {ClosedError} after close
   */
  get fd(): number {
    if (this.#fd < 0) throw new ClosedError("use", `pinned map "${this.path}"`);
    return this.#fd;
  }

  /**
   * Reads every entry, as {@linkcode BpfMap.dump} does, without deleting any.
   * Values that hold a spin lock are read without it, because a pinned map's
   * value layout is not known here.
   *
   * @throws {TypeError} on a queue or stack, whose elements have no keys
   * @throws {BpfError} when a system call fails
   * @throws {ClosedError} after close
   */
  dump(options: Omit<EntriesOptions, "lock"> = {}): MapDump {
    return dumpMap(this.#dumpTarget("dump"), { ...options, delete: false });
  }

  /**
   * Iterates over the entries one batch at a time, as {@linkcode BpfMap.entries} does.
   *
   * @throws {TypeError} on a queue or stack
   * @throws {ClosedError} after close
   */
  entries(options: Omit<EntriesOptions, "lock"> = {}): MapEntries {
    return new MapEntries(this.#dumpTarget("iterate over"), options);
  }

  /** Closes this process's file descriptor of the map. Calling it again does nothing. */
  close(): void {
    if (this.#fd < 0) return;
    untrack(this.#token);
    libc().close(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode PinnedMap.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #dumpTarget(op: string): DumpTarget {
    this.fd;
    if (QUEUE_TYPES.has(this.type)) {
      throw new TypeError(
        `Cannot ${op} pinned map "${this.path}": a ${this.typeName} has no keys to iterate`,
      );
    }
    return {
      keySize: this.keySize,
      valueSize: this.valueSize,
      maxEntries: this.maxEntries,
      cpuCount: this.isPerCpu ? possibleCpuCount() : undefined,
      elementFlags: 0,
      context: { path: this.path, map: this.name },
      fd: () => this.fd,
    };
  }
}

/**
 * Opens the map pinned at `path` (`BPF_OBJ_GET`). The pin is not changed,
 * and closing the result closes only this process's file descriptor. Needs
 * root (or CAP_BPF and read permission on the pin file), and `--allow-read`
 * for `/proc/self/fdinfo`, which distinguishes a map from a pinned program or
 * link.
 *
 * @throws {BpfError} with code `ENOENT` when nothing is pinned at `path`,
 * `EPERM`/`EACCES` without the privilege, or `EINVAL` when the pin is not a map
 *
 * @example
 * ```ts ignore
 * import { openPinnedMap } from "../mod.ts";
 *
 * using map = openPinnedMap("/sys/fs/bpf/tc/globals/counts");
 * console.log(`${map.name}: ${map.typeName}, ${map.dump().count} entries`);
 * ```
 */
export function openPinnedMap(path: string): PinnedMap {
  const fd = libbpf().bpf_obj_get(cString(path));
  const hint = fd === -Errno.ENOENT ? MISSING_PIN_HINT : undefined;
  checkInt(fd, "open pinned map", hint === undefined ? { path } : { path, hint });

  try {
    checkIsMap(fd, path);
    const info = new Uint8Array(MAP_INFO_SIZE);
    const length = new Uint32Array([MAP_INFO_SIZE]);
    const ret = libbpf().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(length.buffer));
    checkInt(ret, "read info of pinned map", { path });
    return new PinnedMap(path, fd, new DataView(info.buffer));
  } catch (error) {
    libc().close(fd);
    throw error;
  }
}

// The fdinfo of a BPF fd has a "map_type:" line for a map, "prog_type:" for a
// program and "link_type:" for a link (checked on Linux 6.18).
function checkIsMap(fd: number, path: string): void {
  const fdinfo = Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`);
  if (/^map_type:/m.test(fdinfo)) return;

  let kind = "not a map";
  if (/^prog_type:/m.test(fdinfo)) kind = "a program";
  if (/^link_type:/m.test(fdinfo)) kind = "a link";
  throw new BpfError({
    op: "open pinned map",
    path,
    errno: Errno.EINVAL,
    detail: `the pinned object is ${kind}`,
    hint: "`bpftool map list` and `bpftool prog list` show what is loaded",
  });
}
