/**
 * {@linkcode Collector}: the loop that runs probes on an interval and hands
 * each collection to every sink as one {@linkcode Batch}.
 *
 * Each sink has its own bounded queue and export loop, so a sink whose
 * exports are slow or fail does not delay the probes or the other sinks
 * (unless its code blocks the event loop). When its queue is full, the
 * oldest batch is dropped and counted. Every batch carries the collector's
 * own health as metrics:
 *
 * | metric | kind | unit | attributes |
 * | --- | --- | --- | --- |
 * | `bpfscope.collector.collections` | counter | `{collection}` | |
 * | `bpfscope.collector.duration` | gauge | `s` | |
 * | `bpfscope.collector.dropped` | counter | `{batch}` | `sink`, `reason` (`queue_full` or `export_failed`) |
 * | `bpfscope.collector.dropped_events` | counter | `{event}` | `probe` |
 * | `bpfscope.collector.probe_errors` | counter | `{error}` | `probe` |
 * | `bpfscope.probe.dropped_events` | counter | `{event}` | `probe` (from {@linkcode Probe.droppedEvents}) |
 * | `bpfscope.program.run_time` | counter | `s` | `probe`, `bpf.program.name`, `bpf.program.id` |
 * | `bpfscope.program.run_count` | counter | `{run}` | `probe`, `bpf.program.name`, `bpf.program.id` |
 *
 * @module
 */

import { enableRunTimeStats, type RunTimeStats } from "../ffi/bpf_stats.ts";
import type {
  Attributes,
  Batch,
  CounterMetric,
  ExportResult,
  LogRecord,
  Metric,
  NumberPoint,
  PluginContext,
  Probe,
  ProbePlugin,
  Sink,
  SinkPlugin,
} from "./plugin.ts";
import { resourceAttributes } from "./resource.ts";
import { BpfError } from "../ffi/errors.ts";

const DEFAULT_QUEUE_SIZE = 8;
const DEFAULT_MAX_EVENTS = 10_000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 5_000;
// The minimum time a probe's collect() gets before a collection goes on without it.
const COLLECT_TIMEOUT_MS = 1_000;
const MIN_INTERVAL_MS = 10;
const MAX_INTERVAL_MS = 86_400_000;

/**
 * A probe plugin and the options to open it with, as `--probe NAME:OPTIONS` gives them.
 *
 * @example
 * ```ts
 * import type { ProbeEntry } from "./collector.ts";
 * import { syscallsProbePlugin } from "./probes/syscalls_plugin.ts";
 *
 * const entry: ProbeEntry = { plugin: syscallsProbePlugin };
 * ```
 */
export interface ProbeEntry {
  plugin: ProbePlugin;
  /** The text after `NAME:`, passed to {@linkcode ProbePlugin.open}. */
  options?: string;
}

/**
 * A sink plugin and the options to create it with, as `--sink NAME:OPTIONS` gives them.
 *
 * @example
 * ```ts
 * import type { SinkEntry } from "./collector.ts";
 * import { memorySinkPlugin } from "./sinks/memory.ts";
 *
 * const entry: SinkEntry = { plugin: memorySinkPlugin, options: "max-batches=100" };
 * ```
 */
export interface SinkEntry {
  plugin: SinkPlugin;
  /** The text after `NAME:`, passed to {@linkcode SinkPlugin.create}. */
  options?: string;
}

/**
 * Options of {@linkcode Collector.start}.
 *
 * @example
 * ```ts
 * import type { CollectorOptions } from "./collector.ts";
 * import { memorySinkPlugin } from "./sinks/memory.ts";
 *
 * const options: CollectorOptions = { probes: [], sinks: [memorySinkPlugin], intervalMs: 1000 };
 * ```
 */
