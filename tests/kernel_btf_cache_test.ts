import assert from "node:assert/strict";
import {
  cachedKernelBtf,
  createKernelBtfCache,
  type KernelBtfCacheResult,
  openObject,
} from "../mod.ts";
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

async function namesIn(dir: string): Promise<string[]> {
  const names = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** Runs tests/_scripts/kernel_btf_cache.ts with `flags` and returns what it printed. */
async function runScript(
  flags: string[],
  args: string[],
): Promise<KernelBtfCacheResult | { path: string | null }> {
  const result = await run(Deno.execPath(), [
    "run",
    ...flags,
    repoPath("tests/_scripts/kernel_btf_cache.ts"),
    ...args,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
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
  name: "createKernelBtfCache() removes only its outdated files",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const otherBoot = `${dir}/00000000-0000-0000-0000-000000000000-0123456789abcdef-10.btf`;
      const oldTemporary = `${dir}/${bootId()}-0123456789abcdef-10.btf.1-1.tmp`;
      const oldObjectCopy = `${dir}/${bootId()}-0123456789abcdef-10.btf.1-1.tmp.o`;
      const freshTemporary = `${dir}/${bootId()}-fedcba9876543210-10.btf.2-1.tmp`;
      // Files that this module did not write, even with similar names, stay.
      const foreign = [`${dir}/vmlinux-6.1.btf`, `${dir}/notes.tmp`, `${dir}/x.btf.1.tmp`];
      for (const file of [otherBoot, oldTemporary, oldObjectCopy, freshTemporary, ...foreign]) {
        await Deno.writeTextFile(file, "x");
      }
      const hourAgo = new Date(Date.now() - 3_600_000);
      for (const file of [oldTemporary, oldObjectCopy, ...foreign]) {
        await Deno.utime(file, hourAgo, hourAgo);
      }

      const result = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in result, JSON.stringify(result));
      const names = new Set<string>();
      for await (const entry of Deno.readDir(dir)) names.add(`${dir}/${entry.name}`);
      // A fresh temporary file may belong to a generation still running.
      assert.deepEqual(names, new Set([result.path, freshTemporary, ...foreign]));
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
  name: "createKernelBtfCache() reports a missing write permission",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const result = await runScript(["--allow-ffi", "--allow-read"], [dir]);
      assert.deepEqual(result, {
        skipped: `no write permission for ${dir}: pass --allow-write=${dir}`,
      });
    });
  },
});

Deno.test({
  name: "cache works with narrow permissions",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      // The permissions of `deno task start`, without --allow-all: Deno 2.9
      // lets only --allow-all read /proc, so the boot id is read through FFI.
      const flags = [
        "--allow-ffi",
        "--allow-env",
        "--allow-read",
        `--allow-write=${dir}`,
        "--allow-run=bpftool",
      ];
      const created = await runScript(flags, [dir]);
      assert.ok("created" in created, JSON.stringify(created));
      assert.equal(created.created, true);
      assert.deepEqual(await runScript(flags, [dir]), { path: created.path, created: false });
      assert.deepEqual(await runScript(flags, [dir, "lookup"]), { path: created.path });
    });
  },
});

Deno.test({
  name: "createKernelBtfCache() reports a missing run permission",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const result = await runScript([
        "--allow-ffi",
        "--allow-read",
        "--allow-env",
        "--allow-write",
      ], [
        dir,
      ]);
      assert.ok("skipped" in result, JSON.stringify(result));
      assert.match(
        result.skipped,
        /^no run permission for \/\S+\/bpftool: pass --allow-run=\/\S+\/bpftool$/,
      );
    });
  },
});

Deno.test({
  name: "createKernelBtfCache() without bpftool says how to install it",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      // A private mount namespace hides the sbin directories, and PATH names only dir.
      const deno = Deno.execPath();
      const script = repoPath("tests/_scripts/kernel_btf_cache.ts");
      const result = await run("unshare", [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'for d in /usr/sbin /usr/local/sbin; do mount -t tmpfs none "$d" || exit 9; done; ' +
        `PATH=${dir} exec "${deno}" run --allow-all "${script}" "${dir}"`,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), {
        skipped: "bpftool was not found on PATH or in /usr/sbin, /usr/local/sbin, /sbin " +
          "(Debian: apt-get install bpftool)",
      });
      // Nothing is left behind: no object copy, no temporary file.
      assert.deepEqual(await namesIn(dir), []);
    });
  },
});

