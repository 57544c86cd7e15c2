import assert from "node:assert/strict";
import { BpfError, ClosedError, NotSupportedError, VerifierError } from "../mod.ts";

Deno.test("BpfError composes operation, subject, errno name and hint", () => {
  const error = new BpfError({
    op: "load",
    object: "syscalls",
    errno: 1,
    detail: "Operation not permitted",
  });
  assert.equal(error.code, "EPERM");
  assert.equal(error.errno, 1);
  assert.equal(
    error.message,
    'Failed to load object "syscalls": Operation not permitted (EPERM) (bpfscope needs root, or the CAP_BPF and CAP_PERFMON capabilities: run it with sudo)',
  );
});

Deno.test("BpfError names program, map and object from the inside out", () => {
  const error = new BpfError({
    op: "attach",
    program: "p",
    object: "o",
    errno: 2,
    detail: "No such file",
  });
  assert.match(
    error.message,
    /^Failed to attach program "p" of object "o": No such file \(ENOENT\)$/,
  );
  const mapError = new BpfError({ op: "update element of", map: "m", errno: 7, detail: "full" });
  assert.match(mapError.message, /\(E2BIG\) \(the map is full\)$/);
});

Deno.test("BpfError appends libbpf output one line each", () => {
  const error = new BpfError({
    op: "open",
    path: "/x.o",
    errno: 2,
    detail: "gone",
    libbpfOutput: ["a", "b"],
  });
  assert.equal(error.message, 'Failed to open file "/x.o": gone (ENOENT)\nlibbpf: a\nlibbpf: b');
  assert.deepEqual(error.libbpfOutput, ["a", "b"]);
});

Deno.test("BpfError names libbpf's own error codes", () => {
  assert.equal(new BpfError({ op: "open", errno: 4001 }).code, "LIBBPF_ERRNO__FORMAT");
  assert.equal(new BpfError({ op: "open", errno: 9999 }).code, "E9999");
});

Deno.test("VerifierError keeps the log and quotes its last lines", () => {
  const log =
    "0: (b7) r0 = 0\n1: (95) exit\nR0 invalid mem access\nprocessed 2 insns (limit 1000000)\n";
  const error = new VerifierError({ op: "load", program: "p", errno: 13, log, truncated: false });
  assert.ok(error instanceof BpfError);
  assert.equal(error.log, log);
  assert.match(
    error.message,
    /the verifier rejected it: 0: \(b7\) r0 = 0 \/ 1: \(95\) exit \/ R0 invalid mem access \(EACCES\)/,
  );
  assert.doesNotMatch(error.message, /processed/);
});

Deno.test("NotSupportedError names the feature and minimum version", () => {
  const error = new NotSupportedError({ feature: "batch lookups", minimum: "Linux 5.6" });
  assert.equal(error.code, "EOPNOTSUPP");
  assert.match(error.message, /batch lookups.*requires Linux 5\.6 or newer/);
});

Deno.test("ClosedError has no empty hint", () => {
  const error = new ClosedError("read", 'memory of map "m"');
  assert.equal(error.message, 'Failed to read memory of map "m": it is closed (EBADF)');
});
