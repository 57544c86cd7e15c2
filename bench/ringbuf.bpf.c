// SPDX-License-Identifier: GPL-2.0
/*
 * The producer of the ring buffer benchmarks (bench/run.ts and
 * bench/ringbuf_ref.c): a socket filter that the harness runs through
 * BPF_PROG_TEST_RUN, writing one 64-byte record into `ring` per run. Once
 * the harness sets `stop`, runs return 1 without writing, which ends the
 * producer threads of the wake-up benchmarks.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "bpfscope_ringbuf.h"

struct bench_record {
	__u64 sequence;
	__u64 words[7];
};

/* The harness sets the size before load. */
BPFSCOPE_RINGBUF(ring, 1 << 20);

__u64 stop;
__u64 sequence;

SEC("socket")
int produce(struct __sk_buff *skb)
{
	if (stop)
		return 1;

	struct bench_record *record = BPFSCOPE_RINGBUF_RESERVE(ring, struct bench_record);

	if (!record)
		return 0;
	record->sequence = sequence++;
	bpf_ringbuf_submit(record, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
