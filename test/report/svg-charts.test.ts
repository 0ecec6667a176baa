/**
 * The charts as documents: well-formed XML (checked by an independent strict parser), text escaped,
 * title / axis labels / legend present, and data drawn where the axes say it is (pixel positions
 * recomputed here from the axis line and the tick labels, not taken from the scale code).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { el, escapeXml, num, svgDocument, text } from '../../src/report/svg/xml.js';
import { lineChart, scatterChart } from '../../src/report/svg/xy.js';
import { barLineChart } from '../../src/report/svg/bars.js';
import { LAYER_PLOT_FILE, layerPlotSvg, targetOfPattern, writeLayerPlot } from '../../src/report/layer-plot.js';
import { allElements, byClass, parseXml, textOf, type XmlElement } from './xml.js';

const HOSTILE = `</title><script>alert("x")</script> & 5 < 6 'q'`;

function child(e: XmlElement, name: string): XmlElement | undefined {
  return e.children.find((c) => c.name === name);
}

/** The y-axis line's pixel ends (top, bottom) and its labelled ticks (value at pixel y). */
function yAxisOf(root: XmlElement, cls = 'y'): { top: number; bottom: number; ticks: { value: number; y: number }[] } {
  const g = byClass(root, 'axis', cls)[0];
  const line = g.children.find((c) => c.name === 'line')!;
  const labels = g.children.filter((c) => c.name === 'text' && !(c.attrs.class ?? '').includes('axis-label'));
  return {
    top: Number(line.attrs.y1),
    bottom: Number(line.attrs.y2),
    // a label sits 4 px below its tick (baseline offset)
    ticks: labels.map((t) => ({ value: Number(textOf(t)), y: Number(t.attrs.y) - 4 })),
  };
}

describe('xml primitives', () => {
  it('escapes the five special characters and drops characters XML forbids', () => {
    expect(escapeXml(`a<b & "c" 'd' >`)).toBe('a&lt;b &amp; &quot;c&quot; &apos;d&apos; &gt;');
    expect(escapeXml('x\u0001y\u000Bz')).toBe('xyz');
    expect(escapeXml('lone \uD800 surrogate')).toBe('lone  surrogate');
    expect(escapeXml('ok 😀 ‖W−Ŵ‖²')).toBe('ok 😀 ‖W−Ŵ‖²');
  });

  it('round-trips hostile text through elements and attributes', () => {
    const doc = el('root', { label: HOSTILE }, [text({ x: 1 }, HOSTILE), el('empty')]);
    const root = parseXml(doc);
    expect(root.attrs.label).toBe(HOSTILE);
    expect(textOf(root.children[0])).toBe(HOSTILE);
    expect(root.children[1].name).toBe('empty');
  });

  it('rejects names that are not XML names', () => {
    expect(() => el('a b')).toThrow();
    expect(() => el('g', { 'on click': 'x' })).toThrow();
  });

  it('prints coordinates with at most two decimals and no negative zero', () => {
    expect(num(12.345678)).toBe('12.35');
    expect(num(-0.001)).toBe('0');
    expect(num(1e-7)).toBe('0');
    expect(num(-3.5)).toBe('-3.5');
    expect(() => num(NaN)).toThrow();
  });

  it('the test parser itself rejects malformed documents', () => {
    expect(() => parseXml('<a><b></a></b>')).toThrow();
    expect(() => parseXml('<a>x & y</a>')).toThrow();
    expect(() => parseXml('<a x="1" x="2"/>')).toThrow();
    expect(() => parseXml('<a x=1/>')).toThrow();
    expect(() => parseXml('<a/><b/>')).toThrow();
    expect(() => parseXml('<a>&nbsp;</a>')).toThrow();
    expect(parseXml('<?xml version="1.0"?>\n<a t="&lt;&#65;&#x42;"/>\n').attrs.t).toBe('<AB');
  });

  it('writes a standalone SVG with the namespace, a title and a description', () => {
    const root = parseXml(svgDocument(100, 50, HOSTILE, 'd & e', []));
    expect(root.name).toBe('svg');
    expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    expect(textOf(child(root, 'title')!)).toBe(HOSTILE);
    expect(textOf(child(root, 'desc')!)).toBe('d & e');
  });
});

