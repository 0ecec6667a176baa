/**
 * The per-layer plot of one pruning run: realised sparsity of every linear layer (bars, %) and, where the
 * method reports one, its reconstruction loss (line, log scale), drawn from a shears-report.json.
 * `shears prune --plot` writes it beside the report; scripts/reproduce.ts puts one in docs/.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import type { PruneReport } from '../prune/job.js';
import { barLineChart } from './svg/bars.js';

export const LAYER_PLOT_FILE = 'shears-layers.svg';

/** The requested fraction of zeros for a report's pattern: "50%" → 0.5, "2:4" → 0.5; null if unreadable. */
export function targetOfPattern(pattern: string): number | null {
  const pct = /^([\d.]+)%$/.exec(pattern);
  if (pct) return Number(pct[1]) / 100;
  const nm = /^(\d+):(\d+)$/.exec(pattern);
  return nm ? Number(nm[1]) / Number(nm[2]) : null;
}

/** Fields of a PruneReport the plot reads (so older or partial reports still plot). */
export type LayerPlotInput = Pick<PruneReport, 'method' | 'pattern' | 'model' | 'layers'> & { sparsity?: number; owl?: PruneReport['owl'] };

export function layerPlotSvg(r: LayerPlotInput, title?: string): string {
  const layers = r.layers;
  const short = (name: string): string => name.split('.').pop() ?? name;
  const starts = layers.map((l, i) => (i === 0 || l.block !== layers[i - 1].block ? i : -1)).filter((i) => i >= 0);
  const losses = layers.map((l) => (l.skipped ? undefined : l.loss));
  const hasLoss = losses.some((v) => v !== undefined && v > 0);
  const target = targetOfPattern(r.pattern);
  return barLineChart({
    title: title ?? `Per-layer result: ${r.method} ${r.pattern}`,
    subtitle:
      `${r.model}${r.sparsity !== undefined ? `; ${(100 * r.sparsity).toFixed(2)}% zeros over all pruned layers` : ''}` +
      (r.owl ? `; OWL block sparsities ${r.owl.sparsities.map((s) => (100 * s).toFixed(1)).join(', ')}%` : '') +
      (hasLoss ? (layers.some((l) => l.skipped) ? '; skipped layers (*) have no loss' : '') : `; ${r.method} reports no reconstruction loss`),
    xLabel: 'linear layer (decoder block . layer; blocks shaded alternately)',
    categories: layers.map((l) => `${l.block}.${short(l.name)}${l.skipped ? '*' : ''}`),
    groupStarts: starts,
    bars: { name: 'realised sparsity', yLabel: 'realised sparsity (% of weights zero)', values: layers.map((l) => 100 * l.sparsity), domain: [0, 100] },
    line: hasLoss ? { name: 'reconstruction loss', yLabel: 'reconstruction loss, OBS estimate of ‖(W−Ŵ)X‖² (log)', values: losses, scale: 'log' } : undefined,
    reference: target !== null ? { name: `requested ${r.pattern}`, y: 100 * target } : undefined,
  });
}

/** Write the plot as <dir>/shears-layers.svg; returns its path. */
export function writeLayerPlot(r: LayerPlotInput, dir: string): string {
  const path = join(dir, LAYER_PLOT_FILE);
  writeFileAtomic(path, layerPlotSvg(r));
  return path;
}
