/**
 * The `stdout` sink: diagnostic output for people watching a terminal or a
 * log. Its format may change between releases; use the `file` sink or
 * `stdout:json` for anything a program reads.
 *
 * - On a terminal, the view is redrawn after each batch: counters as rates
 *   per second, gauges as values, histograms as bars the way bpftrace prints
 *   them, and the latest events below.
 * - Otherwise (a pipe or file), each metric point and each event is one
 *   plain text line.
 * - With `stdout:json`, each is one JSON line, as the file sink writes them.
 *
 * @module
 */

import type {
  Attributes,
  Batch,
  ExplicitBuckets,
  ExportResult,
  HistogramPoint,
  Log2Buckets,
  LogRecord,
  Metric,
  NumberPoint,
  Sink,
  SinkPlugin,
} from "../plugin.ts";
import { registry } from "../registry.ts";
import { encodeBatch } from "./file.ts";

const DEFAULT_TOP = 10;
const DEFAULT_EVENT_ROWS = 10;
const BAR_WIDTH = 52;
const CLEAR_SCREEN = "\x1b[H\x1b[2J";

/**
 * The output format of the stdout sink: `table` (the redrawn view), `text`
 * (one line per point or event) or `json` (JSON Lines).
 *
 * @example
 * ```ts
 * import type { StdoutFormat } from "./stdout.ts";
 *
 * const format: StdoutFormat = "json";
 * ```
 */
export type StdoutFormat = "table" | "text" | "json";

/**
 * Options of {@linkcode StdoutSink}.
 *
 * @example Plain lines into a buffer, for a test
 * ```ts
 * import type { StdoutSinkOptions } from "./stdout.ts";
 *
 * const chunks: Uint8Array[] = [];
 * const options: StdoutSinkOptions = {
 *   format: "text",
 *   output: { write: (bytes) => Promise.resolve(chunks.push(bytes.slice()) && bytes.length) },
 * };
 * ```
 */
export interface StdoutSinkOptions {
  /** The format. @default "table" when `output` is a terminal, else "text" */
  format?: StdoutFormat;
  /** Series shown per metric in the table, the largest first. @default 10 */
  top?: number;
  /** Latest events shown below the table. @default 10 */
  eventRows?: number;
  /** The destination, and whether it is a terminal. @default Deno.stdout */
  output?: { write(bytes: Uint8Array): Promise<number>; isTerminal?(): boolean };
}

/**
 * Writes batches to standard output (see the module documentation for the
 * formats). The output is diagnostic and its format may change.
 *
 * @example
 * ```ts
 * import { StdoutSink } from "./stdout.ts";
 *
 * await using sink = new StdoutSink({ format: "text" });
 * await sink.export({
 *   resource: {},
 *   timeUnixNano: 0n,
 *   metrics: [{ kind: "gauge", name: "demo", description: "", unit: "1", points: [{ attributes: {}, value: 1 }] }],
 *   logs: [],
 * });
 * ```
 */
export class StdoutSink implements Sink {
  /** The format in use. */
  readonly format: StdoutFormat;
  #output: { write(bytes: Uint8Array): Promise<number> };
  #table: TableView;
  #shutDown = false;
  #queue: Promise<unknown> = Promise.resolve();

