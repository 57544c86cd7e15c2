/**
 * bpfscope: load eBPF programs through libbpf from Deno, attach them to kernel
 * events, and read what they count straight out of kernel memory.
 *
 * The flow is {@linkcode openObject} (configure) → {@linkcode OpenObject.load}
 * (a live {@linkcode BpfObject}) → attach programs ({@linkcode BpfLink}) →
 * read maps ({@linkcode BpfMap}, or zero-copy through {@linkcode MapMemory}).
 * Everything native is `Disposable`, so `using` cleans up. Loading programs
 * needs root, or the CAP_BPF and CAP_PERFMON capabilities, and `--allow-ffi`.
 *
 * @example Count syscalls per CPU with the built-in probe
 * ```ts ignore
 * import { SyscallsProbe } from "./mod.ts";
 *
 * using probe = SyscallsProbe.open();
 * await new Promise((resolve) => setTimeout(resolve, 1000));
 * const snapshot = probe.read();
 * console.log(snapshot.total, snapshot.top(5));
 * ```
 *
 * @example Write syscall counts to a JSON Lines file every second for ten seconds
 * ```ts ignore
 * import { Collector, fileSinkPlugin, syscallsProbePlugin } from "./mod.ts";
 *
 * await using collector = await Collector.start({
 *   probes: [syscallsProbePlugin],
 *   sinks: [{ plugin: fileSinkPlugin, options: "bpfscope.jsonl" }],
 *   intervalMs: 1000,
 * });
 * await new Promise((resolve) => setTimeout(resolve, 10_000));
 * ```
 *
 * @module
 */

