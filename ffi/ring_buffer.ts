/**
 * {@linkcode RingBufferReader}: records of a `BPF_MAP_TYPE_RINGBUF` map, read
 * straight out of the mmapped ring, with wake-ups through epoll.
 *
 * @module
 */

import { checkMmap } from "./_check.ts";
import { Errno } from "./_errno.ts";
import { decoderFor } from "./_layout_codec.ts";
import { layoutFromBtf } from "./_layout_btf.ts";
import type { ObjectState } from "./_object_state.ts";
import { track, untrack } from "./_resources.ts";
import { RingPoller } from "./_ring_poller.ts";
import type { Btf, BtfKindName } from "./btf.ts";
import { MapType } from "./constants.ts";
import { BpfError, ClosedError } from "./errors.ts";
import type { Layout } from "./layout.ts";
import { libc, MAP_SHARED, PROT_READ, PROT_WRITE, systemPageSize } from "./libc.ts";
import type { BpfMap } from "./map.ts";
import { readUint64PerCpu, sumPerCpu } from "./per_cpu.ts";

// The record header (include/uapi/linux/bpf.h, Linux 5.8+): a u32 length
// whose top two bits are flags, then a u32 page offset that only the kernel uses.
const HEADER_SIZE = 8;
const BUSY_BIT = 0x80000000;
const DISCARD_BIT = 0x40000000;
const LENGTH_MASK = 0x3fffffff;
const TWO_TO_32 = 2 ** 32;
const DEFAULT_POLL_TIMEOUT_MS = 100;
const MAX_POLL_TIMEOUT_MS = 2 ** 31 - 1;
const COPY_CHUNK_BYTES = 64 * 1024;
// Records that read() copies at a time: enough to amortize the copy, few
// enough that the copies die young instead of being moved by the garbage collector.
const QUEUE_RECORDS = 1024;

/**
 * The drop counter of a ring buffer: the per-CPU map that
 * `BPFSCOPE_RINGBUF` of `bpf/include/bpfscope_ringbuf.h` declares beside the
 * ring (`NAME_lost`, a `PERCPU_ARRAY` or `ARRAY` with one u64 at key 0), or a
 * function that returns the count.
 *
 * @example Count drops with a function
 * ```ts
 * import type { LostCounter } from "./ring_buffer.ts";
 *
 * let dropped = 0;
 * const lost: LostCounter = () => dropped;
 * ```
 */
export type LostCounter = BpfMap | (() => number | bigint);

/**
 * Options of {@linkcode RingBufferReader}.
 *
 * @example Stop reading after 10 seconds
 * ```ts
 * import type { RingBufferOptions } from "./ring_buffer.ts";
 *
 * const options: RingBufferOptions = { signal: AbortSignal.timeout(10_000), pollTimeoutMs: 50 };
 * ```
 */
export interface RingBufferOptions {
  /** Closes the reader when aborted: pending and later reads then end. */
  signal?: AbortSignal;
  /**
   * The maximum time in milliseconds that one epoll wait lasts before the
   * reader checks the ring again. Closing does not wait for it. It bounds the
   * delay of records that a program submitted with `BPF_RB_NO_WAKEUP`.
   *
   * @default 100
   */
  pollTimeoutMs?: number;
  /**
   * The drop counter that {@linkcode RingBufferStats.lost} reports, see
   * {@linkcode LostCounter}. Without it `lost` stays 0, because the kernel
   * does not count failed reservations.
   */
  lost?: LostCounter;
}

/**
 * Counts of a {@linkcode RingBufferReader} since it was created.
 *
 * @example
 * ```ts
 * import type { RingBufferStats } from "./ring_buffer.ts";
 *
 * const stats: RingBufferStats = { records: 10, bytes: 640, wakeups: 2, discarded: 1, lost: 0 };
 * ```
 */
export interface RingBufferStats {
  /** Records handed to the caller. */
  records: number;
  /** Payload bytes of those records, without headers and padding. */
  bytes: number;
  /** Epoll wake-ups that reported the ring readable. */
  wakeups: number;
  /** Records that programs reserved and then discarded, skipped by the reader. */
  discarded: number;
  /** Reservations that failed because the ring was full, from the `lost` option's counter. */
  lost: number;
}

