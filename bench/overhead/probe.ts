/**
 * The bpfscope tracer of the overhead benchmark with sinks off: opens the
 * built-in `syscalls` probe and keeps it attached, reading nothing, until
 * SIGINT or SIGTERM.
 *
 * With `--timings` it instead opens the probe, prints
 * `{"importedMs": N, "openedMs": N}` (milliseconds since the process's time
 * origin at which its modules had loaded and at which the probe was attached)
 * and exits.
 *
 * @module
 */

import { SyscallsProbe } from "../../plugins/probes/syscalls.ts";

const importedMs = performance.now();

if (Deno.args.includes("--timings")) {
  using _probe = SyscallsProbe.open();
  // deno-lint-ignore no-console -- the harness reads this line.
  console.log(JSON.stringify({ importedMs, openedMs: performance.now() }));
} else {
  // The listeners go in first, because the harness may stop this process as
  // soon as the program counts its first event.
  const stopped = new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", resolve);
    Deno.addSignalListener("SIGTERM", resolve);
  });
  using probe = SyscallsProbe.open();
  await stopped;
  probe.close();
}
