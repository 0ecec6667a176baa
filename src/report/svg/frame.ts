/**
 * What every chart shares: the plot area inside the margins, the title, axes with ticks and labels, light
 * grid lines, point markers and the legend (a column right of the plot, so it never hides data).
 * Elements carry classes ("title", "axis x", "axis-label", "legend", "legend-item") that tests look for.
 */
import type { Scale } from './scale.js';
import { el, escapeXml, text, num } from './xml.js';

/** Okabe–Ito colours: distinguishable with the common colour-vision deficiencies. */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'] as const;

export type Marker = 'circle' | 'square' | 'triangle' | 'diamond' | 'cross';
export const MARKERS: readonly Marker[] = ['circle', 'square', 'triangle', 'diamond', 'cross'];

/** Pixel box of the plot: x grows right from x0 to x1, y grows down from y0 (top) to y1 (bottom). */
export interface Area {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

export interface LegendItem {
  name: string;
  color: string;
  kind: 'line' | 'bar' | 'point';
  marker?: Marker;
  dashed?: boolean;
}

const CHAR_W = 6.6; // average glyph width of 12 px Helvetica, for sizing boxes around text

export function legendWidth(items: readonly LegendItem[]): number {
  return items.length === 0 ? 0 : 44 + CHAR_W * Math.max(...items.map((i) => i.name.length));
}

/** A subtitle broken into lines that fit the chart's width (11 px text). */
export function subtitleLines(width: number, subtitle?: string): string[] {
  if (!subtitle) return [];
  const max = Math.max(20, Math.floor((width - 40) / 5.9));
  const lines: string[] = [];
  let line = '';
  for (const word of subtitle.split(/\s+/)) {
    if (line && line.length + 1 + word.length > max) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** Plot area for a chart of this size: room for the title and subtitle lines, tick labels, axis labels, a right axis and the legend. */
export function plotArea(width: number, height: number, o: { legend: readonly LegendItem[]; rightAxis?: boolean; bottomExtra?: number; subtitleLines?: number }): Area {
  const top = 44 + 14 * (o.subtitleLines ?? 0);
  const left = 72;
  const right = 16 + (o.rightAxis ? 64 : 0) + legendWidth(o.legend);
  const bottom = 52 + (o.bottomExtra ?? 0);
  return { x0: left, x1: width - right, y0: top, y1: height - bottom };
}

export function titleBlock(width: number, title: string, subtitle?: string): string {
  const lines = subtitleLines(width, subtitle);
  // One text element; each line a tspan ending in a space so the element's text reads as the whole subtitle.
  const spans = lines.map((l, i) => el('tspan', { x: width / 2, dy: i === 0 ? 0 : 14 }, escapeXml(i < lines.length - 1 ? `${l} ` : l)));
  return [
    text({ class: 'title', x: width / 2, y: 22, 'text-anchor': 'middle', 'font-size': 15, 'font-weight': 'bold' }, title),
    lines.length ? el('text', { class: 'subtitle', x: width / 2, y: 40, 'text-anchor': 'middle', 'font-size': 11, fill: '#444444' }, spans) : '',
  ].join('');
}

/** Horizontal grid lines at the labelled y ticks. */
export function gridLines(y: Scale, area: Area): string {
  const lines = y
    .ticks()
    .filter((t) => !t.minor)
    .map((t) => el('line', { x1: area.x0, x2: area.x1, y1: y.map(t.value), y2: y.map(t.value), stroke: '#e3e3e3', 'stroke-width': 1 }));
  return el('g', { class: 'grid' }, lines);
}

/** Bottom axis: line, ticks, tick labels, and the axis label (with its unit) centred below. */
export function xAxis(x: Scale, area: Area, label: string): string {
  const parts = [el('line', { x1: area.x0, x2: area.x1, y1: area.y1, y2: area.y1, stroke: '#000000' })];
  for (const t of x.ticks()) {
    const px = x.map(t.value);
    parts.push(el('line', { x1: px, x2: px, y1: area.y1, y2: area.y1 + (t.minor ? 3 : 6), stroke: '#000000' }));
    if (t.label) parts.push(text({ x: px, y: area.y1 + 19, 'text-anchor': 'middle' }, t.label));
  }
  parts.push(text({ class: 'axis-label x', x: (area.x0 + area.x1) / 2, y: area.y1 + 40, 'text-anchor': 'middle' }, label));
  return el('g', { class: 'axis x' }, parts);
}

/** Bottom axis for categories (bars): one rotated label per category under its centre. */
export function categoryAxis(labels: readonly string[], centre: (i: number) => number, area: Area, label: string, labelRoom: number): string {
  const parts = [el('line', { x1: area.x0, x2: area.x1, y1: area.y1, y2: area.y1, stroke: '#000000' })];
  labels.forEach((l, i) => {
    const px = centre(i);
    parts.push(el('line', { x1: px, x2: px, y1: area.y1, y2: area.y1 + 4, stroke: '#000000' }));
    parts.push(text({ x: px, y: area.y1 + 10, 'text-anchor': 'end', 'font-size': 10, transform: `rotate(-60 ${num(px)} ${num(area.y1 + 10)})` }, l));
  });
  parts.push(text({ class: 'axis-label x', x: (area.x0 + area.x1) / 2, y: area.y1 + labelRoom + 36, 'text-anchor': 'middle' }, label));
  return el('g', { class: 'axis x' }, parts);
}

/** Left (or right) axis: line, ticks, labels, and the rotated axis label. */
export function yAxis(y: Scale, area: Area, label: string, side: 'left' | 'right' = 'left'): string {
  const ax = side === 'left' ? area.x0 : area.x1;
  const dir = side === 'left' ? -1 : 1;
  const parts = [el('line', { x1: ax, x2: ax, y1: area.y0, y2: area.y1, stroke: '#000000' })];
  for (const t of y.ticks()) {
    const py = y.map(t.value);
    parts.push(el('line', { x1: ax, x2: ax + dir * (t.minor ? 3 : 6), y1: py, y2: py, stroke: '#000000' }));
    if (t.label) parts.push(text({ x: ax + dir * 9, y: py + 4, 'text-anchor': side === 'left' ? 'end' : 'start' }, t.label));
  }
  const lx = ax + dir * 56;
  const ly = (area.y0 + area.y1) / 2;
  parts.push(text({ class: `axis-label ${side === 'left' ? 'y' : 'y2'}`, x: lx, y: ly, 'text-anchor': 'middle', transform: `rotate(${side === 'left' ? -90 : 90} ${num(lx)} ${num(ly)})` }, label));
  return el('g', { class: `axis ${side === 'left' ? 'y' : 'y2'}` }, parts);
}

export function markerShape(kind: Marker, x: number, y: number, color: string, r = 4): string {
  switch (kind) {
    case 'circle':
      return el('circle', { cx: x, cy: y, r, fill: color });
    case 'square':
      return el('rect', { x: x - r, y: y - r, width: 2 * r, height: 2 * r, fill: color });
    case 'triangle':
      return el('path', { d: `M${num(x)} ${num(y - r * 1.2)} L${num(x + r * 1.1)} ${num(y + r * 0.8)} L${num(x - r * 1.1)} ${num(y + r * 0.8)} Z`, fill: color });
    case 'diamond':
      return el('path', { d: `M${num(x)} ${num(y - r * 1.3)} L${num(x + r)} ${num(y)} L${num(x)} ${num(y + r * 1.3)} L${num(x - r)} ${num(y)} Z`, fill: color });
    case 'cross':
      return el('path', { d: `M${num(x - r)} ${num(y - r)} L${num(x + r)} ${num(y + r)} M${num(x - r)} ${num(y + r)} L${num(x + r)} ${num(y - r)}`, stroke: color, 'stroke-width': 2, fill: 'none' });
  }
}

/** The legend as a column starting at (x, y): a swatch (line, bar or marker) and the series name per row. */
export function legend(items: readonly LegendItem[], x: number, y: number): string {
  if (items.length === 0) return '';
  const rows = items.map((it, i) => {
    const cy = y + 8 + i * 20;
    const swatch =
      it.kind === 'bar'
        ? el('rect', { x: x, y: cy - 6, width: 22, height: 12, fill: it.color })
        : [
            it.kind === 'line' ? el('line', { x1: x, x2: x + 22, y1: cy, y2: cy, stroke: it.color, 'stroke-width': 2, 'stroke-dasharray': it.dashed ? '6 4' : undefined }) : '',
            it.marker ? markerShape(it.marker, x + 11, cy, it.color) : '',
          ].join('');
    return el('g', { class: 'legend-item' }, [swatch, text({ x: x + 30, y: cy + 4 }, it.name)]);
  });
  const h = items.length * 20 + 4;
  return el('g', { class: 'legend' }, [el('rect', { x: x - 6, y: y - 6, width: legendWidth(items) - 4, height: h + 4, fill: '#ffffff', stroke: '#cccccc' }), ...rows]);
}
