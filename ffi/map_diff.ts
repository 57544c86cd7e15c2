/**
 * Change detection between two dumps of one map: {@linkcode diffDumps}.
 *
 * @module
 */

import { dataView, KeyIndex, keysEqual } from "./_key_index.ts";
import type { MapDump } from "./map_dump.ts";

/**
 * Options of {@linkcode diffDumps}.
 *
 * @example Two u64 counters, at bytes 0 and 8 of the value
 * ```ts
 * import type { DiffOptions } from "./map_diff.ts";
 *
 * const options: DiffOptions = { counters: [0, 8] };
 * ```
 */
export interface DiffOptions {
  /**
   * Byte offsets of u64 counters in a value, read in little-endian order (the
   * byte order of x86_64 and arm64). An entry whose counter is lower than in
   * the previous dump is reported in {@linkcode DumpDiff.reset}. In a per-CPU
   * dump every CPU's value is checked.
   *
   * @default [] (no counters)
   */
  counters?: readonly number[];
}

/**
 * The difference between two dumps, as entry numbers: numbers in
 * {@linkcode DumpDiff.removed} index the previous dump, all others the
 * current one (`dump.key(n)`, `dump.value(n)`).
 *
 * @example
 * ```ts
 * import type { DumpDiff } from "./map_diff.ts";
 *
 * const none = new Uint32Array();
 * const diff: DumpDiff = { added: none, changed: none, changedPrevious: none, removed: none, reset: none, unchanged: 0 };
 * ```
 */
export interface DumpDiff {
  /** Entries of the current dump whose key is not in the previous one. */
  added: Uint32Array;
  /** Entries of the current dump whose key is in the previous one with different value bytes. */
  changed: Uint32Array;
  /** For each entry of {@linkcode DumpDiff.changed}, the previous dump's entry with the same key. */
  changedPrevious: Uint32Array;
  /** Entries of the previous dump whose key is not in the current one. */
  removed: Uint32Array;
  /** Changed entries where at least one counter is lower than before, in current-dump numbers. */
  reset: Uint32Array;
  /** The number of keys present in both dumps with identical values. */
  unchanged: number;
}

/**
 * Compares two dumps of the same map and returns which keys were added,
 * changed and removed, and which entries had a counter go backwards (a reset,
 * such as a program that restarted or an entry deleted and created again).
 * A probe uses it to export only what changed since the last read.
 *
 * Keys are matched in dump order first, which is enough for two dumps of a
 * map whose keys did not change. Other keys are looked up in a hash index of
 * `previous`, built from typed arrays without per-key objects. The cost is linear in the
 * two counts. Each key should appear once per dump, which is true of the
 * dumps that {@linkcode BpfMap.dump} returns.
 *
 * @param previous the earlier dump
 * @param current the later dump of the same map
 * @param options see {@linkcode DiffOptions}
 * @returns entry numbers of the added, changed, removed and reset entries
 * @throws {RangeError} when the dumps' key or value layouts differ, or a
 * counter offset does not fit in a value
 *
 * @example Send only the counters that changed since the last tick
 * ```ts ignore
 * import { diffDumps, openObject } from "../mod.ts";
 *
 * using object = openObject("./flows.bpf.o").load();
 * const counts = object.map("counts");
 * let previous = counts.dump();
 * setInterval(() => {
 *   const current = counts.dump();
 *   const diff = diffDumps(previous, current, { counters: [0] });
 *   for (const index of diff.changed) console.log(current.key(index), current.value(index));
 *   previous = current;
 * }, 1000);
 * ```
 */
export function diffDumps(
  previous: MapDump,
  current: MapDump,
  options: DiffOptions = {},
): DumpDiff {
  checkCompatible(previous, current);
  const counters = counterOffsets(options.counters ?? [], current);

  const previousKeys = dataView(previous.keys);
  const currentKeys = dataView(current.keys);
  const keySize = current.keySize;
  const matched = new Uint8Array(previous.count);
  let index: KeyIndex | undefined;

  const compare = valueComparer(previous, current);
  const added: number[] = [];
  const changed: number[] = [];
  const changedPrevious: number[] = [];
  const reset: number[] = [];
  let unchanged = 0;

  // Two dumps of a map that kept its keys list them in the same order, so
  // each key is first compared with the one after the previous match. Only
  // a key that is not there is looked up in the hash index, which is built
  // at the first such key.
  let expected = 0;
  for (let entry = 0; entry < current.count; entry++) {
    let match = -1;
    if (
      expected < previous.count &&
      keysEqual(currentKeys, entry * keySize, previousKeys, expected * keySize, keySize)
    ) {
      match = expected;
    } else {
      index ??= indexKeys(previous, previousKeys, matched);
      match = index.find(currentKeys, entry * keySize, previousKeys);
    }
    if (match < 0) {
      added.push(entry);
      continue;
    }
    expected = match + 1;
    matched[match] = 1;
    if (compare.equal(match, entry)) {
      unchanged++;
      continue;
    }
    changed.push(entry);
    changedPrevious.push(match);
    if (counters.length > 0 && compare.counterDecreased(match, entry, counters)) {
      reset.push(entry);
    }
  }

  const removed: number[] = [];
  for (let entry = 0; entry < previous.count; entry++) {
    if (matched[entry] === 0) removed.push(entry);
  }
  return {
    added: Uint32Array.from(added),
    changed: Uint32Array.from(changed),
    changedPrevious: Uint32Array.from(changedPrevious),
    removed: Uint32Array.from(removed),
    reset: Uint32Array.from(reset),
    unchanged,
  };
}

