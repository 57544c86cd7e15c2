/// <reference lib="deno.worker" />
// A Worker that runs the bump() XDP program of tests/fixtures/spin_lock.bpf.o
// in a loop through BPF_PROG_TEST_RUN until the main thread sets the stop
// flag, then posts the number of runs. The main thread reads the maps
// meanwhile; the fd of a program is valid in every thread of the process.

import { MIN_XDP_PACKET, runProgramTest } from "../../ffi/_test_run.ts";

/** The message that starts the writer. */
export interface WriterStart {
  programFd: number;
  /** An Int32Array's buffer; the writer stops when element 0 is not 0. */
  stop: SharedArrayBuffer;
}

self.onmessage = (event: MessageEvent<WriterStart>) => {
  const stop = new Int32Array(event.data.stop);
  const packet = new Uint8Array(Math.max(64, MIN_XDP_PACKET));
  // On Linux 6.18 a test-run call with repeat > 1 took 15 to 30 ms beyond its
  // runs, and one run of bump() about 150 ns, so each call repeats it many times.
  const repeat = 50_000;
  let runs = 0;
  while (Atomics.load(stop, 0) === 0) {
    runProgramTest(event.data.programFd, { data: packet, repeat });
    runs += repeat;
  }
  self.postMessage({ runs });
};
