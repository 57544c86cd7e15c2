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
 * Not every object can use such a file. The type ids in it are not the
 * kernel's, so an object with `bpf_core_type_id_kernel()` relocations is
 * never cached. A file is used only when it and its directory belong to the
 * effective user and no one else can write them, because a forged file could
 * move the offsets the program reads.
 *
 * @module
 */

import { elfSections, hasKernelTypeIdRelocation } from "./_elf.ts";
import { cString } from "./_check.ts";
import { readEnv } from "./_env.ts";
import { libc, R_OK, readSmallFile } from "./libc.ts";

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
// The sbin directories where Debian and Fedora install bpftool, searched after PATH.
const BPFTOOL_DIRS = ["/usr/sbin", "/usr/local/sbin", "/sbin"];
// A temporary file older than this was left by a process that exited before
// bpftool finished; a live generation takes about 20 ms.
const STALE_TEMPORARY_MS = 60_000;
// Entries are a few hundred bytes to a few KiB; a larger file is not one.
const MAX_ENTRY_BYTES = 1 << 20;
// An entry's name (boot id, object hash, object size) and, for a temporary
// file, the suffix that generate() adds.
const ENTRY_NAME = /^([0-9a-f-]{36})-[0-9a-f]{16}-\d+\.btf(\.\d+-\d+\.tmp(?:\.o)?)?$/;

let temporaryCount = 0;

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
 * `undefined` when there is none or the object cannot use one. It also
 * returns `undefined` when another user may write the file or its
 * directory, and when this process may not read the directory, because the
 * lookup never prompts for a permission.
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
  if (!granted("read", dir) || !granted("ffi") || unsupportedReason(object) !== undefined) {
    return undefined;
  }
  try {
    const bootId = readBootId();
    if (untrustedReason(dir) !== undefined) return undefined;
    const path = cachePath(dir, bootId, object);
    return entryProblem(path, Deno.lstatSync(path)) === undefined ? path : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes the minimal kernel BTF of `object` into the cache with
 * `bpftool gen min_core_btf`, unless this boot's file is already there.
 * A damaged entry is replaced, and entries of other boots in the directory
 * are removed (files with other names are left alone). It does not throw, but returns the reason when it cannot write the
 * file: no bpftool, no permission to run it or to write the directory, a
 * directory that other users may write, or an object that cannot use a cache
 * (no BTF, or `bpf_core_type_id_kernel()` relocations).
 *
 * Needs write access to `dir` and permission to run `bpftool`; a permission
 * that is not granted is reported, not asked for.
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
  const unsupported = unsupportedReason(object);
  if (unsupported !== undefined) return { skipped: unsupported };
  // The boot id and the kernel's BTF are checked through libc.
  if (!granted("ffi")) return { skipped: "no ffi permission: pass --allow-ffi" };
  if (!granted("write", dir)) {
    return { skipped: `no write permission for ${dir}: pass --allow-write=${dir}` };
  }
  const found = findBpftool();
  if ("skipped" in found) return found;
  const bpftool = found.path;
  if (!granted("run", bpftool)) {
    return { skipped: `no run permission for ${bpftool}: pass --allow-run=${bpftool}` };
  }

  let bootId: string;
  try {
    bootId = readBootId();
  } catch (error) {
    return { skipped: message(error) };
  }
  // bpftool reads the kernel's BTF, not Deno, which would need --allow-all for /sys.
  if (libc().access(cString(KERNEL_BTF_PATH), R_OK) !== 0) {
    return { skipped: `${KERNEL_BTF_PATH} cannot be read: the kernel has no BTF` };
  }
  const path = cachePath(dir, bootId, object);
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const untrusted = untrustedReason(dir);
    if (untrusted !== undefined) return { skipped: untrusted };
    await removeOutdated(dir, bootId);
    const existing = await Deno.lstat(path).catch(() => undefined);
    // A link is removed and replaced like any other unusable entry.
    if (existing !== undefined) {
      if (entryProblem(path, existing) === undefined) return { path, created: false };
      await Deno.remove(path, { recursive: true });
    }
  } catch (error) {
    return { skipped: `cannot prepare ${dir}: ${message(error)}` };
  }
  return await generate(bpftool, object, path);
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

// Runs bpftool into a temporary file named for this call, so that concurrent
// calls never share one, and renames it into place.
async function generate(
  bpftool: string,
  object: Uint8Array,
  path: string,
): Promise<KernelBtfCacheResult> {
  const temporary = `${path}.${Deno.pid}-${++temporaryCount}.tmp`;
  const objectFile = `${temporary}.o`;
  try {
    await Deno.writeFile(objectFile, object, { mode: 0o600 });
    // An empty environment: bpftool needs none, and Deno refuses to pass
    // LD_* variables on to a program that --allow-run names.
    const output = await new Deno.Command(bpftool, {
      args: ["gen", "min_core_btf", KERNEL_BTF_PATH, temporary, objectFile],
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!output.success) {
      const reason = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1);
      return { skipped: `bpftool gen min_core_btf failed: ${reason || `exit ${output.code}`}` };
    }
    if (!(await Deno.lstat(temporary).catch(() => undefined))?.isFile) {
      return { skipped: `${bpftool} gen min_core_btf succeeded but wrote no file` };
    }
    // Whatever the umask, the entry must be writable by its owner alone, or
    // cachedKernelBtf() would not trust it.
    await Deno.chmod(temporary, 0o644);
    // The rename makes the file appear whole or not at all.
    await Deno.rename(temporary, path);
    return { path, created: true };
  } catch (error) {
    return { skipped: `cannot write ${path}: ${message(error)}` };
  } finally {
    await Deno.remove(objectFile).catch(() => {});
    await Deno.remove(temporary).catch(() => {});
  }
}

