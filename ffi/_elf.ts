/**
 * The few facts bpfscope reads from an eBPF object's ELF file itself, without
 * libbpf: whether it has BTF, and which kinds of CO-RE relocation its
 * `.BTF.ext` section records.
 *
 * @module
 */

// struct bpf_core_relo's kind (linux/bpf.h): a relocation to a kernel type's id.
const BPF_CORE_TYPE_ID_TARGET = 7;
const BTF_MAGIC = 0xeb9f;
const SHT_NOBITS = 8;
// A shorter .BTF.ext header has no core_relo_off and core_relo_len fields, so no CO-RE relocations.
const BTF_EXT_HEADER_WITH_CORE_RELO = 32;

/** Returns the sections of a 64-bit little-endian ELF file by name; throws on a malformed file. */
export function elfSections(bytes: Uint8Array): Map<string, Uint8Array> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.byteLength >= 64 ? view.getUint32(0, false) : 0;
  // EI_CLASS 2 is 64-bit and EI_DATA 1 is little-endian, as clang's bpf target emits on x86_64 and arm64.
  if (magic !== 0x7f454c46 || bytes[4] !== 2 || bytes[5] !== 1) {
    throw new RangeError("not a 64-bit little-endian ELF file");
  }
  const headersOffset = Number(view.getBigUint64(0x28, true));
  const headerSize = view.getUint16(0x3a, true);
  const count = view.getUint16(0x3c, true);
  const namesIndex = view.getUint16(0x3e, true);
  const header = (index: number) => {
    const at = headersOffset + index * headerSize;
    if (headerSize < 64 || at + 64 > bytes.byteLength) {
      throw new RangeError("section header out of range");
    }
    const name = view.getUint32(at, true);
    // A SHT_NOBITS section such as .bss has a size but no bytes in the file.
    if (view.getUint32(at + 4, true) === SHT_NOBITS) return { name, data: new Uint8Array() };
    const offset = Number(view.getBigUint64(at + 24, true));
    const size = Number(view.getBigUint64(at + 32, true));
    if (offset + size > bytes.byteLength) throw new RangeError("section out of range");
    return { name, data: bytes.subarray(offset, offset + size) };
  };

  const names = header(namesIndex).data;
  const sections = new Map<string, Uint8Array>();
  for (let index = 1; index < count; index++) {
    const { name, data } = header(index);
    const end = names.indexOf(0, name);
    sections.set(new TextDecoder().decode(names.subarray(name, end < 0 ? undefined : end)), data);
  }
  return sections;
}

/**
 * Tells whether an object's CO-RE relocations include one that resolves to a
 * kernel type id (`bpf_core_type_id_kernel()`). Throws on malformed sections.
 */
export function hasKernelTypeIdRelocation(btfExt: Uint8Array): boolean {
  const view = new DataView(btfExt.buffer, btfExt.byteOffset, btfExt.byteLength);
  if (view.byteLength < 8 || view.getUint16(0, true) !== BTF_MAGIC) {
    throw new RangeError("invalid .BTF.ext header");
  }
  const headerLength = view.getUint32(4, true);
  if (headerLength < BTF_EXT_HEADER_WITH_CORE_RELO) return false;
  const start = headerLength + view.getUint32(24, true);
  const end = start + view.getUint32(28, true);
  if (end > view.byteLength) throw new RangeError(".BTF.ext core relocations out of range");
  if (end === start) return false;

  // The records of each section follow their section name offset and count.
  const recordSize = view.getUint32(start, true);
  if (recordSize < 16) throw new RangeError(`invalid CO-RE relocation record size ${recordSize}`);
  let at = start + 4;
  while (at + 8 <= end) {
    const records = view.getUint32(at + 4, true);
    at += 8;
    if (at + records * recordSize > end) throw new RangeError("CO-RE relocations out of range");
    for (let record = 0; record < records; record++, at += recordSize) {
      if (view.getUint32(at + 12, true) === BPF_CORE_TYPE_ID_TARGET) return true;
    }
  }
  return false;
}
