// deno-lint-ignore-file no-console -- test helpers report to the test runner.
// Drops a loaded object without closing it and forces garbage collection, so
// that the leak tracer records it. Run by resources_test.ts with
// BPFSCOPE_TRACE_LEAKS=1 and --v8-flags=--expose-gc.
import { openObject } from "../../mod.ts";
import { leakedResources } from "../../ffi/_resources.ts";

const gc = (globalThis as unknown as { gc(): void }).gc;
(() => {
  openObject(new URL("../fixtures/attach.bpf.o", import.meta.url)).load();
})();
for (let i = 0; i < 20 && leakedResources().length === 0; i++) {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 10));
}
console.log(JSON.stringify(leakedResources()));
