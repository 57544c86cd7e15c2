/**
 * The plugin registry: the probes and sinks the collector and the `bpfscope`
 * command know by name. Built-in plugins call {@linkcode PluginRegistry.register}
 * on the shared {@linkcode registry} when their module is imported, exactly as
 * a third-party module may; {@linkcode loadPlugin} imports a plugin module by
 * path or URL.
 *
 * @module
 */

import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Plugin, ProbePlugin, SinkPlugin } from "./plugin.ts";

/** The shape every plugin module must export, as error messages state it. */
const EXPECTED_EXPORT =
  "expected a default or `plugin` export with kind 'probe' or 'sink', name, description and open/create";

// A name is used on the command line as `NAME[:OPTIONS]`, so it cannot contain a colon.
const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]*$/;
// A URL scheme of two letters or more, so that a Windows drive letter is not one.
const URL_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]+:/;

/**
 * A plugin module that could not be imported or exports no valid plugin.
 *
 * @example
 * ```ts
 * import { loadPlugin, PluginLoadError } from "./registry.ts";
 *
 * try {
 *   await loadPlugin("./no_such_plugin.ts");
 * } catch (error) {
 *   if (error instanceof PluginLoadError) console.log(error.specifier);
 * }
 * ```
 */
export class PluginLoadError extends Error {
  override name = "PluginLoadError";
  /** The path or URL as given. */
  readonly specifier: string;
  /** The URL the module was imported from. */
  readonly url: string;

  /** Creates the error; `detail` describes the failure. */
  constructor(specifier: string, url: string, detail: string, options?: ErrorOptions) {
    const where = specifier === url ? `"${specifier}"` : `"${specifier}" (${url})`;
    super(`Failed to load plugin ${where}: ${detail}`, options);
    this.specifier = specifier;
    this.url = url;
  }
}

/**
 * A name and its options, as written on the command line: `file:out.jsonl`
 * gives the name `file` and the options `out.jsonl`.
 *
 * @example
 * ```ts
 * import type { PluginSpec } from "./registry.ts";
 *
 * const spec: PluginSpec = { name: "file", options: "out.jsonl,keep=3" };
 * ```
 */
export interface PluginSpec {
  /** The plugin name. */
  name: string;
  /** The text after the first colon, or undefined when there is no colon. */
  options?: string;
}

/**
 * Splits `NAME[:OPTIONS]` at the first colon.
 *
 * @throws {TypeError} when the name part is empty
 *
 * @example
 * ```ts
 * import { parsePluginSpec } from "./registry.ts";
 *
 * console.log(parsePluginSpec("file:/var/log/bpfscope.jsonl")); // { name: "file", options: "/var/log/bpfscope.jsonl" }
 * console.log(parsePluginSpec("stdout")); // { name: "stdout" }
 * ```
 */
export function parsePluginSpec(text: string): PluginSpec {
  const colon = text.indexOf(":");
  const name = colon < 0 ? text : text.slice(0, colon);
  if (name === "") {
    throw new TypeError(`Invalid plugin "${text}": expected NAME or NAME:OPTIONS`);
  }
  return colon < 0 ? { name } : { name, options: text.slice(colon + 1) };
}

/**
 * The probes and sinks known by name. A probe and a sink may share a name;
 * two plugins of the same kind may not.
 *
 * @example Register a sink and find it by name
 * ```ts
 * import { PluginRegistry } from "./registry.ts";
 *
 * const plugins = new PluginRegistry();
 * plugins.register({
 *   kind: "sink",
 *   name: "null",
 *   description: "Discards every batch",
 *   create: () => ({
 *     export: () => Promise.resolve({ ok: true }),
 *     flush: () => Promise.resolve(),
 *     shutdown: () => Promise.resolve(),
 *     [Symbol.asyncDispose]: () => Promise.resolve(),
 *   }),
 * });
 * console.log(plugins.sink("null")?.description); // "Discards every batch"
 * ```
 */
export class PluginRegistry {
  #probes = new Map<string, ProbePlugin>();
  #sinks = new Map<string, SinkPlugin>();

  /**
   * Adds a plugin. Registering the same object again does nothing, so a
   * module that registers itself can also be loaded with
   * {@linkcode PluginRegistry.load}.
   *
   * @throws {TypeError} when the object is not a valid plugin, or another
   * plugin of the same kind has this name
   */
  register(plugin: Plugin): void {
    const problem = pluginProblem(plugin);
    if (problem !== undefined) throw new TypeError(`Invalid plugin: ${problem}`);

    const table: Map<string, Plugin> = plugin.kind === "probe" ? this.#probes : this.#sinks;
    const existing = table.get(plugin.name);
    if (existing === plugin) return;
    if (existing !== undefined) {
      throw new TypeError(
        `Duplicate ${plugin.kind} name "${plugin.name}": a ${plugin.kind} of that name is already registered (${existing.description})`,
      );
    }
    table.set(plugin.name, plugin);
  }