Deno.test({
  name: "objects with kernel type id relocations are not cached",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const object = await Deno.readFile(repoPath("tests/fixtures/core_type_id.bpf.o"));
      const result = await createKernelBtfCache(object, dir);
      assert.ok("skipped" in result, JSON.stringify(result));
      assert.match(result.skipped, /bpf_core_type_id_kernel\(\)/);
      assert.deepEqual(await namesIn(dir), []);

      // The syscalls object has no such relocation and is cached in the same directory.
      const syscalls = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in syscalls, JSON.stringify(syscalls));
    });
  },
});

Deno.test({
  name: "objects without BTF are not cached",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const source = `${dir}/plain.bpf.c`;
      const object = `${dir}/plain.bpf.o`;
      await Deno.writeTextFile(
        source,
        'int f(void *ctx) { return 0; }\nchar LICENSE[] __attribute__((section("license"))) = "GPL";\n',
      );
      const build = await run("clang", ["-O2", "-target", "bpf", "-c", source, "-o", object]);
      assert.equal(build.code, 0, build.stderr);
      const result = await createKernelBtfCache(await Deno.readFile(object), `${dir}/cache`);
      assert.deepEqual(result, { skipped: "the object has no BTF: build it with clang -g" });
    });
  },
});

Deno.test({
  name: "cache files others may write are not used",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const result = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in result, JSON.stringify(result));

      await Deno.chmod(result.path, 0o666);
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), undefined);
      await Deno.chmod(result.path, 0o644);
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), result.path);

      await Deno.chmod(dir, 0o777);
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), undefined);
      const again = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("skipped" in again, JSON.stringify(again));
      assert.match(again.skipped, /must belong to uid \d+ and be writable by no one else/);
      await Deno.chmod(dir, 0o700);

      await Deno.chown(result.path, 65534, 65534);
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), undefined);
    });
  },
});

Deno.test({
  name: "createKernelBtfCache() replaces an unusable entry",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const first = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
      assert.ok("path" in first, JSON.stringify(first));
      const valid = await Deno.readFile(first.path);
      const unusable: [string, () => Promise<void>][] = [
        ["empty file", () => Deno.writeFile(first.path, new Uint8Array())],
        ["directory", async () => {
          await Deno.mkdir(first.path);
          await Deno.writeTextFile(`${first.path}/inside`, "x");
        }],
        ["file over 1 MiB", () => Deno.writeFile(first.path, new Uint8Array((1 << 20) + 1))],
      ];
      for (const [name, make] of unusable) {
        await Deno.remove(first.path, { recursive: true });
        await make();
        assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), undefined, name);
        const result = await createKernelBtfCache(SYSCALLS_OBJECT, dir);
        assert.deepEqual(result, { path: first.path, created: true }, name);
        assert.deepEqual(await Deno.readFile(first.path), valid, name);
      }
    });
  },
});

Deno.test({
  name: "concurrent createKernelBtfCache() calls all succeed",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const results = await Promise.all(
        Array.from({ length: 4 }, () => createKernelBtfCache(SYSCALLS_OBJECT, dir)),
      );
      for (const result of results) assert.ok("path" in result, JSON.stringify(result));
      const path = cachedKernelBtf(SYSCALLS_OBJECT, dir);
      assert.ok(path !== undefined);
      assert.deepEqual(await namesIn(dir), [path.slice(dir.length + 1)]);
      assert.ok(loadSyscalls(dir) > 0);
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, dir), path);
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

Deno.test({
  name: "cache directory behind others' links is rejected",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      // A directory anyone may write, with a link in it made by uid 65534: the
      // cache must neither use the linked directory nor remove files there.
      const open = `${dir}/open`;
      const victim = `${dir}/victim`;
      await Deno.chmod(dir, 0o755);
      await Deno.mkdir(open);
      await Deno.chmod(open, 0o777);
      await Deno.mkdir(victim, { mode: 0o700 });
      const kept = `${victim}/00000000-0000-0000-0000-000000000000-0123456789abcdef-10.btf`;
      await Deno.writeTextFile(kept, "x");
      const link = await run("setpriv", [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "ln",
        "-s",
        victim,
        `${open}/btf`,
      ]);
      assert.equal(link.code, 0, link.stderr);

      const result = await createKernelBtfCache(SYSCALLS_OBJECT, `${open}/btf`);
      assert.ok("skipped" in result, JSON.stringify(result));
      assert.match(result.skipped, /is not a directory \(or is a link\)/);
      assert.deepEqual(await namesIn(victim), [kept.slice(victim.length + 1)]);

      // The same directory reached without the link is fine, but not below
      // a directory that others may write.
      await Deno.mkdir(`${open}/real`, { mode: 0o700 });
      const below = await createKernelBtfCache(SYSCALLS_OBJECT, `${open}/real`);
      assert.ok("skipped" in below, JSON.stringify(below));
      assert.match(
        below.skipped,
        /above .* must belong to root or uid \d+ and be writable by no one else/,
      );
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, `${open}/real`), undefined);
    });
  },
});

