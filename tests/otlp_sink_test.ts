// Tests of the OTLP sink: configuration, the mapping to OTLP checked by a
// loopback receiver that decodes with the official OpenTelemetry definitions,
// and delivery under failures (503, refused connections, 400, full queue).

import assert from "node:assert/strict";
import type { Batch, ExportResult, Metric } from "../plugins/plugin.ts";
import {
  OtlpExportError,
  OtlpSink,
  type OtlpSinkOptions,
  otlpSinkPlugin,
} from "../plugins/sinks/otlp.ts";
import { registry } from "../plugins/registry.ts";
import { repoPath, run } from "./_helpers.ts";
import { parseSinkSpecOptions, resolveSignalConfig } from "../plugins/sinks/_otlp_config.ts";
import {
  describeErrorBody,
  parseRetryAfter,
  readStatusMessage,
} from "../plugins/sinks/_otlp_sender.ts";
import {
  type DecodedAnyValue,
  type DecodedKeyValue,
  type DecodedLogsRequest,
  type DecodedMetric,
  type DecodedMetricsRequest,
  metricsPartialSuccess,
  OtlpReceiver,
  type ReceivedRequest,
} from "./_scripts/otlp_receiver.ts";

const START_NS = 1_700_000_000_123_456_789n;
const TIME_NS = 1_700_000_010_987_654_321n;
const EVENT_NS = 1_700_000_009_000_000_001n;

/** Retries in milliseconds rather than seconds, so that failure tests stay short. */
const FAST_RETRY = {
  initialBackoffMs: 5,
  maxBackoffMs: 20,
  multiplier: 2,
  jitter: 0.2,
  maxElapsedMs: 5000,
};

function sinkFor(receiver: OtlpReceiver, options: OtlpSinkOptions = {}): OtlpSink {
  return new OtlpSink({ endpoint: receiver.url, env: {}, retry: FAST_RETRY, ...options });
}

function counter(value: number): Metric {
  return {
    kind: "counter",
    name: "bpfscope.syscalls",
    description: "System calls entered",
    unit: "{call}",
    startTimeUnixNano: START_NS,
    points: [
      { attributes: { cpu: 0, "syscall.name": "read" }, value },
      { attributes: { cpu: 1, "syscall.name": "read" }, value: 7 },
    ],
  };
}

function counterBatch(value: number): Batch {
  return {
    resource: { "service.name": "bpfscope-test" },
    timeUnixNano: TIME_NS,
    metrics: [counter(value)],
    logs: [],
  };
}

function metricsBatch(): Batch {
  return {
    resource: { "service.name": "bpfscope-test", "host.name": "lab" },
    timeUnixNano: TIME_NS,
    metrics: [
      counter(1234),
      {
        kind: "gauge",
        name: "bpfscope.collector.duration",
        description: "Time the last collection took",
        unit: "s",
        points: [{ attributes: {}, value: 0.0012 }],
      },
      {
        kind: "gauge",
        name: "bpfscope.maps",
        description: "Maps loaded",
        unit: "{map}",
        points: [{ attributes: {}, value: 12 }],
      },
      {
        kind: "histogram",
        name: "bpfscope.block.latency",
        description: "Block I/O latency",
        unit: "us",
        startTimeUnixNano: START_NS,
        points: [{
          attributes: { disk: "vda" },
          count: 4,
          sum: 13,
          buckets: { kind: "log2", counts: [1, 1, 0, 2] },
        }],
      },
      {
        kind: "histogram",
        name: "bpfscope.packet.size",
        description: "Packet sizes",
        unit: "By",
        startTimeUnixNano: START_NS,
        points: [{
          attributes: {},
          count: 7,
          buckets: { kind: "explicit", bounds: [10, 20, 30], counts: [4, 2, 0, 1] },
        }],
      },
      {
        kind: "gauge",
        name: "bpfscope.attributes",
        description: "A gauge whose point has one attribute of each type",
        unit: "1",
        points: [{
          attributes: {
            int: 42,
            double: 2.5,
            flag: true,
            text: "x",
            "small.bigint": 123n,
            "huge.bigint": 2n ** 63n - 1n,
          },
          value: 1,
        }],
      },
    ],
    logs: [],
  };
}

