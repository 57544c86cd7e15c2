/**
 * The `syscalls` probe plugin: {@linkcode SyscallsProbe} as a
 * {@linkcode ProbePlugin}, reporting the counter `bpfscope.syscalls`.
 *
 * @module
 */

import { SYSCALLS_OBJECT } from "../../bpf/syscalls_object.ts";
import { CLOCK_REALTIME, clockNs } from "../../ffi/clock.ts";
import type { Metric, NumberPoint, Probe, ProbePlugin, ProgramStats } from "../plugin.ts";
import { registry } from "../registry.ts";
import { writeKernelBtfCache } from "./_kernel_btf_cache.ts";
import { programStatsOf } from "./_program_stats.ts";
import { OTHER_SLOT, SYSCALL_SLOTS, syscallName, SyscallsProbe } from "./syscalls.ts";

/**
 * Options of the `syscalls` probe, parsed from the text after `syscalls:`.
 *
 * @example
 * ```ts
 * import type { SyscallsPluginOptions } from "./syscalls_plugin.ts";
 *
 * const options: SyscallsPluginOptions = { perCpu: false };
 * ```
 */
export interface SyscallsPluginOptions {
  /**
   * Report one series per CPU and syscall (`true`), or per syscall with the
   * CPUs summed (`false`, written `per-cpu=false`).
   *
   * @default true
   */
  perCpu: boolean;
}

/**
 * Parses the options of the `syscalls` probe: empty, or `per-cpu=true` or
 * `per-cpu=false`.
 *
 * @throws {TypeError} for any other text
 *
 * @example
 * ```ts
 * import { parseSyscallsOptions } from "./syscalls_plugin.ts";
 *
 * console.log(parseSyscallsOptions("per-cpu=false")); // { perCpu: false }
 * ```
 */
export function parseSyscallsOptions(text: string | undefined): SyscallsPluginOptions {
  if (text === undefined || text === "") return { perCpu: true };
  const match = /^per-cpu=(true|false)$/.exec(text);
  if (match === null) {
    throw new TypeError(
      `Invalid syscalls probe options "${text}": expected per-cpu=true, per-cpu=false or nothing`,
    );
  }
  return { perCpu: match[1] === "true" };
}

/**
 * The `syscalls` probe plugin. Each collection reports the counter
 * `bpfscope.syscalls` (unit `{call}`): system calls entered since the probe
 * attached, with the attributes `cpu`, `syscall.name` and `syscall.number`.
 * The slot that collects numbers outside the table (and x32 calls) has the
 * name `other` and no number. Only series with at least one call are
 * reported. Opening it needs root, or CAP_BPF and CAP_PERFMON.
 *
 * @example Collect syscall counts into memory
 * ```ts ignore
 * import { Collector } from "../collector.ts";
 * import { memorySinkPlugin } from "../sinks/memory.ts";
 * import { syscallsProbePlugin } from "./syscalls_plugin.ts";
 *
 * await using collector = await Collector.start({
 *   probes: [syscallsProbePlugin],
 *   sinks: [memorySinkPlugin],
 *   intervalMs: 1000,
 * });
 * const batch = await collector.collect();
 * console.log(batch.metrics.find((metric) => metric.name === "bpfscope.syscalls"));
 * ```
 */
export const syscallsProbePlugin: ProbePlugin = {
  kind: "probe",
  name: "syscalls",
  description: "System calls entered, per CPU and syscall (raw tracepoint sys_enter)",
  open(context, options) {
    const settings = parseSyscallsOptions(options);
    const probe = SyscallsProbe.open();
    return new SyscallsPluginProbe(
      probe,
      settings,
      clockNs(CLOCK_REALTIME),
      writeKernelBtfCache(SYSCALLS_OBJECT, "syscalls", context),
    );
  },
};

registry.register(syscallsProbePlugin);

/** The running `syscalls` probe, in the form the collector uses. */
class SyscallsPluginProbe implements Probe {
  #probe: SyscallsProbe;
  #perCpu: boolean;
  #attachedUnixNano: bigint;

  // The next start of the probe in this boot skips parsing the kernel's
  // BTF; see ffi/kernel_btf_cache.ts. A failure only leaves the cache empty.
  #kernelBtfCache: Promise<void>;
  constructor(
    probe: SyscallsProbe,
    options: SyscallsPluginOptions,
    attachedUnixNano: bigint,
    kernelBtfCache: Promise<void>,
  ) {
    this.#probe = probe;
    this.#perCpu = options.perCpu;
    this.#attachedUnixNano = attachedUnixNano;
    this.#kernelBtfCache = kernelBtfCache;
  }

  collect(): Metric[] {
    const snapshot = this.#probe.read();
    const points: NumberPoint[] = [];
    for (let nr = 0; nr < SYSCALL_SLOTS; nr++) {
      const syscall = nr === OTHER_SLOT
        ? { "syscall.name": syscallName(nr) }
        : { "syscall.name": syscallName(nr), "syscall.number": nr };
      if (!this.#perCpu) {
        const value = snapshot.syscallTotal(nr);
        if (value > 0) points.push({ attributes: syscall, value });
        continue;
      }
      for (let cpu = 0; cpu < snapshot.cpus; cpu++) {
        const value = snapshot.count(cpu, nr);
        if (value > 0) points.push({ attributes: { cpu, ...syscall }, value });
      }
    }

    return [{
      kind: "counter",
      name: "bpfscope.syscalls",
      description: "System calls entered since the probe attached",
      unit: "{call}",
      startTimeUnixNano: this.#attachedUnixNano,
      points,
    }];
  }

  programStats(): ProgramStats[] {
    return programStatsOf(this.#probe.object);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#probe.close();
    await this.#kernelBtfCache;
  }
}
