/**
 * The `otlp` sink: sends metrics and log records to an OpenTelemetry
 * Collector, or any OTLP/HTTP receiver, as `POST /v1/metrics` and
 * `POST /v1/logs` in protobuf (`http/protobuf`, the default) or JSON
 * (`http/json`). The wire encoding comes from `@opentelemetry/otlp-transformer`.
 *
 * Configuration follows the OpenTelemetry specification's "OTLP Exporter
 * Configuration": `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL that `v1/metrics`
 * and `v1/logs` are appended to), `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` and
 * `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (used as they are),
 * `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
 * `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds) and
 * `OTEL_EXPORTER_OTLP_COMPRESSION` (`gzip` or `none`), each also per signal
 * (`OTEL_EXPORTER_OTLP_LOGS_HEADERS`, ...). Options override the variables.
 * Without any, the sink sends to `http://localhost:4318`. gRPC and the
 * certificate variables are not supported.
 *
 * How the metric model maps to OTLP:
 * - a counter is a monotonic `Sum` with cumulative temporality, its
 *   `start_time_unix_nano` from the metric and `time_unix_nano` from the batch;
 * - a gauge is a `Gauge` without a start time;
 * - a histogram is an explicit-bucket `Histogram` with cumulative temporality.
 *   Log2 buckets get one upper bound per bucket, 0, 1, 3, 7, ..., `2^k - 1`,
 *   and an empty overflow bucket (`log2ToExplicit` of `plugins/histogram.ts`,
 *   shared with the Prometheus sink). For integer values this is exact:
 *   explicit bucket `k` contains the values `v` with `2^(k-1) - 1 < v <= 2^k - 1`,
 *   which are the integers of log2 bucket `k`, `2^(k-1) <= v <= 2^k - 1`.
 *   OpenTelemetry's exponential histogram at scale 0 does not fit, because
 *   its bucket `i` is `(2^i, 2^(i+1)]`, inclusive at the top. The integer
 *   `2^k` starts log2 bucket `k + 1` but falls in the exponential bucket that
 *   ends at `2^k`, and counts cannot be moved between buckets without the
 *   values. Explicit buckets are sent as given.
 * - Values are `as_int` when every point of a metric is a safe integer, and
 *   `as_double` otherwise. Attributes keep their types: integers as
 *   `intValue`, other numbers as `doubleValue`, booleans and strings as such,
 *   bigints within ±(2^53 - 1) as `intValue` and larger ones as a decimal
 *   `stringValue` (the serializers take JavaScript numbers only).
 * - A log record keeps its time, severity (as text and as OpenTelemetry's
 *   severity number), body and attributes; its observed time is the batch time.
 *
 * Delivery: each signal has a queue and one request in flight, so cumulative
 * values reach the collector in order. HTTP 429, 502, 503 and 504, network
 * errors (connection refused or reset) and timeouts are retried with
 * exponential backoff and jitter, or after the delay of a `Retry-After` header
 * (seconds or an HTTP date), until the batch's time limit. Other responses,
 * such as HTTP 400, are not retried, and the error carries the collector's
 * message. When more batches wait than the queue holds, the oldest waiting
 * one is dropped and counted.
 *
 * The first export imports the `@opentelemetry` npm packages that encode
 * OTLP, and importing this module loads none. NOTE: the encoder imports them
 * by bare specifiers, which this repository's `deno.json` maps to pinned
 * versions. A program that imports bpfscope by URL needs the same `imports`
 * entries in its own configuration, or its exports fail with the import error.
 *
 * @module
 */

import type { Batch, ExportResult, PluginContext, Sink, SinkPlugin } from "../plugin.ts";
import { registry } from "../registry.ts";
import {
  type ConfigOptions,
  type EnvReader,
  type OtlpCompression,
  type OtlpProtocol,
  type OtlpSignal,
  parseSinkSpecOptions,
  readDenoEnv,
  resolveSignalConfig,
  type SignalConfig,
} from "./_otlp_config.ts";
import {
  DEFAULT_RETRY,
  OtlpExportError,
  type OtlpRetryOptions,
  OtlpSender,
  type OtlpSignalStats,
  type RetryPolicy,
} from "./_otlp_sender.ts";

export type { OtlpCompression, OtlpProtocol, OtlpRetryOptions, OtlpSignal, OtlpSignalStats };
export { OtlpExportError };

