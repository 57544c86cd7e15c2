/**
 * The libbpf symbol table and its loader. Nothing outside `ffi/` imports this
 * module; the rest of bpfscope goes through the wrappers in `ffi/`.
 *
 * @module
 */

import { BpfError } from "./errors.ts";
import { Errno } from "./_errno.ts";
import { readEnv } from "./_env.ts";
import { lazySymbols, symbolName } from "./_lazy_symbols.ts";
import { libc, nulTerminated, RTLD_NOLOAD, RTLD_NOW } from "./libc.ts";

/**
 * The environment variable that names the libbpf shared library to load,
 * instead of the standard search. bpfscope checks the library's version and
 * that it exports every function it uses, then calls them directly. A
 * library whose libbpf names are not those functions (data, or other
 * signatures) can crash the process, and no check before the call can rule
 * that out.
 *
 * @example
 * ```sh
 * BPFSCOPE_LIBBPF_PATH=/opt/libbpf/lib64/libbpf.so.1 deno run --allow-ffi --allow-env tool.ts
 * ```
 */
export const LIBBPF_PATH_ENV = "BPFSCOPE_LIBBPF_PATH";

/** The oldest libbpf release bpfscope works with (its 1.0 API: NULL plus errno, no legacy mode). */
export const MIN_LIBBPF_VERSION = { major: 1, minor: 0 } as const;

const SONAMES = [
  "libbpf.so.1",
  "/usr/lib/x86_64-linux-gnu/libbpf.so.1",
  "/usr/lib/aarch64-linux-gnu/libbpf.so.1",
  "/usr/lib64/libbpf.so.1",
  "/usr/lib/libbpf.so.1",
];

const VERSION_SYMBOLS = {
  libbpf_major_version: { parameters: [], result: "u32" }, // __u32 libbpf_major_version(void)
  libbpf_minor_version: { parameters: [], result: "u32" }, // __u32 libbpf_minor_version(void)
} as const satisfies Deno.ForeignLibraryInterface;

