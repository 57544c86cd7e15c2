/**
 * Delivery of encoded OTLP requests for one signal: a bounded queue, one
 * request in flight at a time (so cumulative values arrive in order), retries
 * with exponential backoff and jitter, and `Retry-After`.
 *
 * @module
 */

import type { ExportResult } from "../plugin.ts";
import type { OtlpSignal, SignalConfig } from "./_otlp_config.ts";
import type { PartialSuccess } from "./_otlp_encode.ts";

/**
 * How failed requests are retried.
 *
 * @example Fast retries, as in tests
 * ```ts
 * import type { OtlpRetryOptions } from "./otlp.ts";
 *
 * const retry: OtlpRetryOptions = { initialBackoffMs: 10, maxBackoffMs: 50, maxElapsedMs: 2000 };
 * ```
 */
export interface OtlpRetryOptions {
  /**
   * The delay before the first retry, in milliseconds.
   *
   * @default {1000}
   */
  initialBackoffMs?: number;
  /**
   * The maximum delay between two attempts, in milliseconds.
   *
   * @default {5000}
   */
  maxBackoffMs?: number;
  /**
   * The factor by which the delay grows after each retry.
   *
   * @default {1.5}
   */
  multiplier?: number;
  /**
   * The random spread of each delay: 0.2 gives delays between 80 % and 120 %
   * of the computed one.
   *
   * @default {0.2}
   */
  jitter?: number;
  /**
   * The time limit for delivering one batch, counted from the `export` call
   * and including the time it waits in the queue, in milliseconds. No attempt
   * starts after it; an attempt that started before it may run for up to the
   * request timeout.
   *
   * @default {30000}
   */
  maxElapsedMs?: number;
}

/** The retry settings with every default filled in. */
export type RetryPolicy = Required<OtlpRetryOptions>;

/** The default retry settings: those of the OpenTelemetry JavaScript exporters, plus a time limit. */
export const DEFAULT_RETRY: RetryPolicy = {
  initialBackoffMs: 1000,
  maxBackoffMs: 5000,
  multiplier: 1.5,
  jitter: 0.2,
  maxElapsedMs: 30_000,
};

/**
 * Counters of one signal's requests.
 *
 * @example
 * ```ts
 * import type { OtlpSignalStats } from "./otlp.ts";
 *
 * function lost(stats: OtlpSignalStats): number {
 *   return stats.failed + stats.dropped;
 * }
 * ```
 */
export interface OtlpSignalStats {
  /** HTTP requests sent, retries included. */
  requests: number;
  /** Attempts that were retried after a retryable failure. */
  retries: number;
  /** Batches the collector accepted (in whole or in part). */
  delivered: number;
  /** Batches given up: rejected, out of time, or still waiting at shutdown. */
  failed: number;
  /** Batches dropped unsent because the retry queue was full. */
  dropped: number;
  /** Data points or log records that the collector reported as rejected in a partial success. */
  rejectedItems: number;
  /** The last partial-success message from the collector, or "" when there was none. */
  lastRejectionMessage: string;
}

/**
 * The error of a batch that the OTLP sink could not deliver.
 *
 * @example
 * ```ts
 * import { OtlpExportError } from "./otlp.ts";
 *
 * const error = new OtlpExportError("The collector rejected the request", {
 *   signal: "metrics",
 *   url: "http://localhost:4318/v1/metrics",
 *   status: 400,
 *   attempts: 1,
 * });
 * console.log(error.status); // 400
 * ```
 */
export class OtlpExportError extends Error {
  override name = "OtlpExportError";
  /** The signal of the request: `metrics` or `logs`. */
  readonly signal: OtlpSignal;
  /** The URL the request was sent to. */
  readonly url: string;
  /** The HTTP status of the last response, or undefined when there was none. */
  readonly status: number | undefined;
  /** The HTTP requests made for the batch (0 when it was never sent). */
  readonly attempts: number;

