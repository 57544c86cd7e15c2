import assert from "node:assert/strict";
import { Collector, type CollectorOptions } from "../plugins/collector.ts";
import type {
  Attributes,
  Batch,
  ExportResult,
  LogRecord,
  Metric,
  Probe,
  ProbePlugin,
  Sink,
  SinkPlugin,
} from "../plugins/plugin.ts";
import { syscallsProbePlugin } from "../plugins/probes/syscalls_plugin.ts";
import { MemorySink } from "../plugins/sinks/memory.ts";
import { kernelTest, programGone } from "./_helpers.ts";

const RESOURCE = { "service.name": "test", "host.name": "test-host" };
// Long enough that no timed collection runs during a test that calls collect() itself.
const MANUAL_INTERVAL_MS = 3_600_000;

/** A probe that reports one gauge and records what the collector did to it. */
class FakeProbe implements Probe {
  collects = 0;
  disposed = false;
  #events: LogRecord[] = [];
  #wake: (() => void) | undefined;

  collect(): Metric[] {
    this.collects++;
    return [{
      kind: "gauge",
      name: "test.collects",
      description: "Collections of the fake probe",
      unit: "1",
      points: [{ attributes: {}, value: this.collects }],
    }];
  }

  /** Makes `events()` yield `record`. */
  emit(record: LogRecord): void {
    this.#events.push(record);
    this.#wake?.();
  }

