/**
 * Dumping whole maps: {@linkcode MapDump} (every entry in two flat buffers)
 * and the batch and iteration readers behind {@linkcode BpfMap.dump} and
 * {@linkcode BpfMap.entries}.
 *
 * @module
 */

import { type CallContext, checkInt } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { GrowableBytes } from "./_growable_bytes.ts";
import { dataView, KeyIndex } from "./_key_index.ts";
import { BpfError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

/**
 * One entry of a map: views of its key and value bytes.
 *
 * @example
 * ```ts
 * import type { MapEntry } from "./map_dump.ts";
 *
 * const entry: MapEntry = { key: new Uint8Array(4), value: new Uint8Array(8) };
 * ```
 */
export interface MapEntry {
  /** The key, `keySize` bytes. */
  key: Uint8Array<ArrayBuffer>;
  /** The value: `valueSize` bytes, or for a per-CPU map one value per possible CPU at an 8-byte stride. */
  value: Uint8Array<ArrayBuffer>;
}

/**
 * The way a dump reads the map.
 *
 * - `"batch"`: `BPF_MAP_LOOKUP_BATCH` (or `BPF_MAP_LOOKUP_AND_DELETE_BATCH`),
 *   one system call per batch. Linux 5.6 added them for hash maps, and later
 *   kernels for more kinds. Some kinds still lack one or both: on Linux 6.18
 *   an LPM trie has the lookup batch but not the lookup-and-delete batch.
 * - `"iterate"`: `BPF_MAP_GET_NEXT_KEY` and one lookup per key.
 * - `"auto"`: batches, and iteration when the kernel or the map kind has no
 *   batch operations.
 *
 * @example
 * ```ts
 * import type { DumpMethod } from "./map_dump.ts";
 *
 * const method: DumpMethod = "iterate";
 * ```
 */
export type DumpMethod = "auto" | "batch" | "iterate";

/**
 * Options of {@linkcode BpfMap.entries}.
 *
 * @example
 * ```ts
 * import type { EntriesOptions } from "./map_dump.ts";
 *
 * const options: EntriesOptions = { batchSize: 1024, method: "auto" };
 * ```
 */
export interface EntriesOptions {
  /**
   * The number of entries to request per batch system call, or per chunk of
   * iteration. A hash bucket with more entries than this makes the kernel
   * return ENOSPC; the batch then doubles and the call is repeated.
   *
   * @default 4096
   */
  batchSize?: number;
  /** How to read the map. @default "auto" */
  method?: DumpMethod;
  /**
   * Read each value under its `struct bpf_spin_lock` (`BPF_F_LOCK`).
   *
   * @default true when the value contains a spin lock, else false
   */
  lock?: boolean;
  /**
   * The number of walks an iteration may start before it gives up because
   * the map keeps changing. A walk is abandoned after twice `maxEntries + 1`
   * steps and the next one starts again from the first key, skipping the keys
   * already read.
   *
   * @default 3
   */
  maxWalks?: number;
}

/**
 * Options of {@linkcode BpfMap.dump}.
 *
 * @example Drain a hash map
 * ```ts
 * import type { DumpOptions } from "./map_dump.ts";
 *
 * const options: DumpOptions = { delete: true, batchSize: 8192 };
 * ```
 */
export interface DumpOptions extends EntriesOptions {
  /**
   * Delete each entry as it is read (`BPF_MAP_LOOKUP_AND_DELETE_BATCH`, or
   * lookup-and-delete per key when iterating). Entries that programs add
   * during the dump can be left in the map.
   *
   * @default false
   */
  delete?: boolean;
}

/**
 * Counters of a dump: its system calls, and the irregular cases that the
 * kernel's map semantics allow.
 *
 * @example
 * ```ts
 * import type { DumpStats } from "./map_dump.ts";
 *
 * const stats: DumpStats = {
 *   method: "batch",
 *   calls: 3,
 *   batchSize: 8192,
 *   batchGrowths: 1,
 *   walks: 0,
 *   repeatedKeys: 0,
 *   vanishedKeys: 0,
 * };
 * ```
 */
export interface DumpStats {
  /** The method that produced the entries. */
  method: "batch" | "iterate";
  /** The number of batch, get-next-key and lookup system calls made. */
  calls: number;
  /** The batch size at the end, larger than requested after an ENOSPC. */
  batchSize: number;
  /** How many times ENOSPC made the batch double. */
  batchGrowths: number;
  /** The number of iteration walks started (0 for batch dumps). */
  walks: number;
  /** Keys that iteration returned again, after a restart from the first key, and that were skipped. */
  repeatedKeys: number;
  /** Keys that disappeared between get-next-key and their lookup, and so are missing. */
  vanishedKeys: number;
}

/**
 * The fields of a {@linkcode MapDump}.
 *
 * @example
 * ```ts
 * import type { MapDumpInit } from "./map_dump.ts";
 *
 * const init: MapDumpInit = { keySize: 4, valueSize: 8, count: 0, keys: new Uint8Array(), values: new Uint8Array() };
 * ```
 */
export interface MapDumpInit {
  /** The key size in bytes. */
  keySize: number;
  /** The size in bytes of one value (one CPU's value for per-CPU maps). */
  valueSize: number;
  /** The number of entries. */
  count: number;
  /** The keys, `count * keySize` bytes. */
  keys: Uint8Array<ArrayBuffer>;
  /** The values, `count * entrySize` bytes. */
  values: Uint8Array<ArrayBuffer>;
  /**
   * The number of values per entry for a per-CPU map, which is the number of
   * possible CPUs. Each value is stored at a stride of `valueSize` rounded up
   * to 8 bytes.
   *
   * @default undefined (not per-CPU: one value of `valueSize` bytes per entry)
   */
  cpuCount?: number;
  /** The counters of the dump that read the entries. */
  stats?: DumpStats;
}

/**
 * The entries of a map at one moment, in two flat buffers: entry `i` has its
 * key at `keys[i * keySize]` and its value at `values[i * entrySize]`. A
 * dump keeps no reference to the map and stays usable after the map's
 * object is closed.
 *
 * Each value was read atomically (under its spin lock when the dump took
 * it), but the dump as a whole is not a snapshot: programs can change the
 * map while it is read.
 *
 * @example Print every key and value of a `u32 -> u64` hash map
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./flows.bpf.o").load();
 * const dump = object.map("counts").dump();
 * for (const { key, value } of dump) {
 *   const view = new DataView(value.buffer, value.byteOffset);
 *   console.log(new DataView(key.buffer, key.byteOffset).getUint32(0, true), view.getBigUint64(0, true));
 * }
 * ```
 */
export class MapDump implements Iterable<MapEntry> {
  /** The key size in bytes. */
  readonly keySize: number;
  /** The size in bytes of one value (one CPU's value for per-CPU maps). */
  readonly valueSize: number;
  /** The number of values per entry: the possible CPUs for per-CPU maps, else 1. */
  readonly cpuCount: number;
  /** Whether each entry contains one value per possible CPU. */
  readonly perCpu: boolean;
  /** The distance in bytes between two CPUs' values of an entry (`valueSize` unless per-CPU). */
  readonly valueStride: number;
  /** The bytes of one entry in {@linkcode MapDump.values}. */
  readonly entrySize: number;
  /** The number of entries. */
  readonly count: number;
  /** Every key, `count * keySize` bytes. */
  readonly keys: Uint8Array<ArrayBuffer>;
  /** Every value, `count * entrySize` bytes. */
  readonly values: Uint8Array<ArrayBuffer>;
  /** The counters of the dump that read the entries (all 0 for a dump built by hand). */
  readonly stats: DumpStats;

  /**
   * Wraps existing buffers. {@linkcode BpfMap.dump} creates dumps; build one
   * by hand to compare against with {@linkcode diffDumps}.
   *
   * @throws {RangeError} when a buffer's length does not match `count` and the sizes
   */
  constructor(init: MapDumpInit) {
    this.keySize = init.keySize;
    this.valueSize = init.valueSize;
    this.perCpu = init.cpuCount !== undefined;
    this.cpuCount = init.cpuCount ?? 1;
    this.valueStride = this.perCpu ? roundUp8(init.valueSize) : init.valueSize;
    this.entrySize = this.cpuCount * this.valueStride;
    this.count = init.count;
    this.keys = init.keys;
    this.values = init.values;
    this.stats = init.stats ?? {
      method: "batch",
      calls: 0,
      batchSize: 0,
      batchGrowths: 0,
      walks: 0,
      repeatedKeys: 0,
      vanishedKeys: 0,
    };
    checkLength(init.keys, this.count * this.keySize, "keys", this.count, this.keySize);
    checkLength(init.values, this.count * this.entrySize, "values", this.count, this.entrySize);
  }

  /** Returns a view of the key of entry `index`. */
  key(index: number): Uint8Array<ArrayBuffer> {
    this.#checkIndex(index);
    return this.keys.subarray(index * this.keySize, (index + 1) * this.keySize);
  }

  /** Returns a view of the value of entry `index` (all CPUs' values for a per-CPU dump). */
  value(index: number): Uint8Array<ArrayBuffer> {
    this.#checkIndex(index);
    return this.values.subarray(index * this.entrySize, (index + 1) * this.entrySize);
  }

  /** Returns a view of CPU `cpu`'s value of entry `index` in a per-CPU dump. */
  cpuValue(index: number, cpu: number): Uint8Array<ArrayBuffer> {
    this.#checkIndex(index);
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.cpuCount) {
      throw new RangeError(
        `CPU ${cpu} is out of range: the dump has values for ${this.cpuCount} CPUs`,
      );
    }
    const start = index * this.entrySize + cpu * this.valueStride;
    return this.values.subarray(start, start + this.valueSize);
  }

  /** Iterates over the entries as views; no bytes are copied. */
  *[Symbol.iterator](): Iterator<MapEntry> {
    for (let index = 0; index < this.count; index++) {
      yield {
        key: this.keys.subarray(index * this.keySize, (index + 1) * this.keySize),
        value: this.values.subarray(index * this.entrySize, (index + 1) * this.entrySize),
      };
    }
  }

  #checkIndex(index: number): void {
    if (Number.isInteger(index) && index >= 0 && index < this.count) return;
    throw new RangeError(`Entry ${index} is out of range: the dump has ${this.count} entries`);
  }
}

