// deno-lint-ignore-file no-console -- examples print; the library never does.
/**
 * A live view of the host's system calls from the built-in `syscalls` probe:
 * total calls per second, the rate on each CPU, and the busiest syscalls.
 * With `--events`, the built-in `process` probe adds the latest program
 * executions and process exits below them. On a terminal the view is
 * redrawn in place; otherwise one plain line is printed per refresh, and one
 * per event as it arrives. Ctrl-C (or SIGTERM) detaches the probes and
 * prints a summary of the whole run.
 *
 * Run: `sudo deno run --allow-ffi --allow-env --allow-read examples/top.ts [--interval 1] [--top 10] [--duration 0] [--events] [--event-rows 10]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { PROCESS_OBJECT } from "../bpf/process_object.ts";
import { SYSCALLS_OBJECT } from "../bpf/syscalls_object.ts";
import { createKernelBtfCache } from "../ffi/kernel_btf_cache.ts";
import { type ProcessEvent, ProcessProbe } from "../plugins/probes/process.ts";
import {
  type SyscallCount,
  type SyscallSnapshot,
  SyscallsProbe,
} from "../plugins/probes/syscalls.ts";

const USAGE =
  `Usage: top.ts [--interval SECONDS] [--top N] [--duration SECONDS] [--events] [--event-rows N]

  --interval SECONDS  refresh period in seconds, up to 86400 (default 1)
  --top N             number of syscalls listed per refresh, 1 to 512 (default 10)
  --duration SECONDS  stop after this many seconds, up to 2000000; 0 runs until Ctrl-C (default 0)
  --events            also show program executions and process exits (needs tracefs); without
                      a terminal, each event is printed as its own line
  --event-rows N      number of latest events shown on a terminal, 1 to 1000 (default 10)
  --help              print this text`;

interface Options {
  intervalMs: number;
  top: number;
  durationMs: number;
  events: boolean;
  eventRows: number;
}

function parseOptions(args: string[]): Options | undefined {
  const { values } = parseArgs({
    args,
    options: {
      interval: { type: "string", default: "1" },
      top: { type: "string", default: "10" },
      duration: { type: "string", default: "0" },
      events: { type: "boolean", default: false },
      "event-rows": { type: "string", default: "10" },
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
    events: values.events,
    eventRows: integerInRange(values["event-rows"], "--event-rows", 1, 1000),
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

/** The latest process events, for the terminal pane, and the totals since the start. */
class EventPane {
  readonly rows: ProcessEvent[] = [];
  execs = 0;
  exits = 0;
  #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  add(event: ProcessEvent): void {
    if (event.kind === "exec") this.execs++;
    else this.exits++;
    this.rows.push(event);
    if (this.rows.length > this.#capacity) this.rows.shift();
  }
}

/**
 * Reads events until the probe closes. On a terminal they go to the pane;
 * otherwise each is also printed as its own line.
 */
async function followEvents(
  probe: ProcessProbe,
  pane: EventPane,
  interactive: boolean,
): Promise<void> {
  for await (const event of probe) {
    pane.add(event);
    if (!interactive) write(`${renderEventLine(event)}\n`);
    if (stdoutClosed) return;
  }
}

function renderEventPane(pane: EventPane, dropped: number): string {
  const lines = [
    `EVENTS (latest ${pane.rows.length}; ${formatCount(pane.execs)} execs, ${
      formatCount(pane.exits)
    } exits, ${formatCount(dropped)} dropped)`,
    "TIME (UTC)    EVENT      PID     PPID  COMM             DETAIL",
  ];
  for (const event of pane.rows) {
    const time = event.timestamp.toISOString().slice(11, 23);
    const detail = event.kind === "exec" ? event.filename : describeExit(event);
    lines.push(
      `${time}  ${event.kind.padEnd(5)} ${String(event.pid).padStart(8)} ${
        String(event.ppid).padStart(8)
      }  ${printable(event.comm).padEnd(16)} ${printable(detail)}`,
    );
  }
  return lines.join("\n");
}

function renderEventLine(event: ProcessEvent): string {
  const fields = [
    event.timestamp.toISOString(),
    event.kind,
    `pid=${event.pid}`,
    `ppid=${event.ppid}`,
    `uid=${event.uid}`,
    `comm=${quote(event.comm)}`,
  ];
  if (event.kind === "exec") {
    fields.push(`filename=${quote(event.filename)}`);
  } else {
    fields.push(
      `code=${event.exitCode}`,
      `signal=${event.signal}`,
      `core_dumped=${event.coreDumped}`,
      `lifetime_ms=${event.lifetimeMs.toFixed(3)}`,
    );
  }
  return fields.join(" ");
}

// A JSON string literal, so that spaces in names keep the line parsable. JSON.stringify
// escapes C0 controls only, so DEL and C1 controls are escaped here as well.
function quote(text: string): string {
  return JSON.stringify(text).replace(
    /[\x7f-\x9f]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function describeExit(event: ProcessEvent & { kind: "exit" }): string {
  const end = event.signal === 0
    ? `code ${event.exitCode}`
    : `signal ${event.signal}${event.coreDumped ? ", core dumped" : ""}`;
  return `${end} after ${formatDuration(event.lifetimeMs)}`;
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

// Any process can put escape sequences in its name or path, so control characters
// (C0, DEL and C1) are shown as \xNN instead of being sent to the terminal.
function printable(text: string): string {
  return text.replace(
    /\p{Cc}/gu,
    (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
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
  using processes = options.events ? ProcessProbe.open() : undefined;
  // Makes the next start in this boot faster (see ffi/kernel_btf_cache.ts);
  // without --allow-run and --allow-write it is skipped.
  const caching = Promise.all([
    createKernelBtfCache(SYSCALLS_OBJECT),
    ...(processes ? [createKernelBtfCache(PROCESS_OBJECT)] : []),
  ]);
  const interactive = Deno.stdout.isTerminal();
  const first = probe.read();
  let previous = first;

  const stop = Promise.withResolvers<void>();
  const onSignal = () => stop.resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  if (options.durationMs > 0) setTimeout(onSignal, options.durationMs);

  const pane = new EventPane(options.eventRows);
  let eventError: unknown;
  const following = processes === undefined
    ? Promise.resolve()
    : followEvents(processes, pane, interactive).catch((error) => {
      eventError = error;
      onSignal();
    });

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
        const screen = renderScreen(delta, seconds, options.top, (now.time - first.time) / 1000);
        const events = processes === undefined
          ? ""
          : `\n\n${renderEventPane(pane, processes.droppedEvents)}`;
        write(`\x1b[H\x1b[2J${screen}${events}\n`);
      } else {
        write(`${renderLine(delta, seconds, options.top)}\n`);
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    if (interactive) write("\x1b[?25h\n");
  }

  const dropped = processes?.droppedEvents ?? 0;
  processes?.close();
  await following;
  if (eventError !== undefined) throw eventError;

  const last = probe.read();
  probe.close();
  for (const result of await caching) {
    if ("skipped" in result) {
      console.error(
        `bpfscope top: kernel BTF cache not written, so the next start parses the kernel's BTF: ${result.skipped}`,
      );
    }
  }
  write(`${renderSummary(last.since(first), (last.time - first.time) / 1000)}\n`);
  if (processes !== undefined) {
    write(
      `bpfscope top: ${formatCount(pane.execs)} execs and ${formatCount(pane.exits)} exits seen, ${
        formatCount(dropped)
      } dropped because the ring buffer was full\n`,
    );
  }
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
