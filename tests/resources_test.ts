import assert from "node:assert/strict";
import { kernelTest, repoPath, run } from "./_helpers.ts";

Deno.test({
  name: "leak tracing reports an unclosed object",
  ...kernelTest(),
  async fn() {
    const result = await run(Deno.execPath(), [
      "run",
      "--allow-all",
      "--v8-flags=--expose-gc",
      repoPath("tests/_scripts/leak_object.ts"),
    ], { env: { BPFSCOPE_TRACE_LEAKS: "1" } });
    assert.equal(result.code, 0, result.stderr);
    const leaks = JSON.parse(result.stdout) as string[];
    assert.ok(
      leaks.some((leak) => leak.startsWith('object "attach" was never closed')),
      leaks.join("\n"),
    );
    assert.ok(
      leaks.some((leak) => leak.includes("leak_object.ts")),
      "the creation stack names the script",
    );
  },
});
