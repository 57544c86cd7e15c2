// deno-lint-ignore-file no-console -- test helpers report to the test runner.
// Shared helpers for tests that run against the live kernel.

import { readEnv } from "../ffi/_env.ts";

const inCi = readEnv("CI") === "true";

/**
 * Returns the reason why kernel tests cannot run here, or undefined when they can.
 * They need root (for CAP_BPF and CAP_PERFMON) and the kernel's BTF.
 */
function missingPrerequisite(): string | undefined {
  if (Deno.uid() !== 0) return "not running as root";
  try {
    Deno.statSync("/sys/kernel/btf/vmlinux");
  } catch {
    return "the kernel has no BTF at /sys/kernel/btf/vmlinux";
  }
  return undefined;
}

/**
 * Returns Deno.test options for a test that needs the live kernel. Outside CI
 * the test is ignored, with the reason printed, when a prerequisite is missing.
 * In CI (CI=true) it always runs, so a missing prerequisite fails it.
 */
export function kernelTest(): { ignore: boolean } {
  const reason = missingPrerequisite();
  if (reason === undefined || inCi) return { ignore: false };
  console.warn(`kernel test ignored: ${reason}`);
  return { ignore: true };
}

/** Resolves a path relative to the repository root. */
export function repoPath(path: string): string {
  return new URL(`../${path}`, import.meta.url).pathname;
}

/** Runs a command and returns its exit code and output as text. */
export async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...(options.env === undefined ? {} : { env: options.env }),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Returns whether the program with this id is gone from the kernel within
 * `timeoutMs`. The kernel frees an unloaded program after an RCU grace period,
 * so its id can stay visible for a moment after the last reference is closed.
 */
export async function programGone(id: number, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await programExists(id)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** Returns whether a program with this id is loaded (`bpftool prog show id ID`). */
export async function programExists(id: number): Promise<boolean> {
  const result = await run("bpftool", ["prog", "show", "id", String(id)]);
  return result.code === 0;
}
