/** The human summary printed at the end of a structured `shears prune`. */
import type { EvalResult } from '../eval/evaluate.js';
import { table } from '../report/format.js';
import { formatPruneSummary } from '../report/prune-summary.js';
import type { StructuredReport } from './job.js';

const num = (v: number | undefined): string => (v === undefined ? '-' : v.toPrecision(4));

export function formatStructuredSummary(r: StructuredReport, evals?: { dense: EvalResult; pruned: EvalResult }): string {
  const s = r.structured;
  const rows = [['block', 'from', 'heads removed', 'channels removed', 'attn loss', 'mlp loss', 'time s']];
  for (const b of s.blocks) {
    rows.push([String(b.block), String(b.source), b.removedHeads ? `${b.removedHeads.length} [${b.removedHeads.join(',')}]` : '-', b.removedChannels === undefined ? '-' : String(b.removedChannels), num(b.attentionLoss), num(b.mlpLoss), b.seconds.toFixed(2)]);
  }
  const lines = [table(rows)];
  if (s.channels) lines.push(`MLP channels: ${s.channels.before} → ${s.channels.after} per block (${s.channels.removed} removed)`);
  if (s.heads) lines.push(s.heads.note);
  if (s.dropBlocks) lines.push(`blocks dropped (${s.dropBlocks.metric === 'bi' ? 'lowest Block Influence' : 'smallest calibration-loss increase'}): ${s.dropBlocks.dropped.join(', ')}; scores ${s.dropBlocks.scores.map((v) => v.toPrecision(3)).join(', ')}`);
  lines.push(`parameters ${s.params.before.toLocaleString('en-US')} → ${s.params.after.toLocaleString('en-US')} (${((100 * (s.params.before - s.params.after)) / s.params.before).toFixed(2)}% removed), weights ${(s.fileBytes / 2 ** 20).toFixed(2)} MiB; method ${s.method}${s.method === 'magnitude' ? ' (weight norms, no compensation)' : ' (calibration statistics, re-solved projections)'}`);
  lines.push(r.calibration ? `calibration ${r.calibration.source}: ${r.calibration.nsamples} x ${r.calibration.seqlen} tokens, seed ${r.calibration.seed}` : 'calibration: none');
  if (r.unstructured) lines.push('then, on the reduced model:', formatPruneSummary(r.unstructured).trimEnd());
  else lines.push(`wrote ${r.out} (report: ${r.out}/shears-report.json), ${s.seconds.toFixed(1)} s, peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB`);
  if (evals) lines.push(`perplexity on ${evals.dense.dataset}: dense ${evals.dense.perplexity.toFixed(3)} -> pruned ${evals.pruned.perplexity.toFixed(3)}`);
  return lines.join('\n') + '\n';
}
