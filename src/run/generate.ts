/**
 * Greedy (temperature 0) decoding, for checking a converted model against its published samples.
 * No KV cache: every step re-runs the whole prefix block by block, which is fine for the short
 * samples it exists for and keeps one code path for the forward pass.
 */
import type { Architecture, TensorSource } from '../arch/types.js';
import { forwardHidden, loadWeights } from './blocks.js';

export async function greedy(arch: Architecture, src: TensorSource, prompt: Int32Array, maxNew: number, stopId?: number): Promise<Int32Array> {
  const head = loadWeights(src, arch.headTensors());
  const V = arch.spec.vocabSize;
  let ids = Int32Array.from(prompt);
  for (let step = 0; step < maxNew; step++) {
    const seq = ids.length;
    const hidden = await forwardHidden(arch, src, ids, seq);
    const last = hidden.subarray((seq - 1) * arch.spec.hiddenSize);
    const logits = await arch.logits(head, last, 1);
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    if (best === stopId) break;
    const next = new Int32Array(seq + 1);
    next.set(ids);
    next[seq] = best;
    ids = next;
  }
  return ids.subarray(prompt.length);
}
