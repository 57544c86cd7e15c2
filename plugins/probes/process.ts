/**
 * The built-in `process` probe: an event for each program execution (execve)
 * and each process exit on the host, from the `sched_process_exec` and
 * `sched_process_exit` tracepoints, streamed through a ring buffer.
 *
 * @module
 */

import { PROCESS_OBJECT } from "../../bpf/process_object.ts";
import { decoderFor } from "../../ffi/_layout_codec.ts";
import { bootTimeOffsetNs } from "../../ffi/clock.ts";
import { checkLayout, cstring, layoutFromBtf, struct, u32, u64 } from "../../ffi/layout.ts";
import { type BpfObject, openObject } from "../../ffi/object.ts";
import { RingBufferReader } from "../../ffi/ring_buffer.ts";
import { systemPageSize } from "../../ffi/libc.ts";

/** The probe's ring buffer map in bpf/process.bpf.c, and its per-CPU drop counter. */
const RING_MAP = "process_events";
const LOST_MAP = "process_events_lost";
/** The ring buffer size that bpf/process.bpf.c declares. */
const DEFAULT_RING_BYTES = 256 * 1024;
/** How long a sampled offset between CLOCK_BOOTTIME and CLOCK_REALTIME is reused. */
const CLOCK_OFFSET_MAX_AGE_MS = 1000;

const EXEC = 1;
const EXIT = 2;

/**
 * `struct process_event` of bpf/process.bpf.c, checked against the object's
 * BTF when the probe opens.
 */
export const PROCESS_EVENT_LAYOUT = struct({
  timestamp_ns: u64,
  lifetime_ns: u64,
  kind: u32,
  pid: u32,
  ppid: u32,
  uid: u32,
  exit_status: u32,
  exec_tid: u32,
  comm: cstring(16),
  filename: cstring(256),
}, "process_event");

/**
 * The fields that exec and exit events share.
 *
 * @example
 * ```ts
 * import type { ProcessEventBase } from "./process.ts";
 *
 * const base: ProcessEventBase = {
 *   timestamp: new Date(),
 *   bootTimeNs: 5_000_000_000n,
 *   pid: 4242,
 *   ppid: 1,
 *   uid: 0,
 *   comm: "sh",
 * };
 * ```
 */
export interface ProcessEventBase {
  /**
   * The wall-clock time of the event, with millisecond precision. The kernel
   * stamps the event with CLOCK_BOOTTIME, and the probe adds the offset
   * between CLOCK_REALTIME and CLOCK_BOOTTIME that it sampled when it decoded
   * the event (reused for up to a second). After a step of the wall clock,
   * events that happened before the step but were read after it are dated
   * by the new clock.
   */
  timestamp: Date;
  /**
   * The kernel's timestamp: nanoseconds of CLOCK_BOOTTIME, which counts from
   * boot and includes time suspended. It never goes back, so it orders
   * events exactly.
   */
  bootTimeNs: bigint;
  /** The process id (the kernel's thread-group id). */
  pid: number;
  /** The parent's process id at the time of the event. */
  ppid: number;
  /** The real user id of the process. */
  uid: number;
  /**
   * The process name: the kernel's `comm`, at most 15 bytes. Exec sets it to
   * the executable's file name, and a process can change it (prctl
   * PR_SET_NAME). Bytes that are not UTF-8 become U+FFFD.
   */
  comm: string;
}

/**
 * A program execution: a successful execve or execveat.
 *
 * @example
 * ```ts
 * import type { ProcessExecEvent } from "./process.ts";
 *
 * function describe(event: ProcessExecEvent): string {
 *   return `${event.pid} ran ${event.filename}`;
 * }
 * ```
 */
export interface ProcessExecEvent extends ProcessEventBase {
  /** The event kind. */
  kind: "exec";
  /**
   * The path given to execve, as the caller wrote it (relative paths stay
   * relative), cut to 255 bytes.
   */
  filename: string;
  /**
   * The id of the thread that called execve. It differs from `pid` when a
   * thread other than the leader called it.
   */
  tid: number;
}

/**
 * A process exit: the last thread of the process ended.
 *
 * @example
 * ```ts
 * import type { ProcessExitEvent } from "./process.ts";
 *
 * function describe(event: ProcessExitEvent): string {
 *   return event.signal === 0 ? `exit ${event.exitCode}` : `killed by signal ${event.signal}`;
 * }
 * ```
 */
export interface ProcessExitEvent extends ProcessEventBase {
  /** The event kind. */
  kind: "exit";
  /** The exit code, 0 to 255. It is 0 when a signal ended the process. */
  exitCode: number;
  /** The number of the signal that ended the process, or 0 when it exited. */
  signal: number;
  /** Whether the process wrote a core dump. */
  coreDumped: boolean;
  /** Milliseconds from the process's fork to its exit, including time suspended. */
  lifetimeMs: number;
}