/** @internal The key of BpfMap's method that returns its object's state. */
export const objectStateOf: unique symbol = Symbol("objectStateOf");

/** @internal What a reader needs from a BpfMap beyond its public members. */
interface OwnedMap extends BpfMap {
  [objectStateOf](): ObjectState;
}

/**
 * The callback of {@linkcode RingBufferReader.consumeRaw}: the record is
 * `length` bytes of `view.buffer` from byte `offset`.
 *
 * @example Read the first u64 of a record
 * ```ts
 * import type { RawRecordCallback } from "./ring_buffer.ts";
 *
 * let last = 0n;
 * const onRecord: RawRecordCallback = (view, offset) => last = view.getBigUint64(offset, true);
 * ```
 */
export type RawRecordCallback = (view: DataView, offset: number, length: number) => void;

type Visitor = RawRecordCallback;

// Members that decodedRecords() uses and callers do not.
const visitAvailable: unique symbol = Symbol("visitAvailable");
const waitForData: unique symbol = Symbol("waitForData");

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

// Maps with an open reader: a second consumer would move the consumer
// position under the first one.
const openReaders = new WeakSet<BpfMap>();

/**
 * Reads the records of a `BPF_MAP_TYPE_RINGBUF` map (Linux 5.8 or newer)
 * from shared memory: the ring is mmapped, records are found by their
 * headers, and the consumer position is advanced in place. No system call
 * is made while records are available. When the ring is empty the reader
 * waits on an epoll set, in a `nonblocking` FFI call, so the event loop
 * stays free.
 *
 * Three ways to take records, which can be mixed and see each record once,
 * in ring order:
 * - {@linkcode RingBufferReader.read} and async iteration return copies;
 * - {@linkcode RingBufferReader.consume} and
 *   {@linkcode RingBufferReader.consumeAvailable} call a function with a view
 *   of the ring memory, valid only during the call (the fast path);
 * - {@linkcode RingBufferReader.decode} returns records decoded by a layout.
 *
 * Records that programs discarded are skipped and counted in
 * {@linkcode RingBufferStats.discarded}. Records from one CPU arrive in the
 * order they were reserved. One map can have one open reader at a time.
 *
 * The reader belongs to the map's object: closing the object closes the
 * reader first. Closing the reader, or aborting its signal, ends pending and
 * later reads and iterations as done, without an error, also while they
 * wait. Views handed out earlier become zero-length. Concurrent calls from
 * one thread are safe, but the reader cannot be shared with a Worker.
 *
 * @example Print the size of each record until Ctrl-C
 * ```ts ignore
 * import { openObject, RingBufferReader } from "../mod.ts";
 *
 * using object = openObject("./events.bpf.o").load();
 * object.attachAll();
 * using reader = new RingBufferReader(object.map("events"));
 * Deno.addSignalListener("SIGINT", () => reader.close());
 * for await (const record of reader) console.log(record.byteLength);
 * ```
 */
