/**
 * Routing of libbpf's own messages. libbpf reports details (which map failed
 * to be created, which relocation failed) through a print callback; bpfscope
 * installs one callback that collects the messages of each operation, attaches
 * them to the error when the operation fails, and passes them to a logger of the
 * user's choice otherwise.
 *
 * @module
 */

import { libbpf } from "./libbpf.ts";
import { libc } from "./libc.ts";

/**
 * The level of a libbpf message (`enum libbpf_print_level`).
 *
 * @example
 * ```ts
 * import type { LibbpfLogLevel } from "./logger.ts";
 *
 * const level: LibbpfLogLevel = "info";
 * ```
 */
export type LibbpfLogLevel = "warn" | "info" | "debug";

/**
 * Receives libbpf's messages, one message at a time, without the trailing newline.
 *
 * @example Collect messages in memory
 * ```ts
 * import type { LibbpfLogger } from "./logger.ts";
 *
 * const lines: string[] = [];
 * const logger: LibbpfLogger = (level, message) => lines.push(`${level}: ${message}`);
 * ```
 */
export type LibbpfLogger = (level: LibbpfLogLevel, message: string) => void;

/**
 * The logger in effect and the most verbose level it receives.
 *
 * @example Restore the previous logger
 * ```ts
 * import { type LibbpfLoggerSetting, setLibbpfLogger } from "./logger.ts";
 *
 * const previous: LibbpfLoggerSetting = setLibbpfLogger(null);
 * setLibbpfLogger(previous.logger, previous.level);
 * ```
 */
export interface LibbpfLoggerSetting {
  /** The logger, or `null` when messages are dropped. */
  logger: LibbpfLogger | null;
  /** The maximum verbosity passed to the logger. */
  level: LibbpfLogLevel;
}

const LEVELS: readonly LibbpfLogLevel[] = ["warn", "info", "debug"];

/**
 * Writes a message to standard error, prefixed with `libbpf: `. This is the
 * logger in effect until {@linkcode setLibbpfLogger} replaces it.
 *
 * @example Show libbpf's info messages too
 * ```ts
 * import { setLibbpfLogger, stderrLogger } from "./logger.ts";
 *
 * setLibbpfLogger(stderrLogger, "info");
 * ```
 */
export function stderrLogger(_level: LibbpfLogLevel, message: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`libbpf: ${message}\n`));
}

let setting: LibbpfLoggerSetting = { logger: stderrLogger, level: "warn" };
let callback: Deno.UnsafeCallback<typeof PRINT_FN> | undefined;
let captured: { level: LibbpfLogLevel; message: string }[] | undefined;
const formatBuffer = new Uint8Array(4096);
const inWorker = "WorkerGlobalScope" in globalThis;

const PRINT_FN = { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const;

/**
 * Sets the logger that receives libbpf's messages up to `level` and returns the
 * previous setting. Messages of an operation that fails are not logged: they
 * are attached to the thrown {@linkcode BpfError} instead.
 *
 * libbpf's print callback is process-wide, so the setting is too. Only the
 * main thread's setting is used: messages of libbpf calls made in a Worker go
 * to the main thread's logger. A logger that throws is ignored.
 *
 * @param logger the new logger, or `null` to drop messages
 * @param level the most verbose level to pass on
 * @default level "warn"
 * @returns the previous logger and level
 *
 * @example Send libbpf's messages to console.debug, debug level included
 * ```ts
 * import { setLibbpfLogger } from "./logger.ts";
 *
 * const previous = setLibbpfLogger((level, message) => console.debug(level, message), "debug");
 * setLibbpfLogger(previous.logger, previous.level);
 * ```
 */
export function setLibbpfLogger(
  logger: LibbpfLogger | null,
  level: LibbpfLogLevel = "warn",
): LibbpfLoggerSetting {
  const previous = setting;
  setting = { logger, level };
  return previous;
}

/**
 * Runs `operation` while collecting libbpf's messages. On success the messages
 * go to the logger; on failure they are returned with the error so that the
 * caller can attach them.
 */
export function captureLibbpfOutput<T>(
  operation: () => T,
): { ok: true; value: T } | { ok: false; error: unknown; output: string[] } {
  installCallback();
  const outer = captured;
  captured = [];
  try {
    const value = operation();
    forward(captured);
    return { ok: true, value };
  } catch (error) {
    const output = captured.filter((entry) => entry.level !== "debug");
    return { ok: false, error, output: output.map((entry) => entry.message) };
  } finally {
    captured = outer;
  }
}

function installCallback(): void {
  if (callback !== undefined || inWorker) return;
  // libbpf's print callback is one per process, but an UnsafeCallback belongs
  // to the isolate that made it and is freed with it: one installed from a
  // Worker would dangle after the Worker ends, and would route the main
  // thread's messages through the Worker. So only the main thread installs
  // it. libbpf calls from a Worker hand their messages to the main thread's
  // callback (blocking until it runs), or print them to standard error
  // through libbpf's default when the main thread never installed one.
  callback = new Deno.UnsafeCallback(PRINT_FN, (level, format, args) => {
    const name = LEVELS[level] ?? "debug";
    // libbpf sends dozens of debug messages per load. They reach no one
    // unless the logger asked for them (a failed call attaches only the
    // others), so they are not formatted.
    if (name === "debug" && (setting.logger === null || setting.level !== "debug")) return 0;
    const message = formatMessage(format, args);
    if (captured !== undefined) captured.push({ level: name, message });
    else forward([{ level: name, message }]);
    return 0;
  });
  libbpf().libbpf_set_print(callback.pointer);
}

function formatMessage(format: Deno.PointerValue, args: Deno.PointerValue): string {
  // SAFETY: format and args (a va_list, passed by pointer on x86_64 and arm64) are
  // valid for the duration of libbpf's print call, which is the duration of this callback.
  const length = libc().vsnprintf(formatBuffer, BigInt(formatBuffer.length), format, args);
  const end = Math.min(Math.max(length, 0), formatBuffer.length - 1);
  return new TextDecoder().decode(formatBuffer.subarray(0, end)).trimEnd().replace(/^libbpf: /, "");
}

function forward(entries: readonly { level: LibbpfLogLevel; message: string }[]): void {
  const { logger, level } = setting;
  if (logger === null) return;
  const limit = LEVELS.indexOf(level);
  for (const entry of entries) {
    if (LEVELS.indexOf(entry.level) > limit) continue;
    try {
      logger(entry.level, entry.message);
    } catch {
      // A logger that throws must not abort a libbpf call half-way and leak
      // what it created, so its exception is dropped.
    }
  }
}
