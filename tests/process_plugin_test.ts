import assert from "node:assert/strict";
import { Collector } from "../plugins/collector.ts";
import type { LogRecord } from "../plugins/plugin.ts";
import { processEventRecord, processProbePlugin } from "../plugins/probes/process_plugin.ts";
import { memorySinkPlugin } from "../plugins/sinks/memory.ts";
import { kernelTest } from "./_helpers.ts";

Deno.test("processEventRecord() maps an exit by signal to a WARN record", () => {
  const record = processEventRecord({
    kind: "exit",
    timestamp: new Date(1_700_000_000_123),
    bootTimeNs: 5n,
    pid: 42,
    ppid: 1,
    uid: 1000,
    comm: "sleep",
    exitCode: 0,
    signal: 9,
    coreDumped: false,
    lifetimeMs: 12.5,
  });
  assert.equal(record.timeUnixNano, 1_700_000_000_123_000_000n);
  assert.equal(record.severity, "WARN");
  assert.equal(record.body, 'exit pid=42 comm="sleep" signal=9');
  assert.equal(record.attributes["event.name"], "process.exit");
  assert.equal(record.attributes["process.exit.signal"], 9);
  assert.equal(record.attributes["process.real_user.id"], 1000);
});

Deno.test({
  name: "process plugin delivers exec and exit events to sinks",
  ...kernelTest(),
  async fn() {
    await using collector = await Collector.start({
      probes: [processProbePlugin],
      sinks: [memorySinkPlugin],
      intervalMs: 60_000,
    });
    const child = new Deno.Command("sh", { args: ["-c", "exit 4"] }).spawn();
    const { code } = await child.status;
    assert.equal(code, 4);

    const logs: LogRecord[] = [];
    const deadline = Date.now() + 15_000;
    const mine = (name: string) =>
      logs.find((log) =>
        log.attributes["event.name"] === name && log.attributes["process.pid"] === child.pid
      );
    while (
      (mine("process.exec") === undefined || mine("process.exit") === undefined) &&
      Date.now() < deadline
    ) {
      logs.push(...(await collector.collect()).logs);
    }
    const exec = mine("process.exec");
    const exit = mine("process.exit");
    assert.ok(exec !== undefined, `no exec event for pid ${child.pid}`);
    assert.ok(exit !== undefined, `no exit event for pid ${child.pid}`);
    assert.match(String(exec.attributes["process.executable.path"]), /\/sh$/);
    assert.equal(exit.attributes["process.exit.code"], 4);

    const batch = await collector.collect();
    const counter = batch.metrics.find((metric) => metric.name === "bpfscope.process.events");
    assert.ok(counter !== undefined);
    assert.equal(counter.kind, "counter");
    const exits = counter.points.find((point) => point.attributes["event.name"] === "process.exit");
    assert.ok(exits !== undefined);
    assert.ok(exits.value >= 1);
  },
});
