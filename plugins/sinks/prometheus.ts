/**
 * The built-in `prometheus` sink: serves the latest batch at `/metrics` in the
 * Prometheus text exposition format (version 0.0.4) for a Prometheus server to
 * scrape.
 *
 * Metric names, units and labels follow the OpenTelemetry specification's
 * "Prometheus and OpenMetrics Compatibility" page (section "OTLP Metric points
 * to Prometheus"), in the form it gives for SDK exporters:
 *
 * - invalid characters become `_`, and runs of `_` become one;
 * - the unit becomes a suffix in words: `s` to `_seconds`, `By` to `_bytes`,
 *   `ns` to `_nanoseconds`. Values are not converted, and annotations such
 *   as `{call}` are dropped;
 * - counters end in `_total`;
 * - histograms become cumulative `_bucket{le="..."}` series ending in
 *   `le="+Inf"`, with `_count`, and with `_sum` when the sum is known and
 *   not negative;
 * - resource attributes become the labels of one `target_info` gauge of
 *   value 1 (the text format has no info type). Prometheus itself adds the
 *   `job` and `instance` labels of the scrape target.
 *
 * Log records are not served, because the format has no place for them. The
 * metric model has no instrumentation scope, so no `otel_scope_*` labels are
 * written. Neither are `_created` series: the 0.0.4 text format has no start
 * time, and Prometheus would store them as separate series.
 *
 * @module
 */

import { ClosedError } from "../../ffi/errors.ts";
import { log2BucketRange } from "../histogram.ts";
import type {
  Attributes,
  AttributeValue,
  Batch,
  ExportResult,
  HistogramPoint,
  Metric,
  PluginContext,
  Sink,
  SinkPlugin,
} from "../plugin.ts";
import { registry } from "../registry.ts";