  /** Creates the error. `details` identifies the failed request. */
  constructor(
    message: string,
    details: { signal: OtlpSignal; url: string; status?: number; attempts: number },
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.signal = details.signal;
    this.url = details.url;
    this.status = details.status;
    this.attempts = details.attempts;
  }
}

/** Settings of a sender besides its signal's configuration. */
export interface SenderOptions {
  signal: OtlpSignal;
  config: SignalConfig;
  retry: RetryPolicy;
  /** The maximum number of batches that wait behind the one being sent. */
  maxQueuedBatches: number;
  /** Decodes the body of a 2xx response. */
  readPartialSuccess: (body: Uint8Array) => PartialSuccess | undefined;
}

/** HTTP statuses that OTLP/HTTP marks as retryable. */
const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/** The maximum length of a collector's error message quoted in an error. */
const MAX_MESSAGE_LENGTH = 500;

interface QueuedBatch {
  body: Uint8Array<ArrayBuffer>;
  /** `performance.now()` after which no attempt starts. */
  deadline: number;
  resolve: (result: ExportResult) => void;
}

type AttemptOutcome =
  | { kind: "delivered" }
  | { kind: "retry"; reason: string; status?: number; retryAfterMs?: number }
  | { kind: "failed"; error: Error };

/** Sends one signal's requests in order, retrying each until it succeeds or runs out of time. */
export class OtlpSender {
  readonly stats: OtlpSignalStats = {
    requests: 0,
    retries: 0,
    delivered: 0,
    failed: 0,
    dropped: 0,
    rejectedItems: 0,
    lastRejectionMessage: "",
  };
  readonly #options: SenderOptions;
  readonly #queue: QueuedBatch[] = [];
  #draining: Promise<void> | undefined;
  /** Aborted when the sink stops waiting: cancels the request in flight and the backoff sleep. */
  readonly #abort = new AbortController();
  #closed = false;

  constructor(options: SenderOptions) {
    this.#options = options;
  }

  /** Queues an encoded request. Resolves when it is delivered or given up, and never rejects. */
  send(body: Uint8Array): Promise<ExportResult> {
    if (this.#closed) return Promise.resolve(this.#failure("The OTLP sink is shut down", 0));

    const { promise, resolve } = Promise.withResolvers<ExportResult>();
    this.#queue.push({
      body: onArrayBuffer(body),
      deadline: performance.now() + this.#options.retry.maxElapsedMs,
      resolve,
    });
    // An idle sender takes the batch off the queue at once, so only waiting batches count.
    this.#draining ??= this.#drain();
    if (this.#queue.length > this.#options.maxQueuedBatches) this.#dropOldest();
    return promise;
  }

  /** Resolves when every queued batch is delivered or given up. */
  async drained(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining;
  }

  /** Rejects new batches from now on. */
  close(): void {
    this.#closed = true;
  }

  /** Gives up every batch still queued or in flight. */
  abort(): void {
    this.#closed = true;
    this.#abort.abort();
  }

