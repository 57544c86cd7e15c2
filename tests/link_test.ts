import assert from "node:assert/strict";
import { BpfError, type BpfObject, openObject } from "../mod.ts";
import { libc } from "../ffi/libc.ts";
import { kernelTest, programExists, programGone, repoPath, run } from "./_helpers.ts";

const ATTACH = repoPath("tests/fixtures/attach.bpf.o");

// Indexes of the fixture's hits array, one per program.
const TRACEPOINT = 0;
const RAW_TRACEPOINT = 1;
const RAW_TRACEPOINT_MANUAL = 2;

function hits(object: BpfObject, index: number): bigint {
  const value = object.map("hits").lookup(new Uint8Array(new Uint32Array([index]).buffer));
  assert.ok(value !== undefined);
  return new DataView(value.buffer).getBigUint64(0, true);
}

function makeSyscalls(count: number): void {
  for (let i = 0; i < count; i++) libc().getppid();
}

Deno.test({
  name: "BpfProgram.attach() uses the tracepoint of the section",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    using link = object.program("on_tracepoint").attach();
    assert.deepEqual(link.target, { kind: "auto", section: "tracepoint/raw_syscalls/sys_enter" });
    const before = hits(object, TRACEPOINT);
    makeSyscalls(1000);
    assert.ok(hits(object, TRACEPOINT) - before >= 1000n);
  },
});

Deno.test({
  name: "BpfProgram.attachTracepoint() counts and close() detaches",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const link = object.program("on_tracepoint").attachTracepoint("raw_syscalls", "sys_enter");
    makeSyscalls(100);
    assert.ok(hits(object, TRACEPOINT) >= 100n);

    link.close();
    link.close();
    assert.equal(link.closed, true);
    const after = hits(object, TRACEPOINT);
    makeSyscalls(100);
    assert.equal(hits(object, TRACEPOINT), after);
  },
});

Deno.test({
  name: "BpfProgram.attachRawTracepoint() attaches a section with no target",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    using link = object.program("on_raw_tracepoint_manual").attachRawTracepoint("sys_enter");
    assert.deepEqual(link.target, { kind: "raw_tracepoint", name: "sys_enter" });
    makeSyscalls(500);
    assert.ok(hits(object, RAW_TRACEPOINT_MANUAL) >= 500n);
    assert.equal(hits(object, RAW_TRACEPOINT), 0n);
  },
});

Deno.test({
  name: "BpfProgram.attach() on a bare raw_tp section names the fix",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    let error: unknown;
    try {
      object.program("on_raw_tracepoint_manual").attach();
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof BpfError, String(error));
    assert.equal(error.program, "on_raw_tracepoint_manual");
    assert.match(
      error.message,
      /section "raw_tp" names no target to attach to: use attachRawTracepoint\(name\)/,
    );
  },
});

Deno.test({
  name: "BpfProgram.attachTracepoint() with an unknown tracepoint throws ENOENT",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    let error: unknown;
    try {
      object.program("on_tracepoint").attachTracepoint("raw_syscalls", "no_such_event");
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof BpfError, String(error));
    assert.equal(error.code, "ENOENT");
    assert.match(error.message, /tracepoint "raw_syscalls\/no_such_event"/);
    assert.match(error.message, /no such tracepoint/);
  },
});

Deno.test({
  name: "BpfProgram attach methods reject invalid fds",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const program = object.program("on_raw_tracepoint");
    assert.throws(() => program.attachXdp(2.5), /Invalid interface index: 2.5/);
    assert.throws(() => program.attachPerfEvent(-1), RangeError);
    assert.throws(() => program.attachCgroup(Number.NaN), RangeError);
    assert.throws(() => program.attachRawTracepoint("sys_enter\0x"), /contains a NUL character/);
  },
});

Deno.test({
  name: "BpfObject.attachAll() skips sections with no target",
  ...kernelTest(),
  fn() {
    using object = openObject(ATTACH).load();
    const links = object.attachAll();
    assert.deepEqual(links.map((link) => link.program), ["on_tracepoint", "on_raw_tracepoint"]);
    makeSyscalls(100);
    assert.ok(hits(object, TRACEPOINT) >= 100n);
    assert.ok(hits(object, RAW_TRACEPOINT) >= 100n);
    assert.equal(hits(object, RAW_TRACEPOINT_MANUAL), 0n);
  },
});

Deno.test({
  name: "BpfObject.close() detaches its links",
  ...kernelTest(),
  async fn() {
    const object = openObject(ATTACH).load();
    const links = object.attachAll();
    const id = object.program("on_raw_tracepoint").info().id;
    object.close();
    for (const link of links) assert.equal(link.closed, true);
    // A link that was not destroyed would keep its program loaded.
    assert.ok(await programGone(id), `program ${id} is still loaded`);
  },
});

Deno.test({
  name: "BpfLink.disown() keeps the link attached after the object closes",
  ...kernelTest(),
  async fn() {
    const object = openObject(ATTACH).load();
    const link = object.program("on_raw_tracepoint").attach().disown();
    const id = object.program("on_raw_tracepoint").info().id;
    object.close();
    assert.equal(link.closed, false);
    // The link references the program, so the kernel keeps it loaded.
    assert.ok(await programExists(id));
    link.close();
    assert.ok(await programGone(id));
  },
});

Deno.test({
  name: "attaching a tracepoint without tracefs says how to mount it",
  ...kernelTest(),
  async fn() {
    // A private mount namespace, so that unmounting tracefs is invisible to the rest of the host.
    const script = repoPath("tests/_scripts/attach_tracepoint.ts");
    const command = [
      "umount -l /sys/kernel/debug/tracing 2>/dev/null",
      "umount -l /sys/kernel/tracing 2>/dev/null",
      'test ! -e /sys/kernel/tracing/events || { echo "tracefs is still mounted" >&2; exit 3; }',
      `exec "$0" run --allow-all "${script}"`,
    ].join("; ");
    const result = await run("unshare", [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      command,
      Deno.execPath(),
    ]);
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as { name: string; code: string; message: string };
    assert.equal(report.name, "BpfError");
    assert.equal(report.code, "ENOENT");
    assert.match(
      report.message,
      /tracefs is not mounted: mount it with `mount -t tracefs nodev \/sys\/kernel\/tracing`/,
    );
  },
});
