import assert from "node:assert/strict";
import { ClosedError } from "../mod.ts";
import { libc } from "../ffi/libc.ts";
import {
  OTHER_SLOT,
  SYSCALL_SLOTS,
  syscallName,
  SyscallsProbe,
} from "../plugins/probes/syscalls.ts";
import { possibleCpuCount } from "../ffi/cpus.ts";
import { SYSCALLS_OBJECT } from "../bpf/syscalls_object.ts";
import { createKernelBtfCache } from "../ffi/kernel_btf_cache.ts";
import { kernelTest, programExists, programGone, repoPath, run } from "./_helpers.ts";

const GETPPID = 110; // x86_64

// The probe's CO-RE relocation (the ia32 check) resolved against the kernel's
// own BTF and against a minimal BTF from the cache must count the same.
const BTF_SOURCES = [
  {
    name: "kernel BTF",
    prepare: () => Promise.resolve({ option: false, [Symbol.asyncDispose]: async () => {} }),
  },
  {
    name: "cached minimal BTF",
    async prepare() {
      const dir = await Deno.makeTempDir({ prefix: "bpfscope-btf-cache-" });
      const result = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in result, JSON.stringify(result));
      assert.equal(result.created, true);
      return {
        option: dir,
        async [Symbol.asyncDispose]() {
          // The file is still there: a load that had failed with it would have removed it.
          assert.ok(await Deno.stat(result.path));
          await Deno.remove(dir, { recursive: true });
        },
      };
    },
  },
];

/** Runs `fn` with the calling thread pinned to the first CPU it may run on, and returns that CPU. */
function onOneCpu(fn: () => void): number {
  const original = new Uint8Array(128); // cpu_set_t for up to 1024 CPUs
  assert.equal(libc().sched_getaffinity(0, 128n, original), 0);
  const cpu = firstSetBit(original);
  const pinned = new Uint8Array(128);
  pinned[cpu >> 3] = 1 << (cpu & 7);
  assert.equal(libc().sched_setaffinity(0, 128n, pinned), 0);
  try {
    assert.equal(libc().sched_getcpu(), cpu);
    fn();
    return cpu;
  } finally {
    assert.equal(libc().sched_setaffinity(0, 128n, original), 0);
  }
}

function firstSetBit(mask: Uint8Array): number {
  for (let byte = 0; byte < mask.length; byte++) {
    for (let bit = 0; bit < 8; bit++) if (mask[byte]! & (1 << bit)) return byte * 8 + bit;
  }
  throw new Error("empty CPU mask");
}

Deno.test("syscallName() names x86_64 syscalls and the other slot", () => {
  assert.equal(syscallName(0), "read");
  assert.equal(syscallName(GETPPID), Deno.build.arch === "x86_64" ? "getppid" : "syscall_110");
  assert.equal(syscallName(OTHER_SLOT), "other");
  assert.equal(syscallName(335), "syscall_335"); // a gap in the x86_64 table
});

for (const btf of BTF_SOURCES) {
  Deno.test({
    name: `SyscallsProbe counts getppid calls on the CPU that made them (${btf.name})`,
    ...kernelTest(),
    async fn() {
      await using source = await btf.prepare();
      using probe = SyscallsProbe.open({ kernelBtfCache: source.option });
      assert.equal(probe.cpus, possibleCpuCount());
      const calls = 10_000;
      let before = probe.read();
      let after = before;
      const cpu = onOneCpu(() => {
        before = probe.read();
        for (let i = 0; i < calls; i++) libc().getppid();
        after = probe.read();
      });

      const delta = after.since(before);
      assert.ok(
        delta.count(cpu, GETPPID) >= calls,
        `cpu ${cpu}: ${delta.count(cpu, GETPPID)} < ${calls}`,
      );
      assert.ok(delta.syscallTotal(GETPPID) >= calls);
      assert.ok(delta.total >= calls);
      assert.equal(delta.counts.length, probe.cpus * SYSCALL_SLOTS);
      assert.equal(delta.top(1)[0]?.name, syscallName(GETPPID));
    },
  });

  Deno.test({
    name: `SyscallsProbe counts ia32 syscalls as other (${btf.name})`,
    ignore: Deno.build.arch !== "x86_64" || kernelTest().ignore,
    async fn() {
      await using source = await btf.prepare();
      const directory = await Deno.makeTempDir({ prefix: "bpfscope-ia32-" });
      try {
        const binary = `${directory}/ia32_syscalls`;
        const build = await run("clang", [
          "-O1",
          "-o",
          binary,
          repoPath("tests/fixtures/ia32_syscalls.c"),
        ]);
        assert.equal(build.code, 0, build.stderr);

        using probe = SyscallsProbe.open({ kernelBtfCache: source.option });
        const writev = 20;
        const before = probe.read();
        const result = await run(binary, []);
        const delta = probe.read().since(before);
        assert.equal(result.code, 0, result.stderr);
        assert.ok(
          delta.syscallTotal(OTHER_SLOT) >= 100_000,
          `other: ${delta.syscallTotal(OTHER_SLOT)}`,
        );
        assert.ok(delta.syscallTotal(writev) < 1000, `writev: ${delta.syscallTotal(writev)}`);
      } finally {
        await Deno.remove(directory, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "SyscallsProbe.close() unloads the program and reads throw",
  ...kernelTest(),
  async fn() {
    const probe = SyscallsProbe.open();
    const id = probe.object.program("count_syscall").info().id;
    assert.ok(await programExists(id));

    probe.close();
    probe.close();
    assert.equal(probe.closed, true);
    assert.ok(await programGone(id), `program ${id} is still loaded`);
    assert.throws(() => probe.read(), ClosedError);
  },
});
