/**
 * Charts over two numeric axes: a line chart (series joined in x order, markers on the data points) and
 * a scatter chart (markers only, optional point labels). Either axis can be logarithmic. Values that
 * cannot be drawn (non-finite, or ≤ 0 on a log axis) are left out and counted in the description.
 */
import { gridLines, legend, markerShape, MARKERS, PALETTE, plotArea, subtitleLines, titleBlock, xAxis, yAxis, type LegendItem, type Marker } from './frame.js';
import { linearScale, scaleFor } from './scale.js';
import { el, polylinePath, svgDocument, text } from './xml.js';

export interface Point {
  x: number;
  y: number;
  /** Shown beside the marker (scatter charts). */
  label?: string;
}

export interface Series {
  name: string;
  points: readonly Point[];
  color?: string;
  marker?: Marker;
  dashed?: boolean;
  /** Where point labels go (default right of the marker). */
  labelSide?: 'left' | 'right';
}

export interface XYChartOptions {
  title: string;
  subtitle?: string;
  /** Axis labels name the quantity and its unit, e.g. "sparsity of pruned layers (%)". */
  xLabel: string;
  yLabel: string;
  xScale?: 'linear' | 'log';
  yScale?: 'linear' | 'log';
  /** Start a linear axis at 0. */
  xIncludeZero?: boolean;
  /** A fixed x domain (linear axis) instead of one fitted to the data. */
  xDomain?: readonly [number, number];
  yIncludeZero?: boolean;
  series: readonly Series[];
  /** Horizontal reference lines (e.g. the dense model), dashed across the plot and listed in the legend. */
  references?: readonly { name: string; y: number; color?: string }[];
  width?: number;
  height?: number;
}

function drawable(p: Point, o: XYChartOptions): boolean {
  return Number.isFinite(p.x) && Number.isFinite(p.y) && (o.xScale !== 'log' || p.x > 0) && (o.yScale !== 'log' || p.y > 0);
}

function xyChart(o: XYChartOptions, connect: boolean): string {
  const width = o.width ?? 760;
  const height = o.height ?? 460;
  const styled = o.series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length], marker: s.marker ?? MARKERS[i % MARKERS.length] }));
  const refs = (o.references ?? []).map((r, i) => ({ ...r, color: r.color ?? '#555555', dash: ['6 4', '2 3', '10 3 2 3'][i % 3] }));
  const items: LegendItem[] = [
    ...styled.map((s) => ({ name: s.name, color: s.color, kind: connect ? ('line' as const) : ('point' as const), marker: s.marker, dashed: s.dashed })),
    ...refs.map((r) => ({ name: r.name, color: r.color, kind: 'line' as const, dashed: true })),
  ];
  const area = plotArea(width, height, { legend: items, subtitleLines: subtitleLines(width, o.subtitle).length });
  const kept = styled.map((s) => ({ ...s, points: s.points.filter((p) => drawable(p, o)) }));
  const dropped = styled.reduce((n, s, i) => n + s.points.length - kept[i].points.length, 0);
  const xs = kept.flatMap((s) => s.points.map((p) => p.x));
  const ys = [...kept.flatMap((s) => s.points.map((p) => p.y)), ...refs.map((r) => r.y).filter((y) => Number.isFinite(y) && (o.yScale !== 'log' || y > 0))];
  const x = o.xDomain && o.xScale !== 'log' ? linearScale(o.xDomain, [area.x0, area.x1]) : scaleFor(o.xScale ?? 'linear', xs, [area.x0, area.x1], { includeZero: o.xIncludeZero });
  const y = scaleFor(o.yScale ?? 'linear', ys, [area.y1, area.y0], { includeZero: o.yIncludeZero });

  const body: string[] = [titleBlock(width, o.title, o.subtitle), gridLines(y, area), xAxis(x, area, o.xLabel), yAxis(y, area, o.yLabel)];
  for (const r of refs) {
    if (!(Number.isFinite(r.y) && (o.yScale !== 'log' || r.y > 0))) continue;
    body.push(el('line', { class: 'reference', x1: area.x0, x2: area.x1, y1: y.map(r.y), y2: y.map(r.y), stroke: r.color, 'stroke-width': 1.5, 'stroke-dasharray': r.dash }));
  }
  for (const s of kept) {
    const pts = [...s.points].sort((a, b) => (connect ? a.x - b.x : 0));
    const parts: string[] = [];
    if (connect && pts.length > 1) {
      parts.push(el('path', { d: polylinePath(pts.map((p) => [x.map(p.x), y.map(p.y)])), fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-dasharray': s.dashed ? '6 4' : undefined }));
    }
    for (const p of pts) {
      parts.push(markerShape(s.marker, x.map(p.x), y.map(p.y), s.color));
      const left = s.labelSide === 'left';
      if (p.label) parts.push(text({ x: x.map(p.x) + (left ? -7 : 7), y: y.map(p.y) - 6, 'text-anchor': left ? 'end' : 'start', 'font-size': 10, fill: '#333333' }, p.label));
    }
    body.push(el('g', { class: 'series' }, parts));
  }
  body.push(legend(items, area.x1 + 22, area.y0));
  const desc = `${o.title}. x: ${o.xLabel}${o.xScale === 'log' ? ' (log scale)' : ''}; y: ${o.yLabel}${o.yScale === 'log' ? ' (log scale)' : ''}; series: ${items.map((i) => i.name).join(', ')}` + (dropped ? `; ${dropped} point(s) not drawable on these axes were left out` : '') + '.';
  return svgDocument(width, height, o.title, desc, body);
}

/** Series as lines through their points (sorted by x), with markers. */
export function lineChart(o: XYChartOptions): string {
  return xyChart(o, true);
}

/** Series as markers only, labelled where points carry a label. */
export function scatterChart(o: XYChartOptions): string {
  return xyChart(o, false);
}
