// deno-lint-ignore-file no-console -- test scripts report to the test on stdout.
// Exports one batch and shuts the sink down at once, in a process where the
// OTLP encoder was never loaded, and prints the result as JSON. Run by
// otlp_sink_test.ts, because within the test process the encoder is already loaded.

import { OtlpSink } from "../../plugins/sinks/otlp.ts";
import { OtlpReceiver } from "./otlp_receiver.ts";

await using receiver = OtlpReceiver.start();
const sink = new OtlpSink({ endpoint: receiver.url, env: {} });
const pending = sink.export({
  resource: {},
  timeUnixNano: 1n,
  metrics: [{
    kind: "gauge",
    name: "first",
    description: "",
    unit: "1",
    points: [{ attributes: {}, value: 1 }],
  }],
  logs: [],
});
await sink.shutdown();
const result = await pending;
console.log(JSON.stringify({
  ok: result.ok,
  error: result.ok ? "" : result.error.message,
  accepted: receiver.accepted.length,
}));
