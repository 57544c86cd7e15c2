// deno-lint-ignore-file no-console -- a benchmark prints its progress and tables.
/**
 * The cost of observing: tracing overhead per syscall, start-up to attached
 * and counting, and the agent's footprint, for bpfscope against a C libbpf
 * tracer, bpftrace and bcc on this machine.
 *
 * Run: `deno task bench:overhead` (as root; `--rounds N`, default 7). Writes
 * its section of bench/RESULTS.md and bench/overhead/overhead.svg.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SYSCALLS_OBJECT } from "../../bpf/syscalls_object.ts";
import { createKernelBtfCache, type KernelBtfCacheResult } from "../../ffi/kernel_btf_cache.ts";
import { writeChart } from "./chart.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const HERE = `${ROOT}bench/overhead/`;
const TOOLS = `${ROOT}.tools/`;
const RESULTS = `${ROOT}bench/RESULTS.md`;
const CHART = `${HERE}overhead.svg`;
const TRACER_OBJECT = `${ROOT}bench/overhead_tracer.bpf.o`;
const HEADERS = `${TOOLS}kernel-headers`;
const SINK_FILE = "/tmp/bpfscope-overhead-sink.jsonl";
const FOOTPRINT_FILE = "/tmp/bpfscope-overhead-footprint.jsonl";
const DENO = Deno.execPath();
const START_MARK = "<!-- overhead:start -->";
const END_MARK = "<!-- overhead:end -->";

/** A tracer: how to start it and how to find its program among its file descriptors. */
interface Tracer {
  name: string;
  /** Start of the eBPF program's name; empty accepts any tracepoint program. */
  prefix: string;
  command: string[];
  env?: Record<string, string>;
  /** The reason the tracer cannot run on this machine, when it cannot. */
  unavailable?: string;
  /** Measured for start-up only: its program and its overhead are another row's. */
  startupOnly?: boolean;
}

/** The outcome of one tracer's run under bench/overhead/watch.c. */
interface Watched {
  appearedNs: number;
  countingNs: number;
}

function tracers(): Tracer[] {
  const bccEnv = { BCC_KERNEL_SOURCE: HEADERS };
  const list: Tracer[] = [
    {
      name: "bpfscope, sinks off",
      prefix: "count_syscall",
      command: [DENO, "run", "--allow-all", `${HERE}probe.ts`],
    },
    {
      name: "bpfscope, sinks off, no BTF cache",
      prefix: "count_syscall",
      command: [DENO, "run", "--allow-all", `${HERE}probe.ts`, "--no-btf-cache"],
      startupOnly: true,
    },
    {
      name: "bpfscope, sinks on",
      prefix: "count_syscall",
      command: [
        DENO,
        "run",
        "--allow-all",
        `${ROOT}cli.ts`,
        "run",
        "--probe",
        "syscalls",
        "--sink",
        `file:${SINK_FILE}`,
        "--interval",
        "1s",
      ],
    },
    {
      name: "C libbpf, raw tracepoint",
      prefix: "ovh_raw_enter",
      command: [`${TOOLS}overhead_tracer`, TRACER_OBJECT, "raw_tp"],
    },
    {
      name: "C libbpf, bpfscope's program",
      prefix: "count_syscall",
      command: [`${TOOLS}overhead_tracer`, `${ROOT}bpf/syscalls.bpf.o`, "bpfscope"],
    },
    {
      name: "C libbpf, tracepoint",
      prefix: "ovh_tp_enter",
      command: [`${TOOLS}overhead_tracer`, TRACER_OBJECT, "tp"],
    },
    {
      name: "bpftrace, tracepoint",
      prefix: "",
      command: ["bpftrace", "-e", "tracepoint:raw_syscalls:sys_enter { @[cpu] = count(); }"],
    },
    {
      name: "bcc, tracepoint",
      prefix: "",
      command: ["/usr/bin/python3", `${HERE}bcc_count.py`],
      env: bccEnv,
    },
    {
      name: "bcc, raw tracepoint",
      prefix: "",
      command: ["/usr/bin/python3", `${HERE}bcc_count.py`, "raw"],
      env: bccEnv,
    },
  ];
  return list;
}

async function run(command: string[], env?: Record<string, string>): Promise<Deno.CommandOutput> {
  return await new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdout: "piped",
    stderr: "piped",
    ...(env ? { env } : {}),
  }).output();
}

