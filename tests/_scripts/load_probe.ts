// deno-lint-ignore-file no-console -- test helpers report to the test runner.
// Loads the syscalls probe and prints the resulting error as JSON. Run by
// privilege_test.ts without capabilities.

import { BpfError } from "../../mod.ts";
import { SyscallsProbe } from "../../plugins/probes/syscalls.ts";

try {
  SyscallsProbe.open().close();
  console.log(JSON.stringify({ name: "none", code: "", message: "loaded" }));
} catch (error) {
  if (!(error instanceof BpfError)) throw error;
  console.log(JSON.stringify({ name: error.name, code: error.code, message: error.message }));
}
