// SPDX-License-Identifier: GPL-2.0
/*
 * The C reference for the ring buffer benchmarks of bench/run.ts: libbpf's
 * own reader (ring_buffer__consume and ring_buffer__poll) on the producer of
 * bench/ringbuf.bpf.c, so that the harness can print Deno / C ratios
 * measured in the same run on the same machine.
 *
 *   ringbuf_ref OBJECT RING_BYTES drain ROUNDS
 *     fills the ring ROUNDS times through BPF_PROG_TEST_RUN and times
 *     ring_buffer__consume() draining it; prints "drain NS_PER_RECORD"
 *     (the median of the rounds)
 *   ringbuf_ref OBJECT RING_BYTES epoll MILLISECONDS
 *     runs the producer in a second thread and reads with
 *     ring_buffer__poll() (epoll wake-ups) for MILLISECONDS; prints
 *     "epoll RECORDS_PER_SECOND"
 *
 * The callback adds the record's size and first byte to a sum, the same
 * work as the Deno callbacks. Build: see bench/run.ts.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define MAX_ROUNDS 1000
/* Program runs per test run in the producer thread. */
#define PRODUCER_REPEAT 4096

static uint64_t sum;
static uint64_t records;

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *operation, int err)
{
	fprintf(stderr, "ringbuf_ref: %s failed: %s\n", operation, strerror(err < 0 ? -err : err));
	exit(1);
}

static int on_record(void *ctx, void *data, size_t size)
{
	sum += size + ((uint8_t *)data)[0];
	records++;
	return 0;
}

static void run_producer(int prog_fd, int repeat)
{
	uint8_t packet[64] = { 0 };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet, .data_size_in = sizeof(packet),
		    .repeat = repeat);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	if (err)
		die("bpf_prog_test_run_opts", err);
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void drain(struct ring_buffer *rb, int prog_fd, uint32_t ring_bytes, int rounds)
{
	double per_record[MAX_ROUNDS];

	if (rounds < 1 || rounds > MAX_ROUNDS)
		die("drain: rounds out of range", EINVAL);
	for (int round = 0; round < rounds; round++) {
		/* More runs than fit: the ring ends up full. */
		run_producer(prog_fd, ring_bytes / 64);
		uint64_t before = records;
		double start = now_ns();
		int ret = ring_buffer__consume(rb);
		double elapsed = now_ns() - start;

		if (ret < 0)
			die("ring_buffer__consume", ret);
		per_record[round] = elapsed / (double)(records - before);
	}
	qsort(per_record, rounds, sizeof(double), compare_doubles);
	printf("drain %.3f\n", per_record[rounds / 2]);
}

struct producer {
	int prog_fd;
	volatile uint64_t *stop;
};

static void *produce_until_stopped(void *arg)
{
	struct producer *producer = arg;

	while (!*producer->stop)
		run_producer(producer->prog_fd, PRODUCER_REPEAT);
	return NULL;
}

static void epoll_mode(struct ring_buffer *rb, int prog_fd, volatile uint64_t *stop, int ms)
{
	struct producer producer = { .prog_fd = prog_fd, .stop = stop };
	pthread_t thread;

	*stop = 0;
	if (pthread_create(&thread, NULL, produce_until_stopped, &producer))
		die("pthread_create", errno);
	double start = now_ns();
	double end = start + ms * 1e6;
	uint64_t before = records;

	while (now_ns() < end) {
		int ret = ring_buffer__poll(rb, 100);

		if (ret < 0 && ret != -EINTR)
			die("ring_buffer__poll", ret);
	}
	double elapsed = now_ns() - start;

	*stop = 1;
	pthread_join(thread, NULL);
	printf("epoll %.0f\n", (records - before) / (elapsed / 1e9));
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: ringbuf_ref OBJECT RING_BYTES drain|epoll ROUNDS|MILLISECONDS\n");
		return 2;
	}
	uint32_t ring_bytes = strtoul(argv[2], NULL, 10);
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);

	if (!obj)
		die("bpf_object__open_file", errno);
	struct bpf_map *ring = bpf_object__find_map_by_name(obj, "ring");

	if (!ring)
		die("find map ring", ENOENT);
	int err = bpf_map__set_max_entries(ring, ring_bytes);

	if (err)
		die("bpf_map__set_max_entries", err);
	err = bpf_object__load(obj);
	if (err)
		die("bpf_object__load", err);

	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "produce");
	struct bpf_map *bss = bpf_object__find_map_by_name(obj, "ringbuf.bss");

	if (!prog || !bss)
		die("find program produce and map ringbuf.bss", ENOENT);
	/* .bss: u64 stop, then u64 sequence. */
	volatile uint64_t *stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
				       bpf_map__fd(bss), 0);

	if (stop == MAP_FAILED)
		die("mmap .bss", errno);
	struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(ring), on_record, NULL, NULL);

	if (!rb)
		die("ring_buffer__new", errno);

	int prog_fd = bpf_program__fd(prog);
	int count = atoi(argv[4]);

	if (strcmp(argv[3], "drain") == 0)
		drain(rb, prog_fd, ring_bytes, count);
	else if (strcmp(argv[3], "epoll") == 0)
		epoll_mode(rb, prog_fd, stop, count);
	else
		die("unknown mode", EINVAL);

	/* Uses the sum, so the compiler keeps the callback's reads. */
	if (sum == 1)
		fprintf(stderr, "ringbuf_ref: checksum %llu\n", (unsigned long long)sum);
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
