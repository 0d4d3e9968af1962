import { html, type SafeHtml } from "./html.ts";

/**
 * Server-rendered line charts as inline SVG: no chart library, no script, nothing fetched by the browser.
 * One point per time bucket; a null value (no data in that bucket) breaks the line instead of drawing a
 * misleading zero.
 */
export interface Series {
  name: string;
  color: string;
  values: readonly (number | null)[];
}

export interface LineChartOptions {
  title: string;
  /** Start of the first bucket, ms since the epoch. */
  start: number;
  /** Bucket width, ms. */
  stepMs: number;
  series: readonly Series[];
  formatValue?: (value: number) => string;
  width?: number;
  height?: number;
}

const MARGIN = { top: 26, right: 14, bottom: 24, left: 56 };

/** Smallest 1, 2 or 5 × 10^n at or above `value`, so axis labels are round numbers. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const fraction = value / magnitude;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * magnitude;
}

const round = (n: number) => Math.round(n * 10) / 10;

function clockLabel(ms: number): string {
  return new Date(ms).toISOString().slice(11, 16);
}

export function lineChart(options: LineChartOptions): SafeHtml {
  const width = options.width ?? 560;
  const height = options.height ?? 200;
  const format = options.formatValue ?? ((v: number) => String(round(v)));
  const buckets = Math.max(1, ...options.series.map((s) => s.values.length));
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const max = niceCeiling(
    Math.max(0, ...options.series.flatMap((s) => s.values.filter((v): v is number => v !== null))),
  );
  const x = (i: number) => MARGIN.left + (buckets === 1 ? plotW / 2 : (i / (buckets - 1)) * plotW);
  const y = (v: number) => MARGIN.top + plotH - (v / max) * plotH;

  const gridValues = [0, max / 2, max];
  const grid = gridValues.map(
    (
      v,
    ) => html`<line x1="${MARGIN.left}" x2="${width - MARGIN.right}" y1="${round(y(v))}" y2="${round(y(v))}" stroke="#e3e8ee"/>
<text x="${MARGIN.left - 6}" y="${round(y(v)) + 4}" text-anchor="end">${format(v)}</text>`,
  );

  // A time label every quarter of the range (every 15 min on the one-hour charts).
  const labelEvery = Math.max(1, Math.round((buckets - 1) / 4));
  const xLabels = [];
  for (let i = 0; i < buckets; i += labelEvery) {
    xLabels.push(
      html`<text x="${round(x(i))}" y="${height - 6}" text-anchor="middle">${clockLabel(options.start + i * options.stepMs)}</text>`,
    );
  }

  const lines = options.series.map((series) => {
    // Split at nulls: each run of consecutive values is one polyline.
    const runs: string[][] = [];
    let current: string[] = [];
    series.values.forEach((v, i) => {
      if (v === null) {
        if (current.length) runs.push(current);
        current = [];
      } else {
        current.push(`${round(x(i))},${round(y(v))}`);
      }
    });
    if (current.length) runs.push(current);
    return runs.map((points) =>
      points.length === 1
        ? html`<circle cx="${points[0]?.split(",")[0]}" cy="${points[0]?.split(",")[1]}" r="2.5" fill="${series.color}"/>`
        : html`<polyline fill="none" stroke="${series.color}" stroke-width="1.8" stroke-linejoin="round" points="${points.join(" ")}"/>`,
    );
  });

  // Legend entries side by side, each as wide as its text (≈6.5 px per character at 11 px).
  let legendX = MARGIN.left;
  const legend = options.series.map((series) => {
    const last = [...series.values].reverse().find((v) => v !== null);
    const label = `${series.name}${last !== undefined && last !== null ? ` (now ${format(last)})` : ""}`;
    const lx = legendX;
    legendX += 14 + Math.ceil(label.length * 6.5) + 18;
    return html`<rect x="${lx}" y="8" width="10" height="10" rx="2" fill="${series.color}"/>
<text x="${lx + 14}" y="17">${label}</text>`;
  });

  return html`<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 ${width} ${height}" preserveAspectRatio="xMidYMid meet" role="img" aria-label="${options.title}">
<title>${options.title}</title>
${grid}
<line x1="${MARGIN.left}" x2="${MARGIN.left}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#c6ced8"/>
${xLabels}
${lines}
${legend}
</svg>`;
}
