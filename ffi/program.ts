/**
 * {@linkcode BpfProgram}: a program of a loaded object, and its attach methods.
 *
 * @module
 */

import { type CallContext, checkInt, checkPointer, cString, readCString } from "./_check.ts";
import { Errno } from "./_errno.ts";
import type { ObjectState } from "./_object_state.ts";
import { ProgramType, programTypeName } from "./constants.ts";
import { BpfError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";
import { libc } from "./libc.ts";
import { BpfLink, type LinkTarget } from "./link.ts";
import { captureLibbpfOutput } from "./logger.ts";
import {
  MIN_XDP_PACKET,
  runProgramTest,
  type TestRunOptions,
  type TestRunResult,
} from "./_test_run.ts";

/**
 * Kernel-side facts about a loaded program (`struct bpf_prog_info`).
 *
 * @example Average run time per call
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./probe.bpf.o").load();
 * const info = object.program("count_syscall").info();
 * console.log(info.id, Number(info.runTimeNs) / Math.max(1, Number(info.runCount)));
 * ```
 */
export interface ProgramInfo {
  /** The program's id, as shown by `bpftool prog list`. */
  id: number;
  /**
   * Total nanoseconds the program ran. Counted only while BPF statistics are
   * enabled (`sysctl kernel.bpf_stats_enabled=1`); 0 otherwise.
   */
  runTimeNs: bigint;
  /** Number of runs, counted under the same condition as `runTimeNs`. */
  runCount: bigint;
}

// struct bpf_prog_info (linux/bpf.h): size and offsets of the fields read here.
const PROG_INFO_SIZE = 232;
const PROG_INFO_ID = 4;
const PROG_INFO_RUN_TIME_NS = 192;
const PROG_INFO_RUN_CNT = 200;

const TRACEFS_MOUNTS = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"];
const MOUNT_TRACEFS = "mount -t tracefs nodev /sys/kernel/tracing";

/**
 * A program of a loaded {@linkcode BpfObject}. It belongs to the object and
 * becomes unusable when the object is closed.
 *
 * Each attach method returns a {@linkcode BpfLink}, which the object owns and
 * closes (detaching the program) before the object itself closes.
 *
 * @example Attach by section name, then by explicit target
 * ```ts ignore
 * import { openObject } from "../mod.ts";
 *
 * using object = openObject("./probe.bpf.o").load();
 * object.program("on_exec").attach(); // SEC("tracepoint/sched/sched_process_exec")
 * object.program("on_enter").attachRawTracepoint("sys_enter"); // SEC("raw_tp")
 * ```
 */
export class BpfProgram {
  /** The program's function name. */
  readonly name: string;
  /** The ELF section the program came from, such as `"raw_tp/sys_enter"`. */
  readonly sectionName: string;
  /** The program type, a value of {@linkcode ProgramType}. */
  readonly type: number;
  #pointer: Deno.PointerObject;
  #object: ObjectState;
  #subject: CallContext;

  /** @internal Created by {@linkcode BpfObject}; use {@linkcode BpfObject.program}. */
  constructor(pointer: Deno.PointerObject, object: ObjectState) {
    const lib = libbpf();
    this.#pointer = pointer;
    this.#object = object;
    this.name = readCString(lib.bpf_program__name(pointer));
    this.sectionName = readCString(lib.bpf_program__section_name(pointer));
    this.type = lib.bpf_program__type(pointer);
    this.#subject = { program: this.name, object: object.name };
  }

  /** The program type's kernel name, such as `"TRACEPOINT"`. */
  get typeName(): string {
    return programTypeName(this.type);
  }

  /**
   * UNSAFE: the program's file descriptor, owned by the object and closed with it.
   * It is negative for a program that was not loaded (autoload turned off).
   *
   * @throws {ClosedError} after the object is closed
   */
  get fd(): number {
    this.#object.check("read the fd of", `program "${this.name}"`);
    return libbpf().bpf_program__fd(this.#pointer);
  }

  /**
   * Reads the program's id and run-time statistics from the kernel.
   *
   * @throws {BpfError} when the program is not loaded or the call fails
   * @throws {ClosedError} after the object is closed
   */
  info(): ProgramInfo {
    const info = new Uint8Array(PROG_INFO_SIZE);
    const length = new Uint32Array([PROG_INFO_SIZE]);
    const ret = libbpf().bpf_obj_get_info_by_fd(
      this.#loadedFd("read info of"),
      info,
      new Uint8Array(length.buffer),
    );
    checkInt(ret, "read info of", this.#subject);

    const view = new DataView(info.buffer);
    return {
      id: view.getUint32(PROG_INFO_ID, true),
      runTimeNs: view.getBigUint64(PROG_INFO_RUN_TIME_NS, true),
      runCount: view.getBigUint64(PROG_INFO_RUN_CNT, true),
    };
  }

  /**
   * Runs the program in the kernel on `data` without attaching it
   * (BPF_PROG_TEST_RUN), `repeat` times, and returns the last run's return
   * value and the average run time, for packet programs: XDP, tc and socket
   * filters (raw tracepoint and syscall programs need a context argument,
   * which this method does not pass yet). XDP wants at least a 14-byte
   * (Ethernet header) packet. The call blocks the calling thread for the
   * whole run, so long runs belong in a Worker.
   *
   * @throws {BpfError} when the kernel cannot test-run this program type
   * (`ENOTSUPP`) or rejects the input (`EINVAL`)
   * @throws {ClosedError} after the object is closed
   *
   * @example Run an XDP program on an empty Ethernet frame
   * ```ts ignore
   * import { openObject } from "../mod.ts";
   *
   * using object = openObject("./xdp.bpf.o").load();
   * const result = object.program("xdp_pass").testRun({ data: new Uint8Array(64) });
   * console.log(result.returnValue); // 2 for XDP_PASS
   * ```
   */
  testRun(options: TestRunOptions): TestRunResult {
    const fd = this.#loadedFd("test-run");
    try {
      return runProgramTest(fd, options);
    } catch (error) {
      if (!(error instanceof BpfError)) throw error;
      const hint = error.code === "EINVAL" && options.data.byteLength < MIN_XDP_PACKET
        ? `the data is ${options.data.byteLength} bytes; XDP and tc programs need at least ${MIN_XDP_PACKET}, an Ethernet header`
        : error.code === "ENOSPC"
        ? "dataOut is smaller than the output data"
        : undefined;
      throw new BpfError({
        ...this.#subject,
        op: "test-run",
        errno: error.errno,
        detail: error.detail,
        ...(hint === undefined ? {} : { hint }),
        cause: error,
      });
    }
  }

  /**
   * Attaches the program to the hook its section names, such as
   * `SEC("tracepoint/sched/sched_process_exec")` or `SEC("raw_tp/sys_enter")`.
   *
   * @throws {BpfError} with code `EOPNOTSUPP` when the section names no target
   * (such as a bare `SEC("raw_tp")`), and on any attach failure
   * @throws {ClosedError} after the object is closed
   */
  attach(): BpfLink {
    const target: LinkTarget = { kind: "auto", section: this.sectionName };
    return this.#attach(target, (pointer) => libbpf().bpf_program__attach(pointer));
  }

  /**
   * Attaches the program to the tracepoint `category/name` (see
   * `/sys/kernel/tracing/available_events`). Needs tracefs to be mounted.
   *
   * @throws {BpfError} with code `ENOENT` when the tracepoint does not exist or
   * tracefs is not mounted (the message names which, and how to mount it)
   * @throws {ClosedError} after the object is closed
   */
  attachTracepoint(category: string, name: string): BpfLink {
    const target: LinkTarget = { kind: "tracepoint", category, name };
    return this.#attach(
      target,
      (pointer) =>
        libbpf().bpf_program__attach_tracepoint(pointer, cString(category), cString(name)),
    );
  }

  /**
   * Attaches the program to the raw tracepoint `name`, such as `"sys_enter"`.
   * Raw tracepoints need no tracefs.
   *
   * @throws {BpfError} with code `ENOENT` when the raw tracepoint does not exist
   * @throws {ClosedError} after the object is closed
   */
  attachRawTracepoint(name: string): BpfLink {
    const target: LinkTarget = { kind: "raw_tracepoint", name };
    return this.#attach(
      target,
      (pointer) => libbpf().bpf_program__attach_raw_tracepoint(pointer, cString(name)),
    );
  }

  /**
   * Attaches an XDP program to the network interface with index `ifindex`.
   *
   * @throws {BpfError} on attach failure
   * @throws {ClosedError} after the object is closed
   */
  attachXdp(ifindex: number): BpfLink {
    checkFd(ifindex, "interface index");
    const target: LinkTarget = { kind: "xdp", ifindex };
    return this.#attach(target, (pointer) => libbpf().bpf_program__attach_xdp(pointer, ifindex));
  }

  /**
   * Attaches the program to an open perf event. The perf event fd stays owned
   * by the caller.
   *
   * @throws {BpfError} on attach failure
   * @throws {ClosedError} after the object is closed
   */
  attachPerfEvent(perfEventFd: number): BpfLink {
    checkFd(perfEventFd, "perf event fd");
    const target: LinkTarget = { kind: "perf_event", fd: perfEventFd };
    return this.#attach(
      target,
      (pointer) => libbpf().bpf_program__attach_perf_event(pointer, perfEventFd),
    );
  }

  /**
   * Attaches a cgroup program to the cgroup open as `cgroupFd`. The fd stays
   * owned by the caller.
   *
   * @throws {BpfError} on attach failure
   * @throws {ClosedError} after the object is closed
   */
  attachCgroup(cgroupFd: number): BpfLink {
    checkFd(cgroupFd, "cgroup fd");
    const target: LinkTarget = { kind: "cgroup", fd: cgroupFd };
    return this.#attach(
      target,
      (pointer) => libbpf().bpf_program__attach_cgroup(pointer, cgroupFd),
    );
  }

  #attach(target: LinkTarget, call: (pointer: Deno.PointerObject) => Deno.PointerValue): BpfLink {
    this.#loadedFd("attach");

    const result = captureLibbpfOutput(() =>
      checkPointer(call(this.#pointer), "attach", this.#subject)
    );
    if (!result.ok) throw this.#attachError(target, result.error, result.output);

    const link = new BpfLink(result.value, this.name, target, this.#object);
    this.#object.adopt(link, 0);
    return link;
  }

  #attachError(target: LinkTarget, error: unknown, output: string[]): unknown {
    if (!(error instanceof BpfError)) return error;
    const hint = attachHint(target, error.errno, this.sectionName, this.type) ?? error.hint;
    return new BpfError({
      ...this.#subject,
      op: "attach",
      target: describeTarget(target),
      errno: error.errno,
      detail: error.detail,
      libbpfOutput: output,
      ...(hint === undefined ? {} : { hint }),
      cause: error,
    });
  }

  #loadedFd(op: string): number {
    const fd = this.fd;
    if (fd >= 0) return fd;
    throw new BpfError({
      ...this.#subject,
      op,
      errno: Errno.EBADF,
      detail: "the program was not loaded",
      hint: "its autoload was turned off before load",
    });
  }
}

