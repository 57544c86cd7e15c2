/**
 * The `file` sink: JSON Lines, one metric point or log record per line, each
 * with the resource, with size-based rotation.
 *
 * Each line is built whole and a batch is written with one write of the
 * whole buffer, repeated only for the rest of a short write, so lines from
 * one process never interleave or split. A crash or SIGKILL during a write
 * can still leave a partial last line without its newline. Readers should
 * skip a last line that does not end in `\n`, and the sink cuts such a tail
 * off when it opens the file again.
 *
 * @module
 */

import type {
  Attributes,
  AttributeValue,
  Batch,
  ExportResult,
  HistogramPoint,
  Metric,
  Sink,
  SinkPlugin,
} from "../plugin.ts";
import { registry } from "../registry.ts";

const NEWLINE = 0x0a;
const TAIL_SCAN_BYTES = 65_536;
const DEFAULT_KEEP = 5;

/**
 * Options of {@linkcode FileSink}.
 *
 * @example Rotate at 10 MiB and keep 3 rotated files
 * ```ts
 * import type { FileSinkOptions } from "./file.ts";
 *
 * const options: FileSinkOptions = { path: "out.jsonl", maxBytes: 10 * 1024 * 1024, keep: 3 };
 * ```
 */
export interface FileSinkOptions {
  /** The file to append to; created when missing. */
  path: string;
  /**
   * Rotate before a write would make the file larger than this many bytes;
   * 0 turns rotation off. A batch larger than this still goes into one file.
   *
   * @default 0
   */
  maxBytes?: number;
  /**
   * The number of rotated files kept (`PATH.1` newest to `PATH.KEEP`
   * oldest), besides `PATH` itself.
   *
   * @default 5
   */
  keep?: number;
}

/**
 * A failed write of the file sink. The message names the path and the remedy.
 *
 * @example
 * ```ts
 * import { FileSinkError } from "./file.ts";
 *
 * const error = new FileSinkError("/var/log/b.jsonl", "ENOSPC", "Failed to write");
 * console.log(error.code, error.path);
 * ```
 */
export class FileSinkError extends Error {
  override name = "FileSinkError";
  /** The file the sink writes. */
  readonly path: string;
  /** The errno name, such as `ENOSPC`, or `undefined` when unknown. */
  readonly code: string | undefined;

  /** Creates the error; `message` is the whole message. */
  constructor(path: string, code: string | undefined, message: string, options?: ErrorOptions) {
    super(message, options);
    this.path = path;
    this.code = code;
  }
}

/**
 * Appends batches to a file as JSON Lines (see {@linkcode encodeBatch} for
 * the records). The file is opened at the first export, so an unwritable path
 * or a full disk makes that export, and each later one until the cause is
 * fixed, resolve to `{ ok: false }` with a {@linkcode FileSinkError}; the
 * collector then goes on with its other sinks. {@linkcode FileSink.flush}
 * and {@linkcode FileSink.shutdown} call fsync.
 *
 * @example
 * ```ts
 * import { FileSink } from "./file.ts";
 *
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * const sink = new FileSink({ path });
 * const result = await sink.export({
 *   resource: { "service.name": "demo" },
 *   timeUnixNano: 0n,
 *   metrics: [],
 *   logs: [{ timeUnixNano: 0n, severity: "INFO", body: "hello", attributes: {} }],
 * });
 * await sink.shutdown();
 * console.log(result.ok, await Deno.readTextFile(path));
 * await Deno.remove(path);
 * ```
 */
export class FileSink implements Sink {
  /** The file the sink appends to. */
  readonly path: string;
  #maxBytes: number;
  #keep: number;
  #file: Deno.FsFile | undefined;
  #size = 0;
  #shutDown = false;
  #queue: Promise<unknown> = Promise.resolve();