export interface CollectorOptions {
  /** The probes to open, in order. */
  probes: readonly (ProbePlugin | ProbeEntry)[];
  /** The sinks to create, in order. */
  sinks: readonly (SinkPlugin | SinkEntry)[];
  /** Milliseconds between collections, from 10 to 86 400 000 (one day). */
  intervalMs: number;
  /** The resource attributes of every batch. @default resourceAttributes() */
  resource?: Attributes;
  /** Batches waiting per sink; when full, the oldest is dropped. @default 8 */
  queueSize?: number;
  /**
   * Events kept per probe between two collections; later ones are dropped
   * and counted in `bpfscope.collector.dropped_events`.
   *
   * @default 10000
   */
  maxEventsPerCollection?: number;
  /**
   * Milliseconds that stopping waits for each sink to export its queue, then
   * to flush, then to shut down, before it gives up on that sink.
   *
   * @default 5000
   */
  shutdownTimeoutMs?: number;
  /**
   * Turn on the kernel's BPF run-time statistics while the collector runs
   * (see {@linkcode enableRunTimeStats}), so that the program metrics count.
   * This affects every BPF program on the host.
   *
   * @default false
   */
  enableProgramStats?: boolean;
  /**
   * Receives the collector's warnings and errors as they happen: failed
   * collections and exports, dropped batches, recoveries. The same records
   * go into the next batch's logs. Repeats of one failure are reported
   * once, and counted in the metrics. It must not throw.
   */
  onDiagnostic?: (record: LogRecord) => void;
}

/**
 * Runs probes on an interval and sends each collection to every sink. It
 * owns the probes and sinks it opens: {@linkcode Collector.stop} makes a
 * last collection, sends it, waits for every sink to export, flush and shut
 * down, and disposes every probe (detaching its programs) before it returns.
 *
 * @example Collect the example load-average probe into memory
 * ```ts
 * import { Collector } from "./collector.ts";
 * import { MemorySink, memorySinkPlugin } from "./sinks/memory.ts";
 * import loadavg from "../examples/plugin_loadavg.ts";
 *
 * await using collector = await Collector.start({
 *   probes: [loadavg],
 *   sinks: [memorySinkPlugin],
 *   intervalMs: 1000,
 * });
 * const batch = await collector.collect();
 * console.log(batch.metrics.map((metric) => metric.name));
 * const memory = collector.sinks[0] as MemorySink;
 * await memory.waitForBatches(1);
 * ```
 */
export class Collector implements AsyncDisposable {
  /** The resource attributes of every batch. */
  readonly resource: Attributes;
  /** The interval between collections, in milliseconds. */
  readonly intervalMs: number;
  #probes: ProbeState[];
  #sinks: SinkChannel[];
  #controller: AbortController;
  #startTimeUnixNano: bigint;
  #stats: RunTimeStats | undefined;
  #maxEvents: number;
  #shutdownTimeoutMs: number;
  #onDiagnostic: ((record: LogRecord) => void) | undefined;
  #diagnostics: LogRecord[] = [];
  #collections = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #nextDue = 0;
  #running: Promise<unknown> = Promise.resolve();
  #stopping: Promise<void> | undefined;

