// A Worker that runs a ring buffer producer program in a loop, on its own
// thread, until a run returns RUN_DONE, while the main thread reads the
// ring: the produce programs of tests/fixtures/ringbuf.bpf.c (for
// ring_buffer_test.ts, done once it reserved its target number of records)
// and bench/ringbuf.bpf.c (for bench/run.ts, done once `stop` is set).
//
// Protocol: the main thread posts one ProducerStart message; the worker
// posts one ProducerDone message when it stops.

import { runProgramTest } from "../../ffi/_test_run.ts";

/** The return value of a run once the producer is done. */
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