  /**
   * Creates the sink; the file is opened at the first export.
   *
   * @throws {RangeError} when `maxBytes` or `keep` is not a non-negative integer
   * @throws {TypeError} when `path` is empty
   */
  constructor(options: FileSinkOptions) {
    if (options.path === "") throw new TypeError("Invalid file sink path: it is empty");
    this.path = options.path;
    this.#maxBytes = nonNegativeInteger(options.maxBytes ?? 0, "max-bytes");
    this.#keep = nonNegativeInteger(options.keep ?? DEFAULT_KEEP, "keep");
  }

  /** Appends the batch's records; resolves to a failure after shutdown or on a write error. */
  export(batch: Batch): Promise<ExportResult> {
    if (this.#shutDown) {
      const error = new FileSinkError(
        this.path,
        undefined,
        `The file sink for "${this.path}" is shut down`,
      );
      return Promise.resolve({ ok: false, error });
    }
    const lines = encodeBatch(batch).map((line) => new TextEncoder().encode(`${line}\n`));
    return this.#serialize(async () => {
      try {
        await this.#writeLines(lines);
        return { ok: true } as const;
      } catch (error) {
        this.#closeFile();
        return { ok: false, error: fileError(this.path, error) } as const;
      }
    });
  }

  /**
   * Writes the file's data to the disk (fdatasync).
   *
   * @throws {FileSinkError} when the sync fails
   */
  flush(): Promise<void> {
    return this.#serialize(() => this.#sync());
  }

  /** Syncs and closes the file; later exports fail. Calling it again does nothing. */
  shutdown(): Promise<void> {
    if (this.#shutDown) return this.#queue.then(() => {});
    this.#shutDown = true;
    return this.#serialize(async () => {
      try {
        await this.#sync();
      } finally {
        this.#closeFile();
      }
    });
  }

  /** Same as {@linkcode FileSink.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #serialize<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(task);
    this.#queue = result.catch(() => {});
    return result;
  }

  async #sync(): Promise<void> {
    if (this.#file === undefined) return;
    try {
      await this.#file.syncData();
    } catch (error) {
      throw fileError(this.path, error);
    }
  }

  async #writeLines(lines: Uint8Array[]): Promise<void> {
    const file = await this.#open();
    let chunk: Uint8Array[] = [];
    let chunkBytes = 0;
    for (const line of lines) {
      const pending = this.#size + chunkBytes;
      if (this.#maxBytes > 0 && pending > 0 && pending + line.length > this.#maxBytes) {
        await this.#writeChunk(this.#file ?? file, chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
        await this.#rotate();
      }
      chunk.push(line);
      chunkBytes += line.length;
    }
    await this.#writeChunk(this.#file ?? file, chunk, chunkBytes);
  }

  /** Writes the lines with one write of the whole buffer; on failure, cuts the file back to its old size. */
  async #writeChunk(file: Deno.FsFile, lines: Uint8Array[], bytes: number): Promise<void> {
    if (bytes === 0) return;
    const buffer = new Uint8Array(bytes);
    let offset = 0;
    for (const line of lines) {
      buffer.set(line, offset);
      offset += line.length;
    }

    let written = 0;
    try {
      while (written < buffer.length) written += await file.write(buffer.subarray(written));
    } catch (error) {
      if (written > 0) await file.truncate(this.#size).catch(() => {});
      throw error;
    }
    this.#size += buffer.length;
  }

  async #open(): Promise<Deno.FsFile> {
    if (this.#file !== undefined && await this.#stillAtPath(this.#file)) return this.#file;
    this.#closeFile();
    const file = await Deno.open(this.path, { read: true, append: true, create: true });
    try {
      this.#size = await cutPartialLine(file);
    } catch (error) {
      file.close();
      throw error;
    }
    this.#file = file;
    return file;
  }

  // Whether PATH still names the open file. After a `mv` or `rm` (logrotate
  // without copytruncate), the sink reopens PATH instead of writing on into
  // the moved or deleted file.
  async #stillAtPath(file: Deno.FsFile): Promise<boolean> {
    try {
      const [open, named] = await Promise.all([file.stat(), Deno.stat(this.path)]);
      return open.ino === named.ino && open.dev === named.dev;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      throw error;
    }
  }

  /** Moves PATH to PATH.1, PATH.1 to PATH.2 and so on, dropping the oldest, and opens a new PATH. */
  async #rotate(): Promise<void> {
    await this.#sync();
    this.#closeFile();
    // PATH may be gone (removed by hand or by another tool): then there is nothing to move.
    if (this.#keep === 0) {
      await Deno.remove(this.path).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    } else {
      for (let index = this.#keep - 1; index >= 1; index--) {
        await renameIfPresent(`${this.path}.${index}`, `${this.path}.${index + 1}`);
      }
      await renameIfPresent(this.path, `${this.path}.1`);
    }
    await this.#open();
  }

  #closeFile(): void {
    try {
      this.#file?.close();
    } catch {
      // Already closed: nothing to release.
    }
    this.#file = undefined;
  }
}

