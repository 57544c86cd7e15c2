// deno-lint-ignore-file no-console -- the command reports to stdout and stderr.
/**
 * The `bpfscope` command: run probes into sinks, list the plugins, and dump
 * pinned maps.
 *
 * ```sh
 * sudo deno run --allow-all cli.ts run --probe syscalls --sink stdout --sink file:out.jsonl --interval 1s
 * deno run --allow-all cli.ts list
 * sudo deno run --allow-all cli.ts dump --pinned /sys/fs/bpf/counts
 * ```
 *
 * Exit codes: 0 on success (and after SIGINT or SIGTERM), 1 on a runtime
 * error, 2 on a usage error.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import denoConfig from "./deno.json" with { type: "json" };
import { openPinnedMap } from "./ffi/pinned_map.ts";
import { Collector, type ProbeEntry, type SinkEntry } from "./plugins/collector.ts";
import type { LogRecord } from "./plugins/plugin.ts";
import {
  parsePluginSpec,
  PluginLoadError,
  type PluginRegistry,
  registry,
} from "./plugins/registry.ts";
// Built-in plugins register themselves when their modules load.
import "./plugins/probes/syscalls_plugin.ts";
import "./plugins/probes/process_plugin.ts";
import "./plugins/sinks/file.ts";
import "./plugins/sinks/memory.ts";
import "./plugins/sinks/otlp.ts";
import "./plugins/sinks/prometheus.ts";
import "./plugins/sinks/stdout.ts";

const EXIT_OK = 0;
const EXIT_RUNTIME = 1;
const EXIT_USAGE = 2;
const MIN_INTERVAL_MS = 10;
const MAX_INTERVAL_MS = 86_400_000;

const MAIN_HELP = `Usage: bpfscope COMMAND [OPTIONS]

Observe this host with eBPF and export what the probes count.

Commands:
  run     run probes and send their metrics and events to sinks
  list    list the probes and sinks that can be used
  dump    print the entries of a pinned BPF map
  help    print help for a command: bpfscope help run

Options:
  --help     print this text
  --version  print the version

Loading eBPF programs needs root, or the CAP_BPF and CAP_PERFMON capabilities.`;

const RUN_HELP = `Usage: bpfscope run [OPTIONS]

Runs probes every interval and sends each collection to every sink, until
SIGINT (Ctrl-C) or SIGTERM, or for --duration. On stop, it makes a last
collection and flushes every sink before it exits.

Options:
  --probe NAME[:OPTIONS]   a probe to run; repeatable (default: syscalls)
  --sink NAME[:OPTIONS]    a sink to send to; repeatable (default: stdout)
  --interval DURATION      time between collections, 10ms to 24h (default: 1s)
  --duration DURATION      stop after this long (default: until a signal)
  --plugin PATH_OR_URL     load a plugin module first; repeatable
  --config FILE            read settings from a JSON file; flags override them
  --queue-size N           batches waiting per sink before the oldest is dropped (default: 8)
  --program-stats          turn on the kernel's BPF run-time statistics while running,
                           for bpfscope.program.run_time and run_count (affects every
                           BPF program on the host)
  --help                   print this text

DURATION is a number with a unit: ms, s, m or h (1s, 500ms, 2m); a bare
number is seconds.

The config file is a JSON object with any of these keys:
  {"probes": ["syscalls"], "sinks": ["stdout", "file:out.jsonl"],
   "interval": "1s", "duration": "1h", "plugins": ["./my_plugin.ts"],
   "queueSize": 8, "programStats": false}
Plugin paths in it are relative to the file. --probe and --sink replace the
file's lists; --plugin adds to its list.

Examples:
  bpfscope run --probe syscalls --sink stdout --sink file:out.jsonl --interval 1s
  bpfscope run --sink file:/var/log/bpfscope.jsonl,max-bytes=10485760,keep=3
  bpfscope run --plugin ./examples/plugin_loadavg.ts --probe loadavg`;

const LIST_HELP = `Usage: bpfscope list [--plugin PATH_OR_URL]...

Lists the probes and sinks with their descriptions, including those of the
plugin modules given with --plugin.`;

const DUMP_HELP = `Usage: bpfscope dump --pinned PATH [--json]

Prints every entry of the BPF map pinned at PATH (under /sys/fs/bpf), one
per line: key and value bytes in hexadecimal, and one value per CPU for
per-CPU maps. The map's name, type and sizes go to stderr.

Options:
  --pinned PATH  the pinned map to read
  --json         print JSON Lines: {"key": "HEX", "value": "HEX"} or {"key": ..., "values": [...]}
  --help         print this text`;

/** A mistake in the command line or the config file; exits with code 2. */
class UsageError extends Error {
  override name = "UsageError";
  /** The help text to point to. */
  readonly command: string;

