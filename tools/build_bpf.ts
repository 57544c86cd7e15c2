// deno-lint-ignore-file no-console -- a build script reports to the terminal
/**
 * Builds the kernel side of bpfscope and the files generated from it.
 *
 * - `bpf/NAME.bpf.c` -> `bpf/NAME.bpf.o` and `bpf/NAME_object.ts` (the object as base64, so
 *   importing bpfscope from a URL needs no compiler and no file read)
 * - `tests/fixtures/NAME.bpf.c` -> `tests/fixtures/NAME.bpf.o`
 * - the x86_64 syscall table of the Linux UAPI headers ->
 *   `plugins/probes/_syscall_names_x86_64.ts`
 *
 * Usage:
 *   deno task build:bpf   compile and write every output
 *   deno task check:bpf   rebuild in a temporary directory and compare with the committed outputs
 *   deno task vmlinux     regenerate bpf/include/vmlinux.h from the running kernel's BTF
 *
 * Objects are compiled from the repository root with relative paths and
 * `-fdebug-compilation-dir=.`, then stripped of DWARF, so the bytes do not depend on where
 * the repository is checked out. They do depend on the clang version.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** A build step that failed. main() prints the message and exits with status 1. */
class BuildError extends Error {
  override name = "BuildError";
}

/** An external program the build needs, with the Debian package that provides it. */
interface Tool {
  command: string;
  aptPackage: string;
}

const CLANG: Tool = { command: "clang", aptPackage: "clang" };
const LLVM_STRIP: Tool = { command: "llvm-strip", aptPackage: "llvm" };
const BPFTOOL: Tool = { command: "bpftool", aptPackage: "bpftool" };

const CLANG_FLAGS = [
  "-g",
  "-O2",
  "-target",
  "bpf",
  "-D__TARGET_ARCH_x86",
  "-I",
  "bpf/include",
  // Without this, .BTF.ext line info records the absolute path of each source file.
  "-fdebug-compilation-dir=.",
];

// Directories, relative to the repository root, whose `*.bpf.c` files are compiled.
const PROBE_DIR = "bpf";
const FIXTURE_DIR = "tests/fixtures";
// Benchmark programs: like fixtures, only the `.bpf.o` is written.
const BENCH_DIR = "bench";

const VMLINUX_PATH = "bpf/include/vmlinux.h";
const UNISTD_HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
const SYSCALL_NAMES_PATH = "plugins/probes/_syscall_names_x86_64.ts";

/** Input bytes per base64 line in generated modules. 57 bytes encode to 76 characters. */
const BASE64_LINE_BYTES = 57;

interface RunOptions {
  /** Working directory of the tool: the repository root, so that paths stay relative. */
  cwd: string;
  /** The file being processed, named in the error message when the tool fails. */
  subject?: string;
}

/** A file the build produces, as a path relative to the repository root and its content. */
interface Output {
  path: string;
  bytes: Uint8Array;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

const USAGE = "Usage: build_bpf.ts [--check | --vmlinux]\n" +
  "  (no option)  compile bpf/*.bpf.c and tests/fixtures/*.bpf.c and write the outputs\n" +
  "  --check      rebuild into a temporary directory and compare with the committed files\n" +
  "  --vmlinux    regenerate bpf/include/vmlinux.h from /sys/kernel/btf/vmlinux";

async function main(): Promise<number> {
  const values = parseOptions(Deno.args);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.check && values.vmlinux) {
    throw new BuildError("--check and --vmlinux cannot be combined. Run them one at a time.");
  }

  const root = repoRoot();
  if (values.vmlinux) {
    await generateVmlinux(root);
    return 0;
  }
  return values.check ? await checkOutputs(root) : await writeOutputs(root);
}

