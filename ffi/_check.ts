// The one place that turns libbpf and libc return values into errors. libbpf 1.x
// returns -errno from int functions and NULL with errno set from pointer functions.

import { hasBpfCapability } from "./_capabilities.ts";
import { Errno } from "./_errno.ts";
import { BpfError, type BpfErrorSubject } from "./errors.ts";
import { libbpf } from "./libbpf.ts";
import { lastErrno } from "./libc.ts";

const MAP_FAILED = 0xffffffffffffffffn;

/** The context of a native call: what was done, to which object, and an optional hint. */
export interface CallContext extends BpfErrorSubject {
  hint?: string;
}

/**
 * Returns `ret` when it is not negative; otherwise throws a {@linkcode BpfError}
 * for errno `-ret`.
 */
export function checkInt(ret: number, op: string, context: CallContext = {}): number {
  if (ret >= 0) return ret;
  throw callError(-ret, op, context);
}

/**
 * Returns `pointer` when it is not NULL; otherwise throws a {@linkcode BpfError}
 * for the thread's errno, which must be read before any other native call.
 */
export function checkPointer(
  pointer: Deno.PointerValue,
  op: string,
  context: CallContext = {},
): Deno.PointerObject {
  if (pointer !== null) return pointer;
  throw callError(lastErrno() || 22, op, context);
}

/**
 * Returns the address that mmap() returned unless it is MAP_FAILED,
 * `(void *)-1`; then throws a {@linkcode BpfError} for the thread's errno.
 */
export function checkMmap(
  pointer: Deno.PointerValue,
  op: string,
  context: CallContext = {},
): Deno.PointerObject {
  if (pointer !== null && Deno.UnsafePointer.value(pointer) !== MAP_FAILED) return pointer;
  throw callError(lastErrno() || 22, op, context);
}

/** Creates the error for a failed call with errno `errno`. */
export function callError(errno: number, op: string, context: CallContext = {}): BpfError {
  const hint = context.hint ?? (errno === Errno.EPERM ? permissionHint() : undefined);
  return new BpfError({
    ...context,
    op,
    errno,
    detail: describeErrno(errno),
    ...(hint === undefined ? {} : { hint }),
  });
}

// EPERM means a missing privilege only when the process lacks CAP_BPF; as
// root it comes from a feature this kernel lacks or a security module.
function permissionHint(): string | undefined {
  if (hasBpfCapability() !== true) return undefined;
  return "the process has CAP_BPF, so privilege is not the cause: this kernel may not support the program or attach type (fentry and fexit need trampolines, for example), or a security module such as lockdown denied it";
}

/** Returns libbpf's description of an errno or libbpf error code. */
export function describeErrno(errno: number): string {
  // The kernel-internal ENOTSUPP has no C library text.
  if (errno === Errno.ENOTSUPP) return "Operation not supported by this map or program type";
  const buffer = new Uint8Array(256);
  libbpf().libbpf_strerror(errno, buffer, BigInt(buffer.length));
  const end = buffer.indexOf(0);
  return new TextDecoder().decode(buffer.subarray(0, end < 0 ? buffer.length : end));
}

/**
 * Encodes a string as a NUL-terminated C string.
 *
 * @throws {TypeError} when the string contains a NUL, which C would silently cut it at
 */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  if (text.includes("\0")) {
    throw new TypeError(`Invalid string ${JSON.stringify(text)}: it contains a NUL character`);
  }
  return new TextEncoder().encode(`${text}\0`);
}

/** Reads a NUL-terminated C string, or returns `""` for NULL. */
export function readCString(pointer: Deno.PointerValue): string {
  // SAFETY: callers pass strings owned by libbpf objects that are still open.
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}