/**
 * The content type of the Prometheus text exposition format that the sink serves.
 *
 * @example
 * ```ts
 * import { PROMETHEUS_CONTENT_TYPE } from "./prometheus.ts";
 *
 * console.log(PROMETHEUS_CONTENT_TYPE); // "text/plain; version=0.0.4; charset=utf-8"
 * ```
 */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * The default port of the sink: 9464, the port that OpenTelemetry's Prometheus
 * exporters use.
 *
 * @example
 * ```ts
 * import { PROMETHEUS_DEFAULT_PORT } from "./prometheus.ts";
 *
 * console.log(`http://127.0.0.1:${PROMETHEUS_DEFAULT_PORT}/metrics`);
 * ```
 */
export const PROMETHEUS_DEFAULT_PORT = 9464;

/**
 * The default listen address of the sink: loopback only, so that nothing
 * outside this host can scrape it unless the user chooses another address.
 *
 * @example
 * ```ts
 * import { PROMETHEUS_DEFAULT_HOSTNAME } from "./prometheus.ts";
 *
 * console.log(PROMETHEUS_DEFAULT_HOSTNAME); // "127.0.0.1"
 * ```
 */
export const PROMETHEUS_DEFAULT_HOSTNAME = "127.0.0.1";

// ---------------------------------------------------------------------------
// Names and units
// ---------------------------------------------------------------------------

/**
 * Words for UCUM unit codes, as the OpenTelemetry Collector's Prometheus
 * translator (pkg/translator/prometheus in opentelemetry-collector-contrib)
 * spells them. Units not listed are appended after sanitizing.
 */
const UNIT_WORDS: Readonly<Record<string, string>> = {
  d: "days",
  h: "hours",
  min: "minutes",
  s: "seconds",
  ms: "milliseconds",
  us: "microseconds",
  ns: "nanoseconds",
  By: "bytes",
  KiBy: "kibibytes",
  MiBy: "mebibytes",
  GiBy: "gibibytes",
  TiBy: "tibibytes",
  KBy: "kilobytes",
  MBy: "megabytes",
  GBy: "gigabytes",
  TBy: "terabytes",
  m: "meters",
  V: "volts",
  A: "amperes",
  J: "joules",
  W: "watts",
  g: "grams",
  Cel: "celsius",
  Hz: "hertz",
  "%": "percent",
};

/** Words for the UCUM unit after `/` in a rate unit such as `By/s`. */
const PER_UNIT_WORDS: Readonly<Record<string, string>> = {
  s: "second",
  min: "minute",
  h: "hour",
  d: "day",
  wk: "week",
  mo: "month",
  a: "year",
  m: "meter",
  By: "byte",
};

/** Replaces the characters that `invalid` matches with `_`, collapses runs of `_`, and puts `_` before a leading digit. */
function sanitize(text: string, invalid: RegExp): string {
  const replaced = text.replace(invalid, "_").replace(/_+/g, "_");
  return /^[0-9]/.test(replaced) ? `_${replaced}` : replaced;
}

/** Turns one UCUM unit term into words, with `{...}` annotations removed. */
function unitTerm(term: string, words: Readonly<Record<string, string>>): string {
  const bare = term.replace(/\{[^}]*\}/g, "").trim();
  if (bare === "") return "";
  return words[bare] ?? sanitize(bare, /[^a-zA-Z0-9]/g).replace(/^_|_$/g, "");
}

/**
 * Converts an OpenTelemetry unit (UCUM, as in {@linkcode Metric.unit}) to the
 * suffix words of a Prometheus metric name: `s` gives `seconds`, `By/s` gives
 * `bytes_per_second`, `{packet}/s` gives `per_second`, and a bare annotation
 * such as `{call}` gives the empty string. The unit `1` gives `ratio` for
 * gauges and nothing for other kinds, as the OpenTelemetry Collector does,
 * because counters and histograms in unit `1` count things. Values are never
 * scaled: `ns` stays nanoseconds.
 *
 * @example
 * ```ts
 * import { prometheusUnit } from "./prometheus.ts";
 *
 * console.log(prometheusUnit("By")); // "bytes"
 * console.log(prometheusUnit("{call}")); // ""
 * console.log(prometheusUnit("1", "gauge")); // "ratio"
 * ```
 */
export function prometheusUnit(unit: string, kind: Metric["kind"] = "counter"): string {
  if (unit.trim() === "1") return kind === "gauge" ? "ratio" : "";

  const slash = unit.indexOf("/");
  const main = unitTerm(slash < 0 ? unit : unit.slice(0, slash), UNIT_WORDS);
  const per = slash < 0 ? "" : unitTerm(unit.slice(slash + 1), PER_UNIT_WORDS);
  if (per === "") return main;
  return main === "" ? `per_${per}` : `${main}_per_${per}`;
}

/**
 * Returns the Prometheus name of a metric: its OpenTelemetry name with invalid
 * characters replaced, then the unit suffix (left out when the name already
 * ends with it), then `_total` for counters. The histogram series add
 * `_bucket`, `_sum` and `_count` to this name.
 *
 * @example
 * ```ts
 * import { prometheusMetricName } from "./prometheus.ts";
 *
 * console.log(prometheusMetricName({ kind: "counter", name: "bpfscope.syscalls", unit: "{call}" }));
 * // "bpfscope_syscalls_total"
 * console.log(prometheusMetricName({ kind: "histogram", name: "block.latency", unit: "ns" }));
 * // "block_latency_nanoseconds"
 * ```
 */
export function prometheusMetricName(metric: Pick<Metric, "kind" | "name" | "unit">): string {
  let base = sanitize(metric.name, /[^a-zA-Z0-9_:]/g);
  if (metric.kind === "counter") base = base.replace(/_total$/, "");

  const unit = prometheusUnit(metric.unit, metric.kind);
  if (unit !== "" && base !== unit && !base.endsWith(`_${unit}`)) base = `${base}_${unit}`;
  if (metric.kind === "counter") base = `${base}_total`;
  return base.replace(/_+/g, "_");
}

/**
 * Returns the Prometheus label name of an attribute key: characters outside
 * `[a-zA-Z0-9_]` become `_`, runs of `_` become one, a leading digit gets a `_`
 * in front, and an empty key becomes `_`.
 *
 * @example
 * ```ts
 * import { prometheusLabelName } from "./prometheus.ts";
 *
 * console.log(prometheusLabelName("syscall.name")); // "syscall_name"
 * ```
 */
export function prometheusLabelName(key: string): string {
  const name = sanitize(key, /[^a-zA-Z0-9_]/g);
  return name === "" ? "_" : name;
}

// ---------------------------------------------------------------------------
// Text format
// ---------------------------------------------------------------------------

/**
 * Options of {@linkcode formatPrometheus}.
 *
 * @example
 * ```ts
 * import type { PrometheusFormatOptions } from "./prometheus.ts";
 *
 * const dropped: string[] = [];
 * const options: PrometheusFormatOptions = {
 *   onDropped: (metric, reason) => dropped.push(`${metric.name}: ${reason}`),
 * };
 * ```
 */
export interface PrometheusFormatOptions {
  /**
   * Called for each metric left out of the output, with the reason: a name
   * taken by a metric of another kind, or a histogram that cannot be
   * rendered. Without it, dropped metrics are not reported.
   */
  onDropped?: (metric: Metric, reason: string) => void;
}

/** Escapes a label value: backslash, double quote and line feed. */
function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** Escapes `# HELP` text: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/** Formats a sample value or bound as Prometheus parses it (`+Inf`, `-Inf`, `NaN`). */
function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function attributeText(value: AttributeValue): string {
  return typeof value === "string" ? value : String(value);
}