  private constructor(init: CollectorInit) {
    this.resource = init.resource;
    this.intervalMs = init.intervalMs;
    this.#probes = init.probes;
    this.#sinks = init.sinks;
    this.#controller = init.controller;
    this.#startTimeUnixNano = init.startTimeUnixNano;
    this.#stats = init.stats;
    this.#maxEvents = init.maxEvents;
    this.#shutdownTimeoutMs = init.shutdownTimeoutMs;
    this.#onDiagnostic = init.onDiagnostic;
    for (const sink of this.#sinks) sink.report = (record) => this.#report(record);
    for (const probe of this.#probes) this.#startEvents(probe);
  }

  /**
   * Creates the sinks, opens the probes, and starts collecting: the first
   * collection runs one interval after the start. If any sink or probe
   * fails to start, everything started so far is closed again and the error
   * is thrown.
   *
   * @throws {RangeError} when `intervalMs`, `queueSize`, `maxEventsPerCollection`
   * or `shutdownTimeoutMs` is out of range
   * @throws {BpfError} when a probe fails to load or attach, or program
   * statistics cannot be enabled
   * @throws whatever a plugin's `open` or `create` throws, such as a
   * TypeError for invalid options
   */
  static async start(options: CollectorOptions): Promise<Collector> {
    const settings = checkOptions(options);
    const controller = new AbortController();
    const resource = options.resource ?? resourceAttributes();
    // Reports made while the plugins start wait until the collector exists.
    const early: LogRecord[] = [];
    let deliver = (record: LogRecord) => {
      early.push(record);
    };
    const context: PluginContext = {
      resource,
      signal: controller.signal,
      report: (severity, message) => deliver(diagnostic(severity, message, undefined, {})),
    };
    const sinks: SinkChannel[] = [];
    const probes: ProbeState[] = [];
    let stats: RunTimeStats | undefined;

    try {
      const sinkLabels = labels(options.sinks.map((entry) => entryOf(entry).plugin.name));
      for (const [index, entry] of options.sinks.map(entryOf).entries()) {
        const sink = await named(
          `Failed to create sink "${entry.plugin.name}"`,
          () => entry.plugin.create(context, entry.options),
        );
        sinks.push(new SinkChannel(sinkLabels[index]!, sink, settings.queueSize));
      }
      const probeLabels = labels(options.probes.map((entry) => entryOf(entry).plugin.name));
      for (const [index, entry] of options.probes.map(entryOf).entries()) {
        const probe = await named(
          `Failed to open probe "${entry.plugin.name}"`,
          () => entry.plugin.open(context, entry.options),
        );
        probes.push(new ProbeState(probeLabels[index]!, probe, nowUnixNano()));
      }
      if (options.enableProgramStats) stats = enableRunTimeStats();
    } catch (error) {
      controller.abort();
      await closeAll(probes, sinks);
      throw error;
    }

    const collector = new Collector({
      resource,
      intervalMs: options.intervalMs,
      probes,
      sinks,
      controller,
      startTimeUnixNano: nowUnixNano(),
      stats,
      maxEvents: settings.maxEvents,
      shutdownTimeoutMs: settings.shutdownTimeoutMs,
      onDiagnostic: options.onDiagnostic,
    });
    deliver = (record) => collector.#report(record);
    for (const record of early.splice(0)) collector.#report(record);
    collector.#schedule(performance.now() + options.intervalMs);
    return collector;
  }

  /** The sinks, in the order of the options; the collector owns them. */
  get sinks(): readonly Sink[] {
    return this.#sinks.map((channel) => channel.sink);
  }

  /** The probes, in the order of the options; the collector owns them. */
  get probes(): readonly Probe[] {
    return this.#probes.map((state) => state.probe);
  }

  /** The number of collections made so far. */
  get collections(): number {
    return this.#collections;
  }

  /** Whether {@linkcode Collector.stop} has been called. */
  get stopped(): boolean {
    return this.#stopping !== undefined;
  }

  /**
   * Runs one collection now, queues its batch for every sink, and returns
   * the batch. It does not wait for the sinks. Collections never overlap:
   * a call during a running collection waits for it first.
   *
   * @throws {TypeError} after {@linkcode Collector.stop}
   */
  collect(): Promise<Batch> {
    if (this.#stopping !== undefined) {
      return Promise.reject(new TypeError("Cannot collect: the collector is stopped"));
    }
    return this.#serialize(() => this.#collectAndSend());
  }

  /**
   * Stops the collector: makes a last collection and sends it, disposes the
   * probes, waits for each sink to export its queue, then flushes and shuts
   * down every sink. Each wait on a sink gives up after `shutdownTimeoutMs`
   * (reported through `onDiagnostic`). Calling it again returns the same promise.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /** Same as {@linkcode Collector.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #stop(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;

    const started = performance.now();
    const metrics = await this.#collectMetrics();
    this.#controller.abort();
    await this.#disposeProbes();
    this.#stats?.close();
    this.#send(this.#assemble(metrics, started));

    const timeoutMs = this.#shutdownTimeoutMs;
    await Promise.all(this.#sinks.map((channel) => channel.close(timeoutMs)));
  }

  #serialize<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#running.then(task);
    this.#running = result.catch(() => {});
    return result;
  }

  #schedule(due: number): void {
    this.#nextDue = due;
    const delay = Math.max(0, due - performance.now());
    this.#timer = setTimeout(() => this.#tick(), delay);
  }

  #tick(): void {
    this.#timer = undefined;
    // After a slow collection, skip the missed ticks rather than run them back to back.
    const now = performance.now();
    let due = this.#nextDue + this.intervalMs;
    if (due <= now) due = now + this.intervalMs;

    this.#serialize(() => this.#collectAndSend()).finally(() => {
      if (this.#stopping === undefined) this.#schedule(due);
    });
  }

  async #collectAndSend(): Promise<Batch> {
    const started = performance.now();
    const metrics = await this.#collectMetrics();
    const batch = this.#assemble(metrics, started);
    this.#send(batch);
    return batch;
  }

  async #collectMetrics(): Promise<Metric[]> {
    const metrics: Metric[] = [];
    // A probe whose collect() never settles must not stall the others or the stop.
    const timeoutMs = Math.max(COLLECT_TIMEOUT_MS, this.intervalMs);
    for (const state of this.#probes) {
      if (state.collecting !== undefined) {
        state.errors++;
        continue;
      }
      const collecting = Promise.resolve().then(() => state.probe.collect());
      state.collecting = collecting;
      collecting.then(() => state.collecting = undefined, () => state.collecting = undefined);
      try {
        const result = await settleWithin(collecting, timeoutMs);
        if (result === undefined) {
          state.errors++;
          this.#report(diagnostic(
            "ERROR",
            `Probe "${state.label}" did not return from collect() within ${timeoutMs} ms; its metrics are left out until it does`,
            undefined,
            { probe: state.label },
          ));
          continue;
        }
        metrics.push(...result);
      } catch (error) {
        state.errors++;
        this.#report(diagnostic("ERROR", `Probe "${state.label}" failed to collect`, error, {
          probe: state.label,
        }));
      }
    }
    metrics.push(...this.#programMetrics());
    return metrics;
  }

  #assemble(metrics: Metric[], started: number): Batch {
    this.#collections++;
    const durationSeconds = (performance.now() - started) / 1000;
    const logs: LogRecord[] = [];
    for (const state of this.#probes) logs.push(...state.takeEvents());
    logs.push(...this.#diagnostics.splice(0));

    return {
      resource: this.resource,
      timeUnixNano: nowUnixNano(),
      metrics: [...metrics, ...this.#healthMetrics(durationSeconds)],
      logs,
    };
  }

  #send(batch: Batch): void {
    for (const channel of this.#sinks) channel.enqueue(batch);
  }

  #report(record: LogRecord): void {
    this.#diagnostics.push(record);
    try {
      this.#onDiagnostic?.(record);
    } catch {
      // The callback must not throw; the record is still in the next batch.
    }
  }

  #startEvents(state: ProbeState): void {
    const events = state.probe.events;
    if (events === undefined) return;
    state.pump = (async () => {
      try {
        for await (const record of events.call(state.probe)) {
          state.addEvent(record, this.#maxEvents);
        }
      } catch (error) {
        state.errors++;
        this.#report(diagnostic("ERROR", `Probe "${state.label}" event stream failed`, error, {
          probe: state.label,
        }));
      }
    })();
  }

  /** Disposes the probes in reverse order, then waits for their event streams to end. */
  async #disposeProbes(): Promise<void> {
    for (const state of [...this.#probes].reverse()) {
      try {
        await state.probe[Symbol.asyncDispose]();
      } catch (error) {
        this.#report(diagnostic("ERROR", `Probe "${state.label}" failed to close`, error, {
          probe: state.label,
        }));
      }
    }
    const pumps = Promise.all(this.#probes.map((state) => state.pump));
    const outcome = await withTimeout(() => pumps, this.#shutdownTimeoutMs);
    if (outcome === "timeout") {
      this.#report(
        diagnostic(
          "ERROR",
          `A probe's event stream did not end within ${this.#shutdownTimeoutMs} ms of closing the probe`,
          undefined,
          {},
        ),
      );
    }
  }

