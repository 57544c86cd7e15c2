// The C libbpf tracer of the overhead benchmark: loads
// bench/overhead_tracer.bpf.o, attaches one program (raw_tp or tp), prints
// "attached ID" with the program's kernel id, and counts syscall entries
// until SIGINT or SIGTERM. On exit it prints "count N", the sum over CPUs.
//
// Usage: tracer OBJECT raw_tp|tp
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
	if (argc != 3 || (strcmp(argv[2], "raw_tp") != 0 && strcmp(argv[2], "tp") != 0)) {
		fprintf(stderr, "usage: tracer OBJECT raw_tp|tp\n");
		return 2;
	}
	const char *wanted = strcmp(argv[2], "raw_tp") == 0 ? "ovh_raw_enter" : "ovh_tp_enter";

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
		int keep = strcmp(bpf_program__name(program), wanted) == 0;
		bpf_program__set_autoload(program, keep);
		if (keep)
			chosen = program;
	}
	if (!chosen || bpf_object__load(object) != 0) {
		fprintf(stderr, "failed to load %s from %s\n", wanted, argv[1]);
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

	int cpus = libbpf_num_possible_cpus();
	__u64 *values = calloc(cpus, sizeof(*values));
	__u32 key = 0;
	unsigned long long total = 0;
	int map_fd = bpf_map__fd(bpf_object__find_map_by_name(object, "counts"));
	if (values && bpf_map_lookup_elem(map_fd, &key, values) == 0)
		for (int cpu = 0; cpu < cpus; cpu++)
			total += values[cpu];
	printf("count %llu\n", total);
	free(values);
	bpf_link__destroy(link);
	bpf_object__close(object);
	return 0;
}