export class RingBufferReader
  implements AsyncIterable<Uint8Array<ArrayBuffer>>, Disposable, AsyncDisposable {
  /** The ring buffer map's name. */
  readonly map: string;
  /** The size of the ring's data area in bytes: the map's `max_entries`. */
  readonly byteLength: number;
  #mapRef: BpfMap;
  #subject: { map: string; object: string };
  #mask: number;
  #pollTimeoutMs: number;
  #pageSize: number;

  #consumerPage: Deno.PointerObject | null = null;
  #producerPages: Deno.PointerObject | null = null;
  #buffers: ArrayBuffer[] = [];
  // consumer_pos as two u32 halves (little-endian: low first), and whole.
  #consumerWords!: Uint32Array;
  #consumerWide!: BigUint64Array;
  // The producer page, read by native calls (see #drain).
  #producerView: Deno.UnsafePointerView | null = null;
  // The data area, mapped twice back to back so that no record wraps.
  #data!: ArrayBuffer;
  #dataWords!: Uint32Array;
  #dataBytes!: Uint8Array<ArrayBuffer>;
  #dataView!: DataView;

  // The consumer position, exact below 2^53, and the last one stored.
  #position = 0;
  #releasedHigh = 0;
  #poller: RingPoller | null = null;
  #owner: ObjectState | null;
  #token: object | null = null;
  #closed = false;
  #closedPromise: Promise<false>;
  #resolveClosed!: (value: false) => void;
  #signal: AbortSignal | undefined;
  #onAbort = (): void => this.close();

  // Where the last #drain() stopped, and the records it found for #fillQueue().
  #drained = 0;
  #copyOffsets: number[] = [];
  #copySizes: number[] = [];
  // Copies taken from the ring by read() and not returned yet.
  #queue: Uint8Array<ArrayBuffer>[] = [];
  #queueHead = 0;

  #records = 0;
  #bytes = 0;
  #discarded = 0;
  #lost: LostCounter | undefined;
  #lostBaseline = 0;
  #lastLost = 0;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;

  /**
   * Maps the ring of `map` and opens its epoll set.
   *
   * @param map a map of type `RINGBUF`
   * @param options see {@linkcode RingBufferOptions}
   * @throws {TypeError} when `map` is not a `RINGBUF` map, or `lost` is not a
   * function or a `PERCPU_ARRAY` or `ARRAY` map with u32 keys and u64 values
   * @throws {RangeError} when `pollTimeoutMs` is not an integer from 1 to 2^31 - 1
   * @throws {BpfError} with code `EBUSY` when the map already has an open
   * reader, or another code when mmap or epoll fails
   * @throws {ClosedError} after the map's object is closed
   * @throws the signal's reason when `signal` is already aborted
   */
  constructor(map: BpfMap, options: RingBufferOptions = {}) {
    checkRingMap(map);
    const pollTimeoutMs = options.pollTimeoutMs ?? DEFAULT_POLL_TIMEOUT_MS;
    checkPollTimeout(pollTimeoutMs);
    if (options.lost !== undefined) checkLostCounter(options.lost);
    options.signal?.throwIfAborted();
    const owner = (map as OwnedMap)[objectStateOf]();
    owner.check("open ring buffer reader of", `map "${map.name}"`);
    this.#subject = { map: map.name, object: owner.name };
    if (openReaders.has(map)) {
      throw new BpfError({
        ...this.#subject,
        op: "open ring buffer reader of",
        errno: Errno.EBUSY,
        detail: "the map already has an open reader",
        hint: "close that reader first: two consumers of one ring would skip each other's records",
      });
    }

    this.map = map.name;
    this.byteLength = map.maxEntries;
    this.#mapRef = map;
    this.#mask = map.maxEntries - 1;
    this.#pollTimeoutMs = pollTimeoutMs;
    this.#pageSize = systemPageSize();
    this.#owner = owner;
    this.#closedPromise = new Promise((resolve) => this.#resolveClosed = resolve);

    try {
      this.#mapRing(map.fd);
      this.#poller = new RingPoller(map.fd, this.#subject);
    } catch (error) {
      this.#closed = true;
      this.#unmap();
      throw error;
    }

    this.#position = Number(Atomics.load(this.#consumerWide, 0));
    this.#releasedHigh = Math.floor(this.#position / TWO_TO_32);
    this.#lost = options.lost;
    this.#lostBaseline = this.#readLost();
    openReaders.add(map);
    owner.adopt(this, 1);
    // A leaked reader keeps its mapping (a view may still point into it) but
    // releases its epoll fds.
    const poller = this.#poller;
    this.#token = track(this, `ring buffer reader of map "${map.name}"`, () => poller.close());
    if (options.signal !== undefined) {
      this.#signal = options.signal;
      options.signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** Whether {@linkcode RingBufferReader.close} has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The reader's counts; `lost` is read from the `lost` option's counter at each access. */
  get stats(): RingBufferStats {
    if (!this.#closed) this.#lastLost = this.#readLost() - this.#lostBaseline;
    return {
      records: this.#records,
      bytes: this.#bytes,
      wakeups: this.#poller?.wakeups ?? 0,
      discarded: this.#discarded,
      lost: this.#lastLost,
    };
  }

  /**
   * Returns the next record as a fresh copy, waiting for one when the ring is
   * empty, or `undefined` once the reader is closed or its signal aborted.
   * Copies of records that were next to each other in the ring share one
   * `ArrayBuffer` of at most 64 KiB: read a record through its `byteOffset`
   * and `byteLength`, not through its whole `buffer`.
   *
   * @throws {BpfError} when waiting fails
   */
  async read(): Promise<Uint8Array<ArrayBuffer> | undefined> {
    for (;;) {
      const record = this.#takeQueued();
      if (record !== undefined) return record;
      if (this.#closed) return undefined;
      if (this.#fillQueue() > 0) continue;
      await this.#waitForData();
    }
  }

  /**
   * Calls `fn` for every available record and returns their number, waiting
   * first when the ring is empty. The view passed to `fn` is the ring memory
   * itself, valid only until `fn` returns: copy what you keep. Returns 0 once
   * the reader is closed. When `fn` throws, the records before it and the
   * one it threw on are consumed, and the error propagates.
   *
   * @throws {BpfError} when waiting fails
   */
  async consume(fn: (record: Uint8Array<ArrayBuffer>) => void): Promise<number> {
    for (;;) {
      if (this.#closed) return 0;
      const count = this.consumeAvailable(fn);
      if (count > 0) return count;
      await this.#waitForData();
    }
  }

  /**
   * Calls `fn` for every record available now, like
   * {@linkcode RingBufferReader.consume}, without waiting: returns 0 when the
   * ring is empty. One call reads at most about twice the ring's size, so a
   * producer that never pauses cannot keep it running forever.
   *
   * @throws {ClosedError} after close
   */
  consumeAvailable(fn: (record: Uint8Array<ArrayBuffer>) => void): number {
    if (this.#closed) throw new ClosedError("consume", `ring buffer reader of map "${this.map}"`);
    let count = 0;
    while (this.#queueHead < this.#queue.length) {
      fn(this.#takeQueued()!);
      count++;
      if (this.#closed) return count;
    }
    const data = this.#data;
    const visit: Visitor = (_view, offset, size) => fn(new Uint8Array(data, offset, size));
    return count + this.#drain(visit);
  }

  /**
   * Calls `fn` for every available record like
   * {@linkcode RingBufferReader.consume}, but passes the record as a
   * position in the ring instead of a `Uint8Array`: its bytes are
   * `view.buffer`'s from `offset` to `offset + length`. No object is
   * created per record, which makes this the fastest way to read; `view`
   * (over the whole ring) is valid only until `fn` returns.
   *
   * @throws {BpfError} when waiting fails
   *
   * @example Sum a u32 field at offset 4 of each record
   * ```ts ignore
   * import { openObject, RingBufferReader } from "../mod.ts";
   *
   * using object = openObject("./events.bpf.o").load();
   * object.attachAll();
   * using reader = new RingBufferReader(object.map("events"));
   * let total = 0;
   * await reader.consumeRaw((view, offset) => total += view.getUint32(offset + 4, true));
   * ```
   */
  async consumeRaw(fn: RawRecordCallback): Promise<number> {
    for (;;) {
      if (this.#closed) return 0;
      const count = this.consumeAvailableRaw(fn);
      if (count > 0) return count;
      await this.#waitForData();
    }
  }

  /**
   * Calls `fn` for every record available now, like
   * {@linkcode RingBufferReader.consumeRaw}, without waiting: returns 0 when
   * the ring is empty.
   *
   * @throws {ClosedError} after close
   */
  consumeAvailableRaw(fn: RawRecordCallback): number {
    if (this.#closed) throw new ClosedError("consume", `ring buffer reader of map "${this.map}"`);
    return this[visitAvailable](fn);
  }

  /**
   * Returns the records decoded by a layout: a {@linkcode Layout}, or the
   * name of a struct or union in the object's BTF, such as `"struct event"`
   * (declare it in C with `BPFSCOPE_RINGBUF_RECORD` so that BTF keeps it).
   * Records are decoded straight from the ring memory. Iteration ends when
   * the reader closes.
   *
   * @throws {TypeError} when the object has no BTF or no such type
   * @throws {RangeError} during iteration, for a record shorter than the layout
   *
   * @example Decode `struct event` records
   * ```ts ignore
   * import { openObject, RingBufferReader } from "../mod.ts";
   *
   * using object = openObject("./events.bpf.o").load();
   * object.attachAll();
   * using reader = new RingBufferReader(object.map("events"));
   * for await (const event of reader.decode<{ pid: number }>("struct event")) console.log(event.pid);
   * ```
   */
  decode<T>(layout: Layout<T> | string): AsyncIterable<T> {
    const resolved = typeof layout === "string" ? this.#layoutByName(layout) as Layout<T> : layout;
    return decodedRecords(this, resolved);
  }

  /**
   * Returns an iterator over the records as copies, like
   * {@linkcode RingBufferReader.read}. It ends when the reader closes;
   * leaving a `for await` loop early does not close the reader.
   */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array<ArrayBuffer>, undefined> {
    return {
      next: () => this.#next(),
      return: () => Promise.resolve(DONE),
    };
  }

  /**
   * The records as a stream of copies. It closes when the reader closes;
   * cancelling it closes the reader.
   */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    this.#readable ??= new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (controller) => {
        const record = await this.read();
        if (record === undefined) controller.close();
        else controller.enqueue(record);
      },
      cancel: () => this.close(),
    }, { highWaterMark: 0 });
    return this.#readable;
  }

  /**
   * Ends pending and later reads, detaches every view handed out and
   * unmaps the ring. Calling it again does nothing.
   */
  close(): void {
    if (this.#closed) return;
    this.#lastLost = this.#finalLost();
    this.#closed = true;
    if (this.#token !== null) untrack(this.#token);
    openReaders.delete(this.#mapRef);
    this.#owner?.forget(this);
    this.#owner = null;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#poller?.close();
    this.#queue = [];
    this.#queueHead = 0;
    this.#unmap();
    this.#resolveClosed(false);
  }

  /** Same as {@linkcode RingBufferReader.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Same as {@linkcode RingBufferReader.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  /** @internal Calls `visit` for queued copies, then for available records in the ring. */
  [visitAvailable](visit: Visitor): number {
    let count = 0;
    while (this.#queueHead < this.#queue.length) {
      const record = this.#takeQueued()!;
      visit(new DataView(record.buffer), record.byteOffset, record.byteLength);
      count++;
      if (this.#closed) return count;
    }
    return count + this.#drain(visit);
  }

  /** @internal Waits until the ring may have data or the reader closes. */
  [waitForData](): Promise<void> {
    return this.#waitForData();
  }

  // Maps the consumer page read-write at offset 0, and the producer page
  // with the data area (mapped twice by the kernel) read-only after it.
  #mapRing(fd: number): void {
    const lib = libc();
    const page = this.#pageSize;
    this.#consumerPage = checkMmap(
      lib.mmap(null, BigInt(page), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n),
      "mmap consumer page of",
      this.#subject,
    );
    const producerLength = page + 2 * this.byteLength;
    this.#producerPages = checkMmap(
      lib.mmap(null, BigInt(producerLength), PROT_READ, MAP_SHARED, fd, BigInt(page)),
      "mmap producer page and data of",
      this.#subject,
    );

    // SAFETY: both mappings stay valid until #unmap(), which detaches every buffer first.
    const consumer = Deno.UnsafePointerView.getArrayBuffer(this.#consumerPage, 8);
    this.#producerView = new Deno.UnsafePointerView(this.#producerPages);
    const dataStart = Deno.UnsafePointer.offset(this.#producerPages, page)!;
    this.#data = Deno.UnsafePointerView.getArrayBuffer(dataStart, 2 * this.byteLength);
    this.#buffers = [consumer, this.#data];
    this.#consumerWords = new Uint32Array(consumer);
    this.#consumerWide = new BigUint64Array(consumer);
    this.#dataWords = new Uint32Array(this.#data);
    this.#dataBytes = new Uint8Array(this.#data);
    this.#dataView = new DataView(this.#data);
  }

  #unmap(): void {
    // Detaching first turns every view handed out into a zero-length one.
    for (const buffer of this.#buffers) if (!buffer.detached) buffer.transfer(0);
    this.#buffers = [];
    const lib = libc();
    if (this.#consumerPage !== null) lib.munmap(this.#consumerPage, BigInt(this.#pageSize));
    if (this.#producerPages !== null) {
      lib.munmap(this.#producerPages, BigInt(this.#pageSize + 2 * this.byteLength));
    }
    this.#consumerPage = null;
    this.#producerPages = null;
    this.#producerView = null;
  }

  /*
   * Memory ordering. The kernel (kernel/bpf/ringbuf.c) writes a record's
   * header with the BUSY bit and then advances producer_pos with a release
   * store, both at reservation. At commit it clears BUSY with an atomic
   * exchange, which orders the record's data before the header. Like
   * libbpf's consumer, the reader reads producer_pos, then each header, then
   * the payload, and stores consumer_pos only after the payload reads.
   *
   * What keeps those reads in order and fresh:
   * - The JIT. TurboFan treats memory that is not a SharedArrayBuffer as
   *   unshared, so it may reuse an earlier read of the same address, even
   *   through Atomics.load. A loop that polled producer_pos with
   *   Atomics.load saw 10 of 2000 changes once optimized, and all of them
   *   with TurboFan off (Deno 2.9.6, x86_64). producer_pos is therefore read by
   *   a native call (UnsafePointerView), which V8 cannot see into, so no
   *   load before it is reused after it. Between two reads of one header
   *   the reader always makes that call.
   * - The CPU. On x86_64 loads are not reordered with other loads and stores
   *   are not reordered with earlier loads, so plain reads and writes give
   *   the acquire and release order that libbpf gets from
   *   smp_load_acquire() and smp_store_release().
   * NOTE: arm64 may reorder these plain loads, and JavaScript has no fence:
   * there a payload read could see data older than its header. Not tested.
   *
   * With `queue` false, the records count in the stats and the consumer
   * position is stored before returning. With `queue` true (copies for
   * read()) neither happens: the caller copies the records, then calls
   * #release(#drained).
   */
  #drain(visit: Visitor, queue = false, maxRecords = Infinity): number {
    const words = this.#dataWords;
    const view = this.#dataView;
    const mask = this.#mask;
    const start = this.#position;
    let position = start;
    let count = 0;
    let bytes = 0;
    try {
      for (;;) {
        const producer = this.#producerPosition(position);
        if (producer === position) break;
        while (position < producer) {
          const offset = position & mask;
          const header = words[offset >>> 2]!;
          if ((header & BUSY_BIT) !== 0) return count;
          const size = header & LENGTH_MASK;
          position += (size + HEADER_SIZE + 7) & ~7;
          if ((header & DISCARD_BIT) !== 0) {
            this.#discarded++;
            continue;
          }
          count++;
          bytes += size;
          visit(view, offset + HEADER_SIZE, size);
          if (this.#closed || count >= maxRecords) return count;
        }
        if (position - start >= this.byteLength) break;
      }
      return count;
    } finally {
      this.#drained = position;
      if (!queue) {
        this.#records += count;
        this.#bytes += bytes;
        if (!this.#closed) this.#release(position);
      }
    }
  }

  // producer_pos read through its low half: the unconsumed data never
  // exceeds the ring's size (at most 2^31 bytes), so the distance from the
  // consumer position fits in 32 bits.
  #producerPosition(consumer: number): number {
    const low = this.#producerView!.getUint32(0);
    return consumer + ((low - consumer) >>> 0);
  }

  // Stores consumer_pos. The kernel reads it as one u64: the low half alone is
  // stored while the high half is unchanged, the whole word when it changes.
  #release(position: number): void {
    if (position === this.#position) return;
    this.#position = position;
    const high = Math.floor(position / TWO_TO_32);
    if (high === this.#releasedHigh) {
      Atomics.store(this.#consumerWords, 0, position >>> 0);
    } else {
      Atomics.store(this.#consumerWide, 0, BigInt(position));
      this.#releasedHigh = high;
    }
  }

  // Copies the available records for read(). Allocating an ArrayBuffer per
  // record costs about 0.5 µs in Deno 2.9, so records that lie next to each
  // other share one copy of at most COPY_CHUNK_BYTES, and each record is a
  // view of its part.
  #fillQueue(): number {
    const offsets = this.#copyOffsets;
    const sizes = this.#copySizes;
    const count = this.#drain(
      (_view, offset, size) => {
        offsets.push(offset);
        sizes.push(size);
      },
      true,
      QUEUE_RECORDS,
    );

    let first = 0;
    while (first < count) {
      const start = offsets[first]!;
      let last = first;
      while (last + 1 < count) {
        const next = last + 1;
        // A smaller offset means the records wrapped around the ring.
        if (offsets[next]! < offsets[last]!) break;
        if (offsets[next]! + sizes[next]! - start > COPY_CHUNK_BYTES) break;
        last = next;
      }
      const chunk = this.#data.slice(start, offsets[last]! + sizes[last]!);
      for (let i = first; i <= last; i++) {
        this.#queue.push(new Uint8Array(chunk, offsets[i]! - start, sizes[i]!));
      }
      first = last + 1;
    }
    offsets.length = 0;
    sizes.length = 0;
    this.#release(this.#drained);
    return count;
  }

  #takeQueued(): Uint8Array<ArrayBuffer> | undefined {
    if (this.#queueHead >= this.#queue.length) return undefined;
    const record = this.#queue[this.#queueHead]!;
    this.#queue[this.#queueHead++] = undefined as unknown as Uint8Array<ArrayBuffer>;
    if (this.#queueHead === this.#queue.length) {
      this.#queue.length = 0;
      this.#queueHead = 0;
    }
    this.#records++;
    this.#bytes += record.byteLength;
    return record;
  }

  #next(): Promise<IteratorResult<Uint8Array<ArrayBuffer>, undefined>> {
    let record = this.#takeQueued();
    if (record === undefined && !this.#closed && this.#fillQueue() > 0) {
      record = this.#takeQueued();
    }
    if (record !== undefined) return Promise.resolve({ done: false, value: record });
    return this.read().then((value) => value === undefined ? DONE : { done: false, value });
  }

  async #waitForData(): Promise<void> {
    if (this.#closed || this.#poller === null) return;
    await Promise.race([this.#poller.wait(this.#pollTimeoutMs), this.#closedPromise]);
  }

  #readLost(): number {
    const counter = this.#lost;
    if (counter === undefined) return 0;
    if (typeof counter === "function") return Number(counter());
    const key = new Uint8Array(4);
    if (counter.isPerCpu) {
      const values = counter.lookupPerCpu(key);
      return values === undefined ? 0 : Number(sumPerCpu(readUint64PerCpu(values)));
    }
    const value = counter.lookup(key);
    return value === undefined ? 0 : Number(readUint64PerCpu([value])[0]);
  }

  // The last reading of the drop counter, taken at close. A counter that
  // cannot be read any more (its own object closed first) keeps the previous one.
  #finalLost(): number {
    try {
      return this.#readLost() - this.#lostBaseline;
    } catch {
      return this.#lastLost;
    }
  }

  #layoutByName(name: string): Layout {
    if (this.#closed) throw new ClosedError("decode", `ring buffer reader of map "${this.map}"`);
    const btf = this.#owner?.btf();
    if (btf === undefined) {
      throw new TypeError(
        `Cannot decode the records of map "${this.map}" by type name: its object has no BTF, so pass a layout instead`,
      );
    }
    return layoutByName(btf, name);
  }
}

/**
 * Returns the records of `reader` decoded by `layout`, straight from the ring
 * memory. Iteration ends when the reader closes; leaving the loop early does
 * not close it. A record longer than the layout is decoded from its start.
 *
 * @throws {RangeError} during iteration, for a record shorter than the layout
 *
 * @example Decode records of two u32 fields
 * ```ts ignore
 * import { decodedRecords, openObject, RingBufferReader, struct, u32 } from "../mod.ts";
 *
 * using object = openObject("./events.bpf.o").load();
 * object.attachAll();
 * using reader = new RingBufferReader(object.map("events"));
 * const event = struct({ pid: u32, cpu: u32 });
 * for await (const { pid, cpu } of decodedRecords(reader, event)) console.log(pid, cpu);
 * ```
 */
export function decodedRecords<T>(reader: RingBufferReader, layout: Layout<T>): AsyncIterable<T> {
  const decode = decoderFor(layout);
  const size = layout.size;
  return {
    [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
      // Decoded records, and in their place the error of a record that could
      // not be decoded: it is thrown when iteration reaches it, so the records
      // before it in the same batch are not lost.
      const decoded: (T | RecordError)[] = [];
      let head = 0;
      const visit: Visitor = (view, offset, length) => {
        if (length >= size) {
          decoded.push(decode(view, offset));
          return;
        }
        decoded.push(
          new RecordError(
            new RangeError(
              `Ring buffer record of map "${reader.map}" is ${length} bytes, shorter than the ${size} bytes of its layout`,
            ),
          ),
        );
      };
      const next = async (): Promise<IteratorResult<T, undefined>> => {
        for (;;) {
          if (head < decoded.length) {
            const item = decoded[head++]!;
            if (item instanceof RecordError) throw item.error;
            return { done: false, value: item };
          }
          decoded.length = 0;
          head = 0;
          if (reader.closed) return DONE;
          if (reader[visitAvailable](visit) === 0) await reader[waitForData]();
        }
      };
      return { next, return: () => Promise.resolve(DONE) };
    },
  };
}

class RecordError {
  readonly error: Error;

  constructor(error: Error) {
    this.error = error;
  }
}

function checkRingMap(map: BpfMap): void {
  if (map.type === MapType.RINGBUF) return;
  throw new TypeError(
    `Map "${map.name}" is a ${map.typeName} map: a RingBufferReader needs a RINGBUF map`,
  );
}

function checkPollTimeout(timeoutMs: number): void {
  if (Number.isInteger(timeoutMs) && timeoutMs >= 1 && timeoutMs <= MAX_POLL_TIMEOUT_MS) return;
  throw new RangeError(
    `Invalid pollTimeoutMs ${timeoutMs}: it must be an integer from 1 to ${MAX_POLL_TIMEOUT_MS}`,
  );
}

function checkLostCounter(counter: LostCounter): void {
  if (typeof counter === "function") return;
  const typeFits = counter.type === MapType.PERCPU_ARRAY || counter.type === MapType.ARRAY;
  if (typeFits && counter.keySize === 4 && counter.valueSize === 8) return;
  throw new TypeError(
    `Invalid lost counter map "${counter.name}": it is a ${counter.typeName} map with ${counter.keySize}-byte keys and ${counter.valueSize}-byte values. Expected a PERCPU_ARRAY or ARRAY map with u32 keys and u64 values`,
  );
}

const TYPE_PREFIXES: ReadonlyMap<string, BtfKindName> = new Map([
  ["struct ", "STRUCT"],
  ["union ", "UNION"],
]);

function missingRecordType(name: string): TypeError {
  return new TypeError(
    `Record type "${name}" not found in the object's BTF: declare it in C with BPFSCOPE_RINGBUF_RECORD, or pass a layout`,
  );
}

// Finds "struct NAME", "union NAME", or NAME (a struct, union or typedef).
function layoutByName(btf: Btf, name: string): Layout {
  for (const [prefix, kind] of TYPE_PREFIXES) {
    if (!name.startsWith(prefix)) continue;
    const type = btf.find(name.slice(prefix.length).trim(), kind);
    if (type === undefined) throw missingRecordType(name);
    return layoutFromBtf(btf, type.id);
  }
  const type = btf.find(name, "STRUCT") ?? btf.find(name, "UNION") ??
    btf.find(name, "TYPEDEF");
  if (type === undefined) throw missingRecordType(name);
  return layoutFromBtf(btf, type.id);
}
