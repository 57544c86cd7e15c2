/**
 * {@linkcode SeqlockReader}: consistent snapshots of the seqlock slots that BPF
 * programs write with `bpf/include/bpfscope_seqlock.h`, read from mmapped
 * memory without a system call, and change detection from their sequence
 * numbers ({@linkcode SeqlockGeneration}).
 *
 * @module
 */

import { possibleCpuCount } from "./cpus.ts";
import { ClosedError } from "./errors.ts";
import type { MapMemory } from "./map_memory.ts";

/** Bytes of `struct bpfscope_seqlock` before each payload: the sequence and the skipped counter. */
const HEADER_SIZE = 16;
const TWO_TO_32 = 2 ** 32;
const DEFAULT_MAX_ATTEMPTS = 1000;

/**
 * Options of {@linkcode SeqlockReader}.
 *
 * @example Slots of a map sized for 4 slots per possible CPU
 * ```ts
 * import type { SeqlockReaderOptions } from "./seqlock.ts";
 *
 * const options: SeqlockReaderOptions = { slotsPerCpu: 4, maxAttempts: 100 };
 * ```
 */
export interface SeqlockReaderOptions {
  /**
   * The number of slots per CPU, the `slots_per_cpu` that the BPF program
   * passes to `bpfscope_seqlock_slot()`.
   *
   * @default the map's entries divided by `cpus`
   */
  slotsPerCpu?: number;
  /**
   * The number of CPUs the map is laid out for.
   *
   * @default possibleCpuCount()
   */
  cpus?: number;
  /**
   * How many times a read copies a slot before it reports the slot busy. A
   * writer holds a slot only for the few instructions of its update. A read
   * that runs out of attempts means that a writer was preempted while it held
   * the slot, or that a program took the slot and never released it.
   *
   * @default 1000
   */
  maxAttempts?: number;
}

/**
 * A consistent copy of one slot, returned by {@linkcode SeqlockReader.read}.
 *
 * @example Decode two u64 fields of a snapshot
 * ```ts
 * import type { SeqlockSnapshot } from "./seqlock.ts";
 *
 * const snapshot: SeqlockSnapshot = { sequence: 4, payload: new Uint8Array(16) };
 * const [count, totalNs] = new BigUint64Array(snapshot.payload.buffer);
 * console.log(snapshot.sequence, count, totalNs);
 * ```
 */
export interface SeqlockSnapshot {
  /**
   * The slot's sequence number when the payload was copied: even, and twice
   * the number of writes completed since the map was created. It is exact
   * below 2^53.
   */
  sequence: number;
  /** A copy of the payload, {@linkcode SeqlockReader.payloadSize} bytes. */
  payload: Uint8Array<ArrayBuffer>;
}

/**
 * Reads the seqlock slots of an mmapped array map: one slot per element,
 * laid out `[cpu][slot]`, each a 16-byte header (`u64 sequence`,
 * `u64 skipped`) followed by the payload. The BPF program writes them with
 * `bpf/include/bpfscope_seqlock.h`, whose comment describes the protocol.
 *
 * A read copies the payload and keeps the copy only when the slot's
 * sequence number was the same even number before and after the copy, so it
 * never returns a value that a writer was halfway through. It makes no
 * system call and takes no lock, and a writer never waits for a reader. When
 * writers hold the slot through {@linkcode SeqlockReader.maxAttempts}
 * attempts, the read returns `undefined` (busy) instead of spinning on.
 *
 * Slots are addressed by their element index, `cpu * slotsPerCpu + slot`
 * ({@linkcode SeqlockReader.index}).
 *
 * The reader does not own the memory: after the {@linkcode MapMemory} or its
 * object is closed, every method throws {@linkcode ClosedError}. Use a reader
 * from one thread only: a Worker maps the memory and creates its own reader.
 * The header's writer side needs Linux 5.12 or newer.
 *
 * @example Read slot 0 of every CPU and add the counts up
 * ```ts ignore
 * import { openObject, possibleCpuCount, SeqlockReader } from "../mod.ts";
 *
 * const opened = openObject("./stats.bpf.o");
 * opened.map("stats_map").setMaxEntries(possibleCpuCount() * 4);
 * using object = opened.load();
 * object.attachAll();
 * using memory = object.map("stats_map").mmap();
 * const reader = new SeqlockReader(memory, { slotsPerCpu: 4 });
 *
 * const payload = new BigUint64Array(reader.payloadSize / 8);
 * let count = 0n;
 * for (let cpu = 0; cpu < reader.cpus; cpu++) {
 *   if (reader.readInto(reader.index(cpu, 0), payload) === undefined) continue; // busy
 *   count += payload[0]!;
 * }
 * console.log(count);
 * ```
 */
