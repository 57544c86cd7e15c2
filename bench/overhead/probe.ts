/**
 * The bpfscope tracer of the overhead benchmark with sinks off: opens the
 * built-in `syscalls` probe and keeps it attached, reading nothing, until
 * SIGINT or SIGTERM.
 *
 * @module
 */

import { SyscallsProbe } from "../../plugins/probes/syscalls.ts";

// The listeners go in first, because the harness may stop this process as
// soon as the program counts its first event.
const stopped = new Promise<void>((resolve) => {
  Deno.addSignalListener("SIGINT", resolve);
  Deno.addSignalListener("SIGTERM", resolve);
});
using probe = SyscallsProbe.open();
await stopped;
probe.close();