  /**
   * Creates the sink.
   *
   * @throws {RangeError} when `top` or `eventRows` is not a positive integer
   */
  constructor(options: StdoutSinkOptions = {}) {
    const output = options.output ?? Deno.stdout;
    const terminal = output.isTerminal?.() ?? false;
    this.format = options.format ?? (terminal ? "table" : "text");
    this.#output = output;
    this.#table = new TableView(
      positiveInteger(options.top ?? DEFAULT_TOP, "top"),
      positiveInteger(options.eventRows ?? DEFAULT_EVENT_ROWS, "event rows"),
    );
  }

  /** Writes the batch in the sink's format; resolves to a failure after shutdown or when the write fails. */
  export(batch: Batch): Promise<ExportResult> {
    if (this.#shutDown) {
      return Promise.resolve({ ok: false, error: new TypeError("The stdout sink is shut down") });
    }
    const text = this.#render(batch);
    const result = this.#queue.then(async (): Promise<ExportResult> => {
      try {
        await writeAll(this.#output, new TextEncoder().encode(text));
        return { ok: true };
      } catch (error) {
        return { ok: false, error: error instanceof Error ? error : new TypeError(String(error)) };
      }
    });
    this.#queue = result;
    return result;
  }

  /** Waits for pending writes; standard output has no buffer of its own here. */
  async flush(): Promise<void> {
    await this.#queue;
  }

  /** Waits for pending writes; later exports fail. */
  async shutdown(): Promise<void> {
    this.#shutDown = true;
    await this.flush();
  }

  /** Same as {@linkcode StdoutSink.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #render(batch: Batch): string {
    if (this.format === "json") return encodeBatch(batch).map((line) => `${line}\n`).join("");
    if (this.format === "text") return renderText(batch);
    return CLEAR_SCREEN + this.#table.render(batch);
  }
}

/**
 * Parses the options of `--sink stdout:OPTIONS`: comma-separated `json`,
 * `text` or `table`, and `top=N`.
 *
 * @throws {TypeError} for an unknown option or an invalid number
 *
 * @example
 * ```ts
 * import { parseStdoutOptions } from "./stdout.ts";
 *
 * console.log(parseStdoutOptions("table,top=5")); // { format: "table", top: 5 }
 * ```
 */
export function parseStdoutOptions(text: string | undefined): StdoutSinkOptions {
  const options: { format?: StdoutFormat; top?: number } = {};
  for (const part of (text ?? "").split(",")) {
    if (part === "") continue;
    if (part === "json" || part === "text" || part === "table") {
      options.format = part;
      continue;
    }
    const top = /^top=(\d+)$/.exec(part);
    if (top === null) {
      throw new TypeError(
        `Invalid stdout sink option "${part}": expected json, text, table or top=N, separated by commas`,
      );
    }
    options.top = Number(top[1]);
  }
  return options;
}

/**
 * The `stdout` sink plugin: `--sink stdout[:json|text|table][,top=N]`.
 *
 * @example
 * ```ts
 * import { stdoutSinkPlugin } from "./stdout.ts";
 *
 * console.log(stdoutSinkPlugin.name); // "stdout"
 * ```
 */
export const stdoutSinkPlugin: SinkPlugin = {
  kind: "sink",
  name: "stdout",
  description:
    "Diagnostic output: a redrawn table on a terminal, else text lines; stdout:json for JSON Lines",
  create: (_context, options) => new StdoutSink(parseStdoutOptions(options)),
};

registry.register(stdoutSinkPlugin);

/**
 * Renders a batch as plain lines: `TIME NAME{ATTRIBUTES} VALUE UNIT` per
 * point, and `TIME SEVERITY BODY {ATTRIBUTES}` per event.
 *
 * @example
 * ```ts
 * import { renderText } from "./stdout.ts";
 *
 * const text = renderText({
 *   resource: {},
 *   timeUnixNano: 0n,
 *   metrics: [{ kind: "gauge", name: "load", description: "", unit: "1", points: [{ attributes: { period: "1m" }, value: 0.5 }] }],
 *   logs: [],
 * });
 * console.log(text); // "1970-01-01T00:00:00.000Z load{period=1m} 0.5 1\n"
 * ```
 */
export function renderText(batch: Batch): string {
  const time = isoTime(batch.timeUnixNano);
  let text = "";
  for (const metric of batch.metrics) {
    for (const point of metric.points) {
      const series = `${metric.name}${braces(point.attributes)}`;
      const value = "buckets" in point ? histogramSummary(point) : `${point.value} ${metric.unit}`;
      text += `${time} ${series} ${value}\n`;
    }
  }
  for (const log of batch.logs) text += `${logLine(log)}\n`;
  return text;
}