async function build(): Promise<void> {
  await Deno.mkdir(TOOLS, { recursive: true });
  for (const name of ["workload", "tracer", "watch"]) {
    const args = ["-O2", "-Wall", "-o", `${TOOLS}overhead_${name}`, `${HERE}${name}.c`, "-lbpf"];
    const result = await run(["gcc", ...args]);
    if (!result.success) {
      throw new Error(
        `Failed to build: gcc ${args.join(" ")}\n${new TextDecoder().decode(result.stderr)}`,
      );
    }
  }
  await Deno.stat(TRACER_OBJECT).catch(() => {
    throw new Error(`${TRACER_OBJECT} is missing: run \`deno task build:bpf\` first`);
  });
}

// bcc compiles its C at run time and needs the kernel headers as one tree.
// This kernel ships none, so the tree is Debian's linux-headers-amd64 (the
// common and the amd64 package merged), which serves a program that reads no
// kernel structures.
async function prepareHeaders(): Promise<string | undefined> {
  if (await Deno.stat(`${HEADERS}/Makefile`).catch(() => undefined)) return undefined;
  const sources: string[] = [];
  for await (const entry of Deno.readDir("/usr/src")) {
    if (entry.name.startsWith("linux-headers-")) sources.push(`/usr/src/${entry.name}`);
  }
  const common = sources.find((path) => path.endsWith("-common"));
  const arch = sources.find((path) => path.endsWith("-amd64"));
  if (!common || !arch) return "no linux-headers-*-common and -amd64 in /usr/src";
  await Deno.mkdir(HEADERS, { recursive: true });
  for (const source of [common, arch]) {
    const result = await run(["cp", "-a", `${source}/.`, `${HEADERS}/`]);
    if (!result.success) return `copying ${source} failed`;
  }
  return undefined;
}

async function checkAvailable(list: Tracer[], headersProblem: string | undefined): Promise<void> {
  const isInstalled = async (name: string) =>
    (await run(["sh", "-c", `command -v ${name}`])).success;
  const hasBcc = (await run(["/usr/bin/python3", "-c", "import bcc"]).catch(() => undefined))
    ?.success;
  for (const tracer of list) {
    if (tracer.name.startsWith("bpftrace") && !(await isInstalled("bpftrace"))) {
      tracer.unavailable = "bpftrace is not installed (apt-get install -y bpftrace)";
    }
    if (tracer.name.startsWith("bcc")) {
      if (!hasBcc) tracer.unavailable = "python3-bpfcc is not installed";
      else if (headersProblem) tracer.unavailable = `no kernel headers for bcc: ${headersProblem}`;
    }
  }
}

/** Wall and CPU time of one workload run, ns. */
interface Timing {
  wallNs: number;
  cpuNs: number;
}

async function workload(calls: number): Promise<Timing> {
  const result = await run([`${TOOLS}overhead_workload`, String(calls)]);
  if (!result.success) throw new Error("The workload failed");
  const [wallNs, cpuNs] = new TextDecoder().decode(result.stdout).trim().split(" ").map(Number);
  return { wallNs: wallNs!, cpuNs: cpuNs! };
}

function parseWatch(text: string): Watched {
  const field = (key: string) => Number(text.match(new RegExp(`^${key} (\\d+)$`, "m"))?.[1]);
  return { appearedNs: field("appeared"), countingNs: field("counting") };
}

/**
 * Starts `tracer` under the watcher, waits until its program counts, runs
 * `during`, then stops the tracer and waits for it to exit.
 */
async function withTracer<T>(tracer: Tracer, during: () => Promise<T>): Promise<[Watched, T]> {
  const child = new Deno.Command(`${TOOLS}overhead_watch`, {
    args: [tracer.prefix, "hold", ...tracer.command],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    ...(tracer.env ? { env: tracer.env } : {}),
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    while (!text.includes("ready\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${tracer.name} failed to start:\n${await stderr}`);
      text += value;
    }
    const result = await during();
    return [parseWatch(text), result];
  } finally {
    // Closing stdin makes the watcher stop the tracer (SIGINT, then SIGKILL
    // after 5 s); if the watcher itself dies, the kernel kills the tracer.
    await child.stdin.close().catch(() => {});
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const status = await Promise.race([
      child.status,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000)),
    ]);
    if (!status) {
      child.kill("SIGKILL");
      await child.status;
    }
    await stderr;
  }
}

