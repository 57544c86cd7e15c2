/**
 * The plugin interface of bpfscope, on one page: the metric and log model
 * (aligned with OpenTelemetry's, so that the OTLP sink translates rather than
 * reinterprets), probes that produce data, and sinks that deliver it.
 *
 * Built-in probes and sinks implement these same types. A third-party plugin
 * is a module whose default export (or `plugin` export) is a
 * {@linkcode ProbePlugin} or a {@linkcode SinkPlugin}.
 *
 * @module
 */

/**
 * Attribute values, as OpenTelemetry allows them (no nested objects).
 *
 * @example
 * ```ts
 * import type { AttributeValue } from "./plugin.ts";
 *
 * const values: AttributeValue[] = ["read", 0, true, 2n ** 64n - 1n];
 * ```
 */
export type AttributeValue = string | number | boolean | bigint;

/**
 * Key-value pairs that identify a time series or describe a log record.
 *
 * @example
 * ```ts
 * import type { Attributes } from "./plugin.ts";
 *
 * const attributes: Attributes = { "cpu": 0, "syscall.name": "read" };
 * ```
 */
export type Attributes = Readonly<Record<string, AttributeValue>>;

/**
 * One point of a sum or gauge: a value for one set of attributes.
 *
 * @example
 * ```ts
 * import type { NumberPoint } from "./plugin.ts";
 *
 * const point: NumberPoint = { attributes: { cpu: 1 }, value: 4096 };
 * ```
 */
export interface NumberPoint {
  /** The attributes of the time series. */
  attributes: Attributes;
  /** The value; counters keep integers exact up to `Number.MAX_SAFE_INTEGER`. */
  value: number;
}

/**
 * Buckets at powers of two, as eBPF programs keep them: bucket `k` counts
 * values `v` with `2^(k-1) <= v < 2^k` for `k >= 1`, and bucket 0 counts the
 * value 0 (so 1 is in bucket 1, 2 and 3 in bucket 2, 4 to 7 in bucket 3, and
 * `2^k - 1` in bucket `k`, `2^k` in bucket `k + 1`). This is the layout of
 * bpftrace's `hist()` and of the `log2l` helpers in BCC tools.
 *
 * @example Three values: 0, 1 and 5
 * ```ts
 * import type { Log2Buckets } from "./plugin.ts";
 *
 * const buckets: Log2Buckets = { kind: "log2", counts: [1, 1, 0, 1] };
 * ```
 */
export interface Log2Buckets {
  kind: "log2";
  /** `counts[k]` is the count of bucket `k` (see above). */
  counts: readonly number[];
}

/**
 * Buckets with explicit upper bounds, as Prometheus and OpenTelemetry's
 * explicit-bucket histograms keep them: bucket `i` counts values
 * `bounds[i-1] < v <= bounds[i]`, and the last bucket values above the last bound.
 *
 * @example Linear buckets of width 10
 * ```ts
 * import type { ExplicitBuckets } from "./plugin.ts";
 *
 * const buckets: ExplicitBuckets = { kind: "explicit", bounds: [10, 20, 30], counts: [4, 2, 0, 1] };
 * ```
 */
export interface ExplicitBuckets {
  kind: "explicit";
  /** Increasing upper bounds, inclusive. */
  bounds: readonly number[];
  /** One count per bound, plus one for values above the last bound. */
  counts: readonly number[];
}

/**
 * One point of a histogram.
 *
 * @example
 * ```ts
 * import type { HistogramPoint } from "./plugin.ts";
 *
 * const point: HistogramPoint = {
 *   attributes: { disk: "vda" },
 *   count: 3,
 *   sum: 6,
 *   buckets: { kind: "log2", counts: [1, 1, 0, 1] },
 * };
 * ```
 */
export interface HistogramPoint {
  attributes: Attributes;
  /** The number of values recorded. */
  count: number;
  /** The sum of the values recorded, when known. */
  sum?: number;
  buckets: Log2Buckets | ExplicitBuckets;
}

/** Fields that every metric has. */
interface MetricBase {
  /** The metric name, in OpenTelemetry's dotted style: `bpfscope.syscalls`. */
  name: string;
  /** A one-sentence description of what the metric measures. */
  description: string;
  /** The unit, in UCUM as OpenTelemetry uses it: `{call}`, `s`, `By`, `ns`. */
  unit: string;
}

/**
 * A monotonic sum with cumulative temporality: each point is the total since
 * `startTimeUnixNano`, which changes only when the counter restarts.
 *
 * @example
 * ```ts
 * import type { CounterMetric } from "./plugin.ts";
 *
 * const counter: CounterMetric = {
 *   kind: "counter",
 *   name: "bpfscope.syscalls",
 *   description: "System calls entered",
 *   unit: "{call}",
 *   startTimeUnixNano: 1_700_000_000_000_000_000n,
 *   points: [{ attributes: { cpu: 0 }, value: 1234 }],
 * };
 * ```
 */
