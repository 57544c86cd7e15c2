/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Seqlock slots: multi-field values that user space reads through mmap
 * without a system call and without ever seeing a half-written value.
 * The reader is SeqlockReader in bpfscope's ffi/seqlock.ts.
 *
 * Layout
 *
 * One BPF_MAP_TYPE_ARRAY created with BPF_F_MMAPABLE contains the slots of
 * every CPU, laid out [cpu][slot]: the element index is
 * cpu * slots_per_cpu + slot. User space sets max_entries before load to
 * the number of possible CPUs times slots_per_cpu (possibleCpuCount() in
 * bpfscope). Each element is a struct bpfscope_seqlock followed by the
 * payload:
 *
 *   offset 0   __u64 sequence  even: no writer; odd: a writer holds the slot
 *   offset 8   __u64 skipped   updates dropped because the slot was held
 *   offset 16  payload         fixed size, a multiple of 8 bytes
 *
 * Payload rules: the size is fixed and a multiple of 8 bytes, no field is
 * aligned to more than 8 bytes, and the struct is not packed, so every
 * field is naturally aligned. BPFSCOPE_SEQLOCK_SLOT checks the first two
 * at compile time.
 *
 * Protocol
 *
 * A writer takes the slot with a compare-and-swap of the sequence from an
 * even value v to v + 1, writes the payload, and releases the slot with
 * an atomic exchange to v + 2. The reader copies the payload between two
 * reads of the sequence and keeps the copy only if both reads return the
 * same even number; otherwise it retries.
 *
 * Writers that nest. On one CPU a writer can be interrupted by another
 * writer of the same slot: a program in softirq or NMI context, or, on a
 * preemptible kernel (CONFIG_PREEMPT, or preempt=full), another task whose
 * program writes the slot while the first task's program is preempted.
 * With the naive protocol (add 1 before writing, add 1 after) the nested
 * writer's two increments make the sequence even again while the outer
 * write is still in progress, and a reader then accepts a torn copy. Here
 * the nested writer sees an odd sequence, or loses the compare-and-swap,
 * and leaves the slot alone: it drops its update and adds 1 to `skipped`.
 * It never waits, because an interrupted holder cannot run again until the
 * nested program returns, so waiting would never end.
 *
 * Why this and not one sub-slot per nesting depth: the depth scheme relies
 * on writers on one CPU finishing in last-in first-out order, which holds
 * for interrupts but not for preempted tasks, and its reader would have
 * to merge the sub-slots and guess which one is newest. The
 * compare-and-swap makes the sequence a try-lock, which stays correct for
 * any interleaving, including a writer on another CPU that writes this
 * CPU's slot. The cost is the dropped update, which can happen only while
 * another writer is inside its few-instruction critical section, and
 * which `skipped` makes visible. A program that must count every event can
 * keep that counter in a plain __sync_fetch_and_add() field outside the
 * slot.
 *
 * Memory ordering (what the kernel's JITs emit: emit_atomic() in
 * arch/x86/net/bpf_jit_comp.c, and emit_lse_atomic() and
 * emit_ll_sc_atomic() in arch/arm64/net/bpf_jit_comp.c of Linux 6.6):
 *
 * - BPF_CMPXCHG (begin) and BPF_XCHG (commit) are fully ordered. x86_64
 *   emits them with a lock prefix, like every BPF atomic. arm64 emits
 *   `casal` and `swpal` with LSE atomics, or an ldxr/stlxr loop followed
 *   by `dmb ish` without them.
 *   So no payload store moves before the odd sequence becomes visible, and
 *   none moves after the even one. That is the smp_wmb() pair of the
 *   kernel's own write_seqcount_begin()/end().
 * - A BPF atomic add whose result is unused (BPF_ADD without BPF_FETCH)
 *   is not ordered on arm64, where it becomes `stadd`. The protocol uses
 *   it only for `skipped`, which needs no ordering.
 * - clang 14 compiles __sync_val_compare_and_swap() and
 *   __atomic_exchange_n() to these instructions with the default -mcpu,
 *   and ignores the memory-order argument. It rejects __atomic_load_n()
 *   and __atomic_store_n() with acquire or release order ("Cannot
 *   select"), which is why the commit is an exchange and not a release
 *   store. The seq_cst builtins are also compiler barriers: clang does not
 *   move the payload stores out of the critical section.
 * - The verifier accepts these instructions on map values since Linux
 *   5.12, the minimum kernel for this header.
 *
 * Usage:
 *
 *   struct stats { __u64 count; __u64 total_ns; };
 *   BPFSCOPE_SEQLOCK_SLOT(stats_slot, struct stats);
 *   BPFSCOPE_SEQLOCK_MAP(stats_map, struct stats_slot);
 *   #define SLOTS_PER_CPU 4
 *
 *   struct stats_slot *slot = bpfscope_seqlock_slot(&stats_map, 2, SLOTS_PER_CPU);
 *   if (slot) {
 *           BPFSCOPE_SEQLOCK_WRITE(slot) {
 *                   slot->payload.count += 1;
 *                   slot->payload.total_ns += delta;
 *           }
 *   }
 *
 * Include vmlinux.h (or the UAPI headers) and <bpf/bpf_helpers.h> first.
 */
#ifndef BPFSCOPE_SEQLOCK_H
#define BPFSCOPE_SEQLOCK_H

/* The header of every slot, followed by the payload. */
struct bpfscope_seqlock {
	/* Even while the slot is free, odd while a writer holds it. */
	__u64 sequence;
	/* Updates dropped because another writer held the slot. */
	__u64 skipped;
};

/*
 * Compare-and-swap attempts of bpfscope_seqlock_begin(). A second attempt
 * helps when the first one lost to a nested writer that has already
 * finished, so the sequence is even again.
 */
#define BPFSCOPE_SEQLOCK_BEGIN_ATTEMPTS 2

/*
 * Declares `struct name`: a slot with a payload of type payload_type, and
 * checks the payload rules at compile time.
 */
#define BPFSCOPE_SEQLOCK_SLOT(name, payload_type)                               \
	struct name {                                                          \
		struct bpfscope_seqlock lock;                                  \
		payload_type payload;                                          \
	};                                                                     \
	_Static_assert(sizeof(payload_type) % 8 == 0,                          \
		       "seqlock payload size must be a multiple of 8 bytes");  \
	_Static_assert(_Alignof(payload_type) <= 8,                            \
		       "seqlock payload fields must not need more than 8-byte alignment")

/*
 * Declares the map `name` of slot_type elements: an mmapable array with one
 * entry until user space sets max_entries to possible CPUs * slots per CPU.
 */
#define BPFSCOPE_SEQLOCK_MAP(name, slot_type)                                   \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                              \
		__uint(map_flags, BPF_F_MMAPABLE);                             \
		__type(key, __u32);                                            \
		__type(value, slot_type);                                      \
		__uint(max_entries, 1);                                        \
	} name SEC(".maps")

