/**
 * {@linkcode MapMemory}: zero-copy access to the memory of an mmapped map.
 *
 * @module
 */

import { checkMmap } from "./_check.ts";
import { track, untrack } from "./_resources.ts";
import { sumUint64 } from "./_simd_sum.ts";
import { ClosedError } from "./errors.ts";
import {
  libc,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  systemPageSize,
} from "./libc.ts";
import type { LinkOwner } from "./link.ts";

const TWO_TO_32 = 2 ** 32;

/**
 * The memory of a `BPF_F_MMAPABLE` array map, mapped into this process. Reads
 * see the kernel's values as they are at that moment, with no system call and
 * no copy.
 *
 * Element `i` of an array map starts at byte `i * valueStride`, where the
 * stride is the value size rounded up to 8 bytes. An aligned 8-byte field
 * is read in one access. A value made of several fields can be torn by a
 * concurrent kernel writer, so multi-field values need a protocol such as a
 * sequence counter.
 *
 * The memory belongs to the {@linkcode BpfMap}'s object: closing the object
 * unmaps it. After close every accessor throws {@linkcode ClosedError}, and the
 * `ArrayBuffer` returned by {@linkcode MapMemory.buffer} is detached (its
 * length becomes 0), so views over it read `undefined` rather than freed memory.
 * An asynchronous operation that was still using a view when the memory closed
 * (a pending socket write, say) reads zeros from then on: the address range is
 * replaced by a private zero mapping and never reused, so it cannot see
 * another map's data. That reservation of address space (not of memory) is not
 * returned to the system until the process exits. Do not transfer the buffer:
 * accessors then throw {@linkcode ClosedError}.
 *
 * @example Sum the u64 counters of an mmapable array
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./counters.bpf.o").load();
 * using memory = object.map("counts").mmap();
 * let total = 0;
 * for (let i = 0; i < memory.byteLength / 8; i++) total += memory.getUint64(i * 8);
 * console.log(total);
 * ```
 */
export class MapMemory implements Disposable {
  /** The name of the mapped map. */
  readonly map: string;
  /** The number of bytes that can be accessed. */
  readonly byteLength: number;
  /** The distance in bytes between two elements: the value size rounded up to 8. */
  readonly valueStride: number;
  /** Whether the memory was mapped writable. */
  readonly writable: boolean;
  #pointer: Deno.PointerObject | null;
  #mappedLength: number;
  #buffer: ArrayBuffer;
  #view: DataView;
  #words: Uint32Array;
  #owner: LinkOwner | null;
  #token: object;

