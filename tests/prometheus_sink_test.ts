import assert from "node:assert/strict";
import { ClosedError } from "../ffi/errors.ts";
import type { Batch, CounterMetric, HistogramMetric, Metric } from "../plugins/plugin.ts";
import { SyscallsProbe } from "../plugins/probes/syscalls.ts";
import { registry } from "../plugins/registry.ts";
import {
  formatPrometheus,
  parsePrometheusAddress,
  PROMETHEUS_CONTENT_TYPE,
  PROMETHEUS_DEFAULT_PORT,
  prometheusLabelName,
  prometheusMetricName,
  PrometheusSink,
  prometheusSinkPlugin,
  prometheusUnit,
} from "../plugins/sinks/prometheus.ts";
import { kernelTest } from "./_helpers.ts";
import { PrometheusServer, prometheusTest, PROMTOOL_BINARY } from "./_prometheus.ts";

// ---------------------------------------------------------------------------
// A small parser of the text format, so that tests check samples, not layout.
// ---------------------------------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: string;
}

interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  helps: Map<string, string>;
}

function unescapeLabelValue(text: string): string {
  return text.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
}

function parseExposition(text: string): Exposition {
  const exposition: Exposition = { samples: [], types: new Map(), helps: new Map() };
  assert.ok(text === "" || text.endsWith("\n"), "the exposition ends with a line feed");
  for (const line of text.split("\n").slice(0, -1)) {
    const comment = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (comment !== null) {
      const [, keyword, name, rest] = comment;
      (keyword === "HELP" ? exposition.helps : exposition.types).set(name!, rest!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(sample !== null, `not a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (
      const pair of (sample[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)
    ) {
      labels[pair[1]!] = unescapeLabelValue(pair[2]!);
    }
    exposition.samples.push({ name: sample[1]!, labels, value: sample[3]! });
  }
  return exposition;
}

function samplesNamed(exposition: Exposition, name: string): Sample[] {
  return exposition.samples.filter((sample) => sample.name === name);
}

function batchOf(metrics: Metric[], resource: Batch["resource"] = {}): Batch {
  return { resource, timeUnixNano: 1_700_000_000_000_000_000n, metrics, logs: [] };
}

function counter(name: string, unit: string, points: CounterMetric["points"]): CounterMetric {
  return {
    kind: "counter",
    name,
    description: `${name} counter`,
    unit,
    startTimeUnixNano: 0n,
    points,
  };
}

function histogram(name: string, unit: string, points: HistogramMetric["points"]): HistogramMetric {
  return {
    kind: "histogram",
    name,
    description: `${name} histogram`,
    unit,
    startTimeUnixNano: 0n,
    points,
  };
}

function log2Bucket(value: number): number {
  return value === 0 ? 0 : Math.floor(Math.log2(value)) + 1;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Names, units and labels
// ---------------------------------------------------------------------------

Deno.test("metric name invalid characters", () => {
  const gauge = (name: string) => prometheusMetricName({ kind: "gauge", name, unit: "" });
  assert.equal(gauge("bpfscope.syscalls"), "bpfscope_syscalls");
  assert.equal(gauge("a..b--c"), "a_b_c");
  assert.equal(gauge("http.server.request-size"), "http_server_request_size");
  assert.equal(gauge("9lives"), "_9lives");
  assert.equal(gauge("job:rate"), "job:rate");
  assert.equal(gauge("naïve.count"), "na_ve_count");
});

Deno.test("metric name unit suffixes", () => {
  const cases: [unit: string, kind: Metric["kind"], expected: string][] = [
    ["s", "histogram", "x_seconds"],
    ["ms", "histogram", "x_milliseconds"],
    ["us", "histogram", "x_microseconds"],
    ["ns", "histogram", "x_nanoseconds"],
    ["By", "gauge", "x_bytes"],
    ["KiBy", "gauge", "x_kibibytes"],
    ["{call}", "gauge", "x"],
    ["", "gauge", "x"],
    ["By/s", "gauge", "x_bytes_per_second"],
    ["{packet}/s", "gauge", "x_per_second"],
    ["1", "gauge", "x_ratio"],
    ["1", "histogram", "x"],
    ["%", "gauge", "x_percent"],
    ["widgets", "gauge", "x_widgets"],
    ["{call}s", "gauge", "x_seconds"],
  ];
  for (const [unit, kind, expected] of cases) {
    assert.equal(prometheusMetricName({ kind, name: "x", unit }), expected, `unit ${unit}`);
  }
});

Deno.test("metric name unit not repeated", () => {
  assert.equal(
    prometheusMetricName({ kind: "gauge", name: "block.latency.seconds", unit: "s" }),
    "block_latency_seconds",
  );
  assert.equal(
    prometheusMetricName({ kind: "gauge", name: "seconds.until.birthday", unit: "s" }),
    "seconds_until_birthday_seconds",
  );
});

Deno.test("counter name gets _total once", () => {
  assert.equal(
    prometheusMetricName({ kind: "counter", name: "bpfscope.syscalls", unit: "{call}" }),
    "bpfscope_syscalls_total",
  );
  assert.equal(
    prometheusMetricName({ kind: "counter", name: "http.requests.total", unit: "{request}" }),
    "http_requests_total",
  );
  assert.equal(
    prometheusMetricName({ kind: "counter", name: "net.io", unit: "By" }),
    "net_io_bytes_total",
  );
  assert.equal(
    prometheusMetricName({ kind: "counter", name: "cpu.time", unit: "1" }),
    "cpu_time_total",
  );
});

Deno.test("prometheusUnit rate units", () => {
  assert.equal(prometheusUnit("By/s"), "bytes_per_second");
  assert.equal(prometheusUnit("{request}/min"), "per_minute");
  assert.equal(prometheusUnit("{request}"), "");
});

Deno.test("label names sanitized", () => {
  assert.equal(prometheusLabelName("syscall.name"), "syscall_name");
  assert.equal(prometheusLabelName("k8s.pod..name"), "k8s_pod_name");
  assert.equal(prometheusLabelName("0cpu"), "_0cpu");
  assert.equal(prometheusLabelName("a:b"), "a_b");
  assert.equal(prometheusLabelName(""), "_");
});

// ---------------------------------------------------------------------------
// Text format
// ---------------------------------------------------------------------------

Deno.test("label value escaping", () => {
  const text = formatPrometheus(batchOf([
    counter("c", "", [{ attributes: { path: 'C:\\dir "x"\nnext' }, value: 1 }]),
  ]));
  assert.ok(text.includes('c_total{path="C:\\\\dir \\"x\\"\\nnext"} 1\n'), text);
  const [sample] = samplesNamed(parseExposition(text), "c_total");
  assert.equal(sample?.labels.path, 'C:\\dir "x"\nnext');
});

Deno.test("label name collision joins values", () => {
  const text = formatPrometheus(batchOf([
    counter("c", "", [{
      attributes: { "a.b": "dot", "a-b": "dash", "a_b": "underscore" },
      value: 1,
    }]),
  ]));
  const [sample] = samplesNamed(parseExposition(text), "c_total");
  // Ordered by the original keys: "a-b" < "a.b" < "a_b".
  assert.equal(sample?.labels.a_b, "dash;dot;underscore");
  assert.equal(Object.keys(sample?.labels ?? {}).length, 1);
});

Deno.test("attribute values stringified", () => {
  const text = formatPrometheus(batchOf([
    counter("c", "", [{ attributes: { cpu: 3, ok: true, big: 2n ** 64n, ratio: 0.5 }, value: 1 }]),
  ]));
  const [sample] = samplesNamed(parseExposition(text), "c_total");
  assert.equal(sample?.labels.cpu, "3");
  assert.equal(sample?.labels.ok, "true");
  assert.equal(sample?.labels.big, "18446744073709551616");
  assert.equal(sample?.labels.ratio, "0.5");
});

Deno.test("help and type lines", () => {
  const text = formatPrometheus(batchOf([
    { ...counter("c", "", [{ attributes: {}, value: 1 }]), description: "Back\\slash\nand line" },
    { kind: "gauge", name: "g", description: "", unit: "", points: [{ attributes: {}, value: 2 }] },
    histogram("h", "s", [{ attributes: {}, count: 0, buckets: { kind: "log2", counts: [] } }]),
  ]));
  assert.ok(text.includes("# HELP c_total Back\\\\slash\\nand line\n"), text);
  const exposition = parseExposition(text);
  assert.equal(exposition.types.get("c_total"), "counter");
  assert.equal(exposition.types.get("g"), "gauge");
  assert.equal(exposition.types.get("h_seconds"), "histogram");
  assert.equal(exposition.helps.has("g"), false, "an empty description gets no HELP line");
  assert.ok(text.indexOf("# TYPE c_total") < text.indexOf("c_total 1"), "TYPE precedes samples");
});

Deno.test("special sample values", () => {
  const text = formatPrometheus(batchOf([{
    kind: "gauge",
    name: "g",
    description: "",
    unit: "",
    points: [
      { attributes: { v: "nan" }, value: NaN },
      { attributes: { v: "inf" }, value: Infinity },
      { attributes: { v: "-inf" }, value: -Infinity },
      { attributes: { v: "big" }, value: 1e21 },
    ],
  }]));
  const values = samplesNamed(parseExposition(text), "g").map((sample) => sample.value);
  assert.deepEqual(values, ["NaN", "+Inf", "-Inf", "1e+21"]);
});

Deno.test("log2 histogram buckets at each edge", () => {
  // Values at both sides of every power of two: 2^k - 1 belongs to bucket k, 2^k to k + 1.
  const values = [0, 1, 1, 2, 3, 3, 4, 7, 8, 15, 16, 31];
  const counts = new Array<number>(log2Bucket(31) + 1).fill(0);
  for (const value of values) counts[log2Bucket(value)]!++;
  const sum = values.reduce((a, b) => a + b, 0);
  const text = formatPrometheus(batchOf([
    histogram("h", "", [{
      attributes: { disk: "vda" },
      count: values.length,
      sum,
      buckets: { kind: "log2", counts },
    }]),
  ]));
  const exposition = parseExposition(text);

  const buckets = samplesNamed(exposition, "h_bucket");
  assert.deepEqual(buckets.map((b) => b.labels.le), ["0", "1", "3", "7", "15", "31", "+Inf"]);
  for (const bucket of buckets) {
    const le = bucket.labels.le === "+Inf" ? Infinity : Number(bucket.labels.le);
    const expected = values.filter((value) => value <= le).length;
    assert.equal(Number(bucket.value), expected, `le="${bucket.labels.le}" counts values <= ${le}`);
    assert.equal(bucket.labels.disk, "vda");
  }
  assert.equal(samplesNamed(exposition, "h_sum")[0]?.value, String(sum));
  assert.equal(samplesNamed(exposition, "h_count")[0]?.value, String(values.length));
});

Deno.test("log2 bound exact past 2^53", () => {
  const counts = new Array<number>(66).fill(0);
  counts[64] = 1;
  const text = formatPrometheus(batchOf([
    histogram("h", "", [{ attributes: {}, count: 1, buckets: { kind: "log2", counts } }]),
  ]));
  const bounds = samplesNamed(parseExposition(text), "h_bucket").map((b) => b.labels.le);
  assert.equal(bounds[54], "18014398509481983");
  assert.equal(bounds[64], "18446744073709551615");
  assert.equal(bounds[65], "36893488147419103231");
});

Deno.test("explicit histogram buckets", () => {
  const text = formatPrometheus(batchOf([
    histogram("h", "ms", [{
      attributes: {},
      count: 7,
      sum: 123.5,
      buckets: { kind: "explicit", bounds: [0.5, 10, 20], counts: [1, 2, 0, 4] },
    }]),
  ]));
  const exposition = parseExposition(text);
  const buckets = samplesNamed(exposition, "h_milliseconds_bucket");
  assert.deepEqual(buckets.map((b) => b.labels.le), ["0.5", "10", "20", "+Inf"]);
  assert.deepEqual(buckets.map((b) => b.value), ["1", "3", "3", "7"]);
  assert.equal(samplesNamed(exposition, "h_milliseconds_sum")[0]?.value, "123.5");
  assert.equal(samplesNamed(exposition, "h_milliseconds_count")[0]?.value, "7");
});

Deno.test("histogram sum left out when unknown", () => {
  const text = formatPrometheus(batchOf([
    histogram("h", "", [{ attributes: {}, count: 1, buckets: { kind: "log2", counts: [0, 1] } }]),
    histogram("n", "", [{
      attributes: {},
      count: 1,
      sum: -5,
      buckets: { kind: "explicit", bounds: [0], counts: [1, 0] },
    }]),
  ]));
  const exposition = parseExposition(text);
  assert.equal(samplesNamed(exposition, "h_sum").length, 0);
  assert.equal(samplesNamed(exposition, "h_count")[0]?.value, "1");
  assert.equal(samplesNamed(exposition, "n_sum").length, 0, "a negative sum is not monotonic");
});

Deno.test("malformed histograms dropped", () => {
  const dropped: string[] = [];
  const text = formatPrometheus(
    batchOf([
      histogram("short", "", [{
        attributes: {},
        count: 1,
        buckets: { kind: "explicit", bounds: [1, 2], counts: [1, 0] },
      }]),
      histogram("unordered", "", [{
        attributes: {},
        count: 1,
        buckets: { kind: "explicit", bounds: [2, 1], counts: [1, 0, 0] },
      }]),
      histogram("le", "", [{
        attributes: { le: "x" },
        count: 0,
        buckets: { kind: "log2", counts: [] },
      }]),
      counter("kept", "", [{ attributes: {}, value: 1 }]),
    ]),
    { onDropped: (metric, reason) => dropped.push(`${metric.name}: ${reason}`) },
  );
  assert.equal(dropped.length, 3, dropped.join("\n"));
  assert.match(dropped[0]!, /^short: explicit buckets have 2 bounds and 2 counts/);
  assert.match(dropped[1]!, /^unordered: .*increasing/);
  assert.match(dropped[2]!, /^le: .*"le"/);
  assert.deepEqual(parseExposition(text).samples.map((s) => s.name), ["kept_total"]);
});

Deno.test("target_info from resource", () => {
  const text = formatPrometheus(
    batchOf([], { "service.name": "bpfscope", "host.name": "node-1", "service.instance.id": "a" }),
  );
  const exposition = parseExposition(text);
  assert.equal(exposition.types.get("target_info"), "gauge");
  const [info] = samplesNamed(exposition, "target_info");
  assert.deepEqual(info?.labels, {
    service_name: "bpfscope",
    host_name: "node-1",
    service_instance_id: "a",
  });
  assert.equal(info?.value, "1");
});

Deno.test("target_info absent for empty resource", () => {
  const text = formatPrometheus(batchOf([counter("c", "", [{ attributes: {}, value: 1 }])]));
  assert.equal(text.includes("target_info"), false);
});

Deno.test("name conflict drops other kind", () => {
  const dropped: string[] = [];
  const text = formatPrometheus(
    batchOf([
      {
        kind: "gauge",
        name: "x.total",
        description: "first",
        unit: "",
        points: [{ attributes: {}, value: 1 }],
      },
      counter("x", "", [{ attributes: {}, value: 2 }]),
      histogram("h", "", [{ attributes: {}, count: 0, buckets: { kind: "log2", counts: [] } }]),
      {
        kind: "gauge",
        name: "h.count",
        description: "",
        unit: "",
        points: [{ attributes: {}, value: 3 }],
      },
      {
        kind: "gauge",
        name: "target.info",
        description: "",
        unit: "",
        points: [{ attributes: {}, value: 4 }],
      },
    ], { "service.name": "s" }),
    { onDropped: (metric, reason) => dropped.push(`${metric.name}: ${reason}`) },
  );
  assert.equal(dropped.length, 3, dropped.join("\n"));
  assert.match(dropped[0]!, /^x: its name x_total is already taken by a gauge/);
  assert.match(dropped[1]!, /^h\.count: its series name h_count is already written by h/);
  assert.match(dropped[2]!, /^target\.info: its series name target_info/);
  const exposition = parseExposition(text);
  assert.equal(exposition.types.get("x_total"), "gauge");
  assert.deepEqual(samplesNamed(exposition, "x_total").map((s) => s.value), ["1"]);
  assert.equal(samplesNamed(exposition, "h_count").length, 1);
});

Deno.test("same name and kind share a family", () => {
  const text = formatPrometheus(batchOf([
    counter("a.b", "", [{ attributes: { cpu: 0 }, value: 1 }]),
    { ...counter("a-b", "", [{ attributes: { cpu: 1 }, value: 2 }]), description: "second" },
  ]));
  assert.equal(text.match(/# TYPE a_b_total /g)?.length, 1);
  assert.equal(text.match(/# HELP a_b_total /g)?.length, 1);
  assert.ok(text.includes("# HELP a_b_total a.b counter\n"), text);
  assert.deepEqual(samplesNamed(parseExposition(text), "a_b_total").map((s) => s.value), [
    "1",
    "2",
  ]);
});

Deno.test({
  name: "exposition passes promtool",
  ...prometheusTest(),
  async fn() {
    const text = formatPrometheus(batchOf([
      counter("bpfscope.syscalls", "{call}", [{
        attributes: { cpu: 0, "syscall.name": 'a"b' },
        value: 5,
      }]),
      histogram("bpfscope.block.latency", "s", [{
        attributes: {},
        count: 3,
        sum: 0.5,
        buckets: { kind: "explicit", bounds: [0.1, 1], counts: [2, 1, 0] },
      }]),
      {
        kind: "gauge",
        name: "bpfscope.memory",
        description: "Memory",
        unit: "By",
        points: [{ attributes: {}, value: 4096 }],
      },
    ], { "service.name": "bpfscope" }));
    const child = new Deno.Command(PROMTOOL_BINARY, {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(text));
    await writer.close();
    const output = await child.output();
    const messages = new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, `promtool check metrics: ${messages}\n${text}`);
  },
});

// ---------------------------------------------------------------------------
// Options and plugin
// ---------------------------------------------------------------------------

Deno.test("parsePrometheusAddress forms", () => {
  assert.deepEqual(parsePrometheusAddress(), { hostname: "127.0.0.1", port: 9464 });
  assert.deepEqual(parsePrometheusAddress(""), { hostname: "127.0.0.1", port: 9464 });
  assert.deepEqual(parsePrometheusAddress(":9100"), { hostname: "127.0.0.1", port: 9100 });
  assert.deepEqual(parsePrometheusAddress("0.0.0.0:80"), { hostname: "0.0.0.0", port: 80 });
  assert.deepEqual(parsePrometheusAddress("localhost"), { hostname: "localhost", port: 9464 });
  assert.deepEqual(parsePrometheusAddress("[::1]:9464"), { hostname: "::1", port: 9464 });
  assert.deepEqual(parsePrometheusAddress("[::1]"), { hostname: "::1", port: 9464 });
  assert.deepEqual(parsePrometheusAddress(":0"), { hostname: "127.0.0.1", port: 0 });
});

Deno.test("parsePrometheusAddress rejects", () => {
  for (const text of ["::1", "a:b:c", "host:", "host:port", "[::1", "9464"]) {
    assert.throws(() => parsePrometheusAddress(text), TypeError, `options ${JSON.stringify(text)}`);
  }
  assert.throws(() => parsePrometheusAddress(":65536"), RangeError);
  assert.throws(() => parsePrometheusAddress("9464"), /written ":9464"/);
});

Deno.test("plugin creates sink", async () => {
  assert.equal(prometheusSinkPlugin.kind, "sink");
  assert.equal(prometheusSinkPlugin.name, "prometheus");
  assert.equal(registry.sink("prometheus"), prometheusSinkPlugin);
  const sink = await prometheusSinkPlugin.create(
    { resource: {}, signal: new AbortController().signal },
    "127.0.0.1:0",
  );
  assert.ok(sink instanceof PrometheusSink);
  assert.equal(sink.hostname, "127.0.0.1");
  assert.notEqual(sink.port, 0);
  await sink.shutdown();
});

// ---------------------------------------------------------------------------
// The HTTP server
// ---------------------------------------------------------------------------

const liveBatch = batchOf([
  counter("bpfscope.test.requests", "{request}", [
    { attributes: { path: "/a" }, value: 42 },
    { attributes: { path: "/b" }, value: 7 },
  ]),
  histogram("bpfscope.test.latency", "us", [{
    attributes: { op: "read" },
    count: 6,
    sum: 20,
    buckets: { kind: "log2", counts: [1, 2, 0, 3] },
  }]),
], { "service.name": "bpfscope-test" });

Deno.test("sink serves latest batch", async () => {
  await using sink = PrometheusSink.listen({ port: 0 });
  assert.equal(sink.url, `http://127.0.0.1:${sink.port}/metrics`);
  assert.deepEqual(await sink.export(liveBatch), { ok: true });

  const response = await fetch(sink.url);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), PROMETHEUS_CONTENT_TYPE);
  const exposition = parseExposition(await response.text());
  assert.deepEqual(
    samplesNamed(exposition, "bpfscope_test_requests_total").map((s) => [s.labels.path, s.value]),
    [["/a", "42"], ["/b", "7"]],
  );
  assert.deepEqual(
    samplesNamed(exposition, "bpfscope_test_latency_microseconds_bucket").map((
      s,
    ) => [s.labels.le, s.value]),
    [["0", "1"], ["1", "3"], ["3", "3"], ["7", "6"], ["+Inf", "6"]],
  );
  assert.equal(samplesNamed(exposition, "target_info")[0]?.labels.service_name, "bpfscope-test");

  const next = batchOf([
    counter("bpfscope.test.requests", "{request}", [{ attributes: { path: "/a" }, value: 43 }]),
  ]);
  assert.deepEqual(await sink.export(next), { ok: true });
  const replaced = parseExposition(await (await fetch(sink.url)).text());
  assert.deepEqual(replaced.samples.map((s) => `${s.name} ${s.value}`), [
    "bpfscope_test_requests_total 43",
  ]);
});

Deno.test("sink empty before export", async () => {
  await using sink = PrometheusSink.listen({ port: 0 });
  const response = await fetch(sink.url);
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "");
});