/*
 * Returns this CPU's slot number `slot` of `map`, or NULL when `slot` is not
 * below slots_per_cpu or the element is past max_entries. A BPF program
 * cannot migrate while it runs, so the CPU stays the same until it returns.
 */
static __always_inline void *bpfscope_seqlock_slot(void *map, __u32 slot, __u32 slots_per_cpu)
{
	__u32 index;

	if (slot >= slots_per_cpu)
		return NULL;
	index = bpf_get_smp_processor_id() * slots_per_cpu + slot;
	return bpf_map_lookup_elem(map, &index);
}

/*
 * Takes the slot for writing and returns a ticket for bpfscope_seqlock_commit():
 * the odd sequence number now in the slot. Returns 0 when another writer holds
 * the slot. Then the caller drops its update, which `skipped` has counted.
 * Never waits.
 */
static __always_inline __u64 bpfscope_seqlock_begin(struct bpfscope_seqlock *lock)
{
	__u64 seen = *(volatile __u64 *)&lock->sequence;

	for (int attempt = 0; attempt < BPFSCOPE_SEQLOCK_BEGIN_ATTEMPTS; attempt++) {
		__u64 found;

		if (seen & 1)
			break;
		found = __sync_val_compare_and_swap(&lock->sequence, seen, seen + 1);
		if (found == seen)
			return seen + 1;
		seen = found;
	}
	__sync_fetch_and_add(&lock->skipped, 1);
	return 0;
}

/*
 * Releases a slot taken by bpfscope_seqlock_begin(), publishing the payload:
 * the sequence becomes ticket + 1, an even number. Call it exactly once per
 * nonzero ticket, or the slot stays held and readers report it busy.
 */
static __always_inline void bpfscope_seqlock_commit(struct bpfscope_seqlock *lock, __u64 ticket)
{
	__atomic_exchange_n(&lock->sequence, ticket + 1, __ATOMIC_SEQ_CST);
}

/*
 * Runs the statement or block that follows once, holding `slot` (a pointer
 * to a struct declared with BPFSCOPE_SEQLOCK_SLOT), or skips it when another
 * writer holds the slot. The block must not leave early with return, break
 * or goto: the slot would stay held.
 */
#define BPFSCOPE_SEQLOCK_WRITE(slot)                                            \
	for (__u64 bpfscope_ticket_ = bpfscope_seqlock_begin(&(slot)->lock);   \
	     bpfscope_ticket_ != 0;                                            \
	     bpfscope_seqlock_commit(&(slot)->lock, bpfscope_ticket_), bpfscope_ticket_ = 0)

#endif /* BPFSCOPE_SEQLOCK_H */
