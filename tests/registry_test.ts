import assert from "node:assert/strict";
import {
  loadPlugin,
  parsePluginSpec,
  PluginLoadError,
  PluginRegistry,
  registry,
} from "../plugins/registry.ts";
import type { ProbePlugin, SinkPlugin } from "../plugins/plugin.ts";
import { memorySinkPlugin } from "../plugins/sinks/memory.ts";
import { repoPath } from "./_helpers.ts";

function probe(name: string): ProbePlugin {
  return {
    kind: "probe",
    name,
    description: `probe ${name}`,
    open: () => ({ collect: () => [], [Symbol.asyncDispose]: () => Promise.resolve() }),
  };
}

function sink(name: string): SinkPlugin {
  return { ...memorySinkPlugin, name, description: `sink ${name}` };
}

/** Writes a module to a temporary file and returns its path. */
async function writeModule(source: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "bpfscope_plugin_", suffix: ".ts" });
  await Deno.writeTextFile(path, source);
  return path;
}

Deno.test("PluginRegistry finds plugins by kind and name", () => {
  const plugins = new PluginRegistry();
  plugins.register(probe("alpha"));
  plugins.register(sink("alpha"));
  assert.equal(plugins.probe("alpha")?.description, "probe alpha");
  assert.equal(plugins.sink("alpha")?.description, "sink alpha");
  assert.equal(plugins.probe("beta"), undefined);
});

Deno.test("PluginRegistry lists plugins sorted", () => {
  const plugins = new PluginRegistry();
  plugins.register(probe("zeta"));
  plugins.register(probe("alpha"));
  assert.deepEqual(plugins.probes().map((plugin) => plugin.name), ["alpha", "zeta"]);
  assert.deepEqual(plugins.sinks(), []);
});

Deno.test("PluginRegistry rejects duplicate names", () => {
  const plugins = new PluginRegistry();
  plugins.register(probe("alpha"));
  assert.throws(() => plugins.register(probe("alpha")), {
    name: "TypeError",
    message: /Duplicate probe name "alpha"/,
  });
});

Deno.test("PluginRegistry ignores the same object twice", () => {
  const plugins = new PluginRegistry();
  const plugin = probe("alpha");
  plugins.register(plugin);
  plugins.register(plugin);
  assert.equal(plugins.probes().length, 1);
});

Deno.test("PluginRegistry rejects invalid plugins", () => {
  const plugins = new PluginRegistry();
  const noOpen = { kind: "probe", name: "x", description: "" } as unknown as ProbePlugin;
  assert.throws(() => plugins.register(noOpen), { name: "TypeError", message: /no open function/ });
  const colon = { ...probe("x"), name: "a:b" };
  assert.throws(() => plugins.register(colon), { name: "TypeError", message: /"a:b"/ });
});

Deno.test("registry has the built-in memory sink", () => {
  assert.equal(registry.sink("memory"), memorySinkPlugin);
});

Deno.test("parsePluginSpec splits at the first colon", () => {
  assert.deepEqual(parsePluginSpec("stdout"), { name: "stdout" });
  assert.deepEqual(parsePluginSpec("file:/tmp/a:b.jsonl"), {
    name: "file",
    options: "/tmp/a:b.jsonl",
  });
  assert.deepEqual(parsePluginSpec("stdout:"), { name: "stdout", options: "" });
  assert.throws(() => parsePluginSpec(":x"), TypeError);
});

Deno.test("loadPlugin loads the example plugin by path", async () => {
  const plugin = await loadPlugin(repoPath("examples/plugin_loadavg.ts"));
  assert.equal(plugin.kind, "probe");
  assert.equal(plugin.name, "loadavg");
});

Deno.test("loadPlugin resolves relative paths against base", async () => {
  const plugin = await loadPlugin("examples/plugin_loadavg.ts", { base: repoPath("") });
  assert.equal(plugin.name, "loadavg");
});

Deno.test("loadPlugin takes the plugin export", async () => {
  const path = await writeModule(
    `export const plugin = { kind: "sink", name: "named", description: "d", create() {} };`,
  );
  try {
    const plugin = await loadPlugin(path);
    assert.equal(plugin.name, "named");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadPlugin without a plugin export names the module", async () => {
  const path = await writeModule(`export const answer = 42;`);
  try {
    const error = await loadPlugin(path).then(() => undefined, (error: unknown) => error);
    assert.ok(error instanceof PluginLoadError);
    assert.ok(error.message.includes(path), error.message);
    assert.match(
      error.message,
      /expected a default or `plugin` export with kind 'probe' or 'sink'/,
    );
    assert.match(error.message, /neither export/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadPlugin says what the export lacks", async () => {
  const path = await writeModule(`export default { kind: "sink", name: "x", description: "d" };`);
  try {
    await assert.rejects(loadPlugin(path), {
      name: "PluginLoadError",
      message: /sink "x" has no create function/,
    });
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadPlugin missing file", async () => {
  const error = await loadPlugin("/nonexistent/bpfscope_plugin.ts").then(
    () => undefined,
    (error: unknown) => error,
  );
  assert.ok(error instanceof PluginLoadError);
  assert.equal(error.specifier, "/nonexistent/bpfscope_plugin.ts");
  assert.match(error.message, /the import failed/);
});

Deno.test("PluginRegistry.load registers the plugin", async () => {
  const plugins = new PluginRegistry();
  await plugins.load(repoPath("examples/plugin_loadavg.ts"));
  assert.equal(plugins.probe("loadavg")?.kind, "probe");
});