Deno.test("sink 404 and 405", async () => {
  await using sink = PrometheusSink.listen({ port: 0 });
  const root = await fetch(`http://127.0.0.1:${sink.port}/`);
  assert.equal(root.status, 404);
  assert.match(await root.text(), /serves \/metrics/);

  const post = await fetch(sink.url, { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();

  const head = await fetch(sink.url, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-type"), PROMETHEUS_CONTENT_TYPE);
});

Deno.test("sink default address", async () => {
  await using sink = PrometheusSink.listen();
  assert.equal(sink.hostname, "127.0.0.1");
  assert.equal(sink.port, PROMETHEUS_DEFAULT_PORT);
});

Deno.test("sink port in use", () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  assert.throws(
    () => PrometheusSink.listen({ port }),
    (error: unknown) => {
      assert.ok(error instanceof Deno.errors.AddrInUse);
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
      assert.match(error.message, /prometheus::PORT/);
      return true;
    },
  );
});

Deno.test("sink invalid port", () => {
  assert.throws(() => PrometheusSink.listen({ port: 70000 }), RangeError);
  assert.throws(() => PrometheusSink.listen({ port: 1.5 }), RangeError);
});

Deno.test("sink shutdown closes server", async () => {
  const sink = PrometheusSink.listen({ port: 0 });
  const url = sink.url;
  await sink.shutdown();
  assert.equal(sink.closed, true);
  await assert.rejects(fetch(url), TypeError);

  const result = await sink.export(liveBatch);
  assert.equal(result.ok, false);
  assert.ok(!result.ok);
  assert.ok(result.error instanceof ClosedError);
  await sink.shutdown();
});

Deno.test("sink reports dropped metrics", async () => {
  const dropped: string[] = [];
  await using sink = PrometheusSink.listen({
    port: 0,
    onDropped: (metric, reason) => dropped.push(`${metric.name}: ${reason}`),
  });
  await sink.export(batchOf([
    counter("x", "", [{ attributes: {}, value: 1 }]),
    { kind: "gauge", name: "x", description: "", unit: "", points: [{ attributes: {}, value: 1 }] },
    {
      kind: "gauge",
      name: "x.total",
      description: "",
      unit: "",
      points: [{ attributes: {}, value: 1 }],
    },
  ]));
  assert.equal(dropped.length, 1);
  assert.match(dropped[0]!, /^x\.total: .*x_total/);
});

// ---------------------------------------------------------------------------
// A real Prometheus server scraping the sink
// ---------------------------------------------------------------------------

Deno.test({
  name: "Prometheus scrapes counter and histogram",
  ...prometheusTest(),
  async fn() {
    const path = 'C:\\tmp "quoted"\nline';
    const batch = batchOf([
      counter("bpfscope.test.requests", "{request}", [{ attributes: { path }, value: 42 }]),
      ...liveBatch.metrics.slice(1),
      {
        kind: "gauge",
        name: "bpfscope.test.memory",
        description: "Memory",
        unit: "By",
        points: [{ attributes: {}, value: 4096 }],
      },
    ], liveBatch.resource);
    await using sink = PrometheusSink.listen({ port: 0 });
    assert.deepEqual(await sink.export(batch), { ok: true });
    await using prometheus = await PrometheusServer.start([`127.0.0.1:${sink.port}`]);

    const [requests] = await prometheus.waitFor("bpfscope_test_requests_total");
    assert.equal(requests?.value, 42);
    assert.equal(requests?.labels.path, path, "label escaping survives Prometheus's parser");
    assert.equal(requests?.labels.job, "bpfscope");
    assert.equal(requests?.labels.instance, `127.0.0.1:${sink.port}`);

    const buckets = await prometheus.query("bpfscope_test_latency_microseconds_bucket");
    const byBound = Object.fromEntries(buckets.map((s) => [s.labels.le, s.value]));
    assert.deepEqual(byBound, { "0": 1, "1": 3, "3": 3, "7": 6, "+Inf": 6 });
    const [sum] = await prometheus.query("bpfscope_test_latency_microseconds_sum");
    assert.equal(sum?.value, 20);
    const [count] = await prometheus.query("bpfscope_test_latency_microseconds_count");
    assert.equal(count?.value, 6);
    // Interpolates inside bucket le="7" (values 4 to 7 with 3 of 6 counts): 3 + 4 * (1.5 / 3).
    const [quantile] = await prometheus.query(
      "histogram_quantile(0.75, bpfscope_test_latency_microseconds_bucket)",
    );
    assert.equal(quantile?.value, 5);

    const [memory] = await prometheus.query("bpfscope_test_memory_bytes");
    assert.equal(memory?.value, 4096);
    const [info] = await prometheus.query("target_info");
    assert.equal(info?.labels.service_name, "bpfscope-test");
    assert.equal(info?.value, 1);

    assert.deepEqual(await prometheus.metadata("bpfscope_test_requests_total"), [
      { type: "counter", help: "bpfscope.test.requests counter" },
    ]);
    assert.deepEqual(await prometheus.metadata("bpfscope_test_latency_microseconds"), [
      { type: "histogram", help: "bpfscope.test.latency histogram" },
    ]);
  },
});

Deno.test({
  name: "Prometheus syscalls counter matches probe",
  ignore: kernelTest().ignore || prometheusTest().ignore,
  async fn() {
    using probe = SyscallsProbe.open();
    await using sink = PrometheusSink.listen({ port: 0 });
    const startTimeUnixNano = BigInt(Date.now()) * 1_000_000n;
    // Per-CPU totals of every exported reading, oldest first.
    const exported: number[][] = [];

    const exportReading = async () => {
      const snapshot = probe.read();
      const totals = Array.from({ length: probe.cpus }, (_, cpu) => snapshot.cpuTotal(cpu));
      const result = await sink.export(batchOf([{
        kind: "counter",
        name: "bpfscope.syscalls",
        description: "System calls entered",
        unit: "{call}",
        startTimeUnixNano,
        points: totals.map((value, cpu) => ({ attributes: { cpu }, value })),
      }], { "service.name": "bpfscope" }));
      assert.deepEqual(result, { ok: true });
      exported.push(totals);
    };

    await exportReading();
    const firstTotal = exported[0]!.reduce((a, b) => a + b, 0);
    let exporting = true;
    const exporter = (async () => {
      while (exporting) {
        await delay(100);
        await exportReading();
      }
    })();

    try {
      await using prometheus = await PrometheusServer.start([`127.0.0.1:${sink.port}`]);
      const perCpu = await prometheus.waitFor(
        "bpfscope_syscalls_total",
        (samples) => samples.length === probe.cpus,
      );
      const latestReading = probe.read().total;

      // Each series contains a value that bpfscope exported for that CPU.
      for (const sample of perCpu) {
        const cpu = Number(sample.labels.cpu);
        const candidates = exported.map((totals) => totals[cpu]);
        assert.ok(
          candidates.includes(sample.value),
          `cpu ${cpu}: Prometheus has ${sample.value}, not one of the exported values`,
        );
      }

      const observed = perCpu.reduce((sum, sample) => sum + sample.value, 0);
      assert.ok(observed >= firstTotal, `Prometheus ${observed} >= first export ${firstTotal}`);
      assert.ok(
        observed <= latestReading,
        `Prometheus ${observed} <= latest reading ${latestReading}`,
      );

      // A later scrape shows the counter growing.
      const [later] = await prometheus.waitFor(
        "sum(bpfscope_syscalls_total)",
        (samples) => (samples[0]?.value ?? 0) > observed,
      );
      assert.ok(later !== undefined);
      assert.ok(later.value <= probe.read().total, `Prometheus ${later.value} <= latest reading`);
    } finally {
      exporting = false;
      await exporter;
    }
  },
});
