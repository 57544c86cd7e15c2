// Kernel tests of typed global variables, over tests/fixtures/globals.bpf.c:
// its program computes output = input * multiplier on the system calls of the
// process whose tgid is target_tgid.

import assert from "node:assert/strict";
import { BpfError, ClosedError, openObject } from "../mod.ts";
import { libc } from "../ffi/libc.ts";
import { kernelTest, repoPath } from "./_helpers.ts";

const GLOBALS = repoPath("tests/fixtures/globals.bpf.o");

/** Makes system calls until `done()` returns true or 2 s pass, and returns whether it did. */
async function syscallsUntil(done: () => boolean): Promise<boolean> {
  const deadline = Date.now() + 2000;
  while (!done()) {
    if (Date.now() > deadline) return false;
    libc().getppid();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}

Deno.test({
  name: "globals reach the program",
  ...kernelTest(),
  async fn() {
    using opened = openObject(GLOBALS);
    const initial = opened.globals(".rodata");
    initial.set("target_tgid", Deno.pid);
    initial.set("multiplier", 3n);
    using object = opened.load();

    using bss = object.globals(".bss");
    bss.set("input", 14n);
    object.attachAll();

    const ran = await syscallsUntil(() => bss.get<bigint>("output") !== 0n);
    assert.ok(ran, "the program never wrote output");
    assert.equal(bss.get("output"), 42n);
    assert.ok(bss.get<number>("hits") > 0);

    // A new input is seen by the program at its next run.
    bss.set("input", 100n);
    assert.ok(await syscallsUntil(() => bss.get<bigint>("output") === 300n));
  },
});

Deno.test({
  name: "globals without rodata filter stay idle",
  ...kernelTest(),
  fn() {
    // target_tgid stays 0, which no user process has, so the program never counts.
    using object = openObject(GLOBALS).load();
    using bss = object.globals(".bss");
    object.attachAll();
    for (let i = 0; i < 200; i++) libc().getppid();
    assert.equal(bss.get("hits"), 0);
    assert.equal(bss.get("output"), 0n);
  },
});

Deno.test({
  name: "globals rodata is read-only after load",
  ...kernelTest(),
  fn() {
    using opened = openObject(GLOBALS);
    opened.globals(".rodata").set("multiplier", 5n);
    using object = opened.load();
    using rodata = object.globals(".rodata");
    assert.equal(rodata.writable, false);
    assert.equal(rodata.get("multiplier"), 5n);
    assert.throws(() => rodata.set("multiplier", 6n), /read-only after load/);
  },
});

Deno.test({
  name: "globals data has its initializer",
  ...kernelTest(),
  fn() {
    using opened = openObject(GLOBALS);
    assert.deepEqual(opened.globals(".data").get("settings"), {
      enabled: 1,
      limit: 100,
      label: "start",
    });
    using object = opened.load();
    using data = object.globals(".data");
    assert.deepEqual(data.names, ["settings"]);
    data.set("settings", { enabled: 0, limit: 7, label: "changed" });
    assert.deepEqual(data.get("settings"), { enabled: 0, limit: 7, label: "changed" });
  },
});

Deno.test({
  name: "globals before load expire at load",
  ...kernelTest(),
  fn() {
    using opened = openObject(GLOBALS);
    const initial = opened.globals(".bss");
    using _object = opened.load();
    assert.throws(() => initial.get("input"), (error: unknown) => {
      assert.ok(error instanceof ClosedError);
      assert.match(error.message, /already loaded/);
      return true;
    });
    assert.throws(() => initial.set("input", 1n), ClosedError);
  },
});

Deno.test({
  name: "globals fail after object close",
  ...kernelTest(),
  fn() {
    const object = openObject(GLOBALS).load();
    const bss = object.globals(".bss");
    object.close();
    assert.throws(() => bss.get("input"), ClosedError);
    assert.throws(() => bss.set("input", 1n), ClosedError);
    assert.throws(() => object.globals(".bss"), ClosedError);
  },
});

Deno.test({
  name: "globals fail after own close",
  ...kernelTest(),
  fn() {
    using object = openObject(GLOBALS).load();
    const bss = object.globals(".bss");
    bss.close();
    bss.close();
    assert.equal(bss.closed, true);
    assert.throws(() => bss.get("input"), ClosedError);
  },
});

Deno.test({
  name: "globals name unknown variables",
  fn() {
    using opened = openObject(GLOBALS);
    const bss = opened.globals(".bss");
    assert.throws(
      () => bss.get("inptu"),
      /Section ".bss" has no variable "inptu" \(its variables: input, output, hits\)/,
    );
    assert.throws(() => bss.set("input", -1n), RangeError);
    assert.throws(() => bss.set("input", "x"), TypeError);
  },
});

Deno.test({
  name: "globals name unknown sections",
  fn() {
    using opened = openObject(GLOBALS);
    assert.throws(() => opened.globals(".kconfig"), (error: unknown) => {
      assert.ok(error instanceof BpfError);
      assert.equal(error.code, "ENOENT");
      assert.match(
        error.message,
        /data section maps are globals.rodata, globals.bss, globals.data/,
      );
      return true;
    });
  },
});