  #programMetrics(): Metric[] {
    const runTime: NumberPoint[] = [];
    const runCount: NumberPoint[] = [];
    for (const state of this.#probes) {
      let stats;
      try {
        stats = state.probe.programStats?.() ?? [];
      } catch (error) {
        state.errors++;
        this.#report(
          diagnostic("ERROR", `Probe "${state.label}" failed to read program statistics`, error, {
            probe: state.label,
          }),
        );
        continue;
      }
      for (const program of stats) {
        const attributes = {
          probe: state.label,
          "bpf.program.name": program.program,
          "bpf.program.id": program.id,
        };
        runTime.push({ attributes, value: Number(program.runTimeNs) / 1e9 });
        runCount.push({ attributes, value: Number(program.runCount) });
      }
    }
    if (runTime.length === 0) return [];

    // NOTE: the kernel counts from when statistics were enabled, which can be
    // before or after the probes opened. The first probe's open time is used.
    const start = this.#probes[0]!.openedUnixNano;
    return [
      counter(
        "bpfscope.program.run_time",
        "Time BPF programs ran, counted while kernel BPF statistics are enabled",
        "s",
        start,
        runTime,
      ),
      counter(
        "bpfscope.program.run_count",
        "Runs of BPF programs, counted while kernel BPF statistics are enabled",
        "{run}",
        start,
        runCount,
      ),
    ];
  }

  #healthMetrics(durationSeconds: number): Metric[] {
    const start = this.#startTimeUnixNano;
    const dropped: NumberPoint[] = [];
    for (const channel of this.#sinks) {
      dropped.push({
        attributes: { sink: channel.label, reason: "queue_full" },
        value: channel.droppedQueueFull,
      });
      dropped.push({
        attributes: { sink: channel.label, reason: "export_failed" },
        value: channel.droppedFailed,
      });
    }
    const probeAttributes = (state: ProbeState) => ({ probe: state.label });

    const metrics: Metric[] = [
      counter(
        "bpfscope.collector.collections",
        "Collections made since the collector started",
        "{collection}",
        start,
        [
          { attributes: {}, value: this.#collections },
        ],
      ),
      {
        kind: "gauge",
        name: "bpfscope.collector.duration",
        description: "Time the collection of this batch took",
        unit: "s",
        points: [{ attributes: {}, value: durationSeconds }],
      },
      counter(
        "bpfscope.collector.dropped",
        "Batches a sink did not deliver: dropped from a full queue, or failed to export",
        "{batch}",
        start,
        dropped,
      ),
      counter(
        "bpfscope.collector.dropped_events",
        "Events dropped because a probe produced more than the collector keeps per collection",
        "{event}",
        start,
        this.#probes.map((state) => ({
          attributes: probeAttributes(state),
          value: state.droppedEvents,
        })),
      ),
      counter(
        "bpfscope.collector.probe_errors",
        "Failed collections and event streams of a probe",
        "{error}",
        start,
        this.#probes.map((state) => ({ attributes: probeAttributes(state), value: state.errors })),
      ),
    ];

    const lost = this.#probeDroppedEvents();
    if (lost.length > 0) {
      metrics.push(
        counter(
          "bpfscope.probe.dropped_events",
          "Events a probe lost before reading them, such as ring buffer records that did not fit",
          "{event}",
          start,
          lost,
        ),
      );
    }
    return metrics;
  }

  #probeDroppedEvents(): NumberPoint[] {
    const points: NumberPoint[] = [];
    for (const state of this.#probes) {
      if (state.probe.droppedEvents === undefined) continue;
      try {
        points.push({ attributes: { probe: state.label }, value: state.probe.droppedEvents() });
      } catch {
        // A closed probe cannot report; the last batch before close had the count.
      }
    }
    return points;
  }
}

