/**
 * A cache of minimal kernel BTF, one file per object and boot, that lets an
 * object with CO-RE relocations load without libbpf parsing the kernel's
 * whole BTF.
 *
 * libbpf resolves CO-RE relocations against the running kernel's BTF, which
 * it reads from /sys/kernel/btf/vmlinux at every load: about 5 MB and 7 ms on
 * a 6.x kernel. `bpftool gen min_core_btf` writes the few kernel types one
 * object's relocations use (a few hundred bytes). libbpf accepts such a file
 * in place of the kernel's (`btf_custom_path`), and the relocations resolve
 * to the same offsets. The kernel cannot change while it runs, so a file
 * generated in this boot stays valid until the next one. The file name
 * contains the boot id and a hash of the object, and /run is emptied at boot
 * anyway.
 *
 * Use: open with `{ kernelBtfCache: true }`, which uses the file when it
 * exists, and call {@linkcode createKernelBtfCache} once the object runs, so
 * that the next start finds it. The built-in probes and `bpfscope run` do both.
 *
 * @module
 */

/**
 * The directory of the cache unless a caller names another one. /run is a
 * tmpfs on systemd and most other distributions, emptied at every boot.
 *
 * @example
 * ```ts
 * import { KERNEL_BTF_CACHE_DIR } from "./kernel_btf_cache.ts";
 *
 * console.log(KERNEL_BTF_CACHE_DIR); // "/run/bpfscope/btf"
 * ```
 */
export const KERNEL_BTF_CACHE_DIR = "/run/bpfscope/btf";

const BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id";
const KERNEL_BTF_PATH = "/sys/kernel/btf/vmlinux";
// A temporary file older than this was left by a process that exited before
// bpftool finished; a live generation takes about 20 ms.
const STALE_TEMPORARY_MS = 60_000;

/**
 * The outcome of {@linkcode createKernelBtfCache}: the file it wrote or
 * found, or the reason there is none.
 *
 * @example
 * ```ts
 * import type { KernelBtfCacheResult } from "./kernel_btf_cache.ts";
 *
 * const result: KernelBtfCacheResult = { skipped: "bpftool is not installed" };
 * ```
 */
export type KernelBtfCacheResult = { path: string; created: boolean } | { skipped: string };

/**
 * Returns the cached minimal kernel BTF of `object` for this boot, or
 * `undefined` when there is none or this process may not read it (the lookup
 * never prompts for a permission).
 *
 * @param object the bytes of the `.bpf.o` file
 * @param dir the cache directory
 *
 * @example
 * ```ts ignore
 * import { cachedKernelBtf, SYSCALLS_OBJECT } from "../mod.ts";
 *
 * console.log(cachedKernelBtf(SYSCALLS_OBJECT) ?? "no cache yet");
 * ```
 */