/** Label name and value pairs in attribute order, with sanitized names and unescaped values. */
type Labels = readonly (readonly [string, string])[];

/**
 * Converts attributes to labels. Keys that sanitize to the same label name
 * share one label whose value joins theirs with `;`, in the lexicographic
 * order of the original keys, as the specification requires.
 */
function toLabels(attributes: Attributes): Labels {
  const groups = new Map<string, [string, string][]>();
  for (const [key, value] of Object.entries(attributes)) {
    const name = prometheusLabelName(key);
    const group = groups.get(name) ?? [];
    group.push([key, attributeText(value)]);
    groups.set(name, group);
  }

  const labels: [string, string][] = [];
  for (const [name, group] of groups) {
    group.sort(([a], [b]) => compareCodeUnits(a, b));
    labels.push([name, group.map(([, value]) => value).join(";")]);
  }
  return labels;
}

/** Orders strings by UTF-16 code units, independent of the locale. */
function compareCodeUnits(a: string, b: string): number {
  if (a < b) return -1;
  return a > b ? 1 : 0;
}

function sampleLine(name: string, labels: Labels, value: string): string {
  if (labels.length === 0) return `${name} ${value}\n`;
  const pairs = labels.map(([label, text]) => `${label}="${escapeLabelValue(text)}"`);
  return `${name}{${pairs.join(",")}} ${value}\n`;
}

/** Returns the upper bound `le` of log2 bucket `k` as an exact integer: 0 for bucket 0, else `2^k - 1`. */
function log2UpperBound(k: number): string {
  // Exact decimal text even past 2^53. Prometheus parses `le` as a float64,
  // which rounds 2^k - 1 to 2^k for k > 53; the buckets stay distinct.
  return log2BucketRange(k).upper.toString();
}

/** Returns the `le` bounds and per-bucket counts of a point, or a reason why it cannot be rendered. */
function bucketsOf(
  point: HistogramPoint,
): { bounds: string[]; counts: readonly number[] } | string {
  const buckets = point.buckets;
  if (buckets.kind === "log2") {
    return { bounds: buckets.counts.map((_, k) => log2UpperBound(k)), counts: buckets.counts };
  }

  if (buckets.counts.length !== buckets.bounds.length + 1) {
    return `explicit buckets have ${buckets.bounds.length} bounds and ${buckets.counts.length} counts; expected one count more than bounds`;
  }
  for (let i = 0; i < buckets.bounds.length; i++) {
    const bound = buckets.bounds[i]!;
    if (!Number.isFinite(bound) || (i > 0 && bound <= buckets.bounds[i - 1]!)) {
      return `explicit bucket bounds must be finite and increasing; bound ${i} is ${bound}`;
    }
  }
  // The count past the last bound goes into le="+Inf" only.
  return { bounds: buckets.bounds.map(formatNumber), counts: buckets.counts };
}

/**
 * Renders the series of one histogram point: cumulative `_bucket` series, the
 * `+Inf` bucket (the sum of all bucket counts), `_sum` and `_count`.
 */
function histogramLines(name: string, point: HistogramPoint, labels: Labels): string | Error {
  const buckets = bucketsOf(point);
  if (typeof buckets === "string") return new RangeError(buckets);

  let text = "";
  let cumulative = 0;
  for (let i = 0; i < buckets.bounds.length; i++) {
    cumulative += buckets.counts[i]!;
    text += sampleLine(
      `${name}_bucket`,
      [...labels, ["le", buckets.bounds[i]!]],
      String(cumulative),
    );
  }
  if (buckets.counts.length > buckets.bounds.length) cumulative += buckets.counts.at(-1)!;
  text += sampleLine(`${name}_bucket`, [...labels, ["le", "+Inf"]], String(cumulative));

  // The specification writes `_sum` only when the sum is monotonic, and a
  // negative sum shows that it is not. Log2 buckets only count values >= 0.
  if (point.sum !== undefined && point.sum >= 0) {
    text += sampleLine(`${name}_sum`, labels, formatNumber(point.sum));
  }
  text += sampleLine(`${name}_count`, labels, String(point.count));
  return text;
}

