/**
 * The error family of bpfscope. Every failure of a native call becomes a
 * {@linkcode BpfError} that names the operation, the errno and the object, map
 * or program involved; subclasses exist only for conditions a caller branches on.
 *
 * @module
 */

import { Errno, errnoName } from "./_errno.ts";

/**
 * Names of the kernel objects an error is about; every field is optional.
 *
 * @example
 * ```ts
 * import type { BpfErrorSubject } from "./errors.ts";
 *
 * const subject: BpfErrorSubject = { map: "counts", object: "syscalls" };
 * ```
 */
export interface BpfErrorSubject {
  /** The object's name (its file name without `.o`, or the name given at open). */
  object?: string;
  /** The map's name. */
  map?: string;
  /** The program's name. */
  program?: string;
  /** A file path involved in the operation. */
  path?: string;
  /** The target of the operation, such as `to raw tracepoint "sys_enter"`; it follows the names. */
  target?: string;
}

/**
 * Options of {@linkcode BpfError}.
 *
 * @example
 * ```ts
 * import { BpfError, type BpfErrorOptions } from "./errors.ts";
 *
 * const options: BpfErrorOptions = { op: "attach", program: "on_exec", errno: 2 };
 * console.log(new BpfError(options).message);
 * ```
 */
export interface BpfErrorOptions extends BpfErrorSubject {
  /** The failed operation, as a verb phrase: `"load"`, `"attach"`. */
  op: string;
  /** The positive errno value, or a libbpf error code (4000 and above). */
  errno: number;
  /** A description of the failure; defaults to the C library's text for `errno`. */
  detail?: string;
  /** A hint on how to fix the failure; defaults to one for well-known errno values. */
  hint?: string;
  /** libbpf's messages during the failed operation, appended to the message one per line. */
  libbpfOutput?: readonly string[];
  /** The lower-level error. */
  cause?: unknown;
}

/**
 * A failed operation on a BPF object, map, program or link.
 *
 * The message reads `Failed to OP "NAME": DETAIL (CODE) (HINT)`.
 *
 * @example Branch on the errno name
 * ```ts
 * import { BpfError } from "./errors.ts";
 *
 * const error = new BpfError({ op: "load object", errno: 1, object: "syscalls" });
 * console.log(error.code); // "EPERM"
 * console.log(error.message.includes("CAP_BPF")); // true
 * ```
 */
export class BpfError extends Error {
  override name = "BpfError";
  /** The operation that failed, such as `"load object"`. */
  readonly op: string;
  /** The positive errno value, or a libbpf error code (4000 and above). */
  readonly errno: number;
  /** The symbolic name of {@linkcode errno}, such as `"EPERM"`. */
  readonly code: string;
  /** The object's name, when the error concerns an object. */
  readonly object: string | undefined;
  /** The map's name, when the error concerns a map. */
  readonly map: string | undefined;
  /** The program's name, when the error concerns a program. */
  readonly program: string | undefined;
  /** The file path, when the error concerns a file. */
  readonly path: string | undefined;
  /** The description of the failure, without operation, code or hint. */
  readonly detail: string;
  /** The hint included in the message, if any. */
  readonly hint: string | undefined;
  /** libbpf's warnings during the failed operation. */
  readonly libbpfOutput: readonly string[];

  /** Creates the error; the message is composed from the options. */
  constructor(options: BpfErrorOptions) {
    const code = errnoName(options.errno);
    const hint = options.hint ?? defaultHint(options.errno, options.op);
    const detail = options.detail ?? `errno ${options.errno}`;
    let message = `Failed to ${options.op}${describeSubject(options)}: ${detail} (${code})`;
    if (hint) message += ` (${hint})`;
    const output = options.libbpfOutput ?? [];
    for (const line of output) message += `\nlibbpf: ${line}`;
    super(message, options.cause === undefined ? undefined : { cause: options.cause });

    this.op = options.op;
    this.errno = options.errno;
    this.code = code;
    this.object = options.object;
    this.map = options.map;
    this.program = options.program;
    this.path = options.path;
    this.detail = detail;
    this.hint = hint || undefined;
    this.libbpfOutput = output;
  }
}

