/**
 * Ranking decoder blocks for removal on the calibration windows, dense model:
 *  - Block Influence (ShortGPT, Men et al. 2024): BI_i = 1 − E_tokens[cos(h_in, h_out)], the mean over
 *    every calibration token of the cosine between the hidden state entering and leaving block i;
 *  - loss: the measured increase of the mean next-token NLL on the calibration windows when block i alone
 *    is skipped (one forward of the rest of the model per block: L²/2 block runs, the more exact option).
 * The lowest scores go first.
 */
import type { Architecture, TensorSource } from '../arch/types.js';
import type { Windows } from '../data/calibration.js';
import { loadWeights, runBlockInPlace } from '../run/blocks.js';
import { releaseBlockSessions } from '../arch/runtime.js';

export interface BlockScores {
  metric: 'bi' | 'loss';
  /** One score per source block (BI, or NLL increase). */
  scores: number[];
  /** loss: the dense model's mean NLL on the calibration windows. */
  denseNll?: number;
}

/** Mean over tokens of 1 − cos(a_t, b_t) for hidden states [tokens, hidden]; float64 sums. */
export function blockInfluence(a: Float32Array, b: Float32Array, hidden: number): number {
  const tokens = a.length / hidden;
  let s = 0;
  for (let t = 0; t < tokens; t++) {
    let ab = 0, aa = 0, bb = 0;
    for (let j = t * hidden; j < (t + 1) * hidden; j++) {
      ab += a[j] * b[j];
      aa += a[j] * a[j];
      bb += b[j] * b[j];
    }
    const den = Math.sqrt(aa * bb);
    s += 1 - (den > 0 ? ab / den : 1);
  }
  return tokens > 0 ? s / tokens : 0;
}

export async function rankBlocks(arch: Architecture, src: TensorSource, windows: Windows, metric: 'bi' | 'loss'): Promise<BlockScores> {
  const seq = windows.seqlen;
  const L = arch.spec.numLayers;
  const hidden = arch.spec.hiddenSize;
  const x = await arch.embed(loadWeights(src, arch.embedTensors()), windows.ids, seq);
  if (metric === 'bi') {
    const scores: number[] = [];
    const out = new Float32Array(x.length);
    for (let b = 0; b < L; b++) {
      out.set(x);
      await runBlockInPlace(arch, b, src, out, seq);
      scores.push(blockInfluence(x, out, hidden));
      x.set(out);
    }
    await releaseBlockSessions();
    return { metric, scores };
  }
  const headW = loadWeights(src, arch.headTensors());
  const targets = new Int32Array(windows.ids.length);
  for (let t = 0; t < targets.length; t++) targets[t] = (t + 1) % seq === 0 ? -1 : windows.ids[t + 1];
  const meanNll = async (h: Float32Array): Promise<number> => {
    const nll = await arch.nll(headW, h, seq, targets);
    let s = 0, n = 0;
    for (let t = 0; t < nll.length; t++) if (targets[t] >= 0) (s += nll[t]), n++;
    return s / n;
  };
  // x walks the dense model; for block b, a copy of its input skips it and runs the rest.
  const without: number[] = [];
  for (let b = 0; b < L; b++) {
    const skip = Float32Array.from(x);
    for (let k = b + 1; k < L; k++) await runBlockInPlace(arch, k, src, skip, seq);
    without.push(await meanNll(skip));
    await runBlockInPlace(arch, b, src, x, seq);
  }
  const denseNll = await meanNll(x);
  await releaseBlockSessions();
  return { metric, scores: without.map((v) => v - denseNll), denseNll };
}

/** The n lowest-scoring blocks (ties: the later block first, as deeper blocks are the more redundant), ascending. */
export function blocksToDrop(s: BlockScores, n: number): number[] {
  const order = s.scores.map((v, i) => i).sort((a, b) => s.scores[a] - s.scores[b] || b - a);
  return order.slice(0, n).sort((a, b) => a - b);
}
