/**
 * CPU counts as the BPF subsystem uses them.
 *
 * @module
 */

import { checkInt } from "./_check.ts";
import { libbpf } from "./libbpf.ts";

let possible: number | undefined;

/**
 * Returns the number of possible CPUs (`/sys/devices/system/cpu/possible`), the
 * count that per-CPU maps hold one value for. It can exceed the online CPUs.
 * The value is read once, through libbpf, and cached.
 *
 * @throws {BpfError} when the count cannot be read
 *
 * @example Size a `[cpu][slot]` array map before load
 * ```ts ignore
 * import { openObject, possibleCpuCount } from "../mod.ts";
 *
 * const opened = openObject("./counts.bpf.o");
 * opened.map("counts").setMaxEntries(possibleCpuCount() * 512);
 * ```
 */
export function possibleCpuCount(): number {
  possible ??= checkInt(libbpf().libbpf_num_possible_cpus(), "count possible CPUs");
  return possible;
}
