import assert from "node:assert/strict";
import type { Batch, Metric } from "../plugins/plugin.ts";
import { FileSink, FileSinkError, parseFileSinkOptions } from "../plugins/sinks/file.ts";
import { kernelTest, repoPath } from "./_helpers.ts";

const DENO = Deno.execPath();
const CLI = repoPath("cli.ts");
const LOADAVG = repoPath("examples/plugin_loadavg.ts");

const RESOURCE = { "service.name": "test", "host.name": "box" };

function sampleBatch(sequence: number): Batch {
  const metrics: Metric[] = [
    {
      kind: "counter",
      name: "test.calls",
      description: "Calls",
      unit: "{call}",
      startTimeUnixNano: 5n,
      points: [{ attributes: { cpu: 0, big: 2n ** 64n }, value: sequence }],
    },
    {
      kind: "histogram",
      name: "test.latency",
      description: "Latency",
      unit: "us",
      startTimeUnixNano: 5n,
      points: [{ attributes: {}, count: 2, sum: 3, buckets: { kind: "log2", counts: [0, 1, 1] } }],
    },
  ];
  const logs = [{
    timeUnixNano: 7n,
    severity: "WARN" as const,
    body: `event ${sequence}`,
    attributes: {},
  }];
  return { resource: RESOURCE, timeUnixNano: 1_700_000_000_123_000_000n, metrics, logs };
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "bpfscope_file_sink_" });
}

/** Returns the lines of a file; asserts that it ends with a newline. */
async function completeLines(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(path);
  assert.ok(text === "" || text.endsWith("\n"), `${path} ends in a partial line`);
  return text === "" ? [] : text.slice(0, -1).split("\n");
}

