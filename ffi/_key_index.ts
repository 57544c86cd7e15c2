// An open-addressing hash set of fixed-size keys that live in a caller's
// buffer: key number i is the `keySize` bytes at `i * keySize`. The index
// stores only key numbers and 32-bit hashes, so building it over a dump of a
// million keys allocates a few typed arrays and no per-key objects. A hash
// match is confirmed by comparing the key bytes.

const EMPTY = -1;

export class KeyIndex {
  readonly keySize: number;
  // Two words per slot, the key number (EMPTY for a free slot) and the key's
  // hash, side by side so that a probe touches one cache line.
  #table: Int32Array;
  #mask: number;
  #size = 0;

  /** Creates an index sized for about `expected` keys; it grows past that. */
  constructor(keySize: number, expected: number) {
    this.keySize = keySize;
    const capacity = tableCapacity(expected);
    this.#table = new Int32Array(capacity * 2).fill(EMPTY);
    this.#mask = capacity - 1;
  }

  /** The number of keys in the index. */
  get size(): number {
    return this.#size;
  }

  /**
   * Returns the number of the stored key equal to the key at byte `offset`
   * of `probe`, or -1 when there is none. `store` is the buffer the stored
   * keys live in.
   */
  find(probe: DataView, offset: number, store: DataView): number {
    const hash = hashKey(probe, offset, this.keySize);
    const table = this.#table;
    for (let slot = hash & this.#mask;; slot = (slot + 1) & this.#mask) {
      const index = table[slot * 2]!;
      if (index === EMPTY) return -1;
      if (
        table[slot * 2 + 1] === hash &&
        keysEqual(probe, offset, store, index * this.keySize, this.keySize)
      ) {
        return index;
      }
    }
  }

  /**
   * Adds key number `index` of `store` unless an equal key is already in the
   * index. Returns -1 when it was added, or the number of the equal key.
   */
  insert(store: DataView, index: number): number {
    if ((this.#size + 1) * 4 > this.#table.length) this.#grow();
    const offset = index * this.keySize;
    const hash = hashKey(store, offset, this.keySize);
    const table = this.#table;
    let slot = hash & this.#mask;
    for (;; slot = (slot + 1) & this.#mask) {
      const other = table[slot * 2]!;
      if (other === EMPTY) break;
      if (
        table[slot * 2 + 1] === hash &&
        keysEqual(store, offset, store, other * this.keySize, this.keySize)
      ) {
        return other;
      }
    }
    table[slot * 2] = index;
    table[slot * 2 + 1] = hash;
    this.#size++;
    return -1;
  }

  #grow(): void {
    const old = this.#table;
    const capacity = old.length;
    const table = new Int32Array(capacity * 2).fill(EMPTY);
    const mask = capacity - 1;
    for (let oldSlot = 0; oldSlot < old.length; oldSlot += 2) {
      const index = old[oldSlot]!;
      if (index === EMPTY) continue;
      const hash = old[oldSlot + 1]!;
      let slot = hash & mask;
      while (table[slot * 2] !== EMPTY) slot = (slot + 1) & mask;
      table[slot * 2] = index;
      table[slot * 2 + 1] = hash;
    }
    this.#table = table;
    this.#mask = mask;
  }
}

/** Returns a DataView over exactly the bytes of `bytes`. */
export function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function tableCapacity(expected: number): number {
  let capacity = 16;
  while (capacity < expected * 2) capacity *= 2;
  return capacity;
}

// A multiply-xorshift hash over 32-bit words (murmur3's mixing constants),
// then the trailing bytes. Keys are compared in full after a hash match, so
// the hash only needs to spread keys well, not resist adversaries.
function hashKey(view: DataView, offset: number, size: number): number {
  let hash = 0x9e3779b9 ^ size;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    let word = Math.imul(view.getUint32(offset + i, true), 0xcc9e2d51);
    word = Math.imul((word << 15) | (word >>> 17), 0x1b873593);
    hash ^= word;
    hash = Math.imul((hash << 13) | (hash >>> 19), 5) + 0xe6546b64;
  }
  for (; i < size; i++) {
    hash = Math.imul(hash ^ view.getUint8(offset + i), 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash | 0;
}

/** Returns whether the `size` bytes at `leftOffset` of `left` equal those at `rightOffset` of `right`. */
export function keysEqual(
  left: DataView,
  leftOffset: number,
  right: DataView,
  rightOffset: number,
  size: number,
): boolean {
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    if (left.getUint32(leftOffset + i, true) !== right.getUint32(rightOffset + i, true)) {
      return false;
    }
  }
  for (; i < size; i++) {
    if (left.getUint8(leftOffset + i) !== right.getUint8(rightOffset + i)) return false;
  }
  return true;
}