function logsBatch(): Batch {
  return {
    resource: { "service.name": "bpfscope-test" },
    timeUnixNano: TIME_NS,
    metrics: [],
    logs: [
      {
        timeUnixNano: EVENT_NS,
        severity: "INFO",
        body: "exec /usr/bin/true",
        attributes: { "event.name": "process.exec", "process.pid": 4242 },
      },
      {
        timeUnixNano: EVENT_NS + 1n,
        severity: "WARN",
        body: "ring buffer full",
        attributes: { lost: 3 },
      },
    ],
  };
}

function attributeMap(
  attributes: readonly DecodedKeyValue[] | undefined,
): Record<string, DecodedAnyValue> {
  return Object.fromEntries(
    (attributes ?? []).map((attribute) => [attribute.key, attribute.value]),
  );
}

function onlyMetrics(request: ReceivedRequest | undefined): DecodedMetric[] {
  const decoded: DecodedMetricsRequest | undefined = request?.metrics;
  assert.ok(decoded !== undefined, "no decoded metrics request");
  assert.equal(decoded.resourceMetrics.length, 1);
  const scopes = decoded.resourceMetrics[0]?.scopeMetrics ?? [];
  assert.equal(scopes.length, 1);
  return scopes[0]?.metrics ?? [];
}

function metricNamed(metrics: readonly DecodedMetric[], name: string): DecodedMetric {
  const metric = metrics.find((candidate) => candidate.name === name);
  assert.ok(metric !== undefined, `metric ${name} missing`);
  return metric;
}