Deno.test("FileSink writes one record per line", async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  try {
    const sink = new FileSink({ path });
    const result = await sink.export(sampleBatch(1));
    await sink.shutdown();

    assert.deepEqual(result, { ok: true });
    const records = (await completeLines(path)).map((line) => JSON.parse(line));
    assert.equal(records.length, 3);
    assert.deepEqual(records.map((record) => record.type), ["metric", "metric", "log"]);
    assert.equal(records[0].name, "test.calls");
    assert.equal(records[0].value, 1);
    assert.equal(records[0].startTimeUnixNano, "5");
    assert.equal(records[0].timeUnixNano, "1700000000123000000");
    assert.equal(records[0].time, "2023-11-14T22:13:20.123Z");
    assert.deepEqual(records[0].resource, RESOURCE);
    assert.deepEqual(records[0].attributes, { cpu: 0, big: "18446744073709551616" });
    assert.deepEqual(records[1].buckets, { kind: "log2", counts: [0, 1, 1] });
    assert.equal(records[1].count, 2);
    assert.equal(records[2].severity, "WARN");
    assert.equal(records[2].body, "event 1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink appends to an existing file", async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  try {
    await Deno.writeTextFile(path, `{"earlier":true}\n`);
    await using sink = new FileSink({ path });
    await sink.export(sampleBatch(1));
    await sink.export(sampleBatch(2));
    await sink.flush();

    const lines = await completeLines(path);
    assert.equal(lines.length, 7);
    assert.equal(lines[0], `{"earlier":true}`);
    assert.equal(JSON.parse(lines[6]!).body, "event 2");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink cuts a partial last line", async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  try {
    await Deno.writeTextFile(path, `{"complete":1}\n{"cut":`);
    await using sink = new FileSink({ path });
    await sink.export(sampleBatch(1));
    await sink.flush();

    const lines = await completeLines(path);
    assert.equal(lines[0], `{"complete":1}`);
    assert.equal(lines.length, 4);
    for (const line of lines) JSON.parse(line);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink cuts a file without newline", async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  try {
    await Deno.writeTextFile(path, "x".repeat(200_000));
    await using sink = new FileSink({ path });
    await sink.export(sampleBatch(1));
    await sink.flush();

    const lines = await completeLines(path);
    assert.equal(lines.length, 3);
    for (const line of lines) JSON.parse(line);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink rotation keeps at most keep files", async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  const maxBytes = 2_000;
  try {
    await using sink = new FileSink({ path, maxBytes, keep: 2 });
    for (let sequence = 0; sequence < 30; sequence++) {
      assert.deepEqual(await sink.export(sampleBatch(sequence)), { ok: true });
    }
    await sink.flush();

    const names = [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();
    assert.deepEqual(names, ["out.jsonl", "out.jsonl.1", "out.jsonl.2"]);
    for (const name of names) {
      const size = (await Deno.stat(`${dir}/${name}`)).size;
      assert.ok(size <= maxBytes, `${name} has ${size} bytes`);
      for (const line of await completeLines(`${dir}/${name}`)) JSON.parse(line);
    }
    // The newest record is last in out.jsonl, and the rotated files are older.
    const newest = (await completeLines(path)).map((line) => JSON.parse(line));
    assert.equal(newest.at(-1).body, "event 29");
    const older = (await completeLines(`${path}.1`)).map((line) => JSON.parse(line));
    assert.ok(older.at(-1).timeUnixNano !== undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink keep=0 keeps no rotated file", async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  try {
    await using sink = new FileSink({ path, maxBytes: 1_000, keep: 0 });
    for (let sequence = 0; sequence < 10; sequence++) await sink.export(sampleBatch(sequence));

    assert.deepEqual([...Deno.readDirSync(dir)].map((entry) => entry.name), ["out.jsonl"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink missing directory fails export", async () => {
  const path = "/nonexistent-bpfscope-dir/out.jsonl";
  await using sink = new FileSink({ path });
  const result = await sink.export(sampleBatch(1));

  assert.equal(result.ok, false);
  const error = !result.ok ? result.error : undefined;
  assert.ok(error instanceof FileSinkError);
  assert.equal(error.path, path);
  assert.equal(error.code, "ENOENT");
  assert.match(error.message, /Failed to write "\/nonexistent-bpfscope-dir\/out.jsonl"/);
  assert.match(error.message, /create the directory/);
});

Deno.test("FileSink export after shutdown fails", async () => {
  const dir = await tempDir();
  try {
    const sink = new FileSink({ path: `${dir}/out.jsonl` });
    await sink.shutdown();
    await sink.shutdown();
    const result = await sink.export(sampleBatch(1));
    assert.equal(result.ok, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseFileSinkOptions values", () => {
  assert.deepEqual(parseFileSinkOptions("out.jsonl"), { path: "out.jsonl" });
  assert.deepEqual(parseFileSinkOptions("out.jsonl,max-bytes=10485760,keep=3"), {
    path: "out.jsonl",
    maxBytes: 10_485_760,
    keep: 3,
  });
  assert.deepEqual(parseFileSinkOptions("a,b.jsonl,keep=1"), { path: "a,b.jsonl", keep: 1 });
});

Deno.test("parseFileSinkOptions errors", () => {
  assert.throws(() => parseFileSinkOptions(undefined), {
    name: "TypeError",
    message: /Missing file sink path/,
  });
  assert.throws(() => parseFileSinkOptions("out,level=3"), {
    name: "TypeError",
    message: /"level"/,
  });
  assert.throws(() => parseFileSinkOptions("out,keep=-1"), TypeError);
  assert.throws(() => new FileSink({ path: "x", maxBytes: -1 }), RangeError);
});

// ---- the CLI as a subprocess ----

/** Starts `bpfscope run` with `args`, with piped stderr. */
function spawnCli(args: string[]): Deno.ChildProcess {
  return new Deno.Command(DENO, {
    args: ["run", "--allow-all", CLI, "run", ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/** Waits until `path` has at least `count` complete lines. */
async function waitForLines(path: string, count: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await Deno.readTextFile(path).catch(() => "");
    if (text.split("\n").length - 1 >= count) return;
    if (Date.now() > deadline) {
      throw new Deno.errors.TimedOut(`${path} has fewer than ${count} lines`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("file sink after SIGKILL parses", kernelTest(), async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  try {
    const child = spawnCli(["--probe", "syscalls", "--sink", `file:${path}`, "--interval", "20ms"]);
    await waitForLines(path, 2_000);
    child.kill("SIGKILL");
    await child.status;
    await child.stderr.cancel();

    const text = await Deno.readTextFile(path);
    const lines = text.split("\n");
    const tail = lines.pop()!;
    for (const line of lines) JSON.parse(line);
    if (tail !== "") {
      // A write cut by SIGKILL: the sink removes the partial line when it opens the file again.
      await using sink = new FileSink({ path });
      await sink.export({ resource: {}, timeUnixNano: 0n, metrics: [], logs: [] });
      await sink.flush();
      assert.ok((await Deno.readTextFile(path)).endsWith("\n"));
    }
    assert.ok(lines.length >= 2_000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file sink after SIGTERM has last collection", kernelTest(), async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  try {
    const child = spawnCli(["--probe", "syscalls", "--sink", `file:${path}`, "--interval", "50ms"]);
    await waitForLines(path, 500);
    child.kill("SIGTERM");
    const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);

    assert.equal(status.code, 0, stderr);
    const stopped = /stopped after (\d+) collections/.exec(stderr);
    assert.ok(stopped, stderr);
    const collections = (await completeLines(path))
      .map((line) => JSON.parse(line))
      .filter((record) => record.name === "bpfscope.collector.collections")
      .map((record) => record.value);
    assert.equal(collections.at(-1), Number(stopped[1]));
    assert.deepEqual(collections, collections.map((_, i) => i + 1));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file sink full disk keeps others", kernelTest(), async () => {
  const dir = await tempDir();
  const mountPoint = `${dir}/full`;
  const other = `${dir}/other.jsonl`;
  await Deno.mkdir(mountPoint);
  try {
    // The tmpfs lives in a private mount namespace, so it disappears with the
    // process. The script copies the full file out before it exits.
    const script = [
      `mount -t tmpfs -o size=64k bpfscope-test "$1" || exit 3`,
      `target="$1"`,
      `shift`,
      `"$@"`,
      `code=$?`,
      `cp "$target/full.jsonl" "$target.copy.jsonl"`,
      `exit $code`,
    ].join("\n");
    const output = await new Deno.Command("unshare", {
      args: [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        mountPoint,
        DENO,
        "run",
        "--allow-all",
        CLI,
        "run",
        "--plugin",
        LOADAVG,
        "--probe",
        "loadavg",
        "--sink",
        `file:${mountPoint}/full.jsonl`,
        "--sink",
        `file:${other}`,
        "--interval",
        "20ms",
        "--duration",
        "2s",
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);

    assert.equal(output.code, 0, stderr);
    assert.match(
      stderr,
      new RegExp(
        `Sink "file" failed to export a batch: Failed to write "${mountPoint}/full.jsonl"`,
      ),
    );
    assert.match(stderr, /No space left on device/);
    assert.match(stderr, /free space on its file system/);
    assert.deepEqual([...Deno.readDirSync(mountPoint)], [], "the tmpfs stayed mounted");
    // A short write before ENOSPC is cut back, so the full file has only whole lines.
    const full = await completeLines(`${mountPoint}.copy.jsonl`);
    assert.ok(full.length > 100, `${full.length} lines fit in 64 KiB`);
    for (const line of full) JSON.parse(line);

    const records = (await completeLines(other)).map((line) => JSON.parse(line));
    const failed = records.filter((record) =>
      record.name === "bpfscope.collector.dropped" && record.attributes.sink === "file" &&
      record.attributes.reason === "export_failed"
    );
    assert.ok(failed.at(-1).value > 0, `last export_failed count ${failed.at(-1).value}`);
    const stopped = Number(/stopped after (\d+) collections/.exec(stderr)![1]);
    const collections = records.filter((record) =>
      record.name === "bpfscope.collector.collections"
    );
    assert.equal(collections.at(-1).value, stopped);
    assert.ok(records.some((record) => record.name === "system.load_average"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink reopens its path after the file is moved or removed", async () => {
  const dir = await tempDir();
  const path = `${dir}/out.jsonl`;
  try {
    await using sink = new FileSink({ path, maxBytes: 2_000, keep: 2 });
    assert.deepEqual(await sink.export(sampleBatch(1)), { ok: true });
    await Deno.rename(path, `${dir}/moved.jsonl`); // logrotate without copytruncate
    assert.deepEqual(await sink.export(sampleBatch(2)), { ok: true });
    await Deno.remove(path);
    for (let sequence = 3; sequence < 12; sequence++) {
      // Removed by hand, then rotated: nothing to rename, and no batch lost.
      assert.deepEqual(await sink.export(sampleBatch(sequence)), { ok: true });
    }
    await sink.flush();

    const moved = await completeLines(`${dir}/moved.jsonl`);
    assert.ok(
      moved.every((line) => JSON.parse(line).body !== "event 2"),
      "batch 2 went to the moved file",
    );
    const current = await completeLines(path);
    assert.equal(JSON.parse(current.at(-1)!).body, "event 11");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