/**
 * An event of the `process` probe. Switch on `kind` to reach the fields of
 * each kind.
 *
 * @example
 * ```ts
 * import type { ProcessEvent } from "./process.ts";
 *
 * function describe(event: ProcessEvent): string {
 *   return event.kind === "exec" ? `exec ${event.filename}` : `exit ${event.exitCode}`;
 * }
 * ```
 */
export type ProcessEvent = ProcessExecEvent | ProcessExitEvent;

/**
 * Options of {@linkcode ProcessProbe.open}.
 *
 * @example
 * ```ts
 * import type { ProcessProbeOptions } from "./process.ts";
 *
 * const options: ProcessProbeOptions = { ringBufferBytes: 1024 * 1024 };
 * ```
 */
export interface ProcessProbeOptions {
  /** Ends the iteration and closes the probe when aborted. */
  signal?: AbortSignal;
  /**
   * The ring buffer size in bytes: a power-of-two multiple of the page size.
   * Each event takes 320 bytes of it (312 plus an 8-byte header). The kernel
   * drops events while the buffer is full, and counts them in
   * {@linkcode ProcessProbe.droppedEvents}. Default 256 KiB.
   */
  ringBufferBytes?: number;
  /**
   * Use the cached minimal kernel BTF when there is one: see `OpenObjectOptions.kernelBtfCache`.
   *
   * @default true
   */
  kernelBtfCache?: boolean | string;
}

/**
 * The `process` probe, loaded and attached: an async iterable of
 * {@linkcode ProcessEvent}s, one per program execution and one per process
 * exit on the whole host, in the order the kernel wrote them.
 *
 * The programs attach to the `sched/sched_process_exec` and
 * `sched/sched_process_exit` tracepoints, which need tracefs. Events wait in
 * a ring buffer until they are read, so a consumer that falls behind loses
 * the newest events once the buffer is full, never the oldest.
 *
 * The caller owns the probe: closing it ends every iteration, detaches the
 * programs and unloads them.
 *
 * @example Print execs and exits for ten seconds
 * ```ts ignore
 * import { ProcessProbe } from "./process.ts";
 *
 * using probe = ProcessProbe.open({ signal: AbortSignal.timeout(10_000) });
 * for await (const event of probe) {
 *   if (event.kind === "exec") console.log(event.pid, "exec", event.filename);
 *   else console.log(event.pid, "exit", event.exitCode, event.signal);
 * }
 * ```
 */
export class ProcessProbe implements AsyncIterable<ProcessEvent>, Disposable, AsyncDisposable {
  #object: BpfObject;
  #reader: RingBufferReader;
  #decoder: ProcessEventDecoder;
  #signal: AbortSignal | undefined;
  #onAbort = () => this.close();
  // Events decoded by the last consume() and not yet returned.
  #pending: ProcessEvent[] = [];
  #pendingHead = 0;
  #decodeInto = (record: Uint8Array) => this.#pending.push(this.#decoder.decode(record));

