import assert from "node:assert/strict";
import { kernelTest, repoPath, run } from "./_helpers.ts";

const DENO = Deno.execPath();
const CLI = repoPath("cli.ts");
const LOADAVG = repoPath("examples/plugin_loadavg.ts");

/** Runs `bpfscope ARGS` and returns its exit code and output. */
function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(DENO, ["run", "--allow-all", CLI, ...args]);
}

/** Creates a temporary directory, runs `fn` in it, and removes it. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "bpfscope_cli_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function records(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path);
  return text.trimEnd().split("\n").map((line) => JSON.parse(line));
}

Deno.test("cli help exits 0", async () => {
  for (
    const args of [["--help"], ["run", "--help"], ["list", "--help"], ["dump", "--help"], [
      "help",
      "run",
    ]]
  ) {
    const result = await cli(...args);
    assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stdout, /^Usage: bpfscope/, args.join(" "));
  }
});

Deno.test("cli run help lists options", async () => {
  const { stdout } = await cli("run", "--help");
  for (const flag of ["--probe", "--sink", "--interval", "--config", "--plugin", "--duration"]) {
    assert.ok(stdout.includes(flag), flag);
  }
});

Deno.test("cli version", async () => {
  const result = await cli("--version");
  assert.equal(result.code, 0);
  assert.match(result.stdout, /^bpfscope \d+\.\d+\.\d+\n$/);
});

Deno.test("cli without command exits 2", async () => {
  const result = await cli();
  assert.equal(result.code, 2);
  assert.match(result.stdout, /Commands:/);
});

Deno.test("cli unknown command exits 2", async () => {
  const result = await cli("launch");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Unknown command "launch"/);
});

Deno.test("cli unknown option exits 2", async () => {
  const result = await cli("run", "--probes", "syscalls");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /'--probes'/);
  assert.match(result.stderr, /bpfscope run --help/);
});

Deno.test("cli unknown probe lists known", async () => {
  const result = await cli("run", "--probe", "nope");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Unknown probe "nope": the probes are .*syscalls/);
});

Deno.test("cli unknown sink lists known", async () => {
  const result = await cli("run", "--sink", "kafka:broker");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Unknown sink "kafka": the sinks are .*file.*stdout/);
});

Deno.test("cli invalid intervals exit 2", async () => {
  for (const interval of ["5x", "1ms", "25h", "-1s", ""]) {
    const result = await cli("run", `--interval=${interval}`);
    assert.equal(result.code, 2, `--interval ${interval}: ${result.stderr}`);
    assert.match(result.stderr, /Invalid --interval/, interval);
  }
});

Deno.test("cli invalid sink options exit 2", async () => {
  const result = await cli("run", "--sink", "file:out.jsonl,keep=x");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Invalid file sink option "keep=x"/);
});

Deno.test("cli missing config exits 2", async () => {
  const result = await cli("run", "--config", "/nonexistent/bpfscope.json");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Config file "\/nonexistent\/bpfscope.json" not found/);
});

Deno.test("cli config unknown key exits 2", async () => {
  await inTempDir(async (dir) => {
    const config = `${dir}/config.json`;
    await Deno.writeTextFile(config, JSON.stringify({ probe: ["syscalls"] }));
    const result = await cli("run", "--config", config);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown key "probe". The keys are probes, sinks/);
  });
});

Deno.test("cli config invalid JSON exits 2", async () => {
  await inTempDir(async (dir) => {
    const config = `${dir}/config.json`;
    await Deno.writeTextFile(config, "{probes:");
    const result = await cli("run", "--config", config);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /Invalid config file/);
  });
});

Deno.test("cli missing plugin exits 2", async () => {
  const result = await cli("run", "--plugin", "/nonexistent/plugin.ts");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Failed to load plugin "\/nonexistent\/plugin.ts"/);
});

Deno.test("cli plugin without export exits 2", async () => {
  await inTempDir(async (dir) => {
    const module = `${dir}/empty.ts`;
    await Deno.writeTextFile(module, "export const x = 1;\n");
    const result = await cli("list", "--plugin", module);
    assert.equal(result.code, 2);
    assert.ok(result.stderr.includes(module), result.stderr);
    assert.match(result.stderr, /expected a default or `plugin` export/);
  });
});

Deno.test("cli list shows plugins", async () => {
  const result = await cli("list", "--plugin", LOADAVG);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /Probes:\n(.*\n)*\s+loadavg\s+Load averages/);
  assert.match(result.stdout, /\s+syscalls\s+System calls/);
  assert.match(result.stdout, /Sinks:\n(.*\n)*\s+file\s+JSON Lines/);
  assert.match(result.stdout, /\s+stdout\s+Diagnostic output/);
  assert.match(result.stdout, /\s+otlp\s+/);
  assert.match(result.stdout, /\s+prometheus\s+/);
});

Deno.test("cli runs a plugin probe", async () => {
  await inTempDir(async (dir) => {
    const out = `${dir}/out.jsonl`;
    const result = await cli(
      "run",
      "--plugin",
      LOADAVG,
      "--probe",
      "loadavg",
      "--sink",
      `file:${out}`,
      "--interval",
      "50ms",
      "--duration",
      "300ms",
    );
    assert.equal(result.code, 0, result.stderr);
    const names = new Set((await records(out)).map((record) => record.name));
    assert.ok(names.has("system.load_average"));
    assert.ok(names.has("bpfscope.collector.collections"));
  });
});

Deno.test("cli config sets run settings", async () => {
  await inTempDir(async (dir) => {
    await Deno.copyFile(LOADAVG, `${dir}/loadavg.ts`);
    const config = `${dir}/config.json`;
    const out = `${dir}/out.jsonl`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        plugins: ["./loadavg.ts"],
        probes: ["loadavg"],
        sinks: [`file:${out}`],
        interval: "50ms",
        duration: "300ms",
      }),
    );
    // Runs from another directory: the plugin path is relative to the config file.
    const result = await run(DENO, ["run", "--allow-all", CLI, "run", "--config", config]);
    assert.equal(result.code, 0, result.stderr);
    const names = new Set((await records(out)).map((record) => record.name));
    assert.ok(names.has("system.load_average"));
  });
});

Deno.test("cli flags override config", async () => {
  await inTempDir(async (dir) => {
    const config = `${dir}/config.json`;
    const out = `${dir}/out.jsonl`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        plugins: [LOADAVG],
        probes: ["loadavg"],
        sinks: ["stdout"],
        interval: "1h",
      }),
    );
    const result = await cli(
      "run",
      "--config",
      config,
      "--sink",
      `file:${out}`,
      "--interval",
      "20ms",
      "--duration",
      "400ms",
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "");
    const collections = (await records(out))
      .filter((record) => record.name === "bpfscope.collector.collections");
    assert.ok(collections.length >= 3, `${collections.length} collections`);
  });
});

Deno.test("cli dump pinned map", kernelTest(), async () => {
  const pin = `/sys/fs/bpf/bpfscope_cli_test_${Deno.pid}`;
  const created = await run("bpftool", [
    "map",
    "create",
    pin,
    "type",
    "hash",
    "key",
    "4",
    "value",
    "8",
    "entries",
    "8",
    "name",
    "cli_test",
  ]);
  assert.equal(created.code, 0, created.stderr);
  try {
    const update = await run("bpftool", [
      "map",
      "update",
      "pinned",
      pin,
      "key",
      ..."1 0 0 0".split(" "),
      "value",
      ..."42 0 0 0 0 0 0 0".split(" "),
    ]);
    assert.equal(update.code, 0, update.stderr);

    const text = await cli("dump", "--pinned", pin);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout, "key: 01 00 00 00  value: 2a 00 00 00 00 00 00 00\n");
    assert.match(text.stderr, /map "cli_test" \(HASH, id \d+\): key 4 B, value 8 B, max 8 entries/);
    assert.match(text.stderr, /1 entries/);

    const json = await cli("dump", "--pinned", pin, "--json");
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { key: "01000000", value: "2a00000000000000" });
  } finally {
    // This test created the pin, so it removes it.
    await Deno.remove(pin);
  }
});

Deno.test("cli dump per-CPU map", kernelTest(), async () => {
  const pin = `/sys/fs/bpf/bpfscope_cli_percpu_${Deno.pid}`;
  const created = await run("bpftool", [
    "map",
    "create",
    pin,
    "type",
    "percpu_array",
    "key",
    "4",
    "value",
    "4",
    "entries",
    "1",
    "name",
    "cli_percpu",
  ]);
  assert.equal(created.code, 0, created.stderr);
  try {
    const result = await cli("dump", "--pinned", pin, "--json");
    assert.equal(result.code, 0, result.stderr);
    const entry = JSON.parse(result.stdout);
    assert.equal(entry.key, "00000000");
    const cpus = Deno.readTextFileSync("/sys/devices/system/cpu/possible").trim();
    const possible = cpus.split(",").reduce((sum, range) => {
      const [low, high] = range.split("-").map(Number);
      return sum + (high === undefined ? 1 : high - low! + 1);
    }, 0);
    assert.equal(entry.values.length, possible);
    assert.equal(entry.values[0], "00000000");
  } finally {
    await Deno.remove(pin);
  }
});

Deno.test("cli dump missing pin exits 1", kernelTest(), async () => {
  const result = await cli("dump", "--pinned", "/sys/fs/bpf/bpfscope_no_such_pin");
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /Failed to open pinned map file "\/sys\/fs\/bpf\/bpfscope_no_such_pin"/,
  );
  assert.match(result.stderr, /ENOENT/);
});

Deno.test("cli dump without pinned exits 2", async () => {
  const result = await cli("dump");
  assert.equal(result.code, 2);
  assert.match(result.stderr, /Missing --pinned PATH/);
});

Deno.test({
  name: "cli run reports an unwritten BTF cache",
  ...kernelTest(),
  async fn() {
    // Without --allow-write and --allow-run the probe still runs, and the
    // command prints why the next start will not find the cache.
    const result = await run(Deno.execPath(), [
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-env",
      "--allow-sys",
      repoPath("cli.ts"),
      "run",
      "--probe",
      "syscalls",
      "--sink",
      "stdout",
      "--duration",
      "1s",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stderr,
      /bpfscope: INFO Probe "syscalls": kernel BTF cache not written, .*: no write permission for \/run\/bpfscope\/btf: pass --allow-write=\/run\/bpfscope\/btf\n/,
    );
  },
});