/** @internal What a dump needs from a map; {@linkcode BpfMap} provides it. */
export interface DumpTarget {
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  /** The possible CPUs for a per-CPU map, else undefined. */
  readonly cpuCount: number | undefined;
  /** `BPF_F_LOCK` to read values under their spin lock, else 0. */
  readonly elementFlags: number;
  readonly context: CallContext;
  /** Returns the map's fd, throwing ClosedError after the object is closed. */
  fd(): number;
}

const DEFAULT_BATCH_SIZE = 4096;
const DEFAULT_MAX_WALKS = 3;
// struct bpf_map_batch_opts (bpf.h, libbpf 1.0 to 1.5): sz, elem_flags, flags.
const BATCH_OPTS_SIZE = 24;
const BATCH_OPTS_ELEM_FLAGS = 8;
// Batch calls in a row that return no entries and no end (EINTR when a key
// vanishes under an array batch) before the dump gives up.
const MAX_EMPTY_BATCHES = 16;

/** @internal Reads every entry of the map behind `target`. */
export function dumpMap(target: DumpTarget, options: DumpOptions): MapDump {
  const batchSize = checkBatchSize(options.batchSize ?? DEFAULT_BATCH_SIZE, target.maxEntries);
  const maxWalks = positiveInteger(options.maxWalks ?? DEFAULT_MAX_WALKS, "maxWalks");
  const method = checkMethod(options.method ?? "auto");
  const stats = newStats(batchSize);
  const keys = new GrowableBytes((target.maxEntries + batchSize) * target.keySize);
  const values = new GrowableBytes((target.maxEntries + batchSize) * entrySizeOf(target));
  let count = 0;

  if (method !== "iterate") {
    const cursor = new BatchCursor(target, batchSize, options.delete ?? false, stats);
    while (!cursor.done) {
      const read = cursor.read(keys, values, count, method === "batch");
      if (read === undefined) break;
      count += read;
    }
    if (cursor.done) return finish(target, keys, values, count, stats);
  }

  stats.method = "iterate";
  count = options.delete
    ? drainByIteration(target, keys, values, stats)
    : new IterationCursor(target, maxWalks, stats).readAll(keys, values);
  return finish(target, keys, values, count, stats);
}

