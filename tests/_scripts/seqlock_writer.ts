// A Worker that runs the write_slots program of tests/fixtures/seqlock.bpf.c
// in a loop, on its own thread and pinned to one CPU, while seqlock_test.ts
// reads the slots from the main thread.
//
// Protocol: the main thread posts one WriterStart message. The worker counts
// its finished test runs in control[RUNS] and stops when control[STOP]
// becomes nonzero, then posts a WriterDone message.

import { pinThread } from "./seqlock_cpu.ts";
import { encodeRequest, runWriteSlots, type WriteRequest } from "./seqlock_test_run.ts";

/** Index in the control words: set to 1 to stop the writer. */
export const STOP = 0;
/** Index in the control words: the number of finished test runs. */
export const RUNS = 1;

/** The message that starts the writer. */
export interface WriterStart {
  programFd: number;
  request: WriteRequest;
  /** Program runs per test run. */
  repeat: number;
  /** The CPU to pin the writer thread to. */
  cpu: number;
  /** Two Int32 control words: STOP and RUNS. */
  control: SharedArrayBuffer;
}

/** The message the writer posts when it stops. */
export type WriterDone = { ok: true } | { ok: false; message: string };

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<WriterStart>) => void) | null;
  postMessage(message: WriterDone): void;
};

scope.onmessage = (event) => {
  const { programFd, request, repeat, cpu, control } = event.data;
  const words = new Int32Array(control);
  try {
    pinThread(cpu);
    const packet = encodeRequest(request);
    while (Atomics.load(words, STOP) === 0) {
      runWriteSlots(programFd, packet, repeat);
      Atomics.add(words, RUNS, 1);
    }
    scope.postMessage({ ok: true });
  } catch (error) {
    scope.postMessage({
      ok: false,
      message: error instanceof Error ? error.message : String(error),
    });
  }
};
