/**
 * SVG charts for the bench and the consistency run (issue 14, "pictures"): plain SVG text, no
 * dependency, so a run can write them next to its JSON and the documents can show them.
 */

export interface Series {
  name: string;
  points: [number, number][];
}

export interface Band {
  start: number;
  end: number;
  label: string;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Shaded spans of x (fault windows), labelled. */
  bands?: Band[];
  logX?: boolean;
  yMin?: number;
  yMax?: number;
}

const WIDTH = 760;
const HEIGHT = 360;
const M = { left: 64, right: 16, top: 36, bottom: 48 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];
const BAND_COLOURS: Record<string, string> = {};
const BAND_PALETTE = ['#fdd0a2', '#c6dbef', '#d9f0d3', '#e7d4e8', '#fee391', '#d0d1e6', '#f2f2f2'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function ticks(min: number, max: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let p = Math.floor(Math.log10(min)); p <= Math.ceil(Math.log10(max)); p++) out.push(10 ** p);
    return out.filter((t) => t >= min / 1.0001 && t <= max * 1.0001);
  }
  const span = max - min || 1;
  const step = 10 ** Math.floor(Math.log10(span / 5));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= 8) ?? step * 10;
  const out: number[] = [];
  for (let t = Math.ceil(min / nice) * nice; t <= max + nice / 1e6; t += nice) out.push(Number(t.toPrecision(12)));
  return out;
}

const label = (v: number): string => (Math.abs(v) >= 1000 ? v.toLocaleString('en-US') : String(Number(v.toPrecision(4))));

/** A line chart of the series over x, with shaded bands behind them. */
export function lineChart(spec: ChartSpec): string {
  const all = spec.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.logX || x > 0));
  if (all.length === 0)
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="60"><text x="10" y="30">${esc(spec.title)}: no data</text></svg>\n`;
  // Loops, not Math.min(...spread), which fails past the engine's argument limit.
  let xMin = all.reduce((m, p) => Math.min(m, p[0]), Infinity);
  let xMax = all.reduce((m, p) => Math.max(m, p[0]), -Infinity);
  for (const b of spec.bands ?? []) {
    xMin = Math.min(xMin, b.start);
    xMax = Math.max(xMax, b.end);
  }
  if (spec.logX) {
    xMin = 10 ** Math.floor(Math.log10(xMin));
    xMax = 10 ** Math.ceil(Math.log10(xMax));
  }
  const yMin = spec.yMin ?? Math.min(0, ...all.map((p) => p[1]));
  const yMax = spec.yMax ?? all.reduce((m, p) => Math.max(m, p[1]), -Infinity) * 1.05;
  const w = WIDTH - M.left - M.right;
  const h = HEIGHT - M.top - M.bottom;
  const fx = (x: number): number =>
    M.left +
    (spec.logX ? (Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin) || 1) : (x - xMin) / (xMax - xMin || 1)) * w;
  const fy = (y: number): number => M.top + h - ((y - yMin) / (yMax - yMin || 1)) * h;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="18" text-anchor="middle" font-size="13">${esc(spec.title)}</text>`,
  ];
  for (const b of spec.bands ?? []) {
    BAND_COLOURS[b.label] ??= BAND_PALETTE[Object.keys(BAND_COLOURS).length % BAND_PALETTE.length] as string;
    const x0 = fx(Math.max(b.start, xMin));
    const x1 = fx(Math.min(b.end, xMax));
    parts.push(
      `<rect x="${x0.toFixed(1)}" y="${M.top}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${h}" fill="${BAND_COLOURS[b.label]}" opacity="0.7"><title>${esc(b.label)}</title></rect>`,
    );
  }
  for (const t of ticks(yMin, yMax, false)) {
    parts.push(`<line x1="${M.left}" x2="${M.left + w}" y1="${fy(t).toFixed(1)}" y2="${fy(t).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${M.left - 6}" y="${(fy(t) + 4).toFixed(1)}" text-anchor="end">${label(t)}</text>`);
  }
  for (const t of ticks(xMin, xMax, !!spec.logX)) {
    parts.push(`<line x1="${fx(t).toFixed(1)}" x2="${fx(t).toFixed(1)}" y1="${M.top + h}" y2="${M.top + h + 4}" stroke="#333"/>`);
    parts.push(`<text x="${fx(t).toFixed(1)}" y="${M.top + h + 16}" text-anchor="middle">${label(t)}</text>`);
  }
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${w}" height="${h}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${M.left + w / 2}" y="${HEIGHT - 10}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${M.top + h / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  spec.series.forEach((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.logX || x > 0));
    if (pts.length === 0) return;
    const colour = COLOURS[i % COLOURS.length];
    parts.push(
      `<polyline fill="none" stroke="${colour}" stroke-width="1.6" points="${pts.map(([x, y]) => `${fx(x).toFixed(1)},${fy(y).toFixed(1)}`).join(' ')}"/>`,
    );
    parts.push(`<rect x="${M.left + 8}" y="${M.top + 6 + i * 15}" width="12" height="3" fill="${colour}"/>`);
    parts.push(`<text x="${M.left + 24}" y="${M.top + 11 + i * 15}">${esc(s.name)}</text>`);
  });
  const labels = [...new Set((spec.bands ?? []).map((b) => b.label))];
  labels.forEach((l, i) => {
    parts.push(`<rect x="${M.left + w - 120}" y="${M.top + 6 + i * 15}" width="12" height="10" fill="${BAND_COLOURS[l]}"/>`);
    parts.push(`<text x="${M.left + w - 104}" y="${M.top + 15 + i * 15}">${esc(l)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/**
 * The latency distributions of several operations side by side: for each, the share of operations
 * (y) answered within x microseconds (log scale), from its quantiles (p0 … p100).
 */
export function latencyDistributions(title: string, quantilesUs: Record<string, number[]>): string {
  const series = Object.entries(quantilesUs).map(([name, q]) => ({
    name,
    points: q.map((v, i) => [v, i / (q.length - 1)] as [number, number]),
  }));
  return lineChart({
    title,
    xLabel: 'latency (µs, log scale)',
    yLabel: 'share of operations answered within',
    series,
    logX: true,
    yMin: 0,
    yMax: 1,
  });
}