  /**
   * Imports a plugin module with {@linkcode loadPlugin} and registers its plugin.
   *
   * @throws {PluginLoadError} when the module cannot be imported or exports no plugin
   * @throws {TypeError} when another plugin of the same kind has the plugin's name
   */
  async load(specifier: string, options: LoadPluginOptions = {}): Promise<Plugin> {
    const plugin = await loadPlugin(specifier, options);
    this.register(plugin);
    return plugin;
  }

  /** Returns the probe named `name`, or undefined when there is none. */
  probe(name: string): ProbePlugin | undefined {
    return this.#probes.get(name);
  }

  /** Returns the sink named `name`, or undefined when there is none. */
  sink(name: string): SinkPlugin | undefined {
    return this.#sinks.get(name);
  }

  /** Returns the registered probes, sorted by name. */
  probes(): ProbePlugin[] {
    return [...this.#probes.values()].sort(byName);
  }

  /** Returns the registered sinks, sorted by name. */
  sinks(): SinkPlugin[] {
    return [...this.#sinks.values()].sort(byName);
  }
}

/**
 * The registry that built-in plugins add themselves to when their module is
 * imported, and that the `bpfscope` command uses.
 *
 * @example List the sinks that are registered so far
 * ```ts
 * import { registry } from "./registry.ts";
 *
 * for (const sink of registry.sinks()) console.log(sink.name, sink.description);
 * ```
 */
export const registry: PluginRegistry = new PluginRegistry();

/**
 * Options of {@linkcode loadPlugin}.
 *
 * @example
 * ```ts
 * import type { LoadPluginOptions } from "./registry.ts";
 *
 * const options: LoadPluginOptions = { base: "/etc/bpfscope" };
 * ```
 */
export interface LoadPluginOptions {
  /**
   * The directory that relative paths are resolved against.
   *
   * @default Deno.cwd()
   */
  base?: string;
}

/**
 * Imports the module at `specifier` (a file path, or a URL such as
 * `https://` or `file://`) and returns its plugin: the default export, or
 * else the export named `plugin`. Loading runs the module's code with the
 * permissions of the process.
 *
 * @throws {PluginLoadError} when the import fails (missing file, syntax
 * error, network error) or neither export is a valid plugin
 *
 * @example Load the example plugin by path
 * ```ts
 * import { loadPlugin } from "./registry.ts";
 *
 * const plugin = await loadPlugin(new URL("../examples/plugin_loadavg.ts", import.meta.url).href);
 * console.log(plugin.kind, plugin.name); // "probe loadavg"
 * ```
 */
export async function loadPlugin(
  specifier: string,
  options: LoadPluginOptions = {},
): Promise<Plugin> {
  const url = moduleUrl(specifier, options.base);
  let module: Record<string, unknown>;
  try {
    module = await import(url);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new PluginLoadError(specifier, url, `the import failed: ${detail}`, { cause: error });
  }

  const candidates = [module.default, module.plugin].filter((value) => value !== undefined);
  for (const candidate of candidates) {
    if (pluginProblem(candidate) === undefined) return candidate as Plugin;
  }
  const found = candidates.length === 0
    ? "the module has neither export"
    : `the export is not a plugin: ${pluginProblem(candidates[0])}`;
  throw new PluginLoadError(specifier, url, `${EXPECTED_EXPORT}, but ${found}`);
}

/** Returns the URL to import for a path or URL. */
function moduleUrl(specifier: string, base: string | undefined): string {
  if (URL_SCHEME.test(specifier)) return specifier;
  const path = isAbsolute(specifier) ? specifier : resolve(base ?? Deno.cwd(), specifier);
  return pathToFileURL(path).href;
}

/** Returns what makes `value` not a plugin, or undefined when it is one. */
function pluginProblem(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return `it is ${describe(value)}`;
  const fields = value as Record<string, unknown>;
  if (fields.kind !== "probe" && fields.kind !== "sink") {
    return `its kind is ${describe(fields.kind)}, not 'probe' or 'sink'`;
  }
  if (typeof fields.name !== "string" || !NAME_PATTERN.test(fields.name)) {
    return `its name ${
      describe(fields.name)
    } is not a letter followed by letters, digits, '_', '.' or '-'`;
  }
  if (typeof fields.description !== "string") {
    return `${fields.kind} "${fields.name}" has no description string`;
  }
  const factory = fields.kind === "probe" ? "open" : "create";
  if (typeof fields[factory] !== "function") {
    return `${fields.kind} "${fields.name}" has no ${factory} function`;
  }
  return undefined;
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === null) return "null";
  return typeof value === "object" || typeof value === "function"
    ? `a ${typeof value}`
    : String(value);
}

function byName(a: Plugin, b: Plugin): number {
  if (a.name === b.name) return 0;
  return a.name < b.name ? -1 : 1;
}
