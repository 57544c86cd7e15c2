import assert from "node:assert/strict";
import type { Batch, LogRecord, Metric } from "../plugins/plugin.ts";
import { encodeBatch } from "../plugins/sinks/file.ts";
import {
  drawExplicitHistogram,
  drawLog2Histogram,
  parseStdoutOptions,
  renderText,
  StdoutSink,
  type StdoutSinkOptions,
} from "../plugins/sinks/stdout.ts";

const SECOND = 1_000_000_000n;

/** An output that keeps what is written, as a terminal or not. */
class CapturedOutput {
  text = "";
  #terminal: boolean;
  #decoder = new TextDecoder();

  constructor(terminal: boolean) {
    this.#terminal = terminal;
  }

  write(bytes: Uint8Array): Promise<number> {
    // Accepts at most 7 bytes per call, so the sink must handle short writes.
    const accepted = bytes.subarray(0, 7);
    this.text += this.#decoder.decode(accepted, { stream: true });
    return Promise.resolve(accepted.length);
  }

  isTerminal(): boolean {
    return this.#terminal;
  }
}

function sinkWith(
  options: StdoutSinkOptions & { terminal?: boolean },
): [StdoutSink, CapturedOutput] {
  const output = new CapturedOutput(options.terminal ?? false);
  return [new StdoutSink({ ...options, output }), output];
}

function counter(value: number, attributes = {}): Metric {
  return {
    kind: "counter",
    name: "test.calls",
    description: "Calls",
    unit: "{call}",
    startTimeUnixNano: 0n,
    points: [{ attributes, value }],
  };
}

function batchOf(timeUnixNano: bigint, metrics: Metric[], logs: LogRecord[] = []): Batch {
  return { resource: { "service.name": "svc", "host.name": "box" }, timeUnixNano, metrics, logs };
}

function log(body: string): LogRecord {
  return { timeUnixNano: 0n, severity: "INFO", body, attributes: { pid: 1 } };
}

Deno.test("StdoutSink text lines", async () => {
  const [sink, output] = sinkWith({ format: "text" });
  const gauge: Metric = {
    kind: "gauge",
    name: "test.load",
    description: "Load",
    unit: "1",
    points: [{ attributes: { period: "1m" }, value: 0.5 }],
  };
  await sink.export(batchOf(0n, [counter(12, { cpu: 0 }), gauge], [log("exec true")]));

  assert.equal(
    output.text,
    [
      "1970-01-01T00:00:00.000Z test.calls{cpu=0} 12 {call}",
      "1970-01-01T00:00:00.000Z test.load{period=1m} 0.5 1",
      "1970-01-01T00:00:00.000Z INFO exec true  pid=1",
      "",
    ].join("\n"),
  );
});

Deno.test("StdoutSink json lines", async () => {
  const [sink, output] = sinkWith({ format: "json" });
  const batch = batchOf(5n * SECOND, [counter(12, { cpu: 0 })], [log("exec")]);
  await sink.export(batch);

  const lines = output.text.trimEnd().split("\n");
  assert.deepEqual(lines, encodeBatch(batch));
  assert.equal(JSON.parse(lines[0]!).value, 12);
  assert.equal(JSON.parse(lines[1]!).body, "exec");
});

Deno.test("StdoutSink format follows terminal", () => {
  assert.equal(sinkWith({ terminal: true })[0].format, "table");
  assert.equal(sinkWith({ terminal: false })[0].format, "text");
});

Deno.test("StdoutSink table shows counter rates", async () => {
  const [sink, output] = sinkWith({ terminal: true });
  await sink.export(batchOf(0n, [counter(100)]));
  assert.match(output.text, /test\.calls {2}\(counter, \{call\} total\)\n +100 /);

  output.text = "";
  await sink.export(batchOf(2n * SECOND, [counter(300)]));
  assert.ok(output.text.startsWith("\x1b[H\x1b[2J"));
  assert.match(output.text, /test\.calls {2}\(counter, \{call\}\/s\)\n +100 /);
});

Deno.test("StdoutSink table marks counter resets", async () => {
  const [sink, output] = sinkWith({ terminal: true });
  await sink.export(batchOf(0n, [counter(100)]));
  output.text = "";
  await sink.export(batchOf(SECOND, [counter(5)]));
  assert.match(output.text, /\n +reset /);
});

Deno.test("StdoutSink table shows top series", async () => {
  const [sink, output] = sinkWith({ terminal: true, top: 2 });
  const metric: Metric = {
    kind: "gauge",
    name: "test.sizes",
    description: "Sizes",
    unit: "By",
    points: [1, 30, 20, 4].map((value, i) => ({ attributes: { slot: i }, value })),
  };
  await sink.export(batchOf(0n, [metric]));

  const rows = output.text.split("\n").filter((line) => line.includes("slot="));
  assert.deepEqual(rows.map((row) => row.trim()), ["30  slot=1", "20  slot=2"]);
  assert.match(output.text, /\.\.\. 2 more series/);
});

