// The workload of the overhead benchmark: N getppid() calls in a loop,
// timed around the loop only, so process start-up is not part of the
// figures. Prints "WALL_NS CPU_NS": the loop's wall time (CLOCK_MONOTONIC)
// and its CPU time (CLOCK_THREAD_CPUTIME_ID, user plus system), which
// leaves out the time other processes on a shared machine hold the CPU.
//
// Usage: workload N
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: workload N\n");
		return 2;
	}
	long calls = strtol(argv[1], NULL, 10);
	long long start = now_ns(CLOCK_MONOTONIC);
	long long cpu_start = now_ns(CLOCK_THREAD_CPUTIME_ID);

	// syscall() rather than getppid(), so that no libc version can cache
	// the result and skip the kernel entry.
	for (long i = 0; i < calls; i++)
		syscall(SYS_getppid);
	long long cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
	printf("%lld %lld\n", now_ns(CLOCK_MONOTONIC) - start, cpu);
	return 0;
}
