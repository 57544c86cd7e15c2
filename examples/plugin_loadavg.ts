/**
 * An example third-party probe plugin: the system load averages from
 * /proc/loadavg as gauges. It needs no eBPF and no root, only read access to
 * /proc. Load it by path:
 *
 * `deno run --allow-all cli.ts run --plugin examples/plugin_loadavg.ts --probe loadavg --sink stdout`
 *
 * A plugin module exports its plugin object as the default export (or as
 * `plugin`). The type import below disappears at run time, so the module
 * works from a path or a URL.
 *
 * @module
 */

import type { GaugeMetric, Metric, ProbePlugin } from "../plugins/plugin.ts";

const PERIODS = ["1m", "5m", "15m"] as const;

/** Reads /proc/loadavg, such as `0.52 0.58 0.59 2/345 12345`, into gauges. */
function readLoadAverage(path: string): Metric[] {
  const fields = Deno.readTextFileSync(path).trim().split(/\s+/);
  const [running, total] = (fields[3] ?? "").split("/").map(Number);
  if (fields.length < 4 || running === undefined || total === undefined) {
    throw new TypeError(`Unexpected contents of ${path}: ${fields.join(" ")}`);
  }

  const load: GaugeMetric = {
    kind: "gauge",
    name: "system.load_average",
    description: "Average number of runnable and uninterruptible tasks over the period",
    unit: "1",
    points: PERIODS.map((period, i) => ({ attributes: { period }, value: Number(fields[i]) })),
  };
  const tasks: GaugeMetric = {
    kind: "gauge",
    name: "system.tasks",
    description: "Scheduling entities (tasks) that exist, and those runnable now",
    unit: "{task}",
    points: [
      { attributes: { state: "runnable" }, value: running },
      { attributes: { state: "all" }, value: total },
    ],
  };
  return [load, tasks];
}

const plugin: ProbePlugin = {
  kind: "probe",
  name: "loadavg",
  description: "Load averages and task counts from /proc/loadavg (example plugin, no eBPF)",
  open(_context, options) {
    // `loadavg:PATH` reads another file with the same format, which tests use.
    const path = options || "/proc/loadavg";
    readLoadAverage(path);
    return {
      collect: () => readLoadAverage(path),
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  },
};

export default plugin;
