/**
 * The built-in `syscalls` probe: system calls counted per CPU and per syscall
 * number by a raw tracepoint program, read zero-copy through mmap.
 *
 * @module
 */

import { SYSCALLS_OBJECT } from "../../bpf/syscalls_object.ts";
import { possibleCpuCount } from "../../ffi/cpus.ts";
import type { MapMemory } from "../../ffi/map_memory.ts";
import { type BpfObject, openObject, type OpenObjectOptions } from "../../ffi/object.ts";
import { SYSCALL_NAMES_X86_64 } from "./_syscall_names_x86_64.ts";

/**
 * Slots per CPU in the counter table; must match SYSCALL_SLOTS in bpf/syscalls.bpf.c.
 *
 * @example Index of syscall `nr` on CPU `cpu` in the raw table
 * ```ts
 * import { SYSCALL_SLOTS } from "./syscalls.ts";
 *
 * const index = (cpu: number, nr: number) => cpu * SYSCALL_SLOTS + nr;
 * ```
 */
export const SYSCALL_SLOTS = 512;
/**
 * The slot that counts syscall numbers outside 0..510 (and x32 calls).
 *
 * @example
 * ```ts
 * import { OTHER_SLOT, syscallName } from "./syscalls.ts";
 *
 * console.log(syscallName(OTHER_SLOT)); // "other"
 * ```
 */
export const OTHER_SLOT = SYSCALL_SLOTS - 1;

/**
 * Returns the name of syscall number `nr` on this machine's architecture, or
 * `syscall_NR` when the number is unknown. Names are known for x86_64 only.
 *
 * @example
 * ```ts
 * import { syscallName } from "./syscalls.ts";
 *
 * console.log(syscallName(0)); // "read" on x86_64
 * ```
 */
export function syscallName(nr: number): string {
  if (nr === OTHER_SLOT) return "other";
  const names = Deno.build.arch === "x86_64" ? SYSCALL_NAMES_X86_64 : undefined;
  return names?.get(nr) ?? `syscall_${nr}`;
}

/**
 * A syscall and its count or rate, as returned by {@linkcode SyscallSnapshot.top}.
 *
 * @example
 * ```ts
 * import type { SyscallCount } from "./syscalls.ts";
 *
 * const row: SyscallCount = { nr: 0, name: "read", value: 1200 };
 * ```
 */
export interface SyscallCount {
  /** The syscall number; {@linkcode OTHER_SLOT} collects numbers outside the table. */
  nr: number;
  /** The syscall name, from {@linkcode syscallName}. */
  name: string;
  /** The count, or calls per second for rates. */
  value: number;
}

/**
 * The counters of the `syscalls` probe at one moment: a copy, taken with one
 * pass over the mapped table, that stays valid after the probe closes.
 *
 * @example Rates per CPU between two snapshots
 * ```ts
 * import { SYSCALL_SLOTS, SyscallSnapshot } from "./syscalls.ts";
 *
 * const earlier = new SyscallSnapshot(0, 1, new Float64Array(SYSCALL_SLOTS));
 * const counts = new Float64Array(SYSCALL_SLOTS);
 * counts[0] = 500; // 500 read() calls on CPU 0
 * const later = new SyscallSnapshot(2000, 1, counts);
 * const delta = later.since(earlier);
 * console.log(delta.cpuTotal(0) / ((later.time - earlier.time) / 1000)); // 250 per second
 * ```
 */
export class SyscallSnapshot {
  /** Milliseconds since the time origin (`performance.now()`) when the copy was taken. */
  readonly time: number;
  /** The number of possible CPUs, the table's row count. */
  readonly cpus: number;
  /** Counts laid out `[cpu][slot]`: `counts[cpu * SYSCALL_SLOTS + nr]`. */
  readonly counts: Float64Array;

  /** Creates a snapshot from a `[cpu][slot]` table of counts. */
  constructor(time: number, cpus: number, counts: Float64Array) {
    this.time = time;
    this.cpus = cpus;
    this.counts = counts;
  }

  /** Returns the number of calls of syscall `nr` on CPU `cpu`. */
  count(cpu: number, nr: number): number {
    return this.counts[cpu * SYSCALL_SLOTS + nr] ?? 0;
  }

  /** Returns the number of calls on CPU `cpu`, all syscalls together. */
  cpuTotal(cpu: number): number {
    let sum = 0;
    for (let nr = 0; nr < SYSCALL_SLOTS; nr++) sum += this.count(cpu, nr);
    return sum;
  }

