// Runs the write_slots program of tests/fixtures/seqlock.bpf.c through
// BPF_PROG_TEST_RUN. Used by seqlock_test.ts and by its writer Worker.

import { checkInt } from "../../ffi/_check.ts";
import { libbpf } from "../../ffi/libbpf.ts";

/** Write naive_slots with the naive protocol instead of slots (REQUEST_NAIVE). */
export const REQUEST_NAIVE = 1;
/** Simulate a nested writer in the middle of each write (REQUEST_NEST). */
export const REQUEST_NEST = 2;

/** The fields of the fixture's struct write_request that the caller sets. */
export interface WriteRequest {
  /** Slot numbers of the current CPU to write. */
  slots: readonly number[];
  /** REQUEST_* flags. */
  flags: number;
  /** bpf_loop() iterations after each field store. */
  pause: number;
}

/** What one test run returned. */
export interface WriteResult {
  /** The program's return value (XDP_PASS is 2). */
  retval: number;
  /** struct write_request.nested_sequence after the last repetition. */
  nestedSequence: bigint;
}

// struct write_request: u64 slots, u32 flags, u32 pause, u64 nested_sequence.
const REQUEST_SIZE = 24;
const NESTED_SEQUENCE_OFFSET = 16;

// struct bpf_test_run_opts of libbpf 1.1.2 is 80 bytes. The offsets were checked with offsetof().
const OPTS_SIZE = 80;
const OPTS_DATA_IN = 8;
const OPTS_DATA_OUT = 16;
const OPTS_DATA_SIZE_IN = 24;
const OPTS_DATA_SIZE_OUT = 28;
const OPTS_RETVAL = 56;
const OPTS_REPEAT = 60;

/** Encodes the test packet of a write request. */
export function encodeRequest(request: WriteRequest): Uint8Array<ArrayBuffer> {
  const packet = new Uint8Array(REQUEST_SIZE);
  const view = new DataView(packet.buffer);
  let mask = 0n;
  for (const slot of request.slots) mask |= 1n << BigInt(slot);
  view.setBigUint64(0, mask, true);
  view.setUint32(8, request.flags, true);
  view.setUint32(12, request.pause, true);
  return packet;
}

/**
 * Runs the program `repeat` times on `packet` (from encodeRequest()) in the
 * calling thread, on whichever CPU that thread runs.
 */
export function runWriteSlots(programFd: number, packet: Uint8Array, repeat: number): WriteResult {
  const output = new Uint8Array(REQUEST_SIZE);
  const opts = new Uint8Array(OPTS_SIZE);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, BigInt(OPTS_SIZE), true);
  view.setBigUint64(OPTS_DATA_IN, pointerValue(packet), true);
  view.setBigUint64(OPTS_DATA_OUT, pointerValue(output), true);
  view.setUint32(OPTS_DATA_SIZE_IN, packet.byteLength, true);
  view.setUint32(OPTS_DATA_SIZE_OUT, output.byteLength, true);
  view.setInt32(OPTS_REPEAT, repeat, true);

  const ret = libbpf().bpf_prog_test_run_opts(programFd, opts);
  checkInt(ret, "test-run", { program: "write_slots" });

  return {
    retval: view.getUint32(OPTS_RETVAL, true),
    nestedSequence: new DataView(output.buffer).getBigUint64(NESTED_SEQUENCE_OFFSET, true),
  };
}

function pointerValue(bytes: Uint8Array): bigint {
  // SAFETY: the buffers stay referenced by the caller until the synchronous call returns.
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}