/**
 * Encodes a batch as JSON Lines records without newlines: one per metric
 * point, then one per log record. Each record has `type` (`metric` or
 * `log`), `time` (ISO 8601), `timeUnixNano` (a decimal string), the
 * `resource`, and:
 *
 * - metrics: `name`, `kind`, `unit`, `attributes`, `startTimeUnixNano` for
 *   counters and histograms, and `value` or, for histograms, `count`, `sum`
 *   and `buckets` as in the metric model;
 * - logs: `severity`, `body` and `attributes`.
 *
 * A `bigint` attribute becomes a decimal string. The format is the file
 * sink's and `stdout:json`'s.
 *
 * @example
 * ```ts
 * import { encodeBatch } from "./file.ts";
 *
 * const [line] = encodeBatch({
 *   resource: {},
 *   timeUnixNano: 0n,
 *   metrics: [{ kind: "gauge", name: "g", description: "", unit: "1", points: [{ attributes: {}, value: 1 }] }],
 *   logs: [],
 * });
 * console.log(JSON.parse(line!).value); // 1
 * ```
 */
export function encodeBatch(batch: Batch): string[] {
  const lines: string[] = [];
  const time = isoTime(batch.timeUnixNano);
  const timeUnixNano = String(batch.timeUnixNano);
  const resource = jsonAttributes(batch.resource);

  for (const metric of batch.metrics) {
    const common = {
      type: "metric",
      time,
      timeUnixNano,
      resource,
      name: metric.name,
      kind: metric.kind,
      unit: metric.unit,
      ...startTime(metric),
    };
    for (const point of metric.points) {
      const values = "buckets" in point ? histogramFields(point) : { value: point.value };
      lines.push(
        JSON.stringify({ ...common, attributes: jsonAttributes(point.attributes), ...values }),
      );
    }
  }

  for (const log of batch.logs) {
    lines.push(JSON.stringify({
      type: "log",
      time: isoTime(log.timeUnixNano),
      timeUnixNano: String(log.timeUnixNano),
      resource,
      severity: log.severity,
      body: log.body,
      attributes: jsonAttributes(log.attributes),
    }));
  }
  return lines;
}

/**
 * Parses the options of `--sink file:OPTIONS`: a path, then optionally
 * `,max-bytes=N` and `,keep=K`. Commas in the path are kept unless what
 * follows one is a known `key=value` option.
 *
 * @throws {TypeError} when the path is missing or an option is unknown or invalid
 *
 * @example
 * ```ts
 * import { parseFileSinkOptions } from "./file.ts";
 *
 * console.log(parseFileSinkOptions("out.jsonl,max-bytes=10485760,keep=3"));
 * // { path: "out.jsonl", maxBytes: 10485760, keep: 3 }
 * ```
 */
export function parseFileSinkOptions(text: string | undefined): FileSinkOptions {
  const usage = "expected file:PATH[,max-bytes=N][,keep=K]";
  const parts = (text ?? "").split(",");
  const options: { maxBytes?: number; keep?: number } = {};
  while (parts.length > 1 && /^[a-z-]+=/.test(parts[parts.length - 1]!)) {
    const [key, value] = parts.pop()!.split("=", 2) as [string, string];
    if (!/^\d+$/.test(value)) {
      throw new TypeError(`Invalid file sink option "${key}=${value}": ${usage}, with integers`);
    }
    if (key === "max-bytes") options.maxBytes = Number(value);
    else if (key === "keep") options.keep = Number(value);
    else throw new TypeError(`Unknown file sink option "${key}": ${usage}`);
  }
  const path = parts.join(",");
  if (path === "") throw new TypeError(`Missing file sink path: ${usage}`);
  return { path, ...options };
}