/**
 * The async iterator that {@linkcode BpfMap.entries} returns: the map's
 * entries, batch by batch, with counts of what the reads did so far.
 *
 * @example
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./flows.bpf.o").load();
 * const entries = object.map("counts").entries();
 * for await (const { key } of entries) console.log(key);
 * console.log(entries.stats.calls);
 * ```
 */
export class MapEntries implements AsyncIterableIterator<MapEntry, void, undefined> {
  /** The counters of the reads so far, final once the iteration is done. */
  readonly stats: DumpStats;
  #generator: AsyncGenerator<MapEntry, void, undefined>;

  /** @internal Use {@linkcode BpfMap.entries}. */
  constructor(target: DumpTarget, options: EntriesOptions) {
    const batchSize = checkBatchSize(options.batchSize ?? DEFAULT_BATCH_SIZE, target.maxEntries);
    const maxWalks = positiveInteger(options.maxWalks ?? DEFAULT_MAX_WALKS, "maxWalks");
    this.stats = newStats(batchSize);
    this.#generator = readEntries(
      target,
      checkMethod(options.method ?? "auto"),
      maxWalks,
      this.stats,
    );
  }

  /** Returns the next entry, reading the next batch when the current one is used up. */
  next(): Promise<IteratorResult<MapEntry, void>> {
    return this.#generator.next();
  }

  /** Ends the iteration; called by `break` in a `for await` loop. */
  return(): Promise<IteratorResult<MapEntry, void>> {
    return this.#generator.return(undefined);
  }

  /** Returns this iterator. */
  [Symbol.asyncIterator](): this {
    return this;
  }
}

