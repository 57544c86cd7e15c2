import assert from "node:assert/strict";
import { inspect } from "node:util";
import { PROCESS_OBJECT } from "../bpf/process_object.ts";
import { encodeValue, type LayoutType, openObject } from "../mod.ts";
import {
  PROCESS_EVENT_LAYOUT,
  type ProcessEvent,
  ProcessEventDecoder,
  type ProcessExecEvent,
  type ProcessExitEvent,
  ProcessProbe,
} from "../plugins/probes/process.ts";
import { bootTimeOffsetNs, CLOCK_BOOTTIME, clockNs } from "../ffi/clock.ts";
import { kernelTest, programExists, programGone, run } from "./_helpers.ts";

const DASH = "/usr/bin/dash";
/** Long enough for a loaded CI machine; a test that times out fails on its missing event. */
const EVENT_TIMEOUT_MS = 15_000;

// A C program for the thread cases, compiled by the tests that need it.
//   leader-first: the leader thread ends first, another thread ends the process with exit(7).
//   thread-exec PATH: a thread other than the leader calls execv(PATH, "-c", "exit 5").
const THREADS_C = `
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *exec_path;

static void *run_thread(void *arg) {
  struct timespec pause = { 0, 100 * 1000 * 1000 };
  nanosleep(&pause, NULL);
  if (exec_path != NULL) {
    execl(exec_path, exec_path, "-c", "exit 5", (char *)NULL);
    _exit(99);
  }
  exit(7);
}

int main(int argc, char **argv) {
  pthread_t thread;
  if (argc == 3 && strcmp(argv[1], "thread-exec") == 0) exec_path = argv[2];
  if (pthread_create(&thread, NULL, run_thread, NULL) != 0) return 98;
  pthread_exit(NULL);
}
`;

/** Runs `fn` with a temporary copy of dash under a unique name, so that its comm is recognisable. */
async function withShellCopy(fn: (path: string, name: string) => Promise<void>): Promise<void> {
  const directory = await Deno.makeTempDir({ prefix: "bpfscope-process-" });
  try {
    const name = `bpfscope${String(Math.floor(Math.random() * 1e6)).padStart(6, "0")}`;
    const path = `${directory}/${name}`;
    await Deno.copyFile(DASH, path);
    await Deno.chmod(path, 0o755);
    await fn(path, name);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
}

/** Compiles THREADS_C into `directory` and returns the binary's path. */
async function buildThreadsProgram(directory: string): Promise<string> {
  const source = `${directory}/threads.c`;
  const binary = `${directory}/bpfscopethr`;
  await Deno.writeTextFile(source, THREADS_C);
  const build = await run("clang", ["-O1", "-pthread", "-o", binary, source]);
  assert.equal(build.code, 0, build.stderr);
  return binary;
}

/**
 * Opens the probe, runs `act` (which returns a pid), and collects the events
 * that `isWanted` accepts until `done` returns true or EVENT_TIMEOUT_MS passes.
 */
async function collectEvents(
  act: () => Promise<number>,
  isWanted: (event: ProcessEvent, pid: number) => boolean,
  done: (events: ProcessEvent[]) => boolean,
): Promise<{ pid: number; events: ProcessEvent[] }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), EVENT_TIMEOUT_MS);
  try {
    await using probe = ProcessProbe.open({ signal: controller.signal });
    const pid = await act();
    const events: ProcessEvent[] = [];
    for await (const event of probe) {
      if (isWanted(event, pid)) events.push(event);
      if (done(events)) break;
    }
    return { pid, events };
  } finally {
    clearTimeout(timer);
  }
}

/** Spawns `path args`, waits for it to end, and returns its pid. */
async function spawnAndWait(path: string, args: string[]): Promise<number> {
  const child = new Deno.Command(path, { args, stdout: "null", stderr: "null" }).spawn();
  await child.status;
  return child.pid;
}

function findExec(events: ProcessEvent[]): ProcessExecEvent | undefined {
  return events.find((event): event is ProcessExecEvent => event.kind === "exec");
}

function findExits(events: ProcessEvent[]): ProcessExitEvent[] {
  return events.filter((event): event is ProcessExitEvent => event.kind === "exit");
}

type RawEvent = LayoutType<typeof PROCESS_EVENT_LAYOUT>;

function record(fields: Partial<RawEvent>): Uint8Array {
  return encodeValue(PROCESS_EVENT_LAYOUT, {
    timestamp_ns: 0n,
    lifetime_ns: 0n,
    kind: 1,
    pid: 0,
    ppid: 0,
    uid: 0,
    exit_status: 0,
    exec_tid: 0,
    comm: "",
    filename: "",
    ...fields,
  });
}

