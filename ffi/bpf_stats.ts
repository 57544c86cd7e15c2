/**
 * {@linkcode RunTimeStats}: kernel run-time statistics of BPF programs,
 * enabled for as long as a file descriptor from `BPF_ENABLE_STATS` is open.
 *
 * @module
 */

import { checkInt } from "./_check.ts";
import { track, untrack } from "./_resources.ts";
import { ClosedError } from "./errors.ts";
import { libbpf } from "./libbpf.ts";
import { libc } from "./libc.ts";

// enum bpf_stats_type (linux/bpf.h).
const BPF_STATS_RUN_TIME = 0;

/**
 * A hold on the kernel's BPF run-time statistics. While any such hold is open
 * (or `sysctl kernel.bpf_stats_enabled` is 1), the kernel counts
 * `run_time_ns` and `run_cnt` of every BPF program on the host, which
 * {@linkcode BpfProgram.info} reads. The kernel then times every program
 * run, which adds a little overhead to each. Closing the hold stops the
 * counting unless another hold or the sysctl keeps it on; the counts stay.
 *
 * @example Count runs of the syscalls probe for one second
 * ```ts ignore
 * import { enableRunTimeStats, SyscallsProbe } from "../mod.ts";
 *
 * using stats = enableRunTimeStats();
 * using probe = SyscallsProbe.open();
 * await new Promise((resolve) => setTimeout(resolve, 1000));
 * console.log(probe.object.programs[0]!.info().runCount);
 * ```
 */
export class RunTimeStats implements Disposable {
  #fd: number;
  #token: object;

  /** @internal Use {@linkcode enableRunTimeStats}. */
  constructor(fd: number) {
    this.#fd = fd;
    this.#token = track(this, "BPF run-time statistics hold", () => libc().close(fd));
  }

  /** Whether {@linkcode RunTimeStats.close} has run. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * UNSAFE: the file descriptor that keeps the statistics on.
   *
   * @throws {ClosedError} after close
   */
  get fd(): number {
    if (this.#fd < 0) throw new ClosedError("use", "BPF run-time statistics hold");
    return this.#fd;
  }

  /** Releases the hold. Calling it again does nothing. */
  close(): void {
    if (this.#fd < 0) return;
    untrack(this.#token);
    libc().close(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode RunTimeStats.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Turns on the kernel's run-time statistics of BPF programs
 * (`BPF_ENABLE_STATS` with `BPF_STATS_RUN_TIME`, Linux 5.8) until the
 * returned hold is closed. Needs CAP_SYS_ADMIN.
 *
 * @throws {BpfError} with code `EPERM` without CAP_SYS_ADMIN, or `EINVAL` on
 * kernels before 5.8
 *
 * @example
 * ```ts ignore
 * import { enableRunTimeStats } from "../mod.ts";
 *
 * using stats = enableRunTimeStats();
 * ```
 */
export function enableRunTimeStats(): RunTimeStats {
  const fd = libbpf().bpf_enable_stats(BPF_STATS_RUN_TIME);
  checkInt(fd, "enable BPF run-time statistics");
  return new RunTimeStats(fd);
}