describe('line chart', () => {
  const svg = lineChart({
    title: `Perplexity <vs> sparsity & "friends"`,
    xLabel: 'sparsity (%)',
    yLabel: 'perplexity (log scale)',
    yScale: 'log',
    series: [
      { name: 'magnitude', points: [{ x: 50, y: 40 }, { x: 70, y: 300 }, { x: 90, y: Infinity }] },
      { name: 'sparsegpt <b>', points: [{ x: 50, y: 18 }, { x: 70, y: 60 }, { x: 60, y: -1 }] },
    ],
    references: [{ name: 'dense', y: 4.1 }],
  });
  const root = parseXml(svg);

  it('is well-formed and carries the title, axis labels and the legend, all escaped', () => {
    expect(textOf(child(root, 'title')!)).toBe(`Perplexity <vs> sparsity & "friends"`);
    expect(textOf(byClass(root, 'title')[0])).toBe(`Perplexity <vs> sparsity & "friends"`);
    expect(textOf(byClass(root, 'axis-label', 'x')[0])).toBe('sparsity (%)');
    expect(textOf(byClass(root, 'axis-label', 'y')[0])).toBe('perplexity (log scale)');
    const items = byClass(root, 'legend-item').map((g) => textOf(g.children.find((c) => c.name === 'text')!));
    expect(items).toEqual(['magnitude', 'sparsegpt <b>', 'dense']);
  });

  it('leaves out points a log axis cannot show and says so', () => {
    expect(textOf(child(root, 'desc')!)).toMatch(/2 point\(s\) not drawable/);
    const markers = byClass(root, 'series').flatMap((g) => g.children.filter((c) => c.name !== 'path'));
    expect(markers.length).toBe(4);
  });

  it('labels the log axis 1-2-5 over the data and draws each point where its ticks put it', () => {
    const ax = yAxisOf(root);
    // data and reference span 4.1 .. 300: axis 2 .. 500, labelled 2, 5, 10, 20, 50, 100, 200, 500
    expect(ax.ticks.map((t) => t.value)).toEqual([2, 5, 10, 20, 50, 100, 200, 500]);
    expect(ax.ticks[0].y).toBeCloseTo(ax.bottom, 6);
    expect(ax.ticks[ax.ticks.length - 1].y).toBeCloseTo(ax.top, 6);
    const expectY = (v: number): number => ax.bottom - ((Math.log(v) - Math.log(2)) / (Math.log(500) - Math.log(2))) * (ax.bottom - ax.top);
    for (const t of ax.ticks) expect(t.y).toBeCloseTo(expectY(t.value), 1);
    const circles = byClass(root, 'series')[0].children.filter((c) => c.name === 'circle');
    expect(circles.map((c) => Number(c.attrs.cy))).toEqual([expect.closeTo(expectY(40), 1), expect.closeTo(expectY(300), 1)]);
    const ref = byClass(root, 'reference')[0];
    expect(Number(ref.attrs.y1)).toBeCloseTo(expectY(4.1), 1);
  });
});

describe('scatter chart', () => {
  it('draws markers only, with point labels', () => {
    const root = parseXml(
      scatterChart({
        title: 'size vs perplexity',
        xLabel: 'file size (KiB)',
        yLabel: 'perplexity',
        series: [{ name: 'sparse-bitmask', points: [{ x: 641, y: 18, label: '50%' }, { x: 376, y: 260, label: '80% <x>' }], labelSide: 'left' }],
      }),
    );
    const g = byClass(root, 'series')[0];
    expect(g.children.some((c) => c.name === 'path' && c.attrs.fill === 'none')).toBe(false);
    const labels = g.children.filter((c) => c.name === 'text');
    expect(labels.map(textOf)).toEqual(['50%', '80% <x>']);
    expect(labels.every((l) => l.attrs['text-anchor'] === 'end')).toBe(true);
    expect(byClass(root, 'legend-item').length).toBe(1);
  });
});

