/**
 * Perplexity with the protocol of the SparseGPT and Wanda papers: the whole text tokenized once,
 * cut into non-overlapping windows of seqlen tokens (remainder dropped), each window scored on its
 * own, perplexity = exp(mean next-token NLL over all predicted positions (seqlen - 1 per window)).
 */
import type { Architecture, TensorSource } from '../arch/types.js';
import { usageError } from '../errors.js';
import { loadWeights, runBlockInPlace } from '../run/blocks.js';
import type { FiniteGuard } from '../run/finite.js';

export interface PerplexityResult {
  windows: number;
  seqlen: number;
  /** Tokens in the evaluated windows (windows × seqlen). */
  tokens: number;
  /** Positions scored: windows × (seqlen − 1). */
  predicted: number;
  meanNll: number;
  perplexity: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface PerplexityOptions {
  /** Evaluate only the first maxTokens tokens of the stream. */
  maxTokens?: number;
  /** Hidden-state bytes held at once; windows beyond it are evaluated in successive groups. */
  activationBudgetBytes?: number;
  onProgress?: (done: { block: number; blocks: number; group: number; groups: number }) => void;
  /** Checks each block's output and the per-token NLL for NaN/Inf (weights: check them in `src`). */
  finite?: FiniteGuard;
}

export async function perplexity(arch: Architecture, src: TensorSource, stream: Int32Array, seqlen: number, opts: PerplexityOptions = {}): Promise<PerplexityResult> {
  const t0 = performance.now();
  const usable = opts.maxTokens !== undefined ? stream.subarray(0, opts.maxTokens) : stream;
  const windows = Math.floor(usable.length / seqlen);
  if (windows === 0) throw usageError(`the evaluation text has ${usable.length} tokens, fewer than one window of ${seqlen}`);

  const hidden = arch.spec.hiddenSize;
  const budget = opts.activationBudgetBytes ?? 2 ** 30;
  const perGroup = Math.max(1, Math.floor(budget / (seqlen * hidden * 4)));
  const groups = Math.ceil(windows / perGroup);
  const embedW = loadWeights(src, arch.embedTensors());
  const headW = loadWeights(src, arch.headTensors());
  const L = arch.spec.numLayers;

  let nllSum = 0;
  for (let g = 0; g < groups; g++) {
    const first = g * perGroup;
    const count = Math.min(perGroup, windows - first);
    const ids = usable.subarray(first * seqlen, (first + count) * seqlen);
    const x = await arch.embed(embedW, ids, seqlen);
    for (let i = 0; i < L; i++) {
      await runBlockInPlace(arch, i, src, x, seqlen);
      opts.finite?.check(`block ${i}: its output on the evaluation windows`, x, 'the activations overflow float32 in this block');
      opts.onProgress?.({ block: i + 1, blocks: L, group: g + 1, groups });
    }
    const targets = new Int32Array(ids.length);
    for (let t = 0; t < ids.length; t++) targets[t] = (t + 1) % seqlen === 0 ? -1 : ids[t + 1];
    const nll = await arch.nll(headW, x, seqlen, targets);
    opts.finite?.check('the next-token log-likelihoods (final norm and LM head)', nll);
    // Sum in float64 per window, as the reference sums per-window means.
    for (let t = 0; t < nll.length; t++) if (targets[t] >= 0) nllSum += nll[t];
  }
  const predicted = windows * (seqlen - 1);
  const meanNll = nllSum / predicted;
  const seconds = (performance.now() - t0) / 1000;
  return {
    windows,
    seqlen,
    tokens: windows * seqlen,
    predicted,
    meanNll,
    perplexity: Math.exp(meanNll),
    seconds,
    tokensPerSecond: (windows * seqlen) / seconds,
  };
}
