// The C libbpf tracer of the overhead benchmark: loads
// bench/overhead_tracer.bpf.o, attaches one program (raw_tp or tp), prints
// "attached ID" with the program's kernel id, and counts syscall entries
// until SIGINT or SIGTERM. On exit it prints "count N", the sum over CPUs.
// With "bpfscope" and bpf/syscalls.bpf.o it runs the bpfscope `syscalls`
// probe's own program from C instead, which separates the program's cost
// from the loader's.
//
// Usage: tracer OBJECT raw_tp|tp|bpfscope
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_signal(int signal)
{
	(void)signal;
	stopping = 1;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[2], "raw_tp") != 0 && strcmp(argv[2], "tp") != 0 &&
			  strcmp(argv[2], "bpfscope") != 0)) {
		fprintf(stderr, "usage: tracer OBJECT raw_tp|tp|bpfscope\n");
		return 2;
	}
	int bpfscope = strcmp(argv[2], "bpfscope") == 0;
	const char *program_name = bpfscope ? "count_syscall"
			     : strcmp(argv[2], "raw_tp") == 0 ? "ovh_raw_enter" : "ovh_tp_enter";
	const char *map_name = bpfscope ? "syscall_counts" : "counts";
	int cpus = libbpf_num_possible_cpus();

	struct sigaction action = { .sa_handler = on_signal };
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGTERM, &action, NULL);

	struct bpf_object *object = bpf_object__open_file(argv[1], NULL);
	if (!object) {
		perror("bpf_object__open_file");
		return 1;
	}
	struct bpf_program *program, *chosen = NULL;
	bpf_object__for_each_program(program, object) {
		int keep = strcmp(bpf_program__name(program), program_name) == 0;
		bpf_program__set_autoload(program, keep);
		if (keep)
			chosen = program;
	}
	// The bpfscope table has SYSCALL_SLOTS (512) slots per CPU, sized by its loader.
	struct bpf_map *map = bpf_object__find_map_by_name(object, map_name);
	if (bpfscope && map)
		bpf_map__set_max_entries(map, cpus * 512);
	if (!chosen || !map || bpf_object__load(object) != 0) {
		fprintf(stderr, "failed to load %s from %s\n", program_name, argv[1]);
		bpf_object__close(object);
		return 1;
	}
	struct bpf_link *link = bpf_program__attach(chosen);
	if (!link) {
		perror("bpf_program__attach");
		bpf_object__close(object);
		return 1;
	}
	struct bpf_prog_info info = { 0 };
	__u32 length = sizeof(info);
	bpf_obj_get_info_by_fd(bpf_program__fd(chosen), &info, &length);
	printf("attached %u\n", info.id);
	fflush(stdout);

	while (!stopping)
		pause();

	unsigned long long total = 0;
	int map_fd = bpf_map__fd(map);
	if (bpfscope) {
		for (__u32 key = 0; key < (__u32)cpus * 512; key++) {
			__u64 value;
			if (bpf_map_lookup_elem(map_fd, &key, &value) == 0)
				total += value;
		}
	} else {
		__u64 *values = calloc(cpus, sizeof(*values));
		__u32 key = 0;
		if (values && bpf_map_lookup_elem(map_fd, &key, values) == 0)
			for (int cpu = 0; cpu < cpus; cpu++)
				total += values[cpu];
		free(values);
	}
	printf("count %llu\n", total);
	bpf_link__destroy(link);
	bpf_object__close(object);
	return 0;
}
