import assert from "node:assert/strict";
import { BpfError, ClosedError, openObject, VerifierError } from "../mod.ts";
import { kernelTest, programExists, programGone, repoPath, run } from "./_helpers.ts";

const ATTACH = repoPath("tests/fixtures/attach.bpf.o");
const REJECTED = repoPath("tests/fixtures/rejected.bpf.o");
const NO_PROGRAMS = repoPath("tests/fixtures/no_programs.bpf.o");

Deno.test("openObject() with a missing path throws ENOENT naming the file", () => {
  const error = captureError(() => openObject("/nonexistent/probe.bpf.o"));
  assert.ok(error instanceof BpfError);
  assert.equal(error.code, "ENOENT");
  assert.equal(error.path, "/nonexistent/probe.bpf.o");
  assert.match(error.message, /Failed to open file "\/nonexistent\/probe\.bpf\.o"/);
  assert.match(error.message, /No such file or directory/);
});

Deno.test("openObject() with bytes that are not ELF says so", () => {
  const bytes = new TextEncoder().encode("#!/bin/sh\necho not an object\n");
  const error = captureError(() => openObject(bytes, { name: "script" }));
  assert.ok(error instanceof BpfError);
  assert.equal(error.code, "LIBBPF_ERRNO__FORMAT");
  assert.match(error.message, /Failed to open object "script"/);
  assert.match(error.message, /not an eBPF ELF object/);
});

Deno.test("openObject() rejects a path with a NUL character", () => {
  assert.throws(() => openObject(`${ATTACH}\0.txt`), /contains a NUL character/);
});

Deno.test("openObject() rejects empty bytes and bad log sizes", () => {
  assert.throws(() => openObject(new Uint8Array()), /empty bytes/);
  assert.throws(() => openObject(ATTACH, { logSize: 2 ** 40 }), RangeError);
  assert.throws(
    () => openObject(ATTACH, { logSize: 4096, maxLogSize: 1024 }),
    /smaller than logSize 4096/,
  );
});

Deno.test("openObject() rejects an ELF object with no programs", () => {
  const error = captureError(() => openObject(NO_PROGRAMS));
  assert.ok(error instanceof BpfError);
  assert.equal(error.code, "EINVAL");
  assert.match(error.message, /contains no BPF programs/);
});

Deno.test("openObject() reads the same object from a path and from bytes", () => {
  using fromPath = openObject(ATTACH);
  using fromBytes = openObject(Deno.readFileSync(ATTACH), { name: "attach" });
  assert.equal(fromPath.name, "attach");
  assert.deepEqual(fromBytes.programNames, fromPath.programNames);
  assert.deepEqual(fromPath.programNames, [
    "on_tracepoint",
    "on_raw_tracepoint",
    "on_raw_tracepoint_manual",
  ]);
  assert.deepEqual(fromPath.mapNames, ["hits"]);
});

Deno.test("OpenObject.map() with an unknown name lists the maps", () => {
  using opened = openObject(ATTACH);
  const error = captureError(() => opened.map("counts"));
  assert.ok(error instanceof BpfError);
  assert.equal(error.code, "ENOENT");
  assert.match(error.message, /find map "counts" in object "attach"/);
  assert.match(error.message, /the object has maps: hits/);
});

Deno.test("OpenObject.program() with an unknown name lists the programs", () => {
  using opened = openObject(ATTACH);
  const error = captureError(() => opened.program("on_exec"));
  assert.ok(error instanceof BpfError);
  assert.match(
    error.message,
    /the object has programs: on_tracepoint, on_raw_tracepoint, on_raw_tracepoint_manual/,
  );
});

Deno.test("OpenMap.setMaxEntries() rejects zero and fractions", () => {
  using opened = openObject(ATTACH);
  assert.throws(() => opened.map("hits").setMaxEntries(0), RangeError);
  assert.throws(() => opened.map("hits").setMaxEntries(1.5), RangeError);
});

Deno.test({
  name: "OpenObject.load() raises VerifierError with the log",
  ...kernelTest(),
  fn() {
    const error = captureError(() => openObject(REJECTED).load());
    assert.ok(error instanceof VerifierError, String(error));
    assert.equal(error.program, "reject_me");
    assert.equal(error.object, "rejected");
    assert.equal(error.code, "EACCES");
    assert.match(error.log, /invalid mem access 'map_value_or_null'/);
    assert.match(error.message, /invalid mem access/);
    assert.equal(error.truncated, false);
  },
});