async function* readEntries(
  target: DumpTarget,
  method: DumpMethod,
  maxWalks: number,
  stats: DumpStats,
): AsyncGenerator<MapEntry, void, undefined> {
  const batchSize = stats.batchSize;
  const entrySize = entrySizeOf(target);

  if (method !== "iterate") {
    const cursor = new BatchCursor(target, batchSize, false, stats);
    while (!cursor.done) {
      const keys = new GrowableBytes(stats.batchSize * target.keySize);
      const values = new GrowableBytes(stats.batchSize * entrySize);
      const read = cursor.read(keys, values, 0, method === "batch");
      if (read === undefined) break;
      yield* entriesOf(keys.finish(read * target.keySize), values.finish(read * entrySize), read);
      await nextTurn();
    }
    if (cursor.done) return;
  }

  stats.method = "iterate";
  const cursor = new IterationCursor(target, maxWalks, stats);
  while (!cursor.done) {
    const keys = new GrowableBytes(batchSize * target.keySize);
    const values = new GrowableBytes(batchSize * entrySize);
    const read = cursor.read(keys, values, 0, batchSize);
    yield* entriesOf(keys.finish(read * target.keySize), values.finish(read * entrySize), read);
    await nextTurn();
  }
}

/**
 * Batch lookups that continue where the previous call stopped. The kernel
 * returns the position to continue from in `out_batch` (a bucket number for
 * hash maps, the last key for arrays), which becomes the next `in_batch`.
 */
class BatchCursor {
  done = false;
  #target: DumpTarget;
  #delete: boolean;
  #stats: DumpStats;
  #inBatch: Uint8Array<ArrayBuffer> | null = null;
  #outBatch: Uint8Array<ArrayBuffer>;
  #spare: Uint8Array<ArrayBuffer>;
  #count = new Uint32Array(1);
  #opts: Uint8Array<ArrayBuffer>;