const SYMBOLS = {
  // Library.
  ...VERSION_SYMBOLS,
  libbpf_strerror: { parameters: ["i32", "buffer", "usize"], result: "i32" }, // int (int err, char *buf, size_t size)
  libbpf_set_print: { parameters: ["function"], result: "function" }, // libbpf_print_fn_t (libbpf_print_fn_t fn)
  libbpf_num_possible_cpus: { parameters: [], result: "i32" }, // int (void)

  // Object.
  bpf_object__open_file: { parameters: ["buffer", "buffer"], result: "pointer" }, // struct bpf_object *(const char *path, const struct bpf_object_open_opts *opts)
  bpf_object__open_mem: { parameters: ["buffer", "usize", "buffer"], result: "pointer" }, // struct bpf_object *(const void *obj_buf, size_t obj_buf_sz, const struct bpf_object_open_opts *opts)
  bpf_object__load: { parameters: ["pointer"], result: "i32" }, // int (struct bpf_object *obj)
  bpf_object__close: { parameters: ["pointer"], result: "void" }, // void (struct bpf_object *obj)
  bpf_object__name: { parameters: ["pointer"], result: "pointer" }, // const char *(const struct bpf_object *obj)
  bpf_object__next_map: { parameters: ["pointer", "pointer"], result: "pointer" }, // struct bpf_map *(const struct bpf_object *obj, const struct bpf_map *map)
  bpf_object__next_program: { parameters: ["pointer", "pointer"], result: "pointer" }, // struct bpf_program *(const struct bpf_object *obj, struct bpf_program *prog)
  bpf_object__btf: { parameters: ["pointer"], result: "pointer" }, // struct btf *(const struct bpf_object *obj)
  bpf_object__find_map_by_name: { parameters: ["pointer", "buffer"], result: "pointer" }, // struct bpf_map *(const struct bpf_object *obj, const char *name)

  // Map.
  bpf_map__name: { parameters: ["pointer"], result: "pointer" }, // const char *(const struct bpf_map *map)
  bpf_map__type: { parameters: ["pointer"], result: "i32" }, // enum bpf_map_type (const struct bpf_map *map)
  bpf_map__key_size: { parameters: ["pointer"], result: "u32" }, // __u32 (const struct bpf_map *map)
  bpf_map__value_size: { parameters: ["pointer"], result: "u32" }, // __u32 (const struct bpf_map *map)
  bpf_map__set_value_size: { parameters: ["pointer", "u32"], result: "i32" }, // int (struct bpf_map *map, __u32 size)
  bpf_map__max_entries: { parameters: ["pointer"], result: "u32" }, // __u32 (const struct bpf_map *map)
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" }, // int (struct bpf_map *map, __u32 max_entries)
  bpf_map__map_flags: { parameters: ["pointer"], result: "u32" }, // __u32 (const struct bpf_map *map)
  bpf_map__set_map_flags: { parameters: ["pointer", "u32"], result: "i32" }, // int (struct bpf_map *map, __u32 flags)
  bpf_map__fd: { parameters: ["pointer"], result: "i32" }, // int (const struct bpf_map *map)
  bpf_map__is_internal: { parameters: ["pointer"], result: "bool" }, // bool (const struct bpf_map *map)
  bpf_map__btf_key_type_id: { parameters: ["pointer"], result: "u32" }, // __u32 (const struct bpf_map *map)
  bpf_map__btf_value_type_id: { parameters: ["pointer"], result: "u32" }, // __u32 (const struct bpf_map *map)
  bpf_map__initial_value: { parameters: ["pointer", "buffer"], result: "pointer" }, // const void *(struct bpf_map *map, size_t *psize)

  // BTF (btf.h).
  btf__raw_data: { parameters: ["pointer", "buffer"], result: "pointer" }, // const void *(const struct btf *btf, __u32 *size)

  // Program.
  bpf_program__name: { parameters: ["pointer"], result: "pointer" }, // const char *(const struct bpf_program *prog)
  bpf_program__section_name: { parameters: ["pointer"], result: "pointer" }, // const char *(const struct bpf_program *prog)
  bpf_program__type: { parameters: ["pointer"], result: "i32" }, // enum bpf_prog_type (const struct bpf_program *prog)
  bpf_program__fd: { parameters: ["pointer"], result: "i32" }, // int (const struct bpf_program *prog)
  bpf_program__autoload: { parameters: ["pointer"], result: "bool" }, // bool (const struct bpf_program *prog)
  bpf_program__set_autoload: { parameters: ["pointer", "bool"], result: "i32" }, // int (struct bpf_program *prog, bool autoload)
  bpf_program__attach: { parameters: ["pointer"], result: "pointer" }, // struct bpf_link *(const struct bpf_program *prog)
  bpf_program__attach_tracepoint: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "pointer",
  }, // struct bpf_link *(const struct bpf_program *prog, const char *tp_category, const char *tp_name)
  bpf_program__attach_raw_tracepoint: { parameters: ["pointer", "buffer"], result: "pointer" }, // struct bpf_link *(const struct bpf_program *prog, const char *tp_name)
  bpf_program__attach_xdp: { parameters: ["pointer", "i32"], result: "pointer" }, // struct bpf_link *(const struct bpf_program *prog, int ifindex)
  bpf_program__attach_perf_event: { parameters: ["pointer", "i32"], result: "pointer" }, // struct bpf_link *(const struct bpf_program *prog, int pfd)
  bpf_program__attach_cgroup: { parameters: ["pointer", "i32"], result: "pointer" }, // struct bpf_link *(const struct bpf_program *prog, int cgroup_fd)

  // Link.
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" }, // int (struct bpf_link *link)
  bpf_link__fd: { parameters: ["pointer"], result: "i32" }, // int (const struct bpf_link *link)

  // Low-level bpf() wrappers (bpf.h).
  bpf_map_lookup_elem: { parameters: ["i32", "buffer", "buffer"], result: "i32" }, // int (int fd, const void *key, void *value)
  // The same two calls with pointer arguments, for buffers whose address the
  // caller computed once: about 15 ns cheaper per call than "buffer" in Deno 2.9.
  bpf_map_lookup_elem_pointer: {
    name: "bpf_map_lookup_elem",
    parameters: ["i32", "pointer", "pointer"],
    result: "i32",
  }, // int (int fd, const void *key, void *value)
  bpf_map_lookup_elem_flags_pointer: {
    name: "bpf_map_lookup_elem_flags",
    parameters: ["i32", "pointer", "pointer", "u64"],
    result: "i32",
  }, // int (int fd, const void *key, void *value, __u64 flags)
  bpf_map_lookup_elem_flags: { parameters: ["i32", "buffer", "buffer", "u64"], result: "i32" }, // int (int fd, const void *key, void *value, __u64 flags)
  bpf_map_update_elem: { parameters: ["i32", "buffer", "buffer", "u64"], result: "i32" }, // int (int fd, const void *key, const void *value, __u64 flags)
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" }, // int (int fd, const void *key)
  bpf_map_get_next_key: { parameters: ["i32", "buffer", "buffer"], result: "i32" }, // int (int fd, const void *key, void *next_key)
  bpf_map_lookup_and_delete_elem_flags: {
    parameters: ["i32", "buffer", "buffer", "u64"],
    result: "i32",
  }, // int (int fd, const void *key, void *value, __u64 flags)
  bpf_map_lookup_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  }, // int (int fd, void *in_batch, void *out_batch, void *keys, void *values, __u32 *count, const struct bpf_map_batch_opts *opts)
  bpf_map_lookup_and_delete_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  }, // int (int fd, void *in_batch, void *out_batch, void *keys, void *values, __u32 *count, const struct bpf_map_batch_opts *opts)
  bpf_map_update_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  }, // int (int fd, const void *keys, const void *values, __u32 *count, const struct bpf_map_batch_opts *opts)
  bpf_prog_test_run_opts: { parameters: ["i32", "buffer"], result: "i32" }, // int (int prog_fd, struct bpf_test_run_opts *opts)
  bpf_obj_get_info_by_fd: { parameters: ["i32", "buffer", "buffer"], result: "i32" }, // int (int bpf_fd, void *info, __u32 *info_len)
  bpf_enable_stats: { parameters: ["i32"], result: "i32" }, // int (enum bpf_stats_type type)
  bpf_obj_get: { parameters: ["buffer"], result: "i32" }, // int (const char *pathname)
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded libbpf symbols. */
export type Libbpf = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let loaded: Libbpf | undefined;

