// Kernel clocks read with clock_gettime(2), to turn the CLOCK_BOOTTIME
// timestamps of eBPF programs (bpf_ktime_get_boot_ns()) into wall-clock time.

import { callError } from "./_check.ts";
import { lastErrno, libc } from "./libc.ts";

/** Wall-clock time, which settimeofday and NTP can step. */
export const CLOCK_REALTIME = 0;
/** Time since boot that does not stop while the system is suspended. */
export const CLOCK_BOOTTIME = 7;

// struct timespec { time_t tv_sec; long tv_nsec; } on 64-bit Linux.
const timespec = new BigInt64Array(2);
const timespecBytes = new Uint8Array(timespec.buffer);

/**
 * Reads clock `clock` in nanoseconds.
 *
 * @throws {BpfError} when clock_gettime fails, which it does only for a clock
 * id that this kernel does not have
 */
export function clockNs(clock: number): bigint {
  if (libc().clock_gettime(clock, timespecBytes) !== 0) {
    throw callError(lastErrno() || 22, `read clock ${clock} with clock_gettime`);
  }
  return timespec[0]! * 1_000_000_000n + timespec[1]!;
}

/**
 * Returns CLOCK_REALTIME minus CLOCK_BOOTTIME in nanoseconds: add it to a
 * CLOCK_BOOTTIME timestamp to get nanoseconds since the Unix epoch. The
 * boot-time reading is compared with the midpoint of two wall-clock readings
 * taken around it, so the error is at most half the time between them.
 */
export function bootTimeOffsetNs(): bigint {
  const before = clockNs(CLOCK_REALTIME);
  const boot = clockNs(CLOCK_BOOTTIME);
  const after = clockNs(CLOCK_REALTIME);
  return (before + after) / 2n - boot;
}
