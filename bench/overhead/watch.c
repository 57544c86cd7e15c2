// The start-up timer of the overhead benchmark: runs a tracer command and
// reports when its eBPF program appears in the kernel and when that program
// has counted its first event, both in nanoseconds since the fork. It finds
// the program among the tracer process's file descriptors: a tracepoint or
// raw tracepoint program, newer than every program id that existed before the
// fork, whose name starts with PREFIX (may be empty). It detects
// counted events as a run count above zero, with the kernel's run-time statistics
// enabled (BPF_ENABLE_STATS) only until then.
//
// Output on stdout, one "key value" pair a line: "appeared NS", "counting NS",
// "id ID", then "ready". The tracer's own stdout goes to stderr.
//
// Usage:
//   watch PREFIX hold|stop CMD [ARGS...]
//     hold: after "ready", keep the tracer running until stdin closes.
//     stop: stop the tracer as soon as it counts.
//   watch - exit CMD [ARGS...]
//     prints "exited NS", the time the command took to run to its end.
//
// The tracer is stopped with SIGINT, then SIGKILL after 5 s, and it gets
// SIGKILL if this program dies first (PR_SET_PDEATHSIG).
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_NS (30LL * 1000000000LL)

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static __u32 max_program_id(void)
{
	__u32 id = 0, next;

	while (bpf_prog_get_next_id(id, &next) == 0)
		id = next;
	return id;
}

// Finds a program that the process `pid` has an open file descriptor for, that
// is newer than `after` and whose name starts with `prefix`; returns its id, or
// 0. Sets *run_count to its run count. The ids come from the "prog_id" lines
// of /proc/PID/fdinfo, so other processes' programs of the same name, which
// parallel work on this machine may load, are never taken for the tracer's.
static __u32 find_program(pid_t pid, __u32 after, const char *prefix, __u64 *run_count)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fdinfo", pid);
	DIR *directory = opendir(path);
	if (!directory)
		return 0;
	struct dirent *entry;
	__u32 result = 0;
	while (!result && (entry = readdir(directory)) != NULL) {
		if (entry->d_name[0] == '.')
			continue;
		char file[320], text[512];
		snprintf(file, sizeof(file), "%s/%s", path, entry->d_name);
		FILE *stream = fopen(file, "r");
		if (!stream)
			continue;
		size_t size = fread(text, 1, sizeof(text) - 1, stream);
		fclose(stream);
		text[size] = 0;
		char *line = strstr(text, "prog_id:");
		if (!line)
			continue;
		__u32 id = (__u32)strtoul(line + strlen("prog_id:"), NULL, 10);
		if (id <= after)
			continue;
		int fd = bpf_prog_get_fd_by_id(id);
		if (fd < 0)
			continue;
		struct bpf_prog_info info = { 0 };
		__u32 length = sizeof(info);
		int ret = bpf_obj_get_info_by_fd(fd, &info, &length);
		close(fd);
		if (ret == 0 && strncmp(info.name, prefix, strlen(prefix)) == 0 &&
		    (info.type == BPF_PROG_TYPE_TRACEPOINT ||
		     info.type == BPF_PROG_TYPE_RAW_TRACEPOINT)) {
			*run_count = info.run_cnt;
			result = id;
		}
	}
	closedir(directory);
	return result;
}

static int stop_child(pid_t child)
{
	int status;

	kill(child, SIGINT);
	for (int i = 0; i < 500; i++) {
		if (waitpid(child, &status, WNOHANG) == child)
			return status;
		usleep(10000);
	}
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	return status;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: watch PREFIX hold|stop CMD [ARGS...] | watch - exit CMD...\n");
		return 2;
	}
	const char *prefix = argv[1];
	const char *mode = argv[2];
	__u32 before = max_program_id();
	int stats_fd = strcmp(mode, "exit") == 0 ? -1 : bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (strcmp(mode, "exit") != 0 && stats_fd < 0) {
		fprintf(stderr, "bpf_enable_stats failed: %s\n", strerror(-stats_fd));
		return 1;
	}

	long long start = now_ns();
	pid_t child = fork();
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(2, 1);
		execvp(argv[3], argv + 3);
		perror("execvp");
		_exit(127);
	}

	if (strcmp(mode, "exit") == 0) {
		int status;
		waitpid(child, &status, 0);
		printf("exited %lld\n", now_ns() - start);
		return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
	}

	long long appeared = -1, counting = -1;
	__u32 id = 0;
	while (counting < 0) {
		__u64 run_count = 0;
		__u32 found = find_program(child, before, prefix, &run_count);
		long long elapsed = now_ns() - start;
		if (found && appeared < 0) {
			appeared = elapsed;
			id = found;
		}
		if (found && run_count > 0)
			counting = elapsed;
		int status;
		if (waitpid(child, &status, WNOHANG) == child) {
			fprintf(stderr, "the tracer exited before it counted an event\n");
			return 1;
		}
		if (elapsed > TIMEOUT_NS) {
			fprintf(stderr, "timed out: no counting program named %s* after 30 s\n", prefix);
			stop_child(child);
			return 1;
		}
		if (counting < 0)
			usleep(50);
	}
	close(stats_fd);
	printf("appeared %lld\ncounting %lld\nid %u\nready\n", appeared, counting, id);
	fflush(stdout);

	if (strcmp(mode, "hold") == 0) {
		char buffer[64];
		while (read(0, buffer, sizeof(buffer)) > 0)
			;
	}
	int status = stop_child(child);
	printf("stopped %d\n", status);
	return 0;
}
