// Groups of map types that behave alike in the element and dump methods,
// shared by BpfMap and PinnedMap.

import { MapType } from "./constants.ts";

/** Map types that store one value per possible CPU. */
export const PER_CPU_TYPES: ReadonlySet<number> = new Set([
  MapType.PERCPU_ARRAY,
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
  MapType.PERCPU_CGROUP_STORAGE,
]);

/** Array map types, whose elements always exist and cannot be deleted. */
export const ARRAY_TYPES: ReadonlySet<number> = new Set([MapType.ARRAY, MapType.PERCPU_ARRAY]);

/** Queue and stack map types, which have values but no keys. */
export const QUEUE_TYPES: ReadonlySet<number> = new Set([MapType.QUEUE, MapType.STACK]);

/** The map types whose elements bpf_map_lookup_and_delete_elem() takes by key (Linux 5.14). */
export const HASH_TYPES: ReadonlySet<number> = new Set([
  MapType.HASH,
  MapType.LRU_HASH,
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
]);

/**
 * The map types whose values BPF_F_LOCK can protect from user space. The
 * kernel also allows it for cgroup and local storage maps, which bpfscope
 * does not wrap.
 */
export const LOCK_TYPES: ReadonlySet<number> = new Set([MapType.HASH, MapType.ARRAY]);
