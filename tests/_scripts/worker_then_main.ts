// deno-lint-ignore-file no-console -- test helpers report to the test runner.
// Uses bpfscope on the main thread, then in a Worker that ends, then on the
// main thread again, where a libbpf message is printed. A callback left
// behind by the Worker would crash this process.
import { BpfError, openObject } from "../../mod.ts";

const fixture = new URL("../fixtures/attach.bpf.o", import.meta.url);
openObject(fixture).close();

const worker = new Worker(new URL("./worker_open.ts", import.meta.url), { type: "module" });
const names = await new Promise((resolve) => worker.onmessage = (event) => resolve(event.data));
worker.terminate();
await new Promise((resolve) => setTimeout(resolve, 100));

let output: readonly string[] = [];
try {
  // A missing file makes libbpf print a warning through the callback.
  openObject("/nonexistent/after-worker.bpf.o");
} catch (error) {
  if (!(error instanceof BpfError)) throw error;
  output = error.libbpfOutput;
}
console.log(JSON.stringify({ names, output }));