/**
 * Draws log2 buckets as bpftrace's `hist()` prints them: one row per bucket
 * from the first to the last non-empty one, labelled `[0]`, `[1]`,
 * `[2, 4)`, `[4, 8)`, ... with K, M, G, T, P and E for powers of 1024, and a
 * bar of `@` scaled to the largest count.
 *
 * @example
 * ```ts
 * import { drawLog2Histogram } from "./stdout.ts";
 *
 * console.log(drawLog2Histogram({ kind: "log2", counts: [0, 3, 10, 123] }).join("\n"));
 * // [1]                    3 |@                                                   |
 * // [2, 4)                10 |@@@@                                                |
 * // [4, 8)               123 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
 * ```
 */
export function drawLog2Histogram(buckets: Log2Buckets): string[] {
  const labels = buckets.counts.map((_, k) => log2Label(k));
  return drawBars(labels, buckets.counts);
}

/**
 * Draws explicit buckets as bars, labelled `(-inf, b0]`, `(b0, b1]`, ...,
 * `(bn, +inf)`, from the first to the last non-empty bucket.
 *
 * @example
 * ```ts
 * import { drawExplicitHistogram } from "./stdout.ts";
 *
 * console.log(drawExplicitHistogram({ kind: "explicit", bounds: [10, 20], counts: [1, 2, 0] }).join("\n"));
 * ```
 */
export function drawExplicitHistogram(buckets: ExplicitBuckets): string[] {
  const { bounds } = buckets;
  const labels = buckets.counts.map((_, i) => {
    const lower = i === 0 ? "-inf" : String(bounds[i - 1]);
    return i < bounds.length ? `(${lower}, ${bounds[i]}]` : `(${lower}, +inf)`;
  });
  return drawBars(labels, buckets.counts);
}

/** The redrawn terminal view; it keeps the previous batch's counters to show rates. */
class TableView {
  #top: number;
  #eventRows: number;
  #previous = new Map<string, number>();
  #previousTime: bigint | undefined;
  #events: string[] = [];

  constructor(top: number, eventRows: number) {
    this.#top = top;
    this.#eventRows = eventRows;
  }