function parseOptions(args: string[]): { check: boolean; vmlinux: boolean; help: boolean } {
  try {
    const { values } = parseArgs({
      args,
      options: {
        check: { type: "boolean", default: false },
        vmlinux: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    });
    return values;
  } catch (error) {
    // node:util parseArgs throws a TypeError for an unknown option or a stray argument.
    if (!(error instanceof TypeError)) throw error;
    throw new BuildError(`${error.message}\n${USAGE}`);
  }
}

/** Regenerates vmlinux.h from the running kernel's BTF. */
async function generateVmlinux(root: string): Promise<void> {
  const header = await run(BPFTOOL, [
    "btf",
    "dump",
    "file",
    "/sys/kernel/btf/vmlinux",
    "format",
    "c",
  ], { cwd: root });
  await Deno.writeFile(`${root}/${VMLINUX_PATH}`, header);
  console.log(`Wrote ${VMLINUX_PATH} (${header.length} bytes).`);
}

/** Builds every output and writes the ones whose content changed. */
async function writeOutputs(root: string): Promise<number> {
  const outputs = await buildInTempDir(root);

  let written = 0;
  for (const output of outputs) {
    const current = await readIfExists(`${root}/${output.path}`);
    if (current !== null && bytesEqual(current, output.bytes)) continue;
    await Deno.writeFile(`${root}/${output.path}`, output.bytes);
    console.log(`Wrote ${output.path}`);
    written++;
  }

  for (const orphan of await findOrphans(root, outputs)) {
    console.error(`warning: ${orphan} has no source file. Delete it if it is no longer used.`);
  }
  console.log(`${written} file(s) written, ${outputs.length - written} already up to date.`);
  return 0;
}

/** Builds every output in a temporary directory and compares it with the committed file. */
async function checkOutputs(root: string): Promise<number> {
  const outputs = await buildInTempDir(root);

  const problems: string[] = [];
  for (const output of outputs) {
    const current = await readIfExists(`${root}/${output.path}`);
    if (current === null) {
      problems.push(`missing: ${output.path}`);
    } else if (!bytesEqual(current, output.bytes)) {
      problems.push(`stale:   ${output.path}`);
    }
  }
  for (const orphan of await findOrphans(root, outputs)) {
    problems.push(`orphan:  ${orphan} (no source file; delete it)`);
  }

  if (problems.length === 0) {
    console.log(`All ${outputs.length} generated files are up to date.`);
    return 0;
  }
  const clangVersion = firstLine(await run(CLANG, ["--version"], { cwd: root }));
  console.error(
    `${problems.length} generated file(s) differ from a fresh build:\n` +
      problems.map((problem) => `  ${problem}`).join("\n") +
      "\nRun `deno task build:bpf` and commit the result.\n" +
      `If no source changed, a stale .bpf.o may come from another clang version. This build used ${clangVersion}.`,
  );
  return 1;
}

/** Runs the whole build in a fresh temporary directory, which is removed afterwards. */
async function buildInTempDir(root: string): Promise<Output[]> {
  const tempDir = await Deno.makeTempDir({ prefix: "bpfscope_build_" });
  try {
    return await buildAll(root, tempDir);
  } finally {
    await Deno.remove(tempDir, { recursive: true });
  }
}

/** Compiles every source and generates the TypeScript modules, returning all outputs. */
async function buildAll(root: string, tempDir: string): Promise<Output[]> {
  const outputs: Output[] = [];

  for (const source of await listSources(root, PROBE_DIR)) {
    const object = await compileObject(root, source, tempDir);
    const name = source.slice(`${PROBE_DIR}/`.length, -".bpf.c".length);
    outputs.push({ path: objectPath(source), bytes: object });
    outputs.push({
      path: `${PROBE_DIR}/${name}_object.ts`,
      bytes: textEncoder.encode(objectModule(name, source, object)),
    });
  }

  for (const dir of [FIXTURE_DIR, BENCH_DIR]) {
    for (const source of await listSources(root, dir)) {
      outputs.push({ path: objectPath(source), bytes: await compileObject(root, source, tempDir) });
    }
  }

  const header = await readRequired(UNISTD_HEADER, "linux-libc-dev");
  outputs.push({
    path: SYSCALL_NAMES_PATH,
    bytes: textEncoder.encode(syscallNamesModule(parseSyscallNumbers(textDecoder.decode(header)))),
  });
  return outputs;
}

/** Compiles one `.bpf.c` file (a path relative to root) and returns the stripped object. */
async function compileObject(root: string, source: string, tempDir: string): Promise<Uint8Array> {
  const unstripped = `${tempDir}/${source.replaceAll("/", "_")}.o`;
  const stripped = `${tempDir}/${source.replaceAll("/", "_")}.stripped.o`;

  await run(CLANG, [...CLANG_FLAGS, "-c", source, "-o", unstripped], {
    cwd: root,
    subject: source,
  });
  // `-g` removes the DWARF sections and keeps .BTF and .BTF.ext, which libbpf needs.
  await run(LLVM_STRIP, ["-g", unstripped, "-o", stripped], { cwd: root, subject: source });

  return await Deno.readFile(stripped);
}

/** Lists `DIR/*.bpf.c` as sorted paths relative to root. A missing directory yields none. */
async function listSources(root: string, dir: string): Promise<string[]> {
  const sources: string[] = [];
  try {
    for await (const entry of Deno.readDir(`${root}/${dir}`)) {
      if (entry.isFile && entry.name.endsWith(".bpf.c")) sources.push(`${dir}/${entry.name}`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return sources.sort();
}

/**
 * Finds files that look generated (`*.bpf.o`, `bpf/*_object.ts`) but that this build does not
 * produce, for example the outputs of a deleted source.
 */
async function findOrphans(root: string, outputs: Output[]): Promise<string[]> {
  const produced = new Set(outputs.map((output) => output.path));
  const orphans: string[] = [];

  for (const dir of [PROBE_DIR, FIXTURE_DIR, BENCH_DIR]) {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(`${root}/${dir}`));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    for (const entry of entries) {
      const path = `${dir}/${entry.name}`;
      const generated = entry.name.endsWith(".bpf.o") ||
        (dir === PROBE_DIR && entry.name.endsWith("_object.ts"));
      if (entry.isFile && generated && !produced.has(path)) orphans.push(path);
    }
  }
  return orphans.sort();
}

/** Renders `bpf/NAME_object.ts`, which embeds the object as base64. */
function objectModule(name: string, source: string, object: Uint8Array): string {
  const exportName = `${upperSnakeCase(name)}_OBJECT`;
  const lines = base64Lines(object).map((line) => `  "${line}",`);

  // Uint8Array.fromBase64 decodes in microseconds. atob with a callback per
  // byte takes milliseconds of start-up, but runs on Deno releases without it.
  return [
    `// Generated by tools/build_bpf.ts from ${source}. Do not edit: rebuild with`,
    "// `deno task build:bpf`.",
    "",
    `const BASE64 = [`,
    ...lines,
    `].join("");`,
    "",
    "/**",
    ` * The compiled eBPF object of ${source} (BTF included), embedded so that`,
    " * importing bpfscope from a URL needs no compiler and no file access.",
    " *",
    " * @example Open the embedded object",
    " * ```ts ignore",
    ` * import { openObject, ${exportName} } from "../mod.ts";`,
    " *",
    ` * using opened = openObject(${exportName}, { name: "${name}" });`,
    " * console.log(opened.programNames);",
    " * ```",
    " */",
    `export const ${exportName}: Uint8Array = typeof Uint8Array.fromBase64 === "function"`,
    `  ? Uint8Array.fromBase64(BASE64)`,
    `  : Uint8Array.from(atob(BASE64), (char) => char.charCodeAt(0));`,
    "",
  ].join("\n");
}

/** Renders `plugins/probes/_syscall_names_x86_64.ts` from number -> name pairs. */
function syscallNamesModule(syscalls: Map<number, string>): string {
  const entries = [...syscalls].sort(([a], [b]) => a - b)
    .map(([number, name]) => `  [${number}, "${name}"],`);

  return [
    `// Generated by tools/build_bpf.ts from ${UNISTD_HEADER}`,
    "// (the Linux UAPI headers, Debian package linux-libc-dev). Do not edit: rebuild with",
    "// `deno task build:bpf`.",
    "",
    "/**",
    " * The x86_64 Linux syscall names, keyed by syscall number. A number with no syscall",
    " * (a gap in the table) has no entry.",
    " */",
    "export const SYSCALL_NAMES_X86_64: ReadonlyMap<number, string> = new Map([",
    ...entries,
    "]);",
    "",
  ].join("\n");
}

/** Parses the `#define __NR_name number` lines of an asm/unistd_64.h into number -> name. */
function parseSyscallNumbers(header: string): Map<number, string> {
  const syscalls = new Map<number, string>();

  for (const match of header.matchAll(/^#define __NR_(\w+)\s+(\d+)\s*$/gm)) {
    const name = match[1]!;
    const number = Number(match[2]);
    const previous = syscalls.get(number);
    if (previous !== undefined) {
      throw new BuildError(
        `${UNISTD_HEADER} defines syscall number ${number} twice: ${previous} and ${name}.`,
      );
    }
    syscalls.set(number, name);
  }

  if (syscalls.size === 0) {
    throw new BuildError(`No "#define __NR_name number" lines found in ${UNISTD_HEADER}.`);
  }
  return syscalls;
}

/**
 * Runs a tool and returns its stdout.
 * @throws {BuildError} when the tool is not installed or exits with a non-zero status. The
 * message contains the tool's stderr.
 */
async function run(tool: Tool, args: string[], options: RunOptions): Promise<Uint8Array> {
  const { cwd, subject } = options;
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(tool.command, { args, cwd, stdin: "null" }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new BuildError(
        `${tool.command} not found on PATH. Install it with \`apt-get install ${tool.aptPackage}\`.`,
      );
    }
    throw error;
  }

  if (!result.success) {
    const target = subject === undefined ? "" : ` on ${subject}`;
    const stderr = textDecoder.decode(result.stderr).trimEnd();
    throw new BuildError(
      `${tool.command}${target} failed with exit code ${result.code}:\n` +
        `  ${tool.command} ${args.join(" ")}\n${stderr}`,
    );
  }
  return result.stdout;
}

/** Returns the repository root, the parent of this script's directory. */
function repoRoot(): string {
  const url = new URL("..", import.meta.url);
  if (url.protocol !== "file:") {
    throw new BuildError(`Run tools/build_bpf.ts from a local checkout, not from ${url.href}.`);
  }
  return decodeURIComponent(url.pathname).replace(/\/$/, "");
}

/** Splits the base64 encoding of bytes into lines of BASE64_LINE_BYTES input bytes. */
function base64Lines(bytes: Uint8Array): string[] {
  const lines: string[] = [];
  for (let start = 0; start < bytes.length; start += BASE64_LINE_BYTES) {
    const chunk = bytes.subarray(start, start + BASE64_LINE_BYTES);
    // Each chunk but the last is a multiple of 3 bytes, so the lines concatenate to one
    // valid base64 string with padding only at its end.
    lines.push(btoa(String.fromCharCode(...chunk)));
  }
  return lines;
}

/** Converts a file stem such as `syscalls` or `tcp-retransmit` to `SYSCALLS`, `TCP_RETRANSMIT`. */
function upperSnakeCase(name: string): string {
  const snake = name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/[^A-Za-z0-9]+/g, "_")
    .toUpperCase();
  if (!/^[A-Z][A-Z0-9_]*$/.test(snake)) {
    throw new BuildError(
      `Cannot derive an export name from bpf/${name}.bpf.c: start the name with a letter.`,
    );
  }
  return snake;
}

function objectPath(source: string): string {
  return source.replace(/\.c$/, ".o");
}

async function readIfExists(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Reads a file outside the repository that a system package provides. */
async function readRequired(path: string, aptPackage: string): Promise<Uint8Array> {
  const bytes = await readIfExists(path);
  if (bytes === null) {
    throw new BuildError(`${path} not found. Install it with \`apt-get install ${aptPackage}\`.`);
  }
  return bytes;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, index) => byte === b[index]);
}

function firstLine(bytes: Uint8Array): string {
  return textDecoder.decode(bytes).split("\n", 1)[0] ?? "";
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    if (!(error instanceof BuildError)) throw error;
    console.error(`error: ${error.message}`);
    Deno.exit(1);
  }
}