export class SeqlockReader {
  /** The number of CPUs the map is laid out for. */
  readonly cpus: number;
  /** The number of slots per CPU. */
  readonly slotsPerCpu: number;
  /** The number of slots of all CPUs together: `cpus * slotsPerCpu`. */
  readonly slotCount: number;
  /** The payload size in bytes: the map's value size minus the 16-byte header. */
  readonly payloadSize: number;
  /** Copy attempts per read before it reports the slot busy. */
  readonly maxAttempts: number;
  #memory: MapMemory;
  // The mapped memory as 32-bit words, for the sequence numbers, and as
  // 64-bit words, for the payload copy, which is fastest in 8-byte steps.
  #words: Uint32Array;
  #longs: BigUint64Array;
  #strideWords: number;
  #payloadLongs: number;
  #orderedCopy: boolean;
  // Low and high word of each slot's sequence number at its last successful
  // read. They start odd, which no successful read matches.
  #lastSequences: Uint32Array;
  // The target of the last readInto() call and its 64-bit view, reused so
  // that reading into the same buffer again allocates nothing.
  #lastTarget: ArrayBufferView | null = null;
  #lastTargetLongs: BigUint64Array = new BigUint64Array(0);

  /**
   * Creates a reader over `memory`, the mapping of a map whose values are
   * seqlock slots.
   *
   * @throws {RangeError} when the value size leaves no payload, an option is
   * not a positive integer, or the map's entries are not `cpus * slotsPerCpu`
   * @throws {ClosedError} when `memory` is closed
   */
  constructor(memory: MapMemory, options: SeqlockReaderOptions = {}) {
    this.#memory = memory;
    if (memory.closed) throw this.#closedError("create a reader for");
    const subject = `map "${memory.map}"`;

    this.payloadSize = memory.valueStride - HEADER_SIZE;
    if (this.payloadSize <= 0) {
      throw new RangeError(
        `Map "${memory.map}" cannot hold seqlock slots: its values are ${memory.valueStride} bytes, which leaves no payload after the ${HEADER_SIZE}-byte header`,
      );
    }

    const entries = memory.byteLength / memory.valueStride;
    this.cpus = positiveInteger(options.cpus ?? possibleCpuCount(), "cpus", subject);
    this.slotsPerCpu = positiveInteger(
      options.slotsPerCpu ?? Math.max(1, Math.floor(entries / this.cpus)),
      "slotsPerCpu",
      subject,
    );
    this.maxAttempts = positiveInteger(
      options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      "maxAttempts",
      subject,
    );
    this.slotCount = this.cpus * this.slotsPerCpu;
    if (this.slotCount !== entries) {
      throw new RangeError(
        `Map "${memory.map}" has ${entries} entries, but ${this.cpus} CPUs * ${this.slotsPerCpu} slots per CPU need ${this.slotCount}: set max_entries to possible CPUs * slots per CPU before load`,
      );
    }

    this.#words = new Uint32Array(memory.unsafeBuffer);
    this.#longs = new BigUint64Array(memory.unsafeBuffer);
    this.#strideWords = memory.valueStride / 4;
    this.#payloadLongs = this.payloadSize / 8;
    this.#lastSequences = new Uint32Array(2 * this.slotCount).fill(1);
    // See #copy() for why only x86_64 copies with plain loads.
    this.#orderedCopy = Deno.build.arch !== "x86_64";
  }

