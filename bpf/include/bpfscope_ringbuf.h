/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Ring buffers that count their drops. The reader is RingBufferReader in
 * bpfscope's ffi/ring_buffer.ts.
 *
 * The kernel does not count the reservations that fail because a
 * BPF_MAP_TYPE_RINGBUF is full: bpf_ringbuf_reserve() returns NULL and the
 * record is gone. BPFSCOPE_RINGBUF declares the ring together with a drop
 * counter, and the reserve and output helpers below add 1 to it on each
 * failure. User space passes the counter map to the reader, which reports
 * it as stats.lost:
 *
 *   BPFSCOPE_RINGBUF(events, 256 * 1024);
 *   BPFSCOPE_RINGBUF_RECORD(events, struct event);
 *
 *   struct event *event = BPFSCOPE_RINGBUF_RESERVE(events, struct event);
 *   if (!event)
 *           return 0;
 *   event->pid = bpf_get_current_pid_tgid() >> 32;
 *   bpf_ringbuf_submit(event, 0);
 *
 *   new RingBufferReader(object.map("events"), { lost: object.map("events_lost") })
 *
 * The counter is a BPF_MAP_TYPE_PERCPU_ARRAY named NAME_lost with one u64,
 * so CPUs that drop at the same time do not contend for one cache line.
 * The reader sums the CPUs' values. The add is atomic because a program
 * can be interrupted on its CPU by another one (in NMI context, say) that
 * writes the same ring. It needs no ordering, so it has none on arm64.
 *
 * The ring's size must be a power of two and a multiple of the page size
 * (the kernel rejects other sizes with EINVAL). Ring buffers need Linux 5.8.
 */
#ifndef BPFSCOPE_RINGBUF_H
#define BPFSCOPE_RINGBUF_H

#include <bpf/bpf_helpers.h>

/* Declares ring buffer NAME of SIZE bytes and its drop counter NAME_lost. */
#define BPFSCOPE_RINGBUF(name, size)                                                               \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                                                \
		__uint(max_entries, size);                                                         \
	} name SEC(".maps");                                                                       \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                           \
		__uint(max_entries, 1);                                                            \
		__type(key, __u32);                                                                \
		__type(value, __u64);                                                              \
	} name##_lost SEC(".maps")

/*
 * Keeps TYPE, the record type of ring NAME, in the object's BTF, so that
 * user space can decode records by its name (RingBufferReader.decode).
 * clang emits BTF only for the types of globals, maps and function
 * signatures, not for a type that only casts a reserved record. This
 * declares an unused global pointer NAME_record in .bss.
 */
#define BPFSCOPE_RINGBUF_RECORD(name, type) type *name##_record __attribute__((unused))

/* Adds 1 to this CPU's value of the drop counter map `lost`. */
static __always_inline void bpfscope_ringbuf_count_lost(void *lost)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(lost, &zero);

	if (count)
		__sync_fetch_and_add(count, 1);
}

/*
 * bpf_ringbuf_reserve() that counts a failure in `lost`. SIZE must be a
 * constant that the verifier can see.
 */
static __always_inline void *bpfscope_ringbuf_reserve_counted(void *ring, void *lost, __u64 size)
{
	void *record = bpf_ringbuf_reserve(ring, size, 0);

	if (!record)
		bpfscope_ringbuf_count_lost(lost);
	return record;
}

/* bpf_ringbuf_output() that counts a failure in `lost`, and returns its result. */
static __always_inline long bpfscope_ringbuf_output_counted(void *ring, void *lost, void *data,
							    __u64 size, __u64 flags)
{
	long ret = bpf_ringbuf_output(ring, data, size, flags);

	if (ret < 0)
		bpfscope_ringbuf_count_lost(lost);
	return ret;
}

/* Reserves SIZE bytes in ring NAME of BPFSCOPE_RINGBUF, counting a failure. */
#define bpfscope_ringbuf_reserve(name, size) bpfscope_ringbuf_reserve_counted(&name, &name##_lost, size)

/* Reserves one TYPE in ring NAME, counting a failure; NULL when the ring is full. */
#define BPFSCOPE_RINGBUF_RESERVE(name, type) ((type *)bpfscope_ringbuf_reserve(name, sizeof(type)))

/* Copies SIZE bytes at DATA into ring NAME, counting a failure. */
#define bpfscope_ringbuf_output(name, data, size, flags)                                           \
	bpfscope_ringbuf_output_counted(&name, &name##_lost, data, size, flags)

#endif /* BPFSCOPE_RINGBUF_H */
