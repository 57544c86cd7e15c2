// CPU affinity of the calling thread, for the seqlock stress tests: the
// writer and the reader run pinned to different CPUs, so that they really
// run at the same time.

import assert from "node:assert/strict";
import { lastErrno, libc } from "../../ffi/libc.ts";

// sizeof(cpu_set_t) in glibc: 1024 bits.
const CPU_SET_SIZE = 128;

/** Returns the CPUs the calling thread may run on. */
export function allowedCpus(): number[] {
  const mask = currentMask();
  const cpus: number[] = [];
  for (let cpu = 0; cpu < CPU_SET_SIZE * 8; cpu++) {
    if ((mask[cpu >> 3]! & (1 << (cpu & 7))) !== 0) cpus.push(cpu);
  }
  return cpus;
}

/** Pins the calling thread to `cpu` and returns its previous mask, for restoreAffinity(). */
export function pinThread(cpu: number): Uint8Array<ArrayBuffer> {
  const previous = currentMask();
  const mask = new Uint8Array(CPU_SET_SIZE);
  mask[cpu >> 3] = 1 << (cpu & 7);
  setMask(mask, `pin the thread to CPU ${cpu}`);
  return previous;
}

/** Restores a mask returned by pinThread(). */
export function restoreAffinity(mask: Uint8Array): void {
  setMask(mask, "restore the thread's CPU affinity");
}

function currentMask(): Uint8Array<ArrayBuffer> {
  const mask = new Uint8Array(CPU_SET_SIZE);
  // pid 0 is the calling thread.
  const ret = libc().sched_getaffinity(0, BigInt(CPU_SET_SIZE), mask);
  assert.equal(ret, 0, `sched_getaffinity() failed with errno ${lastErrno()}`);
  return mask;
}

function setMask(mask: Uint8Array, operation: string): void {
  const ret = libc().sched_setaffinity(0, BigInt(CPU_SET_SIZE), mask);
  assert.equal(
    ret,
    0,
    `Failed to ${operation}: sched_setaffinity() failed with errno ${lastErrno()}`,
  );
}
