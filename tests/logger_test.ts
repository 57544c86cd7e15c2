import assert from "node:assert/strict";
import { BpfError, openObject, setLibbpfLogger } from "../mod.ts";
import { repoPath, run } from "./_helpers.ts";

Deno.test("setLibbpfLogger() receives messages of successful calls", () => {
  const messages: string[] = [];
  const previous = setLibbpfLogger(
    (level, message) => messages.push(`${level}: ${message}`),
    "debug",
  );
  try {
    openObject(repoPath("tests/fixtures/attach.bpf.o")).close();
  } finally {
    setLibbpfLogger(previous.logger, previous.level);
  }
  assert.ok(messages.some((message) => message.startsWith("debug: ")), messages.join("\n"));
  assert.ok(messages.every((message) => !message.includes("libbpf: libbpf:")));
});

Deno.test("setLibbpfLogger() logger that throws is ignored", () => {
  const previous = setLibbpfLogger(() => {
    throw new Error("logger failure");
  }, "debug");
  try {
    const opened = openObject(repoPath("tests/fixtures/attach.bpf.o"));
    assert.equal(opened.programNames.length, 3);
    opened.close();
  } finally {
    setLibbpfLogger(previous.logger, previous.level);
  }
});

Deno.test("libbpf output of a failed call goes into the error", () => {
  let error: unknown;
  try {
    openObject("/nonexistent/logger-test.bpf.o");
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof BpfError);
  assert.ok(
    error.libbpfOutput.some((line) =>
      line.includes("failed to open /nonexistent/logger-test.bpf.o")
    ),
  );
});

Deno.test("a Worker that used bpfscope leaves no dangling callback", async () => {
  const result = await run(Deno.execPath(), [
    "run",
    "--allow-all",
    repoPath("tests/_scripts/worker_then_main.ts"),
  ]);
  assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`);
  const report = JSON.parse(result.stdout) as { names: string[]; output: string[] };
  assert.deepEqual(report.names, [
    "on_tracepoint",
    "on_raw_tracepoint",
    "on_raw_tracepoint_manual",
  ]);
  assert.ok(
    report.output.some((line) => line.includes("after-worker.bpf.o")),
    report.output.join("\n"),
  );
});
