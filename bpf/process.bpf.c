// SPDX-License-Identifier: GPL-2.0
/*
 * The built-in "process" probe: one event per program execution (execve)
 * and one per process exit, sent to user space through a ring buffer.
 *
 * Both programs are tracepoints, so they need tracefs. Each event is a
 * struct process_event. User space checks its decoder against this
 * object's BTF, so the field names below are part of the probe's interface.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "bpfscope_ringbuf.h"

#define PROCESS_EXEC 1
#define PROCESS_EXIT 2

#define COMM_SIZE 16
#define FILENAME_SIZE 256

/*
 * signal_struct.flags bit of include/linux/sched/signal.h (0x4 in Linux 5.x
 * and 6.x): the whole thread group is exiting. A macro has no BTF, so CO-RE
 * cannot relocate it. The threaded exit test checks it on the running kernel.
 */
#define SIGNAL_GROUP_EXIT 0x00000004

/*
 * One exec or exit. The record is zeroed before it is filled, so fields
 * that do not apply to its kind, and the unused bytes after each string's
 * NUL, are zero.
 */
struct process_event {
	/* CLOCK_BOOTTIME, in nanoseconds, when the event happened. */
	__u64 timestamp_ns;
	/* Exit only: nanoseconds from the process's fork to its exit (CLOCK_BOOTTIME). */
	__u64 lifetime_ns;
	/* PROCESS_EXEC or PROCESS_EXIT. */
	__u32 kind;
	/* The process id (the kernel's tgid). */
	__u32 pid;
	/* The process id of the parent (real_parent), at the time of the event. */
	__u32 ppid;
	/* The real user id. */
	__u32 uid;
	/*
	 * Exit only: the status that wait(2) reports to the parent: the exit
	 * code in bits 8..15, the terminating signal in bits 0..6, and 0x80
	 * when a core dump was written.
	 */
	__u32 exit_status;
	/* Exec only: the thread id that called execve (differs from pid when a non-leader thread did). */
	__u32 exec_tid;
	/* The process name (the thread-group leader's comm), NUL-terminated. */
	char comm[COMM_SIZE];
	/* Exec only: the path passed to execve, NUL-terminated, truncated to FILENAME_SIZE - 1 bytes. */
	char filename[FILENAME_SIZE];
};

/*
 * 256 KiB (64 pages of 4 KiB), which user space may resize before load, and
 * the per-CPU counter process_events_lost of events dropped while it was full.
 */
BPFSCOPE_RINGBUF(process_events, 256 * 1024);
BPFSCOPE_RINGBUF_RECORD(process_events, struct process_event);

static __always_inline struct process_event *reserve_event(__u32 kind)
{
	struct process_event *event;

	event = BPFSCOPE_RINGBUF_RESERVE(process_events, struct process_event);
	if (!event)
		return NULL;
	/* Reserved ring memory is not zeroed: clear it so no stale bytes reach user space. */
	__builtin_memset(event, 0, sizeof(*event));
	event->timestamp_ns = bpf_ktime_get_boot_ns();
	event->kind = kind;
	event->uid = (__u32)bpf_get_current_uid_gid();
	return event;
}

SEC("tp/sched/sched_process_exec")
int on_process_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct process_event *event;
	/* The low 16 bits of a __data_loc field are the offset of the data from the record start. */
	unsigned int filename_offset = ctx->__data_loc_filename & 0xFFFF;

	event = reserve_event(PROCESS_EXEC);
	if (!event)
		return 0;
	/* After exec the calling thread is the thread-group leader, so its comm is the process name. */
	event->pid = BPF_CORE_READ(task, tgid);
	event->ppid = BPF_CORE_READ(task, real_parent, tgid);
	event->exec_tid = ctx->old_pid;
	bpf_get_current_comm(event->comm, sizeof(event->comm));
	bpf_probe_read_kernel_str(event->filename, sizeof(event->filename),
				  (void *)ctx + filename_offset);
	bpf_ringbuf_submit(event, 0);
	return 0;
}

/*
 * Returns whether the thread that is exiting is the last one of its process.
 * The tracepoint passes group_dead on kernels whose sched_process_exit has
 * that field. On older kernels the leader's exit is reported as the
 * process's, which is too early when the leader ends before its other threads.
 */
static __always_inline bool process_ends(void *ctx, struct task_struct *task)
{
	struct trace_event_raw_sched_process_exit *args = ctx;

	if (bpf_core_field_exists(args->group_dead))
		return BPF_CORE_READ(args, group_dead);
	return BPF_CORE_READ(task, pid) == BPF_CORE_READ(task, tgid);
}

SEC("tp/sched/sched_process_exit")
int on_process_exit(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader;
	struct process_event *event;
	unsigned int signal_flags;

	if (!process_ends(ctx, task))
		return 0;

	event = reserve_event(PROCESS_EXIT);
	if (!event)
		return 0;
	leader = BPF_CORE_READ(task, group_leader);
	event->pid = BPF_CORE_READ(task, tgid);
	event->ppid = BPF_CORE_READ(task, real_parent, tgid);
	/*
	 * The same choice as wait_task_zombie(): a group exit (exit_group, a
	 * fatal signal) stores the status in the signal struct, and otherwise
	 * the leader's own exit_code is the process's status. do_exit() sets
	 * exit_code before this tracepoint fires.
	 */
	signal_flags = BPF_CORE_READ(task, signal, flags);
	if (signal_flags & SIGNAL_GROUP_EXIT)
		event->exit_status = BPF_CORE_READ(task, signal, group_exit_code);
	else
		event->exit_status = BPF_CORE_READ(leader, exit_code);
	/* start_boottime is CLOCK_BOOTTIME (ktime_get_boottime_ns() in copy_process()). */
	event->lifetime_ns = event->timestamp_ns - BPF_CORE_READ(leader, start_boottime);
	BPF_CORE_READ_STR_INTO(&event->comm, leader, comm);
	bpf_ringbuf_submit(event, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
