// deno-lint-ignore-file no-console -- test helpers report to the test runner.
// Attaches the fixture's tracepoint program and prints the resulting error as
// JSON. Run by link_test.ts in a mount namespace without tracefs.

import { BpfError, openObject } from "../../mod.ts";

using object = openObject(new URL("../fixtures/attach.bpf.o", import.meta.url)).load();
try {
  object.program("on_tracepoint").attachTracepoint("raw_syscalls", "sys_enter");
  console.log(JSON.stringify({ name: "none", code: "", message: "attached" }));
} catch (error) {
  if (!(error instanceof BpfError)) throw error;
  console.log(JSON.stringify({ name: error.name, code: error.code, message: error.message }));
}