async function calibrate(): Promise<number> {
  const probe = 1_000_000;
  await workload(probe);
  const ns = Math.min((await workload(probe)).wallNs, (await workload(probe)).wallNs);
  return Math.round((probe * 1e9) / ns / 100_000) * 100_000;
}

interface Overhead {
  tracer: string;
  /** Per-event overhead of each round from the workload's CPU time, ns. */
  perEvent: number[];
  /** The same from its wall time, ns. */
  perEventWall: number[];
  /** CPU time per syscall of the bare runs, ns. */
  baselineNs: number[];
  problem?: string;
}

async function measureOverhead(
  all: Tracer[],
  calls: number,
  rounds: number,
): Promise<Overhead[]> {
  const list = all.filter((tracer) => !tracer.startupOnly);
  const results = list.map((tracer): Overhead => ({
    tracer: tracer.name,
    perEvent: [],
    perEventWall: [],
    baselineNs: [],
    ...(tracer.unavailable ? { problem: tracer.unavailable } : {}),
  }));
  for (let round = 0; round < rounds; round++) {
    // Each round starts at a different tracer, so that no tracer always runs
    // right after the same neighbour. Bare runs alternate with traced runs,
    // and each traced run is compared with the mean of the bare runs on
    // either side of it, which cancels a slow drift of the machine's load.
    let before = await workload(calls);
    for (let step = 0; step < list.length; step++) {
      const index = (round + step) % list.length;
      const tracer = list[index]!;
      const result = results[index]!;
      if (result.problem) continue;
      try {
        const [, traced] = await withTracer(tracer, () => workload(calls));
        const after = await workload(calls);
        const bareCpu = (before.cpuNs + after.cpuNs) / 2;
        const bareWall = (before.wallNs + after.wallNs) / 2;
        before = after;
        result.baselineNs.push(bareCpu / calls);
        result.perEvent.push((traced.cpuNs - bareCpu) / calls);
        result.perEventWall.push((traced.wallNs - bareWall) / calls);
        console.log(
          `round ${round + 1} ${tracer.name}: ${
            ((traced.cpuNs - bareCpu) / calls).toFixed(1)
          } ns/event`,
        );
      } catch (error) {
        result.problem = error instanceof Error
          ? error.message.split("\n").slice(0, 3).join(" ")
          : String(error);
        console.log(`${tracer.name}: ${result.problem}`);
      }
    }
  }
  return results;
}

interface Startup {
  tracer: string;
  /** For bpfscope: ms from the process's time origin to its modules loaded, per round. */
  importedMs?: number[];
  /** For bpfscope: ms from the process's time origin to the probe attached, per round. */
  openedMs?: number[];
  /** For bpfscope: the same without the kernel BTF cache, per round. */
  openedColdMs?: number[];
  appearedMs: number[];
  countingMs: number[];
  problem?: string;
}

async function measureStartup(list: Tracer[], rounds: number): Promise<Startup[]> {
  const names = [
    "bpfscope, sinks off",
    "bpfscope, sinks off, no BTF cache",
    "bpfscope, sinks on",
    "C libbpf, raw tracepoint",
    "C libbpf, bpfscope's program",
    "bpftrace, tracepoint",
    "bcc, tracepoint",
  ];
  const chosen = list.filter((tracer) => names.includes(tracer.name));
  const results: Startup[] = [
    { tracer: "Deno, empty script (to exit)", appearedMs: [], countingMs: [] },
    ...chosen.map((tracer): Startup => ({
      tracer: tracer.name,
      appearedMs: [],
      countingMs: [],
      ...(tracer.unavailable ? { problem: tracer.unavailable } : {}),
    })),
  ];
  for (let round = 0; round < rounds; round++) {
    const empty = await run([
      `${TOOLS}overhead_watch`,
      "-",
      "exit",
      DENO,
      "run",
      "--allow-all",
      `${HERE}empty.ts`,
    ]);
    const exited = Number(new TextDecoder().decode(empty.stdout).match(/^exited (\d+)$/m)?.[1]);
    results[0]!.countingMs.push(exited / 1e6);
    await timeProbeOpen(results.find((row) => row.tracer === "bpfscope, sinks off")!);
    for (let i = 0; i < chosen.length; i++) {
      const result = results[i + 1]!;
      if (result.problem) continue;
      try {
        const [watched] = await withTracer(chosen[i]!, () => Promise.resolve());
        result.appearedMs.push(watched.appearedNs / 1e6);
        result.countingMs.push(watched.countingNs / 1e6);
      } catch (error) {
        result.problem = error instanceof Error
          ? error.message.split("\n").slice(0, 3).join(" ")
          : String(error);
      }
    }
  }
  return results;
}