/** Returns the value of the first counter point in an accepted request. */
function counterValue(request: ReceivedRequest): number {
  const point = metricNamed(onlyMetrics(request), "bpfscope.syscalls").sum?.dataPoints[0];
  return Number(point?.asInt);
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 5000;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new assert.AssertionError({ message: `timed out waiting for ${what}` });
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function failure(result: ExportResult): Error {
  assert.equal(result.ok, false);
  if (result.ok) throw new assert.AssertionError({ message: "expected a failed export" });
  return result.error;
}

async function exportAndReceive(
  protocol: "http/protobuf" | "http/json",
  batch: Batch,
): Promise<ReceivedRequest> {
  await using receiver = OtlpReceiver.start();
  await using sink = sinkFor(receiver, { protocol });
  const result = await sink.export(batch);
  assert.deepEqual(result, { ok: true });
  assert.equal(receiver.requests.length, 1);
  const [request] = receiver.requests;
  assert.ok(request !== undefined);
  return request;
}

function checkMetricsRequest(request: ReceivedRequest): void {
  assert.equal(request.path, "/v1/metrics");
  const resource = attributeMap(request.metrics?.resourceMetrics[0]?.resource?.attributes);
  assert.deepEqual(resource["service.name"], { stringValue: "bpfscope-test" });
  assert.deepEqual(resource["host.name"], { stringValue: "lab" });
  assert.equal(request.metrics?.resourceMetrics[0]?.scopeMetrics[0]?.scope?.name, "bpfscope");

  const metrics = onlyMetrics(request);
  assert.deepEqual(metrics.map((metric) => metric.name), [
    "bpfscope.syscalls",
    "bpfscope.collector.duration",
    "bpfscope.maps",
    "bpfscope.block.latency",
    "bpfscope.packet.size",
    "bpfscope.attributes",
  ]);

  const syscalls = metricNamed(metrics, "bpfscope.syscalls");
  assert.equal(syscalls.description, "System calls entered");
  assert.equal(syscalls.unit, "{call}");
  assert.equal(syscalls.sum?.aggregationTemporality, 2, "temporality is not CUMULATIVE (2)");
  assert.equal(syscalls.sum?.isMonotonic, true);
  const [first, second] = syscalls.sum?.dataPoints ?? [];
  assert.equal(first?.startTimeUnixNano, START_NS.toString());
  assert.equal(first?.timeUnixNano, TIME_NS.toString());
  assert.equal(first?.asInt, "1234");
  assert.deepEqual(attributeMap(first?.attributes), {
    cpu: { intValue: "0" },
    "syscall.name": { stringValue: "read" },
  });
  assert.equal(second?.asInt, "7");
  assert.deepEqual(attributeMap(second?.attributes).cpu, { intValue: "1" });

  const duration = metricNamed(metrics, "bpfscope.collector.duration");
  assert.equal(duration.gauge?.dataPoints[0]?.asDouble, 0.0012);
  assert.equal(duration.gauge?.dataPoints[0]?.timeUnixNano, TIME_NS.toString());
  assert.equal(
    duration.gauge?.dataPoints[0]?.startTimeUnixNano ?? "0",
    "0",
    "a gauge has no start time",
  );
  assert.equal(metricNamed(metrics, "bpfscope.maps").gauge?.dataPoints[0]?.asInt, "12");

  const latency = metricNamed(metrics, "bpfscope.block.latency");
  assert.equal(latency.histogram?.aggregationTemporality, 2);
  const log2Point = latency.histogram?.dataPoints[0];
  assert.deepEqual(log2Point?.explicitBounds, [0, 1, 3, 7]);
  assert.deepEqual(log2Point?.bucketCounts, ["1", "1", "0", "2", "0"]);
  assert.equal(log2Point?.count, "4");
  assert.equal(log2Point?.sum, 13);
  assert.equal(log2Point?.startTimeUnixNano, START_NS.toString());
  assert.equal(log2Point?.timeUnixNano, TIME_NS.toString());
  assert.deepEqual(attributeMap(log2Point?.attributes), { disk: { stringValue: "vda" } });

  const explicitPoint = metricNamed(metrics, "bpfscope.packet.size").histogram?.dataPoints[0];
  assert.deepEqual(explicitPoint?.explicitBounds, [10, 20, 30]);
  assert.deepEqual(explicitPoint?.bucketCounts, ["4", "2", "0", "1"]);
  assert.equal(explicitPoint?.count, "7");
  assert.equal(explicitPoint?.sum, undefined, "no sum was given");

  const typed = attributeMap(
    metricNamed(metrics, "bpfscope.attributes").gauge?.dataPoints[0]?.attributes,
  );
  assert.deepEqual(typed.int, { intValue: "42" });
  assert.deepEqual(typed.double, { doubleValue: 2.5 });
  assert.deepEqual(typed.flag, { boolValue: true });
  assert.deepEqual(typed.text, { stringValue: "x" });
  assert.deepEqual(typed["small.bigint"], { intValue: "123" });
  assert.deepEqual(typed["huge.bigint"], { stringValue: "9223372036854775807" });
}

function checkLogsRequest(request: ReceivedRequest): void {
  assert.equal(request.path, "/v1/logs");
  const decoded: DecodedLogsRequest | undefined = request.logs;
  assert.ok(decoded !== undefined);
  const resource = attributeMap(decoded.resourceLogs[0]?.resource?.attributes);
  assert.deepEqual(resource["service.name"], { stringValue: "bpfscope-test" });
  assert.equal(decoded.resourceLogs[0]?.scopeLogs.length, 1);
  assert.equal(decoded.resourceLogs[0]?.scopeLogs[0]?.scope?.name, "bpfscope");

  const [exec, full] = decoded.resourceLogs[0]?.scopeLogs[0]?.logRecords ?? [];
  assert.equal(exec?.timeUnixNano, EVENT_NS.toString());
  assert.equal(exec?.observedTimeUnixNano, TIME_NS.toString());
  assert.equal(exec?.severityNumber, 9, "INFO is severity number 9");
  assert.equal(exec?.severityText, "INFO");
  assert.deepEqual(exec?.body, { stringValue: "exec /usr/bin/true" });
  assert.deepEqual(attributeMap(exec?.attributes), {
    "event.name": { stringValue: "process.exec" },
    "process.pid": { intValue: "4242" },
  });
  assert.equal(full?.timeUnixNano, (EVENT_NS + 1n).toString());
  assert.equal(full?.severityNumber, 13, "WARN is severity number 13");
  assert.equal(full?.severityText, "WARN");
  assert.deepEqual(full?.body, { stringValue: "ring buffer full" });
}

Deno.test("config defaults", () => {
  const metrics = resolveSignalConfig("metrics", {}, () => undefined);
  assert.equal(metrics.url, "http://localhost:4318/v1/metrics");
  assert.equal(metrics.protocol, "http/protobuf");
  assert.equal(metrics.compression, "none");
  assert.equal(metrics.timeoutMs, 10_000);
  assert.deepEqual(metrics.headers, {});
  assert.equal(
    resolveSignalConfig("logs", {}, () => undefined).url,
    "http://localhost:4318/v1/logs",
  );
});

Deno.test("config base endpoint gets signal paths", () => {
  const env = (name: string) =>
    name === "OTEL_EXPORTER_OTLP_ENDPOINT" ? "http://collector:4318/otlp/" : undefined;
  assert.equal(
    resolveSignalConfig("metrics", {}, env).url,
    "http://collector:4318/otlp/v1/metrics",
  );
  assert.equal(resolveSignalConfig("logs", {}, env).url, "http://collector:4318/otlp/v1/logs");
  const noSlash = resolveSignalConfig(
    "logs",
    { endpoint: "http://collector:4318/otlp" },
    () => undefined,
  );
  assert.equal(noSlash.url, "http://collector:4318/otlp/v1/logs");
});

Deno.test("config signal endpoint used as is", () => {
  const variables: Record<string, string> = {
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://base:4318",
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://metrics:9000/custom",
  };
  const env = (name: string) => variables[name];
  assert.equal(resolveSignalConfig("metrics", {}, env).url, "http://metrics:9000/custom");
  assert.equal(resolveSignalConfig("logs", {}, env).url, "http://base:4318/v1/logs");
});

Deno.test("config options override variables", () => {
  const variables: Record<string, string> = {
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://metrics:9000/custom",
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
    OTEL_EXPORTER_OTLP_TIMEOUT: "2500",
  };
  const env = (name: string) => variables[name];
  const config = resolveSignalConfig(
    "metrics",
    {
      endpoint: "http://127.0.0.1:4318",
      protocol: "http/protobuf",
      compression: "none",
      timeoutMs: 700,
    },
    env,
  );
  assert.equal(config.url, "http://127.0.0.1:4318/v1/metrics");
  assert.equal(config.protocol, "http/protobuf");
  assert.equal(config.compression, "none");
  assert.equal(config.timeoutMs, 700);
});

Deno.test("config per-signal variables win", () => {
  const variables: Record<string, string> = {
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: "http/protobuf",
    OTEL_EXPORTER_OTLP_TIMEOUT: "2500",
    OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: "700",
    OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
    OTEL_EXPORTER_OTLP_METRICS_COMPRESSION: "none",
  };
  const env = (name: string) => variables[name];
  const metrics = resolveSignalConfig("metrics", {}, env);
  const logs = resolveSignalConfig("logs", {}, env);
  assert.equal(metrics.protocol, "http/json");
  assert.equal(logs.protocol, "http/protobuf");
  assert.equal(metrics.timeoutMs, 2500);
  assert.equal(logs.timeoutMs, 700);
  assert.equal(metrics.compression, "none");
  assert.equal(logs.compression, "gzip");
});

Deno.test("config headers merge", () => {
  const variables: Record<string, string> = {
    OTEL_EXPORTER_OTLP_HEADERS: " api-key = a%3Db%2Cc , tenant=lab, mode=x",
    OTEL_EXPORTER_OTLP_LOGS_HEADERS: "tenant=logs-team",
  };
  const env = (name: string) => variables[name];
  const options = { headers: { mode: "from-options" } };
  assert.deepEqual(resolveSignalConfig("metrics", options, env).headers, {
    "api-key": "a=b,c",
    tenant: "lab",
    mode: "from-options",
  });
  assert.deepEqual(resolveSignalConfig("logs", options, env).headers, {
    "api-key": "a=b,c",
    tenant: "logs-team",
    mode: "from-options",
  });
});

Deno.test("config empty variable is unset", () => {
  const env = (name: string) => name === "OTEL_EXPORTER_OTLP_PROTOCOL" ? "" : undefined;
  assert.equal(resolveSignalConfig("metrics", {}, env).protocol, "http/protobuf");
});

Deno.test("config rejects invalid values", () => {
  const only = (name: string, value: string) => (variable: string) =>
    variable === name ? value : undefined;
  assert.throws(
    () => resolveSignalConfig("metrics", {}, only("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")),
    {
      name: "RangeError",
      message:
        /"grpc" from OTEL_EXPORTER_OTLP_PROTOCOL: expected one of http\/protobuf, http\/json/,
    },
  );
  assert.throws(
    () => resolveSignalConfig("logs", {}, only("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "soon")),
    {
      name: "RangeError",
      message: /OTEL_EXPORTER_OTLP_LOGS_TIMEOUT \("soon"\)/,
    },
  );
  assert.throws(
    () => resolveSignalConfig("metrics", {}, only("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x")),
    {
      name: "RangeError",
      message: /expected an http:\/\/ or https:\/\/ URL/,
    },
  );
  assert.throws(
    () => resolveSignalConfig("metrics", {}, only("OTEL_EXPORTER_OTLP_HEADERS", "novalue")),
    {
      name: "RangeError",
      message: /Invalid header "novalue" in OTEL_EXPORTER_OTLP_HEADERS/,
    },
  );
  assert.throws(
    () => resolveSignalConfig("metrics", {}, only("OTEL_EXPORTER_OTLP_HEADERS", "k=%zz")),
    {
      name: "RangeError",
      message: /percent-encoding/,
    },
  );
});

Deno.test("sink spec options parse", () => {
  assert.deepEqual(
    parseSinkSpecOptions("http://127.0.0.1:4318,protocol=http/json,compression=gzip,timeout=5000"),
    {
      endpoint: "http://127.0.0.1:4318",
      protocol: "http/json",
      compression: "gzip",
      timeoutMs: 5000,
    },
  );
  assert.deepEqual(parseSinkSpecOptions("http://h:4318/path?a=1"), {
    endpoint: "http://h:4318/path?a=1",
  });
  assert.deepEqual(parseSinkSpecOptions(""), {});
  assert.throws(() => parseSinkSpecOptions("level=3"), {
    name: "RangeError",
    message: /Unknown otlp sink option "level"/,
  });
  assert.throws(() => parseSinkSpecOptions("protocol=grpc"), { name: "RangeError" });
});

Deno.test("plugin creates sink from spec", async () => {
  assert.equal(otlpSinkPlugin.kind, "sink");
  assert.equal(otlpSinkPlugin.name, "otlp");
  const context = { resource: {}, signal: new AbortController().signal };
  await using sink = await otlpSinkPlugin.create(
    context,
    "http://127.0.0.1:4318,protocol=http/json",
  );
  assert.ok(sink instanceof OtlpSink);
  assert.equal(sink.config.metrics.url, "http://127.0.0.1:4318/v1/metrics");
  assert.equal(sink.config.logs.protocol, "http/json");
});

Deno.test("retry-after parses seconds and dates", () => {
  const now = Date.parse("Wed, 21 Oct 2015 07:28:00 GMT");
  assert.equal(parseRetryAfter("3", now), 3000);
  assert.equal(parseRetryAfter(" 0 ", now), 0);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:02 GMT", now), 2000);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:27:00 GMT", now), 0, "a past date means now");
  assert.equal(parseRetryAfter("soon", now), undefined);
  assert.equal(parseRetryAfter(null, now), undefined);
});

Deno.test("error body message decodes", () => {
  // google.rpc.Status { code: 3, message: "bad name" } on the wire: field 1 varint, field 2 bytes.
  const status = new Uint8Array([0x08, 0x03, 0x12, 0x08, ...new TextEncoder().encode("bad name")]);
  assert.equal(readStatusMessage(status), "bad name");
  assert.equal(describeErrorBody(status, "application/x-protobuf"), "bad name");
  assert.equal(
    readStatusMessage(new Uint8Array([0x12, 0x09, 0x41])),
    undefined,
    "a truncated field is not a Status",
  );
  const json = new TextEncoder().encode(JSON.stringify({ code: 3, message: "bad unit" }));
  assert.equal(describeErrorBody(json, "application/json; charset=utf-8"), "bad unit");
  assert.equal(
    describeErrorBody(new TextEncoder().encode(" plain text\n"), "text/plain"),
    "plain text",
  );
  assert.equal(
    describeErrorBody(new TextEncoder().encode("x".repeat(600)), null),
    `${"x".repeat(500)}...`,
  );
});

Deno.test("metrics arrive over protobuf", async () => {
  const request = await exportAndReceive("http/protobuf", metricsBatch());
  assert.equal(request.headers.get("content-type"), "application/x-protobuf");
  checkMetricsRequest(request);
});

Deno.test("metrics arrive over json", async () => {
  const request = await exportAndReceive("http/json", metricsBatch());
  assert.equal(request.headers.get("content-type"), "application/json");
  checkMetricsRequest(request);
});

Deno.test("logs arrive over protobuf", async () => {
  const request = await exportAndReceive("http/protobuf", logsBatch());
  checkLogsRequest(request);
});

Deno.test("logs arrive over json", async () => {
  const request = await exportAndReceive("http/json", logsBatch());
  checkLogsRequest(request);
});

Deno.test("batch with both signals sends two requests", async () => {
  await using receiver = OtlpReceiver.start();
  await using sink = sinkFor(receiver);
  const batch = { ...metricsBatch(), logs: logsBatch().logs };
  assert.deepEqual(await sink.export(batch), { ok: true });
  assert.deepEqual(receiver.requests.map((request) => request.path).sort(), [
    "/v1/logs",
    "/v1/metrics",
  ]);
});

Deno.test("empty batch sends nothing", async () => {
  await using receiver = OtlpReceiver.start();
  await using sink = sinkFor(receiver);
  assert.deepEqual(
    await sink.export({ resource: {}, timeUnixNano: TIME_NS, metrics: [], logs: [] }),
    { ok: true },
  );
  assert.equal(receiver.requests.length, 0);
});

Deno.test("gzip bodies decode", async () => {
  await using receiver = OtlpReceiver.start();
  await using sink = sinkFor(receiver, { compression: "gzip" });
  assert.deepEqual(await sink.export(metricsBatch()), { ok: true });
  assert.deepEqual(await sink.export(logsBatch()), { ok: true });
  const [metrics, logs] = receiver.requests;
  assert.equal(metrics?.headers.get("content-encoding"), "gzip");
  assert.equal(logs?.headers.get("content-encoding"), "gzip");
  assert.ok(metrics !== undefined);
  assert.ok(logs !== undefined);
  checkMetricsRequest(metrics);
  checkLogsRequest(logs);
});

Deno.test("503 retries lose no counter value", async () => {
  await using receiver = OtlpReceiver.start();
  let healthy = false;
  receiver.respond = (_request, index) => {
    if (healthy) return undefined;
    // Every other 503 carries "Retry-After: 0", so both retry paths run.
    const headers: HeadersInit = index % 2 === 0 ? { "retry-after": "0" } : {};
    return new Response("overloaded", { status: 503, headers });
  };
  await using sink = sinkFor(receiver);

  const exported = [10, 20, 30, 40, 50, 60];
  const results: Promise<ExportResult>[] = [];
  for (const value of exported) {
    results.push(sink.export(counterBatch(value)));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await waitFor(() => receiver.requests.length >= 8, "eight rejected requests");
  healthy = true;

  for (const result of await Promise.all(results)) assert.deepEqual(result, { ok: true });
  const seen = receiver.accepted.map(counterValue);
  assert.deepEqual(seen, exported, "each exported value arrives once, in order");
  for (let i = 1; i < seen.length; i++) {
    assert.ok((seen[i] ?? 0) >= (seen[i - 1] ?? 0), `value ${i} decreased: ${seen.join(", ")}`);
  }
  assert.equal(seen.at(-1), exported.at(-1));
  const rejected = receiver.requests.filter((request) => request.status === 503);
  assert.ok(rejected.length >= 8);
  assert.equal(sink.stats.metrics.retries, rejected.length);
  assert.equal(sink.stats.metrics.delivered, exported.length);
  assert.equal(sink.stats.metrics.failed, 0);
});

Deno.test("retry-after delays the retry", async () => {
  await using receiver = OtlpReceiver.start({
    respond: (_request, index) =>
      index === 0
        ? new Response(null, { status: 503, headers: { "retry-after": "1" } })
        : undefined,
  });
  await using sink = sinkFor(receiver);
  assert.deepEqual(await sink.export(counterBatch(1)), { ok: true });
  const [first, second] = receiver.requests;
  assert.ok(first !== undefined);
  assert.ok(second !== undefined);
  // The backoff alone would retry after about 5 ms.
  const waited = second.arrivedAt - first.arrivedAt;
  assert.ok(waited >= 950, `retried after ${waited} ms, before the 1 s of Retry-After`);
});

Deno.test("refused connection retried until listener", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();

  await using sink = new OtlpSink({
    endpoint: `http://127.0.0.1:${port}`,
    env: {},
    retry: FAST_RETRY,
  });
  const pending = sink.export(counterBatch(5));
  await waitFor(() => sink.stats.metrics.retries >= 2, "two retries");
  await using receiver = OtlpReceiver.start({ port });

  assert.deepEqual(await pending, { ok: true });
  assert.equal(receiver.accepted.length, 1);
  assert.equal(counterValue(receiver.accepted[0] as ReceivedRequest), 5);
});

Deno.test("400 is not retried", async () => {
  const status = new Uint8Array([
    0x08,
    0x03,
    0x12,
    0x0f,
    ...new TextEncoder().encode("bad metric name"),
  ]);
  await using receiver = OtlpReceiver.start({
    respond: () =>
      new Response(status, { status: 400, headers: { "content-type": "application/x-protobuf" } }),
  });
  await using sink = sinkFor(receiver);
  const error = failure(await sink.export(counterBatch(1)));
  assert.ok(error instanceof OtlpExportError);
  assert.equal(error.status, 400);
  assert.equal(error.signal, "metrics");
  assert.match(error.message, /rejected the metrics request with HTTP 400: bad metric name/);
  assert.equal(receiver.requests.length, 1);
  assert.equal(sink.stats.metrics.retries, 0);
  assert.equal(sink.stats.metrics.failed, 1);
});

Deno.test("retries stop at time limit", async () => {
  await using receiver = OtlpReceiver.start({ respond: () => new Response(null, { status: 503 }) });
  // Long enough that a loaded machine still makes several attempts before the limit.
  await using sink = sinkFor(receiver, { retry: { ...FAST_RETRY, maxElapsedMs: 1_000 } });
  const error = failure(await sink.export(counterBatch(1)));
  assert.ok(error instanceof OtlpExportError);
  assert.match(error.message, /Gave up on a metrics batch after \d+ attempt\(s\): HTTP 503/);
  assert.equal(error.status, 503);
  assert.ok(error.attempts > 1);
  assert.equal(error.attempts, receiver.requests.length);
});

Deno.test("full queue drops oldest waiting", async () => {
  let healthy = false;
  await using receiver = OtlpReceiver.start({
    respond: () => healthy ? undefined : new Response(null, { status: 503 }),
  });
  await using sink = sinkFor(receiver, { maxQueuedBatches: 2 });

  const first = sink.export(counterBatch(1));
  await waitFor(() => receiver.requests.length >= 1, "the first request");
  const waiting = [2, 3, 4, 5].map((value) => sink.export(counterBatch(value)));
  const [second, third] = await Promise.all(waiting.slice(0, 2));
  healthy = true;

  assert.match(failure(second as ExportResult).message, /retry queue is full/);
  assert.match(failure(third as ExportResult).message, /retry queue is full/);
  assert.deepEqual(await first, { ok: true });
  for (const result of await Promise.all(waiting.slice(2))) assert.deepEqual(result, { ok: true });
  assert.deepEqual(receiver.accepted.map(counterValue), [1, 4, 5]);
  assert.equal(sink.stats.metrics.dropped, 2);
});

Deno.test("headers from environment arrive", async () => {
  await using receiver = OtlpReceiver.start();
  const variables = {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=s3cret%3D%3D,x-tenant=lab",
    OTEL_EXPORTER_OTLP_METRICS_HEADERS: "x-tenant=metrics-team",
  };
  const saved = Object.keys(variables).map((name) => [name, Deno.env.get(name)] as const);
  for (const [name, value] of Object.entries(variables)) Deno.env.set(name, value);
  try {
    await using sink = new OtlpSink({ retry: FAST_RETRY });
    assert.deepEqual(await sink.export(counterBatch(1)), { ok: true });
  } finally {
    for (const [name, value] of saved) {
      value === undefined ? Deno.env.delete(name) : Deno.env.set(name, value);
    }
  }
  const [request] = receiver.requests;
  assert.equal(request?.path, "/v1/metrics");
  assert.equal(request?.headers.get("x-api-key"), "s3cret==");
  assert.equal(request?.headers.get("x-tenant"), "metrics-team");
});

Deno.test("partial success is counted", async () => {
  await using receiver = OtlpReceiver.start({
    respond: () =>
      new Response(metricsPartialSuccess(2, "duplicate series"), {
        status: 200,
        headers: { "content-type": "application/x-protobuf" },
      }),
  });
  await using sink = sinkFor(receiver);
  assert.deepEqual(await sink.export(counterBatch(1)), { ok: true });
  assert.equal(sink.stats.metrics.rejectedItems, 2);
  assert.equal(sink.stats.metrics.lastRejectionMessage, "duplicate series");
});

Deno.test("shutdown waits for recovering collector", async () => {
  await using receiver = OtlpReceiver.start({
    respond: (_request, index) => index < 3 ? new Response(null, { status: 503 }) : undefined,
  });
  const sink = sinkFor(receiver);
  const pending = sink.export(counterBatch(9));
  await sink.shutdown();
  assert.deepEqual(await pending, { ok: true });
  assert.equal(receiver.accepted.length, 1);
});

Deno.test("shutdown gives up after its timeout", async () => {
  await using receiver = OtlpReceiver.start({ respond: () => new Response(null, { status: 503 }) });
  const sink = sinkFor(receiver, { shutdownTimeoutMs: 50 });
  const pending = sink.export(counterBatch(1));
  await waitFor(() => receiver.requests.length >= 1, "the first request");
  await sink.shutdown();
  assert.match(failure(await pending).message, /shut down/);
  assert.equal(sink.stats.metrics.failed, 1);

  const late = failure(await sink.export(counterBatch(2)));
  assert.ok(late instanceof OtlpExportError);
  assert.match(late.message, /shut down/);
  await sink.shutdown();
});

Deno.test("invalid histogram fails export", async () => {
  await using receiver = OtlpReceiver.start();
  await using sink = sinkFor(receiver);
  const batch: Batch = {
    resource: {},
    timeUnixNano: TIME_NS,
    metrics: [{
      kind: "histogram",
      name: "bad.histogram",
      description: "Counts do not match the bounds",
      unit: "1",
      startTimeUnixNano: START_NS,
      points: [{
        attributes: {},
        count: 1,
        buckets: { kind: "explicit", bounds: [1, 2], counts: [1] },
      }],
    }],
    logs: [],
  };
  const error = failure(await sink.export(batch));
  assert.ok(error instanceof RangeError);
  assert.match(error.message, /"bad.histogram": 2 bounds need 3 counts/);
  assert.equal(receiver.requests.length, 0);
});

Deno.test("plugin is registered", () => {
  assert.equal(registry.sink("otlp"), otlpSinkPlugin);
});

Deno.test("zero queue still sends when idle", async () => {
  await using receiver = OtlpReceiver.start();
  await using sink = sinkFor(receiver, { maxQueuedBatches: 0 });
  assert.deepEqual(await sink.export(counterBatch(1)), { ok: true });
  assert.equal(sink.stats.metrics.dropped, 0);
  assert.equal(receiver.accepted.length, 1);
});

Deno.test("shutdown keeps first export", async () => {
  const result = await run(Deno.execPath(), [
    "run",
    "--allow-all",
    repoPath("tests/_scripts/otlp_first_export.ts"),
  ]);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as { ok: boolean; error: string; accepted: number };
  assert.equal(report.error, "");
  assert.equal(report.ok, true);
  assert.equal(report.accepted, 1);
});

Deno.test("Retry-After 0 keeps the backoff", async () => {
  await using receiver = OtlpReceiver.start({
    respond: () => new Response(null, { status: 429, headers: { "retry-after": "0" } }),
  });
  // Backoff from 20 ms to 40 ms over 300 ms allows about ten attempts; without the
  // backoff floor, Retry-After: 0 sends hundreds.
  await using sink = sinkFor(receiver, {
    retry: { ...FAST_RETRY, initialBackoffMs: 20, maxBackoffMs: 40, maxElapsedMs: 300 },
  });
  const result = await sink.export(counterBatch(1));
  assert.equal(result.ok, false);
  assert.ok(receiver.requests.length <= 20, `${receiver.requests.length} requests`);
  assert.ok(receiver.requests.length >= 2, `${receiver.requests.length} requests`);
});

Deno.test("invalid header is rejected when the sink is created", () => {
  assert.throws(
    () =>
      new OtlpSink({
        endpoint: "http://127.0.0.1:1",
        env: { OTEL_EXPORTER_OTLP_HEADERS: "bad header=1" },
      }),
    /Invalid OTLP header "bad header"/,
  );
  assert.throws(
    () => new OtlpSink({ endpoint: "http://127.0.0.1:1", env: {}, timeoutMs: 3_000_000_000 }),
    /up to 2147483647/,
  );
});