  constructor(target: DumpTarget, batchSize: number, remove: boolean, stats: DumpStats) {
    this.#target = target;
    this.#delete = remove;
    this.#stats = stats;
    stats.batchSize = batchSize;
    // Hash maps write a u32 bucket number, arrays a key.
    const tokenSize = roundUp8(Math.max(target.keySize, 4));
    this.#outBatch = new Uint8Array(tokenSize);
    this.#spare = new Uint8Array(tokenSize);
    this.#opts = new Uint8Array(BATCH_OPTS_SIZE);
    const view = new DataView(this.#opts.buffer);
    view.setBigUint64(0, BigInt(BATCH_OPTS_SIZE), true);
    view.setBigUint64(BATCH_OPTS_ELEM_FLAGS, BigInt(target.elementFlags), true);
  }

  /**
   * Reads the next batch into `keys` and `values` from entry `at` on and
   * returns the number of entries read, which can be 0 at the end. Returns
   * undefined when the kernel has no batch operation for this map and no
   * entry was read yet, unless `required` is set; then it throws.
   */
  read(
    keys: GrowableBytes,
    values: GrowableBytes,
    at: number,
    required: boolean,
  ): number | undefined {
    const target = this.#target;
    const entrySize = entrySizeOf(target);
    const lib = libbpf();
    const call = this.#delete ? lib.bpf_map_lookup_and_delete_batch : lib.bpf_map_lookup_batch;

    for (let empty = 0; empty < MAX_EMPTY_BATCHES;) {
      const size = this.#stats.batchSize;
      this.#count[0] = size;
      const ret = call(
        target.fd(),
        this.#inBatch,
        this.#outBatch,
        keys.view(at * target.keySize, size * target.keySize),
        values.view(at * entrySize, size * entrySize),
        this.#count,
        this.#opts,
      );
      this.#stats.calls++;
      const read = this.#count[0]!;

      if (ret === -Errno.ENOENT) {
        // The end. The last call can still return entries.
        this.done = true;
        return read;
      }
      if (ret === -Errno.ENOSPC && read === 0) {
        // One hash bucket contains more entries than the batch, so retry with a bigger one.
        this.#grow();
        continue;
      }
      if (ret < 0 && ret !== -Errno.EINTR && ret !== -Errno.ENOSPC) {
        const first = this.#stats.calls === 1;
        if (first && !required && isUnsupported(ret)) return undefined;
        const context: CallContext = first && isUnsupported(ret)
          ? {
            ...target.context,
            hint: 'this kernel or map kind has no batch operations: use method "auto" or "iterate"',
          }
          : target.context;
        checkInt(
          ret,
          this.#delete ? "look up and delete a batch of" : "look up a batch of",
          context,
        );
      }
      if (read > 0) {
        this.#advance();
        return read;
      }
      empty++;
    }
    throw new BpfError({
      ...target.context,
      op: "look up a batch of",
      errno: Errno.EINTR,
      detail: `${MAX_EMPTY_BATCHES} batch calls in a row returned no entries`,
      hint:
        'keys are vanishing faster than the batch can read them; retry, or dump with method "iterate"',
    });
  }

  #grow(): void {
    const limit = Math.max(this.#target.maxEntries, 1) * 2;
    if (this.#stats.batchSize >= limit) {
      throw new BpfError({
        ...this.#target.context,
        op: "look up a batch of",
        errno: Errno.ENOSPC,
        detail:
          `a batch of ${this.#stats.batchSize} entries is still too small for one hash bucket`,
        hint: "the map contains more entries than max_entries allows; report this as a bug",
      });
    }
    this.#stats.batchSize *= 2;
    this.#stats.batchGrowths++;
  }

  #advance(): void {
    const next = this.#outBatch;
    this.#outBatch = this.#inBatch ?? this.#spare;
    this.#inBatch = next;
  }
}

/**
 * A walk over the keys with BPF_MAP_GET_NEXT_KEY and one lookup per key.
 *
 * When the key a walk is at gets deleted, the kernel's next key for it is
 * the map's first key (hash maps), so the walk restarts and returns keys
 * again. Every key read is kept in an index and a repeated key is skipped, so
 * each key is returned once. A walk that exceeds twice `maxEntries + 1` steps
 * is abandoned and a new one starts from the first key. After `maxWalks`
 * walks the map is reported as changing too fast.
 */
class IterationCursor {
  done = false;
  #target: DumpTarget;
  #maxWalks: number;
  #stats: DumpStats;
  #seen: GrowableBytes;
  #seenView: DataView;
  #index: KeyIndex;
  #previous: Uint8Array<ArrayBuffer> | null = null;
  #next: Uint8Array<ArrayBuffer>;
  #spare: Uint8Array<ArrayBuffer>;
  #steps = 0;

  constructor(target: DumpTarget, maxWalks: number, stats: DumpStats) {
    this.#target = target;
    this.#maxWalks = maxWalks;
    this.#stats = stats;
    this.#seen = new GrowableBytes((target.maxEntries + 1) * target.keySize);
    this.#seenView = new DataView(this.#seen.buffer);
    this.#index = new KeyIndex(target.keySize, 1024);
    this.#next = new Uint8Array(target.keySize);
    this.#spare = new Uint8Array(target.keySize);
    stats.walks = 1;
  }