  #dropOldest(): void {
    const oldest = this.#queue.shift();
    if (oldest === undefined) return;
    this.stats.dropped++;
    oldest.resolve(this.#failure(
      `Dropped a ${this.#options.signal} batch unsent: the retry queue is full (${this.#options.maxQueuedBatches} batches wait behind the one being sent)`,
      0,
    ));
  }

  async #drain(): Promise<void> {
    try {
      for (let batch = this.#queue.shift(); batch !== undefined; batch = this.#queue.shift()) {
        let result: ExportResult;
        try {
          result = await this.#deliver(batch);
        } catch (error) {
          result = {
            ok: false,
            error: this.#error(`Failed to send a ${this.#options.signal} batch`, 0, error),
          };
        }
        if (!result.ok) this.stats.failed++;
        batch.resolve(result);
      }
    } finally {
      this.#draining = undefined;
    }
  }

  async #deliver(batch: QueuedBatch): Promise<ExportResult> {
    const { retry, config, signal } = this.#options;
    const body = config.compression === "gzip" ? await gzip(batch.body) : batch.body;

    for (let attempts = 0;;) {
      if (this.#abort.signal.aborted) {
        return this.#failure(
          `The OTLP sink shut down before the ${signal} batch was delivered`,
          attempts,
        );
      }
      if (performance.now() >= batch.deadline) {
        return this.#failure(
          `Gave up on a ${signal} batch: it waited in the queue past the ${retry.maxElapsedMs} ms limit`,
          attempts,
        );
      }

      attempts++;
      const outcome = await this.#attempt(body, attempts);
      if (outcome.kind === "delivered") {
        this.stats.delivered++;
        return { ok: true };
      }
      if (outcome.kind === "failed") return { ok: false, error: outcome.error };

      // Retry-After may lengthen the backoff, never shorten it: "Retry-After: 0" must not become a busy loop.
      const delay = Math.max(outcome.retryAfterMs ?? 0, backoffDelay(retry, attempts));
      if (performance.now() + delay > batch.deadline) {
        return this.#failure(
          `Gave up on a ${signal} batch after ${attempts} attempt(s): ${outcome.reason}, and a retry in ${
            Math.round(delay)
          } ms would pass the ${retry.maxElapsedMs} ms limit`,
          attempts,
          outcome.status,
        );
      }
      this.stats.retries++;
      await sleep(delay, this.#abort.signal);
    }
  }

  /** Sends the request once. The timeout covers the response body too. */
  async #attempt(body: Uint8Array<ArrayBuffer>, attempts: number): Promise<AttemptOutcome> {
    const { config } = this.#options;
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), config.timeoutMs);
    const signal = AbortSignal.any([timeout.signal, this.#abort.signal]);
    this.stats.requests++;

    try {
      const response = await fetch(config.url, {
        method: "POST",
        headers: requestHeaders(config),
        body,
        signal,
      });
      const responseBody = new Uint8Array(await response.arrayBuffer());
      return this.#outcomeOf(response, responseBody, attempts);
    } catch (error) {
      if (this.#abort.signal.aborted) {
        return {
          kind: "failed",
          error: this.#error("The OTLP sink shut down during a request", attempts, error),
        };
      }
      if (timeout.signal.aborted) {
        return { kind: "retry", reason: `the request timed out after ${config.timeoutMs} ms` };
      }
      // fetch rejects with a TypeError for network errors: refused or reset connections, DNS failures.
      if (error instanceof TypeError) return { kind: "retry", reason: networkErrorMessage(error) };
      return {
        kind: "failed",
        error: this.#error(`The ${this.#options.signal} request failed`, attempts, error),
      };
    } finally {
      clearTimeout(timer);
    }
  }

  #outcomeOf(response: Response, body: Uint8Array, attempts: number): AttemptOutcome {
    const { status } = response;
    if (status >= 200 && status < 300) {
      const partial = this.#options.readPartialSuccess(body);
      if (partial !== undefined) {
        this.stats.rejectedItems += partial.rejected;
        this.stats.lastRejectionMessage = partial.message;
      }
      return { kind: "delivered" };
    }

    const message = describeErrorBody(body, response.headers.get("content-type"));
    const reason = `HTTP ${status}${message === "" ? "" : `: ${message}`}`;
    if (RETRYABLE_STATUSES.has(status)) {
      const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), Date.now());
      return retryAfterMs === undefined
        ? { kind: "retry", reason, status }
        : { kind: "retry", reason, status, retryAfterMs };
    }
    return {
      kind: "failed",
      error: new OtlpExportError(
        `The collector rejected the ${this.#options.signal} request with ${reason}`,
        { signal: this.#options.signal, url: this.#options.config.url, status, attempts },
      ),
    };
  }

  #failure(message: string, attempts: number, status?: number): ExportResult {
    const details = { signal: this.#options.signal, url: this.#options.config.url, attempts };
    const error = new OtlpExportError(
      message,
      status === undefined ? details : { ...details, status },
    );
    return { ok: false, error };
  }

  #error(message: string, attempts: number, cause: unknown): OtlpExportError {
    const detail = cause instanceof Error ? cause.message : String(cause);
    return new OtlpExportError(
      `${message}: ${detail}`,
      { signal: this.#options.signal, url: this.#options.config.url, attempts },
      { cause },
    );
  }
}