/**
 * The `file` sink plugin: `--sink file:PATH[,max-bytes=N][,keep=K]`.
 *
 * @example
 * ```ts
 * import { fileSinkPlugin } from "./file.ts";
 *
 * console.log(fileSinkPlugin.name, fileSinkPlugin.description);
 * ```
 */
export const fileSinkPlugin: SinkPlugin = {
  kind: "sink",
  name: "file",
  description:
    "JSON Lines to a file, one metric point or log record per line: file:PATH[,max-bytes=N][,keep=K]",
  create: (_context, options) => new FileSink(parseFileSinkOptions(options)),
};

registry.register(fileSinkPlugin);

function startTime(metric: Metric): { startTimeUnixNano?: string } {
  return metric.kind === "gauge" ? {} : { startTimeUnixNano: String(metric.startTimeUnixNano) };
}

function histogramFields(point: HistogramPoint): Record<string, unknown> {
  return {
    count: point.count,
    ...(point.sum === undefined ? {} : { sum: point.sum }),
    buckets: point.buckets,
  };
}

function jsonAttributes(attributes: Attributes): Record<string, Exclude<AttributeValue, bigint>> {
  const result: Record<string, Exclude<AttributeValue, bigint>> = {};
  for (const [key, value] of Object.entries(attributes)) {
    result[key] = typeof value === "bigint" ? String(value) : value;
  }
  return result;
}

function isoTime(unixNano: bigint): string {
  return new Date(Number(unixNano / 1_000_000n)).toISOString();
}

/** Cuts a last line that has no newline off the file and returns the file's new size. */
async function cutPartialLine(file: Deno.FsFile): Promise<number> {
  const size = (await file.stat()).size;
  let end = size;
  const block = new Uint8Array(TAIL_SCAN_BYTES);
  while (end > 0) {
    const start = Math.max(0, end - block.length);
    const view = block.subarray(0, end - start);
    await file.seek(start, Deno.SeekMode.Start);
    await readFully(file, view);
    const newline = view.lastIndexOf(NEWLINE);
    if (newline >= 0) {
      end = start + newline + 1;
      break;
    }
    end = start;
  }
  if (end < size) await file.truncate(end);
  return end;
}

async function readFully(file: Deno.FsFile, view: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < view.length) {
    const read = await file.read(view.subarray(offset));
    if (read === null) throw new TypeError("The file shrank while its last line was checked");
    offset += read;
  }
}

async function renameIfPresent(from: string, to: string): Promise<void> {
  try {
    await Deno.rename(from, to);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

function nonNegativeInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(
      `Invalid file sink option ${name}=${value}: expected a non-negative integer`,
    );
  }
  return value;
}

function fileError(path: string, error: unknown): FileSinkError {
  if (error instanceof FileSinkError) return error;
  const code = (error as { code?: unknown }).code;
  const errno = typeof code === "string" ? code : undefined;
  const remedy = REMEDIES[errno ?? ""] ?? "check the path and the file system";
  const detail = error instanceof Error ? error.message : String(error);
  return new FileSinkError(
    path,
    errno,
    `Failed to write "${path}": ${detail} (${remedy}, or point the file sink at another path)`,
    { cause: error },
  );
}

const REMEDIES: Record<string, string> = {
  ENOSPC: "free space on its file system or lower max-bytes and keep",
  EDQUOT: "raise the disk quota or free space",
  EACCES: "make the file and its directory writable for this user",
  EPERM: "make the file and its directory writable for this user",
  ENOENT: "create the directory",
  ENOTDIR: "fix the path, because a part of it is not a directory",
  EROFS: "choose a path on a writable file system, because this one is read-only",
  EISDIR: "name a file, because the path is a directory",
};