/** Renders the samples of a metric, or returns why the metric must be dropped. */
function metricSamples(name: string, metric: Metric): string | Error {
  let text = "";
  if (metric.kind !== "histogram") {
    for (const point of metric.points) {
      text += sampleLine(name, toLabels(point.attributes), formatNumber(point.value));
    }
    return text;
  }

  for (const point of metric.points) {
    const labels = toLabels(point.attributes);
    if (labels.some(([label]) => label === "le")) {
      return new TypeError(`a histogram attribute is named "le", which the bucket series use`);
    }
    const lines = histogramLines(name, point, labels);
    if (lines instanceof Error) return lines;
    text += lines;
  }
  return text;
}

/** Returns the series names that a family with this name and kind writes. */
function seriesNames(name: string, kind: Metric["kind"]): string[] {
  return kind === "histogram" ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}

/** One `# TYPE` family of the output, shared by the metrics of the same kind and name. */
interface Family {
  name: string;
  kind: Metric["kind"];
  help: string;
  samples: string;
}

function familyHeader(family: Family): string {
  const help = family.help === "" ? "" : `# HELP ${family.name} ${escapeHelp(family.help)}\n`;
  return `${help}# TYPE ${family.name} ${family.kind}\n`;
}

/** Renders the `target_info` gauge of the resource, or nothing for an empty resource. */
function targetInfo(resource: Attributes): string {
  if (Object.keys(resource).length === 0) return "";
  return "# HELP target_info Target metadata\n# TYPE target_info gauge\n" +
    sampleLine("target_info", toLabels(resource), "1");
}

/**
 * Renders a batch in the Prometheus text exposition format 0.0.4: the
 * resource as `target_info`, then one family per metric name.
 *
 * Metrics whose Prometheus names are equal and whose kinds agree share one
 * family, under the first metric's `# HELP` text. A metric whose name or
 * series names are taken by a family of another kind is dropped whole, so
 * that no name gets two `# TYPE` lines. A histogram with malformed buckets
 * is dropped too. `options.onDropped` receives each dropped metric.
 *
 * @example
 * ```ts
 * import { formatPrometheus } from "./prometheus.ts";
 *
 * const text = formatPrometheus({
 *   resource: { "service.name": "bpfscope" },
 *   timeUnixNano: 0n,
 *   logs: [],
 *   metrics: [{
 *     kind: "counter",
 *     name: "bpfscope.syscalls",
 *     description: "System calls entered",
 *     unit: "{call}",
 *     startTimeUnixNano: 0n,
 *     points: [{ attributes: { cpu: 0 }, value: 1234 }],
 *   }],
 * });
 * console.log(text.includes('bpfscope_syscalls_total{cpu="0"} 1234')); // true
 * ```
 */
export function formatPrometheus(batch: Batch, options: PrometheusFormatOptions = {}): string {
  const families = new Map<string, Family>();
  // Each series name written so far, and the family that writes it.
  const owners = new Map<string, string>();
  if (Object.keys(batch.resource).length > 0) owners.set("target_info", "target_info");

  for (const metric of batch.metrics) {
    if (!/[a-zA-Z0-9]/.test(metric.name)) {
      options.onDropped?.(metric, `the name "${metric.name}" has no letters or digits`);
      continue;
    }
    const name = prometheusMetricName(metric);

    const existing = families.get(name);
    if (existing !== undefined && existing.kind !== metric.kind) {
      options.onDropped?.(
        metric,
        `its name ${name} is already taken by a ${existing.kind} in this batch`,
      );
      continue;
    }
    if (existing === undefined) {
      const taken = seriesNames(name, metric.kind).find((series) => owners.has(series));
      if (taken !== undefined) {
        options.onDropped?.(
          metric,
          `its series name ${taken} is already written by ${owners.get(taken)}`,
        );
        continue;
      }
    }

    const samples = metricSamples(name, metric);
    if (samples instanceof Error) {
      options.onDropped?.(metric, samples.message);
      continue;
    }

    if (existing === undefined) {
      for (const series of seriesNames(name, metric.kind)) owners.set(series, name);
      families.set(name, { name, kind: metric.kind, help: metric.description, samples });
    } else {
      existing.samples += samples;
    }
  }

  let text = targetInfo(batch.resource);
  for (const family of families.values()) text += familyHeader(family) + family.samples;
  return text;
}