function describeTarget(target: LinkTarget): string {
  switch (target.kind) {
    case "auto":
      return `by section "${target.section}"`;
    case "tracepoint":
      return `to tracepoint "${target.category}/${target.name}"`;
    case "raw_tracepoint":
      return `to raw tracepoint "${target.name}"`;
    case "xdp":
      return `to XDP of interface ${target.ifindex}`;
    case "perf_event":
      return `to perf event fd ${target.fd}`;
    case "cgroup":
      return `to cgroup fd ${target.fd}`;
  }
}

// The explicit attach method for each program type whose sections can omit the target.
const ATTACH_METHODS: Readonly<Record<number, string>> = {
  [ProgramType.TRACEPOINT]: "attachTracepoint(category, name)",
  [ProgramType.RAW_TRACEPOINT]: "attachRawTracepoint(name)",
  [ProgramType.RAW_TRACEPOINT_WRITABLE]: "attachRawTracepoint(name)",
  [ProgramType.XDP]: "attachXdp(ifindex)",
  [ProgramType.PERF_EVENT]: "attachPerfEvent(fd)",
  [ProgramType.CGROUP_SKB]: "attachCgroup(fd)",
  [ProgramType.CGROUP_SOCK]: "attachCgroup(fd)",
  [ProgramType.CGROUP_SOCK_ADDR]: "attachCgroup(fd)",
  [ProgramType.CGROUP_SOCKOPT]: "attachCgroup(fd)",
  [ProgramType.CGROUP_SYSCTL]: "attachCgroup(fd)",
  [ProgramType.CGROUP_DEVICE]: "attachCgroup(fd)",
  [ProgramType.SOCK_OPS]: "attachCgroup(fd)",
};