  constructor(message: string, command: string) {
    super(message);
    this.command = command;
  }
}

/** The settings of `bpfscope run`, after the config file and flags are merged. */
interface RunSettings {
  probes: string[];
  sinks: string[];
  intervalMs: number;
  durationMs: number | undefined;
  plugins: { specifier: string; base: string }[];
  queueSize: number | undefined;
  programStats: boolean;
}

/**
 * Runs the `bpfscope` command with `args` (without the program name) and
 * returns the exit code.
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case undefined:
      case "--help":
      case "-h":
        console.log(MAIN_HELP);
        return command === undefined ? EXIT_USAGE : EXIT_OK;
      case "--version":
        console.log(`bpfscope ${denoConfig.version}`);
        return EXIT_OK;
      case "help":
        return printHelp(rest[0]);
      case "run":
        return await runCommand(rest);
      case "list":
        return await listCommand(rest);
      case "dump":
        return await dumpCommand(rest);
      default:
        throw new UsageError(`Unknown command "${command}": expected run, list, dump or help`, "");
    }
  } catch (error) {
    return reportError(error, command);
  }
}

function printHelp(command: string | undefined): number {
  const texts: Record<string, string> = { run: RUN_HELP, list: LIST_HELP, dump: DUMP_HELP };
  if (command === undefined) {
    console.log(MAIN_HELP);
    return EXIT_OK;
  }
  const text = texts[command];
  if (text === undefined) {
    throw new UsageError(`Unknown command "${command}": expected run, list or dump`, "");
  }
  console.log(text);
  return EXIT_OK;
}

function reportError(error: unknown, command: string | undefined): number {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`bpfscope: ${message}`);
  if (error instanceof UsageError) {
    const help = error.command === "" ? "bpfscope --help" : `bpfscope ${error.command} --help`;
    console.error(`Run '${help}' for usage.`);
    return EXIT_USAGE;
  }
  if (error instanceof PluginLoadError) return EXIT_USAGE;
  if (command === "run" && (error instanceof TypeError || error instanceof RangeError)) {
    // Plugins throw these for invalid options while the collector starts.
    // NOTE: a plugin that throws one for another reason also exits with 2.
    return EXIT_USAGE;
  }
  return EXIT_RUNTIME;
}

// ---- run ----

async function runCommand(args: string[]): Promise<number> {
  const values = parseFlags(args, "run", {
    probe: { type: "string", multiple: true },
    sink: { type: "string", multiple: true },
    interval: { type: "string" },
    duration: { type: "string" },
    plugin: { type: "string", multiple: true },
    config: { type: "string" },
    "queue-size": { type: "string" },
    "program-stats": { type: "boolean" },
    help: { type: "boolean" },
  });
  if (values.help) {
    console.log(RUN_HELP);
    return EXIT_OK;
  }

  const settings = await runSettings(values);
  await loadPlugins(registry, settings.plugins);
  const probes = settings.probes.map((text) => resolveProbe(registry, text));
  const sinks = settings.sinks.map((text) => resolveSink(registry, text));

  const collector = await Collector.start({
    probes,
    sinks,
    intervalMs: settings.intervalMs,
    enableProgramStats: settings.programStats,
    onDiagnostic: printDiagnostic,
    ...(settings.queueSize === undefined ? {} : { queueSize: settings.queueSize }),
  });
  console.error(
    `bpfscope: collecting ${settings.probes.join(", ")} every ${
      formatDuration(settings.intervalMs)
    } into ${settings.sinks.join(", ")}; SIGINT (Ctrl-C) or SIGTERM stops`,
  );

  await waitForStop(settings.durationMs);
  console.error("bpfscope: stopping: last collection, then flushing the sinks");
  await collector.stop();
  console.error(`bpfscope: stopped after ${collector.collections} collections`);
  return EXIT_OK;
}

/** Resolves on SIGINT, SIGTERM, or after `durationMs`. A second signal exits at once. */
function waitForStop(durationMs: number | undefined): Promise<void> {
  return new Promise((resolvePromise) => {
    let stopping = false;
    const onSignal = () => {
      if (stopping) {
        console.error("bpfscope: second signal: exiting without flushing the sinks");
        Deno.exit(EXIT_RUNTIME);
      }
      stop();
    };
    const timer = durationMs === undefined ? undefined : setTimeout(() => stop(), durationMs);
    const stop = () => {
      stopping = true;
      clearTimeout(timer);
      resolvePromise();
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
  });
}

function printDiagnostic(record: LogRecord): void {
  console.error(`bpfscope: ${record.severity} ${record.body}`);
}

async function runSettings(values: Record<string, unknown>): Promise<RunSettings> {
  const config = typeof values.config === "string" ? await readConfig(values.config) : {};
  const configBase = typeof values.config === "string"
    ? dirname(resolve(values.config))
    : Deno.cwd();

  const probes = stringList(values.probe) ?? config.probes ?? ["syscalls"];
  const sinks = stringList(values.sink) ?? config.sinks ?? ["stdout"];
  const interval = (values.interval as string | undefined) ?? config.interval ?? "1s";
  const duration = (values.duration as string | undefined) ?? config.duration;
  const queueSize = (values["queue-size"] as string | undefined) ?? config.queueSize;
  const plugins = [
    ...(config.plugins ?? []).map((specifier) => ({ specifier, base: configBase })),
    ...(stringList(values.plugin) ?? []).map((specifier) => ({ specifier, base: Deno.cwd() })),
  ];

  const intervalMs = parseDuration(interval, "--interval");
  if (intervalMs < MIN_INTERVAL_MS || intervalMs > MAX_INTERVAL_MS) {
    throw new UsageError(
      `Invalid --interval "${interval}": expected 10ms to 24h`,
      "run",
    );
  }
  return {
    probes,
    sinks,
    intervalMs,
    durationMs: duration === undefined ? undefined : parseDuration(duration, "--duration"),
    plugins,
    queueSize: queueSize === undefined ? undefined : parseCount(queueSize, "--queue-size"),
    programStats: values["program-stats"] === true || config.programStats === true,
  };
}

/** The settings a config file may contain. */
interface ConfigFile {
  probes?: string[];
  sinks?: string[];
  interval?: string;
  duration?: string;
  plugins?: string[];
  queueSize?: string;
  programStats?: boolean;
}

const CONFIG_KEYS = [
  "probes",
  "sinks",
  "interval",
  "duration",
  "plugins",
  "queueSize",
  "programStats",
];

async function readConfig(path: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(`Config file "${path}" not found`, "run");
    }
    throw error;
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Invalid config file "${path}": ${(error as Error).message}`, "run");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`Invalid config file "${path}": expected a JSON object`, "run");
  }
  return checkConfig(parsed as Record<string, unknown>, path);
}

function checkConfig(raw: Record<string, unknown>, path: string): ConfigFile {
  const invalid = (key: string, expected: string) =>
    new UsageError(`Invalid config file "${path}": "${key}" must be ${expected}`, "run");
  const config: ConfigFile = {};

  for (const [key, value] of Object.entries(raw)) {
    switch (key) {
      case "probes":
      case "sinks":
      case "plugins": {
        const list = stringList(value);
        if (list === undefined) throw invalid(key, "an array of strings");
        if (list.length === 0 && key !== "plugins") {
          throw invalid(key, "a non-empty array of names");
        }
        config[key] = list;
        break;
      }
      case "interval":
      case "duration":
      case "queueSize":
        if (typeof value !== "string" && typeof value !== "number") {
          throw invalid(key, "a string or a number");
        }
        config[key] = String(value);
        break;
      case "programStats":
        if (typeof value !== "boolean") throw invalid(key, "true or false");
        config.programStats = value;
        break;
      default:
        throw new UsageError(
          `Invalid config file "${path}": unknown key "${key}". The keys are ${
            CONFIG_KEYS.join(", ")
          }`,
          "run",
        );
    }
  }
  return config;
}

async function loadPlugins(
  plugins: PluginRegistry,
  specifiers: { specifier: string; base: string }[],
): Promise<void> {
  for (const { specifier, base } of specifiers) {
    try {
      await plugins.load(specifier, { base });
    } catch (error) {
      if (error instanceof TypeError) throw new UsageError(error.message, "run");
      throw error;
    }
  }
}

function resolveProbe(plugins: PluginRegistry, text: string): ProbeEntry {
  const spec = parsePluginSpecOrUsage(text, "--probe");
  const plugin = plugins.probe(spec.name);
  if (plugin === undefined) {
    const known = plugins.probes().map((probe) => probe.name).join(", ");
    throw new UsageError(
      `Unknown probe "${spec.name}": the probes are ${known} (load others with --plugin)`,
      "run",
    );
  }
  return spec.options === undefined ? { plugin } : { plugin, options: spec.options };
}

function resolveSink(plugins: PluginRegistry, text: string): SinkEntry {
  const spec = parsePluginSpecOrUsage(text, "--sink");
  const plugin = plugins.sink(spec.name);
  if (plugin === undefined) {
    const known = plugins.sinks().map((sink) => sink.name).join(", ");
    throw new UsageError(
      `Unknown sink "${spec.name}": the sinks are ${known} (load others with --plugin)`,
      "run",
    );
  }
  return spec.options === undefined ? { plugin } : { plugin, options: spec.options };
}

function parsePluginSpecOrUsage(text: string, flag: string): ReturnType<typeof parsePluginSpec> {
  try {
    return parsePluginSpec(text);
  } catch (error) {
    throw new UsageError(`Invalid ${flag}: ${(error as Error).message}`, "run");
  }
}

// ---- list ----

async function listCommand(args: string[]): Promise<number> {
  const values = parseFlags(args, "list", {
    plugin: { type: "string", multiple: true },
    help: { type: "boolean" },
  });
  if (values.help) {
    console.log(LIST_HELP);
    return EXIT_OK;
  }
  const plugins = (stringList(values.plugin) ?? []).map((specifier) => ({
    specifier,
    base: Deno.cwd(),
  }));
  await loadPlugins(registry, plugins);

  const probes = registry.probes();
  const sinks = registry.sinks();
  const width = Math.max(...[...probes, ...sinks].map((plugin) => plugin.name.length));
  console.log("Probes:");
  for (const probe of probes) console.log(`  ${probe.name.padEnd(width)}  ${probe.description}`);
  console.log("Sinks:");
  for (const sink of sinks) console.log(`  ${sink.name.padEnd(width)}  ${sink.description}`);
  return EXIT_OK;
}

// ---- dump ----

async function dumpCommand(args: string[]): Promise<number> {
  const values = parseFlags(args, "dump", {
    pinned: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean" },
  });
  if (values.help) {
    console.log(DUMP_HELP);
    return EXIT_OK;
  }
  if (typeof values.pinned !== "string" || values.pinned === "") {
    throw new UsageError("Missing --pinned PATH: name the pinned map to dump", "dump");
  }

  using map = openPinnedMap(values.pinned);
  console.error(
    `map "${map.name}" (${map.typeName}, id ${map.id}): key ${map.keySize} B, value ${map.valueSize} B, max ${map.maxEntries} entries`,
  );
  const json = values.json === true;
  const stride = Math.ceil(map.valueSize / 8) * 8;
  let count = 0;
  for await (const { key, value } of map.entries()) {
    if (map.isPerCpu) {
      console.log(formatPerCpuEntry(key, splitPerCpu(value, stride, map.valueSize), json));
    } else {
      console.log(formatEntry(key, value, json));
    }
    count++;
  }
  console.error(`${count} entries`);
  return EXIT_OK;
}

function splitPerCpu(value: Uint8Array, stride: number, size: number): Uint8Array[] {
  const values: Uint8Array[] = [];
  for (let offset = 0; offset + size <= value.length; offset += stride) {
    values.push(value.subarray(offset, offset + size));
  }
  return values;
}

function formatEntry(key: Uint8Array, value: Uint8Array, json: boolean): string {
  if (json) return JSON.stringify({ key: hex(key, ""), value: hex(value, "") });
  return `key: ${hex(key, " ")}  value: ${hex(value, " ")}`;
}

function formatPerCpuEntry(key: Uint8Array, values: Uint8Array[], json: boolean): string {
  if (json) return JSON.stringify({ key: hex(key, ""), values: values.map((v) => hex(v, "")) });
  const lines = values.map((value, cpu) => `  cpu ${cpu}: ${hex(value, " ")}`);
  return [`key: ${hex(key, " ")}`, ...lines].join("\n");
}

function hex(bytes: Uint8Array, separator: string): string {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join(separator);
}

// ---- shared ----

type FlagOptions = NonNullable<Parameters<typeof parseArgs>[0]>["options"];

function parseFlags(
  args: string[],
  command: string,
  options: FlagOptions,
): Record<string, unknown> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError((error as Error).message, command);
  }
}

function stringList(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) return undefined;
  return value;
}

/**
 * Parses a duration such as `1s`, `500ms`, `2m`, `1h` or `1.5` (seconds)
 * into milliseconds.
 */
function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null) {
    throw new UsageError(
      `Invalid ${flag} "${text}": expected a number with a unit ms, s, m or h, such as 1s or 500ms`,
      "run",
    );
  }
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"]!;
  const ms = Number(match[1]) * scale;
  // setTimeout() turns a delay above 2^31 - 1 ms (about 24.8 days) into 1 ms.
  if (ms > 2 ** 31 - 1) {
    throw new UsageError(`Invalid ${flag} "${text}": at most 596h (2^31 - 1 ms)`, "run");
  }
  return ms;
}

function parseCount(text: string, flag: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError(`Invalid ${flag} "${text}": expected a positive integer`, "run");
  }
  return Number(text);
}

function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