/**
 * Returns the libbpf symbols, loading the library on first use.
 *
 * The library is looked up in `$BPFSCOPE_LIBBPF_PATH` first, then under its
 * soname and the usual Debian, Fedora and Arch paths.
 *
 * @throws {BpfError} when no candidate loads or the library is older than 1.0;
 * the message lists every path tried.
 * @throws {Deno.errors.NotCapable} without `--allow-ffi`.
 */
export function libbpf(): Libbpf {
  loaded ??= openLibbpf();
  return loaded;
}

/**
 * Returns the version of the loaded libbpf as `"major.minor"`, loading the
 * library if needed.
 *
 * @throws {BpfError} when libbpf cannot be loaded
 *
 * @example
 * ```ts ignore
 * import { libbpfVersion } from "../mod.ts";
 *
 * console.log(`libbpf ${libbpfVersion()}`); // "libbpf 1.1"
 * ```
 */
export function libbpfVersion(): string {
  const lib = libbpf();
  return `${lib.libbpf_major_version()}.${lib.libbpf_minor_version()}`;
}

function openLibbpf(): Libbpf {
  const override = readEnv(LIBBPF_PATH_ENV);
  const candidates = override === undefined ? SONAMES : [override];
  const failures: string[] = [];
  let lastError: unknown;

  for (const path of candidates) {
    try {
      // Only the version symbols are bound here; the rest are bound on first use.
      const probe = Deno.dlopen(path, VERSION_SYMBOLS).symbols;
      checkVersion(probe, path);
      // A symbol missing at first use could fail a cleanup such as
      // bpf_link__destroy and leave a program attached, so all of them are
      // looked up now (dlsym takes about a microsecond each).
      const version = `${probe.libbpf_major_version()}.${probe.libbpf_minor_version()}`;
      const lookup = symbolLookup(path);
      const missing = missingSymbols(lookup, SYMBOLS);
      if (missing.length > 0) throw incompleteLibrary(path, version, missing);
      return lazySymbols(path, SYMBOLS, (name, error) => {
        throw incompleteLibrary(path, version, [name], error);
      }, { isCold: isColdSymbol, lookup });
    } catch (error) {
      if (isPermissionError(error) || error instanceof BpfError) throw error;
      failures.push(`${path}: ${error instanceof Error ? error.message : String(error)}`);
      lastError = error;
    }
  }

  const remedy = override === undefined
    ? `install libbpf (Debian: apt-get install libbpf1) or set ${LIBBPF_PATH_ENV} to its path`
    : `check ${LIBBPF_PATH_ENV}, or unset it to search the standard paths`;
  throw new BpfError({
    op: "load libbpf",
    errno: Errno.ENOENT,
    detail: `no usable library found; tried ${failures.join("; ")}`,
    hint: remedy,
    cause: lastError,
  });
}