/**
 * A program that the kernel's verifier rejected. The message quotes the last
 * lines of the verifier log, and {@linkcode VerifierError.log} contains all of it.
 *
 * @example Print the verifier log of a rejected program
 * ```ts ignore
 * import { openObject, VerifierError } from "../mod.ts";
 *
 * try {
 *   openObject("./rejected.bpf.o").load();
 * } catch (error) {
 *   if (error instanceof VerifierError) console.error(error.log);
 *   else throw error;
 * }
 * ```
 */
export class VerifierError extends BpfError {
  override name = "VerifierError";
  /** The verifier log as the kernel wrote it (its end, when {@linkcode truncated}). */
  readonly log: string;
  /** True when the log did not fit the largest buffer tried, so its start is missing. */
  readonly truncated: boolean;

  /** Creates the error from the load failure and the captured log. */
  constructor(options: BpfErrorOptions & { log: string; truncated: boolean }) {
    super({
      ...options,
      detail: `${options.detail ?? "the verifier rejected it"}: ${lastLines(options.log, 3)}`,
      hint: options.hint ?? "the full verifier log is in the error's log property",
    });
    this.log = options.log;
    this.truncated = options.truncated;
  }
}

/**
 * A feature that this kernel or the loaded libbpf lacks.
 *
 * @example
 * ```ts
 * import { NotSupportedError } from "./errors.ts";
 *
 * const error = new NotSupportedError({ feature: "BPF_F_LOCK lookups", minimum: "Linux 5.1" });
 * console.log(error.message);
 * ```
 */
export class NotSupportedError extends BpfError {
  override name = "NotSupportedError";
  /** The missing feature. */
  readonly feature: string;
  /** The first kernel or libbpf version that has it, such as `"Linux 5.8"`. */
  readonly minimum: string;

  /** Creates the error naming the feature and the minimum version. */
  constructor(options: { feature: string; minimum: string; cause?: unknown }) {
    super({
      op: `use ${options.feature}`,
      errno: Errno.EOPNOTSUPP,
      detail: "not supported here",
      hint: `requires ${options.minimum} or newer`,
      cause: options.cause,
    });
    this.feature = options.feature;
    this.minimum = options.minimum;
  }
}

/**
 * A call on a resource that was already closed, or an opened object that was
 * already loaded.
 *
 * @example
 * ```ts
 * import { ClosedError } from "./errors.ts";
 *
 * const error = new ClosedError("read", 'map memory of "counts"');
 * console.log(error.message); // Failed to read map memory of "counts": it is closed (EBADF)
 * ```
 */
export class ClosedError extends BpfError {
  override name = "ClosedError";

  /** Creates the error for operation `op` on the resource described by `what`. */
  constructor(op: string, what: string, detail = "it is closed") {
    super({ op: `${op} ${what}`, errno: Errno.EBADF, detail, hint: "" });
  }
}

/** The hint for EPERM when the process lacks the capabilities that BPF needs. */
export const PERMISSION_HINT =
  "bpfscope needs root, or the CAP_BPF and CAP_PERFMON capabilities: run it with sudo";

function describeSubject(subject: BpfErrorSubject): string {
  const parts: string[] = [];
  if (subject.program !== undefined) parts.push(`program "${subject.program}"`);
  if (subject.map !== undefined) parts.push(`map "${subject.map}"`);
  if (subject.object !== undefined) parts.push(`object "${subject.object}"`);
  if (subject.path !== undefined) parts.push(`file "${subject.path}"`);
  const names = parts.length === 0 ? "" : ` ${parts.join(" of ")}`;
  return subject.target === undefined ? names : `${names} ${subject.target}`;
}

function defaultHint(errno: number, op: string): string | undefined {
  switch (errno) {
    case Errno.EPERM:
      return PERMISSION_HINT;
    case Errno.E2BIG:
      return op.startsWith("update") ? "the map is full" : undefined;
    case Errno.EINVAL:
      return op.includes("ring buffer")
        ? "a ring buffer's size must be a power-of-two multiple of the page size"
        : undefined;
    case Errno.ENOSYS:
      return "this kernel was built without the bpf() system call";
    default:
      return undefined;
  }
}

function lastLines(text: string, count: number): string {
  // The kernel ends every log with statistics lines, which tell nothing about the failure.
  const lines = text.split("\n").map((line) => line.trim())
    .filter((line) => line !== "" && !/^(processed \d+ insns|verification time)/.test(line));
  return lines.slice(-count).join(" / ") || "the log is empty";
}