/** Returns the delay before retry number `retries` (1 for the first), with jitter, in milliseconds. */
export function backoffDelay(policy: RetryPolicy, retries: number): number {
  const base = Math.min(
    policy.maxBackoffMs,
    policy.initialBackoffMs * policy.multiplier ** (retries - 1),
  );
  const spread = 1 + policy.jitter * (2 * Math.random() - 1);
  return Math.max(0, base * spread);
}

/**
 * Parses a `Retry-After` header, either delay-seconds or an HTTP date, into
 * milliseconds from `nowMs`. Returns undefined when the header is missing or
 * invalid, and 0 for a date in the past.
 */
export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;

  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

function requestHeaders(config: SignalConfig): Headers {
  const headers = new Headers(config.headers);
  headers.set(
    "content-type",
    config.protocol === "http/json" ? "application/json" : "application/x-protobuf",
  );
  if (config.compression === "gzip") headers.set("content-encoding", "gzip");
  return headers;
}

/** Returns `bytes` typed for fetch and Blob, which take no SharedArrayBuffer: copied only when it is one. */
function onArrayBuffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer
    ? bytes as Uint8Array<ArrayBuffer>
    : new Uint8Array(bytes);
}

async function gzip(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([data]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Returns the innermost message of a fetch error: Deno puts the OS error in `cause`. */
function networkErrorMessage(error: TypeError): string {
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause}`;
}

/**
 * Returns the message of an error response: `google.rpc.Status.message` for
 * protobuf and JSON bodies, as OTLP/HTTP collectors send them, or else the
 * body as text, shortened to {@linkcode MAX_MESSAGE_LENGTH} characters.
 */
export function describeErrorBody(body: Uint8Array, contentType: string | null): string {
  const type = contentType?.split(";")[0]?.trim().toLowerCase() ?? "";
  let message: string | undefined;
  if (type === "application/x-protobuf") message = readStatusMessage(body);
  if (type === "application/json") message = readJsonMessage(body);
  message ??= new TextDecoder().decode(body);

  const text = message.trim();
  return text.length > MAX_MESSAGE_LENGTH ? `${text.slice(0, MAX_MESSAGE_LENGTH)}...` : text;
}

function readJsonMessage(body: Uint8Array): string | undefined {
  try {
    const status: unknown = JSON.parse(new TextDecoder().decode(body));
    if (
      typeof status === "object" && status !== null && "message" in status &&
      typeof status.message === "string"
    ) {
      return status.message;
    }
  } catch {
    // Not JSON after all: the caller falls back to the text.
  }
  return undefined;
}

/**
 * Reads field 2 (`string message`) of a protobuf `google.rpc.Status`, or
 * returns undefined when the body is not one. The OpenTelemetry packages
 * ship no decoder for this message, and it needs only the wire format's
 * varints and length-delimited fields.
 */
export function readStatusMessage(body: Uint8Array): string | undefined {
  let offset = 0;
  const readVarint = (): number | undefined => {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      const byte = body[offset++];
      if (byte === undefined) return undefined;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    return undefined;
  };

  while (offset < body.length) {
    const tag = readVarint();
    if (tag === undefined) return undefined;
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (wireType === 0) {
      if (readVarint() === undefined) return undefined;
    } else if (wireType === 1 || wireType === 5) {
      offset += wireType === 1 ? 8 : 4;
    } else if (wireType === 2) {
      const length = readVarint();
      if (length === undefined || offset + length > body.length) return undefined;
      if (field === 2) return decodeUtf8(body.subarray(offset, offset + length));
      offset += length;
    } else {
      return undefined;
    }
  }
  return undefined;
}

function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
