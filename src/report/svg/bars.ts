/**
 * Bars over categories on the left axis, optionally with a line over the same categories on a right
 * axis of its own (linear or log): e.g. realised sparsity per layer (bars, %) and reconstruction loss per
 * layer (line, log). Missing line values leave a gap. Alternate shading can mark groups of categories.
 */
import { categoryAxis, gridLines, legend, markerShape, PALETTE, plotArea, subtitleLines, titleBlock, yAxis, type LegendItem } from './frame.js';
import { linearScale, niceLinearDomain, scaleFor } from './scale.js';
import { el, polylinePath, svgDocument } from './xml.js';

export interface BarLineOptions {
  title: string;
  subtitle?: string;
  xLabel: string;
  categories: readonly string[];
  bars: { name: string; yLabel: string; values: readonly number[]; color?: string; domain?: readonly [number, number] };
  line?: { name: string; yLabel: string; values: readonly (number | undefined)[]; scale?: 'linear' | 'log'; color?: string };
  /** Horizontal reference on the bar axis (e.g. the target sparsity). */
  reference?: { name: string; y: number };
  /** Indices where a new group of categories begins (shaded alternately), e.g. each decoder block. */
  groupStarts?: readonly number[];
  width?: number;
  height?: number;
}

export function barLineChart(o: BarLineOptions): string {
  const n = o.categories.length;
  if (o.bars.values.length !== n || (o.line && o.line.values.length !== n)) throw new Error('barLineChart: one bar (and line) value per category');
  const width = o.width ?? Math.max(640, 220 + n * 22);
  const labelRoom = 6 + 5.5 * Math.max(0, ...o.categories.map((c) => c.length)) * Math.sin(Math.PI / 3);
  const height = (o.height ?? 440) + labelRoom;
  const barColor = o.bars.color ?? PALETTE[0];
  const lineColor = o.line?.color ?? PALETTE[1];
  const items: LegendItem[] = [
    { name: o.bars.name, color: barColor, kind: 'bar' },
    ...(o.line ? [{ name: o.line.name, color: lineColor, kind: 'line' as const, marker: 'circle' as const }] : []),
    ...(o.reference ? [{ name: o.reference.name, color: '#555555', kind: 'line' as const, dashed: true }] : []),
  ];
  const area = plotArea(width, height, { legend: items, rightAxis: !!o.line, bottomExtra: labelRoom, subtitleLines: subtitleLines(width, o.subtitle).length });
  const barVals = o.bars.values.filter(Number.isFinite);
  const y = o.bars.domain
    ? linearScale(o.bars.domain, [area.y1, area.y0])
    : linearScale(niceLinearDomain(Math.min(0, ...barVals), Math.max(0, ...barVals, ...(o.reference ? [o.reference.y] : []))), [area.y1, area.y0]);
  const slot = (area.x1 - area.x0) / Math.max(1, n);
  const centre = (i: number): number => area.x0 + (i + 0.5) * slot;

  const body: string[] = [titleBlock(width, o.title, o.subtitle)];
  if (o.groupStarts && o.groupStarts.length > 1) {
    const starts = [...o.groupStarts, n];
    const shades = starts.slice(0, -1).map((s, g) =>
      g % 2 === 1 ? el('rect', { x: area.x0 + s * slot, y: area.y0, width: (starts[g + 1] - s) * slot, height: area.y1 - area.y0, fill: '#f2f2f2' }) : '',
    );
    body.push(el('g', { class: 'groups' }, shades));
  }
  body.push(gridLines(y, area), categoryAxis(o.categories, centre, area, o.xLabel, labelRoom), yAxis(y, area, o.bars.yLabel, 'left'));
  const base = y.map(Math.max(y.domain[0], 0));
  const bars = o.bars.values.map((v, i) => {
    if (!Number.isFinite(v)) return '';
    const top = y.map(v);
    return el('rect', { x: centre(i) - slot * 0.35, y: Math.min(top, base), width: slot * 0.7, height: Math.abs(base - top), fill: barColor });
  });
  body.push(el('g', { class: 'series bars' }, bars));
  if (o.reference) {
    body.push(el('line', { class: 'reference', x1: area.x0, x2: area.x1, y1: y.map(o.reference.y), y2: y.map(o.reference.y), stroke: '#555555', 'stroke-width': 1.5, 'stroke-dasharray': '6 4' }));
  }
  if (o.line) {
    const scale = o.line.scale ?? 'linear';
    const ok = (v: number | undefined): v is number => v !== undefined && Number.isFinite(v) && (scale !== 'log' || v > 0);
    const y2 = scaleFor(scale, o.line.values.filter(ok), [area.y1, area.y0]);
    body.push(yAxis(y2, area, o.line.yLabel, 'right'));
    // Consecutive drawable values form one path; a missing value breaks the line.
    const runs: [number, number][][] = [];
    let run: [number, number][] = [];
    o.line.values.forEach((v, i) => {
      if (ok(v)) run.push([centre(i), y2.map(v)]);
      else if (run.length) (runs.push(run), (run = []));
    });
    if (run.length) runs.push(run);
    const parts = runs.flatMap((r) => [
      r.length > 1 ? el('path', { d: polylinePath(r), fill: 'none', stroke: lineColor, 'stroke-width': 2 }) : '',
      ...r.map(([px, py]) => markerShape('circle', px, py, lineColor, 3)),
    ]);
    body.push(el('g', { class: 'series line' }, parts));
  }
  body.push(legend(items, area.x1 + (o.line ? 86 : 22), area.y0));
  const desc = `${o.title}. ${n} categories (${o.xLabel}); bars: ${o.bars.name} (${o.bars.yLabel})` + (o.line ? `; line: ${o.line.name} (${o.line.yLabel}${o.line.scale === 'log' ? ', log scale' : ''})` : '') + '.';
  return svgDocument(width, height, o.title, desc, body);
}
