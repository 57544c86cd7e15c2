/**
 * The `memory` sink: keeps the batches it receives in an array, for tests
 * and for programs that embed the collector and read its output directly.
 *
 * @module
 */

import type { Batch, ExportResult, Sink, SinkPlugin } from "../plugin.ts";
import { registry } from "../registry.ts";

/**
 * Options of {@linkcode MemorySink}.
 *
 * @example
 * ```ts
 * import type { MemorySinkOptions } from "./memory.ts";
 *
 * const options: MemorySinkOptions = { maxBatches: 100 };
 * ```
 */
export interface MemorySinkOptions {
  /**
   * The number of batches kept; the oldest go first when it is reached.
   *
   * @default Infinity
   */
  maxBatches?: number;
}

/**
 * A sink that keeps every batch in {@linkcode MemorySink.batches}. Export
 * after shutdown resolves to a failure, as the sink contract requires.
 *
 * @example Wait for the collector's second batch
 * ```ts
 * import { MemorySink } from "./memory.ts";
 *
 * const sink = new MemorySink();
 * await sink.export({ resource: {}, timeUnixNano: 0n, metrics: [], logs: [] });
 * console.log(sink.batches.length); // 1
 * await sink.shutdown();
 * ```
 */
export class MemorySink implements Sink {
  /** The batches received, oldest first. */
  readonly batches: Batch[] = [];
  #maxBatches: number;
  #exported = 0;
  #shutDown = false;
  #flushes = 0;
  #waiters: { count: number; resolve: () => void }[] = [];

  /**
   * Creates an empty sink.
   *
   * @throws {RangeError} when `maxBatches` is not a positive integer or Infinity
   */
  constructor(options: MemorySinkOptions = {}) {
    const maxBatches = options.maxBatches ?? Infinity;
    if (maxBatches !== Infinity && (!Number.isInteger(maxBatches) || maxBatches < 1)) {
      throw new RangeError(`Invalid maxBatches ${maxBatches}: expected a positive integer`);
    }
    this.#maxBatches = maxBatches;
  }

  /** The number of batches exported so far, including those no longer kept. */
  get exported(): number {
    return this.#exported;
  }

  /** The number of times {@linkcode MemorySink.flush} ran, shutdown included. */
  get flushes(): number {
    return this.#flushes;
  }

  /** Whether {@linkcode MemorySink.shutdown} has run. */
  get isShutDown(): boolean {
    return this.#shutDown;
  }

  /** Appends the batch; fails after shutdown. */
  export(batch: Batch): Promise<ExportResult> {
    if (this.#shutDown) {
      return Promise.resolve({ ok: false, error: new TypeError("The memory sink is shut down") });
    }
    this.batches.push(batch);
    if (this.batches.length > this.#maxBatches) this.batches.shift();
    this.#exported++;
    this.#waiters = this.#waiters.filter((waiter) => {
      if (this.#exported < waiter.count) return true;
      waiter.resolve();
      return false;
    });
    return Promise.resolve({ ok: true });
  }

  /**
   * Resolves once `count` batches in total have been exported. With a
   * `signal`, rejects with the signal's reason when it aborts first.
   */
  waitForBatches(count: number, signal?: AbortSignal): Promise<void> {
    if (this.#exported >= count) return Promise.resolve();
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const waiter = { count, resolve };
      this.#waiters.push(waiter);
      signal?.addEventListener("abort", () => {
        this.#waiters = this.#waiters.filter((other) => other !== waiter);
        reject(signal.reason);
      }, { once: true });
    });
  }

  /** Counts the call; there is nothing to deliver. */
  flush(): Promise<void> {
    this.#flushes++;
    return Promise.resolve();
  }

  /** Flushes and marks the sink shut down; the batches stay readable. */
  async shutdown(): Promise<void> {
    if (this.#shutDown) return;
    await this.flush();
    this.#shutDown = true;
  }

  /** Same as {@linkcode MemorySink.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

/**
 * The `memory` sink plugin. Options: `max-batches=N`, the number of batches
 * kept (default: all).
 *
 * @example
 * ```ts
 * import { memorySinkPlugin, MemorySink } from "./memory.ts";
 *
 * const sink = await memorySinkPlugin.create(
 *   { resource: {}, signal: new AbortController().signal },
 *   "max-batches=10",
 * );
 * console.log(sink instanceof MemorySink); // true
 * ```
 */
export const memorySinkPlugin: SinkPlugin = {
  kind: "sink",
  name: "memory",
  description: "Keeps batches in memory (for tests and embedding; prints nothing)",
  create: (_context, options) => new MemorySink(parseMemoryOptions(options)),
};

registry.register(memorySinkPlugin);

function parseMemoryOptions(text: string | undefined): MemorySinkOptions {
  if (text === undefined || text === "") return {};
  const match = /^max-batches=(\d+)$/.exec(text);
  if (match === null) {
    throw new TypeError(
      `Invalid memory sink options "${text}": expected max-batches=N or nothing`,
    );
  }
  return { maxBatches: Number(match[1]) };
}
