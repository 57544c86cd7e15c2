/**
 * The `process` probe plugin: {@linkcode ProcessProbe} as a
 * {@linkcode ProbePlugin}. Exec and exit events reach every sink as log
 * records, and each collection reports the counter `bpfscope.process.events`.
 *
 * @module
 */

import { PROCESS_OBJECT } from "../../bpf/process_object.ts";
import { CLOCK_REALTIME, clockNs } from "../../ffi/clock.ts";
import type { Attributes, LogRecord, Metric, Probe, ProbePlugin, ProgramStats } from "../plugin.ts";
import { registry } from "../registry.ts";
import { writeKernelBtfCache } from "./_kernel_btf_cache.ts";
import { programStatsOf } from "./_program_stats.ts";
import { type ProcessEvent, ProcessProbe } from "./process.ts";

/**
 * Returns the log record of a process event: `event.name` is `process.exec`
 * or `process.exit`, attributes follow OpenTelemetry's `process.*` names
 * where they exist, and the body is a one-line summary.
 *
 * @example
 * ```ts
 * import { processEventRecord } from "./process_plugin.ts";
 *
 * const record = processEventRecord({
 *   kind: "exit", timestamp: new Date(0), bootTimeNs: 0n, pid: 42, ppid: 1, uid: 0,
 *   comm: "true", exitCode: 0, signal: 0, coreDumped: false, lifetimeMs: 2,
 * });
 * console.log(record.body); // exit pid=42 comm="true" code=0
 * ```
 */
export function processEventRecord(event: ProcessEvent): LogRecord {
  const common: Record<string, string | number | boolean> = {
    "event.name": `process.${event.kind}`,
    "process.pid": event.pid,
    "process.parent_pid": event.ppid,
    "process.real_user.id": event.uid,
    "process.command": event.comm,
  };
  const timeUnixNano = BigInt(event.timestamp.getTime()) * 1_000_000n;
  if (event.kind === "exec") {
    const attributes: Attributes = {
      ...common,
      "process.executable.path": event.filename,
      "thread.id": event.tid,
    };
    return {
      timeUnixNano,
      severity: "INFO",
      body: `exec pid=${event.pid} comm=${JSON.stringify(event.comm)} filename=${
        JSON.stringify(event.filename)
      }`,
      attributes,
    };
  }

  const attributes: Attributes = {
    ...common,
    "process.exit.code": event.exitCode,
    "process.exit.signal": event.signal,
    "process.exit.core_dumped": event.coreDumped,
    "process.lifetime_ms": event.lifetimeMs,
  };
  const outcome = event.signal === 0 ? `code=${event.exitCode}` : `signal=${event.signal}`;
  return {
    timeUnixNano,
    severity: event.signal === 0 ? "INFO" : "WARN",
    body: `exit pid=${event.pid} comm=${JSON.stringify(event.comm)} ${outcome}`,
    attributes,
  };
}

/**
 * The `process` probe plugin. Its events are exec and exit log records (see
 * {@linkcode processEventRecord}); each collection also reports the counter
 * `bpfscope.process.events` (unit `{event}`, attribute `event.name`) of
 * events seen since the probe attached. Events the ring buffer had no room
 * for are reported as dropped events. It attaches to the sched tracepoints,
 * so it needs tracefs, and root or CAP_BPF and CAP_PERFMON.
 *
 * @example Run it with the stdout sink
 * ```sh
 * sudo deno run --allow-all cli.ts run --probe process --sink stdout
 * ```
 */
export const processProbePlugin: ProbePlugin = {
  kind: "probe",
  name: "process",
  description: "Process exec and exit events (sched tracepoints) as log records",
  open(context) {
    const probe = ProcessProbe.open({ signal: context.signal });
    return new ProcessPluginProbe(
      probe,
      clockNs(CLOCK_REALTIME),
      writeKernelBtfCache(PROCESS_OBJECT, "process", context),
    );
  },
};

registry.register(processProbePlugin);

/** The running `process` probe, in the form the collector uses. */
class ProcessPluginProbe implements Probe {
  #probe: ProcessProbe;
  #attachedUnixNano: bigint;
  #counts = { "process.exec": 0, "process.exit": 0 };

  // The next start of the probe in this boot skips parsing the kernel's
  // BTF; see ffi/kernel_btf_cache.ts. A failure only leaves the cache empty.
  #kernelBtfCache: Promise<void>;
  constructor(probe: ProcessProbe, attachedUnixNano: bigint, kernelBtfCache: Promise<void>) {
    this.#probe = probe;
    this.#attachedUnixNano = attachedUnixNano;
    this.#kernelBtfCache = kernelBtfCache;
  }

  collect(): Metric[] {
    return [{
      kind: "counter",
      name: "bpfscope.process.events",
      description: "Process exec and exit events seen since the probe attached",
      unit: "{event}",
      startTimeUnixNano: this.#attachedUnixNano,
      points: Object.entries(this.#counts).map(([name, value]) => ({
        attributes: { "event.name": name },
        value,
      })),
    }];
  }

  async *events(): AsyncIterable<LogRecord> {
    for await (const event of this.#probe) {
      this.#counts[`process.${event.kind}`]++;
      yield processEventRecord(event);
    }
  }

  droppedEvents(): number {
    return this.#probe.droppedEvents;
  }

  programStats(): ProgramStats[] {
    return programStatsOf(this.#probe.object);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#probe.close();
    await this.#kernelBtfCache;
  }
}
