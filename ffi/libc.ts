/**
 * The C library symbols bpfscope needs beside libbpf: mmap, errno and a few
 * system calls. Nothing outside `ffi/` imports this module.
 *
 * @module
 */

import { lazySymbols } from "./_lazy_symbols.ts";

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" }, // int *__errno_location(void)
  strerror: { parameters: ["i32"], result: "pointer" }, // char *strerror(int errnum)
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" }, // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
  munmap: { parameters: ["pointer", "usize"], result: "i32" }, // int munmap(void *addr, size_t length)
  sysconf: { parameters: ["i32"], result: "i64" }, // long sysconf(int name)
  vsnprintf: { parameters: ["buffer", "usize", "pointer", "pointer"], result: "i32" }, // int vsnprintf(char *str, size_t size, const char *format, va_list ap)
  access: { parameters: ["buffer", "i32"], result: "i32" }, // int access(const char *pathname, int mode)
  capget: { parameters: ["buffer", "buffer"], result: "i32" }, // int capget(cap_user_header_t hdrp, cap_user_data_t datap)
  getppid: { parameters: [], result: "i32" }, // pid_t getppid(void)
  sched_getcpu: { parameters: [], result: "i32" }, // int sched_getcpu(void)
  sched_getaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" }, // int sched_getaffinity(pid_t pid, size_t cpusetsize, cpu_set_t *mask)
  sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" }, // int sched_setaffinity(pid_t pid, size_t cpusetsize, const cpu_set_t *mask)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" }, // int clock_gettime(clockid_t clockid, struct timespec *tp)
  // Ring buffer wake-ups: an epoll set per reader, woken early through an eventfd on close.
  epoll_create1: { parameters: ["i32"], result: "i32" }, // int epoll_create1(int flags)
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" }, // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
  // Runs on a Deno worker thread, so the event loop stays free; errno is that thread's and cannot be read.
  epoll_wait_nonblocking: {
    name: "epoll_wait",
    parameters: ["i32", "pointer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  }, // int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
  eventfd: { parameters: ["u32", "i32"], result: "i32" }, // int eventfd(unsigned int initval, int flags)
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" }, // ssize_t write(int fd, const void *buf, size_t count)
  close: { parameters: ["i32"], result: "i32" }, // int close(int fd)
  open: { parameters: ["buffer", "i32"], result: "i32" }, // int open(const char *pathname, int flags)
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" }, // ssize_t read(int fd, void *buf, size_t count)
  geteuid: { parameters: [], result: "u32" }, // uid_t geteuid(void)
  dlopen: { parameters: ["buffer", "i32"], result: "pointer" }, // void *dlopen(const char *filename, int flags)
  dlsym: { parameters: ["pointer", "buffer"], result: "pointer" }, // void *dlsym(void *handle, const char *symbol)
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded C library symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** `mmap` protection and flag values (Linux, all architectures bpfscope supports). */
export const PROT_READ = 0x1;
/** Pages may be written. */
export const PROT_WRITE = 0x2;
/** Changes are shared with the kernel object behind the fd. */
export const MAP_SHARED = 0x01;
/** Copy-on-write pages private to this process. */
export const MAP_PRIVATE = 0x02;
/** Place the mapping exactly at the given address, replacing what was there. */
export const MAP_FIXED = 0x10;
/** Zero-filled memory backed by no file. */
export const MAP_ANONYMOUS = 0x20;
/** Reserve no swap space for the mapping. */
export const MAP_NORESERVE = 0x4000;
/** `sysconf` name of the page size. */
export const SC_PAGESIZE = 30;
/** `epoll_create1` and `eventfd` flag: close the fd on exec. */
export const EPOLL_CLOEXEC = 0x80000;
/** `epoll_ctl` operation: add an fd to the set. */
export const EPOLL_CTL_ADD = 1;
/** `epoll_event.events` bit: the fd is readable. */
export const EPOLLIN = 0x1;
/** `eventfd` flag: reads and writes do not block. */
export const EFD_NONBLOCK = 0x800;
/** `open` flag: close the fd on exec (read-only access is flag 0). */
export const O_CLOEXEC = 0x80000;
/** `access` mode: the file may be read. */
export const R_OK = 4;
/** `dlopen` flag: resolve every symbol now. */
export const RTLD_NOW = 0x2;
/** `dlopen` flag: return a handle only if the library is already loaded. */
export const RTLD_NOLOAD = 0x4;

let loaded: Libc | undefined;

/** Returns the C library symbols, loading glibc on first use. */
export function libc(): Libc {
  loaded ??= lazySymbols("libc.so.6", SYMBOLS, (name, error) => {
    throw new Error(`The C library libc.so.6 has no usable symbol ${name}`, { cause: error });
  }, { isCold: (name) => COLD_SYMBOLS.has(name), lookup: libcSymbol });
  return loaded;
}

// Calls made once per object, mapping, file or ring buffer, bound the cheap
// way (see ffi/_lazy_symbols.ts). dlopen and dlsym must stay fast calls,
// because the cheap way looks symbols up with them.
const COLD_SYMBOLS = new Set([
  "access",
  "capget",
  "close",
  "epoll_create1",
  "epoll_ctl",
  "eventfd",
  "geteuid",
  "mmap",
  "munmap",
  "open",
  "read",
  "strerror",
  "sysconf",
  "vsnprintf",
]);

let libcHandle: Deno.PointerValue | undefined;

function libcSymbol(name: string): Deno.PointerValue {
  // SAFETY: RTLD_NOLOAD returns the handle of the C library this process runs
  // on, which is never unloaded.
  libcHandle ??= libc().dlopen(nulTerminated("libc.so.6"), RTLD_NOW | RTLD_NOLOAD);
  if (libcHandle === null) return null;
  return libc().dlsym(libcHandle, nulTerminated(name));
}

/** Returns the calling thread's current `errno`. */
export function lastErrno(): number {
  // SAFETY: __errno_location() returns the calling thread's errno slot, valid for the thread's lifetime.
  const slot = libc().__errno_location();
  return slot === null ? 0 : new Deno.UnsafePointerView(slot).getInt32();
}

/** Returns the C library's description of an errno value. */
export function strerror(errno: number): string {
  const text = libc().strerror(errno);
  // SAFETY: strerror() returns a static or thread-local string, read before the next call.
  return text === null ? `errno ${errno}` : Deno.UnsafePointerView.getCString(text);
}

let pageSize: number | undefined;

/** Returns the system page size in bytes. */
export function systemPageSize(): number {
  pageSize ??= Number(libc().sysconf(SC_PAGESIZE));
  return pageSize;
}

/**
 * Returns the contents of a small file read through the C library, or
 * undefined when it cannot be opened. Deno 2.9 lets only --allow-all programs
 * read most of /proc, even a world-readable file such as the boot id, so
 * bpfscope reads such files here (FFI access already implies full access).
 */
export function readSmallFile(path: string, maxBytes = 4096): string | undefined {
  const fd = libc().open(nulTerminated(path), O_CLOEXEC);
  if (fd < 0) return undefined;
  try {
    const buffer = new Uint8Array(maxBytes);
    const length = Number(libc().read(fd, buffer, BigInt(maxBytes)));
    return length < 0 ? undefined : new TextDecoder().decode(buffer.subarray(0, length));
  } finally {
    libc().close(fd);
  }
}

/**
 * Returns `text` as a NUL-terminated UTF-8 C string. It lives here, below
 * every other ffi module, because importing _check.ts's cString() would make
 * a loop for some of them. cString() also rejects text that contains a NUL.
 */
export function nulTerminated(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`);
}