  async *events(): AsyncIterable<LogRecord> {
    while (!this.disposed) {
      const record = this.#events.shift();
      if (record !== undefined) {
        yield record;
        continue;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.disposed = true;
    this.#wake?.();
    return Promise.resolve();
  }
}

function probePlugin(probe: Probe, name = "fake"): ProbePlugin {
  return { kind: "probe", name, description: "test probe", open: () => probe };
}

function sinkPlugin(sink: Sink, name = "test"): SinkPlugin {
  return { kind: "sink", name, description: "test sink", create: () => sink };
}

/** A sink whose exports never resolve. */
class HangingSink implements Sink {
  exports = 0;
  shutdowns = 0;
  export(): Promise<ExportResult> {
    this.exports++;
    return new Promise(() => {});
  }
  flush(): Promise<void> {
    return new Promise(() => {});
  }
  shutdown(): Promise<void> {
    this.shutdowns++;
    return Promise.resolve();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

/** A sink whose exports all fail. */
class FailingSink implements Sink {
  exports = 0;
  export(): Promise<ExportResult> {
    this.exports++;
    return Promise.resolve({ ok: false, error: new TypeError("disk on fire") });
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return Promise.resolve();
  }
}

function start(options: Partial<CollectorOptions>): Promise<Collector> {
  return Collector.start({
    probes: [],
    sinks: [],
    intervalMs: MANUAL_INTERVAL_MS,
    resource: RESOURCE,
    ...options,
  });
}

function metricOf(batch: Batch, name: string): Metric {
  const metric = batch.metrics.find((candidate) => candidate.name === name);
  assert.ok(metric, `metric ${name} is missing; batch has ${batch.metrics.map((m) => m.name)}`);
  return metric;
}

function valueOf(batch: Batch, name: string, attributes: Attributes = {}): number {
  const metric = metricOf(batch, name);
  const point = metric.points.find((candidate) =>
    Object.entries(attributes).every(([key, value]) => candidate.attributes[key] === value)
  );
  assert.ok(
    point !== undefined && "value" in point,
    `${name} has no point ${JSON.stringify(attributes)}`,
  );
  return point.value;
}

/** Lets pending promise callbacks and timers run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("Collector sends batches to every sink", async () => {
  const first = new MemorySink();
  const second = new MemorySink();
  const collector = await start({
    probes: [probePlugin(new FakeProbe())],
    sinks: [sinkPlugin(first), sinkPlugin(second)],
  });
  await collector.collect();
  await collector.collect();
  await collector.stop();

  assert.equal(first.batches.length, 3);
  assert.equal(second.batches.length, 3);
  assert.equal(first.batches[1], second.batches[1]);
});

Deno.test("Collector batch has resource and metrics", async () => {
  const sink = new MemorySink();
  await using collector = await start({
    probes: [probePlugin(new FakeProbe())],
    sinks: [sinkPlugin(sink)],
  });
  const batch = await collector.collect();

  assert.deepEqual(batch.resource, RESOURCE);
  assert.equal(valueOf(batch, "test.collects"), 1);
  assert.equal(valueOf(batch, "bpfscope.collector.collections"), 1);
  assert.equal(metricOf(batch, "bpfscope.collector.duration").kind, "gauge");
  assert.ok(valueOf(batch, "bpfscope.collector.duration") >= 0);
  assert.equal(
    valueOf(batch, "bpfscope.collector.dropped", { sink: "test", reason: "queue_full" }),
    0,
  );
});

Deno.test("Collector runs on its interval", async () => {
  const sink = new MemorySink();
  await using _collector = await start({ sinks: [sinkPlugin(sink)], intervalMs: 20 });
  await sink.waitForBatches(3, AbortSignal.timeout(10_000));

  const counts = sink.batches.map((batch) => valueOf(batch, "bpfscope.collector.collections"));
  assert.deepEqual(counts.slice(0, 3), [1, 2, 3]);
});

Deno.test("Collector hanging sink does not block others", async () => {
  const hanging = new HangingSink();
  const fast = new MemorySink();
  const collector = await start({
    sinks: [sinkPlugin(hanging, "slow"), sinkPlugin(fast, "fast")],
    queueSize: 2,
    shutdownTimeoutMs: 50,
  });
  for (let i = 0; i < 6; i++) await collector.collect();
  await collector.stop();

  assert.equal(fast.exported, 7);
  assert.equal(hanging.exports, 1);
  // Batch 1 is stuck in export, and batches 2 and 3 fill the queue. So
  // enqueuing batches 4, 5 and 6 drops one each. Each batch reports the drops
  // made before it was assembled.
  const dropped = fast.batches.map((batch) =>
    valueOf(batch, "bpfscope.collector.dropped", { sink: "slow", reason: "queue_full" })
  );
  assert.deepEqual(dropped.slice(0, 6), [0, 0, 0, 0, 1, 2]);
  assert.equal(
    valueOf(fast.batches[6]!, "bpfscope.collector.dropped", { sink: "fast", reason: "queue_full" }),
    0,
  );
});

Deno.test("Collector stop gives up on a hanging sink", async () => {
  const hanging = new HangingSink();
  const diagnostics: LogRecord[] = [];
  const collector = await start({
    sinks: [sinkPlugin(hanging, "slow")],
    shutdownTimeoutMs: 50,
    onDiagnostic: (record) => diagnostics.push(record),
  });
  await collector.collect();
  await collector.stop();

  assert.equal(hanging.shutdowns, 1);
  assert.ok(
    diagnostics.some((record) =>
      record.body.includes(`Sink "slow" did not export its queued batches within 50 ms`)
    ),
    diagnostics.map((record) => record.body).join("\n"),
  );
});

Deno.test("Collector counts failed exports", async () => {
  const failing = new FailingSink();
  const memory = new MemorySink();
  const diagnostics: LogRecord[] = [];
  await using collector = await start({
    sinks: [sinkPlugin(failing, "broken"), sinkPlugin(memory, "memory")],
    onDiagnostic: (record) => diagnostics.push(record),
  });
  for (let i = 0; i < 4; i++) {
    await collector.collect();
    await settle();
  }

  assert.equal(failing.exports, 4);
  assert.equal(memory.exported, 4);
  const failed = memory.batches.map((batch) =>
    valueOf(batch, "bpfscope.collector.dropped", { sink: "broken", reason: "export_failed" })
  );
  assert.deepEqual(failed, [0, 1, 2, 3]);
});

Deno.test("Collector reports a repeated failure once", async () => {
  const memory = new MemorySink();
  const diagnostics: LogRecord[] = [];
  await using collector = await start({
    sinks: [sinkPlugin(new FailingSink(), "broken"), sinkPlugin(memory, "memory")],
    onDiagnostic: (record) => diagnostics.push(record),
  });
  for (let i = 0; i < 3; i++) {
    await collector.collect();
    await settle();
  }

  assert.equal(diagnostics.length, 1);
  assert.equal(diagnostics[0]!.severity, "ERROR");
  assert.match(diagnostics[0]!.body, /Sink "broken" failed to export a batch: disk on fire/);
  assert.equal(memory.batches[1]!.logs.length, 1);
  assert.equal(memory.batches[1]!.logs[0], diagnostics[0]);
});

Deno.test("Collector stop collects and flushes", async () => {
  const probe = new FakeProbe();
  const sink = new MemorySink();
  const collector = await start({ probes: [probePlugin(probe)], sinks: [sinkPlugin(sink)] });
  await collector.collect();
  await collector.stop();

  assert.equal(probe.collects, 2);
  assert.equal(probe.disposed, true);
  assert.equal(sink.exported, 2);
  assert.equal(valueOf(sink.batches[1]!, "test.collects"), 2);
  assert.ok(sink.flushes >= 1);
  assert.equal(sink.isShutDown, true);
});

Deno.test("Collector stop is idempotent", async () => {
  const sink = new MemorySink();
  const collector = await start({ sinks: [sinkPlugin(sink)] });
  const first = collector.stop();
  assert.equal(collector.stop(), first);
  await first;

  assert.equal(sink.exported, 1);
  await assert.rejects(collector.collect(), TypeError);
});

Deno.test("Collector gathers events between collections", async () => {
  const probe = new FakeProbe();
  const sink = new MemorySink();
  const collector = await start({ probes: [probePlugin(probe)], sinks: [sinkPlugin(sink)] });
  const event = (body: string): LogRecord => ({
    timeUnixNano: 1n,
    severity: "INFO",
    body,
    attributes: {},
  });
  probe.emit(event("one"));
  probe.emit(event("two"));
  await settle();
  const batch = await collector.collect();
  probe.emit(event("three"));
  await settle();
  await collector.stop();

  assert.deepEqual(batch.logs.map((log) => log.body), ["one", "two"]);
  assert.deepEqual(sink.batches[1]!.logs.map((log) => log.body), ["three"]);
});

Deno.test("Collector drops events above the limit", async () => {
  const probe = new FakeProbe();
  await using collector = await start({
    probes: [probePlugin(probe, "chatty")],
    sinks: [sinkPlugin(new MemorySink())],
    maxEventsPerCollection: 2,
  });
  for (let i = 0; i < 5; i++) {
    probe.emit({ timeUnixNano: 1n, severity: "INFO", body: `event ${i}`, attributes: {} });
  }
  await settle();
  const batch = await collector.collect();

  assert.equal(batch.logs.length, 2);
  assert.equal(valueOf(batch, "bpfscope.collector.dropped_events", { probe: "chatty" }), 3);
});

Deno.test("Collector survives a failing probe", async () => {
  const failing: Probe = {
    collect: () => {
      throw new TypeError("map vanished");
    },
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  const diagnostics: LogRecord[] = [];
  await using collector = await start({
    probes: [probePlugin(failing, "broken"), probePlugin(new FakeProbe(), "fake")],
    sinks: [sinkPlugin(new MemorySink())],
    onDiagnostic: (record) => diagnostics.push(record),
  });
  const batch = await collector.collect();

  assert.equal(valueOf(batch, "test.collects"), 1);
  assert.equal(valueOf(batch, "bpfscope.collector.probe_errors", { probe: "broken" }), 1);
  assert.equal(valueOf(batch, "bpfscope.collector.probe_errors", { probe: "fake" }), 0);
  assert.match(batch.logs[0]!.body, /Probe "broken" failed to collect: map vanished/);
  assert.equal(diagnostics.length, 1);
});

Deno.test("Collector reports program statistics", async () => {
  const probe: Probe = {
    collect: () => [],
    programStats: () => [{ program: "count", id: 7, runTimeNs: 2_500_000_000n, runCount: 40n }],
    droppedEvents: () => 12,
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  await using collector = await start({
    probes: [probePlugin(probe, "stats")],
    sinks: [sinkPlugin(new MemorySink())],
  });
  const batch = await collector.collect();
  const program = { probe: "stats", "bpf.program.name": "count", "bpf.program.id": 7 };

  assert.equal(valueOf(batch, "bpfscope.program.run_time", program), 2.5);
  assert.equal(metricOf(batch, "bpfscope.program.run_time").unit, "s");
  assert.equal(valueOf(batch, "bpfscope.program.run_count", program), 40);
  assert.equal(valueOf(batch, "bpfscope.probe.dropped_events", { probe: "stats" }), 12);
});

Deno.test("Collector labels repeated sink names", async () => {
  const memory = new MemorySink();
  await using collector = await start({
    sinks: [sinkPlugin(memory, "file"), sinkPlugin(new MemorySink(), "file")],
  });
  const batch = await collector.collect();

  assert.equal(
    valueOf(batch, "bpfscope.collector.dropped", { sink: "file", reason: "queue_full" }),
    0,
  );
  assert.equal(
    valueOf(batch, "bpfscope.collector.dropped", { sink: "file#2", reason: "queue_full" }),
    0,
  );
});

Deno.test("Collector start failure closes what opened", async () => {
  const opened = new FakeProbe();
  const sink = new MemorySink();
  const broken: ProbePlugin = {
    kind: "probe",
    name: "broken",
    description: "fails to open",
    open: () => {
      throw new TypeError("no such tracepoint");
    },
  };

  await assert.rejects(
    start({ probes: [probePlugin(opened), broken], sinks: [sinkPlugin(sink)] }),
    { name: "TypeError", message: 'Failed to open probe "broken": no such tracepoint' },
  );
  assert.equal(opened.disposed, true);
  assert.equal(sink.isShutDown, true);
});

Deno.test("Collector rejects invalid options", async () => {
  await assert.rejects(start({ intervalMs: 0 }), RangeError);
  await assert.rejects(start({ intervalMs: Number.NaN }), RangeError);
  await assert.rejects(start({ queueSize: 0 }), RangeError);
  await assert.rejects(start({ shutdownTimeoutMs: 1.5 }), RangeError);
});

Deno.test("Collector with the syscalls probe", kernelTest(), async () => {
  const sink = new MemorySink();
  const collector = await start({
    probes: [syscallsProbePlugin],
    sinks: [sinkPlugin(sink)],
    enableProgramStats: true,
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const batch = await collector.collect();
  await collector.stop();

  const syscalls = metricOf(batch, "bpfscope.syscalls");
  assert.equal(syscalls.kind, "counter");
  assert.equal(syscalls.unit, "{call}");
  assert.ok(syscalls.points.length > 0);
  const point = syscalls.points[0]!;
  assert.equal(typeof point.attributes.cpu, "number");
  assert.equal(typeof point.attributes["syscall.name"], "string");

  const runCount = metricOf(batch, "bpfscope.program.run_count");
  const id = runCount.points[0]!.attributes["bpf.program.id"];
  assert.equal(typeof id, "number");
  assert.ok(valueOf(batch, "bpfscope.program.run_count", { probe: "syscalls" }) > 0);
  assert.equal(await programGone(id as number), true);
});

Deno.test("Collector goes on without a probe whose collect() hangs", async () => {
  const healthy = new FakeProbe();
  let calls = 0;
  const hanging: Probe = {
    collect(): Metric[] | Promise<Metric[]> {
      calls++;
      return calls === 1 ? [] : new Promise<Metric[]>(() => {});
    },
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  const sink = new MemorySink();
  const collector = await start({
    probes: [probePlugin(hanging, "hanging"), probePlugin(healthy)],
    sinks: [sinkPlugin(sink)],
    intervalMs: 10,
  });
  await collector.collect();
  await collector.collect(); // the hanging call: this one waits out the timeout
  const third = await collector.collect();
  await collector.stop();

  assert.equal(calls, 2, "no second call while the first still hangs");
  assert.ok(healthy.collects >= 3, `the healthy probe ran ${healthy.collects} times`);
  assert.ok(third.metrics.some((metric) => metric.name === "test.collects"));
  const errors = third.metrics.find((metric) => metric.name === "bpfscope.collector.probe_errors");
  const hangingErrors = errors?.kind === "counter"
    ? errors.points.find((point) => point.attributes.probe === "hanging")?.value
    : undefined;
  assert.ok(hangingErrors !== undefined, "no probe_errors point for the hanging probe");
  assert.ok(hangingErrors >= 2, `probe_errors: ${hangingErrors}`);
  assert.ok(
    sink.batches.flatMap((batch) => batch.logs).some((log) =>
      /did not return from collect\(\) within/.test(log.body)
    ),
  );
});