// ---------------------------------------------------------------------------
// Sink
// ---------------------------------------------------------------------------

/**
 * Options of {@linkcode PrometheusSink.listen}.
 *
 * @example Any free port on loopback
 * ```ts
 * import type { PrometheusSinkOptions } from "./prometheus.ts";
 *
 * const options: PrometheusSinkOptions = { hostname: "127.0.0.1", port: 0 };
 * ```
 */
export interface PrometheusSinkOptions extends PrometheusFormatOptions {
  /** The address to listen on, `127.0.0.1` (loopback only) by default. */
  hostname?: string;
  /** The TCP port, 9464 by default. Port 0 picks a free port (see {@linkcode PrometheusSink.port}). */
  port?: number;
}

/**
 * The Prometheus sink: an HTTP server that serves the latest exported batch
 * at `/metrics`. Each {@linkcode PrometheusSink.export} replaces the batch, and
 * every scrape until the next export returns the same text. Before the first
 * export, `/metrics` is empty. Other paths get 404, and methods other than
 * GET and HEAD get 405.
 *
 * The caller owns the sink: {@linkcode PrometheusSink.shutdown} closes the
 * server. Listening needs `--allow-net` for the address.
 *
 * @example Serve one batch on a free loopback port
 * ```ts
 * import { PrometheusSink } from "./prometheus.ts";
 *
 * await using sink = PrometheusSink.listen({ port: 0 });
 * await sink.export({
 *   resource: {},
 *   timeUnixNano: 0n,
 *   logs: [],
 *   metrics: [{ kind: "gauge", name: "demo.answer", description: "A constant", unit: "1", points: [{ attributes: {}, value: 42 }] }],
 * });
 * const response = await fetch(sink.url);
 * console.log(await response.text()); // ... demo_answer_ratio 42
 * ```
 */
export class PrometheusSink implements Sink {
  #server: Deno.HttpServer<Deno.NetAddr>;
  #address: Deno.NetAddr;
  #options: PrometheusFormatOptions;
  #text = "";
  #closed = false;