  /** @internal Use {@linkcode BpfMap.mmap}. */
  constructor(
    fd: number,
    options: { map: string; byteLength: number; valueStride: number; writable: boolean },
    owner: LinkOwner,
  ) {
    this.map = options.map;
    this.byteLength = options.byteLength;
    this.valueStride = options.valueStride;
    this.writable = options.writable;
    this.#owner = owner;

    const pageSize = systemPageSize();
    this.#mappedLength = Math.ceil(options.byteLength / pageSize) * pageSize;
    const protection = options.writable ? PROT_READ | PROT_WRITE : PROT_READ;
    const pointer = checkMmap(
      libc().mmap(null, BigInt(this.#mappedLength), protection, MAP_SHARED, fd, 0n),
      "mmap",
      { map: options.map },
    );
    this.#pointer = pointer;

    // SAFETY: the mapping stays valid until close() unmaps it, and close()
    // detaches this buffer first.
    this.#buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, options.byteLength);
    this.#view = new DataView(this.#buffer);
    this.#words = new Uint32Array(this.#buffer, 0, Math.floor(options.byteLength / 4));
    // Unmapping after garbage collection could free memory that a view still
    // uses, so a leaked mapping stays mapped (and is reported in leak mode).
    this.#token = track(this, `memory of map "${options.map}"`);
  }

  /** Whether {@linkcode MapMemory.close} has run. */
  get closed(): boolean {
    return this.#pointer === null;
  }

  /**
   * The mapped memory itself, for typed-array reads and writes without
   * copies, on writable mappings. It is detached on close; do not keep views
   * over it past the map's lifetime.
   *
   * A read-only mapping has no `buffer`: JavaScript cannot make an
   * `ArrayBuffer` read-only, and a store into read-only pages kills the
   * process with SIGSEGV. Use the accessors, {@linkcode MapMemory.copy},
   * {@linkcode MapMemory.sumUint64}, or {@linkcode MapMemory.unsafeBuffer}.
   *
   * @throws {TypeError} on a read-only mapping
   * @throws {ClosedError} after close
   */
  get buffer(): ArrayBuffer {
    this.#check("access");
    if (!this.writable) {
      throw new TypeError(
        `The memory of map "${this.map}" is mapped read-only, so it has no writable buffer: read it with the accessors, copy() or unsafeBuffer, or map it with mmap({ writable: true })`,
      );
    }
    return this.#buffer;
  }

  /**
   * UNSAFE: the mapped memory as an `ArrayBuffer`, also on read-only
   * mappings, for zero-copy typed-array reads. Writing through it into a
   * read-only mapping kills the process with SIGSEGV. It is detached on close.
   *
   * @throws {ClosedError} after close
   *
   * @example Read u64 counters in place
   * ```ts ignore
   * import { openObject } from "../mod.ts";
   *
   * using object = openObject("./counters.bpf.o").load();
   * using memory = object.map("counts").mmap();
   * const counts = new BigUint64Array(memory.unsafeBuffer); // read only: never store into it
   * console.log(counts[0]);
   * ```
   */
  get unsafeBuffer(): ArrayBuffer {
    this.#check("access");
    return this.#buffer;
  }

  /**
   * Reads the unsigned 32-bit integer at `byteOffset` (host byte order).
   *
   * @throws {ClosedError} after close
   * @throws {RangeError} when the 4 bytes are not all inside the memory
   */
  getUint32(byteOffset: number): number {
    this.#check("read");
    return this.#view.getUint32(byteOffset, true);
  }

  /**
   * Reads the unsigned 64-bit integer at `byteOffset` (host byte order) exactly.
   *
   * @throws {ClosedError} after close
   * @throws {RangeError} when the 8 bytes are not all inside the memory
   */
  getBigUint64(byteOffset: number): bigint {
    this.#check("read");
    return this.#view.getBigUint64(byteOffset, true);
  }

  /**
   * Reads the unsigned 64-bit integer at `byteOffset`, which must be a multiple
   * of 8, as a number. Faster than {@linkcode MapMemory.getBigUint64}; exact up
   * to `Number.MAX_SAFE_INTEGER`.
   *
   * @throws {ClosedError} after close
   * @throws {RangeError} when the offset is unaligned or outside the memory, or
   * the value exceeds `Number.MAX_SAFE_INTEGER`
   */
  getUint64(byteOffset: number): number {
    this.#check("read");
    const index = byteOffset / 4;
    if (!Number.isInteger(index / 2) || byteOffset < 0 || byteOffset + 8 > this.byteLength) {
      throw new RangeError(
        `Offset ${byteOffset} is not an 8-byte aligned offset inside the ${this.byteLength} bytes of map "${this.map}"`,
      );
    }
    // Little-endian hosts only (x86_64, arm64): the low word comes first.
    const high = this.#words[index + 1]!;
    if (high >= 0x200000) {
      throw new RangeError(
        `Value at offset ${byteOffset} of map "${this.map}" exceeds Number.MAX_SAFE_INTEGER: use getBigUint64()`,
      );
    }
    return high * TWO_TO_32 + this.#words[index]!;
  }

  /**
   * Returns the sum, modulo 2^64 like a C loop over `uint64_t`, of `count`
   * u64 values starting at `byteOffset` (a multiple of 8). This is the fast
   * way to total a large counter table: the values are copied in cache-sized
   * chunks into WebAssembly memory and added with SIMD instructions, several
   * times faster than a JavaScript loop over the mapped memory. Each aligned
   * u64 is read whole; the values are not one consistent snapshot while the
   * kernel keeps writing.
   *
   * @default byteOffset 0
   * @default count every value from `byteOffset` to the end
   * @throws {ClosedError} after close
   * @throws {RangeError} when the offset is unaligned or the values do not fit inside the memory
   *
   * @example Total of an 8 MiB counter array
   * ```ts ignore
   * import { openObject } from "../mod.ts";
   *
   * using object = openObject("./counters.bpf.o").load();
   * using memory = object.map("counts").mmap();
   * console.log(memory.sumUint64());
   * ```
   */
  sumUint64(
    byteOffset = 0,
    count: number = Math.floor((this.byteLength - byteOffset) / 8),
  ): bigint {
    this.#check("sum");
    if (
      byteOffset % 8 !== 0 || byteOffset < 0 || count < 0 ||
      byteOffset + count * 8 > this.byteLength
    ) {
      throw new RangeError(
        `Cannot sum ${count} u64 values at offset ${byteOffset} of map "${this.map}": the range must be 8-byte aligned and inside its ${this.byteLength} bytes`,
      );
    }
    return sumUint64(this.#buffer, byteOffset, count);
  }

  /**
   * Returns a copy of `length` bytes starting at `byteOffset`.
   *
   * @default byteOffset 0
   * @default length the rest of the memory
   * @throws {ClosedError} after close
   * @throws {RangeError} when the range is not inside the memory
   */
  copy(byteOffset = 0, length: number = this.byteLength - byteOffset): Uint8Array<ArrayBuffer> {
    this.#check("copy");
    if (byteOffset < 0 || length < 0 || byteOffset + length > this.byteLength) {
      throw new RangeError(
        `Range ${byteOffset}+${length} is outside the ${this.byteLength} bytes of map "${this.map}"`,
      );
    }
    return new Uint8Array(this.#buffer, byteOffset, length).slice();
  }

  /**
   * Takes the memory out of its object's ownership: closing the object no
   * longer unmaps it, and the caller must close it.
   *
   * @throws {ClosedError} after close
   */
  disown(): this {
    this.#check("disown");
    this.#owner?.forget(this);
    this.#owner = null;
    return this;
  }

  /** Detaches {@linkcode MapMemory.buffer} and unmaps the memory. Calling it again does nothing. */
  close(): void {
    const pointer = this.#pointer;
    if (pointer === null) return;
    this.#pointer = null;
    untrack(this.#token);
    this.#owner?.forget(this);
    this.#owner = null;

    // Detaching makes every view over the buffer zero-length before the pages go away.
    if (!this.#buffer.detached) this.#buffer.transfer(0);
    // Replacing the map's pages in place (rather than munmap) drops the
    // mapping's reference to the map while keeping the addresses valid and
    // unused, for native code that may still hold a pointer into them.
    const replaced = libc().mmap(
      pointer,
      BigInt(this.#mappedLength),
      PROT_READ,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
      -1,
      0n,
    );
    if (
      replaced === null || Deno.UnsafePointer.value(replaced) !== Deno.UnsafePointer.value(pointer)
    ) {
      libc().munmap(pointer, BigInt(this.#mappedLength));
    }
  }

  /** Same as {@linkcode MapMemory.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #check(op: string): void {
    if (this.#pointer === null) throw new ClosedError(op, `memory of map "${this.map}"`);
    if (this.#buffer.detached) {
      throw new ClosedError(
        op,
        `memory of map "${this.map}"`,
        "its buffer was transferred or detached",
      );
    }
  }
}
