// SPDX-License-Identifier: GPL-2.0
/*
 * The C libbpf tracer of the overhead benchmark (bench/overhead/tracer.c):
 * the cheapest way to count syscall entries, one increment of a per-CPU
 * array slot per event, with no atomic operation and no lookup by syscall
 * number. The loader enables one of the two programs: the raw tracepoint,
 * which the bpfscope `syscalls` probe also uses, or the classic tracepoint.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} counts SEC(".maps");

static __always_inline void count_event(void)
{
	__u32 key = 0;
	__u64 *count = bpf_map_lookup_elem(&counts, &key);

	/* Each CPU has its own slot, so a plain increment cannot race. */
	if (count)
		*count += 1;
}

SEC("raw_tp/sys_enter")
int ovh_raw_enter(void *ctx)
{
	count_event();
	return 0;
}

SEC("tp/raw_syscalls/sys_enter")
int ovh_tp_enter(void *ctx)
{
	count_event();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