  private constructor(object: BpfObject, signal: AbortSignal | undefined) {
    this.#object = object;
    this.#signal = signal;
    this.#decoder = new ProcessEventDecoder(object);
    this.#reader = new RingBufferReader(object.map(RING_MAP), { lost: object.map(LOST_MAP) });
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /**
   * Loads the probe's eBPF object and attaches its two tracepoint programs.
   * Needs root, or CAP_BPF and CAP_PERFMON, and tracefs mounted at
   * /sys/kernel/tracing.
   *
   * @throws {RangeError} when `ringBufferBytes` is not a power-of-two multiple of the page size
   * @throws {BpfError} when loading or attaching fails, such as `EPERM`
   * without privileges or `ENOENT` without tracefs (the message gives the mount command)
   */
  static open(options: ProcessProbeOptions = {}): ProcessProbe {
    const ringBytes = options.ringBufferBytes ?? DEFAULT_RING_BYTES;
    checkRingBufferBytes(ringBytes);
    options.signal?.throwIfAborted();

    const opened = openObject(PROCESS_OBJECT, {
      name: "process",
      kernelBtfCache: options.kernelBtfCache ?? true,
    });
    let object: BpfObject | undefined;
    try {
      if (ringBytes !== DEFAULT_RING_BYTES) opened.map(RING_MAP).setMaxEntries(ringBytes);
      object = opened.load();
      object.attachAll();
      return new ProcessProbe(object, options.signal);
    } catch (error) {
      object?.close();
      opened.close();
      throw error;
    }
  }

  /** The loaded object, for its programs' ids and statistics. */
  get object(): BpfObject {
    return this.#object;
  }

  /** Whether {@linkcode ProcessProbe.close} has run. */
  get closed(): boolean {
    return this.#object.closed;
  }

  /**
   * The number of events the programs dropped because the ring buffer was
   * full, since the probe opened. After close it keeps the count read at close.
   */
  get droppedEvents(): number {
    return this.#reader.stats.lost;
  }

  /**
   * Returns the next event, waiting for one, or `undefined` once the probe
   * is closed or its signal aborted. Events are decoded straight from the
   * ring memory, every available one at a time, and queued.
   *
   * @throws {RangeError} for a record that is not a valid event, which means
   * the object does not match this module
   * @throws {BpfError} when waiting for the ring fails
   */
  async next(): Promise<ProcessEvent | undefined> {
    while (this.#pendingHead === this.#pending.length) {
      this.#pending.length = 0;
      this.#pendingHead = 0;
      if (this.#reader.closed) return undefined;
      await this.#reader.consume(this.#decodeInto);
    }
    return this.#pending[this.#pendingHead++]!;
  }

  /**
   * Yields events as the kernel writes them, until the probe closes or its
   * signal aborts; breaking out of the loop leaves the probe open.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<ProcessEvent> {
    for (;;) {
      const event = await this.next();
      if (event === undefined) return;
      yield event;
    }
  }

  /**
   * Ends every iteration, then detaches and unloads the programs and frees
   * the ring buffer. Calling it again does nothing.
   */
  close(): void {
    if (this.#object.closed) return;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#pending.length = 0;
    this.#pendingHead = 0;
    try {
      this.#reader.close();
    } finally {
      this.#object.close();
    }
  }

  /** Same as {@linkcode ProcessProbe.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Same as {@linkcode ProcessProbe.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/**
 * Turns ring buffer records into {@linkcode ProcessEvent}s, with the record
 * layout taken from the object's BTF.
 */
export class ProcessEventDecoder {
  #decode = decoderFor(PROCESS_EVENT_LAYOUT);
  #offsetNs = 0n;
  #offsetTime = -Infinity;

  /**
   * Checks `struct process_event` in the object's BTF against the layout
   * that this module decodes.
   *
   * @throws {TypeError} when the object has no BTF or no `struct process_event`
   * @throws {LayoutMismatchError} when the struct differs, naming the field
   */
  constructor(object: Pick<BpfObject, "btf" | "name">) {
    const btf = object.btf;
    const type = btf?.find("process_event", "STRUCT");
    if (btf === undefined || type === undefined) {
      throw new TypeError(
        `Object "${object.name}" has no "struct process_event" in its BTF: build it from bpf/process.bpf.c with clang -g`,
      );
    }
    checkLayout(
      PROCESS_EVENT_LAYOUT,
      layoutFromBtf(btf, type.id),
      'the ring buffer record "process_event"',
    );
  }

  /**
   * Decodes one record.
   *
   * @throws {RangeError} when the record is shorter than `struct process_event`
   * or its kind is neither exec nor exit
   */
  decode(record: Uint8Array): ProcessEvent {
    if (record.byteLength < PROCESS_EVENT_LAYOUT.size) {
      throw new RangeError(
        `Invalid process event: the record has ${record.byteLength} bytes, expected ${PROCESS_EVENT_LAYOUT.size}`,
      );
    }
    const raw = this.#decode(new DataView(record.buffer, record.byteOffset, record.byteLength), 0);
    const base: ProcessEventBase = {
      timestamp: new Date(Number((raw.timestamp_ns + this.#clockOffsetNs()) / 1_000_000n)),
      bootTimeNs: raw.timestamp_ns,
      pid: raw.pid,
      ppid: raw.ppid,
      uid: raw.uid,
      comm: raw.comm,
    };
    switch (raw.kind) {
      case EXEC:
        return { kind: "exec", ...base, filename: raw.filename, tid: raw.exec_tid };
      case EXIT:
        // The wait(2) status: exit code in bits 8..15, signal in bits 0..6, core dump flag 0x80.
        return {
          kind: "exit",
          ...base,
          exitCode: (raw.exit_status >> 8) & 0xff,
          signal: raw.exit_status & 0x7f,
          coreDumped: (raw.exit_status & 0x80) !== 0,
          lifetimeMs: Number(raw.lifetime_ns) / 1e6,
        };
      default:
        throw new RangeError(
          `Invalid process event kind ${raw.kind}: expected 1 (exec) or 2 (exit)`,
        );
    }
  }

  #clockOffsetNs(): bigint {
    const now = performance.now();
    if (now - this.#offsetTime > CLOCK_OFFSET_MAX_AGE_MS) {
      this.#offsetNs = bootTimeOffsetNs();
      this.#offsetTime = now;
    }
    return this.#offsetNs;
  }
}

function checkRingBufferBytes(bytes: number): void {
  const page = systemPageSize();
  const pages = bytes / page;
  // max_entries is a u32, so 2^31 bytes is the largest power of two it holds.
  const valid = Number.isSafeInteger(pages) && pages >= 1 && bytes <= 2 ** 31 &&
    Number.isInteger(Math.log2(pages));
  if (!valid) {
    throw new RangeError(
      `Invalid ringBufferBytes ${bytes}: expected a power-of-two multiple of the page size (${page} bytes) up to 2^31, such as ${DEFAULT_RING_BYTES}`,
    );
  }
}