  /** Returns the number of calls of syscall `nr`, all CPUs together. */
  syscallTotal(nr: number): number {
    let sum = 0;
    for (let cpu = 0; cpu < this.cpus; cpu++) sum += this.count(cpu, nr);
    return sum;
  }

  /** The number of calls counted, all CPUs and syscalls together. */
  get total(): number {
    let sum = 0;
    for (const value of this.counts) sum += value;
    return sum;
  }

  /** Returns the counts accrued since `earlier`, a snapshot of the same probe. */
  since(earlier: SyscallSnapshot): SyscallSnapshot {
    const delta = new Float64Array(this.counts.length);
    for (let i = 0; i < delta.length; i++) delta[i] = this.counts[i]! - (earlier.counts[i] ?? 0);
    return new SyscallSnapshot(this.time, this.cpus, delta);
  }

  /** Returns the `limit` syscalls with the most calls, busiest first; syscalls with no calls are left out. */
  top(limit: number): SyscallCount[] {
    const all: SyscallCount[] = [];
    for (let nr = 0; nr < SYSCALL_SLOTS; nr++) {
      const value = this.syscallTotal(nr);
      if (value > 0) all.push({ nr, name: syscallName(nr), value });
    }
    return all.sort((a, b) => b.value - a.value).slice(0, limit);
  }
}

/**
 * The `syscalls` probe, loaded and attached. It counts every syscall entry on
 * the host (raw tracepoint `sys_enter`, no tracefs needed) into a `[cpu][slot]`
 * array sized from the possible-CPU count at load, and reads it through mmap
 * without a system call.
 *
 * The caller owns the probe: closing it detaches the program and unloads it.
 *
 * @example Print the syscall rate over one second
 * ```ts ignore
 * import { SyscallsProbe } from "./syscalls.ts";
 *
 * using probe = SyscallsProbe.open();
 * const before = probe.read();
 * await new Promise((resolve) => setTimeout(resolve, 1000));
 * console.log(probe.read().since(before).total, "syscalls/s");
 * ```
 */
export class SyscallsProbe implements Disposable {
  /** The number of possible CPUs, the table's row count. */
  readonly cpus: number;
  #object: BpfObject;
  #memory: MapMemory;
  #values: BigUint64Array;

  private constructor(object: BpfObject, memory: MapMemory, cpus: number) {
    this.#object = object;
    this.#memory = memory;
    this.cpus = cpus;
    this.#values = new BigUint64Array(memory.unsafeBuffer);
  }

  /**
   * Loads the probe's eBPF object, attaches its program and maps its table.
   * Needs root, or CAP_BPF and CAP_PERFMON.
   *
   * @param options `kernelBtfCache`: see {@linkcode OpenObjectOptions.kernelBtfCache}; on by default
   * @throws {BpfError} when loading or attaching fails, such as `EPERM` without privileges
   */
  static open(options: Pick<OpenObjectOptions, "kernelBtfCache"> = {}): SyscallsProbe {
    const cpus = possibleCpuCount();
    const opened = openObject(SYSCALLS_OBJECT, {
      name: "syscalls",
      kernelBtfCache: options.kernelBtfCache ?? true,
    });
    let object: BpfObject | undefined;
    try {
      opened.map("syscall_counts").setMaxEntries(cpus * SYSCALL_SLOTS);
      object = opened.load();
      object.attachAll();
      return new SyscallsProbe(object, object.map("syscall_counts").mmap(), cpus);
    } catch (error) {
      object?.close();
      opened.close();
      throw error;
    }
  }

  /** The loaded object, for its program's id and statistics. */
  get object(): BpfObject {
    return this.#object;
  }

  /** Whether {@linkcode SyscallsProbe.close} has run. */
  get closed(): boolean {
    return this.#object.closed;
  }

  /**
   * Copies the counters out of the mapped table.
   *
   * @throws {ClosedError} after close
   */
  read(): SyscallSnapshot {
    // Checks that the memory is still mapped before the words are read.
    this.#memory.unsafeBuffer;
    const values = this.#values;
    const counts = new Float64Array(values.length);
    // Each counter is an aligned u64 that the kernel updates atomically; one
    // 64-bit element read cannot tear, where two 32-bit halves could.
    for (let i = 0; i < counts.length; i++) counts[i] = Number(values[i]!);
    return new SyscallSnapshot(performance.now(), this.cpus, counts);
  }

  /** Detaches and unloads the program and unmaps the table. Calling it again does nothing. */
  close(): void {
    this.#object.close();
  }

  /** Same as {@linkcode SyscallsProbe.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