Deno.test("StdoutSink table keeps latest events", async () => {
  const [sink, output] = sinkWith({ terminal: true, eventRows: 2 });
  await sink.export(batchOf(0n, [], [log("first"), log("second")]));
  output.text = "";
  await sink.export(batchOf(SECOND, [], [log("third")]));

  assert.match(output.text, /Latest events:\n.*second.*\n.*third/);
  assert.doesNotMatch(output.text, /first/);
});

Deno.test("StdoutSink table draws histograms", async () => {
  const [sink, output] = sinkWith({ terminal: true });
  const histogram: Metric = {
    kind: "histogram",
    name: "test.latency",
    description: "Latency",
    unit: "us",
    startTimeUnixNano: 0n,
    points: [{ attributes: {}, count: 4, sum: 9, buckets: { kind: "log2", counts: [0, 1, 0, 3] } }],
  };
  await sink.export(batchOf(0n, [histogram]));

  assert.match(output.text, /count 4, sum 9/);
  assert.match(output.text, /\[4, 8\) +3 \|@{52}\|/);
});

Deno.test("drawLog2Histogram like bpftrace", () => {
  const rows = drawLog2Histogram({ kind: "log2", counts: [2, 1, 0, 4, 0] });
  assert.deepEqual(rows, [
    `[0]                    2 |${"@".repeat(26).padEnd(52)}|`,
    `[1]                    1 |${"@".repeat(13).padEnd(52)}|`,
    `[2, 4)                 0 |${"".padEnd(52)}|`,
    `[4, 8)                 4 |${"@".repeat(52)}|`,
  ]);
});

Deno.test("drawLog2Histogram rounds bars down", () => {
  const rows = drawLog2Histogram({ kind: "log2", counts: [0, 2, 11, 3] });
  assert.deepEqual(rows.map((row) => row.split("|")[1]!.trim().length), [9, 52, 14]);
});

Deno.test("drawLog2Histogram unit suffixes", () => {
  const counts = new Array(65).fill(0);
  counts[11] = 1;
  counts[21] = 1;
  counts[64] = 1;
  const labels = drawLog2Histogram({ kind: "log2", counts }).map((row) => row.slice(0, 16).trim());
  assert.equal(labels[0], "[1K, 2K)");
  assert.ok(labels.includes("[1M, 2M)"));
  assert.equal(labels.at(-1), "[8E, 16E)");
});

Deno.test("drawLog2Histogram empty", () => {
  assert.deepEqual(drawLog2Histogram({ kind: "log2", counts: [0, 0] }), []);
});

Deno.test("drawExplicitHistogram labels", () => {
  const rows = drawExplicitHistogram({ kind: "explicit", bounds: [10, 20], counts: [1, 0, 2] });
  assert.deepEqual(rows.map((row) => row.slice(0, 16).trim()), [
    "(-inf, 10]",
    "(10, 20]",
    "(20, +inf)",
  ]);
});

Deno.test("renderText histogram summary", () => {
  const text = renderText(batchOf(0n, [{
    kind: "histogram",
    name: "h",
    description: "",
    unit: "us",
    startTimeUnixNano: 0n,
    points: [{ attributes: {}, count: 2, buckets: { kind: "log2", counts: [1, 1] } }],
  }]));
  assert.equal(text, "1970-01-01T00:00:00.000Z h count=2 log2=[1,1]\n");
});

Deno.test("StdoutSink export after shutdown", async () => {
  const [sink] = sinkWith({ format: "text" });
  await sink.shutdown();
  const result = await sink.export(batchOf(0n, []));
  assert.equal(result.ok, false);
});

Deno.test("StdoutSink failed write", async () => {
  const output = {
    write: () => Promise.reject(new Deno.errors.BrokenPipe("pipe closed")),
  };
  const sink = new StdoutSink({ format: "text", output });
  const result = await sink.export(batchOf(0n, [counter(1)]));
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.error.message, "pipe closed");
});

Deno.test("parseStdoutOptions values", () => {
  assert.deepEqual(parseStdoutOptions(undefined), {});
  assert.deepEqual(parseStdoutOptions("json"), { format: "json" });
  assert.deepEqual(parseStdoutOptions("table,top=3"), { format: "table", top: 3 });
  assert.throws(() => parseStdoutOptions("yaml"), { name: "TypeError", message: /"yaml"/ });
  assert.throws(() => parseStdoutOptions("top=x"), TypeError);
});

Deno.test("renderText escapes control characters of events", () => {
  const text = renderText({
    resource: {},
    timeUnixNano: 0n,
    metrics: [],
    logs: [{
      timeUnixNano: 0n,
      severity: "INFO",
      body: "exec \x1b[31m",
      attributes: { "process.command": "esc\x1b[31mred" },
    }],
  });
  assert.ok(!text.includes("\x1b"), JSON.stringify(text));
  assert.match(text, /process\.command=esc\\u001b\[31mred/);
});