  /** Reads every remaining entry into `keys` and `values` and returns the number read. */
  readAll(keys: GrowableBytes, values: GrowableBytes): number {
    let count = 0;
    while (!this.done) count += this.read(keys, values, count, Number.MAX_SAFE_INTEGER);
    return count;
  }

  /** Reads up to `max` new entries into `keys` and `values` from entry `at` on; returns the number read. */
  read(keys: GrowableBytes, values: GrowableBytes, at: number, max: number): number {
    const target = this.#target;
    const entrySize = entrySizeOf(target);
    const lib = libbpf();
    const stepLimit = 2 * (target.maxEntries + 1);
    let read = 0;

    while (read < max) {
      if (++this.#steps > stepLimit) this.#restart();
      const ret = lib.bpf_map_get_next_key(target.fd(), this.#previous, this.#next);
      this.#stats.calls++;
      if (ret === -Errno.ENOENT) {
        this.done = true;
        break;
      }
      checkInt(ret, "get the next key of", target.context);
      const key = this.#next;
      this.#step();

      if (this.#index.find(dataView(key), 0, this.#seenView) >= 0) {
        this.#stats.repeatedKeys++;
        continue;
      }
      const value = values.view((at + read) * entrySize, entrySize);
      const found = lib.bpf_map_lookup_elem_flags(
        target.fd(),
        key,
        value,
        BigInt(target.elementFlags),
      );
      this.#stats.calls++;
      if (found === -Errno.ENOENT) {
        this.#stats.vanishedKeys++;
        continue;
      }
      checkInt(found, "look up element of", target.context);
      keys.view((at + read) * target.keySize, target.keySize).set(key);
      this.#remember(key);
      read++;
    }
    return read;
  }

  // The key just returned becomes the position to continue from.
  #step(): void {
    const current = this.#next;
    this.#next = this.#previous ?? this.#spare;
    this.#previous = current;
  }

  #remember(key: Uint8Array): void {
    const number = this.#index.size;
    this.#seen.view(number * this.#target.keySize, this.#target.keySize).set(key);
    const buffer = this.#seen.buffer;
    if (buffer !== this.#seenView.buffer) this.#seenView = new DataView(buffer);
    this.#index.insert(this.#seenView, number);
  }

  #restart(): void {
    if (this.#stats.walks >= this.#maxWalks) {
      throw new BpfError({
        ...this.#target.context,
        op: "iterate over",
        errno: Errno.EAGAIN,
        detail: `the map kept changing, and ${this.#maxWalks} walk(s) of ${
          2 * (this.#target.maxEntries + 1)
        } steps each did not reach its end`,
        hint: "retry, raise maxWalks, or dump with batches, which do not restart",
      });
    }
    this.#stats.walks++;
    this.#steps = 1;
    this.#previous = null;
  }
}

// Deletes while reading: the first key is always the next one to take, so a
// drain never needs a position. Stops after twice `maxEntries + 1` entries so
// that programs adding entries as fast as it deletes cannot keep it running.
function drainByIteration(
  target: DumpTarget,
  keys: GrowableBytes,
  values: GrowableBytes,
  stats: DumpStats,
): number {
  const entrySize = entrySizeOf(target);
  const lib = libbpf();
  const key = new Uint8Array(target.keySize);
  const limit = 2 * (target.maxEntries + 1);
  let count = 0;
  stats.walks = 1;

  for (let step = 0; step < limit; step++) {
    const ret = lib.bpf_map_get_next_key(target.fd(), null, key);
    stats.calls++;
    if (ret === -Errno.ENOENT) break;
    checkInt(ret, "get the next key of", target.context);

    const value = values.view(count * entrySize, entrySize);
    if (!takeElement(target, key, value, stats)) {
      stats.vanishedKeys++;
      continue;
    }
    keys.view(count * target.keySize, target.keySize).set(key);
    count++;
  }
  return count;
}