describe('bar and line chart', () => {
  const root = parseXml(
    barLineChart({
      title: 'per layer',
      xLabel: 'layer',
      categories: ['0.q', '0.k', '1.q', '1.k'],
      bars: { name: 'sparsity', yLabel: 'sparsity (%)', values: [50, 25, 100, 0], domain: [0, 100] },
      line: { name: 'loss', yLabel: 'loss (log)', values: [10, undefined, 1000, 100], scale: 'log' },
      reference: { name: 'target', y: 50 },
      groupStarts: [0, 2],
    }),
  );

  it('draws bar heights in proportion to the value on the left axis', () => {
    const ax = yAxisOf(root, 'y');
    const bars = byClass(root, 'series', 'bars')[0].children.filter((c) => c.name === 'rect');
    const h = ax.bottom - ax.top;
    expect(bars.map((b) => Number(b.attrs.height) / h)).toEqual([expect.closeTo(0.5, 3), expect.closeTo(0.25, 3), expect.closeTo(1, 3), expect.closeTo(0, 3)]);
    expect(Number(byClass(root, 'reference')[0].attrs.y1)).toBeCloseTo(ax.bottom - h / 2, 1);
  });

  it('has both axis labels, a right axis for the line, a gap where a value is missing, and a legend', () => {
    expect(textOf(byClass(root, 'axis-label', 'y')[0])).toBe('sparsity (%)');
    expect(textOf(byClass(root, 'axis-label', 'y2')[0])).toBe('loss (log)');
    expect(textOf(byClass(root, 'axis-label', 'x')[0])).toBe('layer');
    const line = byClass(root, 'series', 'line')[0];
    // values 10 | gap | 1000, 100: one single-point run (no path) and one two-point path
    expect(line.children.filter((c) => c.name === 'path').length).toBe(1);
    expect(line.children.filter((c) => c.name === 'circle').length).toBe(3);
    expect(byClass(root, 'legend-item').map((g) => textOf(g.children.find((c) => c.name === 'text')!))).toEqual(['sparsity', 'loss', 'target']);
    expect(byClass(root, 'groups')[0].children.filter((c) => c.name === 'rect').length).toBe(1);
  });

  it('rejects values that do not match the categories', () => {
    expect(() => barLineChart({ title: 't', xLabel: 'x', categories: ['a'], bars: { name: 'b', yLabel: 'y', values: [1, 2] } })).toThrow();
  });
});

describe('per-layer plot of a prune report', () => {
  const layer = (block: number, name: string, sparsity: number, loss?: number) => ({ block, name, tensor: `model.layers.${block}.${name}.weight`, rows: 4, cols: 4, skipped: false, sparsity, loss, seconds: 0 });

  it('reads the requested sparsity from the pattern', () => {
    expect(targetOfPattern('50%')).toBe(0.5);
    expect(targetOfPattern('2:4')).toBe(0.5);
    expect(targetOfPattern('4:8')).toBe(0.5);
    expect(targetOfPattern('12.5%')).toBe(0.125);
    expect(targetOfPattern('?')).toBeNull();
  });

  it('shows one bar per layer and the loss line only when the method reports losses', () => {
    const withLoss = parseXml(layerPlotSvg({ method: 'sparsegpt', pattern: '2:4', model: 'm', sparsity: 0.5, layers: [layer(0, 'self_attn.q_proj', 0.5, 3), layer(1, 'mlp.down_proj', 0.5, 30)] }));
    const cats = byClass(withLoss, 'axis', 'x')[0].children.filter((c) => c.name === 'text' && !c.attrs.class).map(textOf);
    expect(cats).toEqual(['0.q_proj', '1.down_proj']);
    expect(byClass(withLoss, 'series', 'line').length).toBe(1);
    expect(textOf(byClass(withLoss, 'title')[0])).toBe('Per-layer result: sparsegpt 2:4');
    const noLoss = parseXml(layerPlotSvg({ method: 'magnitude', pattern: '50%', model: 'm', layers: [layer(0, 'self_attn.q_proj', 0.5)] }));
    expect(byClass(noLoss, 'series', 'line').length).toBe(0);
    expect(byClass(noLoss, 'axis', 'y2').length).toBe(0);
    expect(allElements(noLoss).some((e) => e.name === 'title')).toBe(true);
  });
});

describe('writeLayerPlot', () => {
  it('writes shears-layers.svg into the run folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shears-plot-'));
    const path = writeLayerPlot({ method: 'wanda', pattern: '50%', model: 'm', layers: [{ block: 0, name: 'mlp.up_proj', tensor: 't', rows: 2, cols: 2, skipped: false, sparsity: 0.5, seconds: 0 }] }, dir);
    expect(path).toBe(join(dir, LAYER_PLOT_FILE));
    const root = parseXml(readFileSync(path, 'utf8'));
    expect(textOf(byClass(root, 'subtitle')[0])).toContain('wanda reports no reconstruction loss');
  });
});
