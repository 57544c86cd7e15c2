import assert from "node:assert/strict";
import { BpfError, ClosedError, openObject } from "../mod.ts";
import { kernelTest, repoPath } from "./_helpers.ts";

const MAPS = repoPath("tests/fixtures/maps.bpf.o");
const XDP_PASS = 2;

function u32(value: number): Uint8Array {
  return new Uint8Array(new Uint32Array([value]).buffer);
}

Deno.test({
  name: "BpfProgram.testRun() runs the program repeat times",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const result = object.program("touch").testRun({ data: new Uint8Array(64), repeat: 100 });
    assert.equal(result.returnValue, XDP_PASS);
    assert.ok(result.durationNs >= 0);
    // The program counts its runs in array[0].
    const runs = object.map("array").lookup(u32(0));
    assert.ok(runs !== undefined);
    assert.equal(new DataView(runs.buffer).getBigUint64(0, true), 100n);
  },
});

Deno.test({
  name: "BpfProgram.testRun() copies the output data",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    const data = new Uint8Array(64).fill(7);
    const dataOut = new Uint8Array(64);
    const result = object.program("touch").testRun({ data, dataOut });
    assert.equal(result.dataSizeOut, 64);
    assert.deepEqual(dataOut, data);
  },
});

Deno.test({
  name: "BpfProgram.testRun() rejects a packet shorter than Ethernet",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    let error: unknown;
    try {
      object.program("touch").testRun({ data: new Uint8Array(4) });
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof BpfError, String(error));
    assert.equal(error.code, "EINVAL");
    assert.equal(error.program, "touch");
    assert.match(error.message, /need at least 14, an Ethernet header/);
  },
});

Deno.test({
  name: "BpfProgram.testRun() after close throws ClosedError",
  ...kernelTest(),
  fn() {
    const object = openObject(MAPS).load();
    const program = object.program("touch");
    object.close();
    assert.throws(() => program.testRun({ data: new Uint8Array(64) }), ClosedError);
  },
});

Deno.test({
  name: "BpfProgram.testRun() rejects a bad repeat",
  ...kernelTest(),
  fn() {
    using object = openObject(MAPS).load();
    for (const repeat of [-1, 0, 1.5, 2 ** 32 + 1]) {
      assert.throws(
        () => object.program("touch").testRun({ data: new Uint8Array(64), repeat }),
        RangeError,
      );
    }
  },
});