// Splits bpfscope's start-up with the times that bench/overhead/probe.ts
// reports from inside the process.
async function timeProbeOpen(result: Startup): Promise<void> {
  const timings = async (...flags: string[]) => {
    const output = await run([
      DENO,
      "run",
      "--allow-all",
      `${HERE}probe.ts`,
      "--timings",
      ...flags,
    ]);
    if (!output.success) return undefined;
    return JSON.parse(new TextDecoder().decode(output.stdout)) as {
      importedMs: number;
      openedMs: number;
    };
  };
  const warm = await timings();
  const cold = await timings("--no-btf-cache");
  if (!warm || !cold) return;
  (result.importedMs ??= []).push(warm.importedMs);
  (result.openedMs ??= []).push(warm.openedMs);
  (result.openedColdMs ??= []).push(cold.openedMs);
}

interface Footprint {
  seconds: number;
  cpuPercent: number;
  peakRssMiB: number;
  programs: { name: string; runTimeNs: number; runCount: number }[];
}

async function readProc(pid: number): Promise<{ ticks: number; hwmKiB: number }> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // The fields after the command name, which is in brackets and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime and stime, fields 14 and 15
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const hwmKiB = Number(status.match(/^VmHWM:\s+(\d+) kB$/m)?.[1]);
  return { ticks, hwmKiB };
}

