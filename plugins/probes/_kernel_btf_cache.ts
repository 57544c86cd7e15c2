/**
 * Writing the kernel BTF cache entry of a built-in probe's object from its
 * plugin, so that the next start in this boot loads faster.
 *
 * @module
 */

import { createKernelBtfCache } from "../../ffi/kernel_btf_cache.ts";
import type { PluginContext } from "../plugin.ts";

/**
 * Writes the cache entry of `object` when there is none, and reports the
 * reason through the context when it cannot. Never rejects.
 */
export async function writeKernelBtfCache(
  object: Uint8Array,
  probe: string,
  context: PluginContext,
): Promise<void> {
  const result = await createKernelBtfCache(object);
  if ("skipped" in result) {
    context.report?.(
      "INFO",
      `Probe "${probe}": kernel BTF cache not written, so the next start parses the kernel's BTF: ${result.skipped}`,
    );
  }
}
