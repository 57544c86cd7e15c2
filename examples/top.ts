// deno-lint-ignore-file no-console -- examples print; the library never does.
/**
 * A live view of the host's system calls from the built-in `syscalls` probe:
 * total calls per second, the rate on each CPU, and the busiest syscalls.
 * On a terminal the view is redrawn in place; otherwise one plain line is
 * printed per refresh. Ctrl-C (or SIGTERM) detaches the probe and prints a
 * summary of the whole run.
 *
 * Run: `sudo deno run --allow-ffi --allow-env --allow-read examples/top.ts [--interval 1] [--top 10] [--duration 0]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type SyscallCount,
  type SyscallSnapshot,
  SyscallsProbe,
} from "../plugins/probes/syscalls.ts";

const USAGE = `Usage: top.ts [--interval SECONDS] [--top N] [--duration SECONDS]

  --interval SECONDS  refresh period in seconds, up to 86400 (default 1)
  --top N             number of syscalls listed per refresh, 1 to 512 (default 10)
  --duration SECONDS  stop after this many seconds, up to 2000000; 0 runs until Ctrl-C (default 0)
  --help              print this text`;

interface Options {
  intervalMs: number;
  top: number;
  durationMs: number;
}

function parseOptions(args: string[]): Options | undefined {
  const { values } = parseArgs({
    args,
    options: {
      interval: { type: "string", default: "1" },
      top: { type: "string", default: "10" },
      duration: { type: "string", default: "0" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return undefined;
  return {
    intervalMs: numberInRange(values.interval, "--interval", 0.001, 86_400) * 1000,
    top: integerInRange(values.top, "--top", 1, 512),
    durationMs: values.duration === "0"
      ? 0
      : numberInRange(values.duration, "--duration", 0.001, 2_000_000) * 1000,
  };
}

// setTimeout takes at most 2^31 - 1 ms (about 24.8 days), so both time limits stay below it.
function numberInRange(text: string, flag: string, min: number, max: number): number {
  const value = Number(text);
  if (text.trim() !== "" && Number.isFinite(value) && value >= min && value <= max) return value;
  throw new RangeError(`Invalid ${flag} value "${text}": expected a number from ${min} to ${max}`);
}

function integerInRange(text: string, flag: string, min: number, max: number): number {
  const value = Number(text);
  if (Number.isInteger(value) && value >= min && value <= max) return value;
  throw new RangeError(
    `Invalid ${flag} value "${text}": expected an integer from ${min} to ${max}`,
  );
}

const encoder = new TextEncoder();

let stdoutClosed = false;

// A reader that went away (`top.ts | head`) ends the view quietly, like other command-line tools.
function write(text: string): void {
  if (stdoutClosed) return;
  try {
    const bytes = encoder.encode(text);
    for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    stdoutClosed = true;
  }
}

function formatRate(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(0);
}

function bar(value: number, max: number, width: number): string {
  const cells = max > 0 ? Math.round((value / max) * width) : 0;
  return "#".repeat(cells).padEnd(width, " ");
}

function renderScreen(
  delta: SyscallSnapshot,
  seconds: number,
  top: number,
  elapsed: number,
): string {
  const lines: string[] = [];
  const total = delta.total / seconds;
  lines.push(
    `bpfscope top: system calls on this host, refreshed every ${
      seconds.toFixed(1)
    } s (Ctrl-C to stop)`,
  );
  lines.push(`running ${elapsed.toFixed(0)} s   total ${formatRate(total)} syscalls/s`);
  lines.push("");
  lines.push("CPU      calls/s");
  const cpuRates = Array.from({ length: delta.cpus }, (_, cpu) => delta.cpuTotal(cpu) / seconds);
  const maxCpu = Math.max(...cpuRates);
  cpuRates.forEach((rate, cpu) => {
    lines.push(
      `cpu${String(cpu).padEnd(4)} ${formatRate(rate).padStart(8)}  ${bar(rate, maxCpu, 40)}`,
    );
  });
  lines.push("");
  lines.push("SYSCALL               NR   calls/s");
  const rows = delta.top(top);
  const maxRow = rows[0]?.value ?? 0;
  for (const row of rows) {
    const rate = row.value / seconds;
    lines.push(
      `${row.name.padEnd(18)} ${String(row.nr).padStart(5)} ${formatRate(rate).padStart(9)}  ${
        bar(row.value, maxRow, 30)
      }`,
    );
  }
  return lines.join("\n");
}

function renderLine(delta: SyscallSnapshot, seconds: number, top: number): string {
  const cpus = Array.from(
    { length: delta.cpus },
    (_, cpu) => `cpu${cpu}=${Math.round(delta.cpuTotal(cpu) / seconds)}`,
  );
  const rows = delta.top(top).map((row: SyscallCount) =>
    `${row.name}=${Math.round(row.value / seconds)}`
  );
  return `${new Date().toISOString()} total=${Math.round(delta.total / seconds)}/s ${
    cpus.join(" ")
  } top: ${rows.join(" ")}`;
}

function renderSummary(whole: SyscallSnapshot, seconds: number): string {
  const lines = [
    `bpfscope top: ${formatCount(whole.total)} syscalls in ${seconds.toFixed(1)} s (${
      formatRate(whole.total / Math.max(seconds, 1e-9))
    }/s on average); the probe is detached`,
  ];
  for (const row of whole.top(10)) {
    lines.push(`  ${row.name.padEnd(18)} ${formatCount(row.value).padStart(14)}`);
  }
  return lines.join("\n");
}

function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

async function main(): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${USAGE}`);
    return 2;
  }
  if (options === undefined) {
    console.log(USAGE);
    return 0;
  }

  using probe = SyscallsProbe.open();
  const interactive = Deno.stdout.isTerminal();
  const first = probe.read();
  let previous = first;

  const stop = Promise.withResolvers<void>();
  const onSignal = () => stop.resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  if (options.durationMs > 0) setTimeout(onSignal, options.durationMs);

  try {
    if (interactive) write("\x1b[?25l");
    for (;;) {
      const tick = Promise.withResolvers<"tick">();
      const timer = setTimeout(() => tick.resolve("tick"), options.intervalMs);
      const reason = await Promise.race([tick.promise, stop.promise.then(() => "stop" as const)]);
      clearTimeout(timer);
      if (reason === "stop" || stdoutClosed) break;

      const now = probe.read();
      const seconds = (now.time - previous.time) / 1000;
      const delta = now.since(previous);
      previous = now;
      if (interactive) {
        write(
          `\x1b[H\x1b[2J${
            renderScreen(delta, seconds, options.top, (now.time - first.time) / 1000)
          }\n`,
        );
      } else {
        write(`${renderLine(delta, seconds, options.top)}\n`);
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    if (interactive) write("\x1b[?25h\n");
  }

  const last = probe.read();
  probe.close();
  write(`${renderSummary(last.since(first), (last.time - first.time) / 1000)}\n`);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exitCode = await main();
  } catch (error) {
    console.error(`bpfscope top: ${error instanceof Error ? error.message : error}`);
    Deno.exitCode = 1;
  }
}