async function measureFootprint(seconds: number): Promise<Footprint> {
  await Deno.remove(FOOTPRINT_FILE).catch(() => {});
  const child = new Deno.Command(DENO, {
    args: [
      "run",
      "--allow-all",
      `${ROOT}cli.ts`,
      "run",
      "--probe",
      "syscalls",
      "--probe",
      "process",
      "--sink",
      `file:${FOOTPRINT_FILE}`,
      "--interval",
      "1s",
      "--program-stats",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    // The first 2 s are start-up (module loading, compilation), which the
    // steady-state CPU share leaves out; the peak RSS includes them.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const first = await readProc(child.pid);
    const start = performance.now();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const last = await readProc(child.pid);
    const elapsed = (performance.now() - start) / 1000;
    // USER_HZ is 100 on Linux x86_64 and arm64.
    const cpuPercent = ((last.ticks - first.ticks) / 100 / elapsed) * 100;
    child.kill("SIGINT");
    await child.status;
    return {
      seconds: elapsed,
      cpuPercent,
      peakRssMiB: last.hwmKiB / 1024,
      programs: await programStats(),
    };
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
  }
}

async function programStats(): Promise<Footprint["programs"]> {
  const latest = new Map<string, { runTimeNs: number; runCount: number }>();
  const text = await Deno.readTextFile(FOOTPRINT_FILE);
  for (const line of text.split("\n")) {
    if (!line.includes("bpfscope.program.run_")) continue;
    const record = JSON.parse(line) as {
      name: string;
      value: number;
      attributes: Record<string, string | number>;
    };
    const program = String(record.attributes["bpf.program.name"]);
    const entry = latest.get(program) ?? { runTimeNs: 0, runCount: 0 };
    if (record.name === "bpfscope.program.run_time") entry.runTimeNs = record.value * 1e9;
    else entry.runCount = record.value;
    latest.set(program, entry);
  }
  return [...latest].map(([name, stats]) => ({ name, ...stats }));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function leftoverPrograms(): Promise<string[]> {
  const result = await run(["bpftool", "prog", "list"]);
  const text = new TextDecoder().decode(result.stdout);
  return text.split("\n").filter((line) => /name (ovh_raw_enter|ovh_tp_enter)/.test(line));
}

function formatReport(
  calls: number,
  rounds: number,
  overhead: Overhead[],
  startup: Startup[],
  footprint: Footprint,
  cache: KernelBtfCacheResult,
): string {
  const fixed = (value: number, digits = 1) => value.toFixed(digits);
  const bpfscope = median(overhead.find((row) => row.tracer === "bpfscope, sinks off")!.perEvent);
  const baseline = median(overhead.flatMap((row) => row.baselineNs));
  const overheadRows = overhead.map((row) => {
    if (row.problem || row.perEvent.length === 0) {
      return `| ${row.tracer} | did not run: ${row.problem ?? "no rounds"} | | | | |`;
    }
    const middle = median(row.perEvent);
    const low = fixed(Math.min(...row.perEvent));
    const high = fixed(Math.max(...row.perEvent));
    const wall = fixed(median(row.perEventWall));
    return `| ${row.tracer} | ${low} | ${fixed(middle)} | ${high} | ${wall} | ${
      fixed(middle / bpfscope, 2)
    }x |`;
  });
  const startupRows = startup.map((row) => {
    if (row.problem || row.countingMs.length === 0) {
      return `| ${row.tracer} | did not run: ${row.problem ?? "no rounds"} | | |`;
    }
    const appeared = row.appearedMs.length ? fixed(median(row.appearedMs)) : "-";
    return `| ${row.tracer} | ${appeared} | ${fixed(median(row.countingMs))} | ${
      fixed(Math.min(...row.countingMs))
    } – ${fixed(Math.max(...row.countingMs))} |`;
  });
  const programRows = footprint.programs.map((program) =>
    `| ${program.name} | ${program.runCount} | ${fixed(program.runTimeNs / 1e6, 2)} ms | ${
      program.runCount ? fixed(program.runTimeNs / program.runCount) : "-"
    } ns | ${fixed((program.runTimeNs / 1e9 / footprint.seconds) * 100, 3)}% |`
  );
  const targets = formatTargets(overhead, startup, footprint);
  return [
    START_MARK,
    "## Cost of observing",
    "",
    "The latest output of `deno task bench:overhead`, written by bench/overhead/run.ts; the chart",
    "is [bench/overhead/overhead.svg](overhead/overhead.svg).",
    "",
    "### Tracing overhead per event",
    "",
    `The workload (bench/overhead/workload.c) makes ${calls.toLocaleString("en-US")} getppid()`,
    `syscalls, ${fixed(baseline)} ns of CPU time each without a tracer (median). Each of`,
    `${rounds} rounds runs each tracer in turn, with a bare run of the workload between traced`,
    "runs. The overhead per event is (traced - bare) / syscalls, where bare is the mean of the two",
    "bare runs around the traced one. The figures use the workload's CPU time",
    "(CLOCK_THREAD_CPUTIME_ID), because other work shares the machine's 2 CPUs and wall time also",
    "counts the time the workload waits for them; the wall-time median is there for comparison.",
    "Every tracer counts every syscall of the machine, and the spread between rounds is the noise.",
    "The ratio is the median against bpfscope with sinks off. The C row with bpfscope's program",
    "loads bpf/syscalls.bpf.o from C, which separates the program's cost from the loader's.",
    "bpftrace 0.17 has no raw tracepoint probe type, so it runs on the tracepoint only.",
    "",
    "| tracer | min ns | median ns | max ns | median ns, wall time | ratio to bpfscope |",
    "| --- | --- | --- | --- | --- | --- |",
    ...overheadRows,
    "",
    "### Start-up to attached and counting",
    "",
    "Milliseconds from fork to the tracer's program appearing among its file descriptors, and to",
    "that program's first counted event (its run count, with BPF_ENABLE_STATS on until then),",
    `measured by bench/overhead/watch.c; ${rounds} rounds. The Deno row is \`deno run\` of an empty`,
    "script to its exit, the floor under bpfscope's start-up.",
    "",
    "| tracer | appeared, median ms | counting, median ms | counting, min – max ms |",
    "| --- | --- | --- | --- |",
    ...startupRows,
    "",
    ...startupNote(startup, cache),
    "### Agent footprint",
    "",
    "`bpfscope run --probe syscalls --probe process --interval 1s --sink file:... --program-stats`,",
    `sampled from /proc over ${fixed(footprint.seconds)} s after its first 2 s:`,
    `${fixed(footprint.cpuPercent, 2)}% of one CPU (utime + stime), peak RSS (VmHWM)`,
    `${fixed(footprint.peakRssMiB)} MiB. Kernel-side run time of its programs over the whole run`,
    "follows. The programs run in the context of the processes that make the syscalls, so this time",
    "is not part of the agent's CPU share, and it grows with the machine's syscall rate (the runs).",
    "",
    "| program | runs | run time | per run | share of one CPU |",
    "| --- | --- | --- | --- | --- |",
    ...programRows,
    "",
    "### Targets",
    "",
    ...targets,
    END_MARK,
  ].join("\n");
}

function startupNote(startup: Startup[], cache: KernelBtfCacheResult): string[] {
  const deno = startup.find((row) => row.tracer.startsWith("Deno"));
  const ours = startup.find((row) => row.tracer === "bpfscope, sinks off");
  if (!deno?.countingMs.length || !ours?.countingMs.length) return [];
  const added = median(ours.countingMs) - median(deno.countingMs);
  const lines = [
    `bpfscope adds ${added.toFixed(1)} ms to Deno's own start-up (medians).`,
    "The bpfscope rows load the probe with this boot's kernel BTF cache (ffi/kernel_btf_cache.ts),",
    "as every start after the first one in a boot does. The cache was",
    "path" in cache
      ? `${cache.created ? "written" : "present"} before the measurement.`
      : `NOT available, so these rows parse the kernel's BTF too: ${cache.skipped}.`,
    'The "no BTF cache" row is the first start of a boot, where libbpf parses the kernel\'s whole',
    "BTF for the program's CO-RE relocation (the ia32 check).",
  ];
  if (ours.importedMs?.length && ours.openedMs?.length && ours.openedColdMs?.length) {
    const imported = median(ours.importedMs);
    const opened = median(ours.openedMs);
    const openedCold = median(ours.openedColdMs);
    lines.push(
      "Inside the process (bench/overhead/probe.ts --timings, from Deno's time origin), its modules",
      `have loaded at ${imported.toFixed(1)} ms and SyscallsProbe.open() returns at ${
        opened.toFixed(1)
      } ms,`,
      `so opening, loading, verifying and attaching the probe takes ${
        (opened - imported).toFixed(1)
      } ms. Without the cache, open()`,
      `returns at ${openedCold.toFixed(1)} ms. The C row with bpfscope's program loads the same`,
      "object without the cache, so it is the C counterpart of the no-cache row.",
    );
  }
  return [...lines, ""];
}

// Marks a comparison whose middle halves of rounds (first to third quartile)
// overlap: on this shared machine the order of the medians could then come
// out the other way in another run. Quartiles, not min and max, so that one
// disturbed round does not hide a clear difference.
function noiseNote(ours: number[], theirs: number[]): string {
  const [ourLow, ourHigh] = [quantile(ours, 0.25), quantile(ours, 0.75)];
  const [theirLow, theirHigh] = [quantile(theirs, 0.25), quantile(theirs, 0.75)];
  const overlap = ourLow <= theirHigh && theirLow <= ourHigh;
  return overlap
    ? ", but the middle halves of the rounds overlap, so the order is within noise"
    : "";
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (position - low);
}

function verdict(met: boolean): string {
  return met ? "met" : "missed";
}

function formatTargets(overhead: Overhead[], startup: Startup[], footprint: Footprint): string[] {
  // The rounds of the row with the lowest median among those whose name starts with `prefix`.
  const roundsOf = (prefix: string) =>
    overhead.filter((row) => row.tracer.startsWith(prefix) && row.perEvent.length)
      .map((row) => row.perEvent)
      .sort((a, b) => median(a) - median(b))[0];
  const overheadOf = (prefix: string) => {
    const rounds = roundsOf(prefix);
    return rounds ? median(rounds) : undefined;
  };
  const startupRounds = (name: string) => {
    const row = startup.find((row) => row.tracer === name);
    return row?.countingMs.length ? row.countingMs : undefined;
  };
  const startupOf = (name: string) => {
    const rounds = startupRounds(name);
    return rounds ? median(rounds) : undefined;
  };
  const bpfscope = overheadOf("bpfscope, sinks off");
  const lines: string[] = [];
  const c = overheadOf("C libbpf");
  if (bpfscope !== undefined && c !== undefined) {
    const ratio = bpfscope / c;
    lines.push(
      `- Overhead at most 1.1x the cheapest C tracer: ${verdict(ratio <= 1.1)}, ${
        ratio.toFixed(2)
      }x (${bpfscope.toFixed(1)} ns against ${c.toFixed(1)} ns).`,
    );
  }
  for (const tool of ["bcc", "bpftrace"]) {
    const other = overheadOf(tool);
    if (bpfscope === undefined || other === undefined) {
      lines.push(`- Overhead below ${tool}'s: not measured, ${tool} did not run.`);
      continue;
    }
    lines.push(
      `- Overhead below ${tool}'s (its cheapest variant): ${verdict(bpfscope < other)}, ${
        bpfscope.toFixed(1)
      } ns against ${other.toFixed(1)} ns (${(bpfscope / other).toFixed(2)}x)${
        noiseNote(roundsOf("bpfscope, sinks off")!, roundsOf(tool)!)
      }.`,
    );
  }
  const bpftrace = startupOf("bpftrace, tracepoint");
  for (
    const [name, label] of [
      ["bpfscope, sinks off", "Start-up below bpftrace's"],
      ["bpfscope, sinks off, no BTF cache", "First start of a boot below bpftrace's"],
    ] as const
  ) {
    const ours = startupOf(name);
    if (ours === undefined || bpftrace === undefined) continue;
    lines.push(
      `- ${label}: ${verdict(ours < bpftrace)}, ${ours.toFixed(1)} ms against ${
        bpftrace.toFixed(1)
      } ms (${(ours / bpftrace).toFixed(2)}x)${
        noiseNote(startupRounds(name)!, startupRounds("bpftrace, tracepoint")!)
      }.`,
    );
  }
  lines.push(
    `- Agent under 1% of one CPU: ${verdict(footprint.cpuPercent < 1)}, ${
      footprint.cpuPercent.toFixed(2)
    }%.`,
    `- Agent RSS under 100 MiB: ${verdict(footprint.peakRssMiB < 100)}, ${
      footprint.peakRssMiB.toFixed(1)
    } MiB.`,
  );
  return lines;
}

async function writeReport(section: string): Promise<void> {
  const text = await Deno.readTextFile(RESULTS).catch(() => "# Benchmark results\n");
  const start = text.indexOf(START_MARK);
  const end = text.indexOf(END_MARK);
  const before = start >= 0 ? text.slice(0, start) : text;
  const after = end >= 0 ? text.slice(end + END_MARK.length) : "";
  await Deno.writeTextFile(RESULTS, `${before.trimEnd()}\n\n${section}\n${after.trimStart()}`);
  await run([DENO, "fmt", "--quiet", RESULTS]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "7" } } });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new RangeError(`Invalid --rounds: ${values.rounds}`);
  }

  await build();
  const list = tracers();
  await checkAvailable(list, await prepareHeaders());
  const calls = await calibrate();
  console.log(`${calls} getppid() calls per run, ${rounds} rounds`);

  const overhead = await measureOverhead(list, calls, rounds);
  // The traced runs above wrote the cache already, unless they could not.
  const cache = await createKernelBtfCache(SYSCALLS_OBJECT);
  const startup = await measureStartup(list, rounds);
  console.log("footprint: 20 s of bpfscope run with all built-in probes");
  const footprint = await measureFootprint(20);

  const leftover = await leftoverPrograms();
  if (leftover.length) {
    console.log(`Programs of the C tracer still loaded:\n${leftover.join("\n")}`);
  }

  const section = formatReport(calls, rounds, overhead, startup, footprint, cache);
  console.log(section);
  await writeReport(section);
  await writeChart(
    CHART,
    overhead.map((row) => ({
      name: row.tracer,
      value: row.perEvent.length ? median(row.perEvent) : undefined,
    })),
    startup.map((row) => ({
      name: row.tracer,
      value: row.countingMs.length ? median(row.countingMs) : undefined,
    })),
  );
  // Formatted like the rest of the repository, so that `deno fmt --check` accepts the file.
  await run([DENO, "fmt", "--quiet", CHART]);
}

try {
  await main();
} finally {
  // The sink output of the bpfscope runs is only a side effect of the measurement.
  for (const path of [SINK_FILE, FOOTPRINT_FILE]) await Deno.remove(path).catch(() => {});
}