/**
 * The URL, headers, encoding, compression and timeout of one signal, after
 * options and environment variables are combined.
 *
 * @example
 * ```ts
 * import { OtlpSink } from "./otlp.ts";
 *
 * await using sink = new OtlpSink({ endpoint: "http://127.0.0.1:4318", env: {} });
 * console.log(sink.config.metrics.url); // "http://127.0.0.1:4318/v1/metrics"
 * ```
 */
export type OtlpSignalConfig = Readonly<SignalConfig>;

/**
 * Options of {@linkcode OtlpSink}. Each one overrides the matching
 * `OTEL_EXPORTER_OTLP_*` environment variable.
 *
 * @example Send JSON, compressed, to a collector on this host
 * ```ts
 * import type { OtlpSinkOptions } from "./otlp.ts";
 *
 * const options: OtlpSinkOptions = {
 *   endpoint: "http://127.0.0.1:4318",
 *   protocol: "http/json",
 *   compression: "gzip",
 *   headers: { "x-tenant": "lab" },
 * };
 * ```
 */
export interface OtlpSinkOptions {
  /**
   * The base URL. The sink appends `v1/metrics` and `v1/logs` to its path.
   *
   * @default {"http://localhost:4318"}
   */
  endpoint?: string;
  /** The full URL for metrics, used as it is. It overrides `endpoint`. */
  metricsEndpoint?: string;
  /** The full URL for log records, used as it is. It overrides `endpoint`. */
  logsEndpoint?: string;
  /**
   * The encoding of request bodies.
   *
   * @default {"http/protobuf"}
   */
  protocol?: OtlpProtocol;
  /** Extra request headers, which win over those of `OTEL_EXPORTER_OTLP_HEADERS`. */
  headers?: Readonly<Record<string, string>>;
  /**
   * The compression of request bodies.
   *
   * @default {"none"}
   */
  compression?: OtlpCompression;
  /**
   * The time limit of one HTTP request, response body included, in milliseconds.
   *
   * @default {10000}
   */
  timeoutMs?: number;
  /** The retry settings for failed requests. */
  retry?: OtlpRetryOptions;
  /**
   * The maximum number of batches per signal that wait behind the one being
   * sent. When one more arrives, the oldest waiting batch is dropped.
   *
   * @default {64}
   */
  maxQueuedBatches?: number;
  /**
   * The time {@linkcode OtlpSink.shutdown} waits for queued batches before it
   * gives them up, in milliseconds.
   *
   * @default {5000}
   */
  shutdownTimeoutMs?: number;
  /**
   * The environment variables to read instead of `Deno.env`. Without
   * `--allow-env`, `Deno.env` reads as empty.
   */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Counters of the sink's requests, per signal.
 *
 * @example
 * ```ts
 * import type { OtlpSinkStats } from "./otlp.ts";
 *
 * function retried(stats: OtlpSinkStats): number {
 *   return stats.metrics.retries + stats.logs.retries;
 * }
 * ```
 */
export interface OtlpSinkStats {
  metrics: OtlpSignalStats;
  logs: OtlpSignalStats;
}

/** The encoder module, which imports the OpenTelemetry npm packages. */
type Encoder = typeof import("./_otlp_encode.ts");

let encoderLoading: Promise<Encoder> | undefined;
let loadedEncoder: Encoder | undefined;

/**
 * Imports the encoder on first use, so that importing this module (and
 * `mod.ts`) loads no npm package. A failed import is tried again next time.
 */
function loadEncoder(): Promise<Encoder> {
  encoderLoading ??= import("./_otlp_encode.ts").then(
    (encoder) => {
      loadedEncoder = encoder;
      return encoder;
    },
    (error: unknown) => {
      encoderLoading = undefined;
      throw error;
    },
  );
  return encoderLoading;
}

const DEFAULT_MAX_QUEUED_BATCHES = 64;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 5000;

/**
 * A sink that sends each batch's metrics and log records over OTLP/HTTP.
 *
 * `export` resolves when the batch is delivered or given up, and never
 * rejects: an encoding error, a rejection by the collector, running out of
 * retry time, or a full queue resolve to `{ ok: false, error }`, where the
 * error is an {@linkcode OtlpExportError} or, for invalid data, a
 * `RangeError`. Concurrent exports are fine: they queue in call order.
 * `shutdown` (also through `await using`) waits up to `shutdownTimeoutMs`
 * for queued batches, then gives up the rest; later exports fail.
 *
 * @example Send one counter to a collector on this host
 * ```ts ignore
 * import { OtlpSink } from "./otlp.ts";
 *
 * await using sink = new OtlpSink({ endpoint: "http://127.0.0.1:4318" });
 * const result = await sink.export({
 *   resource: { "service.name": "bpfscope" },
 *   timeUnixNano: BigInt(Date.now()) * 1_000_000n,
 *   metrics: [{
 *     kind: "counter",
 *     name: "bpfscope.syscalls",
 *     description: "System calls entered",
 *     unit: "{call}",
 *     startTimeUnixNano: BigInt(Date.now() - 10_000) * 1_000_000n,
 *     points: [{ attributes: { cpu: 0 }, value: 1234 }],
 *   }],
 *   logs: [],
 * });
 * if (!result.ok) console.error(result.error.message);
 * ```
 */
export class OtlpSink implements Sink {
  /** The resolved endpoint, headers, protocol, compression and timeout of each signal. */
  readonly config: Readonly<Record<OtlpSignal, OtlpSignalConfig>>;
  readonly #senders: Readonly<Record<OtlpSignal, OtlpSender>>;
  readonly #shutdownTimeoutMs: number;
  #stopping: Promise<void> | undefined;