  private constructor(options: PrometheusSinkOptions) {
    const hostname = options.hostname ?? PROMETHEUS_DEFAULT_HOSTNAME;
    const port = options.port ?? PROMETHEUS_DEFAULT_PORT;
    checkPort(port);
    this.#options = options.onDropped === undefined ? {} : { onDropped: options.onDropped };

    try {
      this.#server = Deno.serve({
        hostname,
        port,
        // Deno.serve prints the address by default, and library code never prints.
        onListen: () => {},
        onError: (error) => serverError(error),
      }, (request) => this.#respond(request));
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) {
        const address = formatHostPort(hostname, port);
        throw new Deno.errors.AddrInUse(
          `Failed to start the Prometheus sink: ${address} is already in use. ` +
            `Choose another port with "--sink prometheus::PORT" or "--sink prometheus:HOST:PORT" ` +
            `(in code, PrometheusSink.listen({ port })), or stop the process that listens on ${address}.`,
          { cause: error },
        );
      }
      throw error;
    }
    this.#address = this.#server.addr;
  }

  /**
   * Starts the server and returns the sink.
   *
   * @throws {Deno.errors.AddrInUse} when the address is already in use. The message names the address and how to choose another.
   * @throws {RangeError} when `port` is not an integer from 0 to 65535
   */
  static listen(options: PrometheusSinkOptions = {}): PrometheusSink {
    return new PrometheusSink(options);
  }

  /** The address the server listens on. */
  get hostname(): string {
    return this.#address.hostname;
  }

  /** The port the server listens on. With port 0 in the options, it is the port the system chose. */
  get port(): number {
    return this.#address.port;
  }

  /** The scrape URL: `http://HOST:PORT/metrics`. */
  get url(): string {
    return `http://${formatHostPort(this.hostname, this.port)}/metrics`;
  }

  /** Whether {@linkcode PrometheusSink.shutdown} has run. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Replaces the served batch with `batch`. Resolves to a failure with a
   * {@linkcode ClosedError} after shutdown, or with the error that rendering raised.
   */
  export(batch: Batch): Promise<ExportResult> {
    if (this.#closed) {
      return Promise.resolve({ ok: false, error: new ClosedError("export to", "Prometheus sink") });
    }
    try {
      this.#text = formatPrometheus(batch, this.#options);
      return Promise.resolve({ ok: true });
    } catch (error) {
      const failure = error instanceof Error ? error : new TypeError(String(error));
      return Promise.resolve({ ok: false, error: failure });
    }
  }

  /** Does nothing: the sink buffers nothing beyond the batch it serves. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  /** Stops the server, after requests in progress finish. Calling it again does nothing. */
  async shutdown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#server.shutdown();
  }

  /** Same as {@linkcode PrometheusSink.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #respond(request: Request): Response {
    const path = new URL(request.url).pathname;
    if (path !== "/metrics") {
      return textResponse(404, `Not found: ${path}. The Prometheus sink serves /metrics.\n`);
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return textResponse(405, `Method ${request.method} not allowed on /metrics; use GET.\n`, {
        allow: "GET, HEAD",
      });
    }
    return new Response(request.method === "HEAD" ? null : this.#text, {
      headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
    });
  }
}

function textResponse(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/** The response when the request handler throws, in place of Deno.serve's default, which prints. */
function serverError(error: unknown): Response {
  const message = error instanceof Error ? error.message : String(error);
  return textResponse(500, `Internal error in the Prometheus sink: ${message}\n`);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Invalid port ${port} for the Prometheus sink: expected an integer from 0 to 65535`,
    );
  }
}

/** Formats `HOST:PORT`, with an IPv6 host in brackets. */
function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

// ---------------------------------------------------------------------------
// Plugin
// ---------------------------------------------------------------------------

/**
 * Parses the command-line options of the `prometheus` sink, the text after
 * `prometheus:`: `HOST:PORT`, `:PORT` (default host), `HOST` (default port),
 * or nothing (127.0.0.1:9464). An IPv6 host goes in brackets: `[::1]:9464`.
 *
 * @throws {TypeError} when the text has none of these forms
 * @throws {RangeError} when the port is not an integer from 0 to 65535
 *
 * @example
 * ```ts
 * import { parsePrometheusAddress } from "./prometheus.ts";
 *
 * console.log(parsePrometheusAddress(":9100")); // { hostname: "127.0.0.1", port: 9100 }
 * console.log(parsePrometheusAddress("[::1]:9464")); // { hostname: "::1", port: 9464 }
 * ```
 */
export function parsePrometheusAddress(options = ""): { hostname: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*))(?::(\d*))?$/.exec(options);
  if (match === null || match[3] === "") {
    throw new TypeError(
      `Invalid options "${options}" for the prometheus sink: expected HOST:PORT, :PORT or HOST ` +
        `(an IPv6 host in brackets, as in [::1]:9464)`,
    );
  }

  const host = match[1] ?? match[2] ?? "";
  if (match[3] === undefined && /^\d+$/.test(host)) {
    throw new TypeError(
      `Invalid options "${options}" for the prometheus sink: a port alone is written ":${host}"`,
    );
  }

  const port = match[3] === undefined ? PROMETHEUS_DEFAULT_PORT : Number(match[3]);
  checkPort(port);
  return { hostname: host === "" ? PROMETHEUS_DEFAULT_HOSTNAME : host, port };
}

/**
 * The `prometheus` sink plugin: `--sink prometheus[:HOST:PORT]` serves the
 * latest metrics at `http://HOST:PORT/metrics`, on 127.0.0.1:9464 by default.
 * See {@linkcode parsePrometheusAddress} for the option forms.
 *
 * @example Create the sink as the collector does for `--sink prometheus::0`
 * ```ts
 * import { prometheusSinkPlugin } from "./prometheus.ts";
 *
 * const sink = await prometheusSinkPlugin.create(
 *   { resource: {}, signal: new AbortController().signal },
 *   ":0",
 * );
 * await sink.shutdown();
 * ```
 */
export const prometheusSinkPlugin: SinkPlugin = {
  kind: "sink",
  name: "prometheus",
  description:
    "Serves the latest metrics at http://HOST:PORT/metrics for Prometheus to scrape (options: HOST:PORT or :PORT; default 127.0.0.1:9464)",
  create: (_context: PluginContext, options?: string): PrometheusSink =>
    PrometheusSink.listen(parsePrometheusAddress(options)),
};

registry.register(prometheusSinkPlugin);

export default prometheusSinkPlugin;
