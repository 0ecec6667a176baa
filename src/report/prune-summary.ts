/** The human summary printed at the end of `shears prune`. */
import type { PruneReport } from '../prune/job.js';
import type { EvalResult } from '../eval/evaluate.js';
import { table } from './format.js';

export function formatPruneSummary(r: PruneReport, evals?: { dense: EvalResult; pruned: EvalResult }): string {
  const rows = [['layer', 'shape', 'sparsity', ...(r.pattern.includes(':') ? ['N:M'] : []), 'loss', 'damp', 'time s']];
  for (const l of r.layers) {
    rows.push([
      `${l.block}.${l.name}${l.skipped ? ' (skipped)' : ''}`,
      `${l.rows}x${l.cols}`,
      (100 * l.sparsity).toFixed(2) + '%',
      ...(r.pattern.includes(':') ? [l.nmOk === undefined ? '-' : l.nmOk ? 'ok' : 'NO'] : []),
      l.loss === undefined ? '-' : l.loss.toPrecision(4),
      l.damp === undefined ? '-' : `${l.damp}${l.retries ? ` (${l.retries} retries)` : ''}`,
      l.seconds.toFixed(2),
    ]);
  }
  const lines = [
    table(rows),
    `method ${r.method}, pattern ${r.pattern}, realised sparsity of pruned layers ${(100 * r.sparsity).toFixed(2)}%` +
      (r.nmOk === undefined ? '' : `, N:M ${r.nmOk ? 'holds in every layer' : 'VIOLATED'}`),
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