// Looks up and deletes one element. Kernels before 5.14 and LPM tries have no
// lookup-and-delete for keyed maps: then the value is read and the key
// deleted in two calls, and a program can change the value in between.
function takeElement(
  target: DumpTarget,
  key: Uint8Array,
  value: Uint8Array,
  stats: DumpStats,
): boolean {
  const lib = libbpf();
  const flags = BigInt(target.elementFlags);
  const ret = lib.bpf_map_lookup_and_delete_elem_flags(target.fd(), key, value, flags);
  stats.calls++;
  if (ret === -Errno.ENOENT) return false;
  if (!isUnsupported(ret)) {
    checkInt(ret, "look up and delete element of", target.context);
    return true;
  }

  const found = lib.bpf_map_lookup_elem_flags(target.fd(), key, value, flags);
  stats.calls++;
  if (found === -Errno.ENOENT) return false;
  checkInt(found, "look up element of", target.context);
  const deleted = lib.bpf_map_delete_elem(target.fd(), key);
  stats.calls++;
  if (deleted === -Errno.ENOENT) return false;
  checkInt(deleted, "delete element of", target.context);
  return true;
}

function* entriesOf(
  keys: Uint8Array<ArrayBuffer>,
  values: Uint8Array<ArrayBuffer>,
  count: number,
): Generator<MapEntry, void, undefined> {
  const keySize = keys.length / Math.max(count, 1);
  const entrySize = values.length / Math.max(count, 1);
  for (let index = 0; index < count; index++) {
    yield {
      key: keys.subarray(index * keySize, (index + 1) * keySize),
      value: values.subarray(index * entrySize, (index + 1) * entrySize),
    };
  }
}

function finish(
  target: DumpTarget,
  keys: GrowableBytes,
  values: GrowableBytes,
  count: number,
  stats: DumpStats,
): MapDump {
  return new MapDump({
    keySize: target.keySize,
    valueSize: target.valueSize,
    count,
    keys: keys.finish(count * target.keySize),
    values: values.finish(count * entrySizeOf(target)),
    ...(target.cpuCount === undefined ? {} : { cpuCount: target.cpuCount }),
    stats,
  });
}

// EINVAL: kernels before 5.6 do not know the batch commands. ENOTSUPP (the
// kernel-internal 524) and EOPNOTSUPP: the map kind has no such operation.
// NOTE: only ENOTSUPP was seen here (Linux 6.18); the EINVAL case is untested.
function isUnsupported(ret: number): boolean {
  return ret === -Errno.EINVAL || ret === -Errno.ENOTSUPP || ret === -Errno.EOPNOTSUPP;
}

function newStats(batchSize: number): DumpStats {
  return {
    method: "batch",
    calls: 0,
    batchSize,
    batchGrowths: 0,
    walks: 0,
    repeatedKeys: 0,
    vanishedKeys: 0,
  };
}

function entrySizeOf(target: DumpTarget): number {
  return target.cpuCount === undefined
    ? target.valueSize
    : target.cpuCount * roundUp8(target.valueSize);
}

function roundUp8(size: number): number {
  return Math.ceil(size / 8) * 8;
}

// Lets timers and I/O run; setImmediate does not wait for the 1 ms or more
// that a setTimeout(0) takes. node:timers is imported on first use because
// loading Deno's Node.js layer costs about 3 ms of every program's start-up.
let setImmediateFn: ((callback: () => void) => unknown) | undefined;

async function nextTurn(): Promise<void> {
  setImmediateFn ??= (await import("node:timers")).setImmediate;
  const schedule = setImmediateFn;
  return new Promise((resolve) => schedule(resolve));
}

// Buffers are sized by the batch, so a batch larger than the map would only
// allocate memory that no entry can fill: it is clamped to max_entries.
function checkBatchSize(size: number, maxEntries: number): number {
  return Math.min(positiveInteger(size, "batchSize"), Math.max(1, maxEntries));
}

function checkMethod<T extends string>(method: T): T {
  if (method === "auto" || method === "batch" || method === "iterate") return method;
  throw new RangeError(`Invalid method "${method}": expected "auto", "batch" or "iterate"`);
}

function positiveInteger(value: number, name: string): number {
  if (Number.isInteger(value) && value > 0 && value <= 0xffffffff) return value;
  throw new RangeError(`Invalid ${name} ${value}: expected a positive 32-bit integer`);
}

function checkLength(
  bytes: Uint8Array,
  expected: number,
  what: string,
  count: number,
  size: number,
): void {
  if (bytes.byteLength === expected) return;
  throw new RangeError(
    `Invalid ${what}: ${bytes.byteLength} bytes, expected ${expected} (${count} entries of ${size} bytes)`,
  );
}