function indexKeys(dump: MapDump, keys: DataView, matched: Uint8Array): KeyIndex {
  const index = new KeyIndex(dump.keySize, dump.count);
  for (let entry = 0; entry < dump.count; entry++) {
    // A repeated key (possible only in a hand-built dump) counts as matched, never as removed.
    if (index.insert(keys, entry) >= 0) matched[entry] = 1;
  }
  return index;
}

interface ValueComparer {
  equal(previousEntry: number, currentEntry: number): boolean;
  counterDecreased(
    previousEntry: number,
    currentEntry: number,
    offsets: readonly number[],
  ): boolean;
}

function valueComparer(previous: MapDump, current: MapDump): ValueComparer {
  const entrySize = current.entrySize;
  const before = dataView(previous.values);
  const after = dataView(current.values);
  const aligned = entrySize % 4 === 0 && previous.values.byteOffset % 4 === 0 &&
    current.values.byteOffset % 4 === 0;
  const wordsBefore = aligned ? wordsOf(previous.values) : undefined;
  const wordsAfter = aligned ? wordsOf(current.values) : undefined;
  const wordsPerEntry = entrySize / 4;

  return {
    equal(previousEntry, currentEntry) {
      if (wordsBefore !== undefined && wordsAfter !== undefined) {
        const left = previousEntry * wordsPerEntry;
        const right = currentEntry * wordsPerEntry;
        for (let i = 0; i < wordsPerEntry; i++) {
          if (wordsBefore[left + i] !== wordsAfter[right + i]) return false;
        }
        return true;
      }
      const left = previousEntry * entrySize;
      const right = currentEntry * entrySize;
      for (let i = 0; i < entrySize; i++) {
        if (before.getUint8(left + i) !== after.getUint8(right + i)) return false;
      }
      return true;
    },
    counterDecreased(previousEntry, currentEntry, offsets) {
      const left = previousEntry * entrySize;
      const right = currentEntry * entrySize;
      for (const offset of offsets) {
        // Compare the high words, then the low words, without BigInt.
        const highBefore = before.getUint32(left + offset + 4, true);
        const highAfter = after.getUint32(right + offset + 4, true);
        if (highAfter < highBefore) return true;
        if (highAfter > highBefore) continue;
        if (after.getUint32(right + offset, true) < before.getUint32(left + offset, true)) {
          return true;
        }
      }
      return false;
    },
  };
}

function wordsOf(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

// Expands counter offsets within one value to offsets within an entry, one
// set per CPU for per-CPU dumps.
function counterOffsets(offsets: readonly number[], dump: MapDump): number[] {
  const expanded: number[] = [];
  for (const offset of offsets) {
    if (!Number.isInteger(offset) || offset < 0 || offset + 8 > dump.valueSize) {
      throw new RangeError(
        `Invalid counter offset ${offset}: a u64 counter must fit in the ${dump.valueSize}-byte value`,
      );
    }
    for (let cpu = 0; cpu < dump.cpuCount; cpu++) expanded.push(cpu * dump.valueStride + offset);
  }
  return expanded;
}

function checkCompatible(previous: MapDump, current: MapDump): void {
  const mismatches: string[] = [];
  if (previous.keySize !== current.keySize) {
    mismatches.push(`key size ${previous.keySize} and ${current.keySize}`);
  }
  if (previous.entrySize !== current.entrySize) {
    mismatches.push(`value bytes per entry ${previous.entrySize} and ${current.entrySize}`);
  }
  if (mismatches.length === 0) return;
  throw new RangeError(
    `Cannot compare dumps of different layouts: ${
      mismatches.join(", ")
    } (previous and current); compare dumps of the same map`,
  );
}
