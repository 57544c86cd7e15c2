import assert from "node:assert/strict";
import { kernelTest, repoPath, run } from "./_helpers.ts";

interface Report {
  name: string;
  code: string;
  message: string;
}

function assertNeedsRoot(report: Report): void {
  assert.equal(report.name, "BpfError");
  assert.equal(report.code, "EPERM");
  assert.match(report.message, /Failed to load object "syscalls"/);
  assert.match(
    report.message,
    /needs root, or the CAP_BPF and CAP_PERFMON capabilities: run it with sudo/,
  );
}

/**
 * Copies Deno and the sources that tests/_scripts/load_probe.ts imports into a
 * world-readable temporary directory, because the checkout and the Deno
 * binary may sit under a directory that other users cannot enter.
 */
async function copyForOtherUser(): Promise<{ root: string; deno: string; script: string }> {
  const root = await Deno.makeTempDir({ prefix: "bpfscope-unprivileged-" });
  await Deno.chmod(root, 0o755);
  const deno = `${root}/deno`;
  await Deno.copyFile(Deno.execPath(), deno);
  await Deno.chmod(deno, 0o755);
  const repo = `${root}/repo`;
  await Deno.mkdir(`${repo}/tests`, { recursive: true });
  const sources = ["mod.ts", "ffi", "bpf", "plugins"].map((path) => repoPath(path));
  const copy = await run("cp", ["-r", ...sources, repoPath("tests/_scripts"), repo]);
  assert.equal(copy.code, 0, copy.stderr);
  await Deno.rename(`${repo}/_scripts`, `${repo}/tests/_scripts`);
  const chmod = await run("chmod", ["-R", "a+rX,a+w", root]);
  assert.equal(chmod.code, 0, chmod.stderr);
  return { root, deno, script: `${repo}/tests/_scripts/load_probe.ts` };
}

Deno.test({
  name: "loading as an unprivileged user says that root is needed",
  ...kernelTest(),
  async fn() {
    const { root, deno, script } = await copyForOtherUser();
    try {
      const result = await run("setpriv", [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        "env",
        `HOME=${root}`,
        `DENO_DIR=${root}/cache`,
        deno,
        "run",
        "--allow-all",
        script,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assertNeedsRoot(JSON.parse(result.stdout) as Report);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "loading as root without capabilities says that root is needed",
  ...kernelTest(),
  async fn() {
    // uid 0 with an empty capability bounding set has none of CAP_BPF,
    // CAP_PERFMON and CAP_SYS_ADMIN.
    const result = await run("setpriv", [
      "--bounding-set=-all",
      "--inh-caps=-all",
      "--",
      Deno.execPath(),
      "run",
      "--allow-all",
      repoPath("tests/_scripts/load_probe.ts"),
    ]);
    assert.equal(result.code, 0, result.stderr);
    assertNeedsRoot(JSON.parse(result.stdout) as Report);
  },
});