// The reason an object cannot use a minimal kernel BTF, if there is one.
function unsupportedReason(object: Uint8Array): string | undefined {
  try {
    const sections = elfSections(object);
    if (!sections.has(".BTF")) return "the object has no BTF: build it with clang -g";
    const btfExt = sections.get(".BTF.ext");
    if (btfExt !== undefined && hasKernelTypeIdRelocation(btfExt)) {
      return "the object uses bpf_core_type_id_kernel(), whose kernel type ids a minimal BTF " +
        "does not have";
    }
    return undefined;
  } catch (error) {
    return `the object cannot be read: ${message(error)}`;
  }
}

// A cache directory or file that another user can write could hold a forged
// BTF, and a directory on the way to it that another user can write lets them
// swap the cache for a link to any directory. So the path is checked as
// OpenSSH checks a key file's. The cache directory must be a real directory
// of the effective user that no one else can write. Each directory above it
// must belong to root or that user, and no one else may write it unless it is
// sticky, as /tmp is.
function untrustedReason(dir: string): string | undefined {
  const owner = libc().geteuid();
  let path = dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`;
  path = path.replace(/\/+$/, "") || "/";
  const info = Deno.lstatSync(path);
  if (info.isSymlink || !info.isDirectory) return `${dir} is not a directory (or is a link)`;
  if (info.uid !== owner || modeOf(info) & 0o022) {
    return `${dir} must belong to uid ${owner} and be writable by no one else ` +
      `(it is uid ${info.uid}, mode ${modeOf(info).toString(8)})`;
  }
  while (path !== "/") {
    path = path.slice(0, path.lastIndexOf("/")) || "/";
    const parent = Deno.lstatSync(path);
    const sticky = (modeOf(parent) & 0o1000) !== 0;
    if (
      parent.isSymlink || (parent.uid !== 0 && parent.uid !== owner) ||
      (modeOf(parent) & 0o022 && !sticky)
    ) {
      return `${path}, above ${dir}, must belong to root or uid ${owner} and be writable by ` +
        `no one else (it is uid ${parent.uid}, mode ${modeOf(parent).toString(8)})`;
    }
  }
  return undefined;
}

function modeOf(info: Deno.FileInfo): number {
  return (info.mode ?? 0) & 0o7777;
}

// The reason an entry cannot be used as it is, if there is one.
function entryProblem(path: string, info: Deno.FileInfo): string | undefined {
  if (!info.isFile) return `${path} is not a regular file`;
  if (info.size === 0 || info.size > MAX_ENTRY_BYTES) return `${path} has ${info.size} bytes`;
  if (info.uid !== libc().geteuid() || modeOf(info) & 0o022) {
    return `${path} may be written by another user`;
  }
  return undefined;
}

// The first executable bpftool on PATH or in BPFTOOL_DIRS, or why there is none.
function findBpftool(): { path: string } | { skipped: string } {
  let unreadable = false;
  const path = (readEnv("PATH") ?? "").split(":").filter((dir) => dir.startsWith("/"));
  for (const dir of [...path, ...BPFTOOL_DIRS]) {
    const candidate = `${dir}/bpftool`;
    if (!granted("read", candidate)) {
      unreadable = true;
      continue;
    }
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && modeOf(info) & 0o111) return { path: candidate };
    } catch {
      // Not in this directory.
    }
  }
  return {
    skipped: unreadable
      ? "no read permission to look for bpftool: pass --allow-read"
      : `bpftool was not found on PATH or in ${BPFTOOL_DIRS.join(", ")} ` +
        "(Debian: apt-get install bpftool)",
  };
}

function cachePath(dir: string, bootId: string, object: Uint8Array): string {
  return `${dir}/${bootId}-${objectHash(object)}-${object.byteLength}.btf`;
}

function readBootId(): string {
  const text = readSmallFile(BOOT_ID_PATH)?.trim();
  if (text === undefined) throw new Error(`${BOOT_ID_PATH} cannot be read`);
  if (!/^[0-9a-f-]{36}$/.test(text)) throw new Error(`unexpected boot id "${text}"`);
  return text;
}

// Removes the files of other boots and temporary files that a process left
// behind when it exited during a generation.
async function removeOutdated(dir: string, bootId: string): Promise<void> {
  const now = Date.now();
  for await (const entry of Deno.readDir(dir)) {
    // Only names this module writes: another program's files may share the directory.
    const name = ENTRY_NAME.exec(entry.name);
    if (!entry.isFile || name === null) continue;
    const file = `${dir}/${entry.name}`;
    if (name[2] === undefined && name[1] !== bootId) {
      await Deno.remove(file).catch(() => {});
    } else if (name[2] !== undefined) {
      const modified = (await Deno.stat(file).catch(() => undefined))?.mtime?.getTime();
      if (modified !== undefined && now - modified > STALE_TEMPORARY_MS) {
        await Deno.remove(file).catch(() => {});
      }
    }
  }
}

/**
 * Hashes the object's bytes to 64 bits (two 32-bit multiply-xorshift lanes)
 * as 16 hex digits. The hash names a cache entry and is no security check:
 * untrustedReason() and entryProblem() keep out files that another user
 * could have written.
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

function granted(name: "read" | "write" | "run", target: string): boolean;
function granted(name: "ffi"): boolean;
function granted(name: "read" | "write" | "run" | "ffi", target = ""): boolean {
  const descriptor: Deno.PermissionDescriptor = name === "ffi"
    ? { name }
    : name === "run"
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