  /**
   * Resolves the configuration from `options` and the environment, and
   * starts importing the encoder. Sends nothing yet.
   *
   * @throws {RangeError} when an option or `OTEL_EXPORTER_OTLP_*` variable has an invalid value
   */
  constructor(options: OtlpSinkOptions = {}) {
    const env: EnvReader = options.env === undefined ? readDenoEnv : (name) => options.env?.[name];
    const configOptions = pickConfigOptions(options);
    this.config = {
      metrics: resolveSignalConfig("metrics", configOptions, env),
      logs: resolveSignalConfig("logs", configOptions, env),
    };

    const retry = resolveRetry(options.retry);
    const maxQueuedBatches = checkCount(
      options.maxQueuedBatches ?? DEFAULT_MAX_QUEUED_BATCHES,
      "maxQueuedBatches",
    );
    this.#shutdownTimeoutMs = checkMilliseconds(
      options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
      "shutdownTimeoutMs",
    );
    const sender = (signal: OtlpSignal) =>
      new OtlpSender({
        signal,
        config: this.config[signal],
        retry,
        maxQueuedBatches,
        // A request is sent only after an export loaded the encoder.
        readPartialSuccess: (body) =>
          loadedEncoder?.readPartialSuccess(signal, this.config[signal].protocol, body),
      });
    this.#senders = { metrics: sender("metrics"), logs: sender("logs") };

    // Start the import now; the first export reports its error, if any.
    loadEncoder().catch(() => {});
  }