export interface CounterMetric extends MetricBase {
  kind: "counter";
  /** When the counting started (the probe's attach time), in nanoseconds since the Unix epoch. */
  startTimeUnixNano: bigint;
  points: readonly NumberPoint[];
}

/**
 * A value sampled at collection time.
 *
 * @example
 * ```ts
 * import type { GaugeMetric } from "./plugin.ts";
 *
 * const gauge: GaugeMetric = {
 *   kind: "gauge",
 *   name: "bpfscope.collector.duration",
 *   description: "Time the last collection took",
 *   unit: "s",
 *   points: [{ attributes: {}, value: 0.0012 }],
 * };
 * ```
 */
export interface GaugeMetric extends MetricBase {
  kind: "gauge";
  points: readonly NumberPoint[];
}

/**
 * A cumulative histogram since `startTimeUnixNano`.
 *
 * @example
 * ```ts
 * import type { HistogramMetric } from "./plugin.ts";
 *
 * const latency: HistogramMetric = {
 *   kind: "histogram",
 *   name: "bpfscope.block.latency",
 *   description: "Block I/O latency",
 *   unit: "us",
 *   startTimeUnixNano: 0n,
 *   points: [{ attributes: {}, count: 2, buckets: { kind: "log2", counts: [0, 1, 1] } }],
 * };
 * ```
 */
export interface HistogramMetric extends MetricBase {
  kind: "histogram";
  startTimeUnixNano: bigint;
  points: readonly HistogramPoint[];
}

/**
 * A metric of any kind.
 *
 * @example
 * ```ts
 * import type { Metric } from "./plugin.ts";
 *
 * function describe(metric: Metric): string {
 *   return `${metric.name} (${metric.kind}, ${metric.unit})`;
 * }
 * ```
 */
export type Metric = CounterMetric | GaugeMetric | HistogramMetric;

/**
 * An event, as an OpenTelemetry log record.
 *
 * @example
 * ```ts
 * import type { LogRecord } from "./plugin.ts";
 *
 * const exec: LogRecord = {
 *   timeUnixNano: 1_700_000_000_000_000_000n,
 *   severity: "INFO",
 *   body: "exec /usr/bin/true",
 *   attributes: { "event.name": "process.exec", "process.pid": 4242 },
 * };
 * ```
 */
export interface LogRecord {
  /** When the event happened, in nanoseconds since the Unix epoch. */
  timeUnixNano: bigint;
  /** OpenTelemetry's severity text. */
  severity: "DEBUG" | "INFO" | "WARN" | "ERROR";
  /** A human-readable summary. */
  body: string;
  attributes: Attributes;
}

/**
 * Everything one collection produced, as handed to every sink.
 *
 * @example
 * ```ts
 * import type { Batch } from "./plugin.ts";
 *
 * const empty: Batch = {
 *   resource: { "service.name": "bpfscope" },
 *   timeUnixNano: 0n,
 *   metrics: [],
 *   logs: [],
 * };
 * ```
 */
export interface Batch {
  /** The resource attributes: `host.name`, `service.name` and those of `OTEL_RESOURCE_ATTRIBUTES`. */
  resource: Attributes;
  /** When the collection ran, in nanoseconds since the Unix epoch. */
  timeUnixNano: bigint;
  metrics: readonly Metric[];
  logs: readonly LogRecord[];
}

/**
 * The outcome of exporting one batch. A failure does not throw: the collector
 * counts it and the batch is dropped for that sink.
 *
 * @example
 * ```ts
 * import type { ExportResult } from "./plugin.ts";
 *
 * const failed: ExportResult = { ok: false, error: new Error("connection refused") };
 * ```
 */
export type ExportResult = { ok: true } | { ok: false; error: Error };

/**
 * A running probe: it owns its eBPF object and turns its maps into metrics on
 * each collection, and may stream events.
 *
 * @example A probe that reports a constant
 * ```ts
 * import type { Probe } from "./plugin.ts";
 *
 * const probe: Probe = {
 *   collect: () => [{ kind: "gauge", name: "demo.answer", description: "A constant", unit: "1", points: [{ attributes: {}, value: 42 }] }],
 *   async [Symbol.asyncDispose]() {},
 * };
 * ```
 */
