// deno-lint-ignore-file no-console -- the tests read these lines.
// With the arguments DIR: prints the result of createKernelBtfCache() for the
// syscalls object into DIR, under whatever permissions the test started it
// with. With DIR load: loads the syscalls object with the cache in DIR and
// prints the error's name and errno code, or "loaded". With DIR lookup:
// prints what cachedKernelBtf() returns.
import {
  BpfError,
  cachedKernelBtf,
  createKernelBtfCache,
  openObject,
  SYSCALLS_OBJECT,
} from "../../mod.ts";

const [dir, mode] = Deno.args;
if (mode === "load") {
  try {
    using opened = openObject(SYSCALLS_OBJECT, { name: "syscalls", kernelBtfCache: dir! });
    opened.load().close();
    console.log(JSON.stringify({ loaded: true }));
  } catch (error) {
    if (!(error instanceof BpfError)) throw error;
    console.log(JSON.stringify({ name: error.name, code: error.code }));
  }
} else if (mode === "lookup") {
  console.log(JSON.stringify({ path: cachedKernelBtf(SYSCALLS_OBJECT, dir) ?? null }));
} else {
  console.log(JSON.stringify(await createKernelBtfCache(SYSCALLS_OBJECT, dir)));
}
