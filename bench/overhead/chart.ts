/**
 * The SVG chart of the overhead benchmark: two horizontal bar panels, the
 * median overhead per traced syscall and the median start-up to counting.
 *
 * @module
 */

/** One bar; `value` is undefined when the tracer did not run. */
export interface Bar {
  name: string;
  value: number | undefined;
}

const WIDTH = 760;
const LABEL = 230;
const BAR_HEIGHT = 20;
const GAP = 6;

function escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function panel(title: string, unit: string, bars: Bar[], top: number): [string[], number] {
  const lines = [
    `<text x="10" y="${top + 16}" font-weight="bold">${escape(title)}</text>`,
  ];
  const max = Math.max(1, ...bars.map((bar) => bar.value ?? 0));
  const scale = (WIDTH - LABEL - 90) / max;
  let y = top + 28;
  for (const bar of bars) {
    const isBpfscope = bar.name.startsWith("bpfscope");
    lines.push(
      `<text x="${LABEL - 8}" y="${y + 14}" text-anchor="end">${escape(bar.name)}</text>`,
    );
    if (bar.value === undefined) {
      lines.push(`<text x="${LABEL}" y="${y + 14}" fill="#888">did not run</text>`);
    } else {
      const width = Math.max(1, bar.value * scale);
      const color = isBpfscope ? "#2f6fb0" : "#a0a0a0";
      lines.push(
        `<rect x="${LABEL}" y="${y}" width="${
          width.toFixed(1)
        }" height="${BAR_HEIGHT}" fill="${color}"/>`,
        `<text x="${(LABEL + width + 6).toFixed(1)}" y="${y + 14}">${
          bar.value.toFixed(1)
        } ${unit}</text>`,
      );
    }
    y += BAR_HEIGHT + GAP;
  }
  return [lines, y];
}

/** Writes the chart of `overhead` (ns per event) and `startup` (ms) to `path`. */
export async function writeChart(path: string, overhead: Bar[], startup: Bar[]): Promise<void> {
  const [first, middle] = panel("Overhead per traced syscall (median)", "ns", overhead, 0);
  const [second, bottom] = panel(
    "Start-up to attached and counting (median)",
    "ms",
    startup,
    middle + 14,
  );
  const height = bottom + 10;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    ...first,
    ...second,
    "</svg>",
    "",
  ].join("\n");
  await Deno.writeTextFile(path, svg);
}
