/** The human summary printed at the end of `shears prune`. */
import type { PruneReport } from '../prune/job.js';
import type { EvalResult } from '../eval/evaluate.js';
import { table } from './format.js';

function sumErr(r: PruneReport, key: 'errorBefore' | 'errorAfter'): number {
  return r.layers.reduce((s, l) => s + (l.refine?.[key] ?? 0), 0);
}

export function formatPruneSummary(r: PruneReport, evals?: { dense: EvalResult; pruned: EvalResult }): string {
  const refined = r.layers.some((l) => l.refine);
  const rows = [['layer', 'shape', 'sparsity', ...(r.pattern.includes(':') ? ['N:M'] : []), 'loss', 'damp', ...(refined ? ['refine error', 'PCG steps'] : []), 'time s']];
  for (const l of r.layers) {
    rows.push([
      `${l.block}.${l.name}${l.skipped ? ' (skipped)' : ''}`,
      `${l.rows}x${l.cols}`,
      (100 * l.sparsity).toFixed(2) + '%',
      ...(r.pattern.includes(':') ? [l.nmOk === undefined ? '-' : l.nmOk ? 'ok' : 'NO'] : []),
      l.loss === undefined ? '-' : l.loss.toPrecision(4),
      l.damp === undefined ? '-' : `${l.damp}${l.retries ? ` (${l.retries} retries)` : ''}`,
      ...(refined ? (l.refine ? [`${l.refine.errorBefore.toPrecision(4)} -> ${l.refine.errorAfter.toPrecision(4)}`, `${l.refine.iterations}`] : ['-', '-']) : []),
      l.seconds.toFixed(2),
    ]);
  }
  const lines = [
    table(rows),
    `method ${r.method}, pattern ${r.pattern}, realised sparsity of pruned layers ${(100 * r.sparsity).toFixed(2)}%` +
      (r.nmOk === undefined ? '' : `, N:M ${r.nmOk ? 'holds in every layer' : 'VIOLATED'}`),
    ...(r.owl ? [`OWL (M ${r.owl.m}, lambda ${r.owl.lambda}): block sparsities ${r.owl.sparsities.map((s) => (100 * s).toFixed(1) + '%').join(', ')} from outlier ratios ${r.owl.outlierRatios.map((d) => (100 * d).toFixed(2) + '%').join(', ')}${r.timings.owl !== undefined ? ` (dense pass ${r.timings.owl.toFixed(1)} s)` : ''}`] : []),
    ...(r.options.refine ? [`refine: PCG on each row's kept weights, at most ${r.options.refine.iterations} steps, tolerance ${r.options.refine.tolerance}; layer error ‖(W−Ŵ)X‖² summed ${sumErr(r, 'errorBefore').toPrecision(4)} -> ${sumErr(r, 'errorAfter').toPrecision(4)}${r.timings.refine !== undefined ? ` in ${r.timings.refine.toFixed(1)} s` : ''}`] : []),
    r.calibration ? `calibration ${r.calibration.source}: ${r.calibration.nsamples} x ${r.calibration.seqlen} tokens, seed ${r.calibration.seed}` : 'calibration: none',
    `time ${r.timings.total.toFixed(1)} s (forward ${r.timings.forward.toFixed(1)}, statistics ${r.timings.statistics.toFixed(1)}, pruning ${r.timings.pruning.toFixed(1)}), peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
    `wrote ${r.out} as ${r.format}${r.wbits ? ` with ${r.wbits}-bit weights` : ''}` +
      (r.storage ? `: ${(r.storage.fileBytes / 2 ** 20).toFixed(2)} MiB of weights, ${((100 * r.storage.fileBytes) / r.storage.denseFp16Bytes).toFixed(0)}% of the model dense in fp16` : '') +
      ` (report: ${r.out}/shears-report.json)`,
  ];
  if (evals) {
    lines.push(`perplexity on ${evals.dense.dataset}: dense ${evals.dense.perplexity.toFixed(3)} -> pruned ${evals.pruned.perplexity.toFixed(3)}`);
  }
  return lines.join('\n') + '\n';
}
