// A Worker that runs the produce program of tests/fixtures/ringbuf.bpf.c in
// a loop, on its own thread, until the program reports that it reserved its
// target number of records, while ring_buffer_test.ts reads the ring on
// the main thread.
//
// Protocol: the main thread posts one ProducerStart message; the worker
// posts one ProducerDone message when it stops.

import { runProgramTest } from "../../ffi/_test_run.ts";

/** The return value of produce once `reserved` reached `target` (RUN_DONE). */
export const RUN_DONE = 1;

/** The message that starts the producer. */
export interface ProducerStart {
  programFd: number;
  /** Program runs per test run. */
  repeat: number;
  /** Give up after this many test runs. */
  maxTestRuns: number;
}

/** The message the producer posts when it stops. */
export type ProducerDone = { ok: true; testRuns: number } | { ok: false; message: string };

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<ProducerStart>) => void) | null;
  postMessage(message: ProducerDone): void;
};

scope.onmessage = (event) => {
  const { programFd, repeat, maxTestRuns } = event.data;
  const packet = new Uint8Array(64);
  try {
    let testRuns = 0;
    while (testRuns < maxTestRuns) {
      testRuns++;
      if (runProgramTest(programFd, { data: packet, repeat }).returnValue === RUN_DONE) break;
    }
    scope.postMessage({ ok: true, testRuns });
  } catch (error) {
    scope.postMessage({
      ok: false,
      message: error instanceof Error ? error.message : String(error),
    });
  }
};
