// SPDX-License-Identifier: GPL-2.0
/*
 * Maps for the map-access benchmarks. bench/run.ts (Deno) and bench/ref.c
 * (the C reference, through libbpf) load this same object and time the same
 * operations on it. The program exists only so that the object loads; the
 * benchmarks never run it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct locked_value {
	struct bpf_spin_lock lock;
	__u64 a;
	__u64 b;
};

/* u32 -> u64 lookups, one entry per key 0..1023. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1024);
} array_u64 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1024);
} hash_u64 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
} percpu_u64 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct locked_value);
	__uint(max_entries, 16);
} locked SEC(".maps");

/* The batch-dump benchmark fills it with keys 0..999999. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1000000);
} big_hash SEC(".maps");

/* 8 MiB of u64 values for the full-read benchmark. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1 << 20);
} big_array SEC(".maps");

SEC("xdp")
int bench_pass(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct locked_value *value = bpf_map_lookup_elem(&locked, &key);

	/* Touch every map, so that the loader keeps them all. */
	if (value) {
		bpf_spin_lock(&value->lock);
		value->a++;
		value->b = value->a;
		bpf_spin_unlock(&value->lock);
	}
	bpf_map_lookup_elem(&array_u64, &key);
	bpf_map_lookup_elem(&hash_u64, &key);
	bpf_map_lookup_elem(&percpu_u64, &key);
	bpf_map_lookup_elem(&big_hash, &key);
	bpf_map_lookup_elem(&big_array, &key);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