interface CollectorInit {
  resource: Attributes;
  intervalMs: number;
  probes: ProbeState[];
  sinks: SinkChannel[];
  controller: AbortController;
  startTimeUnixNano: bigint;
  stats: RunTimeStats | undefined;
  maxEvents: number;
  shutdownTimeoutMs: number;
  onDiagnostic: ((record: LogRecord) => void) | undefined;
}

/** A running probe and what the collector counts for it. */
class ProbeState {
  readonly label: string;
  readonly probe: Probe;
  readonly openedUnixNano: bigint;
  errors = 0;
  droppedEvents = 0;
  pump: Promise<void> | undefined;
  /** A collect() call that has not settled yet; no new call starts while it runs. */
  collecting: Promise<readonly Metric[]> | undefined;
  #events: LogRecord[] = [];

  constructor(label: string, probe: Probe, openedUnixNano: bigint) {
    this.label = label;
    this.probe = probe;
    this.openedUnixNano = openedUnixNano;
  }

  addEvent(record: LogRecord, max: number): void {
    if (this.#events.length < max) this.#events.push(record);
    else this.droppedEvents++;
  }

  takeEvents(): LogRecord[] {
    return this.#events.splice(0);
  }
}

/** A sink, its bounded queue of batches, and the loop that exports them one at a time. */
class SinkChannel {
  readonly label: string;
  readonly sink: Sink;
  droppedQueueFull = 0;
  droppedFailed = 0;
  report: (record: LogRecord) => void = () => {};
  #capacity: number;
  #queue: Batch[] = [];
  #loop: Promise<void> | undefined;
  #lastFailure: string | undefined;
  #dropStreak = false;