  render(batch: Batch): string {
    const seconds = this.#previousTime === undefined
      ? undefined
      : Number(batch.timeUnixNano - this.#previousTime) / 1e9;
    const lines = [header(batch)];
    const current = new Map<string, number>();

    for (const metric of batch.metrics) {
      lines.push("", `${metric.name}  ${this.#unitLabel(metric, seconds)}`);
      if (metric.kind === "histogram") {
        for (const point of metric.points.slice(0, this.#top)) lines.push(...histogramRows(point));
        continue;
      }
      const rows = metric.points.map((point) => this.#row(metric, point, seconds, current));
      rows.sort((a, b) => b.sortValue - a.sortValue);
      for (const row of rows.slice(0, this.#top)) lines.push(row.text);
      if (rows.length > this.#top) lines.push(`  ... ${rows.length - this.#top} more series`);
    }

    this.#previous = current;
    this.#previousTime = batch.timeUnixNano;
    this.#events.push(...batch.logs.map(logLine));
    this.#events.splice(0, Math.max(0, this.#events.length - this.#eventRows));
    if (this.#events.length > 0) lines.push("", "Latest events:", ...this.#events);
    return `${lines.join("\n")}\n`;
  }

  #unitLabel(metric: Metric, seconds: number | undefined): string {
    if (metric.kind !== "counter") return `(${metric.kind}, ${metric.unit})`;
    return seconds === undefined
      ? `(counter, ${metric.unit} total)`
      : `(counter, ${metric.unit}/s)`;
  }

  #row(
    metric: Metric,
    point: NumberPoint,
    seconds: number | undefined,
    current: Map<string, number>,
  ): { text: string; sortValue: number } {
    if (metric.kind !== "counter") {
      return {
        text: `  ${formatNumber(point.value).padStart(14)}  ${spaced(point.attributes)}`,
        sortValue: point.value,
      };
    }
    const key = `${metric.name}${braces(point.attributes)}`;
    current.set(key, point.value);
    const series = spaced(point.attributes);
    if (seconds === undefined) {
      return {
        text: `  ${formatNumber(point.value).padStart(14)}  ${series}`,
        sortValue: point.value,
      };
    }

    const previous = this.#previous.get(key) ?? 0;
    // A counter below its previous value restarted, so its rate over this interval is unknown.
    if (point.value < previous) {
      return { text: `  ${"reset".padStart(14)}  ${series}`, sortValue: 0 };
    }
    const rate = (point.value - previous) / seconds;
    return { text: `  ${formatNumber(rate).padStart(14)}  ${series}`, sortValue: rate };
  }
}

function header(batch: Batch): string {
  const service = batch.resource["service.name"] ?? "bpfscope";
  const host = batch.resource["host.name"] ?? "";
  return `${service} on ${host}  ${isoTime(batch.timeUnixNano)}`;
}

function histogramRows(point: HistogramPoint): string[] {
  const rows = [
    `  ${spaced(point.attributes) || "(no attributes)"}  count ${point.count}${
      point.sum === undefined ? "" : `, sum ${point.sum}`
    }`,
  ];
  const bars = point.buckets.kind === "log2"
    ? drawLog2Histogram(point.buckets)
    : drawExplicitHistogram(point.buckets);
  return [...rows, ...bars.map((bar) => `  ${bar}`)];
}

function drawBars(labels: readonly string[], counts: readonly number[]): string[] {
  const first = counts.findIndex((count) => count > 0);
  if (first < 0) return [];
  let last = counts.length - 1;
  while (counts[last] === 0) last--;

  const max = Math.max(...counts);
  const rows: string[] = [];
  for (let i = first; i <= last; i++) {
    const count = counts[i]!;
    // Rounded down, so only the largest buckets get a full bar.
    const width = Math.floor((count * BAR_WIDTH) / max);
    rows.push(
      `${labels[i]!.padEnd(16)}${String(count).padStart(8)} |${
        "@".repeat(width).padEnd(BAR_WIDTH)
      }|`,
    );
  }
  return rows;
}

function log2Label(k: number): string {
  if (k === 0) return "[0]";
  if (k === 1) return "[1]";
  return `[${withSuffix(k - 1)}, ${withSuffix(k)})`;
}

/** Writes 2^exponent with a suffix for powers of 1024, as bpftrace does: 1K, 2M. */
function withSuffix(exponent: number): string {
  const suffixes = ["", "K", "M", "G", "T", "P", "E"];
  const index = Math.min(Math.floor(exponent / 10), suffixes.length - 1);
  return `${2 ** (exponent - index * 10)}${suffixes[index]}`;
}

function histogramSummary(point: HistogramPoint): string {
  const sum = point.sum === undefined ? "" : ` sum=${point.sum}`;
  const buckets = point.buckets.kind === "log2"
    ? `log2=[${point.buckets.counts.join(",")}]`
    : `bounds=[${point.buckets.bounds.join(",")}] counts=[${point.buckets.counts.join(",")}]`;
  return `count=${point.count}${sum} ${buckets}`;
}

function logLine(log: LogRecord): string {
  const attributes = spaced(log.attributes);
  return `${isoTime(log.timeUnixNano)} ${log.severity} ${printable(log.body)}${
    attributes === "" ? "" : `  ${attributes}`
  }`;
}

function braces(attributes: Attributes): string {
  const text = Object.entries(attributes).map(([key, value]) =>
    `${printable(key)}=${printable(String(value))}`
  )
    .join(",");
  return text === "" ? "" : `{${text}}`;
}

function spaced(attributes: Attributes): string {
  return Object.entries(attributes).map(([key, value]) =>
    `${printable(key)}=${printable(String(value))}`
  )
    .join(" ");
}

// Any process can name itself with terminal escape sequences, and event
// attributes carry such names: control characters are shown escaped.
function printable(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f-\u009f]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function formatNumber(value: number): string {
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toPrecision(4);
}

function isoTime(unixNano: bigint): string {
  return new Date(Number(unixNano / 1_000_000n)).toISOString();
}

async function writeAll(
  output: { write(bytes: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await output.write(bytes.subarray(written));
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Invalid stdout sink ${name} ${value}: expected a positive integer`);
  }
  return value;
}
