// SPDX-License-Identifier: GPL-2.0
/*
 * The C reference for the map-access benchmarks: the same operations that
 * bench/run.ts times from Deno, done through libbpf on the same object
 * (bench/bench_maps.bpf.o), so that the harness can print ratios measured in
 * the same run on the same machine.
 *
 *   ref OBJECT CASE ITERATIONS
 *
 * prints one line: "CASE NS_PER_OP" (for dump_hash and sum_array, one
 * operation is one whole dump or one whole read). Build: see bench/run.ts.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define KEYS 1024
#define BIG_HASH_ENTRIES 1000000
#define BIG_ARRAY_ENTRIES (1 << 20)

struct locked_value {
	uint32_t lock;
	uint32_t pad;
	uint64_t a;
	uint64_t b;
};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "ref: %s failed: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static int map_fd(struct bpf_object *obj, const char *name)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, name);

	if (!map)
		die(name, ENOENT);
	return bpf_map__fd(map);
}

static void fill_u64(int fd, uint32_t count)
{
	for (uint32_t key = 0; key < count; key++) {
		uint64_t value = key;
		int err = bpf_map_update_elem(fd, &key, &value, BPF_ANY);

		if (err)
			die("update", err);
	}
}

static double bench_lookup(int fd, long iterations)
{
	uint64_t value, sink = 0;
	double start = now_ns();

	for (long i = 0; i < iterations; i++) {
		uint32_t key = i & (KEYS - 1);

		if (bpf_map_lookup_elem(fd, &key, &value))
			die("lookup", -errno);
		sink += value;
	}
	double elapsed = now_ns() - start;
	__asm__ volatile("" : : "r"(sink));
	return elapsed / iterations;
}

static double bench_lookup_percpu(int fd, long iterations)
{
	int cpus = libbpf_num_possible_cpus();
	uint64_t *values = calloc(cpus, sizeof(uint64_t)), sink = 0;
	double start = now_ns();

	for (long i = 0; i < iterations; i++) {
		uint32_t key = i & 15;

		if (bpf_map_lookup_elem(fd, &key, values))
			die("per-CPU lookup", -errno);
		sink += values[cpus - 1];
	}
	double elapsed = now_ns() - start;
	__asm__ volatile("" : : "r"(sink));
	free(values);
	return elapsed / iterations;
}

static double bench_lookup_lock(int fd, long iterations)
{
	struct locked_value value = {0};
	uint32_t key = 0;
	uint64_t sink = 0;

	if (bpf_map_update_elem(fd, &key, &value, BPF_ANY))
		die("update", -errno);
	double start = now_ns();
	for (long i = 0; i < iterations; i++) {
		if (bpf_map_lookup_elem_flags(fd, &key, &value, BPF_F_LOCK))
			die("BPF_F_LOCK lookup", -errno);
		sink += value.a;
	}
	double elapsed = now_ns() - start;
	__asm__ volatile("" : : "r"(sink));
	return elapsed / iterations;
}

/* One full dump of big_hash with BPF_MAP_LOOKUP_BATCH, 4096 entries per call. */
static double bench_dump_hash(int fd, long iterations)
{
	uint32_t *keys = malloc(sizeof(uint32_t) * BIG_HASH_ENTRIES);
	uint64_t *values = malloc(sizeof(uint64_t) * BIG_HASH_ENTRIES);
	uint32_t fill_keys[4096];
	uint64_t fill_values[4096];
	double total = 0;

	for (uint32_t base = 0; base < BIG_HASH_ENTRIES; base += 4096) {
		uint32_t count = BIG_HASH_ENTRIES - base < 4096 ? BIG_HASH_ENTRIES - base : 4096;

		for (uint32_t i = 0; i < count; i++) {
			fill_keys[i] = base + i;
			fill_values[i] = base + i;
		}
		if (bpf_map_update_batch(fd, fill_keys, fill_values, &count, NULL))
			die("batch update", -errno);
	}

	for (long round = 0; round < iterations; round++) {
		double start = now_ns();
		uint32_t out_batch, done = 0;
		void *in = NULL;

		for (;;) {
			uint32_t count = 4096;
			int err = bpf_map_lookup_batch(fd, in, &out_batch, keys + done, values + done, &count, NULL);

			done += count;
			if (err && errno == ENOENT)
				break;
			if (err)
				die("batch lookup", -errno);
			in = &out_batch;
		}
		total += now_ns() - start;
		if (done != BIG_HASH_ENTRIES)
			die("dump count", EIO);
	}
	free(keys);
	free(values);
	return total / iterations;
}

/* One full read (sum) of the 8 MiB mmapable big_array. */
static double bench_sum_array(int fd, long iterations)
{
	size_t length = sizeof(uint64_t) * BIG_ARRAY_ENTRIES;
	uint64_t *values = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	uint64_t sink = 0;

	if (values == MAP_FAILED)
		die("mmap", -errno);
	for (size_t i = 0; i < BIG_ARRAY_ENTRIES; i++)
		values[i] = i;

	double start = now_ns();
	for (long round = 0; round < iterations; round++) {
		uint64_t sum = 0;

		/* Reload the memory every round, so the compiler cannot reuse the last sum. */
		__asm__ volatile("" : : : "memory");
		for (size_t i = 0; i < BIG_ARRAY_ENTRIES; i++)
			sum += values[i];
		sink += sum;
	}
	double elapsed = now_ns() - start;
	__asm__ volatile("" : : "r"(sink));
	munmap(values, length);
	return elapsed / iterations;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ref OBJECT CASE ITERATIONS\n");
		return 2;
	}
	const char *bench = argv[2];
	long iterations = atol(argv[3]);
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	double ns;

	libbpf_set_print(NULL);
	if (!obj)
		die("open", -errno);
	int err = bpf_object__load(obj);
	if (err)
		die("load", err);

	if (strcmp(bench, "lookup_array") == 0) {
		fill_u64(map_fd(obj, "array_u64"), KEYS);
		ns = bench_lookup(map_fd(obj, "array_u64"), iterations);
	} else if (strcmp(bench, "lookup_hash") == 0) {
		fill_u64(map_fd(obj, "hash_u64"), KEYS);
		ns = bench_lookup(map_fd(obj, "hash_u64"), iterations);
	} else if (strcmp(bench, "lookup_percpu") == 0) {
		ns = bench_lookup_percpu(map_fd(obj, "percpu_u64"), iterations);
	} else if (strcmp(bench, "lookup_lock") == 0) {
		ns = bench_lookup_lock(map_fd(obj, "locked"), iterations);
	} else if (strcmp(bench, "dump_hash") == 0) {
		ns = bench_dump_hash(map_fd(obj, "big_hash"), iterations);
	} else if (strcmp(bench, "sum_array") == 0) {
		ns = bench_sum_array(map_fd(obj, "big_array"), iterations);
	} else {
		fprintf(stderr, "ref: unknown case %s\n", bench);
		return 2;
	}
	printf("%s %.3f\n", bench, ns);
	bpf_object__close(obj);
	return 0;
}