  constructor(label: string, sink: Sink, capacity: number) {
    this.label = label;
    this.sink = sink;
    this.#capacity = capacity;
  }

  enqueue(batch: Batch): void {
    if (this.#queue.length >= this.#capacity) {
      this.#queue.shift();
      this.droppedQueueFull++;
      if (!this.#dropStreak) {
        this.#dropStreak = true;
        this.report(
          diagnostic(
            "WARN",
            `Sink "${this.label}" is not keeping up: its queue of ${this.#capacity} batches is full, so the oldest batches are dropped`,
            undefined,
            { sink: this.label },
          ),
        );
      }
    }
    this.#queue.push(batch);
    this.#loop ??= this.#exportQueued();
  }

  /** Waits for the queue to empty, then flushes and shuts the sink down, each step with a timeout. */
  async close(timeoutMs: number): Promise<void> {
    const steps: [string, () => Promise<unknown>][] = [
      ["export its queued batches", () => this.#loop ?? Promise.resolve()],
      ["flush", () => this.sink.flush()],
      ["shut down", () => this.sink.shutdown()],
    ];
    for (const [step, run] of steps) {
      const outcome = await withTimeout(run, timeoutMs);
      if (outcome === "done") continue;
      const message = outcome === "timeout"
        ? `Sink "${this.label}" did not ${step} within ${timeoutMs} ms; giving up on it`
        : `Sink "${this.label}" failed to ${step}`;
      this.report(
        diagnostic("ERROR", message, outcome === "timeout" ? undefined : outcome.error, {
          sink: this.label,
        }),
      );
      if (outcome === "timeout" && step !== "shut down") {
        // A sink that hangs is not asked for more, but it still gets its shutdown call.
        await withTimeout(() => this.sink.shutdown(), timeoutMs);
        return;
      }
    }
  }

  async #exportQueued(): Promise<void> {
    for (let batch = this.#queue.shift(); batch !== undefined; batch = this.#queue.shift()) {
      const result = await exportSafely(this.sink, batch);
      this.#dropStreak = false;
      if (result.ok) {
        this.#recovered();
        continue;
      }
      this.droppedFailed++;
      if (this.#lastFailure !== result.error.message) {
        this.#lastFailure = result.error.message;
        this.report(
          diagnostic("ERROR", `Sink "${this.label}" failed to export a batch`, result.error, {
            sink: this.label,
          }),
        );
      }
    }
    this.#loop = undefined;
  }

  #recovered(): void {
    if (this.#lastFailure === undefined) return;
    this.#lastFailure = undefined;
    this.report(
      diagnostic("INFO", `Sink "${this.label}" exports again after failures`, undefined, {
        sink: this.label,
      }),
    );
  }
}

async function exportSafely(sink: Sink, batch: Batch): Promise<ExportResult> {
  try {
    return await sink.export(batch);
  } catch (error) {
    // Sink.export must not reject. A sink that rejects anyway counts as failed.
    return { ok: false, error: error instanceof Error ? error : new TypeError(String(error)) };
  }
}

/**
 * Runs a plugin's factory and wraps an error that is not one of bpfscope's
 * own in one that names the plugin. bpfscope's errors already name what failed.
 */
async function named<T>(what: string, run: () => T | Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (
      error instanceof BpfError || error instanceof RangeError ||
      error instanceof Deno.errors.AddrInUse
    ) throw error;
    const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
    // Invalid plugin options are TypeErrors; the class stays, so callers still see a usage error.
    if (error instanceof TypeError) throw new TypeError(message, { cause: error });
    throw new PluginError(message, { cause: error });
  }
}

