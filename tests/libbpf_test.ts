import assert from "node:assert/strict";
import { libbpfVersion } from "../mod.ts";
import { repoPath, run } from "./_helpers.ts";

Deno.test("libbpfVersion() matches the library file's version", async () => {
  // Debian installs libbpf.so.1 as a link to libbpf.so.MAJOR.MINOR.PATCH.
  const file = await Deno.realPath("/usr/lib/x86_64-linux-gnu/libbpf.so.1").catch(() => undefined);
  const fromFile = file?.match(/libbpf\.so\.(\d+\.\d+)\.\d+$/)?.[1];
  assert.ok(fromFile !== undefined, `no versioned libbpf file behind libbpf.so.1: ${file}`);
  assert.equal(libbpfVersion(), fromFile);
});

Deno.test("a missing BPFSCOPE_LIBBPF_PATH library lists what was tried", async () => {
  const result = await run(Deno.execPath(), [
    "run",
    "--allow-all",
    repoPath("tests/_scripts/load_probe.ts"),
  ], {
    env: { BPFSCOPE_LIBBPF_PATH: "/nonexistent/libbpf.so.9" },
  });
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as { name: string; code: string; message: string };
  assert.equal(report.name, "BpfError");
  assert.match(
    report.message,
    /^Failed to load libbpf: no usable library found; tried \/nonexistent\/libbpf\.so\.9: /,
  );
  assert.match(
    report.message,
    /check BPFSCOPE_LIBBPF_PATH, or unset it to search the standard paths/,
  );
});