  /**
   * Returns the element index of `slot` of `cpu`, the index the other
   * methods take.
   *
   * @throws {RangeError} when `cpu` or `slot` is out of range
   */
  index(cpu: number, slot: number): number {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.cpus) {
      throw new RangeError(
        `CPU ${cpu} is out of range: map "${this.#memory.map}" has slots for CPUs 0 to ${
          this.cpus - 1
        }`,
      );
    }
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slotsPerCpu) {
      throw new RangeError(
        `Slot ${slot} is out of range: each CPU has slots 0 to ${
          this.slotsPerCpu - 1
        } in map "${this.#memory.map}"`,
      );
    }
    return cpu * this.slotsPerCpu + slot;
  }

  /**
   * Copies a consistent snapshot of the payload of slot `index` into the
   * first {@linkcode SeqlockReader.payloadSize} bytes of `target`. Reading
   * into the same view again allocates nothing.
   *
   * @param target any view whose start is 8-byte aligned in its buffer
   * @returns the slot's sequence number at the copy (see
   * {@linkcode SeqlockSnapshot.sequence}), or `undefined` when writers held
   * the slot through every attempt; `target` then holds an unusable copy
   * @throws {RangeError} when `index` is out of range, or `target` is shorter
   * than the payload or not 8-byte aligned
   * @throws {ClosedError} after the memory is closed
   */
  readInto(index: number, target: ArrayBufferView): number | undefined {
    if (this.#memory.closed || this.#longs.length === 0) throw this.#closedError("read");
    this.#checkIndex(index);
    return this.#copy(index, this.#targetLongs(target));
  }

  /**
   * Returns a consistent snapshot of slot `index` in a fresh buffer, or
   * `undefined` when writers held the slot through every attempt. Use
   * {@linkcode SeqlockReader.readInto} where the allocation matters.
   *
   * @throws {RangeError} when `index` is out of range
   * @throws {ClosedError} after the memory is closed
   */
  read(index: number): SeqlockSnapshot | undefined {
    if (this.#memory.closed || this.#longs.length === 0) throw this.#closedError("read");
    this.#checkIndex(index);
    const payload = new Uint8Array(this.payloadSize);
    const sequence = this.#copy(index, new BigUint64Array(payload.buffer));
    return sequence === undefined ? undefined : { sequence, payload };
  }

  /**
   * Returns the current sequence number of slot `index`, odd while a writer
   * holds the slot.
   *
   * @throws {RangeError} when `index` is out of range
   * @throws {ClosedError} after the memory is closed
   */
  sequence(index: number): number {
    if (this.#memory.closed || this.#longs.length === 0) throw this.#closedError("read");
    this.#checkIndex(index);
    return this.#readCounter(index * this.#strideWords);
  }

  /**
   * Returns how many updates of slot `index` writers dropped because another
   * writer held the slot, such as a program that interrupted another one on
   * the same CPU.
   *
   * @throws {RangeError} when `index` is out of range
   * @throws {ClosedError} after the memory is closed
   */
  skipped(index: number): number {
    if (this.#memory.closed || this.#longs.length === 0) throw this.#closedError("read");
    this.#checkIndex(index);
    return this.#readCounter(index * this.#strideWords + 2);
  }

  /**
   * Records the sequence number of every slot, to compare with
   * {@linkcode SeqlockGeneration.changedSince}. Take the new generation
   * before reading the changed slots: a write that lands during the reads
   * then shows up in the next comparison.
   *
   * @throws {ClosedError} after the memory is closed
   *
   * @example Read only the slots written since the last poll
   * ```ts ignore
   * import type { SeqlockGeneration, SeqlockReader } from "../mod.ts";
   *
   * function poll(reader: SeqlockReader, seen: SeqlockGeneration): SeqlockGeneration {
   *   const now = reader.generation();
   *   for (const index of now.changedSince(seen)) console.log(index, reader.read(index));
   *   return now;
   * }
   * ```
   */
  generation(): SeqlockGeneration {
    if (this.#memory.closed || this.#longs.length === 0) throw this.#closedError("read");
    const sequences = new Float64Array(this.slotCount);
    for (let index = 0; index < this.slotCount; index++) {
      sequences[index] = this.#readCounter(index * this.#strideWords);
    }
    return new SeqlockGeneration(this.#memory.map, sequences);
  }

  // Copies slot `index` into `target` and returns its sequence number, or
  // undefined after maxAttempts attempts.
  //
  // An attempt copies the payload, then reads the sequence number, and
  // succeeds when that number is even and equal to the one read before the
  // copy: no write began in between, so the copy is consistent. The number
  // "before the copy" is the one read at the end of the previous attempt, or
  // for the first attempt the one read by the last successful read of this
  // slot. So reading a slot that did not change since the last read costs
  // one sequence load, and a slot that changed costs one more copy.
  //
  // The low word of the sequence number is read with Atomics.load(), the high
  // word with a plain load after it. When a write carries into the high word
  // between the two loads, the combined number exceeds the true one, so it
  // cannot equal an earlier number and the attempt fails.
  //
  // Memory ordering: the writer publishes with fully ordered atomics (see
  // bpfscope_seqlock.h), so the reader only needs its loads to stay in
  // program order, sequence before payload before sequence.
  // - The compiler: Atomics.load() is a call to a V8 builtin (about 7 ns on
  //   Deno 2.9), which V8 neither removes nor moves other loads across. Two
  //   plain loads of one element with no aliasing store in between may be
  //   merged into one, which would make the check always pass.
  // - x86_64 is TSO: the CPU does not reorder a load with other loads, so the
  //   plain loads of the payload stay between the sequence loads.
  // - arm64 may reorder loads. Atomics.load() compiles to a load-acquire
  //   (ldar), which keeps later loads after it but lets earlier plain loads
  //   move past it. So on arm64, and any other architecture, every payload
  //   word is read with Atomics.load() too, and load-acquires stay in program
  //   order. The buffer is not shared, but Atomics.load() accepts any integer
  //   typed array (checked on Deno 2.9 over an mmapped buffer).
  //   NOTE: the arm64 path has not been run on arm64 hardware.
  #copy(index: number, target: BigUint64Array): number | undefined {
    const words = this.#words;
    const longs = this.#longs;
    const sequenceWord = index * this.#strideWords;
    const payloadLong = sequenceWord / 2 + HEADER_SIZE / 8;
    const count = this.#payloadLongs;
    const lastSequences = this.#lastSequences;
    let beforeLow = lastSequences[2 * index]!;
    let beforeHigh = lastSequences[2 * index + 1]!;

    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      if (this.#orderedCopy) {
        for (let i = 0; i < count; i++) target[i] = Atomics.load(longs, payloadLong + i);
      } else {
        for (let i = 0; i < count; i++) target[i] = longs[payloadLong + i]!;
      }
      const low = Atomics.load(words, sequenceWord);
      const high = words[sequenceWord + 1]!;
      if (low === beforeLow && high === beforeHigh && (low & 1) === 0) {
        lastSequences[2 * index] = low;
        lastSequences[2 * index + 1] = high;
        return high === 0 ? low : high * TWO_TO_32 + low;
      }
      beforeLow = low;
      beforeHigh = high;
    }
    return undefined;
  }

  // Reads the u64 that starts at 32-bit word `word` exactly, also while a
  // writer increments it past a 2^32 boundary. The plain loads of the high
  // word cannot move across the Atomics.load() call between them.
  #readCounter(word: number): number {
    const words = this.#words;
    for (;;) {
      const high = words[word + 1]!;
      const low = Atomics.load(words, word);
      if (words[word + 1] === high) return high * TWO_TO_32 + low;
    }
  }

  #targetLongs(target: ArrayBufferView): BigUint64Array {
    if (target.byteLength < this.payloadSize) {
      throw new RangeError(
        `The target is ${target.byteLength} bytes, shorter than the ${this.payloadSize}-byte payload of map "${this.#memory.map}"`,
      );
    }
    if (target === this.#lastTarget) return this.#lastTargetLongs;
    if (target.byteOffset % 8 !== 0) {
      throw new RangeError(
        `The target starts at byte ${target.byteOffset} of its buffer: it must start at a multiple of 8`,
      );
    }
    this.#lastTarget = target;
    this.#lastTargetLongs = new BigUint64Array(
      target.buffer,
      target.byteOffset,
      this.#payloadLongs,
    );
    return this.#lastTargetLongs;
  }

  #checkIndex(index: number): void {
    if (Number.isInteger(index) && index >= 0 && index < this.slotCount) return;
    throw new RangeError(
      `Slot index ${index} is out of range: map "${this.#memory.map}" has slots 0 to ${
        this.slotCount - 1
      }`,
    );
  }

  #closedError(op: string): ClosedError {
    return new ClosedError(op, `seqlock slots of map "${this.#memory.map}"`);
  }
}

