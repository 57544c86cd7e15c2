/**
 * The bpfscope tracer of the overhead benchmark with sinks off: opens the
 * built-in `syscalls` probe and keeps it attached, reading nothing, until
 * SIGINT or SIGTERM. While it runs it writes this boot's kernel BTF cache
 * entry for the probe when there is none, as the command does
 * (ffi/kernel_btf_cache.ts).
 *
 * With `--no-btf-cache` the probe loads as on the first start of a boot:
 * libbpf parses the kernel's whole BTF, and no cache entry is written.
 *
 * With `--timings` it instead opens the probe, prints
 * `{"importedMs": N, "openedMs": N}` (milliseconds since the process's time
 * origin at which its modules had loaded and at which the probe was attached)
 * and exits.
 *
 * @module
 */

import { SYSCALLS_OBJECT } from "../../bpf/syscalls_object.ts";
import { createKernelBtfCache } from "../../ffi/kernel_btf_cache.ts";
import { SyscallsProbe } from "../../plugins/probes/syscalls.ts";

const importedMs = performance.now();
const kernelBtfCache = !Deno.args.includes("--no-btf-cache");

if (Deno.args.includes("--timings")) {
  using _probe = SyscallsProbe.open({ kernelBtfCache });
  // deno-lint-ignore no-console -- the harness reads this line.
  console.log(JSON.stringify({ importedMs, openedMs: performance.now() }));
} else {
  // The listeners go in first, because the harness may stop this process as
  // soon as the program counts its first event.
  const stopped = new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", resolve);
    Deno.addSignalListener("SIGTERM", resolve);
  });
  using probe = SyscallsProbe.open({ kernelBtfCache });
  const caching = kernelBtfCache ? createKernelBtfCache(SYSCALLS_OBJECT) : undefined;
  await stopped;
  probe.close();
  await caching;
}
