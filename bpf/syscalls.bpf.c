// SPDX-License-Identifier: GPL-2.0
/*
 * The built-in "syscalls" probe: counts syscall entries per CPU and per
 * syscall number, with no locking and no per-CPU map type.
 *
 * syscall_counts is a flat u64 array laid out as [cpu][slot], with
 * SYSCALL_SLOTS slots per CPU: slots 0..510 count syscall numbers 0..510,
 * and slot 511 counts every other number (negative or >= 511) and every
 * 32-bit (ia32) syscall, whose numbers differ from x86_64's. Each CPU
 * writes only its own row, so user space reads the whole table through
 * mmap and sums the rows. BPF_MAP_TYPE_PERCPU_ARRAY cannot be mmapped,
 * which is why this is a plain ARRAY. The loader resizes the map to
 * possible_cpus * SYSCALL_SLOTS entries before load.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

/*
 * The two kernel structures the program reads, reduced to the members it
 * reads. CO-RE matches them to the kernel's task_struct and thread_info by
 * name (the ___ suffix is dropped) and fixes the offsets at load. Declaring
 * vmlinux.h's full task_struct instead put about 25 KB of BTF in the object,
 * which libbpf and the kernel then processed at every start.
 */
struct thread_info___bpfscope {
	__u32 status;
} __attribute__((preserve_access_index));

struct task_struct___bpfscope {
	struct thread_info___bpfscope thread_info;
} __attribute__((preserve_access_index));

#define SYSCALL_SLOTS 512
#define OTHER_SLOT (SYSCALL_SLOTS - 1)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	/* One CPU's row. The loader resizes it to possible_cpus * SYSCALL_SLOTS. */
	__uint(max_entries, SYSCALL_SLOTS);
} syscall_counts SEC(".maps");

SEC("raw_tp/sys_enter")
int count_syscall(struct bpf_raw_tracepoint_args *ctx)
{
	/* sys_enter's arguments are (struct pt_regs *regs, long id). */
	long id = (long)ctx->args[1];
	__u32 slot = (id < 0 || id >= OTHER_SLOT) ? OTHER_SLOT : (__u32)id;

#if defined(__TARGET_ARCH_x86)
	/*
	 * A 32-bit (ia32) syscall arrives with its i386 number, which would be
	 * counted under the x86_64 syscall of the same number: count it as
	 * "other". x86 marks it with TS_COMPAT (0x0002) in thread_info.status.
	 */
	/* A BTF-typed task pointer allows a direct load instead of a
	 * bpf_probe_read_kernel() call, which costs several ns per syscall. */
	struct task_struct___bpfscope *task = (void *)bpf_get_current_task_btf();

	if (task->thread_info.status & 0x0002)
		slot = OTHER_SLOT;
#endif
	__u32 index = bpf_get_smp_processor_id() * SYSCALL_SLOTS + slot;
	__u64 *count;

	/* The array lookup returns NULL for an index past max_entries. */
	count = bpf_map_lookup_elem(&syscall_counts, &index);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