export function cachedKernelBtf(
  object: Uint8Array,
  dir: string = KERNEL_BTF_CACHE_DIR,
): string | undefined {
  if (!granted("read", BOOT_ID_PATH) || !granted("read", dir)) return undefined;
  try {
    const path = cachePath(dir, readBootId(), object);
    return Deno.statSync(path).size > 0 ? path : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes the minimal kernel BTF of `object` into the cache with
 * `bpftool gen min_core_btf`, unless this boot's file is already there.
 * Files of other boots in the directory are removed. It does not throw, but
 * returns the reason when it cannot write the file: no bpftool, no
 * permission to run it or to write the directory, or an object whose types
 * bpftool does not find in the kernel's BTF.
 *
 * Needs read access to /proc and /sys/kernel/btf, write access to `dir` and
 * permission to run `bpftool`; a permission that is not granted is reported,
 * not asked for.
 *
 * @param object the bytes of the `.bpf.o` file
 * @param dir the cache directory, created (mode 0700) when missing
 * @returns the file, or why there is none
 *
 * @example Make the next start of the syscalls probe faster
 * ```ts ignore
 * import { createKernelBtfCache, SYSCALLS_OBJECT } from "../mod.ts";
 *
 * const result = await createKernelBtfCache(SYSCALLS_OBJECT);
 * console.log("path" in result ? result.path : result.skipped);
 * ```
 */
export async function createKernelBtfCache(
  object: Uint8Array,
  dir: string = KERNEL_BTF_CACHE_DIR,
): Promise<KernelBtfCacheResult> {
  for (
    const [name, target] of [
      ["read", BOOT_ID_PATH],
      ["read", KERNEL_BTF_PATH],
      ["write", dir],
      ["run", "bpftool"],
    ] as const
  ) {
    if (!granted(name, target)) return { skipped: `no ${name} permission for ${target}` };
  }
  let bootId: string;
  try {
    bootId = readBootId();
    await Deno.stat(KERNEL_BTF_PATH);
  } catch (error) {
    return { skipped: `the kernel's BTF is not readable: ${message(error)}` };
  }
  const path = cachePath(dir, bootId, object);
  if (await Deno.stat(path).catch(() => undefined)) return { path, created: false };

  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await removeOutdated(dir, bootId);
  } catch (error) {
    return { skipped: `cannot prepare ${dir}: ${message(error)}` };
  }
  const temporary = `${path}.${Deno.pid}.tmp`;
  const objectFile = `${temporary}.o`;
  try {
    await Deno.writeFile(objectFile, object, { mode: 0o600 });
    const output = await new Deno.Command("bpftool", {
      args: ["gen", "min_core_btf", KERNEL_BTF_PATH, temporary, objectFile],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!output.success) {
      const reason = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1);
      return { skipped: `bpftool gen min_core_btf failed: ${reason || `exit ${output.code}`}` };
    }
    // The rename makes the file appear whole or not at all.
    await Deno.rename(temporary, path);
    return { path, created: true };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { skipped: "bpftool is not installed (Debian: apt-get install bpftool)" };
    }
    return { skipped: message(error) };
  } finally {
    await Deno.remove(objectFile).catch(() => {});
    await Deno.remove(temporary).catch(() => {});
  }
}

/**
 * Removes a cache file, as a load does that failed with it and then
 * succeeded with the kernel's own BTF.
 */
export function removeCachedKernelBtf(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Gone already, or not ours to remove: the load goes on without it.
  }
}

function cachePath(dir: string, bootId: string, object: Uint8Array): string {
  return `${dir}/${bootId}-${objectHash(object)}-${object.byteLength}.btf`;
}

function readBootId(): string {
  const text = Deno.readTextFileSync(BOOT_ID_PATH).trim();
  if (!/^[0-9a-f-]{36}$/.test(text)) throw new Error(`unexpected boot id "${text}"`);
  return text;
}

// Removes the files of other boots and temporary files that a process left
// behind when it exited during a generation.
async function removeOutdated(dir: string, bootId: string): Promise<void> {
  const now = Date.now();
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile) continue;
    const file = `${dir}/${entry.name}`;
    if (entry.name.endsWith(".btf") && !entry.name.startsWith(`${bootId}-`)) {
      await Deno.remove(file).catch(() => {});
    } else if (entry.name.endsWith(".tmp") || entry.name.endsWith(".tmp.o")) {
      const modified = (await Deno.stat(file).catch(() => undefined))?.mtime?.getTime();
      if (modified !== undefined && now - modified > STALE_TEMPORARY_MS) {
        await Deno.remove(file).catch(() => {});
      }
    }
  }
}

/**
 * Hashes the object's bytes to 64 bits (two 32-bit multiply-xorshift lanes)
 * as 16 hex digits. The hash names a cache entry and is no security check,
 * because only the owner of the directory (root) can write there.
 */
function objectHash(bytes: Uint8Array): string {
  let a = 0x9e3779b9;
  let b = 0x85ebca6b;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    a = Math.imul(a ^ byte, 0x01000193);
    b = Math.imul(b ^ byte, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
  a = Math.imul(a ^ (a >>> 13), 0xc2b2ae35);
  a ^= a >>> 16;
  b = Math.imul(b ^ (b >>> 16), 0x85ebca6b);
  b ^= b >>> 13;
  return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0");
}

function granted(name: "read" | "write" | "run", target: string): boolean {
  const descriptor: Deno.PermissionDescriptor = name === "run"
    ? { name, command: target }
    : { name, path: target };
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