Deno.test({
  name: "cache entries are usable whatever the umask",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      const result = await run("sh", [
        "-c",
        `umask 000; exec "${Deno.execPath()}" run --allow-all "${
          repoPath("tests/_scripts/kernel_btf_cache.ts")
        }" "${dir}/cache"`,
      ]);
      assert.equal(result.code, 0, result.stderr);
      const created = JSON.parse(result.stdout) as KernelBtfCacheResult;
      assert.ok("path" in created, JSON.stringify(created));
      assert.equal((await Deno.stat(created.path)).mode! & 0o777, 0o644);
      assert.equal((await Deno.stat(`${dir}/cache`)).mode! & 0o777, 0o700);
      assert.equal(cachedKernelBtf(SYSCALLS_OBJECT, `${dir}/cache`), created.path);
    });
  },
});

Deno.test({
  name: "cache lookup without --allow-ffi returns nothing",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      assert.ok("path" in await createKernelBtfCache(SYSCALLS_OBJECT, dir));
      const flags = ["--allow-read", "--allow-env", `--allow-write=${dir}`, "--allow-run"];
      assert.deepEqual(await runScript(flags, [dir, "lookup"]), { path: null });
      assert.deepEqual(await runScript(flags, [dir]), {
        skipped: "no ffi permission: pass --allow-ffi",
      });
    });
  },
});

Deno.test({
  name: "createKernelBtfCache() skips a bpftool that cannot run",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      // A non-executable bpftool first on PATH, and an LD_ variable that Deno
      // refuses to hand to a program named by --allow-run.
      const bin = `${dir}/bin`;
      await Deno.mkdir(bin);
      await Deno.writeTextFile(`${bin}/bpftool`, "#!/bin/sh\nexit 1\n", { mode: 0o644 });
      const result = await run(Deno.execPath(), [
        "run",
        "--allow-ffi",
        "--allow-env",
        "--allow-read",
        `--allow-write=${dir}/cache`,
        "--allow-run=bpftool",
        repoPath("tests/_scripts/kernel_btf_cache.ts"),
        `${dir}/cache`,
      ], { env: { PATH: `${bin}:/usr/sbin:/usr/bin:/bin`, LD_LIBRARY_PATH: "/usr/lib" } });
      assert.equal(result.code, 0, result.stderr);
      const created = JSON.parse(result.stdout) as KernelBtfCacheResult;
      assert.ok("path" in created, JSON.stringify(created));
      assert.equal(created.created, true);
    });
  },
});

Deno.test({
  name: "objects with a large .bss are cached",
  ...kernelTest(),
  async fn() {
    await withDir(async (dir) => {
      // .bss is SHT_NOBITS: 8 MiB in the section table, no bytes in the file.
      const source = `${dir}/bss.bpf.c`;
      const object = `${dir}/bss.bpf.o`;
      await Deno.writeTextFile(
        source,
        '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_core_read.h>\n' +
          "__u64 big[1 << 20];\n" +
          'SEC("raw_tp/sys_enter") int f(void *ctx) {\n' +
          "  struct task_struct *task = bpf_get_current_task_btf();\n" +
          "  big[0] = BPF_CORE_READ(task, pid);\n  return 0;\n}\n" +
          'char LICENSE[] SEC("license") = "GPL";\n',
      );
      const build = await run("clang", [
        "-g",
        "-O2",
        "-target",
        "bpf",
        "-D__TARGET_ARCH_x86",
        "-I",
        repoPath("bpf/include"),
        "-c",
        source,
        "-o",
        object,
      ]);
      assert.equal(build.code, 0, build.stderr);
      const bytes = await Deno.readFile(object);
      assert.ok(bytes.length < 8 << 20, `${bytes.length} bytes`);
      const result = await createKernelBtfCache(bytes, `${dir}/cache`);
      assert.ok("path" in result, JSON.stringify(result));
    });
  },
});
