// The workload of the overhead benchmark: N getppid() calls in a loop,
// timed with CLOCK_MONOTONIC around the loop only, so process start-up is
// not part of the figure. Prints the loop's wall time in nanoseconds.
//
// Usage: workload N
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: workload N\n");
		return 2;
	}
	long calls = strtol(argv[1], NULL, 10);
	long long start = now_ns();

	// syscall() rather than getppid(), so that no libc version can cache
	// the result and skip the kernel entry.
	for (long i = 0; i < calls; i++)
		syscall(SYS_getppid);
	printf("%lld\n", now_ns() - start);
	return 0;
}
