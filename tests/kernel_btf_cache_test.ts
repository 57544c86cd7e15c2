import assert from "node:assert/strict";
import { cachedKernelBtf, createKernelBtfCache, openObject } from "../mod.ts";
import { PROCESS_OBJECT } from "../bpf/process_object.ts";
import { SYSCALLS_OBJECT } from "../bpf/syscalls_object.ts";
import { kernelTest, repoPath, run } from "./_helpers.ts";

const BTF_MAGIC = 0xeb9f;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "bpfscope-btf-cache-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function bootId(): string {
  return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
}

/** Loads the syscalls object with the cache in `dir` and returns its program's id. */
function loadSyscalls(dir: string): number {
  using opened = openObject(SYSCALLS_OBJECT, { name: "syscalls", kernelBtfCache: dir });
  using object = opened.load();
  return object.program("count_syscall").info().id;
}

Deno.test({
  name: "createKernelBtfCache() writes a minimal BTF once per object and boot",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), undefined);
      const first = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in first, JSON.stringify(first));
      assert.equal(first.created, true);
      assert.ok(first.path.startsWith(`${dir}/${bootId()}-`), first.path);

      const bytes = await Deno.readFile(first.path);
      assert.equal(new DataView(bytes.buffer).getUint16(0, true), BTF_MAGIC);
      const kernel = await Deno.stat("/sys/kernel/btf/vmlinux");
      assert.ok(bytes.length < 4096, `${bytes.length} bytes`);
      assert.ok(kernel.size > 100 * bytes.length, `kernel BTF: ${kernel.size} bytes`);

      assert.deepEqual(await createKernelBtfCache(SYSCALLS_OBJECT, dir), {
        path: first.path,
        created: false,
      });
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), first.path);
      // Another object has its own entry, and only the two files remain.
      assert.equal(cachedKernelBtf(PROCESS_OBJECT, dir), undefined);
      const second = await createKernelBtfCache(PROCESS_OBJECT, dir);
      assert.ok("path" in second, JSON.stringify(second));
      assert.notEqual(second.path, first.path);
      const names = [];
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
      assert.equal(names.length, 2, names.join(", "));
    });
  },
});

Deno.test({
  name: "createKernelBtfCache() removes the files of other boots and old temporary files",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const otherBoot = `${dir}/00000000-0000-0000-0000-000000000000-0123456789abcdef-10.btf`;
      const oldTemporary = `${dir}/${bootId()}-0123456789abcdef-10.btf.1.tmp`;
      const freshTemporary = `${dir}/${bootId()}-fedcba9876543210-10.btf.2.tmp`;
      for (const file of [otherBoot, oldTemporary, freshTemporary]) {
        await Deno.writeTextFile(file, "x");
      }
      const hourAgo = new Date(Date.now() - 3_600_000);
      await Deno.utime(oldTemporary, hourAgo, hourAgo);

      const result = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in result, JSON.stringify(result));
      const names = new Set<string>();
      for await (const entry of Deno.readDir(dir)) names.add(`${dir}/${entry.name}`);
      // A fresh temporary file may belong to a generation still running.
      assert.deepEqual(names, new Set([result.path, freshTemporary]));
    });
  },
});

Deno.test({
  name: "a damaged cache file is removed and the object loads with the kernel's BTF",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const result = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in result, JSON.stringify(result));
      await Deno.writeTextFile(result.path, "not BTF at all");

      assert.ok(loadSyscalls(dir) > 0);
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), undefined);
      await assert.rejects(Deno.stat(result.path), Deno.errors.NotFound);
    });
  },
});

Deno.test({
  name: "a valid cache file without the object's types is used, fails, and is removed",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      // The process probe's minimal BTF is well formed but has no
      // thread_info.status, so libbpf cannot relocate the syscalls program
      // with it: that the file goes away shows libbpf read it.
      const own = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      const other = await createKernelBtfCache(PROCESS_OBJECT, dir);
      assert.ok("path" in own, JSON.stringify(own));
      assert.ok("path" in other, JSON.stringify(other));
      await Deno.copyFile(other.path, own.path);

      assert.ok(loadSyscalls(dir) > 0);
      await assert.rejects(Deno.stat(own.path), Deno.errors.NotFound);
      assert.ok(await Deno.stat(other.path));
    });
  },
});

Deno.test({
  name: "createKernelBtfCache() reports a permission it lacks instead of asking for it",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const result = await run(Deno.execPath(), [
        "run",
        "--allow-ffi",
        "--allow-read",
        repoPath("tests/_scripts/kernel_btf_cache.ts"),
        dir,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), { skipped: `no write permission for ${dir}` });
    });
  },
});

Deno.test({
  name: "createKernelBtfCache() without bpftool on PATH says how to install it",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const result = await run(Deno.execPath(), [
        "run",
        "--allow-all",
        repoPath("tests/_scripts/kernel_btf_cache.ts"),
        dir,
      ], { env: { PATH: dir } });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), {
        skipped: "bpftool is not installed (Debian: apt-get install bpftool)",
      });
      // Nothing is left behind: no object copy, no temporary file.
      const names = [];
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
      assert.deepEqual(names, []);
    });
  },
});

Deno.test({
  name: "a load that fails for another reason keeps the cache file",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const cache = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in cache, JSON.stringify(cache));
      // Root without capabilities: both attempts fail with EPERM.
      const result = await run("setpriv", [
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
        Deno.execPath(),
        "run",
        "--allow-all",
        repoPath("tests/_scripts/kernel_btf_cache.ts"),
        dir,
        "load",
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), { name: "BpfError", code: "EPERM" });
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), cache.path);
    });
  },
});
