/**
 * Reduced captures (Wanda's statistic inside the block graph): a statistics pass that asks for column sums
 * of squares gets, for every linear input, the float32 sums that the same ReduceSumSquare gives on the
 * captured rows, and those match a float64 Σ x² of the rows. For Llama they are bit for bit the same (so
 * Wanda's masks cannot change); GPT-2's MLP activation is computed by a fused kernel once its output is no
 * longer a graph output, which moves the sums by float32 rounding (≤ 1e-6 relative).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/model.js';
import { loadWeights, runBlockOver } from '../../src/run/blocks.js';
import { ColumnNormAccumulator } from '../../src/prune/stats.js';
import { REPO } from '../helpers/cli.js';

describe('reduced captures', () => {
  // GPT-2: biases and LayerNorm; stories260K: Llama with GQA. 12 windows of 64 tokens go through in two
  // calls for GPT-2 (n_positions 128), one for stories260K, so both the per-call sums and their float64
  // accumulation are exercised.
  for (const [model, seq, windows, exact] of [['test/fixtures/gpt2-tiny', 64, 12, false], ['models/stories260K', 256, 12, true]] as const) {
    it(`${model}: every block's column sums equal those of the captured rows${exact ? ', bit for bit' : ' to float32 rounding'}`, async () => {
      const { ckpt, arch, src } = await openModel(join(REPO, model));
      try {
        const V = arch.spec.vocabSize;
        const ids = Int32Array.from({ length: windows * seq }, (_, i) => (i * 37 + 11 + Math.floor(i / 7)) % V);
        const x = await arch.embed(loadWeights(src, arch.embedTensors()), ids, seq);
        for (let b = 0; b < arch.spec.numLayers; b++) {
          const w = loadWeights(src, arch.blockTensors(b));
          const cols = new Map(arch.linears(b).map((l) => [l.input, l.cols]));
          const raw = new Map([...cols].map(([id, c]) => [id, new ColumnNormAccumulator(c)]));
          const reduced = new Map([...cols].map(([id, c]) => [id, new ColumnNormAccumulator(c)]));
          const ref = new Map([...cols].map(([id, c]) => [id, new Float64Array(c)]));
          let rawCalls = 0;
          await runBlockOver(arch, b, w, x, seq, null, async (inputs, n, _s, red) => {
            expect(red).toBeUndefined();
            rawCalls++;
            for (const [id, acc] of raw) {
              const c = acc.cols;
              const rows = inputs[id].length / c;
              expect(rows).toBe(n * seq);
              await acc.add(inputs[id], rows, n);
              const r = ref.get(id)!;
              for (let t = 0; t < rows; t++) for (let j = 0; j < c; j++) r[j] += inputs[id][t * c + j] ** 2;
            }
          });
          let reducedCalls = 0;
          await runBlockOver(arch, b, w, x, seq, null, (inputs, n, _s, red) => {
            expect(red).toBe('column-squares');
            reducedCalls++;
            for (const [id, acc] of reduced) acc.addSums(inputs[id], n * seq, n);
          }, 'column-squares');
          expect(reducedCalls).toBe(rawCalls);
          for (const [id, acc] of raw) {
            const want = acc.result();
            const got = reduced.get(id)!.result();
            expect(reduced.get(id)!.tokens).toBe(acc.tokens);
            expect(reduced.get(id)!.sequences).toBe(windows);
            if (exact) expect(Array.from(got)).toEqual(Array.from(want));
            let worst = 0;
            for (let j = 0; j < acc.cols; j++) worst = Math.max(worst, Math.abs(got[j] - want[j]) / want[j]);
            expect(worst).toBeLessThanOrEqual(1e-6);
            const r = ref.get(id)!;
            for (let j = 0; j < acc.cols; j++) expect(Math.abs(got[j] - r[j] / windows)).toBeLessThanOrEqual(1e-5 * Math.abs(r[j] / windows) + 1e-12);
          }
          // The next block's input: the dense block output, as the driver's passes see it.
          await runBlockOver(arch, b, w, x, seq, x);
        }
      } finally {
        ckpt.close();
      }
    });
  }
});