/**
 * The sequence numbers of every slot at one moment, taken by
 * {@linkcode SeqlockReader.generation}. A slot whose sequence number differs
 * between two generations was written, or is being written, in between.
 *
 * @example Report the slots written during one second
 * ```ts ignore
 * import { openObject, SeqlockReader } from "../mod.ts";
 *
 * using object = openObject("./stats.bpf.o").load();
 * using memory = object.map("stats_map").mmap();
 * const reader = new SeqlockReader(memory);
 * const before = reader.generation();
 * await new Promise((resolve) => setTimeout(resolve, 1000));
 * console.log(reader.generation().changedSince(before));
 * ```
 */
export class SeqlockGeneration {
  /** The name of the map the sequence numbers come from. */
  readonly map: string;
  #sequences: Float64Array;

  /** @internal Use {@linkcode SeqlockReader.generation}. */
  constructor(map: string, sequences: Float64Array) {
    this.map = map;
    this.#sequences = sequences;
  }

  /** The number of slots recorded. */
  get slotCount(): number {
    return this.#sequences.length;
  }

  /**
   * Returns the recorded sequence number of slot `index`.
   *
   * @throws {RangeError} when `index` is out of range
   */
  sequence(index: number): number {
    const sequence = Number.isInteger(index) ? this.#sequences[index] : undefined;
    if (sequence === undefined) {
      throw new RangeError(
        `Slot index ${index} is out of range: the generation has ${this.slotCount} slots`,
      );
    }
    return sequence;
  }

  /**
   * Returns the indexes, in ascending order, of the slots whose sequence
   * number differs from the one in `previous`: the slots written since
   * `previous` was taken, including writes still in progress. Sequence
   * numbers compare exactly below 2^53, so for the first 2^52 writes of a
   * slot.
   *
   * @throws {RangeError} when `previous` has another slot count
   */
  changedSince(previous: SeqlockGeneration): number[] {
    const before = previous.#sequences;
    const now = this.#sequences;
    if (before.length !== now.length) {
      throw new RangeError(
        `Cannot compare generations of ${before.length} and ${now.length} slots: take both from readers of the same map`,
      );
    }

    const changed: number[] = [];
    for (let index = 0; index < now.length; index++) {
      if (now[index] !== before[index]) changed.push(index);
    }
    return changed;
  }
}

function positiveInteger(value: number, name: string, subject: string): number {
  if (Number.isInteger(value) && value > 0) return value;
  throw new RangeError(
    `Invalid ${name} ${value} for the seqlock slots of ${subject}: it must be a positive integer`,
  );
}