export interface Probe extends AsyncDisposable {
  /** Returns the probe's metrics now. Called once per collection interval. */
  collect(): readonly Metric[] | Promise<readonly Metric[]>;
  /**
   * Events as they happen; the iteration ends when the probe is disposed.
   * Probes without events leave it out.
   */
  events?(): AsyncIterable<LogRecord>;
  /** Kernel-side statistics of the probe's programs, for the collector's own metrics. */
  programStats?(): readonly ProgramStats[];
  /**
   * The number of events lost before the probe could read them since it
   * opened, such as ring buffer records the kernel could not reserve because
   * the buffer was full. The collector reports it as
   * `bpfscope.probe.dropped_events`.
   */
  droppedEvents?(): number;
}

/**
 * Kernel statistics of one loaded program (counted while `kernel.bpf_stats_enabled` is 1).
 *
 * @example
 * ```ts
 * import type { ProgramStats } from "./plugin.ts";
 *
 * const stats: ProgramStats = { program: "count_syscall", id: 42, runTimeNs: 1000n, runCount: 10n };
 * ```
 */
export interface ProgramStats {
  program: string;
  id: number;
  runTimeNs: bigint;
  runCount: bigint;
}

/**
 * A sink: delivers batches somewhere. `export` resolves to a result and never
 * rejects; after `shutdown` it resolves to a failure.
 *
 * @example A sink that counts metrics
 * ```ts
 * import type { Sink } from "./plugin.ts";
 *
 * let seen = 0;
 * const sink: Sink = {
 *   export: (batch) => {
 *     seen += batch.metrics.length;
 *     return Promise.resolve({ ok: true });
 *   },
 *   flush: () => Promise.resolve(),
 *   shutdown: () => Promise.resolve(),
 *   [Symbol.asyncDispose]: () => Promise.resolve(),
 * };
 * ```
 */
export interface Sink extends AsyncDisposable {
  export(batch: Batch): Promise<ExportResult>;
  /** Delivers whatever is buffered. */
  flush(): Promise<void>;
  /** Flushes, then releases the sink's resources; later exports fail. */
  shutdown(): Promise<void>;
}

/**
 * The context the collector hands to a plugin when it starts it.
 *
 * @example
 * ```ts
 * import type { PluginContext } from "./plugin.ts";
 *
 * const context: PluginContext = { resource: { "service.name": "bpfscope" }, signal: new AbortController().signal };
 * ```
 */
export interface PluginContext {
  /** The resource attributes of this agent. */
  resource: Attributes;
  /** Aborted when the collector stops. */
  signal: AbortSignal;
  /**
   * Reports a diagnostic that is no error of `collect`, such as a cache the
   * plugin could not write. The collector passes it to its `onDiagnostic`
   * callback and adds it to the next batch as a log record. Contexts made
   * outside a collector may lack it.
   */
  report?(severity: "INFO" | "WARN" | "ERROR", message: string): void;
}

/**
 * A probe plugin: a named factory of probes.
 *
 * @example
 * ```ts
 * import type { ProbePlugin } from "./plugin.ts";
 *
 * export const plugin: ProbePlugin = {
 *   kind: "probe",
 *   name: "demo",
 *   description: "Reports a constant",
 *   open: () => ({
 *     collect: () => [],
 *     async [Symbol.asyncDispose]() {},
 *   }),
 * };
 * ```
 */
export interface ProbePlugin {
  kind: "probe";
  /** The name used on the command line: `--probe NAME`. */
  name: string;
  description: string;
  /** Loads and attaches the probe; `options` is the text after `NAME:` on the command line. */
  open(context: PluginContext, options?: string): Probe | Promise<Probe>;
}

/**
 * A sink plugin: a named factory of sinks.
 *
 * @example
 * ```ts
 * import type { SinkPlugin } from "./plugin.ts";
 *
 * export const plugin: SinkPlugin = {
 *   kind: "sink",
 *   name: "null",
 *   description: "Discards everything",
 *   create: () => ({
 *     export: () => Promise.resolve({ ok: true }),
 *     flush: () => Promise.resolve(),
 *     shutdown: () => Promise.resolve(),
 *     [Symbol.asyncDispose]: () => Promise.resolve(),
 *   }),
 * };
 * ```
 */
export interface SinkPlugin {
  kind: "sink";
  /** The name used on the command line: `--sink NAME[:OPTIONS]`. */
  name: string;
  description: string;
  /** Creates the sink; `options` is the text after `NAME:` (`file:out.jsonl` gives `out.jsonl`). */
  create(context: PluginContext, options?: string): Sink | Promise<Sink>;
}

/**
 * A plugin of either kind.
 *
 * @example
 * ```ts
 * import type { Plugin } from "./plugin.ts";
 *
 * function label(plugin: Plugin): string {
 *   return `${plugin.kind} ${plugin.name}: ${plugin.description}`;
 * }
 * ```
 */
export type Plugin = ProbePlugin | SinkPlugin;