Deno.test({
  name: "OpenObject.load() grows a verifier log buffer that is too small",
  ...kernelTest(),
  fn() {
    const error = captureError(() =>
      openObject(REJECTED, { logSize: 64, maxLogSize: 1 << 20 }).load()
    );
    assert.ok(error instanceof VerifierError, String(error));
    assert.equal(error.truncated, false);
    assert.match(error.log, /^func#0|^0: /m);
    assert.match(error.log, /invalid mem access 'map_value_or_null'/);
  },
});

Deno.test({
  name: "OpenObject.load() grows the log up to maxLogSize exactly",
  ...kernelTest(),
  fn() {
    // 100 * 8 = 800 overshoots 300, so the retry must use 300 bytes.
    const error = captureError(() =>
      openObject(REJECTED, { logSize: 100, maxLogSize: 300 }).load()
    );
    assert.ok(error instanceof VerifierError, String(error));
    assert.ok(error.log.length > 100, `${error.log.length} bytes of log`);
    assert.ok(error.log.length < 300, `${error.log.length} bytes of log`);
  },
});

Deno.test({
  name: "OpenObject.load() marks a log truncated when it outgrows maxLogSize",
  ...kernelTest(),
  fn() {
    const error = captureError(() => openObject(REJECTED, { logSize: 64, maxLogSize: 64 }).load());
    assert.ok(error instanceof VerifierError, String(error));
    assert.equal(error.truncated, true);
    // The kernel keeps the end of the log, where the reason is.
    assert.ok(error.log.length > 0);
    assert.ok(error.log.length < 64);
  },
});

Deno.test({
  name: "OpenObject is spent after load()",
  ...kernelTest(),
  fn() {
    const opened = openObject(ATTACH);
    using object = opened.load();
    assert.equal(object.programs.length, 3);
    const error = captureError(() => opened.load());
    assert.ok(error instanceof ClosedError);
    assert.match(error.message, /already loaded: use the BpfObject that load\(\) returned/);
    assert.throws(() => opened.map("hits"), ClosedError);
    opened.close();
  },
});

Deno.test({
  name: "OpenProgram.setAutoload(false) leaves the program unloaded",
  ...kernelTest(),
  fn() {
    const opened = openObject(ATTACH);
    opened.program("on_tracepoint").setAutoload(false);
    using object = opened.load();
    assert.ok(object.program("on_tracepoint").fd < 0);
    assert.ok(object.program("on_raw_tracepoint").fd >= 0);
    const error = captureError(() => object.program("on_tracepoint").attach());
    assert.ok(error instanceof BpfError);
    assert.match(error.message, /the program was not loaded/);
  },
});

Deno.test({
  name: "BpfObject.close() unloads its programs and is idempotent",
  ...kernelTest(),
  async fn() {
    const object = openObject(ATTACH).load();
    const ids = object.programs.map((program) => program.info().id);
    for (const id of ids) assert.ok(await programExists(id), `program ${id} should be loaded`);

    object.close();
    object.close();
    assert.equal(object.closed, true);
    for (const id of ids) assert.ok(await programGone(id), `program ${id} should be gone`);
    assert.throws(() => object.map("hits"), ClosedError);
    assert.throws(() => object.programs[0]!.info(), ClosedError);
  },
});

Deno.test({
  name: "BpfObject.map() with an unknown name lists the maps",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const error = captureError(() => object.map("nope"));
    assert.ok(error instanceof BpfError);
    assert.match(error.message, /no such map \(ENOENT\) \(the object has maps: hits\)/);
  },
});

function captureError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  assert.fail("expected an error");
}

Deno.test("openObject() of a file stripped of its symbols explains ENOENT", async () => {
  const directory = await Deno.makeTempDir({ prefix: "bpfscope-stripped-" });
  try {
    const stripped = `${directory}/stripped.bpf.o`;
    const strip = await run("llvm-strip", ["--strip-all", ATTACH, "-o", stripped]);
    assert.equal(strip.code, 0, strip.stderr);
    const error = captureError(() => openObject(stripped));
    assert.ok(error instanceof BpfError, String(error));
    assert.match(error.message, /the file exists, but libbpf found no symbol table or no BTF/);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test({
  name: "OpenObject.load() keeps .rodata values across a log retry",
  ...kernelTest(),
  fn() {
    const fixture = repoPath("tests/fixtures/rodata_retry.bpf.o");
    // The default mode 0 loads; mode 1 is rejected.
    openObject(fixture).load().close();
    const opened = openObject(fixture, { logSize: 64 });
    opened.globals(".rodata").set("mode", 1);
    const error = captureError(() => opened.load());
    assert.ok(error instanceof VerifierError, `expected a rejection with mode 1, got ${error}`);
    assert.equal(error.truncated, false);
    assert.match(error.log, /invalid mem access/);
  },
});