export {
  BpfError,
  type BpfErrorOptions,
  type BpfErrorSubject,
  ClosedError,
  NotSupportedError,
  VerifierError,
} from "./ffi/errors.ts";
export {
  BpfObject,
  type ObjectSource,
  OpenMap,
  OpenObject,
  openObject,
  type OpenObjectOptions,
  OpenProgram,
} from "./ffi/object.ts";
export { BpfMap, type ElementOptions, type MmapOptions, type UpdateOptions } from "./ffi/map.ts";
export {
  type DumpMethod,
  type DumpOptions,
  type DumpStats,
  type EntriesOptions,
  MapDump,
  type MapDumpInit,
  MapEntries,
  type MapEntry,
} from "./ffi/map_dump.ts";
export { diffDumps, type DiffOptions, type DumpDiff } from "./ffi/map_diff.ts";
export { maxPerCpu, readUint64PerCpu, sumPerCpu } from "./ffi/per_cpu.ts";
export { BpfProgram, type ProgramInfo } from "./ffi/program.ts";
export type { TestRunOptions, TestRunResult } from "./ffi/_test_run.ts";
export { BpfLink, type LinkTarget } from "./ffi/link.ts";
export { MapMemory } from "./ffi/map_memory.ts";
export {
  decodedRecords,
  type LostCounter,
  type RawRecordCallback,
  type RingBufferOptions,
  RingBufferReader,
  type RingBufferStats,
} from "./ffi/ring_buffer.ts";
export {
  SeqlockGeneration,
  SeqlockReader,
  type SeqlockReaderOptions,
  type SeqlockSnapshot,
} from "./ffi/seqlock.ts";
export {
  Btf,
  type BtfEnumerator,
  BtfKind,
  type BtfKindName,
  type BtfMember,
  type BtfType,
  type BtfVarSecinfo,
} from "./ffi/btf.ts";
export {
  type AnyLayout,
  array,
  type ArrayLayout,
  type BitRange,
  bool,
  type BoolLayout,
  bytes,
  type BytesLayout,
  checkLayout,
  cstring,
  decodeValue,
  describeLayout,
  encodeValue,
  type EnumLayout,
  f32,
  f64,
  type FloatLayout,
  i16,
  i32,
  i64,
  i8,
  type IntLayout,
  type Layout,
  type LayoutEnumerator,
  type LayoutField,
  layoutFromBtf,
  layoutHasSpinLock,
  LayoutMismatchError,
  type LayoutType,
  type LayoutValue,
  spinLock,
  type SpinLockLayout,
  type StringLayout,
  struct,
  type StructLayout,
  u16,
  u32,
  u64,
  u8,
  union,
  type UnionLayout,
} from "./ffi/layout.ts";
export {
  type BtfMapLayouts,
  type MapLayouts,
  TypedMap,
  typedMap,
  type TypedMapOptions,
} from "./ffi/typed_map.ts";
export { Globals } from "./ffi/globals.ts";
export { possibleCpuCount } from "./ffi/cpus.ts";
export {
  type LibbpfLogger,
  type LibbpfLoggerSetting,
  type LibbpfLogLevel,
  setLibbpfLogger,
  stderrLogger,
} from "./ffi/logger.ts";
export { LIBBPF_PATH_ENV, libbpfVersion } from "./ffi/libbpf.ts";
export {
  cachedKernelBtf,
  createKernelBtfCache,
  KERNEL_BTF_CACHE_DIR,
  type KernelBtfCacheResult,
} from "./ffi/kernel_btf_cache.ts";
export {
  MapFlags,
  MapType,
  mapTypeName,
  ProgramType,
  programTypeName,
  UpdateFlags,
} from "./ffi/constants.ts";
export { SYSCALLS_OBJECT } from "./bpf/syscalls_object.ts";
export { PROCESS_OBJECT } from "./bpf/process_object.ts";
export {
  type ProcessEvent,
  type ProcessEventBase,
  type ProcessExecEvent,
  type ProcessExitEvent,
  ProcessProbe,
  type ProcessProbeOptions,
} from "./plugins/probes/process.ts";
export {
  OTHER_SLOT,
  SYSCALL_SLOTS,
  type SyscallCount,
  syscallName,
  SyscallSnapshot,
  SyscallsProbe,
} from "./plugins/probes/syscalls.ts";
export {
  formatPrometheus,
  parsePrometheusAddress,
  PROMETHEUS_CONTENT_TYPE,
  PROMETHEUS_DEFAULT_HOSTNAME,
  PROMETHEUS_DEFAULT_PORT,
  type PrometheusFormatOptions,
  prometheusLabelName,
  prometheusMetricName,
  PrometheusSink,
  type PrometheusSinkOptions,
  prometheusSinkPlugin,
  prometheusUnit,
} from "./plugins/sinks/prometheus.ts";
export {
  type OtlpCompression,
  OtlpExportError,
  type OtlpProtocol,
  type OtlpRetryOptions,
  type OtlpSignal,
  type OtlpSignalConfig,
  type OtlpSignalStats,
  OtlpSink,
  type OtlpSinkOptions,
  otlpSinkPlugin,
  type OtlpSinkStats,
} from "./plugins/sinks/otlp.ts";
export type {
  Attributes,
  AttributeValue,
  Batch,
  CounterMetric,
  ExplicitBuckets,
  ExportResult,
  GaugeMetric,
  HistogramMetric,
  HistogramPoint,
  Log2Buckets,
  LogRecord,
  Metric,
  NumberPoint,
  Plugin,
  PluginContext,
  Probe,
  ProbePlugin,
  ProgramStats,
  Sink,
  SinkPlugin,
} from "./plugins/plugin.ts";
export {
  loadPlugin,
  type LoadPluginOptions,
  parsePluginSpec,
  PluginLoadError,
  PluginRegistry,
  type PluginSpec,
  registry,
} from "./plugins/registry.ts";
export {
  Collector,
  type CollectorOptions,
  type ProbeEntry,
  type SinkEntry,
} from "./plugins/collector.ts";
export {
  parseResourceAttributes,
  resourceAttributes,
  type ResourceInputs,
} from "./plugins/resource.ts";
export {
  explicitBucketIndex,
  explicitToLog2,
  linearBucketIndex,
  type LinearBuckets,
  linearToExplicit,
  linearUpperBound,
  log2BucketIndex,
  log2BucketRange,
  log2ToExplicit,
  log2UpperBound,
} from "./plugins/histogram.ts";
export {
  parseSyscallsOptions,
  type SyscallsPluginOptions,
  syscallsProbePlugin,
} from "./plugins/probes/syscalls_plugin.ts";
export { processEventRecord, processProbePlugin } from "./plugins/probes/process_plugin.ts";
export { MemorySink, type MemorySinkOptions, memorySinkPlugin } from "./plugins/sinks/memory.ts";
export {
  encodeBatch,
  FileSink,
  FileSinkError,
  type FileSinkOptions,
  fileSinkPlugin,
  parseFileSinkOptions,
} from "./plugins/sinks/file.ts";
export {
  drawExplicitHistogram,
  drawLog2Histogram,
  parseStdoutOptions,
  renderText,
  type StdoutFormat,
  StdoutSink,
  type StdoutSinkOptions,
  stdoutSinkPlugin,
} from "./plugins/sinks/stdout.ts";
export { openPinnedMap, PinnedMap } from "./ffi/pinned_map.ts";
export { enableRunTimeStats, RunTimeStats } from "./ffi/bpf_stats.ts";
