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

Deno.test("a libbpf without a symbol bpfscope uses names the symbol", async () => {
  // A library that passes the version check but lacks functions fails at
  // load with their names, not later at the first call of one of them.
  const directory = await Deno.makeTempDir({ prefix: "bpfscope-fake-libbpf-" });
  try {
    const source = `${directory}/fake.c`;
    const library = `${directory}/libbpf.so.1`;
    await Deno.writeTextFile(
      source,
      "unsigned int libbpf_major_version(void) { return 1; }\n" +
        "unsigned int libbpf_minor_version(void) { return 1; }\n",
    );
    const build = await run("clang", ["-shared", "-fPIC", "-o", library, source]);
    assert.equal(build.code, 0, build.stderr);

    const result = await run(Deno.execPath(), [
      "run",
      "--allow-all",
      repoPath("tests/_scripts/load_probe.ts"),
    ], { env: { BPFSCOPE_LIBBPF_PATH: library } });
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as { name: string; message: string };
    assert.equal(report.name, "BpfError");
    assert.match(report.message, /^Failed to load libbpf .*: it reports version 1\.1 but lacks /);
    // The missing symbols are named at load, before any object exists.
    assert.match(report.message, /lacks libbpf_strerror, .* and \d+ other symbols/);
    assert.match(report.message, /point BPFSCOPE_LIBBPF_PATH at a complete libbpf 1\.0 or newer/);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});
