/**
 * bpfscope: load eBPF programs through libbpf from Deno, attach them to kernel
 * events, and read what they count straight out of kernel memory.
 *
 * The flow is {@linkcode openObject} (configure) → {@linkcode OpenObject.load}
 * (a live {@linkcode BpfObject}) → attach programs ({@linkcode BpfLink}) →
 * read maps ({@linkcode BpfMap}, or zero-copy through {@linkcode MapMemory}).
 * Everything native is `Disposable`, so `using` cleans up. Loading programs
 * needs root, or the CAP_BPF and CAP_PERFMON capabilities, and `--allow-ffi`.
 *
 * @example Count syscalls per CPU with the built-in probe
 * ```ts ignore
 * import { SyscallsProbe } from "./mod.ts";
 *
 * using probe = SyscallsProbe.open();
 * await new Promise((resolve) => setTimeout(resolve, 1000));
 * const snapshot = probe.read();
 * console.log(snapshot.total, snapshot.top(5));
 * ```
 *
 * @module
 */

export {
  BpfError,
  type BpfErrorOptions,
  type BpfErrorSubject,
  ClosedError,
  NotSupportedError,
  VerifierError,
} from "./ffi/errors.ts";
export {
  BpfObject,
  type ObjectSource,
  OpenMap,
  OpenObject,
  openObject,
  type OpenObjectOptions,
  OpenProgram,
} from "./ffi/object.ts";
export { BpfMap, type MmapOptions } from "./ffi/map.ts";
export { BpfProgram, type ProgramInfo } from "./ffi/program.ts";
export { BpfLink, type LinkTarget } from "./ffi/link.ts";
export { MapMemory } from "./ffi/map_memory.ts";
export { possibleCpuCount } from "./ffi/cpus.ts";
export {
  type LibbpfLogger,
  type LibbpfLoggerSetting,
  type LibbpfLogLevel,
  setLibbpfLogger,
  stderrLogger,
} from "./ffi/logger.ts";
export { LIBBPF_PATH_ENV, libbpfVersion } from "./ffi/libbpf.ts";
export {
  MapFlags,
  MapType,
  mapTypeName,
  ProgramType,
  programTypeName,
  UpdateFlags,
} from "./ffi/constants.ts";
export { SYSCALLS_OBJECT } from "./bpf/syscalls_object.ts";
export {
  OTHER_SLOT,
  SYSCALL_SLOTS,
  type SyscallCount,
  syscallName,
  SyscallSnapshot,
  SyscallsProbe,
} from "./plugins/probes/syscalls.ts";
