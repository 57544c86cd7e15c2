// The one place that turns libbpf and libc return values into errors. libbpf 1.x
// returns -errno from int functions and NULL with errno set from pointer functions.

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
  return new BpfError({ ...context, op, errno, detail: describeErrno(errno) });
}

/** Returns libbpf's description of an errno or libbpf error code. */
export function describeErrno(errno: number): string {
  const buffer = new Uint8Array(256);
  libbpf().libbpf_strerror(errno, buffer, BigInt(buffer.length));
  const end = buffer.indexOf(0);
  return new TextDecoder().decode(buffer.subarray(0, end < 0 ? buffer.length : end));
}

/** Encodes a string as a NUL-terminated C string. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`);
}

/** Reads a NUL-terminated C string, or returns `""` for NULL. */
export function readCString(pointer: Deno.PointerValue): string {
  // SAFETY: callers pass strings owned by libbpf objects that are still open.
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}
