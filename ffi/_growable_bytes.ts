// A byte buffer that grows in place, for dumps whose entry count is unknown
// until the kernel stops returning entries. It is backed by a resizable
// ArrayBuffer: V8 reserves address space for maxByteLength and commits pages
// only as the buffer grows, so growing does not copy and the memory in use
// stays near the bytes written. Only when a write goes past the reservation
// is a larger buffer allocated and the bytes copied.

/** The growth step, so that growing by one batch at a time does not resize on every call. */
const MIN_GROWTH = 64 * 1024;

export class GrowableBytes {
  #buffer: ArrayBuffer;

  /** Creates an empty buffer that can grow to `reserve` bytes without a copy. */
  constructor(reserve: number) {
    this.#buffer = allocate(0, reserve);
  }

  /** The current backing buffer; it is replaced when a write goes past the reservation. */
  get buffer(): ArrayBuffer {
    return this.#buffer;
  }

  /** The bytes allocated so far (at least what was written). */
  get byteLength(): number {
    return this.#buffer.byteLength;
  }

  /**
   * Returns a view of `length` bytes at `offset`, growing the buffer first when
   * it is shorter than `offset + length`. New bytes are zero.
   */
  view(offset: number, length: number): Uint8Array<ArrayBuffer> {
    this.#ensure(offset + length);
    return new Uint8Array(this.#buffer, offset, length);
  }

  /** Shrinks the buffer to its first `length` bytes and returns them. */
  finish(length: number): Uint8Array<ArrayBuffer> {
    this.#ensure(length);
    this.#buffer.resize(length);
    return new Uint8Array(this.#buffer, 0, length);
  }

  #ensure(length: number): void {
    const buffer = this.#buffer;
    if (length <= buffer.byteLength) return;
    const grown = Math.max(
      length,
      buffer.byteLength + Math.max(MIN_GROWTH, buffer.byteLength >> 1),
    );
    if (length <= buffer.maxByteLength) {
      buffer.resize(Math.min(grown, buffer.maxByteLength));
      return;
    }
    const larger = allocate(grown, grown * 2);
    new Uint8Array(larger).set(new Uint8Array(buffer));
    this.#buffer = larger;
  }
}

function allocate(length: number, reserve: number): ArrayBuffer {
  const maxByteLength = Math.max(length, reserve);
  try {
    return new ArrayBuffer(length, { maxByteLength });
  } catch (error) {
    // V8 throws RangeError when it cannot reserve the address space; a
    // smaller reservation still works and falls back to copying when full.
    if (!(error instanceof RangeError) || maxByteLength <= length + MIN_GROWTH) throw error;
    return new ArrayBuffer(length, { maxByteLength: length + MIN_GROWTH });
  }
}
