// BPF_PROG_TEST_RUN through libbpf's bpf_prog_test_run_opts(): runs a loaded
// program in the kernel on a given input, without attaching it. Tests use it
// to drive XDP programs. It takes a program fd, so a Worker can call it for a
// program that the main thread loaded.

import { checkInt } from "./_check.ts";
import { libbpf } from "./libbpf.ts";

// struct bpf_test_run_opts (bpf.h, libbpf 1.1.2; checked with offsetof): 80 bytes.
const OPTS_SIZE = 80;
const OPTS_DATA_IN = 8;
const OPTS_DATA_OUT = 16;
const OPTS_DATA_SIZE_IN = 24;
const OPTS_DATA_SIZE_OUT = 28;
const OPTS_RETVAL = 56;
const OPTS_REPEAT = 60;
const OPTS_DURATION = 64;

/** The smallest packet an XDP test run accepts: an Ethernet header (ETH_HLEN). */
export const MIN_XDP_PACKET = 14;

/**
 * Input of a test run: see {@linkcode BpfProgram.testRun}.
 *
 * @example
 * ```ts
 * import type { TestRunOptions } from "./_test_run.ts";
 *
 * const options: TestRunOptions = { data: new Uint8Array(64), repeat: 1000 };
 * ```
 */
export interface TestRunOptions {
  /** The input packet or context data. */
  data: Uint8Array<ArrayBuffer>;
  /** How many times the kernel runs the program in this call. @default 1 */
  repeat?: number;
  /** A buffer that receives the data as the program left it (the packet, for XDP). */
  dataOut?: Uint8Array<ArrayBuffer>;
}

/**
 * Output of a test run: see {@linkcode BpfProgram.testRun}.
 *
 * @example
 * ```ts
 * import type { TestRunResult } from "./_test_run.ts";
 *
 * const result: TestRunResult = { returnValue: 2, durationNs: 35, dataSizeOut: 0 };
 * console.log(result.returnValue === 2 ? "XDP_PASS" : "other");
 * ```
 */
export interface TestRunResult {
  /** The program's return value from the last run. */
  returnValue: number;
  /** The average run time in nanoseconds, as the kernel measured it. */
  durationNs: number;
  /** The bytes of output data the kernel wrote to `dataOut` (0 without it). */
  dataSizeOut: number;
}

/** Runs the program behind `programFd` `repeat` times on `data`. */
export function runProgramTest(programFd: number, options: TestRunOptions): TestRunResult {
  const repeat = options.repeat ?? 1;
  // The kernel takes a u32 and runs 2^32 - 1 times for -1, blocking the thread for hours.
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 0x7fffffff) {
    throw new RangeError(`Invalid repeat ${repeat}: expected an integer from 1 to ${0x7fffffff}`);
  }
  const opts = new Uint8Array(OPTS_SIZE);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, BigInt(OPTS_SIZE), true);
  view.setBigUint64(OPTS_DATA_IN, addressOf(options.data), true);
  view.setUint32(OPTS_DATA_SIZE_IN, options.data.byteLength, true);
  view.setUint32(OPTS_REPEAT, repeat, true);
  if (options.dataOut !== undefined) {
    view.setBigUint64(OPTS_DATA_OUT, addressOf(options.dataOut), true);
    view.setUint32(OPTS_DATA_SIZE_OUT, options.dataOut.byteLength, true);
  }

  // SAFETY: opts contains the addresses of options.data and options.dataOut,
  // which this frame keeps alive during the call.
  const ret = libbpf().bpf_prog_test_run_opts(programFd, opts);
  checkInt(ret, `test-run program fd ${programFd}`);

  return {
    returnValue: view.getUint32(OPTS_RETVAL, true),
    durationNs: view.getUint32(OPTS_DURATION, true),
    dataSizeOut: options.dataOut === undefined ? 0 : view.getUint32(OPTS_DATA_SIZE_OUT, true),
  };
}

function addressOf(bytes: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}
