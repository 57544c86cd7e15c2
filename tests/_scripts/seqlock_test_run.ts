// Runs the write_slots program of tests/fixtures/seqlock.bpf.c through
// BPF_PROG_TEST_RUN. Used by seqlock_test.ts and by its writer Worker.

import { runProgramTest } from "../../ffi/_test_run.ts";

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
export function runWriteSlots(
  programFd: number,
  packet: Uint8Array<ArrayBuffer>,
  repeat: number,
): WriteResult {
  const output = new Uint8Array(REQUEST_SIZE);
  const result = runProgramTest(programFd, { data: packet, dataOut: output, repeat });
  return {
    retval: result.returnValue,
    nestedSequence: new DataView(output.buffer).getBigUint64(NESTED_SEQUENCE_OFFSET, true),
  };
}