// Returns dlsym() over the library at `path`, which Deno.dlopen() has loaded.
function symbolLookup(path: string): (name: string) => Deno.PointerValue {
  const c = libc();
  // SAFETY: RTLD_NOLOAD only returns a handle to a library this process has
  // loaded. The handle is never closed, as Deno's own handles are not, so the
  // addresses that dlsym returns stay valid for the life of the process.
  const handle = c.dlopen(nulTerminated(path), RTLD_NOW | RTLD_NOLOAD);
  if (handle === null) throw new Error(`dlopen found no loaded library ${path}`);
  return (name) => c.dlsym(handle, nulTerminated(name));
}

// The names among `symbols` that the library does not export.
function missingSymbols(
  lookup: (name: string) => Deno.PointerValue,
  symbols: Deno.ForeignLibraryInterface,
): string[] {
  return Object.entries(symbols)
    .map(([key, definition]) => symbolName(key, definition))
    .filter((name) => lookup(name) === null);
}

// Functions called once per object, map, program or link (open, load,
// attach, metadata, close), or at most once per collection, are bound the
// cheap way (see ffi/_lazy_symbols.ts). Element operations, batches and test
// runs stay fast calls.
function isColdSymbol(name: string): boolean {
  return /^(bpf_object__|bpf_map__|bpf_program__|bpf_link__|btf__|libbpf_)/.test(name) ||
    name === "bpf_obj_get" || name === "bpf_obj_get_info_by_fd" || name === "bpf_enable_stats";
}

function incompleteLibrary(
  path: string,
  version: string,
  missing: string[],
  cause?: unknown,
): BpfError {
  const { major, minor } = MIN_LIBBPF_VERSION;
  return new BpfError({
    op: "load libbpf",
    errno: Errno.ENOSYS,
    path,
    detail: `it reports version ${version} but lacks ${
      missing.length > 6
        ? `${missing.slice(0, 5).join(", ")} and ${missing.length - 5} other symbols`
        : missing.join(", ")
    }`,
    hint: `point ${LIBBPF_PATH_ENV} at a complete libbpf ${major}.${minor} or newer, ` +
      "or unset it to use the system's",
    ...(cause === undefined ? {} : { cause }),
  });
}

// Deno 2 reports a missing --allow-ffi as NotCapable, Deno 1 as PermissionDenied.
function isPermissionError(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

function checkVersion(
  lib: Deno.DynamicLibrary<typeof VERSION_SYMBOLS>["symbols"],
  path: string,
): void {
  const major = lib.libbpf_major_version();
  const minor = lib.libbpf_minor_version();
  const tooOld = major < MIN_LIBBPF_VERSION.major ||
    (major === MIN_LIBBPF_VERSION.major && minor < MIN_LIBBPF_VERSION.minor);
  if (!tooOld) return;

  throw new BpfError({
    op: "load libbpf",
    errno: Errno.ENOSYS,
    path,
    detail: `version ${major}.${minor} is too old`,
    hint: `bpfscope needs libbpf ${MIN_LIBBPF_VERSION.major}.${MIN_LIBBPF_VERSION.minor} or newer`,
  });
}
