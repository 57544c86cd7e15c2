// deno-lint-ignore-file no-console -- the test reads this script's output.
// Iterates a ring buffer reader that never receives a record and ends the
// iteration after 100 ms, by close() or by aborting the reader's signal
// (first argument: "close" or "abort"). Prints "ended" when the loop ends,
// then leaves the process to exit by itself: ring_buffer_test.ts checks
// that nothing the reader started keeps it alive.

import { openObject, RingBufferReader } from "../../mod.ts";
import { systemPageSize } from "../../ffi/libc.ts";

const mode = Deno.args[0];
const opened = openObject(new URL("../fixtures/ringbuf.bpf.o", import.meta.url).pathname);
opened.map("events").setMaxEntries(4 * systemPageSize());
const object = opened.load();
const controller = new AbortController();
const reader = new RingBufferReader(object.map("events"), { signal: controller.signal });

setTimeout(() => mode === "abort" ? controller.abort() : reader.close(), 100);
let records = 0;
for await (const _record of reader) records++;
console.log(`ended after ${records} records`);
object.close();