  /** Returns a copy of the request counters. */
  get stats(): OtlpSinkStats {
    return { metrics: { ...this.#senders.metrics.stats }, logs: { ...this.#senders.logs.stats } };
  }

  /**
   * Sends the batch's metrics and log records (a signal with nothing to send
   * is skipped) and resolves when both are delivered or given up.
   */
  async export(batch: Batch): Promise<ExportResult> {
    try {
      const encoder = loadedEncoder ?? await loadEncoder();
      const metrics = encoder.encodeMetrics(batch, this.config.metrics.protocol);
      const logs = encoder.encodeLogs(batch, this.config.logs.protocol);
      const [metricsResult, logsResult] = await Promise.all([
        metrics === undefined ? undefined : this.#senders.metrics.send(metrics),
        logs === undefined ? undefined : this.#senders.logs.send(logs),
      ]);
      return combineResults(metricsResult, logsResult);
    } catch (error) {
      return { ok: false, error: error instanceof Error ? error : new TypeError(String(error)) };
    }
  }

  /** Resolves when every batch exported so far is delivered or given up. */
  async flush(): Promise<void> {
    await Promise.all([this.#senders.metrics.drained(), this.#senders.logs.drained()]);
  }

  /**
   * Stops accepting batches, waits up to `shutdownTimeoutMs` for the queued
   * ones, then gives up the rest. Calling it again returns the same promise.
   */
  shutdown(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /** Calls {@linkcode OtlpSink.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  async #stop(): Promise<void> {
    // Exports called before shutdown may still wait for the encoder. They
    // awaited the same import before this line did, so they resume first and
    // queue their batches before the senders close.
    if (loadedEncoder === undefined) await loadEncoder().catch(() => undefined);

    const senders = [this.#senders.metrics, this.#senders.logs];
    for (const sender of senders) sender.close();

    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#shutdownTimeoutMs);
    });
    await Promise.race([this.flush(), timedOut]);
    clearTimeout(timer);

    for (const sender of senders) sender.abort();
    await this.flush();
  }
}

/**
 * The `otlp` sink plugin. Its options are an endpoint URL and `key=value`
 * settings separated by commas: `protocol=http/json`, `compression=gzip`,
 * `timeout=MILLISECONDS`, `endpoint=URL`. They override the
 * `OTEL_EXPORTER_OTLP_*` variables.
 *
 * @example Create the sink as the command line `--sink otlp:...` does
 * ```ts
 * import { otlpSinkPlugin } from "./otlp.ts";
 *
 * const context = { resource: {}, signal: new AbortController().signal };
 * await using sink = await otlpSinkPlugin.create(context, "http://127.0.0.1:4318,protocol=http/json");
 * ```
 */
export const otlpSinkPlugin: SinkPlugin = {
  kind: "sink",
  name: "otlp",
  description:
    "Sends metrics and log records over OTLP/HTTP to an OpenTelemetry Collector (options: URL,protocol=http/json,compression=gzip,timeout=MS; default http://localhost:4318 or OTEL_EXPORTER_OTLP_ENDPOINT)",
  create(_context: PluginContext, options?: string): Sink {
    return new OtlpSink(parseSinkSpecOptions(options ?? ""));
  },
};

registry.register(otlpSinkPlugin);

export default otlpSinkPlugin;

function pickConfigOptions(options: OtlpSinkOptions): ConfigOptions {
  const picked: ConfigOptions = {};
  if (options.endpoint !== undefined) picked.endpoint = options.endpoint;
  if (options.metricsEndpoint !== undefined) picked.metricsEndpoint = options.metricsEndpoint;
  if (options.logsEndpoint !== undefined) picked.logsEndpoint = options.logsEndpoint;
  if (options.protocol !== undefined) picked.protocol = options.protocol;
  if (options.headers !== undefined) picked.headers = options.headers;
  if (options.compression !== undefined) picked.compression = options.compression;
  if (options.timeoutMs !== undefined) picked.timeoutMs = options.timeoutMs;
  return picked;
}

function resolveRetry(options: OtlpRetryOptions = {}): RetryPolicy {
  const policy = { ...DEFAULT_RETRY, ...options };
  checkMilliseconds(policy.initialBackoffMs, "retry.initialBackoffMs");
  checkMilliseconds(policy.maxBackoffMs, "retry.maxBackoffMs");
  checkMilliseconds(policy.maxElapsedMs, "retry.maxElapsedMs");
  if (!(policy.multiplier >= 1)) {
    throw new RangeError(`Invalid retry.multiplier ${policy.multiplier}: expected a number >= 1`);
  }
  if (!(policy.jitter >= 0 && policy.jitter < 1)) {
    throw new RangeError(
      `Invalid retry.jitter ${policy.jitter}: expected a number from 0 up to, not including, 1`,
    );
  }
  return policy;
}

function checkMilliseconds(value: number, name: string): number {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new RangeError(`Invalid ${name} ${value}: expected a number of milliseconds >= 0`);
  }
  return value;
}

function checkCount(value: number, name: string): number {
  if (!(Number.isSafeInteger(value) && value >= 0)) {
    throw new RangeError(`Invalid ${name} ${value}: expected an integer >= 0`);
  }
  return value;
}

function combineResults(
  metrics: ExportResult | undefined,
  logs: ExportResult | undefined,
): ExportResult {
  const failures = [metrics, logs].flatMap((result) =>
    result !== undefined && !result.ok ? [result.error] : []
  );
  const [first] = failures;
  if (first === undefined) return { ok: true };
  if (failures.length === 1) return { ok: false, error: first };
  return {
    ok: false,
    error: new AggregateError(
      failures,
      `Both OTLP requests failed: ${failures.map((error) => error.message).join("; ")}`,
    ),
  };
}
