// The kernel statistics of a probe's programs, in the form Probe.programStats() returns.

import type { BpfObject } from "../../ffi/object.ts";
import type { ProgramStats } from "../plugin.ts";

/** Reads id, run time and run count of every program of `object`. */
export function programStatsOf(object: BpfObject): ProgramStats[] {
  return object.programs.map((program) => {
    const info = program.info();
    return {
      program: program.name,
      id: info.id,
      runTimeNs: info.runTimeNs,
      runCount: info.runCount,
    };
  });
}