/** Resolves like `promise`, or rejects with `message` when it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("bootTimeOffsetNs() maps boot time to Date.now()", () => {
  const wallMs = Number((clockNs(CLOCK_BOOTTIME) + bootTimeOffsetNs()) / 1_000_000n);
  const now = Date.now();
  assert.ok(Math.abs(wallMs - now) < 1000, `boot time + offset = ${wallMs}, Date.now() = ${now}`);
});

Deno.test("ProcessEventDecoder decodes an exec record", () => {
  using opened = openObject(PROCESS_OBJECT, { name: "process" });
  const decoder = new ProcessEventDecoder(opened);
  const bootNs = clockNs(CLOCK_BOOTTIME);

  const event = decoder.decode(record({
    timestamp_ns: bootNs,
    kind: 1,
    pid: 4242,
    ppid: 17,
    uid: 1000,
    exec_tid: 4243,
    comm: "cat",
    filename: "/usr/bin/cat",
  }));

  assert.equal(event.kind, "exec");
  assert.equal(event.pid, 4242);
  assert.equal(event.ppid, 17);
  assert.equal(event.uid, 1000);
  assert.equal(event.comm, "cat");
  assert.equal(event.bootTimeNs, bootNs);
  assert.ok(Math.abs(event.timestamp.getTime() - Date.now()) < 1000, String(event.timestamp));
  if (event.kind !== "exec") return;
  assert.equal(event.filename, "/usr/bin/cat");
  assert.equal(event.tid, 4243);
});

Deno.test("ProcessEventDecoder splits the exit status", () => {
  using opened = openObject(PROCESS_OBJECT, { name: "process" });
  const decoder = new ProcessEventDecoder(opened);
  const cases = [
    { status: 3 << 8, exitCode: 3, signal: 0, coreDumped: false },
    { status: 9, exitCode: 0, signal: 9, coreDumped: false },
    { status: 0x80 | 6, exitCode: 0, signal: 6, coreDumped: true },
  ];

  for (const { status, exitCode, signal, coreDumped } of cases) {
    const event = decoder.decode(
      record({ kind: 2, exit_status: status, lifetime_ns: 2_500_000n, filename: "stale" }),
    );
    assert.equal(event.kind, "exit");
    if (event.kind !== "exit") continue;
    assert.equal(event.exitCode, exitCode, `status ${status}`);
    assert.equal(event.signal, signal, `status ${status}`);
    assert.equal(event.coreDumped, coreDumped, `status ${status}`);
    assert.equal(event.lifetimeMs, 2.5);
    assert.equal("filename" in event, false);
  }
});

Deno.test("ProcessEventDecoder rejects short records and unknown kinds", () => {
  using opened = openObject(PROCESS_OBJECT, { name: "process" });
  const decoder = new ProcessEventDecoder(opened);

  assert.throws(() => decoder.decode(new Uint8Array(100)), /record has 100 bytes, expected 312/);
  assert.throws(() => decoder.decode(record({ kind: 3 })), /Invalid process event kind 3/);
});

Deno.test("ProcessProbe.open() rejects invalid ring buffer sizes", () => {
  for (const bytes of [0, 1000, 3 * 4096, 2 ** 32, Number.NaN]) {
    assert.throws(
      () => ProcessProbe.open({ ringBufferBytes: bytes }),
      RangeError,
      `ringBufferBytes ${bytes}`,
    );
  }
});

Deno.test({
  name: "ProcessProbe reports exec and exit",
  ...kernelTest(),
  async fn() {
    await withShellCopy(async (path, name) => {
      const before = Date.now();
      const { pid, events } = await collectEvents(
        () => spawnAndWait(path, ["-c", "exit 3"]),
        (event, pid) => event.pid === pid,
        (events) => events.some((event) => event.kind === "exit"),
      );
      const after = Date.now();

      const exec = findExec(events);
      assert.ok(exec !== undefined, `no exec event for pid ${pid}: ${inspect(events)}`);
      assert.equal(exec.filename, path);
      assert.equal(exec.comm, name);
      assert.equal(exec.ppid, Deno.pid);
      assert.equal(exec.uid, Deno.uid());
      assert.equal(exec.tid, pid);
      // Date has millisecond precision, and the decoder truncates to it.
      assert.ok(exec.timestamp.getTime() >= before - 1, `${exec.timestamp} before ${before}`);
      assert.ok(exec.timestamp.getTime() <= after, `${exec.timestamp} after ${after}`);

      const exits = findExits(events);
      assert.equal(exits.length, 1);
      const exit = exits[0]!;
      assert.equal(exit.comm, name);
      assert.equal(exit.exitCode, 3);
      assert.equal(exit.signal, 0);
      assert.equal(exit.coreDumped, false);
      assert.equal(exit.ppid, Deno.pid);
      assert.ok(exit.lifetimeMs >= 0, `lifetime ${exit.lifetimeMs} ms`);
      assert.ok(exit.bootTimeNs > exec.bootTimeNs);
      assert.ok(
        exit.lifetimeMs * 1e6 >= Number(exit.bootTimeNs - exec.bootTimeNs),
        "the process lived at least from its exec to its exit",
      );
    });
  },
});

Deno.test({
  name: "ProcessProbe reports the killing signal",
  ...kernelTest(),
  async fn() {
    await withShellCopy(async (path) => {
      const { pid, events } = await collectEvents(
        () => spawnAndWait(path, ["-c", "kill -USR1 $$"]),
        (event, pid) => event.pid === pid && event.kind === "exit",
        (events) => events.length > 0,
      );

      const exit = findExits(events)[0];
      assert.ok(exit !== undefined, `no exit event for pid ${pid}`);
      assert.equal(exit.signal, 10); // SIGUSR1 on x86_64 and arm64
      assert.equal(exit.exitCode, 0);
      assert.equal(exit.coreDumped, false);
    });
  },
});

Deno.test({
  name: "ProcessProbe reports the process exit, not the leader's",
  ...kernelTest(),
  async fn() {
    const directory = await Deno.makeTempDir({ prefix: "bpfscope-threads-" });
    try {
      const binary = await buildThreadsProgram(directory);
      const { pid, events } = await collectEvents(
        () => spawnAndWait(binary, ["leader-first"]),
        (event, pid) => event.pid === pid && event.kind === "exit",
        // The leader's own exit would arrive about 100 ms before the process's.
        (events) => findExits(events).some((exit) => exit.exitCode === 7),
      );

      const exits = findExits(events);
      assert.equal(exits.length, 1, `exit events for pid ${pid}: ${inspect(exits)}`);
      assert.equal(exits[0]!.exitCode, 7);
      assert.equal(exits[0]!.comm, "bpfscopethr");
      assert.ok(exits[0]!.lifetimeMs >= 100, `lifetime ${exits[0]!.lifetimeMs} ms`);
    } finally {
      await Deno.remove(directory, { recursive: true });
    }
  },
});

Deno.test({
  name: "ProcessProbe reports exec from a thread",
  ...kernelTest(),
  async fn() {
    await withShellCopy(async (path, name) => {
      const directory = path.slice(0, path.lastIndexOf("/"));
      const binary = await buildThreadsProgram(directory);
      const { pid, events } = await collectEvents(
        () => spawnAndWait(binary, ["thread-exec", path]),
        (event, pid) => event.pid === pid,
        (events) => events.some((event) => event.kind === "exit"),
      );

      const execs = events.filter((event): event is ProcessExecEvent => event.kind === "exec");
      const threadExec = execs.find((exec) => exec.filename === path);
      assert.ok(threadExec !== undefined, `no exec of ${path} by pid ${pid}`);
      assert.equal(threadExec.comm, name);
      assert.notEqual(threadExec.tid, pid);
      assert.ok(threadExec.tid > 0);
      assert.equal(findExits(events)[0]?.exitCode, 5);
    });
  },
});

Deno.test({
  name: "ProcessProbe counts events dropped by a full ring",
  ...kernelTest(),
  async fn() {
    await withShellCopy(async (path) => {
      // One page has room for 12 events of 320 bytes. Nothing reads the ring while the children run.
      await using probe = ProcessProbe.open({ ringBufferBytes: 4096 });
      assert.equal(probe.droppedEvents, 0);
      for (let i = 0; i < 20; i++) await spawnAndWait(path, ["-c", "exit 0"]);

      assert.ok(probe.droppedEvents > 0, `dropped ${probe.droppedEvents}`);
      const first = await probe.next();
      assert.ok(first !== undefined);
    });
  },
});

Deno.test({
  name: "ProcessProbe.close() ends a waiting iteration",
  ...kernelTest(),
  async fn() {
    const probe = ProcessProbe.open();
    const ids = probe.object.programs.map((program) => program.info().id);
    for (const id of ids) assert.ok(await programExists(id), `program ${id} is not loaded`);

    const iteration = (async () => {
      for await (const _ of probe) {
        // Events of other processes on the host; the loop ends only on close().
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 50));
    probe.close();
    probe.close();
    await within(iteration, EVENT_TIMEOUT_MS, "the iteration did not end after close()");

    assert.equal(probe.closed, true);
    assert.equal(await probe.next(), undefined);
    for (const id of ids) assert.ok(await programGone(id), `program ${id} is still loaded`);
  },
});

Deno.test({
  name: "ProcessProbe ends iteration on abort",
  ...kernelTest(),
  async fn() {
    const controller = new AbortController();
    using probe = ProcessProbe.open({ signal: controller.signal });
    const iteration = (async () => {
      for await (const _ of probe) {
        // Events of other processes on the host; the loop ends only on abort.
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    await within(iteration, EVENT_TIMEOUT_MS, "the iteration did not end after abort()");

    assert.equal(probe.closed, true);
  },
});
