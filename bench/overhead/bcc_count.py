# The bcc tracer of the overhead benchmark: counts syscall entries per CPU
# from the raw_syscalls:sys_enter tracepoint into a per-CPU array, like the
# C libbpf tracer (bench/overhead/tracer.c). bcc compiles this C at run time
# against the kernel headers that BCC_KERNEL_SOURCE names. Runs until SIGINT
# or SIGTERM, then prints "count N", the sum over CPUs.
#
# Usage: /usr/bin/python3 bcc_count.py [raw]
import signal
import sys

from bcc import BPF

TRACEPOINT = r"""
BPF_PERCPU_ARRAY(counts, u64, 1);

TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    u32 key = 0;
    u64 *count = counts.lookup(&key);
    if (count)
        *count += 1;
    return 0;
}
"""

# The same counter on the raw tracepoint, which the bpfscope probe uses.
RAW_TRACEPOINT = TRACEPOINT.replace("TRACEPOINT_PROBE(raw_syscalls, sys_enter)",
                                    "RAW_TRACEPOINT_PROBE(sys_enter)")

stopping = False


def stop(_signal, _frame):
    global stopping
    stopping = True


signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)

bpf = BPF(text=RAW_TRACEPOINT if sys.argv[1:] == ["raw"] else TRACEPOINT)
print("attached", flush=True)
while not stopping:
    signal.pause()
total = sum(bpf["counts"][0])
print("count", total, flush=True)
bpf.cleanup()
sys.exit(0)
