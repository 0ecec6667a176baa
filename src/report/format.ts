/** Human-readable renderings of results (the --json forms are the objects themselves). */
import type { EvalResult } from '../eval/evaluate.js';

export function formatEval(r: EvalResult): string {
  const lines = [
    `model       ${r.model}`,
    `dataset     ${r.dataset} (${r.datasetPath})`,
    `windows     ${r.windows} x ${r.seqlen} tokens (${r.tokens} tokens, ${r.predicted} predicted)`,
    `perplexity  ${r.perplexity.toFixed(4)}   (mean NLL ${r.meanNll.toFixed(4)})`,
    `speed       ${r.tokensPerSecond.toFixed(0)} tokens/s (${r.seconds.toFixed(1)} s)`,
  ];
  if (r.published) lines.push(`published   ${r.published.perplexity} (${r.published.source}${r.published.note ? `; ${r.published.note}` : ''})`);
  return lines.join('\n') + '\n';
}

/** Fixed-width table: first row is the header. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')).join('\n') + '\n';
}
