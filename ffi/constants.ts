/**
 * Kernel constants from the BPF UAPI (`include/uapi/linux/bpf.h`): map types,
 * program types and flags, under the kernel's own names without their prefix.
 *
 * @module
 */

/**
 * Map types (`enum bpf_map_type`), named as in the kernel without `BPF_MAP_TYPE_`.
 *
 * @example
 * ```ts
 * import { MapType } from "./constants.ts";
 *
 * console.log(MapType.PERCPU_ARRAY); // 6
 * ```
 */
export const MapType = {
  UNSPEC: 0,
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERF_EVENT_ARRAY: 4,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  STACK_TRACE: 7,
  CGROUP_ARRAY: 8,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
  DEVMAP: 14,
  SOCKMAP: 15,
  CPUMAP: 16,
  XSKMAP: 17,
  SOCKHASH: 18,
  CGROUP_STORAGE: 19,
  REUSEPORT_SOCKARRAY: 20,
  PERCPU_CGROUP_STORAGE: 21,
  QUEUE: 22,
  STACK: 23,
  SK_STORAGE: 24,
  DEVMAP_HASH: 25,
  STRUCT_OPS: 26,
  RINGBUF: 27,
  INODE_STORAGE: 28,
  TASK_STORAGE: 29,
  BLOOM_FILTER: 30,
  USER_RINGBUF: 31,
  CGRP_STORAGE: 32,
  ARENA: 33,
} as const;

/** A value of {@linkcode MapType}. */
export type MapType = typeof MapType[keyof typeof MapType];

/**
 * Program types (`enum bpf_prog_type`), named as in the kernel without `BPF_PROG_TYPE_`.
 *
 * @example
 * ```ts
 * import { ProgramType } from "./constants.ts";
 *
 * console.log(ProgramType.RAW_TRACEPOINT); // 17
 * ```
 */
export const ProgramType = {
  UNSPEC: 0,
  SOCKET_FILTER: 1,
  KPROBE: 2,
  SCHED_CLS: 3,
  SCHED_ACT: 4,
  TRACEPOINT: 5,
  XDP: 6,
  PERF_EVENT: 7,
  CGROUP_SKB: 8,
  CGROUP_SOCK: 9,
  LWT_IN: 10,
  LWT_OUT: 11,
  LWT_XMIT: 12,
  SOCK_OPS: 13,
  SK_SKB: 14,
  CGROUP_DEVICE: 15,
  SK_MSG: 16,
  RAW_TRACEPOINT: 17,
  CGROUP_SOCK_ADDR: 18,
  LWT_SEG6LOCAL: 19,
  LIRC_MODE2: 20,
  SK_REUSEPORT: 21,
  FLOW_DISSECTOR: 22,
  CGROUP_SYSCTL: 23,
  RAW_TRACEPOINT_WRITABLE: 24,
  CGROUP_SOCKOPT: 25,
  TRACING: 26,
  STRUCT_OPS: 27,
  EXT: 28,
  LSM: 29,
  SK_LOOKUP: 30,
  SYSCALL: 31,
  NETFILTER: 32,
} as const;

/** A value of {@linkcode ProgramType}. */
export type ProgramType = typeof ProgramType[keyof typeof ProgramType];

/**
 * Map creation flags (`map_flags`) and element flags, under their kernel names without `BPF_`.
 *
 * @example
 * ```ts
 * import { MapFlags } from "./constants.ts";
 *
 * console.log(MapFlags.F_MMAPABLE); // 1024
 * ```
 */
export const MapFlags = {
  /** Map creation: no preallocation of hash elements. */
  F_NO_PREALLOC: 1 << 0,
  /** Map creation: user space may only read. */
  F_RDONLY: 1 << 3,
  /** Map creation: user space may only write. */
  F_WRONLY: 1 << 4,
  /** Map creation: BPF programs may only read. */
  F_RDONLY_PROG: 1 << 7,
  /** Map creation: BPF programs may only write. */
  F_WRONLY_PROG: 1 << 8,
  /** Map creation: the array's memory can be mmapped. */
  F_MMAPABLE: 1 << 10,
} as const;

/**
 * Flags of element update calls (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
 *
 * @example
 * ```ts
 * import { UpdateFlags } from "./constants.ts";
 *
 * console.log(UpdateFlags.NOEXIST); // 1
 * ```
 */
export const UpdateFlags = {
  /** Create a new element or update an existing one. */
  ANY: 0,
  /** Create a new element only if it does not exist. */
  NOEXIST: 1,
  /** Update an existing element only. */
  EXIST: 2,
  /** Take the value's `struct bpf_spin_lock` while copying it. */
  F_LOCK: 4,
} as const;

/**
 * Returns the kernel name of a map type without its prefix, such as `"PERCPU_ARRAY"`.
 *
 * @example
 * ```ts
 * import { mapTypeName } from "./constants.ts";
 *
 * console.log(mapTypeName(27)); // "RINGBUF"
 * ```
 */
export function mapTypeName(type: number): string {
  return nameOf(MapType, type);
}

/**
 * Returns the kernel name of a program type without its prefix, such as `"XDP"`.
 *
 * @example
 * ```ts
 * import { programTypeName } from "./constants.ts";
 *
 * console.log(programTypeName(6)); // "XDP"
 * ```
 */
export function programTypeName(type: number): string {
  return nameOf(ProgramType, type);
}

function nameOf(table: Readonly<Record<string, number>>, value: number): string {
  for (const [name, candidate] of Object.entries(table)) {
    if (candidate === value) return name;
  }
  return `UNKNOWN(${value})`;
}