/**
 * A plugin's factory failed with an error of its own; the message names the plugin.
 *
 * @example
 * ```ts
 * import { PluginError } from "./collector.ts";
 *
 * const error = new PluginError('Failed to open probe "demo": boom');
 * console.log(error.name); // "PluginError"
 * ```
 */
export class PluginError extends Error {
  override name = "PluginError";
}

/** Resolves to the value of `promise`, or to undefined when it has not settled within `timeoutMs`. */
async function settleWithin<T>(promise: Promise<T>, timeoutMs: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function withTimeout(
  run: () => Promise<unknown>,
  timeoutMs: number,
): Promise<"done" | "timeout" | { error: unknown }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const work = Promise.resolve().then(run).then(
      () => "done" as const,
      (error: unknown) => ({ error }),
    );
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Closes what a failed start opened, in reverse order; errors are dropped because the start error is thrown. */
async function closeAll(probes: ProbeState[], sinks: SinkChannel[]): Promise<void> {
  for (const state of [...probes].reverse()) {
    try {
      await state.probe[Symbol.asyncDispose]();
    } catch {
      // Dropped: the start error is the one thrown.
    }
  }
  for (const channel of [...sinks].reverse()) {
    await channel.sink.shutdown().catch(() => {});
  }
}

function checkOptions(
  options: CollectorOptions,
): { queueSize: number; maxEvents: number; shutdownTimeoutMs: number } {
  const interval = options.intervalMs;
  if (!Number.isFinite(interval) || interval < MIN_INTERVAL_MS || interval > MAX_INTERVAL_MS) {
    throw new RangeError(
      `Invalid interval ${interval} ms: expected ${MIN_INTERVAL_MS} to ${MAX_INTERVAL_MS} ms`,
    );
  }
  return {
    queueSize: positiveInteger(options.queueSize ?? DEFAULT_QUEUE_SIZE, "queueSize"),
    maxEvents: positiveInteger(
      options.maxEventsPerCollection ?? DEFAULT_MAX_EVENTS,
      "maxEventsPerCollection",
    ),
    shutdownTimeoutMs: positiveInteger(
      options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
      "shutdownTimeoutMs",
    ),
  };
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Invalid ${name} ${value}: expected a positive integer`);
  }
  return value;
}

function entryOf<T extends ProbePlugin | SinkPlugin>(
  entry: T | { plugin: T; options?: string },
): { plugin: T; options?: string } {
  return "plugin" in entry ? entry : { plugin: entry };
}

/** Returns one label per name: the name, with `#2`, `#3` ... on its later repeats. */
function labels(names: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return names.map((name) => {
    const count = (seen.get(name) ?? 0) + 1;
    seen.set(name, count);
    return count === 1 ? name : `${name}#${count}`;
  });
}

function counter(
  name: string,
  description: string,
  unit: string,
  startTimeUnixNano: bigint,
  points: readonly NumberPoint[],
): CounterMetric {
  return { kind: "counter", name, description, unit, startTimeUnixNano, points };
}

function diagnostic(
  severity: LogRecord["severity"],
  message: string,
  error: unknown,
  attributes: Attributes,
): LogRecord {
  const detail = error === undefined
    ? ""
    : `: ${error instanceof Error ? error.message : String(error)}`;
  return {
    timeUnixNano: nowUnixNano(),
    severity,
    body: `${message}${detail}`,
    attributes: { "event.name": "bpfscope.collector.diagnostic", ...attributes },
  };
}

function nowUnixNano(): bigint {
  // performance.timeOrigin + now() gives sub-millisecond resolution on the wall clock.
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}