function attachHint(
  target: LinkTarget,
  errno: number,
  section: string,
  type: number,
): string | undefined {
  const usesTracepoint = target.kind === "tracepoint" ||
    (target.kind === "auto" && /^(tp|tracepoint)\//.test(section));
  if (usesTracepoint && errno === Errno.ENOENT) {
    if (!tracefsMounted()) return `tracefs is not mounted: mount it with \`${MOUNT_TRACEFS}\``;
    return "no such tracepoint: see /sys/kernel/tracing/available_events";
  }
  if (type === ProgramType.KPROBE && errno === Errno.ENOENT) {
    return "kprobes and uprobes are not available on this kernel, or the function or binary does not exist (see /sys/kernel/tracing/available_filter_functions)";
  }
  if (target.kind === "auto" && (errno === Errno.EOPNOTSUPP || errno === Errno.ESRCH)) {
    const method = ATTACH_METHODS[type];
    return method === undefined
      ? `section "${section}" names no target, and bpfscope has no attach method for ${
        programTypeName(type)
      } programs yet`
      : `section "${section}" names no target to attach to: use ${method}`;
  }
  if (errno === Errno.E2BIG && (usesTracepoint || target.kind === "raw_tracepoint")) {
    return "a tracepoint takes at most 64 BPF programs (BPF_TRACE_MAX_PROGS): close links that are no longer needed";
  }
  if (errno === Errno.EEXIST) return "the program is already attached to this hook";
  return undefined;
}

function checkFd(value: number, name: string): number {
  if (Number.isInteger(value) && value >= 0 && value <= 0x7fffffff) return value;
  throw new RangeError(`Invalid ${name}: ${value} is not a non-negative 32-bit integer`);
}

function tracefsMounted(): boolean {
  // access() through FFI, so that the check needs no --allow-read.
  return TRACEFS_MOUNTS.some((path) => libc().access(cString(path), 0) === 0);
}
